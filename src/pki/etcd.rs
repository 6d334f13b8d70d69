//! The etcd PKI of a cluster, laid out as the files each control plane gets.
use super::{Authority, Issued, LeafSpec, PkiError};
use crate::inventory::{Host, Inventory};
use crate::paths::ETCD_PKI_DIR;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One file for one control plane.
#[derive(Clone, Debug)]
pub struct EtcdFile {
    pub host: String,
    pub path: String,
    pub contents: Contents,
    pub mode: u32,
}

/// Certificates are public; keys are secret and keep their redacting wrapper until written.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Contents {
    Certificate(String),
    Key(super::PrivateKeyPem),
}

/// The API server's etcd client certificate and key: one pair for every control plane (see
/// ClusterState::share_apiserver_etcd_client).
pub const APISERVER_ETCD_CLIENT: (&str, &str) = ("apiserver-etcd-client.crt", "apiserver-etcd-client.key");

/// The names under ETCD_PKI_DIR every member holds, in the order the plan lists them.
pub fn member_file_names() -> [&'static str; 9] {
    [
        "ca.crt",
        "server.crt",
        "server.key",
        "peer.crt",
        "peer.key",
        "apiserver-etcd-client.crt",
        "apiserver-etcd-client.key",
        "kubeha-etcd-client.crt",
        "kubeha-etcd-client.key",
    ]
}

fn loopback() -> Vec<IpAddr> {
    vec![IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V6(Ipv6Addr::LOCALHOST)]
}

/// Every member's files, signed by `ca`.
pub fn etcd_files(inv: &Inventory, ca: &Authority) -> Result<Vec<EtcdFile>, PkiError> {
    let mut files = Vec::new();
    for host in inv.control_planes() {
        for (name, contents) in member_files(host, ca)? {
            files.push(EtcdFile::new(&host.name, name, contents));
        }
    }
    Ok(files)
}

impl EtcdFile {
    /// A member file under ETCD_PKI_DIR; keys are 0600, certificates 0644.
    pub fn new(host: &str, name: &str, contents: Contents) -> Self {
        let mode = if matches!(contents, Contents::Key(_)) { 0o600 } else { 0o644 };
        EtcdFile { host: host.to_string(), path: format!("{ETCD_PKI_DIR}/{name}"), contents, mode }
    }

    pub fn bytes(&self) -> &[u8] {
        match &self.contents {
            Contents::Certificate(c) => c.as_bytes(),
            Contents::Key(k) => k.expose().as_bytes(),
        }
    }
}

/// One member's leaf certificates: (certificate file, key file, what it is for), named as in
/// `member_file_names`. Server and peer certificates carry both the server and the client purpose: members
/// dial each other, and etcd's gateway uses the server certificate as a client too.
pub fn member_leaves(host: &Host) -> [(&'static str, &'static str, LeafSpec); 4] {
    let mut ips = loopback();
    ips.insert(0, host.address);
    let member = |purpose: &str| LeafSpec {
        common_name: format!("{}-{purpose}", host.name),
        dns_names: vec![host.name.clone(), "localhost".into()],
        ips: ips.clone(),
        server: true,
        client: true,
        ..LeafSpec::default()
    };
    let client = |cn: &str| LeafSpec { common_name: cn.into(), client: true, ..LeafSpec::default() };
    [
        ("server.crt", "server.key", member("server")),
        ("peer.crt", "peer.key", member("peer")),
        (APISERVER_ETCD_CLIENT.0, APISERVER_ETCD_CLIENT.1, client("kube-apiserver-etcd-client")),
        ("kubeha-etcd-client.crt", "kubeha-etcd-client.key", client("kubeha")),
    ]
}

/// One member's files (named as in `member_file_names`), newly issued by `ca`.
pub fn member_files(host: &Host, ca: &Authority) -> Result<Vec<(&'static str, Contents)>, PkiError> {
    let mut files = vec![("ca.crt", Contents::Certificate(ca.cert_pem().to_string()))];
    for (cert_name, key_name, spec) in member_leaves(host) {
        let cert: Issued = ca.issue(&spec)?;
        files.push((cert_name, Contents::Certificate(cert.cert_pem)));
        files.push((key_name, Contents::Key(cert.key_pem)));
    }
    Ok(files)
}

#[cfg(test)]
mod tests;

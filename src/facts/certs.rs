//! The certificates a host holds, read with one exec: each certificate file's PEM blocks (never a key: a
//! combined file like the kubelet's is filtered to its certificate) and each kubeconfig's embedded client
//! certificate, decoded on the host. Expiry is parsed here in Rust, so hosts need no openssl (a minimal
//! image has none); only sh, sed and coreutils' base64, which every host kubeadm runs on has.
use crate::paths::{ETCD_PKI_DIR, KUBECONFIGS, KUBELET_CLIENT_CERT, KUBERNETES_PKI_DIR};
use crate::pki::expiry::{self, Cert};
use crate::ssh::{Command, SshError, Transport, quote::quote};
use std::time::Duration;

/// What one host holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostCerts {
    pub certs: Vec<Cert>,
    /// Files that exist but hold no certificate kubeha can read, with why.
    pub unreadable: Vec<(String, String)>,
}

const SECTION: &str = "@@kubeha-cert ";
const END: &str = "@@kubeha-end";

/// The script. Globs that match nothing stay literal and fail `[ -f ]`, so absent folders are skipped.
/// Kubeconfigs without embedded data (kubelet.conf pointing at the rotating file) print nothing.
pub fn script() -> String {
    let files =
        [format!("{ETCD_PKI_DIR}/*.crt"), format!("{KUBERNETES_PKI_DIR}/*.crt"), format!("{KUBERNETES_PKI_DIR}/etcd/*.crt"), quote(KUBELET_CLIENT_CERT)];
    let confs: Vec<String> = KUBECONFIGS.iter().map(|c| quote(c)).collect();
    format!(
        "c() {{ [ -f \"$1\" ] || return 0; printf '{SECTION}%s\\n' \"$1\"; sed -n '/-----BEGIN CERTIFICATE-----/,/-----END CERTIFICATE-----/p' \"$1\"; }}\n\
         k() {{ [ -f \"$1\" ] || return 0; d=$(sed -n 's/^[[:space:]]*client-certificate-data:[[:space:]]*//p' \"$1\" | head -n 1); [ -n \"$d\" ] || return 0; \
         printf '{SECTION}%s\\n' \"$1\"; printf '%s' \"$d\" | base64 -d 2>/dev/null; echo; }}\n\
         for f in {}; do c \"$f\"; done\n\
         for f in {}; do k \"$f\"; done\n\
         echo '{END}'\n",
        files.join(" "),
        confs.join(" ")
    )
}

/// Parses the script's output; `None` when it was cut short (no end marker).
pub fn parse(host: &str, output: &str) -> Option<HostCerts> {
    let (body, _) = output.split_once(END)?;
    let mut seen = HostCerts::default();
    for section in body.split(SECTION).skip(1) {
        let (path, pem) = section.split_once('\n').unwrap_or((section, ""));
        match expiry::parse_pem(pem) {
            Ok(parsed) => seen.certs.push(Cert::new(host, path, parsed)),
            Err(why) => seen.unreadable.push((path.to_string(), why)),
        }
    }
    Some(seen)
}

/// Runs the script on one host, as root: kubeconfigs are 0600.
pub async fn probe(t: &dyn Transport) -> Result<HostCerts, SshError> {
    let out = t.run(&Command::script(script()).timeout(Duration::from_secs(60))).await?;
    parse(t.host(), &out.stdout_text()).ok_or_else(|| SshError::Protocol {
        host: t.host().into(),
        command: Some("certificate probe".into()),
        detail: "the certificate probe's output was cut short".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paths::KUBELET_PKI_DIR;
    use crate::pki::expiry::Owner;
    use crate::pki::{Authority, LeafSpec};

    /// The real script run by sh over a fake root: every kind of file, keys filtered out, kubeconfigs decoded.
    #[test]
    fn the_script_reads_files_and_kubeconfigs_without_keys() {
        let ca = Authority::generate("kubernetes").unwrap();
        let issue = |cn: &str| ca.issue(&LeafSpec { common_name: cn.into(), client: true, ..LeafSpec::default() }).unwrap();
        let root = tempfile::tempdir().unwrap();
        let at = |p: &str| format!("{}{p}", root.path().display());
        for dir in [ETCD_PKI_DIR, KUBERNETES_PKI_DIR, KUBELET_PKI_DIR] {
            std::fs::create_dir_all(at(dir)).unwrap();
        }
        let server = issue("cp-1-server");
        std::fs::write(at(&format!("{ETCD_PKI_DIR}/server.crt")), &server.cert_pem).unwrap();
        std::fs::write(at(&format!("{ETCD_PKI_DIR}/server.key")), server.key_pem.expose()).unwrap();
        std::fs::write(at(&format!("{KUBERNETES_PKI_DIR}/apiserver.crt")), issue("kube-apiserver").cert_pem).unwrap();
        std::fs::write(at(&format!("{KUBERNETES_PKI_DIR}/broken.crt")), "garbage\n").unwrap();
        let kubelet = issue("system:node:cp-1");
        std::fs::write(at(KUBELET_CLIENT_CERT), format!("{}{}", kubelet.cert_pem, kubelet.key_pem.expose())).unwrap();
        let admin = issue("kubernetes-admin");
        let b64 = |s: &str| {
            let out = std::process::Command::new("sh").arg("-c").arg(format!("printf '%s' {} | base64 -w0", quote(s))).output().unwrap();
            String::from_utf8(out.stdout).unwrap()
        };
        let conf = format!(
            "users:\n- name: kubernetes-admin\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\n",
            b64(&admin.cert_pem),
            b64(admin.key_pem.expose())
        );
        std::fs::write(at("/etc/kubernetes/admin.conf"), conf).unwrap();
        std::fs::write(at("/etc/kubernetes/kubelet.conf"), "users:\n- user:\n    client-certificate: /var/lib/kubelet/pki/kubelet-client-current.pem\n")
            .unwrap();

        let rooted = script().replace("/etc/", &at("/etc/")).replace("/var/lib/", &at("/var/lib/"));
        let out = std::process::Command::new("sh").arg("-c").arg(&rooted).output().unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(!text.contains("PRIVATE KEY"), "{text}");
        let seen = parse("cp-1", &text.replace(&root.path().display().to_string(), "")).unwrap();
        let found: Vec<(&str, &str, Owner)> = seen.certs.iter().map(|c| (c.path.as_str(), c.parsed.subject.as_str(), c.owner)).collect();
        assert_eq!(
            found,
            [
                ("/etc/kubeha/pki/etcd/server.crt", "cp-1-server", Owner::Kubeha),
                ("/etc/kubernetes/pki/apiserver.crt", "kube-apiserver", Owner::Kubeadm),
                (KUBELET_CLIENT_CERT, "system:node:cp-1", Owner::Kubelet),
                ("/etc/kubernetes/admin.conf", "kubernetes-admin", Owner::Kubeadm),
            ]
        );
        assert_eq!(seen.unreadable.len(), 1);
        assert_eq!(seen.unreadable[0].0, "/etc/kubernetes/pki/broken.crt");
    }

    #[test]
    fn output_cut_short_is_not_a_host_without_certificates() {
        assert_eq!(parse("cp-1", "@@kubeha-cert /x.crt\n-----BEGIN"), None);
        assert_eq!(parse("cp-1", "@@kubeha-end\n"), Some(HostCerts::default()));
    }
}

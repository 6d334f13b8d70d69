//! kubeadm on a node: init, control-plane and worker joins, the certificate re-upload, and the wait for a
//! serving API through the cluster endpoint. Configs are placed 0600 by the caller (they hold the token
//! and the certificate key); kubeadm's output is logged only through the redacting host log.
use crate::plan::desired::ADMIN_CONF;
use crate::render::KUBEADM_CONFIG;
use crate::ssh::{Command, SshError, Transport, quote};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// kubeadm waits for the API server itself; this bounds the whole command.
const KUBEADM_TIMEOUT: Duration = Duration::from_secs(300);
const READY_WITHIN: Duration = Duration::from_secs(120);

fn kubeadm(args: &str) -> Command {
    Command::script(format!("kubeadm {args}")).timeout(KUBEADM_TIMEOUT)
}

/// Clears an earlier attempt's kubeadm files (never etcd: kubeha's etcd is not kubeadm's). It empties
/// /etc/kubernetes/pki too, so it must run before kubeha places the cluster CA there, never after.
pub async fn reset(t: &dyn Transport) -> Result<(), SshError> {
    t.run(&kubeadm("reset -f")).await.map(|_| ())
}

pub async fn init(t: &dyn Transport) -> Result<(), SshError> {
    t.run(&kubeadm(&format!("init --config {KUBEADM_CONFIG} --upload-certs"))).await.map(|_| ())
}

pub async fn join(t: &dyn Transport) -> Result<(), SshError> {
    t.run(&kubeadm(&format!("join --config {KUBEADM_CONFIG}"))).await.map(|_| ())
}

/// Replaces the cluster's ClusterConfiguration with the config file's (new etcd endpoints, SANs).
pub async fn upload_config(t: &dyn Transport) -> Result<(), SshError> {
    t.run(&kubeadm(&format!("init phase upload-config kubeadm --config {KUBEADM_CONFIG}"))).await.map(|_| ())
}

/// Uploads the control-plane certificates again with the certificate key of the config: kubeadm deletes
/// them 2 h after init, and joins in a later run need them.
pub async fn upload_certs(t: &dyn Transport) -> Result<(), SshError> {
    t.run(&kubeadm(&format!("init phase upload-certs --upload-certs --config {KUBEADM_CONFIG}"))).await.map(|_| ())
}

/// `kubectl` as the cluster admin on a control plane.
pub fn kubectl(args: &str) -> Command {
    Command::script(format!("kubectl --kubeconfig {ADMIN_CONF} {args}")).timeout(Duration::from_secs(60))
}

/// /readyz through the cluster endpoint, verified against the cluster CA (no -k), from this node.
pub fn readyz(endpoint: &str) -> Command {
    let url = quote::quote(&format!("https://{endpoint}/readyz"));
    Command::script(format!("curl -sS --max-time 5 --cacert /etc/kubernetes/pki/ca.crt {url}"))
}

/// Waits until /readyz answers `ok` through the endpoint and `node` is registered.
pub async fn wait_ready(t: &dyn Transport, endpoint: &str, node: &str) -> Result<(), SshError> {
    let started = Instant::now();
    let node_cmd = kubectl(&format!("get node {} -o name", quote::quote(node)));
    loop {
        let ready = t.exec(&readyz(endpoint)).await?;
        let last = if ready.stdout_text().trim() == "ok" {
            let registered = t.exec(&node_cmd).await?;
            if registered.status.success() {
                return Ok(());
            }
            format!("node {node} not registered: {}", String::from_utf8_lossy(&registered.stderr).trim())
        } else {
            format!("/readyz through {endpoint}: {}{}", ready.stdout_text().trim(), String::from_utf8_lossy(&ready.stderr).trim())
        };
        if started.elapsed() > READY_WITHIN {
            return Err(SshError::CommandFailed {
                host: t.host().into(),
                command: format!("wait for /readyz through {endpoint}"),
                status: ready.status,
                stderr: format!("not ready within {} s: {last}", READY_WITHIN.as_secs()),
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Applies the CNI manifest; the caller records the applied digest afterwards.
pub async fn apply_manifest(t: &dyn Transport, path: &str) -> Result<(), SshError> {
    t.run(&kubectl(&format!("apply -f {}", quote::quote(path)))).await.map(|_| ())
}

pub async fn label(t: &dyn Transport, node: &str, labels: &[String]) -> Result<(), SshError> {
    let words = quote::join(labels.iter().map(String::as_str));
    t.run(&kubectl(&format!("label node {} {words} --overwrite", quote::quote(node)))).await.map(|_| ())
}

/// The parts of `kubectl get nodes -o json` kubeha reads.
#[derive(serde::Deserialize)]
struct NodeList {
    items: Vec<Node>,
}

#[derive(serde::Deserialize)]
struct Node {
    metadata: NodeMeta,
    #[serde(default)]
    status: NodeStatus,
}

#[derive(serde::Deserialize)]
struct NodeMeta {
    name: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

#[derive(serde::Deserialize, Default)]
struct NodeStatus {
    #[serde(default)]
    addresses: Vec<NodeAddress>,
}

#[derive(serde::Deserialize)]
struct NodeAddress {
    #[serde(rename = "type")]
    kind: String,
    address: String,
}

fn node_list(json: &str) -> Result<NodeList, String> {
    serde_json::from_str(json).map_err(|e| format!("kubectl get nodes -o json: {e}"))
}

/// Registered nodes and their labels, from `kubectl get nodes -o json`.
pub fn parse_nodes(json: &str) -> Result<BTreeMap<String, BTreeMap<String, String>>, String> {
    Ok(node_list(json)?.items.into_iter().map(|n| (n.metadata.name, n.metadata.labels)).collect())
}

/// Each node's InternalIP, from the same output: how a worker that left the inventory is still reached to
/// reset it. Nodes without one are left out.
pub fn parse_node_addresses(json: &str) -> BTreeMap<String, std::net::IpAddr> {
    let Ok(list) = node_list(json) else { return BTreeMap::new() };
    list.items
        .into_iter()
        .filter_map(|n| {
            let ip = n.status.addresses.iter().find(|a| a.kind == "InternalIP")?.address.parse().ok()?;
            Some((n.metadata.name, ip))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_with_labels() {
        let json = r#"{"apiVersion":"v1","kind":"List","items":[{"metadata":{"name":"cp-1","labels":{"topology.kubernetes.io/zone":"az-a"}}},{"metadata":{"name":"wk-1"}}]}"#;
        let nodes = parse_nodes(json).unwrap();
        assert_eq!(nodes["cp-1"]["topology.kubernetes.io/zone"], "az-a");
        assert!(nodes["wk-1"].is_empty());
        assert!(parse_nodes("not json").unwrap_err().starts_with("kubectl get nodes"));
        let with_status = r#"{"items":[{"metadata":{"name":"wk-1"},"status":{"addresses":[{"type":"Hostname","address":"wk-1"},{"type":"InternalIP","address":"198.18.0.21"}]}},{"metadata":{"name":"wk-2"}}]}"#;
        let addresses = parse_node_addresses(with_status);
        assert_eq!(addresses.len(), 1);
        assert_eq!(addresses["wk-1"].to_string(), "198.18.0.21");
    }
}

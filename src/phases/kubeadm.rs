//! kubeadm on a node: init, control-plane and worker joins, the certificate re-upload, and the wait for a
//! serving API through the cluster endpoint. Configs are placed 0600 by the caller (they hold the token
//! and the certificate key); kubeadm's output is logged only through the redacting host log.
use crate::paths::{ADMIN_CONF, KUBEADM_CONFIG, KUBERNETES_CA_CERT, KUBERNETES_DIR, MANIFESTS_DIR as MANIFESTS, STATIC_PODS};
use crate::ssh::{Command, SshError, Transport, quote};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// kubeadm waits for the API server itself; this bounds the whole command.
const KUBEADM_TIMEOUT: Duration = Duration::from_secs(300);
const READY_WITHIN: Duration = Duration::from_secs(120);

fn kubeadm(args: &str) -> Command {
    Command::script(format!("kubeadm {args}")).timeout(KUBEADM_TIMEOUT)
}

/// `kubeadm reset -f` as kubeha runs it everywhere. kubeadm's own etcd phase must be skipped: with an
/// external etcd it finds no local etcd settings, falls back to its default data directory /var/lib/etcd,
/// which is kubeha's member's, and deletes its contents, after trying (60 s) to remove the member from the
/// cluster as if etcd were stacked (both seen on the lab with kubeadm 1.36). The CRI socket is the
/// inventory's: kubeadm only auto-detects the well-known ones, and then leaves the static pods running
/// (ports 6443, 10257 and 10259 stay taken and the next join's preflight fails).
pub fn reset_command(cri_socket: &str) -> String {
    format!("kubeadm reset -f --skip-phases=remove-etcd-member --cri-socket {}", quote::quote(cri_socket))
}

/// Clears an earlier attempt's kubeadm files (never etcd: see `reset_command`). It empties
/// /etc/kubernetes/pki too, so it must run before kubeha places the cluster CA there, never after.
pub async fn reset(t: &dyn Transport, cri_socket: &str) -> Result<(), SshError> {
    t.run(&Command::script(reset_command(cri_socket)).timeout(KUBEADM_TIMEOUT)).await.map(|_| ())
}

pub async fn init(t: &dyn Transport, config: &str) -> Result<(), SshError> {
    t.run(&kubeadm(&format!("init --config {} --upload-certs", quote::quote(config)))).await.map(|_| ())
}

pub async fn join(t: &dyn Transport, config: &str) -> Result<(), SshError> {
    t.run(&kubeadm(&format!("join --config {}", quote::quote(config)))).await.map(|_| ())
}

/// Replaces the cluster's ClusterConfiguration with the config file's (new etcd endpoints, SANs).
pub async fn upload_config(t: &dyn Transport) -> Result<(), SshError> {
    t.run(&kubeadm(&format!("init phase upload-config kubeadm --config {KUBEADM_CONFIG}"))).await.map(|_| ())
}

/// Uploads the control-plane certificates again with the certificate key of the config: kubeadm deletes
/// them 2 h after init, and joins in a later run need them.
pub async fn upload_certs(t: &dyn Transport, config: &str) -> Result<(), SshError> {
    t.run(&kubeadm(&format!("init phase upload-certs --upload-certs --config {}", quote::quote(config)))).await.map(|_| ())
}

/// `kubectl` as the cluster admin on a control plane.
pub fn kubectl(args: &str) -> Command {
    Command::script(format!("kubectl --kubeconfig {ADMIN_CONF} {args}")).timeout(Duration::from_secs(60))
}

/// /readyz through the cluster endpoint, verified against the cluster CA (no -k), from this node.
pub fn readyz(endpoint: &str) -> Command {
    let url = quote::quote(&format!("https://{endpoint}/readyz"));
    Command::script(format!("curl -sS --max-time 5 --cacert {KUBERNETES_CA_CERT} {url}"))
}

/// A wait for an API server that did not end well: the host could not be asked, or the wait ran out.
#[derive(Debug, thiserror::Error)]
pub enum ReadyError {
    #[error(transparent)]
    Ssh(#[from] SshError),
    /// `last` is the last answer seen.
    #[error("{host}: {what}: not ready within {} s: {last}", within.as_secs())]
    NotReady { host: String, what: String, within: Duration, last: String },
}

/// Waits until /readyz answers `ok` through the endpoint and `node` is registered.
pub async fn wait_ready(t: &dyn Transport, endpoint: &str, node: &str) -> Result<(), ReadyError> {
    wait_until_ready(t, endpoint, Some(node)).await
}

/// Waits until this control plane's own API server (at `address`) answers /readyz, so the next step starts
/// only once this server serves like the others. /readyz is enough: until its RBAC caches are filled an API
/// server refuses even the anonymous /readyz request (kube-apiserver 1.36 answers any request in its first
/// second with Forbidden, measured on the lab), so "ok" means it authorizes the cluster admin too.
pub async fn wait_own_api_ready(t: &dyn Transport, address: &str) -> Result<(), ReadyError> {
    let endpoint = crate::render::context::host_port(address, crate::render::context::API_SERVER_PORT);
    wait_until_ready(t, &endpoint, None).await
}

/// Waits until /readyz answers `ok` through `endpoint` (the cluster's, after a control plane changed).
pub async fn wait_until_api_ready(t: &dyn Transport, endpoint: &str) -> Result<(), ReadyError> {
    wait_until_ready(t, endpoint, None).await
}

/// Waits until /readyz answers `ok` at `endpoint` and, when given, `node` is registered.
async fn wait_until_ready(t: &dyn Transport, endpoint: &str, node: Option<&str>) -> Result<(), ReadyError> {
    let started = Instant::now();
    loop {
        let ready = t.exec(&readyz(endpoint)).await?;
        let last = if ready.stdout_text().trim() == "ok" {
            let Some(node) = node else { return Ok(()) };
            let registered = t.exec(&kubectl(&format!("get node {} -o name", quote::quote(node)))).await?;
            if registered.status.success() {
                return Ok(());
            }
            format!("node {node} not registered: {}", String::from_utf8_lossy(&registered.stderr).trim())
        } else {
            format!("/readyz through {endpoint}: {}{}", ready.stdout_text().trim(), String::from_utf8_lossy(&ready.stderr).trim())
        };
        if started.elapsed() > READY_WITHIN {
            return Err(ReadyError::NotReady { host: t.host().into(), what: format!("/readyz through {endpoint}"), within: READY_WITHIN, last });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The script of `restart_control_plane`. Each manifest moves out until the kubelet has stopped the pod,
/// then back: a new pod, started at once (ending the process instead would restart it only after any
/// crash-loop back-off it collected). A manifest is never left out: a trap puts it back on any exit, and
/// the script first puts back what a killed run left out. A pod the kubelet does not stop within 2 min
/// fails the step (its manifest back in place), since moving it back would not restart it.
pub fn restart_script(renew_certs: bool) -> String {
    let pods = STATIC_PODS.join(" ");
    let renew = if renew_certs { "kubeadm certs renew all\n" } else { "" };
    format!(
        "set -e\n\
         back() {{ for c in {pods}; do if [ -f {KUBERNETES_DIR}/$c.yaml.kubeha ]; then mv -f {KUBERNETES_DIR}/$c.yaml.kubeha {MANIFESTS}/$c.yaml; fi; done; }}\n\
         trap back EXIT\n\
         trap 'back; exit 1' HUP INT TERM\n\
         back\n\
         {renew}\
         for c in {pods}; do\n\
         \x20 [ -f {MANIFESTS}/$c.yaml ] || continue\n\
         \x20 mv {MANIFESTS}/$c.yaml {KUBERNETES_DIR}/$c.yaml.kubeha\n\
         \x20 i=0; while pidof $c >/dev/null && [ $i -lt 240 ]; do sleep 0.5; i=$((i+1)); done\n\
         \x20 if pidof $c >/dev/null; then echo \"the kubelet did not stop $c within 2 min\" >&2; exit 1; fi\n\
         \x20 mv {KUBERNETES_DIR}/$c.yaml.kubeha {MANIFESTS}/$c.yaml\n\
         done\n"
    )
}

/// Renews kubeadm's certificates (when asked), restarts the static pods, and waits for this node's own
/// API server (at `address`) to answer /readyz: the next control plane restarts only then.
pub async fn restart_control_plane(t: &dyn Transport, renew_certs: bool, address: &str) -> Result<(), ReadyError> {
    t.run(&Command::script(restart_script(renew_certs)).timeout(KUBEADM_TIMEOUT)).await?;
    wait_own_api_ready(t, address).await
}

/// kubeadm waits up to 5 min for each static pod it replaces, and replaces only the API server's here.
const REFRESH_TIMEOUT: Duration = Duration::from_secs(600);

/// Why a control plane's manifests could not be refreshed.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error(transparent)]
    Ssh(#[from] SshError),
    #[error(transparent)]
    Ready(#[from] ReadyError),
    /// kubeadm finished, but the manifest names other endpoints: the cluster's ClusterConfiguration does.
    #[error(
        "{host}: after kubeadm upgrade node phase control-plane, kube-apiserver's --etcd-servers is {have:?}, not {want:?}: kube-system/kubeadm-config names other etcd endpoints than the inventory's members"
    )]
    StillStale { host: String, have: Vec<String>, want: Vec<String> },
}

/// Has kubeadm write this control plane's static pod manifests again from the cluster's ClusterConfiguration,
/// at the release the node runs, without renewing certificates or touching etcd (kubeha's own): kubeadm
/// replaces only the manifests that differ, waits for each pod to restart and puts the old manifest back if it
/// does not. Then the API server's manifest must name `etcd_servers`, and the API server answer /readyz.
pub async fn refresh_control_plane(t: &dyn Transport, address: &str, etcd_servers: &[String]) -> Result<(), RefreshError> {
    let refresh = kubeadm("upgrade node phase control-plane --certificate-renewal=false --etcd-upgrade=false").timeout(REFRESH_TIMEOUT);
    t.run(&refresh).await?;
    let out = t.run(&Command::script(crate::facts::observe::apiserver_etcd_servers_script())).await?;
    let have = crate::facts::observe::parse_etcd_servers(&out.stdout_text());
    if !crate::facts::observe::same_endpoints(&have, etcd_servers) {
        return Err(RefreshError::StillStale { host: t.host().to_string(), have, want: etcd_servers.to_vec() });
    }
    wait_own_api_ready(t, address).await?;
    Ok(())
}

/// Applies the CNI manifest; the caller records the applied digest afterwards.
pub async fn apply_manifest(t: &dyn Transport, path: &str) -> Result<(), SshError> {
    t.run(&kubectl(&format!("apply -f {}", quote::quote(path)))).await.map(|_| ())
}

/// How long a label step waits for a node that just joined to register: `kubeadm join` returns once the
/// kubelet has its certificate, and the kubelet creates its Node object a moment later.
pub const NODE_REGISTRATION_WAIT: Duration = Duration::from_secs(120);

pub async fn label(t: &dyn Transport, node: &str, labels: &[String]) -> Result<(), SshError> {
    let words = quote::join(labels.iter().map(String::as_str));
    let node = quote::quote(node);
    let wait = NODE_REGISTRATION_WAIT.as_secs();
    let script = format!(
        "kubectl --kubeconfig {ADMIN_CONF} wait --for=create node/{node} --timeout={wait}s >/dev/null && kubectl --kubeconfig {ADMIN_CONF} label node {node} {words} --overwrite"
    );
    t.run(&Command::script(script).timeout(NODE_REGISTRATION_WAIT + Duration::from_secs(60))).await.map(|_| ())
}

/// The Secret kubeadm's bootstrap-token authenticator reads: `bootstrap-token-<id>` in kube-system.
/// `id` and `secret` are the halves of the `<id>.<secret>` token; `expiration` is RFC 3339.
pub fn bootstrap_token_manifest(id: &str, secret: &str, expiration: &str) -> String {
    let manifest = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": format!("bootstrap-token-{id}"), "namespace": "kube-system"},
        "type": "bootstrap.kubernetes.io/token",
        "stringData": {
            "description": "kubeha: joins of one run; deleted when the run is done",
            "token-id": id,
            "token-secret": secret,
            "expiration": expiration,
            "usage-bootstrap-authentication": "true",
            "usage-bootstrap-signing": "true",
            "auth-extra-groups": "system:bootstrappers:kubeadm:default-node-token",
        },
    });
    manifest.to_string()
}

/// Creates or refreshes (same id, new expiration) the bootstrap token. The manifest holds the token's
/// secret, so it travels on stdin: never in argv, where `ps` and the host log would show it.
pub async fn refresh_token(t: &dyn Transport, id: &str, secret: &str, expiration: &str) -> Result<(), SshError> {
    let manifest = bootstrap_token_manifest(id, secret, expiration);
    t.run(&kubectl("apply -f -").stdin(manifest.into_bytes())).await.map(|_| ())
}

/// Deletes the bootstrap token's Secret; one already gone (expired and cleaned up, or deleted) is fine.
/// Only the token's public half, its id, is in the command.
pub async fn delete_token(t: &dyn Transport, id: &str) -> Result<(), SshError> {
    let name = format!("bootstrap-token-{id}");
    t.run(&kubectl(&format!("delete secret -n kube-system {} --ignore-not-found", quote::quote(&name)))).await.map(|_| ())
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
    spec: NodeSpec,
    #[serde(default)]
    status: NodeStatus,
}

#[derive(serde::Deserialize)]
struct NodeMeta {
    name: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

#[derive(serde::Deserialize, Default)]
struct NodeSpec {
    #[serde(default)]
    unschedulable: bool,
}

#[derive(serde::Deserialize, Default)]
struct NodeStatus {
    #[serde(default)]
    addresses: Vec<NodeAddress>,
    #[serde(default)]
    conditions: Vec<NodeCondition>,
    #[serde(default, rename = "nodeInfo")]
    node_info: NodeInfo,
}

/// What the kubelet reports about its machine: the machine ID is /etc/machine-id as the kubelet read it,
/// the identity kubeha checks before it resets a host that left.
#[derive(serde::Deserialize, Default)]
struct NodeInfo {
    #[serde(default, rename = "machineID")]
    machine_id: String,
    #[serde(default, rename = "kubeletVersion")]
    kubelet_version: String,
}

#[derive(serde::Deserialize)]
struct NodeCondition {
    #[serde(rename = "type")]
    kind: String,
    status: String,
    #[serde(default)]
    message: String,
}

#[derive(serde::Deserialize)]
struct NodeAddress {
    #[serde(rename = "type")]
    kind: String,
    address: String,
}

fn node_list(json: &str) -> Result<NodeList, NodeListError> {
    serde_json::from_str(json).map_err(NodeListError)
}

/// `kubectl get nodes -o json` printed something that is not a node list.
#[derive(Debug, thiserror::Error)]
#[error("kubectl get nodes -o json: {0}")]
pub struct NodeListError(serde_json::Error);

/// A registered node as `kubectl get nodes -o json` reports it: what kubeha plans and verifies from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegisteredNode {
    pub labels: BTreeMap<String, String>,
    /// Its InternalIP: how a node that left the inventory is reached.
    pub address: Option<std::net::IpAddr>,
    /// The machine ID its kubelet read from /etc/machine-id: a host leaving is reset only when the machine at
    /// its address is still that machine.
    pub machine_id: Option<String>,
    /// Its kubelet's version and its scheduling state (what an upgrade plans from).
    pub kubelet: NodeState,
}

/// The registered nodes, from `kubectl get nodes -o json`.
pub fn parse_registered(json: &str) -> Result<BTreeMap<String, RegisteredNode>, NodeListError> {
    Ok(node_list(json)?
        .items
        .into_iter()
        .map(|n| {
            let node = RegisteredNode {
                address: n.status.addresses.iter().find(|a| a.kind == "InternalIP").and_then(|a| a.address.parse().ok()),
                machine_id: Some(n.status.node_info.machine_id.clone()).filter(|id| !id.is_empty()),
                kubelet: NodeState {
                    kubelet_version: crate::inventory::Version::parse(&n.status.node_info.kubelet_version),
                    unschedulable: n.spec.unschedulable,
                    drained_by_kubeha: n.metadata.annotations.contains_key(DRAINED_ANNOTATION),
                },
                labels: n.metadata.labels,
            };
            (n.metadata.name, node)
        })
        .collect())
}

/// The nodes whose Ready condition is not True, each with what its kubelet says (the condition's message,
/// e.g. "container runtime network not ready"), from the same output. A node without the condition yet
/// (just registered) is not Ready.
pub fn parse_not_ready(json: &str) -> Result<BTreeMap<String, String>, NodeListError> {
    Ok(node_list(json)?
        .items
        .into_iter()
        .filter_map(|n| match n.status.conditions.iter().find(|c| c.kind == "Ready") {
            Some(c) if c.status == "True" => None,
            Some(c) => Some((n.metadata.name, format!("Ready={}{}", c.status, if c.message.is_empty() { String::new() } else { format!(": {}", c.message) }))),
            None => Some((n.metadata.name, "no Ready condition yet".to_string())),
        })
        .collect())
}

/// The annotation kubeha puts on a node it drains for an upgrade (its value: the version being installed),
/// removed when it uncordons the node: a node cordoned with it was left so by a run that stopped half way,
/// while one cordoned without it was cordoned by someone else and stays so.
pub const DRAINED_ANNOTATION: &str = "kubeha.io/drained-for-upgrade";

/// What an upgrade needs to know of a registered node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeState {
    /// The version its kubelet reports (`None` when it reports none kubeha can read).
    pub kubelet_version: Option<crate::inventory::Version>,
    pub unschedulable: bool,
    /// kubeha drained it (see DRAINED_ANNOTATION).
    pub drained_by_kubeha: bool,
}

/// The cluster's kubeadm configuration (kube-system/kubeadm-config's ClusterConfiguration): what every
/// `kubeadm join` and `kubeadm upgrade` renders the control-plane manifests from.
pub fn cluster_configuration_command() -> Command {
    kubectl("-n kube-system get configmap kubeadm-config -o jsonpath='{.data.ClusterConfiguration}'")
}

/// What kubeha reads of the cluster's ClusterConfiguration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterConfigurationSeen {
    /// `kubernetesVersion`, which `kubeadm upgrade apply` moves last, after the first control plane's pods:
    /// the mark that the cluster-wide part of an upgrade is done, and what `kubeadm upgrade node` installs.
    pub version: Option<crate::inventory::Version>,
    /// `etcd.external.endpoints`: the etcd members every API server kubeadm writes from now on will use.
    pub etcd_endpoints: Option<Vec<String>>,
}

#[derive(serde::Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct ClusterConfigurationFields {
    kubernetes_version: String,
    etcd: EtcdFields,
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct EtcdFields {
    external: Option<ExternalEtcdFields>,
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct ExternalEtcdFields {
    endpoints: Vec<String>,
}

/// Reads a ClusterConfiguration; what it does not say (or a text that is no such YAML) is `None`.
pub fn parse_cluster_configuration(text: &str) -> ClusterConfigurationSeen {
    let Ok(fields) = serde_saphyr::from_str::<ClusterConfigurationFields>(text) else { return ClusterConfigurationSeen::default() };
    ClusterConfigurationSeen {
        version: crate::inventory::Version::parse(fields.kubernetes_version.trim()),
        etcd_endpoints: fields.etcd.external.map(|e| e.endpoints),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::Version;

    #[test]
    fn nodes_with_labels_addresses_and_machine_ids() {
        let json = r#"{"apiVersion":"v1","kind":"List","items":[{"metadata":{"name":"cp-1","labels":{"topology.kubernetes.io/zone":"az-a"}}},{"metadata":{"name":"wk-1"}}]}"#;
        let nodes = parse_registered(json).unwrap();
        assert_eq!(nodes["cp-1"].labels["topology.kubernetes.io/zone"], "az-a");
        assert!(nodes["wk-1"].labels.is_empty());
        assert!(parse_registered("not json").unwrap_err().to_string().starts_with("kubectl get nodes"));
        let with_status = r#"{"items":[{"metadata":{"name":"wk-1"},"status":{"addresses":[{"type":"Hostname","address":"wk-1"},{"type":"InternalIP","address":"198.18.0.21"}]}},{"metadata":{"name":"wk-2"}}]}"#;
        let nodes = parse_registered(with_status).unwrap();
        assert_eq!(nodes["wk-1"].address.unwrap().to_string(), "198.18.0.21");
        assert_eq!(nodes["wk-2"].address, None, "a node without an InternalIP has no address");
        let with_info = r#"{"items":[{"metadata":{"name":"wk-1"},"status":{"nodeInfo":{"machineID":"0a1b","kubeletVersion":"v1.36.3"}}},{"metadata":{"name":"wk-2"},"status":{"nodeInfo":{}}}]}"#;
        let nodes = parse_registered(with_info).unwrap();
        assert_eq!(nodes["wk-1"].machine_id.as_deref(), Some("0a1b"));
        assert_eq!(nodes["wk-2"].machine_id, None, "an empty machine ID is none");
    }

    /// A ClusterConfiguration as kubeadm stores it in kube-system/kubeadm-config (keys sorted, v1beta4).
    #[test]
    fn the_cluster_configuration_s_version_and_etcd_endpoints() {
        let stored = "apiServer:\n  certSANs:\n  - 198.18.0.100\napiVersion: kubeadm.k8s.io/v1beta4\ncaCertificateValidityPeriod: 87600h0m0s\n\
            certificatesDir: /etc/kubernetes/pki\nclusterName: lab\ncontrolPlaneEndpoint: 198.18.0.100:6443\ncontrollerManager: {}\ndns:\n  disabled: true\n\
            etcd:\n  external:\n    caFile: /etc/kubeha/pki/etcd/ca.crt\n    certFile: /etc/kubeha/pki/etcd/apiserver-etcd-client.crt\n\
            \x20   endpoints:\n    - https://198.18.0.11:2379\n    - https://198.18.0.12:2379\n    keyFile: /etc/kubeha/pki/etcd/apiserver-etcd-client.key\n\
            imageRepository: registry.k8s.io\nkind: ClusterConfiguration\nkubernetesVersion: v1.36.3\nnetworking:\n  dnsDomain: cluster.local\n\
            \x20 podSubnet: 10.244.0.0/16\nproxy: {}\nscheduler: {}\n";
        let seen = parse_cluster_configuration(stored);
        assert_eq!(seen.version, Version::parse("1.36.3"));
        assert_eq!(seen.etcd_endpoints, Some(vec!["https://198.18.0.11:2379".to_string(), "https://198.18.0.12:2379".to_string()]));
        let local = "etcd:\n  local:\n    dataDir: /var/lib/etcd\nkind: ClusterConfiguration\n";
        assert_eq!(parse_cluster_configuration(local).etcd_endpoints, None, "a local etcd has no endpoints");
    }

    #[test]
    fn node_states_for_upgrades() {
        let json = r#"{"items":[
            {"metadata":{"name":"cp-1","annotations":{"kubeha.io/drained-for-upgrade":"1.36.3"}},"spec":{"unschedulable":true},"status":{"nodeInfo":{"kubeletVersion":"v1.35.4"}}},
            {"metadata":{"name":"wk-1"},"spec":{"unschedulable":true},"status":{"nodeInfo":{"kubeletVersion":"v1.36.3"}}},
            {"metadata":{"name":"wk-2"},"spec":{},"status":{"nodeInfo":{"kubeletVersion":"v1.36.3-rc.0"}}}]}"#;
        let nodes = parse_registered(json).unwrap();
        let states: BTreeMap<&str, &NodeState> = nodes.iter().map(|(name, n)| (name.as_str(), &n.kubelet)).collect();
        assert_eq!(*states["cp-1"], NodeState { kubelet_version: Version::parse("1.35.4"), unschedulable: true, drained_by_kubeha: true });
        assert_eq!(*states["wk-1"], NodeState { kubelet_version: Version::parse("1.36.3"), unschedulable: true, drained_by_kubeha: false });
        assert_eq!(states["wk-2"].kubelet_version, None, "a pre-release is no version kubeha plans from");
        let config = "apiServer: {}\nkind: ClusterConfiguration\nkubernetesVersion: v1.35.4\nnetworking: {}\n";
        assert_eq!(parse_cluster_configuration(config), ClusterConfigurationSeen { version: Version::parse("1.35.4"), etcd_endpoints: None });
        assert_eq!(parse_cluster_configuration("kind: ClusterConfiguration\n").version, None);
        assert_eq!(parse_cluster_configuration("{not: [yaml").version, None);
    }

    #[test]
    fn nodes_not_ready_with_the_kubelets_reason() {
        let json = r#"{"items":[
            {"metadata":{"name":"cp-1"},"status":{"conditions":[{"type":"MemoryPressure","status":"False"},{"type":"Ready","status":"True","message":"kubelet is posting ready status"}]}},
            {"metadata":{"name":"wk-1"},"status":{"conditions":[{"type":"Ready","status":"False","message":"container runtime network not ready"}]}},
            {"metadata":{"name":"wk-2"},"status":{"conditions":[{"type":"Ready","status":"Unknown"}]}},
            {"metadata":{"name":"wk-3"}}]}"#;
        let not_ready = parse_not_ready(json).unwrap();
        assert_eq!(not_ready.len(), 3, "{not_ready:?}");
        assert_eq!(not_ready["wk-1"], "Ready=False: container runtime network not ready");
        assert_eq!(not_ready["wk-2"], "Ready=Unknown");
        assert_eq!(not_ready["wk-3"], "no Ready condition yet");
        assert!(parse_not_ready("[").is_err());
    }

    /// The restart script run by sh over a fake /etc/kubernetes, with stand-ins for kubeadm and pidof
    /// (the pod is "stopped" at once): renew first, every manifest back in place, a leftover of a killed
    /// run put back before anything else.
    #[test]
    fn the_restart_script_renews_then_moves_each_manifest_out_and_back() {
        let root = tempfile::tempdir().unwrap();
        let at = |p: &str| root.path().join(p.trim_start_matches('/'));
        let bin = at("/bin");
        std::fs::create_dir_all(at(MANIFESTS)).unwrap();
        std::fs::create_dir_all(&bin).unwrap();
        let log = at("/log");
        let stub = |name: &str, body: &str| {
            let path = bin.join(name);
            std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        };
        stub("kubeadm", &format!("echo \"kubeadm $*\" >> {}", log.display()));
        stub("pidof", &format!("echo \"pidof $1 $(ls {} | tr '\\n' ' ')\" >> {}; exit 1", at(MANIFESTS).display(), log.display()));
        std::fs::write(at("/etc/kubernetes/manifests/kube-apiserver.yaml"), "a").unwrap();
        std::fs::write(at("/etc/kubernetes/manifests/kube-scheduler.yaml"), "s").unwrap();
        // Left out by a killed run:
        std::fs::write(at("/etc/kubernetes/kube-controller-manager.yaml.kubeha"), "c").unwrap();
        let script = restart_script(true).replace("/etc/kubernetes", &at("/etc/kubernetes").display().to_string());
        let out = std::process::Command::new("sh").arg("-c").arg(&script).env("PATH", format!("{}:/usr/bin:/bin", bin.display())).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let log = std::fs::read_to_string(&log).unwrap();
        assert_eq!(
            log.lines().collect::<Vec<_>>(),
            [
                "kubeadm certs renew all",
                "pidof kube-apiserver kube-controller-manager.yaml kube-scheduler.yaml ",
                "pidof kube-apiserver kube-controller-manager.yaml kube-scheduler.yaml ",
                "pidof kube-controller-manager kube-apiserver.yaml kube-scheduler.yaml ",
                "pidof kube-controller-manager kube-apiserver.yaml kube-scheduler.yaml ",
                "pidof kube-scheduler kube-apiserver.yaml kube-controller-manager.yaml ",
                "pidof kube-scheduler kube-apiserver.yaml kube-controller-manager.yaml ",
            ]
        );
        let back: Vec<String> = std::fs::read_dir(at(MANIFESTS)).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        assert_eq!(back.len(), 3, "{back:?}");
        assert!(!restart_script(false).contains("kubeadm certs renew"));
        let set_aside: Vec<String> = STATIC_PODS.iter().map(|p| format!("/etc/kubernetes/{p}.yaml.kubeha")).collect();
        assert_eq!(set_aside, crate::paths::SET_ASIDE_MANIFESTS, "the probe looks where the script sets manifests aside");
    }
}

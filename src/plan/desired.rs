//! The desired state of every host as files: rendered configuration, the etcd PKI and the cluster state from
//! the control planes' store, the Kubernetes CA for `kubeadm init`, and the CNI manifest. Pure: the planner
//! compares digests with what the hosts have, the executor uploads the same bytes.
use crate::inventory::{Host, Inventory};
use crate::render::{self, RenderedFile, Target, context};
use crate::state::{ClusterState, STATE_FILE};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

pub const KUBERNETES_CA_CERT: &str = "/etc/kubernetes/pki/ca.crt";
pub const KUBERNETES_CA_KEY: &str = "/etc/kubernetes/pki/ca.key";
pub const ADMIN_CONF: &str = "/etc/kubernetes/admin.conf";
pub const KUBELET_CONF: &str = "/etc/kubernetes/kubelet.conf";
/// kubeadm's certificates (and the Kubernetes CA kubeha places there).
pub const KUBERNETES_PKI_DIR: &str = "/etc/kubernetes/pki";
/// The kubeconfigs kubeadm writes with an embedded client certificate (kubelet.conf usually points at
/// KUBELET_CLIENT_CERT instead; super-admin.conf exists on the first control plane since 1.29).
pub const KUBECONFIGS: [&str; 5] =
    [ADMIN_CONF, "/etc/kubernetes/super-admin.conf", "/etc/kubernetes/controller-manager.conf", "/etc/kubernetes/scheduler.conf", KUBELET_CONF];
/// kubeadm's static pods that read certificates or kubeconfigs only at start (etcd is kubeha's own service),
/// and where a restart sets each manifest aside (`<pod>.yaml.kubeha` next to the manifests folder) while
/// the kubelet stops the pod. The probe looks for the latter: one left there by a run that died keeps that
/// pod down until a restart puts it back.
pub const STATIC_PODS: [&str; 3] = ["kube-apiserver", "kube-controller-manager", "kube-scheduler"];
pub const MANIFESTS_DIR: &str = "/etc/kubernetes/manifests";
pub const SET_ASIDE_MANIFESTS: [&str; 3] =
    ["/etc/kubernetes/kube-apiserver.yaml.kubeha", "/etc/kubernetes/kube-controller-manager.yaml.kubeha", "/etc/kubernetes/kube-scheduler.yaml.kubeha"];
/// The kubelet's rotating client certificate and key (one file).
pub const KUBELET_CLIENT_CERT: &str = "/var/lib/kubelet/pki/kubelet-client-current.pem";
pub const CNI_DIR: &str = "/etc/kubeha/cni";
/// Holds the digest of the CNI manifest last applied successfully: applied state is not a file kubectl keeps.
pub const CNI_APPLIED: &str = "/etc/kubeha/cni/applied";

/// The owner and group of every file kubeha writes (the upload sets them; `FixFileModes` restores them).
pub const FILE_OWNER: &str = "root:root";

#[derive(Clone)]
pub struct ManagedFile {
    pub path: String,
    pub mode: u32,
    pub contents: Vec<u8>,
    pub digest: String,
}

impl std::fmt::Debug for ManagedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ManagedFile({} {:o} {})", self.path, self.mode, &self.digest[..12])
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

impl ManagedFile {
    pub fn new(path: impl Into<String>, mode: u32, contents: Vec<u8>) -> Self {
        let digest = sha256_hex(&contents);
        ManagedFile { path: path.into(), mode, contents, digest }
    }
}

/// What each host should have: host name -> path -> file.
#[derive(Clone, Debug, Default)]
pub struct Desired {
    pub files: BTreeMap<String, BTreeMap<String, ManagedFile>>,
    /// The seed: the control plane whose kubeadm file is the InitConfiguration (it runs `kubeadm init` when
    /// no cluster exists, and uploads the ClusterConfiguration later), which holds the cluster CA and the
    /// CNI marker, and runs the admin steps. Chosen by `plan::seed_control_plane`, taken here from the
    /// rendered files, so the files and the plan cannot disagree.
    pub seed: String,
    /// Every control plane: any of them may become the seed, so each is probed for the seed's own files.
    pub control_planes: Vec<String>,
}

/// The file groups the planner reasons about; each maps to a phase and its service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Group {
    State,
    Host,
    Etcd,
    LoadBalancer,
    Kubeadm,
    KubernetesCa,
    Cni,
}

pub fn group(path: &str) -> Group {
    match path {
        STATE_FILE => Group::State,
        "/etc/sysctl.d/90-kubeha.conf" | "/etc/modules-load.d/kubeha.conf" => Group::Host,
        "/etc/etcd/etcd.conf.yml" | "/etc/systemd/system/etcd.service" | "/etc/kubeha/etcdctl.env" => Group::Etcd,
        p if p.starts_with(context::ETCD_PKI_DIR) => Group::Etcd,
        "/etc/haproxy/haproxy.cfg"
        | "/etc/keepalived/keepalived.conf"
        | context::CHECK_SCRIPT
        | context::KUBEHA_METRICS_SCRIPT
        | context::KUBEHA_METRICS_SOCKET
        | context::KUBEHA_METRICS_SERVICE => Group::LoadBalancer,
        render::KUBEADM_CONFIG => Group::Kubeadm,
        KUBERNETES_CA_CERT | KUBERNETES_CA_KEY => Group::KubernetesCa,
        _ => Group::Cni,
    }
}

impl Desired {
    pub fn build(inv: &Inventory, rendered: &[RenderedFile], state: &ClusterState) -> Desired {
        let first = rendered
            .iter()
            .find(|f| f.template == render::INIT_TEMPLATE)
            .and_then(|f| match &f.target {
                Target::Host(h) => Some(h.clone()),
                Target::Cluster => None,
            })
            .unwrap_or_default();
        let mut files: BTreeMap<String, BTreeMap<String, ManagedFile>> = BTreeMap::new();
        let mut add = |host: &str, f: ManagedFile| {
            files.entry(host.to_string()).or_default().insert(f.path.clone(), f);
        };
        for f in rendered {
            match &f.target {
                Target::Host(h) => add(h, ManagedFile::new(&f.path, f.mode, f.contents.clone().into_bytes())),
                Target::Cluster => {
                    let name = f.path.rsplit('/').next().unwrap_or(&f.path);
                    let manifest = ManagedFile::new(format!("{CNI_DIR}/{name}"), 0o644, f.contents.clone().into_bytes());
                    add(&first, ManagedFile::new(CNI_APPLIED, 0o644, format!("{}\n", manifest.digest).into_bytes()));
                    add(&first, manifest);
                }
            }
        }
        for h in inv.control_planes() {
            add(&h.name, ManagedFile::new(STATE_FILE, 0o600, state.to_json().into_bytes()));
            for f in state.etcd_files(&h.name) {
                let bytes = f.bytes().to_vec();
                add(&h.name, ManagedFile::new(f.path, f.mode, bytes));
            }
        }
        add(&first, ManagedFile::new(KUBERNETES_CA_CERT, 0o644, state.kubernetes_ca.cert.clone().into_bytes()));
        add(&first, ManagedFile::new(KUBERNETES_CA_KEY, 0o600, state.kubernetes_ca.key.expose().as_bytes().to_vec()));
        Desired { files, seed: first, control_planes: inv.control_planes().map(|h| h.name.clone()).collect() }
    }

    pub fn host_files(&self, host: &str) -> impl Iterator<Item = &ManagedFile> {
        self.files.get(host).into_iter().flat_map(|m| m.values())
    }

    pub fn file(&self, host: &str, path: &str) -> Option<&ManagedFile> {
        self.files.get(host).and_then(|m| m.get(path))
    }

    pub fn paths_in(&self, host: &Host, g: Group) -> Vec<String> {
        self.host_files(&host.name).filter(|f| group(&f.path) == g).map(|f| f.path.clone()).collect()
    }

    /// Every path kubeha manages on a host plus the kubeadm markers: what the state probe hashes. A control
    /// plane is also probed for the seed's own files (CA key, CNI manifest and marker): the seed is chosen
    /// from this probe, and whichever control plane it is, its files were observed.
    pub fn probe_paths(&self, host: &str) -> Vec<&str> {
        let mut paths: Vec<&str> = self.host_files(host).map(|f| f.path.as_str()).collect();
        paths.extend([ADMIN_CONF, KUBELET_CONF, KUBERNETES_CA_CERT]);
        if self.control_planes.iter().any(|c| c == host) {
            paths.extend(SET_ASIDE_MANIFESTS);
            paths.extend(self.host_files(&self.seed).map(|f| f.path.as_str()).filter(|p| matches!(group(p), Group::Cni | Group::KubernetesCa)));
        }
        paths.sort_unstable();
        paths.dedup();
        paths
    }
}

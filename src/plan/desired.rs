//! The desired state of every host as files: rendered configuration, the etcd PKI and the cluster state from
//! the control planes' store, the Kubernetes CA for `kubeadm init`, and the CNI manifest. Pure: the planner
//! compares digests with what the hosts have, the executor uploads the same bytes.
use crate::inventory::{Host, Inventory};
use crate::paths::{ADMIN_CONF, CNI_APPLIED, CNI_DIR, ETCD_BACKUP_TIMER, KUBELET_CONF, KUBERNETES_CA_CERT, KUBERNETES_CA_KEY, SET_ASIDE_MANIFESTS, STATE_FILE};

use crate::render::{self, Group, RenderedFile, Target};
use crate::state::ClusterState;
use std::collections::BTreeMap;

/// The owner and group of every file kubeha writes (the upload sets them; `FixFileModes` restores them).
pub const FILE_OWNER: &str = "root:root";

#[derive(Clone)]
pub struct ManagedFile {
    pub path: String,
    pub mode: u32,
    pub group: Group,
    pub contents: Vec<u8>,
    pub digest: String,
}

impl std::fmt::Debug for ManagedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ManagedFile({} {:o} {})", self.path, self.mode, &self.digest[..12])
    }
}

impl ManagedFile {
    pub fn new(path: impl Into<String>, mode: u32, group: Group, contents: Vec<u8>) -> Self {
        let digest = crate::digest::sha256_hex(&contents);
        ManagedFile { path: path.into(), mode, group, contents, digest }
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
                Target::Host(h) => add(h, ManagedFile::new(&f.path, f.mode, f.group, f.contents.clone().into_bytes())),
                Target::Cluster => {
                    let name = f.path.rsplit('/').next().unwrap_or(&f.path);
                    let manifest = ManagedFile::new(format!("{CNI_DIR}/{name}"), 0o644, f.group, f.contents.clone().into_bytes());
                    add(&first, ManagedFile::new(CNI_APPLIED, 0o644, Group::Cni, format!("{}\n", manifest.digest).into_bytes()));
                    add(&first, manifest);
                }
            }
        }
        for h in inv.control_planes() {
            add(&h.name, ManagedFile::new(STATE_FILE, 0o600, Group::State, state.to_json().into_bytes()));
            for f in state.etcd_files(&h.name) {
                let bytes = f.bytes().to_vec();
                add(&h.name, ManagedFile::new(f.path, f.mode, Group::Etcd, bytes));
            }
        }
        add(&first, ManagedFile::new(KUBERNETES_CA_CERT, 0o644, Group::KubernetesCa, state.kubernetes_ca.cert.clone().into_bytes()));
        add(&first, ManagedFile::new(KUBERNETES_CA_KEY, 0o600, Group::KubernetesCa, state.kubernetes_ca.key.expose().as_bytes().to_vec()));
        Desired { files, seed: first, control_planes: inv.control_planes().map(|h| h.name.clone()).collect() }
    }

    pub fn host_files(&self, host: &str) -> impl Iterator<Item = &ManagedFile> {
        self.files.get(host).into_iter().flat_map(|m| m.values())
    }

    pub fn file(&self, host: &str, path: &str) -> Option<&ManagedFile> {
        self.files.get(host).and_then(|m| m.get(path))
    }

    pub fn paths_in(&self, host: &Host, g: Group) -> Vec<String> {
        self.host_files(&host.name).filter(|f| f.group == g).map(|f| f.path.clone()).collect()
    }

    /// Every path kubeha manages on a host plus the kubeadm markers: what the state probe hashes. A control
    /// plane is also probed for the seed's own files (CA key, CNI manifest and marker): the seed is chosen
    /// from this probe, and whichever control plane it is, its files were observed.
    pub fn probe_paths(&self, host: &str) -> Vec<&str> {
        let mut paths: Vec<&str> = self.host_files(host).map(|f| f.path.as_str()).collect();
        paths.extend([ADMIN_CONF, KUBELET_CONF, KUBERNETES_CA_CERT]);
        if self.control_planes.iter().any(|c| c == host) {
            paths.extend(SET_ASIDE_MANIFESTS);
            // Probed whether backups are on or not: a timer left from when they were on is stopped and removed.
            paths.push(ETCD_BACKUP_TIMER);
            paths.extend(self.host_files(&self.seed).filter(|f| matches!(f.group, Group::Cni | Group::KubernetesCa)).map(|f| f.path.as_str()));
        }
        paths.sort_unstable();
        paths.dedup();
        paths
    }
}

//! A plan is data: ordered phases of steps, each on a host, with quorum gates as steps of their own.
//! The builder is pure (inventory + desired files + what was observed -> plan), so plans can be printed,
//! diffed and golden-tested, and the executor runs exactly what was shown. `plan --offline` is the same
//! builder against hosts observed as empty.
mod converge;
pub mod desired;
mod display;
pub mod observed;
pub mod preflight;
pub mod verify;

pub use crate::etcd::gate::{Gate, GateWhen};
pub use crate::render::context::EtcdCluster;
pub use converge::{RESTORE_HINT, converge, seed_control_plane};
pub use desired::Desired;
pub use display::{describe, text};
pub use observed::{Observed, ObservedHost};
pub use preflight::Finding;

use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub cluster: String,
    pub basis: Basis,
    /// Preflight results; a fatal one means apply refuses before changing anything.
    pub findings: Vec<Finding>,
    pub phases: Vec<Phase>,
}

impl Plan {
    pub fn steps(&self) -> impl Iterator<Item = &Step> {
        self.phases.iter().flat_map(|p| p.steps.iter())
    }

    /// Steps that change a host or the cluster (gates, waits and checks do not).
    pub fn changes(&self) -> usize {
        self.steps().filter(|s| s.action.changes()).count()
    }

    pub fn blocked(&self) -> bool {
        self.findings.iter().any(|f| f.fatal)
    }
}

/// What the plan assumed about the hosts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Basis {
    /// `plan --offline`: every host assumed fresh.
    Fresh,
    /// What the hosts answered.
    Observed,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Phase {
    pub name: &'static str,
    pub title: &'static str,
    pub execution: Execution,
    pub steps: Vec<Step>,
}

/// How a phase's steps may run: the executor may overlap steps only where the plan says so.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum Execution {
    Sequential,
    Parallel { limit: usize },
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    /// Stable across runs of the same plan: the journal records completed steps by this id.
    pub id: String,
    /// The host the step runs on; gates run on a member that is already healthy.
    pub host: String,
    pub action: Action,
    /// Why the step is needed ("etcd.conf.yml differs", "member missing", "fresh host").
    pub reason: String,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum Action {
    /// The cluster state file (secrets, CAs, member certificates) on a control plane.
    StoreClusterState {
        files: Vec<String>,
    },
    ConfigureHost {
        files: Vec<String>,
    },
    /// Installs on one host what the software phase gives it: each artifact (by its label, `etcd 3.6.16
    /// (amd64)`) obtained on the operator's machine, verified against its upstream checksum, uploaded, its
    /// programs put in place atomically and recorded; `staged` ones (etcd on a running member) are uploaded
    /// beside it and swapped in by the member's restart between quorum gates. Then the units in `files`, OS
    /// `packages` from the host's package manager, and a restart of `restart` (a running kubelet).
    InstallSoftware {
        artifacts: Vec<String>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        staged: Vec<String>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        files: Vec<String>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        packages: Vec<&'static str>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        restart: Vec<&'static str>,
    },
    /// PKI, configuration, unit and etcdctl.env of one member.
    InstallEtcdFiles {
        member: String,
        files: Vec<String>,
    },
    StartEtcdMember {
        member: String,
        initial_cluster_state: EtcdCluster,
        restart: bool,
        /// For a member joining an existing cluster: the members at that moment plus itself (name=peer URL),
        /// written into its config just before the start, with initial-cluster-state existing.
        #[serde(skip_serializing_if = "Option::is_none")]
        initial_cluster: Option<String>,
        /// The etcd version the software phase staged on this host: swapped in just before this start, and
        /// recorded as installed once the member runs on it.
        #[serde(skip_serializing_if = "Option::is_none")]
        binary: Option<String>,
    },
    AddEtcdLearner {
        member: String,
        peer_url: String,
    },
    WaitLearnerCaughtUp {
        member: String,
    },
    PromoteEtcdLearner {
        member: String,
    },
    Gate(Gate),
    /// An etcd snapshot on a healthy voter, verified and kept in the rotation there: taken before the first
    /// membership change of a run, so every change has a way back.
    EtcdSnapshot {
        reason: String,
    },
    /// Waits until etcd's cluster version (`/version`'s `etcdcluster`) reaches `version` (major.minor),
    /// which etcd raises once every member runs that minor: the end of a rolling minor upgrade.
    WaitEtcdClusterVersion {
        version: String,
    },
    /// Hands etcd's leadership to another healthy voter when `from` leads (checked when the step runs:
    /// leadership moves on its own), before `from` is removed or restarted, so the cluster does not wait for
    /// an election.
    MoveEtcdLeader {
        from: String,
    },
    /// Removes a member that is not a control plane of the inventory (it may be dead).
    RemoveEtcdMember {
        member: String,
        /// etcd's member ID in hex, as etcdctl takes it.
        id: String,
    },
    /// Points a member at its host's new address (`etcdctl member update`): the other members dial the
    /// peer URL the cluster records, so a re-addressed member must be updated before it restarts there.
    UpdateEtcdPeerUrl {
        member: String,
        /// etcd's member ID in hex.
        id: String,
        peer_url: String,
    },
    /// Stops etcd and moves its data dir aside on a host that is not a member of the cluster but has data of
    /// an earlier one (removed, or left behind by a restore): it would otherwise rejoin with that old data.
    ClearEtcdData {
        member: String,
    },
    /// Places the files, then starts `services` in that order (reloads them when `restart`).
    StartLoadBalancer {
        files: Vec<String>,
        services: Vec<&'static str>,
        restart: bool,
    },
    CheckVip {
        vip: std::net::IpAddr,
    },
    /// Places the etcd backup script and units, then enables and (re)starts the timer (restarted when
    /// `restart`: a changed schedule is read by systemd only then).
    InstallEtcdBackup {
        files: Vec<String>,
        restart: bool,
    },
    /// Runs the backup once now (`systemctl start kubeha-etcd-backup.service`, waiting for it): a member that
    /// does not lead records the skip and succeeds.
    RunEtcdBackup,
    /// Backups were turned off (`spec.etcd.backup.enabled: false`): the timer stopped and disabled, the script
    /// and units removed. The backups already taken stay in their folder.
    RemoveEtcdBackup,
    /// Files whose change needs no action beyond placing them.
    PlaceFiles {
        files: Vec<String>,
    },
    /// `kubeadm init --config <config>`; the cluster endpoint is in that file (kubeadm takes no endpoint
    /// beside a config), and the WaitApiReady step after it shows the endpoint it waits on.
    KubeadmInit {
        config: String,
        files: Vec<String>,
        reset_first: bool,
    },
    /// The first control plane's changed kubeadm config, placed and its ClusterConfiguration uploaded to the
    /// cluster (kube-system/kubeadm-config): joins read the etcd endpoints from there, not from their own file.
    UploadKubeadmConfig {
        files: Vec<String>,
    },
    /// Uploads the control-plane certificates again (kubeadm keeps them 2 h) for joins after an earlier init.
    UploadCerts {
        config: String,
    },
    /// `kubeadm join --config <config>`, the endpoint in that file as for KubeadmInit.
    KubeadmJoinControlPlane {
        config: String,
        files: Vec<String>,
        reset_first: bool,
    },
    KubeadmJoinWorker {
        config: String,
        files: Vec<String>,
        reset_first: bool,
    },
    WaitApiReady {
        endpoint: String,
        node: String,
    },
    /// On a joined control plane: `kubeadm certs renew all` when `renew`, then kube-apiserver,
    /// kube-controller-manager and kube-scheduler restarted one at a time as new static pods (manifest out
    /// until the kubelet stopped it, then back: they read certificates and kubeconfigs only at start), then
    /// this node's API server's /readyz. Without `renew` only the restart: kube-apiserver loads a renewed
    /// etcd client certificate.
    RestartControlPlane {
        node: String,
        renew_certs: bool,
    },
    /// kubeadm writes `node`'s control-plane manifests again from the cluster's ClusterConfiguration
    /// (`kubeadm upgrade node phase control-plane` at the release it runs, no certificate renewal): its API
    /// server, whose manifest still names the etcd members of its join, restarts with `etcd_servers`. The
    /// step fails unless the manifest then names them; then this node's API server's /readyz.
    RefreshControlPlane {
        node: String,
        etcd_servers: Vec<String>,
    },
    /// One joined node moved to Kubernetes `version`. Its kubeadm first: `Apply` on the first control plane
    /// (`kubeadm upgrade apply`), `Node` on every other node (`kubeadm
    /// upgrade node`); a control plane then waits for its own API server's /readyz and for /readyz through
    /// `endpoint`. Then, when `kubelet`: the node cordoned and drained through `via`'s admin credential
    /// (PodDisruptionBudgets respected, bounded by spec.upgrade.drainTimeout), the staged kubelet swapped in
    /// and restarted, the node Ready and reporting `version`, uncordoned.
    UpgradeNode {
        node: String,
        version: String,
        kubeadm: KubeadmUpgrade,
        kubelet: bool,
        via: String,
        endpoint: String,
    },
    /// A node kubeha drained in a run that stopped before uncordoning it (it carries kubeha's drain
    /// annotation; a node someone else cordoned is left alone): uncordoned.
    UncordonNode {
        node: String,
    },
    /// `kubectl apply -f` of the CNI manifest, then the marker recording its digest (the step's reason says
    /// which CNI and version it was rendered for).
    ApplyCni {
        manifest: String,
    },
    LabelNode {
        node: String,
        labels: Vec<String>,
    },
    /// Creates or refreshes the cluster's bootstrap token (kubeha's cluster state holds it) on the seed, as
    /// the Secret kube-system/bootstrap-token-<id> expiring `valid_minutes` after the step runs: the token
    /// `kubeadm init` made lives 24 h, and a join with an expired one fails (in a replace, after etcd's
    /// membership already changed). The token never appears in the plan, argv or logs: kubectl reads it on stdin.
    RefreshJoinToken {
        valid_minutes: u32,
    },
    /// Deletes that Secret after the run's joins, so no join credential outlives the run that needed it.
    DeleteJoinToken,
    /// Evicts what runs on a node leaving the cluster, then deletes its Node object.
    RemoveNode {
        node: String,
    },
    /// Resets a reachable host that left the cluster: kubeadm reset, etcd, keepalived and HAProxy stopped and
    /// disabled (it must never claim the VIP again), etcd data moved aside, kubeha's secrets removed.
    ResetHost {
        host: String,
        /// The machine ID its Node reported, when it had one: the reset runs only on that machine (an
        /// address reused by another machine since is refused).
        machine_id: Option<String>,
    },
    Verify {
        checks: Vec<verify::VerifyCheck>,
    },
    /// Files whose contents are right but whose mode or owner is not: chmod and chown in place (owner
    /// `desired::FILE_OWNER`), never an upload. Nothing rereads a file for its mode, so nothing restarts.
    FixFileModes {
        files: Vec<FileMode>,
    },
}

/// What a node's `kubeadm upgrade` does in `Action::UpgradeNode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum KubeadmUpgrade {
    /// `kubeadm upgrade apply`: the cluster-wide part, on the first control plane.
    Apply,
    /// `kubeadm upgrade node`: this node's static pods (a control plane) and kubelet configuration.
    Node,
    /// Done in an earlier run: only the kubelet is left.
    Done,
}

/// The mode one file is set to by `Action::FixFileModes`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FileMode {
    pub path: String,
    /// Shown in octal ("0600") in the JSON plan, as people write modes.
    #[serde(serialize_with = "octal")]
    pub mode: u32,
}

fn octal<S: serde::Serializer>(mode: &u32, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{mode:04o}"))
}

impl Action {
    /// The files the step uploads (each with its desired mode and owner): whatever drifted in them is fixed
    /// by the upload, so no FixFileModes needs to touch them.
    pub fn placed_files(&self) -> Vec<&str> {
        fn paths(files: &[String]) -> Vec<&str> {
            files.iter().map(String::as_str).collect()
        }
        match self {
            Action::StoreClusterState { files }
            | Action::ConfigureHost { files }
            | Action::InstallEtcdFiles { files, .. }
            | Action::StartLoadBalancer { files, .. }
            | Action::InstallEtcdBackup { files, .. }
            | Action::PlaceFiles { files }
            | Action::KubeadmInit { files, .. }
            | Action::UploadKubeadmConfig { files }
            | Action::KubeadmJoinControlPlane { files, .. }
            | Action::KubeadmJoinWorker { files, .. } => paths(files),
            Action::ApplyCni { manifest, .. } => vec![manifest.as_str(), crate::paths::CNI_APPLIED],
            _ => Vec::new(),
        }
    }

    /// Whether the step changes etcd's membership (what gates and snapshots guard).
    pub fn changes_membership(&self) -> bool {
        matches!(self, Action::AddEtcdLearner { .. } | Action::PromoteEtcdLearner { .. } | Action::RemoveEtcdMember { .. } | Action::UpdateEtcdPeerUrl { .. })
    }

    pub fn changes(&self) -> bool {
        !matches!(
            self,
            Action::Gate(_)
                | Action::EtcdSnapshot { .. }
                | Action::WaitLearnerCaughtUp { .. }
                | Action::WaitEtcdClusterVersion { .. }
                | Action::CheckVip { .. }
                | Action::WaitApiReady { .. }
                | Action::Verify { .. }
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    #[error(transparent)]
    Render(#[from] crate::render::RenderError),
}

/// The plan of a cluster built from nothing (`plan --offline`): the same builder against hosts that have
/// nothing yet, with material made in memory and thrown away.
pub fn offline(inv: &crate::inventory::Inventory) -> Result<Plan, OfflineError> {
    let state = crate::state::ClusterState::create(inv)?;
    let rendered = crate::render::render(inv, &state.secrets, &crate::render::templates::Templates::builtin().map_err(crate::render::RenderError::from)?)?;
    Ok(converge(inv, &Desired::build(inv, &rendered, &state), &Observed::default(), Basis::Fresh))
}

//! One plan step, carried out: the dispatch from an Action to the phase functions, over the step's host.
//! Every step is idempotent on its own (uploads skip identical files, membership changes check first,
//! starts of running services are no-ops), so a step that ran before a kill may run again safely.
use crate::inventory::Inventory;
use crate::paths::{CNI_APPLIED, CONTAINERD_UNIT, KUBELET_UNIT};
use crate::phases::backup::BackupError;
use crate::phases::etcd::EtcdStepError;
use crate::phases::kubeadm::ReadyError;
use crate::phases::retire::ResetError;
use crate::phases::snapshot::SnapshotError;
use crate::phases::software::SoftwareError;
use crate::phases::upgrade::UpgradeError;
use crate::phases::{self, backup, etcd, files, kubeadm, loadbalancer, retire, snapshot, software, upgrade};
use crate::plan::desired::Desired;
use crate::plan::{Action, Step};
use crate::render::secrets::Secrets;
use crate::ssh::{SshError, Transport};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a step needs besides itself: the desired files and a transport per host.
pub struct StepContext {
    pub inv: Arc<Inventory>,
    pub desired: Arc<Desired>,
    pub hosts: HashMap<String, Arc<dyn Transport>>,
    /// The cluster's secrets (the bootstrap token for RefreshJoinToken); Debug never shows them.
    pub secrets: Arc<Secrets>,
    /// The run's artifacts, obtained on this machine when a software step first needs each.
    pub artifacts: Arc<software::Store>,
    /// Each host's os-release ID from the facts (which package manager installs HAProxy and keepalived).
    pub os_ids: HashMap<String, String>,
}

/// Why a step failed, by kind, so that the advice after a failed run can say what to fix. Every message
/// names the host and what was being done; the caller scrubs secrets before anyone sees it.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// The host could not be reached, or a command on it failed.
    #[error(transparent)]
    Ssh(#[from] SshError),
    /// etcd refused a change, or a quorum gate did not pass.
    #[error(transparent)]
    Etcd(#[from] EtcdStepError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// A release file could not be obtained on this machine, or installed on the host.
    #[error(transparent)]
    Software(#[from] SoftwareError),
    /// The backup timer's script failed when the plan ran it (after its install).
    #[error(transparent)]
    Backup(#[from] BackupError),
    /// A wait that ran out: `last` is what was seen last, `look` where to look for why.
    #[error("{what}: {last} after {} s ({look})", within.as_secs())]
    Timeout { what: String, within: Duration, last: String, look: &'static str },
    /// The final checks of a run, each "name: detail".
    #[error("verification failed: {}", failed.join("; "))]
    Verification { failed: Vec<String> },
    /// Abandoned by a second Ctrl-C while it ran; not a failure of the step.
    #[error("abandoned by Ctrl-C while it ran; the next apply runs it again")]
    Interrupted,
    /// What this run lacks to carry out the step (a host it has no connection to, a file it did not render),
    /// or a refusal of the host's own (another machine at a leaving host's address).
    #[error("{0}")]
    Other(String),
}

impl From<ReadyError> for StepError {
    fn from(e: ReadyError) -> Self {
        match e {
            ReadyError::Ssh(e) => StepError::Ssh(e),
            // An API server that does not get ready is the kubelet's or a static pod's story.
            ReadyError::NotReady { host, what, within, last } => {
                StepError::Timeout { what: format!("{host}: {what}"), within, last, look: "journalctl -u kubelet; crictl ps -a" }
            }
        }
    }
}

impl From<kubeadm::RefreshError> for StepError {
    fn from(e: kubeadm::RefreshError) -> Self {
        match e {
            kubeadm::RefreshError::Ssh(e) => StepError::Ssh(e),
            kubeadm::RefreshError::Ready(e) => e.into(),
            other @ kubeadm::RefreshError::StillStale { .. } => StepError::Other(other.to_string()),
        }
    }
}

impl From<UpgradeError> for StepError {
    fn from(e: UpgradeError) -> Self {
        match e {
            UpgradeError::Ssh(e) => StepError::Ssh(e),
            UpgradeError::Ready(e) => e.into(),
            UpgradeError::NodeNotReady { node, version, within, last } => StepError::Timeout {
                what: format!("{node}: Ready on v{version}"),
                within,
                last,
                look: "journalctl -u kubelet on the node; kubectl describe node",
            },
        }
    }
}

impl From<ResetError> for StepError {
    fn from(e: ResetError) -> Self {
        match e {
            ResetError::Ssh(e) => StepError::Ssh(e),
            other => StepError::Other(other.to_string()),
        }
    }
}

impl StepError {
    /// The SSH error under this one, whichever phase met it.
    pub fn ssh(&self) -> Option<&SshError> {
        match self {
            StepError::Ssh(e)
            | StepError::Etcd(EtcdStepError::Ssh(e))
            | StepError::Snapshot(SnapshotError::Ssh(e))
            | StepError::Software(SoftwareError::Ssh(e)) => Some(e),
            _ => None,
        }
    }
}

impl StepContext {
    /// A context whose artifacts come from the inventory's source through the operator's cache.
    pub fn new(inv: Arc<Inventory>, desired: Arc<Desired>, hosts: HashMap<String, Arc<dyn Transport>>, secrets: Arc<Secrets>) -> Self {
        let artifacts = Arc::new(software::Store::for_inventory(&inv));
        Self { inv, desired, hosts, secrets, artifacts, os_ids: HashMap::new() }
    }

    /// With each host's os-release ID, from the facts the plan was made with.
    pub fn with_os_ids(mut self, observed: &crate::plan::Observed) -> Self {
        self.os_ids = observed.hosts.iter().filter_map(|(h, o)| Some((h.clone(), o.facts.as_ref()?.os_id.clone()))).collect();
        self
    }

    fn transport(&self, host: &str) -> Result<&dyn Transport, StepError> {
        self.hosts.get(host).map(|t| t.as_ref()).ok_or_else(|| StepError::Other(format!("{host}: no connection (the host is not in this run)")))
    }

    /// Places the desired files at `paths` on `host`; true when any changed.
    async fn place(&self, host: &str, paths: &[String]) -> Result<bool, StepError> {
        let t = self.transport(host)?;
        let mut specs = Vec::new();
        for p in paths {
            let f = self.desired.file(host, p).ok_or_else(|| StepError::Other(format!("{host}: no desired contents for {p}")))?;
            specs.push(files::FileSpec { path: &f.path, contents: &f.contents, mode: f.mode });
        }
        Ok(files::place_all(t, &specs).await?)
    }

    /// The bootstrap token as (id, secret); the cluster state validated its format when it was read.
    fn token(&self) -> Result<(&str, &str), StepError> {
        self.secrets.bootstrap_token.split_once('.').ok_or_else(|| StepError::Other("the cluster state's bootstrap token is not <id>.<secret>".into()))
    }

    /// The files a kubeadm step needs, after `kubeadm reset -f` when an earlier attempt left files behind.
    /// In this order because the reset empties /etc/kubernetes/pki: a reset after placing the cluster CA
    /// deleted it, kubeadm init made a new CA, and every join file's CA pin failed.
    async fn reset_then_place(&self, host: &str, reset_first: bool, paths: &[String]) -> Result<bool, StepError> {
        if reset_first {
            kubeadm::reset(self.transport(host)?, &self.inv.kubernetes.container_runtime_endpoint).await?;
        }
        self.place(host, paths).await
    }
}

/// Runs one step; returns whether it changed anything.
pub async fn run(step: &Step, ctx: &StepContext) -> Result<bool, StepError> {
    let host = step.host.as_str();
    let t = ctx.transport(host)?;
    match &step.action {
        Action::StoreClusterState { files } | Action::PlaceFiles { files } => ctx.place(host, files).await,
        Action::ConfigureHost { files } => {
            let changed = ctx.place(host, files).await?;
            phases::host::load(t).await?;
            Ok(changed)
        }
        Action::InstallEtcdFiles { files, .. } => ctx.place(host, files).await,
        Action::InstallSoftware { artifacts, staged, files, packages, restart } => {
            let install = software::Install { artifacts, staged, packages, os_id: ctx.os_ids.get(host).map(String::as_str) };
            let mut changed = software::install(t, &ctx.inv, &ctx.artifacts, &install).await?;
            changed |= ctx.place(host, files).await?;
            if changed || !restart.is_empty() {
                let ours = |unit: &str| ctx.desired.file(host, unit).is_some();
                software::units(t, ours(KUBELET_UNIT), ours(CONTAINERD_UNIT), restart).await?;
            }
            Ok(changed)
        }
        Action::FixFileModes { files } => files::set_modes(t, files).await.map_err(StepError::from),
        Action::StartEtcdMember { restart, initial_cluster, initial_cluster_state, binary, .. } => {
            etcd::start(t, *restart, initial_cluster.as_deref(), *initial_cluster_state == crate::plan::EtcdCluster::New, binary.is_some())
                .await
                .map(|_| true)
                .map_err(StepError::from)
        }
        Action::AddEtcdLearner { member, peer_url } => etcd::add_learner(t, member, peer_url).await.map(|_| true).map_err(StepError::from),
        Action::WaitLearnerCaughtUp { member } => etcd::wait_caught_up(t, member).await.map(|_| false).map_err(StepError::from),
        Action::WaitEtcdClusterVersion { version } => etcd::wait_cluster_version(t, version).await.map(|_| false).map_err(StepError::from),
        Action::PromoteEtcdLearner { member } => etcd::promote(t, member).await.map(|_| true).map_err(StepError::from),
        Action::Gate(g) => etcd::gate(t, g).await.map(|_| false).map_err(StepError::from),
        Action::EtcdSnapshot { reason } => snapshot::save(t, reason).await.map(|_| false).map_err(StepError::from),
        Action::MoveEtcdLeader { from } => etcd::move_leader_away(t, from).await.map_err(StepError::from),
        Action::RemoveEtcdMember { id, .. } => etcd::remove(t, id).await.map(|_| true).map_err(StepError::from),
        Action::UpdateEtcdPeerUrl { id, peer_url, .. } => etcd::update_peer_url(t, id, peer_url).await.map_err(StepError::from),
        Action::ClearEtcdData { .. } => etcd::clear_data(t).await.map(|_| true).map_err(StepError::from),
        Action::StartLoadBalancer { files, services, restart } => {
            let changed = ctx.place(host, files).await?;
            loadbalancer::start(t, services, changed || *restart).await?;
            Ok(true)
        }
        Action::InstallEtcdBackup { files, restart } => {
            let changed = ctx.place(host, files).await?;
            backup::enable_timer(t, changed || *restart).await.map(|_| true).map_err(StepError::from)
        }
        Action::RunEtcdBackup => backup::run_now(t).await.map(|_| true).map_err(StepError::from),
        Action::RemoveEtcdBackup => backup::remove(t).await.map(|_| true).map_err(StepError::from),
        Action::CheckVip { vip } => wait_for_one_vip_holder(ctx, *vip).await.map(|_| false),
        Action::KubeadmInit { config, files, reset_first } => {
            ctx.reset_then_place(host, *reset_first, files).await?;
            kubeadm::init(t, config).await.map(|_| true).map_err(StepError::from)
        }
        Action::UploadKubeadmConfig { files } => {
            ctx.place(host, files).await?;
            kubeadm::upload_config(t).await.map(|_| true).map_err(StepError::from)
        }
        Action::UploadCerts { config } => kubeadm::upload_certs(t, config).await.map(|_| true).map_err(StepError::from),
        Action::KubeadmJoinControlPlane { config, files, reset_first } | Action::KubeadmJoinWorker { config, files, reset_first } => {
            ctx.reset_then_place(host, *reset_first, files).await?;
            kubeadm::join(t, config).await.map(|_| true).map_err(StepError::from)
        }
        Action::WaitApiReady { endpoint, node } => {
            kubeadm::wait_ready(t, endpoint, node).await?;
            let own = ctx.inv.hosts.iter().find(|h| h.name == *node).filter(|h| h.is_control_plane());
            if let Some(h) = own {
                kubeadm::wait_own_api_ready(t, &h.address.to_string()).await?;
            }
            Ok(false)
        }
        Action::RefreshControlPlane { node, etcd_servers } => {
            let address = ctx.inv.host(node).map(|h| h.address.to_string()).ok_or_else(|| StepError::Other(format!("{node}: not in the inventory")))?;
            kubeadm::refresh_control_plane(t, &address, etcd_servers).await.map(|_| true).map_err(StepError::from)
        }
        Action::RestartControlPlane { node, renew_certs } => {
            let address = ctx.inv.host(node).map(|h| h.address.to_string()).ok_or_else(|| StepError::Other(format!("{node}: not in the inventory")))?;
            kubeadm::restart_control_plane(t, *renew_certs, &address).await.map(|_| true).map_err(StepError::from)
        }
        Action::ApplyCni { manifest } => {
            ctx.place(host, std::slice::from_ref(manifest)).await?;
            kubeadm::apply_manifest(t, manifest).await?;
            // Recorded only after kubectl succeeded: a kill in between re-applies, which is harmless.
            ctx.place(host, &[CNI_APPLIED.to_string()]).await?;
            Ok(true)
        }
        Action::UpgradeNode { node, version, kubeadm, kubelet, via, endpoint } => {
            let own = ctx.inv.host(node).ok_or_else(|| StepError::Other(format!("{node}: not in the inventory")))?;
            let upgrade = upgrade::NodeUpgrade {
                node,
                version,
                kubeadm: *kubeadm,
                kubelet: *kubelet,
                endpoint,
                control_plane_address: own.is_control_plane().then(|| own.address.to_string()),
                ignore_preflight_errors: upgrade::preflight_ignores(&ctx.inv),
                drain_timeout: Duration::from_secs(ctx.inv.upgrade.drain_timeout_seconds),
            };
            upgrade::node(t, ctx.transport(via)?, &upgrade).await.map(|_| true).map_err(StepError::from)
        }
        Action::UncordonNode { node } => upgrade::uncordon(t, node).await.map(|_| true).map_err(StepError::from),
        Action::LabelNode { node, labels } => kubeadm::label(t, node, labels).await.map(|_| true).map_err(StepError::from),
        Action::RefreshJoinToken { valid_minutes } => {
            let (id, secret) = ctx.token()?;
            let expires = crate::exec::clock::timestamp(time::OffsetDateTime::now_utc() + Duration::from_secs(u64::from(*valid_minutes) * 60));
            kubeadm::refresh_token(t, id, secret, &expires).await.map(|_| true).map_err(StepError::from)
        }
        Action::DeleteJoinToken => kubeadm::delete_token(t, ctx.token()?.0).await.map(|_| true).map_err(StepError::from),
        Action::RemoveNode { node } => retire::remove_node(t, node).await.map(|_| true).map_err(StepError::from),
        Action::ResetHost { machine_id, .. } => {
            retire::reset(t, machine_id.as_deref(), &ctx.inv.kubernetes.container_runtime_endpoint).await.map(|_| true).map_err(StepError::from)
        }
        Action::Verify { checks } => {
            let failed: Vec<String> = phases::verify::run_until_ok(&ctx.inv, &ctx.hosts, checks, VERIFY_WITHIN)
                .await
                .into_iter()
                .filter(|c| !c.ok)
                .map(|c| format!("{}: {}", c.name, c.detail))
                .collect();
            if failed.is_empty() { Ok(false) } else { Err(StepError::Verification { failed }) }
        }
    }
}

/// Long enough for HAProxy to count a just-joined API server as up (rise 2 × inter 2 s), and for the
/// kubelets of the nodes joined last to post a Ready status: a kubelet registers its node before its
/// runtime and network checks have passed once, and the workers join last, in parallel. The wait ends
/// as soon as every check passes.
const VERIFY_WITHIN: Duration = Duration::from_secs(120);

/// keepalived elects a holder within a few advertisement intervals; bounded wait for exactly one.
const VIP_WITHIN: Duration = Duration::from_secs(30);

async fn wait_for_one_vip_holder(ctx: &StepContext, vip: std::net::IpAddr) -> Result<(), StepError> {
    let started = Instant::now();
    loop {
        let mut holders = Vec::new();
        for h in ctx.inv.control_planes() {
            if crate::facts::vip::holds_vip(ctx.transport(&h.name)?, vip).await? {
                holders.push(h.name.clone());
            }
        }
        if holders.len() == 1 {
            return Ok(());
        }
        if started.elapsed() > VIP_WITHIN {
            let who = if holders.is_empty() { "no control plane".to_string() } else { holders.join(" and ") };
            return Err(StepError::Timeout {
                what: format!("VIP {vip}"),
                within: VIP_WITHIN,
                last: format!("held by {who}"),
                look: "keepalived: journalctl -u keepalived",
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paths::{KUBEADM_CONFIG, KUBERNETES_CA_CERT, KUBERNETES_CA_KEY};
    use crate::ssh::fake::{Recorded, RecordingTransport};

    fn context(host: &Arc<RecordingTransport>) -> StepContext {
        let inv = crate::test_support::lab();
        let state = crate::state::ClusterState::create(&inv).unwrap();
        let rendered = crate::render::render(&inv, &state.secrets, &crate::render::templates::Templates::builtin().unwrap()).unwrap();
        let desired = Desired::build(&inv, &rendered, &state);
        let hosts = HashMap::from([(host.host().to_string(), host.clone() as Arc<dyn Transport>)]);
        StepContext::new(Arc::new(inv), Arc::new(desired), hosts, Arc::new(state.secrets.clone()))
    }

    /// Where in the recorded effects the first one matching `what` is.
    fn position(effects: &[Recorded], what: impl Fn(&Recorded) -> bool) -> usize {
        effects.iter().position(what).unwrap_or_else(|| panic!("not recorded: {effects:?}"))
    }

    /// The dispatch keeps the kind of a failure, which the advice after a failed run branches on.
    #[tokio::test]
    async fn a_step_s_failure_keeps_its_kind_and_names_its_host() {
        let lost = SshError::Disconnected { host: "cp-1".into(), command: Some("modprobe".into()), detail: "reset by peer".into() };
        let cp1 = Arc::new(RecordingTransport::new("cp-1").respond("modprobe", Err(lost)));
        let ctx = context(&cp1);
        let on = |host: &str, action| Step { id: "s".into(), host: host.into(), action, reason: "r".into() };
        let configure = || Action::ConfigureHost { files: Vec::new() };
        let err = run(&on("cp-1", configure()), &ctx).await.unwrap_err();
        assert!(matches!(err.ssh(), Some(SshError::Disconnected { .. })), "{err:?}");
        let err = run(&on("cp-9", configure()), &ctx).await.unwrap_err();
        assert!(matches!(err, StepError::Other(_)) && err.to_string() == "cp-9: no connection (the host is not in this run)", "{err}");
        let err = run(&on("cp-1", Action::PlaceFiles { files: vec!["/etc/nowhere".into()] }), &ctx).await.unwrap_err();
        assert_eq!(err.to_string(), "cp-1: no desired contents for /etc/nowhere");
    }

    #[tokio::test]
    async fn an_init_after_an_unfinished_one_resets_then_places_the_ca_then_inits() {
        let cp1 = Arc::new(RecordingTransport::new("cp-1"));
        let ctx = context(&cp1);
        let files = vec![KUBEADM_CONFIG.to_string(), KUBERNETES_CA_CERT.to_string(), KUBERNETES_CA_KEY.to_string()];
        let action = Action::KubeadmInit { config: KUBEADM_CONFIG.into(), files, reset_first: true };
        let step = Step { id: "kubeadm/cp-1/init".into(), host: "cp-1".into(), action, reason: "an earlier init did not finish".into() };
        run(&step, &ctx).await.expect("init step");
        let effects = cp1.recorded();
        let exec = |needle: &'static str| move |r: &Recorded| matches!(r, Recorded::Exec { script, .. } if script.contains(needle));
        let reset = position(&effects, exec("kubeadm reset -f --skip-phases=remove-etcd-member --cri-socket "));
        let ca = position(&effects, |r| matches!(r, Recorded::Upload { path, .. } if path == KUBERNETES_CA_CERT));
        let init = position(&effects, exec("kubeadm init --config"));
        assert!(reset < ca && ca < init, "order must be reset, place the CA, init: {:?}", cp1.scripts());
        assert!(!effects[init..].iter().any(exec("reset")), "no reset after the CA is placed: {:?}", cp1.scripts());
    }

    #[tokio::test]
    async fn a_mode_fix_is_one_chown_and_chmod_in_place_and_no_upload() {
        let cp2 = Arc::new(RecordingTransport::new("cp-2"));
        let ctx = context(&cp2);
        let files = vec![crate::plan::FileMode { path: "/etc/kubeha/pki/etcd/server.key".into(), mode: 0o600 }];
        let step = Step { id: "file-modes/cp-2".into(), host: "cp-2".into(), action: Action::FixFileModes { files }, reason: "r".into() };
        assert!(run(&step, &ctx).await.expect("mode step"));
        let effects = cp2.recorded();
        let [Recorded::Exec { script, .. }] = effects.as_slice() else { panic!("one command, no upload: {effects:?}") };
        assert_eq!(
            script,
            "set -e\nif [ -f /etc/kubeha/pki/etcd/server.key ]; then chown -- root:root /etc/kubeha/pki/etcd/server.key; chmod 0600 -- /etc/kubeha/pki/etcd/server.key; fi\n"
        );
    }

    #[tokio::test]
    async fn a_join_without_leftovers_does_not_reset() {
        let cp2 = Arc::new(RecordingTransport::new("cp-2"));
        let ctx = context(&cp2);
        let action = Action::KubeadmJoinControlPlane { config: KUBEADM_CONFIG.into(), files: vec![KUBEADM_CONFIG.into()], reset_first: false };
        let step = Step { id: "kubeadm/cp-2/join".into(), host: "cp-2".into(), action, reason: "not joined".into() };
        run(&step, &ctx).await.expect("join step");
        assert!(!cp2.scripts().iter().any(|s| s.contains("reset")), "{:?}", cp2.scripts());
        assert!(cp2.scripts().last().is_some_and(|s| s == "kubeadm join --config /etc/kubeha/kubeadm.yaml"), "{:?}", cp2.scripts());
    }

    /// What the plan shows is what runs: the step's own config and services, not the phase's defaults.
    #[tokio::test]
    async fn kubeadm_and_load_balancer_steps_run_with_the_fields_the_plan_shows() {
        let cp2 = Arc::new(RecordingTransport::new("cp-2"));
        let ctx = context(&cp2);
        let action = Action::KubeadmJoinWorker { config: "/srv/join.yaml".into(), files: vec![], reset_first: false };
        run(&Step { id: "workers/cp-2".into(), host: "cp-2".into(), action, reason: "r".into() }, &ctx).await.expect("join step");
        assert_eq!(cp2.scripts().last().map(String::as_str), Some("kubeadm join --config /srv/join.yaml"));
        let action = Action::StartLoadBalancer { files: vec![], services: vec!["haproxy"], restart: false };
        run(&Step { id: "lb/cp-2".into(), host: "cp-2".into(), action, reason: "r".into() }, &ctx).await.expect("lb step");
        assert_eq!(
            cp2.scripts().last().map(String::as_str),
            Some(
                "systemctl daemon-reload; systemctl enable haproxy.service kubeha-metrics.socket >/dev/null 2>&1; systemctl start haproxy.service && systemctl start kubeha-metrics.socket"
            )
        );
    }

    /// kubeadm writes the manifests again, then the API server's manifest must name exactly the endpoints
    /// the plan showed (in any order), and the API server answer; a manifest kubeadm left naming others is
    /// the step's failure, before any wait.
    #[tokio::test]
    async fn a_refreshed_control_plane_must_name_the_endpoints_the_plan_shows() {
        let shown = vec!["https://198.18.0.11:2379".to_string(), "https://198.18.0.12:2379".to_string()];
        let action = Action::RefreshControlPlane { node: "cp-2".into(), etcd_servers: shown.clone() };
        let step = Step { id: "kubeadm/cp-2/etcd-servers".into(), host: "cp-2".into(), action, reason: "r".into() };
        let cp2 = Arc::new(RecordingTransport::new("cp-2").on("--etcd-servers=", "https://198.18.0.12:2379,https://198.18.0.11:2379\n").on("readyz", "ok"));
        run(&step, &context(&cp2)).await.expect("refresh step");
        let scripts = cp2.scripts();
        assert_eq!(scripts[0], "kubeadm upgrade node phase control-plane --certificate-renewal=false --etcd-upgrade=false", "{scripts:?}");
        assert!(scripts[1].contains("/etc/kubernetes/manifests/kube-apiserver.yaml"), "{scripts:?}");
        assert!(scripts[2].contains("readyz") && scripts[2].contains("198.18.0.12:6443"), "its own API server: {scripts:?}");

        let stale = Arc::new(RecordingTransport::new("cp-2").on("--etcd-servers=", "https://198.18.0.11:2379,https://198.18.0.99:2379\n").on("readyz", "ok"));
        let err = run(&step, &context(&stale)).await.expect_err("kubeadm left another endpoint");
        assert!(err.to_string().contains("198.18.0.99") && err.to_string().contains("kube-system/kubeadm-config"), "{err}");
        assert!(!stale.scripts().iter().any(|s| s.contains("readyz")), "{:?}", stale.scripts());
    }

    #[tokio::test]
    async fn the_join_token_is_applied_from_stdin_and_deleted_by_its_id_only() {
        let cp1 = Arc::new(RecordingTransport::new("cp-1"));
        let ctx = context(&cp1);
        let (id, secret) = ctx.secrets.bootstrap_token.split_once('.').map(|(a, b)| (a.to_string(), b.to_string())).unwrap();
        let refresh = Step { id: "join-token/refresh".into(), host: "cp-1".into(), action: Action::RefreshJoinToken { valid_minutes: 60 }, reason: "r".into() };
        let in_an_hour = || crate::exec::clock::timestamp(time::OffsetDateTime::now_utc() + Duration::from_secs(3600));
        let earliest = in_an_hour();
        assert!(run(&refresh, &ctx).await.expect("refresh step"));
        let latest = in_an_hour();
        let delete = Step { id: "join-token/delete".into(), host: "cp-1".into(), action: Action::DeleteJoinToken, reason: "r".into() };
        assert!(run(&delete, &ctx).await.expect("delete step"));
        let effects = cp1.recorded();
        let [Recorded::Exec { script: apply, stdin: Some(stdin), .. }, Recorded::Exec { script: del, stdin: None, .. }] = effects.as_slice() else {
            panic!("two commands expected: {effects:?}")
        };
        assert_eq!(apply, "kubectl --kubeconfig /etc/kubernetes/admin.conf apply -f -");
        assert_eq!(del, &format!("kubectl --kubeconfig /etc/kubernetes/admin.conf delete secret -n kube-system bootstrap-token-{id} --ignore-not-found"));
        for script in [apply, del] {
            assert!(!script.contains(&secret), "the token's secret is never in argv: {script}");
        }
        let manifest: serde_json::Value = serde_json::from_slice(stdin).unwrap();
        assert_eq!(manifest["metadata"]["name"], format!("bootstrap-token-{id}"));
        assert_eq!(manifest["metadata"]["namespace"], "kube-system");
        assert_eq!(manifest["type"], "bootstrap.kubernetes.io/token");
        let data = &manifest["stringData"];
        assert_eq!((data["token-id"].as_str(), data["token-secret"].as_str()), (Some(id.as_str()), Some(secret.as_str())));
        assert_eq!(data["usage-bootstrap-authentication"], "true");
        assert_eq!(data["usage-bootstrap-signing"], "true");
        assert_eq!(data["auth-extra-groups"], "system:bootstrappers:kubeadm:default-node-token");
        // RFC 3339 in UTC with whole seconds: fixed width, so text order is time order.
        let expiration = data["expiration"].as_str().unwrap();
        assert!(earliest.as_str() <= expiration && expiration <= latest.as_str(), "expires 60 min after the step: {expiration}");
        // The host log and any error pass through the redactor, which knows the secret half on its own.
        let redactor = crate::exec::redact::Redactor::new(
            crate::state::ClusterState::create(&ctx.inv)
                .map(|mut s| {
                    s.secrets = (*ctx.secrets).clone();
                    s.secret_strings()
                })
                .unwrap(),
        );
        assert!(!redactor.scrub(&String::from_utf8_lossy(stdin)).contains(&secret));
    }
}

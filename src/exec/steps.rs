//! One plan step, carried out: the dispatch from an Action to the phase functions, over the step's host.
//! Every step is idempotent on its own (uploads skip identical files, membership changes check first,
//! starts of running services are no-ops), so a step that ran before a kill may run again safely.
use crate::inventory::Inventory;
use crate::phases::{self, etcd, files, kubeadm, loadbalancer, retire, snapshot};
use crate::plan::desired::{CNI_APPLIED, Desired};
use crate::plan::{Action, Step};
use crate::ssh::Transport;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a step needs besides itself: the desired files and a transport per host.
pub struct StepContext {
    pub inv: Arc<Inventory>,
    pub desired: Arc<Desired>,
    pub hosts: HashMap<String, Arc<dyn Transport>>,
}

/// A step's failure, as text meant for the operator (scrubbed by the caller).
#[derive(Debug)]
pub struct StepError(pub String);

fn fail(e: impl std::fmt::Display) -> StepError {
    StepError(e.to_string())
}

impl StepContext {
    fn transport(&self, host: &str) -> Result<&dyn Transport, StepError> {
        self.hosts.get(host).map(|t| t.as_ref()).ok_or_else(|| StepError(format!("{host}: no connection (the host is not in this run)")))
    }

    /// Places the desired files at `paths` on `host`; true when any changed.
    async fn place(&self, host: &str, paths: &[String]) -> Result<bool, StepError> {
        let t = self.transport(host)?;
        let mut specs = Vec::new();
        for p in paths {
            let f = self.desired.file(host, p).ok_or_else(|| StepError(format!("{host}: no desired contents for {p}")))?;
            specs.push(files::FileSpec { path: &f.path, contents: &f.contents, mode: f.mode });
        }
        files::place_all(t, &specs).await.map_err(fail)
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
            phases::host::load(t).await.map_err(fail)?;
            Ok(changed)
        }
        Action::InstallEtcdFiles { files, .. } => ctx.place(host, files).await,
        Action::StartEtcdMember { restart, initial_cluster, .. } => etcd::start(t, *restart, initial_cluster.as_deref()).await.map(|_| true).map_err(fail),
        Action::AddEtcdLearner { member, peer_url } => etcd::add_learner(t, member, peer_url).await.map(|_| true).map_err(fail),
        Action::WaitLearnerCaughtUp { member } => etcd::wait_caught_up(t, member).await.map(|_| false).map_err(fail),
        Action::PromoteEtcdLearner { member } => etcd::promote(t, member).await.map(|_| true).map_err(fail),
        Action::Gate(g) => etcd::gate(t, g).await.map(|_| false).map_err(fail),
        Action::EtcdSnapshot { reason } => snapshot::save(t, reason).await.map(|_| false).map_err(fail),
        Action::RemoveEtcdMember { id, .. } => etcd::remove(t, id).await.map(|_| true).map_err(fail),
        Action::ClearEtcdData { .. } => etcd::clear_data(t).await.map(|_| true).map_err(fail),
        Action::StartLoadBalancer { files, restart, .. } => {
            let changed = ctx.place(host, files).await?;
            loadbalancer::start(t, changed || *restart).await.map_err(fail)?;
            Ok(true)
        }
        Action::CheckVip { .. } => wait_for_one_vip_holder(ctx).await.map(|_| false),
        Action::KubeadmInit { files, reset_first, .. } => {
            ctx.place(host, files).await?;
            kubeadm::init(t, *reset_first).await.map(|_| true).map_err(fail)
        }
        Action::UploadKubeadmConfig { files } => {
            ctx.place(host, files).await?;
            kubeadm::upload_config(t).await.map(|_| true).map_err(fail)
        }
        Action::UploadCerts { .. } => kubeadm::upload_certs(t).await.map(|_| true).map_err(fail),
        Action::KubeadmJoinControlPlane { files, reset_first, .. } | Action::KubeadmJoinWorker { files, reset_first, .. } => {
            ctx.place(host, files).await?;
            kubeadm::join(t, *reset_first).await.map(|_| true).map_err(fail)
        }
        Action::WaitApiReady { endpoint, node } => kubeadm::wait_ready(t, endpoint, node).await.map(|_| false).map_err(fail),
        Action::ApplyCni { manifest, .. } => {
            ctx.place(host, std::slice::from_ref(manifest)).await?;
            kubeadm::apply_manifest(t, manifest).await.map_err(fail)?;
            // Recorded only after kubectl succeeded: a kill in between re-applies, which is harmless.
            ctx.place(host, &[CNI_APPLIED.to_string()]).await?;
            Ok(true)
        }
        Action::LabelNode { node, labels } => kubeadm::label(t, node, labels).await.map(|_| true).map_err(fail),
        Action::RemoveNode { node } => retire::remove_node(t, node).await.map(|_| true).map_err(fail),
        Action::ResetHost { .. } => retire::reset(t).await.map(|_| true).map_err(fail),
        Action::Verify { .. } => {
            let failed: Vec<String> = phases::verify::run_until_ok(&ctx.inv, &ctx.hosts, VERIFY_WITHIN)
                .await
                .into_iter()
                .filter(|c| !c.ok)
                .map(|c| format!("{}: {}", c.name, c.detail))
                .collect();
            if failed.is_empty() { Ok(false) } else { Err(StepError(format!("verification failed: {}", failed.join("; ")))) }
        }
    }
}

/// Long enough for HAProxy to count a just-joined API server as up (rise 2 × inter 2 s) with margin.
const VERIFY_WITHIN: Duration = Duration::from_secs(20);

/// keepalived elects a holder within a few advertisement intervals; bounded wait for exactly one.
const VIP_WITHIN: Duration = Duration::from_secs(30);

async fn wait_for_one_vip_holder(ctx: &StepContext) -> Result<(), StepError> {
    let Some(vrrp) = ctx.inv.load_balancer.vrrp() else { return Ok(()) };
    let started = Instant::now();
    loop {
        let mut holders = Vec::new();
        for h in ctx.inv.control_planes() {
            if loadbalancer::holds_vip(ctx.transport(&h.name)?, vrrp.vip).await.map_err(fail)? {
                holders.push(h.name.clone());
            }
        }
        if holders.len() == 1 {
            return Ok(());
        }
        if started.elapsed() > VIP_WITHIN {
            let who = if holders.is_empty() { "no control plane".to_string() } else { holders.join(" and ") };
            return Err(StepError(format!("VIP {}: held by {who} after {} s (keepalived: journalctl -u keepalived)", vrrp.vip, VIP_WITHIN.as_secs())));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

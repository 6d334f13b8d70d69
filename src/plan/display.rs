//! The plan as people read it: preflight findings, numbered phases, one line per step with its host and
//! its reason, gates spelled out, and the count of changes.
use super::*;
use std::fmt::Write;

pub fn text(plan: &Plan) -> String {
    let steps = plan.steps().count();
    let gates = plan.steps().filter(|s| matches!(s.action, Action::Gate(_))).count();
    let width = plan.steps().map(|s| s.host.len()).max().unwrap_or(0);
    let mut out = String::new();
    let basis = if plan.basis == Basis::Fresh { " (offline: every host assumed fresh)" } else { "" };
    let _ = writeln!(out, "Plan for cluster {}{basis}: {} changes in {steps} steps, {gates} quorum gates", plan.cluster, plan.changes());
    if !plan.findings.is_empty() {
        let _ = writeln!(out, "\nPreflight:");
        for f in &plan.findings {
            let level = if f.fatal { "ERROR" } else { "warning" };
            let _ = writeln!(out, "   {level} {}: {}\n      fix: {}", f.host, f.problem, f.fix);
        }
    }
    for (i, phase) in plan.phases.iter().enumerate() {
        let execution = match phase.execution {
            Execution::Sequential => "in order".to_string(),
            Execution::Parallel { limit } => format!("in parallel, up to {limit} hosts at a time"),
        };
        let _ = writeln!(out, "\n{}. {}: {} ({execution})", i + 1, phase.name, phase.title);
        for s in &phase.steps {
            let _ = writeln!(out, "   {:<width$}  {}  [{}]", s.host, describe(&s.action), s.reason);
        }
    }
    if plan.changes() == 0 {
        let _ = writeln!(out, "\nNothing to change: the cluster is converged.");
    }
    if plan.blocked() {
        let _ = writeln!(out, "\nApply refuses to start until the preflight errors above are fixed.");
    }
    out
}

fn files(files: &[String]) -> String {
    match files.len() {
        1 => files[0].clone(),
        n => format!("{n} files"),
    }
}

pub fn describe(action: &Action) -> String {
    match action {
        Action::StoreClusterState { .. } => "store the cluster state (0600)".to_string(),
        Action::ConfigureHost { files: f } => format!("write {} and load them", f.join(", ")),
        Action::InstallEtcdFiles { member, files: f } => format!("install {} of etcd member {member} (keys 0600)", files(f)),
        Action::StartEtcdMember { member, initial_cluster_state, restart, binary, .. } => {
            let what = match (*initial_cluster_state, restart) {
                (_, true) => format!("restart etcd member {member}"),
                (EtcdCluster::New, _) => format!("start etcd member {member} as a new cluster of one"),
                _ => format!("start etcd member {member} into the existing cluster"),
            };
            match binary {
                Some(version) => format!("swap in the staged etcd {version}, {what}"),
                None => what,
            }
        }
        Action::InstallSoftware { artifacts, staged, files: f, packages, restart } => {
            let mut parts = Vec::new();
            if !artifacts.is_empty() {
                parts.push(format!("install {} (checksum-verified, uploaded from this machine)", artifacts.join(", ")));
            }
            if !staged.is_empty() {
                parts.push(format!(
                    "stage {} for its swap (a gated restart or the node's upgrade; checksum-verified, uploaded from this machine)",
                    staged.join(", ")
                ));
            }
            if !f.is_empty() {
                parts.push(format!("write {}", files(f)));
            }
            if !packages.is_empty() {
                parts.push(format!("install the packages {}", packages.join(", ")));
            }
            if !restart.is_empty() {
                parts.push(format!("restart {}", restart.join(", ")));
            }
            parts.join("; ")
        }
        Action::AddEtcdLearner { member, peer_url } => format!("add {member} as a non-voting learner ({peer_url})"),
        Action::WaitLearnerCaughtUp { member } => format!("wait until learner {member} has caught up with the leader"),
        Action::WaitEtcdClusterVersion { version } => format!("wait until etcd's cluster version is {version} (etcd raises it once every member runs it)"),
        Action::PromoteEtcdLearner { member } => format!("promote {member} to a voting member"),
        Action::Gate(g) => gate(g),
        Action::EtcdSnapshot { reason } => format!("etcd snapshot {reason}, verified, kept in the rotation on this member"),
        Action::MoveEtcdLeader { from } => format!("move etcd leadership away from {from} if it leads"),
        Action::RemoveEtcdMember { member, id } => format!("remove etcd member {member} (ID {id})"),
        Action::UpdateEtcdPeerUrl { member, id, peer_url } => format!("update etcd member {member} (ID {id}) to peer URL {peer_url}"),
        Action::ClearEtcdData { member } => format!("stop etcd on {member} and move its old data dir aside"),
        Action::StartLoadBalancer { services, restart, .. } => {
            let verb = if *restart { "reload (or start)" } else { "start" };
            format!("configure and {verb} {}, then {}", services.join(" and "), crate::phases::loadbalancer::METRICS_SOCKET)
        }
        Action::InstallEtcdBackup { files: f, restart } => {
            format!("install the etcd backup ({}), enable and {} {}", files(f), if *restart { "restart" } else { "start" }, crate::phases::backup::TIMER)
        }
        Action::RunEtcdBackup => format!("run {} once now (the leader takes a verified snapshot, the others skip)", crate::phases::backup::SERVICE),
        Action::RemoveEtcdBackup => format!("stop and disable {}, remove the backup script and units (the backups taken stay)", crate::phases::backup::TIMER),
        Action::CheckVip { vip } => format!("check that exactly one control plane holds the VIP {vip}"),
        Action::PlaceFiles { files: f } => format!("write {}", files(f)),
        Action::KubeadmInit { config, reset_first, .. } => {
            format!("{}place the cluster CA, kubeadm init --config {config} --upload-certs", reset(*reset_first))
        }
        Action::UploadKubeadmConfig { files: f } if f.is_empty() => {
            format!("upload the ClusterConfiguration of {} (kubeadm init phase upload-config kubeadm)", crate::paths::KUBEADM_CONFIG)
        }
        Action::UploadKubeadmConfig { files: f } => {
            format!("write {} and upload its ClusterConfiguration (kubeadm init phase upload-config kubeadm)", files(f))
        }
        Action::UploadCerts { config } => format!("kubeadm init phase upload-certs --upload-certs --config {config}"),
        Action::KubeadmJoinControlPlane { config, reset_first, .. } => {
            format!("{}kubeadm join --config {config} as a control plane", reset(*reset_first))
        }
        Action::KubeadmJoinWorker { config, reset_first, .. } => format!("{}kubeadm join --config {config} as a worker", reset(*reset_first)),
        Action::WaitApiReady { endpoint, node } => {
            format!("wait until /readyz answers through {endpoint}, node {node} is registered and its own API server answers /readyz")
        }
        Action::RefreshControlPlane { node, etcd_servers } => format!(
            "kubeadm upgrade node phase control-plane on {node} (no certificate renewal): its API server restarts with etcd endpoints {}, then wait for its /readyz",
            etcd_servers.join(",")
        ),
        Action::RestartControlPlane { node, renew_certs } => format!(
            "{}restart kube-apiserver, kube-controller-manager and kube-scheduler on {node} one at a time (static pod manifest out and back), then wait for its API server's /readyz",
            if *renew_certs { "kubeadm certs renew all, then " } else { "" }
        ),
        Action::UpgradeNode { node, version, kubeadm, kubelet, via, endpoint } => {
            let mut parts = Vec::new();
            match kubeadm {
                KubeadmUpgrade::Apply => parts.push(format!("kubeadm upgrade apply v{version}, then /readyz here and through {endpoint}")),
                KubeadmUpgrade::Node => parts.push("kubeadm upgrade node".to_string()),
                KubeadmUpgrade::Done => {}
            }
            if *kubelet {
                parts.push(format!(
                    "drain {node} (through {via}), swap in the staged kubelet {version} and restart it, wait until {node} is Ready on v{version}, uncordon"
                ));
            }
            parts.join("; ")
        }
        Action::UncordonNode { node } => format!("uncordon {node} (kubeha drained it in a run that stopped before the end)"),
        Action::ApplyCni { manifest } => format!("kubectl apply -f {manifest}, then record its digest"),
        Action::LabelNode { node, labels } => format!("label node {node}: {}", labels.join(", ")),
        Action::RefreshJoinToken { valid_minutes } => {
            format!("create or refresh the bootstrap token for joins (Secret kube-system/bootstrap-token-<id>, expires {valid_minutes} min after this step)")
        }
        Action::DeleteJoinToken => "delete the bootstrap token (Secret kube-system/bootstrap-token-<id>): no join credential outlives the run".to_string(),
        Action::RemoveNode { node } => format!("drain node {node} and delete it"),
        Action::ResetHost { host, .. } => format!("reset {host}: kubeadm reset, etcd/keepalived/HAProxy stopped and disabled, data moved aside"),
        Action::Verify { checks } => format!("verify: {}", checks.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")),
        Action::FixFileModes { files } => {
            let each: Vec<String> = files.iter().map(|f| format!("{} {:04o}", f.path, f.mode)).collect();
            format!("chmod/chown {} in place, owner {} (no upload, nothing restarts)", each.join(", "), desired::FILE_OWNER)
        }
    }
}

fn reset(first: bool) -> &'static str {
    if first { "kubeadm reset -f, then " } else { "" }
}

fn gate(g: &Gate) -> String {
    let when = match g.when {
        GateWhen::Before => "before",
        GateWhen::After => "after",
    };
    let n = g.voters.len();
    let healthy = n - g.may_be_down.len();
    let down =
        if g.may_be_down.is_empty() { String::new() } else { format!(" ({} may be down: leaving, or moving to a new address)", g.may_be_down.join(", ")) };
    format!("GATE {when} {}: {healthy}/{n} voting members healthy ({}){down}, quorum {}, one leader, no learner", g.change, g.voters.join(", "), g.quorum)
}

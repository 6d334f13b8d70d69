//! The plan as people read it: numbered phases, one line per step with its host, gates spelled out.
use super::*;
use std::fmt::Write;

pub fn text(plan: &Plan) -> String {
    let steps = plan.steps().count();
    let gates = plan.steps().filter(|s| matches!(s.action, Action::Gate(_))).count();
    let width = plan.steps().filter_map(|s| s.host.as_deref()).map(str::len).max().unwrap_or(0).max("operator".len());
    let mut out = String::new();
    let basis = if plan.basis == "fresh" { " (offline: every host assumed fresh)" } else { "" };
    let _ = writeln!(out, "Plan for cluster {}{basis}: {} phases, {steps} steps, {gates} quorum gates", plan.cluster, plan.phases.len());
    for (i, phase) in plan.phases.iter().enumerate() {
        let execution = match phase.execution {
            Execution::Sequential => "in order".to_string(),
            Execution::Parallel { limit } => format!("in parallel, up to {limit} hosts at a time"),
        };
        let _ = writeln!(out, "\n{}. {}: {} ({execution})", i + 1, phase.name, phase.title);
        for s in &phase.steps {
            let host = s.host.as_deref().unwrap_or("operator");
            let _ = writeln!(out, "   {host:<width$}  {}", describe(&s.action));
        }
    }
    out
}

pub fn describe(action: &Action) -> String {
    match action {
        Action::Preflight { checks } => format!("preflight: {}", checks.join(", ")),
        Action::ConfigureHost { files } => format!("write {} and load them", files.join(", ")),
        Action::GenerateEtcdPki { members } => format!("generate the etcd CA and certificates for {} (in memory)", members.join(", ")),
        Action::InstallEtcdPki { files } => format!("install {} etcd certificates and keys (keys mode 0600)", files.len()),
        Action::StartEtcdMember { member, initial_cluster_state } => match *initial_cluster_state {
            "new" => format!("start etcd member {member} as a new cluster of one"),
            _ => format!("start etcd member {member} into the existing cluster"),
        },
        Action::AddEtcdLearner { member, peer_url } => format!("add {member} as a non-voting learner ({peer_url})"),
        Action::WaitLearnerCaughtUp { member } => format!("wait until learner {member} has caught up with the leader"),
        Action::PromoteEtcdLearner { member } => format!("promote {member} to a voting member"),
        Action::Gate(g) => gate(g),
        Action::StartLoadBalancer { services, .. } => format!("configure and start {}", services.join(" and ")),
        Action::CheckVip { vip } => format!("check that exactly one control plane holds the VIP {vip}"),
        Action::KubeadmInit { endpoint, config } => format!("kubeadm init --config {config} --upload-certs (endpoint {endpoint})"),
        Action::KubeadmJoinControlPlane { endpoint, config } => format!("kubeadm join --config {config} as a control plane through {endpoint}"),
        Action::KubeadmJoinWorker { endpoint, config } => format!("kubeadm join --config {config} as a worker through {endpoint}"),
        Action::WaitApiReady { endpoint } => format!("wait until /readyz answers through {endpoint} and this node is registered"),
        Action::ApplyCni { cni, version, manifest } => format!("apply {cni} {version} ({manifest})"),
        Action::LabelNode { node, labels } => format!("label node {node}: {}", labels.join(", ")),
        Action::Verify { checks } => format!("verify: {}", checks.join("; ")),
    }
}

fn gate(g: &Gate) -> String {
    let when = match g.when {
        GateWhen::Before => "before",
        GateWhen::After => "after",
    };
    format!(
        "GATE {when} {}: {n}/{n} voting members healthy ({}), quorum {}, one leader, no learner",
        g.change,
        g.voters.join(", "),
        g.quorum,
        n = g.voters.len()
    )
}

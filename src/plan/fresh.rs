//! The plan for a cluster built from nothing (`plan --offline`): every host is assumed fresh.
use super::*;
use crate::inventory::{Host, Inventory, LoadBalancer};
use crate::render::context::{self, host_port, peer_url};
use crate::render::{self, KUBEADM_CONFIG};

const FRESH: &str = "fresh cluster";

pub fn fresh(inv: &Inventory) -> Plan {
    let mut phases = vec![preflight(inv), host_configuration(inv), pki(inv), etcd(inv)];
    phases.extend(load_balancer(inv));
    phases.extend([control_plane(inv), cni(inv)]);
    phases.extend(workers(inv));
    phases.extend([labels(inv), verify(inv)]);
    Plan { cluster: inv.name.clone(), basis: "fresh", phases }
}

fn step(id: String, host: &str, action: Action) -> Step {
    Step { id, host: Some(host.to_string()), action, reason: FRESH.to_string() }
}

/// Cluster-wide steps (CNI, labels, checks) run from the first control plane: it exists from `kubeadm init` on.
fn first_control_plane(inv: &Inventory) -> String {
    inv.control_planes().next().map(|h| h.name.clone()).unwrap_or_default()
}

fn parallel(inv: &Inventory) -> Execution {
    Execution::Parallel { limit: inv.concurrency }
}

fn endpoint(inv: &Inventory) -> String {
    let (host, port) = inv.load_balancer.endpoint();
    host_port(&host, port)
}

/// Ports a host must have free before kubeha installs anything.
fn ports(inv: &Inventory, h: &Host) -> Vec<u16> {
    let mut ports = vec![];
    if h.is_control_plane() {
        ports.extend([2379, 2380, context::API_SERVER_PORT]);
        if let Some(v) = inv.load_balancer.vrrp() {
            ports.push(v.port);
        }
    }
    ports.push(10250);
    ports
}

fn preflight(inv: &Inventory) -> Phase {
    let steps = inv
        .hosts
        .iter()
        .map(|h| {
            let ports = ports(inv, h).iter().map(u16::to_string).collect::<Vec<_>>().join(" ");
            let mut checks = vec![
                "swap off".to_string(),
                "container runtime answers".to_string(),
                format!("ports {ports} free"),
                "clock within 1 s of the operator".to_string(),
            ];
            if h.is_control_plane() {
                checks.push("at least 2 CPUs and 1700 MiB memory".to_string());
            }
            step(format!("preflight/{}", h.name), &h.name, Action::Preflight { checks })
        })
        .collect();
    Phase { name: "preflight", title: "check every host before changing any", execution: parallel(inv), steps }
}

fn host_configuration(inv: &Inventory) -> Phase {
    let steps = inv
        .hosts
        .iter()
        .map(|h| {
            step(
                format!("host/{}", h.name),
                &h.name,
                Action::ConfigureHost { files: vec!["/etc/sysctl.d/90-kubeha.conf".into(), "/etc/modules-load.d/kubeha.conf".into()] },
            )
        })
        .collect();
    Phase { name: "host", title: "kernel modules and settings", execution: parallel(inv), steps }
}

fn pki(inv: &Inventory) -> Phase {
    let members: Vec<String> = inv.control_planes().map(|h| h.name.clone()).collect();
    let mut steps = vec![Step { id: "pki/generate".into(), host: None, action: Action::GenerateEtcdPki { members: members.clone() }, reason: FRESH.into() }];
    let dir = context::ETCD_PKI_DIR;
    for m in &members {
        let files = crate::pki::member_file_names().iter().map(|f| format!("{dir}/{f}")).collect();
        steps.push(step(format!("pki/{m}"), m, Action::InstallEtcdPki { files }));
    }
    Phase { name: "pki", title: "etcd certificate authority and member certificates", execution: Execution::Sequential, steps }
}

fn gate(when: GateWhen, change: &str, voters: &[String]) -> Action {
    Action::Gate(Gate::new(when, change, voters))
}

/// etcd grows one member at a time: the first starts alone, every other joins as a learner, catches up
/// and is promoted, with a quorum gate before and after each change. Never two members in flux at once.
fn etcd(inv: &Inventory) -> Phase {
    let mut steps = Vec::new();
    let mut voters: Vec<String> = Vec::new();
    for h in inv.control_planes() {
        let m = h.name.clone();
        let id = |s: &str| format!("etcd/{m}/{s}");
        let start = Action::StartEtcdMember { member: m.clone(), initial_cluster_state: if voters.is_empty() { "new" } else { "existing" } };
        match voters.first().cloned() {
            None => steps.push(step(id("start"), &m, start)),
            Some(leader_host) => {
                let change = format!("add {m}");
                steps.push(step(id("gate-before"), &leader_host, gate(GateWhen::Before, &change, &voters)));
                steps.push(step(id("add-learner"), &leader_host, Action::AddEtcdLearner { member: m.clone(), peer_url: peer_url(h) }));
                steps.push(step(id("start"), &m, start));
                steps.push(step(id("caught-up"), &leader_host, Action::WaitLearnerCaughtUp { member: m.clone() }));
                steps.push(step(id("promote"), &leader_host, Action::PromoteEtcdLearner { member: m.clone() }));
            }
        }
        voters.push(m.clone());
        let checker = voters[0].clone();
        steps.push(step(id("gate-after"), &checker, gate(GateWhen::After, &format!("{} {m}", if voters.len() == 1 { "start" } else { "add" }), &voters)));
    }
    Phase { name: "etcd", title: "etcd, one member at a time between quorum gates", execution: Execution::Sequential, steps }
}

fn load_balancer(inv: &Inventory) -> Option<Phase> {
    let vrrp = inv.load_balancer.vrrp()?;
    let mut steps: Vec<Step> = inv
        .control_planes()
        .map(|h| {
            let files = vec!["/etc/haproxy/haproxy.cfg".into(), "/etc/keepalived/keepalived.conf".into(), context::CHECK_SCRIPT.into()];
            step(format!("lb/{}", h.name), &h.name, Action::StartLoadBalancer { files, services: vec!["haproxy", "keepalived"] })
        })
        .collect();
    let first = first_control_plane(inv);
    steps.push(step("lb/vip".into(), &first, Action::CheckVip { vip: vrrp.vip.to_string() }));
    Some(Phase { name: "loadbalancer", title: "keepalived (VIP) and HAProxy on every control plane", execution: Execution::Sequential, steps })
}

/// kubeadm init on the first control plane, then control-plane joins one at a time: each join changes
/// what the API path depends on, so the next starts only when the API answers through the endpoint.
fn control_plane(inv: &Inventory) -> Phase {
    let endpoint = endpoint(inv);
    let mut steps = Vec::new();
    for (i, h) in inv.control_planes().enumerate() {
        let action = if i == 0 {
            Action::KubeadmInit { endpoint: endpoint.clone(), config: KUBEADM_CONFIG.into() }
        } else {
            Action::KubeadmJoinControlPlane { endpoint: endpoint.clone(), config: KUBEADM_CONFIG.into() }
        };
        steps.push(step(format!("kubeadm/{}/{}", h.name, if i == 0 { "init" } else { "join" }), &h.name, action));
        steps.push(step(format!("kubeadm/{}/ready", h.name), &h.name, Action::WaitApiReady { endpoint: endpoint.clone() }));
    }
    Phase { name: "control-plane", title: "kubeadm init, then control-plane joins one at a time", execution: Execution::Sequential, steps }
}

fn cni(inv: &Inventory) -> Phase {
    let first = first_control_plane(inv);
    let cni = inv.kubernetes.cni;
    let manifest = format!("_cluster/{}", render::cni_file(cni));
    let steps = vec![step("cni/apply".into(), &first, Action::ApplyCni { cni: cni.name(), version: inv.kubernetes.cni_version.to_string(), manifest })];
    Phase { name: "cni", title: "pod network", execution: Execution::Sequential, steps }
}

fn workers(inv: &Inventory) -> Option<Phase> {
    let endpoint = endpoint(inv);
    let steps: Vec<Step> = inv
        .workers()
        .map(|h| step(format!("workers/{}", h.name), &h.name, Action::KubeadmJoinWorker { endpoint: endpoint.clone(), config: KUBEADM_CONFIG.into() }))
        .collect();
    (!steps.is_empty()).then(|| Phase { name: "workers", title: "worker joins", execution: parallel(inv), steps })
}

/// Every node gets its failure-domain labels; those a kubelet may not set on itself (NodeRestriction)
/// are only applied here, with an admin credential.
fn labels(inv: &Inventory) -> Phase {
    let first = first_control_plane(inv);
    let steps = inv
        .hosts
        .iter()
        .map(|h| {
            let labels = context::node_labels(h).into_iter().map(|(k, v)| format!("{k}={v}")).collect();
            step(format!("labels/{}", h.name), &first, Action::LabelNode { node: h.name.clone(), labels })
        })
        .collect();
    Phase { name: "labels", title: "node labels (zone, rack, region and the inventory's own)", execution: Execution::Sequential, steps }
}

fn verify(inv: &Inventory) -> Phase {
    let first = first_control_plane(inv);
    let members = inv.control_planes().count();
    let mut checks = vec![format!("all {members} etcd members healthy, one leader, no learner")];
    match &inv.load_balancer {
        LoadBalancer::KeepalivedHaproxy(v) => {
            checks.push(format!("VIP {} held by exactly one control plane", v.vip));
            checks.push(format!("/readyz answers through {}", endpoint(inv)));
            checks.push(format!("every HAProxy backend up ({members} per control plane)"));
        }
        LoadBalancer::External { .. } => checks.push(format!("/readyz answers through {}", endpoint(inv))),
    }
    checks.push(format!("all {} nodes joined with their labels", inv.hosts.len()));
    let steps = vec![step("verify".into(), &first, Action::Verify { checks })];
    Phase { name: "verify", title: "final verification", execution: Execution::Sequential, steps }
}

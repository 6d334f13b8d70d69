//! The planner against partial states: what a killed or interrupted run leaves behind, and a converged cluster.
use super::*;
use crate::etcd::gate::View;
use crate::etcd::status::{EndpointHealth, EndpointStatus, Member};
use crate::facts::observe::HostState;
use crate::state::ClusterState;

fn lab() -> Inventory {
    crate::inventory::load(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/inventories/lab.yaml"))).unwrap().inventory.unwrap()
}

fn desired(inv: &Inventory) -> Desired {
    let state = ClusterState::create(inv).unwrap();
    let rendered = crate::render::render(inv, &state.secrets, &crate::render::templates::Templates::builtin().unwrap()).unwrap();
    Desired::build(inv, &rendered, &state)
}

fn member(i: u64, name: &str, learner: bool) -> Member {
    let address = format!("198.18.0.1{i}");
    Member {
        id: i,
        name: name.into(),
        peer_urls: vec![format!("https://{address}:2380")],
        client_urls: vec![format!("https://{address}:2379")],
        is_learner: learner,
    }
}

fn view(members: Vec<Member>) -> View {
    let statuses = members
        .iter()
        .map(|m| EndpointStatus {
            endpoint: m.client_urls[0].clone(),
            member_id: m.id,
            leader: 1,
            raft_index: 100,
            raft_applied_index: 100,
            is_learner: m.is_learner,
            version: "3.5.24".into(),
            errors: vec![],
        })
        .collect();
    let health = members.iter().map(|m| EndpointHealth { endpoint: m.client_urls[0].clone(), healthy: true, error: None }).collect();
    View { members, statuses, health }
}

/// Every host exactly as desired: files, services, etcd members, registered nodes with labels.
fn converged(inv: &Inventory, d: &Desired) -> Observed {
    let mut o = Observed::default();
    for h in &inv.hosts {
        let mut s = HostState::default();
        for f in d.host_files(&h.name) {
            s.digests.insert(f.path.clone(), f.digest.clone());
        }
        s.digests.insert(KUBELET_CONF.into(), "0".repeat(64));
        if h.is_control_plane() {
            s.digests.insert(ADMIN_CONF.into(), "0".repeat(64));
        }
        for u in ["etcd", "haproxy", "keepalived", "kubelet"] {
            s.active.insert(u.into(), true);
        }
        o.hosts.insert(h.name.clone(), s);
    }
    o.etcd = Some(view(vec![member(1, "cp-1", false), member(2, "cp-2", false), member(3, "cp-3", false)]));
    o.nodes = Some(inv.hosts.iter().map(|h| (h.name.clone(), context::node_labels(h).into_iter().collect())).collect());
    o
}

fn ids(plan: &Plan) -> Vec<&str> {
    plan.steps().map(|s| s.id.as_str()).collect()
}

#[test]
fn a_converged_cluster_plans_only_the_verification() {
    let inv = lab();
    let d = desired(&inv);
    let plan = converge(&inv, &d, &converged(&inv, &d), "observed");
    assert_eq!(plan.changes(), 0, "{}", text(&plan));
    assert_eq!(ids(&plan), ["verify"]);
}

#[test]
fn a_learner_left_by_a_killed_run_is_caught_up_and_promoted_without_a_second_add() {
    let inv = lab();
    let d = desired(&inv);
    let mut o = converged(&inv, &d);
    o.etcd = Some(view(vec![member(1, "cp-1", false), member(2, "cp-2", false), member(3, "", true)]));
    o.hosts.get_mut("cp-3").unwrap().active.insert("etcd".into(), false);
    let plan = converge(&inv, &d, &o, "observed");
    assert_eq!(ids(&plan), ["etcd/cp-3/start", "etcd/cp-3/caught-up", "etcd/cp-3/promote", "etcd/cp-3/gate-after", "verify"]);
    let gate = plan.steps().find(|s| s.id == "etcd/cp-3/gate-after").unwrap();
    assert_eq!(gate.host, "cp-1", "gates run on a running voter, not the member in flux");
}

#[test]
fn a_changed_member_config_restarts_that_member_alone_between_gates() {
    let inv = lab();
    let d = desired(&inv);
    let mut o = converged(&inv, &d);
    o.hosts.get_mut("cp-2").unwrap().digests.insert("/etc/etcd/etcd.conf.yml".into(), "f".repeat(64));
    let plan = converge(&inv, &d, &o, "observed");
    assert_eq!(ids(&plan), ["etcd/cp-2/gate-before", "etcd/cp-2/files", "etcd/cp-2/restart", "etcd/cp-2/gate-after", "verify"]);
    assert!(plan.steps().find(|s| s.id == "etcd/cp-2/files").unwrap().reason.contains("etcd.conf.yml differs"));
    assert!(plan.steps().filter(|s| matches!(s.action, Action::Gate(_))).all(|s| s.host == "cp-1"));
}

#[test]
fn a_node_with_kubeadm_leftovers_is_reset_before_it_joins() {
    let inv = lab();
    let d = desired(&inv);
    let mut o = converged(&inv, &d);
    o.nodes.as_mut().unwrap().remove("wk-2");
    let plan = converge(&inv, &d, &o, "observed");
    let join = plan.steps().find(|s| s.id == "workers/wk-2").unwrap();
    assert!(matches!(join.action, Action::KubeadmJoinWorker { reset_first: true, .. }), "{join:?}");
    assert_eq!(join.reason, "joined files present but the node is not registered");
    assert!(plan.steps().any(|s| s.id == "labels/wk-2"));
}

#[test]
fn an_api_that_does_not_answer_blocks_instead_of_a_second_init() {
    let inv = lab();
    let d = desired(&inv);
    let mut o = converged(&inv, &d);
    o.nodes = None;
    o.api_error = Some("cp-1: connection refused".into());
    let plan = converge(&inv, &d, &o, "observed");
    assert!(plan.blocked());
    assert!(!plan.steps().any(|s| matches!(s.action, Action::KubeadmInit { .. })));
}

#[test]
fn joins_after_an_earlier_init_upload_the_certificates_again_first() {
    let inv = lab();
    let d = desired(&inv);
    let mut o = converged(&inv, &d);
    o.nodes.as_mut().unwrap().remove("cp-3");
    o.hosts.get_mut("cp-3").unwrap().digests.remove(KUBELET_CONF);
    o.hosts.get_mut("cp-3").unwrap().digests.remove(ADMIN_CONF);
    let plan = converge(&inv, &d, &o, "observed");
    let cp: Vec<&str> = plan.phases.iter().find(|p| p.name == "control-plane").unwrap().steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(cp, ["kubeadm/upload-certs", "kubeadm/cp-3/join", "kubeadm/cp-3/ready"]);
}

#[test]
fn an_etcd_member_outside_the_inventory_is_reported() {
    let inv = lab();
    let d = desired(&inv);
    let mut o = converged(&inv, &d);
    o.etcd = Some(view(vec![member(1, "cp-1", false), member(2, "cp-2", false), member(3, "cp-3", false), member(4, "cp-9", false)]));
    let plan = converge(&inv, &d, &o, "observed");
    assert!(plan.findings.iter().any(|f| f.problem.contains("cp-9") && f.fix.contains("node remove")), "{:?}", plan.findings);
}

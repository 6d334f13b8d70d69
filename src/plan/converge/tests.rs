//! The planner against partial states: what a killed or interrupted run leaves behind, and a converged cluster.
use super::*;
use crate::etcd::gate::View;
use crate::etcd::status::{EndpointHealth, EndpointStatus, Member};
use crate::facts::observe::{self, ETCD_CONFIG, ETCD_CONFIG_RUNTIME, HostState};
use crate::state::ClusterState;

fn lab() -> Inventory {
    crate::inventory::load(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/inventories/lab.yaml"))).unwrap().inventory.unwrap()
}

fn desired(inv: &Inventory) -> Desired {
    desired_with(inv, &ClusterState::create(inv).unwrap())
}

fn desired_with(inv: &Inventory, state: &ClusterState) -> Desired {
    let rendered = crate::render::render(inv, &state.secrets, &crate::render::templates::Templates::builtin().unwrap()).unwrap();
    Desired::build(inv, &rendered, state)
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
            if f.path == ETCD_CONFIG {
                s.digests.insert(ETCD_CONFIG_RUNTIME.into(), observe::runtime_digest(&f.contents));
            }
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
    assert_eq!(
        ids(&plan),
        ["etcd/cp-3/gate-before", "etcd/snapshot", "etcd/cp-3/start", "etcd/cp-3/caught-up", "etcd/cp-3/promote", "etcd/cp-3/gate-after", "verify"]
    );
    for id in ["etcd/cp-3/gate-before", "etcd/cp-3/gate-after"] {
        assert_eq!(plan.steps().find(|s| s.id == id).unwrap().host, "cp-1", "gates run on a running voter, not the member in flux");
    }
}

#[test]
fn promoting_a_leftover_learner_is_gated_before_on_the_voters_allowing_only_that_learner() {
    let inv = lab();
    let d = desired(&inv);
    let mut o = converged(&inv, &d);
    o.etcd = Some(view(vec![member(1, "cp-1", false), member(2, "cp-2", false), member(3, "cp-3", true)]));
    let plan = converge(&inv, &d, &o, "observed");
    let Some(Action::Gate(before)) = plan.steps().find(|s| s.id == "etcd/cp-3/gate-before").map(|s| &s.action) else {
        panic!("no gate before the promotion: {}", text(&plan))
    };
    assert_eq!((before.when, before.change.as_str(), before.max_learners), (GateWhen::Before, "promote cp-3", 1));
    assert_eq!(before.voters, ["cp-1", "cp-2"]);
    let position = |id: &str| plan.steps().position(|s| s.id == id).unwrap();
    assert!(position("etcd/cp-3/gate-before") < position("etcd/cp-3/promote"));
    // The gate holds on exactly that state: two healthy voters and the one learner.
    assert_eq!(crate::etcd::gate::evaluate(before, o.etcd.as_ref().unwrap()), Ok(()));
}

#[test]
fn a_changed_member_config_restarts_that_member_alone_between_gates() {
    let inv = lab();
    let d = desired(&inv);
    let mut o = converged(&inv, &d);
    o.hosts.get_mut("cp-2").unwrap().digests.insert(ETCD_CONFIG.into(), "f".repeat(64));
    o.hosts.get_mut("cp-2").unwrap().digests.insert(ETCD_CONFIG_RUNTIME.into(), "f".repeat(64));
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

/// The lab inventory with cp-2's entry replaced by cp-4 (198.18.0.14), as an operator edits it.
fn swapped() -> Inventory {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/inventories/lab.yaml")).unwrap();
    let text = text.replace("{name: cp-2, address: 198.18.0.12", "{name: cp-4, address: 198.18.0.14");
    let paths = crate::inventory::PathContext { inventory_dir: env!("CARGO_MANIFEST_DIR").into(), home: None };
    crate::inventory::parse("swapped.yaml".into(), text, &paths).inventory.unwrap()
}

/// The desired files of `inv` and of `lab` for one cluster (the same CAs and member certificates).
fn one_cluster(lab: &Inventory, inv: &Inventory) -> (Desired, Desired) {
    let mut state = ClusterState::create(lab).unwrap();
    let before = desired_with(lab, &state);
    state.issue_missing_members(inv).unwrap();
    (desired_with(inv, &state), before)
}

fn unhealthy(mut v: View, names: &[&str]) -> View {
    let ids: Vec<u64> = v.members.iter().filter(|m| names.contains(&m.name.as_str())).map(|m| m.id).collect();
    v.statuses.retain(|s| !ids.contains(&s.member_id));
    for h in &mut v.health {
        if v.members.iter().any(|m| ids.contains(&m.id) && m.client_urls.contains(&h.endpoint)) {
            h.healthy = false;
        }
    }
    v
}

/// cp-2 died and the inventory has cp-4 in its place: what `node replace cp-2 --with cp-4` and `apply` run.
fn replacing_a_dead_member() -> (Inventory, Plan) {
    let (lab, inv) = (lab(), swapped());
    let (d, before) = one_cluster(&lab, &inv);
    let mut o = converged(&lab, &before);
    o.hosts.remove("cp-2");
    o.hosts.insert("cp-4".into(), HostState::default());
    o.etcd = Some(unhealthy(o.etcd.take().unwrap(), &["cp-2"]));
    let plan = converge(&inv, &d, &o, "observed");
    (inv, plan)
}

#[test]
fn a_dead_member_is_removed_with_a_snapshot_then_its_replacement_added() {
    let (_, plan) = replacing_a_dead_member();
    assert!(!plan.blocked(), "{}", text(&plan));
    let etcd: Vec<&str> = plan.phases.iter().find(|p| p.name == "etcd").unwrap().steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(
        etcd,
        [
            "etcd/cp-2/gate-before",
            "etcd/snapshot",
            "etcd/cp-2/remove",
            "etcd/cp-2/gate-after",
            "etcd/cp-1/files",
            "etcd/cp-4/gate-before",
            "etcd/cp-4/files",
            "etcd/cp-4/add-learner",
            "etcd/cp-4/start",
            "etcd/cp-4/caught-up",
            "etcd/cp-4/promote",
            "etcd/cp-4/gate-after",
            "etcd/cp-3/files"
        ]
    );
    let placed = plan.steps().find(|s| s.id == "etcd/cp-1/files").unwrap();
    assert!(placed.reason.contains("no restart"), "the new initial-cluster alone restarts nobody: {}", placed.reason);
    let Action::Gate(before) = &plan.steps().find(|s| s.id == "etcd/cp-2/gate-before").unwrap().action else { panic!() };
    assert_eq!(before.voters, ["cp-1", "cp-2", "cp-3"]);
    assert_eq!(before.may_be_down, ["cp-2"], "only the leaving member may be down");
    let Action::StartEtcdMember { initial_cluster: Some(initial), initial_cluster_state: "existing", .. } =
        &plan.steps().find(|s| s.id == "etcd/cp-4/start").unwrap().action
    else {
        panic!("a joining member starts with the current membership")
    };
    assert_eq!(initial, "cp-1=https://198.18.0.11:2380,cp-3=https://198.18.0.13:2380,cp-4=https://198.18.0.14:2380");
    let Action::Gate(after) = &plan.steps().find(|s| s.id == "etcd/cp-4/gate-before").unwrap().action else { panic!() };
    assert_eq!(after.voters, ["cp-1", "cp-3"]);
    assert!(after.may_be_down.is_empty());
    // The load balancer follows on the staying control planes, the new one joins, the old node goes.
    let lb: Vec<&str> = plan.phases.iter().find(|p| p.name == "loadbalancer").unwrap().steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(lb, ["lb/cp-1", "lb/cp-4", "lb/cp-3", "lb/vip"]);
    let cp: Vec<&str> = plan.phases.iter().find(|p| p.name == "control-plane").unwrap().steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(
        cp,
        ["kubeadm/cp-1/config", "kubeadm/upload-certs", "kubeadm/cp-4/join", "kubeadm/cp-4/ready"],
        "new etcd endpoints reach the cluster before the join"
    );
    assert!(matches!(plan.steps().find(|s| s.id == "kubeadm/cp-1/config").unwrap().action, Action::UploadKubeadmConfig { .. }));
    assert!(plan.steps().any(|s| s.id == "retire/cp-2/node"));
    assert!(!plan.steps().any(|s| s.id == "retire/cp-2/reset"), "a dead host is not reset");
    assert!(plan.findings.iter().any(|f| f.host == "cp-2" && f.problem.contains("cannot be reset") && !f.fatal));
}

#[test]
fn a_reachable_leaving_host_is_reset_after_it_left() {
    let (lab, inv) = (lab(), swapped());
    let (d, before) = one_cluster(&lab, &inv);
    let mut o = converged(&lab, &before);
    o.hosts.insert("cp-4".into(), HostState::default());
    o.reachable_leaving.insert("cp-2".into());
    let plan = converge(&inv, &d, &o, "observed");
    let retire: Vec<&str> = plan.phases.iter().find(|p| p.name == "retire").unwrap().steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(retire, ["retire/cp-2/node", "retire/cp-2/reset"]);
    assert_eq!(plan.steps().find(|s| s.id == "retire/cp-2/reset").unwrap().host, "cp-2");
}

#[test]
fn a_lost_quorum_blocks_every_change_and_points_at_restore() {
    let (lab, inv) = (lab(), swapped());
    let (d, before) = one_cluster(&lab, &inv);
    let mut o = converged(&lab, &before);
    o.hosts.insert("cp-4".into(), HostState::default());
    o.etcd = Some(unhealthy(o.etcd.take().unwrap(), &["cp-2", "cp-3"]));
    let plan = converge(&inv, &d, &o, "observed");
    assert!(plan.blocked());
    let f = plan.findings.iter().find(|f| f.fatal).unwrap();
    assert!(f.problem.contains("lost quorum") && f.problem.contains("1 of 3"), "{f:?}");
    assert!(f.fix.contains("kubeha etcd restore"), "{f:?}");
    assert!(!plan.steps().any(|s| s.action.changes_membership()));
}

#[test]
fn a_membership_change_while_a_staying_member_is_down_is_refused() {
    // cp-3 is down but stays in the inventory; replacing cp-2 would need cp-3.
    let (lab, inv) = (lab(), swapped());
    let (d, before) = one_cluster(&lab, &inv);
    let mut o = converged(&lab, &before);
    o.hosts.insert("cp-4".into(), HostState::default());
    o.etcd = Some(unhealthy(o.etcd.take().unwrap(), &["cp-3"]));
    let plan = converge(&inv, &d, &o, "observed");
    assert!(plan.blocked(), "{}", text(&plan));
    let f = plan.findings.iter().find(|f| f.fatal).unwrap();
    assert!(f.problem.contains("cp-3 do not answer"), "{f:?}");
    assert!(f.fix.contains("node replace cp-3"), "{f:?}");
}

#[test]
fn a_non_member_with_old_etcd_data_is_cleared_before_it_joins() {
    let inv = lab();
    let d = desired(&inv);
    let mut o = converged(&inv, &d);
    o.etcd = Some(view(vec![member(1, "cp-1", false), member(3, "cp-3", false)]));
    let plan = converge(&inv, &d, &o, "observed");
    let etcd: Vec<&str> = plan.phases.iter().find(|p| p.name == "etcd").unwrap().steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(&etcd[..4], ["etcd/cp-2/gate-before", "etcd/snapshot", "etcd/cp-2/clear-data", "etcd/cp-2/add-learner"]);
}

#[test]
fn a_skipped_unreadable_state_copy_is_rewritten_in_the_state_phase() {
    let inv = lab();
    let d = desired(&inv);
    let mut o = converged(&inv, &d);
    // The digest of an empty file: what a crash between rename and write-back left.
    o.hosts.get_mut("cp-2").unwrap().digests.insert(crate::state::STATE_FILE.into(), crate::ssh::upload::sha256_hex(b""));
    let plan = converge(&inv, &d, &o, "observed");
    assert_eq!(ids(&plan), ["state/cp-2", "verify"]);
}

//! The planner against partial states: what a killed or interrupted run leaves behind, and a converged cluster.
use super::*;
use crate::etcd::gate::View;
use crate::etcd::status::Member;
use crate::facts::observe::{self, FileMeta, HostState};
use crate::paths::{ETCD_CONFIG, ETCD_CONFIG_RUNTIME, KUBEADM_CONFIG, STATE_FILE};
use crate::plan::observed::{NodeState, ObservedHost, RegisteredNode};
use crate::render::context;
use crate::state::ClusterState;
use crate::test_support::{lab, lab_member as member};

fn desired(inv: &Inventory) -> Desired {
    desired_with(inv, &ClusterState::create(inv).unwrap())
}

fn desired_with(inv: &Inventory, state: &ClusterState) -> Desired {
    let rendered = crate::render::render(inv, &state.secrets, &crate::render::templates::Templates::builtin().unwrap()).unwrap();
    Desired::build(inv, &rendered, state)
}

/// Every member healthy, cp-1 (id 1) leading.
fn view(members: Vec<Member>) -> View {
    crate::test_support::view(members, 1, &[])
}

/// The member on each of `hosts` answers `member list` with the view's cluster and members (replacing what
/// it answered before).
fn answer(o: &mut Observed, v: &View, hosts: &[&str]) {
    for (i, h) in hosts.iter().enumerate() {
        let list = crate::etcd::status::MemberList { cluster_id: v.cluster_id, member_id: i as u64 + 1, members: v.members.clone() };
        o.hosts.get_mut(*h).expect("only an observed host answers").etcd_answer = Some(list);
    }
}

/// No member answered on its own.
fn silence(o: &mut Observed) {
    o.hosts.values_mut().for_each(|h| h.etcd_answer = None);
}

/// Every control plane's member answers with the view `o` has.
fn every_member_answers(o: &mut Observed, inv: &Inventory) {
    let v = o.etcd.clone().expect("a view to answer with");
    silence(o);
    answer(o, &v, &inv.control_planes().map(|h| h.name.as_str()).collect::<Vec<_>>());
}

/// Each registered node of `inv` reports its inventory address as its InternalIP.
fn nodes_report_addresses(o: &mut Observed, inv: &Inventory) {
    for h in &inv.hosts {
        o.nodes.as_mut().unwrap().get_mut(&h.name).unwrap().address = Some(h.address);
    }
}

/// Every host exactly as desired: files, services, etcd members, registered nodes with labels.
fn converged(inv: &Inventory, d: &Desired) -> Observed {
    let mut o = Observed::default();
    for h in &inv.hosts {
        let mut s = HostState::default();
        for f in d.host_files(&h.name) {
            s.digests.insert(f.path.clone(), f.digest.clone());
            s.meta.insert(f.path.clone(), root_owned(f.mode));
            if f.path == ETCD_CONFIG {
                s.digests.insert(ETCD_CONFIG_RUNTIME.into(), observe::runtime_digest(&f.contents));
            }
        }
        s.digests.insert(KUBELET_CONF.into(), "0".repeat(64));
        let mut kubeadm_secrets = vec![KUBELET_CONF];
        if h.is_control_plane() {
            s.digests.insert(ADMIN_CONF.into(), "0".repeat(64));
            kubeadm_secrets.extend([ADMIN_CONF, APISERVER_KEY]);
        }
        for p in kubeadm_secrets {
            s.meta.insert(p.into(), root_owned(0o600));
            s.secret_files.insert(p.into());
        }
        for u in ["etcd", "haproxy", "keepalived", "kubelet", crate::phases::backup::TIMER] {
            s.active.insert(u.into(), true);
        }
        s.software = installed_as_wanted(inv, &h.name);
        if h.is_control_plane() {
            s.static_pod_images = static_pods_on(inv.kubernetes.version);
            s.apiserver_etcd_servers = Some(crate::render::context::etcd_endpoints(inv));
        }
        o.hosts.insert(h.name.clone(), ObservedHost { state: s, ..Default::default() });
    }
    o.cluster_version = Some(inv.kubernetes.version);
    o.cluster_etcd_endpoints = Some(crate::render::context::etcd_endpoints(inv));
    o.etcd = Some(view(vec![member(1, "cp-1", false), member(2, "cp-2", false), member(3, "cp-3", false)]));
    every_member_answers(&mut o, inv);
    let registered = |h: &Host| RegisteredNode {
        labels: h.node_labels().into_iter().collect(),
        kubelet: NodeState { kubelet_version: Some(inv.kubernetes.version), ..Default::default() },
        ..Default::default()
    };
    o.nodes = Some(inv.hosts.iter().map(|h| (h.name.clone(), registered(h))).collect());
    o
}

/// What the software phase records on `host` once it installed everything the inventory gives it.
fn installed_as_wanted(inv: &Inventory, host: &str) -> std::collections::BTreeMap<crate::artifacts::Kind, crate::software::Installed> {
    use crate::software::record::{Program, Record};
    crate::artifacts::catalogue::needed_on(inv, host)
        .into_iter()
        .map(|a| {
            let programs: Vec<Program> =
                a.kind.provides().iter().map(|p| Program { path: a.kind.install_path(p), sha256: crate::digest::sha256_hex(p.as_bytes()) }).collect();
            let current = programs.iter().map(|p| (p.path.clone(), Some(p.sha256.clone()))).collect();
            let record = Record { kind: a.kind, version: a.version, arch: a.arch.name().into(), sha256: "a".repeat(64), programs };
            (a.kind, crate::software::Installed { record, current })
        })
        .collect()
}

/// The lab converged on older releases (as `older` edits the inventory), with the cluster state the new
/// inventory's desired files must share: what an upgrade starts from.
fn converged_on(older: impl Fn(&mut Inventory)) -> (ClusterState, Observed) {
    let mut old = lab();
    older(&mut old);
    let state = ClusterState::create(&old).unwrap();
    let observed = converged(&old, &desired_with(&old, &state));
    (state, observed)
}

/// The images of kubeadm's control-plane manifests for `version`.
fn static_pods_on(version: crate::inventory::Version) -> std::collections::BTreeMap<String, String> {
    crate::paths::STATIC_PODS.iter().map(|p| (p.to_string(), format!("registry.k8s.io/{p}:v{version}"))).collect()
}

fn root_owned(mode: u32) -> FileMeta {
    FileMeta { mode, owner: "root".into(), group: "root".into() }
}

/// A key kubeadm writes on every control plane (kubeha does not manage its contents).
const APISERVER_KEY: &str = "/etc/kubernetes/pki/apiserver.key";
const SERVER_KEY: &str = "/etc/kubeha/pki/etcd/server.key";

/// The plan of a scenario below as golden files, text and JSON, in tests/golden/plan/observed: insta
/// snapshots like the offline plans of tests/render_golden.rs, so a refactoring that changes what a
/// scenario plans shows up as a diff. Re-bless an intended change with `INSTA_UPDATE=always cargo test --lib`
/// (or `cargo insta review`).
fn golden(name: &str, plan: &Plan) {
    runs_where_it_says(plan);
    let mut settings = insta::Settings::clone_current();
    // Relative to this file: src/plan/converge/.
    settings.set_snapshot_path("../../../tests/golden/plan/observed");
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| {
        insta::assert_snapshot!(format!("{name}__text"), text(plan));
        insta::assert_snapshot!(format!("{name}__json"), serde_json::to_string_pretty(plan).unwrap());
    });
}

/// The executor runs these actions on the step's host and reads the member or host they name from nowhere
/// else: the name shown must be that host.
fn runs_where_it_says(plan: &Plan) {
    for s in plan.steps() {
        let named = match &s.action {
            Action::InstallEtcdFiles { member, .. } | Action::StartEtcdMember { member, .. } | Action::ClearEtcdData { member } => member,
            Action::ResetHost { host, .. } => host,
            _ => continue,
        };
        assert_eq!(named, &s.host, "{}: {}", s.id, text(plan));
    }
}

fn ids(plan: &Plan) -> Vec<&str> {
    plan.steps().map(|s| s.id.as_str()).collect()
}

#[test]
fn a_converged_cluster_plans_only_the_verification() {
    let inv = lab();
    let d = desired(&inv);
    let plan = converge(&inv, &d, &converged(&inv, &d), Basis::Observed);
    golden("a_converged_cluster_plans_only_the_verification", &plan);
    assert_eq!(plan.changes(), 0, "{}", text(&plan));
    assert_eq!(ids(&plan), ["verify"]);
}

#[test]
fn a_learner_left_by_a_killed_run_is_caught_up_and_promoted_without_a_second_add() {
    let inv = lab();
    let d = desired(&inv);
    let mut o = converged(&inv, &d);
    o.etcd = Some(view(vec![member(1, "cp-1", false), member(2, "cp-2", false), member(3, "", true)]));
    o.hosts.get_mut("cp-3").unwrap().state.active.insert("etcd".into(), false);
    let plan = converge(&inv, &d, &o, Basis::Observed);
    golden("a_learner_left_by_a_killed_run_is_caught_up_and_promoted_without_a_second_add", &plan);
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
    let plan = converge(&inv, &d, &o, Basis::Observed);
    golden("promoting_a_leftover_learner_is_gated_before_on_the_voters_allowing_only_that_learner", &plan);
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
    o.hosts.get_mut("cp-2").unwrap().state.digests.insert(ETCD_CONFIG.into(), "f".repeat(64));
    o.hosts.get_mut("cp-2").unwrap().state.digests.insert(ETCD_CONFIG_RUNTIME.into(), "f".repeat(64));
    let plan = converge(&inv, &d, &o, Basis::Observed);
    golden("a_changed_member_config_restarts_that_member_alone_between_gates", &plan);
    assert_eq!(ids(&plan), ["etcd/cp-2/gate-before", "etcd/cp-2/move-leader", "etcd/cp-2/files", "etcd/cp-2/restart", "etcd/cp-2/gate-after", "verify"]);
    assert!(plan.steps().find(|s| s.id == "etcd/cp-2/files").unwrap().reason.contains("etcd.conf.yml differs"));
    assert!(matches!(&plan.steps().find(|s| s.id == "etcd/cp-2/move-leader").unwrap().action, Action::MoveEtcdLeader { from } if from == "cp-2"));
    assert!(plan.steps().filter(|s| matches!(s.action, Action::Gate(_))).all(|s| s.host == "cp-1"));
}

#[test]
fn a_node_with_kubeadm_leftovers_is_reset_before_it_joins() {
    let inv = lab();
    let d = desired(&inv);
    let mut o = converged(&inv, &d);
    o.nodes.as_mut().unwrap().remove("wk-2");
    let plan = converge(&inv, &d, &o, Basis::Observed);
    golden("a_node_with_kubeadm_leftovers_is_reset_before_it_joins", &plan);
    let join = plan.steps().find(|s| s.id == "workers/wk-2").unwrap();
    assert!(matches!(join.action, Action::KubeadmJoinWorker { reset_first: true, .. }), "{join:?}");
    assert_eq!(join.reason, "joined files present but the node is not registered");
    assert!(plan.steps().any(|s| s.id == "labels/wk-2"));
}

/// `converged`, but the API does not answer although cp-1 has admin.conf.
fn api_silent(inv: &Inventory, d: &Desired) -> Observed {
    let mut o = converged(inv, d);
    o.nodes = None;
    o.api_error = Some("cp-1: connection refused".into());
    o
}

#[test]
fn an_api_that_does_not_answer_blocks_instead_of_a_second_init() {
    let inv = lab();
    let d = desired(&inv);
    let mut o = api_silent(&inv, &d);
    let plan = converge(&inv, &d, &o, Basis::Observed);
    golden("an_api_that_does_not_answer_blocks_instead_of_a_second_init", &plan);
    assert!(plan.blocked());
    assert!(!plan.steps().any(|s| matches!(s.action, Action::KubeadmInit { .. })));
    // etcd holds Kubernetes objects: a cluster exists behind the silent API, still blocked.
    o.kubernetes_data = Some(true);
    assert!(converge(&inv, &d, &o, Basis::Observed).blocked());
}

#[test]
fn an_init_that_failed_before_the_api_wrote_to_etcd_is_reset_and_retried() {
    let inv = lab();
    let d = desired(&inv);
    let mut o = api_silent(&inv, &d);
    o.kubernetes_data = Some(false);
    let plan = converge(&inv, &d, &o, Basis::Observed);
    golden("an_init_that_failed_before_the_api_wrote_to_etcd_is_reset_and_retried", &plan);
    assert!(!plan.blocked(), "{:?}", plan.findings);
    let init = plan.steps().find(|s| matches!(s.action, Action::KubeadmInit { .. })).expect("an init step");
    assert!(matches!(init.action, Action::KubeadmInit { reset_first: true, .. }), "{init:?}");
}

#[test]
fn joins_after_an_earlier_init_upload_the_certificates_again_first() {
    let inv = lab();
    let d = desired(&inv);
    let mut o = converged(&inv, &d);
    o.nodes.as_mut().unwrap().remove("cp-3");
    o.hosts.get_mut("cp-3").unwrap().state.digests.remove(KUBELET_CONF);
    o.hosts.get_mut("cp-3").unwrap().state.digests.remove(ADMIN_CONF);
    let plan = converge(&inv, &d, &o, Basis::Observed);
    golden("joins_after_an_earlier_init_upload_the_certificates_again_first", &plan);
    let cp: Vec<&str> = plan.phases.iter().find(|p| p.name == "control-plane").unwrap().steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(cp, ["kubeadm/upload-certs", "kubeadm/cp-3/join", "kubeadm/cp-3/ready"]);
}

/// The lab inventory as an operator edited it: `edit` applied to inventories/lab.yaml's text.
fn edited_lab(name: &str, edit: impl Fn(String) -> String) -> Inventory {
    let text = edit(std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/inventories/lab.yaml")).unwrap());
    let paths = crate::inventory::PathContext { inventory_dir: env!("CARGO_MANIFEST_DIR").into(), home: None };
    crate::inventory::parse(name.into(), text, &paths).inventory.unwrap()
}

/// `text` without its lines containing `needle` (a host's entry taken out of the inventory).
fn without_line(text: &str, needle: &str) -> String {
    text.lines().filter(|l| !l.contains(needle)).map(|l| format!("{l}\n")).collect()
}

/// The lab inventory with cp-2's entry replaced by cp-4 (198.18.0.14), as an operator edits it.
fn swapped() -> Inventory {
    edited_lab("swapped.yaml", |t| t.replace("{name: cp-2, address: 198.18.0.12", "{name: cp-4, address: 198.18.0.14"))
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
    o.hosts.insert("cp-4".into(), ObservedHost::default());
    o.etcd = Some(unhealthy(o.etcd.take().unwrap(), &["cp-2"]));
    let plan = converge(&inv, &d, &o, Basis::Observed);
    (inv, plan)
}

#[test]
fn a_dead_member_is_removed_with_a_snapshot_then_its_replacement_added() {
    let (_, plan) = replacing_a_dead_member();
    golden("a_dead_member_is_removed_with_a_snapshot_then_its_replacement_added", &plan);
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
    let Action::StartEtcdMember { initial_cluster: Some(initial), initial_cluster_state: EtcdCluster::Existing, .. } =
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
        ["kubeadm/cp-1/config", "kubeadm/cp-1/etcd-servers", "kubeadm/upload-certs", "kubeadm/cp-4/join", "kubeadm/cp-4/ready", "kubeadm/cp-3/etcd-servers"],
        "new etcd endpoints reach the cluster before the join; the API servers that named cp-2 name cp-4 instead"
    );
    assert!(matches!(plan.steps().find(|s| s.id == "kubeadm/cp-1/config").unwrap().action, Action::UploadKubeadmConfig { .. }));
    assert!(plan.steps().any(|s| s.id == "retire/cp-2/node"));
    assert!(!plan.steps().any(|s| s.id == "retire/cp-2/reset"), "a dead host is not reset");
    assert!(plan.findings.iter().any(|f| f.host == "cp-2" && f.problem.contains("cannot be reset") && !f.fatal));
}

/// cp-2 answers and the inventory has cp-4 in its place (`node replace cp-2 --with cp-4` of a live member).
fn replacing_a_live_member() -> Plan {
    let (lab, inv) = (lab(), swapped());
    let (d, before) = one_cluster(&lab, &inv);
    let mut o = converged(&lab, &before);
    o.hosts.insert("cp-4".into(), ObservedHost::default());
    o.reachable_leaving.insert("cp-2".into());
    converge(&inv, &d, &o, Basis::Observed)
}

#[test]
fn a_live_member_is_replaced_learner_first_and_leaves_before_the_promotion() {
    let plan = replacing_a_live_member();
    golden("a_live_member_is_replaced_learner_first_and_leaves_before_the_promotion", &plan);
    assert!(!plan.blocked(), "{}", text(&plan));
    let etcd: Vec<&str> = etcd_steps(&plan).iter().map(|s| s.id.as_str()).collect();
    assert_eq!(
        etcd,
        [
            "etcd/cp-1/files",
            "etcd/cp-4/gate-before",
            "etcd/snapshot",
            "etcd/cp-4/files",
            "etcd/cp-4/add-learner",
            "etcd/cp-4/start",
            "etcd/cp-4/caught-up",
            "etcd/cp-2/gate-before",
            "etcd/cp-2/move-leader",
            "etcd/cp-2/remove",
            "etcd/cp-2/gate-after",
            "etcd/cp-4/promote",
            "etcd/cp-4/gate-after",
            "etcd/cp-3/files"
        ],
        "{}",
        text(&plan)
    );
    let gate = |id: &str| match &plan.steps().find(|s| s.id == id).unwrap().action {
        Action::Gate(g) => g.clone(),
        other => panic!("{id}: {other:?}"),
    };
    // Three voters until the old one goes; the caught-up learner is the one member in flux.
    assert_eq!(gate("etcd/cp-4/gate-before").voters, ["cp-1", "cp-2", "cp-3"]);
    assert_eq!(gate("etcd/cp-4/gate-before").max_learners, 0);
    assert_eq!((gate("etcd/cp-2/gate-before").voters, gate("etcd/cp-2/gate-before").max_learners), (vec!["cp-1".into(), "cp-2".into(), "cp-3".into()], 1));
    assert_eq!((gate("etcd/cp-2/gate-after").voters, gate("etcd/cp-2/gate-after").max_learners), (vec!["cp-1".into(), "cp-3".into()], 1));
    assert_eq!((gate("etcd/cp-4/gate-after").voters, gate("etcd/cp-4/gate-after").max_learners), (vec!["cp-1".into(), "cp-3".into(), "cp-4".into()], 0));
    // The joiner's initial cluster is the membership at its start: the old member is still in it.
    let Action::StartEtcdMember { initial_cluster: Some(initial), .. } = &plan.steps().find(|s| s.id == "etcd/cp-4/start").unwrap().action else { panic!() };
    assert_eq!(initial, "cp-1=https://198.18.0.11:2380,cp-2=https://198.18.0.12:2380,cp-3=https://198.18.0.13:2380,cp-4=https://198.18.0.14:2380");
    // Every membership step runs on a member that stays.
    assert!(
        etcd_steps(&plan)
            .iter()
            .filter(|s| s.action.changes_membership() || matches!(s.action, Action::Gate(_) | Action::MoveEtcdLeader { .. }))
            .all(|s| s.host == "cp-1")
    );
}

#[test]
fn two_swapped_live_members_are_replaced_one_pair_at_a_time() {
    let lab = lab();
    let inv = edited_lab("two-swapped.yaml", |t| {
        t.replace("{name: cp-2, address: 198.18.0.12", "{name: cp-4, address: 198.18.0.14")
            .replace("{name: cp-3, address: 198.18.0.13", "{name: cp-5, address: 198.18.0.15")
    });
    let (d, before) = one_cluster(&lab, &inv);
    let mut o = converged(&lab, &before);
    o.hosts.insert("cp-4".into(), ObservedHost::default());
    o.hosts.insert("cp-5".into(), ObservedHost::default());
    let plan = converge(&inv, &d, &o, Basis::Observed);
    golden("two_swapped_live_members_are_replaced_one_pair_at_a_time", &plan);
    assert!(!plan.blocked(), "{}", text(&plan));
    let membership: Vec<&str> = etcd_steps(&plan).iter().filter(|s| s.action.changes_membership()).map(|s| s.id.as_str()).collect();
    assert_eq!(
        membership,
        ["etcd/cp-4/add-learner", "etcd/cp-2/remove", "etcd/cp-4/promote", "etcd/cp-5/add-learner", "etcd/cp-3/remove", "etcd/cp-5/promote"]
    );
}

#[test]
fn a_removed_live_member_hands_over_leadership_first_and_a_dead_one_does_not() {
    // `node remove cp-3` of a live member: nobody joins, it leaves first, after a leadership transfer.
    let lab = lab();
    let inv = edited_lab("without-cp-3.yaml", |t| without_line(&t, "{name: cp-3,"));
    let (d, before) = one_cluster(&lab, &inv);
    let o = converged(&lab, &before);
    let plan = converge(&inv, &d, &o, Basis::Observed);
    golden("a_removed_live_member_hands_over_leadership_first_and_a_dead_one_does_not", &plan);
    let etcd: Vec<&str> = etcd_steps(&plan).iter().map(|s| s.id.as_str()).take(4).collect();
    assert_eq!(etcd, ["etcd/cp-3/gate-before", "etcd/snapshot", "etcd/cp-3/move-leader", "etcd/cp-3/remove"], "{}", text(&plan));
    let (_, dead) = replacing_a_dead_member();
    assert!(!dead.steps().any(|s| matches!(s.action, Action::MoveEtcdLeader { .. })), "a dead member cannot lead: {}", text(&dead));
}

#[test]
fn a_renamed_host_is_refused_and_nothing_is_reset() {
    let lab = lab();
    let inv = edited_lab("renamed.yaml", |t| t.replace("{name: cp-2, address: 198.18.0.12", "{name: cp-02, address: 198.18.0.12"));
    let (d, before) = one_cluster(&lab, &inv);
    let mut o = converged(&lab, &before);
    let cp2 = o.hosts.remove("cp-2").unwrap();
    o.hosts.insert("cp-02".into(), cp2);
    nodes_report_addresses(&mut o, &lab);
    let plan = converge(&inv, &d, &o, Basis::Observed);
    golden("a_renamed_host_is_refused_and_nothing_is_reset", &plan);
    assert!(plan.blocked(), "{}", text(&plan));
    let f = plan.findings.iter().find(|f| f.problem.contains("renaming a host is not supported")).unwrap_or_else(|| panic!("{}", text(&plan)));
    assert_eq!(f.host, "cp-02");
    assert!(f.problem.contains("etcd member cp-2") && f.problem.contains("Node cp-2 (InternalIP 198.18.0.12)"), "{f:?}");
    assert!(f.fix.contains("kubeha node remove cp-2") && f.fix.contains("kubeha node add cp-02"), "{f:?}");
    assert!(!plan.steps().any(|s| matches!(s.action, Action::ResetHost { .. } | Action::RemoveNode { .. })), "{}", text(&plan));
}

#[test]
fn a_leaving_host_is_reset_only_as_the_machine_its_node_reported() {
    let (lab, inv) = (lab(), swapped());
    let (d, before) = one_cluster(&lab, &inv);
    let mut o = converged(&lab, &before);
    o.hosts.insert("cp-4".into(), ObservedHost::default());
    o.reachable_leaving.insert("cp-2".into());
    o.nodes.as_mut().unwrap().get_mut("cp-2").unwrap().machine_id = Some("5e1f".into());
    let plan = converge(&inv, &d, &o, Basis::Observed);
    golden("a_leaving_host_is_reset_only_as_the_machine_its_node_reported", &plan);
    let reset = plan.steps().find(|s| s.id == "retire/cp-2/reset").unwrap();
    assert!(matches!(&reset.action, Action::ResetHost { machine_id: Some(id), .. } if id == "5e1f"), "{reset:?}");
}

#[test]
fn a_reachable_leaving_host_is_reset_after_it_left() {
    let (lab, inv) = (lab(), swapped());
    let (d, before) = one_cluster(&lab, &inv);
    let mut o = converged(&lab, &before);
    o.hosts.insert("cp-4".into(), ObservedHost::default());
    o.reachable_leaving.insert("cp-2".into());
    let plan = converge(&inv, &d, &o, Basis::Observed);
    golden("a_reachable_leaving_host_is_reset_after_it_left", &plan);
    let retire: Vec<&str> = plan.phases.iter().find(|p| p.name == "retire").unwrap().steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(retire, ["retire/cp-2/node", "retire/cp-2/reset"]);
    assert_eq!(plan.steps().find(|s| s.id == "retire/cp-2/reset").unwrap().host, "cp-2");
}

#[test]
fn a_lost_quorum_blocks_every_change_and_points_at_restore() {
    let (lab, inv) = (lab(), swapped());
    let (d, before) = one_cluster(&lab, &inv);
    let mut o = converged(&lab, &before);
    o.hosts.insert("cp-4".into(), ObservedHost::default());
    o.etcd = Some(unhealthy(o.etcd.take().unwrap(), &["cp-2", "cp-3"]));
    let plan = converge(&inv, &d, &o, Basis::Observed);
    golden("a_lost_quorum_blocks_every_change_and_points_at_restore", &plan);
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
    o.hosts.insert("cp-4".into(), ObservedHost::default());
    o.etcd = Some(unhealthy(o.etcd.take().unwrap(), &["cp-3"]));
    let plan = converge(&inv, &d, &o, Basis::Observed);
    golden("a_membership_change_while_a_staying_member_is_down_is_refused", &plan);
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
    let plan = converge(&inv, &d, &o, Basis::Observed);
    golden("a_non_member_with_old_etcd_data_is_cleared_before_it_joins", &plan);
    let etcd: Vec<&str> = plan.phases.iter().find(|p| p.name == "etcd").unwrap().steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(&etcd[..4], ["etcd/cp-2/gate-before", "etcd/snapshot", "etcd/cp-2/clear-data", "etcd/cp-2/add-learner"]);
}

#[test]
fn a_skipped_unreadable_state_copy_is_rewritten_in_the_state_phase() {
    let inv = lab();
    let d = desired(&inv);
    let mut o = converged(&inv, &d);
    // The digest of an empty file: what a crash between rename and write-back left.
    o.hosts.get_mut("cp-2").unwrap().state.digests.insert(STATE_FILE.into(), crate::digest::sha256_hex(b""));
    let plan = converge(&inv, &d, &o, Basis::Observed);
    golden("a_skipped_unreadable_state_copy_is_rewritten_in_the_state_phase", &plan);
    assert_eq!(ids(&plan), ["state/cp-2", "verify"]);
}

fn position(plan: &Plan, id: &str) -> usize {
    plan.steps().position(|s| s.id == id).unwrap_or_else(|| panic!("no step {id}: {}", text(plan)))
}

fn phase_index(plan: &Plan, name: &str) -> usize {
    plan.phases.iter().position(|p| p.name == name).unwrap_or_else(|| panic!("no phase {name}: {}", text(plan)))
}

fn token_steps(plan: &Plan) -> Vec<&str> {
    plan.steps().filter(|s| matches!(s.action, Action::RefreshJoinToken { .. } | Action::DeleteJoinToken)).map(|s| s.id.as_str()).collect()
}

#[test]
fn a_converged_cluster_plans_no_token_steps() {
    let inv = lab();
    let d = desired(&inv);
    let plan = converge(&inv, &d, &converged(&inv, &d), Basis::Observed);
    assert!(token_steps(&plan).is_empty(), "{}", text(&plan));
}

#[test]
fn a_worker_joining_an_existing_cluster_gets_a_fresh_token_before_and_none_after() {
    let inv = lab();
    let d = desired(&inv);
    let mut o = converged(&inv, &d);
    o.nodes.as_mut().unwrap().remove("wk-2");
    o.hosts.insert("wk-2".into(), ObservedHost::default());
    let plan = converge(&inv, &d, &o, Basis::Observed);
    golden("a_worker_joining_an_existing_cluster_gets_a_fresh_token_before_and_none_after", &plan);
    assert_eq!(token_steps(&plan), ["join-token/refresh", "join-token/delete"]);
    let refresh = plan.steps().find(|s| s.id == "join-token/refresh").unwrap();
    assert!(matches!(refresh.action, Action::RefreshJoinToken { valid_minutes: 60 }));
    assert_eq!(refresh.host, "cp-1", "on the seed");
    assert!(position(&plan, "join-token/refresh") < position(&plan, "workers/wk-2"));
    assert!(position(&plan, "labels/wk-2") < position(&plan, "join-token/delete"), "{}", text(&plan));
    assert!(phase_index(&plan, "join-token") < phase_index(&plan, "workers"));
    assert_eq!(phase_index(&plan, "join-token-delete"), phase_index(&plan, "labels") + 1);
    assert!(text(&plan).contains("create or refresh the bootstrap token"), "{}", text(&plan));
}

#[test]
fn a_replace_refreshes_the_token_before_the_first_membership_change() {
    let (_, plan) = replacing_a_dead_member();
    let first_change = plan.steps().position(|s| s.action.changes_membership()).unwrap();
    assert!(position(&plan, "join-token/refresh") < first_change, "{}", text(&plan));
    assert!(position(&plan, "join-token/refresh") < position(&plan, "etcd/snapshot"));
    assert!(position(&plan, "kubeadm/cp-4/join") < position(&plan, "join-token/delete"));
    assert!(position(&plan, "join-token/delete") < position(&plan, "retire/cp-2/node"), "deleted after the joins and labels");
}

#[test]
fn a_new_cluster_inits_on_the_first_control_plane_and_deletes_init_s_token_at_the_end() {
    let inv = lab();
    let plan = crate::plan::offline(&inv).unwrap();
    let init = plan.steps().find(|s| matches!(s.action, Action::KubeadmInit { .. })).unwrap();
    assert_eq!(init.host, "cp-1");
    assert_eq!(token_steps(&plan), ["join-token/delete"], "init made the token: no refresh, but no 24 h token stays");
    assert!(position(&plan, "labels/wk-2") < position(&plan, "join-token/delete"));
    assert_eq!(seed_control_plane(&inv, &Observed::default()).unwrap().name, "cp-1");
}

/// The desired files rendered for the seed `o` shows, as the live pipeline renders them.
fn desired_seeded(inv: &Inventory, state: &ClusterState, o: &Observed) -> Desired {
    let seed = seed_control_plane(inv, o).unwrap().name.clone();
    let rendered =
        crate::render::render_seeded(inv, &state.secrets, &crate::render::templates::Templates::builtin().unwrap(), &seed, o.etcd_cluster()).unwrap();
    Desired::build(inv, &rendered, state)
}

/// The lab inventory with cp-1's entry (position 0) replaced by cp-4: `node replace cp-1 --with cp-4`.
fn first_swapped() -> Inventory {
    edited_lab("first-swapped.yaml", |t| t.replace("{name: cp-1, address: 198.18.0.11", "{name: cp-4, address: 198.18.0.14"))
}

#[test]
fn replacing_the_first_control_plane_joins_the_new_host_and_seeds_from_another_joined_one() {
    let (lab, inv) = (lab(), first_swapped());
    let mut state = ClusterState::create(&lab).unwrap();
    let before = desired_with(&lab, &state);
    state.issue_missing_members(&inv).unwrap();
    let mut o = converged(&lab, &before);
    o.hosts.remove("cp-1");
    o.hosts.insert("cp-4".into(), ObservedHost::default());
    o.etcd = Some(unhealthy(o.etcd.take().unwrap(), &["cp-1"]));
    assert_eq!(seed_control_plane(&inv, &o).unwrap().name, "cp-2", "cp-4 is at position 0 but not joined");
    let d = desired_seeded(&inv, &state, &o);
    assert_eq!(d.seed, "cp-2");
    let kubeadm_file = |h: &str| String::from_utf8(d.file(h, KUBEADM_CONFIG).unwrap().contents.clone()).unwrap();
    assert!(kubeadm_file("cp-4").contains("kind: JoinConfiguration"), "the new host at position 0 joins");
    assert!(kubeadm_file("cp-2").contains("kind: InitConfiguration"), "the seed holds the ClusterConfiguration");
    let plan = converge(&inv, &d, &o, Basis::Observed);
    golden("replacing_the_first_control_plane_joins_the_new_host_and_seeds_from_another_joined_one", &plan);
    assert!(!plan.blocked(), "{}", text(&plan));
    assert!(!plan.steps().any(|s| matches!(s.action, Action::KubeadmInit { .. })), "{}", text(&plan));
    let cp: Vec<&str> = plan.phases.iter().find(|p| p.name == "control-plane").unwrap().steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(
        cp,
        ["kubeadm/cp-2/config", "kubeadm/cp-2/etcd-servers", "kubeadm/upload-certs", "kubeadm/cp-4/join", "kubeadm/cp-4/ready", "kubeadm/cp-3/etcd-servers"]
    );
    assert!(matches!(plan.steps().find(|s| s.id == "kubeadm/cp-2/config").unwrap().action, Action::UploadKubeadmConfig { .. }));
    assert!(matches!(plan.steps().find(|s| s.id == "kubeadm/cp-4/join").unwrap().action, Action::KubeadmJoinControlPlane { .. }));
    for id in ["kubeadm/upload-certs", "join-token/refresh", "join-token/delete", "labels/cp-4", "retire/cp-1/node", "cni/apply", "verify", "lb/vip"] {
        assert_eq!(plan.steps().find(|s| s.id == id).unwrap_or_else(|| panic!("no {id}: {}", text(&plan))).host, "cp-2", "{id}");
    }
    let first_change = plan.steps().position(|s| s.action.changes_membership()).unwrap();
    assert!(position(&plan, "join-token/refresh") < first_change);
}

#[test]
fn after_a_replace_of_the_first_control_plane_the_seed_stays_where_the_markers_are() {
    // cp-4 (position 0) joined, cp-2 holds the CNI marker: the seed does not move back, so the next
    // apply plans nothing.
    let inv = first_swapped();
    let mut state = ClusterState::create(&inv).unwrap();
    state.issue_missing_members(&inv).unwrap();
    let mut seeded_on_cp2 = Observed::default();
    for h in inv.control_planes() {
        let mut s = HostState::default();
        s.digests.insert(ADMIN_CONF.into(), "0".repeat(64));
        s.digests.insert(KUBELET_CONF.into(), "0".repeat(64));
        seeded_on_cp2.hosts.insert(h.name.clone(), ObservedHost { state: s, ..Default::default() });
    }
    seeded_on_cp2.hosts.get_mut("cp-2").unwrap().state.digests.insert(crate::paths::CNI_APPLIED.into(), "0".repeat(64));
    seeded_on_cp2.nodes = Some(inv.hosts.iter().map(|h| (h.name.clone(), RegisteredNode::default())).collect());
    assert_eq!(seed_control_plane(&inv, &seeded_on_cp2).unwrap().name, "cp-2");
    let d = desired_seeded(&inv, &state, &seeded_on_cp2);
    let mut o = converged(&inv, &d);
    o.etcd = Some(view(vec![member(4, "cp-4", false), member(2, "cp-2", false), member(3, "cp-3", false)]));
    let plan = converge(&inv, &d, &o, Basis::Observed);
    golden("after_a_replace_of_the_first_control_plane_the_seed_stays_where_the_markers_are", &plan);
    assert_eq!(plan.changes(), 0, "{}", text(&plan));
}

#[test]
fn removing_the_first_control_plane_runs_admin_steps_on_another_joined_one() {
    let lab = lab();
    let inv = edited_lab("without-cp-1.yaml", |t| without_line(&t, "{name: cp-1,"));
    let state = ClusterState::create(&lab).unwrap();
    let before = desired_with(&lab, &state);
    let mut o = converged(&lab, &before);
    o.reachable_leaving.insert("cp-1".into());
    let d = desired_seeded(&inv, &state, &o);
    assert_eq!(d.seed, "cp-2");
    let plan = converge(&inv, &d, &o, Basis::Observed);
    golden("removing_the_first_control_plane_runs_admin_steps_on_another_joined_one", &plan);
    assert!(!plan.blocked(), "{}", text(&plan));
    assert!(!plan.steps().any(|s| matches!(s.action, Action::KubeadmInit { .. } | Action::KubeadmJoinControlPlane { .. })));
    assert!(token_steps(&plan).is_empty(), "nothing joins: no token");
    assert_eq!(plan.steps().find(|s| s.id == "retire/cp-1/node").unwrap().host, "cp-2");
    assert_eq!(plan.steps().find(|s| s.id == "retire/cp-1/reset").unwrap().host, "cp-1");
    assert!(matches!(plan.steps().find(|s| s.id == "kubeadm/cp-2/config").unwrap().action, Action::UploadKubeadmConfig { .. }));
    let Some(Action::RemoveEtcdMember { member, .. }) = plan.steps().find(|s| s.id == "etcd/cp-1/remove").map(|s| &s.action) else { panic!("{}", text(&plan)) };
    assert_eq!(member, "cp-1");
    assert_ne!(plan.steps().find(|s| s.id == "etcd/cp-1/remove").unwrap().host, "cp-1");
}

// Issue 12 item 2: one member's view of etcd must not decide.

/// The lab's files as the live pipeline renders them once the etcd cluster exists (seed cp-1).
fn desired_existing(inv: &Inventory, state: &ClusterState) -> Desired {
    let templates = crate::render::templates::Templates::builtin().unwrap();
    let rendered = crate::render::render_seeded(inv, &state.secrets, &templates, "cp-1", context::EtcdCluster::Existing).unwrap();
    Desired::build(inv, &rendered, state)
}

/// Host facts of a control plane, with or without /var/lib/etcd/member.
fn control_plane_facts(host: &str, etcd_data_dir: bool) -> crate::facts::HostFacts {
    let probe = include_str!("../../facts/fixtures/control-plane-handwritten.txt");
    let mut facts = crate::facts::from_output(host, probe, 1_800_000_001.245, 1_800_000_001.245).unwrap();
    for tool in crate::facts::script::SOFTWARE {
        facts.software.insert(tool.to_string(), Some(if tool == "etcd" { lab().etcd.version.to_string() } else { "1.0".into() }));
    }
    // The lab inventory's runtime answers on every host.
    let sockets = vec![lab().kubernetes.container_runtime_endpoint.trim_start_matches("unix://").to_string()];
    crate::facts::HostFacts { etcd_data_dir, swap_on: false, clock_offset_ms: 0, sockets, ..facts }
}

/// `converged`, plus every host reporting the initial-cluster-state of its config, etcd data on every
/// control plane, and every member's own answer agreeing: what the live probe sees on a converged cluster.
fn converged_and_asked(inv: &Inventory, d: &Desired) -> Observed {
    let mut o = converged(inv, d);
    for h in inv.control_planes() {
        let contents = &d.file(&h.name, ETCD_CONFIG).unwrap().contents;
        o.hosts.get_mut(&h.name).unwrap().state.etcd_initial_cluster_state = Some(observe::initial_cluster_state(contents));
        o.hosts.entry(h.name.clone()).or_default().facts = Some(control_plane_facts(&h.name, true));
    }
    every_member_answers(&mut o, inv);
    o
}

fn etcd_steps(plan: &Plan) -> Vec<&Step> {
    plan.phases.iter().filter(|p| p.name == "etcd").flat_map(|p| &p.steps).collect()
}

/// cp-1's disk was replaced: with `initial-cluster-state: new` and Restart=always it bootstrapped a cluster
/// of one. Asked alone it looked like the cluster, and cp-2 and cp-3 were planned as members to clear and
/// re-add (the old planner, trusting the first running member). Every member is asked now.
#[test]
fn members_answering_for_different_clusters_refuse_the_plan_naming_the_hosts() {
    let inv = lab();
    let d = desired_existing(&inv, &ClusterState::create(&inv).unwrap());
    let mut o = converged_and_asked(&inv, &d);
    let real = o.etcd.clone().unwrap();
    // The same name and URLs as the real cp-1, under a new member ID in a new cluster.
    let mut alone = View { cluster_id: 0xdead_beef, ..view(vec![Member { id: 9, ..member(1, "cp-1", false) }]) };
    for s in &mut alone.statuses {
        (s.cluster_id, s.leader) = (0xdead_beef, 9);
    }
    o.etcd = Some(alone.clone());
    silence(&mut o);
    answer(&mut o, &real, &["cp-2", "cp-3"]);
    answer(&mut o, &alone, &["cp-1"]);
    let plan = converge(&inv, &d, &o, Basis::Observed);
    golden("members_answering_for_different_clusters_refuse_the_plan_naming_the_hosts", &plan);
    assert!(plan.blocked(), "{}", text(&plan));
    let f = plan.findings.iter().find(|f| f.fatal && f.problem.contains("different etcd clusters")).expect("a refusal");
    for expected in ["cp-1 report cluster ID deadbeef", "cp-2, cp-3 report cluster ID c1a57e12", "members [cp-1 9 https://198.18.0.11:2380]"] {
        assert!(f.problem.contains(expected), "{expected:?} missing from: {}", f.problem);
    }
    assert!(f.host.contains("cp-1") && f.host.contains("cp-2"), "{f:?}");
    assert!(f.fix.contains("mv /var/lib/etcd"), "{f:?}");
    assert!(etcd_steps(&plan).is_empty(), "no etcd step while the members disagree: {}", text(&plan));
    assert!(!plan.steps().any(|s| matches!(s.action, Action::ClearEtcdData { .. })), "{}", text(&plan));
    // What cp-1's view alone (all the planner had before every member was asked) leads to: the real
    // members taken for strangers with old data, to be cleared and added to the cluster of one.
    silence(&mut o);
    let alone_decides = converge(&inv, &d, &o, Basis::Observed);
    golden("one_member_s_view_alone_takes_the_real_members_for_strangers", &alone_decides);
    let cleared: Vec<&str> = alone_decides.steps().filter(|s| matches!(s.action, Action::ClearEtcdData { .. })).map(|s| s.host.as_str()).collect();
    assert_eq!(cleared, ["cp-2", "cp-3"], "{}", text(&alone_decides));
}

#[test]
fn members_listing_different_members_refuse_but_a_learner_promoted_between_answers_does_not() {
    let inv = lab();
    let d = desired_existing(&inv, &ClusterState::create(&inv).unwrap());
    let mut o = converged_and_asked(&inv, &d);
    let short = view(vec![member(1, "cp-1", false), member(2, "cp-2", false)]);
    answer(&mut o, &short, &["cp-3"]);
    let plan = converge(&inv, &d, &o, Basis::Observed);
    golden("members_listing_different_members_refuse_but_a_learner_promoted_between_answers_does_not", &plan);
    let f = plan.findings.iter().find(|f| f.fatal).unwrap_or_else(|| panic!("{}", text(&plan)));
    assert!(f.problem.contains("different member lists") && f.problem.contains("cp-3 report"), "{}", f.problem);

    // cp-3 joined as a learner; cp-1 answered before its promotion, cp-2 and cp-3 after it.
    let mut o = converged_and_asked(&inv, &d);
    let before_promotion = view(vec![member(1, "cp-1", false), member(2, "cp-2", false), member(3, "", true)]);
    answer(&mut o, &before_promotion, &["cp-1"]);
    let plan = converge(&inv, &d, &o, Basis::Observed);
    golden("a_learner_promoted_between_answers_does_not_refuse", &plan);
    assert!(!plan.blocked(), "{}", text(&plan));
}

#[test]
fn a_converged_existing_cluster_plans_no_action_and_every_member_says_existing() {
    let inv = lab();
    let d = desired_existing(&inv, &ClusterState::create(&inv).unwrap());
    let o = converged_and_asked(&inv, &d);
    assert_eq!(o.etcd_cluster(), context::EtcdCluster::Existing);
    let plan = converge(&inv, &d, &o, Basis::Observed);
    golden("a_converged_existing_cluster_plans_no_action_and_every_member_says_existing", &plan);
    assert_eq!(plan.changes(), 0, "{}", text(&plan));
    assert_eq!(ids(&plan), ["verify"]);
}

#[test]
fn rendered_configs_say_existing_for_every_member_once_the_cluster_exists() {
    let inv = lab();
    let state = ClusterState::create(&inv).unwrap();
    let o = converged_and_asked(&inv, &desired_existing(&inv, &state));
    let state_of = |d: &Desired, h: &str| observe::initial_cluster_state(&d.file(h, ETCD_CONFIG).unwrap().contents);
    // As the live pipeline renders: for the seed and the etcd cluster it observed.
    let live = desired_seeded(&inv, &state, &o);
    for h in inv.control_planes() {
        assert_eq!(state_of(&live, &h.name), "existing", "{}", h.name);
    }
    // Only the first member of a cluster that does not exist yet bootstraps one.
    assert_eq!(Observed::default().etcd_cluster(), context::EtcdCluster::New);
    let fresh = desired_seeded(&inv, &state, &Observed::default());
    assert_eq!(inv.control_planes().map(|h| state_of(&fresh, &h.name)).collect::<Vec<_>>(), ["new", "existing", "existing"]);
    // etcd data on a host is enough to know the cluster exists, even when no member answers.
    let mut down = Observed::default();
    down.hosts.entry("cp-1".into()).or_default().facts = Some(control_plane_facts("cp-1", true));
    assert_eq!(down.etcd_cluster(), context::EtcdCluster::Existing);
}

/// A cluster bootstrapped before this change: cp-1's config still says `new`. The rewrite to `existing` is
/// a file placement only: etcd reads the setting only with an empty data dir, so no restart and no gate.
#[test]
fn a_first_member_still_saying_new_is_rewritten_to_existing_without_a_restart() {
    let inv = lab();
    let state = ClusterState::create(&inv).unwrap();
    let old = desired_with(&inv, &state);
    let mut o = converged_and_asked(&inv, &old);
    assert_eq!(o.state("cp-1").etcd_initial_cluster_state.as_deref(), Some("new"));
    every_member_answers(&mut o, &inv);
    let d = desired_seeded(&inv, &state, &o);
    let plan = converge(&inv, &d, &o, Basis::Observed);
    golden("a_first_member_still_saying_new_is_rewritten_to_existing_without_a_restart", &plan);
    assert_eq!(ids(&plan), ["etcd/cp-1/files", "verify"], "{}", text(&plan));
    let files = plan.steps().find(|s| s.id == "etcd/cp-1/files").unwrap();
    assert!(matches!(&files.action, Action::InstallEtcdFiles { files, .. } if files.contains(&ETCD_CONFIG.to_string())), "{files:?}");
    assert!(files.reason.contains("initial-cluster-state new -> existing") && files.reason.contains("no restart"), "{}", files.reason);
    assert!(!plan.steps().any(|s| is_restart(&s.action)));
    // Once placed, the next run plans nothing.
    let mut after = o.clone();
    let placed = d.file("cp-1", ETCD_CONFIG).unwrap();
    let cp1 = &mut after.hosts.get_mut("cp-1").unwrap().state;
    cp1.digests.insert(ETCD_CONFIG.into(), placed.digest.clone());
    cp1.etcd_initial_cluster_state = Some(observe::initial_cluster_state(&placed.contents));
    assert_eq!(ids(&converge(&inv, &d, &after, Basis::Observed)), ["verify"]);
}

/// cp-2's disk was replaced: its host answers, kubeha's etcd unit is there, the cluster lists cp-2, but
/// cp-2 does not answer and /var/lib/etcd/member is gone. A dead member: removed, then added again as a
/// learner through the gates; the healthy members' data is never touched.
#[test]
fn a_member_whose_data_dir_vanished_is_removed_and_added_again_through_the_gates() {
    let inv = lab();
    let d = desired_existing(&inv, &ClusterState::create(&inv).unwrap());
    let mut o = converged_and_asked(&inv, &d);
    o.hosts.entry("cp-2".into()).or_default().facts = Some(control_plane_facts("cp-2", false));
    o.hosts.get_mut("cp-2").unwrap().state.active.insert("etcd".into(), false);
    o.etcd = Some(unhealthy(o.etcd.take().unwrap(), &["cp-2"]));
    o.hosts.get_mut("cp-2").unwrap().etcd_answer = None;
    let plan = converge(&inv, &d, &o, Basis::Observed);
    golden("a_member_whose_data_dir_vanished_is_removed_and_added_again_through_the_gates", &plan);
    assert!(!plan.blocked(), "{}", text(&plan));
    let etcd: Vec<&str> = etcd_steps(&plan).iter().map(|s| s.id.as_str()).collect();
    assert_eq!(
        etcd,
        [
            "etcd/cp-2/lost/gate-before",
            "etcd/snapshot",
            "etcd/cp-2/lost/stop",
            "etcd/cp-2/lost/remove",
            "etcd/cp-2/lost/gate-after",
            "etcd/cp-2/gate-before",
            "etcd/cp-2/add-learner",
            "etcd/cp-2/start",
            "etcd/cp-2/caught-up",
            "etcd/cp-2/promote",
            "etcd/cp-2/gate-after",
        ],
        "{}",
        text(&plan)
    );
    let find = |id: &str| plan.steps().find(|s| s.id == id).unwrap();
    // The removal's gate tolerates only cp-2 being down, and holds on the cluster as it is.
    let Action::Gate(before) = &find("etcd/cp-2/lost/gate-before").action else { panic!() };
    assert_eq!((before.voters.clone(), before.may_be_down.clone()), (vec!["cp-1".to_string(), "cp-2".into(), "cp-3".into()], vec!["cp-2".to_string()]));
    assert_eq!(crate::etcd::gate::evaluate(before, o.etcd.as_ref().unwrap()), Ok(()));
    assert!(matches!(&find("etcd/cp-2/lost/remove").action, Action::RemoveEtcdMember { id, .. } if id == "2"));
    let Action::Gate(add) = &find("etcd/cp-2/gate-before").action else { panic!() };
    assert_eq!(add.voters, ["cp-1", "cp-3"]);
    assert!(add.may_be_down.is_empty());
    let Action::StartEtcdMember { initial_cluster_state, initial_cluster, restart, .. } = &find("etcd/cp-2/start").action else { panic!() };
    assert_eq!((*initial_cluster_state, *restart), (EtcdCluster::Existing, false));
    assert_eq!(initial_cluster.as_deref(), Some("cp-1=https://198.18.0.11:2380,cp-3=https://198.18.0.13:2380,cp-2=https://198.18.0.12:2380"));
    // Only the dead member's own (empty) etcd is stopped; nothing of cp-1's or cp-3's is cleared.
    let cleared: Vec<&str> = plan.steps().filter(|s| matches!(s.action, Action::ClearEtcdData { .. })).map(|s| s.host.as_str()).collect();
    assert_eq!(cleared, ["cp-2"]);
    assert!(etcd_steps(&plan).iter().filter(|s| matches!(s.action, Action::Gate(_) | Action::RemoveEtcdMember { .. })).all(|s| s.host != "cp-2"));
    // A member that merely does not answer (its data is there) is not a lost one: it is started.
    let mut stopped = converged_and_asked(&inv, &d);
    stopped.hosts.get_mut("cp-2").unwrap().state.active.insert("etcd".into(), false);
    stopped.etcd = Some(unhealthy(stopped.etcd.take().unwrap(), &["cp-2"]));
    let plan = converge(&inv, &d, &stopped, Basis::Observed);
    golden("a_stopped_member_with_its_data_is_started_not_removed", &plan);
    assert!(!plan.steps().any(|s| matches!(s.action, Action::RemoveEtcdMember { .. } | Action::ClearEtcdData { .. })), "{}", text(&plan));
}

#[test]
fn a_host_without_the_configured_runtime_socket_blocks_apply() {
    let inv = lab();
    let d = desired(&inv);
    let mut o = converged_and_asked(&inv, &d);
    assert!(!converge(&inv, &d, &o, Basis::Observed).blocked());
    o.hosts.get_mut("cp-2").unwrap().facts.as_mut().unwrap().sockets.clear();
    let plan = converge(&inv, &d, &o, Basis::Observed);
    golden("a_host_without_the_configured_runtime_socket_blocks_apply", &plan);
    assert!(plan.blocked());
    let finding = plan.findings.iter().find(|f| f.fatal).unwrap();
    assert_eq!(finding.host, "cp-2");
    assert!(finding.problem.contains("no container runtime socket at /run/kubeha-lab-cri/cri.sock"), "{finding:?}");
}

/// kubeadm's certificates on cp-2 valid for 20 more days (under the default 90): renewed there alone, after
/// the control-plane phase; CAs, kubeha's and the kubelet's certificates are not kubeadm's to renew.
#[test]
fn kubeadm_certificates_due_are_renewed_one_control_plane_at_a_time() {
    use crate::facts::certs::HostCerts;
    use crate::pki::expiry::{Cert, Parsed};
    let inv = lab();
    let d = desired(&inv);
    let mut o = converged(&inv, &d);
    o.now = 1_800_000_000;
    let cert = |host: &str, path: &str, days: i64, ca: bool| {
        Cert::new(host, path, Parsed { subject: "x".into(), not_before: o.now - 86_400, not_after: o.now + days * 86_400 + 1, ca })
    };
    for h in ["cp-1", "cp-2", "cp-3"] {
        let certs = vec![
            cert(h, "/etc/kubernetes/pki/ca.crt", 10, true),
            cert(h, "/etc/kubernetes/pki/front-proxy-ca.crt", 10, true),
            cert(h, "/etc/kubeha/pki/etcd/server.crt", 10, false),
            cert(h, "/var/lib/kubelet/pki/kubelet-client-current.pem", 10, false),
            cert(h, "/etc/kubernetes/pki/apiserver.crt", if h == "cp-2" { 20 } else { 300 }, false),
            cert(h, "/etc/kubernetes/admin.conf", if h == "cp-2" { 40 } else { 300 }, false),
        ];
        o.hosts.get_mut(h).unwrap().certs = Some(HostCerts { certs, unreadable: vec![] });
    }
    let plan = converge(&inv, &d, &o, Basis::Observed);
    golden("kubeadm_certificates_due_are_renewed_one_control_plane_at_a_time", &plan);
    assert_eq!(ids(&plan), ["certs/cp-2/restart", "verify"], "{}", text(&plan));
    let s = plan.steps().next().unwrap();
    assert!(matches!(&s.action, Action::RestartControlPlane { node, renew_certs: true } if node == "cp-2"));
    assert_eq!(s.reason, "2 of kubeadm's certificates valid for less than 90 days (renewBefore), the first apiserver.crt in 20 days");
    assert!(
        text(&plan).contains("cp-2  kubeadm certs renew all, then restart kube-apiserver, kube-controller-manager and kube-scheduler on cp-2 one at a time"),
        "{}",
        text(&plan)
    );
    assert_eq!(plan.phases.iter().map(|p| p.name).collect::<Vec<_>>(), ["certificates", "verify"]);
    assert_eq!(plan.phases[0].execution, Execution::Sequential);
}

/// kubeha renewed the shared API server etcd client pair: etcd restarts one member at a time between gates
/// (its files changed), then each API server restarts, one control plane at a time, to load it.
#[test]
fn a_renewed_etcd_client_certificate_restarts_etcd_then_each_api_server() {
    let inv = lab();
    let mut state = ClusterState::create(&inv).unwrap();
    let o = converged(&inv, &desired_with(&inv, &state));
    let renewed = state.renew_due(&inv, time::OffsetDateTime::now_utc().unix_timestamp() + 300 * 86_400).unwrap();
    assert!(!renewed.is_empty());
    let d = desired_with(&inv, &state);
    let plan = converge(&inv, &d, &o, Basis::Observed);
    golden("a_renewed_etcd_client_certificate_restarts_etcd_then_each_api_server", &plan);
    let restarts: Vec<&str> = ids(&plan).into_iter().filter(|i| i.ends_with("/restart")).collect();
    assert_eq!(
        restarts,
        ["etcd/cp-1/restart", "etcd/cp-2/restart", "etcd/cp-3/restart", "certs/cp-1/restart", "certs/cp-2/restart", "certs/cp-3/restart"],
        "{}",
        text(&plan)
    );
    let gates = plan.steps().filter(|s| matches!(s.action, Action::Gate(_))).count();
    assert_eq!(gates, 6, "a gate before and after each etcd restart");
    let api = plan.steps().find(|s| s.id == "certs/cp-1/restart").unwrap();
    assert!(matches!(api.action, Action::RestartControlPlane { renew_certs: false, .. }));
    assert_eq!(api.reason, "its API server's etcd client certificate was renewed");
}

/// A restart killed with the machine left a manifest set aside: that pod stays down until a restart puts
/// it back, so one is planned although no certificate is due.
#[test]
fn a_manifest_left_aside_by_a_dead_restart_is_put_back() {
    let inv = lab();
    let d = desired(&inv);
    let mut o = converged(&inv, &d);
    o.hosts.get_mut("cp-3").unwrap().state.digests.insert(crate::paths::SET_ASIDE_MANIFESTS[0].into(), "0".repeat(64));
    let plan = converge(&inv, &d, &o, Basis::Observed);
    golden("a_manifest_left_aside_by_a_dead_restart_is_put_back", &plan);
    assert_eq!(ids(&plan), ["certs/cp-3/restart", "verify"], "{}", text(&plan));
    let s = plan.steps().next().unwrap();
    assert_eq!(s.reason, "an earlier restart left /etc/kubernetes/kube-apiserver.yaml.kubeha out of the manifests: that pod is down");
    assert!(matches!(s.action, Action::RestartControlPlane { renew_certs: false, .. }));
}

/// cp-2 moved from 198.18.0.12 to 198.18.0.23 (issue 12 #12). Its etcd cannot bind the old address and does
/// not answer; etcd still lists it at the old peer URL and its Node at the old InternalIP. The member is
/// pointed at its new URL between gates that tolerate only it being down, restarts there with certificates
/// for the new address, and the node is reset and joined again; nothing is retired or removed.
#[test]
fn a_readdressed_control_plane_is_moved_between_gates_and_joined_again() {
    let lab = lab();
    let inv = edited_lab("readdressed.yaml", |t| t.replace("{name: cp-2, address: 198.18.0.12", "{name: cp-2, address: 198.18.0.23"));
    let mut state = ClusterState::create(&lab).unwrap();
    let before = desired_with(&lab, &state);
    assert_eq!(state.reissue_readdressed(&inv).unwrap().len(), 2, "server and peer certificates");
    let d = desired_with(&inv, &state);
    let mut o = converged(&lab, &before);
    nodes_report_addresses(&mut o, &lab);
    o.hosts.get_mut("cp-2").unwrap().state.active.insert("etcd".into(), false);
    o.etcd = Some(unhealthy(o.etcd.take().unwrap(), &["cp-2"]));
    o.hosts.get_mut("cp-2").unwrap().etcd_answer = None;
    let plan = converge(&inv, &d, &o, Basis::Observed);
    golden("a_readdressed_control_plane_is_moved_between_gates_and_joined_again", &plan);
    assert!(!plan.blocked(), "{}", text(&plan));
    let moved: Vec<&str> =
        etcd_steps(&plan).iter().map(|s| s.id.as_str()).filter(|id| !id.starts_with("etcd/cp-1/") && !id.starts_with("etcd/cp-3/")).collect();
    assert_eq!(
        moved,
        ["etcd/cp-2/gate-before", "etcd/snapshot", "etcd/cp-2/update-peer-url", "etcd/cp-2/files", "etcd/cp-2/restart", "etcd/cp-2/gate-after"],
        "{}",
        text(&plan)
    );
    let find = |id: &str| plan.steps().find(|s| s.id == id).unwrap_or_else(|| panic!("{id}: {}", text(&plan)));
    let Action::Gate(gate_before) = &find("etcd/cp-2/gate-before").action else { panic!() };
    assert_eq!(gate_before.may_be_down, ["cp-2"]);
    assert_eq!(crate::etcd::gate::evaluate(gate_before, o.etcd.as_ref().unwrap()), Ok(()));
    let update = find("etcd/cp-2/update-peer-url");
    assert_ne!(update.host, "cp-2", "the others carry out the change");
    assert!(matches!(&update.action, Action::UpdateEtcdPeerUrl { id, peer_url, .. } if id == "2" && peer_url == "https://198.18.0.23:2380"), "{update:?}");
    assert!(update.reason.contains("https://198.18.0.12:2380"), "{}", update.reason);
    let Action::InstallEtcdFiles { files, .. } = &find("etcd/cp-2/files").action else { panic!() };
    assert!(files.iter().any(|f| f.ends_with("peer.crt")) && files.iter().any(|f| f.ends_with("etcd.conf.yml")), "{files:?}");
    let Action::Gate(gate_after) = &find("etcd/cp-2/gate-after").action else { panic!() };
    assert!(gate_after.may_be_down.is_empty() && gate_after.voters.contains(&"cp-2".to_string()));
    assert!(!plan.steps().any(|s| matches!(s.action, Action::MoveEtcdLeader { .. })), "a member that does not answer cannot lead");
    // Kubernetes: cp-2's Node goes (kubeadm refuses to join over a Ready Node of its name), then cp-2
    // rejoins at its new address after a reset; no host is retired.
    let node = find("readdressed/cp-2/node");
    assert!(matches!(&node.action, Action::RemoveNode { node } if node == "cp-2") && node.host != "cp-2", "{node:?}");
    assert!(position(&plan, "readdressed/cp-2/node") < position(&plan, "kubeadm/cp-2/join"));
    let join = find("kubeadm/cp-2/join");
    assert!(matches!(join.action, Action::KubeadmJoinControlPlane { reset_first: true, .. }), "{join:?}");
    assert!(join.reason.contains("re-addressed") && join.reason.contains("198.18.0.12"), "{}", join.reason);
    assert!(!plan.steps().any(|s| matches!(s.action, Action::ResetHost { .. } | Action::RemoveEtcdMember { .. })));
    assert_eq!(plan.steps().filter(|s| matches!(s.action, Action::RemoveNode { .. })).count(), 1);
    assert!(position(&plan, "kubeadm/cp-2/join") < position(&plan, "labels/cp-2"), "its new Node gets its labels");
    assert!(!plan.steps().any(|s| s.id.starts_with("workers/")), "workers stay: {}", text(&plan));
}

/// The one FixFileModes step of a plan: (host, files, reason).
fn file_modes(plan: &Plan) -> Vec<(&str, &[FileMode], &str)> {
    plan.steps()
        .filter_map(|s| match &s.action {
            Action::FixFileModes { files } => Some((s.host.as_str(), files.as_slice(), s.reason.as_str())),
            _ => None,
        })
        .collect()
}

fn mode(path: &str, mode: u32) -> FileMode {
    FileMode { path: path.into(), mode }
}

#[test]
fn a_key_made_world_readable_is_a_chmod_step_that_restarts_nothing() {
    let inv = lab();
    let d = desired(&inv);
    let mut o = converged(&inv, &d);
    o.hosts.get_mut("cp-2").unwrap().state.meta.insert(SERVER_KEY.into(), root_owned(0o644));
    let plan = converge(&inv, &d, &o, Basis::Observed);
    golden("a_key_made_world_readable_is_a_chmod_step_that_restarts_nothing", &plan);
    assert_eq!(ids(&plan), ["file-modes/cp-2", "verify"], "no gate, no restart, no upload: {}", text(&plan));
    assert_eq!(file_modes(&plan), [("cp-2", &[mode(SERVER_KEY, 0o600)][..], "server.key mode 0644, want 0600")]);
    assert_eq!(plan.changes(), 1);
    let shown = text(&plan);
    assert!(shown.contains("chmod/chown /etc/kubeha/pki/etcd/server.key 0600 in place, owner root:root (no upload, nothing restarts)"), "{shown}");
    assert!(!plan.steps().any(|s| matches!(s.action, Action::Gate(_) | Action::StartEtcdMember { .. } | Action::RestartControlPlane { .. })));
    // The seed's kubeadm config (it holds the bootstrap token) made readable: chmodded, not uploaded again.
    o.hosts.get_mut("cp-1").unwrap().state.meta.insert(KUBEADM_CONFIG.into(), root_owned(0o644));
    let plan = converge(&inv, &d, &o, Basis::Observed);
    golden("the_seed_s_kubeadm_config_made_readable_is_chmodded", &plan);
    assert_eq!(ids(&plan), ["file-modes/cp-1", "file-modes/cp-2", "verify"], "{}", text(&plan));
    assert_eq!(file_modes(&plan)[0], ("cp-1", &[mode(KUBEADM_CONFIG, 0o600)][..], "kubeadm.yaml mode 0644, want 0600"));
}

#[test]
fn a_file_chowned_to_another_user_is_chowned_back_keeping_its_mode() {
    let inv = lab();
    let d = desired(&inv);
    let mut o = converged(&inv, &d);
    let cp1 = &mut o.hosts.get_mut("cp-1").unwrap().state;
    cp1.meta.insert(STATE_FILE.into(), FileMeta { mode: 0o600, owner: "kubelet".into(), group: "root".into() });
    cp1.meta.insert("/etc/haproxy/haproxy.cfg".into(), FileMeta { mode: 0o600, owner: "haproxy".into(), group: "haproxy".into() });
    let plan = converge(&inv, &d, &o, Basis::Observed);
    golden("a_file_chowned_to_another_user_is_chowned_back_keeping_its_mode", &plan);
    assert_eq!(ids(&plan), ["file-modes/cp-1", "verify"], "{}", text(&plan));
    let [(host, files, reason)] = file_modes(&plan)[..] else { panic!("{}", text(&plan)) };
    assert_eq!(host, "cp-1");
    assert_eq!(files, [mode("/etc/haproxy/haproxy.cfg", 0o644), mode(STATE_FILE, 0o600)]);
    assert_eq!(reason, "haproxy.cfg mode 0600, want 0644, owner haproxy:haproxy, want root:root; cluster-state.json owner kubelet:root, want root:root");
    assert!(!plan.steps().any(|s| matches!(s.action, Action::StartLoadBalancer { .. })), "no HAProxy reload for its config's owner");
}

#[test]
fn a_file_whose_contents_also_changed_is_uploaded_as_before_and_not_chmodded() {
    let inv = lab();
    let d = desired(&inv);
    let mut o = converged(&inv, &d);
    let cp2 = &mut o.hosts.get_mut("cp-2").unwrap().state;
    cp2.digests.insert(SERVER_KEY.into(), "f".repeat(64));
    cp2.meta.insert(SERVER_KEY.into(), root_owned(0o644));
    let plan = converge(&inv, &d, &o, Basis::Observed);
    golden("a_file_whose_contents_also_changed_is_uploaded_as_before_and_not_chmodded", &plan);
    assert_eq!(ids(&plan), ["etcd/cp-2/gate-before", "etcd/cp-2/move-leader", "etcd/cp-2/files", "etcd/cp-2/restart", "etcd/cp-2/gate-after", "verify"]);
    let Some(Action::InstallEtcdFiles { files, .. }) = plan.steps().find(|s| s.id == "etcd/cp-2/files").map(|s| &s.action) else { panic!() };
    assert!(files.iter().any(|f| f == SERVER_KEY), "the upload sets the mode: {files:?}");
    // Another file of the same group whose mode alone drifted is uploaded with it, not chmodded twice.
    o.hosts.get_mut("cp-2").unwrap().state.meta.insert("/etc/kubeha/pki/etcd/peer.key".into(), root_owned(0o644));
    assert!(file_modes(&converge(&inv, &d, &o, Basis::Observed)).is_empty());
}

#[test]
fn a_kubeadm_key_others_can_read_is_set_back_to_0600() {
    let inv = lab();
    let d = desired(&inv);
    let mut o = converged(&inv, &d);
    o.hosts.get_mut("cp-3").unwrap().state.meta.insert(APISERVER_KEY.into(), root_owned(0o644));
    // A stricter mode than kubeadm's is left alone: only what others could read is a drift.
    o.hosts.get_mut("cp-1").unwrap().state.meta.insert(APISERVER_KEY.into(), root_owned(0o400));
    let plan = converge(&inv, &d, &o, Basis::Observed);
    golden("a_kubeadm_key_others_can_read_is_set_back_to_0600", &plan);
    assert_eq!(ids(&plan), ["file-modes/cp-3", "verify"], "{}", text(&plan));
    assert_eq!(file_modes(&plan), [("cp-3", &[mode(APISERVER_KEY, 0o600)][..], "apiserver.key mode 0644, want 0600")]);
    // The mode fix comes right after the cluster state, before any long phase.
    let mut o2 = converged(&inv, &d);
    o2.hosts.get_mut("cp-3").unwrap().state.meta.insert(APISERVER_KEY.into(), root_owned(0o644));
    o2.nodes.as_mut().unwrap().remove("wk-2");
    // wk-2 is not registered: its kubelet.conf is a leftover the join's reset removes, not chmodded first.
    o2.hosts.get_mut("wk-2").unwrap().state.meta.insert(KUBELET_CONF.into(), root_owned(0o644));
    let plan = converge(&inv, &d, &o2, Basis::Observed);
    golden("a_mode_fix_comes_before_a_worker_join_s_reset", &plan);
    assert_eq!(plan.phases.first().map(|p| p.name), Some("file-modes"), "{}", text(&plan));
    assert_eq!(file_modes(&plan).iter().map(|(host, ..)| *host).collect::<Vec<_>>(), ["cp-3"], "{}", text(&plan));
    assert!(plan.steps().any(|s| matches!(s.action, Action::KubeadmJoinWorker { reset_first: true, .. })));
}

#[test]
fn the_json_plan_shows_modes_in_octal() {
    let json = serde_json::to_value(Action::FixFileModes { files: vec![mode(SERVER_KEY, 0o600)] }).unwrap();
    assert_eq!(json, serde_json::json!({"type": "fixFileModes", "files": [{"path": SERVER_KEY, "mode": "0600"}]}));
}

/// The monitoring ports kubeha's own services listen on are theirs on a converged control plane; on a host
/// kubeha has not set up, a listener there is a stranger that would keep HAProxy (8405) or etcd (2381) from
/// starting, and the plan stops before touching anything.
#[test]
fn monitoring_ports_are_ours_once_converged_and_a_stranger_s_before() {
    use crate::render::context::{ETCD_METRICS_PORT, HAPROXY_EXPORTER_PORT, KUBEHA_METRICS_PORT};
    let inv = lab();
    let d = desired_existing(&inv, &ClusterState::create(&inv).unwrap());
    let mut o = converged_and_asked(&inv, &d);
    for port in [ETCD_METRICS_PORT, HAPROXY_EXPORTER_PORT, KUBEHA_METRICS_PORT] {
        o.hosts.get_mut("cp-1").unwrap().facts.as_mut().unwrap().listening.insert(port, true);
    }
    let plan = converge(&inv, &d, &o, Basis::Observed);
    assert!(!plan.findings.iter().any(|f| f.problem.contains("in use")), "{:?}", plan.findings);

    let mut fresh = Observed::default();
    let mut facts = control_plane_facts("cp-1", false);
    facts.listening.insert(HAPROXY_EXPORTER_PORT, true);
    fresh.hosts.entry("cp-1".into()).or_default().facts = Some(facts);
    let plan = converge(&inv, &d, &fresh, Basis::Observed);
    let finding = plan.findings.iter().find(|f| f.host == "cp-1" && f.problem.contains("port 8405 is in use")).unwrap_or_else(|| panic!("{:?}", plan.findings));
    assert!(finding.fatal, "{finding:?}");
}

/// Backups turned off after they ran: the timer is stopped and its files removed on every control plane,
/// once (a cluster without the timer plans nothing for it), and no backup is run or verified.
#[test]
fn backups_turned_off_remove_the_timer_and_keep_the_backups() {
    let on = lab();
    let state = ClusterState::create(&on).unwrap();
    let was = converged(&on, &desired_with(&on, &state));
    let mut off = lab();
    off.etcd.backup = None;
    let d = desired_with(&off, &state);
    let plan = converge(&off, &d, &was, Basis::Observed);
    assert_eq!(ids(&plan), ["backup/cp-1/remove", "backup/cp-2/remove", "backup/cp-3/remove", "verify"], "{}", text(&plan));
    assert!(text(&plan).contains("stop and disable kubeha-etcd-backup.timer, remove the backup script and units (the backups taken stay)"), "{}", text(&plan));
    assert!(!text(&plan).contains("etcd backup: the newest"), "no backup check when backups are off");
    assert!(d.probe_paths("cp-1").contains(&crate::paths::ETCD_BACKUP_TIMER), "the timer is probed to find it");
    assert_eq!(ids(&converge(&off, &d, &converged(&off, &d), Basis::Observed)), ["verify"]);
}

/// A fresh control plane gets the timer and the first run; a stopped timer alone is started, without a run.
#[test]
fn the_backup_timer_is_installed_with_a_first_run_and_a_stopped_one_only_started() {
    let inv = lab();
    let d = desired(&inv);
    let mut o = converged(&inv, &d);
    o.hosts.get_mut("cp-2").unwrap().state.active.insert(crate::phases::backup::TIMER.into(), false);
    let plan = converge(&inv, &d, &o, Basis::Observed);
    assert_eq!(ids(&plan), ["backup/cp-2", "verify"], "{}", text(&plan));
    let Action::InstallEtcdBackup { restart, .. } = &plan.phases[0].steps[0].action else { panic!("{}", text(&plan)) };
    assert!(!restart, "its files are right: started, not restarted");
    assert!(text(&plan).contains("[kubeha-etcd-backup.timer not active]"), "{}", text(&plan));

    for p in [crate::paths::ETCD_BACKUP_SCRIPT, crate::paths::ETCD_BACKUP_SERVICE, crate::paths::ETCD_BACKUP_TIMER] {
        o.hosts.get_mut("cp-2").unwrap().state.digests.remove(p);
    }
    let plan = converge(&inv, &d, &o, Basis::Observed);
    assert_eq!(ids(&plan), ["backup/cp-2", "backup/cp-1/run", "backup/cp-2/run", "backup/cp-3/run", "verify"], "{}", text(&plan));
}

/// An etcd patch release in the inventory: each running member's new binary is staged by the software
/// phase (etcdctl and etcdutl replaced at once) and swapped in by its restart, one member at a time between
/// quorum gates, the member moving leadership away first.
#[test]
fn an_etcd_patch_release_is_staged_then_swapped_in_one_member_at_a_time_between_gates() {
    let mut inv = lab();
    let d = desired(&inv);
    let o = converged(&inv, &d);
    inv.etcd.version = crate::inventory::Version::new(3, 6, 17);
    let plan = converge(&inv, &d, &o, Basis::Observed);
    golden("an_etcd_patch_release_is_staged_then_swapped_in_one_member_at_a_time_between_gates", &plan);
    assert!(!plan.blocked(), "{:?}", plan.findings);
    let software: Vec<&Step> = plan.steps().filter(|s| s.id.starts_with("software/")).collect();
    assert_eq!(software.iter().map(|s| s.host.as_str()).collect::<Vec<_>>(), ["cp-1", "cp-2", "cp-3"]);
    for s in &software {
        let Action::InstallSoftware { artifacts, staged, .. } = &s.action else { panic!("{s:?}") };
        assert!(artifacts.is_empty() && staged == &["etcd 3.6.17 (amd64)"], "{s:?}");
        assert_eq!(s.reason, "etcd 3.6.16 (amd64) installed, 3.6.17 (amd64) wanted");
    }
    for m in ["cp-1", "cp-2", "cp-3"] {
        let restart = plan.steps().find(|s| s.id == format!("etcd/{m}/restart")).unwrap_or_else(|| panic!("{m} restarts"));
        assert!(matches!(&restart.action, Action::StartEtcdMember { restart: true, binary: Some(v), .. } if v == "3.6.17"), "{restart:?}");
    }
    let etcd: Vec<&str> = ids(&plan).into_iter().filter(|i| i.starts_with("etcd/cp-2")).collect();
    assert_eq!(etcd, ["etcd/cp-2/gate-before", "etcd/cp-2/move-leader", "etcd/cp-2/restart", "etcd/cp-2/gate-after"]);
}

/// Version changes the upgrade rules refuse are refused before any step, each once for all the hosts it
/// concerns: a two-minor Kubernetes jump, a Kubernetes downgrade, an etcd minor upgrade from a patch
/// release its upgrade guide does not allow.
#[test]
fn a_kubernetes_jump_or_downgrade_or_a_disallowed_etcd_path_is_refused_before_any_step() {
    let inv = lab();
    let state = ClusterState::create(&inv).unwrap();
    let o = converged(&inv, &desired_with(&inv, &state));
    let blocked = |k: &str, e: &str| {
        let mut inv = inv.clone();
        inv.kubernetes.version = crate::inventory::Version::parse(k).unwrap();
        inv.etcd.version = crate::inventory::Version::parse(e).unwrap();
        let plan = converge(&inv, &desired_with(&inv, &state), &o, Basis::Observed);
        assert!(plan.blocked(), "{}", text(&plan));
        // A blocked plan runs nothing; still, nothing of the refused change is even planned.
        assert!(plan.steps().all(|s| !s.id.starts_with("software/") && !s.id.starts_with("upgrade/") && !s.id.contains("/restart")), "{}", text(&plan));
        plan.findings.iter().filter(|f| f.fatal).map(|f| format!("{}: {}", f.host, f.problem)).collect::<Vec<_>>()
    };
    let jump = blocked("1.38.0", "3.6.16");
    assert!(
        jump.contains(&"cp-1, cp-2, cp-3, wk-1, wk-2: Kubernetes 1.36.3 runs, the inventory names 1.38.0: more than one minor release at once".to_string()),
        "{jump:?}"
    );
    assert_eq!(jump.len(), 1, "one finding for every host and program: {jump:?}");
    let down = blocked("1.35.4", "3.6.16");
    assert!(down.iter().any(|p| p.ends_with("Kubernetes 1.36.3 runs, the inventory names 1.35.4: a downgrade")), "{down:?}");
    let mut allowed = inv.clone();
    allowed.etcd.version = crate::inventory::Version::new(3, 7, 0);
    let plan = converge(&allowed, &desired_with(&allowed, &state), &o, Basis::Observed);
    assert!(!plan.blocked(), "3.6.16 -> 3.7.0 is etcd's path (from 3.6.11 on): {:?}", plan.findings);
    let mut old = inv.clone();
    old.etcd.version = crate::inventory::Version::new(3, 5, 20);
    let o_old = converged(&old, &desired_with(&old, &state));
    let mut to = old.clone();
    to.etcd.version = crate::inventory::Version::new(3, 6, 16);
    let plan = converge(&to, &desired_with(&to, &state), &o_old, Basis::Observed);
    let problems: Vec<String> = plan.findings.iter().filter(|f| f.fatal).map(|f| format!("{}: {}", f.host, f.problem)).collect();
    assert_eq!(
        problems,
        ["cp-1, cp-2, cp-3: etcd 3.5.20 runs, the inventory names 3.6.16: etcd 3.6 can be reached only from 3.5.26 or later"],
        "{}",
        text(&plan)
    );
}

/// A Kubernetes minor upgrade of a converged cluster: kubeadm and kubectl replaced and the kubelet staged
/// on every node; the control planes one at a time (the seed with `kubeadm upgrade apply`, the others with
/// `kubeadm upgrade node`), each drained for its kubelet; then the workers one failure domain at a time.
/// Everything in the plan is a version change, so `kubeha upgrade` accepts it.
#[test]
fn a_kubernetes_minor_upgrade_rolls_the_control_planes_then_the_workers_by_failure_domain() {
    let (state, o) = converged_on(|i| i.kubernetes.version = crate::inventory::Version::new(1, 35, 4));
    let inv = lab();
    let plan = converge(&inv, &desired_with(&inv, &state), &o, Basis::Observed);
    golden("a_kubernetes_minor_upgrade_rolls_the_control_planes_then_the_workers_by_failure_domain", &plan);
    assert!(!plan.blocked(), "{:?}", plan.findings);
    let software = plan.steps().find(|s| s.id == "software/wk-1").unwrap();
    let Action::InstallSoftware { artifacts, staged, restart, .. } = &software.action else { panic!() };
    assert_eq!(artifacts, &["kubeadm 1.36.3 (amd64)", "kubectl 1.36.3 (amd64)"]);
    assert_eq!(staged, &["kubelet 1.36.3 (amd64)"]);
    assert!(restart.is_empty(), "the running kubelet is not restarted onto a release its control plane does not run yet");
    let upgrades: Vec<(&str, &str, KubeadmUpgrade, bool)> = plan
        .phases
        .iter()
        .filter(|p| p.name.starts_with("upgrade-"))
        .flat_map(|p| p.steps.iter().map(move |s| (p.name, s)))
        .map(|(phase, s)| match &s.action {
            Action::UpgradeNode { node, kubeadm, kubelet, via, .. } => {
                assert_eq!(via, "cp-1");
                (phase, node.as_str(), *kubeadm, *kubelet)
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        upgrades,
        [
            ("upgrade-control-planes", "cp-1", KubeadmUpgrade::Apply, true),
            ("upgrade-control-planes", "cp-2", KubeadmUpgrade::Node, true),
            ("upgrade-control-planes", "cp-3", KubeadmUpgrade::Node, true),
            ("upgrade-workers", "wk-1", KubeadmUpgrade::Node, true),
            ("upgrade-workers", "wk-2", KubeadmUpgrade::Node, true),
        ]
    );
    let workers: Vec<&Phase> = plan.phases.iter().filter(|p| p.name == "upgrade-workers").collect();
    assert_eq!(workers.len(), 2, "az-a and az-b, one after the other");
    assert!(workers.iter().all(|p| p.execution == Execution::Parallel { limit: 1 }), "spec.upgrade.maxUnavailable defaults to 1");
    assert!(workers[0].steps[0].reason.ends_with("(failure domain zone az-a rack r2)"), "{}", workers[0].steps[0].reason);
    let order: Vec<&str> = plan.phases.iter().map(|p| p.name).collect();
    let at = |name: &str| order.iter().position(|p| *p == name).unwrap();
    assert!(at("software") < at("upgrade-control-planes") && at("upgrade-control-planes") < at("upgrade-workers"), "{order:?}");
    assert!(crate::upgrade::intent::other_changes(&plan).is_empty(), "{:?}", crate::upgrade::intent::other_changes(&plan));
    assert!(crate::upgrade::intent::changes_versions(&plan));
}

/// A run killed during the control planes' upgrade: the seed and the cluster configuration are on the new
/// release, cp-2's static pods too but not its kubelet, and wk-1 is still cordoned by kubeha. The next plan
/// goes on from there: no second `kubeadm upgrade apply`, cp-2 only gets its kubelet, cp-3 everything.
#[test]
fn a_killed_upgrade_resumes_from_the_versions_in_place() {
    let (state, mut o) = converged_on(|i| i.kubernetes.version = crate::inventory::Version::new(1, 35, 4));
    let inv = lab();
    let new = inv.kubernetes.version;
    o.cluster_version = Some(new);
    for cp in ["cp-1", "cp-2"] {
        o.hosts.get_mut(cp).unwrap().state.static_pod_images = static_pods_on(new);
    }
    o.hosts.get_mut("cp-1").unwrap().state.software = installed_as_wanted(&inv, "cp-1");
    o.nodes.as_mut().unwrap().get_mut("cp-1").unwrap().kubelet.kubelet_version = Some(new);
    let wk2 = &mut o.nodes.as_mut().unwrap().get_mut("wk-2").unwrap().kubelet;
    (wk2.unschedulable, wk2.drained_by_kubeha) = (true, true);
    o.hosts.get_mut("wk-2").unwrap().state.software = installed_as_wanted(&inv, "wk-2");
    wk2.kubelet_version = Some(new);
    let plan = converge(&inv, &desired_with(&inv, &state), &o, Basis::Observed);
    assert!(!plan.blocked(), "{:?}", plan.findings);
    let got: Vec<String> = plan
        .steps()
        .filter(|s| s.id.starts_with("upgrade/"))
        .map(|s| match &s.action {
            Action::UpgradeNode { node, kubeadm, kubelet, .. } => format!("{node} {kubeadm:?} kubelet={kubelet}"),
            Action::UncordonNode { node } => format!("{node} uncordon"),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(got, ["cp-2 Done kubelet=true", "cp-3 Node kubelet=true", "wk-1 Node kubelet=true", "wk-2 uncordon"], "{}", text(&plan));
}

/// etcd 3.5 to 3.6 on a running cluster: staged everywhere, a snapshot before the first restart, the
/// members one at a time between gates with the leader (cp-1) last, then the wait for the cluster version.
#[test]
fn an_etcd_minor_upgrade_restarts_the_leader_last_after_a_snapshot_and_checks_the_cluster_version() {
    let (state, mut o) = converged_on(|i| i.etcd.version = crate::inventory::Version::new(3, 5, 36));
    for s in &mut o.etcd.as_mut().unwrap().statuses {
        s.version = "3.5.36".into();
    }
    let inv = lab();
    let plan = converge(&inv, &desired_with(&inv, &state), &o, Basis::Observed);
    golden("an_etcd_minor_upgrade_restarts_the_leader_last_after_a_snapshot_and_checks_the_cluster_version", &plan);
    assert!(!plan.blocked(), "{:?}", plan.findings);
    let etcd: Vec<&str> = plan.phases.iter().find(|p| p.name == "etcd").unwrap().steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(
        etcd,
        [
            "etcd/cp-2/gate-before",
            "etcd/snapshot",
            "etcd/cp-2/move-leader",
            "etcd/cp-2/restart",
            "etcd/cp-2/gate-after",
            "etcd/cp-3/gate-before",
            "etcd/cp-3/move-leader",
            "etcd/cp-3/restart",
            "etcd/cp-3/gate-after",
            "etcd/cp-1/gate-before",
            "etcd/cp-1/move-leader",
            "etcd/cp-1/restart",
            "etcd/cp-1/gate-after",
            "etcd/cluster-version",
        ]
    );
    assert!(crate::upgrade::intent::other_changes(&plan).is_empty(), "{:?}", crate::upgrade::intent::other_changes(&plan));
}

/// Without the cluster's kubeadm configuration the order of an upgrade is unknown: refused, not guessed.
#[test]
fn an_upgrade_without_the_cluster_version_is_refused() {
    let (state, mut o) = converged_on(|i| i.kubernetes.version = crate::inventory::Version::new(1, 35, 4));
    o.cluster_version = None;
    let inv = lab();
    let plan = converge(&inv, &desired_with(&inv, &state), &o, Basis::Observed);
    assert!(plan.blocked());
    assert!(plan.findings.iter().any(|f| f.fatal && f.problem.starts_with("the cluster's Kubernetes version could not be read")), "{:?}", plan.findings);
    assert!(plan.steps().all(|s| !s.id.starts_with("upgrade/")));
}

/// `kubeha upgrade` refuses a plan that also changes something else (here a new worker joins).
#[test]
fn an_upgrade_that_also_changes_membership_is_not_only_a_version_change() {
    let (state, mut o) = converged_on(|i| i.kubernetes.version = crate::inventory::Version::new(1, 35, 4));
    o.hosts.remove("wk-2");
    o.nodes.as_mut().unwrap().remove("wk-2");
    let inv = lab();
    let plan = converge(&inv, &desired_with(&inv, &state), &o, Basis::Observed);
    let others: Vec<&str> = crate::upgrade::intent::other_changes(&plan).iter().map(|s| s.id.as_str()).collect();
    assert!(others.contains(&"workers/wk-2"), "{others:?}");
}

/// A program replaced on the host since kubeha installed it is installed again; a running kubelet whose
/// binary is replaced restarts; a host without HAProxy gets it from its package manager.
#[test]
fn a_changed_program_is_installed_again_and_a_running_kubelet_restarts() {
    let inv = lab();
    let d = desired(&inv);
    let mut o = converged(&inv, &d);
    let wk1 = &mut o.hosts.get_mut("wk-1").unwrap().state;
    let kubelet = wk1.software.get_mut(&crate::artifacts::Kind::Kubelet).unwrap();
    kubelet.current.insert("/usr/local/bin/kubelet".into(), Some("9".repeat(64)));
    let mut facts = control_plane_facts("cp-3", true);
    facts.os_id = "debian".into();
    facts.software.insert("haproxy".into(), None);
    o.hosts.entry("cp-3".into()).or_default().facts = Some(facts);
    let plan = converge(&inv, &d, &o, Basis::Observed);
    golden("a_changed_program_is_installed_again_and_a_running_kubelet_restarts", &plan);
    let step = plan.steps().find(|s| s.id == "software/wk-1").unwrap();
    assert!(
        matches!(&step.action, Action::InstallSoftware { artifacts, restart, .. } if artifacts == &["kubelet 1.36.3 (amd64)"] && restart == &["kubelet"]),
        "{step:?}"
    );
    assert_eq!(step.reason, "/usr/local/bin/kubelet differs from the kubelet 1.36.3 kubeha installed (changed on the host)");
    let step = plan.steps().find(|s| s.id == "software/cp-3").unwrap();
    assert!(matches!(&step.action, Action::InstallSoftware { packages, artifacts, .. } if packages == &["haproxy"] && artifacts.is_empty()), "{step:?}");
}

/// A run stopped between placing the seed's kubeadm config and uploading it: the file is in place, but the
/// cluster's ClusterConfiguration and an API server still name cp-2's old endpoint. The next run uploads the
/// configuration (nothing to write) before kubeadm writes that API server's manifest again from it; once the
/// manifests name members only, nothing is planned.
#[test]
fn a_stale_cluster_configuration_is_uploaded_again_before_an_api_server_is_refreshed_from_it() {
    let inv = lab();
    let d = desired(&inv);
    let mut o = converged(&inv, &d);
    let old = vec!["https://198.18.0.11:2379".to_string(), "https://198.18.0.99:2379".to_string(), "https://198.18.0.13:2379".to_string()];
    o.cluster_etcd_endpoints = Some(old.clone());
    o.hosts.get_mut("cp-2").unwrap().state.apiserver_etcd_servers = Some(old);
    let plan = converge(&inv, &d, &o, Basis::Observed);
    golden("a_stale_cluster_configuration_is_uploaded_again_before_an_api_server_is_refreshed_from_it", &plan);
    assert_eq!(ids(&plan), ["kubeadm/cp-1/config", "kubeadm/cp-2/etcd-servers", "verify"], "{}", text(&plan));
    let upload = plan.steps().find(|s| s.id == "kubeadm/cp-1/config").unwrap();
    assert!(matches!(&upload.action, Action::UploadKubeadmConfig { files } if files.is_empty()), "{upload:?}");
    assert!(upload.reason.contains("198.18.0.99"), "{}", upload.reason);
    let members = crate::render::context::etcd_endpoints(&inv);
    let refresh = plan.steps().find(|s| s.id == "kubeadm/cp-2/etcd-servers").unwrap();
    assert!(matches!(&refresh.action, Action::RefreshControlPlane { node, etcd_servers } if node == "cp-2" && *etcd_servers == members), "{refresh:?}");
    // The same endpoints in another order are the same members: no restart for it.
    let mut after = converged(&inv, &d);
    after.hosts.get_mut("cp-2").unwrap().state.apiserver_etcd_servers = Some(members.iter().rev().cloned().collect());
    assert_eq!(ids(&converge(&inv, &d, &after, Basis::Observed)), ["verify"]);
    // A manifest written before cp-3 was added names only members: it is not restarted for the new one.
    after.hosts.get_mut("cp-2").unwrap().state.apiserver_etcd_servers = Some(members[..2].to_vec());
    assert_eq!(ids(&converge(&inv, &d, &after, Basis::Observed)), ["verify"]);
}

/// The seed itself moved: its node is reset and joined again, so it cannot hold the ClusterConfiguration the
/// others join from. The next joined control plane seeds (uploads the configuration with cp-1's new
/// endpoint, refreshes its API server, runs the admin steps), and cp-1 joins as a control plane with a
/// JoinConfiguration, after the upload.
#[test]
fn a_readdressed_seed_hands_the_seed_to_the_next_joined_control_plane() {
    let lab = lab();
    let inv = edited_lab("readdressed-seed.yaml", |t| t.replace("{name: cp-1, address: 198.18.0.11", "{name: cp-1, address: 198.18.0.31"));
    let mut state = ClusterState::create(&lab).unwrap();
    let before = desired_with(&lab, &state);
    state.reissue_readdressed(&inv).unwrap();
    let mut o = converged(&lab, &before);
    o.hosts.get_mut("cp-1").unwrap().state.digests.insert(crate::paths::CNI_APPLIED.into(), "0".repeat(64));
    nodes_report_addresses(&mut o, &lab);
    assert_eq!(seed_control_plane(&inv, &o).unwrap().name, "cp-2", "a moved host is no seed, even with the CNI marker");
    let d = desired_seeded(&inv, &state, &o);
    let plan = converge(&inv, &d, &o, Basis::Observed);
    golden("a_readdressed_seed_hands_the_seed_to_the_next_joined_control_plane", &plan);
    assert!(!plan.blocked(), "{}", text(&plan));
    let cp: Vec<&str> = plan.phases.iter().find(|p| p.name == "control-plane").unwrap().steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(
        cp,
        ["kubeadm/cp-2/config", "kubeadm/cp-2/etcd-servers", "kubeadm/upload-certs", "kubeadm/cp-1/join", "kubeadm/cp-1/ready", "kubeadm/cp-3/etcd-servers"]
    );
    assert!(matches!(plan.steps().find(|s| s.id == "kubeadm/cp-2/config").unwrap().action, Action::UploadKubeadmConfig { .. }));
    let join_config = String::from_utf8_lossy(&d.file("cp-1", KUBEADM_CONFIG).unwrap().contents).into_owned();
    assert!(join_config.contains("kind: JoinConfiguration") && !join_config.contains("kind: InitConfiguration"), "{join_config}");
    assert_eq!(plan.steps().find(|s| s.id == "readdressed/cp-1/node").unwrap().host, "cp-2", "the Node is deleted from the new seed");
}

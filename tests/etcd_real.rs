//! kubeha's PKI, etcd status parsing and quorum gates against a real etcd cluster (Debian's etcd-server)
//! on loopback. Each test has its own addresses and ports, so they run in parallel.
mod support;
use kubeha::etcd::gate::{Gate, GateWhen, evaluate};
use kubeha::etcd::membership::{Change, changes};
use kubeha::etcd::status::reconfiguration_not_ready;
use kubeha::pki::{Authority, LeafSpec};
use std::process::Output;
use std::time::{Duration, Instant};
use support::etcd_cluster::{EtcdCluster, HEALTHY_WITHIN, Member};

/// Runs a membership change, retrying only while etcd answers "not yet" (see reconfiguration_not_ready),
/// for at most 30 s.
fn reconfigure(c: &EtcdCluster, endpoints: &[&Member], args: &[&str]) -> Output {
    let started = Instant::now();
    loop {
        let out = c.etcdctl(endpoints, args);
        if out.status.success() || !reconfiguration_not_ready(&String::from_utf8_lossy(&out.stderr)) || started.elapsed() > Duration::from_secs(30) {
            return out;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn names(n: &[&str]) -> Vec<String> {
    n.iter().map(|s| s.to_string()).collect()
}

#[test]
fn kubeha_certificates_authenticate_and_foreign_ones_do_not() {
    let c = EtcdCluster::start(&["a1"], 61, 23800);
    assert!(c.wait_healthy(HEALTHY_WITHIN));
    let a1: Vec<&Member> = c.members.iter().collect();
    assert!(c.etcdctl(&a1, &["put", "k", "v"]).status.success());
    // Same names, another CA: etcd must refuse the client.
    let other = Authority::generate("intruder").unwrap();
    let cert = other.issue(&LeafSpec { common_name: "kubeha".into(), client: true, ..LeafSpec::default() }).unwrap();
    std::fs::write(c.file("client.crt"), &cert.cert_pem).unwrap();
    std::fs::write(c.file("client.key"), cert.key_pem.expose()).unwrap();
    let out = c.etcdctl(&a1, &["get", "k"]);
    assert!(!out.status.success(), "a certificate from another CA was accepted: {out:?}");
}

#[test]
fn gates_see_unhealthy_members_learners_and_lost_quorum() {
    let mut c = EtcdCluster::start(&["g1", "g2", "g3"], 71, 23810);
    assert!(c.wait_healthy(HEALTHY_WITHIN));
    let voters = names(&["g1", "g2", "g3"]);
    let before = Gate::new(GateWhen::Before, "add g4", &voters);
    assert_eq!(evaluate(&before, &c.view()), Ok(()));

    // A learner left over from an unfinished change blocks the next change.
    let all: Vec<&Member> = c.members.iter().collect();
    let add = reconfigure(&c, &all, &["member", "add", "g4", "--learner", "--peer-urls", "https://127.0.0.74:23811"]);
    assert!(add.status.success(), "{add:?}");
    let err = evaluate(&before, &c.view()).unwrap_err();
    assert!(err.reasons.iter().any(|r| r.contains("learner unstarted member https://127.0.0.74:23811 present")), "{err}");
    let id = c.view().members.iter().find(|m| m.is_learner).unwrap().id;
    assert!(reconfigure(&c, &all, &["member", "remove", &format!("{id:x}")]).status.success());
    assert_eq!(evaluate(&before, &c.view()), Ok(()));

    // One member down: quorum holds, but the gate refuses to change membership.
    c.stop(1);
    let err = evaluate(&before, &c.view()).unwrap_err();
    assert!(err.reasons.iter().any(|r| r.starts_with("member g2 is unhealthy")), "{err}");
    assert!(!err.reasons.iter().any(|r| r.contains("quorum is lost")), "{err}");

    // Two down: quorum is lost and the gate says so.
    c.stop(2);
    let err = evaluate(&before, &c.view()).unwrap_err();
    assert!(err.reasons.iter().any(|r| r.contains("quorum is lost")), "{err}");
}

/// The plan's sequence for adding a member, on real etcd: gate, add as learner, start it into the existing
/// cluster, wait until it has caught up (promotion is refused before), promote, gate.
#[test]
fn learner_then_promote_between_gates() {
    let mut c = EtcdCluster::start(&["p1", "p2", "p3"], 81, 23820);
    assert!(c.wait_healthy(HEALTHY_WITHIN));
    let all: Vec<&Member> = c.members.iter().collect();
    for i in 0..200 {
        assert!(c.etcdctl(&all, &["put", &format!("key-{i}"), "value"]).status.success());
    }
    assert_eq!(evaluate(&Gate::new(GateWhen::Before, "add p4", &names(&["p1", "p2", "p3"])), &c.view()), Ok(()));

    let i = c.add_member("p4", "127.0.0.84");
    let peer = c.peer_url(&c.members[i]);
    let all: Vec<&Member> = c.members[..3].iter().collect();
    let add = reconfigure(&c, &all, &["member", "add", "p4", "--learner", "--peer-urls", &peer]);
    assert!(add.status.success(), "{add:?}");
    let inventory: Vec<(String, String)> = c.members.iter().map(|m| (m.name.clone(), c.peer_url(m))).collect();
    // Stopped right here, the next run would resume by starting the learner.
    assert_eq!(changes(&inventory, &c.view()), Ok(vec![Change::StartLearner { name: "p4".into() }]));
    let cluster: Vec<String> = c.members.iter().map(|m| format!("{}={}", m.name, c.peer_url(m))).collect();
    c.spawn(i, &cluster.join(","), "existing");

    let id = c.view().members.iter().find(|m| m.is_of("p4", &peer)).unwrap().id;
    let voters: Vec<&Member> = c.members[..3].iter().collect();
    let promote = reconfigure(&c, &voters, &["member", "promote", &format!("{id:x}")]);
    assert!(promote.status.success(), "learner p4 was not promoted: {promote:?}");
    assert!(c.wait_healthy(HEALTHY_WITHIN));
    assert_eq!(evaluate(&Gate::new(GateWhen::After, "add p4", &names(&["p1", "p2", "p3", "p4"])), &c.view()), Ok(()));
    assert_eq!(changes(&inventory, &c.view()), Ok(vec![]), "converged: nothing left to change");
    let p4: Vec<&Member> = c.members[3..].iter().collect();
    let out = c.etcdctl(&p4, &["get", "key-199", "--print-value-only"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "value", "the new member serves the data written before it joined");
}

/// Each member's own answer to `member list` (asked of that member alone, as the planner asks every
/// control plane), keyed by member name.
fn answers(c: &EtcdCluster) -> std::collections::BTreeMap<String, kubeha::etcd::status::MemberList> {
    c.members
        .iter()
        .filter(|m| m.child.is_some())
        .map(|m| {
            let out = c.etcdctl(&[m], &["member", "list", "-w", "json"]);
            assert!(out.status.success(), "{}: {out:?}", m.name);
            (m.name.clone(), kubeha::etcd::status::parse_member_list_answer(&String::from_utf8_lossy(&out.stdout)).unwrap())
        })
        .collect()
}

/// Waits (bounded) for member `i`'s etcd to exit; Some(log) when it did.
fn exits_within(c: &mut EtcdCluster, i: usize, within: Duration) -> Option<String> {
    let started = Instant::now();
    while started.elapsed() < within {
        if let Some(status) = c.members[i].child.as_mut().unwrap().try_wait().unwrap() {
            c.members[i].child = None;
            assert!(!status.success());
            return Some(std::fs::read_to_string(c.file(&format!("{}.log", c.members[i].name))).unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    None
}

/// Issue 12 item 2 on real etcd: a member whose data directory is lost. With `initial-cluster-state:
/// existing` (what kubeha now renders for every member of an existing cluster) etcd refuses to start; with
/// `new` and itself as the initial cluster (what the first member's config said before) it bootstraps a
/// second cluster under the same name, which every member's own answer and the gates tell apart.
#[test]
fn a_member_that_lost_its_data_fails_with_existing_and_splits_with_new() {
    let mut c = EtcdCluster::start(&["d1", "d2", "d3"], 101, 23840);
    assert!(c.wait_healthy(HEALTHY_WITHIN));
    let agreed = answers(&c);
    assert_eq!(kubeha::etcd::gate::disagreement(agreed.iter().map(|(h, l)| (h.as_str(), l))), None, "{agreed:?}");
    let cluster_id = agreed["d1"].cluster_id;
    assert!(cluster_id != 0 && agreed.values().all(|a| a.cluster_id == cluster_id));
    assert_eq!(c.view().cluster_id, cluster_id);

    // d1 must not lead when it stops: a new leader starts every follower's progress at index 0 and would
    // resync the empty d1 from its log (a member that simply catches up), so whether d1 fails or rejoins
    // would depend on which member the election picked. A leader that stays knows how far d1 had got, and
    // d1 without its data fails on that commit index (raft's "tocommit ... is out of range"): the case here.
    let view = c.view();
    let d1 = view.members.iter().find(|m| m.name == "d1").expect("d1 is a member").id;
    let d2 = view.members.iter().find(|m| m.name == "d2").expect("d2 is a member").id;
    if view.statuses.iter().any(|s| s.leader == d1) {
        let moved = c.etcdctl(&[&c.members[0]], &["move-leader", &format!("{d2:x}")]);
        assert!(moved.status.success(), "move-leader: {}", String::from_utf8_lossy(&moved.stderr));
    }
    // d1's disk is replaced.
    c.stop(0);
    std::fs::rename(c.file("d1.data"), c.file("d1.data.lost")).unwrap();
    let alone = format!("d1={}", c.peer_url(&c.members[0]));
    let everyone: Vec<String> = c.members.iter().map(|m| format!("{}={}", m.name, c.peer_url(m))).collect();
    for initial in [alone.clone(), everyone.join(",")] {
        c.spawn(0, &initial, "existing");
        let log = exits_within(&mut c, 0, Duration::from_secs(30)).unwrap_or_else(|| panic!("etcd with existing and no data kept running ({initial})"));
        assert!(!log.is_empty());
        let _ = std::fs::remove_dir_all(c.file("d1.data"));
    }
    assert_eq!(kubeha::etcd::gate::disagreement(answers(&c).iter().map(|(h, l)| (h.as_str(), l))), None, "d2 and d3 still agree");

    c.spawn(0, &alone, "new");
    assert!(c.wait_healthy(HEALTHY_WITHIN));
    let split = answers(&c);
    assert_ne!(split["d1"].cluster_id, cluster_id, "a cluster of its own");
    let text = kubeha::etcd::gate::disagreement(split.iter().map(|(h, l)| (h.as_str(), l))).expect("the split is seen");
    assert!(text.contains("different etcd clusters") && text.contains("d1 report") && text.contains("d2, d3 report"), "{text}");
    // The gates, asked on a real member, no longer count d1.
    let d2 = &c.members[1];
    let text = |args: &[&str]| String::from_utf8_lossy(&c.etcdctl(&[d2], args).stdout).into_owned();
    let view = kubeha::etcd::gate::View::from_etcdctl(
        &text(&["member", "list", "-w", "json"]),
        &text(&["endpoint", "status", "--cluster", "-w", "json"]),
        &text(&["endpoint", "health", "--cluster", "-w", "json"]),
    )
    .unwrap();
    let err = evaluate(&Gate::new(GateWhen::Before, "add d4", &names(&["d1", "d2", "d3"])), &view).unwrap_err();
    assert!(err.reasons.iter().any(|r| r.starts_with("member d1 is unhealthy (its endpoint answers for another etcd cluster")), "{err}");
}

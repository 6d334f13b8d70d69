//! Fault drills on membership, on one lab (3 control planes in 3 zones + 2 workers), in sequence:
//! 1. a dead control plane replaced by a new machine (`node replace`) with 1,000 keys in etcd;
//! 5. kubeha SIGKILLed in the middle of a second replace (of a live member: learner first, then the old
//!    member out, then the promotion), then resumed;
//! 2. growing to 5 control planes with `node add`, one at a time, then removing one;
//! 6. with 5 control planes over 3 zones, a whole zone (2 members) killed: `status` says quorum holds with no
//!    more losses, and membership changes that would need the dead members are refused;
//! 7. the first control plane (the seed of every earlier run, made etcd's leader) replaced while alive:
//!    leadership is handed over, another joined control plane takes the seed's role.
//!
//! A quorum monitor writes to etcd every 200 ms through members that stay up; each drill fails when writes
//! were unavailable for longer than one election. Results are checked with etcdctl, the OpenSSH client and
//! curl, not with kubeha. Needs root (see tests/lab_machines.rs).
mod support;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;
use support::drill::*;
use support::lab::Lab;

/// HAProxy's running backends on a control plane, from its stats page: "name address" per server.
fn haproxy_backends(cp: &str) -> Vec<String> {
    let csv = ssh_ok(cp, "curl -sS --max-time 5 'http://127.0.0.1:8404/stats;csv'");
    let mut servers: Vec<String> = csv
        .lines()
        .filter(|l| l.starts_with("kube-apiserver,"))
        .filter_map(|l| l.split(',').nth(1).map(String::from))
        .filter(|s| s != "FRONTEND" && s != "BACKEND")
        .collect();
    servers.sort();
    servers
}

fn assert_load_balancers_follow(control_planes: &[&str], names: &[&str], gone: &[&str]) {
    for cp in control_planes {
        assert_eq!(haproxy_backends(cp), names, "HAProxy backends running on {cp}");
        let keepalived = ssh_ok(cp, "cat /etc/keepalived/keepalived.conf");
        for address in gone {
            assert!(!keepalived.contains(address), "keepalived on {cp} still has peer {address}");
            assert!(!ssh_ok(cp, "cat /etc/haproxy/haproxy.cfg").contains(address), "haproxy.cfg on {cp} still has {address}");
        }
    }
    let readyz = ssh(WK1, &format!("curl -sS --max-time 5 --cacert /etc/kubernetes/pki/ca.crt https://{VIP}:8443/readyz"));
    assert_eq!(text(&readyz).trim(), "ok", "readyz through the VIP from a worker");
}

fn converged(inventory: &Path, state: &Path) {
    let plan = kubeha_with(inventory, state, &["plan", "--detailed-exitcode"]).output().unwrap();
    assert_eq!(plan.status.code(), Some(0), "plan after the drill must be converged:\n{}", text(&plan));
}

#[test]
fn replace_resume_grow_shrink_and_a_lost_zone() {
    let state = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state = state.path();
    let _lab = Lab::up();
    kubeha_ok(lab_inventory(), state, &["apply", "--yes"]);
    let etcdctl = Arc::new(Etcdctl::from(CP1));

    // Drill 1: 1,000 keys; cp-2 dies; cp-4 takes its place in the inventory and in the cluster.
    let started = Instant::now();
    etcdctl.write_keys(&[CP1, CP3], "drill/", 1000);
    let monitor = QuorumMonitor::start(etcdctl.clone(), vec![CP1.into(), CP3.into()]);
    kubeha_ok(lab_inventory(), state, &["lab", "kill", "cp-2"]);
    let replaced = edited_inventory(dir.path(), "replaced.yaml", |t| t.replace(&control_plane("cp-2", CP2, "az-b"), &control_plane("cp-4", CP4, "az-b")));
    kubeha_ok(&replaced, state, &["lab", "up"]);
    let out = kubeha_ok(&replaced, state, &["node", "replace", "cp-2", "--with", "cp-4", "--yes"]);
    assert!(text(&out).contains("etcd/snapshot") || text(&out).contains("etcd snapshot"), "a snapshot precedes the removal");
    let m = monitor.finish();
    report("1 (replace dead cp-2 by cp-4)", started, &m);
    assert!(m.longest_unavailable <= ONE_ELECTION, "writes unavailable for {:?}", m.longest_unavailable);
    assert_eq!(etcdctl.count(&[CP1, CP4], "drill/"), 1000, "every key survives the replacement");
    assert_eq!(etcdctl.members(&[CP1]), ["cp-1", "cp-3", "cp-4"]);
    assert_load_balancers_follow(&[CP1, CP3, CP4], &["cp-1", "cp-3", "cp-4"], &[CP2]);
    converged(&replaced, state);

    // Drill 5: a second replace (cp-3, alive, by cp-5) is SIGKILLed right after the old member left etcd;
    // the dead run's lock is taken over, the next run resumes, and cp-3 is reset once it left.
    let started = Instant::now();
    let monitor = QuorumMonitor::start(etcdctl.clone(), vec![CP1.into(), CP4.into()]);
    let replaced_twice = edited_inventory(dir.path(), "replaced-twice.yaml", replaced_twice_text);
    kubeha_ok(&replaced_twice, state, &["lab", "up"]);
    let replace = ["node", "replace", "cp-3", "--with", "cp-5", "--yes"];
    kill_after(&replaced_twice, state, &replace, "etcd/cp-3/remove");
    assert_eq!(etcdctl.members(&[CP1]), ["cp-1", "cp-4", "cp-5 (learner)"], "killed after the old member left, before the promotion");
    let resumed = kubeha_ok(&replaced_twice, state, &replace);
    assert!(text(&resumed).contains("did not finish"), "the resumed run names the killed one");
    let m = monitor.finish();
    report("5 (replace cp-3 by cp-5, SIGKILL after the removal, resume)", started, &m);
    assert!(m.longest_unavailable <= ONE_ELECTION, "writes unavailable for {:?}", m.longest_unavailable);
    assert_eq!(etcdctl.members(&[CP1]), ["cp-1", "cp-4", "cp-5"]);
    assert_load_balancers_follow(&[CP1, CP4, CP5], &["cp-1", "cp-4", "cp-5"], &[CP3]);
    let units = text(&ssh(CP3, "systemctl is-enabled keepalived haproxy etcd"));
    assert!(units.lines().all(|l| l == "disabled"), "cp-3's services are disabled: {units}");
    let leftovers = text(&ssh(CP3, "ls -d /var/lib/etcd /etc/kubeha /etc/kubernetes/admin.conf 2>/dev/null"));
    assert!(leftovers.trim().is_empty(), "cp-3 keeps no etcd data, secrets or admin credential: {leftovers}");
    assert_eq!(etcdctl.count(&[CP1, CP5], "drill/"), 1000);
    converged(&replaced_twice, state);

    // Drill 2: grow to 5 control planes with `node add`, one at a time.
    let started = Instant::now();
    let monitor = QuorumMonitor::start(etcdctl.clone(), vec![CP1.into(), CP5.into()]);
    let with_cp6 = |t: String| replaced_twice_text(t) + &control_plane("cp-6", CP6, "az-a");
    let grown4 = edited_inventory(dir.path(), "grown4.yaml", with_cp6);
    kubeha_ok(&grown4, state, &["lab", "up"]);
    kubeha_ok(&grown4, state, &["node", "add", "cp-6", "--yes"]);
    assert_eq!(etcdctl.members(&[CP1]), ["cp-1", "cp-4", "cp-5", "cp-6"]);
    let grown5 = edited_inventory(dir.path(), "grown5.yaml", |t| with_cp6(t) + &control_plane("cp-7", CP7, "az-b"));
    kubeha_ok(&grown5, state, &["lab", "up"]);
    kubeha_ok(&grown5, state, &["node", "add", "cp-7", "--yes"]);
    let m = monitor.finish();
    report("2a (grow 3 -> 5 with node add)", started, &m);
    assert!(m.longest_unavailable <= ONE_ELECTION, "writes unavailable for {:?}", m.longest_unavailable);
    assert_eq!(etcdctl.members(&[CP1]), ["cp-1", "cp-4", "cp-5", "cp-6", "cp-7"]);
    assert_load_balancers_follow(&[CP1, CP4, CP5, CP6, CP7], &["cp-1", "cp-4", "cp-5", "cp-6", "cp-7"], &[]);
    converged(&grown5, state);

    // Drill 6: zone az-b (cp-4 and cp-7) is lost. Quorum holds (3 of 5) with no loss to spare, and a change
    // that would need the dead members is refused.
    let started = Instant::now();
    let monitor = QuorumMonitor::start(etcdctl.clone(), vec![CP1.into(), CP5.into()]);
    kubeha_ok(&grown5, state, &["lab", "kill", "cp-4"]);
    kubeha_ok(&grown5, state, &["lab", "kill", "cp-7"]);
    let status = kubeha_with(&grown5, state, &["status", "--output", "json"]).output().unwrap();
    eprintln!("{}", text(&status));
    assert_eq!(status.status.code(), Some(2), "degraded, quorum holds");
    let report_json: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(report_json["etcd"]["moreLossesTolerated"], 0, "{report_json}");
    assert_eq!(report_json["etcd"]["healthyVoters"], 3, "{report_json}");
    let text_status = text(&kubeha_with(&grown5, state, &["status"]).output().unwrap());
    assert!(text_status.contains("az-b"), "{text_status}");
    let without_cp4 = edited_inventory(dir.path(), "zone-lost.yaml", |t| {
        with_cp6(t).replace(&control_plane("cp-4", CP4, "az-b"), &control_plane("cp-8", CP8, "az-b")) + &control_plane("cp-7", CP7, "az-b")
    });
    let refused = kubeha_with(&without_cp4, state, &["node", "replace", "cp-4", "--with", "cp-8", "--yes"]).output().unwrap();
    eprintln!("{}", text(&refused));
    assert_eq!(refused.status.code(), Some(1));
    assert!(text(&refused).contains("cp-7") && text(&refused).contains("keeps quorum"), "the refusal names the dead member");
    assert_eq!(etcdctl.members(&[CP1]), ["cp-1", "cp-4", "cp-5", "cp-6", "cp-7"], "nothing changed");
    let m = monitor.finish();
    report("6 (zone az-b lost with 5 members over 3 zones)", started, &m);
    assert!(m.longest_unavailable <= ONE_ELECTION, "writes unavailable for {:?}", m.longest_unavailable);

    // The zone comes back (same machines, same data); then drill 2 ends with a removal.
    kubeha_ok(&grown5, state, &["lab", "up"]);
    wait_until_verified(&grown5, state);
    wait_until_quiet(std::time::Duration::from_secs(60));
    let started = Instant::now();
    let monitor = QuorumMonitor::start(etcdctl.clone(), vec![CP1.into(), CP5.into()]);
    kubeha_ok(&grown5, state, &["node", "remove", "cp-7", "--yes"]);
    let m = monitor.finish();
    report("2b (remove cp-7: 5 -> 4)", started, &m);
    assert!(m.longest_unavailable <= ONE_ELECTION, "writes unavailable for {:?}", m.longest_unavailable);
    assert_eq!(etcdctl.members(&[CP1]), ["cp-1", "cp-4", "cp-5", "cp-6"]);
    assert_load_balancers_follow(&[CP1, CP4, CP5, CP6], &["cp-1", "cp-4", "cp-5", "cp-6"], &[CP7]);
    assert_eq!(etcdctl.count(&[CP1], "drill/"), 1000);
    converged(&grown4, state);

    // Drill 7: cp-1, first in the inventory, seed of every run so far and made etcd's leader, is replaced
    // while alive by cp-8.
    let started = Instant::now();
    let leader_endpoints = [CP1, CP4, CP5, CP6];
    let cp1_id = member_id(&etcdctl, "cp-1");
    etcdctl.run(&leader_endpoints, &["move-leader", &cp1_id]);
    assert_eq!(leader(&etcdctl), "cp-1");
    let monitor = QuorumMonitor::start(etcdctl.clone(), vec![CP4.into(), CP5.into()]);
    let seed_replaced =
        edited_inventory(dir.path(), "seed-replaced.yaml", |t| with_cp6(t).replace(&control_plane("cp-1", CP1, "az-a"), &control_plane("cp-8", CP8, "az-a")));
    kubeha_ok(&seed_replaced, state, &["lab", "up"]);
    let out = kubeha_ok(&seed_replaced, state, &["node", "replace", "cp-1", "--with", "cp-8", "--yes"]);
    let out = text(&out);
    let m = monitor.finish();
    report("7 (replace the seed cp-1, alive and leading, by cp-8)", started, &m);
    assert!(m.longest_unavailable <= ONE_ELECTION, "writes unavailable for {:?}", m.longest_unavailable);
    let handed_over = out.find("etcd/cp-1/move-leader").expect("leadership is moved off cp-1");
    assert!(handed_over < out.find("etcd/cp-1/remove").unwrap(), "{out}");
    assert_eq!(etcdctl.members(&[CP4]), ["cp-4", "cp-5", "cp-6", "cp-8"]);
    assert_ne!(leader(&etcdctl), "cp-1");
    assert_eq!(etcdctl.count(&[CP4, CP8], "drill/"), 1000, "every key survives the replacement of the seed");
    assert_load_balancers_follow(&[CP4, CP5, CP6, CP8], &["cp-4", "cp-5", "cp-6", "cp-8"], &[CP1]);
    let nodes = ssh_ok(CP4, "kubectl --kubeconfig /etc/kubernetes/admin.conf get nodes -o name");
    assert!(nodes.contains("node/cp-8") && !nodes.contains("node/cp-1"), "{nodes}");
    let leftovers = text(&ssh(CP1, "ls -d /var/lib/etcd /etc/kubeha /etc/kubernetes/admin.conf 2>/dev/null"));
    assert!(leftovers.trim().is_empty(), "cp-1 was reset after it left: {leftovers}");
    converged(&seed_replaced, state);
}

/// A member's ID in hex, as etcdctl takes it.
fn member_id(etcdctl: &Etcdctl, name: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(&etcdctl.run(&[CP4], &["member", "list", "-w", "json"])).unwrap();
    let id = v["members"].as_array().unwrap().iter().find(|m| m["name"] == name).and_then(|m| m["ID"].as_u64());
    format!("{:x}", id.unwrap_or_else(|| panic!("{name} in {v}")))
}

/// The member that leads, by name, as the members that answer report it.
fn leader(etcdctl: &Etcdctl) -> String {
    let status: serde_json::Value = serde_json::from_str(&etcdctl.run(&[CP4], &["endpoint", "status", "--cluster", "-w", "json"])).unwrap();
    let leader = status.as_array().unwrap().iter().find_map(|s| s["Status"]["leader"].as_u64()).expect("a leader");
    let v: serde_json::Value = serde_json::from_str(&etcdctl.run(&[CP4], &["member", "list", "-w", "json"])).unwrap();
    v["members"].as_array().unwrap().iter().find(|m| m["ID"].as_u64() == Some(leader)).and_then(|m| m["name"].as_str()).unwrap_or("?").to_string()
}

fn replaced_twice_text(t: String) -> String {
    t.replace(&control_plane("cp-2", CP2, "az-b"), &control_plane("cp-4", CP4, "az-b"))
        .replace(&control_plane("cp-3", CP3, "az-c"), &control_plane("cp-5", CP5, "az-c"))
}

/// After machines were powered back on: bounded wait until `kubeha verify` passes (etcd members rejoin,
/// API servers come back, HAProxy counts them up).
fn wait_until_verified(inventory: &Path, state: &Path) {
    let started = Instant::now();
    loop {
        let out = kubeha_with(inventory, state, &["verify"]).output().unwrap();
        if out.status.success() {
            return;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(120), "not verified within 120 s after the machines came back:\n{}", text(&out));
        std::thread::sleep(std::time::Duration::from_secs(2));
    }
}

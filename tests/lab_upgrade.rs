//! The upgrade drill on the lab's real components (root only, like every lab test): a cluster bootstrapped on
//! the lab's previous releases (Kubernetes 1.35.4, etcd 3.5.36, built by lab/upstream/build.sh beside the
//! current ones) holds 1,000 keys; upgrades the version rules refuse change nothing; then `kubeha upgrade`
//! to the current releases (Kubernetes 1.36.3, etcd 3.6.16) is SIGKILLed once the first control plane is
//! done, and the next run resumes and converges. A quorum monitor writes to etcd and a second one asks for
//! /readyz through the VIP, every 200 ms, throughout.
mod support;

use std::path::Path;
use std::time::{Duration, Instant};
use support::drill::{self, ApiMonitor, Etcdctl, ONE_ELECTION, QuorumMonitor, kill_after_within, kubeha_ok, kubeha_with, ssh_ok, text};
use support::drill::{CP1, CP2, CP3, VIP};
use support::lab::Lab;

const PREVIOUS_KUBERNETES: &str = "1.35.4";
const PREVIOUS_ETCD: &str = "3.5.36";
/// The API through the VIP may be away while a control plane's pods restart behind HAProxy's health checks
/// (fall 3 x inter 2 s): the bound.
const API_AWAY_AT_MOST: Duration = Duration::from_secs(5);

/// The lab inventory with its Kubernetes and etcd versions replaced.
fn with_versions(dir: &Path, name: &str, kubernetes: &str, etcd: &str) -> std::path::PathBuf {
    drill::edited_inventory(dir, name, |text| {
        text.replace("    version: 1.36.3 ", &format!("    version: {kubernetes} ")).replace("    version: 3.6.16 ", &format!("    version: {etcd} "))
    })
}

/// What the cluster runs: each node's kubelet version, each etcd member's version.
fn versions(etcdctl: &Etcdctl) -> (Vec<String>, Vec<String>) {
    let nodes = ssh_ok(
        CP1,
        "kubectl --kubeconfig /etc/kubernetes/admin.conf get nodes -o jsonpath='{range .items[*]}{.metadata.name}={.status.nodeInfo.kubeletVersion}{\"\\n\"}{end}'",
    );
    let status: serde_json::Value = serde_json::from_str(&etcdctl.run(&[CP1, CP2, CP3], &["endpoint", "status", "-w", "json"])).unwrap();
    let members = status.as_array().unwrap().iter().map(|s| s["Status"]["version"].as_str().unwrap_or("?").to_string()).collect();
    (nodes.lines().map(str::to_string).collect(), members)
}

/// The seconds each upgrade step took, from the journals of the runs under `state`.
fn upgrade_step_seconds(state: &Path) -> Vec<(String, f64)> {
    let mut found = Vec::new();
    let Ok(runs) = std::fs::read_dir(state.join("lab/runs")) else { return found };
    for run in runs.filter_map(Result::ok) {
        let journal = std::fs::read_to_string(run.path().join("journal.jsonl")).unwrap_or_default();
        for line in journal.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
            if v["event"] == "stepDone" && v["stepId"].as_str().is_some_and(|s| s.starts_with("upgrade/") || s.ends_with("/restart")) {
                found.push((v["stepId"].as_str().unwrap().to_string(), v["seconds"].as_f64().unwrap_or(0.0)));
            }
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

#[test]
fn an_upgrade_rolls_etcd_and_kubernetes_with_quorum_and_the_api_kept_and_resumes_after_a_kill() {
    let work = tempfile::tempdir().unwrap();
    let state = work.path().join("state");
    let _lab = Lab::up();
    let old = with_versions(work.path(), "previous.yaml", PREVIOUS_KUBERNETES, PREVIOUS_ETCD);
    let started = Instant::now();
    kubeha_ok(&old, &state, &["apply", "--yes"]);
    eprintln!("bootstrap on Kubernetes {PREVIOUS_KUBERNETES} and etcd {PREVIOUS_ETCD}: {:.0} s", started.elapsed().as_secs_f64());
    let etcdctl = std::sync::Arc::new(Etcdctl::from(CP1));
    etcdctl.write_keys(&[CP1, CP2, CP3], "kubeha-upgrade/key-", 1000);
    let before = versions(&etcdctl);
    assert!(before.0.iter().all(|n| n.ends_with(&format!("=v{PREVIOUS_KUBERNETES}"))), "{before:?}");
    assert!(before.1.iter().all(|v| v == PREVIOUS_ETCD), "{before:?}");

    // What the rules refuse is refused before any change, with the allowed path.
    for (name, kubernetes, etcd, says) in [
        ("jump.yaml", "1.37.2", PREVIOUS_ETCD, "more than one minor release at once"),
        ("down.yaml", "1.35.3", PREVIOUS_ETCD, "a downgrade"),
        ("etcd-jump.yaml", PREVIOUS_KUBERNETES, "3.7.3", "more than one minor release at once"),
    ] {
        let refused = kubeha_with(&with_versions(work.path(), name, kubernetes, etcd), &state, &["upgrade", "--yes"]).output().unwrap();
        let out = text(&refused);
        assert_eq!(refused.status.code(), Some(1), "{name}: {out}");
        assert!(out.contains(says) && out.contains("fix:"), "{name}: the refusal and the allowed path: {out}");
    }
    assert_eq!(versions(&etcdctl), before, "nothing changed by the refused upgrades");

    let quorum = QuorumMonitor::start(etcdctl.clone(), [CP1, CP2, CP3].map(String::from).to_vec());
    let api = ApiMonitor::start(CP1, format!("https://{VIP}:8443/readyz"));
    let upgrade_started = Instant::now();
    let current = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/inventories/lab.yaml"));
    // Killed once the first control plane runs the new release: the cluster is mixed.
    kill_after_within(current, &state, &["upgrade", "--yes"], "upgrade/cp-1", Duration::from_secs(900));
    let mixed = kubeha_with(current, &state, &["plan"]).output().unwrap();
    let mixed_plan = text(&mixed);
    assert!(!mixed_plan.contains("kubeadm upgrade apply"), "the cluster-wide part is done: {mixed_plan}");
    assert!(mixed_plan.contains("upgrade/cp-2") || mixed_plan.contains("cp-2  kubeadm upgrade node"), "cp-2 is next: {mixed_plan}");
    kubeha_ok(current, &state, &["upgrade", "--yes"]);
    let upgrade_took = upgrade_started.elapsed();
    let writes = quorum.finish();
    let reads = api.finish();
    drill::report("upgrade (writes)", upgrade_started, &writes);
    eprintln!(
        "DRILL upgrade (API through the VIP): {} probes, {} failed, longest unavailable {:.2} s, ending {:.1} s into the upgrade (bound {:.1} s)",
        reads.samples,
        reads.failed,
        reads.longest_unavailable.as_secs_f64(),
        reads.longest_ended_at.as_secs_f64(),
        API_AWAY_AT_MOST.as_secs_f64()
    );
    for (step, seconds) in upgrade_step_seconds(&state) {
        eprintln!("UPGRADE step {step}: {seconds:.1} s");
    }
    eprintln!("UPGRADE total (both runs, kill included): {:.0} s", upgrade_took.as_secs_f64());

    let after = versions(&etcdctl);
    assert!(after.0.iter().all(|n| n.ends_with("=v1.36.3")) && after.0.len() == 5, "every node on the new release: {after:?}");
    assert!(after.1.iter().all(|v| v == "3.6.16"), "every member on the new release: {after:?}");
    assert_eq!(etcdctl.count(&[CP1, CP2, CP3], "kubeha-upgrade/key-"), 1000, "the keys survive");
    let uncordoned = ssh_ok(CP1, "kubectl --kubeconfig /etc/kubernetes/admin.conf get nodes -o jsonpath='{.items[*].spec.unschedulable}'");
    assert!(uncordoned.trim().is_empty(), "no node left cordoned: {uncordoned}");
    let converged = kubeha_with(current, &state, &["plan", "--detailed-exitcode"]).output().unwrap();
    assert_eq!(converged.status.code(), Some(0), "{}", text(&converged));
    assert!(writes.longest_unavailable <= ONE_ELECTION, "etcd writes unavailable for {:?}, more than one election", writes.longest_unavailable);
    assert!(reads.longest_unavailable <= API_AWAY_AT_MOST, "the API through the VIP was away for {:?}", reads.longest_unavailable);
}

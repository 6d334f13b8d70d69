//! The cluster lock on real machines (the lab's three control planes) over kubeha's own SSH transport.
//! Needs root and the lab's packages, like tests/lab_machines.rs; it uses the lab named "lab".
mod support;
use kubeha::exec::lock::{self, Holder, LockError};
use kubeha::inventory::Inventory;
use kubeha::ssh::{self, Command, Transport};
use std::sync::Arc;
use std::time::Duration;
use support::lab::{Lab, kubeha};

type ControlPlanes = Vec<ssh::targets::Connection>;
const RECORD: &str = "/var/lib/kubeha/lock/holder.json";

async fn connect(inv: &Inventory) -> ControlPlanes {
    let targets: Vec<ssh::HostTarget> = inv.control_planes().map(ssh::targets::target).collect();
    let options = ssh::ConnectOptions { connect_timeout: Duration::from_secs(3), ..ssh::targets::connect_options(inv, false) };
    ssh::pool::connect_each(&targets, &options).await.into_iter().map(|(name, session)| (name, session.map(|s| s as Arc<dyn Transport>))).collect()
}

fn host(cps: &ControlPlanes, i: usize) -> &dyn Transport {
    cps[i].1.as_ref().unwrap().as_ref()
}

async fn sh(t: &dyn Transport, script: &str) -> String {
    t.run(&Command::script(script)).await.unwrap().stdout_text()
}

/// Makes every control plane's lock directory and record `seconds` old (by the host's clock, which is
/// what staleness is judged by), as if the holder had stopped its heartbeat then.
async fn age_locks(cps: &ControlPlanes, seconds: u64) {
    for i in 0..cps.len() {
        sh(host(cps, i), &format!("t=$(( $(date +%s) - {seconds} )); touch -c -d @$t {RECORD} /var/lib/kubeha/lock")).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_never_hold_the_cluster_together() {
    let lab = Lab::up();
    let inv = &lab.inventory;
    let cps = connect(inv).await;

    // First run takes all three control planes; a second run from this same machine (same host name, a
    // live PID) is refused and told who holds the lock: only the run id tells runs apart.
    let first = lock::acquire(&cps, Holder::for_this_run("kubeha apply"), false).await.unwrap();
    assert_eq!(first.hosts(), ["cp-1", "cp-2", "cp-3"]);
    let second = lock::acquire(&cps, Holder::for_this_run("kubeha node add cp-4"), false).await.err().unwrap();
    let text = second.to_string();
    assert!(matches!(second, LockError::Held { .. }), "{text}");
    assert!(text.contains("`kubeha apply`") && text.contains(&first.holder().run_id) && text.contains("cp-1"), "{text}");
    first.release().await.unwrap();

    // A run killed without releasing (here: dropped) keeps the cluster while its heartbeat is young, even
    // for the next run on the same machine; once silent past the bound it is stale, taken with --force-unlock.
    let abandoned = lock::acquire(&cps, Holder::for_this_run("kubeha apply"), false).await.unwrap();
    let abandoned_id = abandoned.holder().run_id.clone();
    drop(abandoned);
    let refused = lock::acquire(&cps, Holder::for_this_run("kubeha apply"), false).await.err().unwrap();
    assert!(matches!(refused, LockError::Held { .. }), "{refused}");
    age_locks(&cps, 600).await;
    let refused = lock::acquire(&cps, Holder::for_this_run("kubeha apply"), false).await.err().unwrap().to_string();
    assert!(refused.contains("looks stale (no heartbeat for 6") && refused.contains(&abandoned_id) && refused.contains("--force-unlock"), "{refused}");
    let mut forced = lock::acquire(&cps, Holder::for_this_run("kubeha apply"), true).await.unwrap();

    // The heartbeat is the record's mtime on the host: it keeps a live holder from looking stale.
    age_locks(&cps, 100).await;
    forced.heartbeat().await;
    assert_eq!(forced.fence().lost(), None);
    let record: Holder = serde_json::from_slice(&host(&cps, 1).read_file(RECORD).await.unwrap().unwrap()).unwrap();
    assert_eq!(record.run_id, forced.holder().run_id);
    let age: u64 = sh(host(&cps, 1), &format!("echo $(( $(date +%s) - $(stat -c %Y {RECORD}) ))")).await.trim().parse().unwrap();
    assert!(age < 10, "heartbeat {age} s old");
    forced.release().await.unwrap();
    for i in 0..cps.len() {
        assert_eq!(host(&cps, i).read_file(RECORD).await.unwrap(), None, "released everywhere");
    }

    // A lock directory without a record (a run killed between mkdir and its record) holds while young and
    // is cleared by --force-unlock.
    sh(host(&cps, 0), "mkdir -p /var/lib/kubeha/lock").await;
    let refused = lock::acquire(&cps, Holder::for_this_run("kubeha apply"), false).await.err().unwrap().to_string();
    assert!(refused.contains("on cp-1: a lock directory without a holder record"), "{refused}");
    lock::acquire(&cps, Holder::for_this_run("kubeha apply"), true).await.unwrap().release().await.unwrap();

    // With two of three control planes unreachable there is no majority: refused, and nothing is left held.
    for host in ["cp-2", "cp-3"] {
        assert!(kubeha(&["lab", "partition", host]).status.success());
    }
    let partial = connect(inv).await;
    let err = lock::acquire(&partial, Holder::for_this_run("kubeha apply"), false).await.err().unwrap().to_string();
    assert!(err.contains("needs a majority of the control planes (2 of 3); only 1 could be locked"), "{err}");
    assert_eq!(partial[0].1.as_ref().unwrap().read_file(RECORD).await.unwrap(), None, "a refused run gives back what it took");
}

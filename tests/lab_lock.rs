//! The cluster lock on real machines (the lab's three control planes) over kubeha's own SSH transport.
//! Needs root and the lab's packages, like tests/lab_machines.rs; it uses the lab named "lab".
mod support;
use kubeha::exec::lock::{self, Holder, LockError};
use kubeha::inventory::Inventory;
use kubeha::ssh::{self, Transport};
use std::sync::Arc;
use std::time::Duration;
use support::lab::{Lab, kubeha};

type ControlPlanes = Vec<ssh::targets::Connection>;

async fn connect(inv: &Inventory) -> ControlPlanes {
    let targets: Vec<ssh::HostTarget> = inv.control_planes().map(ssh::targets::target).collect();
    let options = ssh::ConnectOptions { connect_timeout: Duration::from_secs(3), ..ssh::targets::connect_options(inv, false) };
    ssh::pool::connect_each(&targets, &options).await.into_iter().map(|(name, session)| (name, session.map(|s| s as Arc<dyn Transport>))).collect()
}

fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_never_hold_the_cluster_together() {
    let lab = Lab::up();
    let inv = &lab.inventory;
    let cps = connect(inv).await;
    let alive = lock::local_pid_alive;

    // First run takes all three control planes; a second run is refused and told who holds the lock.
    let first = lock::acquire(&cps, Holder::for_this_run("kubeha apply"), false, alive).await.unwrap();
    assert_eq!(first.hosts(), ["cp-1", "cp-2", "cp-3"]);
    let second = lock::acquire(&cps, Holder::for_this_run("kubeha node add cp-4"), false, alive).await.err().unwrap();
    let text = second.to_string();
    assert!(matches!(second, LockError::Held { .. }), "{text}");
    assert!(text.contains("`kubeha apply`") && text.contains(&first.holder().run_id) && text.contains("cp-1"), "{text}");
    first.release().await.unwrap();

    // A run killed on this machine (its PID is gone) left its lock: the next run takes it over by itself.
    let killed = Holder { pid: dead_pid(), ..Holder::for_this_run("kubeha apply") };
    let abandoned = lock::acquire(&cps, killed, false, alive).await.unwrap();
    drop(abandoned); // never released, as after SIGKILL
    let next = lock::acquire(&cps, Holder::for_this_run("kubeha apply"), false, alive).await.unwrap();
    next.release().await.unwrap();

    // A silent holder on another machine is only suspect: refused with the way out, taken with --force-unlock.
    let elsewhere = Holder {
        operator_host: "ops-2".into(),
        operator: "alice@ops-2".into(),
        heartbeat_unix: lock::now_unix() - 600,
        ..Holder::for_this_run("kubeha apply")
    };
    drop(lock::acquire(&cps, elsewhere, false, alive).await.unwrap());
    let refused = lock::acquire(&cps, Holder::for_this_run("kubeha apply"), false, alive).await.err().unwrap().to_string();
    assert!(refused.contains("looks stale (no heartbeat for") && refused.contains("alice@ops-2") && refused.contains("--force-unlock"), "{refused}");
    let forced = lock::acquire(&cps, Holder::for_this_run("kubeha apply"), true, alive).await.unwrap();

    // The heartbeat keeps a live holder from looking stale.
    let mut forced = forced;
    forced.heartbeat().await.unwrap();
    let record = cps[1].1.as_ref().unwrap().read_file("/var/lib/kubeha/lock/holder.json").await.unwrap().unwrap();
    let record: Holder = serde_json::from_slice(&record).unwrap();
    assert_eq!(record.run_id, forced.holder().run_id);
    assert!(lock::now_unix() - record.heartbeat_unix < 10);
    forced.release().await.unwrap();
    for (_, t) in &cps {
        assert_eq!(t.as_ref().unwrap().read_file("/var/lib/kubeha/lock/holder.json").await.unwrap(), None, "released everywhere");
    }

    // With two of three control planes unreachable there is no majority: refused, and nothing is left held.
    for host in ["cp-2", "cp-3"] {
        assert!(kubeha(&["lab", "partition", host]).status.success());
    }
    let partial = connect(inv).await;
    let err = lock::acquire(&partial, Holder::for_this_run("kubeha apply"), false, alive).await.err().unwrap().to_string();
    assert!(err.contains("needs a majority of the control planes (2 of 3); only 1 could be locked"), "{err}");
    assert_eq!(partial[0].1.as_ref().unwrap().read_file("/var/lib/kubeha/lock/holder.json").await.unwrap(), None, "a refused run gives back what it took");
}

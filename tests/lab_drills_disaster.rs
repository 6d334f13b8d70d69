//! Fault drills around failures that stop a run or take quorum away, on one lab (3 control planes + 2 workers):
//! 3. a control plane is partitioned while apply runs: apply stops with an error naming it; healed, the next
//!    apply converges;
//! 4. 2 of 3 control planes die: a replace is refused with the restore instructions; `kubeha etcd restore`
//!    from a snapshot, then apply, bring the cluster back with exactly the keys of the snapshot.
//!
//! Checked with etcdctl and the OpenSSH client, not with kubeha. Needs root (see tests/lab_machines.rs).
mod support;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::drill::*;
use support::lab::Lab;

/// Waits (bounded) until the newest journal under `state` records `step` as done.
fn wait_for_step(state: &Path, step: &str) {
    let needle = format!("\"stepId\":\"{step}\"");
    let started = Instant::now();
    loop {
        if newest_journal(state).and_then(|j| std::fs::read_to_string(j).ok()).is_some_and(|t| t.lines().any(|l| l.contains(&needle) && l.contains("stepDone")))
        {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(180), "step {step} not done within 180 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every control plane's own API server answers /readyz (bounded): HAProxy counts a backend only then, and
/// apply's verification expects all of them.
fn wait_for_every_api_server() {
    let started = Instant::now();
    for cp in [CP1, CP2, CP3] {
        while text(&ssh(cp, "curl -sk --max-time 2 https://127.0.0.1:6443/readyz")).trim() != "ok" {
            assert!(started.elapsed() < Duration::from_secs(180), "the API server on {cp} is not ready 180 s after the restart");
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    eprintln!("every API server ready {:.1} s after the VIP answered", started.elapsed().as_secs_f64());
}

/// As an operator would after restarting the API servers: wait (bounded) until /readyz answers through the
/// VIP, the condition kubeha's planner needs before it changes anything; on timeout, show why.
fn wait_for_api_through_vip() {
    let readyz = format!("curl -sS --max-time 2 --cacert /etc/kubernetes/pki/ca.crt https://{VIP}:8443/readyz");
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        if text(&ssh(CP1, &readyz)).trim() == "ok" {
            eprintln!("API answered through the VIP {:.1} s after the restarts", started.elapsed().as_secs_f64());
            return;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    for cp in [CP1, CP2, CP3] {
        let why = ssh(
            cp,
            "ip -o addr show | grep -c ' 198.18.0.100/'; curl -sS 'http://127.0.0.1:8404/stats;csv' | cut -d, -f1,2,18; systemctl is-active etcd kubelet; pidof kube-apiserver; curl -sk https://127.0.0.1:6443/readyz",
        );
        eprintln!("{cp}:\n{}", text(&why));
    }
    panic!("the API did not answer through the VIP within 60 s: {}", text(&ssh(CP1, &readyz)));
}

#[test]
fn partition_during_apply_then_quorum_loss_and_restore() {
    let state = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state = state.path();
    let _lab = Lab::up();

    // Drill 3: cp-3 loses its link while apply is adding etcd members.
    let started = Instant::now();
    let apply = kubeha_with(lab_inventory(), state, &["apply", "--yes"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    wait_for_step(state, "etcd/cp-2/gate-after");
    let etcdctl = Arc::new(Etcdctl::from(CP1));
    let monitor = QuorumMonitor::start(etcdctl.clone(), vec![CP1.into(), CP2.into()]);
    kubeha_ok(lab_inventory(), state, &["lab", "partition", "cp-3"]);
    let partitioned_at = Instant::now();
    let failed = apply.wait_with_output().unwrap();
    let stopped_after = partitioned_at.elapsed();
    eprintln!("{}", text(&failed));
    assert_eq!(failed.status.code(), Some(1), "apply fails when a host is cut off");
    assert!(text(&failed).contains("FAILED at step") && text(&failed).contains("cp-3"), "the error names the host");
    kubeha_ok(lab_inventory(), state, &["lab", "heal", "cp-3"]);
    kubeha_ok(lab_inventory(), state, &["apply", "--yes"]);
    let m = monitor.finish();
    report(&format!("3 (partition cp-3 during apply; apply stopped {:.1} s after the cut)", stopped_after.as_secs_f64()), started, &m);
    assert!(m.longest_unavailable <= ONE_ELECTION, "writes unavailable for {:?}", m.longest_unavailable);
    assert_eq!(etcdctl.members(&[CP1]), ["cp-1", "cp-2", "cp-3"]);
    let plan = kubeha_with(lab_inventory(), state, &["plan", "--detailed-exitcode"]).output().unwrap();
    assert_eq!(plan.status.code(), Some(0), "converged after healing:\n{}", text(&plan));

    // Monitoring as the operator would run it: kubeha's rendered scrape configuration and rules in a real
    // Prometheus on this machine, the credentials filled as the rendered README says.
    let monitoring = dir.path().join("monitoring");
    kubeha_ok(lab_inventory(), state, &["monitoring", "render", "-o", monitoring.to_str().unwrap()]);
    let rbac = std::fs::read_to_string(monitoring.join("prometheus-rbac.yaml")).unwrap();
    let applied = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ssh -i {KEY} -o UserKnownHostsFile={KNOWN_HOSTS} -o BatchMode=yes root@{CP1} 'kubectl --kubeconfig /etc/kubernetes/admin.conf apply -f -'"
        ))
        .stdin(std::fs::File::open(monitoring.join("prometheus-rbac.yaml")).unwrap())
        .output()
        .unwrap();
    assert!(applied.status.success() && !rbac.is_empty(), "{}", text(&applied));
    let secret = |key: &str| {
        let jsonpath = format!("{{.data.{key}}}");
        let out = ssh_ok(
            CP1,
            &format!(
                "for i in $(seq 30); do v=$(kubectl --kubeconfig /etc/kubernetes/admin.conf -n kube-system get secret kubeha-prometheus-token -o jsonpath='{jsonpath}') && [ -n \"$v\" ] && break; sleep 1; done; echo \"$v\" | base64 -d"
            ),
        );
        assert!(!out.is_empty(), "the token Secret has no {key}");
        out
    };
    std::fs::write(monitoring.join("credentials/prometheus.token"), secret("token")).unwrap();
    std::fs::write(monitoring.join("credentials/kubernetes-ca.crt"), secret("ca\\.crt")).unwrap();
    let prometheus = support::prometheus::Prometheus::start(&monitoring);
    let targets = prometheus.wait_targets(Duration::from_secs(90), |t| !t.is_empty() && t.iter().all(|t| t.health == "up"));
    let jobs: std::collections::BTreeSet<&str> = targets.iter().map(|t| t.job.as_str()).collect();
    eprintln!("Prometheus scrapes {} targets up, jobs {jobs:?}", targets.len());

    // Drill 4: scheduled backups (the timer's service, started on every control plane, snapshots on the leader
    // only), pulled off the cluster; writes after that; then cp-2 and cp-3 die: quorum is lost.
    let started = Instant::now();
    etcdctl.write_keys(&[CP1], "drill/", 1000);
    let backups = |cp: &str| ssh_ok(cp, "ls /var/lib/kubeha/etcd-backups/ 2>/dev/null | grep -c '\\.db$' || true").trim().parse::<usize>().unwrap();
    let before: Vec<usize> = [CP1, CP2, CP3].iter().map(|cp| backups(cp)).collect();
    for cp in [CP1, CP2, CP3] {
        ssh_ok(cp, "systemctl start kubeha-etcd-backup.service");
    }
    let after: Vec<usize> = [CP1, CP2, CP3].iter().map(|cp| backups(cp)).collect();
    let grew: Vec<usize> = (0..3).filter(|i| after[*i] != before[*i]).collect();
    assert!(grew.len() == 1 && after[grew[0]] == before[grew[0]] + 1, "one new backup, on the leader only: {before:?} -> {after:?}");
    let leader = [CP1, CP2, CP3][grew[0]];
    ssh_ok(leader, "cd /var/lib/kubeha/etcd-backups && sha256sum -c --quiet *.sha256");
    let pulled = dir.path().join("pulled");
    let first = text(&kubeha_ok(lab_inventory(), state, &["etcd", "backups", "pull", "-o", pulled.to_str().unwrap()]));
    let again = text(&kubeha_ok(lab_inventory(), state, &["etcd", "backups", "pull", "-o", pulled.to_str().unwrap()]));
    let copied = |out: &str| out.lines().find_map(|l| l.split_once(" copied, ").and_then(|(n, _)| n.parse::<usize>().ok()));
    assert!(copied(&first).is_some_and(|n| n >= 1) && copied(&again) == Some(0), "pull is incremental:\n{first}\n{again}");
    let newest = std::fs::read_dir(&pulled).unwrap().flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "db")).max().unwrap();
    let listed = text(&kubeha_ok(lab_inventory(), state, &["etcd", "backups", "list", "--output", "json"]));
    assert!(listed.contains(newest.file_name().unwrap().to_str().unwrap()), "list names the pulled backup: {listed}");
    let snapshot = dir.path().join("lab.db");
    kubeha_ok(lab_inventory(), state, &["etcd", "snapshot", "-o", snapshot.to_str().unwrap()]);
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&snapshot).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "the snapshot holds every secret of the cluster");
    etcdctl.write_keys(&[CP1], "after-snapshot/", 100);
    // One control plane dies: Prometheus fires member-down and quorum-margin-zero within their 1 min windows.
    kubeha_ok(lab_inventory(), state, &["lab", "kill", "cp-2"]);
    let fired = prometheus.wait_firing(&["KubehaEtcdMemberDown", "KubehaEtcdQuorumMarginZero"], Duration::from_secs(180));
    eprintln!("after `lab kill cp-2`: KubehaEtcdMemberDown and KubehaEtcdQuorumMarginZero firing after {:.0} s", fired.as_secs_f64());
    drop(prometheus);
    // cp-4 is created first: `lab up` also boots machines of its inventory that are down.
    let replaced = edited_inventory(dir.path(), "replaced.yaml", |t| t.replace(&control_plane("cp-2", CP2, "az-b"), &control_plane("cp-4", CP4, "az-b")));
    kubeha_ok(&replaced, state, &["lab", "up"]);
    kubeha_ok(lab_inventory(), state, &["lab", "kill", "cp-3"]);
    let refused = kubeha_with(&replaced, state, &["node", "replace", "cp-2", "--with", "cp-4", "--yes"]).output().unwrap();
    eprintln!("{}", text(&refused));
    assert_eq!(refused.status.code(), Some(1));
    assert!(text(&refused).contains("LOST QUORUM") && text(&refused).contains("kubeha etcd restore"), "refused with the way out");
    let status = kubeha_with(lab_inventory(), state, &["status"]).output().unwrap();
    assert_eq!(status.status.code(), Some(1), "status says quorum is lost:\n{}", text(&status));

    // The way out: restore a one-member cluster on cp-1 from the snapshot; the dead machines come back with
    // their old data, which apply moves aside before it adds them again, one at a time.
    // The restore takes the scheduled backup pulled above (its .sha256 beside it is checked first).
    kubeha_ok(lab_inventory(), state, &["etcd", "restore", "--snapshot", newest.to_str().unwrap(), "--yes"]);
    assert_eq!(etcdctl.members(&[CP1]), ["cp-1"]);
    // docs/restore.md, sections 5 and 7: the dead control planes come back fenced (their old etcd stopped and
    // set aside before it can re-form the old cluster), and the API servers restart on the restored data.
    kubeha_ok(lab_inventory(), state, &["lab", "up"]);
    for cp in [CP2, CP3] {
        ssh_ok(cp, "systemctl disable --now etcd && mv -T /var/lib/etcd /var/lib/etcd.before-restore-$(date -u +%Y%m%dT%H%M%SZ)");
    }
    for cp in [CP1, CP2, CP3] {
        // The API server is kubeadm's static pod. Its manifest moves out until the kubelet has stopped it,
        // then back: a new pod, started at once. (Ending its process instead would restart it after the
        // crash-loop back-off it collected while etcd had no quorum: minutes.)
        ssh_ok(
            cp,
            "mv /etc/kubernetes/manifests/kube-apiserver.yaml /etc/kubernetes/kube-apiserver.yaml.drill && \
             for i in $(seq 120); do pidof kube-apiserver >/dev/null || break; sleep 0.5; done; \
             mv /etc/kubernetes/kube-apiserver.yaml.drill /etc/kubernetes/manifests/kube-apiserver.yaml && ! pidof kube-apiserver >/dev/null",
        );
    }
    wait_for_api_through_vip();
    wait_for_every_api_server();
    kubeha_ok(lab_inventory(), state, &["apply", "--yes"]);
    eprintln!("DRILL 4 (2 of 3 lost, refused replace, restore, apply): {:.1} s", started.elapsed().as_secs_f64());
    assert_eq!(etcdctl.members(&[CP1]), ["cp-1", "cp-2", "cp-3"]);
    assert_eq!(etcdctl.count(&[CP1, CP2, CP3], "drill/"), 1000, "the pulled backup's keys are back");
    assert_eq!(etcdctl.count(&[CP1, CP2, CP3], "after-snapshot/"), 0, "writes after the snapshot are gone, as documented");
    let plan = kubeha_with(lab_inventory(), state, &["plan", "--detailed-exitcode"]).output().unwrap();
    assert_eq!(plan.status.code(), Some(0), "converged after the restore:\n{}", text(&plan));
    let verify = kubeha_with(lab_inventory(), state, &["verify"]).output().unwrap();
    assert!(verify.status.success(), "{}", text(&verify));
}

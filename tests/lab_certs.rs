//! Issue 12 item 4 on the lab (3 control planes + 2 workers): certificates issued for a year expire all at
//! once. The lab is built with every leaf certificate valid for 20 days (the test hook
//! KUBEHA_TEST_CERT_VALIDITY_DAYS: kubeha's etcd PKI, and kubeadm's through certificateValidityPeriod), so
//! `certs check` exits 2 and `status`/`verify` warn; then `apply` without the hook renews them (default
//! renewBefore 90 days): etcd restarts one member at a time between quorum gates while writes go on, and
//! each control plane runs `kubeadm certs renew all` and restarts its static pods, one at a time. What the
//! running etcd members and API servers serve is checked with the openssl client on the test host, not with
//! kubeha. Needs root (see tests/lab_machines.rs).
mod support;
use std::sync::Arc;
use std::time::Instant;
use support::drill::{CP1, CP2, CP3, Etcdctl, QuorumMonitor, kubeha_ok, kubeha_with, lab_inventory, report, ssh_ok, text};
use support::lab::Lab;

const HOOK: &str = "KUBEHA_TEST_CERT_VALIDITY_DAYS";

/// Days until the certificate served at `address:port` expires, as the openssl client on the test host sees
/// it (the handshake may fail for want of a client certificate; the server's is printed before).
fn served_days_left(address: &str, port: u16) -> i64 {
    let script = format!("openssl s_client -connect {address}:{port} </dev/null 2>/dev/null | openssl x509 -noout -enddate | sed 's/^notAfter=//'");
    let out = std::process::Command::new("sh").arg("-c").arg(&script).output().unwrap();
    let end = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let epoch = std::process::Command::new("date").args(["-u", "-d", &end, "+%s"]).output().unwrap();
    let not_after: i64 = String::from_utf8_lossy(&epoch.stdout).trim().parse().unwrap_or_else(|_| panic!("{address}:{port}: no certificate: {end:?}"));
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    (not_after - now).div_euclid(86_400)
}

/// Whether a certificate file on a lab machine is valid for 30 more days, read over SSH and checked by
/// openssl locally.
fn file_valid_for_30_days(address: &str, path: &str) -> bool {
    let pem = ssh_ok(address, &format!("sed -n '/BEGIN CERTIFICATE/,/END CERTIFICATE/p' {path}"));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.pem"), pem).unwrap();
    let out = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-checkend", &(30 * 86_400).to_string(), "-in"])
        .arg(dir.path().join("c.pem"))
        .output()
        .unwrap();
    // -checkend N: success when still valid N seconds from now.
    out.status.success()
}

#[test]
fn short_lived_certificates_warn_and_apply_renews_them_one_member_at_a_time() {
    let state = tempfile::tempdir().unwrap();
    let state = state.path();
    let _lab = Lab::up();
    let mut apply = kubeha_with(lab_inventory(), state, &["apply", "--yes"]);
    let out = apply.env(HOOK, "20").output().unwrap();
    assert!(out.status.success(), "apply with 20-day certificates:\n{}", text(&out));

    for (address, port) in [(CP1, 2379), (CP2, 2380), (CP3, 6443)] {
        let days = served_days_left(address, port);
        assert!((19..=20).contains(&days), "{address}:{port} serves a certificate with {days} days left");
    }
    assert!(!file_valid_for_30_days(CP2, "/etc/kubernetes/pki/apiserver.crt"), "kubeadm issued with the hook's validity too");

    // certs check: 2 = expiring within 30 days, every kubeha and kubeadm leaf listed.
    let check = kubeha_with(lab_inventory(), state, &["certs", "check", "--output", "json"]).env_remove(HOOK).output().unwrap();
    assert_eq!(check.status.code(), Some(2), "{}", text(&check));
    let report_json: serde_json::Value = serde_json::from_slice(&check.stdout).unwrap();
    let certs = report_json["certificates"].as_array().unwrap();
    let leaf = |c: &&serde_json::Value| c["ca"] == false && c["owner"] != "kubelet";
    for c in certs.iter().filter(leaf) {
        assert!(c["daysLeft"].as_i64().unwrap() <= 20, "{c}");
    }
    for (host, path) in [("cp-1", "/etc/kubeha/pki/etcd/peer.crt"), ("cp-2", "/etc/kubernetes/pki/apiserver.crt"), ("cp-3", "/etc/kubernetes/admin.conf")] {
        assert!(certs.iter().any(|c| c["host"] == host && c["path"] == path), "{host}:{path} listed");
    }
    let status = kubeha_with(lab_inventory(), state, &["status", "--output", "json"]).output().unwrap();
    assert_eq!(status.status.code(), Some(0), "a warning is not degraded: {}", text(&status));
    let status_json: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert!(!status_json["warnings"].as_array().unwrap().is_empty(), "{status_json}");
    let verify = kubeha_with(lab_inventory(), state, &["verify"]).output().unwrap();
    assert!(verify.status.success(), "{}", text(&verify));
    assert!(text(&verify).contains("warn certificates valid for 30 days or more"), "{}", text(&verify));

    // The plan without the hook: etcd restarts gated one at a time, then kubeadm renewals one at a time.
    let plan = kubeha_with(lab_inventory(), state, &["plan"]).env_remove(HOOK).output().unwrap();
    let shown = text(&plan);
    let at = |needle: &str| shown.find(needle).unwrap_or_else(|| panic!("{needle:?} not planned:\n{shown}"));
    assert!(at("kubeha's etcd certificates valid for less than 90 days") > 0);
    assert!(at("GATE before restart cp-1") < at("restart etcd member cp-1"));
    assert!(at("restart etcd member cp-1") < at("GATE after restart cp-1"));
    assert!(at("GATE after restart cp-1") < at("GATE before restart cp-2"));
    assert!(at("GATE after restart cp-3") < at("kubeadm certs renew all, then restart kube-apiserver, kube-controller-manager and kube-scheduler on cp-1"));
    assert!(at("on cp-1 one at a time") < at("on cp-2 one at a time") && at("on cp-2 one at a time") < at("on cp-3 one at a time"));

    let etcdctl = Arc::new(Etcdctl::from(CP1));
    // The monitor takes addresses (Etcdctl builds the client URLs).
    let monitor = QuorumMonitor::start(etcdctl, vec![CP1.into(), CP2.into(), CP3.into()]);
    let started = Instant::now();
    let mut renew = kubeha_with(lab_inventory(), state, &["apply", "--yes"]);
    let out = renew.env_remove(HOOK).output().unwrap();
    let writes = monitor.finish();
    eprintln!("$ kubeha apply --yes (renewal)\n{}", text(&out));
    assert!(out.status.success(), "renewal apply failed");
    report("certificate renewal", started, &writes);
    assert!(writes.longest_unavailable < std::time::Duration::from_secs(10), "etcd stayed writable through the restarts: {writes:?}");

    // What runs now: new etcd certificates on every member (client and peer ports) and new API server
    // certificates on every control plane, valid for a year again.
    for address in [CP1, CP2, CP3] {
        for port in [2379, 2380, 6443] {
            let days = served_days_left(address, port);
            assert!(days >= 364, "{address}:{port} still serves a certificate with {days} days left");
        }
        assert!(file_valid_for_30_days(address, "/etc/kubernetes/pki/apiserver-kubelet-client.crt"), "{address}: kubeadm renewed it");
    }
    let check = kubeha_with(lab_inventory(), state, &["certs", "check"]).output().unwrap();
    assert_eq!(check.status.code(), Some(0), "{}", text(&check));
    let again = kubeha_with(lab_inventory(), state, &["plan", "--detailed-exitcode"]).output().unwrap();
    assert_eq!(again.status.code(), Some(0), "converged after the renewal:\n{}", text(&again));
    kubeha_ok(lab_inventory(), state, &["verify"]);
}

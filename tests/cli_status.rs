//! `kubeha status` and `kubeha certs check` (the read-only reports on a running cluster) run as the real
//! binary against hosts nobody answers for.
use assert_cmd::Command;

fn kubeha() -> Command {
    Command::cargo_bin("kubeha").unwrap()
}

/// The lab inventory pointed at loopback port 1, where nothing listens: every connection is refused at once.
fn unreachable_inventory(dir: &tempfile::TempDir) -> std::path::PathBuf {
    let lab = std::fs::read_to_string("inventories/lab.yaml").unwrap();
    let path = dir.path().join("unreachable.yaml");
    std::fs::write(&path, lab.replace("port: 22", "port: 1").replace("198.18.0.", "127.0.0.")).unwrap();
    path
}

#[test]
fn every_host_unreachable_is_reported_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = unreachable_inventory(&dir);

    let out = kubeha().args(["status", "--output", "json", "-i"]).arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["verdict"], "etcdUnavailable");
    assert_eq!(report["etcd"]["error"], "no control plane is reachable over SSH");
    let hosts = report["hosts"].as_array().unwrap();
    let names: Vec<&str> = hosts.iter().map(|h| h["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["cp-1", "cp-2", "cp-3", "wk-1", "wk-2"]);
    for h in hosts {
        assert_eq!(h["reachable"], false, "{h}");
        assert_eq!(h["sshError"], "Connection refused (os error 111)", "{h}");
    }
    assert_eq!(hosts[0]["etcd"], "unknown");
    assert!(report["wayOut"].as_str().unwrap().contains("kubeha etcd restore -i"));

    let out = kubeha().args(["status", "-i"]).arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("cluster lab: etcd UNAVAILABLE, quorum unknown\netcd: cannot be asked: no control plane is reachable over SSH\n"), "{text}");
    assert_eq!(text.lines().filter(|l| l.contains(" no ") && l.ends_with("  Connection refused (os error 111)")).count(), 5, "{text}");
    assert!(text.contains("Problems:\n  etcd could not be asked: no control plane is reachable over SSH\n  cp-1 is unreachable over SSH\n"), "{text}");
}

#[test]
fn help_documents_the_exit_codes() {
    let out = kubeha().args(["status", "--help"]).output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(help.contains("0  healthy") && help.contains("1  quorum lost") && help.contains("2  degraded but quorum holds"), "{help}");
}

/// Unknown expiry is not "fine": unreachable hosts are listed and the exit code is 1.
#[test]
fn certs_check_counts_unreachable_hosts_as_unknown_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = unreachable_inventory(&dir);
    let out = kubeha().args(["certs", "check", "--output", "json", "-i"]).arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["verdict"], "failed");
    assert_eq!(report["warnDays"], 30);
    assert_eq!(report["certificates"].as_array().unwrap().len(), 0);
    let unknown: Vec<&str> = report["unknown"].as_array().unwrap().iter().map(|u| u["host"].as_str().unwrap()).collect();
    assert_eq!(unknown, ["cp-1", "cp-2", "cp-3", "wk-1", "wk-2"]);
    assert_eq!(report["unknown"][0]["problem"], "Connection refused (os error 111)");

    let out = kubeha().args(["certs", "check", "-i"]).arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("cluster lab: EXPIRED or unreadable certificates (checked "), "{text}");
    assert!(text.contains("HOST  OWNER  NOT AFTER  DAYS  SUBJECT  CERTIFICATE\n"), "{text}");
    assert!(text.contains("Could not be read:\n  cp-1: Connection refused (os error 111)\n"), "{text}");
}

#[test]
fn certs_check_help_documents_the_exit_codes() {
    let out = kubeha().args(["certs", "check", "--help"]).output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(help.contains("0  every certificate is valid for 30 days") && help.contains("2  a certificate expires within 30 days"), "{help}");
    let out = kubeha().args(["certs", "check"]).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
}

/// The test hook for short validity reaches kubeadm's ClusterConfiguration (kubeadm issues and renews its
/// certificates with it), and only when set.
#[test]
fn the_short_validity_test_hook_reaches_kubeadm() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o");
    kubeha().env("KUBEHA_TEST_CERT_VALIDITY_DAYS", "20").args(["render", "-i", "inventories/lab.yaml", "-o"]).arg(&out).assert().success();
    let init = std::fs::read_to_string(out.join("cp-1/etc/kubeha/kubeadm.yaml")).unwrap();
    assert!(init.contains("\ncertificateValidityPeriod: \"480h\"\n"), "{init}");
    let plain = dir.path().join("p");
    kubeha().env_remove("KUBEHA_TEST_CERT_VALIDITY_DAYS").args(["render", "-i", "inventories/lab.yaml", "-o"]).arg(&plain).assert().success();
    assert!(!std::fs::read_to_string(plain.join("cp-1/etc/kubeha/kubeadm.yaml")).unwrap().contains("certificateValidityPeriod"));
}

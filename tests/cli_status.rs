//! `kubeha status` run as the real binary against hosts nobody answers for.
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

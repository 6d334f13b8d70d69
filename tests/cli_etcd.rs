//! `kubeha etcd snapshot|restore|backups` as the real binary: the refusals that need no host.
use assert_cmd::Command;
use predicates::prelude::*;

fn kubeha() -> Command {
    Command::cargo_bin("kubeha").unwrap()
}

#[test]
fn snapshot_never_overwrites_without_force_and_checks_before_connecting() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("snap.db");
    std::fs::write(&out, b"an older snapshot").unwrap();
    kubeha()
        .args(["etcd", "snapshot", "-i", "inventories/lab.yaml", "-o"])
        .arg(&out)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("snap.db exists; pass --force to replace it"));
    assert_eq!(std::fs::read(&out).unwrap(), b"an older snapshot");
}

#[test]
fn restore_needs_a_readable_nonempty_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.db");
    kubeha()
        .args(["etcd", "restore", "-i", "inventories/lab.yaml", "--yes", "--snapshot"])
        .arg(&missing)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("cannot read the snapshot").and(predicate::str::contains("missing.db")));
    let empty = dir.path().join("empty.db");
    std::fs::write(&empty, b"").unwrap();
    kubeha()
        .args(["etcd", "restore", "-i", "inventories/lab.yaml", "--yes", "--snapshot"])
        .arg(&empty)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("empty.db is empty: not an etcd snapshot"));
}

/// The lab inventory with every host on loopback port 1, where nothing listens: connections fail at once.
fn unreachable_inventory(dir: &std::path::Path, extra: &str) -> std::path::PathBuf {
    let lab = std::fs::read_to_string("inventories/lab.yaml").unwrap();
    let text = lab.replace("port: 22", "port: 1").replace("198.18.0.", "127.0.0.").replacen("  etcd:\n", &format!("  etcd:\n{extra}"), 1);
    let path = dir.join("unreachable.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn backups_list_names_each_control_plane_it_cannot_read() {
    let dir = tempfile::tempdir().unwrap();
    let inv = unreachable_inventory(dir.path(), "");
    let out = kubeha().args(["etcd", "backups", "list", "--output", "json", "-i"]).arg(&inv).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "a control plane that cannot be listed is a finding");
    let hosts: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = hosts.as_array().unwrap().iter().map(|h| h["host"].as_str().unwrap()).collect();
    assert_eq!(names, ["cp-1", "cp-2", "cp-3"]);
    assert!(hosts[0]["error"].as_str().unwrap().contains("refused"), "{hosts}");
    kubeha().args(["etcd", "backups", "list", "-i"]).arg(&inv).assert().code(1).stdout(
        predicate::str::contains("etcd backups of cluster lab in /var/lib/kubeha/etcd-backups (schedule hourly, keep 24)")
            .and(predicate::str::contains("cp-2:\n  error: ")),
    );
}

#[test]
fn backups_pull_copies_nothing_when_no_control_plane_answers_and_refuses_when_backups_are_off() {
    let dir = tempfile::tempdir().unwrap();
    let inv = unreachable_inventory(dir.path(), "");
    let out = dir.path().join("pulled");
    kubeha()
        .args(["etcd", "backups", "pull", "-i"])
        .arg(&inv)
        .arg("-o")
        .arg(&out)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("no control plane could be listed; nothing was copied"));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o700);
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0);
    let off = unreachable_inventory(dir.path(), "    backup: {enabled: false}\n");
    kubeha()
        .args(["etcd", "backups", "list", "-i"])
        .arg(&off)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("backups are off for cluster lab (spec.etcd.backup.enabled: false)"));
}

/// A pulled backup comes with its .sha256: restore checks it before it touches anything.
#[test]
fn restore_checks_the_sha256_beside_a_backup_first() {
    let dir = tempfile::tempdir().unwrap();
    let inv = unreachable_inventory(dir.path(), "");
    let backup = dir.path().join("etcd-20261203T140000Z-r42.db");
    std::fs::write(&backup, b"snapshot bytes").unwrap();
    let checksum = dir.path().join("etcd-20261203T140000Z-r42.db.sha256");
    std::fs::write(&checksum, format!("{}  etcd-20261203T140000Z-r42.db\n", "0".repeat(64))).unwrap();
    let restore = || {
        let mut c = kubeha();
        c.args(["etcd", "restore", "--yes", "-i"]).arg(&inv).arg("--snapshot").arg(&backup);
        c
    };
    restore()
        .assert()
        .code(1)
        .stderr(predicate::str::contains("says 0000").and(predicate::str::contains("the file is damaged or not the one the checksum is for")));
    std::fs::write(&checksum, format!("{}  etcd-20261203T140000Z-r42.db\n", kubeha::digest::sha256_hex(b"snapshot bytes"))).unwrap();
    // The checksum passes; the restore then goes on to the hosts (none answers here).
    restore().assert().code(1).stderr(predicate::str::contains("sha256 matches").and(predicate::str::contains("no control plane is reachable")));
}

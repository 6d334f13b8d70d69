//! `kubeha etcd snapshot|restore` as the real binary: the refusals that need no host.
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

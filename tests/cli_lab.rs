//! `kubeha lab` refusals that need no machines.
use assert_cmd::Command;
use predicates::prelude::*;

fn kubeha() -> Command {
    Command::cargo_bin("kubeha").unwrap()
}

#[test]
fn without_root_the_lab_says_so() {
    // setpriv drops to nobody; the binary must be reachable for that user (cargo's target dir usually is).
    let binary = assert_cmd::cargo::cargo_bin("kubeha");
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&binary)
        .args(["lab", "up", "-i"])
        .arg(std::fs::canonicalize("inventories/lab.yaml").unwrap())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("needs root: run it with sudo"), "{stderr}");
}

#[test]
fn missing_tools_are_named_with_their_install_command() {
    let out = kubeha().env("PATH", "/nonexistent").args(["lab", "up", "-i", "inventories/lab.yaml"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("needs root") {
        panic!("this test runs as root (CI does): {stderr}");
    }
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("apt-get install -y debootstrap systemd-container iproute2 openssh-client util-linux"), "{stderr}");
}

#[test]
fn inventories_outside_the_lab_range_are_refused() {
    kubeha()
        .args(["lab", "status", "-i", "inventories/example.yaml"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("lab machines must use IPv4 addresses in 198.18.0.0/15"));
}

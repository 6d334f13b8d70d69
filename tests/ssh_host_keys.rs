//! Strict host key checking against a real OpenSSH sshd.
mod support;

use std::fs;
use std::time::Duration;

use kubeha::ssh::bastion::Connector;
use kubeha::ssh::known_hosts::HostKeyProblem;
use kubeha::ssh::{Command, ConnectOptions, SshError, Transport};
use support::sshd::{SshdOptions, TestSshd, keygen};

fn opts(accept_new: bool) -> ConnectOptions {
    ConnectOptions { accept_new_host_keys: accept_new, connect_timeout: Duration::from_secs(10), ..Default::default() }
}

fn fingerprint_of(pub_file: &std::path::Path) -> String {
    let out = std::process::Command::new("ssh-keygen").arg("-lf").arg(pub_file).output().expect("ssh-keygen -l");
    String::from_utf8(out.stdout).unwrap().split_whitespace().nth(1).expect("fingerprint").to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn changed_host_key_is_refused_with_both_fingerprints_file_and_line() {
    let sshd = TestSshd::start("127.0.0.17");
    // Record another ed25519 key for this host, on line 2 after an unrelated entry.
    let impostor = sshd.dir.path().join("recorded_ed25519");
    keygen(&impostor, "ed25519", "");
    let recorded = fs::read_to_string(impostor.with_extension("pub")).unwrap();
    let recorded: Vec<&str> = recorded.split_whitespace().collect();
    fs::write(sshd.known_hosts(), format!("unrelated.example {} {}\n[127.0.0.17]:{} {} {}\n", recorded[0], recorded[1], sshd.port, recorded[0], recorded[1]))
        .unwrap();

    let err = Connector::new().connect(&sshd.target("h17", "root"), &opts(true)).await.expect_err("changed key");
    let SshError::HostKey { ref problem, .. } = err else { panic!("expected HostKey, got {err}") };
    assert!(matches!(**problem, HostKeyProblem::Changed { line: 2, .. }), "{err}");
    let msg = err.to_string();
    let offered = fingerprint_of(&sshd.dir.path().join("host_ed25519.pub"));
    let expected = fingerprint_of(&impostor.with_extension("pub"));
    assert!(msg.contains(&offered), "offered fingerprint missing: {msg}");
    assert!(msg.contains(&expected), "recorded fingerprint missing: {msg}");
    assert!(msg.contains(&format!("{}:2", sshd.known_hosts().display())), "file:line missing: {msg}");
    assert!(msg.starts_with("h17: HOST KEY CHANGED"), "{msg}");
    // accept-new must never overwrite or add next to a changed key.
    assert_eq!(fs::read_to_string(sshd.known_hosts()).unwrap().lines().count(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_host_refused_then_recorded_with_accept_new() {
    let sshd = TestSshd::start("127.0.0.18");
    fs::write(sshd.known_hosts(), "").unwrap();
    let target = sshd.target("h18", "root");

    let err = Connector::new().connect(&target, &opts(false)).await.expect_err("unknown host");
    let SshError::HostKey { ref problem, .. } = err else { panic!("expected HostKey, got {err}") };
    assert!(matches!(**problem, HostKeyProblem::Unknown { .. }), "{err}");
    assert!(err.to_string().contains("--accept-new-host-keys"), "{err}");
    assert_eq!(fs::read_to_string(sshd.known_hosts()).unwrap(), "", "nothing recorded without the flag");

    let session = Connector::new().connect(&target, &opts(true)).await.expect("accept-new");
    assert!(session.run(&Command::script("true")).await.is_ok());
    let recorded = fs::read_to_string(sshd.known_hosts()).unwrap();
    assert!(recorded.starts_with(&format!("[127.0.0.18]:{} ssh-ed25519 ", sshd.port)), "{recorded}");

    // Now known: strict mode connects, and OpenSSH's own client agrees with what we wrote.
    Connector::new().connect(&target, &opts(false)).await.expect("known now");
    let status = std::process::Command::new("ssh")
        .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o"])
        .arg(format!("UserKnownHostsFile={}", sshd.known_hosts().display()))
        .arg("-i")
        .arg(sshd.client_key())
        .args(["-p", &sshd.port.to_string(), "root@127.0.0.18", "true"])
        .status()
        .expect("ssh");
    assert!(status.success(), "OpenSSH rejects the line we recorded");
}

#[tokio::test(flavor = "multi_thread")]
async fn host_known_under_another_type_connects_with_that_type() {
    // The server has ed25519 and ECDSA keys; only ECDSA is recorded. We must ask for ECDSA (not call the
    // ed25519 key a mismatch, and not record it next to the ECDSA one).
    let sshd = TestSshd::start_with("127.0.0.19", SshdOptions { host_key_types: vec!["ed25519", "ecdsa"], ..Default::default() });
    let ecdsa = sshd.host_public_key("ecdsa");
    let ecdsa: Vec<&str> = ecdsa.split_whitespace().collect();
    fs::write(sshd.known_hosts(), format!("[127.0.0.19]:{} {} {}\n", sshd.port, ecdsa[0], ecdsa[1])).unwrap();
    let session = Connector::new().connect(&sshd.target("h19", "root"), &opts(true)).await.expect("connect");
    assert!(session.run(&Command::script("true")).await.is_ok());
    assert_eq!(fs::read_to_string(sshd.known_hosts()).unwrap().lines().count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn host_recorded_with_its_rsa_key_only_connects_with_rsa_sha2() {
    // OpenSSH 8.8+ no longer offers SHA-1 "ssh-rsa" for its RSA key, only rsa-sha2-512/256. A host recorded
    // under its RSA key alone must be asked for those before its other key types, as OpenSSH's client does;
    // asking for "ssh-rsa" first made the server present its ed25519 key: a false "HOST KEY CHANGED".
    let sshd = TestSshd::start_with("127.0.0.40", SshdOptions { host_key_types: vec!["ed25519", "rsa"], ..Default::default() });
    let rsa = sshd.host_public_key("rsa");
    let rsa: Vec<&str> = rsa.split_whitespace().collect();
    assert_eq!(rsa[0], "ssh-rsa");
    fs::write(sshd.known_hosts(), format!("[127.0.0.40]:{} {} {}\n", sshd.port, rsa[0], rsa[1])).unwrap();
    let session = Connector::new().connect(&sshd.target("h40", "root"), &opts(false)).await.expect("the recorded RSA key is trusted");
    assert!(session.run(&Command::script("true")).await.is_ok());
    assert_eq!(fs::read_to_string(sshd.known_hosts()).unwrap().lines().count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn host_recorded_only_under_a_type_it_lacks_is_a_mismatch() {
    let sshd = TestSshd::start("127.0.0.20"); // ed25519 only
    let other = sshd.dir.path().join("recorded_ecdsa");
    keygen(&other, "ecdsa", "");
    let other = fs::read_to_string(other.with_extension("pub")).unwrap();
    let other: Vec<&str> = other.split_whitespace().collect();
    fs::write(sshd.known_hosts(), format!("[127.0.0.20]:{} {} {}\n", sshd.port, other[0], other[1])).unwrap();
    let err = Connector::new().connect(&sshd.target("h20", "root"), &opts(true)).await.expect_err("mismatch");
    let SshError::HostKey { ref problem, .. } = err else { panic!("expected HostKey, got {err}") };
    assert!(matches!(**problem, HostKeyProblem::Changed { line: 1, .. }), "{err}");
    assert_eq!(fs::read_to_string(sshd.known_hosts()).unwrap().lines().count(), 1, "accept-new added a key");
}

#[tokio::test(flavor = "multi_thread")]
async fn hashed_wildcard_and_revoked_entries_from_real_files() {
    let sshd = TestSshd::start("127.0.0.21");
    let host = sshd.host_public_key("ed25519");
    let host: Vec<&str> = host.split_whitespace().collect();
    let target = sshd.target("h21", "root");

    // Hashed by OpenSSH itself.
    fs::write(sshd.known_hosts(), format!("[127.0.0.21]:{} {} {}\n", sshd.port, host[0], host[1])).unwrap();
    let status = std::process::Command::new("ssh-keygen").arg("-Hf").arg(sshd.known_hosts()).output().unwrap();
    assert!(status.status.success());
    assert!(fs::read_to_string(sshd.known_hosts()).unwrap().starts_with("|1|"));
    Connector::new().connect(&target, &opts(false)).await.expect("hashed entry");

    // Wildcard pattern in a second file (like /etc/ssh/ssh_known_hosts).
    let global = sshd.dir.path().join("ssh_known_hosts");
    fs::write(&global, format!("[127.0.0.2?]:*,!nothing {} {}\n", host[0], host[1])).unwrap();
    fs::write(sshd.known_hosts(), "").unwrap();
    let mut two_files = target.clone();
    two_files.known_hosts_files = vec![sshd.known_hosts(), global.clone()];
    Connector::new().connect(&two_files, &opts(false)).await.expect("wildcard entry");

    // Revoked wins.
    fs::write(sshd.known_hosts(), format!("@revoked * {} {}\n", host[0], host[1])).unwrap();
    let err = Connector::new().connect(&two_files, &opts(true)).await.expect_err("revoked");
    assert!(err.to_string().contains("@revoked"), "{err}");
}

//! Authentication against a real OpenSSH sshd.
mod support;

use std::time::Duration;

use kubeha::ssh::bastion::Connector;
use kubeha::ssh::{Command, ConnectOptions, SshError, Transport};
use support::sshd::{TestSshd, keygen};

fn opts() -> ConnectOptions {
    ConnectOptions { connect_timeout: Duration::from_secs(10), ..ConnectOptions::default() }
}

#[tokio::test(flavor = "multi_thread")]
async fn key_auth_ok() {
    let sshd = TestSshd::start("127.0.0.11");
    let session = Connector::new().connect(&sshd.target("h11", "root"), &opts()).await.expect("connect");
    let out = session.run(&Command::argv(["id", "-un"])).await.expect("id");
    assert_eq!(out.stdout_text().trim(), "root");
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_key_refused() {
    let sshd = TestSshd::start("127.0.0.12");
    let other = sshd.dir.path().join("other_ed25519");
    keygen(&other, "ed25519", "");
    let mut target = sshd.target("h12", "root");
    target.identity_file = Some(other.clone());
    let err = Connector::new().connect(&target, &opts()).await.expect_err("must be refused");
    assert!(matches!(err, SshError::Auth { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.starts_with("h12: authentication as \"root\" failed"), "{msg}");
    assert!(msg.contains(&other.display().to_string()), "{msg}");
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_identity_file_is_named() {
    let sshd = TestSshd::start("127.0.0.13");
    let mut target = sshd.target("h13", "root");
    target.identity_file = Some(sshd.dir.path().join("does-not-exist"));
    let err = Connector::new().connect(&target, &opts()).await.expect_err("no key");
    assert!(matches!(err, SshError::Key { .. }), "{err}");
    assert!(err.to_string().contains("does-not-exist"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn rsa_and_ecdsa_keys_work() {
    let sshd = TestSshd::start("127.0.0.15");
    for kind in ["rsa", "ecdsa"] {
        let key = sshd.dir.path().join(format!("client_{kind}"));
        keygen(&key, kind, "");
        let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
        let authorized = sshd.dir.path().join("authorized_keys");
        let mut text = std::fs::read_to_string(&authorized).unwrap();
        text.push_str(&public);
        std::fs::write(&authorized, text).unwrap();
        let mut target = sshd.target("h15", "root");
        target.identity_file = Some(key);
        let session = Connector::new().connect(&target, &opts()).await.unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert!(session.run(&Command::script("true")).await.is_ok());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_port_is_classified() {
    // Nothing listens on this address and port (bind-probe a free one, then leave it closed).
    let port = std::net::TcpListener::bind(("127.0.0.14", 0)).unwrap().local_addr().unwrap().port();
    let mut target = kubeha::ssh::HostTarget::new("h14", "127.0.0.14", "root");
    target.port = port;
    let err = Connector::new().connect(&target, &opts()).await.expect_err("refused");
    assert!(matches!(err, SshError::Refused { .. }), "{err}");
    assert!(err.to_string().starts_with("h14: connection to 127.0.0.14"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn unresolvable_name_is_classified() {
    let target = kubeha::ssh::HostTarget::new("h-bad", "no-such-host.invalid", "root");
    let err = Connector::new().connect(&target, &opts()).await.expect_err("resolve");
    assert!(matches!(err, SshError::Resolve { .. } | SshError::Timeout { .. }), "{err}");
}

//! Encrypted identity files (passphrase from KUBEHA_SSH_KEY_PASSPHRASE) and ssh-agent, against real sshd.
//! One test in its own binary: it changes process environment variables, which must not race other tests.
mod support;

use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::Duration;

use kubeha::ssh::bastion::Connector;
use kubeha::ssh::{Command, ConnectOptions, PASSPHRASE_ENV, SshError, Transport};
use support::sshd::{TestSshd, eventually, keygen};

struct Agent {
    child: Child,
    socket: PathBuf,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill(); // by PID
        let _ = self.child.wait();
    }
}

fn set_env(key: &str, value: Option<&str>) {
    // SAFETY: this binary runs a single test on a single thread of ours; nothing else reads the
    // environment concurrently while it changes.
    unsafe {
        match value {
            Some(v) => std::env::set_var(key, v),
            None => std::env::remove_var(key),
        }
    }
}

#[tokio::test(flavor = "current_thread")]
async fn encrypted_key_and_agent() {
    let sshd = TestSshd::start("127.0.0.38");
    let opts = ConnectOptions { connect_timeout: Duration::from_secs(10), ..Default::default() };
    let encrypted = sshd.dir.path().join("encrypted_ed25519");
    keygen(&encrypted, "ed25519", "correct horse");
    let authorized = sshd.dir.path().join("authorized_keys");
    let mut keys = std::fs::read_to_string(&authorized).unwrap();
    keys.push_str(&std::fs::read_to_string(encrypted.with_extension("pub")).unwrap());
    std::fs::write(&authorized, keys).unwrap();
    let mut target = sshd.target("h38", "root");
    target.identity_file = Some(encrypted.clone());
    set_env("SSH_AUTH_SOCK", None);

    set_env(PASSPHRASE_ENV, None);
    let err = Connector::new().connect(&target, &opts).await.expect_err("no passphrase");
    assert!(matches!(err, SshError::Key { .. }), "{err}");
    assert!(err.to_string().contains(PASSPHRASE_ENV), "{err}");

    set_env(PASSPHRASE_ENV, Some("wrong"));
    let err = Connector::new().connect(&target, &opts).await.expect_err("wrong passphrase");
    assert!(matches!(err, SshError::Key { .. }), "{err}");
    assert!(!err.to_string().contains("wrong"), "the passphrase leaked into the message: {err}");

    set_env(PASSPHRASE_ENV, Some("correct horse"));
    let s = Connector::new().connect(&target, &opts).await.expect("right passphrase");
    assert!(s.run(&Command::script("true")).await.is_ok());
    set_env(PASSPHRASE_ENV, None);

    // ssh-agent holding the (unencrypted) client key; no identity file configured.
    let socket = sshd.dir.path().join("agent.sock");
    let child =
        std::process::Command::new("ssh-agent").arg("-D").arg("-a").arg(&socket).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("ssh-agent");
    let agent = Agent { child, socket };
    assert!(eventually(Duration::from_secs(5), || agent.socket.exists()), "agent socket never appeared");
    let added = std::process::Command::new("ssh-add").arg(sshd.client_key()).env("SSH_AUTH_SOCK", &agent.socket).stderr(Stdio::null()).status().unwrap();
    assert!(added.success());
    set_env("SSH_AUTH_SOCK", Some(agent.socket.to_str().unwrap()));
    let mut via_agent = sshd.target("h38", "root");
    via_agent.identity_file = None;
    let s = Connector::new().connect(&via_agent, &opts).await.expect("agent auth");
    assert!(s.run(&Command::script("true")).await.is_ok());
    set_env("SSH_AUTH_SOCK", None);
}

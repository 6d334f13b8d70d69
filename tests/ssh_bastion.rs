//! Reaching a host through a bastion sshd (direct-tcpip), against real OpenSSH servers.
mod support;

use std::time::Duration;

use kubeha::ssh::bastion::Connector;
use kubeha::ssh::pool::connect_each;
use kubeha::ssh::{Command, ConnectOptions, SshError, Transport};
use support::sshd::{SshdOptions, TestSshd};

fn opts() -> ConnectOptions {
    ConnectOptions { connect_timeout: Duration::from_secs(10), ..Default::default() }
}

#[tokio::test(flavor = "multi_thread")]
async fn target_behind_bastion() {
    let bastion = TestSshd::start_with("127.0.0.30", SshdOptions { allow_tcp_forwarding: true, log_level: "DEBUG1", ..Default::default() });
    let target_a = TestSshd::start("127.0.0.31");
    let target_b = TestSshd::start("127.0.0.32");
    let mut targets = Vec::new();
    for (name, sshd) in [("a", &target_a), ("b", &target_b)] {
        let mut t = sshd.target(name, "root");
        t.bastion = Some(Box::new(bastion.target("jump", "root")));
        targets.push(t);
    }
    for (name, session) in connect_each(&targets, &opts()).await {
        let out = session.unwrap_or_else(|e| panic!("{e}")).run(&Command::script("echo $SSH_CONNECTION")).await.unwrap();
        assert!(!out.stdout_text().is_empty(), "{name}");
    }
    // Both tunnels went through the bastion, which was dialled once.
    let log = bastion.log();
    assert_eq!(log.matches("Accepted publickey").count(), 1, "{log}");
    for sshd in [&target_a, &target_b] {
        assert!(log.contains(&format!("to {} port {}", sshd.address, sshd.port)), "no tunnel to {}: {log}", sshd.address);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bastion_without_forwarding_names_the_bastion() {
    let bastion = TestSshd::start("127.0.0.33"); // AllowTcpForwarding no
    let target = TestSshd::start("127.0.0.34");
    let mut t = target.target("behind", "root");
    t.bastion = Some(Box::new(bastion.target("jump", "root")));
    let err = Connector::new().connect(&t, &opts()).await.expect_err("forwarding is off");
    eprintln!("{err}");
    assert_eq!(err.host(), "behind");
    assert!(matches!(err, SshError::ViaBastion { ref bastion, .. } if bastion == "jump"), "{err}");
    assert_eq!(err.kind(), "refused");
    assert!(err.to_string().contains("AllowTcpForwarding"), "{err}");
}

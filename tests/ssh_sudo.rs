//! `become: sudo` for non-root users against a real sshd and the system's sudo.
mod support;

use std::time::{Duration, Instant};

use kubeha::ssh::bastion::Connector;
use kubeha::ssh::{Command, ConnectOptions, SshError, Transport};
use support::sshd::{SudoersDropIn, TestSshd, ensure_user};

fn opts() -> ConnectOptions {
    ConnectOptions { connect_timeout: Duration::from_secs(10), ..Default::default() }
}

#[tokio::test(flavor = "multi_thread")]
async fn passwordless_sudo_runs_as_root() {
    ensure_user("kubeha-t1");
    let _sudoers = SudoersDropIn::new("passwordless_sudo_runs_as_root", "kubeha-t1 ALL=(ALL) NOPASSWD: ALL");
    let sshd = TestSshd::start("127.0.0.28");
    let s = Connector::new().connect(&sshd.target("h28", "kubeha-t1"), &opts()).await.expect("connect");
    assert_eq!(s.run(&Command::argv(["id", "-u"])).await.unwrap().stdout_text().trim(), "0");
    let me = s.run(&Command::argv(["id", "-un"]).unprivileged()).await.unwrap();
    assert_eq!(me.stdout_text().trim(), "kubeha-t1");
    // Uploads and reads go through sudo too: a root-owned 0600 file.
    let path = sshd.dir.path().join("root-only").display().to_string();
    let up = kubeha::ssh::Upload { path: path.clone(), contents: b"k".to_vec(), mode: 0o600, owner: Some("root".into()) };
    s.upload(&up).await.unwrap();
    assert_eq!(s.read_file(&path).await.unwrap(), Some(b"k".to_vec()));
    // Secrets on stdin survive sudo.
    let out = s.run(&Command::script("cat").stdin(b"token".to_vec())).await.unwrap();
    assert_eq!(out.stdout, b"token");
    // The facts probe runs through sudo too (it needs root for /var/lib/etcd).
    let facts = kubeha::facts::probe(&s).await.expect("facts via sudo");
    assert!(facts.cpus > 0);
    // A root command that overruns is stopped although the login user could not signal it.
    let err = s.run(&Command::script("sleep 96.25").timeout(Duration::from_secs(1))).await.unwrap_err();
    assert!(matches!(err, SshError::Timeout { .. }), "{err}");
    let running = || support::sshd::process_running("sleep 96.25");
    assert!(support::sshd::eventually(Duration::from_secs(5), || !running()), "root command survived its timeout");
}

#[tokio::test(flavor = "multi_thread")]
async fn password_requiring_sudo_fails_fast_with_a_clear_message() {
    ensure_user("kubeha-t2");
    let _sudoers = SudoersDropIn::new("password_requiring_sudo_fails_fast_with_a_clear_message", "kubeha-t2 ALL=(ALL) ALL");
    let sshd = TestSshd::start("127.0.0.29");
    let s = Connector::new().connect(&sshd.target("h29", "kubeha-t2"), &opts()).await.expect("connect");
    let started = Instant::now();
    let err = s.run(&Command::argv(["systemctl", "restart", "etcd"])).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    assert!(matches!(err, SshError::Sudo { .. }), "{err}");
    let msg = err.to_string();
    eprintln!("{msg}");
    assert!(msg.starts_with("h29: sudo refused for `systemctl restart etcd`"), "{msg}");
    assert!(msg.contains("password is required"), "{msg}");
    assert!(msg.contains("NOPASSWD"), "{msg}");
    // Unprivileged commands still work for this user.
    assert!(s.run(&Command::script("true").unprivileged()).await.is_ok());
}

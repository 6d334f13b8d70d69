//! Unit tests of the russh client against an in-process russh server over `tokio::io::duplex`: no network,
//! deterministic, and the server sees exactly the bytes we send, so the wire format of commands (timeout and
//! sudo wrapping, quoting, secrets kept off the command line) is asserted directly.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::keys::PrivateKey;
use russh::server::{self, Auth, Msg, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId};

use super::known_hosts::HostKeyProblem;
use super::{Become, Command, ConnectOptions, HostTarget, SshError, SshSession, Transport};

const HOST_KEY: &str = include_str!("testdata/host_ed25519");
const CLIENT_KEY: &str = include_str!("testdata/client_ed25519");

/// Answers exec requests by pattern, and records every command line it receives.
#[derive(Clone)]
struct FakeSshd {
    authorized: russh::keys::PublicKey,
    commands: Arc<Mutex<Vec<String>>>,
    user: String,
    stdin: HashMap<ChannelId, Vec<u8>>,
    echo_on_eof: Vec<ChannelId>,
}

fn reply(session: &mut Session, channel: ChannelId, out: &[u8], err: &[u8], status: u32) -> Result<(), russh::Error> {
    if !out.is_empty() {
        session.data(channel, out.to_vec())?;
    }
    if !err.is_empty() {
        session.extended_data(channel, 1, err.to_vec())?;
    }
    session.exit_status_request(channel, status)?;
    session.eof(channel)?;
    session.close(channel)
}

impl server::Handler for FakeSshd {
    type Error = russh::Error;

    async fn auth_publickey(&mut self, user: &str, key: VerifiedPublicKey<'_>) -> Result<Auth, Self::Error> {
        self.user = user.to_string();
        Ok(if key.public_key.key_data() == self.authorized.key_data() { Auth::Accept } else { Auth::reject() })
    }

    async fn channel_open_session(&mut self, _channel: Channel<Msg>, reply: server::ChannelOpenHandle, _session: &mut Session) -> Result<(), Self::Error> {
        reply.accept().await;
        Ok(())
    }

    async fn exec_request(&mut self, channel: ChannelId, data: &[u8], session: &mut Session) -> Result<(), Self::Error> {
        let command = String::from_utf8_lossy(data).into_owned();
        self.commands.lock().unwrap().push(command.clone());
        session.channel_success(channel)?;
        if command == "sudo -n -- true" {
            return if self.user == "nopass" {
                reply(session, channel, b"", b"sudo: a password is required\n", 1)
            } else {
                reply(session, channel, b"", b"", 0)
            };
        }
        if command.contains("echo-stdin") {
            self.echo_on_eof.push(channel);
            return Ok(());
        }
        if command.contains("exit-with-5") {
            return reply(session, channel, b"", b"boom\n", 5);
        }
        if command.contains("pretend-timeout") {
            return reply(session, channel, b"", b"", 124);
        }
        // Default: echo the command line back, so tests can assert what travelled.
        reply(session, channel, command.as_bytes(), b"", 0)
    }

    async fn data(&mut self, channel: ChannelId, data: &[u8], _session: &mut Session) -> Result<(), Self::Error> {
        self.stdin.entry(channel).or_default().extend_from_slice(data);
        Ok(())
    }

    async fn channel_eof(&mut self, channel: ChannelId, session: &mut Session) -> Result<(), Self::Error> {
        if self.echo_on_eof.contains(&channel) {
            let input = self.stdin.remove(&channel).unwrap_or_default();
            reply(session, channel, &input, b"", 0)?;
        }
        Ok(())
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    target: HostTarget,
    commands: Arc<Mutex<Vec<String>>>,
}

fn fixture(user: &str, known_host_line: Option<&str>) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("id_ed25519");
    std::fs::write(&key_path, CLIENT_KEY).unwrap();
    let host_key = PrivateKey::from_openssh(HOST_KEY).unwrap();
    let known = dir.path().join("known_hosts");
    let default_line = format!("in-process {}", host_key.public_key().to_openssh().unwrap());
    std::fs::write(&known, format!("{}\n", known_host_line.unwrap_or(&default_line))).unwrap();
    let mut target = HostTarget::new("fake1", "in-process", user);
    target.identity_file = Some(key_path);
    target.known_hosts_files = vec![known];
    target.r#become = if user == "root" { Become::None } else { Become::Sudo };
    Fixture { _dir: dir, target, commands: Arc::default() }
}

async fn connect(f: &Fixture) -> Result<SshSession, SshError> {
    let (client_io, server_io) = tokio::io::duplex(1 << 16);
    let config = Arc::new(server::Config {
        keys: vec![PrivateKey::from_openssh(HOST_KEY).unwrap()],
        auth_rejection_time: Duration::from_millis(1),
        auth_rejection_time_initial: Some(Duration::ZERO),
        ..Default::default()
    });
    let handler = FakeSshd {
        authorized: PrivateKey::from_openssh(CLIENT_KEY).unwrap().public_key().clone(),
        commands: f.commands.clone(),
        user: String::new(),
        stdin: HashMap::new(),
        echo_on_eof: Vec::new(),
    };
    tokio::spawn(async move {
        if let Ok(running) = server::run_stream(config, server_io, handler).await {
            let _ = running.await;
        }
    });
    let opts = ConnectOptions { connect_timeout: Duration::from_secs(5), ..Default::default() };
    SshSession::establish(&f.target, &opts, client_io, None).await
}

#[tokio::test]
async fn command_line_is_wrapped_and_quoted_and_stdin_stays_off_it() {
    let f = fixture("root", None);
    let s = connect(&f).await.expect("connect");
    let out = s.run(&Command::argv(["echo", "a b", "$(x)"]).timeout(Duration::from_secs(7))).await.unwrap();
    assert_eq!(out.stdout_text(), "timeout -k 2 7.000 sh -c 'echo '\\''a b'\\'' '\\''$(x)'\\'''");

    let out = s.run(&Command::script("echo-stdin").stdin(b"s3cret".to_vec())).await.unwrap();
    assert_eq!(out.stdout, b"s3cret");
    assert!(f.commands.lock().unwrap().iter().all(|c| !c.contains("s3cret")), "secret on a command line");
}

#[tokio::test]
async fn exit_status_stderr_and_timeout_status() {
    let f = fixture("root", None);
    let s = connect(&f).await.expect("connect");
    let err = s.run(&Command::script("exit-with-5")).await.unwrap_err();
    assert_eq!(err.to_string(), "fake1: `exit-with-5` failed with exit status 5: boom");
    let err = s.run(&Command::script("pretend-timeout").timeout(Duration::from_secs(3))).await.unwrap_err();
    assert!(matches!(err, SshError::Timeout { .. }), "{err}");
}

#[tokio::test]
async fn sudo_is_probed_once_then_prefixes_privileged_commands_only() {
    let f = fixture("deploy", None);
    let s = connect(&f).await.expect("connect");
    s.run(&Command::script("one")).await.unwrap();
    s.run(&Command::script("two")).await.unwrap();
    s.run(&Command::script("three").unprivileged()).await.unwrap();
    let commands = f.commands.lock().unwrap().clone();
    assert_eq!(commands[0], "sudo -n -- true");
    assert!(commands[1].starts_with("sudo -n -- timeout "), "{}", commands[1]);
    assert!(commands[2].starts_with("sudo -n -- timeout "), "{}", commands[2]);
    assert!(commands[3].starts_with("timeout "), "{}", commands[3]);
    assert_eq!(commands.len(), 4, "the probe ran once");
}

#[tokio::test]
async fn sudo_wanting_a_password_is_a_sudo_error() {
    let f = fixture("nopass", None);
    let s = connect(&f).await.expect("connect");
    let err = s.run(&Command::argv(["systemctl", "restart", "kubelet"])).await.unwrap_err();
    assert!(matches!(err, SshError::Sudo { .. }), "{err}");
    assert!(err.to_string().contains("a password is required"), "{err}");
    assert_eq!(f.commands.lock().unwrap().len(), 1, "the real command must not run after a failed probe");
}

#[tokio::test]
async fn unknown_in_process_host_is_refused() {
    let f = fixture("root", Some("# empty"));
    let err = connect(&f).await.unwrap_err();
    let SshError::HostKey { problem, .. } = &err else { panic!("{err}") };
    assert!(matches!(**problem, HostKeyProblem::Unknown { .. }), "{err}");
}

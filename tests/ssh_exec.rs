//! Exec, upload, timeouts and failures against a real OpenSSH sshd.
mod support;

use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use kubeha::digest::sha256_hex;
use kubeha::ssh::bastion::Connector;
use kubeha::ssh::{Command, ConnectOptions, ExitStatus, SshError, SshSession, Stream, Transport, Upload, UploadOutcome};
use support::sshd::{ADMIN_USER, TestSshd, admin_user, eventually};

fn opts() -> ConnectOptions {
    ConnectOptions { connect_timeout: Duration::from_secs(10), ..Default::default() }
}

/// Logs in as the throwaway admin user (sudo), never as root: see `support::sshd::ADMIN_USER`.
async fn connect(sshd: &TestSshd, name: &str) -> SshSession {
    Connector::new().connect(&sshd.target(name, ADMIN_USER), &opts()).await.expect("connect")
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_captures_stdout_stderr_status_and_stdin() {
    let _admin = admin_user("exec_captures_stdout_stderr_status_and_stdin");
    let sshd = TestSshd::start("127.0.0.26");
    let s = connect(&sshd, "h26").await;
    let out = s.exec(&Command::script("echo out; echo err >&2; exit 3")).await.unwrap();
    assert_eq!(out.status, ExitStatus::Code(3));
    assert_eq!(out.stdout, b"out\n");
    assert_eq!(out.stderr, b"err\n");

    let out = s.run(&Command::script("tr a-z A-Z").stdin(b"secret-on-stdin".to_vec())).await.unwrap();
    assert_eq!(out.stdout, b"SECRET-ON-STDIN");

    let err = s.run(&Command::argv(["ls", "/nonexistent dir"])).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, SshError::CommandFailed { .. }), "{msg}");
    assert!(msg.starts_with("h26: `ls '/nonexistent dir'` failed with exit status 2"), "{msg}");

    // Live output reaches the stream sink as well as the captured buffer.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    s.run(&Command::script("echo live").stream_to(tx)).await.unwrap();
    assert_eq!(rx.recv().await, Some((Stream::Stdout, b"live\n".to_vec())));
}

#[tokio::test(flavor = "multi_thread")]
async fn quoted_values_cannot_inject() {
    let _admin = admin_user("quoted_values_cannot_inject");
    let sshd = TestSshd::start("127.0.0.26");
    let s = connect(&sshd, "h26b").await;
    let marker = sshd.dir.path().join("pwned");
    let hostile = format!("x'; touch {} #$(touch {})`touch {}`", marker.display(), marker.display(), marker.display());
    let out = s.run(&Command::argv(["printf", "%s", &hostile])).await.unwrap();
    assert_eq!(out.stdout_text(), hostile);
    assert!(!marker.exists(), "the quoted value was executed");
}

#[tokio::test(flavor = "multi_thread")]
async fn one_connection_serves_many_and_parallel_commands() {
    let _admin = admin_user("one_connection_serves_many_and_parallel_commands");
    let sshd = TestSshd::start("127.0.0.27");
    let s = std::sync::Arc::new(connect(&sshd, "h27").await);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20 {
        let s = s.clone();
        tasks.spawn(async move { s.run(&Command::script(format!("echo {i}"))).await.unwrap().stdout_text() });
    }
    let mut seen = Vec::new();
    while let Some(r) = tasks.join_next().await {
        seen.push(r.unwrap().trim().parse::<u32>().unwrap());
    }
    seen.sort();
    assert_eq!(seen, (0..20).collect::<Vec<_>>());
    // All of it went over one TCP connection: sshd accepted exactly one client besides its readiness probe.
    let accepted = sshd.log().matches("Accepted publickey").count();
    assert_eq!(accepted, 1, "{}", sshd.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn upload_64_mib_arrives_intact() {
    let _admin = admin_user("upload_64_mib_arrives_intact");
    let sshd = TestSshd::start("127.0.0.22");
    let s = connect(&sshd, "h22").await;
    // Deterministic, incompressible-ish content (xorshift), so a dropped or reordered chunk changes the hash.
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let contents: Vec<u8> = (0..64 * 1024 * 1024 / 8)
        .flat_map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()
        })
        .collect();
    let path = sshd.dir.path().join("big.bin");
    let up = Upload { path: path.display().to_string(), contents: contents.clone(), mode: 0o640, owner: None };
    let started = Instant::now();
    assert_eq!(s.upload(&up).await.unwrap(), UploadOutcome::Written);
    let took = started.elapsed();
    let on_disk = std::fs::read(&path).unwrap();
    assert_eq!(on_disk.len(), contents.len());
    assert_eq!(sha256_hex(&on_disk), sha256_hex(&contents));
    assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o7777, 0o640);
    eprintln!("64 MiB upload took {took:?}");
    // No temp file is left next to the target.
    let leftovers: Vec<_> = std::fs::read_dir(sshd.dir.path()).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().contains(".kubeha.")).collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn upload_skips_unchanged_and_fixes_mode_and_owner() {
    let _admin = admin_user("upload_skips_unchanged_and_fixes_mode_and_owner");
    let sshd = TestSshd::start("127.0.0.22");
    let s = connect(&sshd, "h22b").await;
    let path = sshd.dir.path().join("conf").display().to_string();
    let mut up = Upload { path: path.clone(), contents: b"a: 1\n".to_vec(), mode: 0o600, owner: Some("root:root".into()) };
    assert_eq!(s.upload(&up).await.unwrap(), UploadOutcome::Written);
    assert_eq!(s.upload(&up).await.unwrap(), UploadOutcome::Unchanged);
    up.mode = 0o644;
    assert_eq!(s.upload(&up).await.unwrap(), UploadOutcome::Written);
    assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o7777, 0o644);
    up.owner = Some("nobody".into());
    assert_eq!(s.upload(&up).await.unwrap(), UploadOutcome::Written);
    assert_eq!(std::fs::metadata(&path).unwrap().uid(), 65534);
    assert_eq!(s.read_file(&path).await.unwrap(), Some(b"a: 1\n".to_vec()));
    assert_eq!(s.read_file(&format!("{path}.missing")).await.unwrap(), None);
    // A file name that needs quoting.
    let odd = sshd.dir.path().join("it's a $(file)").display().to_string();
    let up = Upload { path: odd.clone(), contents: b"x".to_vec(), mode: 0o600, owner: None };
    assert_eq!(s.upload(&up).await.unwrap(), UploadOutcome::Written);
    assert_eq!(std::fs::read(&odd).unwrap(), b"x");
}

#[tokio::test(flavor = "multi_thread")]
async fn command_exceeding_its_timeout_is_stopped() {
    let _admin = admin_user("command_exceeding_its_timeout_is_stopped");
    let sshd = TestSshd::start("127.0.0.23");
    let s = connect(&sshd, "h23").await;
    let marker = sshd.dir.path().join("finished");
    // A distinctive duration so the check below finds exactly this process.
    let script = format!("sleep 97.123 && touch {}", marker.display());
    let started = Instant::now();
    let err = s.run(&Command::script(script).timeout(Duration::from_secs(1))).await.unwrap_err();
    assert!(matches!(err, SshError::Timeout { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    assert!(err.to_string().contains("sleep 97.123"), "{err}");
    let sleeping = || support::sshd::process_running("sleep 97.123");
    assert!(eventually(Duration::from_secs(5), || !sleeping()), "the remote command still runs");
    // The connection is still usable afterwards.
    assert!(s.run(&Command::script("true")).await.is_ok());
}

#[tokio::test(flavor = "multi_thread")]
async fn server_dying_mid_command_is_an_error_not_a_hang() {
    let _admin = admin_user("server_dying_mid_command_is_an_error_not_a_hang");
    let mut sshd = TestSshd::start("127.0.0.24");
    let s = connect(&sshd, "h24").await;
    let running = tokio::spawn(async move {
        let r = s.run(&Command::script("echo started; sleep 61.7").timeout(Duration::from_secs(120))).await;
        (r, s)
    });
    // Wait until the command is really running on the server, then kill sshd and all its sessions by PID.
    assert!(eventually(Duration::from_secs(10), || { support::sshd::process_running("sleep 61.7") }), "command never started");
    let started = Instant::now();
    sshd.kill_all();
    let (result, session) = tokio::time::timeout(Duration::from_secs(10), running).await.expect("hang").unwrap();
    let err = result.unwrap_err();
    assert!(matches!(err, SshError::Disconnected { .. }), "{err}");
    assert!(err.to_string().contains("h24: connection lost during `echo started; sleep 61.7`"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // Later commands fail fast too.
    let err = session.run(&Command::script("true")).await.unwrap_err();
    assert!(matches!(err, SshError::Disconnected { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn frozen_server_is_detected_by_keepalive() {
    let _admin = admin_user("frozen_server_is_detected_by_keepalive");
    let sshd = TestSshd::start("127.0.0.25");
    let opts = ConnectOptions { keepalive: Duration::from_millis(500), keepalive_max: 2, ..opts() };
    let s = Connector::new().connect(&sshd.target("h25", ADMIN_USER), &opts).await.expect("connect");
    s.run(&Command::script("true")).await.unwrap();
    // SIGSTOP: the TCP connection stays open but nothing answers, like a host that vanished from the network.
    sshd.signal_all("STOP");
    let started = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(15), s.run(&Command::script("sleep 30").timeout(Duration::from_secs(60)))).await;
    sshd.signal_all("CONT");
    let err = result.expect("hung despite keepalives").unwrap_err();
    assert!(matches!(err, SshError::Disconnected { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
}

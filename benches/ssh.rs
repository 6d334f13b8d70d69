//! kubeha's SSH transport against OpenSSH's client, on loopback sshd servers started here.
//!
//! 1. 100 sequential small commands on one host over one reused connection, against `ssh` processes
//!    multiplexed over a ControlMaster (the fastest way OpenSSH offers for this).
//! 2. One command on 30 hosts in parallel, connection set-up included, against 30 `ssh` processes in parallel.
//!
//! Both clients run the identical remote command line (kubeha's timeout wrapper around `true`), so the
//! comparison is of the transports. Each case runs several rounds; the median is printed.
//!
//! Run: `cargo bench --bench ssh` (as root: it starts sshd on 127.0.0.11..=40).
#[path = "../tests/support/sshd.rs"]
mod sshd;

use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};

use kubeha::ssh::pool::connect_each;
use kubeha::ssh::{Command, ConnectOptions, Transport, sudo};
use sshd::TestSshd;

const ROUNDS: usize = 5;
/// By default a throwaway user with /bin/sh as login shell: root's shell here is bash, whose ~/.bashrc (sourced for
/// every SSH command) runs pyenv and costs ~100 ms, which would dominate both clients' numbers.
/// Override with KUBEHA_BENCH_USER=root to measure with a heavy login shell.
const DEFAULT_USER: &str = "kubeha-t3";
const SEQUENTIAL: usize = 100;
const HOSTS: usize = 30;

fn user() -> &'static str {
    static USER: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    USER.get_or_init(|| std::env::var("KUBEHA_BENCH_USER").unwrap_or_else(|_| DEFAULT_USER.to_string()))
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn remote_line() -> String {
    sudo::wrap("true", Command::DEFAULT_TIMEOUT, false)
}

fn ssh_base(sshd: &TestSshd) -> Process {
    let mut p = Process::new("ssh");
    p.args(["-F", "/dev/null", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o"])
        .arg(format!("UserKnownHostsFile={}", sshd.known_hosts().display()))
        .arg("-i")
        .arg(sshd.client_key())
        .args(["-p", &sshd.port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    p
}

fn opts() -> ConnectOptions {
    ConnectOptions { connect_timeout: Duration::from_secs(20), concurrency: HOSTS, ..Default::default() }
}

/// Upload timings: (kubeha upload incl. hash check + temp file + rename, ssh `cat > file` over the master).
struct UploadTimes(Duration, Duration);

async fn sequential() -> (Duration, Duration, UploadTimes) {
    let sshd = TestSshd::start("127.0.0.11");
    let mut target = sshd.target("seq", user());
    target.r#become = kubeha::ssh::Become::None;
    let line = remote_line();

    let (_, session) = connect_each(std::slice::from_ref(&target), &opts()).await.pop().expect("one target");
    let session = session.expect("session");
    let ours = median(
        futures_rounds(|| {
            let session = session.clone();
            async move {
                let started = Instant::now();
                for _ in 0..SEQUENTIAL {
                    session.run(&Command::script("true")).await.expect("run");
                }
                started.elapsed()
            }
        })
        .await,
    );

    let control = sshd.dir.path().join("cm");
    let status = ssh_base(&sshd)
        .args(["-o", "ControlMaster=yes", "-o", "ControlPersist=120", "-o"])
        .arg(format!("ControlPath={}", control.display()))
        .args(["-f", "-N", &format!("{}@127.0.0.11", user())])
        .status()
        .expect("ssh master");
    assert!(status.success(), "ControlMaster did not start");
    let mut theirs = Vec::new();
    for _ in 0..ROUNDS {
        let started = Instant::now();
        for _ in 0..SEQUENTIAL {
            let ok = ssh_base(&sshd)
                .arg("-o")
                .arg(format!("ControlPath={}", control.display()))
                .arg(format!("{}@127.0.0.11", user()))
                .arg(&line)
                .status()
                .expect("ssh")
                .success();
            assert!(ok);
        }
        theirs.push(started.elapsed());
    }
    // 64 MiB upload: ours (compare, stream, verify sha256 remotely, rename) vs a bare `cat > file`.
    let contents: Vec<u8> = (0..64u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let local = sshd.dir.path().join("payload");
    std::fs::write(&local, &contents).expect("payload");
    let mut ours_upload = Vec::new();
    let mut theirs_upload = Vec::new();
    for round in 0..3 {
        let up = kubeha::ssh::Upload { path: format!("/tmp/kubeha-bench-upload-{round}"), contents: contents.clone(), mode: 0o644, owner: None };
        let _ = std::fs::remove_file(&up.path);
        let started = Instant::now();
        session.upload(&up).await.expect("upload");
        ours_upload.push(started.elapsed());
        let _ = std::fs::remove_file(&up.path);

        let started = Instant::now();
        let ok = ssh_base(&sshd)
            .arg("-o")
            .arg(format!("ControlPath={}", control.display()))
            .arg(format!("{}@127.0.0.11", user()))
            .arg(format!("cat > /tmp/kubeha-bench-upload-ssh-{round}"))
            .stdin(std::fs::File::open(&local).expect("payload"))
            .status()
            .expect("ssh")
            .success();
        assert!(ok);
        theirs_upload.push(started.elapsed());
        let _ = std::fs::remove_file(format!("/tmp/kubeha-bench-upload-ssh-{round}"));
    }

    // Stop the master through its control socket (it exits; no process is killed by name).
    let _ = ssh_base(&sshd).arg("-o").arg(format!("ControlPath={}", control.display())).args(["-O", "exit", &format!("{}@127.0.0.11", user())]).status();
    (ours, median(theirs), UploadTimes(median(ours_upload), median(theirs_upload)))
}

async fn futures_rounds<F, Fut>(mut round: F) -> Vec<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Duration>,
{
    let mut samples = Vec::new();
    for _ in 0..ROUNDS {
        samples.push(round().await);
    }
    samples
}

async fn parallel() -> (Duration, Duration) {
    let servers: Vec<TestSshd> = (11..11 + HOSTS).map(|i| TestSshd::start(&format!("127.0.0.{i}"))).collect();
    let targets: Vec<_> = servers
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut t = s.target(&format!("h{i}"), user());
            t.r#become = kubeha::ssh::Become::None;
            t
        })
        .collect();
    let line = remote_line();

    let mut ours = Vec::new();
    for _ in 0..ROUNDS {
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for (name, session) in connect_each(&targets, &opts()).await {
            let session = session.unwrap_or_else(|e| panic!("{name}: {e}"));
            tasks.spawn(async move { session.run(&Command::script("true")).await.map(|_| ()) });
        }
        while let Some(r) = tasks.join_next().await {
            r.expect("join").expect("run");
        }
        ours.push(started.elapsed());
    }

    let mut theirs = Vec::new();
    for _ in 0..ROUNDS {
        let started = Instant::now();
        let children: Vec<_> = servers.iter().map(|s| ssh_base(s).arg(format!("{}@{}", user(), s.address)).arg(&line).spawn().expect("ssh")).collect();
        for mut child in children {
            assert!(child.wait().expect("wait").success());
        }
        theirs.push(started.elapsed());
    }
    (median(ours), median(theirs))
}

fn main() {
    if user() != "root" {
        sshd::ensure_user(user());
    }
    println!("remote user: {}", user());
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let (ours, theirs, upload) = sequential().await;
        println!(
            "sequential: {SEQUENTIAL} commands, one host: kubeha {:.1} ms ({:.2} ms/cmd), ssh+ControlMaster {:.1} ms ({:.2} ms/cmd), ratio ssh/kubeha = {:.2}",
            ours.as_secs_f64() * 1e3,
            ours.as_secs_f64() * 1e3 / SEQUENTIAL as f64,
            theirs.as_secs_f64() * 1e3,
            theirs.as_secs_f64() * 1e3 / SEQUENTIAL as f64,
            theirs.as_secs_f64() / ours.as_secs_f64()
        );
        println!(
            "upload 64 MiB: kubeha {:.0} ms (hash compare, temp file, size check, rename), ssh 'cat > f' {:.0} ms",
            upload.0.as_secs_f64() * 1e3,
            upload.1.as_secs_f64() * 1e3
        );
        let (ours, theirs) = parallel().await;
        println!(
            "parallel: 1 command on {HOSTS} hosts incl. connect: kubeha {:.1} ms, {HOSTS} ssh processes {:.1} ms, ratio ssh/kubeha = {:.2}",
            ours.as_secs_f64() * 1e3,
            theirs.as_secs_f64() * 1e3,
            theirs.as_secs_f64() / ours.as_secs_f64()
        );
    });
}

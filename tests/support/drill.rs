//! What the lab tests use to act and check like an operator, without kubeha's own code: the OpenSSH client
//! with strict host-key checking, etcdctl on the test host, kubeha as a process (with its run folders in a
//! test-owned directory), edited copies of the lab inventory, and a quorum monitor that writes to etcd
//! every 200 ms and reports the longest time writes were unavailable.
#![allow(dead_code)]
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const KEY: &str = "/var/lib/kubeha/lab/lab/id_ed25519";
pub const KNOWN_HOSTS: &str = "/var/lib/kubeha/lab/lab/known_hosts";
pub const VIP: &str = "198.18.0.100";
/// Lab addresses: the inventory's three control planes, the machines drills add, and a worker.
pub const CP1: &str = "198.18.0.11";
pub const CP2: &str = "198.18.0.12";
pub const CP3: &str = "198.18.0.13";
pub const CP4: &str = "198.18.0.14";
pub const CP5: &str = "198.18.0.15";
pub const CP6: &str = "198.18.0.16";
pub const CP7: &str = "198.18.0.17";
pub const CP8: &str = "198.18.0.18";
pub const WK1: &str = "198.18.0.21";

pub fn lab_inventory() -> &'static Path {
    Path::new(super::lab::INVENTORY)
}

/// A command on a lab machine through the system's OpenSSH client, with strict host-key checking.
pub fn ssh(address: &str, script: &str) -> Output {
    Command::new("ssh")
        .args([
            "-i",
            KEY,
            "-o",
            &format!("UserKnownHostsFile={KNOWN_HOSTS}"),
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=5",
        ])
        .arg(format!("root@{address}"))
        .arg(script)
        .output()
        .expect("the OpenSSH client runs")
}

pub fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// `ssh` that must succeed; its stdout.
pub fn ssh_ok(address: &str, script: &str) -> String {
    let out = ssh(address, script);
    assert!(out.status.success(), "on {address}: {script}\n{}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// kubeha against `inventory`, with its run folders under `state`.
pub fn kubeha_with(inventory: &Path, state: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(assert_cmd::cargo::cargo_bin("kubeha"));
    c.args(args).arg("-i").arg(inventory).env("KUBEHA_STATE_DIR", state);
    c
}

/// Runs it and insists on success, printing its output either way (the drill's log).
pub fn kubeha_ok(inventory: &Path, state: &Path, args: &[&str]) -> Output {
    let out = kubeha_with(inventory, state, args).output().unwrap();
    eprintln!("$ kubeha {} -i {}\n{}", args.join(" "), inventory.display(), text(&out));
    assert!(out.status.success(), "kubeha {} failed", args.join(" "));
    out
}

/// The journal of the newest run under `state`.
pub fn newest_journal(state: &Path) -> Option<PathBuf> {
    let runs = state.join("lab/runs");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(runs).ok()?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    dirs.sort();
    dirs.pop().map(|d| d.join("journal.jsonl"))
}

/// Starts kubeha with `args` and SIGKILLs it as soon as its journal records `step` as done (bounded wait).
pub fn kill_after(inventory: &Path, state: &Path, args: &[&str], step: &str) {
    kill_after_within(inventory, state, args, step, Duration::from_secs(180));
}

/// `kill_after` for a step that comes late in a long run: the wait is bounded by `within`.
pub fn kill_after_within(inventory: &Path, state: &Path, args: &[&str], step: &str, within: Duration) {
    kill_command_after(kubeha_with(inventory, state, args), state, step, within);
}

/// `kill_after_within` for a kubeha command built by the caller (its own environment), with its run folders
/// under `state`.
pub fn kill_command_after(mut command: Command, state: &Path, step: &str, within: Duration) {
    let before = newest_journal(state);
    let args: Vec<String> = command.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
    // Its output is kept for the message when it ends on its own instead of being killed.
    let log_path = state.join(format!("kill-after-{}.log", step.replace('/', "_")));
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child: Child = command.stdout(log.try_clone().unwrap()).stderr(log).spawn().unwrap();
    let needle = format!("\"stepId\":\"{step}\"");
    let started = Instant::now();
    loop {
        let journal = newest_journal(state).filter(|j| Some(j) != before.as_ref());
        if journal.and_then(|j| std::fs::read_to_string(j).ok()).is_some_and(|t| t.lines().any(|l| l.contains(&needle) && l.contains("stepDone"))) {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            let output = std::fs::read_to_string(&log_path).unwrap_or_default();
            panic!("kubeha {} ended ({status}) before step {step} was done:\n{output}", args.join(" "));
        }
        assert!(started.elapsed() < within, "step {step} not done within {} s", within.as_secs());
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap(); // SIGKILL: no cleanup, the lock and a half-done change stay behind
    child.wait().unwrap();
}

/// The test host's CPU time, busy and total, in clock ticks since boot (/proc/stat's first line). Time at a
/// positive nice value counts as idle: such work (a background build) yields to the lab.
fn cpu_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap();
    let fields: Vec<u64> = stat.lines().next().unwrap().split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
    let idle = fields[1] + fields[3] + fields.get(4).copied().unwrap_or(0); // nice + idle + iowait
    (fields.iter().sum::<u64>() - idle, fields.iter().sum())
}

/// After machines were powered back on, their control planes start (API servers fill their caches, kubelets
/// start their pods) and keep the lab's few cores saturated for a while after `verify` passes; a drill
/// started then measures that start-up, not its own change (drill 2b once saw a 2.96 s write gap in the
/// first seconds of `node remove`, 0 writes failed). So a drill that follows a power-on waits, bounded,
/// until the host has half its CPU idle for 3 seconds in a row, and says how long that took. Not an
/// assertion: past the bound the drill starts anyway and its own bound decides.
pub fn wait_until_quiet(bound: Duration) {
    let started = Instant::now();
    let mut quiet_seconds = 0;
    let mut busy = 1.0;
    while quiet_seconds < 3 && started.elapsed() < bound {
        let (busy_before, total_before) = cpu_ticks();
        std::thread::sleep(Duration::from_secs(1));
        let (busy_after, total_after) = cpu_ticks();
        busy = (busy_after - busy_before) as f64 / (total_after - total_before).max(1) as f64;
        quiet_seconds = if busy <= 0.5 { quiet_seconds + 1 } else { 0 };
    }
    eprintln!("machines settled after {:.0} s (host CPU {:.0} % busy over the last second)", started.elapsed().as_secs_f64(), busy * 100.0);
}

/// A copy of the lab inventory in `dir` with `edit` applied to its text (an operator's edited inventory).
pub fn edited_inventory(dir: &Path, name: &str, edit: impl Fn(String) -> String) -> PathBuf {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/inventories/lab.yaml")).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, edit(text)).unwrap();
    path
}

/// The inventory line of a lab control plane.
pub fn control_plane(name: &str, address: &str, zone: &str) -> String {
    format!("  - {{name: {name}, address: {address}, roles: [control-plane], zone: {zone}, rack: r1}}\n")
}

/// etcdctl on the test host with the cluster's client certificate, copied from a control plane into a
/// private temporary folder.
pub struct Etcdctl {
    dir: tempfile::TempDir,
}

impl Etcdctl {
    pub fn from(control_plane: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let env = ssh_ok(control_plane, "cat /etc/kubeha/etcdctl.env");
        for (var, file) in [("ETCDCTL_CACERT", "ca.crt"), ("ETCDCTL_CERT", "client.crt"), ("ETCDCTL_KEY", "client.key")] {
            let remote = env.lines().find_map(|l| l.strip_prefix(&format!("{var}="))).unwrap_or_else(|| panic!("{var} in etcdctl.env: {env}"));
            let contents = ssh_ok(control_plane, &format!("cat {}", remote.trim_matches('"')));
            let path = dir.path().join(file);
            std::fs::write(&path, contents).unwrap();
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        }
        Etcdctl { dir }
    }

    pub fn command(&self, endpoints: &[&str]) -> Command {
        let mut c = Command::new("etcdctl");
        let urls: Vec<String> = endpoints.iter().map(|a| format!("https://{a}:2379")).collect();
        c.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", urls.join(",")))
            .arg(format!("--cacert={}", self.dir.path().join("ca.crt").display()))
            .arg(format!("--cert={}", self.dir.path().join("client.crt").display()))
            .arg(format!("--key={}", self.dir.path().join("client.key").display()));
        c
    }

    pub fn run(&self, endpoints: &[&str], args: &[&str]) -> String {
        let out = self.command(endpoints).args(args).output().unwrap();
        assert!(out.status.success(), "etcdctl {}: {}", args.join(" "), text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Writes `count` keys under `prefix` in transactions of 100 (etcd allows 128 operations per txn).
    pub fn write_keys(&self, endpoints: &[&str], prefix: &str, count: usize) {
        for chunk in (0..count).collect::<Vec<_>>().chunks(100) {
            let ops: String = chunk.iter().map(|i| format!("put {prefix}{i:04} value-{i}\n")).collect();
            let mut child = self.command(endpoints).arg("txn").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
            use std::io::Write;
            child.stdin.take().unwrap().write_all(format!("\n{ops}\n\n").as_bytes()).unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success() && text(&out).starts_with("SUCCESS"), "etcdctl txn: {}", text(&out));
        }
    }

    /// How many keys exist under `prefix`.
    pub fn count(&self, endpoints: &[&str], prefix: &str) -> usize {
        let out = self.run(endpoints, &["get", prefix, "--prefix", "--keys-only", "-w", "json"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v["count"].as_u64().unwrap_or(0) as usize
    }

    /// Voting members' and learners' names.
    pub fn members(&self, endpoints: &[&str]) -> Vec<String> {
        let v: serde_json::Value = serde_json::from_str(&self.run(endpoints, &["member", "list", "-w", "json"])).unwrap();
        let mut names: Vec<String> = v["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| format!("{}{}", m["name"].as_str().unwrap_or("?"), if m.get("isLearner").is_some_and(|l| l == true) { " (learner)" } else { "" }))
            .collect();
        names.sort();
        names
    }
}

/// etcd's election timeout (kubeha keeps etcd's default) and the monitor's sampling period.
pub const ELECTION_TIMEOUT: Duration = Duration::from_millis(1000);
pub const SAMPLE_EVERY: Duration = Duration::from_millis(200);
/// One election at most: a follower waits a randomised timeout in [1, 2) x election timeout before it
/// campaigns, and the vote itself is a round trip. Plus one sampling period, since the monitor can only
/// see availability at its samples.
pub const ONE_ELECTION: Duration = Duration::from_millis(2 * 1000 + 200 + 200);
/// Bounds of every monitor: it never runs longer or writes more than this (an upgrade of the whole lab is
/// the longest drill).
const MONITOR_MAX_RUN: Duration = Duration::from_secs(1800);
const MONITOR_MAX_IN_FLIGHT: usize = 8;

/// Writes a key through `endpoints` every SAMPLE_EVERY (each write its own etcdctl process, so a write
/// blocked in an election does not delay the next sample) and records when each write completed.
pub struct QuorumMonitor {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<MonitorReport>>,
}

#[derive(Debug)]
pub struct MonitorReport {
    pub samples: usize,
    pub failed: usize,
    /// The longest time between two successful writes (or from the start / to the end).
    pub longest_unavailable: Duration,
    /// When that longest gap ended, from the monitor's start: tells a gap at the very start (the first
    /// write's own start-up) from one in the middle of the change.
    pub longest_ended_at: Duration,
    pub ran: Duration,
}

impl QuorumMonitor {
    pub fn start(etcdctl: Arc<Etcdctl>, endpoints: Vec<String>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            let completions: Arc<Mutex<Vec<(Instant, bool)>>> = Arc::default();
            let mut in_flight: Vec<std::thread::JoinHandle<()>> = Vec::new();
            let mut samples = 0;
            while !flag.load(Ordering::SeqCst) && started.elapsed() < MONITOR_MAX_RUN {
                in_flight.retain(|h| !h.is_finished());
                if in_flight.len() < MONITOR_MAX_IN_FLIGHT {
                    samples += 1;
                    let (etcdctl, endpoints, completions) = (etcdctl.clone(), endpoints.clone(), completions.clone());
                    in_flight.push(std::thread::spawn(move || {
                        let endpoints: Vec<&str> = endpoints.iter().map(String::as_str).collect();
                        let ok = etcdctl
                            .command(&endpoints)
                            .args(["--dial-timeout=1s", "--command-timeout=3s", "put", "kubeha-drill/monitor", &samples.to_string()])
                            .output()
                            .is_ok_and(|o| o.status.success());
                        completions.lock().unwrap().push((Instant::now(), ok));
                    }));
                }
                std::thread::sleep(SAMPLE_EVERY);
            }
            for h in in_flight {
                let _ = h.join();
            }
            let ended = Instant::now();
            let mut done = completions.lock().unwrap().clone();
            done.sort_by_key(|(at, _)| *at);
            let failed = done.iter().filter(|(_, ok)| !ok).count();
            let mut last_ok = started;
            let (mut longest, mut longest_ended_at) = (Duration::ZERO, Duration::ZERO);
            for at in done.iter().filter(|(_, ok)| *ok).map(|(at, _)| *at).chain([ended]) {
                if at.duration_since(last_ok) > longest {
                    (longest, longest_ended_at) = (at.duration_since(last_ok), at.duration_since(started));
                }
                last_ok = at;
            }
            MonitorReport { samples, failed, longest_unavailable: longest, longest_ended_at, ran: ended.duration_since(started) }
        });
        QuorumMonitor { stop, thread: Some(thread) }
    }

    pub fn finish(mut self) -> MonitorReport {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for QuorumMonitor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// A drill's numbers, printed for the closing notes: duration and the longest write unavailability.
pub fn report(drill: &str, started: Instant, monitor: &MonitorReport) {
    eprintln!(
        "DRILL {drill}: {:.1} s; writes: {} samples, {} failed, longest unavailable {:.2} s, ending {:.1} s into the drill (bound {:.1} s)",
        started.elapsed().as_secs_f64(),
        monitor.samples,
        monitor.failed,
        monitor.longest_unavailable.as_secs_f64(),
        monitor.longest_ended_at.as_secs_f64(),
        ONE_ELECTION.as_secs_f64()
    );
}

/// Asks the API server for /readyz through `url` (the VIP) every SAMPLE_EVERY, verified against the
/// cluster CA (copied from a control plane into a private temporary folder), each probe its own curl
/// bounded to 2 s, and records when each probe answered `ok`.
pub struct ApiMonitor {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<MonitorReport>>,
    _ca: tempfile::TempDir,
}

impl ApiMonitor {
    pub fn start(control_plane: &str, url: String) -> Self {
        let ca = tempfile::tempdir().unwrap();
        let ca_file = ca.path().join("ca.crt");
        std::fs::write(&ca_file, ssh_ok(control_plane, "cat /etc/kubernetes/pki/ca.crt")).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            let (mut samples, mut failed, mut last_ok, mut longest, mut longest_ended_at) = (0, 0, started, Duration::ZERO, Duration::ZERO);
            while !flag.load(Ordering::SeqCst) && started.elapsed() < MONITOR_MAX_RUN {
                let sent = Instant::now();
                samples += 1;
                let ok = Command::new("curl")
                    .args(["-sS", "--max-time", "2", "--cacert"])
                    .arg(&ca_file)
                    .arg(&url)
                    .output()
                    .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == "ok");
                if ok {
                    if Instant::now().duration_since(last_ok) > longest {
                        (longest, longest_ended_at) = (Instant::now().duration_since(last_ok), started.elapsed());
                    }
                    last_ok = Instant::now();
                } else {
                    failed += 1;
                }
                std::thread::sleep(SAMPLE_EVERY.saturating_sub(sent.elapsed()));
            }
            let ended = Instant::now();
            let longest_ended_at = if ended.duration_since(last_ok) > longest { ended.duration_since(started) } else { longest_ended_at };
            MonitorReport {
                samples,
                failed,
                longest_unavailable: longest.max(ended.duration_since(last_ok)),
                longest_ended_at,
                ran: ended.duration_since(started),
            }
        });
        ApiMonitor { stop, thread: Some(thread), _ca: ca }
    }

    pub fn finish(mut self) -> MonitorReport {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for ApiMonitor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

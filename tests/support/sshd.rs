//! Throwaway OpenSSH servers for integration tests and the benchmark.
//!
//! Each `TestSshd` owns a tempdir with its own sshd_config, host keys, a client key pair and a known_hosts
//! file, listens on one loopback address (127.0.0.11..=40) on a free port, and is killed BY PID together with
//! every process it spawned when dropped, whichever way the test exits.
#![allow(dead_code)] // each test binary uses a different subset

use std::fs;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kubeha::ssh::{Become, HostTarget};

pub const SSHD: &str = "/usr/sbin/sshd";

/// Knobs that differ between tests.
#[derive(Clone)]
pub struct SshdOptions {
    pub allow_tcp_forwarding: bool,
    /// Host key types to generate, e.g. ["ed25519"] or ["ed25519", "ecdsa"].
    pub host_key_types: Vec<&'static str>,
    pub log_level: &'static str,
}

impl Default for SshdOptions {
    fn default() -> Self {
        SshdOptions { allow_tcp_forwarding: false, host_key_types: vec!["ed25519"], log_level: "VERBOSE" }
    }
}

pub struct TestSshd {
    pub dir: tempfile::TempDir,
    pub address: String,
    pub port: u16,
    child: Child,
}

fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

pub fn keygen(path: &Path, kind: &str, passphrase: &str) {
    let _ = fs::remove_file(path);
    let _ = fs::remove_file(path.with_extension("pub"));
    run(Command::new("ssh-keygen").args(["-q", "-t", kind, "-N", passphrase, "-C", "kubeha-test", "-f"]).arg(path));
}

fn free_port(address: &str) -> u16 {
    TcpListener::bind((address, 0)).expect("bind a free port").local_addr().expect("local addr").port()
}

impl TestSshd {
    pub fn start(address: &str) -> TestSshd {
        TestSshd::start_with(address, SshdOptions::default())
    }

    pub fn start_with(address: &str, opts: SshdOptions) -> TestSshd {
        // Debian's sshd refuses to start without its privilege separation directory (normally made by systemd).
        fs::create_dir_all("/run/sshd").expect("create /run/sshd");
        let dir = tempfile::Builder::new().prefix("kubeha-sshd-").tempdir().expect("tempdir");
        // Non-root test users must be able to read authorized_keys (sshd reads it with their privileges).
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod tempdir");

        let mut host_keys = String::new();
        for kind in &opts.host_key_types {
            let path = dir.path().join(format!("host_{kind}"));
            keygen(&path, kind, "");
            host_keys.push_str(&format!("HostKey {}\n", path.display()));
        }
        let client = dir.path().join("client_ed25519");
        keygen(&client, "ed25519", "");
        let authorized = dir.path().join("authorized_keys");
        fs::copy(client.with_extension("pub"), &authorized).expect("authorized_keys");
        fs::set_permissions(&authorized, fs::Permissions::from_mode(0o644)).expect("chmod authorized_keys");

        // A port can be taken between probing and sshd binding it: retry a few times with a new one.
        let mut last_log = String::new();
        // `SetEnv SHLVL=1`: sshd runs every command through the login shell, and bash reads ~/.bashrc when
        // started by sshd as a top-level shell. The test host's root .bashrc may do anything (on these machines
        // it runs `pyenv rehash`, whose lock, left behind by a session a test killed, stalls every later session
        // for 60 s). With SHLVL already 1, bash is not top-level and skips it.
        for _attempt in 0..5 {
            let port = free_port(address);
            let config = dir.path().join("sshd_config");
            fs::write(
                &config,
                format!(
                    "ListenAddress {address}:{port}\n{host_keys}PidFile none\nAuthorizedKeysFile {auth}\n\
                     StrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                     PubkeyAuthentication yes\nPermitRootLogin prohibit-password\nAllowTcpForwarding {fwd}\n\
                     MaxStartups 200\nMaxSessions 100\nLogLevel {level}\nPrintMotd no\nSetEnv SHLVL=1\n",
                    auth = authorized.display(),
                    fwd = if opts.allow_tcp_forwarding { "yes" } else { "no" },
                    level = opts.log_level,
                ),
            )
            .expect("write sshd_config");
            let log = dir.path().join("sshd.log");
            let child = Command::new(SSHD)
                .arg("-D")
                .arg("-f")
                .arg(&config)
                .arg("-E")
                .arg(&log)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn sshd");
            let mut child = child;
            if wait_ready(&mut child, address, port, Duration::from_secs(10)) {
                let sshd = TestSshd { dir, address: address.to_string(), port, child };
                sshd.write_known_hosts();
                return sshd;
            }
            let _ = child.kill();
            let _ = child.wait();
            last_log = fs::read_to_string(&log).unwrap_or_default();
        }
        panic!("sshd could not start on {address}:\n{last_log}");
    }

    fn write_known_hosts(&self) {
        let mut lines = String::new();
        for entry in fs::read_dir(self.dir.path()).expect("read dir") {
            let path = entry.expect("entry").path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if name.starts_with("host_") && name.ends_with(".pub") {
                let key = fs::read_to_string(&path).expect("host pub key");
                let mut fields = key.split_whitespace();
                let (kind, b64) = (fields.next().unwrap(), fields.next().unwrap());
                lines.push_str(&format!("[{}]:{} {kind} {b64}\n", self.address, self.port));
            }
        }
        fs::write(self.known_hosts(), lines).expect("write known_hosts");
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn client_key(&self) -> PathBuf {
        self.dir.path().join("client_ed25519")
    }

    pub fn known_hosts(&self) -> PathBuf {
        self.dir.path().join("known_hosts")
    }

    pub fn host_public_key(&self, kind: &str) -> String {
        fs::read_to_string(self.dir.path().join(format!("host_{kind}.pub"))).expect("host key")
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    /// A target for `user` with this server's client key and known_hosts.
    pub fn target(&self, name: &str, user: &str) -> HostTarget {
        HostTarget {
            name: name.to_string(),
            address: self.address.clone(),
            port: self.port,
            user: user.to_string(),
            identity_file: Some(self.client_key()),
            known_hosts_files: vec![self.known_hosts()],
            r#become: if user == "root" { Become::None } else { Become::Sudo },
            bastion: None,
        }
    }

    /// Every process below the listening sshd (per-connection sshd processes and the commands they run).
    pub fn session_pids(&self) -> Vec<u32> {
        descendants(self.pid())
    }

    /// Kill the listener and every session process by PID (SIGKILL): the server "dies".
    pub fn kill_all(&mut self) {
        let mut pids = self.session_pids();
        pids.push(self.pid());
        for pid in pids {
            kill(pid, "KILL");
        }
        let _ = self.child.wait();
    }

    /// Freeze (or thaw) the server and its sessions: the TCP connection stays open but nothing answers.
    pub fn signal_all(&self, signal: &str) {
        let mut pids = self.session_pids();
        pids.push(self.pid());
        for pid in pids {
            kill(pid, signal);
        }
    }

    fn stop(&mut self) {
        let pids = self.session_pids();
        let _ = self.child.kill();
        let _ = self.child.wait();
        for pid in pids {
            kill(pid, "CONT");
            kill(pid, "KILL");
        }
    }
}

impl Drop for TestSshd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Ready means: it accepts TCP and sends an SSH banner. Bounded; also notices an sshd that exited.
fn wait_ready(child: &mut Child, address: &str, port: u16, within: Duration) -> bool {
    let addr = format!("{address}:{port}").parse().expect("socket addr");
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let mut banner = [0u8; 4];
            if s.read_exact(&mut banner).is_ok() && &banner == b"SSH-" {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(20)); // poll interval, not a race fix
    }
    false
}

/// Send a signal to one PID (never by name).
pub fn kill(pid: u32, signal: &str) {
    let _ = Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).stderr(Stdio::null()).status();
}

/// All descendants of `root`, from /proc (parent pid is field 4 of /proc/PID/stat, after the `(comm)`).
pub fn descendants(root: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    if let Ok(entries) = fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            let Some(after_comm) = stat.rsplit_once(')').map(|(_, rest)| rest) else {
                continue;
            };
            if let Some(ppid) = after_comm.split_whitespace().nth(1).and_then(|s| s.parse::<u32>().ok()) {
                parent_of.push((pid, ppid));
            }
        }
    }
    let mut found = vec![root];
    let mut index = 0;
    while index < found.len() {
        let parent = found[index];
        for &(pid, ppid) in &parent_of {
            if ppid == parent && !found.contains(&pid) {
                found.push(pid);
            }
        }
        index += 1;
    }
    found.remove(0);
    found
}

/// Whether a process whose command line contains `pattern` exists (pgrep -f, output discarded).
pub fn process_running(pattern: &str) -> bool {
    Command::new("pgrep").args(["-f", pattern]).stdout(Stdio::null()).stderr(Stdio::null()).status().map(|s| s.success()).unwrap_or(false)
}

/// Poll `condition` until it holds or `within` elapses. Returns whether it held.
pub fn eventually(within: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Create a throwaway local user (idempotent: tolerates leftovers of an earlier run).
pub fn ensure_user(name: &str) {
    // useradd/usermod lock /etc/passwd and fail (instead of waiting) when another test holds the lock:
    // serialise within this process and retry, bounded, against anything else on the machine.
    static ACCOUNTS: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = ACCOUNTS.lock().unwrap_or_else(|p| p.into_inner());
    let succeeds = |cmd: &mut Command| cmd.stdout(Stdio::null()).stderr(Stdio::null()).status().map(|s| s.success()).unwrap_or(false);
    let ready = eventually(Duration::from_secs(10), || {
        let exists = succeeds(Command::new("id").arg("-u").arg(name));
        (exists || succeeds(Command::new("useradd").args(["-m", "-s", "/bin/sh", name])))
            // `*` = no password but not locked: sshd without PAM refuses locked (`!`) accounts even for keys.
            && succeeds(Command::new("usermod").args(["-p", "*", name]))
    });
    assert!(ready, "could not create test user {name}");
}

/// The login user of tests that kill or freeze sessions: a throwaway account with /bin/sh as login shell and
/// passwordless sudo (kubeha's `become: sudo`). Logging in as root would run root's own shell start-up files,
/// which on a developer machine can do anything (pyenv here takes a lock in ~/.pyenv that a killed session
/// leaves behind, stalling every later root login for a minute).
pub const ADMIN_USER: &str = "kubeha-t0";

/// Ensure `ADMIN_USER` exists and may sudo without a password while the returned guard lives.
pub fn admin_user(test_name: &str) -> SudoersDropIn {
    ensure_user(ADMIN_USER);
    SudoersDropIn::new(test_name, &format!("{ADMIN_USER} ALL=(ALL) NOPASSWD: ALL"))
}

/// A sudoers drop-in that exists for the lifetime of the guard.
pub struct SudoersDropIn {
    path: PathBuf,
}

impl SudoersDropIn {
    pub fn new(test_name: &str, rule: &str) -> SudoersDropIn {
        let path = PathBuf::from("/etc/sudoers.d").join(format!("kubeha-test-{test_name}"));
        fs::write(&path, format!("{rule}\n")).expect("write sudoers drop-in");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o440)).expect("chmod sudoers drop-in");
        run(Command::new("visudo").arg("-cf").arg(&path));
        SudoersDropIn { path }
    }
}

impl Drop for SudoersDropIn {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

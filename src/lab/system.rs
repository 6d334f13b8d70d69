//! The lab's few contacts with the host: running a tool with a useful error, processes by PID, mounts.
use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs a host tool to completion; on failure the error names the command and quotes its stderr.
pub fn run(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program).args(args).stdin(Stdio::null()).output().with_context(|| format!("cannot run {program}"))?;
    if !out.status.success() {
        bail!("`{program} {}` failed ({}): {}", args.join(" "), out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn require_root() -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("the lab creates bridges, mounts and machines, which needs root: run it with sudo");
    }
    Ok(())
}

/// The host packages the lab uses, checked up front so a missing one is named with its install command.
pub fn require_tools() -> Result<()> {
    const TOOLS: &[(&str, &str)] = &[
        ("debootstrap", "debootstrap"),
        ("systemd-nspawn", "systemd-container"),
        ("ip", "iproute2"),
        ("ssh-keygen", "openssh-client"),
        ("setsid", "util-linux"),
    ];
    let missing: Vec<&str> = TOOLS.iter().filter(|(tool, _)| which(tool).is_none()).map(|(_, package)| *package).collect();
    if !missing.is_empty() {
        bail!("the lab needs these Debian packages: apt-get install -y {}", missing.join(" "));
    }
    Ok(())
}

pub fn which(tool: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path).map(|d| d.join(tool)).find(|p| p.is_file())
}

pub fn alive(pid: u32) -> bool {
    // A zombie is dead for our purposes: it holds no resources worth waiting for.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z')))
}

pub fn cmdline(pid: u32) -> Option<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(raw.split(|b| *b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned()).collect())
}

pub fn pids() -> Vec<u32> {
    std::fs::read_dir("/proc").map(|d| d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect()).unwrap_or_default()
}

/// The PID namespace a process lives in (comparable between processes).
pub fn pid_namespace(pid: u32) -> Option<std::path::PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok()
}

pub fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.split_whitespace().nth(1)?.parse().ok()
}

pub fn children_of(parent: u32) -> Vec<u32> {
    pids().into_iter().filter(|p| parent_of(*p) == Some(parent)).collect()
}

/// Processes whose command line contains `needle` (a path unique to one lab machine): how leftovers of a
/// crashed run are found without trusting a state file that may never have been written.
pub fn find_by_cmdline(needle: &str) -> Vec<u32> {
    pids().into_iter().filter(|p| cmdline(*p).is_some_and(|args| args.iter().any(|a| a.contains(needle)))).collect()
}

pub fn signal(pid: u32, signal: Signal) {
    if let Ok(pid) = i32::try_from(pid) {
        // ESRCH (already gone) is the outcome we want anyway.
        let _ = kill(Pid::from_raw(pid), signal);
    }
}

/// Polls `done` every 50 ms until it holds or the deadline passes; returns whether it held.
pub fn wait_until(deadline: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if done() {
            return true;
        }
        if start.elapsed() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Mount points at or below `prefix`, deepest first so they can be unmounted in order.
pub fn mounts_under(prefix: &Path) -> Vec<std::path::PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut found: Vec<std::path::PathBuf> =
        info.lines().filter_map(|l| l.split(' ').nth(4)).map(|p| std::path::PathBuf::from(p.replace("\\040", " "))).filter(|p| p.starts_with(prefix)).collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found.dedup();
    found
}

pub fn is_mount_point(path: &Path) -> bool {
    mounts_under(path).iter().any(|p| p == path)
}

pub fn unmount(path: &Path) -> Result<()> {
    use nix::mount::{MntFlags, umount2};
    // A lazy detach never blocks on a busy file system; the kernel frees it when the last user goes.
    umount2(path, MntFlags::MNT_DETACH).with_context(|| format!("cannot unmount {}", path.display()))
}

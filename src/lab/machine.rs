//! One lab machine: an overlay on the shared image, its own identity, booted by systemd-nspawn on its
//! segment's bridge. Facts behind the flags: shared/LAB-FACTS.md.
use super::layout::{Layout, Machine};
use super::state::MachineState;
use super::system::{self, alive, children_of, run, signal, wait_until};
use anyhow::{Context, Result, bail};
use nix::mount::{MsFlags, mount};
use nix::sys::signal::Signal;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

pub struct Paths {
    pub upper: PathBuf,
    pub work: PathBuf,
    pub merged: PathBuf,
    pub console_log: PathBuf,
    /// The image the upper layer was made on: an upper layer only makes sense over that lower layer.
    pub image_record: PathBuf,
    /// The upstream build the running machine has bound (rootfs::UPSTREAM_MOUNT).
    pub upstream_record: PathBuf,
}

pub fn paths(layout: &Layout, name: &str) -> Paths {
    let dir = layout.machine_dir(name);
    Paths {
        upper: dir.join("upper"),
        work: dir.join("work"),
        merged: dir.join("root"),
        console_log: dir.join("console.log"),
        image_record: dir.join("image"),
        upstream_record: dir.join("upstream"),
    }
}

/// Whether the machine's folder was made on `image`. A folder without the record (an older kubeha, or a
/// crash before it was written) counts as made on another image.
pub fn made_on(layout: &Layout, name: &str, image: &Path) -> bool {
    std::fs::read_to_string(paths(layout, name).image_record).is_ok_and(|recorded| Path::new(recorded.trim_end()) == image)
}

/// Whether the running machine was booted with the upstream build `dir` bound in.
pub fn booted_with(layout: &Layout, name: &str, dir: &Path) -> bool {
    std::fs::read_to_string(paths(layout, name).upstream_record).is_ok_and(|recorded| Path::new(recorded.trim_end()) == dir)
}

/// Mounts the machine's overlay (unless it already is) and gives a new machine its identity.
pub fn prepare(layout: &Layout, m: &Machine, image: &Path, lab_public_key: &str) -> Result<()> {
    let p = paths(layout, &m.name);
    // Leftovers of a run on another image (a changed package list, another branch's lab): files of the old
    // image's programs and data of the old cluster would shadow the new image. A lab machine is disposable.
    if layout.machine_dir(&m.name).exists() && !made_on(layout, &m.name, image) {
        eprintln!("lab: {} was made on another image; making it anew", m.name);
        remove(layout, &m.name)?;
    }
    for dir in [&p.upper, &p.work, &p.merged] {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    if !system::is_mount_point(&p.merged) {
        let options = format!("lowerdir={},upperdir={},workdir={}", image.display(), p.upper.display(), p.work.display());
        mount(Some("overlay"), &p.merged, Some("overlay"), MsFlags::empty(), Some(options.as_str()))
            .with_context(|| format!("cannot mount the overlay of {}", m.name))?;
    }
    std::fs::write(&p.image_record, format!("{}\n", image.display()))?;
    let root = &p.merged;
    let fresh = !root.join("etc/ssh/ssh_host_ed25519_key").exists();
    if fresh {
        std::fs::write(root.join("etc/hostname"), format!("{}\n", m.name))?;
        std::fs::write(root.join("etc/machine-id"), format!("{}\n", machine_id(&layout.cluster, &m.name)))?;
        run(
            "ssh-keygen",
            &["-q", "-t", "ed25519", "-N", "", "-C", &format!("root@{}", m.name), "-f", &root.join("etc/ssh/ssh_host_ed25519_key").to_string_lossy()],
        )?;
    }
    // Written on every `up`: the inventory (other hosts, segments) or the lab key may have changed.
    write_network(layout, m, root)?;
    write_hosts(layout, root)?;
    let ssh_dir = root.join("root/.ssh");
    std::fs::create_dir_all(&ssh_dir)?;
    std::fs::set_permissions(&ssh_dir, std::fs::Permissions::from_mode(0o700))?;
    std::fs::write(ssh_dir.join("authorized_keys"), lab_public_key)?;
    std::fs::set_permissions(ssh_dir.join("authorized_keys"), std::fs::Permissions::from_mode(0o600))?;
    Ok(())
}

/// Stable per machine, distinct between machines: systemd and etcd tooling expect unique machine ids.
fn machine_id(cluster: &str, name: &str) -> String {
    let a = super::layout::short_hash(&format!("{cluster}/{name}/a"));
    let b = super::layout::short_hash(&format!("{cluster}/{name}/b"));
    let c = super::layout::short_hash(&format!("{cluster}/{name}/c"));
    let d = super::layout::short_hash(&format!("{cluster}/{name}/d"));
    format!("{a}{b}{c}{d}")
}

/// A static address on the container's link. The file sorts before the image's 80-container-host0.network.
/// No default route: a machine can reach its own segment and, through the bridges, the other lab
/// segments, and nothing else.
fn write_network(layout: &Layout, m: &Machine, root: &Path) -> Result<()> {
    let segment = &layout.segments[m.segment];
    let mut text =
        format!("[Match]\nName=host0\n\n[Network]\nAddress={}/{}\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n", m.address, segment.network.prefix_len());
    for other in layout.segments.iter().filter(|s| s.network != segment.network) {
        text.push_str(&format!("\n[Route]\nDestination={}\nGateway={}\n", other.network, segment.gateway));
    }
    let dir = root.join("etc/systemd/network");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("10-kubeha-lab.network"), text)?;
    Ok(())
}

fn write_hosts(layout: &Layout, root: &Path) -> Result<()> {
    let mut text = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    for m in &layout.machines {
        text.push_str(&format!("{}\t{}\n", m.address, m.name));
    }
    std::fs::write(root.join("etc/hosts"), text)?;
    Ok(())
}

pub fn host_public_key(layout: &Layout, name: &str) -> Result<String> {
    let path = paths(layout, name).merged.join("etc/ssh/ssh_host_ed25519_key.pub");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut parts = text.split_whitespace();
    match (parts.next(), parts.next()) {
        (Some(kind), Some(key)) => Ok(format!("{kind} {key}")),
        _ => bail!("{} is not an OpenSSH public key", path.display()),
    }
}

/// nspawn aborts without a tmpfs here on hosts whose /run is not one (LAB-FACTS).
fn ensure_nspawn_runtime_dir() -> Result<()> {
    let dir = Path::new("/run/systemd/nspawn");
    std::fs::create_dir_all(dir)?;
    if !system::is_mount_point(dir) {
        mount(Some("tmpfs"), dir, Some("tmpfs"), MsFlags::empty(), Some("mode=0755")).context("cannot mount a tmpfs on /run/systemd/nspawn")?;
    }
    Ok(())
}

/// The cgroup hierarchies systemd uses: on a hybrid host the named `systemd` one and the unified one, on
/// a pure cgroup v2 host the root.
fn cgroup_hierarchies() -> Vec<PathBuf> {
    let base = Path::new("/sys/fs/cgroup");
    let hybrid = [base.join("systemd"), base.join("unified")];
    if hybrid[0].join("cgroup.procs").exists() { hybrid.into_iter().filter(|h| h.join("cgroup.procs").exists()).collect() } else { vec![base.to_path_buf()] }
}

/// Each machine's own cgroup. With `--keep-unit` nspawn places the machine in the caller's cgroup; without
/// a cgroup per machine, the machines' systemd instances would share one tree, and a unit stopped on one
/// machine (say etcd.service) could take down the same unit's processes on another.
pub fn cgroups(layout: &Layout, name: &str) -> Vec<PathBuf> {
    cgroup_hierarchies().into_iter().map(|h| h.join(format!("kubeha-lab.{}.{name}", layout.cluster))).collect()
}

/// Removes a stopped machine's cgroups, deepest first (a cgroup directory can only go when empty).
pub fn remove_cgroups(layout: &Layout, name: &str) {
    for top in cgroups(layout, name) {
        let mut dirs = vec![];
        let mut pending = vec![top];
        while let Some(d) = pending.pop() {
            if let Ok(entries) = std::fs::read_dir(&d) {
                pending.extend(entries.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_dir()));
            }
            dirs.push(d);
        }
        for d in dirs.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// Boots the machine detached from kubeha (its own session and cgroup, output to console.log) and
/// records its PIDs.
pub fn boot(layout: &Layout, m: &Machine, upstream: &Path) -> Result<MachineState> {
    ensure_nspawn_runtime_dir()?;
    let p = paths(layout, &m.name);
    std::fs::write(&p.upstream_record, format!("{}\n", upstream.display()))?;
    let bind = format!("--bind-ro={}:{}", upstream.display(), super::rootfs::UPSTREAM_MOUNT);
    let log = std::fs::OpenOptions::new().create(true).append(true).open(&p.console_log)?;
    let bridge = &layout.segments[m.segment].bridge;
    let mut procs = Vec::new();
    for cgroup in cgroups(layout, &m.name) {
        std::fs::create_dir_all(&cgroup).with_context(|| format!("cannot create cgroup {}", cgroup.display()))?;
        procs.push(cgroup.join("cgroup.procs").to_string_lossy().into_owned());
    }
    // The shell moves itself into the machine's cgroups, then execs setsid, which execs nspawn: one PID
    // throughout, so the PID recorded below is systemd-nspawn's.
    let child = Command::new("sh")
        .args(["-c", r#"IFS=:; for p in $KUBEHA_CGROUP_PROCS; do echo $$ > "$p" || exit 1; done; exec "$@""#, "sh", "setsid", "systemd-nspawn"])
        .env("KUBEHA_CGROUP_PROCS", procs.join(":"))
        .args([
            "-D",
            &p.merged.to_string_lossy(),
            "-M",
            &m.name,
            "--boot",
            "--network-bridge",
            bridge,
            "--register=no",
            "--keep-unit",
            "--console=passive",
            &bind,
        ])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("cannot start systemd-nspawn")?;
    let nspawn_pid = child.id();
    let mut leader = None;
    wait_until(Duration::from_secs(15), || {
        leader = leader_of(nspawn_pid);
        leader.is_some() || !alive(nspawn_pid)
    });
    match leader {
        Some(leader_pid) => Ok(MachineState { nspawn_pid, leader_pid }),
        None => {
            let tail = std::fs::read_to_string(&p.console_log).unwrap_or_default();
            let tail: Vec<&str> = tail.lines().rev().take(15).collect();
            bail!("machine {} did not boot; last lines of {}:\n{}", m.name, p.console_log.display(), tail.into_iter().rev().collect::<Vec<_>>().join("\n"))
        }
    }
}

/// The machine's init: the child of nspawn that lives in a PID namespace of its own. nspawn first forks
/// an intermediate child in the host's namespace, which must not be mistaken for the machine.
pub fn leader_of(nspawn_pid: u32) -> Option<u32> {
    let own = system::pid_namespace(nspawn_pid)?;
    children_of(nspawn_pid).into_iter().find(|c| system::pid_namespace(*c).is_some_and(|ns| ns != own))
}

pub fn running(s: &MachineState) -> bool {
    alive(s.nspawn_pid) && alive(s.leader_pid)
}

/// Clean power-off (SIGTERM to nspawn), then a power cut if the machine does not go within the bound.
pub fn stop(s: &MachineState) {
    signal(s.nspawn_pid, Signal::SIGTERM);
    if !wait_until(Duration::from_secs(20), || !alive(s.nspawn_pid)) {
        power_cut(s);
    }
}

/// SIGKILL to the machine's init: every process of the machine dies at once, like pulling the plug.
pub fn power_cut(s: &MachineState) {
    signal(s.leader_pid, Signal::SIGKILL);
    if !wait_until(Duration::from_secs(10), || !alive(s.nspawn_pid)) {
        signal(s.nspawn_pid, Signal::SIGKILL);
        wait_until(Duration::from_secs(5), || !alive(s.nspawn_pid));
    }
}

/// Stops every nspawn process still running this machine's root, found by that unique path rather than by
/// a recorded PID: after a crash, the state file may never have been written.
pub fn stop_strays(layout: &Layout, name: &str) {
    let root = paths(layout, name).merged.to_string_lossy().into_owned();
    for pid in system::find_by_cmdline(&root) {
        match leader_of(pid) {
            Some(leader) => stop(&MachineState { nspawn_pid: pid, leader_pid: leader }),
            None => signal(pid, Signal::SIGKILL),
        }
    }
}

/// Stops whatever still runs on this machine's root, unmounts it and removes its folder and cgroups.
pub fn remove(layout: &Layout, name: &str) -> Result<()> {
    stop_strays(layout, name);
    for mount_point in system::mounts_under(&layout.machine_dir(name)) {
        system::unmount(&mount_point)?;
    }
    remove_cgroups(layout, name);
    let dir = layout.machine_dir(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    Ok(())
}

pub fn set_link(m: &Machine, up: bool) -> Result<()> {
    run("ip", &["link", "set", &m.link(), if up { "up" } else { "down" }]).map(|_| ())
}

pub fn link_up(m: &Machine) -> Option<bool> {
    let flags = std::fs::read_to_string(format!("/sys/class/net/{}/flags", m.link())).ok()?;
    let value = u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16).ok()?;
    Some(value & 1 == 1)
}

/// Resident memory of every process in the machine (its PID namespace), in KiB.
pub fn memory_kib(s: &MachineState) -> u64 {
    let Some(ns) = system::pid_namespace(s.leader_pid) else { return 0 };
    system::pids()
        .into_iter()
        .filter(|pid| system::pid_namespace(*pid).is_some_and(|n| n == ns))
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .filter_map(|status| status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok()))
        .sum()
}

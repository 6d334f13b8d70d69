//! Local lab of real machines: systemd-nspawn machines booting a Debian image with real systemd, sshd,
//! keepalived and HAProxy, and etcd, kubeadm, the kubelet and the control-plane programs built from their Go
//! modules (upstream.rs), one machine per inventory host, on bridges in 198.18.0.0/15. The operator side
//! serves those builds on loopback in the upstream download layout (mirror.rs), for the inventory's
//! `spec.artifacts.mirror`.
pub mod layout;
mod machine;
pub mod mirror;
mod network;
mod rootfs;
mod state;
mod system;
mod upstream;

use anyhow::{Context, Result, bail};
use layout::Layout;
use serde::Serialize;
use state::LabState;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The lab's root folder: `KUBEHA_LAB_ROOT`, or /var/lib/kubeha/lab.
pub fn root() -> PathBuf {
    std::env::var_os("KUBEHA_LAB_ROOT").map_or_else(|| PathBuf::from(layout::DEFAULT_ROOT), PathBuf::from)
}

#[derive(Debug, Serialize)]
pub struct UpReport {
    pub image_built: bool,
    pub image_seconds: f64,
    /// The folder of the upstream programs the machines run, and the time spent building or verifying it.
    pub upstream: PathBuf,
    pub upstream_seconds: f64,
    /// The download mirror serving that build, when the inventory's `spec.artifacts.mirror` is the lab's.
    pub mirror: Option<mirror::Served>,
    pub kept: Vec<String>,
    pub booted: Vec<String>,
    pub seconds: f64,
    pub warnings: Vec<String>,
}

/// `mirror`: what the inventory's `spec.artifacts.mirror` asks of the lab (`mirror::Wanted::from_inventory`).
pub fn up(layout: &Layout, inventory_ssh: &[(String, PathBuf, PathBuf)], mirror: Option<&mirror::Wanted>) -> Result<UpReport> {
    system::require_root()?;
    system::require_tools()?;
    let started = Instant::now();
    let (image, image_built) = rootfs::ensure(&layout.cache_dir())?;
    let image_seconds = started.elapsed().as_secs_f64();
    let upstream = upstream::ensure(&layout.cache_dir())?;
    std::fs::create_dir_all(layout.state_dir()).with_context(|| format!("cannot create {}", layout.state_dir().display()))?;
    // Before the machines: a mirror that cannot serve (its port taken) fails `lab up` before anything boots.
    let served = mirror.map(|wanted| mirror::serve(&layout.cluster, &upstream.dir, wanted, layout.state_dir().join("mirror.log"))).transpose()?;
    let public_key = ensure_key(layout)?;
    for s in &layout.segments {
        network::ensure(layout, s)?;
    }
    let mut state = LabState::load(&layout.state_file())?;
    let inotify = ensure_inotify_instances(layout.machines.len())?;
    let mut report = UpReport {
        image_built,
        image_seconds,
        upstream: upstream.dir.clone(),
        upstream_seconds: upstream.seconds,
        mirror: served,
        kept: vec![],
        booted: vec![],
        seconds: 0.0,
        warnings: ssh_warnings(layout, inventory_ssh),
    };
    report.warnings.extend(inotify);
    if let Some(served) = report.mirror.as_ref().filter(|s| !s.missing.is_empty()) {
        report.warnings.push(format!(
            "the lab's mirror does not serve {} (it serves the lab's own builds of etcd and Kubernetes only); downloads of them from {} will fail",
            served.missing.join(", "),
            served.url
        ));
    }
    for m in &layout.machines {
        if let Some(s) = state.machines.get(&m.name).filter(|s| machine::running(s) && owned(layout, &m.name, s)) {
            // A machine on another build of the upstream programs is rebooted with the new one bound in (its
            // disk is kept, as on a host whose packages were upgraded).
            if machine::made_on(layout, &m.name, &image) && machine::booted_with(layout, &m.name, &upstream.dir) {
                report.kept.push(m.name.clone());
                continue;
            }
            machine::stop(s);
        }
        // A machine that is not recorded as running may still have processes from a crashed run.
        machine::stop_strays(layout, &m.name);
        machine::prepare(layout, m, &image, &public_key)?;
        let s = machine::boot(layout, m, &upstream.dir)?;
        state.machines.insert(m.name.clone(), s);
        state.save(&layout.state_file())?;
        report.booted.push(m.name.clone());
    }
    write_known_hosts(layout)?;
    wait_for_ssh(layout)?;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// inotify instances a machine needs: its systemd, journald, udev-less services, the kubelet (cAdvisor and its
/// file watches) and the control-plane programs each hold some; about 20 were counted on a control plane.
const INOTIFY_INSTANCES_PER_MACHINE: u64 = 64;
const INOTIFY_LIMIT: &str = "/proc/sys/fs/inotify/max_user_instances";

/// The machines share one user (root) and so the host's per-user inotify limit: with Debian's 128, the
/// seventh machine's kubelet failed "inotify_init: too many open files" and its `kubeadm join` timed out.
/// Raised (never lowered) to what the machines need, as kind asks of its hosts; returns the notice to show.
fn ensure_inotify_instances(machines: usize) -> Result<Option<String>> {
    let current: u64 = std::fs::read_to_string(INOTIFY_LIMIT).with_context(|| format!("cannot read {INOTIFY_LIMIT}"))?.trim().parse().unwrap_or(0);
    let needed = 256 + INOTIFY_INSTANCES_PER_MACHINE * machines as u64;
    if current >= needed {
        return Ok(None);
    }
    std::fs::write(INOTIFY_LIMIT, needed.to_string()).with_context(|| format!("cannot raise {INOTIFY_LIMIT} to {needed}"))?;
    Ok(Some(format!("raised fs.inotify.max_user_instances from {current} to {needed}: the {machines} machines share the host's per-user limit")))
}

/// A recorded PID is only ours if that process still runs this machine's root: PIDs get reused.
fn owned(layout: &Layout, name: &str, s: &state::MachineState) -> bool {
    let root = machine::paths(layout, name).merged.to_string_lossy().into_owned();
    system::cmdline(s.nspawn_pid).is_some_and(|args| args.iter().any(|a| a == &root)) && system::parent_of(s.leader_pid) == Some(s.nspawn_pid)
}

fn ensure_key(layout: &Layout) -> Result<String> {
    let key = layout.identity_file();
    if !key.exists() {
        system::run("ssh-keygen", &["-q", "-t", "ed25519", "-N", "", "-C", &format!("kubeha-lab-{}", layout.cluster), "-f", &key.to_string_lossy()])?;
    }
    let public = key.with_extension("pub");
    std::fs::read_to_string(&public).with_context(|| format!("cannot read {}", public.display()))
}

/// Records every machine's host key, so SSH to the lab is checked as strictly as in production. Entries of
/// machines the inventory no longer lists are kept, as an operator's known_hosts keeps a replaced host's key:
/// kubeha still reaches a machine taken out of the inventory to reset it.
fn write_known_hosts(layout: &Layout) -> Result<()> {
    let listed = |line: &str| {
        let names = line.split_whitespace().next().unwrap_or_default();
        names.split(',').any(|n| layout.machines.iter().any(|m| m.name == n || m.address.to_string() == n))
    };
    let earlier = std::fs::read_to_string(layout.known_hosts_file()).unwrap_or_default();
    let mut text: String = earlier.lines().filter(|l| !l.trim().is_empty() && !listed(l)).map(|l| format!("{l}\n")).collect();
    for m in &layout.machines {
        text.push_str(&format!("{},{} {}\n", m.name, m.address, machine::host_public_key(layout, &m.name)?));
    }
    let path = layout.known_hosts_file();
    let tmp = path.with_extension("tmp");
    std::fs::File::create(&tmp)?.write_all(text.as_bytes())?;
    std::fs::rename(&tmp, &path)?;
    Ok(())
}

/// The inventory must point at the lab's key and known_hosts; kubeha never writes over the operator's own.
fn ssh_warnings(layout: &Layout, inventory_ssh: &[(String, PathBuf, PathBuf)]) -> Vec<String> {
    let mut out = Vec::new();
    for (host, identity, known_hosts) in inventory_ssh {
        if identity != &layout.identity_file() || known_hosts != &layout.known_hosts_file() {
            out.push(format!(
                "host {host}: the inventory's ssh.identityFile/knownHostsFile are not the lab's; set them to {} and {}",
                layout.identity_file().display(),
                layout.known_hosts_file().display()
            ));
            break;
        }
    }
    out
}

fn ssh_reachable(address: std::net::Ipv4Addr) -> bool {
    TcpStream::connect_timeout(&SocketAddr::from((address, 22)), Duration::from_millis(300)).is_ok()
}

fn wait_for_ssh(layout: &Layout) -> Result<()> {
    wait_for_ssh_on(&layout.machines.iter().collect::<Vec<_>>())
        .map_err(|e| anyhow::anyhow!("{e}; see {}/machines/NAME/console.log", layout.state_dir().display()))
}

fn wait_for_ssh_on(machines: &[&layout::Machine]) -> Result<()> {
    let mut pending: Vec<&layout::Machine> = machines.to_vec();
    let deadline = Duration::from_secs(120);
    let start = Instant::now();
    while !pending.is_empty() {
        pending.retain(|m| !ssh_reachable(m.address));
        if start.elapsed() > deadline {
            let names: Vec<&str> = pending.iter().map(|m| m.name.as_str()).collect();
            bail!("sshd did not answer within {} s on {}", deadline.as_secs(), names.join(", "));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// Stops the lab's mirror and every machine of the lab (recorded or found by name), unmounts, removes bridges
/// and state. Safe to run any number of times, and after a crash.
pub fn down(layout: &Layout) -> Result<Vec<String>> {
    system::require_root()?;
    mirror::stop(&mirror::unit_name(&layout.cluster));
    let state = LabState::load(&layout.state_file()).unwrap_or_default();
    let mut names: Vec<String> = layout.machines.iter().map(|m| m.name.clone()).collect();
    names.extend(state.machines.keys().cloned());
    if let Ok(dirs) = std::fs::read_dir(layout.state_dir().join("machines")) {
        names.extend(dirs.filter_map(|d| d.ok()?.file_name().into_string().ok()));
    }
    names.sort();
    names.dedup();
    for name in &names {
        if let Some(s) = state.machines.get(name).filter(|s| owned(layout, name, s)) {
            machine::stop(s);
        }
        machine::remove(layout, name)?;
    }
    for s in &layout.segments {
        network::remove(&s.bridge)?;
    }
    for mount_point in system::mounts_under(&layout.state_dir()) {
        system::unmount(&mount_point)?;
    }
    if layout.state_dir().exists() {
        std::fs::remove_dir_all(layout.state_dir()).with_context(|| format!("cannot remove {}", layout.state_dir().display()))?;
    }
    Ok(names)
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MachineStatus {
    pub name: String,
    pub address: String,
    pub state: &'static str,
    pub link: &'static str,
    pub ssh: bool,
    pub memory_mib: f64,
    pub nspawn_pid: Option<u32>,
}

pub fn status(layout: &Layout) -> Result<Vec<MachineStatus>> {
    let state = LabState::load(&layout.state_file())?;
    Ok(layout
        .machines
        .iter()
        .map(|m| {
            let recorded = state.machines.get(&m.name).filter(|s| owned(layout, &m.name, s));
            let running = recorded.is_some_and(machine::running);
            MachineStatus {
                name: m.name.clone(),
                address: m.address.to_string(),
                state: if running {
                    "running"
                } else if layout.machine_dir(&m.name).exists() {
                    "stopped"
                } else {
                    "absent"
                },
                link: match machine::link_up(m) {
                    Some(true) => "up",
                    Some(false) => "partitioned",
                    None => "none",
                },
                ssh: running && ssh_reachable(m.address),
                memory_mib: recorded.filter(|_| running).map_or(0.0, |s| machine::memory_kib(s) as f64 / 1024.0),
                nspawn_pid: recorded.map(|s| s.nspawn_pid),
            }
        })
        .collect())
}

fn running_machine<'a>(layout: &'a Layout, host: &str) -> Result<(&'a layout::Machine, state::MachineState)> {
    system::require_root()?;
    let m = layout.machine(host).with_context(|| format!("{host} is not a host of the inventory"))?;
    let state = LabState::load(&layout.state_file())?;
    match state.machines.get(host).filter(|s| owned(layout, host, s) && machine::running(s)) {
        Some(s) => Ok((m, s.clone())),
        None => bail!("machine {host} is not running; `kubeha lab up` starts it"),
    }
}

/// Abrupt stop, like a power cut: the machine's init and every process in it are killed at once.
pub fn kill(layout: &Layout, host: &str) -> Result<()> {
    let (_, s) = running_machine(layout, host)?;
    machine::power_cut(&s);
    Ok(())
}

/// Cuts the machine's link: it keeps running but nobody reaches it and it reaches nobody.
/// Healing returns once the machine's sshd answers again: right after the link comes back the host may still
/// hold a failed neighbour entry for it ("No route to host").
pub fn partition(layout: &Layout, host: &str, cut: bool) -> Result<()> {
    let (m, _) = running_machine(layout, host)?;
    machine::set_link(m, !cut)?;
    if !cut {
        wait_for_ssh_on(&[m])?;
    }
    Ok(())
}

//! The machines' shared, read-only Debian root file system: built once with debootstrap and cached under
//! `<lab root>/cache/rootfs-<key>`, where the key changes whenever the package list or the image setup does.
use super::layout::short_hash;
use super::system::run;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::time::Instant;

pub const SUITE: &str = "bookworm";

/// Real components of the lab (sshd, etcd, keepalived, HAProxy under systemd) and what the Kubernetes
/// stand-ins need (python3 with YAML, openssl, curl).
pub const PACKAGES: &[&str] = &[
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "iproute2",
    "iputils-ping",
    "etcd-server",
    "etcd-client",
    "keepalived",
    "haproxy",
    "sudo",
    "ca-certificates",
    "procps",
    "kmod",
    "curl",
    "openssl",
    "python3",
    "python3-yaml",
];

/// Bumped when `prepare` changes what it does to the image, so old caches are not reused.
const SETUP_REVISION: u32 = 2;

pub fn cache_key() -> String {
    short_hash(&format!("{SUITE}|minbase|{}|{SETUP_REVISION}", PACKAGES.join(",")))
}

/// The cached root file system, built first if absent. Returns its path and whether it was built now.
pub fn ensure(cache_dir: &Path) -> Result<(PathBuf, bool)> {
    let final_dir = cache_dir.join(format!("rootfs-{}", cache_key()));
    if final_dir.join("etc/os-release").exists() {
        return Ok((final_dir, false));
    }
    std::fs::create_dir_all(cache_dir).with_context(|| format!("cannot create {}", cache_dir.display()))?;
    // Build beside the final place and rename at the end: a killed build never leaves a half image that
    // a later run would take for complete.
    let building = cache_dir.join(format!("rootfs-{}.building", cache_key()));
    if building.exists() {
        std::fs::remove_dir_all(&building).with_context(|| format!("cannot remove the unfinished build {}", building.display()))?;
    }
    let started = Instant::now();
    eprintln!("lab: building the machine image with debootstrap (once; cached in {})", final_dir.display());
    let include = format!("--include={}", PACKAGES.join(","));
    run("debootstrap", &["--variant=minbase", &include, SUITE, &building.to_string_lossy()]).context("debootstrap failed (is a Debian mirror reachable?)")?;
    prepare(&building)?;
    std::fs::rename(&building, &final_dir).with_context(|| format!("cannot move the image to {}", final_dir.display()))?;
    eprintln!("lab: image built in {:.0} s", started.elapsed().as_secs_f64());
    remove_unused_images(cache_dir, &final_dir);
    Ok((final_dir, true))
}

/// Images of earlier package lists or setup revisions, unless a running machine still has one as its
/// lower layer: each is some 450 MiB.
fn remove_unused_images(cache_dir: &Path, keep: &Path) {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let Ok(entries) = std::fs::read_dir(cache_dir) else { return };
    for path in entries.filter_map(|e| e.ok()).map(|e| e.path()) {
        let is_image = path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("rootfs-") && !n.ends_with(".building"));
        if is_image && path != keep && !mounts.contains(&format!("lowerdir={}", path.display())) {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

/// Makes the image a set of fresh hosts: services that kubeha configures stay off until it does, every
/// machine gets its own identity (host keys, machine id) at creation, and networkd brings up the link.
fn prepare(root: &Path) -> Result<()> {
    let root_s = root.to_string_lossy();
    run("chroot", &[&root_s, "systemctl", "disable", "etcd.service", "keepalived.service", "haproxy.service"])?;
    run("chroot", &[&root_s, "systemctl", "enable", "systemd-networkd.service", "ssh.service"])?;
    for entry in std::fs::read_dir(root.join("etc/ssh"))? {
        let path = entry?.path();
        if path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("ssh_host_")) {
            std::fs::remove_file(&path)?;
        }
    }
    std::fs::write(root.join("etc/machine-id"), "")?;
    // kubeha's etcd unit runs /usr/local/bin/etcd, where release binaries go on real hosts (and in the
    // Vagrant lab); here Debian's etcd stands at that path.
    for tool in ["etcd", "etcdctl"] {
        let link = root.join("usr/local/bin").join(tool);
        if !link.exists() {
            std::os::unix::fs::symlink(format!("/usr/bin/{tool}"), &link)?;
        }
    }
    // Debian's etcd package starts with a default data dir of its own; a fresh host has none.
    let _ = std::fs::remove_dir_all(root.join("var/lib/etcd/default"));
    Ok(())
}

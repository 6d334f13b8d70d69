//! The machines' shared, read-only Debian root file system: built once with debootstrap and cached under
//! `<lab root>/cache/rootfs-<key>`, where the key changes whenever the package list or the image setup does.
use super::layout::short_hash;
use super::system::run;
use anyhow::{Context, Result};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub const SUITE: &str = "bookworm";

/// What a node needs besides the upstream programs (bound in from the lab's cache, see upstream.rs): sshd,
/// keepalived and HAProxy under systemd, and the tools kubeadm's preflight and the kubelet look for.
pub const PACKAGES: &[&str] = &[
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "iproute2",
    "iputils-ping",
    "keepalived",
    "haproxy",
    "sudo",
    "ca-certificates",
    "procps",
    "kmod",
    "curl",
    "openssl",
    "iptables",
    "conntrack",
    "ethtool",
    "socat",
    "ebtables",
    "util-linux",
    "mount",
];

/// Where the machines see the upstream programs (a read-only bind of the cache's build).
pub const UPSTREAM_MOUNT: &str = "/opt/kubeha-lab/upstream";

/// The upstream programs linked into /usr/local/bin: the lab's CRI runtime, and the control-plane programs
/// it runs for the images of kubeadm's static pods (etc/kubeha-lab-cri/images.json, which also names the
/// previous release set's, in UPSTREAM_MOUNT/previous, for images of that version). Not etcd, kubeadm, the
/// kubelet or kubectl: kubeha's software phase installs those from the lab's mirror, as on any host (either set).
pub const UPSTREAM_PROGRAMS: &[&str] = &["kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubeha-lab-cri"];

/// The lab's own files in every machine (lab/machine): the lab's CRI runtime, the lab's drop-in for the
/// kubelet kubeha installs, and what a kubelet needs inside systemd-nspawn. Path in the image, mode, content.
const MACHINE_FILES: &[(&str, u32, &str)] = &[
    ("etc/systemd/system/kubelet.service.d/20-kubeha-lab.conf", 0o644, include_str!("../../lab/machine/20-kubeha-lab.conf")),
    ("etc/systemd/system/kubeha-lab-cri.service", 0o644, include_str!("../../lab/machine/kubeha-lab-cri.service")),
    ("etc/systemd/system/kubeha-lab-sysctl.service", 0o644, include_str!("../../lab/machine/kubeha-lab-sysctl.service")),
    ("usr/local/lib/kubeha-lab/sysctl-copies", 0o755, include_str!("../../lab/machine/sysctl-copies")),
    ("etc/kubeha-lab-cri/images.json", 0o644, include_str!("../../lab/machine/images.json")),
    ("etc/tmpfiles.d/kubeha-lab-kmsg.conf", 0o644, include_str!("../../lab/machine/kubeha-lab-kmsg.conf")),
    ("etc/cni/net.d/99-kubeha-lab.conflist", 0o644, include_str!("../../lab/machine/99-kubeha-lab.conflist")),
];

/// Bumped when `prepare` changes what it does to the image, so old caches are not reused.
const SETUP_REVISION: u32 = 4;

pub fn cache_key() -> String {
    let files: String = MACHINE_FILES.iter().map(|(path, mode, content)| format!("{path}:{mode:o}:{}", short_hash(content))).collect::<Vec<_>>().join(",");
    short_hash(&format!("{SUITE}|minbase|{}|{SETUP_REVISION}|{files}", PACKAGES.join(",")))
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
    run("chroot", &[&root_s, "systemctl", "disable", "keepalived.service", "haproxy.service"])?;
    for (path, mode, content) in MACHINE_FILES {
        let target = root.join(path);
        std::fs::create_dir_all(target.parent().expect("a file in a folder"))?;
        std::fs::write(&target, content)?;
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(*mode))?;
    }
    run("chroot", &[&root_s, "systemctl", "enable", "systemd-networkd.service", "ssh.service", "kubeha-lab-sysctl.service", "kubeha-lab-cri.service"])?;
    for entry in std::fs::read_dir(root.join("etc/ssh"))? {
        let path = entry?.path();
        if path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("ssh_host_")) {
            std::fs::remove_file(&path)?;
        }
    }
    std::fs::write(root.join("etc/machine-id"), "")?;
    for program in UPSTREAM_PROGRAMS {
        let link = root.join("usr/local/bin").join(program);
        if link.symlink_metadata().is_err() {
            std::os::unix::fs::symlink(format!("{UPSTREAM_MOUNT}/{program}"), &link)?;
        }
    }
    Ok(())
}

//! The software phase on the lab's fresh machines: an offline bundle made with `kubeha artifacts fetch` from
//! the lab's loopback mirror; a mirror serving a kubeadm whose bytes do not match its checksum file is refused
//! at the software step and nothing is installed anywhere; then, with the lab's mirror stopped, the bundle
//! alone installs the cluster (the bootstrap in main.rs), with an operator cache that starts empty (a verified
//! copy in the cache would rightly be used instead of the mirror's or the bundle's).
use crate::support::drill::{kubeha_with, ssh, text};
use crate::support::lab::INVENTORY;
use crate::support::mirror::Mirror;
use kubeha::artifacts::catalogue::{self, Base, Kind};
use kubeha::inventory::Inventory;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const HOSTS: &[&str] = &["198.18.0.11", "198.18.0.12", "198.18.0.13", "198.18.0.21", "198.18.0.22"];

/// Where a case keeps kubeha's artifact cache: every case starts from an empty one.
fn cache(work: &Path, case: &str) -> PathBuf {
    work.join(format!("cache-{case}"))
}

/// kubeha on `inventory` with its run folders under `state` and the artifact cache of `case`.
pub fn kubeha(work: &Path, case: &str, inventory: &Path, state: &Path, args: &[&str]) -> Command {
    let mut command = kubeha_with(inventory, state, args);
    command.env("XDG_CACHE_HOME", cache(work, case));
    command
}

/// inventories/lab.yaml with its artifact source replaced (the machines, keys and names stay the lab's).
fn inventory_with_source(work: &Path, name: &str, source: &str) -> PathBuf {
    let lab = std::fs::read_to_string(INVENTORY).unwrap();
    let mirror_line = lab.lines().find(|l| l.trim_start().starts_with("mirror: ")).expect("the lab inventory names its mirror");
    let path = work.join(name);
    std::fs::write(&path, lab.replace(mirror_line, &format!("    {source}"))).unwrap();
    path
}

/// On fresh machines: the bundle fetched from the lab's mirror, then a corrupt mirror refused before anything
/// is installed. Returns the bundle's folder.
pub fn a_bundle_is_fetched_and_a_bad_mirror_file_is_refused_before_anything_is_installed(work: &Path, state: &Path, inv: &Inventory) -> PathBuf {
    let bundle = work.join("bundle");
    let started = Instant::now();
    let fetched = kubeha(work, "fetch", Path::new(INVENTORY), state, &["artifacts", "fetch", "-o", bundle.to_str().unwrap()]).output().unwrap();
    assert!(fetched.status.success(), "{}", text(&fetched));
    let bytes: u64 = catalogue::needed(inv).iter().map(|a| std::fs::metadata(bundle.join(&a.path)).unwrap().len()).sum();
    eprintln!("bundle from the loopback mirror: {} MiB in {:.1} s", bytes >> 20, started.elapsed().as_secs_f64());

    // A mirror whose kubeadm differs from its published checksum by one byte: the software step refuses it.
    let mut bad = Mirror::start();
    for a in catalogue::needed(inv) {
        let body = std::fs::read(bundle.join(&a.path)).unwrap();
        let sha = kubeha::digest::sha256_hex(&body);
        let checksum_file = if a.kind == Kind::Etcd { format!("{sha}  {}\n", a.file_name()) } else { format!("{sha}\n") };
        bad.serve(&a.checksum_path, checksum_file);
        let mut served = body;
        if a.kind == Kind::Kubeadm {
            served[1000] ^= 0xff;
        }
        bad.serve(&a.path, served);
    }
    let corrupt = inventory_with_source(work, "corrupt.yaml", &format!("mirror: {}", bad.base));
    let refused = kubeha(work, "bad", &corrupt, state, &["apply", "--yes"]).output().unwrap();
    let out = text(&refused);
    assert_eq!(refused.status.code(), Some(1), "{out}");
    let kubeadm = catalogue::file(Kind::Kubeadm, inv.kubernetes.version, inv.artifacts.arch, vec![]);
    assert!(out.contains("kubeadm 1.36.3 (amd64)") && out.contains(&kubeadm.url(Base::Mirror(&bad.base))), "the error names the artifact and its URL: {out}");
    assert!(out.contains("sha256"), "and the checksums: {out}");
    for address in HOSTS {
        let found = text(&ssh(address, "ls /usr/local/bin/kubeadm /var/lib/kubeha/software/kubeadm.installed 2>/dev/null; true"));
        assert!(found.trim().is_empty(), "{address}: nothing may be installed from a bad file: {found}");
    }
    let cached = Command::new("sh").arg("-c").arg(format!("grep -rl kubeadm {} 2>/dev/null; true", cache(work, "bad").display())).output().unwrap();
    assert!(!String::from_utf8_lossy(&cached.stdout).contains("blobs"), "the cache never keeps a bad file");
    bad.stop();
    bundle
}

/// Stops the lab's mirror and returns an inventory whose only artifact source is `bundle` (`kubeha lab up`
/// starts the mirror again).
pub fn offline_inventory(work: &Path, inv: &Inventory, bundle: &Path) -> PathBuf {
    // By the lab's own code: the mirror is a systemd unit only where systemd is the init (not on the lab's hosts).
    let unit = kubeha::lab::mirror::unit_name(&inv.name);
    kubeha::lab::mirror::stop(&unit);
    assert!(kubeha::lab::mirror::running(&unit).is_empty(), "{unit} still runs");
    inventory_with_source(work, "offline.yaml", &format!("bundle: {}", bundle.display()))
}

/// The programs the bundle installed, as the machines report them.
pub fn assert_installed_from_the_bundle() {
    let versions = text(&ssh("198.18.0.22", "kubeadm version -o short; kubelet --version; kubectl version --client | head -1"));
    assert_eq!(versions.matches("v1.36.3").count(), 3, "{versions}");
    let etcd = text(&ssh("198.18.0.12", "etcd --version | head -1; cat /var/lib/kubeha/software/etcd.installed"));
    assert!(etcd.contains("etcd Version: 3.6.16") && etcd.contains("artifact 3.6.16 amd64"), "{etcd}");
}

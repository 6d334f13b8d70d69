//! The software phase against the lab's fresh machines (root only, like every lab test): an offline bundle made
//! with `kubeha artifacts fetch` from the lab's loopback mirror; a mirror serving a kubeadm whose bytes do not
//! match its checksum file is refused at the software step and nothing is installed anywhere; then, with the
//! lab's mirror stopped, the bundle installs the whole cluster, and a second plan has nothing to do.
mod support;

use kubeha::artifacts::catalogue::{self, Base, Kind};
use std::path::Path;
use std::process::Command;
use std::time::Instant;
use support::lab::{INVENTORY, Lab};
use support::mirror::Mirror;

const HOSTS: &[&str] = &["198.18.0.11", "198.18.0.12", "198.18.0.13", "198.18.0.21", "198.18.0.22"];

fn ssh(address: &str, script: &str) -> std::process::Output {
    Command::new("ssh")
        .args(["-i", "/var/lib/kubeha/lab/lab/id_ed25519", "-o", "UserKnownHostsFile=/var/lib/kubeha/lab/lab/known_hosts", "-o", "BatchMode=yes"])
        .arg(format!("root@{address}"))
        .arg(script)
        .output()
        .unwrap()
}

fn text(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// kubeha with its artifact cache in `cache` (every case starts from an empty one: a verified copy in the
/// cache would rightly be used instead of the mirror's).
fn kubeha(cache: &Path, inventory: &Path, args: &[&str]) -> std::process::Output {
    assert_cmd::Command::cargo_bin("kubeha").unwrap().env("XDG_CACHE_HOME", cache).args(args).arg("-i").arg(inventory).output().unwrap()
}

/// inventories/lab.yaml with its artifact source replaced (the machines, keys and names stay the lab's).
fn inventory_with_source(dir: &Path, name: &str, source: &str) -> std::path::PathBuf {
    let lab = std::fs::read_to_string(INVENTORY).unwrap();
    let mirror_line = lab.lines().find(|l| l.trim_start().starts_with("mirror: ")).expect("the lab inventory names its mirror");
    let path = dir.join(name);
    std::fs::write(&path, lab.replace(mirror_line, &format!("    {source}"))).unwrap();
    path
}

#[test]
fn a_bad_mirror_file_is_refused_before_anything_is_installed_and_a_bundle_installs_the_cluster_offline() {
    let work = tempfile::tempdir().unwrap();
    let lab = Lab::up();
    let inv = &lab.inventory;

    // A bundle for air-gapped sites, fetched from the lab's loopback mirror.
    let bundle = work.path().join("bundle");
    let started = Instant::now();
    let fetched = kubeha(&work.path().join("cache-fetch"), Path::new(INVENTORY), &["artifacts", "fetch", "-o", bundle.to_str().unwrap()]);
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
    let corrupt = inventory_with_source(work.path(), "corrupt.yaml", &format!("mirror: {}", bad.base));
    let refused = kubeha(&work.path().join("cache-bad"), &corrupt, &["apply", "--yes"]);
    let out = text(&refused);
    assert_eq!(refused.status.code(), Some(1), "{out}");
    let kubeadm = catalogue::file(Kind::Kubeadm, inv.kubernetes.version, inv.artifacts.arch, vec![]);
    assert!(out.contains("kubeadm 1.36.3 (amd64)") && out.contains(&kubeadm.url(Base::Mirror(&bad.base))), "the error names the artifact and its URL: {out}");
    assert!(out.contains("sha256"), "and the checksums: {out}");
    for address in HOSTS {
        let found = text(&ssh(address, "ls /usr/local/bin/kubeadm /var/lib/kubeha/software/kubeadm.installed 2>/dev/null; true"));
        assert!(found.trim().is_empty(), "{address}: nothing may be installed from a bad file: {found}");
    }
    let cached = Command::new("sh").arg("-c").arg(format!("grep -rl kubeadm {} 2>/dev/null; true", work.path().join("cache-bad").display())).output().unwrap();
    assert!(!String::from_utf8_lossy(&cached.stdout).contains("blobs"), "the cache never keeps a bad file");
    bad.stop();

    // The lab's mirror stopped: the bundle alone installs the cluster.
    // By the lab's own code: the mirror is a systemd unit only where systemd is the init (not on the lab's hosts).
    let unit = kubeha::lab::mirror::unit_name(&inv.name);
    kubeha::lab::mirror::stop(&unit);
    assert!(kubeha::lab::mirror::running(&unit).is_empty(), "{unit} still runs");
    let offline = inventory_with_source(work.path(), "offline.yaml", &format!("bundle: {}", bundle.display()));
    let started = Instant::now();
    let applied = kubeha(&work.path().join("cache-offline"), &offline, &["apply", "--yes", "--output", "json"]);
    assert!(applied.status.success(), "{}", text(&applied));
    eprintln!("apply from the bundle on 5 fresh machines: {:.1} s", started.elapsed().as_secs_f64());
    let versions = text(&ssh("198.18.0.22", "kubeadm version -o short; kubelet --version; kubectl version --client | head -1"));
    assert_eq!(versions.matches("v1.36.3").count(), 3, "{versions}");
    let etcd = text(&ssh("198.18.0.12", "etcd --version | head -1; cat /var/lib/kubeha/software/etcd.installed"));
    assert!(etcd.contains("etcd Version: 3.6.16") && etcd.contains("artifact 3.6.16 amd64"), "{etcd}");
    let plan = kubeha(&work.path().join("cache-offline"), &offline, &["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(0), "converged: no software step left: {}", text(&plan));
    drop(lab);
}

//! The local lab with real machines: systemd-nspawn, sshd, systemd. Needs root and the lab's Debian
//! packages (debootstrap, systemd-container, iproute2, openssh-client; .ci/run installs them).
//! It uses inventories/lab.yaml, so it replaces a lab named "lab" that is already running.
use assert_cmd::Command;
use std::path::Path;
use std::process::Output;

const INVENTORY: &str = "inventories/lab.yaml";
const STATE: &str = "/var/lib/kubeha/lab/lab";
const HOSTS: &[(&str, &str)] = &[("cp-1", "198.18.0.11"), ("cp-2", "198.18.0.12"), ("cp-3", "198.18.0.13"), ("wk-1", "198.18.0.21"), ("wk-2", "198.18.0.22")];

fn kubeha(args: &[&str]) -> Output {
    Command::cargo_bin("kubeha").unwrap().args(args).args(["-i", INVENTORY]).output().unwrap()
}

fn must(args: &[&str]) -> String {
    let out = kubeha(args);
    assert!(out.status.success(), "kubeha {args:?} failed:\n{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Tears the lab down on every exit path, including a failed assertion.
struct LabGuard;

impl Drop for LabGuard {
    fn drop(&mut self) {
        let _ = kubeha(&["lab", "down"]);
    }
}

/// OpenSSH's own client with strict host-key checking against the lab's known_hosts.
fn ssh(address: &str, known_hosts: &str, command: &str) -> Output {
    std::process::Command::new("ssh")
        .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=3", "-o", "IdentitiesOnly=yes"])
        .args(["-o", &format!("UserKnownHostsFile={known_hosts}"), "-o", "GlobalKnownHostsFile=/dev/null"])
        .args(["-i", &format!("{STATE}/id_ed25519"), &format!("root@{address}"), command])
        .output()
        .unwrap()
}

fn status() -> serde_json::Value {
    serde_json::from_str(&must(&["lab", "status", "--output", "json"])).unwrap()
}

fn machine<'a>(status: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    status.as_array().unwrap().iter().find(|m| m["name"] == name).unwrap()
}

#[test]
fn lab_machines_boot_fail_heal_and_leave_nothing_behind() {
    // Leftovers of an earlier run are recognised by name and cleaned.
    must(&["lab", "down"]);
    let _guard = LabGuard;
    let started = std::time::Instant::now();
    let up = must(&["lab", "up"]);
    eprintln!("lab up: {:.1} s: {up}", started.elapsed().as_secs_f64());
    assert!(up.contains("5 machines running"), "{up}");
    let known_hosts = format!("{STATE}/known_hosts");

    for (name, address) in HOSTS {
        // `--wait` returns once boot finished: "running", or "degraded" if any unit failed.
        let out = ssh(address, &known_hosts, "hostname; timeout 60 systemctl is-system-running --wait");
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(text.lines().collect::<Vec<_>>(), [*name, "running"], "{name}: {text} {}", String::from_utf8_lossy(&out.stderr));
    }
    // kubeha's own transport reaches the lab with nothing else to configure, host keys checked strictly.
    let facts = must(&["facts", "--output", "json"]);
    let facts: serde_json::Value = serde_json::from_str(&facts).unwrap();
    let text = facts.to_string();
    for (name, _) in HOSTS {
        assert!(text.contains(&format!("\"hostname\":\"{name}\"")), "facts lack {name}: {text}");
    }
    // Fresh hosts: kubeha's software phase installs etcd and the Kubernetes programs (tests/lab_apply/).
    assert!(text.contains("\"etcd\":null") && text.contains("\"kubeadm\":null"), "fresh machines carry no etcd or kubeadm: {text}");
    // The lab serves what it built on its loopback mirror, in the upstream layout with upstream-style checksums.
    let inv = kubeha::inventory::load(std::path::Path::new(INVENTORY)).unwrap().inventory.unwrap();
    let kubeadm = kubeha::artifacts::catalogue::file(kubeha::artifacts::Kind::Kubeadm, inv.kubernetes.version, inv.artifacts.arch, vec![]);
    let kubeha::inventory::ArtifactSource::Mirror(mirror) = &inv.artifacts.source else { panic!("the lab inventory names its mirror") };
    let base = kubeha::artifacts::catalogue::Base::Mirror(mirror);
    let sha = std::process::Command::new("curl").args(["-fsS", "--max-time", "10", &kubeadm.checksum_url(base)]).output().unwrap();
    let served = std::process::Command::new("sh").arg("-c").arg(format!("curl -fsS --max-time 30 {} | sha256sum", kubeadm.url(base))).output().unwrap();
    let sha = String::from_utf8_lossy(&sha.stdout).trim().to_string();
    assert!(sha.len() == 64 && String::from_utf8_lossy(&served.stdout).starts_with(&sha), "the mirror serves kubeadm and its checksum: {sha:?} {served:?}");
    // Strictness is real: the same connection without the lab's known_hosts is refused.
    let empty = tempfile::NamedTempFile::new().unwrap();
    let out = ssh("198.18.0.11", &empty.path().to_string_lossy(), "true");
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("Host key verification failed"), "{out:?}");
    // Machines reach each other, and nothing outside the lab.
    let out = ssh("198.18.0.11", &known_hosts, "ping -c1 -W2 198.18.0.22 >/dev/null && echo peer-ok; ip route");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("peer-ok") && !text.contains("default"), "{text}");

    // A crash that lost the state file: the machines are found by name, stopped and booted again.
    std::fs::remove_file(format!("{STATE}/state.json")).unwrap();
    assert!(status().as_array().unwrap().iter().all(|m| m["state"] == "stopped"), "unrecorded machines must not count as ours");
    let recovered = must(&["lab", "up"]);
    assert!(recovered.contains("(5 booted, 0 kept)"), "{recovered}");
    let strays: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).into_owned())
        .filter(|c| c.starts_with("systemd-nspawn") && c.contains(STATE))
        .collect();
    assert_eq!(strays.len(), 5, "exactly one nspawn per machine after recovery: {strays:?}");
    // The rebooted machines have the lab's upstream build bound in again (the programs its runtime runs).
    let out = ssh("198.18.0.13", &known_hosts, "test -x /usr/local/bin/kube-apiserver && test -x /usr/local/bin/kubeha-lab-cri && echo bound");
    assert!(String::from_utf8_lossy(&out.stdout).contains("bound"), "{out:?}");

    must(&["lab", "kill", "cp-2"]);
    assert_eq!(machine(&status(), "cp-2")["state"], "stopped");
    assert!(!ssh("198.18.0.12", &known_hosts, "true").status.success(), "a killed machine must be unreachable");

    must(&["lab", "partition", "wk-1"]);
    let s = status();
    assert_eq!((machine(&s, "wk-1")["state"].as_str(), machine(&s, "wk-1")["link"].as_str()), (Some("running"), Some("partitioned")));
    assert!(!ssh("198.18.0.21", &known_hosts, "true").status.success(), "a partitioned machine must be unreachable");
    // facts: the unreachable host fails and is named, every other host still reports.
    let out = kubeha(&["facts"]);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stderr.contains("wk-1") && !stderr.contains("cp-1"), "{stderr}");
    assert!(stdout.contains("cp-1:") && stdout.contains("wk-2:"), "{stdout}");
    must(&["lab", "heal", "wk-1"]);
    assert!(ssh("198.18.0.21", &known_hosts, "true").status.success(), "a healed machine must be reachable again");

    // up is idempotent: the killed machine comes back on its own disk, the others are kept.
    let again = must(&["lab", "up"]);
    assert!(again.contains("(1 booted, 4 kept)"), "{again}");
    assert!(ssh("198.18.0.12", &known_hosts, "true").status.success());
    for m in status().as_array().unwrap() {
        assert!(m["memoryMib"].as_f64().unwrap() > 1.0, "{m}");
    }

    // A machine made on another image (another package list, another branch's lab) is not kept: its
    // upper layer would shadow the new image with the old one's files. It is made anew, the others kept.
    let out = ssh("198.18.0.13", &known_hosts, "echo old > /root/made-on-the-old-image");
    assert!(out.status.success(), "{out:?}");
    std::fs::write(format!("{STATE}/machines/cp-3/image"), "/var/lib/kubeha/lab/cache/rootfs-0ther\n").unwrap();
    let remade = kubeha(&["lab", "up"]);
    let (stdout, stderr) = (String::from_utf8_lossy(&remade.stdout), String::from_utf8_lossy(&remade.stderr));
    assert!(remade.status.success() && stdout.contains("(1 booted, 4 kept)"), "{stdout}{stderr}");
    assert!(stderr.contains("cp-3 was made on another image"), "{stderr}");
    let out = ssh("198.18.0.13", &known_hosts, "test -e /root/made-on-the-old-image && echo stale || echo fresh");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "fresh", "{out:?}");

    must(&["lab", "down"]);
    assert_nothing_left();
    must(&["lab", "down"]);
}

fn assert_nothing_left() {
    assert!(!Path::new(STATE).exists(), "state folder left");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(STATE), "mount left:\n{mounts}");
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let text = String::from_utf8_lossy(&cmdline);
            assert!(!text.contains(STATE), "process left: {} {text}", entry.file_name().to_string_lossy());
        }
    }
    for link in std::fs::read_dir("/sys/class/net").unwrap().flatten() {
        let name = link.file_name().to_string_lossy().into_owned();
        assert!(!HOSTS.iter().any(|(h, _)| name == format!("vb-{h}")), "link left: {name}");
    }
    for hierarchy in ["/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified", "/sys/fs/cgroup"] {
        if let Ok(entries) = std::fs::read_dir(hierarchy) {
            for e in entries.flatten() {
                assert!(!e.file_name().to_string_lossy().starts_with("kubeha-lab.lab."), "cgroup left: {}", e.path().display());
            }
        }
    }
}

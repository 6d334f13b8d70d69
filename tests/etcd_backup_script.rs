//! The backup script exactly as kubeha renders it (for the lab inventory's cp-1), run against a real
//! three-member etcd on loopback with TLS: its paths come from the environment, pointed into a temporary folder.
//! A snapshot is taken on the leader only, verified, named with its revision, given its .sha256, rotated to
//! keep N; the status file and the Prometheus textfile say so; a follower skips; a failure leaves no partial
//! file and records its error. The etcd members are stopped by PID on every exit path (EtcdCluster's Drop).
mod support;
use kubeha::digest::sha256_hex;
use kubeha::etcd::backup::{self, BackupName, BackupStatus};
use kubeha::inventory;
use kubeha::render::{self, Target, secrets::Secrets, templates::Templates};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use support::etcd_cluster::{EtcdCluster, HEALTHY_WITHIN, Member};

/// The script rendered for cp-1 of the lab inventory: what `kubeha apply` installs there.
fn rendered_script() -> String {
    let loaded = inventory::load(Path::new("inventories/lab.yaml")).unwrap();
    let inv = loaded.inventory.unwrap();
    let files = render::render(&inv, &Secrets::fixed_for_tests(), &Templates::builtin().unwrap()).unwrap();
    let script = files.iter().find(|f| f.path == kubeha::paths::ETCD_BACKUP_SCRIPT && f.target == Target::Host("cp-1".into())).unwrap();
    script.contents.clone()
}

struct Run {
    base: PathBuf,
    script: PathBuf,
    env: PathBuf,
}

impl Run {
    fn backups(&self) -> PathBuf {
        self.base.join("backups")
    }
    fn status_file(&self) -> PathBuf {
        self.base.join("status.json")
    }
    fn textfile(&self) -> PathBuf {
        self.base.join("metrics/etcd-backup.prom")
    }

    /// One run against `endpoint`, keeping `keep`; `path_first` is put before PATH (to shadow a tool).
    fn run(&self, endpoint: &str, keep: usize, path_first: Option<&Path>) -> Output {
        let path = std::env::var("PATH").unwrap_or_default();
        let path = match path_first {
            Some(p) => format!("{}:/usr/local/bin:{path}", p.display()),
            None => format!("/usr/local/bin:{path}"),
        };
        Command::new("sh")
            .arg(&self.script)
            .env("PATH", path)
            .env("KUBEHA_BACKUP_DIR", self.backups())
            .env("KUBEHA_BACKUP_KEEP", keep.to_string())
            .env("KUBEHA_ETCDCTL_ENV", &self.env)
            .env("KUBEHA_ETCD_ENDPOINT", endpoint)
            .env("KUBEHA_BACKUP_STATUS", self.status_file())
            .env("KUBEHA_BACKUP_TEXTFILE", self.textfile())
            .output()
            .unwrap()
    }

    fn status(&self) -> BackupStatus {
        backup::parse_status(&std::fs::read_to_string(self.status_file()).unwrap()).unwrap()
    }

    /// Every file in the backup folder, sorted.
    fn files(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.backups()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    }

    fn snapshots(&self) -> Vec<String> {
        self.files().into_iter().filter(|n| backup::is_backup_name(n)).collect()
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn text(out: &Output) -> String {
    format!("status {}\nstdout {}\nstderr {}", out.status, String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Which member leads, asked of each member about itself (as the script does).
fn leader_and_follower(c: &EtcdCluster) -> (usize, usize) {
    let mut leader = None;
    let mut follower = None;
    for (i, m) in c.members.iter().enumerate() {
        let out = c.etcdctl(&[m], &["endpoint", "status", "-w", "json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let status = &v[0]["Status"];
        if status["header"]["member_id"] == status["leader"] {
            leader = Some(i);
        } else {
            follower = Some(i);
        }
    }
    (leader.expect("a leader"), follower.expect("a follower"))
}

fn put(c: &EtcdCluster, key: &str) {
    let all: Vec<&Member> = c.members.iter().collect();
    assert!(c.etcdctl(&all, &["put", key, "value"]).status.success());
}

#[test]
fn the_rendered_backup_script_snapshots_on_the_leader_verifies_rotates_and_reports() {
    let c = EtcdCluster::start(&["b1", "b2", "b3"], 111, 23850);
    assert!(c.wait_healthy(HEALTHY_WITHIN));
    for i in 0..20 {
        put(&c, &format!("key-{i}"));
    }
    let base = c.dir.path().to_path_buf();
    let file = |name: &str| base.join(name).to_string_lossy().into_owned();
    let env = base.join("etcdctl.env");
    std::fs::write(&env, format!("ETCDCTL_CACERT={}\nETCDCTL_CERT={}\nETCDCTL_KEY={}\n", file("ca.crt"), file("client.crt"), file("client.key"))).unwrap();
    let script = base.join("etcd-backup");
    std::fs::write(&script, rendered_script()).unwrap();
    let run = Run { base: base.clone(), script, env };
    let (leader, follower) = leader_and_follower(&c);
    let leader_url = c.client_url(&c.members[leader]);

    // First run on the leader: one verified snapshot with its checksum, status and textfile.
    let before = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let out = run.run(&leader_url, 2, None);
    assert!(out.status.success(), "{}", text(&out));
    let first = run.snapshots();
    assert_eq!(first.len(), 1, "{:?}", run.files());
    let name = &first[0];
    assert_eq!(run.files(), [name.clone(), backup::checksum_name(name)], "nothing else is left in the folder");
    let parsed = BackupName::parse(name).unwrap();
    let snapshot = run.backups().join(name);
    let bytes = std::fs::read(&snapshot).unwrap();
    let checksum = std::fs::read_to_string(run.backups().join(backup::checksum_name(name))).unwrap();
    assert_eq!(checksum, format!("{}  {name}\n", sha256_hex(&bytes)), "sha256sum's format, for `sha256sum -c`");
    let verified = Command::new("/usr/local/bin/etcdutl").arg("snapshot").arg("status").arg(&snapshot).args(["-w", "json"]).output().unwrap();
    let verified: serde_json::Value = serde_json::from_slice(&verified.stdout).unwrap();
    assert_eq!(verified["revision"].as_i64(), Some(parsed.revision), "the revision in the name is the snapshot's");
    assert_eq!((mode(&run.backups()), mode(&snapshot), mode(&run.backups().join(backup::checksum_name(name)))), (0o700, 0o600, 0o600));
    let status = run.status();
    assert_eq!((status.result.as_deref(), status.last_error.as_deref()), (Some("ok"), None));
    let success = status.last_success.clone().unwrap();
    assert_eq!(
        (success.file.as_str(), success.revision, success.size, success.sha256.as_str()),
        (name.as_str(), parsed.revision, bytes.len() as u64, sha256_hex(&bytes).as_str())
    );
    assert_eq!(success.total_keys, verified["totalKey"].as_u64().unwrap());
    assert!(success.unix >= before && success.unix <= before + 60, "{} vs {before}", success.unix);
    let prom = std::fs::read_to_string(run.textfile()).unwrap();
    let metric = kubeha::monitoring::rules::BACKUP_METRIC;
    assert!(prom.ends_with(&format!("\n{metric} {}\n", success.unix)), "{prom}");
    assert!(prom.contains(&format!("# TYPE {metric} gauge\n")), "{prom}");
    assert_eq!(mode(&run.textfile()), 0o644, "kubeha-metrics reads it as nobody");

    // Two more runs (a second apart: names carry the second) keep the newest two, each with its checksum.
    for key in ["after-1", "after-2"] {
        std::thread::sleep(std::time::Duration::from_millis(1100));
        put(&c, key);
        let out = run.run(&leader_url, 2, None);
        assert!(out.status.success(), "{}", text(&out));
    }
    let kept = run.snapshots();
    assert_eq!(kept.len(), 2, "{:?}", run.files());
    assert!(!kept.contains(name), "the oldest was rotated away");
    assert_eq!(run.files().len(), 4, "each kept backup with its .sha256 and nothing else: {:?}", run.files());
    let newest = run.status().last_success.unwrap();
    assert_eq!(&newest.file, kept.last().unwrap());
    assert!(BackupName::parse(&newest.file).unwrap().revision > parsed.revision);

    // The listing kubeha reads over SSH, run here on the same folder, parses to the same backups.
    let listing = Command::new("sh").arg("-c").arg(kubeha::phases::backup::listing_script(&run.backups().to_string_lossy())).output().unwrap();
    let listed = backup::parse_listing(&String::from_utf8_lossy(&listing.stdout)).unwrap();
    assert_eq!(listed.backups.iter().map(|b| b.name.clone()).collect::<Vec<_>>(), kept);
    assert_eq!(listed.backups[1].sha256.as_deref(), Some(newest.sha256.as_str()));

    // A follower records the skip, succeeds, and leaves the backups and the last success alone.
    let out = run.run(&c.client_url(&c.members[follower]), 2, None);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("skipped: not the leader"), "{}", text(&out));
    let status = run.status();
    assert_eq!((status.result.as_deref(), status.message.as_deref()), (Some("skipped"), Some("skipped: not the leader")));
    assert_eq!(status.last_success.as_ref(), Some(&newest));
    assert_eq!(run.snapshots(), kept);

    // An endpoint nobody answers: non-zero, the error recorded, nothing partial, the last success kept.
    let out = run.run("https://127.0.0.1:1", 2, None);
    assert!(!out.status.success(), "{}", text(&out));
    let status = run.status();
    assert_eq!(status.result.as_deref(), Some("failed"));
    assert!(status.last_error.as_deref().unwrap_or_default().contains("etcdctl endpoint status on https://127.0.0.1:1"), "{status:?}");
    assert_eq!(status.last_success.as_ref(), Some(&newest));
    assert_eq!(run.files().len(), 4, "{:?}", run.files());

    // A snapshot that does not verify (etcdutl shadowed by one that refuses it) is never kept under any name.
    let bin = base.join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::fs::write(bin.join("etcdutl"), "#!/bin/sh\necho 'Error: invalid database' >&2\nexit 1\n").unwrap();
    std::fs::set_permissions(bin.join("etcdutl"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let out = run.run(&leader_url, 2, Some(&bin));
    assert!(!out.status.success(), "{}", text(&out));
    let status = run.status();
    assert_eq!(status.last_error.as_deref(), Some("etcdutl snapshot status: Error: invalid database"), "{status:?}");
    assert_eq!(run.snapshots(), kept, "no new backup");
    assert_eq!(run.files().len(), 4, "no partial snapshot or checksum left: {:?}", run.files());
    assert_eq!(
        std::fs::read_to_string(run.textfile()).unwrap().lines().last().unwrap(),
        format!("{metric} {}", newest.unix),
        "the textfile still says the last success"
    );
}

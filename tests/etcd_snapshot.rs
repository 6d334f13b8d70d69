//! Snapshot save, verify, rotation, download and the restore's data steps exactly as kubeha runs them: over
//! a real SSH connection (sshd on loopback, login user with sudo) against a real etcd cluster (Debian's etcd
//! 3.4) on loopback. PID 1 is not systemd here, so the restore's `systemctl stop/start etcd` is left to the
//! lab; this test starts etcd on the restored data directory itself, and grows the cluster back the way
//! `kubeha apply` does (learner, then promote).
mod support;
use kubeha::digest::sha256_hex;
use kubeha::etcd::gate::working_quorum;
use kubeha::etcd::snapshot::{RestoreSpec, Tool};
use kubeha::phases::restore;
use kubeha::phases::snapshot::{self, Layout};
use kubeha::ssh::bastion::Connector;
use kubeha::ssh::{Command, ConnectOptions, Transport};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};
use support::etcd_cluster::{EtcdCluster, HEALTHY_WITHIN, Member};
use support::sshd::{ADMIN_USER, TestSshd, admin_user};

fn get(c: &EtcdCluster, member: usize, key: &str) -> String {
    let out = c.etcdctl(&[&c.members[member]], &["get", key, "--print-value-only"]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread")]
async fn snapshot_save_download_and_one_member_restore_over_ssh() {
    let _admin = admin_user("snapshot_save_download_and_one_member_restore_over_ssh");
    let mut c = EtcdCluster::start(&["s1", "s2", "s3"], 91, 23830);
    assert!(c.wait_healthy(HEALTHY_WITHIN));
    let all: Vec<&Member> = c.members.iter().collect();
    for i in 0..100 {
        assert!(c.etcdctl(&all, &["put", &format!("key-{i}"), &format!("value-{i}")]).status.success());
    }
    let base = c.dir.path().to_path_buf();
    let file = |name: &str| base.join(name).to_string_lossy().into_owned();
    std::fs::write(
        base.join("etcdctl.env"),
        format!("ETCDCTL_API=3\nETCDCTL_CACERT={}\nETCDCTL_CERT={}\nETCDCTL_KEY={}\n", file("ca.crt"), file("client.crt"), file("client.key")),
    )
    .unwrap();
    let layout = Layout {
        etcdctl_env: file("etcdctl.env"),
        endpoint: c.client_url(&c.members[0]),
        snapshot_dir: file("snapshots"),
        data_dir: file("s1.data"),
        restore_dir: file("restore"),
    };

    // Older snapshots, an operator's own file and a stale `.part` from a killed run are already there.
    let dir = base.join("snapshots");
    std::fs::create_dir(&dir).unwrap();
    for d in 1..=5 {
        std::fs::write(dir.join(format!("2026110{d}T000000Z-before-add-cp-{d}.db")), b"old").unwrap();
    }
    std::fs::write(dir.join("mine.db"), b"keep me").unwrap();
    std::fs::write(dir.join("20261101T000000Z-manual.db.part"), b"interrupted").unwrap();
    assert!(std::process::Command::new("touch").args(["-d", "2 hours ago"]).arg(dir.join("20261101T000000Z-manual.db.part")).status().unwrap().success());

    let sshd = TestSshd::start("127.0.0.39");
    let opts = ConnectOptions { connect_timeout: Duration::from_secs(10), ..Default::default() };
    let s1 = Connector::new().connect(&sshd.target("s1", ADMIN_USER), &opts).await.expect("connect");

    let started = Instant::now();
    let info = snapshot::save_with(&s1, "before-remove s2", &layout).await.unwrap();
    eprintln!("save + verify + rotate over SSH: {:.3} s ({} bytes)", started.elapsed().as_secs_f64(), info.size_bytes);
    let name = info.path.rsplit('/').next().unwrap().to_string();
    assert!(name.ends_with("Z-before-remove-s2.db"), "{name}");
    assert_eq!(info.host, "s1");
    assert!(info.revision >= 101, "{info:?}");
    assert_eq!(info.removed, vec!["20261101T000000Z-before-add-cp-1.db"]);
    assert_eq!(mode(&dir), 0o700);
    let taken = Path::new(&info.path);
    assert_eq!((mode(taken), std::fs::metadata(taken).unwrap().uid()), (0o600, 0));
    assert_eq!(info.size_bytes, std::fs::metadata(taken).unwrap().len());
    let mut left: Vec<String> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    left.sort();
    assert_eq!(left.len(), 6, "four older + the new one + mine.db, and no .part: {left:?}");
    assert!(left.contains(&"mine.db".to_string()) && !left.iter().any(|n| n.ends_with(".part")), "{left:?}");

    // Again in the same second: a new name, and still five of ours.
    let second = snapshot::save_with(&s1, "before-remove s2", &layout).await.unwrap();
    assert_ne!(second.path, info.path);
    assert_eq!(second.removed.len(), 1);

    let bytes = snapshot::download(&s1, &info).await.unwrap();
    assert_eq!(sha256_hex(&bytes), info.sha256);

    // A file etcd cannot read is refused, with the host and the command named.
    let garbage = base.join("restore-garbage.db");
    std::fs::write(&garbage, b"not a database").unwrap();
    // etcd 3.6 (the supported etcd these tests run) has `snapshot status` in etcdutl only.
    let err = snapshot::status(&s1, Tool::Etcdutl, &garbage.to_string_lossy()).await.unwrap_err().to_string();
    assert!(err.starts_with(&format!("s1: `etcdutl snapshot status {} -w json` failed:", garbage.display())), "{err}");
    assert!(err.contains("invalid database"), "{err}");

    // Written after the snapshot: the restore must not have it.
    assert!(c.etcdctl(&all, &["put", "after-snapshot", "lost"]).status.success());
    assert!(working_quorum(&c.view()).is_ok(), "a healthy cluster has quorum; restore refuses it");
    c.stop(1);
    c.stop(2);
    let lost = working_quorum(&c.view()).unwrap_err();
    // The survivor answers, but without a quorum its own health check fails too.
    assert!(lost.to_string().starts_with("only 0 of 3 voting members are healthy, 2 are needed"), "{lost}");
    c.stop(0);

    // The restore's data steps on the seed, over SSH.
    let started = Instant::now();
    let uploaded = restore::upload(&s1, &layout, &bytes).await.unwrap();
    assert_eq!(mode(Path::new(&uploaded)), 0o600);
    let status = restore::verify(&s1, Tool::Etcdutl, &uploaded, &info.sha256).await.unwrap();
    assert_eq!((status.revision, status.total_keys), (info.revision, info.total_keys));
    let stamp = "20261125T161702Z";
    let aside = restore::set_aside(&s1, &layout, stamp).await.unwrap().expect("the old data was there");
    assert!(Path::new(&aside).join("member").is_dir() && !Path::new(&layout.data_dir).exists());
    let peer = c.peer_url(&c.members[0]);
    let spec = RestoreSpec { snapshot: &uploaded, name: "s1", peer_url: &peer, token: "restored-1", data_dir: &layout.data_dir, bump_revision: false };
    restore::restore(&s1, &layout, Tool::Etcdutl, false, &spec, stamp).await.unwrap();
    eprintln!("upload + verify + set aside + restore over SSH: {:.3} s", started.elapsed().as_secs_f64());
    assert!(Path::new(&layout.data_dir).join("member").is_dir());
    // Never over existing data: a second restore, or a set-aside onto the same name, is refused.
    let err = restore::restore(&s1, &layout, Tool::Etcdutl, false, &spec, stamp).await.unwrap_err().to_string();
    assert!(err.contains("exists: it must be moved aside first"), "{err}");
    let err = restore::set_aside(&s1, &layout, stamp).await.unwrap_err().to_string();
    assert!(err.contains("exists already"), "{err}");

    // etcd starts from the restored directory alone (the initial-cluster flags are ignored with data present).
    let solo = format!("s1={peer}");
    c.spawn(0, &solo, "new");
    assert!(c.wait_healthy(HEALTHY_WITHIN));
    assert_eq!(get(&c, 0, "key-42"), "value-42");
    assert_eq!(get(&c, 0, "after-snapshot"), "", "a write after the snapshot came back");
    let v = c.view();
    assert_eq!(v.members.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(), vec!["s1"]);
    let count = snapshot::count_keys(&s1, &layout).await.unwrap();
    assert_eq!((count.keys, count.revision), (100, info.revision));

    // Growing back as apply does: s2's old data set aside, then learner, start, promote.
    let s2_layout = Layout { data_dir: file("s2.data"), ..layout.clone() };
    assert!(restore::set_aside(&s1, &s2_layout, stamp).await.unwrap().is_some());
    let s2_peer = c.peer_url(&c.members[1]);
    let add = c.etcdctl(&[&c.members[0]], &["member", "add", "s2", "--learner", "--peer-urls", &s2_peer]);
    assert!(add.status.success(), "{add:?}");
    c.spawn(1, &format!("{solo},s2={s2_peer}"), "existing");
    let id = c.view().members.iter().find(|m| m.is_learner).map(|m| m.id).expect("learner s2");
    let promoted = (0..100).any(|_| {
        let ok = c.etcdctl(&[&c.members[0]], &["member", "promote", &format!("{id:x}")]).status.success();
        if !ok {
            std::thread::sleep(Duration::from_millis(200));
        }
        ok
    });
    assert!(promoted, "learner s2 was never promoted");
    assert!(c.wait_healthy(HEALTHY_WITHIN));
    assert_eq!(get(&c, 1, "key-99"), "value-99", "the re-added member serves the restored data");
    assert!(working_quorum(&c.view()).is_ok());

    // The uploaded copy and the set-aside data stay for the operator; nothing left over by the test's own steps.
    let out = s1.run(&Command::argv(["ls", "-A", &layout.restore_dir])).await.unwrap().stdout_text();
    assert_eq!(out.trim(), uploaded.rsplit('/').next().unwrap());
}

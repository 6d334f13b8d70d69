//! `kubeha etcd backups pull` over real SSH (two sshd on loopback, each standing for a control plane with its own
//! backup folder, login user with sudo): what is new is copied and checked against its .sha256, what the folder has is skipped, a
//! download whose checksum does not match is refused and leaves nothing, and retention keeps the newest N
//! there, deleting only kubeha's backup names. The sshd are stopped by PID when the test ends (TestSshd's Drop).
mod support;
use kubeha::backups::pull;
use kubeha::digest::sha256_hex;
use kubeha::ssh::bastion::Connector;
use kubeha::ssh::{ConnectOptions, Transport};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;
use support::sshd::{ADMIN_USER, TestSshd, admin_user};

fn backup(dir: &Path, name: &str, bytes: &[u8], checksum_of: &[u8]) {
    std::fs::write(dir.join(name), bytes).unwrap();
    std::fs::write(dir.join(format!("{name}.sha256")), format!("{}  {name}\n", sha256_hex(checksum_of))).unwrap();
}

fn names(dir: &Path) -> Vec<String> {
    let mut n: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    n.sort();
    n
}

const R10: &str = "etcd-20261203T100000Z-r10.db";
const R20: &str = "etcd-20261203T110000Z-r20.db";
const R30: &str = "etcd-20261203T120000Z-r30.db";
const R40: &str = "etcd-20261203T130000Z-r40.db";
const R5: &str = "etcd-20261202T090000Z-r5.db";

#[tokio::test(flavor = "multi_thread")]
async fn pull_is_incremental_checked_and_keeps_the_newest_n() {
    let _admin = admin_user("pull_is_incremental_checked_and_keeps_the_newest_n");
    // The backup folder "on" each control plane (the same path on both, as on real hosts).
    let on_a = tempfile::tempdir().unwrap();
    let on_b = tempfile::tempdir().unwrap();
    backup(on_a.path(), R10, b"rev 10", b"rev 10");
    backup(on_a.path(), R20, b"rev 20", b"rev 20");
    backup(on_b.path(), R20, b"rev 20", b"rev 20");
    backup(on_b.path(), R30, b"rev 30", b"rev 30");
    backup(on_b.path(), R40, b"rev 40, damaged", b"rev 40");
    std::fs::write(on_b.path().join("notes.txt"), b"not a backup").unwrap();

    let sshd_a = TestSshd::start("127.0.0.41");
    let sshd_b = TestSshd::start("127.0.0.42");
    let opts = ConnectOptions { connect_timeout: Duration::from_secs(10), ..Default::default() };
    let a = Connector::new().connect(&sshd_a.target("cp-1", ADMIN_USER), &opts).await.expect("connect cp-1");
    let b = Connector::new().connect(&sshd_b.target("cp-2", ADMIN_USER), &opts).await.expect("connect cp-2");

    // Both "hosts" are this machine: each pull below asks one of them, about the folder standing for its own.
    let (dir_a, dir_b) = (on_a.path().to_string_lossy().into_owned(), on_b.path().to_string_lossy().into_owned());
    let local = tempfile::tempdir().unwrap();
    let out = local.path().join("pulled");
    std::fs::create_dir(&out).unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o700)).unwrap();
    backup(&out, R5, b"rev 5", b"rev 5");
    backup(&out, R20, b"rev 20", b"rev 20");
    std::fs::write(out.join("mine.txt"), b"the operator's").unwrap();

    // First pull, keeping 2: R40 fails its check, R30 is copied, R20 is there already, and the folder is
    // pruned to the newest two of what it has.
    let hosts_a: Vec<(String, &dyn Transport)> = vec![("cp-1".into(), &a)];
    let hosts_b: Vec<(String, &dyn Transport)> = vec![("cp-2".into(), &b)];
    let (report, problems) = pull(&hosts_b, &dir_b, 2, &out).await.unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(report.copied.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), [R30]);
    assert_eq!(report.copied[0].sha256, sha256_hex(b"rev 30"));
    assert_eq!(report.failed.len(), 1, "{report:?}");
    assert!(report.failed[0].contains(R40) && report.failed[0].contains("its .sha256 says"), "{report:?}");
    assert_eq!(report.pruned, [R5], "the newest two there are R30 and R20");
    let expected = [R20.to_string(), format!("{R20}.sha256"), R30.to_string(), format!("{R30}.sha256"), "mine.txt".into()];
    assert_eq!(names(&out), expected, "nothing of R40, no temporary file, the operator's file kept");
    assert_eq!(std::fs::read(out.join(R30)).unwrap(), b"rev 30");
    assert_eq!(std::fs::metadata(out.join(R30)).unwrap().permissions().mode() & 0o777, 0o600);

    // The damaged one repaired on the host: the second pull copies only it (R30 is already there), and R20
    // falls out of the newest two.
    backup(on_b.path(), R40, b"rev 40", b"rev 40");
    let (report, _) = pull(&hosts_b, &dir_b, 2, &out).await.unwrap();
    assert_eq!(report.copied.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), [R40]);
    assert!(report.skipped.contains(&(R30.to_string(), "already here, sha256 matches")), "{report:?}");
    assert!(report.failed.is_empty(), "{report:?}");
    assert_eq!(report.pruned, [R20]);

    // From the other control plane, with a larger retention: only what the folder does not have.
    let (report, _) = pull(&hosts_a, &dir_a, 4, &out).await.unwrap();
    assert_eq!(report.copied.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), [R10, R20]);
    assert_eq!(report.copied[1].host, "cp-1");
    assert!(report.pruned.is_empty());
    let kept: Vec<String> = names(&out).into_iter().filter(|n| n.ends_with(".db")).collect();
    assert_eq!(kept, [R10, R20, R30, R40]);
    for n in &kept {
        let sha = std::fs::read_to_string(out.join(format!("{n}.sha256"))).unwrap();
        assert_eq!(sha, format!("{}  {n}\n", sha256_hex(&std::fs::read(out.join(n)).unwrap())), "{n}");
    }
    drop((a, b));
    drop((sshd_a, sshd_b));
}

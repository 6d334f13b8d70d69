//! The lab's download mirror as `kubeha lab up` runs it (src/lab/mirror.rs), against this host's service manager
//! and the real build of lab/upstream/build.sh, without booting any machine. Needs root (as the lab does) and the
//! build (built on first use, cached). It uses its own cluster name and free ports, so a lab in use is untouched.
use kubeha::artifacts::checksum::{self, Algorithm};
use kubeha::lab::mirror::{self, Service};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const CLUSTER: &str = "mirror-test";

/// Stops the test's mirror on every exit path, panics included.
struct StopOnDrop(String);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        mirror::stop(&self.0);
    }
}

fn build() -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("lab/upstream/build.sh");
    let out = Command::new("bash").arg(&script).stderr(Stdio::inherit()).output().unwrap();
    assert!(out.status.success(), "{} failed", script.display());
    PathBuf::from(String::from_utf8(out.stdout).unwrap().lines().last().unwrap().trim())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_for_listener(port: u16) {
    for _ in 0..100 {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listens on 127.0.0.1:{port} after 5 s");
}

/// (status, body) of a GET with curl, bounded in time.
fn get(port: u16, path: &str) -> (u16, Vec<u8>) {
    let out = Command::new("curl").args(["-sS", "--max-time", "10", "-w", "\n%{http_code}", &format!("http://127.0.0.1:{port}/{path}")]).output().unwrap();
    assert!(out.status.success(), "curl: {}", String::from_utf8_lossy(&out.stderr));
    let split = out.stdout.iter().rposition(|b| *b == b'\n').unwrap();
    (String::from_utf8_lossy(&out.stdout[split + 1..]).parse().unwrap(), out.stdout[..split].to_vec())
}

/// Fetches a file and its checksum file and checks them with kubeha's own checksum code, as the software
/// phase will.
fn fetch_verified(port: u16, dir: &Path, path: &str, checksum_path: &str) {
    let (status, body) = get(port, path);
    assert_eq!(status, 200, "{path}");
    let file = dir.join(path.rsplit('/').next().unwrap());
    std::fs::write(&file, body).unwrap();
    let (status, sums) = get(port, checksum_path);
    assert_eq!(status, 200, "{checksum_path}");
    let name = file.file_name().unwrap().to_str().unwrap();
    let expected = checksum::find_in_file(&String::from_utf8(sums).unwrap(), name, Algorithm::Sha256).unwrap();
    assert!(expected.matches(&checksum::hash_file(&file, Algorithm::Sha256).unwrap()), "{path} does not match {checksum_path}");
}

#[test]
fn the_mirror_starts_serves_is_replaced_and_stops() {
    assert!(nix::unistd::geteuid().is_root(), "this test runs as root (CI does): the lab's services need it");
    let build = build();
    let logs = tempfile::tempdir().unwrap();
    let unit = mirror::unit_name(CLUSTER);
    let _guard = StopOnDrop(unit.clone());
    mirror::stop(&unit);
    let (first, second) = (free_port(), free_port());
    let service = |port| Service::new(CLUSTER, &build, port, logs.path().join("mirror.log"));

    // A crashed run's leftover, started by hand under the unit's name, is recognised and kept as it is.
    let leftover = service(first);
    let mut leftover_process = Command::new(build.join(mirror::PROGRAM))
        .args(["-name", &unit, "-root", &leftover.root.to_string_lossy(), "-listen", &format!("127.0.0.1:{first}")])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let leftover_pid = leftover_process.id();
    wait_for_listener(first);
    assert!(!mirror::ensure(&leftover).unwrap(), "the same command on the same port is kept");
    assert_eq!(mirror::running(&unit), [leftover_pid]);

    // The upstream layout, checked by kubeha's checksum parser, for every file of both release sets (the current
    // one and the previous one, for the upgrade test); folders and missing files are 404.
    let manifest = std::fs::read_to_string(leftover.root.join("MANIFEST")).unwrap();
    let files: Vec<&str> = manifest.lines().collect();
    let kubeadm = files.iter().find(|p| p.ends_with("/kubeadm")).unwrap();
    let tarballs: Vec<&&str> = files.iter().filter(|p| p.ends_with(".tar.gz")).collect();
    assert_eq!(tarballs.len(), 2, "one etcd tarball per release set: {files:?}");
    assert_eq!(files.iter().filter(|p| p.ends_with("/kubeadm")).count(), 2, "one kubeadm per release set: {files:?}");
    for path in files.iter().filter(|p| !p.ends_with(".sha256") && !p.ends_with("/SHA256SUMS")) {
        let checksum_path = match path.strip_suffix(".tar.gz") {
            Some(_) => format!("{}/SHA256SUMS", path.rsplit_once('/').unwrap().0),
            None => format!("{path}.sha256"),
        };
        fetch_verified(first, logs.path(), path, &checksum_path);
    }
    assert_eq!(get(first, "release/").0, 404);
    assert_eq!(get(first, "release/v0.0.0/bin/linux/amd64/kubeadm").0, 404);

    // Another port (or build folder) replaces the running mirror.
    let moved = service(second);
    assert!(mirror::ensure(&moved).unwrap(), "a mirror on another port is restarted");
    let now = mirror::running(&unit);
    assert_eq!(now.len(), 1);
    assert_ne!(now[0], leftover_pid);
    assert!(leftover_process.wait().unwrap().success(), "the leftover ends cleanly on SIGTERM");
    assert_eq!(get(second, &format!("{kubeadm}.sha256")).0, 200);
    assert!(TcpListener::bind(("127.0.0.1", first)).is_ok(), "the old port is free again");

    // A port held by another program is named, and nothing of ours is left running.
    mirror::stop(&unit);
    let holder = TcpListener::bind(("127.0.0.1", first)).unwrap();
    let err = mirror::ensure(&service(first)).unwrap_err().to_string();
    assert!(err.contains(&format!("port {first} on 127.0.0.1 is held by another program")), "{err}");
    drop(holder);
    assert!(mirror::running(&unit).is_empty());

    // Stopping is by name and tolerates an absent mirror.
    assert!(mirror::ensure(&service(second)).unwrap());
    mirror::stop(&unit);
    mirror::stop(&unit);
    assert!(mirror::running(&unit).is_empty());
    assert!(TcpListener::bind(("127.0.0.1", second)).is_ok());
}

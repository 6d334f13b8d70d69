//! The lab's download mirror: kubeha-lab-mirror serving the build folder's mirror/ (etcd and Kubernetes in the
//! upstream download layout, laid out by lab/upstream/build.sh) on a loopback port, so that a lab inventory with
//! `spec.artifacts.mirror: http://127.0.0.1:PORT` installs the machines through the same download and checksum
//! code as a real site. kubeha downloads on the operator's machine, so loopback is all the mirror needs.
//!
//! The mirror runs as the transient systemd unit `kubeha-lab-mirror-CLUSTER.service` where systemd is the host's
//! init, and otherwise (these lab hosts: PID 1 is not systemd) as a detached process, like the machines. Either
//! way it carries that unit name in its command line (`-name`), which is how it is found again: after a crash,
//! a rebuild or a port change it is recognised, and only a process carrying our name is ever stopped.
use super::system::{self, wait_until};
use crate::artifacts::catalogue;
use crate::inventory::{ArtifactSource, Inventory};
use anyhow::{Context, Result, bail};
use nix::sys::signal::Signal;
use serde::Serialize;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

pub const PROGRAM: &str = "kubeha-lab-mirror";
/// The list of served files build.sh writes into mirror/; the mirror serves it too, which makes it the
/// readiness probe that also proves the server on the port serves this very build.
const MANIFEST: &str = "MANIFEST";
const READY_WITHIN: Duration = Duration::from_secs(10);
const STOP_WITHIN: Duration = Duration::from_secs(5);

/// What a lab inventory asks of the mirror: its port, and the paths its hosts will download.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wanted {
    pub port: u16,
    pub url: String,
    pub paths: Vec<String>,
}

impl Wanted {
    /// The mirror the lab serves, if the inventory's `spec.artifacts.mirror` is plain http on loopback (127.0.0.1
    /// or localhost) at the root with an explicit port. Any other mirror is the operator's own and not the lab's.
    pub fn from_inventory(inv: &Inventory) -> Result<Option<Wanted>> {
        let ArtifactSource::Mirror(url) = &inv.artifacts.source else { return Ok(None) };
        let Some(port) = loopback_port(url)? else { return Ok(None) };
        let paths = catalogue::needed(inv).into_iter().flat_map(|a| [a.path, a.checksum_path]).collect();
        Ok(Some(Wanted { port, url: url.clone(), paths }))
    }
}

fn loopback_port(url: &str) -> Result<Option<u16>> {
    let Ok(parsed) = reqwest::Url::parse(url) else { return Ok(None) };
    let loopback = matches!(parsed.host_str(), Some("127.0.0.1" | "localhost"));
    if parsed.scheme() != "http" || !loopback {
        return Ok(None);
    }
    if !parsed.path().trim_end_matches('/').is_empty() {
        bail!("spec.artifacts.mirror {url}: the lab's mirror serves its files at the root; drop the path {}", parsed.path());
    }
    match parsed.port() {
        Some(port) if port >= 1024 => Ok(Some(port)),
        _ => bail!("spec.artifacts.mirror {url}: name a port of 1024 or above (the lab's mirror runs without privileges), e.g. http://127.0.0.1:18480"),
    }
}

/// The mirror kubeha serves for one lab, as `lab up` reports it.
#[derive(Clone, Debug, Serialize)]
pub struct Served {
    pub url: String,
    pub unit: String,
    pub root: PathBuf,
    /// False when a mirror of this build on this port was already running and was kept.
    pub started: bool,
    /// Paths the inventory needs that this build does not serve (crictl, say: the lab builds only etcd and Kubernetes).
    pub missing: Vec<String>,
}

pub fn unit_name(cluster: &str) -> String {
    format!("{PROGRAM}-{cluster}.service")
}

/// One mirror service: its name and the exact command line it runs.
#[derive(Clone, Debug)]
pub struct Service {
    pub unit: String,
    pub root: PathBuf,
    pub port: u16,
    argv: Vec<String>,
    /// Where a detached mirror writes its request log (a systemd unit logs to the journal).
    log: PathBuf,
}

impl Service {
    /// The mirror of `build` (a folder made by build.sh) for `cluster` on 127.0.0.1:`port`.
    pub fn new(cluster: &str, build: &Path, port: u16, log: PathBuf) -> Self {
        let unit = unit_name(cluster);
        let root = build.join("mirror");
        let argv = vec![
            build.join(PROGRAM).to_string_lossy().into_owned(),
            "-name".into(),
            unit.clone(),
            "-root".into(),
            root.to_string_lossy().into_owned(),
            "-listen".into(),
            SocketAddrV4::new(Ipv4Addr::LOCALHOST, port).to_string(),
        ];
        Service { unit, root, port, argv, log }
    }

    fn address(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }
}

/// Makes `service` run and answer: a mirror of ours already running exactly this command is kept, one running
/// anything else (another build folder, another port, a crashed run's leftover) is stopped and started again.
/// Returns whether it was started.
pub fn ensure(service: &Service) -> Result<bool> {
    let manifest = std::fs::read(service.root.join(MANIFEST))
        .with_context(|| format!("cannot read {}/{MANIFEST}; lab/upstream/build.sh writes it", service.root.display()))?;
    let ours = running(&service.unit);
    if ours.len() == 1 && system::cmdline(ours[0]).as_ref() == Some(&service.argv) && answers(service.address(), &manifest) {
        return Ok(false);
    }
    stop(&service.unit);
    if TcpListener::bind(service.address()).is_err() {
        bail!(
            "port {} on 127.0.0.1 is held by another program, so the lab cannot serve its mirror there; stop that program or choose another port in spec.artifacts.mirror",
            service.port
        );
    }
    start(service)?;
    if !wait_until(READY_WITHIN, || answers(service.address(), &manifest)) {
        let logs = logs_hint(service);
        stop(&service.unit);
        bail!("the lab's mirror {} did not answer on 127.0.0.1:{} within {} s; {logs}", service.unit, service.port, READY_WITHIN.as_secs());
    }
    Ok(true)
}

/// Stops the mirror of that unit name, if any runs; a mirror that is absent is no error.
pub fn stop(unit: &str) {
    if systemd_is_init() {
        // Fails for a unit that is not loaded: absent is what we want.
        let _ = system::run("systemctl", &["stop", unit]);
        let _ = system::run("systemctl", &["reset-failed", unit]);
    }
    let pids = running(unit);
    for pid in &pids {
        system::signal(*pid, Signal::SIGTERM);
    }
    if !wait_until(STOP_WITHIN, || pids.iter().all(|p| !system::alive(*p))) {
        for pid in &pids {
            system::signal(*pid, Signal::SIGKILL);
        }
        // Gone before the caller checks its port.
        wait_until(STOP_WITHIN, || pids.iter().all(|p| !system::alive(*p)));
    }
}

/// The processes that are a mirror started under this unit name: the program, with `-name UNIT` in its
/// arguments. Nothing else is ever signalled.
pub fn running(unit: &str) -> Vec<u32> {
    system::pids().into_iter().filter(|p| system::alive(*p)).filter(|p| system::cmdline(*p).is_some_and(|args| is_mirror_named(&args, unit))).collect()
}

fn is_mirror_named(args: &[String], unit: &str) -> bool {
    let program = args.first().and_then(|a| Path::new(a).file_name()).is_some_and(|n| n == PROGRAM);
    program && args.windows(2).any(|w| w[0] == "-name" && w[1] == unit)
}

/// sd_booted(3): systemd is the init only if it made this folder.
fn systemd_is_init() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

fn start(service: &Service) -> Result<()> {
    if systemd_is_init() {
        let mut args = vec![format!("--unit={}", service.unit), "--collect".into(), "--quiet".into()];
        args.extend(HARDENING.iter().map(|p| format!("--property={p}")));
        args.push("--".into());
        args.extend(service.argv.iter().cloned());
        system::run("systemd-run", &args.iter().map(String::as_str).collect::<Vec<_>>())?;
        return Ok(());
    }
    let log = std::fs::OpenOptions::new().create(true).append(true).open(&service.log).with_context(|| format!("cannot open {}", service.log.display()))?;
    // Its own session, so it outlives `kubeha lab up` and no terminal's signals reach it.
    Command::new("setsid")
        .args(&service.argv)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot start {}", service.argv[0]))?;
    Ok(())
}

/// A static file server needs to read one folder and accept loopback connections; the unit takes everything
/// else away (ProtectSystem=strict leaves the whole file system read-only). It keeps root's user id, without
/// any capability, so that it reads the root-owned cache whatever its modes, rather than depend on the cache
/// being readable by another user.
const HARDENING: &[&str] = &[
    "Description=kubeha lab download mirror",
    // systemd-run then fails, with the reason, when the program cannot be executed.
    "Type=exec",
    "CapabilityBoundingSet=",
    "AmbientCapabilities=",
    "NoNewPrivileges=yes",
    "ProtectSystem=strict",
    "ProtectHome=yes",
    "PrivateTmp=yes",
    "PrivateDevices=yes",
    "ProtectKernelTunables=yes",
    "ProtectKernelModules=yes",
    "ProtectControlGroups=yes",
    "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
    "RestrictNamespaces=yes",
    "RestrictRealtime=yes",
    "RestrictSUIDSGID=yes",
    "LockPersonality=yes",
    "MemoryDenyWriteExecute=yes",
    "SystemCallArchitectures=native",
    "IPAddressDeny=any",
    "IPAddressAllow=localhost",
];

fn logs_hint(service: &Service) -> String {
    if systemd_is_init() {
        return format!("see `journalctl -u {}`", service.unit);
    }
    let text = std::fs::read_to_string(&service.log).unwrap_or_default();
    let tail: Vec<&str> = text.lines().rev().take(5).collect();
    format!("last lines of {}:\n{}", service.log.display(), tail.into_iter().rev().collect::<Vec<_>>().join("\n"))
}

/// Whether the server on `address` serves this build: its MANIFEST, byte for byte.
fn answers(address: SocketAddr, manifest: &[u8]) -> bool {
    matches!(get(address, &format!("/{MANIFEST}")), Ok((200, body)) if body == manifest)
}

/// A bounded plain HTTP/1.0 GET (the readiness probe needs no client library, nor an async runtime).
fn get(address: SocketAddr, path: &str) -> std::io::Result<(u16, Vec<u8>)> {
    let timeout = Duration::from_secs(2);
    let mut stream = TcpStream::connect_timeout(&address, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n")?;
    let mut response = Vec::new();
    stream.take(1 << 20).read_to_end(&mut response)?;
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP response");
    let end = response.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(bad)?;
    let head = String::from_utf8_lossy(&response[..end]);
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or_else(bad)?;
    Ok((status, response[end + 4..].to_vec()))
}

/// The paths of `wanted` that the build's MANIFEST does not list.
pub fn missing(wanted: &Wanted, manifest: &str) -> Vec<String> {
    wanted.paths.iter().filter(|p| !manifest.lines().any(|l| l == p.as_str())).cloned().collect()
}

/// Serves `build`'s mirror for `cluster` as `wanted` asks; what `lab up` calls.
pub fn serve(cluster: &str, build: &Path, wanted: &Wanted, log: PathBuf) -> Result<Served> {
    let service = Service::new(cluster, build, wanted.port, log);
    let started = ensure(&service)?;
    let manifest = std::fs::read_to_string(service.root.join(MANIFEST)).unwrap_or_default();
    Ok(Served { url: wanted.url.clone(), unit: service.unit, missing: missing(wanted, &manifest), root: service.root, started })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifacts::catalogue::{Kind, file};
    use crate::inventory::{Arch, Version};

    /// build.sh --mirror-manifest for these (Kubernetes, etcd) release sets: the paths its MANIFEST lists.
    fn mirror_manifest(sets: &[(String, String)], arch: Arch) -> Vec<String> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("lab/upstream/build.sh");
        let mut args = vec!["--mirror-manifest".to_string()];
        args.extend(sets.iter().flat_map(|(k8s, etcd)| [k8s.clone(), etcd.clone()]));
        args.push(arch.name().into());
        let out = Command::new("bash").arg(&script).args(&args).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().lines().map(String::from).collect()
    }

    /// The paths build.sh lays out (its --mirror-manifest prints what its MANIFEST holds, and a build whose files
    /// differ from its MANIFEST fails verification) are the paths kubeha downloads, for every release set the
    /// mirror holds: the lab serves the current set and the previous one (etcd 3.5 and 3.6 name their tarballs
    /// alike), and one set alone still works.
    #[test]
    fn build_sh_lays_out_the_paths_the_catalogue_downloads() {
        let cases: [(&[(Version, Version)], Arch); 3] = [
            (&[(Version::new(1, 36, 3), Version::new(3, 6, 16)), (Version::new(1, 35, 4), Version::new(3, 5, 36))], Arch::Amd64),
            (&[(Version::new(1, 36, 3), Version::new(3, 6, 16))], Arch::Amd64),
            (&[(Version::new(1, 37, 2), Version::new(3, 7, 1)), (Version::new(1, 36, 3), Version::new(3, 6, 16))], Arch::Arm64),
        ];
        for (sets, arch) in cases {
            let spelled: Vec<(String, String)> = sets.iter().map(|(k8s, etcd)| (format!("v{k8s}"), format!("v{etcd}"))).collect();
            let mut laid_out = mirror_manifest(&spelled, arch);
            let mut downloaded: Vec<String> = sets
                .iter()
                .flat_map(|&(k8s, etcd)| [(Kind::Etcd, etcd), (Kind::Kubeadm, k8s), (Kind::Kubelet, k8s), (Kind::Kubectl, k8s)])
                .map(|(kind, v)| file(kind, v, arch, vec![]))
                .flat_map(|a| [a.path, a.checksum_path])
                .collect();
            laid_out.sort();
            downloaded.sort();
            assert_eq!(laid_out, downloaded);
        }
        assert!(
            mirror_manifest(&[("v1.36.3".into(), "v3.6.16".into())], Arch::Amd64)
                .contains(&"etcd-io/etcd/releases/download/v3.6.16/etcd-v3.6.16-linux-amd64.tar.gz".to_string())
        );
    }

    /// The version a lab wrapper module's go.mod requires of `module` (what build.sh builds).
    fn required(go_mod: &str, module: &str) -> String {
        let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(go_mod)).unwrap();
        // Inside a require block, or on a line of its own (`require k8s.io/kubernetes v1.35.4`, as go mod tidy
        // writes a module's only direct requirement).
        let line = |l: &str| l.trim().trim_start_matches("require ").strip_prefix(&format!("{module} ")).map(|v| v.trim().to_string());
        text.lines().find_map(line).unwrap_or_else(|| panic!("{go_mod} does not require {module}"))
    }

    /// The release sets the lab builds, current first: (Kubernetes, etcd) as the wrapper modules require them.
    fn built_sets() -> [(String, String); 2] {
        [("lab/upstream/kubernetes", "lab/upstream/etcd"), ("lab/upstream/previous/kubernetes", "lab/upstream/previous/etcd")]
            .map(|(k, e)| (required(&format!("{k}/go.mod"), "k8s.io/kubernetes"), required(&format!("{e}/go.mod"), "go.etcd.io/etcd/server/v3")))
    }

    /// inventories/lab.yaml downloads from the lab's mirror exactly what the lab builds: its versions follow the
    /// Go modules, and what the lab does not build is preinstalled. The same inventory at the previous set's
    /// versions (what the upgrade test bootstraps) finds its files too.
    #[test]
    fn the_lab_inventory_downloads_only_what_the_lab_builds() {
        let mut inv = crate::inventory::load(Path::new("inventories/lab.yaml")).unwrap().inventory.unwrap();
        let sets = built_sets();
        let manifest = mirror_manifest(&sets, inv.artifacts.arch).join("\n");
        let wanted = Wanted::from_inventory(&inv).unwrap().expect("the lab inventory names the lab's mirror");
        assert_eq!(wanted.port, 18480);
        assert!(missing(&wanted, &manifest).is_empty(), "{sets:?} built, {:?} wanted", wanted.paths);
        assert_eq!((format!("v{}", inv.kubernetes.version), format!("v{}", inv.etcd.version)), sets[0], "the lab inventory runs the current set");

        let (k8s, etcd) = &sets[1];
        inv.kubernetes.version = Version::parse(k8s).unwrap();
        inv.etcd.version = Version::parse(etcd).unwrap();
        let wanted = Wanted::from_inventory(&inv).unwrap().unwrap();
        assert!(missing(&wanted, &manifest).is_empty(), "{sets:?} built, {:?} wanted", wanted.paths);
    }

    /// The previous set is what kubeadm and etcd can upgrade from: one Kubernetes minor below the current one
    /// (kubeadm upgrades a minor at a time), and etcd 3.5.26 or later below 3.6 (the first 3.5 that 3.6 joins).
    #[test]
    fn the_previous_set_is_one_upgrade_step_below_the_current_one() {
        let [(k8s, etcd), (previous_k8s, previous_etcd)] = built_sets().map(|(k, e)| (Version::parse(&k).unwrap(), Version::parse(&e).unwrap()));
        assert_eq!((previous_k8s.major, previous_k8s.minor + 1), (k8s.major, k8s.minor), "Kubernetes {previous_k8s} -> {k8s}");
        assert!(previous_etcd < etcd, "etcd {previous_etcd} -> {etcd}");
        if (etcd.major, etcd.minor) == (3, 6) {
            assert!((previous_etcd.major, previous_etcd.minor) == (3, 5) && previous_etcd.patch >= 26, "etcd {previous_etcd} -> {etcd}");
        }
    }

    #[test]
    fn only_a_plain_http_loopback_mirror_is_the_lab_s() {
        assert_eq!(loopback_port("http://127.0.0.1:18480").unwrap(), Some(18480));
        assert_eq!(loopback_port("http://localhost:18481/").unwrap(), Some(18481));
        assert_eq!(loopback_port("https://127.0.0.1:18480").unwrap(), None);
        assert_eq!(loopback_port("http://mirror.example.com:8080").unwrap(), None);
        assert_eq!(loopback_port("http://198.18.0.1:18480").unwrap(), None);
        assert!(loopback_port("http://127.0.0.1:18480/k8s").unwrap_err().to_string().contains("drop the path /k8s"));
        assert!(loopback_port("http://127.0.0.1").unwrap_err().to_string().contains("port of 1024 or above"));
    }

    #[test]
    fn a_mirror_is_recognised_by_its_program_and_unit_name_only() {
        let service = Service::new("lab", Path::new("/cache/upstream/k1"), 18480, "/tmp/log".into());
        assert_eq!(service.unit, "kubeha-lab-mirror-lab.service");
        assert_eq!(
            service.argv.join(" "),
            "/cache/upstream/k1/kubeha-lab-mirror -name kubeha-lab-mirror-lab.service -root /cache/upstream/k1/mirror -listen 127.0.0.1:18480"
        );
        assert!(is_mirror_named(&service.argv, "kubeha-lab-mirror-lab.service"));
        assert!(!is_mirror_named(&service.argv, "kubeha-lab-mirror-other.service"));
        let mut other_program = service.argv.clone();
        other_program[0] = "/usr/bin/sleep".into();
        assert!(!is_mirror_named(&other_program, "kubeha-lab-mirror-lab.service"));
    }

    #[test]
    fn paths_the_build_does_not_serve_are_reported() {
        let wanted = Wanted { port: 1, url: String::new(), paths: vec!["a/kubeadm".into(), "b/crictl.tar.gz".into()] };
        assert_eq!(missing(&wanted, "a/kubeadm\na/kubeadm.sha256\n"), ["b/crictl.tar.gz"]);
    }
}

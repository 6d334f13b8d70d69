//! What kubeha itself has put on a host: the digest, mode and owner of every file it manages, the mode and
//! owner of every file holding a secret (see `secret_files`), whether its services run, and the host's
//! addresses (who holds the VIP). One exec per host, parsed by a pure function; the planner
//! compares this with what it would render.
use super::parse::ProbeOutputError;
pub use super::secret_files::FileMeta;
use super::secret_files::{self, STAT};
use crate::paths::{APISERVER_MANIFEST, ETCD_CONFIG, ETCD_CONFIG_RUNTIME, MANIFESTS_DIR, STATIC_PODS};
use crate::ssh::{Command, SshError, Transport, quote};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

/// A host as kubeha finds it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostState {
    /// Path -> lower-case hex SHA-256 of its contents; absent files are missing from the map.
    pub digests: BTreeMap<String, String>,
    /// Path -> mode, owner and group, for every file with a digest and every secret file found.
    pub meta: BTreeMap<String, FileMeta>,
    /// The files of `secret_files::secret_files()` found on the host (their metadata is in `meta`).
    pub secret_files: BTreeSet<String>,
    /// Unit name (without .service) -> active right now.
    pub active: BTreeMap<String, bool>,
    pub addresses: Vec<IpAddr>,
    /// The `initial-cluster-state` etcd.conf.yml says (`new` or `existing`); None without that file. Not part
    /// of the runtime digest, but a member of an existing cluster must never say `new` (see `ETCD_CONFIG`).
    pub etcd_initial_cluster_state: Option<String>,
    /// What the software phase installed, with each program's checksum now (see `software::record`).
    pub software: BTreeMap<crate::artifacts::catalogue::Kind, crate::software::Installed>,
    /// Static pod -> the image its manifest names (`registry.k8s.io/kube-apiserver:v1.36.3`), for the
    /// control-plane pods kubeadm writes: which Kubernetes release this control plane runs (an upgrade
    /// killed half way leaves them differing).
    pub static_pod_images: BTreeMap<String, String>,
    /// The etcd endpoints the API server's manifest names (`--etcd-servers`), in its order; `None` without the
    /// manifest or the flag. kubeadm writes them at init or join from the cluster's ClusterConfiguration and
    /// never again on its own: a member moved or replaced later leaves them stale.
    pub apiserver_etcd_servers: Option<Vec<String>>,
}

impl HostState {
    pub fn digest(&self, path: &str) -> Option<&str> {
        self.digests.get(path).map(String::as_str)
    }

    pub fn meta(&self, path: &str) -> Option<&FileMeta> {
        self.meta.get(path)
    }

    pub fn has(&self, path: &str) -> bool {
        self.digests.contains_key(path)
    }

    pub fn is_active(&self, unit: &str) -> bool {
        self.active.get(unit).copied().unwrap_or(false)
    }

    /// The Kubernetes release of this host's control-plane static pods: the oldest tag among them (a pod
    /// without a manifest or with an unreadable tag counts as unknown: `None`).
    pub fn control_plane_version(&self) -> Option<crate::inventory::Version> {
        STATIC_PODS
            .iter()
            .map(|pod| self.static_pod_images.get(*pod).and_then(|image| crate::inventory::Version::parse(image.rsplit_once(':')?.1)))
            .collect::<Option<Vec<_>>>()?
            .into_iter()
            .min()
    }
}

/// etcd reads `initial-cluster` and `initial-cluster-state` only when it first starts with an empty data
/// dir; they change whenever membership does. The probe also hashes the config without them (under the
/// pseudo path `paths::ETCD_CONFIG_RUNTIME`), so the planner restarts a running member only for a change it
/// would act on. The state itself is reported on its own: `new` left in a member's config would let it bootstrap a second cluster
/// if its data directory were lost, so the planner rewrites it (without a restart).
const BOOTSTRAP_ONLY: &str = "^initial-cluster(-state)?:";

fn bootstrap_only(line: &str) -> bool {
    line.starts_with("initial-cluster:") || line.starts_with("initial-cluster-state:")
}

/// The `initial-cluster-state` of an etcd config, unquoted, as the probe reports it ("" when absent).
pub fn initial_cluster_state(contents: &[u8]) -> String {
    let text = String::from_utf8_lossy(contents);
    text.lines().find_map(|l| l.strip_prefix("initial-cluster-state:")).map(|v| v.trim().trim_matches('"').to_string()).unwrap_or_default()
}

/// The digest the probe reports for ETCD_CONFIG_RUNTIME, computed from contents (as `grep -v` prints them).
pub fn runtime_digest(contents: &[u8]) -> String {
    let text = String::from_utf8_lossy(contents);
    let kept: String = text.lines().filter(|l| !bootstrap_only(l)).map(|l| format!("{l}\n")).collect();
    crate::digest::sha256_hex(kept.as_bytes())
}

/// The script: `file <sha256> <mode> <owner> <group> <path>` per existing file, `secret <mode> <owner>
/// <group> <path>` per secret file, `unit <name> <state>` per unit, `addr <ip>` per address. Paths and unit
/// names are quoted; sha256sum reads the file by redirection so odd names are safe.
pub fn script(paths: &[&str], units: &[&str]) -> String {
    let mut s = String::from("PATH=\"$PATH:/usr/sbin:/sbin\"\n");
    for p in paths {
        let q = quote::quote(p);
        s.push_str(&format!("if [ -f {q} ]; then printf 'file %s %s %s\\n' \"$(sha256sum < {q} | cut -c1-64)\" \"$({STAT} -- {q})\" {q}; fi\n"));
    }
    if paths.contains(&ETCD_CONFIG) {
        let (q, runtime) = (quote::quote(ETCD_CONFIG), quote::quote(ETCD_CONFIG_RUNTIME));
        s.push_str(&format!(
            "if [ -f {q} ]; then printf 'file %s %s %s\\n' \"$(grep -v -E '{BOOTSTRAP_ONLY}' < {q} | sha256sum | cut -c1-64)\" \"$({STAT} -- {q})\" {runtime}; fi\n"
        ));
        s.push_str(&format!(
            "if [ -f {q} ]; then printf 'etcd-initial-cluster-state %s\\n' \"$(sed -n 's/^initial-cluster-state:[[:space:]]*//p' < {q} | head -n 1 | tr -d '\"')\"; fi\n"
        ));
    }
    for u in units {
        // A bare name is a service; others say their type (`kubeha-etcd-backup.timer`).
        let unit = if u.contains('.') { quote::quote(u) } else { quote::quote(&format!("{u}.service")) };
        s.push_str(&format!("printf 'unit %s %s\\n' {} \"$(systemctl is-active {unit} 2>/dev/null || true)\"\n", quote::quote(u)));
    }
    // The first `image:` of each control-plane manifest (kubeadm writes one container per pod).
    for pod in STATIC_PODS {
        let q = quote::quote(&format!("{MANIFESTS_DIR}/{pod}.yaml"));
        s.push_str(&format!(
            "if [ -f {q} ]; then printf 'static-pod %s %s\\n' {pod} \"$(sed -n 's/^[[:space:]]*image:[[:space:]]*//p' < {q} | head -n 1 | tr -d '\"'\\'' ')\"; fi\n"
        ));
    }
    let apiserver = quote::quote(APISERVER_MANIFEST);
    s.push_str(&format!(
        "if [ -f {apiserver} ] && grep -q -- '--etcd-servers=' {apiserver}; then printf 'apiserver-etcd-servers %s\\n' \"$({})\"; fi\n",
        apiserver_etcd_servers_script()
    ));
    s.push_str(&secret_files::lines());
    s.push_str(&crate::software::record::probe_script());
    s.push_str("ip -o addr show 2>/dev/null | awk '{print \"addr \" $4}'\necho end\n");
    s
}

/// Prints the `--etcd-servers` value of the API server's manifest (nothing without it), without quotes.
pub fn apiserver_etcd_servers_script() -> String {
    format!("sed -n 's/^[[:space:]]*- --etcd-servers=//p' < {} | head -n 1 | tr -d '\"'\\'' '", quote::quote(APISERVER_MANIFEST))
}

/// The endpoints of an `--etcd-servers` value (comma-separated).
pub fn parse_etcd_servers(value: &str) -> Vec<String> {
    value.trim().split(',').filter(|s| !s.is_empty()).map(String::from).collect()
}

/// Whether two endpoint lists name the same endpoints: their order only says which one a client tries first.
pub fn same_endpoints(a: &[String], b: &[String]) -> bool {
    a.iter().collect::<BTreeSet<_>>() == b.iter().collect::<BTreeSet<_>>()
}

/// Parses the script's output. A line it does not understand is an error (a probe that printed something
/// unexpected is not a probe to plan from), and so is a missing `end`: the output was cut short.
pub fn parse(output: &str) -> Result<HostState, ProbeOutputError> {
    let mut state = HostState::default();
    let mut complete = false;
    for line in output.lines() {
        let bad = || ProbeOutputError::NotUnderstood(line.to_string());
        if complete {
            return Err(ProbeOutputError::AfterTheEnd(line.to_string()));
        }
        if let Some(rest) = line.strip_prefix("file ") {
            let mut words = rest.splitn(5, ' ');
            let (Some(digest), Some(mode), Some(owner), Some(group), Some(path)) = (words.next(), words.next(), words.next(), words.next(), words.next())
            else {
                return Err(bad());
            };
            let meta = FileMeta::parse(&format!("{mode} {owner} {group}")).ok_or_else(bad)?;
            if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) || !path.starts_with('/') {
                return Err(bad());
            }
            state.digests.insert(path.to_string(), digest.to_string());
            state.meta.insert(path.to_string(), meta);
            continue;
        }
        // The value is the rest of the line: whatever the config says, an operator's comment included.
        if let Some(value) = line.strip_prefix("etcd-initial-cluster-state ") {
            state.etcd_initial_cluster_state = Some(value.trim().to_string());
            continue;
        }
        if let Some(rest) = line.strip_prefix("software ") {
            crate::software::record::parse_line(rest, &mut state.software).ok_or_else(bad)?;
            continue;
        }
        if let Some(rest) = line.strip_prefix("static-pod ") {
            let (pod, image) = rest.split_once(' ').ok_or_else(bad)?;
            if !STATIC_PODS.contains(&pod) {
                return Err(bad());
            }
            state.static_pod_images.insert(pod.to_string(), image.to_string());
            continue;
        }
        if let Some(servers) = line.strip_prefix("apiserver-etcd-servers ") {
            state.apiserver_etcd_servers = Some(parse_etcd_servers(servers));
            continue;
        }
        if let Some(rest) = line.strip_prefix("secret ") {
            let (path, meta) = secret_files::parse_line(rest).ok_or_else(bad)?;
            state.meta.insert(path.clone(), meta);
            state.secret_files.insert(path);
            continue;
        }
        let mut words = line.splitn(3, ' ');
        match (words.next(), words.next(), words.next()) {
            (Some("unit"), Some(name), state_word) => {
                state.active.insert(name.to_string(), state_word == Some("active"));
            }
            (Some("addr"), Some(cidr), None) => state.addresses.push(cidr.split('/').next().unwrap_or_default().parse().map_err(|_| bad())?),
            (Some("end"), None, None) => complete = true,
            _ => return Err(bad()),
        }
    }
    if complete { Ok(state) } else { Err(ProbeOutputError::CutShort) }
}

/// Runs the script on one host (as root: some files are 0600).
pub async fn observe(t: &dyn Transport, paths: &[&str], units: &[&str]) -> Result<HostState, SshError> {
    let out = t.run(&Command::script(script(paths, units)).timeout(Duration::from_secs(60))).await?;
    parse(&out.stdout_text()).map_err(|detail| SshError::Protocol {
        host: t.host().into(),
        command: Some("state probe".into()),
        detail: format!("the state probe's output: {detail}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_files_with_modes_and_owners_units_secrets_and_addresses() {
        let out = format!(
            "file {} 644 root root /etc/etcd/etcd.conf.yml\nfile {} 644 kubelet root /etc/kubeha/pki/etcd/server.key\nsecret 600 root root /etc/kubernetes/admin.conf\nunit etcd active\nunit haproxy inactive\nunit keepalived \naddr 127.0.0.1/8\naddr 198.18.0.100/24\naddr fe80::1/64\nend\n",
            "a".repeat(64),
            "b".repeat(64)
        );
        let s = parse(&out).unwrap();
        assert_eq!(s.digest("/etc/etcd/etcd.conf.yml"), Some("a".repeat(64).as_str()));
        assert_eq!(s.meta("/etc/kubeha/pki/etcd/server.key"), Some(&FileMeta { mode: 0o644, owner: "kubelet".into(), group: "root".into() }));
        assert_eq!(s.meta("/etc/kubernetes/admin.conf").map(|m| m.mode), Some(0o600));
        assert!(s.secret_files.contains("/etc/kubernetes/admin.conf") && !s.has("/etc/kubernetes/admin.conf"), "a secret line is no digest");
        assert!(s.is_active("etcd") && !s.is_active("haproxy") && !s.is_active("keepalived") && !s.is_active("kubelet"));
        assert!(s.addresses.contains(&"198.18.0.100".parse().unwrap()));
        assert_eq!(s.addresses.len(), 3);
        assert_eq!(parse("unit etcd active\n").unwrap_err(), ProbeOutputError::CutShort);
    }

    /// A line the parser does not understand is an error, never skipped: a file left out would look absent.
    #[test]
    fn a_malformed_line_is_an_error() {
        let digest = "a".repeat(64);
        for bad in [
            "file short 600 root root /x".to_string(),
            format!("file {digest} /x"),
            format!("file {digest} 6o0 root root /x"),
            format!("file {digest} 600 root  /x"),
            "secret 600 root /x".to_string(),
            "stat: cannot statx '/x': No such file or directory".to_string(),
            "addr not-an-address".to_string(),
        ] {
            let err = parse(&format!("{bad}\nend\n")).unwrap_err();
            assert_eq!(err, ProbeOutputError::NotUnderstood(bad.clone()), "{bad}: {err}");
        }
        assert!(parse("end\nunit etcd active\n").is_err(), "nothing after the end");
        let commented = parse("etcd-initial-cluster-state existing # set by kubeha\nend\n").unwrap();
        assert_eq!(commented.etcd_initial_cluster_state.as_deref(), Some("existing # set by kubeha"));
    }

    #[test]
    fn script_quotes_every_path() {
        let s = script(&["/etc/a b", "/etc/it's"], &["etcd"]);
        assert!(s.contains("[ -f '/etc/a b' ]") && s.contains(r"'/etc/it'\''s'"), "{s}");
    }

    /// The probe's shell and runtime_digest must agree byte for byte, or every member restarts each run.
    #[test]
    fn runtime_digest_matches_the_probe_shell() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("etcd.conf.yml");
        let contents = "name: \"cp-1\"\ninitial-cluster: \"cp-1=https://a:2380\"\ninitial-cluster-state: \"new\"\ninitial-cluster-token: \"t\"\ndata-dir: /x";
        std::fs::write(&file, contents).unwrap();
        let shell = script(&[ETCD_CONFIG], &[])
            .replace(&quote::quote(ETCD_CONFIG_RUNTIME), "RUNTIME")
            .replace(&quote::quote(ETCD_CONFIG), &quote::quote(&file.to_string_lossy()))
            .replace("RUNTIME", &quote::quote(ETCD_CONFIG_RUNTIME));
        let out = std::process::Command::new("sh").arg("-c").arg(shell).output().unwrap();
        let state = parse(&String::from_utf8_lossy(&out.stdout)).unwrap();
        let me = |flag: &str| String::from_utf8(std::process::Command::new("id").arg(flag).output().unwrap().stdout).unwrap().trim().to_string();
        let meta = state.meta(&file.to_string_lossy()).expect("the file's mode and owner").clone();
        assert_eq!((meta.owner, meta.group), (me("-un"), me("-gn")));
        assert_eq!(meta.mode, std::fs::metadata(&file).map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777).unwrap());
        assert_eq!(state.digest(ETCD_CONFIG_RUNTIME), Some(runtime_digest(contents.as_bytes()).as_str()));
        assert_eq!(state.etcd_initial_cluster_state.as_deref(), Some("new"));
        assert_eq!(initial_cluster_state(contents.as_bytes()), "new");
        let other_members = contents.replace("cp-1=https://a:2380", "cp-1=https://a:2380,cp-4=https://b:2380").replace("new", "existing");
        assert_eq!(runtime_digest(other_members.as_bytes()), runtime_digest(contents.as_bytes()));
        assert_ne!(runtime_digest(contents.replace("/x", "/y").as_bytes()), runtime_digest(contents.as_bytes()));
    }

    /// The API server's etcd endpoints, read from a manifest as kubeadm writes it; none without the flag.
    #[test]
    fn the_api_server_s_etcd_endpoints_are_read_from_its_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = dir.path().join("kube-apiserver.yaml");
        let run = |contents: &str| {
            std::fs::write(&manifest, contents).unwrap();
            let shell = script(&[], &[]).replace(&quote::quote(APISERVER_MANIFEST), &quote::quote(&manifest.to_string_lossy()));
            let out = std::process::Command::new("sh").arg("-c").arg(shell).output().unwrap();
            parse(&String::from_utf8_lossy(&out.stdout)).unwrap().apiserver_etcd_servers
        };
        let kubeadm_wrote = "spec:\n  containers:\n  - command:\n    - kube-apiserver\n    - --etcd-certfile=/etc/kubeha/pki/etcd/apiserver-etcd-client.crt\n    - --etcd-servers=https://198.18.0.11:2379,https://198.18.0.12:2379\n    - --secure-port=6443\n    image: registry.k8s.io/kube-apiserver:v1.36.3\n";
        assert_eq!(run(kubeadm_wrote), Some(vec!["https://198.18.0.11:2379".to_string(), "https://198.18.0.12:2379".to_string()]));
        assert_eq!(run("spec:\n  containers:\n  - command:\n    - kube-apiserver\n"), None, "no flag, no endpoints");
    }

    #[tokio::test]
    async fn runs_one_command_as_root() {
        let fake = crate::ssh::fake::RecordingTransport::new("cp-1").on("sha256sum", "unit etcd active\nend\n");
        let s = observe(&fake, &["/etc/x"], &["etcd"]).await.unwrap();
        assert!(s.is_active("etcd"));
        assert_eq!(fake.scripts().len(), 1);
    }
}

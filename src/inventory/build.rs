//! Walks the located YAML tree into the validated model, collecting every finding on the way.
use super::checks;
use super::diagnostic::{Diagnostics, Mark};
use super::model::*;
use super::reader::{self, Fields, Located, join};
use super::schedule;
use super::support;
use super::yaml::Node;
use crate::artifacts::catalogue::Kind;
use ipnet::IpNet;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

pub const API_VERSION: &str = "kubeha/v1alpha1";
pub const KIND: &str = "Cluster";

const ROOT_FIELDS: &[&str] = &["apiVersion", "kind", "metadata", "spec"];
const METADATA_FIELDS: &[&str] = &["name"];
const SPEC_FIELDS: &[&str] = &["kubernetes", "etcd", "controlPlane", "ssh", "concurrency", "certificates", "artifacts", "upgrade", "hosts"];
const UPGRADE_FIELDS: &[&str] = &["maxUnavailable", "drainTimeout"];
const ARTIFACTS_FIELDS: &[&str] = &["arch", "mirror", "bundle", "versions", "preinstalled"];
const ARTIFACT_VERSIONS_FIELDS: &[&str] = &["crictl", "containerd", "runc", "cniPlugins"];
const CERTIFICATES_FIELDS: &[&str] = &["renewBefore"];
const KUBERNETES_FIELDS: &[&str] = &[
    "version",
    "podSubnet",
    "serviceSubnet",
    "dnsDomain",
    "cni",
    "cniVersion",
    "containerRuntimeEndpoint",
    "ignorePreflightErrors",
    "registryMirrors",
    "addons",
    "kubelet",
];
const ADDONS_FIELDS: &[&str] = &["coreDNS", "kubeProxy"];
const KUBELET_FIELDS: &[&str] = &["cgroupDriver", "failCgroupV1", "cgroupsPerQOS", "enforceNodeAllocatable"];
const ETCD_FIELDS: &[&str] = &["version", "backup"];
const BACKUP_FIELDS: &[&str] = &["enabled", "schedule", "keep", "dir", "maxAge"];
const CONTROL_PLANE_FIELDS: &[&str] = &["loadBalancer"];
const LOAD_BALANCER_FIELDS: &[&str] = &["mode", "vip", "port", "interface", "virtualRouterId", "endpoint"];
const SSH_FIELDS: &[&str] = &["user", "port", "identityFile", "knownHostsFile", "become", "bastion"];
const BASTION_FIELDS: &[&str] = &["address", "port", "user", "identityFile", "knownHostsFile"];
const HOST_FIELDS: &[&str] = &["name", "address", "roles", "zone", "rack", "region", "labels", "taints", "ssh"];
const TAINT_FIELDS: &[&str] = &["key", "value", "effect"];

const DEFAULT_POD_SUBNET: &str = "10.244.0.0/16";
const DEFAULT_SERVICE_SUBNET: &str = "10.96.0.0/12";
const DEFAULT_LB_PORT: u16 = 8443;
const DEFAULT_CONCURRENCY: usize = 20;
/// Workers of one failure domain upgraded at once, and how long one drain may take (kubectl drain's
/// `--timeout`: evictions a PodDisruptionBudget holds back are retried until then).
const DEFAULT_MAX_UNAVAILABLE: usize = 1;
const DEFAULT_DRAIN_TIMEOUT_SECONDS: u64 = 300;
/// One backup an hour, a day of them kept on each control plane.
const DEFAULT_BACKUP_SCHEDULE: &str = "hourly";
const DEFAULT_BACKUP_KEEP: usize = 24;
const MAX_BACKUP_KEEP: usize = 10_000;
/// Three months: a renewal missed by a run or two (a failed apply, a holiday) still happens well in time.
const DEFAULT_RENEW_BEFORE_DAYS: u32 = 90;
/// Leaf certificates live 365 days (kubeha's and kubeadm's); renewing 365 or more days ahead would renew
/// on every run and never converge.
const MAX_RENEW_BEFORE_DAYS: u32 = 364;
/// containerd's socket, what kubeha has always rendered.
pub const DEFAULT_CONTAINER_RUNTIME_ENDPOINT: &str = "unix:///var/run/containerd/containerd.sock";
/// The values of enforceNodeAllocatable kubeha can render. `system-reserved` and `kube-reserved` (and their
/// `-compressible` forms) also need systemReservedCgroup / kubeReservedCgroup, which kubeha does not set, so the
/// kubelet would refuse them.
const NODE_ALLOCATABLE_ENFORCEMENTS: &[(&str, &str)] = &[("pods", "pods"), ("none", "none")];

/// Where relative paths in the inventory are anchored, and what `~` means.
pub struct PathContext {
    pub inventory_dir: PathBuf,
    pub home: Option<PathBuf>,
}

impl PathContext {
    fn resolve(&self, raw: &str) -> PathBuf {
        if let (Some(rest), Some(home)) = (raw.strip_prefix("~/"), &self.home) {
            return home.join(rest);
        }
        let path = Path::new(raw);
        if path.is_absolute() { path.to_path_buf() } else { self.inventory_dir.join(path) }
    }
}

/// The walk's output: a host as written, with the positions later cross-checks point at.
pub struct HostDraft {
    pub index: usize,
    pub written_name: Option<String>,
    pub name: Option<Located<String>>,
    pub address: Option<Located<IpAddr>>,
    pub roles: Option<Located<Roles>>,
    pub zone: Option<Located<String>>,
    pub rack: Option<Located<String>>,
    pub region: Option<Located<String>>,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    pub ssh: Ssh,
    pub mark: Mark,
}

impl HostDraft {
    pub fn path(&self) -> String {
        format!("spec.hosts[{}]", self.index)
    }

    /// How messages name the host: its name as written, even when the name itself is invalid.
    pub fn label(&self) -> String {
        self.written_name.clone().unwrap_or_else(|| self.path())
    }
}

pub struct SpecDraft {
    pub name: Option<String>,
    pub kubernetes_version: Option<Located<Version>>,
    pub pod_subnet: Option<Located<IpNet>>,
    pub service_subnet: Option<Located<IpNet>>,
    pub dns_domain: String,
    pub cni: Option<Cni>,
    pub cni_version: Option<Version>,
    pub container_runtime_endpoint: String,
    pub ignore_preflight_errors: Vec<String>,
    pub registry_mirrors: BTreeMap<String, Vec<String>>,
    pub addons: Addons,
    pub kubelet: Kubelet,
    pub etcd_version: Option<Located<Version>>,
    pub etcd_backup: Option<Backup>,
    pub load_balancer: Option<Located<LoadBalancer>>,
    pub concurrency: usize,
    pub certificates: Certificates,
    pub upgrade: Upgrade,
    pub artifacts: ArtifactsDraft,
    pub hosts: Vec<HostDraft>,
    pub hosts_mark: Mark,
}

/// `spec.artifacts` as written; versions left out get their defaults in `finish` (crictl's depends on Kubernetes').
pub struct ArtifactsDraft {
    pub arch: Arch,
    pub source: ArtifactSource,
    pub crictl: Option<Version>,
    pub containerd: Option<Version>,
    pub runc: Option<Version>,
    pub cni_plugins: Option<Version>,
    pub preinstalled: std::collections::BTreeSet<Kind>,
}

pub fn inventory(root: &Node, paths: &PathContext, diags: &mut Diagnostics) -> Option<Inventory> {
    let fields = Fields::of(root, "", ROOT_FIELDS, diags)?;
    if let Some(v) = fields.required("apiVersion", root.mark, diags).and_then(|n| reader::text(n, "apiVersion", diags))
        && v.value != API_VERSION
    {
        diags.error("apiVersion", Some(v.mark), format!("unsupported apiVersion \"{}\", expected \"{API_VERSION}\"", v.value));
    }
    if let Some(v) = fields.required("kind", root.mark, diags).and_then(|n| reader::text(n, "kind", diags))
        && v.value != KIND
    {
        diags.error("kind", Some(v.mark), format!("unsupported kind \"{}\", expected \"{KIND}\"", v.value));
    }
    let name = fields.required("metadata", root.mark, diags).and_then(|n| metadata(n, diags));
    let spec_node = fields.required("spec", root.mark, diags)?;
    let draft = spec(spec_node, name, paths, diags)?;
    checks::run(&draft, diags);
    if diags.has_errors() {
        return None;
    }
    finish(draft)
}

fn metadata(node: &Node, diags: &mut Diagnostics) -> Option<String> {
    let fields = Fields::of(node, "metadata", METADATA_FIELDS, diags)?;
    let name = reader::text(fields.required("name", node.mark, diags)?, "metadata.name", diags)?;
    checks::dns_label(&name, "metadata.name", diags).then_some(name.value)
}

fn spec(node: &Node, name: Option<String>, paths: &PathContext, diags: &mut Diagnostics) -> Option<SpecDraft> {
    let fields = Fields::of(node, "spec", SPEC_FIELDS, diags)?;
    let mut draft = SpecDraft {
        name,
        kubernetes_version: None,
        pod_subnet: None,
        service_subnet: None,
        dns_domain: "cluster.local".to_string(),
        cni: None,
        cni_version: None,
        container_runtime_endpoint: DEFAULT_CONTAINER_RUNTIME_ENDPOINT.to_string(),
        ignore_preflight_errors: Vec::new(),
        registry_mirrors: BTreeMap::new(),
        addons: Addons { core_dns: true, kube_proxy: true },
        kubelet: Kubelet { cgroup_driver: CgroupDriver::Systemd, fail_cgroup_v1: None, cgroups_per_qos: None, enforce_node_allocatable: None },
        etcd_version: None,
        etcd_backup: Some(default_backup()),
        load_balancer: None,
        concurrency: DEFAULT_CONCURRENCY,
        certificates: Certificates { renew_before_days: DEFAULT_RENEW_BEFORE_DAYS },
        upgrade: Upgrade { max_unavailable: DEFAULT_MAX_UNAVAILABLE, drain_timeout_seconds: DEFAULT_DRAIN_TIMEOUT_SECONDS },
        artifacts: ArtifactsDraft {
            arch: Arch::Amd64,
            source: ArtifactSource::Upstream,
            crictl: None,
            containerd: None,
            runc: None,
            cni_plugins: None,
            preinstalled: Default::default(),
        },
        hosts: Vec::new(),
        hosts_mark: node.mark,
    };
    if let Some(k8s) = fields.required("kubernetes", node.mark, diags) {
        kubernetes(k8s, &mut draft, diags);
    }
    if let Some(etcd) = fields.required("etcd", node.mark, diags)
        && let Some(f) = Fields::of(etcd, "spec.etcd", ETCD_FIELDS, diags)
    {
        draft.etcd_version = f.required("version", etcd.mark, diags).and_then(|n| version(n, "spec.etcd.version", diags));
        if let Some(n) = f.optional("backup") {
            draft.etcd_backup = backup(n, diags);
        }
    }
    if let Some(cp) = fields.required("controlPlane", node.mark, diags)
        && let Some(f) = Fields::of(cp, "spec.controlPlane", CONTROL_PLANE_FIELDS, diags)
    {
        draft.load_balancer = f.required("loadBalancer", cp.mark, diags).and_then(|n| load_balancer(n, draft.name.as_deref(), diags));
    }
    if let Some(n) = fields.optional("concurrency") {
        let path = fields.child_path("concurrency");
        if let Some(c) = reader::parsed(n, &path, "a whole number from 1 to 1000", diags, |s| s.parse::<usize>().ok().filter(|c| (1..=1000).contains(c))) {
            draft.concurrency = c.value;
        }
    }
    if let Some(n) = fields.optional("certificates")
        && let Some(f) = Fields::of(n, "spec.certificates", CERTIFICATES_FIELDS, diags)
        && let Some(days) = f.optional("renewBefore")
    {
        let path = f.child_path("renewBefore");
        let expected = format!("a whole number of days from 1 to {MAX_RENEW_BEFORE_DAYS} (certificates live 365 days)");
        if let Some(d) = reader::parsed(days, &path, &expected, diags, |s| s.parse::<u32>().ok().filter(|d| (1..=MAX_RENEW_BEFORE_DAYS).contains(d))) {
            draft.certificates.renew_before_days = d.value;
        }
    }
    if let Some(n) = fields.optional("artifacts") {
        artifacts(n, paths, &mut draft.artifacts, diags);
    }
    if let Some(n) = fields.optional("upgrade") {
        upgrade(n, &mut draft.upgrade, diags);
    }
    let defaults = SshOverrides::default();
    let cluster_ssh = match fields.optional("ssh") {
        Some(n) => ssh_overrides(n, "spec.ssh", paths, diags).unwrap_or(defaults),
        None => defaults,
    };
    if let Some(hosts) = fields.required("hosts", node.mark, diags) {
        draft.hosts_mark = hosts.mark;
        if let Some(items) = reader::list(hosts, "spec.hosts", diags) {
            draft.hosts = items.iter().enumerate().filter_map(|(i, h)| host(i, h, &cluster_ssh, paths, diags)).collect();
        }
    }
    Some(draft)
}

fn kubernetes(node: &Node, draft: &mut SpecDraft, diags: &mut Diagnostics) {
    let Some(f) = Fields::of(node, "spec.kubernetes", KUBERNETES_FIELDS, diags) else { return };
    draft.kubernetes_version = f.required("version", node.mark, diags).and_then(|n| version(n, "spec.kubernetes.version", diags));
    draft.pod_subnet = subnet(&f, "podSubnet", DEFAULT_POD_SUBNET, node.mark, diags);
    draft.service_subnet = subnet(&f, "serviceSubnet", DEFAULT_SERVICE_SUBNET, node.mark, diags);
    if let Some(n) = f.optional("dnsDomain") {
        let path = f.child_path("dnsDomain");
        if let Some(d) = reader::text(n, &path, diags)
            && checks::dns_subdomain(&d, &path, diags)
        {
            draft.dns_domain = d.value;
        }
    }
    draft.cni = match f.optional("cni") {
        Some(n) => {
            reader::choice(n, &f.child_path("cni"), &[("flannel", Cni::Flannel), ("calico", Cni::Calico), ("cilium", Cni::Cilium)], diags).map(|c| c.value)
        }
        None => Some(Cni::Flannel),
    };
    if let Some(n) = f.optional("cniVersion") {
        draft.cni_version = version(n, &f.child_path("cniVersion"), diags).map(|v| v.value);
    }
    if let Some(n) = f.optional("containerRuntimeEndpoint") {
        let path = f.child_path("containerRuntimeEndpoint");
        if let Some(e) = reader::text(n, &path, diags)
            && checks::cri_endpoint(&e, &path, diags)
        {
            draft.container_runtime_endpoint = e.value;
        }
    }
    if let Some(n) = f.optional("ignorePreflightErrors") {
        let path = f.child_path("ignorePreflightErrors");
        draft.ignore_preflight_errors = strings(n, &path, diags, checks::preflight_check_name);
    }
    if let Some(n) = f.optional("registryMirrors") {
        draft.registry_mirrors = registry_mirrors(n, &f.child_path("registryMirrors"), diags);
    }
    if let Some(n) = f.optional("addons") {
        addons(n, &f.child_path("addons"), &mut draft.addons, diags);
    }
    if let Some(n) = f.optional("kubelet") {
        kubelet(n, &f.child_path("kubelet"), &mut draft.kubelet, diags);
    }
}

fn artifacts(node: &Node, paths: &PathContext, out: &mut ArtifactsDraft, diags: &mut Diagnostics) {
    let Some(f) = Fields::of(node, "spec.artifacts", ARTIFACTS_FIELDS, diags) else { return };
    if let Some(a) = f.optional("arch").and_then(|n| reader::choice(n, &f.child_path("arch"), &[("amd64", Arch::Amd64), ("arm64", Arch::Arm64)], diags)) {
        out.arch = a.value;
    }
    let mirror = f.optional("mirror").and_then(|n| reader::text(n, &f.child_path("mirror"), diags)).and_then(|m| {
        let url = checks::mirror_url(&m, &f.child_path("mirror"), diags)?;
        Some(Located { value: url, mark: m.mark })
    });
    let bundle = f.optional("bundle").and_then(|n| reader::text(n, &f.child_path("bundle"), diags));
    out.source = match (mirror, bundle) {
        (Some(_), Some(b)) => {
            diags.error(
                f.child_path("bundle"),
                Some(b.mark),
                format!("invalid value \"{}\": mirror and bundle exclude each other (a bundle is used without any HTTP)", b.value),
            );
            return;
        }
        (Some(m), None) => ArtifactSource::Mirror(m.value),
        (None, Some(b)) => ArtifactSource::Bundle(paths.resolve(&b.value)),
        (None, None) => ArtifactSource::Upstream,
    };
    if let Some(n) = f.optional("versions")
        && let Some(v) = Fields::of(n, "spec.artifacts.versions", ARTIFACT_VERSIONS_FIELDS, diags)
    {
        for (key, slot) in [("crictl", &mut out.crictl), ("containerd", &mut out.containerd), ("runc", &mut out.runc), ("cniPlugins", &mut out.cni_plugins)] {
            *slot = v.optional(key).and_then(|n| version(n, &v.child_path(key), diags)).map(|l| l.value);
        }
    }
    if let Some(n) = f.optional("preinstalled") {
        let path = f.child_path("preinstalled");
        for (i, item) in reader::list(n, &path, diags).unwrap_or_default().iter().enumerate() {
            let choices: Vec<(&str, Kind)> = Kind::ALL.iter().map(|k| (k.inventory_name(), *k)).collect();
            if let Some(kind) = reader::choice(item, &format!("{path}[{i}]"), &choices, diags) {
                out.preinstalled.insert(kind.value);
            }
        }
    }
}

/// A list of strings, each checked by `valid` (which reports its own error).
fn strings(node: &Node, path: &str, diags: &mut Diagnostics, valid: fn(&Located<String>, &str, &mut Diagnostics) -> bool) -> Vec<String> {
    let mut out = Vec::new();
    for (i, item) in reader::list(node, path, diags).unwrap_or_default().iter().enumerate() {
        let item_path = format!("{path}[{i}]");
        if let Some(s) = reader::text(item, &item_path, diags).filter(|s| valid(s, &item_path, diags)) {
            out.push(s.value);
        }
    }
    out
}

/// `registryMirrors: {REGISTRY: [URL, ...]}`: for each registry host (`registry.k8s.io`, `docker.io`,
/// `quay.io:443`), the mirrors containerd tries first, in order, before the registry itself.
fn registry_mirrors(node: &Node, path: &str, diags: &mut Diagnostics) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for entry in reader::entries(node, path, diags).unwrap_or_default() {
        let entry_path = join(path, &entry.key);
        if !checks::registry_host(&entry.key) {
            diags.error(
                path,
                Some(entry.key_mark),
                format!("invalid registry \"{}\": expected a registry host like registry.k8s.io or quay.io:443", entry.key),
            );
            continue;
        }
        let mirrors = strings(&entry.value, &entry_path, diags, checks::registry_mirror_url);
        // An empty list is a mistake of its own; a list of bad URLs was reported item by item.
        if matches!(&entry.value.value, super::yaml::Value::Sequence(items) if items.is_empty()) {
            diags.error(&entry_path, Some(entry.value.mark), "expected at least one mirror URL (http:// or https://)".to_string());
        }
        if !mirrors.is_empty() {
            out.insert(entry.key.clone(), mirrors);
        }
    }
    out
}

fn addons(node: &Node, path: &str, out: &mut Addons, diags: &mut Diagnostics) {
    let Some(f) = Fields::of(node, path, ADDONS_FIELDS, diags) else { return };
    for (key, slot) in [("coreDNS", &mut out.core_dns), ("kubeProxy", &mut out.kube_proxy)] {
        if let Some(b) = f.optional(key).and_then(|n| reader::boolean(n, &f.child_path(key), diags)) {
            *slot = b.value;
        }
    }
}

fn kubelet(node: &Node, path: &str, out: &mut Kubelet, diags: &mut Diagnostics) {
    let Some(f) = Fields::of(node, path, KUBELET_FIELDS, diags) else { return };
    if let Some(d) = f
        .optional("cgroupDriver")
        .and_then(|n| reader::choice(n, &f.child_path("cgroupDriver"), &[("systemd", CgroupDriver::Systemd), ("cgroupfs", CgroupDriver::Cgroupfs)], diags))
    {
        out.cgroup_driver = d.value;
    }
    out.fail_cgroup_v1 = f.optional("failCgroupV1").and_then(|n| reader::boolean(n, &f.child_path("failCgroupV1"), diags)).map(|b| b.value);
    let per_qos = f.optional("cgroupsPerQOS").and_then(|n| reader::boolean(n, &f.child_path("cgroupsPerQOS"), diags));
    out.cgroups_per_qos = per_qos.as_ref().map(|b| b.value);
    if let Some(n) = f.optional("enforceNodeAllocatable") {
        let list_path = f.child_path("enforceNodeAllocatable");
        let mut seen: Vec<Located<&str>> = Vec::new();
        for (i, item) in reader::list(n, &list_path, diags).unwrap_or_default().iter().enumerate() {
            let item_path = format!("{list_path}[{i}]");
            let Some(e) = reader::choice(item, &item_path, NODE_ALLOCATABLE_ENFORCEMENTS, diags) else { continue };
            if seen.iter().any(|s| s.value == e.value) {
                diags.error(&item_path, Some(e.mark), format!("\"{}\" listed twice", e.value));
            }
            seen.push(e);
        }
        if seen.len() > 1 && seen.iter().any(|s| s.value == "none") {
            diags.error(&list_path, Some(n.mark), "\"none\" cannot be combined with other enforcements");
        }
        out.enforce_node_allocatable = Some(seen.iter().map(|s| s.value.to_string()).collect());
    }
    // The kubelet refuses to start when it should enforce pod allocatable without the QoS cgroups it would
    // enforce it on; its default enforcement is ["pods"], so turning cgroupsPerQOS off needs the list too.
    // An empty list does not do: kubeadm omits it from the kubelet config it writes (measured with kubeadm
    // 1.36.3), and the kubelet then takes its default.
    if let Some(p) = per_qos.filter(|p| !p.value) {
        let enforces_pods = out.enforce_node_allocatable.as_ref().is_none_or(|e| e.is_empty() || e.iter().any(|v| v == "pods"));
        if enforces_pods {
            let written = match out.enforce_node_allocatable.as_deref() {
                None => "is unset (the kubelet's default is [pods])",
                Some([]) => "is [], which kubeadm leaves out of the kubelet's config (the kubelet's default is [pods])",
                Some(_) => "contains \"pods\"",
            };
            diags.push(
                super::diagnostic::Diagnostic::error(
                    f.child_path("cgroupsPerQOS"),
                    Some(p.mark),
                    format!("cgroupsPerQOS is false but enforceNodeAllocatable {written}; the kubelet refuses to start with both"),
                )
                .with_hint("set enforceNodeAllocatable: [none] together with cgroupsPerQOS: false"),
            );
        }
    }
}

fn default_backup() -> Backup {
    // A shorthand, so it has a period (inventory::tests checks the default comes out as two hours).
    let max_age_seconds = schedule::PERIODS_BEFORE_STALE * schedule::shorthand_period(DEFAULT_BACKUP_SCHEDULE).unwrap_or_default();
    Backup {
        schedule: Schedule { calendar: DEFAULT_BACKUP_SCHEDULE.into(), max_age_seconds },
        keep: DEFAULT_BACKUP_KEEP,
        dir: crate::paths::DEFAULT_BACKUP_DIR.into(),
    }
}

/// `spec.etcd.backup`, every field optional; `None` for `enabled: false` (the other fields are still checked,
/// so turning backups back on later does not surface old mistakes).
fn backup(node: &Node, diags: &mut Diagnostics) -> Option<Backup> {
    const PATH: &str = "spec.etcd.backup";
    let mut out = default_backup();
    let Some(f) = Fields::of(node, PATH, BACKUP_FIELDS, diags) else { return Some(out) };
    let enabled = f.optional("enabled").and_then(|n| reader::boolean(n, &f.child_path("enabled"), diags)).is_none_or(|b| b.value);
    let schedule = f.optional("schedule").and_then(|n| reader::text(n, &f.child_path("schedule"), diags));
    if let Some(s) = &schedule {
        if schedule::calendar_is_safe(&s.value) {
            out.schedule.calendar = s.value.trim().to_string();
        } else {
            diags.error(
                f.child_path("schedule"),
                Some(s.mark),
                format!(
                    "invalid value {:?}: expected \"hourly\", \"daily\", \"weekly\" or a systemd OnCalendar expression (letters, digits, spaces and * , - . / ~ : _ + only)",
                    s.value
                ),
            );
        }
    }
    let period = schedule::shorthand_period(&out.schedule.calendar);
    let max_age =
        f.optional("maxAge").and_then(|n| reader::parsed(n, &f.child_path("maxAge"), "a duration like 90m, 26h or 8d", diags, schedule::parse_duration));
    out.schedule.max_age_seconds = match (max_age, period) {
        (Some(m), _) => m.value,
        (None, Some(p)) => schedule::PERIODS_BEFORE_STALE * p,
        (None, None) => {
            if let Some(s) = schedule.filter(|_| enabled) {
                diags.error(
                    f.child_path("maxAge"),
                    Some(s.mark),
                    format!("schedule {:?} is not a shorthand kubeha knows the period of: say how old the newest backup may get, e.g. maxAge: 26h", s.value),
                );
            }
            out.schedule.max_age_seconds
        }
    };
    if let Some(n) = f.optional("keep") {
        let expected = format!("a whole number from 1 to {MAX_BACKUP_KEEP}");
        if let Some(k) = reader::parsed(n, &f.child_path("keep"), &expected, diags, |s| s.parse::<usize>().ok().filter(|k| (1..=MAX_BACKUP_KEEP).contains(k))) {
            out.keep = k.value;
        }
    }
    if let Some(d) = f.optional("dir").and_then(|n| reader::text(n, &f.child_path("dir"), diags))
        && checks::backup_dir(&d, &f.child_path("dir"), diags)
    {
        out.dir = d.value.trim_end_matches('/').to_string();
    }
    enabled.then_some(out)
}

/// `spec.upgrade`: how many workers of one failure domain are drained at once, and a drain's bound.
fn upgrade(node: &Node, out: &mut Upgrade, diags: &mut Diagnostics) {
    let Some(f) = Fields::of(node, "spec.upgrade", UPGRADE_FIELDS, diags) else { return };
    if let Some(n) = f.optional("maxUnavailable")
        && let Some(m) = reader::parsed(n, &f.child_path("maxUnavailable"), "a whole number from 1 to 1000", diags, |s| {
            s.parse::<usize>().ok().filter(|m| (1..=1000).contains(m))
        })
    {
        out.max_unavailable = m.value;
    }
    if let Some(n) = f.optional("drainTimeout")
        && let Some(d) = reader::parsed(n, &f.child_path("drainTimeout"), "a duration from 1m to 24h, like 5m or 1h", diags, |s| {
            schedule::parse_duration(s).filter(|d| (60..=86_400).contains(d))
        })
    {
        out.drain_timeout_seconds = d.value;
    }
}

fn version(node: &Node, path: &str, diags: &mut Diagnostics) -> Option<Located<Version>> {
    reader::parsed(node, path, "a release version like 1.36.4", diags, Version::parse)
}

fn subnet(f: &Fields, key: &str, default: &str, mark: Mark, diags: &mut Diagnostics) -> Option<Located<IpNet>> {
    match f.optional(key) {
        Some(n) => cidr(n, &f.child_path(key), diags),
        None => default.parse().ok().map(|value| Located { value, mark }),
    }
}

/// A network in CIDR form whose host bits are zero: `10.244.0.1/16` is almost always a typo.
fn cidr(node: &Node, path: &str, diags: &mut Diagnostics) -> Option<Located<IpNet>> {
    let net = reader::parsed(node, path, "a network in CIDR form like 10.244.0.0/16", diags, |s| s.parse::<IpNet>().ok())?;
    if net.value.trunc() != net.value {
        diags.error(path, Some(net.mark), format!("invalid value \"{}\": host bits are set; the network is {}", net.value, net.value.trunc()));
        return None;
    }
    Some(net)
}

fn load_balancer(node: &Node, cluster: Option<&str>, diags: &mut Diagnostics) -> Option<Located<LoadBalancer>> {
    const PATH: &str = "spec.controlPlane.loadBalancer";
    let f = Fields::of(node, PATH, LOAD_BALANCER_FIELDS, diags)?;
    #[derive(Clone, Copy)]
    enum Mode {
        Vrrp,
        External,
    }
    let mode =
        reader::choice(f.required("mode", node.mark, diags)?, &join(PATH, "mode"), &[("keepalived-haproxy", Mode::Vrrp), ("external", Mode::External)], diags)?;
    let reject = |key: &str, mode_name: &str, diags: &mut Diagnostics| {
        if let Some(n) = f.optional(key) {
            diags.error(PATH, Some(n.mark), format!("field \"{key}\" does not apply to mode {mode_name}"));
        }
    };
    let lb = match mode.value {
        Mode::Vrrp => {
            reject("endpoint", "keepalived-haproxy", diags);
            let vip_path = join(PATH, "vip");
            let vip_node = f.required("vip", node.mark, diags);
            let vip = vip_node
                .and_then(|n| reader::parsed(n, &vip_path, "an address with its prefix length like 198.18.0.100/24", diags, |s| s.parse::<IpNet>().ok()));
            let port = match f.optional("port") {
                Some(n) => reader::port(n, &join(PATH, "port"), diags).map(|p| p.value),
                None => Some(DEFAULT_LB_PORT),
            };
            let interface = match f.optional("interface") {
                Some(n) => reader::text(n, &join(PATH, "interface"), diags)
                    .and_then(|i| checks::interface_name(&i, &join(PATH, "interface"), diags).then_some(i.value)),
                None => Some("eth0".to_string()),
            };
            let router_id = match f.optional("virtualRouterId") {
                Some(n) => reader::parsed(n, &join(PATH, "virtualRouterId"), "a number from 1 to 255", diags, |s| s.parse::<u8>().ok().filter(|v| *v != 0))
                    .map(|v| v.value),
                None => Some(default_router_id(cluster.unwrap_or(""))),
            };
            let vip = vip?;
            LoadBalancer::KeepalivedHaproxy(Vrrp {
                vip: vip.value.addr(),
                network: vip.value.trunc(),
                port: port?,
                interface: interface?,
                virtual_router_id: router_id?,
            })
        }
        Mode::External => {
            for key in ["vip", "interface", "virtualRouterId", "port"] {
                reject(key, "external (put the port into endpoint)", diags);
            }
            let path = join(PATH, "endpoint");
            let endpoint = reader::parsed(f.required("endpoint", node.mark, diags)?, &path, "host:port, e.g. api.example.com:6443", diags, split_endpoint)?;
            let (host, port) = endpoint.value;
            if host.parse::<IpAddr>().is_err() && !checks::is_dns_subdomain(&host) {
                diags.error(&path, Some(endpoint.mark), format!("invalid host \"{host}\": expected an IP address or a DNS name"));
                return None;
            }
            LoadBalancer::External { host, port }
        }
    };
    Some(Located { value: lb, mark: node.mark })
}

/// `host:port` or `[v6]:port`.
fn split_endpoint(s: &str) -> Option<(String, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    let port = port.parse::<u16>().ok().filter(|p| *p != 0)?;
    (!host.is_empty() && !host.contains(':') || host.parse::<std::net::Ipv6Addr>().is_ok()).then(|| (host.to_string(), port))
}

/// VRRP router ids must differ between clusters sharing a segment; deriving it from the cluster name makes
/// a collision between two differently named clusters unlikely without asking the operator to pick one.
fn default_router_id(cluster: &str) -> u8 {
    let sum = cluster.bytes().fold(0u32, |acc, b| acc.wrapping_mul(31).wrapping_add(u32::from(b)));
    u8::try_from(sum % 254 + 1).unwrap_or(1)
}

/// `spec.ssh` or a host's `ssh:`: every field optional, the host's fields win over the cluster's.
#[derive(Clone, Default)]
struct SshOverrides {
    user: Option<String>,
    port: Option<u16>,
    identity_file: Option<PathBuf>,
    known_hosts_file: Option<PathBuf>,
    r#become: Option<Become>,
    bastion: Option<Bastion>,
}

impl SshOverrides {
    fn over(self, base: &SshOverrides) -> SshOverrides {
        SshOverrides {
            user: self.user.or_else(|| base.user.clone()),
            port: self.port.or(base.port),
            identity_file: self.identity_file.or_else(|| base.identity_file.clone()),
            known_hosts_file: self.known_hosts_file.or_else(|| base.known_hosts_file.clone()),
            r#become: self.r#become.or(base.r#become),
            bastion: self.bastion.or_else(|| base.bastion.clone()),
        }
    }

    fn resolve(self, paths: &PathContext) -> Ssh {
        let user = self.user.unwrap_or_else(|| "root".to_string());
        let r#become = self.r#become.unwrap_or(if user == "root" { Become::None } else { Become::Sudo });
        Ssh {
            port: self.port.unwrap_or(22),
            identity_file: self.identity_file.unwrap_or_else(|| paths.resolve("~/.ssh/id_ed25519")),
            known_hosts_file: self.known_hosts_file.unwrap_or_else(|| paths.resolve("~/.ssh/known_hosts")),
            r#become,
            bastion: self.bastion,
            user,
        }
    }
}

fn ssh_overrides(node: &Node, path: &str, paths: &PathContext, diags: &mut Diagnostics) -> Option<SshOverrides> {
    let f = Fields::of(node, path, SSH_FIELDS, diags)?;
    let mut out = SshOverrides {
        r#become: f
            .optional("become")
            .and_then(|n| reader::choice(n, &f.child_path("become"), &[("none", Become::None), ("sudo", Become::Sudo)], diags))
            .map(|b| b.value),
        ..connection_fields(&f, paths, diags)
    };
    if let Some(n) = f.optional("bastion") {
        out.bastion = bastion(n, &f.child_path("bastion"), paths, diags);
    }
    Some(out)
}

fn bastion(node: &Node, path: &str, paths: &PathContext, diags: &mut Diagnostics) -> Option<Bastion> {
    let f = Fields::of(node, path, BASTION_FIELDS, diags)?;
    let address = reader::text(f.required("address", node.mark, diags)?, &f.child_path("address"), diags)?;
    if address.value.parse::<IpAddr>().is_err() && !checks::is_dns_subdomain(&address.value) {
        diags.error(f.child_path("address"), Some(address.mark), format!("invalid value \"{}\": expected an IP address or a DNS name", address.value));
    }
    let own = connection_fields(&f, paths, diags).resolve(paths);
    Some(Bastion { address: address.value, port: own.port, user: own.user, identity_file: own.identity_file, known_hosts_file: own.known_hosts_file })
}

/// The fields `spec.ssh`, a host's `ssh:` and a bastion share: who to log in as, where, with which key,
/// checked against which known_hosts.
fn connection_fields(f: &Fields, paths: &PathContext, diags: &mut Diagnostics) -> SshOverrides {
    let path_field =
        |key: &str, diags: &mut Diagnostics| f.optional(key).and_then(|n| reader::text(n, &f.child_path(key), diags)).map(|p| paths.resolve(&p.value));
    SshOverrides {
        user: f.optional("user").and_then(|n| user_name(n, &f.child_path("user"), diags)),
        port: f.optional("port").and_then(|n| reader::port(n, &f.child_path("port"), diags)).map(|p| p.value),
        identity_file: path_field("identityFile", diags),
        known_hosts_file: path_field("knownHostsFile", diags),
        ..SshOverrides::default()
    }
}

/// POSIX portable user names, so a user name can never smuggle options or shell syntax anywhere.
fn user_name(node: &Node, path: &str, diags: &mut Diagnostics) -> Option<String> {
    reader::parsed(node, path, "a user name (letters, digits, '.', '_', '-', not starting with '-')", diags, |s| {
        let ok = !s.is_empty() && s.len() <= 32 && !s.starts_with('-') && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        ok.then(|| s.to_string())
    })
    .map(|u| u.value)
}

fn host(index: usize, node: &Node, cluster_ssh: &SshOverrides, paths: &PathContext, diags: &mut Diagnostics) -> Option<HostDraft> {
    let path = format!("spec.hosts[{index}]");
    let f = Fields::of(node, &path, HOST_FIELDS, diags)?;
    let written = f.required("name", node.mark, diags).and_then(|n| reader::text(n, &f.child_path("name"), diags));
    let written_name = written.as_ref().map(|n| n.value.clone());
    let name = written.filter(|n| checks::dns_label(n, &f.child_path("name"), diags));
    let address = f
        .required("address", node.mark, diags)
        .and_then(|n| reader::parsed(n, &f.child_path("address"), "an IPv4 or IPv6 address", diags, |s| s.parse::<IpAddr>().ok()));
    let roles = f.required("roles", node.mark, diags).and_then(|n| roles(n, &f.child_path("roles"), diags));
    let domain = |key: &str, diags: &mut Diagnostics| {
        f.optional(key).and_then(|n| reader::text(n, &f.child_path(key), diags)).filter(|v| checks::label_value(v, &f.child_path(key), diags))
    };
    // Zones are what the quorum analysis is about, so every host must say where it is.
    let zone = f.required("zone", node.mark, diags).and_then(|_| domain("zone", diags));
    let rack = domain("rack", diags);
    let region = domain("region", diags);
    let labels = f.optional("labels").map(|n| labels(n, &f.child_path("labels"), diags)).unwrap_or_default();
    let taints = f.optional("taints").map(|n| taints(n, &f.child_path("taints"), diags)).unwrap_or_default();
    let ssh = match f.optional("ssh") {
        Some(n) => ssh_overrides(n, &f.child_path("ssh"), paths, diags).unwrap_or_default().over(cluster_ssh),
        None => cluster_ssh.clone(),
    }
    .resolve(paths);
    Some(HostDraft { index, written_name, name, address, roles, zone, rack, region, labels, taints, ssh, mark: node.mark })
}

fn roles(node: &Node, path: &str, diags: &mut Diagnostics) -> Option<Located<Roles>> {
    let items = reader::list(node, path, diags)?;
    let mut roles = Roles::default();
    for (i, item) in items.iter().enumerate() {
        let item_path = format!("{path}[{i}]");
        let Some(role) = reader::choice(item, &item_path, &[("control-plane", 0), ("worker", 1)], diags) else { continue };
        let slot = if role.value == 0 { &mut roles.control_plane } else { &mut roles.worker };
        if *slot {
            diags.error(&item_path, Some(item.mark), "role listed twice");
        }
        *slot = true;
    }
    if items.is_empty() {
        diags.error(path, Some(node.mark), "a host needs at least one role: control-plane or worker");
        return None;
    }
    Some(Located { value: roles, mark: node.mark })
}

fn labels(node: &Node, path: &str, diags: &mut Diagnostics) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for entry in reader::entries(node, path, diags).unwrap_or_default() {
        let key_path = format!("{path}.{}", entry.key);
        let key = Located { value: entry.key.clone(), mark: entry.key_mark };
        let value = reader::text(&entry.value, &key_path, diags);
        if checks::label_key(&key, &key_path, diags)
            && let Some(v) = value.filter(|v| checks::label_value(v, &key_path, diags))
        {
            out.insert(key.value, v.value);
        }
    }
    out
}

fn taints(node: &Node, path: &str, diags: &mut Diagnostics) -> Vec<Taint> {
    let mut out = Vec::new();
    for (i, item) in reader::list(node, path, diags).unwrap_or_default().iter().enumerate() {
        let p = format!("{path}[{i}]");
        let Some(f) = Fields::of(item, &p, TAINT_FIELDS, diags) else { continue };
        let key = f
            .required("key", item.mark, diags)
            .and_then(|n| reader::text(n, &f.child_path("key"), diags))
            .filter(|k| checks::label_key(k, &f.child_path("key"), diags));
        let value =
            f.optional("value").and_then(|n| reader::text(n, &f.child_path("value"), diags)).filter(|v| checks::label_value(v, &f.child_path("value"), diags));
        let effects = [("NoSchedule", TaintEffect::NoSchedule), ("PreferNoSchedule", TaintEffect::PreferNoSchedule), ("NoExecute", TaintEffect::NoExecute)];
        let effect = f.required("effect", item.mark, diags).and_then(|n| reader::choice(n, &f.child_path("effect"), &effects, diags));
        if let (Some(key), Some(effect)) = (key, effect) {
            out.push(Taint { key: key.value, value: value.map(|v| v.value), effect: effect.value });
        }
    }
    out
}

/// Turns a draft that passed every check into the model; `None` only if a check missed an absent field.
fn finish(d: SpecDraft) -> Option<Inventory> {
    let cni = d.cni?;
    let hosts = d
        .hosts
        .into_iter()
        .map(|h| {
            Some(Host {
                name: h.name?.value,
                address: h.address?.value,
                roles: h.roles?.value,
                zone: h.zone?.value,
                rack: h.rack.map(|r| r.value),
                region: h.region.map(|r| r.value),
                labels: h.labels,
                taints: h.taints,
                ssh: h.ssh,
                mark: h.mark,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    let kubernetes_version = d.kubernetes_version?.value;
    let a = d.artifacts;
    let artifacts = Artifacts {
        arch: a.arch,
        source: a.source,
        versions: ComponentVersions {
            crictl: a.crictl.unwrap_or_else(|| support::default_crictl_version(kubernetes_version)),
            containerd: a.containerd.unwrap_or(support::DEFAULT_CONTAINERD_VERSION),
            runc: a.runc.unwrap_or(support::DEFAULT_RUNC_VERSION),
            cni_plugins: a.cni_plugins.unwrap_or(support::DEFAULT_CNI_PLUGINS_VERSION),
        },
        preinstalled: a.preinstalled,
    };
    Some(Inventory {
        name: d.name?,
        kubernetes: Kubernetes {
            version: kubernetes_version,
            pod_subnet: d.pod_subnet?.value,
            service_subnet: d.service_subnet?.value,
            dns_domain: d.dns_domain,
            cni,
            cni_version: d.cni_version.unwrap_or_else(|| support::default_cni_version(cni)),
            container_runtime_endpoint: d.container_runtime_endpoint,
            ignore_preflight_errors: d.ignore_preflight_errors,
            registry_mirrors: d.registry_mirrors,
            addons: d.addons,
            kubelet: d.kubelet,
        },
        etcd: Etcd { version: d.etcd_version?.value, backup: d.etcd_backup },
        load_balancer: d.load_balancer?.value,
        concurrency: d.concurrency,
        certificates: d.certificates,
        upgrade: d.upgrade,
        artifacts,
        hosts,
    })
}

//! The validated inventory. Code past the inventory edge takes only these types: every field here has been
//! checked, so later layers never re-validate user input.
use super::diagnostic::Mark;
use ipnet::IpNet;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Inventory {
    pub name: String,
    pub kubernetes: Kubernetes,
    pub etcd: Etcd,
    pub load_balancer: LoadBalancer,
    /// How many hosts kubeha talks to at once.
    pub concurrency: usize,
    pub certificates: Certificates,
    pub upgrade: Upgrade,
    pub artifacts: Artifacts,
    pub hosts: Vec<Host>,
}

/// How a version change rolls through the workers (`spec.upgrade`): one failure domain at a time, at most
/// `max_unavailable` of its nodes drained at once, each drain bounded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Upgrade {
    pub max_unavailable: usize,
    pub drain_timeout_seconds: u64,
}

/// Which binaries the hosts get and where kubeha downloads them (`spec.artifacts`); see src/artifacts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Artifacts {
    /// The hosts' CPU architecture. Facts would know it, but `artifacts list|fetch` run offline, before any host exists.
    pub arch: Arch,
    pub source: ArtifactSource,
    pub versions: ComponentVersions,
    /// What the hosts already have (`spec.artifacts.preinstalled`): kubeha neither downloads nor installs these,
    /// and preflight requires them on the hosts instead. For sites whose images or packages carry some programs
    /// (the lab's runtime needs neither crictl nor the CNI plugins).
    pub preinstalled: std::collections::BTreeSet<crate::artifacts::catalogue::Kind>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    Amd64,
    Arm64,
}

impl Arch {
    /// The name every upstream project (Kubernetes, etcd, containerd, runc, CNI, cri-tools) uses in its file names.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }
}

/// Where artifacts come from: the upstream release locations, a mirror with the same paths, or a local bundle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ArtifactSource {
    Upstream,
    /// A base URL (`http(s)://host[/prefix]`, no trailing '/') that replaces `https://dl.k8s.io` and `https://github.com`.
    Mirror(String),
    /// A folder written by `kubeha artifacts fetch`.
    Bundle(PathBuf),
}

/// Versions of the node components the inventory has no other field for; defaults in `support`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ComponentVersions {
    pub crictl: Version,
    pub containerd: Version,
    pub runc: Version,
    pub cni_plugins: Version,
}

/// When `apply` renews certificates (kubeha's etcd PKI, kubeadm's): those valid for fewer days than this.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Certificates {
    pub renew_before_days: u32,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Kubernetes {
    pub version: Version,
    pub pod_subnet: IpNet,
    pub service_subnet: IpNet,
    pub dns_domain: String,
    pub cni: Cni,
    pub cni_version: Version,
    /// The CRI socket every node's kubelet and kubeadm talk to, a `unix:///` URL.
    pub container_runtime_endpoint: String,
    /// kubeadm preflight checks that `init` and `join` report as warnings instead of errors.
    pub ignore_preflight_errors: Vec<String>,
    /// Registry host -> the mirrors containerd pulls its images from first, in order (when kubeha installs
    /// containerd; rendered as containerd's hosts.toml files).
    pub registry_mirrors: BTreeMap<String, Vec<String>>,
    pub addons: Addons,
    pub kubelet: Kubelet,
}

/// The add-ons kubeadm installs itself; turning one off renders `disabled: true` for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Addons {
    #[serde(rename = "coreDNS")]
    pub core_dns: bool,
    #[serde(rename = "kubeProxy")]
    pub kube_proxy: bool,
}

/// Cluster-wide kubelet settings: kubeadm uploads them in the kubelet-config ConfigMap, joins download them.
/// `None` leaves the field out of the KubeletConfiguration, i.e. the kubelet's own default.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Kubelet {
    pub cgroup_driver: CgroupDriver,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fail_cgroup_v1: Option<bool>,
    #[serde(rename = "cgroupsPerQOS", skip_serializing_if = "Option::is_none")]
    pub cgroups_per_qos: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enforce_node_allocatable: Option<Vec<String>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupDriver {
    Systemd,
    Cgroupfs,
}

impl CgroupDriver {
    pub fn name(self) -> &'static str {
        match self {
            CgroupDriver::Systemd => "systemd",
            CgroupDriver::Cgroupfs => "cgroupfs",
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Etcd {
    pub version: Version,
    /// Scheduled backups (`spec.etcd.backup`); `None` when turned off with `enabled: false`.
    pub backup: Option<Backup>,
}

/// The backup timer on every control plane: when it runs, how many snapshots each keeps, where.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Backup {
    pub schedule: Schedule,
    pub keep: usize,
    /// Absolute folder on the control planes (and only kubeha's backup names in it are ever rotated away).
    pub dir: String,
}

/// When the backup runs: a systemd OnCalendar expression, and how old the newest backup may get before it
/// counts as missed (the alert and `kubeha verify` use it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Schedule {
    pub calendar: String,
    pub max_age_seconds: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Cni {
    Flannel,
    Calico,
    Cilium,
}

impl Cni {
    pub fn name(self) -> &'static str {
        match self {
            Cni::Flannel => "flannel",
            Cni::Calico => "calico",
            Cni::Cilium => "cilium",
        }
    }
}

#[derive(Clone, Debug, Serialize)]
#[serde(tag = "mode", rename_all = "kebab-case")]
pub enum LoadBalancer {
    /// keepalived holds the VIP, HAProxy on every control plane spreads VIP:port over the API servers.
    KeepalivedHaproxy(Vrrp),
    /// An existing load balancer the operator runs; kubeha only points the cluster at it.
    External { host: String, port: u16 },
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Vrrp {
    pub vip: IpAddr,
    /// The VIP's prefix: the one L2 segment all control planes must share.
    pub network: IpNet,
    pub port: u16,
    pub interface: String,
    pub virtual_router_id: u8,
}

impl LoadBalancer {
    /// The address clients use for the API: `controlPlaneEndpoint` in kubeadm terms.
    pub fn endpoint(&self) -> (String, u16) {
        match self {
            LoadBalancer::KeepalivedHaproxy(v) => (v.vip.to_string(), v.port),
            LoadBalancer::External { host, port } => (host.clone(), *port),
        }
    }

    pub fn vrrp(&self) -> Option<&Vrrp> {
        match self {
            LoadBalancer::KeepalivedHaproxy(v) => Some(v),
            LoadBalancer::External { .. } => None,
        }
    }
}

/// The services of the keepalived-haproxy mode on each control plane, in the order they start: HAProxy
/// first, as keepalived's health check goes through it.
pub const LOAD_BALANCER_SERVICES: [&str; 2] = ["haproxy", "keepalived"];

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Host {
    pub name: String,
    pub address: IpAddr,
    pub roles: Roles,
    pub zone: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rack: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    pub ssh: Ssh,
    /// Where the host's entry starts in the inventory, for findings about the host.
    #[serde(skip)]
    pub mark: Mark,
}

impl Host {
    pub fn is_control_plane(&self) -> bool {
        self.roles.control_plane
    }

    pub fn is_worker(&self) -> bool {
        self.roles.worker
    }

    /// The peer URL of this control plane's etcd member: with the name, what ties a member to its host
    /// (`etcd::identity`).
    pub fn peer_url(&self) -> String {
        format!("https://{}", SocketAddr::new(self.address, ETCD_PEER_PORT))
    }

    pub fn client_url(&self) -> String {
        format!("https://{}", SocketAddr::new(self.address, ETCD_CLIENT_PORT))
    }

    /// Every label its node should carry: failure domains first, then the inventory's own labels.
    pub fn node_labels(&self) -> Vec<(String, String)> {
        let mut labels = vec![(ZONE_LABEL.to_string(), self.zone.clone())];
        if let Some(region) = &self.region {
            labels.push((REGION_LABEL.to_string(), region.clone()));
        }
        if let Some(rack) = &self.rack {
            labels.push((RACK_LABEL.to_string(), rack.clone()));
        }
        labels.extend(self.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
        labels
    }
}

pub const ETCD_CLIENT_PORT: u16 = 2379;
pub const ETCD_PEER_PORT: u16 = 2380;
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
pub const REGION_LABEL: &str = "topology.kubernetes.io/region";
/// Not a Kubernetes well-known label (there is none for racks); kubelets may set it on themselves
/// because NodeRestriction only guards the kubernetes.io and k8s.io namespaces.
pub const RACK_LABEL: &str = "topology.kubeha.io/rack";

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Roles {
    pub control_plane: bool,
    pub worker: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Taint {
    pub key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    pub effect: TaintEffect,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum TaintEffect {
    NoSchedule,
    PreferNoSchedule,
    NoExecute,
}

impl TaintEffect {
    pub fn name(self) -> &'static str {
        match self {
            TaintEffect::NoSchedule => "NoSchedule",
            TaintEffect::PreferNoSchedule => "PreferNoSchedule",
            TaintEffect::NoExecute => "NoExecute",
        }
    }
}

/// SSH access to one host, after the host's own `ssh:` overrides were applied over `spec.ssh`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Ssh {
    pub user: String,
    pub port: u16,
    pub identity_file: PathBuf,
    pub known_hosts_file: PathBuf,
    /// How commands get root: `none` when logging in as root, `sudo` (non-interactive) otherwise.
    pub r#become: Become,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bastion: Option<Bastion>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Become {
    None,
    Sudo,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Bastion {
    pub address: String,
    pub port: u16,
    pub user: String,
    pub identity_file: PathBuf,
    pub known_hosts_file: PathBuf,
}

/// A release version `major.minor.patch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl Version {
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Self { major, minor, patch }
    }

    /// Accepts `1.36.4` and `v1.36.4`; pre-releases are not supported by kubeha.
    pub fn parse(text: &str) -> Option<Self> {
        let digits = text.strip_prefix('v').unwrap_or(text);
        let mut parts = digits.split('.');
        let mut next = || parts.next().filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())).and_then(|p| p.parse().ok());
        let version = Self::new(next()?, next()?, next()?);
        parts.next().is_none().then_some(version)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl Serialize for Version {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl Inventory {
    pub fn control_planes(&self) -> impl Iterator<Item = &Host> {
        self.hosts.iter().filter(|h| h.is_control_plane())
    }

    /// The control plane that seeds a cluster that does not exist yet (`kubeha render`, `plan --offline`,
    /// a first apply); on a cluster that exists `plan::seed_control_plane` prefers a joined one.
    pub fn first_control_plane(&self) -> Option<&Host> {
        self.control_planes().next()
    }

    /// Hosts that are only workers: control planes that also run workloads join as control planes.
    pub fn workers(&self) -> impl Iterator<Item = &Host> {
        self.hosts.iter().filter(|h| h.is_worker() && !h.is_control_plane())
    }

    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::Version;

    #[test]
    fn versions_parse_strictly() {
        assert_eq!(Version::parse("1.36.4"), Some(Version::new(1, 36, 4)));
        assert_eq!(Version::parse("v3.6.14"), Some(Version::new(3, 6, 14)));
        for bad in ["1.36", "1.36.4.1", "1.36.x", "", "v", "1..4", "1.36.4-rc.1", "+1.2.3"] {
            assert_eq!(Version::parse(bad), None, "{bad}");
        }
    }
}

//! One typed context per template: the exact values each file needs, computed from the validated
//! inventory. Templates only lay values out; every decision (ordering, priorities, labels) is made here.
use super::secrets::Secrets;
use crate::inventory::{ETCD_CLIENT_PORT, Host, Inventory, REGION_LABEL, TaintEffect, ZONE_LABEL};
use serde::Serialize;
use std::net::IpAddr;

use crate::paths::{
    CHECK_SCRIPT, ETCD_BACKUP_SCRIPT, ETCD_BACKUP_STATUS, ETCD_BACKUP_TEXTFILE, ETCD_BINARY, ETCD_DATA_DIR, ETCD_PKI_DIR, ETCDCTL_ENV, KUBEHA_METRICS_SCRIPT,
    METRICS_TEXTFILE_DIR,
};
pub const API_SERVER_PORT: u16 = 6443;
/// etcd's plain-HTTP listener for /metrics and /health only (no keys, no API): what Prometheus scrapes, so
/// the scraper needs no etcd client certificate (one would let it read and write every key).
pub const ETCD_METRICS_PORT: u16 = 2381;
/// HAProxy's built-in Prometheus exporter, on a frontend of its own so the API frontend stays pure TCP.
pub const HAPROXY_EXPORTER_PORT: u16 = 8405;
pub const KUBELET_PORT: u16 = 10250;
/// kubeha-metrics, the socket-activated script on each control plane (templates/monitoring/kubeha-metrics.sh).
pub const KUBEHA_METRICS_PORT: u16 = 9654;

/// `host:port`, with brackets for IPv6 so the port is not read as part of the address.
pub fn host_port(host: &str, port: u16) -> String {
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(_)) => format!("[{host}]:{port}"),
        _ => format!("{host}:{port}"),
    }
}

/// Where Prometheus scrapes this member's metrics.
pub fn metrics_url(h: &Host) -> String {
    format!("http://{}", std::net::SocketAddr::new(h.address, ETCD_METRICS_PORT))
}

#[derive(Serialize)]
pub struct EtcdConfig {
    pub name: String,
    pub data_dir: &'static str,
    pub pki_dir: &'static str,
    pub peer_url: String,
    pub client_url: String,
    pub listen_client_urls: String,
    /// The host's address for Prometheus, and loopback for a local `curl` on the host.
    pub listen_metrics_urls: String,
    /// Members that exist when this one starts: itself plus the ones before it. kubeha grows etcd one
    /// member at a time, so member k joins a cluster of k-1 (state `existing`) and only the first member of a
    /// new cluster is `new` (see `etcd_config`).
    pub initial_cluster: String,
    pub initial_cluster_state: EtcdCluster,
    pub cluster_token: String,
}

/// Whether the etcd cluster exists already (a member answers, or a control plane has etcd data): what decides
/// the one `initial-cluster-state: new` of a cluster's life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EtcdCluster {
    New,
    Existing,
}

/// Only the first member of a cluster that does not exist yet says `new`. Once the cluster exists every
/// member says `existing`, the first one too: a member whose data directory is lost (a disk replaced) then
/// fails to start instead of bootstrapping a second cluster of one beside the real one (with Restart=always
/// it would, and the next run would have seen two clusters). etcd reads the setting only when its data
/// directory is empty, so rewriting it on a running member needs no restart.
pub fn etcd_config(inv: &Inventory, host: &Host, secrets: &Secrets, cluster: EtcdCluster) -> EtcdConfig {
    let position = inv.control_planes().position(|h| h.name == host.name).unwrap_or(0);
    let initial: Vec<String> = inv.control_planes().take(position + 1).map(|h| format!("{}={}", h.name, h.peer_url())).collect();
    EtcdConfig {
        name: host.name.clone(),
        data_dir: ETCD_DATA_DIR,
        pki_dir: ETCD_PKI_DIR,
        peer_url: host.peer_url(),
        client_url: host.client_url(),
        listen_client_urls: format!("{},https://127.0.0.1:{ETCD_CLIENT_PORT}", host.client_url()),
        listen_metrics_urls: format!("{},http://127.0.0.1:{ETCD_METRICS_PORT}", metrics_url(host)),
        initial_cluster: initial.join(","),
        initial_cluster_state: if position == 0 && cluster == EtcdCluster::New { EtcdCluster::New } else { EtcdCluster::Existing },
        cluster_token: secrets.etcd_cluster_token.clone(),
    }
}

#[derive(Serialize)]
pub struct EtcdUnit {
    pub binary: &'static str,
    pub data_dir: &'static str,
}

pub fn etcd_unit() -> EtcdUnit {
    EtcdUnit { binary: ETCD_BINARY, data_dir: ETCD_DATA_DIR }
}

#[derive(Serialize)]
pub struct KubeletUnit {
    pub binary: String,
}

/// The kubelet's unit when kubeha installs the kubelet; a site whose packages carry it has their unit.
pub fn kubelet_unit(inv: &Inventory) -> Option<KubeletUnit> {
    use crate::artifacts::catalogue::Kind;
    (!inv.artifacts.preinstalled.contains(&Kind::Kubelet)).then(|| KubeletUnit { binary: Kind::Kubelet.install_path("kubelet") })
}

#[derive(Serialize)]
pub struct Containerd {
    pub version: String,
    pub kubernetes_minor: String,
    pub sandbox_image: &'static str,
    pub binary: String,
    pub runc: String,
    pub cni_bin_dir: &'static str,
    /// runc's cgroup driver must be the kubelet's.
    pub systemd_cgroup: bool,
}

/// One registry's containerd hosts.toml: the registry itself as the last resort, its mirrors first.
#[derive(Serialize)]
pub struct RegistryHosts {
    pub registry: String,
    pub server: String,
    pub mirrors: Vec<String>,
}

/// The hosts.toml files of `spec.kubernetes.registryMirrors`, when kubeha runs containerd. Docker Hub's
/// images are named `docker.io/...` but served from registry-1.docker.io.
pub fn registry_hosts(inv: &Inventory) -> Vec<RegistryHosts> {
    if !crate::artifacts::catalogue::installs_containerd(inv) {
        return Vec::new();
    }
    inv.kubernetes
        .registry_mirrors
        .iter()
        .map(|(registry, mirrors)| {
            let server = if registry == "docker.io" { "https://registry-1.docker.io".to_string() } else { format!("https://{registry}") };
            RegistryHosts { registry: registry.clone(), server, mirrors: mirrors.clone() }
        })
        .collect()
}

/// containerd's config and unit when kubeha installs containerd (the kubelets talk to it, and the site did
/// not bring its own).
pub fn containerd(inv: &Inventory) -> Option<Containerd> {
    use crate::artifacts::catalogue::{self, Kind};
    let k = inv.kubernetes.version;
    catalogue::installs_containerd(inv).then(|| Containerd {
        version: inv.artifacts.versions.containerd.to_string(),
        kubernetes_minor: format!("{}.{}", k.major, k.minor),
        sandbox_image: crate::inventory::support::sandbox_image(k),
        binary: Kind::Containerd.install_path("containerd"),
        runc: Kind::Runc.install_path("runc"),
        cni_bin_dir: crate::paths::CNI_BIN_DIR,
        systemd_cgroup: inv.kubernetes.kubelet.cgroup_driver == crate::inventory::CgroupDriver::Systemd,
    })
}

#[derive(Serialize)]
pub struct EtcdctlEnv {
    pub endpoints: String,
    pub pki_dir: &'static str,
}

/// The etcd backup script and its units (templates/etcd/etcd-backup.sh, systemd/kubeha-etcd-backup.*).
#[derive(Serialize)]
pub struct EtcdBackup {
    pub script: &'static str,
    pub dir: String,
    pub keep: usize,
    pub etcdctl_env: &'static str,
    /// The member's own client URL: leadership is asked of this member, and the snapshot taken from it.
    pub endpoint: String,
    pub status_file: &'static str,
    pub textfile: &'static str,
    pub metric: &'static str,
    pub calendar: String,
    pub randomized_delay_seconds: u64,
}

/// None when backups are off (`spec.etcd.backup.enabled: false`).
pub fn etcd_backup(inv: &Inventory, host: &Host) -> Option<EtcdBackup> {
    let b = inv.etcd.backup.as_ref()?;
    Some(EtcdBackup {
        script: ETCD_BACKUP_SCRIPT,
        dir: b.dir.clone(),
        keep: b.keep,
        etcdctl_env: ETCDCTL_ENV,
        endpoint: host.client_url(),
        status_file: ETCD_BACKUP_STATUS,
        textfile: ETCD_BACKUP_TEXTFILE,
        metric: crate::monitoring::rules::BACKUP_METRIC,
        calendar: b.schedule.calendar.clone(),
        // At most a minute, and a small part of the period for short ones (20 s for `minutely`'s 2 min limit).
        randomized_delay_seconds: (b.schedule.max_age_seconds / 6).clamp(1, 60),
    })
}

pub fn etcdctl_env(inv: &Inventory) -> EtcdctlEnv {
    EtcdctlEnv { endpoints: etcd_endpoints(inv).join(","), pki_dir: ETCD_PKI_DIR }
}

/// The client URLs of the etcd members, in inventory order: what etcdctl and every API server talk to.
pub fn etcd_endpoints(inv: &Inventory) -> Vec<String> {
    inv.control_planes().map(Host::client_url).collect()
}

#[derive(Serialize)]
pub struct Keepalived {
    pub router_name: String,
    pub interface: String,
    pub virtual_router_id: u8,
    pub state: &'static str,
    pub priority: u32,
    /// Subtracted when the health check fails; larger than any gap between priorities, so a control plane
    /// whose API path is broken always yields the VIP to one whose path works.
    pub weight: i64,
    pub auth_pass: String,
    pub source_ip: String,
    pub peers: Vec<String>,
    pub vip: String,
    pub check_script: &'static str,
}

pub fn keepalived(inv: &Inventory, host: &Host, secrets: &Secrets) -> Option<Keepalived> {
    let vrrp = inv.load_balancer.vrrp()?;
    let members = inv.control_planes().count();
    let position = inv.control_planes().position(|h| h.name == host.name)?;
    // Distinct priorities in inventory order: the first control plane holds the VIP while it is healthy.
    let priority = 100 + u32::try_from(members - position).unwrap_or(0);
    Some(Keepalived {
        router_name: format!("kubeha_{}_{}", inv.name, host.name).replace('-', "_"),
        interface: vrrp.interface.clone(),
        virtual_router_id: vrrp.virtual_router_id,
        state: if position == 0 { "MASTER" } else { "BACKUP" },
        priority,
        weight: -(i64::try_from(members).unwrap_or(i64::MAX) + 1),
        auth_pass: secrets.vrrp_auth_pass.clone(),
        source_ip: host.address.to_string(),
        peers: inv.control_planes().filter(|h| h.name != host.name).map(|h| h.address.to_string()).collect(),
        vip: format!("{}/{}", vrrp.vip, vrrp.network.prefix_len()),
        check_script: CHECK_SCRIPT,
    })
}

#[derive(Serialize)]
pub struct CheckScript {
    pub url: String,
}

pub fn check_script(inv: &Inventory) -> Option<CheckScript> {
    let vrrp = inv.load_balancer.vrrp()?;
    Some(CheckScript { url: format!("https://{}/healthz", host_port("127.0.0.1", vrrp.port)) })
}

/// kubeha-metrics: installed with keepalived (the VIP it reports lives there), by the load-balancer phase.
#[derive(Serialize)]
pub struct KubehaMetrics {
    pub port: u16,
    pub vip: String,
    pub textfile_dir: &'static str,
    pub script: &'static str,
}

pub fn kubeha_metrics(inv: &Inventory) -> Option<KubehaMetrics> {
    let vrrp = inv.load_balancer.vrrp()?;
    Some(KubehaMetrics { port: KUBEHA_METRICS_PORT, vip: vrrp.vip.to_string(), textfile_dir: METRICS_TEXTFILE_DIR, script: KUBEHA_METRICS_SCRIPT })
}

#[derive(Serialize)]
pub struct Haproxy {
    pub port: u16,
    pub exporter_port: u16,
    pub backends: Vec<Backend>,
}

#[derive(Serialize)]
pub struct Backend {
    pub name: String,
    pub address: String,
}

pub fn haproxy(inv: &Inventory) -> Option<Haproxy> {
    let vrrp = inv.load_balancer.vrrp()?;
    let backends = inv.control_planes().map(|h| Backend { name: h.name.clone(), address: host_port(&h.address.to_string(), API_SERVER_PORT) }).collect();
    Some(Haproxy { port: vrrp.port, exporter_port: HAPROXY_EXPORTER_PORT, backends })
}

#[derive(Serialize)]
pub struct NodeRegistration {
    pub name: String,
    pub cri_socket: String,
    /// Rendered only when non-empty.
    pub ignore_preflight_errors: Vec<String>,
    pub node_ip: String,
    /// `k=v,k=v` for the kubelet's --node-labels; only labels a kubelet may set on itself.
    pub node_labels: String,
    /// None keeps kubeadm's default (the control-plane taint on control planes, none on workers).
    pub taints: Option<Vec<TaintEntry>>,
}

#[derive(Serialize)]
pub struct TaintEntry {
    pub key: String,
    pub value: Option<String>,
    pub effect: &'static str,
}

/// The NodeRestriction admission plugin lets a kubelet set only some labels in the kubernetes.io and
/// k8s.io namespaces on itself; the others are applied with an admin credential in the labels phase.
pub fn kubelet_may_set(key: &str) -> bool {
    let Some((prefix, _)) = key.split_once('/') else { return true };
    let guarded = |ns: &str| prefix == ns || prefix.ends_with(&format!(".{ns}"));
    if !guarded("kubernetes.io") && !guarded("k8s.io") {
        return true;
    }
    matches!(key, "kubernetes.io/hostname" | "kubernetes.io/arch" | "kubernetes.io/os" | "node.kubernetes.io/instance-type" | ZONE_LABEL | REGION_LABEL)
        || prefix.ends_with(".kubelet.kubernetes.io")
        || prefix.ends_with(".node.kubernetes.io")
        || prefix == "kubelet.kubernetes.io"
        || prefix == "node.kubernetes.io"
}

pub fn node_registration(inv: &Inventory, host: &Host) -> NodeRegistration {
    let node_labels = host.node_labels().into_iter().filter(|(k, _)| kubelet_may_set(k)).map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
    let mut taints: Vec<TaintEntry> = host.taints.iter().map(|t| TaintEntry { key: t.key.clone(), value: t.value.clone(), effect: t.effect.name() }).collect();
    let taints = match (host.is_control_plane(), host.is_worker()) {
        // A control plane that also runs workloads: exactly the inventory's taints (possibly none).
        (true, true) => Some(taints),
        (true, false) if taints.is_empty() => None,
        (true, false) => {
            taints.insert(0, TaintEntry { key: "node-role.kubernetes.io/control-plane".into(), value: None, effect: TaintEffect::NoSchedule.name() });
            Some(taints)
        }
        (false, _) => (!taints.is_empty()).then_some(taints),
    };
    NodeRegistration {
        name: host.name.clone(),
        cri_socket: inv.kubernetes.container_runtime_endpoint.clone(),
        ignore_preflight_errors: inv.kubernetes.ignore_preflight_errors.clone(),
        node_ip: host.address.to_string(),
        node_labels,
        taints,
    }
}

#[derive(Serialize)]
pub struct KubeadmInit {
    pub node: NodeRegistration,
    pub advertise_address: String,
    pub bind_port: u16,
    pub bootstrap_token: String,
    pub certificate_key: String,
    pub cluster: ClusterConfiguration,
    pub kubelet: KubeletConfiguration,
}

/// The cluster-wide KubeletConfiguration; `None` fields are left out (the kubelet's default).
#[derive(Serialize)]
pub struct KubeletConfiguration {
    pub cgroup_driver: &'static str,
    pub container_runtime_endpoint: String,
    pub fail_cgroup_v1: Option<bool>,
    pub cgroups_per_qos: Option<bool>,
    pub enforce_node_allocatable: Option<Vec<String>>,
}

fn kubelet_configuration(inv: &Inventory) -> KubeletConfiguration {
    let k = &inv.kubernetes.kubelet;
    KubeletConfiguration {
        cgroup_driver: k.cgroup_driver.name(),
        container_runtime_endpoint: inv.kubernetes.container_runtime_endpoint.clone(),
        fail_cgroup_v1: k.fail_cgroup_v1,
        cgroups_per_qos: k.cgroups_per_qos,
        enforce_node_allocatable: k.enforce_node_allocatable.clone(),
    }
}

#[derive(Serialize)]
pub struct ClusterConfiguration {
    pub kubernetes_version: String,
    pub cluster_name: String,
    pub control_plane_endpoint: String,
    pub pod_subnet: String,
    pub service_subnet: String,
    pub dns_domain: String,
    pub cert_sans: Vec<String>,
    pub etcd_endpoints: Vec<String>,
    pub etcd_ca_file: String,
    pub etcd_cert_file: String,
    pub etcd_key_file: String,
    pub dns_disabled: bool,
    pub proxy_disabled: bool,
    /// kubeadm's leaf validity, set only by the test hook (`pki::test_validity_days`), so that a lab test can
    /// make kubeadm's certificates due for renewal too; otherwise kubeadm's default (1 year).
    pub certificate_validity_hours: Option<u32>,
}

fn cluster_configuration(inv: &Inventory) -> ClusterConfiguration {
    let (endpoint_host, endpoint_port) = inv.load_balancer.endpoint();
    let mut cert_sans = vec![endpoint_host.clone()];
    for h in inv.control_planes() {
        cert_sans.push(h.address.to_string());
        cert_sans.push(h.name.clone());
    }
    cert_sans.dedup();
    ClusterConfiguration {
        kubernetes_version: format!("v{}", inv.kubernetes.version),
        cluster_name: inv.name.clone(),
        control_plane_endpoint: host_port(&endpoint_host, endpoint_port),
        pod_subnet: inv.kubernetes.pod_subnet.to_string(),
        service_subnet: inv.kubernetes.service_subnet.to_string(),
        dns_domain: inv.kubernetes.dns_domain.clone(),
        cert_sans,
        etcd_endpoints: etcd_endpoints(inv),
        etcd_ca_file: format!("{ETCD_PKI_DIR}/ca.crt"),
        etcd_cert_file: format!("{ETCD_PKI_DIR}/apiserver-etcd-client.crt"),
        etcd_key_file: format!("{ETCD_PKI_DIR}/apiserver-etcd-client.key"),
        dns_disabled: !inv.kubernetes.addons.core_dns,
        proxy_disabled: !inv.kubernetes.addons.kube_proxy,
        certificate_validity_hours: crate::pki::test_validity_days().map(|d| d * 24),
    }
}

pub fn kubeadm_init(inv: &Inventory, host: &Host, secrets: &Secrets) -> KubeadmInit {
    KubeadmInit {
        node: node_registration(inv, host),
        advertise_address: host.address.to_string(),
        bind_port: API_SERVER_PORT,
        bootstrap_token: secrets.bootstrap_token.clone(),
        certificate_key: secrets.certificate_key.clone(),
        cluster: cluster_configuration(inv),
        kubelet: kubelet_configuration(inv),
    }
}

#[derive(Serialize)]
pub struct KubeadmJoin {
    pub node: NodeRegistration,
    pub api_server_endpoint: String,
    pub token: String,
    pub ca_cert_hash: String,
    pub control_plane: bool,
    pub advertise_address: String,
    pub bind_port: u16,
    pub certificate_key: String,
}

pub fn kubeadm_join(inv: &Inventory, host: &Host, secrets: &Secrets) -> KubeadmJoin {
    let (endpoint_host, endpoint_port) = inv.load_balancer.endpoint();
    KubeadmJoin {
        node: node_registration(inv, host),
        api_server_endpoint: host_port(&endpoint_host, endpoint_port),
        token: secrets.bootstrap_token.clone(),
        ca_cert_hash: secrets.ca_cert_hash.clone(),
        control_plane: host.is_control_plane(),
        advertise_address: host.address.to_string(),
        bind_port: API_SERVER_PORT,
        certificate_key: secrets.certificate_key.clone(),
    }
}

#[derive(Serialize)]
pub struct HostPrerequisites {
    pub ipv6: bool,
}

pub fn host_prerequisites(inv: &Inventory) -> HostPrerequisites {
    HostPrerequisites { ipv6: inv.kubernetes.pod_subnet.addr().is_ipv6() || inv.hosts.iter().any(|h| h.address.is_ipv6()) }
}

#[derive(Serialize)]
pub struct Cni {
    pub cluster: String,
    pub version: String,
    pub pod_subnet: String,
    pub pod_subnet_ipv6: bool,
    /// Cilium talks to the API through the cluster endpoint before kube-proxy rules exist.
    pub api_host: String,
    pub api_port: u16,
}

pub fn cni(inv: &Inventory) -> Cni {
    let (api_host, api_port) = inv.load_balancer.endpoint();
    Cni {
        cluster: inv.name.clone(),
        version: inv.kubernetes.cni_version.to_string(),
        pod_subnet: inv.kubernetes.pod_subnet.to_string(),
        pod_subnet_ipv6: inv.kubernetes.pod_subnet.addr().is_ipv6(),
        api_host,
        api_port,
    }
}

#[cfg(test)]
mod tests {
    use super::kubelet_may_set;

    /// The timer and script say what the inventory says: its schedule, retention, folder, and the member's
    /// own client URL; a short schedule gets a short random delay.
    #[test]
    fn the_backup_files_follow_spec_etcd_backup() {
        let mut inv = crate::inventory::load(std::path::Path::new("inventories/lab.yaml")).unwrap().inventory.unwrap();
        let b = inv.etcd.backup.as_mut().unwrap();
        b.schedule = crate::inventory::Schedule { calendar: "*-*-* 00/6:00:00".into(), max_age_seconds: 13 * 3_600 };
        b.keep = 8;
        b.dir = "/srv/etcd-backups".into();
        let templates = crate::render::templates::Templates::builtin().unwrap();
        let files = crate::render::render(&inv, &crate::render::secrets::Secrets::fixed_for_tests(), &templates).unwrap();
        let on = |host: &str, path: &str| {
            let target = crate::render::Target::Host(host.into());
            files.iter().find(|f| f.target == target && f.path == path).unwrap().contents.clone()
        };
        let timer = on("cp-2", crate::paths::ETCD_BACKUP_TIMER);
        assert!(timer.contains("\nOnCalendar=*-*-* 00/6:00:00\n") && timer.contains("\nRandomizedDelaySec=60\n"), "{timer}");
        let script = on("cp-2", crate::paths::ETCD_BACKUP_SCRIPT);
        for line in [
            "BACKUP_DIR=\"${KUBEHA_BACKUP_DIR:-/srv/etcd-backups}\"",
            "KEEP=\"${KUBEHA_BACKUP_KEEP:-8}\"",
            "ENDPOINT=\"${KUBEHA_ETCD_ENDPOINT:-https://198.18.0.12:2379}\"",
        ] {
            assert!(script.contains(line), "{line}");
        }
        assert!(on("cp-1", crate::paths::ETCD_BACKUP_SERVICE).contains("\nExecStart=/usr/local/lib/kubeha/etcd-backup\n"));
        inv.etcd.backup.as_mut().unwrap().schedule = crate::inventory::Schedule { calendar: "minutely".into(), max_age_seconds: 120 };
        assert_eq!(super::etcd_backup(&inv, &inv.hosts[0]).unwrap().randomized_delay_seconds, 20);
        inv.etcd.backup = None;
        let files = crate::render::render(&inv, &crate::render::secrets::Secrets::fixed_for_tests(), &templates).unwrap();
        assert!(!files.iter().any(|f| f.group == crate::render::Group::Backup), "backups off: nothing rendered");
    }

    #[test]
    fn node_restriction_rules() {
        for ok in
            ["topology.kubernetes.io/zone", "topology.kubeha.io/rack", "example.com/gpu", "gpu", "foo.node.kubernetes.io/x", "node.kubernetes.io/instance-type"]
        {
            assert!(kubelet_may_set(ok), "{ok}");
        }
        for guarded in ["node-role.kubernetes.io/worker", "node-restriction.kubernetes.io/x", "kubernetes.io/custom", "example.k8s.io/x"] {
            assert!(!kubelet_may_set(guarded), "{guarded}");
        }
    }
}

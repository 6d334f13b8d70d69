//! Preflight: what must hold on every host before kubeha changes any, judged from the facts (pure). Each
//! finding names the host, the problem and the fix; a fatal one makes apply refuse before its first step.
use super::observed::Observed;
use crate::artifacts::catalogue::Kind;
use crate::facts::HostFacts;
use crate::facts::observe::HostState;
use crate::inventory::{Host, Inventory};
use crate::paths::{ADMIN_CONF, ETCD_UNIT, HAPROXY_CONFIG, KUBEHA_METRICS_SOCKET, KUBELET_CONF};
use crate::render::context::{API_SERVER_PORT, ETCD_METRICS_PORT, HAPROXY_EXPORTER_PORT, KUBEHA_METRICS_PORT, KUBELET_PORT};
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    pub host: String,
    pub problem: String,
    pub fix: String,
    pub fatal: bool,
}

/// kubeadm's own preflight minimums for a control plane.
const MIN_CONTROL_PLANE_CPUS: u32 = 2;
const MIN_CONTROL_PLANE_MEMORY_MIB: u64 = 1700;
/// etcd and TLS tolerate little skew; kubeadm warns, kubeha refuses beyond this.
const MAX_CLOCK_OFFSET_MS: i64 = 1000;

pub fn check(inv: &Inventory, observed: &Observed) -> Vec<Finding> {
    let mut findings = Vec::new();
    for h in &inv.hosts {
        if let Some(facts) = observed.facts(&h.name) {
            host_findings(inv, h, facts, observed.state(&h.name), &mut findings);
        }
    }
    findings
}

fn host_findings(inv: &Inventory, h: &Host, facts: &HostFacts, state: &HostState, out: &mut Vec<Finding>) {
    let mut finding = |fatal: bool, problem: String, fix: &str| out.push(Finding { host: h.name.clone(), problem, fix: fix.to_string(), fatal });
    if !facts.systemd {
        finding(
            true,
            "systemd is not running as PID 1".into(),
            "kubeha runs etcd, HAProxy, keepalived and the kubelet as systemd services; use a systemd host",
        );
    }
    if facts.swap_on {
        finding(true, "swap is on".into(), "run `swapoff -a` and remove the swap entries from /etc/fstab (the kubelet refuses swap by default)");
    }
    if facts.clock_offset_ms.abs() - facts.clock_uncertainty_ms > MAX_CLOCK_OFFSET_MS {
        finding(
            true,
            format!("clock is {} ms off the operator's", facts.clock_offset_ms),
            "synchronise the clock (chrony or systemd-timesyncd) on the host and the operator's machine",
        );
    }
    let installed = |tool: &str| facts.software.get(tool).and_then(|v| v.as_deref());
    // Only what the site brings itself must be there already: the software phase installs the rest (and
    // HAProxy and keepalived from the host's package manager).
    let brought = |kind: Kind| inv.artifacts.preinstalled.contains(&kind);
    let mut required: Vec<&str> = [(Kind::Kubeadm, "kubeadm"), (Kind::Kubelet, "kubelet")].into_iter().filter(|(k, _)| brought(*k)).map(|(_, t)| t).collect();
    if h.is_control_plane() {
        if brought(Kind::Etcd) {
            required.push("etcd");
        }
        if facts.cpus < MIN_CONTROL_PLANE_CPUS {
            finding(true, format!("{} CPU(s); a control plane needs at least {MIN_CONTROL_PLANE_CPUS}", facts.cpus), "give the machine more CPUs");
        }
        let mib = facts.memory_bytes / (1024 * 1024);
        if mib < MIN_CONTROL_PLANE_MEMORY_MIB {
            finding(true, format!("{mib} MiB memory; a control plane needs at least {MIN_CONTROL_PLANE_MEMORY_MIB} MiB"), "give the machine more memory");
        }
        if let Some(found) = installed("etcd")
            && brought(Kind::Etcd)
            && found.split('.').take(2).ne(inv.etcd.version.to_string().split('.').take(2))
        {
            finding(
                false,
                format!("etcd {found} is installed, the inventory names {}", inv.etcd.version),
                "kubeha runs the installed etcd binary; install the inventory's version to match it",
            );
        }
    }
    for tool in required {
        if installed(tool).is_none() {
            finding(true, format!("{tool} is not installed"), &format!("install {tool} (the packages of the inventory's versions) before apply"));
        }
    }
    let endpoint = &inv.kubernetes.container_runtime_endpoint;
    let socket = endpoint.strip_prefix("unix://").unwrap_or(endpoint);
    // A containerd kubeha installs starts in the software phase; any other runtime must serve already.
    if !facts.has_socket(socket) && !crate::artifacts::catalogue::installs_containerd(inv) {
        finding(
            true,
            format!("no container runtime socket at {socket} (spec.kubernetes.containerRuntimeEndpoint {endpoint})"),
            "install and start the container runtime (containerd by default), or set spec.kubernetes.containerRuntimeEndpoint to the socket it serves",
        );
    }
    for (port, listening) in &facts.listening {
        if *listening && !ours(inv, h, *port, state) {
            finding(
                true,
                format!("port {port} is in use by a program kubeha did not set up"),
                &format!("stop the program listening on port {port} (see `ss -ltnp`)"),
            );
        }
    }
}

/// Whether a listener on `port` is one kubeha put there (an earlier run): then the port is not "in use".
fn ours(inv: &Inventory, h: &Host, port: u16, state: &HostState) -> bool {
    let lb_port = inv.load_balancer.vrrp().map(|v| v.port);
    match port {
        // kubeha's etcd unit may be "activating" (waiting for peers), not active: the port is still its own.
        2379 | 2380 | ETCD_METRICS_PORT => h.is_control_plane() && state.has(ETCD_UNIT),
        HAPROXY_EXPORTER_PORT => h.is_control_plane() && state.has(HAPROXY_CONFIG) && state.is_active("haproxy"),
        // systemd listens for kubeha-metrics; the unit's state is not probed, its file is.
        KUBEHA_METRICS_PORT => h.is_control_plane() && state.has(KUBEHA_METRICS_SOCKET),
        p if p == API_SERVER_PORT => h.is_control_plane() && state.has(ADMIN_CONF),
        KUBELET_PORT => state.has(KUBELET_CONF),
        p if Some(p) == lb_port => h.is_control_plane() && state.has(HAPROXY_CONFIG) && state.is_active("haproxy"),
        _ => false,
    }
}

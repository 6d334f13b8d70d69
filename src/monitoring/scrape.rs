//! The Prometheus scrape jobs an inventory implies: which endpoint of which host, with which labels and which
//! credentials. Pure; the template only lays the jobs out.
use crate::inventory::{Host, Inventory};
use crate::render::context::{API_SERVER_PORT, ETCD_METRICS_PORT, HAPROXY_EXPORTER_PORT, KUBEHA_METRICS_PORT, KUBELET_PORT, host_port};
use crate::topology::{self, DomainKind};
use serde::Serialize;
use std::collections::BTreeMap;

pub const ETCD_JOB: &str = "kubeha-etcd";
pub const HAPROXY_JOB: &str = "kubeha-haproxy";
pub const KUBEHA_METRICS_JOB: &str = "kubeha-metrics";
pub const APISERVER_JOB: &str = "kubeha-apiserver";
pub const KUBELET_JOB: &str = "kubeha-kubelet";

/// Credential files the scrape configuration reads, relative to its folder (Prometheus resolves them there).
/// kubeha keeps no copy of them on the operator's machine (the cluster state lives on the control planes), so
/// `monitoring render` creates them empty, mode 0600, for the operator to fill (see its README.md).
pub const KUBERNETES_CA_FILE: &str = "credentials/kubernetes-ca.crt";
pub const TOKEN_FILE: &str = "credentials/prometheus.token";

#[derive(Serialize)]
pub struct ScrapeConfig {
    pub cluster: String,
    pub jobs: Vec<Job>,
}

#[derive(Serialize)]
pub struct Job {
    pub name: &'static str,
    /// Why this job exists and what it needs; a comment in the rendered file.
    pub comment: &'static str,
    pub scheme: &'static str,
    pub metrics_path: &'static str,
    pub tls: Option<Tls>,
    pub token_file: Option<&'static str>,
    pub targets: Vec<ScrapeTarget>,
}

#[derive(Serialize)]
pub struct Tls {
    /// None: the certificate is not verified (see the kubelet job).
    pub ca_file: Option<&'static str>,
}

#[derive(Serialize)]
pub struct ScrapeTarget {
    pub address: String,
    /// A YAML flow mapping (JSON), keys sorted: encoded here because the template engine's maps lose order.
    pub labels: String,
}

/// `node` and one label per failure domain the host declares (`zone`, `rack` as `zone/rack`, `region`),
/// named and valued as `kubeha check` and `kubeha status` name them, so alert rules group by the same domains.
pub fn host_labels(h: &Host) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([("node".to_string(), h.name.clone())]);
    for kind in [DomainKind::Region, DomainKind::Zone, DomainKind::Rack] {
        if let Some(domain) = topology::domain_of(h, kind) {
            labels.insert(kind.name().to_string(), domain);
        }
    }
    labels
}

fn targets<'a>(hosts: impl Iterator<Item = &'a Host>, port: u16) -> Vec<ScrapeTarget> {
    hosts
        .map(|h| ScrapeTarget { address: host_port(&h.address.to_string(), port), labels: serde_json::to_string(&host_labels(h)).unwrap_or_default() })
        .collect()
}

pub fn scrape_config(inv: &Inventory) -> ScrapeConfig {
    let mut jobs = vec![Job {
        name: ETCD_JOB,
        comment: "etcd's plain-HTTP metrics listener (listen-metrics-urls in /etc/etcd/etcd.conf.yml): no client certificate needed",
        scheme: "http",
        metrics_path: "/metrics",
        tls: None,
        token_file: None,
        targets: targets(inv.control_planes(), ETCD_METRICS_PORT),
    }];
    // HAProxy and kubeha-metrics run only where kubeha runs the load balancer (the load-balancer phase installs them).
    if inv.load_balancer.vrrp().is_some() {
        jobs.push(Job {
            name: HAPROXY_JOB,
            comment: "HAProxy's built-in exporter, on its frontend `prometheus` in /etc/haproxy/haproxy.cfg",
            scheme: "http",
            metrics_path: "/metrics",
            tls: None,
            token_file: None,
            targets: targets(inv.control_planes(), HAPROXY_EXPORTER_PORT),
        });
        jobs.push(Job {
            name: KUBEHA_METRICS_JOB,
            comment: "kubeha-metrics (a socket-activated script on each control plane): whether it holds the VIP, and the textfiles of /var/lib/kubeha/metrics",
            scheme: "http",
            metrics_path: "/metrics",
            tls: None,
            token_file: None,
            targets: targets(inv.control_planes(), KUBEHA_METRICS_PORT),
        });
    }
    jobs.push(Job {
        name: APISERVER_JOB,
        comment: "each API server directly (not through the VIP), so a failing one is seen; the token needs get on /metrics",
        scheme: "https",
        metrics_path: "/metrics",
        tls: Some(Tls { ca_file: Some(KUBERNETES_CA_FILE) }),
        token_file: Some(TOKEN_FILE),
        targets: targets(inv.control_planes(), API_SERVER_PORT),
    });
    jobs.push(Job {
        name: KUBELET_JOB,
        comment: "every kubelet; kubeadm's kubelets serve a self-signed certificate (no serverTLSBootstrap), so it cannot be verified; the token (checked by the API server) needs get on nodes/metrics",
        scheme: "https",
        metrics_path: "/metrics",
        tls: Some(Tls { ca_file: None }),
        token_file: Some(TOKEN_FILE),
        targets: targets(inv.hosts.iter(), KUBELET_PORT),
    });
    ScrapeConfig { cluster: inv.name.clone(), jobs }
}

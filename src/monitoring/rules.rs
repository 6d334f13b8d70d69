//! The facts the alert rules are rendered from: quorum and failure domains from the same owners as `kubeha check`
//! and `kubeha status` (etcd::quorum, topology), job names from the scrape configuration.
use super::scrape::{APISERVER_JOB, ETCD_JOB, HAPROXY_JOB, KUBEHA_METRICS_JOB, KUBELET_JOB};
use crate::etcd::quorum;
use crate::inventory::Inventory;
use crate::pki::expiry;
use crate::topology;
use serde::Serialize;

/// The contract the etcd backup timer (issue 16, Backups) fulfils: after each verified snapshot it writes this
/// gauge, the Unix time of the snapshot, to a `*.prom` file under METRICS_TEXTFILE_DIR on its control plane
/// (atomically: write a temporary file, then rename; mode 0644, since kubeha-metrics reads it as `nobody`), and
/// kubeha-metrics serves it.
pub const BACKUP_METRIC: &str = "kubeha_etcd_backup_last_success_timestamp_seconds";
/// The gauge kubeha-metrics reports for the VIP: 1 on the host that holds it, 0 elsewhere.
pub const VIP_METRIC: &str = "kubeha_vip_held";
/// The HAProxy backend whose servers are the API servers (templates/haproxy/haproxy.cfg).
pub const HAPROXY_BACKEND: &str = "kube-apiserver";

#[derive(Serialize)]
pub struct Rules {
    pub jobs: Jobs,
    pub voters: usize,
    /// Healthy voters needed: `status`'s quorum of the inventory's members.
    pub quorum: usize,
    /// Failure domains whose loss the design survives (`kubeha check`): the alert says when, with the members
    /// down now, losing one of them would lose quorum. Domains the design cannot lose are left out: `check`
    /// already warns about them, and an alert that always fires teaches people to ignore alerts.
    pub domains: Vec<DomainRule>,
    /// Whether kubeha-metrics (which serves the backup textfile) is scraped, only under keepalived-haproxy for
    /// now, and backups are on. Without either the backup alerts would fire forever, so they are left out.
    pub backup: bool,
    pub backup_metric: &'static str,
    /// `spec.etcd.backup`'s limit (inventory::schedule: two periods of a shorthand, or `maxAge`).
    pub backup_max_age_seconds: u64,
    pub certificate_warn_seconds: i64,
    pub certificate_warn_days: i64,
    /// Present under keepalived-haproxy: the VIP and the HAProxy backend alerts.
    pub vip: Option<VipRules>,
}

#[derive(Serialize)]
pub struct Jobs {
    pub etcd: &'static str,
    pub haproxy: &'static str,
    pub kubeha_metrics: &'static str,
    pub apiserver: &'static str,
    pub kubelet: &'static str,
}

#[derive(Serialize)]
pub struct DomainRule {
    /// The target label (`zone`, `rack`, `region`), see scrape::host_labels.
    pub label: &'static str,
    pub name: String,
    pub members: usize,
}

#[derive(Serialize)]
pub struct VipRules {
    pub address: String,
    pub metric: &'static str,
    pub backend: &'static str,
}

pub fn rules(inv: &Inventory) -> Rules {
    let voters = inv.control_planes().count();
    let analysis = topology::analyse(inv);
    let domains = analysis
        .domains
        .iter()
        .filter(|d| d.members > 0 && d.survives)
        .map(|d| DomainRule { label: d.kind.name(), name: d.name.clone(), members: d.members })
        .collect();
    Rules {
        jobs: Jobs { etcd: ETCD_JOB, haproxy: HAPROXY_JOB, kubeha_metrics: KUBEHA_METRICS_JOB, apiserver: APISERVER_JOB, kubelet: KUBELET_JOB },
        voters,
        quorum: quorum::quorum(voters),
        domains,
        backup: inv.load_balancer.vrrp().is_some() && inv.etcd.backup.is_some(),
        backup_metric: BACKUP_METRIC,
        backup_max_age_seconds: inv.etcd.backup.as_ref().map_or(0, |b| b.schedule.max_age_seconds),
        certificate_warn_seconds: expiry::WARN_DAYS * 86_400,
        certificate_warn_days: expiry::WARN_DAYS,
        vip: inv.load_balancer.vrrp().map(|v| VipRules { address: v.vip.to_string(), metric: VIP_METRIC, backend: HAPROXY_BACKEND }),
    }
}

//! The final verification as data: which checks run, in which order, and what each checks against. The
//! plan's Verify step carries this list, the executor runs that list (`phases::verify::run`), and
//! `kubeha verify` runs the list built here: what the plan shows is what runs.
use crate::inventory::Inventory;
use serde::Serialize;
use std::net::IpAddr;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "check")]
pub enum VerifyCheck {
    /// Every voter healthy, one leader, no learner.
    Etcd { voters: Vec<String> },
    /// The VIP on exactly one control plane.
    Vip { vip: IpAddr },
    /// On every control plane, HAProxy has exactly one backend per control plane of the inventory, each up.
    HaproxyBackends { backends: usize },
    /// The API answers /readyz through the cluster endpoint.
    Readyz { endpoint: String },
    /// Every host of the inventory registered as a node with its labels, and Ready.
    Nodes { count: usize },
    /// No certificate expired; one expiring within `expiry::WARN_DAYS` days is a warning.
    Certificates,
    /// Every file holding a secret readable by its owner only.
    SecretFiles,
    /// The newest scheduled etcd backup over all control planes is younger than `max_age_seconds`.
    EtcdBackup { max_age_seconds: u64 },
}

/// The checks of `inv`'s cluster, in the order they run.
pub fn checks(inv: &Inventory) -> Vec<VerifyCheck> {
    let voters: Vec<String> = inv.control_planes().map(|h| h.name.clone()).collect();
    let mut checks = vec![VerifyCheck::Etcd { voters: voters.clone() }];
    if let Some(vrrp) = inv.load_balancer.vrrp() {
        checks.push(VerifyCheck::Vip { vip: vrrp.vip });
        checks.push(VerifyCheck::HaproxyBackends { backends: voters.len() });
    }
    let (host, port) = inv.load_balancer.endpoint();
    checks.push(VerifyCheck::Readyz { endpoint: crate::render::context::host_port(&host, port) });
    checks.push(VerifyCheck::Nodes { count: inv.hosts.len() });
    checks.extend([VerifyCheck::Certificates, VerifyCheck::SecretFiles]);
    if let Some(b) = &inv.etcd.backup {
        checks.push(VerifyCheck::EtcdBackup { max_age_seconds: b.schedule.max_age_seconds });
    }
    checks
}

/// The check's name: the plan's line and the verification's report say the same.
impl std::fmt::Display for VerifyCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VerifyCheck::Etcd { voters } => write!(f, "etcd: {} members healthy, one leader, no learner", voters.len()),
            VerifyCheck::Vip { vip } => write!(f, "VIP {vip} on exactly one control plane"),
            VerifyCheck::HaproxyBackends { backends } => write!(f, "HAProxy: the {backends} expected backends up on each control plane"),
            VerifyCheck::Readyz { endpoint } => write!(f, "/readyz through {endpoint}"),
            VerifyCheck::Nodes { count } => write!(f, "{count} nodes registered with their labels and Ready"),
            VerifyCheck::Certificates => write!(f, "certificates valid for {} days or more", crate::pki::expiry::WARN_DAYS),
            VerifyCheck::SecretFiles => write!(f, "secret files (keys, kubeconfigs, cluster state, kubeadm config) readable by their owner only"),
            VerifyCheck::EtcdBackup { max_age_seconds } => {
                let limit = crate::etcd::backup::age_text(i64::try_from(*max_age_seconds).unwrap_or(i64::MAX));
                write!(f, "etcd backup: the newest is younger than {limit}")
            }
        }
    }
}

//! Gathering what `status` reports on, read-only: one SSH connection per host (unreachable hosts are
//! recorded, not fatal), etcd's view from a reachable control plane, and who holds the VIP. No lock is
//! taken: status must work while an apply runs, and most of all when a cluster is half gone.
use super::{EtcdUnasked, Observations};
use crate::facts::{etcd, vip};
use crate::inventory::Inventory;
use crate::phases::backup;
use crate::ssh::targets;
use crate::ssh::{SshError, Transport};
use std::collections::BTreeMap;

pub async fn observe(inv: &Inventory) -> Observations {
    let (hosts, unreachable) = targets::connect(inv).await;
    let unreachable = unreachable.iter().map(|e| (e.host().to_string(), short(e))).collect();
    let cps: Vec<&dyn Transport> = inv.control_planes().filter_map(|h| hosts.get(&h.name)).map(|t| t.as_ref()).collect();
    let vip = async {
        let mut seen = BTreeMap::new();
        let Some(vrrp) = inv.load_balancer.vrrp() else { return seen };
        for t in &cps {
            seen.insert(t.host().to_string(), vip::holds_vip(*t, vrrp.vip).await);
        }
        seen
    };
    let etcd = async {
        if cps.is_empty() {
            return Err(EtcdUnasked::NoControlPlaneReachable);
        }
        Ok(etcd::view_from_any(&cps).await?)
    };
    let backups = async {
        let mut seen = BTreeMap::new();
        if inv.etcd.backup.is_none() {
            return seen;
        }
        for t in &cps {
            seen.insert(t.host().to_string(), backup::read_status(*t).await.map_err(|e| e.to_string()));
        }
        seen
    };
    let (etcd, vip, certs, backups) = tokio::join!(etcd, vip, super::certs::probe_all(&hosts), backups);
    Observations { unreachable, etcd, vip, certs, backups, now: time::OffsetDateTime::now_utc().unix_timestamp() }
}

/// The error without the host's name in front (the report already says which host it is about); a refused
/// connection is just the system's reason, which says it all ("Connection refused", "No route to host").
pub(super) fn short(e: &SshError) -> String {
    if let SshError::Refused { address, port, detail, .. } = e {
        return detail.strip_prefix(&format!("{address}:{port}: ")).unwrap_or(detail).to_string();
    }
    let text = e.to_string();
    text.strip_prefix(&format!("{}: ", e.host())).map(str::to_string).unwrap_or(text)
}

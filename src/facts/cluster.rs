//! What the hosts of a cluster have now, read-only, as the planner needs it: every host's facts and files,
//! etcd as each running member answers, the registered nodes, and the hosts leaving the cluster.
use super::{certs, observe};
use crate::inventory::{Host, Inventory};
use crate::paths::ADMIN_CONF;
use crate::phases::kubeadm;
use crate::plan::desired::Desired;
use crate::plan::{Observed, ObservedHost};
use crate::ssh::Transport;
use crate::ssh::targets::Hosts;
use std::sync::Arc;

/// The units whose state the planner looks at.
const UNITS: [&str; 6] = ["etcd", "haproxy", "keepalived", "kubelet", "containerd", crate::phases::backup::TIMER];

/// Facts and kubeha's own state of every host (one probe pair per host, in parallel), then every running
/// member's own answer about etcd (compared by the planner), etcd's full view from a running member, and the
/// registered nodes from a control plane with admin.conf.
pub async fn observe(inv: &Inventory, desired: &Desired, hosts: &Hosts) -> anyhow::Result<Observed> {
    let mut tasks = tokio::task::JoinSet::new();
    let limit = Arc::new(tokio::sync::Semaphore::new(inv.concurrency.max(1)));
    for (name, t) in hosts {
        let (name, t, limit) = (name.clone(), t.clone(), limit.clone());
        let paths: Vec<String> = desired.probe_paths(&name).into_iter().map(String::from).collect();
        // kubeadm's certificates are renewed on control planes only; workers hold only the kubelet's.
        let control_plane = desired.control_planes.contains(&name);
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
            let certs = async {
                match control_plane {
                    true => certs::probe(t.as_ref()).await.map(Some),
                    false => Ok(None),
                }
            };
            let (f, s, c) = tokio::join!(super::probe(t.as_ref()), observe::observe(t.as_ref(), &paths, &UNITS), certs);
            (name, f, s, c)
        });
    }
    let mut observed = Observed { now: time::OffsetDateTime::now_utc().unix_timestamp(), ..Observed::default() };
    while let Some(joined) = tasks.join_next().await {
        let (name, f, s, c) = joined?;
        observed.hosts.insert(name, ObservedHost { facts: Some(f?), state: s?, etcd_answer: None, certs: c? });
    }
    let running: Vec<(String, Arc<dyn Transport>)> = inv
        .control_planes()
        .filter(|h| observed.state(&h.name).is_active("etcd"))
        .filter_map(|h| hosts.get(&h.name).map(|t| (h.name.clone(), t.clone())))
        .collect();
    let mut answers = tokio::task::JoinSet::new();
    for (name, t) in running.clone() {
        answers.spawn(async move { (name, crate::facts::etcd::member_list_answer(t.as_ref()).await) });
    }
    while let Some(joined) = answers.join_next().await {
        // A member that does not answer is not compared: the full view below and the gates report it.
        if let (name, Ok(answer)) = joined?
            && let Some(host) = observed.hosts.get_mut(&name)
        {
            host.etcd_answer = Some(answer);
        }
    }
    let members: Vec<&dyn Transport> = running.iter().map(|(_, t)| t.as_ref()).collect();
    observed.etcd = crate::facts::etcd::view_from_any(&members).await.ok();
    let admins: Vec<&crate::inventory::Host> = inv.control_planes().filter(|h| observed.state(&h.name).has(ADMIN_CONF)).collect();
    for h in admins {
        let Some(t) = hosts.get(&h.name) else { continue };
        let out = t.exec(&kubeadm::kubectl("get nodes -o json")).await?;
        if out.status.success() {
            observed.nodes = Some(kubeadm::parse_registered(&out.stdout_text()).map_err(|e| anyhow::anyhow!("{}: {e}", h.name))?);
            let config = t.exec(&kubeadm::cluster_configuration_command()).await?;
            let seen = if config.status.success() { kubeadm::parse_cluster_configuration(&config.stdout_text()) } else { Default::default() };
            (observed.cluster_version, observed.cluster_etcd_endpoints) = (seen.version, seen.etcd_endpoints);
            observed.api_error = None;
            break;
        }
        observed.api_error = Some(format!("{}: {}", h.name, last_line(&String::from_utf8_lossy(&out.stderr))));
    }
    if observed.api_error.is_some() {
        for t in &members {
            if let Ok(holds) = crate::facts::etcd::holds_kubernetes_data(*t).await {
                observed.kubernetes_data = Some(holds);
                break;
            }
        }
    }
    Ok(observed)
}

/// kubectl repeats its error on every retry: the last line says it once.
fn last_line(text: &str) -> &str {
    text.trim().lines().last().unwrap_or_default()
}

/// The hosts that are in the cluster but not in the inventory (etcd members by their peer address, nodes by
/// their InternalIP, plus `known` entries an operator named), with the inventory's SSH settings to reach them.
pub fn leaving_hosts(inv: &Inventory, observed: &Observed, known: &[Host]) -> Vec<Host> {
    let listed = |n: &str| inv.hosts.iter().any(|h| h.name == n);
    let Some(template) = inv.control_planes().next() else { return Vec::new() };
    let mut leaving: Vec<Host> = known.iter().filter(|h| !listed(&h.name)).cloned().collect();
    // An address that belongs to an inventory host is never a leaving host's, whatever name the cluster
    // knows it by (a renamed host: the planner refuses the rename and nothing there may be reset).
    let owned = |address: std::net::IpAddr| inv.hosts.iter().any(|h| h.address == address);
    let mut add = |name: &str, address: std::net::IpAddr| {
        if !listed(name) && !owned(address) && !leaving.iter().any(|h| h.name == name) {
            leaving.push(Host { name: name.to_string(), address, ..template.clone() });
        }
    };
    let strangers = observed.etcd.iter().flat_map(|v| v.members.iter()).filter(|m| crate::etcd::identity::host_of(inv, m).is_none());
    for m in strangers.filter(|m| !m.name.is_empty()) {
        if let Some(address) = m.peer_urls.iter().find_map(|u| peer_address(u)) {
            add(&m.name, address);
        }
    }
    for (name, node) in observed.nodes.iter().flatten() {
        if let Some(address) = node.address {
            add(name, address);
        }
    }
    leaving
}

/// The IP address of a peer URL such as https://198.18.0.12:2380 or https://[fd00::2]:2380.
fn peer_address(url: &str) -> Option<std::net::IpAddr> {
    let rest = url.split("://").nth(1)?;
    let host = rest.rsplit_once(':').map_or(rest, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']').parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn peer_addresses() {
        assert_eq!(super::peer_address("https://198.18.0.12:2380").unwrap().to_string(), "198.18.0.12");
        assert_eq!(super::peer_address("https://[fd00::2]:2380").unwrap().to_string(), "fd00::2");
        assert!(super::peer_address("https://cp-2.example:2380").is_none());
    }
}

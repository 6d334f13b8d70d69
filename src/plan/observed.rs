//! What the planner knows about the live cluster: per-host facts and kubeha's files and services on it, etcd's
//! own view of its membership, and the registered nodes. Empty for `plan --offline`.
use crate::etcd::gate::View;
use crate::etcd::status::Member;
use crate::facts::HostFacts;
use crate::facts::observe::HostState;
use std::collections::BTreeMap;

#[derive(Clone, Debug, Default)]
pub struct Observed {
    pub facts: BTreeMap<String, HostFacts>,
    pub hosts: BTreeMap<String, HostState>,
    /// etcd as one healthy member sees it; `None` when no member answered (or none exists).
    pub etcd: Option<View>,
    /// Registered nodes and their labels; `None` when the API did not answer (or there is no cluster).
    pub nodes: Option<BTreeMap<String, BTreeMap<String, String>>>,
    /// Why the API could not be asked although a control plane has admin.conf: a reason not to re-initialise.
    pub api_error: Option<String>,
    /// Registered nodes' InternalIPs: how nodes that left the inventory are reached.
    pub node_addresses: BTreeMap<String, std::net::IpAddr>,
    /// Hosts leaving the cluster (etcd members or nodes the inventory no longer lists) that answered over
    /// SSH: only these can be reset.
    pub reachable_leaving: std::collections::BTreeSet<String>,
    /// Why each other leaving host could not be reached.
    pub unreachable_leaving: BTreeMap<String, String>,
}

impl Observed {
    pub fn host(&self, name: &str) -> HostState {
        self.hosts.get(name).cloned().unwrap_or_default()
    }

    pub fn member(&self, name: &str, peer_url: &str) -> Option<&Member> {
        self.etcd.as_ref()?.members.iter().find(|m| m.name == name || m.peer_urls.iter().any(|p| p == peer_url))
    }

    pub fn registered(&self, node: &str) -> bool {
        self.nodes.as_ref().is_some_and(|n| n.contains_key(node))
    }
}

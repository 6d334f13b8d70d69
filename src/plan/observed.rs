//! What the planner knows about the live cluster: per-host facts and kubeha's files and services on it, etcd's
//! own view of its membership, and the registered nodes. Empty for `plan --offline`.
use crate::etcd::gate::View;
use crate::etcd::status::{Member, MemberList};
use crate::facts::HostFacts;
use crate::facts::observe::HostState;
use crate::inventory::Host;
use std::collections::BTreeMap;

#[derive(Clone, Debug, Default)]
pub struct Observed {
    pub facts: BTreeMap<String, HostFacts>,
    pub hosts: BTreeMap<String, HostState>,
    /// etcd as one healthy member sees it; `None` when no member answered (or none exists).
    pub etcd: Option<View>,
    /// Each control plane's own etcd member's answer to `member list` (cluster ID, member ID, members), for
    /// every one whose etcd answered: the planner refuses when they disagree, so that one member's view (a
    /// member that bootstrapped a cluster of its own) never decides alone.
    pub etcd_answers: BTreeMap<String, MemberList>,
    /// Registered nodes and their labels; `None` when the API did not answer (or there is no cluster).
    pub nodes: Option<BTreeMap<String, BTreeMap<String, String>>>,
    /// Why the API could not be asked although a control plane has admin.conf: a reason not to re-initialise.
    pub api_error: Option<String>,
    /// Whether etcd holds Kubernetes objects, asked only when the API did not answer: `Some(false)` means an
    /// earlier `kubeadm init` failed before any cluster existed, so it can be retried.
    pub kubernetes_data: Option<bool>,
    /// Registered nodes' InternalIPs: how nodes that left the inventory are reached.
    pub node_addresses: BTreeMap<String, std::net::IpAddr>,
    /// Registered nodes' machine IDs (what their kubelets read from /etc/machine-id): a host leaving is
    /// reset only when the machine at its address is still that machine.
    pub node_machine_ids: BTreeMap<String, String>,
    /// Hosts leaving the cluster (etcd members or nodes the inventory no longer lists) that answered over
    /// SSH: only these can be reset.
    pub reachable_leaving: std::collections::BTreeSet<String>,
    /// Why each other leaving host could not be reached.
    pub unreachable_leaving: BTreeMap<String, String>,
    /// Registered nodes' kubelet versions and scheduling state (what an upgrade plans from).
    pub node_states: BTreeMap<String, crate::phases::kubeadm::NodeState>,
    /// The Kubernetes version of the cluster's kubeadm configuration; `None` without a cluster or when the
    /// API did not say.
    pub cluster_version: Option<crate::inventory::Version>,
    /// Each control plane's certificates (kubeadm's decide its renewal); empty for `plan --offline`.
    pub certs: BTreeMap<String, crate::facts::certs::HostCerts>,
    /// When the hosts were observed (Unix seconds): what "valid for fewer than renewBefore days" counts from.
    pub now: i64,
}

impl Observed {
    pub fn host(&self, name: &str) -> HostState {
        self.hosts.get(name).cloned().unwrap_or_default()
    }

    /// The member that is this control plane (see `etcd::identity`).
    pub fn member_of(&self, host: &Host) -> Option<&Member> {
        crate::etcd::identity::member_of(self.etcd.as_ref()?, host)
    }

    /// Whether an etcd cluster exists: a member answers or a host has etcd data. Then no member's config may
    /// say `initial-cluster-state: new` (the one owner of this rule; rendering and planning both ask it).
    pub fn etcd_exists(&self) -> bool {
        self.etcd.is_some() || !self.etcd_answers.is_empty() || self.facts.values().any(|f| f.etcd_data_dir)
    }

    pub fn etcd_cluster(&self) -> crate::render::context::EtcdCluster {
        if self.etcd_exists() { crate::render::context::EtcdCluster::Existing } else { crate::render::context::EtcdCluster::New }
    }

    pub fn registered(&self, node: &str) -> bool {
        self.nodes.as_ref().is_some_and(|n| n.contains_key(node))
    }
}

//! What the planner knows about the live cluster: each host as it answered over SSH (its facts, kubeha's files
//! and services on it, its etcd member's own answer, its certificates), etcd's view of its membership, and each
//! registered node as the API reports it. Empty for `plan --offline`.
use crate::etcd::gate::View;
use crate::etcd::status::{Member, MemberList};
use crate::facts::HostFacts;
use crate::facts::certs::HostCerts;
use crate::facts::observe::HostState;
use crate::inventory::Host;
pub use crate::phases::kubeadm::{NodeState, RegisteredNode};
use std::collections::{BTreeMap, BTreeSet};

/// One host as it answered over SSH: everything observed on it in one place, so that no two maps keyed by
/// host name can disagree about which hosts were seen.
#[derive(Clone, Debug, Default)]
pub struct ObservedHost {
    /// What the facts probe found. The live probe always sets it; the planner's tests leave it out where a
    /// scenario does not depend on it.
    pub facts: Option<HostFacts>,
    /// kubeha's files, units and installed software on the host.
    pub state: HostState,
    /// The host's own etcd member's answer to `member list` (cluster ID, member ID, members), when its etcd
    /// runs and answered: the planner refuses when these disagree, so that one member's view (a member that
    /// bootstrapped a cluster of its own) never decides alone.
    pub etcd_answer: Option<MemberList>,
    /// kubeadm's certificates on a control plane (they decide its renewal); `None` on workers.
    pub certs: Option<HostCerts>,
}

#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// Every host that answered over SSH, by inventory name.
    pub hosts: BTreeMap<String, ObservedHost>,
    /// etcd as one healthy member sees it; `None` when no member answered (or none exists).
    pub etcd: Option<View>,
    /// The registered nodes; `None` when the API did not answer (or there is no cluster).
    pub nodes: Option<BTreeMap<String, RegisteredNode>>,
    /// Why the API could not be asked although a control plane has admin.conf: a reason not to re-initialise.
    pub api_error: Option<String>,
    /// Whether etcd holds Kubernetes objects, asked only when the API did not answer: `Some(false)` means an
    /// earlier `kubeadm init` failed before any cluster existed, so it can be retried.
    pub kubernetes_data: Option<bool>,
    /// Hosts leaving the cluster (etcd members or nodes the inventory no longer lists) that answered over
    /// SSH: only these can be reset.
    pub reachable_leaving: BTreeSet<String>,
    /// Why each other leaving host could not be reached.
    pub unreachable_leaving: BTreeMap<String, String>,
    /// The Kubernetes version of the cluster's kubeadm configuration; `None` without a cluster or when the
    /// API did not say.
    pub cluster_version: Option<crate::inventory::Version>,
    /// The etcd endpoints of the cluster's kubeadm configuration (what joins and upgrades write into API
    /// servers' manifests); `None` without a cluster or when the API did not say.
    pub cluster_etcd_endpoints: Option<Vec<String>>,
    /// When the hosts were observed (Unix seconds): what "valid for fewer than renewBefore days" counts from.
    pub now: i64,
}

/// The state of a host that was not observed: nothing of kubeha's on it.
static NOTHING: HostState = HostState {
    digests: BTreeMap::new(),
    meta: BTreeMap::new(),
    secret_files: BTreeSet::new(),
    active: BTreeMap::new(),
    addresses: Vec::new(),
    etcd_initial_cluster_state: None,
    software: BTreeMap::new(),
    static_pod_images: BTreeMap::new(),
    apiserver_etcd_servers: None,
};

impl Observed {
    /// kubeha's files and services on `name`; nothing for a host that was not observed.
    pub fn state(&self, name: &str) -> &HostState {
        self.hosts.get(name).map_or(&NOTHING, |h| &h.state)
    }

    pub fn facts(&self, name: &str) -> Option<&HostFacts> {
        self.hosts.get(name)?.facts.as_ref()
    }

    /// The hosts whose facts say an etcd member has run there (/var/lib/etcd/member exists).
    pub fn hosts_with_etcd_data(&self) -> impl Iterator<Item = &str> {
        self.hosts.iter().filter(|(_, h)| h.facts.as_ref().is_some_and(|f| f.etcd_data_dir)).map(|(name, _)| name.as_str())
    }

    /// Each host's own etcd member's answer, for the hosts whose member answered.
    pub fn etcd_answers(&self) -> impl Iterator<Item = (&str, &MemberList)> {
        self.hosts.iter().filter_map(|(name, h)| Some((name.as_str(), h.etcd_answer.as_ref()?)))
    }

    /// The registered node `name`, when the API answered and lists it.
    pub fn node(&self, name: &str) -> Option<&RegisteredNode> {
        self.nodes.as_ref()?.get(name)
    }

    /// The member that is this control plane (see `etcd::identity`).
    pub fn member_of(&self, host: &Host) -> Option<&Member> {
        crate::etcd::identity::member_of(self.etcd.as_ref()?, host)
    }

    /// Whether an etcd cluster exists: a member answers or a host has etcd data. Then no member's config may
    /// say `initial-cluster-state: new` (the one owner of this rule; rendering and planning both ask it).
    pub fn etcd_exists(&self) -> bool {
        self.etcd.is_some() || self.etcd_answers().next().is_some() || self.hosts_with_etcd_data().next().is_some()
    }

    pub fn etcd_cluster(&self) -> crate::render::context::EtcdCluster {
        if self.etcd_exists() { crate::render::context::EtcdCluster::Existing } else { crate::render::context::EtcdCluster::New }
    }

    /// The address `host`'s node registered with when it is not the host's address now (a re-addressed host,
    /// reset and joined again by the run).
    pub fn registered_at(&self, host: &Host) -> Option<std::net::IpAddr> {
        self.node(&host.name).and_then(|n| n.address).filter(|a| *a != host.address)
    }

    pub fn registered(&self, node: &str) -> bool {
        self.node(node).is_some()
    }
}

//! The one plan builder: from the desired files and what was observed, the steps that converge the cluster,
//! each with the reason it is needed. Steps already true on the hosts are left out, so a converged cluster
//! plans zero changing steps. Pure. `converge` holds the order of the phases; each phase is planned in a
//! file of its own, on the one `Builder` and its shared helpers here.
use super::desired::Desired;
use super::*;
use crate::facts::observe;
use crate::inventory::{Host, Inventory};
use crate::paths::{ADMIN_CONF, CNI_APPLIED, ETCD_CONFIG, ETCD_CONFIG_RUNTIME, KUBELET_CONF};
use crate::render::Group;
use crate::render::context::host_port;

pub fn converge(inv: &Inventory, desired: &Desired, observed: &Observed, basis: Basis) -> Plan {
    let mut b = Builder {
        inv,
        desired,
        observed,
        findings: preflight::check(inv, observed),
        phases: Vec::new(),
        etcd_swaps: Default::default(),
        kubelet_swaps: Default::default(),
    };
    b.refuse_renames();
    b.state();
    b.hosts();
    b.software();
    b.etcd();
    b.load_balancer();
    b.upgrade();
    b.readdressed_nodes();
    b.control_plane();
    b.certificates();
    b.cni();
    b.workers();
    b.labels();
    b.backup();
    b.retire();
    b.verify();
    b.join_token();
    b.file_modes();
    b.seed_matches();
    Plan { cluster: inv.name.clone(), basis, findings: b.findings, phases: b.phases.into_iter().filter(|p| !p.steps.is_empty()).collect() }
}

/// The one owner of "which control plane is the seed": the host whose kubeadm file is the
/// InitConfiguration and that runs the cluster-wide admin steps (CNI, labels, token, drain of leaving
/// nodes, verification). On a cluster that exists, any joined control plane can be the seed (a node with
/// admin.conf and kubelet.conf whose Node is registered; hosts leaving are not in the inventory, and every
/// inventory host answered or the run stopped): preferably the one holding kubeha's CNI marker, i.e. the
/// seed of earlier runs, so the choice does not move between runs (after `node replace cp-1 --with cp-4`
/// cp-4 takes position 0 but cp-2 stays the seed); else the first joined one in inventory order. Only when
/// no control plane is joined does the inventory's first control plane seed a new cluster (`kubeadm init`).
pub fn seed_control_plane<'a>(inv: &'a Inventory, observed: &Observed) -> Option<&'a Host> {
    // A host whose node registered at another address than it has now is reset and joined again in this run:
    // it cannot hold the ClusterConfiguration the others join from.
    let joined = |h: &&Host| {
        let s = observed.state(&h.name);
        s.has(ADMIN_CONF) && s.has(KUBELET_CONF) && observed.registered(&h.name) && observed.registered_at(h).is_none()
    };
    inv.control_planes()
        .filter(joined)
        .find(|h| observed.state(&h.name).has(CNI_APPLIED))
        .or_else(|| inv.control_planes().find(joined))
        .or_else(|| inv.first_control_plane())
}

struct Builder<'a> {
    inv: &'a Inventory,
    desired: &'a Desired,
    observed: &'a Observed,
    findings: Vec<Finding>,
    phases: Vec<Phase>,
    /// Members whose new etcd binary the software phase staged: their restart between gates swaps it in.
    etcd_swaps: std::collections::BTreeMap<String, crate::inventory::Version>,
    /// Joined nodes whose new kubelet the software phase staged: their upgrade swaps it in, drained.
    kubelet_swaps: std::collections::BTreeMap<String, crate::inventory::Version>,
}
fn step(id: String, host: &str, action: Action, reason: impl Into<String>) -> Step {
    Step { id, host: host.to_string(), action, reason: reason.into() }
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}
/// "etcd.conf.yml differs", "3 files missing", ... : the reason a set of files needs placing.
fn files_reason(missing: &[&str], differing: &[&str]) -> String {
    let mut parts = Vec::new();
    match missing.len() {
        0 => {}
        1 => parts.push(format!("{} missing", file_name(missing[0]))),
        n => parts.push(format!("{n} files missing")),
    }
    match differing.len() {
        0 => {}
        1 => parts.push(format!("{} differs", file_name(differing[0]))),
        n => parts.push(format!("{n} files differ")),
    }
    parts.join(", ")
}

impl Builder<'_> {
    fn push(&mut self, name: &'static str, title: &'static str, execution: Execution, steps: Vec<Step>) {
        self.phases.push(Phase { name, title, execution, steps });
    }

    fn parallel(&self) -> Execution {
        Execution::Parallel { limit: self.inv.concurrency }
    }

    fn endpoint(&self) -> String {
        let (host, port) = self.inv.load_balancer.endpoint();
        host_port(&host, port)
    }

    /// The files of `group` on `host` that are not as desired: (all paths, reason) or None when all match.
    fn stale(&self, host: &str, g: Group) -> Option<(Vec<String>, String)> {
        let state = self.observed.state(host);
        let files: Vec<_> = self.desired.host_files(host).filter(|f| f.group == g).collect();
        let missing: Vec<&str> = files.iter().filter(|f| !state.has(&f.path)).map(|f| f.path.as_str()).collect();
        let differing: Vec<&str> = files.iter().filter(|f| differs(state, f)).map(|f| f.path.as_str()).collect();
        if missing.is_empty() && differing.is_empty() {
            return None;
        }
        Some((files.iter().map(|f| f.path.clone()).collect(), files_reason(&missing, &differing)))
    }

    fn state(&mut self) {
        let steps = self
            .inv
            .control_planes()
            .filter_map(|h| self.stale(&h.name, Group::State).map(|(files, why)| (h, files, why)))
            .map(|(h, files, why)| step(format!("state/{}", h.name), &h.name, Action::StoreClusterState { files }, why))
            .collect();
        let title = "cluster state (secrets, CAs, member certificates) on every control plane, mode 0600";
        self.push("state", title, self.parallel(), steps);
    }

    fn hosts(&mut self) {
        let steps = self
            .inv
            .hosts
            .iter()
            .filter_map(|h| {
                self.stale(&h.name, Group::Host).map(|(files, why)| step(format!("host/{}", h.name), &h.name, Action::ConfigureHost { files }, why))
            })
            .collect();
        self.push("host", "kernel modules and settings", self.parallel(), steps);
    }

    fn load_balancer(&mut self) {
        let Some(vrrp) = self.inv.load_balancer.vrrp() else { return };
        let services = crate::inventory::LOAD_BALANCER_SERVICES.to_vec();
        let mut steps: Vec<Step> = Vec::new();
        for h in self.inv.control_planes() {
            let state = self.observed.state(&h.name);
            let stale = self.stale(&h.name, Group::LoadBalancer);
            let stopped: Vec<&str> = services.iter().copied().filter(|s| !state.is_active(s)).collect();
            if stale.is_none() && stopped.is_empty() {
                continue;
            }
            let files = self.desired.paths_in(h, Group::LoadBalancer);
            let reason = stale.as_ref().map(|(_, why)| why.clone()).unwrap_or_else(|| format!("{} not running", stopped.join(" and ")));
            let action = Action::StartLoadBalancer { files, services: services.clone(), restart: stale.is_some() };
            steps.push(step(format!("lb/{}", h.name), &h.name, action, reason));
        }
        if !steps.is_empty() {
            let first = self.desired.seed.clone();
            steps.push(step("lb/vip".into(), &first, Action::CheckVip { vip: vrrp.vip }, "the VIP must be held before kubeadm uses it"));
        }
        self.push("loadbalancer", "keepalived (VIP) and HAProxy on every control plane", Execution::Sequential, steps);
    }
}

/// Whether a present file differs from its desired contents. etcd's config is compared without the settings
/// etcd reads only at its first start (initial-cluster is set at join time to the membership of that
/// moment), except that initial-cluster-state must say what is desired: `new` on a member of an existing
/// cluster would bootstrap a second cluster were its data lost.
fn differs(state: &crate::facts::observe::HostState, f: &desired::ManagedFile) -> bool {
    match (f.path.as_str(), state.digest(ETCD_CONFIG_RUNTIME)) {
        (ETCD_CONFIG, Some(runtime)) => {
            let bootstrap = state.etcd_initial_cluster_state.as_deref().is_some_and(|s| s != observe::initial_cluster_state(&f.contents));
            state.has(ETCD_CONFIG) && (runtime != observe::runtime_digest(&f.contents) || bootstrap)
        }
        _ => state.digest(&f.path).is_some_and(|d| d != f.digest),
    }
}

/// Where an operator whose cluster lost quorum goes next.
pub const RESTORE_HINT: &str = "restore from a snapshot: `kubeha etcd restore -i FILE --snapshot SNAPSHOT`, then `kubeha apply` (docs/restore.md)";

fn is_restart(a: &Action) -> bool {
    matches!(a, Action::StartEtcdMember { restart: true, .. })
}

mod backup;
mod etcd;
mod file_modes;
mod kubeadm;
mod retire;
mod software;
#[cfg(test)]
mod tests;
mod upgrade;
mod verify;

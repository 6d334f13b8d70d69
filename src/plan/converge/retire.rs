//! Hosts leaving the cluster (drained, deleted, reset), and hosts renamed in the inventory, which are refused
//! rather than mistaken for one host leaving and another joining.
use super::{Builder, step};
use crate::inventory::Host;
use crate::paths::ETCD_DATA_DIR;
use crate::plan::{Action, Execution, Finding};
use std::collections::BTreeSet;

/// A host the cluster knows as `old`, listed in the inventory as `new` at the same address.
struct Rename {
    old: String,
    new: String,
    seen_as: Vec<String>,
}

impl Builder<'_> {
    /// Hosts that left the inventory: etcd members (removed in the etcd phase) and registered nodes are
    /// drained and deleted, and reset when they answer; one that does not is named, since it must be wiped
    /// before it comes back (it would still run keepalived for the VIP and etcd with old data).
    pub(super) fn retire(&mut self) {
        let listed = |n: &str| self.inv.hosts.iter().any(|h| h.name == n);
        let mut leaving: BTreeSet<String> = self.observed.reachable_leaving.clone();
        if let Some(v) = &self.observed.etcd {
            leaving.extend(v.members.iter().filter(|m| !m.name.is_empty() && !self.in_inventory(m)).map(|m| m.name.clone()));
        }
        if let Some(nodes) = &self.observed.nodes {
            leaving.extend(nodes.keys().filter(|n| !listed(n)).cloned());
        }
        let admin = self.desired.seed.clone();
        let mut steps = Vec::new();
        let renamed: BTreeSet<String> = self.renames().into_iter().map(|r| r.old).collect();
        for n in leaving.iter().filter(|n| !listed(n) && !renamed.contains(*n)) {
            if self.observed.registered(n) {
                steps.push(step(format!("retire/{n}/node"), &admin, Action::RemoveNode { node: n.clone() }, "not in the inventory"));
            }
            if self.observed.reachable_leaving.contains(n) {
                let machine_id = self.observed.node(n).and_then(|node| node.machine_id.clone());
                steps.push(step(format!("retire/{n}/reset"), n, Action::ResetHost { host: n.clone(), machine_id }, "left the cluster"));
            } else {
                self.findings.push(Finding {
                    host: n.clone(),
                    problem: match self.observed.unreachable_leaving.get(n) {
                        Some(why) => format!("{n} leaves the cluster but cannot be reached over SSH ({why}), so it cannot be reset"),
                        None => format!("{n} leaves the cluster but cannot be reached over SSH, so it cannot be reset"),
                    },
                    fix: format!("before that machine runs again: `systemctl disable --now etcd keepalived haproxy kubelet; mv {ETCD_DATA_DIR} {ETCD_DATA_DIR}.removed; kubeadm reset -f --skip-phases=remove-etcd-member` on it (otherwise it may claim the VIP)"),
                    fatal: false,
                });
            }
        }
        self.push("retire", "hosts leaving the cluster: drain, delete, reset", Execution::Sequential, steps);
    }

    /// Etcd members and nodes the cluster knows under a name the inventory does not list, at the address
    /// of a host it does list under another name: the host was renamed in the inventory.
    fn renames(&self) -> Vec<Rename> {
        let listed = |n: &str| self.inv.hosts.iter().any(|h| h.name == n);
        let mut found: Vec<Rename> = Vec::new();
        let mut note = |old: &str, new: &Host, what: String| match found.iter_mut().find(|r| r.old == old) {
            Some(r) => r.seen_as.push(what),
            None => found.push(Rename { old: old.to_string(), new: new.name.clone(), seen_as: vec![what] }),
        };
        for m in self.observed.etcd.iter().flat_map(|v| &v.members).filter(|m| !m.name.is_empty() && !listed(&m.name)) {
            // Not listed by name: only its peer URL can tie it to a host of the inventory.
            if let Some(h) = crate::etcd::identity::host_of(self.inv, m) {
                note(&m.name, h, format!("etcd member {} (peer URL {})", m.name, h.peer_url()));
            }
        }
        let addressed = self.observed.nodes.iter().flatten().filter_map(|(n, node)| Some((n, node.address?)));
        for (node, address) in addressed.filter(|(n, _)| !listed(n)) {
            if let Some(h) = self.inv.hosts.iter().find(|h| h.address == address) {
                note(node, h, format!("Node {node} (InternalIP {address})"));
            }
        }
        found
    }

    /// A renamed host is refused, never handled by accident: under the old name it would look like a host
    /// that left (its Node deleted, the machine reset) while the same machine joins again under the new one.
    /// kubeha does not rename in place: Kubernetes node names are immutable and etcd member names are in the
    /// member's certificates and in every member's initial-cluster.
    pub(super) fn refuse_renames(&mut self) {
        for r in self.renames() {
            self.findings.push(Finding {
                host: r.new.clone(),
                problem: format!(
                    "{} is at the address of {}, but the cluster knows it as {}: renaming a host is not supported",
                    r.new,
                    r.new,
                    r.seen_as.join(" and ")
                ),
                fix: format!(
                    "keep the name {old} in the inventory; or rename in two runs: put {old}'s entry back and run `kubeha node remove {old}` (the host is taken out between quorum gates and reset), then name it {new} and run `kubeha node add {new}`",
                    old = r.old,
                    new = r.new
                ),
                fatal: true,
            });
        }
    }
}

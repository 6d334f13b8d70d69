//! The one plan builder: from the desired files and what was observed, the steps that converge the cluster,
//! each with the reason it is needed. Steps already true on the hosts are left out, so a converged cluster
//! plans zero changing steps. Pure.
use super::desired::Desired;
use super::*;
use crate::etcd::status::Member;
use crate::facts::observe::{self, FileMeta};
use crate::facts::secret_files;
use crate::inventory::{Host, Inventory, Version};
use crate::paths::{
    ADMIN_CONF, CNI_APPLIED, CNI_DIR, ETCD_CONFIG, ETCD_CONFIG_RUNTIME, ETCD_DATA_DIR, ETCD_PKI_DIR, ETCD_UNIT, ETCDCTL_ENV, KUBEADM_CONFIG, KUBELET_CONF,
    KUBERNETES_CA_CERT, KUBERNETES_CA_KEY, SET_ASIDE_MANIFESTS,
};
use crate::pki::expiry::{self, Owner};
use crate::render::context::host_port;
use crate::render::{self, Group};
use std::collections::BTreeSet;

pub fn converge(inv: &Inventory, desired: &Desired, observed: &Observed, basis: &'static str) -> Plan {
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
    let joined = |h: &&Host| {
        let s = observed.host(&h.name);
        s.has(ADMIN_CONF) && s.has(KUBELET_CONF) && observed.registered(&h.name)
    };
    inv.control_planes()
        .filter(joined)
        .find(|h| observed.host(&h.name).has(CNI_APPLIED))
        .or_else(|| inv.control_planes().find(joined))
        .or_else(|| inv.first_control_plane())
}

/// How long a refreshed join token lives: the run's joins start within minutes of the refresh (kubeadm
/// bounds each join to 5 min, the API wait to 2 min), and a token left by a killed run expires soon.
pub const JOIN_TOKEN_MINUTES: u32 = 60;

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

/// A host the cluster knows as `old`, listed in the inventory as `new` at the same address.
struct Rename {
    old: String,
    new: String,
    seen_as: Vec<String>,
}

fn step(id: String, host: &str, action: Action, reason: impl Into<String>) -> Step {
    Step { id, host: host.to_string(), action, reason: reason.into() }
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// "server.key mode 0644, want 0600", "admin.conf owner kubelet:root, want root:root": what drifted in the
/// mode and owner of files whose contents are right; the first three files named, the rest counted.
fn modes_reason(drifted: &[(&str, &FileMeta, u32)]) -> String {
    let mut parts: Vec<String> = drifted
        .iter()
        .take(3)
        .map(|(path, have, want)| {
            let mut what = Vec::new();
            if have.mode != *want {
                what.push(format!("mode {:04o}, want {want:04o}", have.mode));
            }
            let owner = format!("{}:{}", have.owner, have.group);
            if owner != desired::FILE_OWNER {
                what.push(format!("owner {owner}, want {}", desired::FILE_OWNER));
            }
            format!("{} {}", file_name(path), what.join(", "))
        })
        .collect();
    if drifted.len() > 3 {
        parts.push(format!("and {} more files", drifted.len() - 3));
    }
    parts.join("; ")
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
        let state = self.observed.host(host);
        let files: Vec<_> = self.desired.host_files(host).filter(|f| f.group == g).collect();
        let missing: Vec<&str> = files.iter().filter(|f| !state.has(&f.path)).map(|f| f.path.as_str()).collect();
        let differing: Vec<&str> = files.iter().filter(|f| differs(&state, f)).map(|f| f.path.as_str()).collect();
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

    /// etcd changes one member at a time between quorum gates. Members the inventory no longer lists are
    /// removed first when they are dead or nobody joins in their place; a live member with a replacement
    /// leaves once the replacement caught up as a learner, before its promotion. A missing member joins as a
    /// learner, catches up and is promoted; a member whose files changed is restarted alone. Leadership is
    /// moved off a member before it is removed or restarted. The first
    /// member of a cluster that has none starts alone. A snapshot precedes the first membership change.
    fn etcd(&mut self) {
        let mut steps = Vec::new();
        // Every member that answered was asked on its own: if they disagree about which cluster they form or
        // who is in it, no single view can be trusted (a member that lost its data and bootstrapped a cluster
        // of one would make the real members look like strangers to clear), so nothing in etcd is planned.
        if let Some(problem) = crate::etcd::gate::disagreement(&self.observed.etcd_answers) {
            self.findings.push(Finding {
                host: self.observed.etcd_answers.keys().cloned().collect::<Vec<_>>().join(", "),
                problem,
                fix: format!("find the member that is not part of the real cluster (usually the one alone in its cluster: its data directory was lost and it bootstrapped a new cluster); on it run `systemctl stop etcd; mv {ETCD_DATA_DIR} {ETCD_DATA_DIR}.split-$(date +%s)`, then `kubeha apply`: it removes and re-adds that member through the quorum gates"),
                fatal: true,
            });
            return;
        }
        let view = self.observed.etcd.as_ref();
        if view.is_none() {
            let data: Vec<&str> = self.observed.facts.iter().filter(|(_, f)| f.etcd_data_dir).map(|(h, _)| h.as_str()).collect();
            let first = self.desired.seed.as_str();
            if data.iter().any(|h| *h != first) {
                self.findings.push(Finding {
                    host: data.join(", "),
                    problem: "etcd data exists but no etcd member answers: the cluster's etcd is down".into(),
                    fix: format!("start etcd on the control planes (systemctl start etcd); if too few can run, {RESTORE_HINT}. kubeha will not start a new cluster over existing data"),
                    fatal: true,
                });
            }
        }
        if let Some(v) = view.filter(|v| !v.has_quorum()) {
            let voters = v.members.iter().filter(|m| !m.is_learner).count();
            self.findings.push(Finding {
                host: v.unhealthy_voters().join(", "),
                problem: format!(
                    "etcd has lost quorum: {} of {voters} voting members answer ({} down), {} are needed; no membership change can run",
                    v.healthy_voters().len(),
                    v.unhealthy_voters().join(", "),
                    crate::etcd::quorum::quorum(voters)
                ),
                fix: format!("bring the dead members back if their machines can return; otherwise {RESTORE_HINT}"),
                fatal: true,
            });
            return;
        }
        let leaving: Vec<&Member> = view.map(|v| v.members.iter().filter(|m| !self.in_inventory(m)).collect()).unwrap_or_default();
        let leaving_down: Vec<String> =
            view.map(|v| v.unhealthy_voters().into_iter().filter(|n| leaving.iter().any(|m| m.label() == *n)).collect()).unwrap_or_default();
        let mut voters: Vec<String> =
            view.map(|v| v.members.iter().filter(|m| !m.is_learner && !m.name.is_empty()).map(|m| m.name.clone()).collect()).unwrap_or_default();
        let lost = self.lost_members();
        let lost_names: Vec<String> = lost.iter().map(|m| m.name.clone()).collect();
        // A re-addressed member usually cannot run until it is moved (its config names an address the host
        // no longer has): being down is what the move is about, not a reason to refuse it.
        let moved_down: Vec<String> =
            self.moved_members().into_iter().filter(|m| view.is_some_and(|v| v.healthy(m).is_err())).map(|m| m.name.clone()).collect();
        let tolerated: Vec<String> = leaving_down.iter().chain(&lost_names).chain(&moved_down).cloned().collect();
        let running: BTreeSet<String> = self
            .inv
            .control_planes()
            .filter(|h| self.observed.host(&h.name).is_active("etcd") && !lost_names.contains(&h.name))
            .map(|h| h.name.clone())
            .collect();
        // A member that answers and leaves while a host joins (a replace of a live member, or two swapped) is
        // replaced learner-first: the newcomer joins as a learner and catches up, the old member goes, then
        // the newcomer is promoted, so the cluster never waits with one voter short for a copy to stream.
        // Dead members leave first as before (they are already missing).
        let joining = if voters.is_empty() { 0 } else { self.inv.control_planes().filter(|h| self.observed.member_of(h).is_none()).count() };
        let mut replaced: std::collections::VecDeque<&Member> =
            leaving.iter().copied().filter(|m| !m.is_learner && !m.name.is_empty() && !leaving_down.contains(&m.name)).take(joining).collect();
        let mut snapshot_taken = false;
        for m in leaving.iter().filter(|m| !replaced.iter().any(|r| r.id == m.id)) {
            let name = m.label();
            let checker = voters.iter().find(|v| running.contains(*v)).cloned().unwrap_or_else(|| self.desired.seed.clone());
            let change = format!("remove {name}");
            let id = |s: &str| format!("etcd/{}/{s}", if m.name.is_empty() { format!("{:x}", m.id) } else { m.name.clone() });
            let why =
                if leaving_down.contains(&name) { "not a control plane of the inventory (it does not answer)" } else { "not a control plane of the inventory" };
            let mut before = Gate::new(GateWhen::Before, &change, &voters).tolerating(&tolerated);
            before.max_learners = usize::from(m.is_learner);
            steps.push(step(id("gate-before"), &checker, Action::Gate(before), "quorum check"));
            self.snapshot(&mut steps, &mut snapshot_taken, &checker, &change);
            if !leaving_down.contains(&name) && !m.is_learner {
                steps.push(step(id("move-leader"), &checker, Action::MoveEtcdLeader { from: name.clone() }, "it is about to be removed"));
            }
            steps.push(step(id("remove"), &checker, Action::RemoveEtcdMember { member: name.clone(), id: format!("{:x}", m.id) }, why));
            voters.retain(|v| *v != name);
            steps.push(step(id("gate-after"), &checker, Action::Gate(Gate::new(GateWhen::After, &change, &voters).tolerating(&tolerated)), "quorum check"));
        }
        // A member whose data directory is gone is a dead member, whatever its host and unit say: it is removed
        // (its etcd stopped first, so Restart=always cannot start it into anything), and the loop below adds
        // it back as a learner that catches up from the others. Never a new cluster, never the others' data.
        for m in &lost {
            let name = m.name.clone();
            let checker = voters.iter().find(|v| **v != name && running.contains(*v)).cloned().unwrap_or_else(|| self.desired.seed.clone());
            let change = format!("remove {name}");
            let id = |s: &str| format!("etcd/{name}/lost/{s}");
            let why = "its etcd data directory is gone (no member folder) and it does not answer: a dead member, removed and added again";
            let before = Gate::new(GateWhen::Before, &change, &voters).tolerating(&tolerated);
            steps.push(step(id("gate-before"), &checker, Action::Gate(before), "quorum check"));
            self.snapshot(&mut steps, &mut snapshot_taken, &checker, &change);
            let stop = "its data directory is gone: stop its etcd and move what is left aside before it is removed";
            steps.push(step(id("stop"), &name, Action::ClearEtcdData { member: name.clone() }, stop));
            steps.push(step(id("remove"), &checker, Action::RemoveEtcdMember { member: name.clone(), id: format!("{:x}", m.id) }, why));
            voters.retain(|v| *v != name);
            let after = Gate::new(GateWhen::After, &change, &voters).tolerating(&leaving_down);
            steps.push(step(id("gate-after"), &checker, Action::Gate(after), "quorum check"));
        }
        let mut running = running;
        // A member's new etcd release goes in one member at a time, the leader last: its restart is the one
        // that costs a leadership handover, and by then the others already run the new release.
        let leader = view.and_then(crate::etcd::leader::leader);
        let mut ordered: Vec<&Host> = self.inv.control_planes().collect();
        if !self.etcd_swaps.is_empty() {
            ordered.sort_by_key(|h| leader.as_deref() == Some(h.name.as_str()));
        }
        for h in ordered {
            let m = h.name.clone();
            let id = |s: &str| format!("etcd/{m}/{s}");
            let stale = self.stale(&m, Group::Etcd);
            let install = |steps: &mut Vec<Step>| {
                if let Some((files, why)) = &stale {
                    steps.push(step(id("files"), &m, Action::InstallEtcdFiles { member: m.clone(), files: files.clone() }, why.clone()));
                }
            };
            // Gates and membership changes run on a voting member that is up, other than the one in flux.
            let checker = voters.iter().find(|v| **v != m && running.contains(*v)).cloned().unwrap_or_else(|| m.clone());
            // A lost member was removed above: from here on it is a host to add.
            let member = self.observed.member_of(h).filter(|_| !lost_names.contains(&m));
            let active = running.contains(&m);
            // The member's one start or restart in this plan swaps in the etcd binary the software phase staged.
            let binary = self.etcd_swaps.get(&m).map(|v| v.to_string());
            let start = |state: &'static str, restart: bool| Action::StartEtcdMember {
                member: m.clone(),
                initial_cluster_state: state,
                restart,
                initial_cluster: None,
                binary: binary.clone(),
            };
            // etcd refuses to join unless its initial cluster lists exactly the current members and itself.
            let join = {
                let mut listed: Vec<String> = voters.iter().filter(|n| **n != m).map(|n| format!("{n}={}", self.peer_of(n))).collect();
                listed.push(format!("{m}={}", h.peer_url()));
                Action::StartEtcdMember {
                    member: m.clone(),
                    initial_cluster_state: "existing",
                    restart: false,
                    initial_cluster: Some(listed.join(",")),
                    binary: binary.clone(),
                }
            };
            match member {
                None if voters.is_empty() => {
                    install(&mut steps);
                    // Only a cluster that does not exist yet is bootstrapped (`new`; the executor sets the config
                    // to `existing` once the member serves). Where etcd data exists this member restarts it.
                    let (state, why) = if self.observed.etcd_exists() {
                        ("existing", "etcd data exists but no member runs: the first member starts alone on it")
                    } else {
                        ("new", "no etcd cluster yet: the first member starts alone")
                    };
                    steps.push(step(id("start"), &m, start(state, false), why));
                    voters.push(m.clone());
                    steps.push(step(id("gate-after"), &m, gate(GateWhen::After, &format!("start {m}"), &voters), "quorum check"));
                }
                None => {
                    let change = format!("add {m}");
                    steps.push(step(id("gate-before"), &checker, gate(GateWhen::Before, &change, &voters), "quorum check"));
                    self.snapshot(&mut steps, &mut snapshot_taken, &checker, &change);
                    if active || self.observed.facts.get(&m).is_some_and(|f| f.etcd_data_dir) {
                        let why = "not a member, but it has etcd data of an earlier cluster (removed member or restore)";
                        steps.push(step(id("clear-data"), &m, Action::ClearEtcdData { member: m.clone() }, why));
                    }
                    install(&mut steps);
                    let why = if lost_names.contains(&m) { "added again: its data directory was lost" } else { "member missing" };
                    steps.push(step(id("add-learner"), &checker, Action::AddEtcdLearner { member: m.clone(), peer_url: h.peer_url() }, why));
                    steps.push(step(id("start"), &m, join, why));
                    match replaced.pop_front() {
                        Some(old) => {
                            steps.push(step(id("caught-up"), &checker, Action::WaitLearnerCaughtUp { member: m.clone() }, why));
                            self.remove_replaced(&mut steps, old, &m, &checker, &mut voters);
                            self.promote_caught_up(&mut steps, &m, &checker, &mut voters, why);
                        }
                        None => self.promote(&mut steps, &m, &checker, &mut voters, why),
                    }
                }
                Some(learner) if learner.is_learner => {
                    // Finishing a killed run's add is a membership change like any other: the voters that stay
                    // must be healthy before it starts, and this learner (the only one allowed) is the one in flux.
                    let change = format!("promote {m}");
                    let mut before = Gate::new(GateWhen::Before, &change, &voters);
                    before.max_learners = 1;
                    steps.push(step(id("gate-before"), &checker, Action::Gate(before), "quorum check"));
                    self.snapshot(&mut steps, &mut snapshot_taken, &checker, &change);
                    install(&mut steps);
                    if !active {
                        steps.push(step(id("start"), &m, join, "learner not running"));
                    } else if let Some(v) = &binary {
                        // A learner does not vote: its restart needs no gate of its own.
                        steps.push(step(id("restart"), &m, start("existing", true), format!("etcd {v} staged")));
                    }
                    self.promote(&mut steps, &m, &checker, &mut voters, "a learner from an unfinished run");
                }
                Some(moved) if Self::moved(moved, h) => {
                    // Re-addressed: the cluster still dials the old peer URL, so the member is pointed at
                    // the new one first (a membership change the others carry out, between gates), then
                    // restarts there with its new config and certificates and its data as it was.
                    let url = h.peer_url();
                    let change = format!("move {m} to {url}");
                    let down = moved_down.contains(&m);
                    let before = Gate::new(GateWhen::Before, &change, &voters).tolerating(if down { std::slice::from_ref(&m) } else { &[] });
                    steps.push(step(id("gate-before"), &checker, Action::Gate(before), "quorum check"));
                    self.snapshot(&mut steps, &mut snapshot_taken, &checker, &change);
                    if !down && checker != m {
                        steps.push(step(id("move-leader"), &checker, Action::MoveEtcdLeader { from: m.clone() }, "its peer URL is about to change"));
                    }
                    let why = format!("re-addressed: etcd knows it at {}, the inventory says {url}", moved.peer_urls.join(", "));
                    let update = Action::UpdateEtcdPeerUrl { member: m.clone(), id: format!("{:x}", moved.id), peer_url: url.clone() };
                    steps.push(step(id("update-peer-url"), &checker, update, why));
                    install(&mut steps);
                    // A restart either way: a unit whose config named the old address is failing and restarting.
                    steps.push(step(id("restart"), &m, start("existing", true), "it serves at its new address"));
                    steps.push(step(id("gate-after"), &checker, gate(GateWhen::After, &change, &voters), "quorum check"));
                }
                Some(_) => match (&stale, active) {
                    (None, true) if binary.is_none() => {}
                    (Some((files, why)), true) if binary.is_none() && !self.etcd_needs_restart(&m) => {
                        let why = match self.bootstrap_state_change(&m) {
                            // etcd reads initial-cluster-state only when its data directory is empty, so the running
                            // member needs no restart: the rewrite matters only if its data is ever lost, and then
                            // `existing` makes etcd fail instead of bootstrapping a second cluster.
                            Some(old) => format!("{why}: initial-cluster-state {old} -> existing (read only with an empty data dir: no restart)"),
                            None => format!("{why} (etcdctl's settings only: no restart)"),
                        };
                        steps.push(step(id("files"), &m, Action::InstallEtcdFiles { member: m.clone(), files: files.clone() }, why));
                    }
                    (_, true) => {
                        let change = format!("restart {m}");
                        let files_changed = stale.is_some() && self.etcd_needs_restart(&m);
                        let why = match &binary {
                            Some(v) if files_changed => format!("its files changed and etcd {v} is staged"),
                            Some(v) => format!("etcd {v} is staged (the running member still runs its old binary)"),
                            None => "its files changed".to_string(),
                        };
                        steps.push(step(id("gate-before"), &checker, gate(GateWhen::Before, &change, &voters), "quorum check"));
                        if binary.is_some() {
                            // A new release may rewrite the data (etcd 3.6 migrates 3.5's storage): a way back first.
                            self.snapshot(&mut steps, &mut snapshot_taken, &checker, &format!("etcd {} on {m}", binary.as_deref().unwrap_or_default()));
                        }
                        if checker != m {
                            steps.push(step(id("move-leader"), &checker, Action::MoveEtcdLeader { from: m.clone() }, "it is about to restart"));
                        }
                        install(&mut steps);
                        steps.push(step(id("restart"), &m, start("existing", true), why));
                        steps.push(step(id("gate-after"), &checker, gate(GateWhen::After, &change, &voters), "quorum check"));
                    }
                    (_, false) => {
                        install(&mut steps);
                        steps.push(step(id("start"), &m, start("existing", false), "etcd is not running"));
                        steps.push(step(id("gate-after"), &checker, gate(GateWhen::After, &format!("start {m}"), &voters), "quorum check"));
                    }
                },
            }
            running.insert(m.clone());
        }
        self.cluster_version_check(&mut steps, &voters);
        self.refuse_changes_without_full_membership(&steps, &tolerated);
        self.push("etcd", "etcd, one member at a time between quorum gates", Execution::Sequential, steps);
    }

    /// After a new minor release went in on members of a running cluster: etcd moves the cluster version
    /// (what the cluster's features follow) only once every member runs the new minor, so waiting for it
    /// proves the rollout complete. Only when the run also leaves no member on the old minor.
    fn cluster_version_check(&self, steps: &mut Vec<Step>, voters: &[String]) {
        let Some(view) = &self.observed.etcd else { return };
        let target = self.inv.etcd.version;
        let minor = |v: &str| Version::parse(v).map(|v| (v.major, v.minor));
        let behind = view.statuses.iter().any(|s| view.same_cluster(s) && minor(&s.version).is_some_and(|m| m < (target.major, target.minor)));
        let swapped = self.etcd_swaps.values().any(|v| (v.major, v.minor) == (target.major, target.minor));
        if !behind || !swapped {
            return;
        }
        let Some(checker) = voters.first() else { return };
        let version = format!("{}.{}", target.major, target.minor);
        let why = format!("every member runs etcd {target}: the cluster version follows to {version}");
        steps.push(step("etcd/cluster-version".into(), checker, Action::WaitEtcdClusterVersion { version }, why));
    }

    /// Members of the inventory that etcd lists under their host's name with another peer URL: hosts moved
    /// to a new address.
    fn moved_members(&self) -> Vec<&Member> {
        self.inv.control_planes().filter_map(|h| self.observed.member_of(h).filter(|m| Self::moved(m, h))).collect()
    }

    fn moved(m: &Member, h: &Host) -> bool {
        m.name == h.name && !m.peer_urls.is_empty() && m.peer_urls != [h.peer_url()]
    }

    /// Whether a running member must restart for its files: any changed file but etcdctl's environment
    /// (a config that differs only in the bootstrap settings does not count as changed: see `differs`).
    fn etcd_needs_restart(&self, m: &str) -> bool {
        let state = self.observed.host(m);
        self.desired.host_files(m).filter(|f| f.group == Group::Etcd && state.digest(&f.path) != Some(f.digest.as_str())).any(|f| match f.path.as_str() {
            ETCDCTL_ENV => false,
            ETCD_CONFIG => state.digest(ETCD_CONFIG_RUNTIME) != Some(observe::runtime_digest(&f.contents).as_str()),
            _ => true,
        })
    }

    /// Members of the inventory whose data directory vanished: listed by the cluster as voters, not
    /// answering, on a host that answered over SSH, has kubeha's etcd unit and no /var/lib/etcd/member.
    fn lost_members(&self) -> Vec<Member> {
        let Some(view) = &self.observed.etcd else { return Vec::new() };
        self.inv
            .control_planes()
            .filter_map(|h| {
                let m = self.observed.member_of(h)?;
                let facts = self.observed.facts.get(&h.name)?;
                let unit = self.observed.host(&h.name).has(ETCD_UNIT);
                (!m.is_learner && !m.name.is_empty() && unit && !facts.etcd_data_dir && view.healthy(m).is_err()).then(|| m.clone())
            })
            .collect()
    }

    /// The initial-cluster-state `m`'s config says when the desired config says otherwise (`new` left on the
    /// first member of a cluster bootstrapped before kubeha wrote `existing` once the cluster exists).
    fn bootstrap_state_change(&self, m: &str) -> Option<String> {
        let have = self.observed.host(m).etcd_initial_cluster_state?;
        let want = observe::initial_cluster_state(&self.desired.file(m, ETCD_CONFIG)?.contents);
        (have != want).then_some(have)
    }

    /// A voter's peer URL: the inventory's for its control planes, etcd's own for any other member.
    fn peer_of(&self, name: &str) -> String {
        match self.inv.control_planes().find(|h| h.name == name) {
            Some(h) => h.peer_url(),
            None => self.observed.etcd.iter().flat_map(|v| &v.members).find(|m| m.name == name).and_then(|m| m.peer_urls.first().cloned()).unwrap_or_default(),
        }
    }

    fn in_inventory(&self, m: &Member) -> bool {
        crate::etcd::identity::host_of(self.inv, m).is_some()
    }

    /// kubeha changes membership only when every member that stays is healthy: a change made while another
    /// member is down can leave the cluster one failure from losing quorum, or lose it outright.
    fn refuse_changes_without_full_membership(&mut self, steps: &[Step], leaving_down: &[String]) {
        let Some(view) = &self.observed.etcd else { return };
        let down: Vec<String> = view.unhealthy_voters().into_iter().filter(|n| !leaving_down.contains(n)).collect();
        let changes: Vec<String> = steps.iter().filter(|s| s.action.changes_membership() || is_restart(&s.action)).map(|s| s.id.clone()).collect();
        if down.is_empty() || changes.is_empty() {
            return;
        }
        self.findings.push(Finding {
            host: down.join(", "),
            problem: format!(
                "etcd member(s) {} do not answer; the planned membership changes ({}) need every member that stays to be healthy",
                down.join(", "),
                changes.join(", ")
            ),
            fix: format!(
                "bring them back (a stopped etcd: systemctl start etcd; a powered-off machine: boot it), or take a dead one out first with `kubeha node replace {} --with NEW` / `kubeha node remove {}`",
                down[0], down[0]
            ),
            fatal: true,
        });
    }

    /// The snapshot before the first membership change of the run, on the member that checks the gates.
    fn snapshot(&self, steps: &mut Vec<Step>, taken: &mut bool, on: &str, change: &str) {
        if std::mem::replace(taken, true) {
            return;
        }
        let reason = format!("before-{}", change.replace(' ', "-"));
        steps.push(step("etcd/snapshot".into(), on, Action::EtcdSnapshot { reason }, "a way back before the run's first change to etcd's members"));
    }

    fn promote(&self, steps: &mut Vec<Step>, m: &str, checker: &str, voters: &mut Vec<String>, why: &str) {
        steps.push(step(format!("etcd/{m}/caught-up"), checker, Action::WaitLearnerCaughtUp { member: m.to_string() }, why));
        self.promote_caught_up(steps, m, checker, voters, why);
    }

    /// Takes out `old`, the member that `learner` (caught up, not yet voting) replaces, between gates that
    /// allow that one learner; leadership is moved off `old` first.
    fn remove_replaced(&self, steps: &mut Vec<Step>, old: &Member, learner: &str, checker: &str, voters: &mut Vec<String>) {
        let name = old.name.clone();
        let id = |s: &str| format!("etcd/{name}/{s}");
        let change = format!("remove {name}");
        let why = format!("not a control plane of the inventory: replaced by {learner}, which holds a copy of the data");
        let mut before = Gate::new(GateWhen::Before, &change, voters);
        before.max_learners = 1;
        steps.push(step(id("gate-before"), checker, Action::Gate(before), "quorum check"));
        steps.push(step(id("move-leader"), checker, Action::MoveEtcdLeader { from: name.clone() }, "it is about to be removed"));
        steps.push(step(id("remove"), checker, Action::RemoveEtcdMember { member: name.clone(), id: format!("{:x}", old.id) }, why));
        voters.retain(|v| *v != name);
        let mut after = Gate::new(GateWhen::After, &change, voters);
        after.max_learners = 1;
        steps.push(step(id("gate-after"), checker, Action::Gate(after), "quorum check"));
    }

    fn promote_caught_up(&self, steps: &mut Vec<Step>, m: &str, checker: &str, voters: &mut Vec<String>, why: &str) {
        let id = |s: &str| format!("etcd/{m}/{s}");
        steps.push(step(id("promote"), checker, Action::PromoteEtcdLearner { member: m.to_string() }, why));
        voters.push(m.to_string());
        steps.push(step(id("gate-after"), checker, gate(GateWhen::After, &format!("add {m}"), voters), "quorum check"));
    }

    fn load_balancer(&mut self) {
        let Some(vrrp) = self.inv.load_balancer.vrrp() else { return };
        let services = crate::inventory::LOAD_BALANCER_SERVICES.to_vec();
        let mut steps: Vec<Step> = Vec::new();
        for h in self.inv.control_planes() {
            let state = self.observed.host(&h.name);
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

    /// Whether `h` is a working node: kubeadm left kubelet.conf and the node is registered.
    fn joined(&self, h: &Host) -> bool {
        self.observed.host(&h.name).has(KUBELET_CONF) && self.observed.registered(&h.name) && self.registered_at(h).is_none()
    }

    /// The address a node registered with when it is not its host's address now (a re-addressed host):
    /// its kubelet, and on a control plane its API server's certificate and manifest, still carry the old
    /// one, so the node is reset and joined again (kubeadm reset never touches kubeha's etcd).
    fn registered_at(&self, h: &Host) -> Option<std::net::IpAddr> {
        self.observed.node_addresses.get(&h.name).copied().filter(|a| *a != h.address)
    }

    /// kubeadm refuses to run over an earlier attempt's files; `kubeadm reset -f` clears them (never etcd).
    fn leftovers(&self, h: &Host) -> bool {
        let state = self.observed.host(&h.name);
        state.has(KUBELET_CONF) || state.has(ADMIN_CONF) || (!h.is_control_plane() && state.has(KUBERNETES_CA_CERT))
    }

    fn join_reason(&self, h: &Host) -> String {
        if let Some(old) = self.registered_at(h).filter(|_| self.observed.registered(&h.name)) {
            return format!("re-addressed: the node registered at {old}, the inventory says {}; reset and joined again there", h.address);
        }
        if self.observed.host(&h.name).has(KUBELET_CONF) { "joined files present but the node is not registered".into() } else { "not joined".into() }
    }

    /// Nodes registered at another address than their host has now are deleted before they join again:
    /// kubeadm refuses to join a node whose name a Ready Node already has. A phase of its own, before every
    /// join, because worker joins run in parallel with each other and the deletion runs on the seed.
    fn readdressed_nodes(&mut self) {
        let admin = self.desired.seed.clone();
        let steps = self
            .inv
            .hosts
            .iter()
            .filter(|h| self.observed.registered(&h.name))
            .filter_map(|h| self.registered_at(h).map(|old| (h, old)))
            .map(|(h, old)| {
                let why = format!("re-addressed: its Node is registered at {old}, the host is {} now; it joins again below", h.address);
                step(format!("readdressed/{}/node", h.name), &admin, Action::RemoveNode { node: h.name.clone() }, why)
            })
            .collect();
        self.push("readdressed", "nodes moved to another address: their Node objects go before they join again", Execution::Sequential, steps);
    }

    /// kubeadm init on the seed when the cluster has none, then control-plane joins one at a time: each join
    /// changes what the API path depends on, so the next starts only when the API answers.
    fn control_plane(&mut self) {
        let endpoint = self.endpoint();
        let mut steps = Vec::new();
        let initialised = self.observed.nodes.is_some();
        // Leftovers of an init that failed before its API server wrote to etcd are retried (reset, init);
        // with Kubernetes data in etcd, or etcd not answering, the cluster may exist and is never re-made.
        let failed_init = self.observed.kubernetes_data == Some(false);
        if let (false, Some(err), false) = (initialised, &self.observed.api_error, failed_init) {
            self.findings.push(Finding {
                host: self.desired.seed.clone(),
                problem: format!("a control plane has {ADMIN_CONF} but the API does not answer ({err})"),
                fix: "bring the API server back (etcd healthy, kube-apiserver running); kubeha never re-initialises a cluster that may exist. If the cluster is really gone, run `kubeadm reset -f` on the control planes".into(),
                fatal: true,
            });
            return;
        }
        let mut init_planned = false;
        let mut certs_uploaded = false;
        // The seed first: its ClusterConfiguration (new etcd endpoints, SANs) must reach the cluster before
        // any join reads it, and its InitConfiguration must be in place before certificates are uploaded.
        let seed = self.desired.seed.clone();
        for h in self.seed_first() {
            let is_seed = h.name == seed;
            let kubeadm_files = vec![KUBEADM_CONFIG.to_string()];
            if is_seed && !initialised {
                let mut files = kubeadm_files;
                files.extend([KUBERNETES_CA_CERT.to_string(), KUBERNETES_CA_KEY.to_string()]);
                let reset_first = self.leftovers(h);
                let action = Action::KubeadmInit { config: KUBEADM_CONFIG.into(), files, reset_first };
                let why = if reset_first { "an earlier init did not finish" } else { "no cluster yet" };
                steps.push(step(format!("kubeadm/{}/init", h.name), &h.name, action, why));
                init_planned = true;
            } else if !self.joined(h) {
                if !init_planned && !certs_uploaded {
                    let why = "kubeadm keeps the certificates for joins 2 h only; init ran in an earlier run";
                    steps.push(step("kubeadm/upload-certs".into(), &seed, Action::UploadCerts { config: KUBEADM_CONFIG.into() }, why));
                    certs_uploaded = true;
                }
                let reset_first = self.leftovers(h);
                let action = Action::KubeadmJoinControlPlane { config: KUBEADM_CONFIG.into(), files: kubeadm_files, reset_first };
                steps.push(step(format!("kubeadm/{}/join", h.name), &h.name, action, self.join_reason(h)));
            } else {
                if let Some((files, why)) = self.stale(&h.name, Group::Kubeadm) {
                    // Only the seed's file holds the ClusterConfiguration (init.yaml).
                    let action = if is_seed { Action::UploadKubeadmConfig { files } } else { Action::PlaceFiles { files } };
                    steps.push(step(format!("kubeadm/{}/config", h.name), &h.name, action, why));
                }
                continue;
            }
            let ready = Action::WaitApiReady { endpoint: endpoint.clone(), node: h.name.clone() };
            steps.push(step(format!("kubeadm/{}/ready", h.name), &h.name, ready, "the next join needs a serving API"));
        }
        self.push("control-plane", "kubeadm init, then control-plane joins one at a time", Execution::Sequential, steps);
    }

    /// The control planes with the seed first, then the others in inventory order: the order of every phase
    /// whose first step is cluster-wide (init or its config upload, `kubeadm upgrade apply`).
    fn seed_first(&self) -> impl Iterator<Item = &Host> + '_ {
        let (inv, seed) = (self.inv, self.desired.seed.as_str());
        inv.control_planes().filter(move |h| h.name == seed).chain(inv.control_planes().filter(move |h| h.name != seed))
    }

    /// kubeadm's certificates valid for fewer than `renewBefore` days are renewed, and a control plane
    /// whose API server's etcd client certificate kubeha replaced in the etcd phase restarts its static pods
    /// (kube-apiserver reads it only at start). One control plane at a time, each waiting for its API
    /// server before the next, so the API stays served through the others. Only joined control planes:
    /// a node joining in this run gets fresh certificates and starts its pods anyway. CAs are not renewed
    /// (10 years; a different procedure); the kubelet rotates its own client certificate.
    fn certificates(&mut self) {
        let before = self.inv.certificates.renew_before_days;
        let client = format!("{ETCD_PKI_DIR}/{}", crate::pki::APISERVER_ETCD_CLIENT.0);
        let mut steps = Vec::new();
        for h in self.inv.control_planes().filter(|h| self.joined(h)) {
            let mut due: Vec<&crate::pki::expiry::Cert> = self
                .observed
                .certs
                .get(&h.name)
                .map(|c| {
                    c.certs.iter().filter(|c| c.owner == Owner::Kubeadm && !c.parsed.ca && expiry::due(c.parsed.not_after, self.observed.now, before)).collect()
                })
                .unwrap_or_default();
            due.sort_by_key(|c| c.parsed.not_after);
            let client_replaced = self.desired.file(&h.name, &client).is_some_and(|f| differs(&self.observed.host(&h.name), f));
            let set_aside: Vec<&str> = SET_ASIDE_MANIFESTS.iter().copied().filter(|p| self.observed.host(&h.name).has(p)).collect();
            let why = match (due.first(), client_replaced) {
                (None, false) if set_aside.is_empty() => continue,
                (None, false) => format!("an earlier restart left {} out of the manifests: that pod is down", set_aside.join(", ")),
                (Some(first), _) => {
                    let days = first.days_left(self.observed.now);
                    let soonest = format!("{} in {days} days", file_name(&first.path));
                    format!("{} of kubeadm's certificates valid for less than {before} days (renewBefore), the first {soonest}", due.len())
                }
                (None, true) => "its API server's etcd client certificate was renewed".to_string(),
            };
            let action = Action::RestartControlPlane { node: h.name.clone(), renew_certs: !due.is_empty() };
            steps.push(step(format!("certs/{}/restart", h.name), &h.name, action, why));
        }
        self.push("certificates", "kubeadm's certificates renewed, control planes restarted one at a time", Execution::Sequential, steps);
    }

    fn cni(&mut self) {
        let first = self.desired.seed.clone();
        let state = self.observed.host(&first);
        let Some(marker) = self.desired.file(&first, CNI_APPLIED) else { return };
        let mut steps = vec![];
        if state.digest(&marker.path) != Some(marker.digest.as_str()) {
            let cni = self.inv.kubernetes.cni;
            let manifest = format!("{CNI_DIR}/{}", file_name(render::cni_file(cni)));
            // Which CNI and version the manifest was rendered for is why it is applied, not what the step
            // runs with: the executor applies the manifest file, so that is the action's one field.
            let what = format!("{} {}", cni.name(), self.inv.kubernetes.cni_version);
            let why = if state.has(&marker.path) { format!("the {what} manifest changed since it was applied") } else { format!("{what} not applied yet") };
            steps.push(step("cni/apply".into(), &first, Action::ApplyCni { manifest }, why));
        }
        self.push("cni", "pod network", Execution::Sequential, steps);
    }

    fn workers(&mut self) {
        let mut steps = Vec::new();
        for h in self.inv.workers() {
            if self.joined(h) {
                if let Some((files, why)) = self.stale(&h.name, Group::Kubeadm) {
                    steps.push(step(format!("workers/{}/config", h.name), &h.name, Action::PlaceFiles { files }, why));
                }
                continue;
            }
            let action = Action::KubeadmJoinWorker { config: KUBEADM_CONFIG.into(), files: vec![KUBEADM_CONFIG.into()], reset_first: self.leftovers(h) };
            steps.push(step(format!("workers/{}", h.name), &h.name, action, self.join_reason(h)));
        }
        self.push("workers", "worker joins", self.parallel(), steps);
    }

    /// Every node gets its failure-domain labels; those a kubelet may not set on itself (NodeRestriction)
    /// are only applied here, with an admin credential.
    fn labels(&mut self) {
        let first = self.desired.seed.clone();
        let mut steps = Vec::new();
        for h in &self.inv.hosts {
            let want = h.node_labels();
            // A re-addressed node's Node is deleted and made anew by its join: its labels are gone then.
            let have = self.observed.nodes.as_ref().and_then(|n| n.get(&h.name)).filter(|_| self.registered_at(h).is_none());
            let wrong: Vec<&str> = want.iter().filter(|(k, v)| have.and_then(|l| l.get(k)) != Some(v)).map(|(k, _)| k.as_str()).collect();
            if wrong.is_empty() {
                continue;
            }
            let why = if have.is_none() { "node not registered yet".to_string() } else { format!("labels differ: {}", wrong.join(", ")) };
            let labels = want.iter().map(|(k, v)| format!("{k}={v}")).collect();
            steps.push(step(format!("labels/{}", h.name), &first, Action::LabelNode { node: h.name.clone(), labels }, why));
        }
        self.push("labels", "node labels (zone, rack, region and the inventory's own)", Execution::Sequential, steps);
    }

    /// The backup timer on every control plane, once etcd and the control plane run: installed where its files
    /// are missing or differ, (re)started where it is not active. When a control plane gets it for the first
    /// time, the backup also runs once on every control plane (in order; the leader's run takes the snapshot,
    /// the others skip), so a new cluster has a backup at the end of its first apply and `verify` can say so.
    fn backup(&mut self) {
        let mut steps = Vec::new();
        if self.inv.etcd.backup.is_none() {
            for h in self.inv.control_planes().filter(|h| self.observed.host(&h.name).has(crate::paths::ETCD_BACKUP_TIMER)) {
                let why = "spec.etcd.backup.enabled is false, but the backup timer is installed";
                steps.push(step(format!("backup/{}/remove", h.name), &h.name, Action::RemoveEtcdBackup, why));
            }
            self.push("backup", "scheduled etcd backups turned off: the timer removed, the backups kept", Execution::Sequential, steps);
            return;
        }
        let mut first_time = false;
        for h in self.inv.control_planes() {
            let state = self.observed.host(&h.name);
            let stale = self.stale(&h.name, Group::Backup);
            let timer_down = !state.is_active(crate::phases::backup::TIMER);
            if stale.is_none() && !timer_down {
                continue;
            }
            first_time |= !state.has(crate::paths::ETCD_BACKUP_SCRIPT);
            let reason = stale.as_ref().map(|(_, why)| why.clone()).unwrap_or_else(|| format!("{} not active", crate::phases::backup::TIMER));
            // A timer that ran before reads a changed schedule only at a restart; a new one is just started.
            let restart = stale.is_some() && state.has(crate::paths::ETCD_BACKUP_TIMER);
            let action = Action::InstallEtcdBackup { files: self.desired.paths_in(h, Group::Backup), restart };
            steps.push(step(format!("backup/{}", h.name), &h.name, action, reason));
        }
        if first_time {
            for h in self.inv.control_planes() {
                let why = "the backup timer is new: a first backup now, before its first scheduled run";
                steps.push(step(format!("backup/{}/run", h.name), &h.name, Action::RunEtcdBackup, why));
            }
        }
        self.push("backup", "scheduled etcd backups: timer on every control plane, snapshots on the leader", Execution::Sequential, steps);
    }

    /// Hosts that left the inventory: etcd members (removed in the etcd phase) and registered nodes are
    /// drained and deleted, and reset when they answer; one that does not is named, since it must be wiped
    /// before it comes back (it would still run keepalived for the VIP and etcd with old data).
    fn retire(&mut self) {
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
                let machine_id = self.observed.node_machine_ids.get(n).cloned();
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
        for (node, address) in self.observed.node_addresses.iter().filter(|(n, _)| !listed(n) && self.observed.registered(n)) {
            if let Some(h) = self.inv.hosts.iter().find(|h| h.address == *address) {
                note(node, h, format!("Node {node} (InternalIP {address})"));
            }
        }
        found
    }

    /// A renamed host is refused, never handled by accident: under the old name it would look like a host
    /// that left (its Node deleted, the machine reset) while the same machine joins again under the new one.
    /// kubeha does not rename in place: Kubernetes node names are immutable and etcd member names are in the
    /// member's certificates and in every member's initial-cluster.
    fn refuse_renames(&mut self) {
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

    /// The bootstrap token for this run's joins. A run that joins into an existing cluster refreshes it on
    /// the seed before the etcd phase: in a replace the old member leaves etcd before the new host's kubeadm
    /// join, and a join that then fails on an expired token leaves the cluster a member short. After the
    /// joins and labels (before hosts are retired) the token is deleted again; an init run deletes the
    /// token `kubeadm init` made (24 h) the same way. So no join credential outlives its run, and every later
    /// join refreshes one. A run without joins or init plans neither (a converged cluster plans nothing).
    fn join_token(&mut self) {
        let steps = || self.phases.iter().flat_map(|p| &p.steps);
        let joins = steps().any(|s| matches!(s.action, Action::KubeadmJoinControlPlane { .. } | Action::KubeadmJoinWorker { .. }));
        let init = steps().any(|s| matches!(s.action, Action::KubeadmInit { .. }));
        if !joins && !init {
            return;
        }
        let seed = self.desired.seed.clone();
        let after = |name: &str, phases: &[Phase]| phases.iter().position(|p| p.name == name).map_or(phases.len(), |i| i + 1);
        if !init {
            let refresh = step("join-token/refresh".into(), &seed, Action::RefreshJoinToken { valid_minutes: JOIN_TOKEN_MINUTES }, "this run joins nodes");
            let at = after("host", &self.phases);
            let title = "bootstrap token for this run's joins, before any membership change";
            self.phases.insert(at, Phase { name: "join-token", title, execution: Execution::Sequential, steps: vec![refresh] });
        }
        let why = if init { "kubeadm init made a 24 h token; later joins refresh one" } else { "the joins are done" };
        let delete = step("join-token/delete".into(), &seed, Action::DeleteJoinToken, why);
        let at = after("labels", &self.phases);
        let title = "delete the bootstrap token: no join credential outlives the run";
        self.phases.insert(at, Phase { name: "join-token-delete", title, execution: Execution::Sequential, steps: vec![delete] });
    }

    /// Files whose contents are right but whose mode or owner drifted (a key made world-readable, a chown
    /// to another user): kubeha's own files back to their desired mode, secret files kubeadm or the kubelet
    /// wrote (on joined nodes) back to 0600 once others can read them; owner root:root for both. A
    /// chmod/chown step per host, not an upload, so no restart decision sees it (those compare contents
    /// only: `stale`, `differs`, `etcd_needs_restart`). Built after every other phase, so files a step of this plan uploads anyway
    /// (the upload sets mode and owner) are left out; placed right after the cluster state, so a secret
    /// exposed is closed before the long phases run.
    fn file_modes(&mut self) {
        let mut steps = Vec::new();
        for h in &self.inv.hosts {
            let state = self.observed.host(&h.name);
            let placed: BTreeSet<&str> = self.phases.iter().flat_map(|p| &p.steps).filter(|s| s.host == h.name).flat_map(|s| s.action.placed_files()).collect();
            let owned = |m: &FileMeta| format!("{}:{}", m.owner, m.group) == desired::FILE_OWNER;
            let mut drifted: Vec<(&str, &FileMeta, u32)> = Vec::new();
            for f in self.desired.host_files(&h.name).filter(|f| state.has(&f.path) && !differs(&state, f) && !placed.contains(f.path.as_str())) {
                if let Some(have) = state.meta(&f.path).filter(|m| m.mode != f.mode || !owned(m)) {
                    drifted.push((&f.path, have, f.mode));
                }
            }
            // kubeadm's files on a host that is not joined are leftovers the join's `kubeadm reset` removes.
            let joined = self.joined(h);
            let theirs = state.secret_files.iter().filter(|p| joined && self.desired.file(&h.name, p).is_none() && !placed.contains(p.as_str()));
            for p in theirs {
                if let Some(have) = state.meta(p).filter(|m| m.open_to_others() || !owned(m)) {
                    drifted.push((p, have, if have.open_to_others() { secret_files::PRIVATE } else { have.mode }));
                }
            }
            if drifted.is_empty() {
                continue;
            }
            let files = drifted.iter().map(|(path, _, mode)| FileMode { path: path.to_string(), mode: *mode }).collect();
            steps.push(step(format!("file-modes/{}", h.name), &h.name, Action::FixFileModes { files }, modes_reason(&drifted)));
        }
        if steps.is_empty() {
            return;
        }
        let at = self.phases.iter().position(|p| p.name == "state").map_or(0, |i| i + 1);
        let title = "modes and owners of files whose contents are right: chmod/chown in place, nothing restarts";
        self.phases.insert(at, Phase { name: "file-modes", title, execution: self.parallel(), steps });
    }

    /// The files were rendered for `desired.seed`; a plan for another seed would run admin steps where the
    /// InitConfiguration and markers are not. The live pipeline renders for `seed_control_plane`, so this
    /// only guards against a caller that did not.
    fn seed_matches(&mut self) {
        let chosen = seed_control_plane(self.inv, self.observed).map(|h| h.name.clone()).unwrap_or_default();
        if chosen != self.desired.seed {
            self.findings.push(Finding {
                host: self.desired.seed.clone(),
                problem: format!("the files were rendered with {} as the seed, but the seed is {chosen} (a joined control plane)", self.desired.seed),
                fix: "a kubeha bug: please report it with `kubeha plan` output".into(),
                fatal: true,
            });
        }
    }

    fn verify(&mut self) {
        let first = self.desired.seed.clone();
        let checks = super::verify::checks(self.inv);
        let steps = vec![step("verify".into(), &first, Action::Verify { checks }, "final verification")];
        self.push("verify", "final verification", Execution::Sequential, steps);
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

fn gate(when: GateWhen, change: &str, voters: &[String]) -> Action {
    Action::Gate(Gate::new(when, change, voters))
}

mod software;
#[cfg(test)]
mod tests;
mod upgrade;

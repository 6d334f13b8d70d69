//! The etcd phase: members leave, join as learners and are promoted, restart or move to a new address,
//! one at a time between quorum gates, with a snapshot before the first membership change.
use super::{Builder, RESTORE_HINT, gate, is_restart, step};
use crate::etcd::status::Member;
use crate::facts::observe;
use crate::inventory::{Host, Version};
use crate::paths::{ETCD_CONFIG, ETCD_CONFIG_RUNTIME, ETCD_DATA_DIR, ETCD_UNIT, ETCDCTL_ENV};
use crate::plan::{Action, Execution, Finding, Gate, GateWhen, Step};
use crate::render::Group;
use std::collections::BTreeSet;

impl Builder<'_> {
    /// etcd changes one member at a time between quorum gates. Members the inventory no longer lists are
    /// removed first when they are dead or nobody joins in their place; a live member with a replacement
    /// leaves once the replacement caught up as a learner, before its promotion. A missing member joins as a
    /// learner, catches up and is promoted; a member whose files changed is restarted alone. Leadership is
    /// moved off a member before it is removed or restarted. The first
    /// member of a cluster that has none starts alone. A snapshot precedes the first membership change.
    pub(super) fn etcd(&mut self) {
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

    pub(super) fn in_inventory(&self, m: &Member) -> bool {
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
}

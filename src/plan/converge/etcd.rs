//! The etcd phase: members leave, join as learners and are promoted, restart or move to a new address,
//! one at a time between quorum gates, with a snapshot before the first membership change.
use super::{Builder, RESTORE_HINT, is_restart, step};
use crate::etcd::status::Member;
use crate::facts::observe;
use crate::inventory::{Host, Version};
use crate::paths::{ETCD_CONFIG, ETCD_CONFIG_RUNTIME, ETCD_DATA_DIR, ETCD_UNIT, ETCDCTL_ENV};
use crate::plan::{Action, EtcdCluster, Execution, Finding, Gate, GateWhen, Step};
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
        // Every member that answered was asked on its own: if they disagree about which cluster they form or
        // who is in it, no single view can be trusted (a member that lost its data and bootstrapped a cluster
        // of one would make the real members look like strangers to clear), so nothing in etcd is planned.
        if let Some(problem) = crate::etcd::gate::disagreement(self.observed.etcd_answers()) {
            self.findings.push(Finding {
                host: self.observed.etcd_answers().map(|(h, _)| h).collect::<Vec<_>>().join(", "),
                problem,
                fix: format!("find the member that is not part of the real cluster (usually the one alone in its cluster: its data directory was lost and it bootstrapped a new cluster); on it run `systemctl stop etcd; mv {ETCD_DATA_DIR} {ETCD_DATA_DIR}.split-$(date +%s)`, then `kubeha apply`: it removes and re-adds that member through the quorum gates"),
                fatal: true,
            });
            return;
        }
        let view = self.observed.etcd.as_ref();
        if view.is_none() {
            let data: Vec<&str> = self.observed.hosts_with_etcd_data().collect();
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
        let lost = self.lost_members();
        let lost_names: Vec<String> = lost.iter().map(|m| m.name.clone()).collect();
        // A re-addressed member usually cannot run until it is moved (its config names an address the host
        // no longer has): being down is what the move is about, not a reason to refuse it.
        let moved_down: Vec<String> =
            self.moved_members().into_iter().filter(|m| view.is_some_and(|v| v.healthy(m).is_err())).map(|m| m.name.clone()).collect();
        let tolerated: Vec<String> = leaving_down.iter().chain(&lost_names).chain(&moved_down).cloned().collect();
        let mut ms = Membership {
            voters: view.map(|v| v.members.iter().filter(|m| !m.is_learner && !m.name.is_empty()).map(|m| m.name.clone()).collect()).unwrap_or_default(),
            running: self
                .inv
                .control_planes()
                .filter(|h| self.observed.state(&h.name).is_active("etcd") && !lost_names.contains(&h.name))
                .map(|h| h.name.clone())
                .collect(),
            snapshot_planned: false,
            steps: Vec::new(),
        };
        // A member that answers and leaves while a host joins (a replace of a live member, or two swapped) is
        // replaced learner-first: the newcomer joins as a learner and catches up, the old member goes, then
        // the newcomer is promoted, so the cluster never waits with one voter short for a copy to stream.
        // Dead members leave first as before (they are already missing).
        let joining = if ms.voters().is_empty() { 0 } else { self.inv.control_planes().filter(|h| self.observed.member_of(h).is_none()).count() };
        let mut replaced: std::collections::VecDeque<&Member> =
            leaving.iter().copied().filter(|m| !m.is_learner && !m.name.is_empty() && !leaving_down.contains(&m.name)).take(joining).collect();
        for m in leaving.iter().filter(|m| !replaced.iter().any(|r| r.id == m.id)) {
            let name = m.label();
            let checker = ms.checker(&name, &self.desired.seed);
            let change = format!("remove {name}");
            let id = |s: &str| format!("etcd/{}/{s}", if m.name.is_empty() { format!("{:x}", m.id) } else { m.name.clone() });
            let down = leaving_down.contains(&name);
            let why = if down { "not a control plane of the inventory (it does not answer)" } else { "not a control plane of the inventory" };
            let mut before = ms.gate(GateWhen::Before, &change).tolerating(&tolerated);
            before.max_learners = usize::from(m.is_learner);
            ms.check(id("gate-before"), &checker, before);
            ms.snapshot(&checker, &change);
            if !down && !m.is_learner {
                ms.push(step(id("move-leader"), &checker, Action::MoveEtcdLeader { from: name.clone() }, "it is about to be removed"));
            }
            ms.remove(id("remove"), &checker, m, why);
            ms.check(id("gate-after"), &checker, ms.gate(GateWhen::After, &change).tolerating(&tolerated));
        }
        // A member whose data directory is gone is a dead member, whatever its host and unit say: it is removed
        // (its etcd stopped first, so Restart=always cannot start it into anything), and the loop below adds
        // it back as a learner that catches up from the others. Never a new cluster, never the others' data.
        for m in &lost {
            let name = m.name.clone();
            let checker = ms.checker(&name, &self.desired.seed);
            let change = format!("remove {name}");
            let id = |s: &str| format!("etcd/{name}/lost/{s}");
            let why = "its etcd data directory is gone (no member folder) and it does not answer: a dead member, removed and added again";
            ms.check(id("gate-before"), &checker, ms.gate(GateWhen::Before, &change).tolerating(&tolerated));
            ms.snapshot(&checker, &change);
            let stop = "its data directory is gone: stop its etcd and move what is left aside before it is removed";
            ms.push(step(id("stop"), &name, Action::ClearEtcdData { member: name.clone() }, stop));
            ms.remove(id("remove"), &checker, m, why);
            ms.check(id("gate-after"), &checker, ms.gate(GateWhen::After, &change).tolerating(&leaving_down));
        }
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
            let install = |ms: &mut Membership| {
                if let Some((files, why)) = &stale {
                    ms.push(step(id("files"), &m, Action::InstallEtcdFiles { member: m.clone(), files: files.clone() }, why.clone()));
                }
            };
            // Gates and membership changes run on a voting member that is up, other than the one in flux.
            let checker = ms.checker(&m, &m);
            // A lost member was removed above: from here on it is a host to add.
            let member = self.observed.member_of(h).filter(|_| !lost_names.contains(&m));
            let active = ms.runs(&m);
            // The member's one start or restart in this plan swaps in the etcd binary the software phase staged.
            let binary = self.etcd_swaps.get(&m).map(|v| v.to_string());
            let start = |state: EtcdCluster, restart: bool| Action::StartEtcdMember {
                member: m.clone(),
                initial_cluster_state: state,
                restart,
                initial_cluster: None,
                binary: binary.clone(),
            };
            // etcd refuses to join unless its initial cluster lists exactly the current members and itself.
            let join = {
                let mut listed: Vec<String> = ms.voters().iter().filter(|n| **n != m).map(|n| format!("{n}={}", self.peer_of(n))).collect();
                listed.push(format!("{m}={}", h.peer_url()));
                Action::StartEtcdMember {
                    member: m.clone(),
                    initial_cluster_state: EtcdCluster::Existing,
                    restart: false,
                    initial_cluster: Some(listed.join(",")),
                    binary: binary.clone(),
                }
            };
            match member {
                None if ms.voters().is_empty() => {
                    install(&mut ms);
                    // Only a cluster that does not exist yet is bootstrapped (`new`; the executor sets the config
                    // to `existing` once the member serves). Where etcd data exists this member restarts it.
                    let (state, why) = if self.observed.etcd_exists() {
                        (EtcdCluster::Existing, "etcd data exists but no member runs: the first member starts alone on it")
                    } else {
                        (EtcdCluster::New, "no etcd cluster yet: the first member starts alone")
                    };
                    ms.start_alone(&m, start(state, false), why);
                }
                None => {
                    let change = format!("add {m}");
                    ms.check(id("gate-before"), &checker, ms.gate(GateWhen::Before, &change));
                    ms.snapshot(&checker, &change);
                    if active || self.observed.facts(&m).is_some_and(|f| f.etcd_data_dir) {
                        let why = "not a member, but it has etcd data of an earlier cluster (removed member or restore)";
                        ms.push(step(id("clear-data"), &m, Action::ClearEtcdData { member: m.clone() }, why));
                    }
                    install(&mut ms);
                    let why = if lost_names.contains(&m) { "added again: its data directory was lost" } else { "member missing" };
                    ms.add_learner(h, &checker, why);
                    ms.push(step(id("start"), &m, join, why));
                    ms.catch_up(&m, &checker, why);
                    if let Some(old) = replaced.pop_front() {
                        ms.remove_replaced(old, &m, &checker);
                    }
                    ms.promote(&m, &checker, why);
                }
                Some(learner) if learner.is_learner => {
                    // Finishing a killed run's add is a membership change like any other: the voters that stay
                    // must be healthy before it starts, and this learner (the only one allowed) is the one in flux.
                    let change = format!("promote {m}");
                    let mut before = ms.gate(GateWhen::Before, &change);
                    before.max_learners = 1;
                    ms.check(id("gate-before"), &checker, before);
                    ms.snapshot(&checker, &change);
                    install(&mut ms);
                    if !active {
                        ms.push(step(id("start"), &m, join, "learner not running"));
                    } else if let Some(v) = &binary {
                        // A learner does not vote: its restart needs no gate of its own.
                        ms.push(step(id("restart"), &m, start(EtcdCluster::Existing, true), format!("etcd {v} staged")));
                    }
                    let why = "a learner from an unfinished run";
                    ms.catch_up(&m, &checker, why);
                    ms.promote(&m, &checker, why);
                }
                Some(moved) if Self::moved(moved, h) => {
                    // Re-addressed: the cluster still dials the old peer URL, so the member is pointed at
                    // the new one first (a membership change the others carry out, between gates), then
                    // restarts there with its new config and certificates and its data as it was.
                    let url = h.peer_url();
                    let change = format!("move {m} to {url}");
                    let down = moved_down.contains(&m);
                    let before = ms.gate(GateWhen::Before, &change).tolerating(if down { std::slice::from_ref(&m) } else { &[] });
                    ms.check(id("gate-before"), &checker, before);
                    ms.snapshot(&checker, &change);
                    if !down && checker != m {
                        ms.push(step(id("move-leader"), &checker, Action::MoveEtcdLeader { from: m.clone() }, "its peer URL is about to change"));
                    }
                    let why = format!("re-addressed: etcd knows it at {}, the inventory says {url}", moved.peer_urls.join(", "));
                    let update = Action::UpdateEtcdPeerUrl { member: m.clone(), id: format!("{:x}", moved.id), peer_url: url.clone() };
                    ms.push(step(id("update-peer-url"), &checker, update, why));
                    install(&mut ms);
                    // A restart either way: a unit whose config named the old address is failing and restarting.
                    ms.push(step(id("restart"), &m, start(EtcdCluster::Existing, true), "it serves at its new address"));
                    ms.check(id("gate-after"), &checker, ms.gate(GateWhen::After, &change));
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
                        ms.push(step(id("files"), &m, Action::InstallEtcdFiles { member: m.clone(), files: files.clone() }, why));
                    }
                    (_, true) => {
                        let change = format!("restart {m}");
                        let files_changed = stale.is_some() && self.etcd_needs_restart(&m);
                        let why = match &binary {
                            Some(v) if files_changed => format!("its files changed and etcd {v} is staged"),
                            Some(v) => format!("etcd {v} is staged (the running member still runs its old binary)"),
                            None => "its files changed".to_string(),
                        };
                        ms.check(id("gate-before"), &checker, ms.gate(GateWhen::Before, &change));
                        if let Some(v) = &binary {
                            // A new release may rewrite the data (etcd 3.6 migrates 3.5's storage): a way back first.
                            ms.snapshot(&checker, &format!("etcd {v} on {m}"));
                        }
                        if checker != m {
                            ms.push(step(id("move-leader"), &checker, Action::MoveEtcdLeader { from: m.clone() }, "it is about to restart"));
                        }
                        install(&mut ms);
                        ms.push(step(id("restart"), &m, start(EtcdCluster::Existing, true), why));
                        ms.check(id("gate-after"), &checker, ms.gate(GateWhen::After, &change));
                    }
                    (_, false) => {
                        install(&mut ms);
                        ms.push(step(id("start"), &m, start(EtcdCluster::Existing, false), "etcd is not running"));
                        ms.check(id("gate-after"), &checker, ms.gate(GateWhen::After, &format!("start {m}")));
                    }
                },
            }
            ms.started(&m);
        }
        let version_check = self.cluster_version_check(ms.voters());
        ms.steps.extend(version_check);
        self.refuse_changes_without_full_membership(&ms.steps, &tolerated);
        self.push("etcd", "etcd, one member at a time between quorum gates", Execution::Sequential, ms.steps);
    }

    /// After a new minor release went in on members of a running cluster: etcd moves the cluster version
    /// (what the cluster's features follow) only once every member runs the new minor, so waiting for it
    /// proves the rollout complete. Only when the run also leaves no member on the old minor.
    fn cluster_version_check(&self, voters: &[String]) -> Option<Step> {
        let view = self.observed.etcd.as_ref()?;
        let target = self.inv.etcd.version;
        let minor = |v: &str| Version::parse(v).map(|v| (v.major, v.minor));
        let behind = view.statuses.iter().any(|s| view.same_cluster(s) && minor(&s.version).is_some_and(|m| m < (target.major, target.minor)));
        let swapped = self.etcd_swaps.values().any(|v| (v.major, v.minor) == (target.major, target.minor));
        if !behind || !swapped {
            return None;
        }
        let checker = voters.first()?;
        let version = format!("{}.{}", target.major, target.minor);
        let why = format!("every member runs etcd {target}: the cluster version follows to {version}");
        Some(step("etcd/cluster-version".into(), checker, Action::WaitEtcdClusterVersion { version }, why))
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
        let state = self.observed.state(m);
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
                let facts = self.observed.facts(&h.name)?;
                let unit = self.observed.state(&h.name).has(ETCD_UNIT);
                (!m.is_learner && !m.name.is_empty() && unit && !facts.etcd_data_dir && view.healthy(m).is_err()).then(|| m.clone())
            })
            .collect()
    }

    /// The initial-cluster-state `m`'s config says when the desired config says otherwise (`new` left on the
    /// first member of a cluster bootstrapped before kubeha wrote `existing` once the cluster exists).
    fn bootstrap_state_change(&self, m: &str) -> Option<String> {
        let have = self.observed.state(m).etcd_initial_cluster_state.clone()?;
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
}

/// The etcd cluster as the phase plans it: who votes and who runs once the steps planned so far have run,
/// and those steps. Each membership change is planned through a method that also updates the view, so
/// every gate names the voters of its moment.
struct Membership {
    voters: Vec<String>,
    running: BTreeSet<String>,
    /// The run's one snapshot precedes its first membership change.
    snapshot_planned: bool,
    steps: Vec<Step>,
}

impl Membership {
    fn voters(&self) -> &[String] {
        &self.voters
    }

    fn runs(&self, member: &str) -> bool {
        self.running.contains(member)
    }

    /// Where the gates and membership changes around `busy` run: a voter that is up, other than `busy`.
    fn checker(&self, busy: &str, fallback: &str) -> String {
        self.voters.iter().find(|v| *v != busy && self.running.contains(*v)).cloned().unwrap_or_else(|| fallback.to_string())
    }

    fn gate(&self, when: GateWhen, change: &str) -> Gate {
        Gate::new(when, change, &self.voters)
    }

    fn push(&mut self, step: Step) {
        self.steps.push(step);
    }

    fn check(&mut self, id: String, on: &str, gate: Gate) {
        self.push(step(id, on, Action::Gate(gate), "quorum check"));
    }

    /// The snapshot before the first membership change of the run, on the member that checks the gates.
    fn snapshot(&mut self, on: &str, change: &str) {
        if std::mem::replace(&mut self.snapshot_planned, true) {
            return;
        }
        let reason = format!("before-{}", change.replace(' ', "-"));
        self.push(step("etcd/snapshot".into(), on, Action::EtcdSnapshot { reason }, "a way back before the run's first change to etcd's members"));
    }

    /// The first member of a cluster starts alone and votes from its start.
    fn start_alone(&mut self, m: &str, start: Action, why: &str) {
        self.push(step(format!("etcd/{m}/start"), m, start, why));
        self.voters.push(m.to_string());
        self.check(format!("etcd/{m}/gate-after"), m, self.gate(GateWhen::After, &format!("start {m}")));
    }

    fn add_learner(&mut self, h: &Host, on: &str, why: &str) {
        self.push(step(format!("etcd/{}/add-learner", h.name), on, Action::AddEtcdLearner { member: h.name.clone(), peer_url: h.peer_url() }, why));
    }

    fn catch_up(&mut self, learner: &str, on: &str, why: &str) {
        self.push(step(format!("etcd/{learner}/caught-up"), on, Action::WaitLearnerCaughtUp { member: learner.to_string() }, why));
    }

    fn promote(&mut self, learner: &str, on: &str, why: &str) {
        self.push(step(format!("etcd/{learner}/promote"), on, Action::PromoteEtcdLearner { member: learner.to_string() }, why));
        self.voters.push(learner.to_string());
        self.check(format!("etcd/{learner}/gate-after"), on, self.gate(GateWhen::After, &format!("add {learner}")));
    }

    fn remove(&mut self, id: String, on: &str, m: &Member, why: impl Into<String>) {
        let name = m.label();
        self.push(step(id, on, Action::RemoveEtcdMember { member: name.clone(), id: format!("{:x}", m.id) }, why));
        self.voters.retain(|v| *v != name);
    }

    /// Takes out `old`, the member that `learner` (caught up, not yet voting) replaces, between gates that
    /// allow that one learner; leadership is moved off `old` first.
    fn remove_replaced(&mut self, old: &Member, learner: &str, on: &str) {
        let name = old.name.clone();
        let id = |s: &str| format!("etcd/{name}/{s}");
        let change = format!("remove {name}");
        let mut before = self.gate(GateWhen::Before, &change);
        before.max_learners = 1;
        self.check(id("gate-before"), on, before);
        self.push(step(id("move-leader"), on, Action::MoveEtcdLeader { from: name.clone() }, "it is about to be removed"));
        let why = format!("not a control plane of the inventory: replaced by {learner}, which holds a copy of the data");
        self.remove(id("remove"), on, old, why);
        let mut after = self.gate(GateWhen::After, &change);
        after.max_learners = 1;
        self.check(id("gate-after"), on, after);
    }

    fn started(&mut self, member: &str) {
        self.running.insert(member.to_string());
    }
}

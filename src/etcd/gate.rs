//! Quorum gates: the state etcd must be in around one membership change, and the check of a live view
//! against it (pure). The planner puts gates into plans; the executor evaluates them on fresh etcdctl output.
use super::quorum;
use super::status::{EndpointHealth, EndpointStatus, Member, MemberList};
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Gate {
    pub when: GateWhen,
    /// The membership change this gate guards, e.g. "add cp-2".
    pub change: String,
    /// Exactly these voting members must exist, and every one must be healthy.
    pub voters: Vec<String>,
    /// Votes needed among `voters` (floor(n/2)+1).
    pub quorum: usize,
    pub require_one_leader: bool,
    /// Learners allowed at this point: 0, since kubeha never has two members in flux.
    pub max_learners: usize,
    /// Voters that may be down: members on their way out (a dead control plane being replaced, or a member
    /// whose data directory was lost, removed to be added again). Every other
    /// voter must be healthy: kubeha changes membership only on full membership.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub may_be_down: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GateWhen {
    Before,
    After,
}

impl Gate {
    pub fn new(when: GateWhen, change: impl Into<String>, voters: &[String]) -> Self {
        Self {
            when,
            change: change.into(),
            voters: voters.to_vec(),
            quorum: quorum::quorum(voters.len()),
            require_one_leader: true,
            max_learners: 0,
            may_be_down: Vec::new(),
        }
    }

    /// The same gate, tolerating `members` being down (they are leaving the cluster).
    pub fn tolerating(mut self, members: &[String]) -> Self {
        self.may_be_down = members.iter().filter(|m| self.voters.contains(m)).cloned().collect();
        self
    }
}

/// What etcd said about itself, from one member list plus endpoint status and health of every member.
#[derive(Clone, Debug, Default)]
pub struct View {
    /// The cluster of the member that gave the member list (its response header; 0 when not reported).
    pub cluster_id: u64,
    pub members: Vec<Member>,
    pub statuses: Vec<EndpointStatus>,
    pub health: Vec<EndpointHealth>,
}

/// Every reason a gate is not met, each naming the member and what to do.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("quorum gate {when} {change} not met: {}", reasons.join("; "))]
pub struct GateFailure {
    pub when: &'static str,
    pub change: String,
    pub reasons: Vec<String>,
}

impl View {
    /// The view from the three etcdctl answers kubeha asks for: `member list`, and `endpoint status` and
    /// `endpoint health` with `--cluster`, each with `-w json`.
    pub fn from_etcdctl(member_list: &str, endpoint_status: &str, endpoint_health: &str) -> Result<Self, super::status::ParseError> {
        let list = super::status::parse_member_list_answer(member_list)?;
        Ok(Self {
            cluster_id: list.cluster_id,
            members: list.members,
            statuses: super::status::parse_endpoint_status(endpoint_status)?,
            health: super::status::parse_endpoint_health(endpoint_health)?,
        })
    }

    /// Whether `s` came from a member of this view's cluster (unknown IDs count as the same).
    pub fn same_cluster(&self, s: &EndpointStatus) -> bool {
        s.cluster_id == 0 || self.cluster_id == 0 || s.cluster_id == self.cluster_id
    }

    /// Voting members that answer and report no errors.
    pub fn healthy_voters(&self) -> Vec<&Member> {
        self.members.iter().filter(|m| !m.is_learner && self.healthy(m).is_ok()).collect()
    }

    /// Voting members that do not answer or report errors, by label.
    pub fn unhealthy_voters(&self) -> Vec<String> {
        self.members.iter().filter(|m| !m.is_learner && self.healthy(m).is_err()).map(Member::label).collect()
    }

    /// Whether the voters that answer still form a majority of all voters.
    pub fn has_quorum(&self) -> bool {
        let voters = self.members.iter().filter(|m| !m.is_learner).count();
        voters > 0 && self.healthy_voters().len() >= quorum::quorum(voters)
    }

    /// Whether `m` answered both status and health without errors; Err says how it failed.
    pub fn healthy(&self, m: &Member) -> Result<(), Unhealthy> {
        // A member whose endpoint answers for another cluster lost its data and bootstrapped a cluster of
        // its own: it is not a working member of this one, whatever its health says.
        let foreign = self.statuses.iter().find(|s| m.client_urls.contains(&s.endpoint) && !self.same_cluster(s));
        if let Some(s) = foreign {
            return Err(Unhealthy::OtherCluster { theirs: s.cluster_id, ours: self.cluster_id });
        }
        let health = self.health.iter().find(|h| m.client_urls.contains(&h.endpoint));
        let status = self.statuses.iter().find(|s| s.member_id == m.id);
        match (health, status) {
            (Some(h), _) if !h.healthy => Err(Unhealthy::Reports(h.error.clone())),
            (_, Some(s)) if !s.errors.is_empty() => Err(Unhealthy::StatusErrors(s.errors.clone())),
            (Some(_), Some(_)) => Ok(()),
            _ => Err(Unhealthy::NoAnswer),
        }
    }
}

/// Why a member does not count as healthy.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unhealthy {
    #[error("its endpoint answers for another etcd cluster (cluster ID {theirs:x}, this one is {ours:x})")]
    OtherCluster { theirs: u64, ours: u64 },
    /// etcd's health check said so, with its reason when it gave one.
    #[error("{}", .0.as_deref().unwrap_or("reports unhealthy"))]
    Reports(Option<String>),
    #[error("{}", .0.join(", "))]
    StatusErrors(Vec<String>),
    #[error("does not answer")]
    NoAnswer,
}

/// Why etcd, as seen, cannot commit writes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NoWorkingQuorum {
    #[error("etcd lists no voting member")]
    NoVoters,
    #[error("only {healthy} of {voting} voting members are healthy, {needed} are needed (not healthy: {})", down.join(", "))]
    TooFewHealthy { healthy: usize, voting: usize, needed: usize, down: Vec<String> },
    #[error("the healthy members do not agree on a leader")]
    NoLeader,
}

/// Whether etcd, as seen in `view`, still works: a majority of its voting members healthy, and one leader
/// that is a voting member. Ok describes it; Err says what is missing. (A gate asks more: the exact voters of
/// the inventory and no learner; a restore only needs to know whether the cluster can still commit writes.)
pub fn working_quorum(view: &View) -> Result<String, NoWorkingQuorum> {
    let voting: Vec<&Member> = view.members.iter().filter(|m| !m.is_learner).collect();
    if voting.is_empty() {
        return Err(NoWorkingQuorum::NoVoters);
    }
    let healthy: Vec<&&Member> = voting.iter().filter(|m| view.healthy(m).is_ok()).collect();
    let needed = quorum::quorum(voting.len());
    if healthy.len() < needed {
        let down: Vec<String> = voting.iter().filter(|m| view.healthy(m).is_err()).map(|m| m.label()).collect();
        return Err(NoWorkingQuorum::TooFewHealthy { healthy: healthy.len(), voting: voting.len(), needed, down });
    }
    let leaders: std::collections::BTreeSet<u64> = view.statuses.iter().filter(|s| healthy.iter().any(|m| m.id == s.member_id)).map(|s| s.leader).collect();
    let leader = match (leaders.len(), leaders.iter().next()) {
        (1, Some(id)) => voting.iter().find(|m| m.id == *id).map(|m| m.label()),
        _ => None,
    };
    let Some(leader) = leader else { return Err(NoWorkingQuorum::NoLeader) };
    Ok(format!("{} of {} voting members are healthy and {leader} leads", healthy.len(), voting.len()))
}

/// Whether two members' lists are the same membership: the same member IDs, each with the same peer URLs
/// and name. Learner flags are left out (a learner promoted between two answers is the same membership), and
/// so are client URLs and an empty name (a member that has not started yet has neither, and one member may
/// learn them a moment before another).
fn same_membership(a: &[Member], b: &[Member]) -> bool {
    let sorted = |m: &Member| {
        let mut p = m.peer_urls.clone();
        p.sort();
        p
    };
    a.len() == b.len()
        && a.iter().all(|x| b.iter().any(|y| x.id == y.id && sorted(x) == sorted(y) && (x.name == y.name || x.name.is_empty() || y.name.is_empty())))
}

fn describe_list(list: &MemberList) -> String {
    let members: Vec<String> = list.members.iter().map(|m| format!("{} {:x} {}", m.label(), m.id, m.peer_urls.join(","))).collect();
    format!("cluster ID {:x}, members [{}]", list.cluster_id, members.join("; "))
}

/// Every reachable member's own answer compared (host -> its `member list`): None when they all report the
/// same cluster ID and the same members, else the disagreement naming each host and what it reported. A
/// planner that trusted one member could, when that member bootstrapped a cluster of its own after losing
/// its data, take the real members for strangers and wipe them.
pub fn disagreement<'a>(answers: impl IntoIterator<Item = (&'a str, &'a MemberList)>) -> Option<String> {
    let mut groups: Vec<(&MemberList, Vec<&str>)> = Vec::new();
    for (host, list) in answers {
        match groups.iter_mut().find(|(l, _)| l.cluster_id == list.cluster_id && same_membership(&l.members, &list.members)) {
            Some((_, hosts)) => hosts.push(host),
            None => groups.push((list, vec![host])),
        }
    }
    if groups.len() < 2 {
        return None;
    }
    let ids: std::collections::BTreeSet<u64> = groups.iter().map(|(l, _)| l.cluster_id).collect();
    let what = if ids.len() > 1 { "different etcd clusters" } else { "different member lists" };
    let parts: Vec<String> = groups.iter().map(|(l, hosts)| format!("{} report {}", hosts.join(", "), describe_list(l))).collect();
    Some(format!("the etcd members answer for {what}: {}", parts.join("; ")))
}

pub fn evaluate(gate: &Gate, view: &View) -> Result<(), GateFailure> {
    let mut reasons = Vec::new();
    let voting: Vec<&Member> = view.members.iter().filter(|m| !m.is_learner).collect();
    let learners: Vec<&Member> = view.members.iter().filter(|m| m.is_learner).collect();
    let mut healthy_voters = 0;
    for name in &gate.voters {
        match view.members.iter().find(|m| &m.name == name) {
            None => reasons.push(format!("member {name} is missing from the cluster")),
            Some(m) if m.is_learner => reasons.push(format!("member {name} is still a learner")),
            Some(m) => match view.healthy(m) {
                Ok(()) => healthy_voters += 1,
                Err(_) if gate.may_be_down.contains(name) => {}
                Err(why) => reasons.push(format!("member {name} is unhealthy ({why})")),
            },
        }
    }
    for m in voting.iter().filter(|m| !gate.voters.contains(&m.name)) {
        reasons.push(format!("voting member {} is not expected here (not in the inventory, or left by an unfinished change)", m.label()));
    }
    if learners.len() > gate.max_learners {
        let names: Vec<String> = learners.iter().map(|m| m.label()).collect();
        reasons.push(format!("learner {} present: another membership change is unfinished", names.join(", ")));
    }
    if healthy_voters < quorum::quorum(voting.len().max(gate.voters.len())) {
        reasons.push(format!("only {healthy_voters} of {} voting members are healthy: quorum is lost", voting.len().max(gate.voters.len())));
    }
    if gate.require_one_leader {
        let leaders: std::collections::BTreeSet<u64> = view.statuses.iter().filter(|s| view.same_cluster(s)).map(|s| s.leader).collect();
        let known = |id: &u64| voting.iter().any(|m| m.id == *id);
        match leaders.len() {
            0 => reasons.push("no member reports a leader".into()),
            1 if leaders.iter().all(|l| *l != 0 && known(l)) => {}
            1 => reasons.push("the reported leader is not a voting member".into()),
            _ => reasons.push("members disagree about the leader (an election is under way)".into()),
        }
    }
    if reasons.is_empty() {
        Ok(())
    } else {
        let when = match gate.when {
            GateWhen::Before => "before",
            GateWhen::After => "after",
        };
        Err(GateFailure { when, change: gate.change.clone(), reasons })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{member, view};

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_healthy_cluster_passes() {
        let ms = [member(1, "a", false), member(2, "b", false), member(3, "c", false)];
        assert_eq!(evaluate(&Gate::new(GateWhen::Before, "add d", &names(&["a", "b", "c"])), &view(ms.to_vec(), 2, &[])), Ok(()));
    }

    #[test]
    fn every_problem_is_named() {
        let ms = [member(1, "a", false), member(2, "b", false), member(4, "x", false), member(5, "", true)];
        let err = evaluate(&Gate::new(GateWhen::Before, "add d", &names(&["a", "b", "c"])), &view(ms.to_vec(), 1, &["b"])).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("quorum gate before add d not met"), "{text}");
        assert!(text.contains("member b is unhealthy"), "{text}");
        assert!(text.contains("member c is missing"), "{text}");
        assert!(text.contains("voting member x is not expected"), "{text}");
        assert!(text.contains("learner unstarted member https://:2380 present"), "{text}");
    }

    #[test]
    fn a_leaving_member_may_be_down_but_no_other() {
        let ms = [member(1, "a", false), member(2, "b", false), member(3, "c", false)];
        let voters = names(&["a", "b", "c"]);
        let gate = Gate::new(GateWhen::Before, "remove b", &voters).tolerating(&names(&["b", "z"]));
        assert_eq!(gate.may_be_down, names(&["b"]));
        assert_eq!(evaluate(&gate, &view(ms.to_vec(), 1, &["b"])), Ok(()));
        let err = evaluate(&gate, &view(ms.to_vec(), 1, &["c"])).unwrap_err();
        assert_eq!(err.reasons, vec!["member c is unhealthy (context deadline exceeded)".to_string()]);
        let down_two = view(ms.to_vec(), 1, &["b", "c"]);
        assert!(!down_two.has_quorum());
        assert_eq!(down_two.unhealthy_voters(), names(&["b", "c"]));
        assert!(evaluate(&gate, &down_two).is_err());
    }

    #[test]
    fn working_quorum_needs_a_healthy_majority_and_a_leader() {
        let ms = [member(1, "a", false), member(2, "b", false), member(3, "c", false), member(4, "d", true)];
        assert_eq!(working_quorum(&view(ms.to_vec(), 2, &["c"])), Ok("2 of 3 voting members are healthy and b leads".into()));
        let lost = working_quorum(&view(ms.to_vec(), 0, &["b", "c"])).unwrap_err();
        assert!(lost.to_string().starts_with("only 1 of 3 voting members are healthy, 2 are needed (not healthy: b, c)"), "{lost}");
        assert_eq!(working_quorum(&view(ms.to_vec(), 0, &[])), Err(NoWorkingQuorum::NoLeader));
        assert!(working_quorum(&View::default()).is_err());
    }

    #[test]
    fn lost_quorum_and_leaderless_are_reported() {
        let ms = [member(1, "a", false), member(2, "b", false), member(3, "c", false)];
        let err = evaluate(&Gate::new(GateWhen::After, "add c", &names(&["a", "b", "c"])), &view(ms.to_vec(), 0, &["b", "c"])).unwrap_err();
        assert!(err.reasons.iter().any(|r| r == "only 1 of 3 voting members are healthy: quorum is lost"), "{err}");
        assert!(err.reasons.iter().any(|r| r == "the reported leader is not a voting member"), "{err}");
    }

    /// Host -> its member's answer.
    fn answers_of<const N: usize>(answers: [(&'static str, MemberList); N]) -> std::collections::BTreeMap<&'static str, MemberList> {
        std::collections::BTreeMap::from(answers)
    }

    fn list(cluster_id: u64, members: &[Member]) -> MemberList {
        MemberList { cluster_id, member_id: members.first().map_or(0, |m| m.id), members: members.to_vec() }
    }

    #[test]
    fn members_agreeing_or_differing_only_in_a_promotion_are_one_view() {
        let ms = [member(1, "a", false), member(2, "b", false), member(3, "c", false)];
        let mut unstarted = member(3, "", true);
        unstarted.client_urls.clear();
        unstarted.peer_urls = ms[2].peer_urls.clone();
        let answers = answers_of([
            ("a", list(7, &ms)),
            ("b", list(7, &[ms[0].clone(), ms[1].clone(), member(3, "c", true)])),
            ("c", list(7, &[ms[0].clone(), ms[1].clone(), unstarted])),
        ]);
        assert_eq!(disagreement(answers.iter().map(|(h, l)| (*h, l))), None);
        assert_eq!(disagreement([]), None);
    }

    #[test]
    fn differing_cluster_ids_or_members_are_named_with_their_hosts() {
        let ms = [member(1, "a", false), member(2, "b", false), member(3, "c", false)];
        let split = answers_of([("a", list(0xab, &[member(9, "a", false)])), ("b", list(0xcd, &ms)), ("c", list(0xcd, &ms))]);
        let text = disagreement(split.iter().map(|(h, l)| (*h, l))).unwrap();
        assert!(text.starts_with("the etcd members answer for different etcd clusters: a report cluster ID ab, members [a 9 https://a:2380]"), "{text}");
        assert!(text.contains("; b, c report cluster ID cd, members [a 1 https://a:2380; b 2 https://b:2380; c 3 https://c:2380]"), "{text}");
        let mut moved = ms.clone();
        moved[2].peer_urls = vec!["https://elsewhere:2380".into()];
        let lists = answers_of([("a", list(0xcd, &ms)), ("c", list(0xcd, &moved))]);
        assert!(disagreement(lists.iter().map(|(h, l)| (*h, l))).unwrap().contains("different member lists"));
        let fewer = answers_of([("a", list(0xcd, &ms)), ("c", list(0xcd, &ms[..2]))]);
        assert!(disagreement(fewer.iter().map(|(h, l)| (*h, l))).is_some());
    }

    /// The gate's own view sees the split too: endpoint status --cluster reaches every listed member's
    /// client URL, and one answering for another cluster is not a healthy member of this one.
    #[test]
    fn a_member_answering_for_another_cluster_fails_the_gate() {
        let ms = [member(1, "a", false), member(2, "b", false), member(3, "c", false)];
        let mut v = view(ms.to_vec(), 2, &[]);
        v.cluster_id = 0xcd;
        for s in &mut v.statuses {
            s.cluster_id = 0xcd;
        }
        let gate = Gate::new(GateWhen::Before, "add d", &names(&["a", "b", "c"]));
        assert_eq!(evaluate(&gate, &v), Ok(()));
        // a lost its data and bootstrapped alone: same URLs, a new member ID, another cluster, its own leader.
        let a = v.statuses.iter_mut().find(|s| s.member_id == 1).unwrap();
        (a.cluster_id, a.member_id, a.leader) = (0xab, 9, 9);
        let err = evaluate(&gate, &v).unwrap_err();
        assert!(
            err.reasons.iter().any(|r| r.starts_with("member a is unhealthy (its endpoint answers for another etcd cluster (cluster ID ab, this one is cd))")),
            "{err}"
        );
        assert!(!err.reasons.iter().any(|r| r.contains("disagree about the leader")), "the other cluster's leader is not counted: {err}");
        assert!(v.has_quorum(), "b and c still form the quorum");
    }
}

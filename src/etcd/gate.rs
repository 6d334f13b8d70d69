//! Quorum gates: the state etcd must be in around one membership change, and the check of a live view
//! against it (pure). The planner puts gates into plans; the executor evaluates them on fresh etcdctl output.
use super::quorum;
use super::status::{EndpointHealth, EndpointStatus, Member};
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
    /// Voters that may be down: members on their way out (a dead control plane being replaced). Every other
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
    pub members: Vec<Member>,
    pub statuses: Vec<EndpointStatus>,
    pub health: Vec<EndpointHealth>,
}

/// Every reason a gate is not met, each naming the member and what to do.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
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
        Ok(Self {
            members: super::status::parse_member_list(member_list)?,
            statuses: super::status::parse_endpoint_status(endpoint_status)?,
            health: super::status::parse_endpoint_health(endpoint_health)?,
        })
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
    pub fn healthy(&self, m: &Member) -> Result<(), String> {
        let health = self.health.iter().find(|h| m.client_urls.contains(&h.endpoint));
        let status = self.statuses.iter().find(|s| s.member_id == m.id);
        match (health, status) {
            (Some(h), _) if !h.healthy => Err(h.error.clone().unwrap_or_else(|| "reports unhealthy".into())),
            (_, Some(s)) if !s.errors.is_empty() => Err(s.errors.join(", ")),
            (Some(_), Some(_)) => Ok(()),
            _ => Err("does not answer".into()),
        }
    }
}

/// Whether etcd, as seen in `view`, still works: a majority of its voting members healthy, and one leader
/// that is a voting member. Ok describes it; Err says what is missing. (A gate asks more: the exact voters of
/// the inventory and no learner; a restore only needs to know whether the cluster can still commit writes.)
pub fn working_quorum(view: &View) -> Result<String, String> {
    let voting: Vec<&Member> = view.members.iter().filter(|m| !m.is_learner).collect();
    if voting.is_empty() {
        return Err("etcd lists no voting member".into());
    }
    let healthy: Vec<&&Member> = voting.iter().filter(|m| view.healthy(m).is_ok()).collect();
    let needed = quorum::quorum(voting.len());
    if healthy.len() < needed {
        let down: Vec<String> = voting.iter().filter(|m| view.healthy(m).is_err()).map(|m| m.label()).collect();
        return Err(format!("only {} of {} voting members are healthy, {needed} are needed (not healthy: {})", healthy.len(), voting.len(), down.join(", ")));
    }
    let leaders: std::collections::BTreeSet<u64> = view.statuses.iter().filter(|s| healthy.iter().any(|m| m.id == s.member_id)).map(|s| s.leader).collect();
    let leader = match (leaders.len(), leaders.iter().next()) {
        (1, Some(id)) => voting.iter().find(|m| m.id == *id).map(|m| m.label()),
        _ => None,
    };
    let Some(leader) = leader else { return Err("the healthy members do not agree on a leader".into()) };
    Ok(format!("{} of {} voting members are healthy and {leader} leads", healthy.len(), voting.len()))
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
        let leaders: std::collections::BTreeSet<u64> = view.statuses.iter().map(|s| s.leader).collect();
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

    fn member(id: u64, name: &str, learner: bool) -> Member {
        Member {
            id,
            name: name.into(),
            peer_urls: vec![format!("https://{name}:2380")],
            client_urls: vec![format!("https://{name}:2379")],
            is_learner: learner,
        }
    }

    fn view(members: &[Member], leader: u64, unhealthy: &[&str]) -> View {
        View {
            statuses: members
                .iter()
                .filter(|m| !unhealthy.contains(&m.name.as_str()))
                .map(|m| EndpointStatus {
                    endpoint: m.client_urls[0].clone(),
                    member_id: m.id,
                    leader,
                    raft_index: 9,
                    raft_applied_index: 9,
                    is_learner: m.is_learner,
                    version: "3.4.23".into(),
                    errors: vec![],
                })
                .collect(),
            health: members
                .iter()
                .map(|m| EndpointHealth { endpoint: m.client_urls[0].clone(), healthy: !unhealthy.contains(&m.name.as_str()), error: None })
                .collect(),
            members: members.to_vec(),
        }
    }

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_healthy_cluster_passes() {
        let ms = [member(1, "a", false), member(2, "b", false), member(3, "c", false)];
        assert_eq!(evaluate(&Gate::new(GateWhen::Before, "add d", &names(&["a", "b", "c"])), &view(&ms, 2, &[])), Ok(()));
    }

    #[test]
    fn every_problem_is_named() {
        let ms = [member(1, "a", false), member(2, "b", false), member(4, "x", false), member(5, "", true)];
        let err = evaluate(&Gate::new(GateWhen::Before, "add d", &names(&["a", "b", "c"])), &view(&ms, 1, &["b"])).unwrap_err();
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
        assert_eq!(evaluate(&gate, &view(&ms, 1, &["b"])), Ok(()));
        let err = evaluate(&gate, &view(&ms, 1, &["c"])).unwrap_err();
        assert_eq!(err.reasons, vec!["member c is unhealthy (reports unhealthy)".to_string()]);
        let down_two = view(&ms, 1, &["b", "c"]);
        assert!(!down_two.has_quorum());
        assert_eq!(down_two.unhealthy_voters(), names(&["b", "c"]));
        assert!(evaluate(&gate, &down_two).is_err());
    }

    #[test]
    fn working_quorum_needs_a_healthy_majority_and_a_leader() {
        let ms = [member(1, "a", false), member(2, "b", false), member(3, "c", false), member(4, "d", true)];
        assert_eq!(working_quorum(&view(&ms, 2, &["c"])), Ok("2 of 3 voting members are healthy and b leads".into()));
        let lost = working_quorum(&view(&ms, 0, &["b", "c"])).unwrap_err();
        assert!(lost.starts_with("only 1 of 3 voting members are healthy, 2 are needed (not healthy: b, c)"), "{lost}");
        assert_eq!(working_quorum(&view(&ms, 0, &[])), Err("the healthy members do not agree on a leader".into()));
        assert!(working_quorum(&View::default()).is_err());
    }

    #[test]
    fn lost_quorum_and_leaderless_are_reported() {
        let ms = [member(1, "a", false), member(2, "b", false), member(3, "c", false)];
        let err = evaluate(&Gate::new(GateWhen::After, "add c", &names(&["a", "b", "c"])), &view(&ms, 0, &["b", "c"])).unwrap_err();
        assert!(err.reasons.iter().any(|r| r == "only 1 of 3 voting members are healthy: quorum is lost"), "{err}");
        assert!(err.reasons.iter().any(|r| r == "the reported leader is not a voting member"), "{err}");
    }
}

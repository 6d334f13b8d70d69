//! Moving etcd's leadership off a member before it is removed or restarted (pure decision). Taking the
//! leader away costs an election: writes stall until the others notice (one election timeout, 1 s by
//! default, plus the vote) and in-flight proposals may fail. A transfer is a handover of a few
//! heartbeats instead. Cluster API's etcd handling moves the leader the same way before it removes a member.
use super::gate::View;

/// What `etcdctl move-leader` needs: the current leader's client URL (etcdctl must talk to the leader) and
/// the new leader's ID in hex.
#[derive(Debug, PartialEq, Eq)]
pub struct Transfer {
    pub leader_endpoint: String,
    pub to: String,
    pub to_id: String,
}

/// Why no transfer is needed or possible.
#[derive(Debug, PartialEq, Eq)]
pub enum NoTransfer {
    /// `from` does not lead (or is not a member): nothing to do.
    NotLeader,
    /// `from` leads but no other voter is healthy to take over; the step fails rather than remove or
    /// restart the leader of a cluster that cannot elect another.
    NoCandidate(String),
}

/// The transfer away from member `from`, if it leads: to the first healthy voting member other than it, in
/// member-list order (stable, so a rerun picks the same one).
pub fn away_from(view: &View, from: &str) -> Result<Transfer, NoTransfer> {
    let Some(member) = view.members.iter().find(|m| m.name == from) else { return Err(NoTransfer::NotLeader) };
    let leads = view.statuses.iter().any(|s| view.same_cluster(s) && s.member_id == member.id && s.leader == member.id);
    if !leads {
        return Err(NoTransfer::NotLeader);
    }
    let Some(endpoint) = member.client_urls.first() else { return Err(NoTransfer::NoCandidate(format!("{from} lists no client URL"))) };
    let candidate = view.members.iter().find(|m| m.id != member.id && !m.is_learner && !m.name.is_empty() && view.healthy(m).is_ok());
    match candidate {
        Some(to) => Ok(Transfer { leader_endpoint: endpoint.clone(), to: to.name.clone(), to_id: format!("{:x}", to.id) }),
        None => Err(NoTransfer::NoCandidate(format!("{from} leads and no other voting member is healthy to take over"))),
    }
}

/// The member leading in `view`, by name, if the members that answer agree on one.
pub fn leader(view: &View) -> Option<String> {
    let leaders: std::collections::BTreeSet<u64> = view.statuses.iter().filter(|s| view.same_cluster(s)).map(|s| s.leader).collect();
    match leaders.into_iter().collect::<Vec<_>>()[..] {
        [id] => view.members.iter().find(|m| m.id == id).map(|m| m.name.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{member, view as gate_view};

    /// cp-1..cp-3 with `leader` leading, `learner` a learner and `down` not answering.
    fn view(leader: u64, learner: Option<u64>, down: &[&str]) -> View {
        let members: Vec<_> = (1..=3).map(|i| member(i, &format!("cp-{i}"), Some(i) == learner)).collect();
        gate_view(members, leader, down)
    }

    #[test]
    fn the_leader_hands_over_to_the_first_healthy_voter_other_than_itself() {
        let t = away_from(&view(1, None, &[]), "cp-1").unwrap();
        assert_eq!(t, Transfer { leader_endpoint: "https://cp-1:2379".into(), to: "cp-2".into(), to_id: "2".into() });
        // Not a learner, not a member that is down.
        let t = away_from(&view(1, Some(2), &[]), "cp-1").unwrap();
        assert_eq!(t.to, "cp-3");
        let t = away_from(&view(1, None, &["cp-2"]), "cp-1").unwrap();
        assert_eq!(t.to, "cp-3");
    }

    #[test]
    fn a_follower_or_a_stranger_needs_no_transfer() {
        assert_eq!(away_from(&view(1, None, &[]), "cp-2"), Err(NoTransfer::NotLeader));
        assert_eq!(away_from(&view(1, None, &[]), "cp-9"), Err(NoTransfer::NotLeader));
        assert_eq!(leader(&view(2, None, &[])).as_deref(), Some("cp-2"));
    }

    #[test]
    fn a_leader_without_a_healthy_successor_is_reported() {
        assert!(matches!(away_from(&view(1, Some(3), &["cp-2"]), "cp-1"), Err(NoTransfer::NoCandidate(_))));
    }
}

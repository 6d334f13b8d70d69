//! What etcd membership still has to change to match the inventory (pure). This is how a run that was
//! stopped at any point (even between `member add` and the start of the new member) is resumed: the next
//! run reads the membership and continues from there instead of starting over.
use super::gate::View;
use super::status::Member;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// The member is in the cluster as a learner that has not started yet: start it, then promote.
    StartLearner { name: String },
    /// The learner runs but is not promoted yet: wait until it has caught up, then promote.
    PromoteLearner { name: String },
    /// Not in the cluster: add as a learner, start, wait, promote.
    Add { name: String },
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("etcd has members the inventory does not list: {}; remove them with `kubeha node remove` or add them to the inventory", .0.join(", "))]
    UnknownMembers(Vec<String>),
    #[error(
        "etcd has {0} learners ({1}); kubeha never adds more than one member at a time, so this cluster was changed by hand: resolve it with etcdctl first"
    )]
    SeveralLearners(usize, String),
}

/// `control_planes` in inventory order with their peer URLs; the result is in the order to apply.
pub fn changes(control_planes: &[(String, String)], view: &View) -> Result<Vec<Change>, Refusal> {
    let known = |m: &Member| control_planes.iter().any(|(name, peer)| m.is_of(name, peer));
    let unknown: Vec<String> = view.members.iter().filter(|m| !known(m)).map(Member::label).collect();
    if !unknown.is_empty() {
        return Err(Refusal::UnknownMembers(unknown));
    }
    let learners: Vec<&Member> = view.members.iter().filter(|m| m.is_learner).collect();
    if learners.len() > 1 {
        let names: Vec<String> = learners.iter().map(|m| m.label()).collect();
        return Err(Refusal::SeveralLearners(learners.len(), names.join(", ")));
    }
    let mut out = Vec::new();
    // An unfinished add comes first: nothing else may change while a member is in flux.
    if let Some(learner) = learners.first() {
        let name = control_planes.iter().find(|(name, peer)| learner.is_of(name, peer)).map(|(n, _)| n.clone()).unwrap_or_default();
        out.push(if learner.name.is_empty() { Change::StartLearner { name } } else { Change::PromoteLearner { name } });
    }
    for (name, peer) in control_planes {
        let present = view.members.iter().any(|m| m.is_of(name, peer));
        if !present {
            out.push(Change::Add { name: name.clone() });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cps(n: usize) -> Vec<(String, String)> {
        (1..=n).map(|i| (format!("cp-{i}"), format!("https://198.18.0.1{i}:2380"))).collect()
    }

    use crate::test_support::lab_member as member;

    /// Membership rules read the member list only.
    fn view(members: Vec<Member>) -> View {
        View { members, ..View::default() }
    }

    #[test]
    fn converged_needs_nothing() {
        let v = view(vec![member(1, "cp-1", false), member(2, "cp-2", false), member(3, "cp-3", false)]);
        assert_eq!(changes(&cps(3), &v), Ok(vec![]));
    }

    #[test]
    fn missing_members_are_added_in_inventory_order() {
        let v = view(vec![member(1, "cp-1", false)]);
        assert_eq!(changes(&cps(3), &v), Ok(vec![Change::Add { name: "cp-2".into() }, Change::Add { name: "cp-3".into() }]));
    }

    /// Killed right after `member add`: the learner exists but never started (etcd shows no name yet).
    #[test]
    fn an_add_interrupted_before_start_is_resumed_first() {
        let v = view(vec![member(1, "cp-1", false), member(2, "", true)]);
        assert_eq!(changes(&cps(3), &v), Ok(vec![Change::StartLearner { name: "cp-2".into() }, Change::Add { name: "cp-3".into() }]));
    }

    #[test]
    fn an_add_interrupted_before_promotion_is_resumed() {
        let v = view(vec![member(1, "cp-1", false), member(2, "cp-2", false), member(3, "cp-3", true)]);
        assert_eq!(changes(&cps(3), &v), Ok(vec![Change::PromoteLearner { name: "cp-3".into() }]));
    }

    #[test]
    fn unknown_members_and_several_learners_are_refused() {
        let v = view(vec![member(1, "cp-1", false), member(9, "old-cp", false)]);
        assert!(matches!(changes(&cps(3), &v), Err(Refusal::UnknownMembers(m)) if m == ["old-cp"]));
        let v = view(vec![member(1, "cp-1", false), member(2, "cp-2", true), member(3, "cp-3", true)]);
        assert!(changes(&cps(3), &v).unwrap_err().to_string().contains("2 learners"));
    }
}

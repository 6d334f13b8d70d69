//! The intents of the `node` commands: a node command never makes a membership change it was not asked for,
//! so each checks the plan (and what was found) before anything changes.
use super::apply::Intent;
use super::planned::Planned;
use crate::plan::{Action, Plan};

/// `node add HOST`: HOST joins, nothing leaves.
pub fn add(host: String) -> Box<Intent> {
    Box::new(move |p: &Planned| only_changes(&p.plan, &[], &[host.as_str()], "node add"))
}

/// `node replace OLD --with NEW`: OLD leaves (if still there) and NEW, a control plane if OLD was one, joins.
pub fn replace(old: String, new: String, new_is_control_plane: bool) -> Box<Intent> {
    Box::new(move |p: &Planned| {
        if p.observed.etcd.as_ref().is_some_and(|v| v.members.iter().any(|m| m.name == old)) && !new_is_control_plane {
            anyhow::bail!("{old} is an etcd member (a control plane), but {new} is not a control plane in the inventory: give {new} the control-plane role");
        }
        if !known_to_cluster(p, &old) {
            eprintln!("note: {old} is no longer in the cluster (an earlier run removed it); continuing with {new}");
        }
        only_changes(&p.plan, &[old.as_str()], &[new.as_str()], "node replace")
    })
}

/// `node remove HOST`: HOST leaves, and must be in the cluster or answer.
pub fn remove(host: String) -> Box<Intent> {
    Box::new(move |p: &Planned| {
        if !known_to_cluster(p, &host) && !p.leaving.contains_key(&host) {
            anyhow::bail!("{host} is neither an etcd member nor a node of cluster {}, and does not answer: nothing to remove", p.plan.cluster);
        }
        only_changes(&p.plan, &[host.as_str()], &[], "node remove")
    })
}

fn known_to_cluster(p: &Planned, host: &str) -> bool {
    p.observed.etcd.as_ref().is_some_and(|v| v.members.iter().any(|m| m.name == host)) || p.observed.registered(host)
}

/// The hosts whose membership (etcd or Kubernetes) the plan changes: (leaving, joining).
fn membership_changes(plan: &Plan) -> (Vec<String>, Vec<String>) {
    let (mut leaving, mut joining) = (Vec::new(), Vec::new());
    for s in plan.steps() {
        match &s.action {
            Action::RemoveEtcdMember { member, .. } => leaving.push(member.clone()),
            Action::RemoveNode { node } => leaving.push(node.clone()),
            Action::ResetHost { host, .. } => leaving.push(host.clone()),
            Action::AddEtcdLearner { member, .. } | Action::PromoteEtcdLearner { member } => joining.push(member.clone()),
            Action::KubeadmJoinControlPlane { .. } | Action::KubeadmJoinWorker { .. } | Action::KubeadmInit { .. } => joining.push(s.host.clone()),
            _ => {}
        }
    }
    for list in [&mut leaving, &mut joining] {
        list.sort();
        list.dedup();
    }
    (leaving, joining)
}

/// A node command changes the membership of the hosts it names and of no other; everything else the plan
/// does (load balancer configuration, labels) follows from those.
fn only_changes(plan: &Plan, leaving: &[&str], joining: &[&str], command: &str) -> anyhow::Result<()> {
    let (planned_leaving, planned_joining) = membership_changes(plan);
    let mut others: Vec<String> = planned_leaving.iter().filter(|h| !leaving.contains(&h.as_str())).map(|h| format!("remove {h}")).collect();
    others.extend(planned_joining.iter().filter(|h| !joining.contains(&h.as_str())).map(|h| format!("add {h}")));
    if others.is_empty() {
        return Ok(());
    }
    anyhow::bail!(
        "the inventory asks for more than this `{command}`: it would also {}. A node command changes one host; \
         run `kubeha apply` to converge everything, or fix the inventory",
        others.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Execution, Phase, Step};

    fn plan(actions: Vec<(&str, Action)>) -> Plan {
        let steps = actions.into_iter().map(|(host, action)| Step { id: host.into(), host: host.into(), action, reason: String::new() }).collect();
        Plan {
            cluster: "lab".into(),
            basis: crate::plan::Basis::Observed,
            findings: vec![],
            phases: vec![Phase { name: "x", title: "x", execution: Execution::Sequential, steps }],
        }
    }

    #[test]
    fn a_replace_may_remove_old_and_add_new_only() {
        let p = plan(vec![
            ("cp-1", Action::RemoveEtcdMember { member: "cp-2".into(), id: "2".into() }),
            ("cp-1", Action::AddEtcdLearner { member: "cp-4".into(), peer_url: "https://198.18.0.14:2380".into() }),
            ("cp-4", Action::KubeadmJoinControlPlane { config: "c".into(), files: vec![], reset_first: false }),
            ("cp-1", Action::RemoveNode { node: "cp-2".into() }),
            ("cp-1", Action::LabelNode { node: "cp-4".into(), labels: vec![] }),
        ]);
        assert!(only_changes(&p, &["cp-2"], &["cp-4"], "node replace").is_ok());
        let err = only_changes(&p, &["cp-2"], &[], "node remove").unwrap_err().to_string();
        assert!(err.contains("would also add cp-4"), "{err}");
        let err = only_changes(&p, &[], &["cp-4"], "node add").unwrap_err().to_string();
        assert!(err.contains("would also remove cp-2"), "{err}");
    }
}

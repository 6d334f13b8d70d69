//! `kubeha node add|replace|remove`: day-2 changes of one host. Each is a converge run (the same planner,
//! quorum gates, lock, journal and resume as `apply`) with the command's intent checked against the plan
//! before anything changes: a node command never makes a membership change it was not asked for. So `apply`
//! on the edited inventory reaches the same cluster, and a node command interrupted at any point is resumed
//! by running it (or `apply`) again.
use super::apply::{self, Request, RunOptions};
use super::{Exit, InventoryArg, report};
use crate::exec::live::Planned;
use crate::inventory::Inventory;
use crate::plan::{Action, Plan};
use clap::Subcommand;
use std::sync::Arc;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: NodeCommand,
}

#[derive(Subcommand)]
enum NodeCommand {
    /// Join HOST, already added to the inventory. A control plane: snapshot, etcd learner, catch-up, promote
    /// between quorum gates, HAProxy/keepalived updated on every control plane (one at a time), kubeadm join.
    Add {
        host: String,
        #[command(flatten)]
        inventory: InventoryArg,
        #[command(flatten)]
        run: RunOptions,
    },
    /// Put NEW in the place of OLD (which may be dead). FILE is the inventory with NEW's entry instead of
    /// OLD's; OLD is found in the cluster (etcd membership, nodes). Refused when quorum is lost.
    Replace {
        old: String,
        /// The host taking OLD's place; it must be in the inventory.
        #[arg(long = "with", value_name = "NEW")]
        new: String,
        #[command(flatten)]
        inventory: InventoryArg,
        #[command(flatten)]
        run: RunOptions,
    },
    /// Take HOST out: its etcd member removed between quorum gates, load balancer config updated, node
    /// drained and deleted, host reset. HOST may still be in FILE (its entry says how to reach it).
    Remove {
        host: String,
        #[command(flatten)]
        inventory: InventoryArg,
        #[command(flatten)]
        run: RunOptions,
    },
}

pub fn run(args: Args) -> anyhow::Result<Exit> {
    match args.command {
        NodeCommand::Add { host, inventory, run } => {
            let Some(inv) = load(&inventory)? else { return Ok(Exit::Failed) };
            if !inv.hosts.iter().any(|h| h.name == host) {
                anyhow::bail!(
                    "{host} is not in {}: add its entry (name, address, roles, zone) first, then run `kubeha node add {host}`",
                    inventory.path.display()
                );
            }
            let command = format!("node add {host} -i {}", inventory.path.display());
            let intent = move |p: &Planned| only_changes(&p.plan, &[], &[host.as_str()], "node add");
            apply::converge(Request { inv: Arc::new(inv), command, leaving_known: Vec::new(), intent: Box::new(intent) }, &run)
        }
        NodeCommand::Replace { old, new, inventory, run } => {
            let Some(inv) = load(&inventory)? else { return Ok(Exit::Failed) };
            let file = inventory.path.display().to_string();
            if inv.hosts.iter().any(|h| h.name == old) {
                anyhow::bail!("{file} still lists {old}; in a replace, {new}'s entry takes the place of {old}'s (remove {old} from {file})");
            }
            if !inv.hosts.iter().any(|h| h.name == new) {
                anyhow::bail!("{new} is not in {file}: put its entry where {old}'s was");
            }
            let command = format!("node replace {old} --with {new} -i {file}");
            let new_is_control_plane = inv.control_planes().any(|h| h.name == new);
            let intent = move |p: &Planned| {
                if p.observed.etcd.as_ref().is_some_and(|v| v.members.iter().any(|m| m.name == old)) && !new_is_control_plane {
                    anyhow::bail!(
                        "{old} is an etcd member (a control plane), but {new} is not a control plane in the inventory: give {new} the control-plane role"
                    );
                }
                if !known_to_cluster(p, &old) {
                    eprintln!("note: {old} is no longer in the cluster (an earlier run removed it); continuing with {new}");
                }
                only_changes(&p.plan, &[old.as_str()], &[new.as_str()], "node replace")
            };
            apply::converge(Request { inv: Arc::new(inv), command, leaving_known: Vec::new(), intent: Box::new(intent) }, &run)
        }
        NodeCommand::Remove { host, inventory, run } => {
            let Some(mut inv) = load(&inventory)? else { return Ok(Exit::Failed) };
            let file = inventory.path.display().to_string();
            let entry = inv.hosts.iter().position(|h| h.name == host).map(|i| inv.hosts.remove(i));
            if inv.control_planes().next().is_none() {
                anyhow::bail!("{host} is the last control plane: removing it would end the cluster");
            }
            let command = format!("node remove {host} -i {file}");
            let listed = entry.is_some();
            let reminder = host.clone();
            let intent = move |p: &Planned| {
                if !known_to_cluster(p, &host) && !p.leaving.contains_key(&host) {
                    anyhow::bail!("{host} is neither an etcd member nor a node of cluster {}, and does not answer: nothing to remove", p.plan.cluster);
                }
                only_changes(&p.plan, &[host.as_str()], &[], "node remove")
            };
            let outcome = apply::converge(Request { inv: Arc::new(inv), command, leaving_known: entry.into_iter().collect(), intent: Box::new(intent) }, &run)?;
            if listed && matches!(outcome, Exit::Success) {
                eprintln!("note: {file} still lists {reminder}; delete its entry, or the next `kubeha apply` adds it back");
            }
            Ok(outcome)
        }
    }
}

fn load(arg: &InventoryArg) -> anyhow::Result<Option<Inventory>> {
    Ok(report::load_valid(&arg.path)?.map(|(_, inv)| inv))
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

//! `kubeha node add|replace|remove`: day-2 changes of one host. Each is a converge run (the same planner,
//! quorum gates, lock, journal and resume as `apply`) with the command's intent checked against the plan
//! before anything changes: a node command never makes a membership change it was not asked for. So `apply`
//! on the edited inventory reaches the same cluster, and a node command interrupted at any point is resumed
//! by running it (or `apply`) again.
use super::apply::{self, RunOptions};
use super::{Exit, InventoryArg, report};
use crate::action::{self, apply::Request};
use crate::inventory::Inventory;
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
            apply::converge(Request { inv: Arc::new(inv), command, leaving_known: Vec::new(), intent: action::node::add(host) }, &run)
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
            let intent = action::node::replace(old, new, new_is_control_plane);
            apply::converge(Request { inv: Arc::new(inv), command, leaving_known: Vec::new(), intent }, &run)
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
            let outcome = apply::converge(
                Request { inv: Arc::new(inv), command, leaving_known: entry.into_iter().collect(), intent: action::node::remove(host.clone()) },
                &run,
            )?;
            if listed && matches!(outcome, Exit::Success) {
                eprintln!("note: {file} still lists {host}; delete its entry, or the next `kubeha apply` adds it back");
            }
            Ok(outcome)
        }
    }
}

fn load(arg: &InventoryArg) -> anyhow::Result<Option<Inventory>> {
    Ok(report::load_valid(&arg.path)?.map(|(_, inv)| inv))
}

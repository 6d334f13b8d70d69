//! `kubeha upgrade`: `apply` with the promise that only versions change (`upgrade::intent`). Edit
//! spec.kubernetes.version or spec.etcd.version, then run it; the plan shows the rolling order, and a plan
//! that would change anything else is refused unchanged.
use super::apply::{self, RunOptions};
use super::{Exit, InventoryArg, exit, report};
use crate::action::{self, apply::Request};
use std::sync::Arc;

#[derive(clap::Args)]
#[command(after_help = exit::help(&[
    (Exit::Success, "upgraded, or nothing to upgrade (or, with --dry-run, planned)"),
    (Exit::Failed, "refused (a version rule, a change that is not a version change, preflight, a gate, the lock) or failed at a step: the next run resumes from the versions in place"),
    (Exit::Usage, "bad usage"),
    (Exit::Interrupted, "stopped by Ctrl-C after the steps under way; the next upgrade continues"),
]))]
pub struct Args {
    #[command(flatten)]
    inventory: InventoryArg,
    #[command(flatten)]
    run: RunOptions,
}

pub fn run(args: Args) -> anyhow::Result<Exit> {
    let Some((_, inv)) = report::load_valid(&args.inventory.path)? else { return Ok(Exit::Failed) };
    let command = format!("upgrade -i {}", args.inventory.path.display());
    apply::converge(Request { inv: Arc::new(inv), command, leaving_known: Vec::new(), intent: action::upgrade::intent() }, &args.run)
}

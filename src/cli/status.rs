//! `kubeha status`: the cluster's health and how many more losses it can take, read-only and without the
//! cluster lock (it is what an operator runs while something is wrong, possibly while an apply runs).
use super::{Exit, InventoryArg, OutputFormat, exit, report};
use crate::status::{self, Verdict};

// Degraded is not failed: scripts and fault drills tell "something is down but quorum holds" from "act now".
#[derive(clap::Args)]
#[command(after_help = exit::help(&[
    (Exit::Success, "healthy: every host reachable, every control plane a healthy etcd voter, one leader, the VIP on one host"),
    (Exit::Failed, "quorum lost, or etcd could not be asked at all (or the inventory is invalid)"),
    (Exit::Degraded, "degraded but quorum holds: a host or member down, a learner, a member not in the inventory,\nno leader, the VIP on no control plane or on two"),
    (Exit::Usage, "bad usage"),
]))]
pub struct Args {
    #[command(flatten)]
    inventory: InventoryArg,
    /// text: a table and a sentence per failure domain; json: the same report for scripts (camelCase).
    #[arg(long, value_enum, default_value_t)]
    output: OutputFormat,
}

pub fn run(args: Args) -> anyhow::Result<Exit> {
    let Some((loaded, inv)) = report::load_valid(&args.inventory.path)? else { return Ok(Exit::Failed) };
    let seen = super::block_on(status::observe(&inv))?;
    let report = status::report(&inv, &loaded.file, &seen);
    match args.output {
        OutputFormat::Text => print!("{}", status::text(&report)),
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    Ok(match report.verdict {
        Verdict::Healthy => Exit::Success,
        Verdict::Degraded => Exit::Degraded,
        Verdict::QuorumLost | Verdict::EtcdUnavailable => Exit::Failed,
    })
}

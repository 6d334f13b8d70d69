//! `kubeha status`: the cluster's health and how many more losses it can take, read-only and without the
//! cluster lock (it is what an operator runs while something is wrong, possibly while an apply runs).
use super::{InventoryArg, Outcome, OutputFormat, report};
use crate::status::{self, Verdict};

/// Degraded is not failed: scripts and fault drills tell "something is down but quorum holds" from "act now".
const EXIT_DEGRADED: u8 = 2;

#[derive(clap::Args)]
#[command(after_help = "\
Exit codes:
  0  healthy: every host reachable, every control plane a healthy etcd voter, one leader, the VIP on one host
  1  quorum lost, or etcd could not be asked at all (or the inventory is invalid)
  2  degraded but quorum holds: a host or member down, a learner, a member not in the inventory,
     no leader, the VIP on no control plane or on two
 64  bad usage")]
pub struct Args {
    #[command(flatten)]
    inventory: InventoryArg,
    /// text: a table and a sentence per failure domain; json: the same report for scripts (camelCase).
    #[arg(long, value_enum, default_value_t)]
    output: OutputFormat,
}

pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let Some((loaded, inv)) = report::load_valid(&args.inventory.path)? else { return Ok(Outcome::Findings) };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let seen = runtime.block_on(status::observe(&inv));
    let report = status::report(&inv, &loaded.file, &seen);
    match args.output {
        OutputFormat::Text => print!("{}", status::text(&report)),
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    Ok(match report.verdict {
        Verdict::Healthy => Outcome::Success,
        Verdict::Degraded => Outcome::Exit(EXIT_DEGRADED),
        Verdict::QuorumLost | Verdict::EtcdUnavailable => Outcome::Findings,
    })
}

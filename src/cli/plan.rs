//! `kubeha plan`: the ordered steps that bring the cluster up, with their quorum gates.
use super::{InventoryArg, Outcome, OutputFormat, report};
use crate::plan;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    inventory: InventoryArg,
    /// Plan from the inventory alone, assuming every host is fresh (no SSH).
    #[arg(long)]
    offline: bool,
    #[arg(long, value_enum, default_value_t)]
    output: OutputFormat,
}

pub fn run(args: Args) -> anyhow::Result<Outcome> {
    if !args.offline {
        anyhow::bail!(
            "planning against live hosts needs their facts over SSH, which this build does not gather yet; use `kubeha plan --offline` for the plan of a fresh cluster"
        );
    }
    let Some((_, inv)) = report::load_valid(&args.inventory.path)? else { return Ok(Outcome::Findings) };
    let plan = plan::offline(&inv)?;
    match args.output {
        OutputFormat::Text => print!("{}", plan::text(&plan)),
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&plan)?),
    }
    Ok(Outcome::Success)
}

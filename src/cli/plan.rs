//! `kubeha plan`: the exact steps `apply` would run now, each with its reason, from the hosts' current
//! state over SSH (read-only, no lock); `--offline` plans a fresh cluster from the inventory alone.
use super::{Exit, InventoryArg, OutputFormat, report};
use crate::action::planned;
use crate::exec::redact::Redactor;
use crate::plan;
use crate::render::templates::Templates;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    inventory: InventoryArg,
    /// Plan from the inventory alone, assuming every host is fresh (no SSH).
    #[arg(long)]
    offline: bool,
    #[arg(long, help = detailed_exitcode_help())]
    detailed_exitcode: bool,
    #[arg(long, value_enum, default_value_t)]
    output: OutputFormat,
}

fn detailed_exitcode_help() -> String {
    format!(
        "Exit {} when the cluster is converged, {} when there are changes to apply, {} on errors.",
        Exit::Success.code(),
        Exit::PlanHasChanges.code(),
        Exit::Failed.code()
    )
}

pub fn run(args: Args) -> anyhow::Result<Exit> {
    let Some((_, inv)) = report::load_valid(&args.inventory.path)? else { return Ok(Exit::Failed) };
    let (plan, redactor) = if args.offline {
        (plan::offline(&inv)?, Redactor::default())
    } else {
        super::block_on(async {
            let hosts = planned::connect_all(&inv, "planning").await?;
            let planned = planned::plan(&inv, &hosts, &Templates::builtin()?, &[]).await?;
            anyhow::Ok((planned.plan, Redactor::new(planned.state.secret_strings())))
        })??
    };
    match args.output {
        OutputFormat::Text => print!("{}", redactor.scrub(&plan::text(&plan))),
        OutputFormat::Json => println!("{}", redactor.scrub(&serde_json::to_string_pretty(&plan)?)),
    }
    Ok(match (plan.blocked(), args.detailed_exitcode && plan.changes() > 0) {
        (true, _) => Exit::Failed,
        (false, true) => Exit::PlanHasChanges,
        (false, false) => Exit::Success,
    })
}

//! `kubeha plan`: the exact steps `apply` would run now, each with its reason, from the hosts' current
//! state over SSH (read-only, no lock); `--offline` plans a fresh cluster from the inventory alone.
use super::{InventoryArg, Outcome, OutputFormat, report};
use crate::exec::live;
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
    /// Exit 0 when the cluster is converged, 2 when there are changes to apply, 1 on errors.
    #[arg(long)]
    detailed_exitcode: bool,
    #[arg(long, value_enum, default_value_t)]
    output: OutputFormat,
}

const EXIT_CHANGES_PENDING: u8 = 2;

pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let Some((_, inv)) = report::load_valid(&args.inventory.path)? else { return Ok(Outcome::Findings) };
    let (plan, redactor) = if args.offline {
        (plan::offline(&inv)?, Redactor::default())
    } else {
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        runtime.block_on(async {
            let hosts = live::connect_all(&inv, "planning").await?;
            let planned = live::plan(&inv, &hosts, &Templates::builtin()?, &[]).await?;
            anyhow::Ok((planned.plan, Redactor::new(planned.state.secret_strings())))
        })?
    };
    match args.output {
        OutputFormat::Text => print!("{}", redactor.scrub(&plan::text(&plan))),
        OutputFormat::Json => println!("{}", redactor.scrub(&serde_json::to_string_pretty(&plan)?)),
    }
    Ok(match (plan.blocked(), args.detailed_exitcode && plan.changes() > 0) {
        (true, _) => Outcome::Findings,
        (false, true) => Outcome::Exit(EXIT_CHANGES_PENDING),
        (false, false) => Outcome::Success,
    })
}

//! `kubeha verify`: the final verification of apply, on demand, read-only.
use super::{Exit, InventoryArg, OutputFormat, report};
use crate::phases::verify;
use crate::ssh::targets;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    inventory: InventoryArg,
    #[arg(long, value_enum, default_value_t)]
    output: OutputFormat,
}

pub fn run(args: Args) -> anyhow::Result<Exit> {
    let Some((_, inv)) = report::load_valid(&args.inventory.path)? else { return Ok(Exit::Failed) };
    super::block_on(async {
        let (hosts, unreachable) = targets::connect(&inv).await;
        let mut checks = verify::run(&inv, &hosts, &crate::plan::verify::checks(&inv)).await;
        for e in &unreachable {
            checks.insert(0, verify::Check { name: format!("{} reachable over SSH", e.host()), ok: false, warning: false, detail: e.to_string() });
        }
        match args.output {
            OutputFormat::Text => {
                for c in &checks {
                    let mark = match (c.ok, c.warning) {
                        (false, _) => "FAIL",
                        (true, true) => "warn",
                        (true, false) => "ok  ",
                    };
                    println!("{mark} {}: {}", c.name, c.detail);
                }
            }
            OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&checks)?),
        }
        Ok(if checks.iter().all(|c| c.ok) { Exit::Success } else { Exit::Failed })
    })?
}

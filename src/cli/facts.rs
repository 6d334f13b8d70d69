//! `kubeha facts`: read-only probes of every host over SSH, in parallel.
use super::{Exit, InventoryArg, OutputFormat, report};
use crate::ssh::HostTarget;
use crate::ssh::targets::{connect_options, target};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    inventory: InventoryArg,
    /// Record the host keys of hosts not yet in known_hosts (a changed key is always refused).
    #[arg(long)]
    accept_new_host_keys: bool,
    #[arg(long, value_enum, default_value_t)]
    output: OutputFormat,
}

pub fn run(args: Args) -> anyhow::Result<Exit> {
    let Some((_, inv)) = report::load_valid(&args.inventory.path)? else { return Ok(Exit::Failed) };
    let targets: Vec<HostTarget> = inv.hosts.iter().map(target).collect();
    let options = connect_options(&inv, args.accept_new_host_keys);
    let reports = super::block_on(crate::facts::gather(&targets, &options))?;
    match args.output {
        OutputFormat::Text => print!("{}", crate::facts::report::text(&reports)),
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&crate::facts::report::json(&reports))?),
    }
    let failed = crate::facts::report::failed_hosts(&reports);
    if failed.is_empty() {
        Ok(Exit::Success)
    } else {
        eprintln!("error: {} of {} hosts failed: {}", failed.len(), reports.len(), failed.join(", "));
        Ok(Exit::Failed)
    }
}

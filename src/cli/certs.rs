//! `kubeha certs check`: every certificate kubeha, kubeadm or the kubelet manages, with its expiry,
//! read-only and without the cluster lock (like `status`).
use super::{Exit, InventoryArg, OutputFormat, exit, report};
use crate::status::certs::{self, CertVerdict};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// List every certificate on every host with its subject, expiry, days left and owner, soonest first.
    // Like `status`'s degraded, expiring is still working, act soon: scripts (cron, monitoring) tell it from "act now".
    #[command(after_help = exit::help(&[
        (Exit::Success, "every certificate is valid for 30 days or more"),
        (Exit::Failed, "a certificate has expired, or a host's certificates could not be read (or the inventory is invalid)"),
        (Exit::CertsExpiring, "a certificate expires within 30 days (all still valid): `kubeha apply` renews kubeha's and kubeadm's"),
        (Exit::Usage, "bad usage"),
    ]))]
    Check(CheckArgs),
}

#[derive(clap::Args)]
struct CheckArgs {
    #[command(flatten)]
    inventory: InventoryArg,
    /// text: a table, soonest expiry first; json: the same report for scripts (camelCase).
    #[arg(long, value_enum, default_value_t)]
    output: OutputFormat,
}

pub fn run(args: Args) -> anyhow::Result<Exit> {
    let Command::Check(args) = args.command;
    let Some((_, inv)) = report::load_valid(&args.inventory.path)? else { return Ok(Exit::Failed) };
    let seen = super::block_on(certs::observe_certs(&inv))?;
    let report = certs::report(&inv.name, &seen, time::OffsetDateTime::now_utc().unix_timestamp());
    match args.output {
        OutputFormat::Text => print!("{}", certs::text(&report)),
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    Ok(match report.verdict {
        CertVerdict::Ok => Exit::Success,
        CertVerdict::Expiring => Exit::CertsExpiring,
        CertVerdict::Failed => Exit::Failed,
    })
}

//! `kubeha certs check`: every certificate kubeha, kubeadm or the kubelet manages, with its expiry,
//! read-only and without the cluster lock (like `status`).
use super::{InventoryArg, Outcome, OutputFormat, report};
use crate::status::certs::{self, CertVerdict};

/// Like `status`'s degraded: still working, act soon. Scripts (cron, monitoring) tell it from "act now".
const EXIT_EXPIRING: u8 = 2;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// List every certificate on every host with its subject, expiry, days left and owner, soonest first.
    #[command(after_help = "\
Exit codes:
  0  every certificate is valid for 30 days or more
  1  a certificate has expired, or a host's certificates could not be read (or the inventory is invalid)
  2  a certificate expires within 30 days (all still valid): `kubeha apply` renews kubeha's and kubeadm's
 64  bad usage")]
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

pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let Command::Check(args) = args.command;
    let Some((_, inv)) = report::load_valid(&args.inventory.path)? else { return Ok(Outcome::Findings) };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let seen = runtime.block_on(certs::observe_certs(&inv));
    let report = certs::report(&inv.name, &seen, time::OffsetDateTime::now_utc().unix_timestamp());
    match args.output {
        OutputFormat::Text => print!("{}", certs::text(&report)),
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    Ok(match report.verdict {
        CertVerdict::Ok => Outcome::Success,
        CertVerdict::Expiring => Outcome::Exit(EXIT_EXPIRING),
        CertVerdict::Failed => Outcome::Findings,
    })
}

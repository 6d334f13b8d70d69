//! `kubeha etcd backups list` (what the backup timer left on each control plane) and `kubeha etcd backups pull`
//! (copy the backups not yet in a local folder off the cluster, checksum-verified, with the same retention
//! there). Read-only on the hosts; no cluster lock, as for `etcd snapshot`.
use super::{Exit, InventoryArg, OutputFormat};
use crate::etcd::backup::HostBackups;
use crate::inventory::{Backup, Inventory};
use crate::phases::backup as remote;
use crate::ssh::targets;
use anyhow::bail;
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(clap::Subcommand)]
pub enum BackupsCommand {
    /// Per control plane: the backups the timer keeps (name, time, revision, size, sha256) and its last run.
    List(ListArgs),
    /// Copy the backups not yet in DIR from the control planes, each checked against its .sha256, then keep
    /// the newest `spec.etcd.backup.keep` in DIR (only files named like kubeha's backups are ever deleted).
    Pull(PullArgs),
}

#[derive(clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub inventory: InventoryArg,
    #[arg(long, value_enum, default_value_t)]
    output: OutputFormat,
}

#[derive(clap::Args)]
pub struct PullArgs {
    #[command(flatten)]
    pub inventory: InventoryArg,
    /// The local folder (created 0700 if missing); every backup lands there with its .sha256, mode 0600.
    #[arg(short = 'o', long = "out", value_name = "DIR")]
    out: PathBuf,
}

impl BackupsCommand {
    pub fn inventory(&self) -> &Path {
        match self {
            BackupsCommand::List(a) => &a.inventory.path,
            BackupsCommand::Pull(a) => &a.inventory.path,
        }
    }
}

/// `list` ends with Findings when a control plane could not be listed (the output says which and why).
pub async fn run(inv: &Inventory, command: &BackupsCommand) -> anyhow::Result<Exit> {
    let Some(config) = &inv.etcd.backup else {
        bail!("backups are off for cluster {} (spec.etcd.backup.enabled: false)", inv.name);
    };
    match command {
        BackupsCommand::List(a) => list(inv, config, a.output).await,
        BackupsCommand::Pull(a) => pull(inv, config, &a.out).await.map(|()| Exit::Success),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct HostReport {
    host: String,
    #[serde(flatten)]
    found: Option<HostBackups>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// Every control plane's listing, in inventory order; one that cannot be reached or read carries its error.
async fn gather(inv: &Inventory, config: &Backup) -> Vec<HostReport> {
    let (hosts, unreachable) = targets::connect(inv).await;
    let mut out = Vec::new();
    for (h, connection) in crate::action::control_planes::each(inv, &hosts, &unreachable) {
        let report = match connection {
            Err(why) => HostReport { host: h.name.clone(), found: None, error: Some(why) },
            Ok(t) => match remote::list(t.as_ref(), &config.dir).await {
                Ok(found) => HostReport { host: h.name.clone(), found: Some(found), error: None },
                Err(e) => HostReport { host: h.name.clone(), found: None, error: Some(e.to_string()) },
            },
        };
        out.push(report);
    }
    out
}

async fn list(inv: &Inventory, config: &Backup, output: OutputFormat) -> anyhow::Result<Exit> {
    let reports = gather(inv, config).await;
    match output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&reports)?),
        OutputFormat::Text => print!("{}", table(&inv.name, config, &reports)),
    }
    Ok(if reports.iter().any(|r| r.error.is_some()) { Exit::Failed } else { Exit::Success })
}

fn table(cluster: &str, config: &Backup, reports: &[HostReport]) -> String {
    use std::fmt::Write;
    let mut out = format!("etcd backups of cluster {cluster} in {} (schedule {}, keep {})\n", config.dir, config.schedule.calendar, config.keep);
    for r in reports {
        let _ = writeln!(out, "\n{}:", r.host);
        let Some(found) = &r.found else {
            let _ = writeln!(out, "  error: {}", r.error.as_deref().unwrap_or("unknown"));
            continue;
        };
        let _ = writeln!(out, "  last run: {}", last_run(found));
        if found.backups.is_empty() {
            let _ = writeln!(out, "  no backups");
            continue;
        }
        let _ = writeln!(out, "  {:<34} {:<20} {:>10} {:>12}  SHA256", "NAME", "TAKEN (UTC)", "REVISION", "BYTES");
        for b in found.backups.iter().rev() {
            let sha = b.sha256.as_deref().unwrap_or("(no .sha256)");
            let _ = writeln!(out, "  {:<34} {:<20} {:>10} {:>12}  {sha}", b.name, b.taken_at, b.revision, b.size_bytes);
        }
    }
    out
}

/// What the last run did, as `kubeha status` says it.
fn last_run(found: &HostBackups) -> String {
    if let Some(problem) = &found.status_problem {
        return problem.clone();
    }
    match &found.status {
        Some(s) => crate::status::backups::sentence(s, time::OffsetDateTime::now_utc().unix_timestamp()),
        None => "never (no status file)".into(),
    }
}

async fn pull(inv: &Inventory, config: &Backup, out: &Path) -> anyhow::Result<()> {
    let (hosts, unreachable) = targets::connect(inv).await;
    for e in &unreachable {
        eprintln!("warning: {e}");
    }
    let connected: Vec<(String, &dyn crate::ssh::Transport)> =
        inv.control_planes().filter_map(|h| hosts.get(&h.name).map(|t| (h.name.clone(), t.as_ref()))).collect();
    let (report, problems) = crate::backups::pull(&connected, &config.dir, config.keep, out).await?;
    for p in &problems {
        eprintln!("warning: {p}");
    }
    for c in &report.copied {
        println!("copied  {} from {} ({} bytes, revision {}, sha256 {})", c.name, c.host, c.size_bytes, c.revision, c.sha256);
    }
    for (name, reason) in &report.skipped {
        println!("skipped {name}: {reason}");
    }
    for name in &report.pruned {
        println!("pruned  {name} (keep {})", config.keep);
    }
    for f in &report.failed {
        eprintln!("error: {f}");
    }
    println!("{} copied, {} skipped, {} pruned into {}", report.copied.len(), report.skipped.len(), report.pruned.len(), out.display());
    if !report.failed.is_empty() {
        bail!("{} backups could not be copied (see above); those copied are complete and verified", report.failed.len());
    }
    Ok(())
}

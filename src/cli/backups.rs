//! `kubeha etcd backups list` (what the backup timer left on each control plane) and `kubeha etcd backups pull`
//! (copy the backups not yet in a local folder off the cluster, checksum-verified, with the same retention
//! there). Read-only on the hosts; no cluster lock, as for `etcd snapshot`.
use super::{InventoryArg, Outcome, OutputFormat};
use crate::etcd::backup::{self, HostBackups, PullChoice};
use crate::exec::live;
use crate::inventory::{Backup, Inventory};
use crate::phases::backup as remote;
use anyhow::{Context, bail};
use serde::Serialize;
use std::collections::BTreeMap;
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
pub async fn run(inv: &Inventory, command: &BackupsCommand) -> anyhow::Result<Outcome> {
    let Some(config) = &inv.etcd.backup else {
        bail!("backups are off for cluster {} (spec.etcd.backup.enabled: false)", inv.name);
    };
    match command {
        BackupsCommand::List(a) => list(inv, config, a.output).await,
        BackupsCommand::Pull(a) => pull(inv, config, &a.out).await.map(|()| Outcome::Success),
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
async fn gather(inv: &Inventory, config: &Backup) -> Vec<(HostReport, Option<std::sync::Arc<dyn crate::ssh::Transport>>)> {
    let (hosts, unreachable) = live::connect(inv).await;
    let mut out = Vec::new();
    for h in inv.control_planes() {
        let Some(t) = hosts.get(&h.name) else {
            let why = unreachable.iter().find(|e| e.host() == h.name).map_or_else(|| "not connected".to_string(), |e| e.to_string());
            out.push((HostReport { host: h.name.clone(), found: None, error: Some(why) }, None));
            continue;
        };
        let report = match remote::list(t.as_ref(), &config.dir).await {
            Ok(found) => HostReport { host: h.name.clone(), found: Some(found), error: None },
            Err(e) => HostReport { host: h.name.clone(), found: None, error: Some(e.to_string()) },
        };
        out.push((report, Some(t.clone())));
    }
    out
}

async fn list(inv: &Inventory, config: &Backup, output: OutputFormat) -> anyhow::Result<Outcome> {
    let reports: Vec<HostReport> = gather(inv, config).await.into_iter().map(|(r, _)| r).collect();
    match output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&reports)?),
        OutputFormat::Text => print!("{}", table(&inv.name, config, &reports)),
    }
    Ok(if reports.iter().any(|r| r.error.is_some()) { Outcome::Findings } else { Outcome::Success })
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

/// "ok at ..., saved ...", "skipped: not the leader at ...", "failed at ...: error", "never".
fn last_run(found: &HostBackups) -> String {
    if let Some(problem) = &found.status_problem {
        return problem.clone();
    }
    let Some(s) = &found.status else { return "never (no status file)".into() };
    let at = s.last_attempt.as_deref().unwrap_or("?");
    let what = match (s.result.as_deref(), &s.last_error) {
        (Some("failed"), Some(e)) => format!("failed at {at}: {e}"),
        (result, _) => format!("{} at {at}: {}", result.unwrap_or("?"), s.message.as_deref().unwrap_or("")),
    };
    match &s.last_success {
        Some(l) => format!("{what}; last success {} ({}, revision {})", l.time, l.file, l.revision),
        None => format!("{what}; no success yet"),
    }
}

/// The backups in `dir` by name, with the digest of each (read from the file itself, not its .sha256: what
/// decides a skip is what is really there).
fn local_backups(dir: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if backup::is_backup_name(&name) && entry.file_type()?.is_file() {
            let bytes = std::fs::read(entry.path()).with_context(|| format!("cannot read {}", entry.path().display()))?;
            out.insert(name, crate::digest::sha256_hex(&bytes));
        }
    }
    Ok(out)
}

async fn pull(inv: &Inventory, config: &Backup, out: &Path) -> anyhow::Result<()> {
    create_private_dir(out)?;
    let gathered = gather(inv, config).await;
    let mut remote_lists = Vec::new();
    let mut transports = BTreeMap::new();
    for (report, t) in &gathered {
        match (&report.found, t) {
            (Some(found), Some(t)) => {
                remote_lists.push((report.host.clone(), found.backups.clone()));
                transports.insert(report.host.clone(), t.clone());
            }
            _ => eprintln!("warning: {}: {}", report.host, report.error.as_deref().unwrap_or("no listing")),
        }
    }
    if remote_lists.is_empty() {
        bail!("no control plane could be listed; nothing was copied");
    }
    let local = local_backups(out)?;
    let (mut copied, mut skipped, mut failed) = (0, 0, 0);
    for choice in backup::plan_pull(&remote_lists, &local, config.keep) {
        match choice {
            PullChoice::Skip { name, reason } => {
                println!("skipped {name}: {reason}");
                skipped += 1;
            }
            PullChoice::Copy { host, backup: b } => {
                let Some(t) = transports.get(&host) else { continue };
                match remote::download(t.as_ref(), &config.dir, &b).await {
                    Ok(bytes) => {
                        let sha = b.sha256.clone().unwrap_or_default();
                        place_verified(out, &b.name, &bytes, &sha)?;
                        println!("copied  {} from {host} ({} bytes, revision {}, sha256 {sha})", b.name, bytes.len(), b.revision);
                        copied += 1;
                    }
                    Err(e) => {
                        eprintln!("error: {e}");
                        failed += 1;
                    }
                }
            }
        }
    }
    let names: Vec<String> = local_backups(out)?.into_keys().collect();
    let pruned = backup::to_prune(&names, config.keep);
    for name in &pruned {
        for file in [name.clone(), backup::checksum_name(name)] {
            match std::fs::remove_file(out.join(&file)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(anyhow::Error::new(e).context(format!("cannot remove {}", out.join(&file).display()))),
            }
        }
        println!("pruned  {name} (keep {})", config.keep);
    }
    println!("{copied} copied, {skipped} skipped, {} pruned into {}", pruned.len(), out.display());
    if failed > 0 {
        bail!("{failed} backups could not be copied (see above); those copied are complete and verified");
    }
    Ok(())
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).with_context(|| format!("cannot create {}", dir.display()))
}

/// The backup and its .sha256 into `dir`: each written 0600 to a temporary name and renamed, checksum first,
/// so the folder never holds a backup under its name without its checksum, or half of one.
fn place_verified(dir: &Path, name: &str, bytes: &[u8], sha256: &str) -> anyhow::Result<()> {
    if crate::digest::sha256_hex(bytes) != sha256 {
        bail!("{name}: the downloaded bytes do not match its .sha256 {sha256}; not written");
    }
    let checksum = format!("{sha256}  {name}\n");
    super::etcd::write_private(&dir.join(backup::checksum_name(name)), checksum.as_bytes(), true)?;
    super::etcd::write_private(&dir.join(name), bytes, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pulled_files_are_private_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let name = "etcd-20261203T140000Z-r3.db";
        let sha = crate::digest::sha256_hex(b"snapshot");
        place_verified(dir.path(), name, b"snapshot", &sha).unwrap();
        use std::os::unix::fs::PermissionsExt;
        for f in [name.to_string(), backup::checksum_name(name)] {
            assert_eq!(std::fs::metadata(dir.path().join(&f)).unwrap().permissions().mode() & 0o777, 0o600, "{f}");
        }
        assert_eq!(std::fs::read_to_string(dir.path().join(backup::checksum_name(name))).unwrap(), format!("{sha}  {name}\n"));
        assert_eq!(local_backups(dir.path()).unwrap().get(name), Some(&sha));
        let err = place_verified(dir.path(), "etcd-20261203T150000Z-r4.db", b"other", &sha).unwrap_err().to_string();
        assert!(err.contains("do not match"), "{err}");
        assert!(!dir.path().join("etcd-20261203T150000Z-r4.db").exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2, "no temporary file left");
    }
}

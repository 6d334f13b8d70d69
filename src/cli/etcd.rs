//! `kubeha etcd snapshot` (take one on a healthy member and download it) and `kubeha etcd restore` (rebuild
//! etcd from a snapshot after it lost quorum). docs/restore.md is the operator's procedure around them.
//! The work is `action::snapshot` and `action::restore`; this module has the arguments, the prompt and the output.
use super::{Exit, InventoryArg, OutputFormat, report};
use crate::action::restore::{self, Outcome, Proposal, Restored};
use crate::action::snapshot::{self, Taken};
use crate::inventory::Inventory;
use crate::phases::snapshot::SnapshotInfo;
use anyhow::bail;
use clap::Subcommand;
use serde::Serialize;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: EtcdCommand,
}

#[derive(Subcommand)]
enum EtcdCommand {
    /// Take a snapshot on a healthy voting member (it stays there too, in /var/lib/kubeha/snapshots) and download it.
    Snapshot(SnapshotArgs),
    /// Rebuild etcd from a snapshot after it lost quorum: a one-member cluster on one control plane, which
    /// `kubeha apply` then grows back one member at a time. Every write made after the snapshot is lost.
    Restore(RestoreArgs),
    /// The scheduled backups (`spec.etcd.backup`): list them, or pull them off the cluster.
    Backups {
        #[command(subcommand)]
        command: super::backups::BackupsCommand,
    },
}

#[derive(clap::Args)]
struct SnapshotArgs {
    #[command(flatten)]
    inventory: InventoryArg,
    /// Where to write the snapshot on this machine (created with mode 0600).
    #[arg(short = 'o', long = "out", value_name = "OUT")]
    out: PathBuf,
    /// Replace OUT when it exists.
    #[arg(long)]
    force: bool,
    /// Take it from this control plane's member, even when etcd has no quorum: after a loss of quorum, a
    /// surviving member's data may be newer than the last snapshot (it is as new as that member got).
    #[arg(long, value_name = "HOST")]
    from: Option<String>,
    /// `json` prints the snapshot's details as JSON on stdout.
    #[arg(long, value_enum, default_value_t)]
    output: OutputFormat,
}

#[derive(clap::Args)]
struct RestoreArgs {
    #[command(flatten)]
    inventory: InventoryArg,
    /// The snapshot file: from `kubeha etcd snapshot`, `kubeha etcd backups pull`, or copied from a control plane
    /// (/var/lib/kubeha/snapshots, or the backup folder). A FILE.sha256 beside it is checked first.
    #[arg(long, value_name = "FILE")]
    snapshot: PathBuf,
    /// The control plane that becomes the one-member cluster; default: the first reachable one in inventory order.
    #[arg(long, value_name = "HOST")]
    on: Option<String>,
    /// Do not ask for confirmation (required when stdin is not a terminal).
    #[arg(long)]
    yes: bool,
    /// Restore even though etcd still has quorum: the running cluster's data is replaced by the snapshot.
    #[arg(long)]
    force: bool,
    /// Take over the cluster lock whatever state it is in (see `kubeha apply --force-unlock`).
    #[arg(long)]
    force_unlock: bool,
}

pub fn run(args: Args) -> anyhow::Result<Exit> {
    let path = match &args.command {
        EtcdCommand::Snapshot(a) => &a.inventory.path,
        EtcdCommand::Restore(a) => &a.inventory.path,
        EtcdCommand::Backups { command } => command.inventory(),
    };
    let Some((_, inv)) = report::load_valid(path)? else { return Ok(Exit::Failed) };
    match args.command {
        EtcdCommand::Snapshot(a) => super::block_on(take_snapshot(&inv, &a))?,
        EtcdCommand::Restore(a) => super::block_on(restore_snapshot(&inv, &a))?,
        EtcdCommand::Backups { command } => super::block_on(super::backups::run(&inv, &command))?,
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SnapshotReport<'a> {
    #[serde(flatten)]
    snapshot: &'a SnapshotInfo,
    member: &'a str,
    out: String,
    save_seconds: f64,
    download_seconds: f64,
}

async fn take_snapshot(inv: &Inventory, args: &SnapshotArgs) -> anyhow::Result<Exit> {
    let request = snapshot::Request { out: &args.out, force: args.force, from: args.from.as_deref(), inventory_path: &args.inventory.path };
    let Taken { info, member, save_seconds, download_seconds } = snapshot::take(inv, &request).await?;
    let report = SnapshotReport { snapshot: &info, member: &member, out: args.out.display().to_string(), save_seconds, download_seconds };
    match args.output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        OutputFormat::Text => {
            println!("etcd snapshot of cluster {} taken on member {member} and saved to {} (mode 0600)", inv.name, report.out);
            println!("  on {member}:  {} (kept with the newest {})", info.path, crate::etcd::snapshot::KEEP);
            println!("  revision: {}", info.revision);
            println!("  keys:     {} (snapshot status totalKey)", info.total_keys);
            println!("  size:     {} bytes", info.size_bytes);
            println!("  sha256:   {} (checked after download)", info.sha256);
            println!("  taken at: {} (save and verify {:.2} s, download {:.2} s)", info.taken_at, save_seconds, download_seconds);
            if let Some(problem) = &info.rotation_problem {
                println!("  warning: older snapshots could not be removed: {problem}");
            }
        }
    }
    Ok(Exit::Success)
}

async fn restore_snapshot(inv: &Inventory, args: &RestoreArgs) -> anyhow::Result<Exit> {
    let request = restore::Request {
        snapshot: &args.snapshot,
        on: args.on.as_deref(),
        force: args.force,
        force_unlock: args.force_unlock,
        inventory_path: &args.inventory.path,
    };
    let confirm = |p: &Proposal| {
        show(p);
        Ok(args.yes || confirm(&p.cluster)?)
    };
    match restore::run(inv, &request, &confirm).await? {
        Outcome::Declined => {
            eprintln!("nothing was changed");
            Ok(Exit::Failed)
        }
        Outcome::Restored(done) => {
            print_restored(&done, args);
            Ok(Exit::Success)
        }
    }
}

/// What the restore will do, before the prompt (on stderr, like apply's plan).
fn show(p: &Proposal) {
    eprintln!("Restore etcd of cluster {} from {} ({} bytes, sha256 {})", p.cluster, p.snapshot.display(), p.size_bytes, p.sha256);
    eprintln!("  now:   {}", p.etcd_now);
    eprintln!("  seed:  {} becomes a one-member etcd cluster from the snapshot (peer URL {})", p.seed, p.seed_peer_url);
    eprintln!("  stop etcd and move {} aside to {} (nothing is deleted) on: {}", p.data_dir, p.aside, p.reachable.join(", "));
    if !p.unreachable.is_empty() {
        eprintln!(
            "  unreachable, left alone: {}\n  Make sure they are really down and not just unreachable from here: if a majority of the members \
             still ran between them, this restore would start a second cluster beside theirs.",
            p.unreachable.join("; ")
        );
    }
    eprintln!("  Every write made after the snapshot was taken is lost.");
}

fn print_restored(done: &Restored, args: &RestoreArgs) {
    println!(
        "etcd restored on {} from {} in {:.1} s: a one-member cluster at revision {} with {} keys.",
        done.seed,
        args.snapshot.display(),
        done.seconds,
        done.count.revision,
        done.count.keys
    );
    if !done.moved.is_empty() {
        println!("Old data set aside (nothing was deleted): {}", done.moved.join(", "));
    }
    let inventory = args.inventory.path.display();
    if done.others.is_empty() {
        println!("Next: run `kubeha verify -i {inventory}`.");
        return;
    }
    let unreachable = if done.unreachable.is_empty() {
        String::new()
    } else {
        format!("; hosts that were unreachable ({}) keep old etcd data: apply moves it aside when they come back", done.unreachable.join(", "))
    };
    println!("Next: run `kubeha apply -i {inventory}` to add {} back one at a time{unreachable}.", done.others.join(", "));
    println!("Then restart the Kubernetes control plane and run `kubeha verify -i {inventory}` (docs/restore.md).");
}

fn confirm(cluster: &str) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        bail!("refusing to restore without confirmation: stdin is not a terminal. Review the above and pass --yes");
    }
    eprint!("\nRestore etcd of cluster {cluster} from this snapshot? Type yes to go on: ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(answer.trim() == "yes")
}

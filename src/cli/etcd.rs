//! `kubeha etcd snapshot` (take one on a healthy member and download it) and `kubeha etcd restore` (rebuild
//! etcd from a snapshot after it lost quorum). docs/restore.md is the operator's procedure around them.
use super::{Exit, InventoryArg, OutputFormat, report};
use crate::digest::sha256_hex;
use crate::etcd::gate::working_quorum;
use crate::etcd::snapshot::RestoreSpec;
use crate::exec::lock;
use crate::inventory::{Host, Inventory};
use crate::phases::snapshot::{self, Layout, SnapshotInfo};
use crate::phases::{etcd, restore};
use crate::ssh::Transport;
use crate::ssh::targets;
use anyhow::{Context, bail};
use clap::Subcommand;
use serde::Serialize;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

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

/// A restored one-member etcd elects itself within seconds; beyond this something is wrong with it.
const RESTORED_HEALTHY_WITHIN: Duration = Duration::from_secs(90);

pub fn run(args: Args) -> anyhow::Result<Exit> {
    let path = match &args.command {
        EtcdCommand::Snapshot(a) => &a.inventory.path,
        EtcdCommand::Restore(a) => &a.inventory.path,
        EtcdCommand::Backups { command } => command.inventory(),
    };
    let Some((_, inv)) = report::load_valid(path)? else { return Ok(Exit::Failed) };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match args.command {
        EtcdCommand::Snapshot(a) => runtime.block_on(take_snapshot(&inv, &a)),
        EtcdCommand::Restore(a) => runtime.block_on(restore_snapshot(&inv, &a)),
        EtcdCommand::Backups { command } => runtime.block_on(super::backups::run(&inv, &command)),
    }
}

/// A reachable control plane and its connection.
type Reachable<'a> = (&'a Host, Arc<dyn Transport>);

/// The reachable control planes in inventory order, and the others with the reason.
fn control_planes<'a>(inv: &'a Inventory, hosts: &targets::Hosts, unreachable: &[crate::ssh::SshError]) -> (Vec<Reachable<'a>>, Vec<String>) {
    let mut up = Vec::new();
    let mut down = Vec::new();
    for h in inv.control_planes() {
        match hosts.get(&h.name) {
            Some(t) => up.push((h, t.clone())),
            None => down.push(unreachable.iter().find(|e| e.host() == h.name).map(|e| e.to_string()).unwrap_or_else(|| format!("{}: not connected", h.name))),
        }
    }
    (up, down)
}

fn names(list: &[Reachable]) -> String {
    list.iter().map(|(h, _)| h.name.as_str()).collect::<Vec<_>>().join(", ")
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

/// No cluster lock: a snapshot changes no membership and may run beside an apply (whose own snapshots go to
/// the same folder; rotation never removes the newest files, so neither run removes the other's).
async fn take_snapshot(inv: &Inventory, args: &SnapshotArgs) -> anyhow::Result<Exit> {
    // Checked first so that a refused run leaves no snapshot behind; checked again when writing.
    if args.out.symlink_metadata().is_ok() && !args.force {
        bail!("{} exists; pass --force to replace it", args.out.display());
    }
    let (hosts, unreachable) = targets::connect(inv).await;
    let (cps, down) = control_planes(inv, &hosts, &unreachable);
    if cps.is_empty() {
        bail!("no control plane is reachable over SSH:\n  {}", down.join("\n  "));
    }
    let (host, t) = match &args.from {
        // The member only has to answer (save checks that first); what it holds is the operator's choice.
        Some(name) => match cps.iter().find(|(h, _)| &h.name == name) {
            Some(found) => found,
            None if inv.control_planes().any(|h| &h.name == name) => bail!("--from {name}: the host is unreachable ({})", down.join("; ")),
            None => bail!("--from {name}: not a control plane of the inventory"),
        },
        None => {
            let transports: Vec<&dyn Transport> = cps.iter().map(|(_, t)| t.as_ref()).collect();
            let view = crate::facts::etcd::view_from_any(&transports).await.map_err(|e| anyhow::anyhow!("no etcd member answers on {}: {e}", names(&cps)))?;
            // A snapshot of a healthy voting member holds every committed write; a learner may lag behind.
            let healthy_voter = |h: &Host| view.members.iter().any(|m| m.name == h.name && !m.is_learner && view.healthy(m).is_ok());
            let Some(found) = cps.iter().find(|(h, _)| healthy_voter(h)) else {
                bail!(
                    "no reachable control plane runs a healthy voting etcd member (members: {}); `kubeha verify -i {}` shows etcd's \
                     state. After a loss of quorum, --from HOST takes the snapshot from a surviving member",
                    etcd::describe(&view),
                    args.inventory.path.display()
                );
            };
            found
        }
    };
    let started = Instant::now();
    let info = snapshot::save(t.as_ref(), "manual").await?;
    let save_seconds = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let bytes = snapshot::download(t.as_ref(), &info).await?;
    write_private(&args.out, &bytes, args.force)?;
    let download_seconds = started.elapsed().as_secs_f64();

    let report = SnapshotReport { snapshot: &info, member: &host.name, out: args.out.display().to_string(), save_seconds, download_seconds };
    match args.output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        OutputFormat::Text => {
            println!("etcd snapshot of cluster {} taken on member {} and saved to {} (mode 0600)", inv.name, host.name, report.out);
            println!("  on {}:  {} (kept with the newest {})", host.name, info.path, crate::etcd::snapshot::KEEP);
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

/// `bytes` to `out`, mode 0600 and whole (`private_file::write`); an existing `out` only replaced with `force`.
fn write_private(out: &Path, bytes: &[u8], force: bool) -> anyhow::Result<()> {
    match crate::private_file::write(out, bytes, force) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => bail!("{} exists; pass --force to replace it", out.display()),
        Err(e) => Err(anyhow::Error::new(e).context(format!("cannot write {}", out.display()))),
    }
}

/// A backup (from the timer, or pulled) has its digest beside it in FILE.sha256: a file damaged since, or a
/// checksum of another file, stops the restore before anything is touched. A snapshot without one is taken
/// as it is (`kubeha etcd snapshot` writes none; its digest was checked at download).
fn check_beside(snapshot: &Path, sha: &str) -> anyhow::Result<()> {
    let mut beside = snapshot.as_os_str().to_owned();
    beside.push(crate::etcd::backup::CHECKSUM_SUFFIX);
    let beside = PathBuf::from(beside);
    let text = match std::fs::read_to_string(&beside) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(anyhow::Error::new(e).context(format!("cannot read {}", beside.display()))),
    };
    let Some(want) = crate::etcd::backup::parse_checksum(&text) else {
        bail!("{}: not a sha256 checksum file (expected `<64 hex digits>  <name>`)", beside.display());
    };
    if want != sha {
        bail!("{} has sha256 {sha}, but {} says {want}: the file is damaged or not the one the checksum is for", snapshot.display(), beside.display());
    }
    eprintln!("sha256 matches {}", beside.display());
    Ok(())
}

/// `20261125T161702Z`: sorts like the time, and fits in a file name.
fn stamp() -> String {
    let format = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    time::OffsetDateTime::now_utc().format(format).unwrap_or_else(|_| crate::exec::lock::now_unix().to_string())
}

async fn restore_snapshot(inv: &Inventory, args: &RestoreArgs) -> anyhow::Result<Exit> {
    let bytes = std::fs::read(&args.snapshot).with_context(|| format!("cannot read the snapshot {}", args.snapshot.display()))?;
    if bytes.is_empty() {
        bail!("{} is empty: not an etcd snapshot", args.snapshot.display());
    }
    let sha = sha256_hex(&bytes);
    check_beside(&args.snapshot, &sha)?;
    let (hosts, unreachable) = targets::connect(inv).await;
    let (cps, down) = control_planes(inv, &hosts, &unreachable);
    let down_names: Vec<String> = inv.control_planes().filter(|h| !hosts.contains_key(&h.name)).map(|h| h.name.clone()).collect();
    if cps.is_empty() {
        bail!("no control plane is reachable over SSH, a restore needs at least one:\n  {}", down.join("\n  "));
    }
    let seed = match &args.on {
        Some(name) => {
            if !inv.control_planes().any(|h| &h.name == name) {
                let all: Vec<&str> = inv.control_planes().map(|h| h.name.as_str()).collect();
                bail!("--on {name}: not a control plane of the inventory (control planes: {})", all.join(", "));
            }
            let Some(found) = cps.iter().find(|(h, _)| &h.name == name) else {
                bail!("--on {name}: the host is unreachable ({}); pick a reachable control plane: {}", down.join("; "), names(&cps));
            };
            found.clone()
        }
        None => cps[0].clone(),
    };

    let policy = QuorumPolicy { force: args.force, inventory: &args.inventory.path, lock: lock::Fence::default() };
    let now = etcd_now(&cps, &policy).await?;

    let stamp = stamp();
    let layout = Layout::default();
    let aside = format!("{}.before-restore-{stamp}", layout.data_dir);
    eprintln!("Restore etcd of cluster {} from {} ({} bytes, sha256 {})", inv.name, args.snapshot.display(), bytes.len(), sha);
    eprintln!("  now:   {now}");
    eprintln!("  seed:  {} becomes a one-member etcd cluster from the snapshot (peer URL {})", seed.0.name, seed.0.peer_url());
    eprintln!("  stop etcd and move {} aside to {aside} (nothing is deleted) on: {}", layout.data_dir, names(&cps));
    if !down.is_empty() {
        eprintln!(
            "  unreachable, left alone: {}\n  Make sure they are really down and not just unreachable from here: if a majority of the members \
             still ran between them, this restore would start a second cluster beside theirs.",
            down.join("; ")
        );
    }
    eprintln!("  Every write made after the snapshot was taken is lost.");
    if !args.yes && !confirm(&inv.name)? {
        eprintln!("nothing was changed");
        return Ok(Exit::Failed);
    }

    // The usual lock wants a majority of the control planes, which is exactly what a cluster without quorum
    // may not have reachable; see lock::acquire_every for why every reachable one is enough here.
    let connections: Vec<targets::Connection> = cps.iter().map(|(h, t)| (h.name.clone(), Ok(t.clone()))).collect();
    let me = lock::Holder::for_this_run(&format!("etcd restore -i {}", args.inventory.path.display()));
    let held = lock::acquire_every(&connections, me, args.force_unlock).await?.keep_alive(lock::HEARTBEAT_EVERY);
    let policy = QuorumPolicy { lock: held.fence(), ..policy };
    if !down.is_empty() {
        eprintln!("note: the cluster lock is held on the reachable control planes only ({})", names(&cps));
    }
    let started = Instant::now();
    let snapshot = Snapshot { bytes: &bytes, sha: &sha };
    let result = restore_on(&cps, &seed, &layout, snapshot, &stamp, inv, &policy).await;
    // The restore's own error matters more than the lock's; a lock left behind is seen as stale later.
    if let Err(e) = held.release().await {
        eprintln!("warning: the cluster lock could not be released: {e}");
    }
    let (count, moved) = result?;

    let seconds = started.elapsed().as_secs_f64();
    let others: Vec<&str> = inv.control_planes().filter(|h| h.name != seed.0.name).map(|h| h.name.as_str()).collect();
    println!(
        "etcd restored on {} from {} in {seconds:.1} s: a one-member cluster at revision {} with {} keys.",
        seed.0.name,
        args.snapshot.display(),
        count.revision,
        count.keys
    );
    if !moved.is_empty() {
        println!("Old data set aside (nothing was deleted): {}", moved.join(", "));
    }
    let inventory = args.inventory.path.display();
    if others.is_empty() {
        println!("Next: run `kubeha verify -i {inventory}`.");
    } else {
        let unreachable = if down_names.is_empty() {
            String::new()
        } else {
            format!("; hosts that were unreachable ({}) keep old etcd data: apply moves it aside when they come back", down_names.join(", "))
        };
        println!("Next: run `kubeha apply -i {inventory}` to add {} back one at a time{unreachable}.", others.join(", "));
        println!("Then restart the Kubernetes control plane and run `kubeha verify -i {inventory}` (docs/restore.md).");
    }
    Ok(Exit::Success)
}

/// When a restore may replace a running etcd: only after it lost quorum, unless `force`.
struct QuorumPolicy<'a> {
    force: bool,
    /// For the way out named in the refusal.
    inventory: &'a Path,
    /// The restore's cluster lock: once lost, another run may be changing etcd, and nothing may be stopped.
    lock: lock::Fence,
}

/// What etcd looks like now, as one line; an error (the refusal) when it still has quorum without --force.
async fn etcd_now(cps: &[Reachable<'_>], policy: &QuorumPolicy<'_>) -> anyhow::Result<String> {
    let transports: Vec<&dyn Transport> = cps.iter().map(|(_, t)| t.as_ref()).collect();
    Ok(match crate::facts::etcd::view_from_any(&transports).await {
        Ok(view) => match working_quorum(&view) {
            Ok(working) if !policy.force => bail!(
                "etcd still has quorum ({working}): refusing to restore. A restore throws away the running cluster's data and \
                 replaces it with the snapshot's, so every write made since the snapshot was taken is lost (and the members get a \
                 new cluster identity). To bring back failed members of a working cluster, run `kubeha apply -i {}`. To roll the \
                 cluster back to the snapshot all the same, pass --force.",
                policy.inventory.display()
            ),
            Ok(working) => format!("etcd STILL HAS QUORUM ({working}); --force: its writes since the snapshot will be lost"),
            Err(why) => format!("etcd has lost quorum: {why}"),
        },
        Err(e) => format!("no etcd member answers on {} (last error: {e})", names(cps)),
    })
}

/// The operator's snapshot file and its SHA-256.
#[derive(Clone, Copy)]
struct Snapshot<'a> {
    bytes: &'a [u8],
    sha: &'a str,
}

/// The restore itself, under the lock: nothing is stopped or moved before the snapshot is on the seed,
/// etcd there has read it, and etcd has been asked again whether it really lost quorum.
async fn restore_on(
    cps: &[Reachable<'_>],
    seed: &Reachable<'_>,
    layout: &Layout,
    snap: Snapshot<'_>,
    stamp: &str,
    inv: &Inventory,
    policy: &QuorumPolicy<'_>,
) -> anyhow::Result<(crate::etcd::snapshot::KeyCount, Vec<String>)> {
    let (seed_host, t) = (seed.0, seed.1.as_ref());
    let (tool, bump) = snapshot::tool(t).await?;
    let path = restore::upload(t, layout, snap.bytes).await?;
    let status = restore::verify(t, tool, &path, snap.sha).await?;
    eprintln!("{}: snapshot uploaded to {path} and read by {}: revision {}, {} keys", seed_host.name, tool.program(), status.revision, status.total_keys);

    // The check before the prompt may be minutes old (the operator read the summary, typed yes, the snapshot
    // was uploaded): members that came back meanwhile would have the restore throw away a working cluster.
    // Asked again here, under the lock (no apply can change etcd now) and last thing before etcd is stopped.
    let now = etcd_now(cps, policy)
        .await
        .map_err(|e| anyhow::anyhow!("checked again under the cluster lock, just before stopping etcd (nothing was stopped): {e}"))?;
    if let Some(why) = policy.lock.lost() {
        bail!("{why}: etcd was not stopped anywhere");
    }
    eprintln!("  under the lock: {now}");

    // From here on etcd is being taken down: a failure must say what state it left and how to go on.
    let aside = format!("{}.before-restore-{stamp}", layout.data_dir);
    let left = |e: snapshot::SnapshotError| {
        anyhow::anyhow!(
            "{e}\netcd may be stopped on {} and its data moved to {aside}. Fix the cause and run the same restore again \
             (data already set aside stays there); or, to go back, on each control plane: \
             mv -T {aside} {} && systemctl enable --now etcd",
            names(cps),
            layout.data_dir
        )
    };
    for (h, t) in cps {
        restore::stop(t.as_ref(), h.name != seed_host.name).await.map_err(left)?;
        eprintln!("{}: etcd stopped", h.name);
    }
    let mut moved = Vec::new();
    for (h, t) in cps {
        match restore::set_aside(t.as_ref(), layout, stamp).await.map_err(left)? {
            Some(to) => {
                eprintln!("{}: {} moved to {to}", h.name, layout.data_dir);
                moved.push(format!("{}:{to}", h.name));
            }
            None => eprintln!("{}: no {} to move", h.name, layout.data_dir),
        }
    }
    let mut random = [0u8; 4];
    let _ = getrandom::fill(&mut random);
    let token = format!("{}-restore-{stamp}-{}", inv.name, crate::digest::hex(&random));
    let peer = seed_host.peer_url();
    let spec = RestoreSpec { snapshot: &path, name: &seed_host.name, peer_url: &peer, token: &token, data_dir: &layout.data_dir, bump_revision: bump };
    restore::restore(t, layout, tool, bump, &spec, stamp).await.map_err(left)?;
    eprintln!("{}: snapshot restored into {} (new cluster token {token}){}", seed_host.name, layout.data_dir, if bump { ", revisions bumped" } else { "" });
    let count = restore::start(t, layout, &seed_host.name, RESTORED_HEALTHY_WITHIN).await.map_err(|e| {
        anyhow::anyhow!("{e}\nThe restored data is in {} on {}; `journalctl -u etcd` there says why etcd does not serve.", layout.data_dir, seed_host.name)
    })?;
    eprintln!("{}: etcd is up and healthy", seed_host.name);
    Ok((count, moved))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ssh::fake::RecordingTransport;

    /// A seed whose snapshot checks pass and whose etcd answers as a healthy one-member cluster: quorum is back.
    fn seed_with_quorum(sha: &str) -> RecordingTransport {
        let url = "https://198.18.0.11:2379";
        RecordingTransport::new("cp-1")
            .on("sha256sum --", format!("{sha}  /var/lib/kubeha/restore/x.db\n"))
            .on("snapshot status", r#"{"hash":1,"revision":7,"totalKey":3,"totalSize":20480}"#)
            .on("member list", format!(r#"{{"members":[{{"ID":1,"name":"cp-1","peerURLs":["https://198.18.0.11:2380"],"clientURLs":["{url}"]}}]}}"#))
            .on(
                "endpoint status",
                format!(r#"[{{"Endpoint":"{url}","Status":{{"header":{{"member_id":1}},"version":"3.5.24","leader":1,"raftIndex":8,"raftAppliedIndex":8}}}}]"#),
            )
            .on("endpoint health", format!(r#"[{{"endpoint":"{url}","health":true}}]"#))
    }

    #[tokio::test]
    async fn a_restore_refuses_under_the_lock_when_quorum_came_back_and_stops_nothing() {
        let inv = crate::inventory::load(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/inventories/lab.yaml"))).unwrap().inventory.unwrap();
        let bytes = b"snapshot bytes".to_vec();
        let sha = sha256_hex(&bytes);
        let fake = Arc::new(seed_with_quorum(&sha));
        let cp1 = inv.control_planes().next().unwrap();
        let cps: Vec<Reachable> = vec![(cp1, fake.clone() as Arc<dyn Transport>)];
        let policy = QuorumPolicy { force: false, inventory: Path::new("inventories/lab.yaml"), lock: lock::Fence::default() };
        let snap = Snapshot { bytes: &bytes, sha: &sha };
        let err = restore_on(&cps, &cps[0], &Layout::default(), snap, "20270101T000000Z", &inv, &policy).await.unwrap_err().to_string();
        assert!(err.starts_with("checked again under the cluster lock, just before stopping etcd (nothing was stopped): etcd still has quorum"), "{err}");
        let scripts = fake.scripts();
        assert!(scripts.iter().any(|s| s.contains("member list")), "quorum was not asked again: {scripts:?}");
        assert!(!scripts.iter().any(|s| s.contains("systemctl stop") || s.contains("mv -T")), "etcd was touched: {scripts:?}");
    }

    #[test]
    fn the_download_is_private_and_never_overwrites_without_force() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("snap.db");
        write_private(&out, b"one", false).unwrap();
        assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o600);
        let err = write_private(&out, b"two", false).unwrap_err().to_string();
        assert!(err.ends_with("snap.db exists; pass --force to replace it"), "{err}");
        assert_eq!(std::fs::read(&out).unwrap(), b"one");
        write_private(&out, b"two", true).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file left");
    }
}

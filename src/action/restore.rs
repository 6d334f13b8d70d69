//! Rebuilding etcd from a snapshot after it lost quorum: a one-member cluster on one control plane (the seed),
//! every reachable member stopped and its data set aside first, all under the cluster lock. `kubeha apply` then
//! grows the cluster back one member at a time. docs/restore.md is the operator's procedure around it.
use super::control_planes::{self, Reachable};
use crate::digest::sha256_hex;
use crate::etcd::gate::working_quorum;
use crate::etcd::snapshot::{KeyCount, RestoreSpec};
use crate::exec::lock;
use crate::inventory::Inventory;
use crate::phases::restore;
use crate::phases::snapshot::{self, Layout, SnapshotError};
use crate::ssh::targets;
use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A restored one-member etcd elects itself within seconds; beyond this something is wrong with it.
const RESTORED_HEALTHY_WITHIN: Duration = Duration::from_secs(90);

pub struct Request<'a> {
    /// The snapshot file; a FILE.sha256 beside it is checked first.
    pub snapshot: &'a Path,
    /// The control plane that becomes the one-member cluster; default the first reachable one.
    pub on: Option<&'a str>,
    /// Restore even though etcd still has quorum.
    pub force: bool,
    /// Take over the cluster lock whatever state it is in.
    pub force_unlock: bool,
    /// The inventory file, for the lock holder and the commands a refusal names.
    pub inventory_path: &'a Path,
}

/// What the restore will do, for the front end to show before it confirms: nothing has been changed yet.
pub struct Proposal {
    pub cluster: String,
    pub snapshot: PathBuf,
    pub size_bytes: usize,
    pub sha256: String,
    /// etcd's state now, as one line.
    pub etcd_now: String,
    pub seed: String,
    pub seed_peer_url: String,
    pub data_dir: String,
    /// Where each reachable member's data goes.
    pub aside: String,
    /// The reachable control planes, whose etcd is stopped and whose data is moved aside.
    pub reachable: Vec<String>,
    /// Why each other control plane could not be reached: it is left alone.
    pub unreachable: Vec<String>,
}

/// Whether to go on with the proposal; false ends the restore with nothing changed.
pub type Confirm<'a> = dyn Fn(&Proposal) -> anyhow::Result<bool> + 'a;

pub enum Outcome {
    Declined,
    Restored(Restored),
}

pub struct Restored {
    pub seed: String,
    pub count: KeyCount,
    /// `host:path` of each data folder set aside.
    pub moved: Vec<String>,
    pub seconds: f64,
    /// The other control planes, which `kubeha apply` adds back.
    pub others: Vec<String>,
    /// The control planes that were unreachable and keep their old data.
    pub unreachable: Vec<String>,
}

pub async fn run(inv: &Inventory, request: &Request<'_>, confirm: &Confirm<'_>) -> anyhow::Result<Outcome> {
    let bytes = std::fs::read(request.snapshot).with_context(|| format!("cannot read the snapshot {}", request.snapshot.display()))?;
    if bytes.is_empty() {
        bail!("{} is empty: not an etcd snapshot", request.snapshot.display());
    }
    let sha = sha256_hex(&bytes);
    check_beside(request.snapshot, &sha)?;
    let (hosts, unreachable) = targets::connect(inv).await;
    let (cps, down) = control_planes::split(inv, &hosts, &unreachable);
    if cps.is_empty() {
        bail!("no control plane is reachable over SSH, a restore needs at least one:\n  {}", down.join("\n  "));
    }
    let seed = seed(inv, &cps, &down, request.on)?;
    let policy = QuorumPolicy { force: request.force, inventory: request.inventory_path, lock: lock::Fence::default() };
    let etcd_now = etcd_now(&cps, &policy).await?;

    let stamp = stamp();
    let layout = Layout::default();
    let proposal = Proposal {
        cluster: inv.name.clone(),
        snapshot: request.snapshot.to_path_buf(),
        size_bytes: bytes.len(),
        sha256: sha.clone(),
        etcd_now,
        seed: seed.0.name.clone(),
        seed_peer_url: seed.0.peer_url(),
        data_dir: layout.data_dir.clone(),
        aside: aside(&layout, &stamp),
        reachable: cps.iter().map(|(h, _)| h.name.clone()).collect(),
        unreachable: down,
    };
    if !confirm(&proposal)? {
        return Ok(Outcome::Declined);
    }

    // The usual lock wants a majority of the control planes, which is exactly what a cluster without quorum
    // may not have reachable; see lock::acquire_every for why every reachable one is enough here.
    let connections: Vec<targets::Connection> = cps.iter().map(|(h, t)| (h.name.clone(), Ok(t.clone()))).collect();
    let me = lock::Holder::for_this_run(&format!("etcd restore -i {}", request.inventory_path.display()));
    let held = lock::acquire_every(&connections, me, request.force_unlock).await?.keep_alive(lock::HEARTBEAT_EVERY);
    let policy = QuorumPolicy { lock: held.fence(), ..policy };
    if !proposal.unreachable.is_empty() {
        eprintln!("note: the cluster lock is held on the reachable control planes only ({})", control_planes::names(&cps));
    }
    let started = Instant::now();
    let result = restore_on(&cps, &seed, &layout, Snapshot { bytes: &bytes, sha: &sha }, &stamp, inv, &policy).await;
    // The restore's own error matters more than the lock's; a lock left behind is seen as stale later.
    if let Err(e) = held.release().await {
        eprintln!("warning: the cluster lock could not be released: {e}");
    }
    let (count, moved) = result?;
    Ok(Outcome::Restored(Restored {
        seed: proposal.seed,
        count,
        moved,
        seconds: started.elapsed().as_secs_f64(),
        others: inv.control_planes().filter(|h| h.name != seed.0.name).map(|h| h.name.clone()).collect(),
        unreachable: inv.control_planes().filter(|h| !hosts.contains_key(&h.name)).map(|h| h.name.clone()).collect(),
    }))
}

/// `--on`'s control plane, which must be reachable, else the first reachable one in inventory order.
fn seed<'i>(inv: &Inventory, cps: &[Reachable<'i>], down: &[String], on: Option<&str>) -> anyhow::Result<Reachable<'i>> {
    let Some(name) = on else { return Ok(cps[0].clone()) };
    if !inv.control_planes().any(|h| h.name == name) {
        let all: Vec<&str> = inv.control_planes().map(|h| h.name.as_str()).collect();
        bail!("--on {name}: not a control plane of the inventory (control planes: {})", all.join(", "));
    }
    match cps.iter().find(|(h, _)| h.name == name) {
        Some(found) => Ok(found.clone()),
        None => bail!("--on {name}: the host is unreachable ({}); pick a reachable control plane: {}", down.join("; "), control_planes::names(cps)),
    }
}

fn aside(layout: &Layout, stamp: &str) -> String {
    format!("{}.before-restore-{stamp}", layout.data_dir)
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
    Ok(match crate::facts::etcd::view_from_any(&control_planes::transports(cps)).await {
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
        Err(e) => format!("no etcd member answers on {} (last error: {e})", control_planes::names(cps)),
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
) -> anyhow::Result<(KeyCount, Vec<String>)> {
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
    let aside = aside(layout, stamp);
    let left = |e: SnapshotError| {
        anyhow::anyhow!(
            "{e}\netcd may be stopped on {} and its data moved to {aside}. Fix the cause and run the same restore again \
             (data already set aside stays there); or, to go back, on each control plane: \
             mv -T {aside} {} && systemctl enable --now etcd",
            control_planes::names(cps),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ssh::Transport;
    use crate::ssh::fake::RecordingTransport;
    use std::sync::Arc;

    /// A seed whose snapshot checks pass and whose etcd answers as a healthy one-member cluster: quorum is back.
    fn seed_with_quorum(sha: &str) -> RecordingTransport {
        crate::test_support::one_member_etcd("cp-1", "cp-1", "198.18.0.11", "3.5.24")
            .on("sha256sum --", format!("{sha}  /var/lib/kubeha/restore/x.db\n"))
            .on("snapshot status", r#"{"hash":1,"revision":7,"totalKey":3,"totalSize":20480}"#)
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
    fn a_checksum_beside_the_snapshot_must_match_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("etcd-1.db");
        std::fs::write(&file, b"data").unwrap();
        let sha = sha256_hex(b"data");
        check_beside(&file, &sha).expect("no checksum file: taken as it is");
        let beside = dir.path().join(format!("etcd-1.db{}", crate::etcd::backup::CHECKSUM_SUFFIX));
        std::fs::write(&beside, format!("{sha}  etcd-1.db\n")).unwrap();
        check_beside(&file, &sha).expect("matching checksum");
        std::fs::write(&beside, format!("{}  etcd-1.db\n", "0".repeat(64))).unwrap();
        let err = check_beside(&file, &sha).unwrap_err().to_string();
        assert!(err.contains("the file is damaged or not the one the checksum is for"), "{err}");
        std::fs::write(&beside, "not a checksum\n").unwrap();
        let err = check_beside(&file, &sha).unwrap_err().to_string();
        assert!(err.ends_with("not a sha256 checksum file (expected `<64 hex digits>  <name>`)"), "{err}");
    }
}

//! Taking an etcd snapshot off the cluster: on a healthy voting member (or the one the operator names), kept
//! there with the newest few, and downloaded into a private file here.
use super::control_planes::{self, Reachable};
use crate::etcd::identity::member_of;
use crate::inventory::Inventory;
use crate::phases::snapshot::{self, SnapshotInfo};
use crate::ssh::targets;
use anyhow::bail;
use std::path::Path;
use std::time::Instant;

pub struct Request<'a> {
    /// Where the snapshot goes on this machine (mode 0600).
    pub out: &'a Path,
    /// Replace `out` when it exists.
    pub force: bool,
    /// Take it from this control plane's member, even without quorum (the operator's choice of data).
    pub from: Option<&'a str>,
    /// The inventory file, for the commands a refusal names.
    pub inventory_path: &'a Path,
}

/// A snapshot taken and downloaded.
pub struct Taken {
    pub info: SnapshotInfo,
    /// The control plane whose member it was taken on.
    pub member: String,
    pub save_seconds: f64,
    pub download_seconds: f64,
}

/// No cluster lock: a snapshot changes no membership and may run beside an apply (whose own snapshots go to
/// the same folder; rotation never removes the newest files, so neither run removes the other's).
pub async fn take(inv: &Inventory, request: &Request<'_>) -> anyhow::Result<Taken> {
    // Checked first so that a refused run leaves no snapshot behind; checked again when writing.
    if request.out.symlink_metadata().is_ok() && !request.force {
        bail!("{} exists; pass --force to replace it", request.out.display());
    }
    let (hosts, unreachable) = targets::connect(inv).await;
    let (cps, down) = control_planes::split(inv, &hosts, &unreachable);
    if cps.is_empty() {
        bail!("no control plane is reachable over SSH:\n  {}", down.join("\n  "));
    }
    let (host, t) = member_to_snapshot(inv, &cps, &down, request).await?;
    let started = Instant::now();
    let info = snapshot::save(t.as_ref(), "manual").await?;
    let save_seconds = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let bytes = snapshot::download(t.as_ref(), &info).await?;
    write_private(request.out, &bytes, request.force)?;
    let download_seconds = started.elapsed().as_secs_f64();
    Ok(Taken { info, member: host.name.clone(), save_seconds, download_seconds })
}

/// `--from`'s control plane (it only has to answer; save checks that first), else the first reachable one
/// whose member is a healthy voter: its snapshot holds every committed write, where a learner may lag behind.
async fn member_to_snapshot<'c, 'i>(inv: &Inventory, cps: &'c [Reachable<'i>], down: &[String], request: &Request<'_>) -> anyhow::Result<&'c Reachable<'i>> {
    if let Some(name) = request.from {
        return match cps.iter().find(|(h, _)| h.name == name) {
            Some(found) => Ok(found),
            None if inv.control_planes().any(|h| h.name == name) => bail!("--from {name}: the host is unreachable ({})", down.join("; ")),
            None => bail!("--from {name}: not a control plane of the inventory"),
        };
    }
    let view = crate::facts::etcd::view_from_any(&control_planes::transports(cps))
        .await
        .map_err(|e| anyhow::anyhow!("no etcd member answers on {}: {e}", control_planes::names(cps)))?;
    let healthy_voter = |r: &&Reachable| member_of(&view, r.0).is_some_and(|m| !m.is_learner && view.healthy(m).is_ok());
    match cps.iter().find(healthy_voter) {
        Some(found) => Ok(found),
        None => bail!(
            "no reachable control plane runs a healthy voting etcd member (members: {}); `kubeha verify -i {}` shows etcd's \
             state. After a loss of quorum, --from HOST takes the snapshot from a surviving member",
            crate::phases::etcd::describe(&view),
            request.inventory_path.display()
        ),
    }
}

/// `bytes` to `out`, mode 0600 and whole (`private_file::write`); an existing `out` only replaced with `force`.
fn write_private(out: &Path, bytes: &[u8], force: bool) -> anyhow::Result<()> {
    match crate::private_file::write(out, bytes, force) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => bail!("{} exists; pass --force to replace it", out.display()),
        Err(e) => Err(anyhow::Error::new(e).context(format!("cannot write {}", out.display()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ssh::Transport;
    use std::sync::Arc;

    #[tokio::test]
    async fn the_member_is_found_by_peer_url_when_its_host_was_renamed() {
        let inv = crate::test_support::lab();
        let cp1 = inv.control_planes().next().unwrap();
        let cps: Vec<Reachable> =
            vec![(cp1, Arc::new(crate::test_support::one_member_etcd("cp-1", "old-name", "198.18.0.11", "3.6.16")) as Arc<dyn Transport>)];
        let request = Request { out: Path::new("/nonexistent"), force: false, from: None, inventory_path: Path::new("lab.yaml") };
        let chosen = member_to_snapshot(&inv, &cps, &[], &request).await.map(|r| r.0.name.clone());
        assert_eq!(chosen.ok().as_deref(), Some("cp-1"), "the renamed member is cp-1's");
        let request = Request { from: Some("cp-9"), ..request };
        let err = member_to_snapshot(&inv, &cps, &[], &request).await.map(|r| r.0.name.clone()).unwrap_err().to_string();
        assert_eq!(err, "--from cp-9: not a control plane of the inventory");
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

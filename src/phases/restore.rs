//! Restoring etcd from a snapshot after quorum was lost, one host at a time (the order is the CLI's, see
//! `cli::etcd`): the snapshot becomes a ONE-member cluster on a seed control plane, and `kubeha apply` then
//! adds the other members back one at a time through its quorum gates.
//!
//! Nothing here deletes etcd data: every data directory that exists is moved aside to
//! `<data dir>.before-restore-<stamp>`, so a wrong restore can itself be undone by hand.
use super::etcd as member;
use super::snapshot::{Layout, SnapshotError, complaint, count_keys, failed};
use crate::digest::sha256_hex;
use crate::etcd::gate::{Gate, GateWhen, evaluate};
use crate::etcd::snapshot::{KeyCount, RestoreSpec, SnapshotStatus, Tool, restore_args};
use crate::facts::etcd::view;
use crate::ssh::{Command, Transport, Upload, quote};
use std::time::{Duration, Instant};

const SHORT: Duration = Duration::from_secs(60);

/// Places the snapshot on the seed (0600 root, in a 0700 folder) under a name made of its hash, so a second
/// attempt finds it in place and sends nothing. Returns its path there.
pub async fn upload(t: &dyn Transport, layout: &Layout, snapshot: &[u8]) -> Result<String, SnapshotError> {
    let sha = sha256_hex(snapshot);
    let dir = quote::quote(&layout.restore_dir);
    t.run(&Command::script(format!("umask 077; mkdir -p -- {dir} && chmod 0700 -- {dir}")).timeout(SHORT)).await?;
    let path = format!("{}/{}.db", layout.restore_dir, &sha[..16]);
    t.upload(&Upload { path: path.clone(), contents: snapshot.to_vec(), mode: 0o600, owner: Some("root:root".into()) }).await?;
    Ok(path)
}

/// The uploaded file is the operator's (same hash) and etcd can read it.
pub async fn verify(t: &dyn Transport, tool: Tool, path: &str, sha256: &str) -> Result<SnapshotStatus, SnapshotError> {
    let command = Command::argv(["sha256sum", "--", path]).timeout(SHORT);
    let out = t.run(&command).await?.stdout_text();
    let remote = out.split_whitespace().next().unwrap_or_default();
    if remote != sha256 {
        return Err(failed(t, format!("sha256sum {path}"), format!("the uploaded snapshot has sha256 {remote}, the local file {sha256}")));
    }
    super::snapshot::status(t, tool, path).await
}

/// Stops the member. `disable`: also keep it from starting at boot. A member that is not the seed has no data
/// directory after the restore, and it must not start before it is added again (a config left from before
/// kubeha wrote `initial-cluster-state: existing` would even let it start a cluster of its own); `kubeha
/// apply` enables and starts it when it adds it.
pub async fn stop(t: &dyn Transport, disable: bool) -> Result<(), SnapshotError> {
    // A control plane that never had etcd installed has nothing to stop.
    let then = if disable { " && systemctl disable etcd.service 2>&1" } else { "" };
    let script = format!("if systemctl cat etcd.service >/dev/null 2>&1; then systemctl stop etcd.service{then}; fi");
    t.run(&Command::script(script).timeout(Duration::from_secs(120))).await?;
    Ok(())
}

/// Moves the data directory aside (when there is one), never over an existing directory; returns where to.
pub async fn set_aside(t: &dyn Transport, layout: &Layout, stamp: &str) -> Result<Option<String>, SnapshotError> {
    let data = quote::quote(&layout.data_dir);
    let aside = format!("{}.before-restore-{stamp}", layout.data_dir);
    let script = format!(
        "set -e\nif [ ! -e {data} ]; then exit 0; fi\nif [ -e {a} ]; then echo '{a} exists already' >&2; exit 1; fi\nmv -T -- {data} {a}\necho moved\n",
        a = quote::quote(&aside)
    );
    let out = t.run(&Command::script(script).timeout(SHORT)).await?.stdout_text();
    Ok(out.lines().any(|l| l == "moved").then_some(aside))
}

/// Restores `snapshot` into a fresh one-member data directory for member `name`, then puts it where etcd
/// expects it, owned by the user the unit runs etcd as. Refuses when the data directory exists (it must have
/// been set aside). The restore writes into `<data dir>.restoring-<stamp>` first, so a failure midway leaves
/// nothing that etcd would start from.
pub async fn restore(t: &dyn Transport, layout: &Layout, tool: Tool, bump_revision: bool, spec: &RestoreSpec<'_>, stamp: &str) -> Result<(), SnapshotError> {
    let data = quote::quote(&layout.data_dir);
    let work = format!("{}.restoring-{stamp}", layout.data_dir);
    let restore_spec = RestoreSpec { data_dir: &work, bump_revision, ..*spec };
    let args = restore_args(tool, &restore_spec);
    // kubeha's unit runs etcd as root (no User=); should one be set, the data must belong to that user.
    let script = format!(
        "set -e\numask 077\nif [ -e {data} ]; then echo '{d} exists: it must be moved aside first' >&2; exit 1; fi\n\
         rm -rf -- {w}\nrc=0; ETCDCTL_API=3 {restore} >/dev/null || rc=$?\nif [ $rc -ne 0 ]; then rm -rf -- {w}; exit $rc; fi\n\
         mv -T -- {w} {data}\nu=$(systemctl show -p User --value etcd.service 2>/dev/null || true)\n\
         if [ -n \"$u\" ] && [ \"$u\" != root ]; then chown -R -- \"$u\": {data}; fi\n",
        d = layout.data_dir,
        w = quote::quote(&work),
        restore = quote::join(&args),
    );
    let out = t.exec(&Command::script(script).timeout(Duration::from_secs(600))).await?;
    if !out.status.success() {
        let shown: Vec<&str> = args.iter().take(3).map(String::as_str).collect();
        return Err(failed(
            t,
            format!("{} {} --name {} --data-dir {work}", shown.join(" "), spec.snapshot, spec.name),
            format!("{} ({})", complaint(&out.stderr), out.status),
        ));
    }
    Ok(())
}

/// Starts the restored member and waits (bounded) until it is the healthy leader of its one-member cluster;
/// returns its revision and key count.
pub async fn start(t: &dyn Transport, layout: &Layout, name: &str, within: Duration) -> Result<KeyCount, SnapshotError> {
    // The restored member holds the cluster from now on: its config is set to `existing` once it serves.
    member::start(t, false, None, true, false).await.map_err(|e| failed(t, "systemctl start etcd.service", e.to_string()))?;
    let gate = Gate::new(GateWhen::After, format!("restore on {name}"), &[name.to_string()]);
    let started = Instant::now();
    loop {
        let last = match view(t).await {
            Ok(v) => match evaluate(&gate, &v) {
                Ok(()) => break,
                Err(e) => e.to_string(),
            },
            Err(e) => e.to_string(),
        };
        if started.elapsed() > within {
            return Err(failed(t, "systemctl start etcd.service", format!("etcd did not become healthy within {} s: {last}", within.as_secs())));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    count_keys(t, layout).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ssh::fake::RecordingTransport;

    #[tokio::test]
    async fn restore_goes_through_a_fresh_directory_and_names_the_command_on_failure() {
        let spec = RestoreSpec { snapshot: "/s.db", name: "cp-1", peer_url: "https://198.18.0.11:2380", token: "t", data_dir: "", bump_revision: false };
        let t = RecordingTransport::new("cp-1").respond(
            "snapshot restore",
            Ok(crate::ssh::Output { status: crate::ssh::ExitStatus::Code(1), stdout: vec![], stderr: b"Error: seek /s.db: invalid argument\n".to_vec() }),
        );
        let err = restore(&t, &Layout::default(), Tool::Etcdctl, true, &spec, "20261125T161702Z").await.unwrap_err().to_string();
        assert_eq!(
            err,
            "cp-1: `etcdctl snapshot restore /s.db --name cp-1 --data-dir /var/lib/etcd.restoring-20261125T161702Z` failed: \
             Error: seek /s.db: invalid argument (exit status 1)"
        );
        let script = &t.scripts()[0];
        assert!(script.contains("--data-dir /var/lib/etcd.restoring-20261125T161702Z"), "{script}");
        assert!(!script.contains("--bump-revision"), "etcdctl has no such flag: {script}");
        assert!(script.contains("mv -T -- /var/lib/etcd.restoring-20261125T161702Z /var/lib/etcd"), "{script}");
    }
}

//! etcd snapshots on a control plane: take one on the member of that host, verify it, keep the newest few,
//! and fetch one to the operator's machine. The planner calls [`save`] before every membership change
//! (reason like `before-remove-cp-2`); `kubeha etcd snapshot` calls it with reason `manual`.
//!
//! A snapshot is written as `<name>.db.part`, checked with `snapshot status`, and only then renamed to
//! `<name>.db`: a run killed at any point leaves either a verified `.db` or a `.part` that is never listed,
//! never restored from, and removed by a later save once it is an hour old. Retrying a save just takes a
//! new snapshot (names carry the second), and rotation bounds how many accumulate.
use super::etcd::{LOCAL_ENDPOINT, etcdctl_env};
use crate::digest::sha256_hex;
use crate::etcd::snapshot::{self, KEEP, KeyCount, SnapshotStatus, Tool};
use crate::paths::{ETCD_DATA_DIR, ETCDCTL_ENV};
use crate::paths::{RESTORE_DIR, SNAPSHOT_DIR};
use crate::ssh::{Command, SshError, Transport, quote::quote};
use serde::Serialize;
use std::time::Duration;

/// etcdctl 3.4 waits forever for a member that does not answer a snapshot request (its command timeout
/// does not apply to `snapshot save`); this bounds it on the host. A member answers in well under a second
/// per 100 MB, and the database quota is 2 GB by default, 8 GB at most.
const SAVE_TIMEOUT_SECONDS: u64 = 600;
/// A `.part` this old belongs to no save that is still running.
const STALE_PART_MINUTES: u32 = 60;
const SHORT: Duration = Duration::from_secs(60);

/// Where things are on a control plane. Everything uses [`Layout::default`] (the paths kubeha installs);
/// the integration test points it at a test etcd and a temporary folder.
#[derive(Clone, Debug)]
pub struct Layout {
    /// The etcdctl variables (CA, client certificate and key).
    pub etcdctl_env: String,
    /// The member's client URL as its own host reaches it.
    pub endpoint: String,
    pub snapshot_dir: String,
    pub data_dir: String,
    pub restore_dir: String,
}

impl Default for Layout {
    fn default() -> Self {
        Layout {
            etcdctl_env: ETCDCTL_ENV.into(),
            endpoint: LOCAL_ENDPOINT.into(),
            snapshot_dir: SNAPSHOT_DIR.into(),
            data_dir: ETCD_DATA_DIR.into(),
            restore_dir: RESTORE_DIR.into(),
        }
    }
}

/// A verified snapshot file on a host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotInfo {
    pub host: String,
    pub path: String,
    pub sha256: String,
    pub revision: i64,
    /// `totalKey` of `snapshot status`: keys in etcd's key bucket, older revisions included.
    pub total_keys: u64,
    pub size_bytes: u64,
    /// RFC 3339, UTC, from the host's clock (it is in the file name).
    pub taken_at: String,
    /// Older snapshots removed to keep the newest KEEP.
    pub removed: Vec<String>,
    /// Why removing older snapshots failed, if it did: the new snapshot is good all the same.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotation_problem: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(transparent)]
    Ssh(#[from] SshError),
    /// `command` is the operation in words (`etcdctl snapshot save /path`), not the whole script.
    #[error("{host}: `{command}` failed: {detail}")]
    Failed { host: String, command: String, detail: String },
}

pub(super) fn failed(t: &dyn Transport, command: impl Into<String>, detail: impl Into<String>) -> SnapshotError {
    SnapshotError::Failed { host: t.host().into(), command: command.into(), detail: detail.into() }
}

/// What a failing etcd tool said, without its JSON log lines (etcdctl 3.4 logs every step of a snapshot on
/// stderr; the reason is on the `Error:` line).
pub fn complaint(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('{')).collect();
    if lines.is_empty() { text.lines().last().unwrap_or("no error output").trim().to_string() } else { lines.join("; ") }
}

/// Takes a snapshot of the member on `t` (a voting member: a learner refuses), verifies it, and removes
/// the oldest so that KEEP remain. The file is 0600 root in /var/lib/kubeha/snapshots (0700).
pub async fn save(t: &dyn Transport, reason: &str) -> Result<SnapshotInfo, SnapshotError> {
    save_with(t, reason, &Layout::default()).await
}

pub async fn save_with(t: &dyn Transport, reason: &str, layout: &Layout) -> Result<SnapshotInfo, SnapshotError> {
    let reason = snapshot::sanitize_reason(reason);
    let dir = quote(&layout.snapshot_dir);
    // The name comes from the host's clock: one clock per folder keeps the names in the order taken.
    // `endpoint status` first: it fails within seconds when the member does not answer, where `snapshot save`
    // would wait for SAVE_TIMEOUT_SECONDS.
    let script = format!(
        "set -e\numask 077\nmkdir -p -- {dir}\nchmod 0700 -- {dir}\n\
         find {dir} -maxdepth 1 -name '*.part' -mmin +{STALE_PART_MINUTES} -exec rm -f -- {{}} +\n\
         f={dir}/$(date -u +%Y%m%dT%H%M%SZ)-{reason}.db\n\
         if [ -e \"$f\" ]; then sleep 1; f={dir}/$(date -u +%Y%m%dT%H%M%SZ)-{reason}.db; fi\n\
         if [ -e \"$f\" ]; then echo \"$f exists already\" >&2; exit 1; fi\n\
         echo \"path=$f\"\necho \"etcdutl=$(command -v etcdutl || true)\"\n\
         {env} etcdctl --dial-timeout=3s --command-timeout=10s endpoint status >/dev/null\n\
         rc=0; timeout {SAVE_TIMEOUT_SECONDS} etcdctl --dial-timeout=3s snapshot save \"$f.part\" >/dev/null || rc=$?\n\
         if [ $rc -ne 0 ]; then rm -f -- \"$f.part\" \"$f.part.part\"; [ $rc -ne 124 ] || echo 'Error: no answer within {SAVE_TIMEOUT_SECONDS} s' >&2; exit $rc; fi\n",
        env = etcdctl_env(&layout.etcdctl_env, &layout.endpoint),
    );
    let out = t.exec(&Command::script(script).timeout(Duration::from_secs(SAVE_TIMEOUT_SECONDS + 60))).await?;
    let text = out.stdout_text();
    let field = |key: &str| text.lines().find_map(|l| l.strip_prefix(key)).map(str::to_string);
    let path = field("path=").unwrap_or_default();
    if !out.status.success() {
        let target = if path.is_empty() { format!("{}/…", layout.snapshot_dir) } else { format!("{path}.part") };
        return Err(failed(t, format!("etcdctl snapshot save {target}"), format!("{} ({})", complaint(&out.stderr), out.status)));
    }
    let tool = Tool::from_probe(&field("etcdutl=").unwrap_or_default());
    let part = format!("{path}.part");
    let status = match status(t, tool, &part).await {
        Ok(s) => s,
        Err(e) => {
            // A file that etcd cannot read is no snapshot: it must never be mistaken for one.
            let _ = t.exec(&Command::argv(["rm", "-f", "--", &part]).timeout(SHORT)).await;
            return Err(e);
        }
    };

    let finish = format!(
        "set -e\nchmod 0600 -- {p}\nchown 0:0 -- {p}\nsha256sum < {p} | cut -d' ' -f1\nstat -c %s -- {p}\nmv -f -- {p} {f}\nls -1 -- {dir}\n",
        p = quote(&part),
        f = quote(&path),
    );
    let finished = t.run(&Command::script(finish).timeout(SHORT)).await?.stdout_text();
    let mut lines = finished.lines();
    let sha256 = lines.next().unwrap_or_default().trim().to_string();
    let size_bytes = lines.next().and_then(|l| l.trim().parse().ok()).unwrap_or(0);
    let names: Vec<String> = lines.map(str::to_string).collect();
    let name = path.rsplit('/').next().unwrap_or_default().to_string();

    let old = snapshot::to_delete(&names, KEEP, &name);
    let mut rotation_problem = None;
    if !old.is_empty() {
        let paths: Vec<String> = old.iter().map(|n| format!("{}/{n}", layout.snapshot_dir)).collect();
        let rm = Command::argv(["rm", "-f", "--"].into_iter().map(String::from).chain(paths)).timeout(SHORT);
        if let Err(e) = t.run(&rm).await {
            rotation_problem = Some(e.to_string());
        }
    }
    Ok(SnapshotInfo {
        host: t.host().into(),
        taken_at: snapshot::taken_at(&name).unwrap_or_default(),
        path,
        sha256,
        revision: status.revision,
        total_keys: status.total_keys,
        size_bytes,
        removed: if rotation_problem.is_none() { old } else { Vec::new() },
        rotation_problem,
    })
}

/// `snapshot status -w json` of a file on the host: the proof that etcd can read it.
pub async fn status(t: &dyn Transport, tool: Tool, path: &str) -> Result<SnapshotStatus, SnapshotError> {
    let words = [tool.program(), "snapshot", "status", path, "-w", "json"];
    // etcdctl 3.4 speaks the v2 API unless told otherwise by its variable.
    let script = format!("ETCDCTL_API=3 {}", crate::ssh::quote::join(words));
    let out = t.exec(&Command::script(script).timeout(SHORT)).await?;
    let what = words.join(" ");
    if !out.status.success() {
        return Err(failed(t, what, format!("{} ({})", complaint(&out.stderr), out.status)));
    }
    snapshot::parse_status(&out.stdout_text()).map_err(|e| failed(t, what, e.to_string()))
}

/// Whether the host has etcdutl, and whether its restore knows `--bump-revision` (etcd 3.5 late, 3.6+).
pub async fn tool(t: &dyn Transport) -> Result<(Tool, bool), SnapshotError> {
    let script = "if command -v etcdutl >/dev/null 2>&1; then echo etcdutl; \
                  if etcdutl snapshot restore --help 2>&1 | grep -q -e --bump-revision; then echo bump; fi; else echo etcdctl; fi";
    let out = t.run(&Command::script(script).timeout(SHORT)).await?.stdout_text();
    let tool = if out.lines().next() == Some("etcdutl") { Tool::Etcdutl } else { Tool::Etcdctl };
    Ok((tool, out.lines().any(|l| l == "bump")))
}

/// The snapshot's bytes, checked against the hash taken on the host. Held in memory: snapshots are bounded by
/// etcd's database quota (2 GB by default).
pub async fn download(t: &dyn Transport, info: &SnapshotInfo) -> Result<Vec<u8>, SnapshotError> {
    let timeout = Duration::from_secs(120 + (info.size_bytes >> 20));
    let command = Command::argv(["cat", "--", &info.path]).timeout(timeout);
    let bytes = t.run(&command).await?.stdout;
    let sha = sha256_hex(&bytes);
    if sha != info.sha256 {
        return Err(failed(
            t,
            format!("cat {}", info.path),
            format!("downloaded {} bytes with sha256 {sha}, but the file on the host has sha256 {} ({} bytes)", bytes.len(), info.sha256, info.size_bytes),
        ));
    }
    Ok(bytes)
}

/// The live revision and number of keys of the member on `t`.
pub async fn count_keys(t: &dyn Transport, layout: &Layout) -> Result<KeyCount, SnapshotError> {
    let script = format!(
        "{} etcdctl --dial-timeout=3s --command-timeout=10s get '' --prefix --keys-only --limit=1 -w json",
        etcdctl_env(&layout.etcdctl_env, &layout.endpoint)
    );
    let out = t.exec(&Command::script(script).timeout(SHORT)).await?;
    let what = "etcdctl get '' --prefix --keys-only --limit=1";
    if !out.status.success() {
        return Err(failed(t, what, format!("{} ({})", complaint(&out.stderr), out.status)));
    }
    snapshot::parse_key_count(&out.stdout_text()).map_err(|e| failed(t, what, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ssh::ExitStatus;
    use crate::ssh::fake::RecordingTransport;

    fn ok(stdout: &str) -> Result<crate::ssh::Output, SshError> {
        Ok(crate::ssh::Output { status: ExitStatus::Code(0), stdout: stdout.into(), stderr: Vec::new() })
    }

    const TAKEN: &str = "/var/lib/kubeha/snapshots/20261125T161702Z-before-remove-cp-2.db";

    fn listing(n: usize) -> String {
        (0..n).map(|i| format!("2026110{i}T000000Z-x.db\n")).collect::<String>() + "20261125T161702Z-before-remove-cp-2.db\nmine.db\n"
    }

    #[tokio::test]
    async fn save_verifies_then_renames_then_rotates() {
        let t = RecordingTransport::new("cp-1")
            .respond("snapshot save", ok(&format!("path={TAKEN}\netcdutl=\n")))
            .on("snapshot status", "{\"hash\":1,\"revision\":42,\"totalKey\":9,\"totalSize\":24576}\n")
            .on("sha256sum", format!("abc123\n24608\n{}", listing(6)));
        let info = save(&t, "before-remove cp-2").await.unwrap();
        assert_eq!(info.path, TAKEN);
        assert_eq!((info.revision, info.total_keys, info.size_bytes, info.sha256.as_str()), (42, 9, 24608, "abc123"));
        assert_eq!(info.taken_at, "2026-11-25T16:17:02Z");
        assert_eq!(info.removed, vec!["20261101T000000Z-x.db", "20261100T000000Z-x.db"]);
        let scripts = t.scripts();
        assert!(scripts[0].contains("-before-remove-cp-2.db") && scripts[0].contains("snapshot save \"$f.part\""), "{}", scripts[0]);
        assert_eq!(scripts[1], format!("ETCDCTL_API=3 etcdctl snapshot status {TAKEN}.part -w json"));
        assert!(scripts[2].contains(&format!("mv -f -- {TAKEN}.part {TAKEN}")), "{}", scripts[2]);
        assert_eq!(scripts[3], "rm -f -- /var/lib/kubeha/snapshots/20261101T000000Z-x.db /var/lib/kubeha/snapshots/20261100T000000Z-x.db");
        assert_eq!(scripts.len(), 4);
    }

    #[tokio::test]
    async fn an_unreadable_snapshot_is_removed_and_reported() {
        let failing = crate::ssh::Output { status: ExitStatus::Code(1), stdout: Vec::new(), stderr: b"Error: invalid database\n".to_vec() };
        let t = RecordingTransport::new("cp-2")
            .respond("snapshot save", ok(&format!("path={TAKEN}\netcdutl=/usr/bin/etcdutl\n")))
            .respond("snapshot status", Ok(failing));
        let err = save(&t, "manual").await.unwrap_err().to_string();
        assert_eq!(err, format!("cp-2: `etcdutl snapshot status {TAKEN}.part -w json` failed: Error: invalid database (exit status 1)"));
        let scripts = t.scripts();
        assert_eq!(scripts.last().unwrap(), &format!("rm -f -- {TAKEN}.part"));
        assert!(!scripts.iter().any(|s| s.contains("mv -f")), "never renamed");
    }

    #[tokio::test]
    async fn a_failed_save_names_host_and_command_without_the_json_log() {
        let stderr = b"{\"level\":\"info\",\"msg\":\"created temporary db file\"}\nError: context deadline exceeded\n".to_vec();
        let t = RecordingTransport::new("cp-3")
            .respond("snapshot save", Ok(crate::ssh::Output { status: ExitStatus::Code(1), stdout: format!("path={TAKEN}\n").into(), stderr }));
        let err = save(&t, "manual").await.unwrap_err().to_string();
        assert_eq!(err, format!("cp-3: `etcdctl snapshot save {TAKEN}.part` failed: Error: context deadline exceeded (exit status 1)"));
    }
}

//! The etcd backup timer on a control plane (templates/etcd/etcd-backup.sh and its units): enabling it,
//! running it once, and reading what it left (the backups and the status file) for `status`, `verify` and
//! `kubeha etcd backups list|pull`. The pure rules are in `etcd::backup`.
use crate::digest::sha256_hex;
use crate::etcd::backup::{self, HostBackups, RemoteBackup};
use crate::paths::{ETCD_BACKUP_SCRIPT, ETCD_BACKUP_SERVICE, ETCD_BACKUP_STATUS, ETCD_BACKUP_TIMER};
use crate::ssh::{Command, SshError, Transport, quote::quote};
use std::time::Duration;

pub const TIMER: &str = "kubeha-etcd-backup.timer";
pub const SERVICE: &str = "kubeha-etcd-backup.service";
/// A run is bounded by the service's TimeoutStartSec (900 s); a little more here.
const RUN_TIMEOUT: Duration = Duration::from_secs(960);
const SHORT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(transparent)]
    Ssh(#[from] SshError),
    #[error("{host}: {message}")]
    Failed { host: String, message: String },
}

/// Enables the timer and starts it; `restart` after its files changed (systemd reads a changed OnCalendar
/// only at a daemon-reload and a restart of the timer).
pub async fn enable_timer(t: &dyn Transport, restart: bool) -> Result<(), SshError> {
    let verb = if restart { "restart" } else { "start" };
    let script = format!("systemctl daemon-reload && systemctl enable {TIMER} >/dev/null 2>&1 && systemctl {verb} {TIMER}");
    t.run(&Command::script(script)).await.map(|_| ())
}

/// Stops and disables the timer and removes the script and units; the backups and the status file stay (the
/// operator decides about data, and `kubeha etcd backups list` still finds them once backups are on again).
pub async fn remove(t: &dyn Transport) -> Result<(), SshError> {
    let files = [ETCD_BACKUP_TIMER, ETCD_BACKUP_SERVICE, ETCD_BACKUP_SCRIPT].map(quote).join(" ");
    let script = format!("systemctl disable --now {TIMER} >/dev/null 2>&1; rm -f -- {files} && systemctl daemon-reload");
    t.run(&Command::script(script)).await.map(|_| ())
}

/// Runs the backup service once and waits for it. A failure is reported with the error the script left in
/// its status file (its own output is in the journal, not on systemctl's).
pub async fn run_now(t: &dyn Transport) -> Result<(), BackupError> {
    let script = format!("systemctl start {SERVICE}; rc=$?; cat {} 2>/dev/null; exit $rc", quote(ETCD_BACKUP_STATUS));
    let out = t.exec(&Command::script(script).timeout(RUN_TIMEOUT)).await?;
    if out.status.success() {
        return Ok(());
    }
    let why = backup::parse_status(&out.stdout_text()).ok().and_then(|s| s.last_error).unwrap_or_else(|| format!("see `journalctl -u {SERVICE}`"));
    Err(BackupError::Failed { host: t.host().into(), message: format!("{SERVICE} failed ({}): {why}", out.status) })
}

/// Lists `dir`'s backups with their sizes and checksums, then the status file (`etcd::backup::parse_listing`).
pub fn listing_script(dir: &str) -> String {
    format!(
        "if cd -- {d} 2>/dev/null; then for f in etcd-*.db; do [ -f \"$f\" ] || continue; \
         printf 'backup %s %s %s\\n' \"$(stat -c %s -- \"$f\")\" \"$(cut -c1-64 < \"$f.sha256\" 2>/dev/null || echo -)\" \"$f\"; done; fi\n\
         echo status\ncat -- {s} 2>/dev/null\ntrue\n",
        d = quote(dir),
        s = quote(ETCD_BACKUP_STATUS),
    )
}

/// What the control plane on `t` has in `dir`.
pub async fn list(t: &dyn Transport, dir: &str) -> Result<HostBackups, BackupError> {
    let out = t.run(&Command::script(listing_script(dir)).timeout(SHORT)).await?;
    backup::parse_listing(&out.stdout_text()).map_err(|message| BackupError::Failed { host: t.host().into(), message })
}

/// The status file the script left on `t`; None before its first run.
pub async fn read_status(t: &dyn Transport) -> Result<Option<backup::BackupStatus>, BackupError> {
    let script = format!("cat -- {} 2>/dev/null || true", quote(ETCD_BACKUP_STATUS));
    let text = t.run(&Command::script(script).timeout(SHORT)).await?.stdout_text();
    if text.trim().is_empty() {
        return Ok(None);
    }
    backup::parse_status(&text).map(Some).map_err(|message| BackupError::Failed { host: t.host().into(), message })
}

/// The bytes of one backup, checked against the digest of its `.sha256`. Held in memory, as a snapshot
/// download is: etcd's database quota bounds it (2 GB by default).
pub async fn download(t: &dyn Transport, dir: &str, b: &RemoteBackup) -> Result<Vec<u8>, BackupError> {
    let fail = |message: String| BackupError::Failed { host: t.host().into(), message };
    let want = b.sha256.as_deref().ok_or_else(|| fail(format!("{}: no .sha256 beside it", b.name)))?;
    let path = format!("{dir}/{}", b.name);
    let timeout = Duration::from_secs(120 + (b.size_bytes >> 20));
    let bytes = t.run(&Command::argv(["cat", "--", &path]).timeout(timeout)).await?.stdout;
    let have = sha256_hex(&bytes);
    if have != want {
        return Err(fail(format!("{path}: downloaded {} bytes with sha256 {have}, its .sha256 says {want}", bytes.len())));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ssh::ExitStatus;
    use crate::ssh::fake::RecordingTransport;

    #[tokio::test]
    async fn the_timer_is_restarted_only_when_its_files_changed() {
        let fake = RecordingTransport::new("cp-1").on("systemctl", "");
        enable_timer(&fake, true).await.unwrap();
        enable_timer(&fake, false).await.unwrap();
        let scripts = fake.scripts();
        assert_eq!(scripts[0], format!("systemctl daemon-reload && systemctl enable {TIMER} >/dev/null 2>&1 && systemctl restart {TIMER}"));
        assert!(scripts[1].ends_with(&format!("systemctl start {TIMER}")), "{}", scripts[1]);
    }

    #[tokio::test]
    async fn turning_backups_off_removes_the_timer_and_its_files_but_no_backup() {
        let fake = RecordingTransport::new("cp-1").on("systemctl", "");
        remove(&fake).await.unwrap();
        let script = &fake.scripts()[0];
        assert!(script.starts_with(&format!("systemctl disable --now {TIMER} ")), "{script}");
        assert!(script.contains(&format!("rm -f -- {ETCD_BACKUP_TIMER} {ETCD_BACKUP_SERVICE} {ETCD_BACKUP_SCRIPT} &&")), "{script}");
        assert!(!script.contains("etcd-backups") && !script.contains(ETCD_BACKUP_STATUS), "{script}");
    }

    #[tokio::test]
    async fn a_failed_run_reports_the_error_of_the_status_file() {
        let status = r#"{"lastAttempt":"2026-12-03T14:00:00Z","result":"failed","message":"backup failed","lastError":"etcd has no leader (seen from https://10.0.0.1:2379)","lastSuccess":null}"#;
        let out = crate::ssh::Output { status: ExitStatus::Code(1), stdout: status.into(), stderr: Vec::new() };
        let fake = RecordingTransport::new("cp-2").respond("systemctl start", Ok(out));
        let err = run_now(&fake).await.unwrap_err().to_string();
        assert_eq!(err, format!("cp-2: {SERVICE} failed (exit status 1): etcd has no leader (seen from https://10.0.0.1:2379)"));
    }

    #[tokio::test]
    async fn a_download_whose_digest_differs_is_refused() {
        let fake = RecordingTransport::new("cp-1").on("cat", "not the snapshot");
        let b = RemoteBackup { name: "etcd-20261203T140000Z-r3.db".into(), taken_at: String::new(), revision: 3, size_bytes: 16, sha256: Some("0".repeat(64)) };
        let err = download(&fake, "/var/lib/kubeha/etcd-backups", &b).await.unwrap_err().to_string();
        assert!(err.contains("its .sha256 says 0000"), "{err}");
        let good = RemoteBackup { sha256: Some(sha256_hex(b"not the snapshot")), ..b };
        assert_eq!(download(&fake, "/var/lib/kubeha/etcd-backups", &good).await.unwrap(), b"not the snapshot");
    }
}

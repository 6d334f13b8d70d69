//! The backup part of `kubeha status`: per control plane, what the backup timer's status file says, and
//! whether the cluster's newest backup is within its limit (`etcd::backup::freshness`, as `verify` checks).
use crate::etcd::backup::{self, BackupStatus};
use crate::inventory::Inventory;
use serde::Serialize;
use std::collections::BTreeMap;

/// Per reachable control plane: its status file (None before the first run), or why it could not be read.
pub type Seen = BTreeMap<String, Result<Option<BackupStatus>, String>>;

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupSummary {
    pub max_age_seconds: u64,
    /// Whether the newest backup over all control planes is within the limit.
    pub fresh: bool,
    pub detail: String,
    pub hosts: Vec<HostBackup>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HostBackup {
    pub host: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<BackupStatus>,
    /// The line `status` prints for it.
    pub sentence: String,
}

/// None when backups are off.
pub fn summary(inv: &Inventory, seen: &Seen, now: i64) -> Option<BackupSummary> {
    let max_age = inv.etcd.backup.as_ref()?.schedule.max_age_seconds;
    let mut statuses = Vec::new();
    let mut hosts = Vec::new();
    for h in inv.control_planes() {
        let (status, sentence) = match seen.get(&h.name) {
            None => (None, "not reachable".to_string()),
            Some(Err(e)) => (None, format!("status file unreadable: {e}")),
            Some(Ok(None)) => (None, "none yet (the backup never ran here)".to_string()),
            Some(Ok(Some(s))) => {
                statuses.push((h.name.clone(), s.clone()));
                (Some(s.clone()), sentence(s, now))
            }
        };
        hosts.push(HostBackup { host: h.name.clone(), status, sentence });
    }
    let (fresh, detail) = match backup::freshness(&statuses, now, max_age) {
        Ok(d) => (true, d),
        Err(d) => (false, d),
    };
    Some(BackupSummary { max_age_seconds: max_age, fresh, detail, hosts })
}

/// "last backup 12 min ago (revision 41, etcd-….db)", "last run failed at …: …", "skipped: not the leader …".
pub fn sentence(s: &BackupStatus, now: i64) -> String {
    let last = match &s.last_success {
        Some(l) => format!("last backup here {} ago (revision {}, {})", backup::age_text(now - l.unix), l.revision, l.file),
        None => "no backup taken here yet".to_string(),
    };
    let at = s.last_attempt.as_deref().unwrap_or("?");
    match (s.result.as_deref(), &s.last_error) {
        (Some("ok"), _) => last,
        (Some("failed"), Some(e)) => format!("last run FAILED at {at}: {e}; {last}"),
        (_, _) => format!("last run at {at}: {}; {last}", s.message.as_deref().unwrap_or("?")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::etcd::backup::LastSuccess;

    fn lab() -> Inventory {
        crate::inventory::load(std::path::Path::new("inventories/lab.yaml")).unwrap().inventory.unwrap()
    }

    #[test]
    fn each_control_plane_says_what_its_last_run_did() {
        let now = 1_000_000;
        let ok = BackupStatus {
            last_attempt: Some("2026-12-03T14:00:00Z".into()),
            result: Some("ok".into()),
            message: Some("saved".into()),
            last_error: None,
            last_success: Some(LastSuccess {
                time: String::new(),
                unix: now - 720,
                file: "etcd-20261203T140000Z-r41.db".into(),
                size: 1,
                revision: 41,
                total_keys: 3,
                sha256: String::new(),
            }),
        };
        let skipped = BackupStatus { result: Some("skipped".into()), message: Some("skipped: not the leader".into()), last_success: None, ..ok.clone() };
        let seen: Seen = BTreeMap::from([("cp-1".to_string(), Ok(Some(ok))), ("cp-2".to_string(), Ok(Some(skipped))), ("cp-3".to_string(), Ok(None))]);
        let s = summary(&lab(), &seen, now).unwrap();
        assert!(s.fresh, "{}", s.detail);
        let lines: Vec<&str> = s.hosts.iter().map(|h| h.sentence.as_str()).collect();
        assert_eq!(
            lines,
            [
                "last backup here 12 min ago (revision 41, etcd-20261203T140000Z-r41.db)",
                "last run at 2026-12-03T14:00:00Z: skipped: not the leader; no backup taken here yet",
                "none yet (the backup never ran here)"
            ]
        );
        let none = summary(&lab(), &BTreeMap::new(), now).unwrap();
        assert!(!none.fresh && none.detail == "no control plane has a successful etcd backup", "{}", none.detail);
        assert_eq!(none.hosts[0].sentence, "not reachable");
    }
}

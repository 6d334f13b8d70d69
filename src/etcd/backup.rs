//! Scheduled backups, the pure parts: the names the backup script gives its snapshots, retention, the status
//! file it leaves, and what `kubeha etcd backups pull` copies. The script is templates/etcd/etcd-backup.sh;
//! the effects over SSH are in `phases::backup`.
//!
//! A backup is `etcd-<UTC stamp>-r<revision>.db` beside `<same>.db.sha256` (the hex digest and the name, as
//! `sha256sum` writes it): the stamp sorts the names by age, the revision says how far the data goes.
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

const PREFIX: &str = "etcd-";
const SUFFIX: &str = ".db";
pub const CHECKSUM_SUFFIX: &str = ".sha256";
const STAMP_LEN: usize = "20261203T140000Z".len();

/// A backup file name, taken apart.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct BackupName {
    /// `20261203T140000Z`, UTC.
    pub stamp: String,
    pub revision: i64,
}

impl BackupName {
    pub fn parse(name: &str) -> Option<BackupName> {
        let stem = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
        let (stamp, revision) = stem.split_once("-r")?;
        let stamp_ok = stamp.len() == STAMP_LEN
            && stamp.bytes().enumerate().all(|(i, b)| match i {
                8 => b == b'T',
                15 => b == b'Z',
                _ => b.is_ascii_digit(),
            });
        let digits = !revision.is_empty() && revision.bytes().all(|b| b.is_ascii_digit());
        let revision = revision.parse::<i64>().ok().filter(|_| digits)?;
        stamp_ok.then(|| BackupName { stamp: stamp.to_string(), revision })
    }

    pub fn file_name(&self) -> String {
        format!("{PREFIX}{}-r{}{SUFFIX}", self.stamp, self.revision)
    }

    /// `2026-12-03T14:00:00Z`.
    pub fn taken_at(&self) -> String {
        let s = &self.stamp;
        format!("{}-{}-{}T{}:{}:{}Z", &s[0..4], &s[4..6], &s[6..8], &s[9..11], &s[11..13], &s[13..15])
    }
}

/// Whether `name` is a backup kubeha's script wrote: the only files retention ever deletes.
pub fn is_backup_name(name: &str) -> bool {
    BackupName::parse(name).is_some()
}

/// The checksum file of a backup.
pub fn checksum_name(name: &str) -> String {
    format!("{name}{CHECKSUM_SUFFIX}")
}

/// The backups to delete so that the newest `keep` remain (by name, i.e. by time); other files are never
/// named. Each deleted backup takes its checksum file with it (the caller removes both).
pub fn to_prune(names: &[String], keep: usize) -> Vec<String> {
    let mut backups: Vec<&String> = names.iter().filter(|n| is_backup_name(n)).collect();
    backups.sort_unstable_by(|a, b| b.cmp(a));
    backups.dedup();
    backups.into_iter().skip(keep.max(1)).cloned().collect()
}

/// The digest in a `.sha256` file (`<hex>  <name>` or just `<hex>`), if it is one.
pub fn parse_checksum(text: &str) -> Option<String> {
    let hex = text.split_whitespace().next()?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then(|| hex.to_ascii_lowercase())
}

/// One backup on a control plane, as `backups list` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoteBackup {
    pub name: String,
    pub taken_at: String,
    pub revision: i64,
    pub size_bytes: u64,
    /// From the `.sha256` beside it; None when that is missing or unreadable (such a backup is not pulled).
    pub sha256: Option<String>,
}

/// The status file the script leaves after every run (paths::ETCD_BACKUP_STATUS).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupStatus {
    pub last_attempt: Option<String>,
    /// `ok`, `skipped` (not the leader) or `failed`.
    pub result: Option<String>,
    pub message: Option<String>,
    /// The error of the last attempt, None when it did not fail.
    pub last_error: Option<String>,
    pub last_success: Option<LastSuccess>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LastSuccess {
    pub time: String,
    /// Unix seconds of `time`: what ages are computed from.
    pub unix: i64,
    pub file: String,
    pub size: u64,
    pub revision: i64,
    pub total_keys: u64,
    pub sha256: String,
}

pub fn parse_status(text: &str) -> Result<BackupStatus, String> {
    serde_json::from_str(text.trim()).map_err(|e| format!("the backup status file is not what kubeha's backup script writes: {e}"))
}

/// The newest successful backup over all control planes (host, success), what the age checks look at.
pub fn newest<'a>(statuses: impl IntoIterator<Item = (&'a str, &'a BackupStatus)>) -> Option<(&'a str, &'a LastSuccess)> {
    statuses.into_iter().filter_map(|(h, s)| s.last_success.as_ref().map(|l| (h, l))).max_by_key(|(_, l)| l.unix)
}

/// What one control plane has: its backups (oldest first) and its status file, if the script ever ran.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HostBackups {
    pub backups: Vec<RemoteBackup>,
    pub status: Option<BackupStatus>,
    /// Why the status file could not be read, when it exists but is not what the script writes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_problem: Option<String>,
}

/// The listing line of one file: `backup <size> <sha256 or -> <name>` (see `phases::backup::LISTING`); then
/// a line `status`, and the status file's contents after it.
pub fn parse_listing(output: &str) -> Result<HostBackups, String> {
    let (files, status) = match output.split_once("\nstatus\n") {
        Some((files, status)) => (files, status),
        None => match output.strip_prefix("status\n") {
            Some(status) => ("", status),
            None => return Err(format!("the backup listing was cut short: {:?}", output.lines().last().unwrap_or_default())),
        },
    };
    let mut out = HostBackups::default();
    for line in files.lines().filter(|l| !l.is_empty()) {
        let mut words = line.splitn(4, ' ');
        let (Some("backup"), Some(size), Some(sha), Some(name)) = (words.next(), words.next(), words.next(), words.next()) else {
            return Err(format!("cannot understand {line:?} in the backup listing"));
        };
        let Some(parsed) = BackupName::parse(name) else { continue };
        let size_bytes = size.parse().map_err(|_| format!("cannot understand the size in {line:?}"))?;
        out.backups.push(RemoteBackup {
            name: name.to_string(),
            taken_at: parsed.taken_at(),
            revision: parsed.revision,
            size_bytes,
            sha256: parse_checksum(sha),
        });
    }
    out.backups.sort_by(|a, b| a.name.cmp(&b.name));
    if !status.trim().is_empty() {
        match parse_status(status) {
            Ok(s) => out.status = Some(s),
            Err(e) => out.status_problem = Some(e),
        }
    }
    Ok(out)
}

/// "45 s", "12 min", "3 h 5 min", "2 d 4 h": an age as people on call read it.
pub fn age_text(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..60 => format!("{s} s"),
        60..3_600 => format!("{} min", s / 60),
        3_600..86_400 if s % 3_600 < 60 => format!("{} h", s / 3_600),
        3_600..86_400 => format!("{} h {} min", s / 3_600, s % 3_600 / 60),
        _ if s % 86_400 < 3_600 => format!("{} d", s / 86_400),
        _ => format!("{} d {} h", s / 86_400, s % 86_400 / 3_600),
    }
}

/// Whether the cluster's newest backup (over every control plane's status) is younger than `max_age`
/// seconds: what `verify` checks and `status` warns about. Ok says which one it is; Err why it does not do.
/// No backup at all is an Err as well: `apply` runs the first one when it installs the timer, so a cluster
/// without one has a timer that fails (the errors are quoted) or none installed.
pub fn freshness(statuses: &[(String, BackupStatus)], now: i64, max_age: u64) -> Result<String, String> {
    let limit = age_text(i64::try_from(max_age).unwrap_or(i64::MAX));
    let failures: Vec<String> =
        statuses.iter().filter_map(|(h, s)| s.last_error.as_ref().filter(|_| s.result.as_deref() == Some("failed")).map(|e| format!("{h}: {e}"))).collect();
    let failed = if failures.is_empty() { String::new() } else { format!("; last run failed on {}", failures.join("; ")) };
    let Some((host, newest)) = newest(statuses.iter().map(|(h, s)| (h.as_str(), s))) else {
        return Err(format!("no control plane has a successful etcd backup{failed}"));
    };
    let age = now - newest.unix;
    let what = format!("{} on {host}, {} old (revision {})", newest.file, age_text(age), newest.revision);
    if age > i64::try_from(max_age).unwrap_or(i64::MAX) {
        return Err(format!("the newest etcd backup is {what}: older than the {limit} limit{failed}"));
    }
    Ok(format!("newest {what}, limit {limit}{failed}"))
}

/// What `pull` does with one backup found on a control plane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PullChoice {
    /// Not in the folder yet (or there with other contents): download from `host`.
    Copy { host: String, backup: RemoteBackup },
    /// Already in the folder with the same digest.
    Skip { name: String, reason: &'static str },
}

/// The pull of the backups of every control plane into a folder that holds `local` (name -> sha256 of the
/// file there) and keeps `keep`: each name once (the same snapshot seen on two hosts is copied from the
/// first), skipped when the folder has it with the digest its `.sha256` states, or when it would not be among
/// the newest `keep` afterwards (retention would delete it at once), and never copied without a `.sha256`.
pub fn plan_pull(remote: &[(String, Vec<RemoteBackup>)], local: &BTreeMap<String, String>, keep: usize) -> Vec<PullChoice> {
    let mut all: Vec<&String> = local.keys().chain(remote.iter().flat_map(|(_, list)| list.iter().map(|b| &b.name))).collect();
    all.sort_unstable_by(|a, b| b.cmp(a));
    all.dedup();
    let wanted: std::collections::BTreeSet<&String> = all.into_iter().take(keep.max(1)).collect();
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for (host, backups) in remote {
        for b in backups {
            if !seen.insert(b.name.clone()) {
                continue;
            }
            if !wanted.contains(&b.name) {
                out.push(PullChoice::Skip { name: b.name.clone(), reason: "older than the newest `keep` backups: retention would delete it" });
                continue;
            }
            out.push(match (&b.sha256, local.get(&b.name)) {
                (None, _) => PullChoice::Skip { name: b.name.clone(), reason: "no readable .sha256 beside it on the host" },
                (Some(want), Some(have)) if want == have => PullChoice::Skip { name: b.name.clone(), reason: "already here, sha256 matches" },
                _ => PullChoice::Copy { host: host.clone(), backup: b.clone() },
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn names_carry_time_and_revision() {
        let n = BackupName::parse("etcd-20261203T140000Z-r12345.db").unwrap();
        assert_eq!((n.stamp.as_str(), n.revision), ("20261203T140000Z", 12345));
        assert_eq!(n.taken_at(), "2026-12-03T14:00:00Z");
        assert_eq!(n.file_name(), "etcd-20261203T140000Z-r12345.db");
        for bad in [
            "etcd-20261203T140000Z-r12345.db.sha256",
            "etcd-20261203T140000Z-r.db",
            "etcd-20261203T140000Z.db",
            "etcd-2026120T140000Z-r1.db",
            "20261203T140000Z-manual.db",
            "etcd-20261203T140000Z-r1.db.tmp",
            "etcd-20261203X140000Z-r1.db",
            "etcd-20261203T140000Z-r99999999999999999999.db",
            "etcd-20261203T140000Z-r-1.db",
        ] {
            assert!(!is_backup_name(bad), "{bad}");
        }
    }

    #[test]
    fn retention_keeps_the_newest_and_touches_only_backups() {
        let all = names(&[
            "etcd-20261203T120000Z-r10.db",
            "etcd-20261203T140000Z-r30.db",
            "etcd-20261203T130000Z-r20.db",
            "etcd-20261203T110000Z-r5.db.sha256",
            "etcd-20261203T110000Z-r5.db",
            "notes.txt",
            "20261125T161702Z-manual.db",
        ]);
        assert_eq!(to_prune(&all, 2), names(&["etcd-20261203T120000Z-r10.db", "etcd-20261203T110000Z-r5.db"]));
        assert!(to_prune(&all, 4).is_empty());
        assert_eq!(to_prune(&all, 0).len(), 3, "keep is at least 1");
    }

    #[test]
    fn checksums_are_read_as_sha256sum_writes_them() {
        let hex = "a".repeat(64);
        assert_eq!(parse_checksum(&format!("{hex}  etcd-20261203T140000Z-r1.db\n")), Some(hex.clone()));
        assert_eq!(parse_checksum(&hex.to_uppercase()), Some(hex));
        assert_eq!(parse_checksum("abc  x.db"), None);
        assert_eq!(parse_checksum(""), None);
    }

    fn backup(name: &str, sha: Option<&str>) -> RemoteBackup {
        let n = BackupName::parse(name).unwrap();
        RemoteBackup { name: name.into(), taken_at: n.taken_at(), revision: n.revision, size_bytes: 10, sha256: sha.map(str::to_string) }
    }

    #[test]
    fn pull_copies_what_is_new_or_different_once() {
        let (a, b, c, d) = ("etcd-20261203T120000Z-r10.db", "etcd-20261203T130000Z-r20.db", "etcd-20261203T140000Z-r30.db", "etcd-20261203T150000Z-r40.db");
        let remote = vec![
            ("cp-1".to_string(), vec![backup(a, Some("11")), backup(b, Some("22"))]),
            ("cp-2".to_string(), vec![backup(b, Some("22")), backup(c, Some("33")), backup(d, None)]),
        ];
        let local = BTreeMap::from([(a.to_string(), "11".to_string()), (b.to_string(), "stale".to_string())]);
        let choices = plan_pull(&remote, &local, 10);
        assert_eq!(choices.len(), 4, "{choices:?}");
        assert_eq!(choices[0], PullChoice::Skip { name: a.into(), reason: "already here, sha256 matches" });
        assert!(matches!(&choices[1], PullChoice::Copy { host, backup } if host == "cp-1" && backup.name == b), "a differing local file is replaced");
        assert!(matches!(&choices[2], PullChoice::Copy { host, backup } if host == "cp-2" && backup.name == c));
        assert!(matches!(&choices[3], PullChoice::Skip { name, .. } if name == d), "never copied unchecked");
        // Keeping 2, only the two newest over the folder and the hosts are worth copying.
        let choices = plan_pull(&remote, &local, 2);
        let copied: Vec<&str> =
            choices.iter().filter_map(|c| if let PullChoice::Copy { backup, .. } = c { Some(backup.name.as_str()) } else { None }).collect();
        assert_eq!(copied, [c]);
        assert!(choices.contains(&PullChoice::Skip { name: a.into(), reason: "older than the newest `keep` backups: retention would delete it" }));
    }

    fn succeeded(unix: i64, revision: i64) -> BackupStatus {
        let file = format!("etcd-20261203T140000Z-r{revision}.db");
        let last = LastSuccess { time: String::new(), unix, file, size: 1, revision, total_keys: 1, sha256: String::new() };
        BackupStatus { result: Some("ok".into()), last_success: Some(last), ..BackupStatus::default() }
    }

    #[test]
    fn freshness_looks_at_the_newest_backup_of_all_control_planes() {
        let now = 1_000_000;
        let failed = BackupStatus { result: Some("failed".into()), last_error: Some("etcd has no leader".into()), ..BackupStatus::default() };
        let skipped = BackupStatus { result: Some("skipped".into()), ..BackupStatus::default() };
        let fresh = [("cp-1".to_string(), succeeded(now - 9_000, 10)), ("cp-2".to_string(), succeeded(now - 600, 20)), ("cp-3".to_string(), skipped.clone())];
        assert_eq!(freshness(&fresh, now, 7_200).unwrap(), "newest etcd-20261203T140000Z-r20.db on cp-2, 10 min old (revision 20), limit 2 h");
        let stale = [("cp-1".to_string(), succeeded(now - 9_000, 10)), ("cp-2".to_string(), failed.clone())];
        assert_eq!(
            freshness(&stale, now, 7_200).unwrap_err(),
            "the newest etcd backup is etcd-20261203T140000Z-r10.db on cp-1, 2 h 30 min old (revision 10): older than the 2 h limit; last run failed on cp-2: etcd has no leader"
        );
        assert_eq!(freshness(&[("cp-1".to_string(), skipped)], now, 7_200).unwrap_err(), "no control plane has a successful etcd backup");
        assert_eq!(freshness(&[], now, 7_200).unwrap_err(), "no control plane has a successful etcd backup");
        let ages: Vec<String> = [59, 61, 7_200, 9_000, 172_800, 90_000].into_iter().map(age_text).collect();
        assert_eq!(ages, ["59 s", "1 min", "2 h", "2 h 30 min", "2 d", "1 d 1 h"]);
    }

    #[test]
    fn listings_parse_with_and_without_status() {
        let hex = "b".repeat(64);
        let text = format!(
            "backup 20512 {hex} etcd-20261203T140000Z-r30.db\nbackup 20400 - etcd-20261203T130000Z-r20.db\nbackup 1 - stray.db\nstatus\n{}\n",
            r#"{"lastAttempt":"2026-12-03T14:00:00Z","result":"failed","message":"backup failed","lastError":"etcd has no leader","lastSuccess":null}"#
        );
        let h = parse_listing(&text).unwrap();
        assert_eq!(h.backups.iter().map(|b| b.name.as_str()).collect::<Vec<_>>(), ["etcd-20261203T130000Z-r20.db", "etcd-20261203T140000Z-r30.db"]);
        assert_eq!((h.backups[1].size_bytes, h.backups[1].sha256.as_deref()), (20512, Some(hex.as_str())));
        assert_eq!(h.backups[0].sha256, None);
        assert_eq!(h.status.unwrap().last_error.as_deref(), Some("etcd has no leader"));
        let empty = parse_listing("status\n").unwrap();
        assert!(empty.backups.is_empty() && empty.status.is_none());
        assert!(parse_listing("backup 1 - etcd-20261203T130000Z-r20.db\n").is_err(), "cut short");
        assert!(parse_listing("status\n{broken").unwrap().status_problem.is_some());
    }

    #[test]
    fn the_status_file_parses_and_the_newest_success_wins() {
        let ok = r#"{"lastAttempt":"2026-12-03T14:00:01Z","result":"ok","message":"saved","lastError":null,
            "lastSuccess":{"time":"2026-12-03T14:00:01Z","unix":1796392801,"file":"etcd-20261203T140001Z-r7.db","size":20512,"revision":7,"totalKeys":3,"sha256":"ab"}}"#;
        let skipped = r#"{"lastAttempt":"2026-12-03T15:00:00Z","result":"skipped","message":"skipped: not the leader","lastError":null,"lastSuccess":null}"#;
        let (a, b) = (parse_status(ok).unwrap(), parse_status(skipped).unwrap());
        assert_eq!(a.last_success.as_ref().unwrap().revision, 7);
        assert_eq!(b.result.as_deref(), Some("skipped"));
        let (host, newest) = newest([("cp-1", &b), ("cp-2", &a)]).unwrap();
        assert_eq!((host, newest.unix), ("cp-2", 1796392801));
        assert!(parse_status("not json").unwrap_err().contains("backup status file"));
    }
}

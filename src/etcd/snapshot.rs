//! etcd snapshots, the pure parts: the names and rotation of the snapshot files kubeha keeps on control
//! planes, the parsers of `snapshot status -w json` and of a key count, and the arguments of a one-member
//! restore. The effects (save, download, restore over SSH) are in `phases::snapshot` and `phases::restore`.
use serde::Deserialize;

/// How many snapshot files a control plane keeps; older ones are deleted after each new one is verified.
pub const KEEP: usize = 5;

/// Which program reads and restores snapshot files on a host. `etcdctl snapshot save` exists in every
/// version, but `snapshot status` and `snapshot restore` moved to `etcdutl` in 3.5 (deprecated in etcdctl)
/// and were removed from etcdctl in 3.6; so etcdutl is used whenever the host has it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    Etcdctl,
    Etcdutl,
}

impl Tool {
    pub fn program(self) -> &'static str {
        match self {
            Tool::Etcdctl => "etcdctl",
            Tool::Etcdutl => "etcdutl",
        }
    }

    /// The answer of `command -v etcdutl` (empty when it is missing).
    pub fn from_probe(etcdutl_path: &str) -> Tool {
        if etcdutl_path.trim().is_empty() { Tool::Etcdctl } else { Tool::Etcdutl }
    }
}

/// What `snapshot status -w json` says about a snapshot file. `hash` is etcd's own CRC32 of the database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotStatus {
    pub hash: u32,
    pub revision: i64,
    pub total_keys: u64,
    pub total_size: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot read {what}: {message}")]
pub struct ParseError {
    what: &'static str,
    message: String,
}

/// Go prints these fields without `omitempty`, so a missing one means the output is not a status.
#[derive(Deserialize)]
struct RawStatus {
    hash: u32,
    revision: i64,
    #[serde(rename = "totalKey")]
    total_key: u64,
    #[serde(rename = "totalSize")]
    total_size: u64,
}

/// Parses the status JSON. etcdutl may log to the same stream in some builds, so the last line that holds a
/// JSON object is taken.
pub fn parse_status(stdout: &str) -> Result<SnapshotStatus, ParseError> {
    let line = stdout.lines().rev().map(str::trim).find(|l| l.starts_with('{')).unwrap_or_default();
    let raw: RawStatus =
        serde_json::from_str(line).map_err(|e| ParseError { what: "snapshot status output", message: format!("{e} (output: {:?})", clip(stdout)) })?;
    Ok(SnapshotStatus { hash: raw.hash, revision: raw.revision, total_keys: raw.total_key, total_size: raw.total_size })
}

/// The live key count and revision, from `etcdctl get "" --prefix --keys-only --limit=1 -w json`: etcd
/// counts every key of the range whatever the limit, and leaves `count` out when it is zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyCount {
    pub revision: i64,
    pub keys: u64,
}

#[derive(Deserialize)]
struct RawRange {
    header: RawHeader,
    #[serde(default)]
    count: u64,
}

#[derive(Deserialize)]
struct RawHeader {
    #[serde(default)]
    revision: i64,
}

pub fn parse_key_count(stdout: &str) -> Result<KeyCount, ParseError> {
    let raw: RawRange =
        serde_json::from_str(stdout.trim()).map_err(|e| ParseError { what: "etcdctl get output", message: format!("{e} (output: {:?})", clip(stdout)) })?;
    Ok(KeyCount { revision: raw.header.revision, keys: raw.count })
}

/// Error output is quoted into messages; a short head is enough to recognise it.
fn clip(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

/// Snapshot files are named `<UTC stamp>-<reason>.db`, the stamp like `20261125T161702Z`: sorting the names
/// sorts them by age, and the reason says why each was taken.
const STAMP_LEN: usize = "20261125T161702Z".len();

/// A reason usable in a file name: letters, digits, `.`, `_` and `-` kept, anything else becomes `-`.
pub fn sanitize_reason(reason: &str) -> String {
    let cleaned: String = reason.trim().chars().take(64).map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '-' }).collect();
    let cleaned = cleaned.trim_matches(|c| c == '.' || c == '-').to_string();
    if cleaned.is_empty() { "snapshot".into() } else { cleaned }
}

/// Whether `name` is a snapshot file kubeha wrote (only those are ever rotated away; an operator's own
/// files in the folder are left alone).
pub fn is_snapshot_name(name: &str) -> bool {
    let Some(stem) = name.strip_suffix(".db") else { return false };
    let (Some(stamp), Some(rest)) = (stem.get(..STAMP_LEN), stem.get(STAMP_LEN..)) else { return false };
    let stamp_ok = stamp.bytes().enumerate().all(|(i, b)| match i {
        8 => b == b'T',
        15 => b == b'Z',
        _ => b.is_ascii_digit(),
    });
    let reason = rest.strip_prefix('-').unwrap_or_default();
    stamp_ok && !reason.is_empty() && reason == sanitize_reason(reason)
}

/// `2026-11-25T16:17:02Z` from a snapshot file name (a path is fine too).
pub fn taken_at(name: &str) -> Option<String> {
    let base = name.rsplit('/').next().unwrap_or(name);
    if !is_snapshot_name(base) {
        return None;
    }
    let s = &base[..STAMP_LEN];
    Some(format!("{}-{}-{}T{}:{}:{}Z", &s[0..4], &s[4..6], &s[6..8], &s[9..11], &s[11..13], &s[13..15]))
}

/// The snapshot files to delete so that `keep` remain, the newest by name: the file just taken always stays
/// (even if a clock that went backwards gave it an older name), and the others fill the remaining places.
pub fn to_delete(names: &[String], keep: usize, just_taken: &str) -> Vec<String> {
    let mut others: Vec<&String> = names.iter().filter(|n| is_snapshot_name(n) && n.as_str() != just_taken).collect();
    others.sort_unstable_by(|a, b| b.cmp(a));
    others.into_iter().skip(keep.saturating_sub(1)).cloned().collect()
}

/// A restore into a one-member cluster: the member's name and peer URL, a fresh cluster token (a new
/// cluster identity, so the old members can never talk to the restored one), and the directory to create.
pub struct RestoreSpec<'a> {
    pub snapshot: &'a str,
    pub name: &'a str,
    pub peer_url: &'a str,
    pub token: &'a str,
    pub data_dir: &'a str,
    /// `--bump-revision` and `--mark-compacted` (etcdutl of 3.5.x late releases and 3.6+): every revision
    /// after the restore is larger than any a Kubernetes watch saw before it, and old watches are told to
    /// re-list. Older tools have no such flags.
    pub bump_revision: bool,
}

/// Larger than any number of writes a cluster makes between its last snapshot and its loss (etcd's own docs
/// suggest this order of magnitude).
pub const REVISION_BUMP: u64 = 1_000_000_000;

pub fn restore_args(tool: Tool, spec: &RestoreSpec) -> Vec<String> {
    let mut args: Vec<String> = vec![tool.program().into(), "snapshot".into(), "restore".into(), spec.snapshot.into()];
    args.extend(["--name".into(), spec.name.into()]);
    args.extend(["--initial-cluster".into(), format!("{}={}", spec.name, spec.peer_url)]);
    args.extend(["--initial-advertise-peer-urls".into(), spec.peer_url.into()]);
    args.extend(["--initial-cluster-token".into(), spec.token.into()]);
    args.extend(["--data-dir".into(), spec.data_dir.into()]);
    if spec.bump_revision && tool == Tool::Etcdutl {
        args.extend(["--bump-revision".into(), REVISION_BUMP.to_string(), "--mark-compacted".into()]);
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured from etcdctl 3.4.23 (Debian): `etcdctl snapshot status snap.db -w json` after three puts.
    const STATUS_3_4: &str = "{\"hash\":1358706555,\"revision\":4,\"totalKey\":7,\"totalSize\":24576}\n";

    #[test]
    fn parses_captured_status() {
        let s = parse_status(STATUS_3_4).unwrap();
        assert_eq!(s, SnapshotStatus { hash: 1358706555, revision: 4, total_keys: 7, total_size: 24576 });
        // etcdutl 3.6 adds a version; unknown fields are fine, and a log line before the JSON is skipped.
        let s = parse_status("{\"level\":\"info\"}\n{\"hash\":1,\"revision\":2,\"totalKey\":3,\"totalSize\":4,\"version\":\"3.6.0\"}\n").unwrap();
        assert_eq!(s.revision, 2);
    }

    #[test]
    fn failed_or_partial_status_is_an_error() {
        assert!(parse_status("").is_err());
        assert!(parse_status("Error: invalid database").is_err());
        assert!(parse_status("{\"hash\":1,\"revision\":2}").is_err(), "missing totalKey/totalSize");
    }

    #[test]
    fn parses_captured_key_count() {
        // Captured from etcdctl 3.4.23: `get "" --prefix --keys-only --limit=1 -w json`, three keys, then none.
        let three = r#"{"header":{"cluster_id":8646808374794573411,"member_id":14116598978390885805,"revision":4,"raft_term":3},"kvs":[{"key":"azE=","create_revision":2,"mod_revision":2,"version":1}],"more":true,"count":3}"#;
        assert_eq!(parse_key_count(three).unwrap(), KeyCount { revision: 4, keys: 3 });
        let none = r#"{"header":{"cluster_id":8646808374794573411,"member_id":14116598978390885805,"revision":4,"raft_term":3}}"#;
        assert_eq!(parse_key_count(none).unwrap(), KeyCount { revision: 4, keys: 0 });
    }

    #[test]
    fn reasons_become_safe_file_names() {
        assert_eq!(sanitize_reason("before-remove-cp-2"), "before-remove-cp-2");
        assert_eq!(sanitize_reason("../../etc/passwd x"), "etc-passwd-x");
        assert_eq!(sanitize_reason("$(rm -rf /)"), "rm--rf");
        assert_eq!(sanitize_reason("  "), "snapshot");
    }

    #[test]
    fn names_are_recognised_and_dated() {
        assert!(is_snapshot_name("20261125T161702Z-manual.db"));
        assert!(!is_snapshot_name("20261125T161702Z-manual.db.part"));
        assert!(!is_snapshot_name("20261125T161702Z-.db"));
        assert!(!is_snapshot_name("backup.db"));
        assert!(!is_snapshot_name("2026112XT161702Z-manual.db"));
        assert_eq!(taken_at("/var/lib/kubeha/snapshots/20261125T161702Z-manual.db").as_deref(), Some("2026-11-25T16:17:02Z"));
        assert_eq!(taken_at("mine.db"), None);
    }

    #[test]
    fn rotation_keeps_the_newest_and_always_the_one_just_taken() {
        let names: Vec<String> = (1..=7).map(|d| format!("2026110{d}T000000Z-before-add.db")).chain(["notes.txt".into(), "mine.db".into()]).collect();
        let just = "20261107T000000Z-before-add.db";
        assert_eq!(to_delete(&names, KEEP, just), vec!["20261102T000000Z-before-add.db".to_string(), "20261101T000000Z-before-add.db".to_string()]);
        // A clock that went backwards: the new file sorts oldest, yet it stays and only four others do.
        let mut names = names;
        names.push("20250101T000000Z-manual.db".into());
        let gone = to_delete(&names, KEEP, "20250101T000000Z-manual.db");
        assert!(!gone.contains(&"20250101T000000Z-manual.db".to_string()));
        assert_eq!(gone.len(), 3);
        assert!(to_delete(&["20261101T000000Z-a.db".into()], KEEP, "20261101T000000Z-a.db").is_empty());
    }

    #[test]
    fn restore_arguments() {
        let spec = RestoreSpec {
            snapshot: "/var/lib/kubeha/restore/s.db",
            name: "cp-1",
            peer_url: "https://198.18.0.11:2380",
            token: "lab-restore-1",
            data_dir: "/var/lib/etcd.restoring",
            bump_revision: true,
        };
        let ctl = restore_args(Tool::Etcdctl, &spec).join(" ");
        assert_eq!(
            ctl,
            "etcdctl snapshot restore /var/lib/kubeha/restore/s.db --name cp-1 --initial-cluster cp-1=https://198.18.0.11:2380 \
             --initial-advertise-peer-urls https://198.18.0.11:2380 --initial-cluster-token lab-restore-1 --data-dir /var/lib/etcd.restoring"
        );
        let utl = restore_args(Tool::Etcdutl, &spec).join(" ");
        assert!(utl.starts_with("etcdutl snapshot restore") && utl.ends_with("--bump-revision 1000000000 --mark-compacted"), "{utl}");
        assert_eq!(Tool::from_probe("/usr/local/bin/etcdutl\n"), Tool::Etcdutl);
        assert_eq!(Tool::from_probe(""), Tool::Etcdctl);
    }
}

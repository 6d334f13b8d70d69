//! Where a run leaves its traces on the operator's machine: `<base>/<cluster>/runs/<run id>/` holds one log per
//! host and the journal of completed steps, which lets the next run tell the operator what an interrupted run
//! had already done.
//!
//! Everything is private to the operator (folders 0700, files 0600): logs can hold cluster details, and the
//! redactor is a safety net, not a guarantee.
use super::clock;
use super::redact::Redactor;
use serde::{Deserialize, Serialize};
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

const DIR_MODE: u32 = 0o700;
const FILE_MODE: u32 = 0o600;
const JOURNAL_FILE: &str = "journal.jsonl";

/// `$KUBEHA_STATE_DIR`, else `$XDG_STATE_HOME/kubeha`, else `$HOME/.local/state/kubeha`, else
/// `/var/lib/kubeha/operator` (a service account without a home).
pub fn default_base() -> PathBuf {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    var("KUBEHA_STATE_DIR")
        .or_else(|| var("XDG_STATE_HOME").map(|d| d.join("kubeha")))
        .or_else(|| var("HOME").map(|d| d.join(".local/state/kubeha")))
        .unwrap_or_else(|| PathBuf::from("/var/lib/kubeha/operator"))
}

/// `YYYYMMDDTHHMMSSZ-<6 hex>`: sorting the names sorts the runs by start time; the random part keeps two runs
/// started in the same second apart.
pub fn new_run_id() -> String {
    let now = time::OffsetDateTime::now_utc();
    let mut random = [0u8; 3];
    if getrandom::fill(&mut random).is_err() {
        // No entropy source is no reason to refuse to run: the id only has to differ from the previous run's.
        let nanos = now.nanosecond() ^ std::process::id();
        random.copy_from_slice(&nanos.to_le_bytes()[..3]);
    }
    let stamp = clock::timestamp(now).replace(['-', ':'], "");
    format!("{stamp}-{}", crate::digest::hex(&random))
}

pub struct RunDir {
    path: PathBuf,
    run_id: String,
    redactor: Arc<Redactor>,
}

impl RunDir {
    /// Creates `base/<cluster>/runs/<run_id>/`, the missing parents included. The run folder itself must not exist
    /// yet: two runs writing one journal would make both unreadable.
    pub fn create(base: &Path, cluster: &str, run_id: &str) -> io::Result<RunDir> {
        let runs = runs_dir(base, plain_name(cluster, "cluster name")?);
        DirBuilder::new().recursive(true).mode(DIR_MODE).create(&runs)?;
        let path = runs.join(plain_name(run_id, "run id")?);
        DirBuilder::new().mode(DIR_MODE).create(&path)?;
        Ok(RunDir { path, run_id: run_id.to_string(), redactor: Arc::default() })
    }

    /// Scrub everything written to host logs and the journal.
    pub fn with_redactor(mut self, redactor: Arc<Redactor>) -> Self {
        self.redactor = redactor;
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// `<host>.log`, appended to: asking twice for the same host gives two handles on one file, which is fine.
    pub fn host_log(&self, host: &str) -> io::Result<HostLog> {
        let file = open_append(&self.path.join(format!("{}.log", plain_name(host, "host name")?)))?;
        Ok(HostLog { file: Arc::new(Mutex::new(file)), redactor: self.redactor.clone() })
    }

    pub fn journal(&self) -> io::Result<Journal> {
        let file = open_append(&self.journal_path())?;
        Ok(Journal { file: Arc::new(Mutex::new(file)), redactor: self.redactor.clone() })
    }

    pub fn journal_path(&self) -> PathBuf {
        self.path.join(JOURNAL_FILE)
    }
}

/// Names become path components; one with a slash or `..` would write outside the run folder.
fn plain_name<'a>(name: &'a str, what: &str) -> io::Result<&'a str> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{what} {name:?} cannot be used as a file name")));
    }
    Ok(name)
}

fn runs_dir(base: &Path, cluster: &str) -> PathBuf {
    base.join(cluster).join("runs")
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().append(true).create(true).mode(FILE_MODE).open(path)
}

/// A writer panicking while holding the lock leaves the file as usable as before: append-only, whole lines.
fn locked(file: &Mutex<File>) -> MutexGuard<'_, File> {
    file.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One host's log. Clones share the file, so the tasks working on a host can all write to it.
#[derive(Clone)]
pub struct HostLog {
    file: Arc<Mutex<File>>,
    redactor: Arc<Redactor>,
}

impl HostLog {
    /// Every line of `text` gets the timestamp, so multi-line command output stays greppable by time.
    pub fn line(&self, text: &str) -> io::Result<()> {
        let at = clock::now();
        // Scrub before splitting: a secret may span lines (a PEM key).
        let scrubbed = self.redactor.scrub(text);
        let mut record = String::with_capacity(scrubbed.len() + 32);
        for line in scrubbed.trim_end_matches('\n').split('\n') {
            record.push_str(&at);
            record.push(' ');
            record.push_str(line);
            record.push('\n');
        }
        // One write per call, under the lock: concurrent callers never interleave within a record.
        locked(&self.file).write_all(record.as_bytes())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum JournalEntry {
    Started { run_id: String, command: String, operator: String, at: String },
    StepDone { step_id: String, host: Option<String>, changed: bool, at: String, seconds: f64 },
    StepFailed { step_id: String, host: Option<String>, error: String, at: String },
    Finished { outcome: String, at: String },
}

impl JournalEntry {
    /// The free-text fields may quote remote output or the command line, and with them a secret.
    fn scrubbed(&self, redactor: &Redactor) -> JournalEntry {
        let mut entry = self.clone();
        match &mut entry {
            JournalEntry::Started { command, .. } => *command = redactor.scrub(command),
            JournalEntry::StepFailed { error, .. } => *error = redactor.scrub(error),
            JournalEntry::Finished { outcome, .. } => *outcome = redactor.scrub(outcome),
            JournalEntry::StepDone { .. } => {}
        }
        entry
    }
}

/// The record of what a run has done, one JSON object per line. Clones share the file.
#[derive(Clone)]
pub struct Journal {
    file: Arc<Mutex<File>>,
    redactor: Arc<Redactor>,
}

impl Journal {
    /// Durable when it returns: the entry must survive the process being killed right after the step.
    pub fn append(&self, entry: &JournalEntry) -> io::Result<()> {
        let mut line = serde_json::to_string(&entry.scrubbed(&self.redactor))?;
        line.push('\n');
        let mut file = locked(&self.file);
        file.write_all(line.as_bytes())?;
        file.sync_data()
    }
}

/// All entries of a journal. A last line without its newline is what a kill in the middle of `append` leaves: it
/// is dropped if it does not parse. Any other bad line is corruption and an error.
pub fn read(path: &Path) -> io::Result<Vec<JournalEntry>> {
    // Bytes, not a string: the cut may fall inside a multi-byte character.
    let bytes = std::fs::read(path)?;
    let complete = bytes.ends_with(b"\n");
    let lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').filter(|line| !line.is_empty()).collect();
    let mut entries = Vec::with_capacity(lines.len());
    for (index, line) in lines.iter().enumerate() {
        match serde_json::from_slice(line) {
            Ok(entry) => entries.push(entry),
            Err(_) if !complete && index + 1 == lines.len() => {}
            Err(e) => {
                let message = format!("{}: line {}: {e}", path.display(), index + 1);
                return Err(io::Error::new(io::ErrorKind::InvalidData, message));
            }
        }
    }
    Ok(entries)
}

/// The run folders of a cluster, oldest first. None (an empty list) if there is no state yet or it is unreadable:
/// the history only informs the operator, it never blocks a run.
pub fn previous_runs(base: &Path, cluster: &str) -> Vec<PathBuf> {
    let Ok(cluster) = plain_name(cluster, "cluster name") else { return Vec::new() };
    let Ok(entries) = std::fs::read_dir(runs_dir(base, cluster)) else { return Vec::new() };
    let mut runs: Vec<PathBuf> = entries.filter_map(Result::ok).filter(|e| e.file_type().is_ok_and(|t| t.is_dir())).map(|e| e.path()).collect();
    runs.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    runs
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interrupted {
    pub run_id: String,
    /// Step ids in the order they completed.
    pub done_steps: Vec<String>,
    /// The last step that failed, and its error.
    pub last_failed: Option<(String, String)>,
}

/// The latest run, if it started and never finished (killed, lost its connection, the laptop went to sleep...).
///
/// Runs without a readable `Started` entry are skipped: they never began changing anything (or are the current
/// run, created but not started yet). Once the latest started run did finish, older interrupted runs are history,
/// not something to resume from. Call it before this run appends its own `Started`.
pub fn last_interrupted(base: &Path, cluster: &str) -> Option<Interrupted> {
    previous_runs(base, cluster).iter().rev().find_map(|run| started_run(run)).and_then(|(run_id, entries)| interrupted(run_id, &entries))
}

/// The run's id and journal, if the journal records a start.
fn started_run(run: &Path) -> Option<(String, Vec<JournalEntry>)> {
    let entries = read(&run.join(JOURNAL_FILE)).ok()?;
    let run_id = entries.iter().find_map(|e| match e {
        JournalEntry::Started { run_id, .. } => Some(run_id.clone()),
        _ => None,
    })?;
    Some((run_id, entries))
}

fn interrupted(run_id: String, entries: &[JournalEntry]) -> Option<Interrupted> {
    let mut summary = Interrupted { run_id, done_steps: Vec::new(), last_failed: None };
    for entry in entries {
        match entry {
            JournalEntry::Finished { .. } => return None,
            JournalEntry::StepDone { step_id, .. } => summary.done_steps.push(step_id.clone()),
            JournalEntry::StepFailed { step_id, error, .. } => summary.last_failed = Some((step_id.clone(), error.clone())),
            JournalEntry::Started { .. } => {}
        }
    }
    Some(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).map(|m| m.permissions().mode() & 0o777).unwrap_or(0)
    }

    fn started(run_id: &str) -> JournalEntry {
        JournalEntry::Started { run_id: run_id.into(), command: "apply".into(), operator: "ops@laptop".into(), at: "2026-11-25T10:00:00Z".into() }
    }

    fn done(step: &str) -> JournalEntry {
        JournalEntry::StepDone { step_id: step.into(), host: Some("cp-1".into()), changed: true, at: "2026-11-25T10:00:01Z".into(), seconds: 1.5 }
    }

    fn finished() -> JournalEntry {
        JournalEntry::Finished { outcome: "success".into(), at: "2026-11-25T10:00:09Z".into() }
    }

    fn run_with(base: &Path, run_id: &str, entries: &[JournalEntry]) -> RunDir {
        let run = RunDir::create(base, "prod", run_id).expect("run dir");
        let journal = run.journal().expect("journal");
        for entry in entries {
            journal.append(entry).expect("append");
        }
        run
    }

    #[test]
    fn creates_private_folders() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let base = tmp.path().join("state");
        let run = RunDir::create(&base, "prod", "20261125T100000Z-abcdef").expect("create");
        assert_eq!(run.path(), base.join("prod/runs/20261125T100000Z-abcdef"));
        for dir in [base.clone(), base.join("prod"), base.join("prod/runs"), run.path().to_path_buf()] {
            assert_eq!(mode(&dir), 0o700, "{}", dir.display());
        }
        assert_eq!(RunDir::create(&base, "prod", "20261125T100000Z-abcdef").err().map(|e| e.kind()), Some(io::ErrorKind::AlreadyExists));
    }

    #[test]
    fn names_that_would_leave_the_run_folder_are_refused() {
        let tmp = tempfile::tempdir().expect("tempdir");
        assert!(RunDir::create(tmp.path(), "..", "r1").is_err());
        assert!(RunDir::create(tmp.path(), "prod", "../r1").is_err());
        let run = RunDir::create(tmp.path(), "prod", "r1").expect("create");
        assert!(run.host_log("../../evil").is_err());
    }

    #[test]
    fn host_log_lines_are_timestamped_scrubbed_and_private() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let redactor = Arc::new(Redactor::new(["abcdef.0123456789abcdef".to_string()]));
        let run = RunDir::create(tmp.path(), "prod", "r1").expect("create").with_redactor(redactor);
        let log = run.host_log("cp-1").expect("log");
        log.clone().line("kubeadm init --token abcdef.0123456789abcdef").expect("line");
        log.line("two\nlines\n").expect("line");
        let path = run.path().join("cp-1.log");
        assert_eq!(mode(&path), 0o600);
        let text = std::fs::read_to_string(&path).expect("read");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        for line in &lines {
            let (at, _) = line.split_once(' ').expect("timestamp");
            assert!(time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).is_ok(), "{at}");
        }
        assert!(lines[0].ends_with(" kubeadm init --token [redacted]"), "{}", lines[0]);
        assert!(lines[1].ends_with(" two") && lines[2].ends_with(" lines"), "{text}");
    }

    #[test]
    fn journal_round_trip_in_the_documented_format() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let failed = JournalEntry::StepFailed { step_id: "etcd/cp-2/start".into(), host: None, error: "timeout".into(), at: "t".into() };
        let run = run_with(tmp.path(), "r1", &[started("r1"), done("host/cp-1"), failed.clone(), finished()]);
        assert_eq!(mode(&run.journal_path()), 0o600);
        let text = std::fs::read_to_string(run.journal_path()).expect("read");
        let first = text.lines().next().unwrap_or_default();
        assert_eq!(first, r#"{"event":"started","runId":"r1","command":"apply","operator":"ops@laptop","at":"2026-11-25T10:00:00Z"}"#);
        assert!(text.contains(r#"{"event":"stepDone","stepId":"host/cp-1","host":"cp-1","changed":true,"#), "{text}");
        assert_eq!(read(&run.journal_path()).expect("read"), vec![started("r1"), done("host/cp-1"), failed, finished()]);
    }

    #[test]
    fn journal_errors_are_scrubbed() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let run = RunDir::create(tmp.path(), "prod", "r1").expect("create").with_redactor(Arc::new(Redactor::new(["s3cr3t-value".to_string()])));
        let failed = JournalEntry::StepFailed { step_id: "x".into(), host: None, error: "bad s3cr3t-value".into(), at: "t".into() };
        run.journal().and_then(|j| j.append(&failed)).expect("append");
        let text = std::fs::read_to_string(run.journal_path()).expect("read");
        assert!(text.contains("bad [redacted]") && !text.contains("s3cr3t"), "{text}");
    }

    #[test]
    fn truncated_last_line_is_ignored_but_corruption_is_not() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let run = run_with(tmp.path(), "r1", &[started("r1"), done("host/cp-1")]);
        let mut file = OpenOptions::new().append(true).open(run.journal_path()).expect("open");
        file.write_all(br#"{"event":"stepDone","stepId":"host/c"#).expect("write");
        assert_eq!(read(&run.journal_path()).expect("read"), vec![started("r1"), done("host/cp-1")]);
        file.write_all(b"\n").expect("write");
        assert_eq!(read(&run.journal_path()).err().map(|e| e.kind()), Some(io::ErrorKind::InvalidData));
    }

    #[test]
    fn run_ids_sort_by_time() {
        let id = new_run_id();
        let (stamp, random) = id.split_once('-').expect("dash");
        assert_eq!(stamp.len(), "20261125T100000Z".len(), "{id}");
        assert!(stamp.starts_with("20") && stamp.ends_with('Z') && stamp.as_bytes()[8] == b'T', "{id}");
        assert!(random.len() == 6 && random.chars().all(|c| c.is_ascii_hexdigit()), "{id}");
        assert!("20261125T100000Z-ffffff" < "20261125T100001Z-000000");
    }

    #[test]
    fn previous_runs_oldest_first() {
        let tmp = tempfile::tempdir().expect("tempdir");
        assert!(previous_runs(tmp.path(), "prod").is_empty());
        for id in ["20261125T110000Z-000001", "20261124T090000Z-ffffff", "20261125T100000Z-abcdef"] {
            RunDir::create(tmp.path(), "prod", id).expect("create");
        }
        let names: Vec<String> = previous_runs(tmp.path(), "prod").iter().filter_map(|p| p.file_name()?.to_str().map(String::from)).collect();
        assert_eq!(names, ["20261124T090000Z-ffffff", "20261125T100000Z-abcdef", "20261125T110000Z-000001"]);
    }

    #[test]
    fn last_interrupted_summarises_the_latest_unfinished_run() {
        let tmp = tempfile::tempdir().expect("tempdir");
        run_with(tmp.path(), "20261125T090000Z-000000", &[started("20261125T090000Z-000000"), finished()]);
        let failed = JournalEntry::StepFailed { step_id: "etcd/cp-2/start".into(), host: Some("cp-2".into()), error: "timeout".into(), at: "t".into() };
        run_with(tmp.path(), "20261125T100000Z-000000", &[started("20261125T100000Z-000000"), done("host/cp-1"), done("host/cp-2"), failed]);
        // The current run: created, not started yet.
        RunDir::create(tmp.path(), "prod", "20261125T110000Z-000000").expect("create");
        let summary = last_interrupted(tmp.path(), "prod").expect("interrupted");
        assert_eq!(summary.run_id, "20261125T100000Z-000000");
        assert_eq!(summary.done_steps, ["host/cp-1", "host/cp-2"]);
        assert_eq!(summary.last_failed, Some(("etcd/cp-2/start".to_string(), "timeout".to_string())));
    }

    #[test]
    fn nothing_to_resume_once_the_latest_run_finished() {
        let tmp = tempfile::tempdir().expect("tempdir");
        assert_eq!(last_interrupted(tmp.path(), "prod"), None);
        run_with(tmp.path(), "20261125T090000Z-000000", &[started("20261125T090000Z-000000"), done("host/cp-1")]);
        run_with(tmp.path(), "20261125T100000Z-000000", &[started("20261125T100000Z-000000"), finished()]);
        assert_eq!(last_interrupted(tmp.path(), "prod"), None);
    }
}

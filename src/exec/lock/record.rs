//! What a lock directory holds and what that means (pure): the holder record, a host's report of its lock
//! directory, and whether a lock found there may be taken over.
use super::HEARTBEAT_STALE_AFTER;
use serde::{Deserialize, Serialize};

/// The holder record, `holder.json` in the lock directory (one line of JSON).
///
/// Only `run_id` identifies the holder: 128 random bits, new for every run. The rest is for the operator
/// who finds the lock: host names and PIDs repeat across machines (two laptops called `ops`), so they
/// never decide anything. There is no heartbeat time in the record: the heartbeat is the record's mtime on
/// the host, read with the host's own clock, so operators' clocks that disagree cannot make a live holder
/// look stale (or a dead one look live).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Holder {
    pub run_id: String,
    /// `user@host` of the operator's machine.
    pub operator: String,
    pub operator_host: String,
    pub pid: u32,
    pub command: String,
    /// The operator's clock, for display only.
    pub started_unix: u64,
    /// The operator machine's /etc/machine-id and the holder process's start time (clock ticks after boot,
    /// /proc/PID/stat): together with `pid` they name one process on one machine, so a run started on the
    /// same machine can prove the holder dead (killed, machine rebooted) instead of waiting for its
    /// heartbeat to go stale. Empty/0 in records of older kubeha and where unreadable: then only the
    /// heartbeat decides.
    #[serde(default)]
    pub machine_id: String,
    #[serde(default)]
    pub process_start: u64,
}

impl Holder {
    /// The record for this process, with a fresh run id.
    pub fn for_this_run(command: &str) -> Self {
        let host = nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_else(|| "unknown".into());
        let user = std::env::var("SUDO_USER").or_else(|_| std::env::var("USER")).unwrap_or_else(|_| "unknown".into());
        Holder {
            run_id: new_run_id(),
            operator: format!("{user}@{host}"),
            operator_host: host,
            pid: std::process::id(),
            command: command.to_string(),
            started_unix: super::now_unix(),
            machine_id: this_machine_id(),
            process_start: process_start(std::process::id()).unwrap_or(0),
        }
    }

    /// Whether this holder is a process of this machine that no longer runs: its machine ID is ours and no
    /// process with its PID and start time exists (a reused PID has another start time). Never true for
    /// another machine's holder, whatever its host name, nor for a record without the identity fields.
    pub fn provably_dead(&self, me: &Holder, started: impl Fn(u32) -> Option<u64>) -> bool {
        let same_machine = !self.machine_id.is_empty() && self.machine_id == me.machine_id;
        same_machine && self.process_start != 0 && started(self.pid) != Some(self.process_start)
    }

    /// `heartbeat_age`: seconds since the record was last refreshed, by the host's clock.
    pub fn describe(&self, heartbeat_age: u64) -> String {
        let started = time::OffsetDateTime::from_unix_timestamp(i64::try_from(self.started_unix).unwrap_or(0))
            .map(crate::exec::clock::timestamp)
            .unwrap_or_else(|_| self.started_unix.to_string());
        format!("`{}` (run {}) by {} pid {}, started {started}, last heartbeat {heartbeat_age} s ago", self.command, self.run_id, self.operator, self.pid)
    }
}

fn this_machine_id() -> String {
    std::fs::read_to_string("/etc/machine-id").map(|s| s.trim().to_string()).unwrap_or_default()
}

/// A process's start time in clock ticks after boot (field 22 of /proc/PID/stat), `None` when no such
/// process runs. The command name (field 2) may hold spaces and parentheses: fields are counted after its
/// last ')'.
pub fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat_start_time(&stat)
}

fn stat_start_time(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    // After the name: field 3 (state) is the first; field 22 is the 20th.
    after_name.split_whitespace().nth(19)?.parse().ok()
}

/// 128 bits from the OS: two runs never draw the same id, wherever and whenever they start.
fn new_run_id() -> String {
    let mut id = [0u8; 16];
    if getrandom::fill(&mut id).is_err() {
        // No OS randomness is close to impossible on Linux; time and PID still tell this run from others.
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        id = (nanos ^ (u128::from(std::process::id()) << 96)).to_be_bytes();
    }
    crate::digest::hex(&id)
}

/// A host's lock directory as its report showed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Looked {
    /// No lock directory.
    Free,
    Taken(Seen),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    /// Seconds since the directory or its record was last written (a heartbeat touches the record), by the
    /// host's clock.
    pub age: u64,
    pub record: Record,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// A directory without a record: a run between its `mkdir` and its record, or one killed there.
    Missing,
    /// A record that is not a holder (empty, cut short, not ours to read). Its bytes, so that clearing it
    /// removes exactly what was judged and nothing written since.
    Unreadable(Vec<u8>),
    Holder(Holder),
}

/// The first line of a host's report (see `remote::SHOW`): `lock <now> <dir mtime|-> <record mtime|->`,
/// then the record's bytes as they are.
pub fn parse_report(stdout: &[u8]) -> Option<Looked> {
    let split = stdout.iter().position(|&b| b == b'\n')?;
    let (head, rest) = (std::str::from_utf8(&stdout[..split]).ok()?, &stdout[split + 1..]);
    let mut words = head.split_whitespace();
    if words.next() != Some("lock") {
        return None;
    }
    let now: u64 = words.next()?.parse().ok()?;
    let mtime = |w: Option<&str>| w.and_then(|w| w.parse::<u64>().ok());
    let (dir, record) = (mtime(words.next()), mtime(words.next()));
    let Some(dir) = dir else { return Some(Looked::Free) };
    let age = now.saturating_sub(dir.max(record.unwrap_or(0)));
    let record = match record {
        None => Record::Missing,
        Some(_) => serde_json::from_slice::<Holder>(rest).map_or_else(|_| Record::Unreadable(rest.to_vec()), Record::Holder),
    };
    Some(Looked::Taken(Seen { age, record }))
}

#[cfg(test)]
#[test]
fn the_start_time_is_read_after_a_command_name_with_spaces_and_parentheses() {
    let stat = "4242 (kube ha) (x)) S 1 4242 4242 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 4 0 987654 123456 789 18446744073709551615";
    assert_eq!(stat_start_time(stat), Some(987654));
    assert_eq!(stat_start_time("garbage"), None);
    assert!(process_start(std::process::id()).is_some_and(|t| t > 0), "this process runs");
}

/// Whether a lock found on a host may be taken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Our own record (an earlier attempt of this run got through, though its answer did not).
    Ours,
    /// Someone is, or may be, working: described for the operator.
    Live(String),
    /// Nothing has refreshed it for longer than a live holder ever lets pass: (what it is, why stale).
    /// Taken over only with --force-unlock, because a stale holder may still be inside a long step.
    Stale(String, String),
    /// A run of this machine that no longer exists (killed, or the machine rebooted): nobody can be
    /// inside a step of it, so it is taken over without --force-unlock.
    Dead(String),
}

impl Seen {
    /// Who or what holds the directory, for messages.
    pub fn describe(&self) -> String {
        match &self.record {
            Record::Holder(h) => h.describe(self.age),
            Record::Missing => format!("a lock directory without a holder record ({} s old; a run may be creating it)", self.age),
            Record::Unreadable(_) => format!("an unreadable holder record (last written {} s ago)", self.age),
        }
    }
}

/// Judged by the age of the last sign of life, never by host name or PID alone, which another machine may
/// share; only a holder of this very machine (machine ID) whose process is gone is known dead at once.
/// `started` reads a local process's start time (see `process_start`). A state without a readable record
/// is judged by age, so that nothing blocks forever.
pub fn judge(seen: &Seen, me: &Holder, started: impl Fn(u32) -> Option<u64>) -> Verdict {
    let silence = match &seen.record {
        Record::Holder(h) if h.run_id == me.run_id => return Verdict::Ours,
        Record::Holder(h) if h.provably_dead(me, &started) => return Verdict::Dead(seen.describe()),
        Record::Holder(_) => "no heartbeat",
        Record::Missing => "no holder record",
        Record::Unreadable(_) => "no readable record",
    };
    if seen.age <= HEARTBEAT_STALE_AFTER.as_secs() {
        return Verdict::Live(seen.describe());
    }
    Verdict::Stale(seen.describe(), format!("{silence} for {} s", seen.age))
}

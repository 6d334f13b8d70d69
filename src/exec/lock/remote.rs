//! The lock's shell snippets, one `sh` run each, and their answers.
//!
//! Every snippet that changes the lock directory first takes `flock` on a guard file beside it, so that a
//! check and the change it decides (is the record ours? then touch it / remove the directory) cannot
//! interleave with another kubeha run's. A host without `flock` still gets the atomic steps: `mkdir` of the
//! directory, and the record written to a temporary file and renamed into place, so that a reader sees no
//! record or a whole one. Variable parts (the directory, the run id) are quoted once, into shell variables.
use super::record::{self, Looked, Record, Seen};
use crate::ssh::{Command, SshError, Transport, quote};
use std::time::Duration;

pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);
/// Below COMMAND_TIMEOUT, so that a busy guard is reported as such rather than as a timeout.
const GUARD_WAIT_SECONDS: u32 = 15;

/// Prints the state of the lock directory in the form `record::parse_report` reads: the host's clock, the
/// directory's and the record's mtimes, then the record as it is.
const SHOW: &str = r#"printf 'lock %s %s %s\n' "$(date +%s)" "$(stat -c %Y "$d" 2>/dev/null || echo -)" "$(stat -c %Y "$f" 2>/dev/null || echo -)"
cat "$f" 2>/dev/null
true"#;

/// The variables every snippet uses, then the guard. `run_id` names the run the snippet acts for.
fn script(dir: &str, run_id: &str, body: &str) -> String {
    let (d, g) = (quote::quote(dir), quote::quote(&format!("{dir}.guard")));
    let p = quote::quote(&format!("\"runId\":\"{run_id}\""));
    let t = quote::quote(&format!(".holder.{run_id}.tmp"));
    format!(
        "umask 077\nd={d}; f=\"$d/holder.json\"; g={g}; p={p}; t=\"$d/\"{t}\nmkdir -p \"$(dirname \"$d\")\" || exit 1\n\
         if command -v flock >/dev/null 2>&1; then exec 9>>\"$g\" && flock -w {GUARD_WAIT_SECONDS} 9 || {{ echo \"the lock guard $g stays busy\" >&2; exit 1; }}; fi\n{body}\n"
    )
}

fn command(script: String) -> Command {
    Command::script(script).timeout(COMMAND_TIMEOUT)
}

fn report(t: &dyn Transport, command: &Command, stdout: &[u8]) -> Result<Looked, SshError> {
    record::parse_report(stdout).ok_or_else(|| SshError::CommandFailed {
        host: t.host().to_string(),
        command: command.script.clone(),
        status: crate::ssh::ExitStatus::Code(0),
        stderr: format!("unexpected answer about the lock directory: {:?}", String::from_utf8_lossy(stdout)),
    })
}

pub enum Attempt {
    Acquired,
    Found(Looked),
}

/// Takes the directory and places our record, or reports what is there.
pub async fn try_acquire(t: &dyn Transport, dir: &str, me: &record::Holder) -> Result<Attempt, SshError> {
    let body = format!(
        "if mkdir \"$d\" 2>/dev/null; then\n  if cat > \"$t\" && mv -f \"$t\" \"$f\"; then echo acquired; exit 0; fi\n  rm -rf \"$d\"; exit 1\nfi\n{SHOW}"
    );
    let record = serde_json::to_vec(me).unwrap_or_default();
    let command = command(script(dir, &me.run_id, &body)).stdin(record);
    let out = t.run(&command).await?;
    if out.stdout == b"acquired\n" {
        return Ok(Attempt::Acquired);
    }
    report(t, &command, &out.stdout).map(Attempt::Found)
}

pub enum Beat {
    Beat,
    /// The record is not ours any more: what is there instead.
    Lost(Looked),
}

/// Refreshes our record's mtime (the heartbeat), only while the record is ours.
pub async fn beat(t: &dyn Transport, dir: &str, run_id: &str) -> Result<Beat, SshError> {
    let body = format!("if grep -qF \"$p\" \"$f\" 2>/dev/null && touch -c \"$f\"; then echo beat; exit 0; fi\n{SHOW}");
    let command = command(script(dir, run_id, &body));
    let out = t.run(&command).await?;
    if out.stdout == b"beat\n" {
        return Ok(Beat::Beat);
    }
    report(t, &command, &out.stdout).map(Beat::Lost)
}

/// Removes the lock directory if the record is `run_id`'s: ours at release, or a holder judged stale.
pub async fn remove_if_held_by(t: &dyn Transport, dir: &str, run_id: &str) -> Result<(), SshError> {
    let body = "if grep -qF \"$p\" \"$f\" 2>/dev/null; then rm -rf \"$d\"; fi";
    t.run(&command(script(dir, run_id, body))).await.map(|_| ())
}

/// Removes a lock directory that was judged (stale, or forced) as `seen`, only while it is still in that
/// state: a record that changed since, or appeared, is someone's new lock and stays.
pub async fn clear(t: &dyn Transport, dir: &str, seen: &Seen) -> Result<(), SshError> {
    let (body, stdin) = match &seen.record {
        Record::Holder(h) => return remove_if_held_by(t, dir, &h.run_id).await,
        Record::Missing => ("if [ -d \"$d\" ] && [ ! -e \"$f\" ]; then rm -rf \"$d\"; fi", None),
        Record::Unreadable(bytes) => ("if [ -f \"$f\" ] && cmp -s - \"$f\"; then rm -rf \"$d\"; fi", Some(bytes.clone())),
    };
    let mut command = command(script(dir, "", body));
    command.stdin = stdin;
    t.run(&command).await.map(|_| ())
}

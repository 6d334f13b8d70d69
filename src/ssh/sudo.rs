//! Privilege and time limits, expressed as the command line the remote shell runs.
//!
//! Every command is wrapped in coreutils `timeout`, so the host itself stops a command that overruns: closing
//! the SSH channel alone does not kill a non-pty command, and a `signal` channel request cannot reach a
//! process that sudo started as root. `timeout` signals its whole process group, `-k` follows with SIGKILL.
use std::time::Duration;

use super::quote::quote;

/// Exit status of `timeout` when the limit was hit (and 128+9 when it had to SIGKILL).
pub const TIMEOUT_EXIT: u32 = 124;
pub const TIMEOUT_KILLED_EXIT: u32 = 137;

/// Seconds the command gets to react to SIGTERM before SIGKILL.
const KILL_AFTER_SECS: u64 = 2;

/// The remote command line: `[sudo -n --] timeout -k 2 SECS sh -c SCRIPT`.
pub fn wrap(script: &str, timeout: Duration, use_sudo: bool) -> String {
    // Round up so that sub-second limits do not become "0" (which means "no limit" to timeout).
    let millis = timeout.as_millis().max(1);
    let secs = format!("{}.{:03}", millis / 1000, millis % 1000);
    let inner = format!("timeout -k {KILL_AFTER_SECS} {secs} sh -c {}", quote(script));
    if use_sudo { format!("sudo -n -- {inner}") } else { inner }
}

/// The probe run once per connection before the first privileged command: it separates "sudo is not
/// allowed without a password" from the command's own failures.
pub const SUDO_PROBE: &str = "sudo -n -- true";

/// Explain a failed probe in the user's terms.
pub fn explain_probe_failure(user: &str, stderr: &str) -> String {
    let stderr = stderr.trim();
    if stderr.contains("password is required") || stderr.contains("terminal is required") {
        format!(
            "{stderr} (user {user:?} needs passwordless sudo: add `{user} ALL=(ALL) NOPASSWD: ALL` to a file in \
             /etc/sudoers.d, or log in as root)"
        )
    } else if stderr.is_empty() {
        format!("`{SUDO_PROBE}` failed for user {user:?}")
    } else {
        stderr.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_with_timeout_and_optional_sudo() {
        assert_eq!(wrap("echo 'hi'", Duration::from_secs(30), false), "timeout -k 2 30.000 sh -c 'echo '\\''hi'\\'''");
        assert_eq!(wrap("id -u", Duration::from_millis(1500), true), "sudo -n -- timeout -k 2 1.500 sh -c 'id -u'");
        assert!(wrap("x", Duration::ZERO, false).contains(" 0.001 "));
    }

    #[test]
    fn explains_password_prompt() {
        let m = explain_probe_failure("deploy", "sudo: a password is required\n");
        assert!(m.contains("NOPASSWD"), "{m}");
        assert!(m.contains("deploy"));
    }
}

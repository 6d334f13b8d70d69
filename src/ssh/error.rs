//! Classified SSH errors. Every variant names the host, and the command when one was running, so that a
//! failure in a 30-host run can be attributed without reading logs. Secrets never reach these messages:
//! commands carry secrets on stdin, and only the command text is recorded.
use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

use super::known_hosts::HostKeyProblem;

#[derive(Debug, Clone, Error)]
pub enum SshError {
    #[error("{host}: cannot resolve address {address:?}: {detail}")]
    Resolve { host: String, address: String, detail: String },

    #[error("{host}: connection to {address}:{port} refused or unreachable: {detail}")]
    Refused { host: String, address: String, port: u16, detail: String },

    #[error("{host}: timed out after {after:?} while {during}")]
    Timeout { host: String, during: String, after: Duration },

    #[error("{host}: authentication as {user:?} failed (tried: {tried})")]
    Auth { host: String, user: String, tried: String },

    #[error("{host}: cannot use identity file {path}: {detail}")]
    Key { host: String, path: PathBuf, detail: String },

    #[error("{host}: {problem}")]
    HostKey { host: String, problem: Box<HostKeyProblem> },

    #[error("{host}: sudo refused for `{command}`: {message}")]
    Sudo { host: String, command: String, message: String },

    #[error("{host}: `{command}` failed with {status}: {stderr}")]
    CommandFailed { host: String, command: String, status: ExitStatus, stderr: String },

    #[error("{host}: connection lost{}: {detail}", command.as_deref().map(|c| format!(" during `{c}`")).unwrap_or_default())]
    Disconnected { host: String, command: Option<String>, detail: String },

    /// The bastion in front of the host could not be used; `source` says why (and names the bastion).
    #[error("{host}: unreachable through bastion {bastion}: {source}")]
    ViaBastion { host: String, bastion: String, source: Box<SshError> },

    #[error("{host}: SSH protocol error{}: {detail}", command.as_deref().map(|c| format!(" during `{c}`")).unwrap_or_default())]
    Protocol { host: String, command: Option<String>, detail: String },
}

impl SshError {
    /// The host this error is about (the inventory name, not the address).
    pub fn host(&self) -> &str {
        match self {
            SshError::Resolve { host, .. }
            | SshError::Refused { host, .. }
            | SshError::Timeout { host, .. }
            | SshError::Auth { host, .. }
            | SshError::Key { host, .. }
            | SshError::HostKey { host, .. }
            | SshError::Sudo { host, .. }
            | SshError::CommandFailed { host, .. }
            | SshError::Disconnected { host, .. }
            | SshError::ViaBastion { host, .. }
            | SshError::Protocol { host, .. } => host,
        }
    }

    /// A short stable name for the class of failure, for reports and exit-code mapping.
    pub fn kind(&self) -> &'static str {
        match self {
            SshError::Resolve { .. } => "resolve",
            SshError::Refused { .. } => "refused",
            SshError::Timeout { .. } => "timeout",
            SshError::Auth { .. } | SshError::Key { .. } => "auth",
            SshError::HostKey { .. } => "host-key",
            SshError::Sudo { .. } => "sudo",
            SshError::CommandFailed { .. } => "command-failed",
            SshError::Disconnected { .. } => "disconnected",
            SshError::Protocol { .. } => "protocol",
            SshError::ViaBastion { source, .. } => source.kind(),
        }
    }
}

/// How a remote command ended. A command killed by a signal has no exit code.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum ExitStatus {
    Code(u32),
    Signal(String),
    /// The channel closed without the server reporting a status (seen when sshd dies).
    Unknown,
}

impl ExitStatus {
    pub fn success(&self) -> bool {
        *self == ExitStatus::Code(0)
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitStatus::Code(c) => write!(f, "exit status {c}"),
            ExitStatus::Signal(s) => write!(f, "signal {s}"),
            ExitStatus::Unknown => write!(f, "no exit status"),
        }
    }
}

//! SSH transport: how kubeha reaches hosts.
//!
//! Everything above this layer talks to a host through the [`Transport`] trait (exec, upload, read), so
//! planners and phases can be tested against [`fake::RecordingTransport`]. The real implementation is
//! [`session::SshSession`] (russh), created per host by [`pool::connect_each`] with bounded concurrency and reused
//! for every channel; [`targets`] connects inventory hosts with it.
//!
//! Configuration that is not in the inventory:
//! - `KUBEHA_SSH_KEY_PASSPHRASE`: passphrase of an encrypted identity file (never taken from argv);
//! - `SSH_AUTH_SOCK`: an ssh-agent, tried after the identity file.
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;

pub mod auth;
pub mod bastion;
pub mod error;
pub mod fake;
#[cfg(test)]
mod inprocess_tests;
pub mod known_hosts;
pub mod pool;
pub mod quote;
pub mod session;
pub mod sudo;
pub mod targets;
pub mod upload;

pub use error::{ExitStatus, SshError};
pub use session::SshSession;

/// Name of the environment variable holding the passphrase of an encrypted identity file.
pub const PASSPHRASE_ENV: &str = "KUBEHA_SSH_KEY_PASSPHRASE";

/// How commands that need root are run for a non-root login.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Become {
    #[default]
    None,
    /// `sudo -n`: never prompts, so a sudo that wants a password fails at once instead of hanging.
    Sudo,
}

/// Everything needed to reach one host, independent of the inventory model.
#[derive(Debug, Clone)]
pub struct HostTarget {
    /// Name used in messages (the inventory host name).
    pub name: String,
    /// IP address or DNS name to connect to; also the name looked up in known_hosts.
    pub address: String,
    pub port: u16,
    pub user: String,
    /// Private key file; when `None`, ~/.ssh/id_ed25519, id_ecdsa and id_rsa are tried.
    pub identity_file: Option<PathBuf>,
    /// known_hosts files in lookup order; accepted keys are appended to the first one. Empty means
    /// ~/.ssh/known_hosts then /etc/ssh/ssh_known_hosts.
    pub known_hosts_files: Vec<PathBuf>,
    pub r#become: Become,
    /// Jump host reached first; the target is then reached through a direct-tcpip channel.
    pub bastion: Option<Box<HostTarget>>,
}

impl HostTarget {
    /// A target with OpenSSH's defaults: port 22, no explicit key, default known_hosts files.
    pub fn new(name: impl Into<String>, address: impl Into<String>, user: impl Into<String>) -> Self {
        HostTarget {
            name: name.into(),
            address: address.into(),
            port: 22,
            user: user.into(),
            identity_file: None,
            known_hosts_files: Vec::new(),
            r#become: Become::None,
            bastion: None,
        }
    }

    pub fn known_hosts_files_or_default(&self) -> Vec<PathBuf> {
        if !self.known_hosts_files.is_empty() {
            return self.known_hosts_files.clone();
        }
        let mut files = Vec::new();
        if let Some(home) = std::env::var_os("HOME") {
            files.push(PathBuf::from(home).join(".ssh/known_hosts"));
        }
        files.push(PathBuf::from("/etc/ssh/ssh_known_hosts"));
        files
    }
}

#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Record keys of hosts not yet in known_hosts (never replaces a changed key).
    pub accept_new_host_keys: bool,
    /// Covers TCP connect, handshake and authentication.
    pub connect_timeout: Duration,
    /// Send a keepalive after this much silence from the server...
    pub keepalive: Duration,
    /// ...and drop the connection after this many unanswered ones (a dead host is detected in about
    /// keepalive * (keepalive_max + 1) instead of hanging on a half-open TCP connection).
    pub keepalive_max: usize,
    /// How many hosts are connected to (and worked on) at the same time.
    pub concurrency: usize,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            accept_new_host_keys: false,
            connect_timeout: Duration::from_secs(15),
            keepalive: Duration::from_secs(15),
            keepalive_max: 3,
            concurrency: 16,
        }
    }
}

/// Which stream a chunk of live output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One command to run on a host.
#[derive(Clone)]
pub struct Command {
    /// Shell text run by `sh -c` on the host. Build it with [`Command::argv`] (every word quoted) unless it
    /// is a fixed script of our own.
    pub script: String,
    /// Bytes fed to the command's stdin, then EOF. Secrets travel here, never in `script`.
    pub stdin: Option<Vec<u8>>,
    /// Stopped on the host (and abandoned locally) when exceeded.
    pub timeout: Duration,
    /// Run through `become` (sudo) when the login user is not root.
    pub as_root: bool,
    /// Live copy of the output as it arrives, e.g. for per-host log files. Output is captured regardless.
    pub stream_to: Option<UnboundedSender<(Stream, Vec<u8>)>>,
}

impl Command {
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

    /// A simple command from words, each quoted, so no value can inject shell syntax.
    pub fn argv<I, S>(words: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Command::script(quote::join(words))
    }

    /// A trusted shell script (our own text, with any variable parts already quoted).
    pub fn script(script: impl Into<String>) -> Self {
        Command { script: script.into(), stdin: None, timeout: Self::DEFAULT_TIMEOUT, as_root: true, stream_to: None }
    }

    pub fn stdin(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(data.into());
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Run as the login user even when the target uses sudo (read-only probes).
    pub fn unprivileged(mut self) -> Self {
        self.as_root = false;
        self
    }

    pub fn stream_to(mut self, sink: UnboundedSender<(Stream, Vec<u8>)>) -> Self {
        self.stream_to = Some(sink);
        self
    }
}

/// Hand-written so that stdin (where secrets travel) never reaches a log through `{:?}`.
impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Command")
            .field("script", &self.script)
            .field("stdin", &self.stdin.as_ref().map(|s| format!("<{} bytes>", s.len())))
            .field("timeout", &self.timeout)
            .field("as_root", &self.as_root)
            .finish_non_exhaustive()
    }
}

/// What a finished command produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Turn a non-zero exit into a classified error carrying host, command and stderr.
    pub fn check(self, host: &str, command: &Command) -> Result<Output, SshError> {
        if self.status.success() {
            return Ok(self);
        }
        Err(SshError::CommandFailed {
            host: host.to_string(),
            command: command.script.clone(),
            status: self.status,
            stderr: String::from_utf8_lossy(&self.stderr).trim().to_string(),
        })
    }
}

/// A file to place on a host.
#[derive(Clone)]
pub struct Upload {
    pub path: String,
    pub contents: Vec<u8>,
    /// Octal permission bits, e.g. 0o600 for keys.
    pub mode: u32,
    /// `user` or `user:group`; `None` keeps the login user (or root with sudo).
    pub owner: Option<String>,
}

/// Hand-written: file contents may be keys or tokens, so `{:?}` shows only their size and hash.
impl std::fmt::Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upload")
            .field("path", &self.path)
            .field("contents", &format!("<{} bytes>", self.contents.len()))
            .field("mode", &format_args!("{:o}", self.mode))
            .field("owner", &self.owner)
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadOutcome {
    Written,
    /// Same content, mode and owner were already there: nothing was written.
    Unchanged,
}

/// A boxed future, so that [`Transport`] stays object safe (`&dyn Transport`, `Arc<dyn Transport>`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The one seam for effects on a host.
pub trait Transport: Send + Sync {
    /// The host name used in messages.
    fn host(&self) -> &str;

    /// Run a command; a non-zero exit is `Ok` with that status (see [`Transport::run`]).
    fn exec<'a>(&'a self, command: &'a Command) -> BoxFuture<'a, Result<Output, SshError>>;

    /// Write a file atomically (temp file + rename) with mode and owner; skipped when already identical.
    fn upload<'a>(&'a self, file: &'a Upload) -> BoxFuture<'a, Result<UploadOutcome, SshError>>;

    /// Read a file as root (when become applies); `None` when it does not exist.
    fn read_file<'a>(&'a self, path: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, SshError>>;

    /// Run a command that must succeed.
    fn run<'a>(&'a self, command: &'a Command) -> BoxFuture<'a, Result<Output, SshError>> {
        Box::pin(async move { self.exec(command).await?.check(self.host(), command) })
    }
}

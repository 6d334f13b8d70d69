//! The russh implementation of [`Transport`]: one authenticated connection per host, a channel per command.
use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{self, Handle};
use russh::keys::PublicKeyOrCertificate;
use russh::{ChannelMsg, Sig};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::OnceCell;

use super::known_hosts::{self, HostKeyProblem, KnownHosts, Verdict};
use super::{
    Become, BoxFuture, Command, ConnectOptions, ExitStatus, HostTarget, Output, SshError, Stream, Transport, Upload, UploadOutcome, auth, sudo, upload,
};

/// Extra time granted locally beyond a command's own timeout, for the remote `timeout` to fire and report.
/// Past it we stop waiting even if the host never answers.
const LOCAL_GRACE: Duration = Duration::from_secs(5);

/// An authenticated connection to one host.
pub struct SshSession {
    name: String,
    user: String,
    r#become: Become,
    // `Handle` is not Clone; channels are opened through a shared reference.
    handle: Handle<HostKeyChecker>,
    /// Keeps the jump connection alive for as long as this session tunnels through it.
    _bastion: Option<Arc<SshSession>>,
    /// Result of the one-time `sudo -n true` probe (message on failure).
    sudo_ready: OnceCell<Result<(), String>>,
}

impl std::fmt::Debug for SshSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshSession").field("name", &self.name).field("user", &self.user).finish_non_exhaustive()
    }
}

/// russh calls this during the handshake; the verdict is also left in `problem` so the caller can report
/// *why* the key was refused (russh itself only says "unknown key").
pub struct HostKeyChecker {
    lookup_host: String,
    port: u16,
    files: Vec<std::path::PathBuf>,
    known: KnownHosts,
    accept_new: bool,
    problem: Arc<Mutex<Option<HostKeyProblem>>>,
}

impl client::Handler for HostKeyChecker {
    type Error = russh::Error;

    async fn check_server_key(&mut self, offered: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        let lookup = known_hosts::lookup_name(&self.lookup_host, self.port);
        let key = match offered {
            PublicKeyOrCertificate::PublicKey { key, .. } => key,
            PublicKeyOrCertificate::Certificate(_) => {
                return Ok(self.refuse(HostKeyProblem::Certificate { lookup }));
            }
        };
        let offered_fingerprint = known_hosts::fingerprint(key);
        let offered_type = key.algorithm().to_string();
        match self.known.check(&self.lookup_host, self.port, key) {
            Verdict::Trusted { .. } => Ok(true),
            Verdict::Revoked { file, line } => Ok(self.refuse(HostKeyProblem::Revoked { lookup, file, line, offered_fingerprint })),
            Verdict::Changed { file, line, recorded } => Ok(self.refuse(HostKeyProblem::Changed {
                lookup,
                file,
                line,
                recorded_fingerprint: known_hosts::fingerprint(&recorded),
                recorded_type: recorded.algorithm().to_string(),
                offered_fingerprint,
                offered_type,
            })),
            Verdict::Unknown if self.accept_new => {
                let file = self.files.first().cloned().unwrap_or_default();
                match known_hosts::append(&file, &self.lookup_host, self.port, key) {
                    Ok(()) => Ok(true),
                    Err(e) => Ok(self.refuse(HostKeyProblem::FileError { file, detail: e.to_string() })),
                }
            }
            Verdict::Unknown => Ok(self.refuse(HostKeyProblem::Unknown { lookup, offered_fingerprint, offered_type, files: self.files.clone() })),
        }
    }
}

impl HostKeyChecker {
    fn refuse(&self, problem: HostKeyProblem) -> bool {
        *self.problem.lock().unwrap_or_else(|p| p.into_inner()) = Some(problem);
        false
    }
}

/// The russh client configuration derived from our options.
fn client_config(opts: &ConnectOptions, known: &KnownHosts, target: &HostTarget) -> client::Config {
    let mut config = client::Config {
        keepalive_interval: Some(opts.keepalive),
        keepalive_max: opts.keepalive_max,
        // Long-running commands are silent; keepalives detect dead peers, so no inactivity timeout.
        inactivity_timeout: None,
        // Small commands are latency bound: do not let Nagle hold back the last packet.
        nodelay: true,
        ..Default::default()
    };
    // Ask for the key types we already trust first, so a host with several keys presents the recorded one
    // (otherwise a second key type would look like a mismatch, or worse get recorded next to the first).
    config.preferred.key = Cow::Owned(known.host_key_order(&target.address, target.port, &config.preferred.key));
    config
}

impl SshSession {
    /// Handshake, host key check and authentication over an already open byte stream (a TCP socket, a
    /// bastion's direct-tcpip channel, or an in-memory duplex in tests).
    pub async fn establish<S>(target: &HostTarget, opts: &ConnectOptions, stream: S, bastion: Option<Arc<SshSession>>) -> Result<SshSession, SshError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let files = target.known_hosts_files_or_default();
        let known = KnownHosts::load(&files).map_err(|problem| SshError::HostKey { host: target.name.clone(), problem })?;
        let config = Arc::new(client_config(opts, &known, target));
        let problem = Arc::new(Mutex::new(None));
        let checker = HostKeyChecker {
            lookup_host: target.address.clone(),
            port: target.port,
            files,
            known,
            accept_new: opts.accept_new_host_keys,
            problem: problem.clone(),
        };
        let handshake = async {
            let mut handle = match client::connect_stream(config, stream, checker).await {
                Ok(handle) => handle,
                Err(e) => {
                    if let Some(problem) = problem.lock().unwrap_or_else(|p| p.into_inner()).take() {
                        return Err(SshError::HostKey { host: target.name.clone(), problem: Box::new(problem) });
                    }
                    return Err(handshake_error(target, e));
                }
            };
            auth::authenticate(&mut handle, target).await?;
            Ok(handle)
        };
        let handle = tokio::time::timeout(opts.connect_timeout, handshake).await.map_err(|_| SshError::Timeout {
            host: target.name.clone(),
            during: format!("SSH handshake and authentication with {}:{}", target.address, target.port),
            after: opts.connect_timeout,
        })??;
        Ok(SshSession {
            name: target.name.clone(),
            user: target.user.clone(),
            r#become: target.r#become,
            handle,
            _bastion: bastion,
            sudo_ready: OnceCell::new(),
        })
    }

    /// Whether the server side of the connection is gone (keepalives exhausted, TCP closed).
    pub fn is_closed(&self) -> bool {
        self.handle.is_closed()
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    /// Close the connection politely (sshd logs a clean disconnect instead of a reset). Dropping the
    /// session also ends it; this is for callers that want the server to know why.
    pub async fn disconnect(&self) {
        let _ = self.handle.disconnect(russh::Disconnect::ByApplication, "kubeha done", "en").await;
    }

    /// Open a direct-tcpip channel from this host to `address:port` (used to reach hosts behind a bastion).
    pub async fn open_tunnel(&self, address: &str, port: u16) -> Result<russh::ChannelStream<client::Msg>, SshError> {
        let channel = self.handle.channel_open_direct_tcpip(address.to_string(), port as u32, "127.0.0.1", 0).await.map_err(|e| SshError::Refused {
            host: self.name.clone(),
            address: address.to_string(),
            port,
            detail: format!("the bastion refused a direct-tcpip tunnel ({e}); is AllowTcpForwarding enabled?"),
        })?;
        Ok(channel.into_stream())
    }

    fn needs_sudo(&self, command: &Command) -> bool {
        command.as_root && self.r#become == Become::Sudo && self.user != "root"
    }

    /// Probe sudo once per connection so a password-requiring sudo gives one clear error, fast.
    async fn ensure_sudo(&self, command: &Command) -> Result<(), SshError> {
        // Only sudo's own answer is remembered; a transport failure during the probe is reported as
        // what it is (and the probe is retried next time), not mistaken for a sudo refusal.
        let ready = self
            .sudo_ready
            .get_or_try_init(|| async {
                let probe = Command::script(sudo::SUDO_PROBE).unprivileged().timeout(Duration::from_secs(15));
                let out = self.exec_raw(&probe, sudo::SUDO_PROBE.to_string()).await?;
                Ok::<_, SshError>(if out.status.success() {
                    Ok(())
                } else {
                    Err(sudo::explain_probe_failure(&self.user, &String::from_utf8_lossy(&out.stderr)))
                })
            })
            .await?;
        ready.clone().map_err(|message| SshError::Sudo { host: self.name.clone(), command: command.script.clone(), message })
    }

    async fn exec_checked_sudo(&self, command: &Command) -> Result<Output, SshError> {
        let use_sudo = self.needs_sudo(command);
        if use_sudo {
            self.ensure_sudo(command).await?;
        }
        let remote = sudo::wrap(&command.script, command.timeout, use_sudo);
        let out = self.exec_raw(command, remote).await?;
        if let ExitStatus::Code(sudo::TIMEOUT_EXIT | sudo::TIMEOUT_KILLED_EXIT) = out.status {
            return Err(self.timeout_error(command));
        }
        Ok(out)
    }

    fn timeout_error(&self, command: &Command) -> SshError {
        SshError::Timeout { host: self.name.clone(), during: format!("running `{}`", command.script), after: command.timeout }
    }

    fn lost(&self, command: &Command, detail: impl Into<String>) -> SshError {
        SshError::Disconnected { host: self.name.clone(), command: Some(command.script.clone()), detail: detail.into() }
    }

    /// Run `remote` verbatim on a fresh channel, feeding stdin while reading output (a command that writes a
    /// lot before reading its input would otherwise deadlock against the channel window).
    async fn exec_raw(&self, command: &Command, remote: String) -> Result<Output, SshError> {
        let channel = self.handle.channel_open_session().await.map_err(|e| self.lost(command, e.to_string()))?;
        channel.exec(true, remote).await.map_err(|e| self.lost(command, e.to_string()))?;
        let (mut reader, writer) = channel.split();

        let feed = async {
            if let Some(data) = &command.stdin {
                // A command may exit without reading all of its input; its exit status tells what happened.
                let _ = writer.data(&data[..]).await;
            }
            let _ = writer.eof().await;
        };
        let collect = async {
            let mut out = Output { status: ExitStatus::Unknown, stdout: Vec::new(), stderr: Vec::new() };
            // The exit status can arrive before the last output: read until the channel is gone.
            while let Some(msg) = reader.wait().await {
                match msg {
                    ChannelMsg::Data { data } => self.capture(command, Stream::Stdout, &data, &mut out.stdout),
                    ChannelMsg::ExtendedData { data, ext: 1 } => self.capture(command, Stream::Stderr, &data, &mut out.stderr),
                    ChannelMsg::ExitStatus { exit_status } => out.status = ExitStatus::Code(exit_status),
                    ChannelMsg::ExitSignal { signal_name, .. } => out.status = ExitStatus::Signal(format!("{signal_name:?}")),
                    _ => {}
                }
            }
            out
        };
        let both = async { tokio::join!(feed, collect).1 };
        match tokio::time::timeout(command.timeout + LOCAL_GRACE, both).await {
            Ok(out) if out.status == ExitStatus::Unknown => Err(self.lost(
                command,
                if self.handle.is_closed() {
                    "the connection closed before the command reported an exit status"
                } else {
                    "the channel closed without an exit status"
                },
            )),
            Ok(out) => Ok(out),
            Err(_) => {
                // The host did not stop the command in time (or stopped answering): ask it to, and give up.
                let _ = writer.signal(Sig::KILL).await;
                let _ = writer.close().await;
                Err(self.timeout_error(command))
            }
        }
    }

    fn capture(&self, command: &Command, stream: Stream, data: &[u8], buffer: &mut Vec<u8>) {
        buffer.extend_from_slice(data);
        if let Some(sink) = &command.stream_to {
            let _ = sink.send((stream, data.to_vec()));
        }
    }
}

impl Transport for SshSession {
    fn host(&self) -> &str {
        &self.name
    }

    fn exec<'a>(&'a self, command: &'a Command) -> BoxFuture<'a, Result<Output, SshError>> {
        Box::pin(self.exec_checked_sudo(command))
    }

    fn upload<'a>(&'a self, file: &'a Upload) -> BoxFuture<'a, Result<UploadOutcome, SshError>> {
        Box::pin(upload::upload(self, file))
    }

    fn read_file<'a>(&'a self, path: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, SshError>> {
        Box::pin(upload::read_file(self, path))
    }
}

/// Map a failed handshake to a class. russh reports most of these as I/O or disconnect errors.
fn handshake_error(target: &HostTarget, e: russh::Error) -> SshError {
    SshError::Protocol { host: target.name.clone(), command: None, detail: format!("handshake with {}:{} failed: {e}", target.address, target.port) }
}

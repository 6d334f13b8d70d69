//! Connecting to a host, directly or through its bastion.
//!
//! Hosts behind the same bastion share one connection to it: each target gets its own direct-tcpip channel
//! over that connection, and its own end-to-end SSH session (and host key check) inside the channel, so the
//! bastion never sees the target's traffic in clear.
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio::sync::{Mutex, OnceCell};

use super::{ConnectOptions, HostTarget, SshError, SshSession};

type SharedBastion = Arc<OnceCell<Result<Arc<SshSession>, SshError>>>;

/// Opens sessions and remembers bastion connections so each bastion is dialled once.
#[derive(Default)]
pub struct Connector {
    bastions: Mutex<HashMap<String, SharedBastion>>,
}

impl Connector {
    pub fn new() -> Self {
        Connector::default()
    }

    pub async fn connect(&self, target: &HostTarget, opts: &ConnectOptions) -> Result<SshSession, SshError> {
        match &target.bastion {
            None => connect_direct(target, opts).await,
            Some(jump) => {
                let bastion = self.bastion(jump, opts).await.map_err(|e| via_bastion(target, jump, e))?;
                let tunnel = tokio::time::timeout(opts.connect_timeout, bastion.open_tunnel(&target.address, target.port))
                    .await
                    .map_err(|_| SshError::Timeout {
                        host: target.name.clone(),
                        during: format!("opening a tunnel to {}:{} through {}", target.address, target.port, jump.name),
                        after: opts.connect_timeout,
                    })?
                    .map_err(|e| via_bastion(target, jump, e))?;
                SshSession::establish(target, opts, tunnel, Some(bastion)).await
            }
        }
    }

    async fn bastion(&self, jump: &HostTarget, opts: &ConnectOptions) -> Result<Arc<SshSession>, SshError> {
        let key = format!("{}@{}:{}", jump.user, jump.address, jump.port);
        let cell = self.bastions.lock().await.entry(key).or_default().clone();
        cell.get_or_init(|| async {
            // A bastion can itself sit behind another one.
            Box::pin(self.connect(jump, opts)).await.map(Arc::new)
        })
        .await
        .clone()
    }
}

/// A bastion failure is reported for the target that needed it; the class stays the bastion's.
fn via_bastion(target: &HostTarget, jump: &HostTarget, e: SshError) -> SshError {
    SshError::ViaBastion { host: target.name.clone(), bastion: jump.name.clone(), source: Box::new(e) }
}

async fn connect_direct(target: &HostTarget, opts: &ConnectOptions) -> Result<SshSession, SshError> {
    let deadline = tokio::time::Instant::now() + opts.connect_timeout;
    let timeout = |during: String| SshError::Timeout { host: target.name.clone(), during, after: opts.connect_timeout };

    let addrs: Vec<SocketAddr> = tokio::time::timeout_at(deadline, tokio::net::lookup_host((target.address.as_str(), target.port)))
        .await
        .map_err(|_| timeout(format!("resolving {}", target.address)))?
        .map_err(|e| SshError::Resolve { host: target.name.clone(), address: target.address.clone(), detail: e.to_string() })?
        .collect();
    if addrs.is_empty() {
        return Err(SshError::Resolve { host: target.name.clone(), address: target.address.clone(), detail: "no addresses".into() });
    }

    let mut last_error = String::new();
    let mut stream = None;
    for addr in &addrs {
        match tokio::time::timeout_at(deadline, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                stream = Some(s);
                break;
            }
            Ok(Err(e)) => last_error = format!("{addr}: {e}"),
            Err(_) => {
                return Err(timeout(format!("connecting to {}:{}", target.address, target.port)));
            }
        }
    }
    let stream =
        stream.ok_or_else(|| SshError::Refused { host: target.name.clone(), address: target.address.clone(), port: target.port, detail: last_error })?;
    let _ = stream.set_nodelay(true);
    let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
    SshSession::establish(target, &ConnectOptions { connect_timeout: remaining, ..opts.clone() }, stream, None).await
}

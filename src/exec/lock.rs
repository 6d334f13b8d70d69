//! The cluster lock: no two kubeha runs may change one cluster at the same time.
//!
//! The lock is a directory created with `mkdir` (atomic on every file system) on each control plane, taken in
//! inventory order; a run holds the cluster only with a majority of the control planes. Every run takes the
//! directories in the same order, so two runs can never both collect a majority, and losing a minority of
//! control planes does not stop an operator from taking the lock. The holder record names who holds it and
//! carries a heartbeat, so a run that was killed is recognised as stale.
use crate::etcd::quorum;
use crate::ssh::{Command, SshError, Transport, quote};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const LOCK_DIR: &str = "/var/lib/kubeha/lock";
/// A holder whose heartbeat is older than this may be dead; only the operator can confirm it (--force-unlock).
pub const HEARTBEAT_STALE_AFTER: Duration = Duration::from_secs(120);
const LOCK_COMMAND_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Holder {
    pub run_id: String,
    /// `user@host` of the operator's machine.
    pub operator: String,
    pub operator_host: String,
    pub pid: u32,
    pub command: String,
    pub started_unix: u64,
    pub heartbeat_unix: u64,
}

impl Holder {
    pub fn describe(&self, now_unix: u64) -> String {
        format!(
            "`{}` (run {}) by {} pid {}, started {} s ago, last heartbeat {} s ago",
            self.command,
            self.run_id,
            self.operator,
            self.pid,
            now_unix.saturating_sub(self.started_unix),
            now_unix.saturating_sub(self.heartbeat_unix)
        )
    }
}

/// Whether a lock someone else holds can be taken over, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Staleness {
    /// The holder is alive as far as anyone can tell.
    Live,
    /// Certainly dead: it ran on this machine and its process is gone. Taken over without asking.
    Dead(String),
    /// Probably dead (no heartbeat for a while), but it ran elsewhere: the operator must confirm.
    Suspect(String),
}

/// Pure: `pid_alive` answers for processes of this machine only.
pub fn staleness(holder: &Holder, me: &Holder, now_unix: u64, pid_alive: impl Fn(u32) -> bool) -> Staleness {
    if holder.operator_host == me.operator_host && !pid_alive(holder.pid) {
        return Staleness::Dead(format!("its process {} on this machine is gone", holder.pid));
    }
    let silent = now_unix.saturating_sub(holder.heartbeat_unix);
    if silent > HEARTBEAT_STALE_AFTER.as_secs() {
        return Staleness::Suspect(format!("no heartbeat for {silent} s"));
    }
    Staleness::Live
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another kubeha run holds the cluster lock on {host}: {holder}. Wait for it to finish.")]
    Held { host: String, holder: String },
    #[error(
        "the cluster lock on {host} looks stale ({why}): held by {holder}. If you are sure no other kubeha run is \
         working on this cluster, run again with --force-unlock to take it over."
    )]
    Stale { host: String, holder: String, why: String },
    #[error("the cluster lock needs {rule} of the control planes ({needed} of {total}); only {reached} could be locked: {problems}")]
    NoMajority { rule: &'static str, needed: usize, total: usize, reached: usize, problems: String },
    #[error("cluster lock on {host}: {source}")]
    Transport { host: String, source: SshError },
}

/// Whether a process of this machine exists (EPERM means it exists but is not ours).
pub fn local_pid_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else { return false };
    !matches!(nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None), Err(nix::errno::Errno::ESRCH))
}

pub fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl Holder {
    /// The record for this process.
    pub fn for_this_run(command: &str) -> Self {
        let host = nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_else(|| "unknown".into());
        let user = std::env::var("SUDO_USER").or_else(|_| std::env::var("USER")).unwrap_or_else(|_| "unknown".into());
        let mut id = [0u8; 8];
        let _ = getrandom::fill(&mut id);
        let now = now_unix();
        Holder {
            run_id: id.iter().map(|b| format!("{b:02x}")).collect(),
            operator: format!("{user}@{host}"),
            operator_host: host,
            pid: std::process::id(),
            command: command.to_string(),
            started_unix: now,
            heartbeat_unix: now,
        }
    }
}

enum Attempt {
    Acquired,
    Held(Option<Holder>),
}

/// One `sh` run: take the directory and write our record, or print the current holder's record.
async fn try_acquire(t: &dyn Transport, me: &Holder) -> Result<Attempt, SshError> {
    let dir = quote::quote(LOCK_DIR);
    let script = format!(
        "umask 077; mkdir -p \"$(dirname {dir})\"; if mkdir {dir} 2>/dev/null; then cat > {dir}/holder.json && echo acquired; \
         else cat {dir}/holder.json 2>/dev/null; echo; echo held; fi"
    );
    let record = serde_json::to_vec(me).unwrap_or_default();
    let command = Command::script(script).stdin(record).timeout(LOCK_COMMAND_TIMEOUT);
    let out = t.run(&command).await?;
    let text = out.stdout_text();
    if text.trim_end().ends_with("acquired") {
        return Ok(Attempt::Acquired);
    }
    // The record may be missing for a moment while another run is between its mkdir and its write.
    let record = text.lines().next().and_then(|l| serde_json::from_str::<Holder>(l).ok());
    Ok(Attempt::Held(record))
}

/// A `grep -F` argument that matches only the holder record of `run_id` (serde writes it without spaces).
fn holder_pattern(run_id: &str) -> String {
    quote::quote(&format!("\"runId\":\"{run_id}\""))
}

/// Removes the lock on one host, but only if it is ours (or the named stale holder's), never another run's.
async fn remove_if_held_by(t: &dyn Transport, run_id: &str) -> Result<(), SshError> {
    let dir = quote::quote(LOCK_DIR);
    let pattern = holder_pattern(run_id);
    let script = format!("if grep -qF {pattern} {dir}/holder.json 2>/dev/null; then rm -rf {dir}; fi");
    t.run(&Command::script(script).timeout(LOCK_COMMAND_TIMEOUT)).await.map(|_| ())
}

/// A held cluster lock. Release it explicitly; a run that dies without releasing leaves a lock that the next
/// run recognises as stale.
pub struct ClusterLock {
    holder: Holder,
    hosts: Vec<Arc<dyn Transport>>,
}

impl ClusterLock {
    pub fn holder(&self) -> &Holder {
        &self.holder
    }

    pub fn hosts(&self) -> Vec<&str> {
        self.hosts.iter().map(|t| t.host()).collect()
    }

    /// Refreshes the heartbeat on every host we hold, so other runs do not take us for dead.
    pub async fn heartbeat(&mut self) -> Result<(), LockError> {
        self.holder.heartbeat_unix = now_unix();
        let dir = quote::quote(LOCK_DIR);
        let pattern = holder_pattern(&self.holder.run_id);
        let record = serde_json::to_vec(&self.holder).unwrap_or_default();
        for t in &self.hosts {
            let script =
                format!("umask 077; grep -qF {pattern} {dir}/holder.json && cat > {dir}/holder.json.new && mv {dir}/holder.json.new {dir}/holder.json");
            t.run(&Command::script(script).stdin(record.clone()).timeout(LOCK_COMMAND_TIMEOUT))
                .await
                .map_err(|source| LockError::Transport { host: t.host().to_string(), source })?;
        }
        Ok(())
    }

    pub async fn release(self) -> Result<(), LockError> {
        for t in &self.hosts {
            remove_if_held_by(t.as_ref(), &self.holder.run_id).await.map_err(|source| LockError::Transport { host: t.host().to_string(), source })?;
        }
        Ok(())
    }
}

/// Takes the lock on the control planes, in the order given (inventory order). `control_planes` holds every
/// control plane, with its transport or the reason it is unreachable.
pub async fn acquire(
    control_planes: &[crate::ssh::targets::Connection],
    me: Holder,
    force_unlock: bool,
    pid_alive: impl Fn(u32) -> bool,
) -> Result<ClusterLock, LockError> {
    acquire_needing(control_planes, ("a majority", quorum::quorum(control_planes.len())), me, force_unlock, pid_alive).await
}

/// Takes the lock on every control plane given (all must be taken): `etcd restore` passes the reachable
/// ones, because it runs exactly when a majority may be down, where `acquire` could never succeed. What a
/// majority guarantees elsewhere comes here from the situation: a restore refuses while etcd has quorum, and an
/// `apply` needs both quorum and a majority lock, so none can run beside it; a second restore that reaches any
/// of the same control planes finds this lock. Not excluded: two restores from the two sides of a network
/// partition that share no control plane; the restore names the unreachable hosts and asks the operator to
/// make sure they are down. Unreachable hosts get no lock directory.
pub async fn acquire_every(
    control_planes: &[crate::ssh::targets::Connection],
    me: Holder,
    force_unlock: bool,
    pid_alive: impl Fn(u32) -> bool,
) -> Result<ClusterLock, LockError> {
    acquire_needing(control_planes, ("every reachable one", control_planes.len()), me, force_unlock, pid_alive).await
}

async fn acquire_needing(
    control_planes: &[crate::ssh::targets::Connection],
    (rule, needed): (&'static str, usize),
    me: Holder,
    force_unlock: bool,
    pid_alive: impl Fn(u32) -> bool,
) -> Result<ClusterLock, LockError> {
    let total = control_planes.len();
    let mut taken: Vec<Arc<dyn Transport>> = Vec::new();
    let mut problems = Vec::new();
    for (name, transport) in control_planes {
        let t = match transport {
            Ok(t) => t.clone(),
            Err(e) => {
                problems.push(format!("{name}: {e}"));
                continue;
            }
        };
        let outcome = take_one(t.as_ref(), &me, force_unlock, &pid_alive).await;
        match outcome {
            Ok(()) => taken.push(t),
            Err(LockError::Transport { host, source }) => problems.push(format!("{host}: {source}")),
            Err(refusal) => {
                // Give back what we took, so a refused run leaves the cluster exactly as it found it.
                let _ = (ClusterLock { holder: me, hosts: taken }).release().await;
                return Err(refusal);
            }
        }
    }
    if taken.len() < needed {
        let reached = taken.len();
        let _ = (ClusterLock { holder: me, hosts: taken }).release().await;
        return Err(LockError::NoMajority { rule, needed, total, reached, problems: problems.join("; ") });
    }
    Ok(ClusterLock { holder: me, hosts: taken })
}

async fn take_one(t: &dyn Transport, me: &Holder, force_unlock: bool, pid_alive: &impl Fn(u32) -> bool) -> Result<(), LockError> {
    let host = t.host().to_string();
    let transport_err = |source| LockError::Transport { host: host.clone(), source };
    // Two attempts at most: the second only after removing a lock we were allowed to take over.
    for _ in 0..2 {
        let holder = match try_acquire(t, me).await.map_err(transport_err)? {
            Attempt::Acquired => return Ok(()),
            Attempt::Held(holder) => holder,
        };
        let now = now_unix();
        let Some(holder) = holder else {
            return Err(LockError::Held { host, holder: "a run that is taking the lock right now".into() });
        };
        match staleness(&holder, me, now, pid_alive) {
            Staleness::Dead(_) => {}
            Staleness::Suspect(_) | Staleness::Live if force_unlock => {}
            Staleness::Suspect(why) => return Err(LockError::Stale { host, holder: holder.describe(now), why }),
            Staleness::Live => return Err(LockError::Held { host, holder: holder.describe(now) }),
        }
        remove_if_held_by(t, &holder.run_id).await.map_err(transport_err)?;
    }
    Err(LockError::Held { host, holder: "a run that took the lock again while we removed a stale one".into() })
}

/// A held lock whose heartbeat a background task refreshes until the run gives it back.
pub struct KeptLock {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<ClusterLock>,
}

impl ClusterLock {
    /// Refreshes the heartbeat every `every` (well inside HEARTBEAT_STALE_AFTER) while the run works.
    pub fn keep_alive(mut self, every: Duration) -> KeptLock {
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {
                        // A missed beat is retried at the next tick; staleness needs four in a row.
                        let _ = self.heartbeat().await;
                    }
                    _ = &mut stopped => return self,
                }
            }
        });
        KeptLock { stop, task }
    }
}

impl KeptLock {
    pub async fn release(self) -> Result<(), LockError> {
        let _ = self.stop.send(());
        match self.task.await {
            Ok(lock) => lock.release().await,
            // The heartbeat task cannot panic short of a bug; the lock then stays until it is seen stale.
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(host: &str, pid: u32, heartbeat: u64) -> Holder {
        Holder {
            run_id: "r".into(),
            operator: format!("ops@{host}"),
            operator_host: host.into(),
            pid,
            command: "kubeha apply".into(),
            started_unix: 0,
            heartbeat_unix: heartbeat,
        }
    }

    #[test]
    fn staleness_rules() {
        let me = holder("ops-1", 1, 1000);
        assert_eq!(staleness(&holder("ops-1", 42, 1000), &me, 1000, |_| true), Staleness::Live);
        assert!(matches!(staleness(&holder("ops-1", 42, 1000), &me, 1000, |_| false), Staleness::Dead(_)));
        // Another machine: its PID means nothing here, only the heartbeat counts.
        assert_eq!(staleness(&holder("ops-2", 42, 1000), &me, 1030, |_| false), Staleness::Live);
        assert!(matches!(staleness(&holder("ops-2", 42, 1000), &me, 1000 + 121, |_| false), Staleness::Suspect(w) if w == "no heartbeat for 121 s"));
    }
}

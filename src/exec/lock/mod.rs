//! The cluster lock: no two kubeha runs may change one cluster at the same time.
//!
//! The lock is a directory created with `mkdir` (atomic on every file system) on each control plane, taken in
//! inventory order; a run holds the cluster only with a majority of the control planes. Every run takes the
//! directories in the same order, so two runs can never both collect a majority, and losing a minority of
//! control planes does not stop an operator from taking the lock. The holder record inside names the run by a
//! random id; its mtime is the heartbeat. A lock whose heartbeat stopped looks stale and can be taken over
//! with --force-unlock; a run that can no longer keep its heartbeat on a majority stops (see `fence`).
mod fence;
mod record;
mod remote;
#[cfg(test)]
mod tests;

pub use fence::Fence;
pub use record::Holder;

use crate::etcd::quorum;
use crate::paths::LOCK_DIR;
use crate::ssh::{SshError, Transport, targets::Connection};
use fence::HostBeat;
use record::{Looked, Verdict};
use remote::{Attempt, Beat};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A holder whose heartbeat is older than this may be dead; only the operator can confirm it (--force-unlock).
pub const HEARTBEAT_STALE_AFTER: Duration = Duration::from_secs(120);
/// How often a run refreshes its heartbeat: four beats fit in the stale bound, so one lost beat is no alarm.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another kubeha run holds the cluster lock on {host}: {holder}. Wait for it to finish.")]
    Held { host: String, holder: String },
    #[error(
        "the cluster lock on {host} looks stale ({why}): {holder}. If you are sure no other kubeha run is \
         working on this cluster, run again with --force-unlock to take it over."
    )]
    Stale { host: String, holder: String, why: String },
    #[error("the cluster lock needs {rule} of the control planes ({needed} of {total}); only {reached} could be locked: {problems}")]
    NoMajority { rule: &'static str, needed: usize, total: usize, reached: usize, problems: String },
    #[error("cluster lock on {host}: {source}")]
    Transport { host: String, source: SshError },
    #[error("the cluster lock could not be released on {0}; the next run finds it stale once its heartbeat is old")]
    Release(String),
}

pub fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// A held cluster lock. Release it explicitly; a run that dies without releasing leaves a lock that the next
/// run finds stale once its heartbeat is old.
pub struct ClusterLock {
    holder: Holder,
    dir: String,
    hosts: Vec<(Arc<dyn Transport>, HostBeat)>,
    /// How many of the hosts must stay ours (the rule the lock was taken by), out of `total` control planes.
    needed: usize,
    total: usize,
    fence: Fence,
    /// How long heartbeats may fail before the fence goes up; follows the interval of `keep_alive`.
    fence_after: Duration,
}

impl ClusterLock {
    pub fn holder(&self) -> &Holder {
        &self.holder
    }

    pub fn hosts(&self) -> Vec<&str> {
        self.hosts.iter().map(|(t, _)| t.host()).collect()
    }

    /// Set once this run lost the lock; checked by the executor between steps.
    pub fn fence(&self) -> Fence {
        self.fence.clone()
    }

    /// One heartbeat to every host where the lock is still ours, all at once, so that a host that does not
    /// answer delays and stops none of the others. Sets the fence when too few remain ours.
    pub async fn heartbeat(&mut self) {
        let round = Instant::now();
        let mut beats = tokio::task::JoinSet::new();
        for (i, (t, h)) in self.hosts.iter().enumerate() {
            if h.lost_to.is_some() {
                continue;
            }
            let (t, dir, run_id) = (t.clone(), self.dir.clone(), self.holder.run_id.clone());
            beats.spawn(async move { (i, remote::beat(t.as_ref(), &dir, &run_id).await) });
        }
        while let Some(joined) = beats.join_next().await {
            let Ok((i, outcome)) = joined else { continue };
            let h = &mut self.hosts[i].1;
            match outcome {
                Ok(Beat::Beat) => (h.last_beat, h.last_error) = (round, None),
                Ok(Beat::Lost(Looked::Taken(seen))) => h.lost_to = Some(format!("held by {}", seen.describe())),
                Ok(Beat::Lost(Looked::Free)) => h.lost_to = Some("its lock directory was removed".into()),
                Err(e) => h.last_error = Some(e.to_string()),
            }
        }
        let beats: Vec<&HostBeat> = self.hosts.iter().map(|(_, h)| h).collect();
        if let Some(why) = fence::judge(&beats, self.needed, self.total, Instant::now(), self.fence_after) {
            self.fence.set(why);
        }
    }

    /// Removes our record on every host we took, going on past hosts that do not answer; a record of
    /// another run (one that took a lock we lost) stays.
    pub async fn release(self) -> Result<(), LockError> {
        let mut failed = Vec::new();
        for (t, _) in &self.hosts {
            if let Err(e) = remote::remove_if_held_by(t.as_ref(), &self.dir, &self.holder.run_id).await {
                failed.push(e.to_string());
            }
        }
        if failed.is_empty() { Ok(()) } else { Err(LockError::Release(failed.join("; "))) }
    }
}

/// Takes the lock on the control planes, in the order given (inventory order). `control_planes` holds every
/// control plane, with its transport or the reason it is unreachable.
pub async fn acquire(control_planes: &[Connection], me: Holder, force_unlock: bool) -> Result<ClusterLock, LockError> {
    acquire_in(LOCK_DIR, control_planes, majority(control_planes.len()), me, force_unlock).await
}

/// The rule of `acquire`: as etcd's quorum, so that two runs can never both hold the cluster.
fn majority(control_planes: usize) -> Rule {
    Rule { name: "a majority", needed: quorum::quorum(control_planes) }
}

/// Takes the lock on every control plane given (all must be taken): `etcd restore` passes the reachable
/// ones, because it runs exactly when a majority may be down, where `acquire` could never succeed. What a
/// majority guarantees elsewhere comes here from the situation: a restore refuses while etcd has quorum, and an
/// `apply` needs both quorum and a majority lock, so none can run beside it; a second restore that reaches any
/// of the same control planes finds this lock. Not excluded: two restores from the two sides of a network
/// partition that share no control plane; the restore names the unreachable hosts and asks the operator to
/// make sure they are down. Unreachable hosts get no lock directory.
pub async fn acquire_every(control_planes: &[Connection], me: Holder, force_unlock: bool) -> Result<ClusterLock, LockError> {
    acquire_in(LOCK_DIR, control_planes, Rule { name: "every reachable one", needed: control_planes.len() }, me, force_unlock).await
}

struct Rule {
    name: &'static str,
    needed: usize,
}

async fn acquire_in(dir: &str, control_planes: &[Connection], rule: Rule, me: Holder, force_unlock: bool) -> Result<ClusterLock, LockError> {
    let total = control_planes.len();
    let mut lock = ClusterLock {
        holder: me,
        dir: dir.to_string(),
        hosts: Vec::new(),
        needed: rule.needed,
        total,
        fence: Fence::default(),
        fence_after: fence::fence_after(HEARTBEAT_EVERY, remote::COMMAND_TIMEOUT),
    };
    let mut problems = Vec::new();
    for (name, transport) in control_planes {
        let t = match transport {
            Ok(t) => t.clone(),
            Err(e) => {
                problems.push(format!("{name}: {e}"));
                continue;
            }
        };
        match take_one(t.as_ref(), dir, &lock.holder, force_unlock).await {
            Ok(()) => lock.hosts.push((t.clone(), HostBeat::new(t.host(), Instant::now()))),
            Err(LockError::Transport { host, source }) => problems.push(format!("{host}: {source}")),
            Err(refusal) => {
                // Give back what we took, so a refused run leaves the cluster exactly as it found it.
                let _ = lock.release().await;
                return Err(refusal);
            }
        }
    }
    if lock.hosts.len() < rule.needed {
        let reached = lock.hosts.len();
        let _ = lock.release().await;
        return Err(LockError::NoMajority { rule: rule.name, needed: rule.needed, total, reached, problems: problems.join("; ") });
    }
    Ok(lock)
}

async fn take_one(t: &dyn Transport, dir: &str, me: &Holder, force_unlock: bool) -> Result<(), LockError> {
    let host = t.host().to_string();
    let transport_err = |source| LockError::Transport { host: host.clone(), source };
    // Three attempts at most: a lock released between our mkdir and our look, or one we cleared, is tried again.
    for _ in 0..3 {
        let seen = match remote::try_acquire(t, dir, me).await.map_err(transport_err)? {
            Attempt::Acquired => return Ok(()),
            Attempt::Found(Looked::Free) => continue,
            Attempt::Found(Looked::Taken(seen)) => seen,
        };
        match record::judge(&seen, me, record::process_start) {
            Verdict::Ours => return Ok(()),
            Verdict::Dead(holder) => eprintln!("kubeha: taking over the cluster lock on {host} from a run of this machine that no longer runs: {holder}"),
            Verdict::Live(_) | Verdict::Stale(..) if force_unlock => {}
            Verdict::Live(holder) => return Err(LockError::Held { host, holder }),
            Verdict::Stale(holder, why) => return Err(LockError::Stale { host, holder, why }),
        }
        remote::clear(t, dir, &seen).await.map_err(transport_err)?;
    }
    // Each try found the directory changed since: another run taking and clearing it at the same time, or
    // a directory that `mkdir` cannot create (which the answer would then show as missing).
    Err(LockError::Held {
        host,
        holder: "a lock directory that changed under every one of three attempts (another run at work, or no way to create it)".into(),
    })
}

/// A held lock whose heartbeat a background task refreshes until the run gives it back.
pub struct KeptLock {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<ClusterLock>,
    fence: Fence,
}

impl ClusterLock {
    /// Refreshes the heartbeat every `every` (well inside HEARTBEAT_STALE_AFTER) while the run works.
    pub fn keep_alive(mut self, every: Duration) -> KeptLock {
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let fence = self.fence();
        self.fence_after = fence::fence_after(every, remote::COMMAND_TIMEOUT);
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            // A round that ran long is not made up by a burst of rounds: the next one starts `every` later.
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    // Beats go on after the fence is up: the step under way still runs, and a record that is
                    // still ours should not look stale to another run meanwhile.
                    _ = ticks.tick() => self.heartbeat().await,
                    _ = &mut stopped => return self,
                }
            }
        });
        KeptLock { stop, task, fence }
    }
}

impl KeptLock {
    pub fn fence(&self) -> Fence {
        self.fence.clone()
    }

    pub async fn release(self) -> Result<(), LockError> {
        let _ = self.stop.send(());
        match self.task.await {
            Ok(lock) => lock.release().await,
            // The heartbeat task cannot panic short of a bug; the lock then stays until it is seen stale.
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
}

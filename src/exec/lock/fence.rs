//! Fencing: a run that can no longer show it holds a majority of the lock stops at its next safe point.
//!
//! Another run may take a lock over once its record looks stale (HEARTBEAT_STALE_AFTER without a heartbeat,
//! by the host's clock) or at once with --force-unlock. Either way, this run must stop starting steps before
//! the other one starts its own, so it gives up as soon as (a) a record it holds was replaced or removed, or
//! (b) its heartbeats have not landed on enough hosts for `fence_after`, well inside the stale bound.
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Shared between the heartbeat task that sets it and the executor that checks it between steps. Once
/// set, it stays set: a lock lost once may already be someone else's.
#[derive(Clone, Debug, Default)]
pub struct Fence(Arc<Mutex<Option<String>>>);

impl Fence {
    /// Why the lock was lost, once it was.
    pub fn lost(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Keeps the first reason: it names the host where the trouble started.
    pub fn set(&self, why: String) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(why);
    }
}

/// How long heartbeats may fail on a majority before the run fences itself: the stale bound, less an
/// interval and a command timeout (a failure is only seen at the end of a round, up to that late), less
/// another interval as margin for the step that is running when the fence goes up. 40 s for 30 s beats.
pub fn fence_after(every: Duration, command_timeout: Duration) -> Duration {
    super::HEARTBEAT_STALE_AFTER.saturating_sub(2 * every + command_timeout).max(every)
}

/// One host whose lock this run took.
pub struct HostBeat {
    pub host: String,
    /// When the last round whose heartbeat landed here started (the host's mtime is no older than this).
    pub last_beat: Instant,
    pub last_error: Option<String>,
    /// The record is not ours any more: who or what is there instead ("held by ..."). Never cleared.
    pub lost_to: Option<String>,
}

impl HostBeat {
    pub fn new(host: &str, at: Instant) -> Self {
        HostBeat { host: host.to_string(), last_beat: at, last_error: None, lost_to: None }
    }

    fn held(&self, now: Instant, fence_after: Duration) -> bool {
        self.lost_to.is_none() && now.saturating_duration_since(self.last_beat) < fence_after
    }
}

/// Pure: whether the hosts that still hold our lock are `needed` or more; if not, why, naming each host
/// that does not and what is there instead.
pub fn judge(hosts: &[&HostBeat], needed: usize, total: usize, now: Instant, fence_after: Duration) -> Option<String> {
    let held = hosts.iter().filter(|h| h.held(now, fence_after)).count();
    if held >= needed {
        return None;
    }
    let lost: Vec<String> = hosts
        .iter()
        .filter(|h| !h.held(now, fence_after))
        .map(|h| match &h.lost_to {
            Some(other) => format!("{} ({other})", h.host),
            None => format!(
                "{} (no heartbeat landed for {} s: {})",
                h.host,
                now.saturating_duration_since(h.last_beat).as_secs(),
                h.last_error.as_deref().unwrap_or("no answer")
            ),
        })
        .collect();
    Some(format!(
        "cluster lock lost on {}: this run holds it on {held} of {total} control planes and needs {needed}. No further step was started",
        lost.join(", ")
    ))
}

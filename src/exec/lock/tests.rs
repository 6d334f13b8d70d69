//! The lock's rules, with its real shell snippets run by a local `sh` (the recording fake's local-shell
//! mode) in one temporary directory per host, the lock directory being relative: no root, no hosts. A host
//! that "stops answering" is the fake answering every lock snippet with a disconnect.
use super::*;
use crate::ssh::fake::RecordingTransport;
use record::{Looked, Record, Seen};
use std::path::{Path, PathBuf};

const DIR: &str = "lock";
/// What `fence::fence_after` gives for HEARTBEAT_EVERY, the default of a lock not kept alive by a task.
const FENCE_AFTER: Duration = Duration::from_secs(40);

struct Site {
    tmp: tempfile::TempDir,
    hosts: Vec<Arc<RecordingTransport>>,
}

impl Site {
    fn three() -> Site {
        let tmp = tempfile::tempdir().unwrap();
        let hosts = ["cp-1", "cp-2", "cp-3"]
            .iter()
            .map(|n| {
                let home = tmp.path().join(n);
                std::fs::create_dir(&home).unwrap();
                Arc::new(RecordingTransport::new(*n).with_local_shell(home))
            })
            .collect();
        Site { tmp, hosts }
    }

    fn dir(&self, host: usize) -> PathBuf {
        self.tmp.path().join(self.hosts[host].host()).join(DIR)
    }

    fn connections(&self) -> Vec<Connection> {
        self.hosts.iter().map(|t| (t.host().to_string(), Ok(t.clone() as Arc<dyn Transport>))).collect()
    }

    async fn acquire(&self, me: &Holder, force_unlock: bool) -> Result<ClusterLock, LockError> {
        acquire_in(DIR, &self.connections(), majority(3), me.clone(), force_unlock).await
    }

    /// `acquire`'s majority rule with the hosts `down` unreachable before the run starts (no connection).
    async fn acquire_with_down(&self, down: &[usize], me: &Holder) -> Result<ClusterLock, LockError> {
        let mut connections = self.connections();
        for i in down {
            let host = self.hosts[*i].host().to_string();
            connections[*i].1 = Err(SshError::Refused { host, address: "198.18.0.1".into(), port: 22, detail: "Connection refused".into() });
        }
        acquire_in(DIR, &connections, majority(connections.len()), me.clone(), false).await
    }

    fn record(&self, host: usize) -> Option<String> {
        std::fs::read_to_string(self.dir(host).join("holder.json")).ok()
    }

    fn write_record(&self, host: usize, contents: &[u8]) {
        std::fs::create_dir_all(self.dir(host)).unwrap();
        std::fs::write(self.dir(host).join("holder.json"), contents).unwrap();
    }

    /// Makes a host's lock directory and record `seconds` old, as if nothing had written them since.
    fn age(&self, host: usize, seconds: u64) {
        let dir = self.dir(host);
        for path in [dir.join("holder.json"), dir] {
            if path.exists() {
                set_mtime(&path, now_unix() - seconds);
            }
        }
    }

    fn mtime_age(&self, host: usize) -> u64 {
        let modified = std::fs::metadata(self.dir(host).join("holder.json")).unwrap().modified().unwrap();
        now_unix() - modified.duration_since(UNIX_EPOCH).unwrap().as_secs()
    }

    fn unreachable(&self, host: usize) {
        let error = SshError::Disconnected { host: self.hosts[host].host().into(), command: None, detail: "no route to host".into() };
        self.hosts[host].add_response("holder.json", Err(error));
    }

    fn beats_sent(&self, host: usize) -> usize {
        self.hosts[host].scripts().iter().filter(|s| s.contains("touch -c")).count()
    }
}

fn set_mtime(path: &Path, unix: u64) {
    let status = std::process::Command::new("touch").arg("-d").arg(format!("@{unix}")).arg(path).status().unwrap();
    assert!(status.success());
}

/// A run from `host` with `pid`, as another operator's machine would start it.
fn run_on(host: &str, pid: u32) -> Holder {
    // A machine of its own, not this one (see a_holder_of_this_machine_whose_process_is_gone_is_dead_at_once).
    Holder {
        operator: format!("ops@{host}"),
        operator_host: host.into(),
        pid,
        machine_id: format!("machine-of-pid-{pid}"),
        ..Holder::for_this_run("kubeha apply")
    }
}

fn holder_json(h: &Holder) -> Vec<u8> {
    serde_json::to_vec(h).unwrap()
}

/// Moves the last landed heartbeat of every host `by` into the past: FENCE_AFTER passes without waiting for it.
fn rewind(lock: &mut ClusterLock, by: Duration) {
    for (_, h) in &mut lock.hosts {
        h.last_beat = h.last_beat.checked_sub(by).unwrap();
    }
}

#[test]
fn run_ids_are_128_random_bits() {
    let (a, b) = (Holder::for_this_run("x"), Holder::for_this_run("x"));
    assert_eq!(a.run_id.len(), 32);
    assert!(a.run_id.bytes().all(|c| c.is_ascii_hexdigit()));
    assert_ne!(a.run_id, b.run_id);
}

/// No local process has any start time: every PID looks gone.
fn none_runs(_: u32) -> Option<u64> {
    None
}

#[test]
fn staleness_is_the_heartbeat_age_only() {
    let me = run_on("ops", 1);
    // Another machine with the same host name and a PID that does not run here: still live while its
    // heartbeat is young.
    let other = Record::Holder(Holder { machine_id: "another-machine".into(), ..run_on("ops", u32::MAX) });
    assert!(matches!(record::judge(&Seen { age: 120, record: other.clone() }, &me, none_runs), Verdict::Live(_)));
    let stale = record::judge(&Seen { age: 121, record: other }, &me, none_runs);
    assert!(matches!(&stale, Verdict::Stale(_, why) if why == "no heartbeat for 121 s"), "{stale:?}");
    // A record of an older kubeha (no machine ID, no start time) is judged by its heartbeat alone.
    let old = Record::Holder(Holder { machine_id: String::new(), process_start: 0, ..run_on("ops", u32::MAX) });
    assert!(matches!(record::judge(&Seen { age: 5, record: old }, &me, none_runs), Verdict::Live(_)));
    assert_eq!(record::judge(&Seen { age: 999, record: Record::Holder(me.clone()) }, &me, none_runs), Verdict::Ours);
}

/// A run of this machine that was SIGKILLed: its PID is gone, or taken by a process that started at
/// another time. Taken over at once; while that process runs, it is live however quiet.
#[test]
fn a_holder_of_this_machine_whose_process_is_gone_is_dead_at_once() {
    let me = Holder::for_this_run("kubeha apply");
    assert!(!me.machine_id.is_empty(), "this machine has an ID");
    let killed = Holder { pid: 4242, process_start: 777, ..Holder::for_this_run("kubeha apply") };
    let seen = Seen { age: 1, record: Record::Holder(killed.clone()) };
    assert!(matches!(record::judge(&seen, &me, none_runs), Verdict::Dead(_)));
    let reused = |pid: u32| (pid == 4242).then_some(778);
    assert!(matches!(record::judge(&seen, &me, reused), Verdict::Dead(_)), "a reused PID is another process");
    let still_running = |pid: u32| (pid == 4242).then_some(777);
    assert!(matches!(record::judge(&seen, &me, still_running), Verdict::Live(_)));
    // The lock of this very process, dropped without release, is live: the process runs.
    let mine = Holder::for_this_run("kubeha apply");
    let seen = Seen { age: 1, record: Record::Holder(mine) };
    assert!(matches!(record::judge(&seen, &me, record::process_start), Verdict::Live(_)));
}

#[test]
fn reports_are_parsed_with_the_hosts_clock() {
    assert_eq!(record::parse_report(b"lock 1000 - -\n"), Some(Looked::Free));
    assert_eq!(record::parse_report(b"lock 1000 990 -\n"), Some(Looked::Taken(Seen { age: 10, record: Record::Missing })));
    let unreadable = record::parse_report(b"lock 1000 900 950\n{\"run").unwrap();
    assert_eq!(unreadable, Looked::Taken(Seen { age: 50, record: Record::Unreadable(b"{\"run".to_vec()) }));
    let h = run_on("ops", 7);
    let mut report = b"lock 1000 900 995\n".to_vec();
    report.extend(holder_json(&h));
    assert_eq!(record::parse_report(&report), Some(Looked::Taken(Seen { age: 5, record: Record::Holder(h) })));
    assert_eq!(record::parse_report(b"garbage\n"), None);
}

#[tokio::test]
async fn two_runs_from_machines_with_one_host_name_do_not_take_each_others_lock() {
    let site = Site::three();
    let first = run_on("ops", u32::MAX);
    let lock = site.acquire(&first, false).await.unwrap();
    assert_eq!(lock.hosts(), ["cp-1", "cp-2", "cp-3"]);
    let refused = site.acquire(&run_on("ops", 1), false).await.err().unwrap();
    let text = refused.to_string();
    assert!(matches!(refused, LockError::Held { ref host, .. } if host == "cp-1"), "{text}");
    assert!(text.contains(&first.run_id) && text.contains("`kubeha apply`") && text.contains("ops@ops"), "{text}");
    // The record on disk is still the first run's, everywhere.
    for i in 0..3 {
        assert!(site.record(i).unwrap().contains(&first.run_id));
    }
    lock.release().await.unwrap();
    assert!((0..3).all(|i| !site.dir(i).exists()), "released everywhere");
}

#[tokio::test]
async fn a_silent_holder_is_stale_after_the_bound_and_taken_only_with_force_unlock() {
    let site = Site::three();
    let old = run_on("ops-2", 42);
    drop(site.acquire(&old, false).await.unwrap()); // never released, as after SIGKILL
    for i in 0..3 {
        site.age(i, 300);
    }
    let refused = site.acquire(&run_on("ops-1", 1), false).await.err().unwrap().to_string();
    assert!(refused.contains("looks stale (no heartbeat for 30") && refused.contains(&old.run_id) && refused.contains("--force-unlock"), "{refused}");
    let me = run_on("ops-1", 1);
    let lock = site.acquire(&me, true).await.unwrap();
    assert!((0..3).all(|i| site.record(i).unwrap().contains(&me.run_id)));
    lock.release().await.unwrap();
}

/// A broken state on `host`: refused as held while young, as stale once old, then cleared by --force-unlock.
async fn held_young_stale_old_cleared_by_force(site: &Site, host: usize, young_says: &str, stale_says: &str) {
    let young = site.acquire(&run_on("ops", 1), false).await.err().unwrap().to_string();
    assert!(young.contains(young_says), "{young}");
    site.age(host, 500);
    let old = site.acquire(&run_on("ops", 1), false).await.err().unwrap().to_string();
    assert!(old.contains(stale_says), "{old}");
    let me = run_on("ops", 1);
    site.acquire(&me, true).await.unwrap();
    assert!(site.record(host).unwrap().contains(&me.run_id));
}

#[tokio::test]
async fn a_directory_without_a_record_is_held_while_young_stale_when_old_and_cleared_by_force() {
    let site = Site::three();
    std::fs::create_dir(site.dir(0)).unwrap();
    held_young_stale_old_cleared_by_force(
        &site,
        0,
        "holds the cluster lock on cp-1: a lock directory without a holder record",
        "looks stale (no holder record for 50",
    )
    .await;
}

#[tokio::test]
async fn an_unreadable_record_is_held_while_young_stale_when_old_and_cleared_by_force() {
    for contents in [&b""[..], b"{\"runId\":\"cut sh"] {
        let site = Site::three();
        site.write_record(1, contents);
        held_young_stale_old_cleared_by_force(&site, 1, "on cp-2: an unreadable holder record", "looks stale (no readable record for 50").await;
        // Refused twice, each run gave back cp-1, which it had taken before meeting cp-2; the forced one holds it.
        assert!(site.record(0).is_some());
    }
}

#[tokio::test]
async fn force_unlock_takes_a_live_lock_of_another_run() {
    let site = Site::three();
    let other = run_on("ops-2", 9);
    drop(site.acquire(&other, false).await.unwrap());
    let me = run_on("ops-1", 1);
    site.acquire(&me, true).await.unwrap();
    assert!((0..3).all(|i| site.record(i).unwrap().contains(&me.run_id)));
}

#[tokio::test]
async fn heartbeats_go_on_past_an_unreachable_host() {
    let site = Site::three();
    let mut lock = site.acquire(&run_on("ops", 1), false).await.unwrap();
    site.age(2, 100);
    site.unreachable(0);
    lock.heartbeat().await;
    assert_eq!((site.beats_sent(1), site.beats_sent(2)), (1, 1));
    assert!(site.mtime_age(2) < 5, "cp-3's heartbeat refreshed its record's mtime");
    assert_eq!(lock.fence().lost(), None, "two of three still ours");
    // Long after: cp-1 never answered, but the others did at every round, so the majority holds.
    rewind(&mut lock, Duration::from_secs(100));
    lock.heartbeat().await;
    assert_eq!(lock.fence().lost(), None);
}

#[tokio::test]
async fn heartbeats_failing_on_a_majority_for_too_long_set_the_fence() {
    let site = Site::three();
    let mut lock = site.acquire(&run_on("ops", 1), false).await.unwrap();
    site.unreachable(1);
    site.unreachable(2);
    lock.heartbeat().await;
    assert_eq!(lock.fence().lost(), None, "a round or two of silence is no loss yet");
    rewind(&mut lock, FENCE_AFTER);
    lock.heartbeat().await;
    let why = lock.fence().lost().expect("fenced");
    assert!(why.starts_with("cluster lock lost on cp-2 (no heartbeat landed for 40 s: cp-2: connection lost: no route to host), cp-3"), "{why}");
    assert!(why.contains("holds it on 1 of 3 control planes and needs 2. No further step was started"), "{why}");
}

#[tokio::test]
async fn a_record_replaced_by_another_run_fences_at_once_when_the_majority_is_gone() {
    let site = Site::three();
    let mut lock = site.acquire(&run_on("ops", 1), false).await.unwrap();
    let thief = run_on("ops-2", 7);
    site.write_record(1, &holder_json(&thief));
    lock.heartbeat().await;
    assert_eq!(lock.fence().lost(), None, "one of three lost: still a majority");
    site.write_record(2, &holder_json(&thief));
    lock.heartbeat().await;
    let why = lock.fence().lost().expect("fenced");
    assert!(why.starts_with(&format!("cluster lock lost on cp-2 (held by `kubeha apply` (run {}) by ops@ops-2 pid 7", thief.run_id)), "{why}");
    // A host lost is not beaten again, and the other run's record is left as it is.
    let before = site.beats_sent(1);
    lock.heartbeat().await;
    assert_eq!(site.beats_sent(1), before);
    assert!(site.record(1).unwrap().contains(&thief.run_id));
}

#[tokio::test]
async fn release_goes_past_unreachable_hosts_and_leaves_other_runs_records() {
    let site = Site::three();
    let lock = site.acquire(&run_on("ops", 1), false).await.unwrap();
    let thief = run_on("ops-2", 7);
    site.write_record(1, &holder_json(&thief));
    site.unreachable(0);
    let err = lock.release().await.err().unwrap().to_string();
    assert!(err.starts_with("the cluster lock could not be released on cp-1: connection lost: no route to host"), "{err}");
    assert!(site.record(1).unwrap().contains(&thief.run_id), "another run's record stays");
    assert!(!site.dir(2).exists(), "ours is gone past the unreachable host");
}

#[tokio::test]
async fn a_majority_takes_the_lock_past_an_unreachable_host_and_a_minority_is_refused_leaving_nothing() {
    let site = Site::three();
    let me = run_on("ops", 1);
    let lock = site.acquire_with_down(&[2], &me).await.unwrap();
    assert_eq!(lock.hosts(), ["cp-1", "cp-2"]);
    assert!(!site.dir(2).exists(), "no lock directory on the host it could not reach");
    lock.release().await.unwrap();

    let refused = site.acquire_with_down(&[1, 2], &me).await.err().unwrap();
    assert!(matches!(refused, LockError::NoMajority { needed: 2, total: 3, reached: 1, .. }), "{refused}");
    let text = refused.to_string();
    assert!(text.starts_with("the cluster lock needs a majority of the control planes (2 of 3); only 1 could be locked: cp-2: "), "{text}");
    assert!((0..3).all(|i| !site.dir(i).exists()), "a refused run gives back what it took: {text}");
}

#[tokio::test]
async fn a_refusal_on_a_later_host_gives_back_the_earlier_ones_and_leaves_the_holder_s_record() {
    let site = Site::three();
    let other = run_on("ops-2", 7);
    site.write_record(1, &holder_json(&other));
    let refused = site.acquire(&run_on("ops-1", 1), false).await.err().unwrap();
    assert!(matches!(refused, LockError::Held { ref host, .. } if host == "cp-2"), "{refused}");
    assert!(!site.dir(0).exists(), "cp-1, taken before cp-2 refused, is given back");
    assert!(site.record(1).unwrap().contains(&other.run_id), "the holder's record stays");
    assert!(!site.dir(2).exists(), "nothing is tried after a refusal");
}

#[test]
fn the_fence_keeps_its_first_reason() {
    let fence = Fence::default();
    assert_eq!(fence.lost(), None);
    fence.set("first".into());
    fence.clone().set("second".into());
    assert_eq!(fence.lost().as_deref(), Some("first"));
}

#[test]
fn the_fence_goes_up_well_before_another_run_may_see_the_lock_stale() {
    assert_eq!(fence::fence_after(HEARTBEAT_EVERY, remote::COMMAND_TIMEOUT), FENCE_AFTER);
    // Noticed at most one interval and one command timeout late: still 20 s before the stale bound.
    assert!(FENCE_AFTER + HEARTBEAT_EVERY + remote::COMMAND_TIMEOUT < HEARTBEAT_STALE_AFTER);
}

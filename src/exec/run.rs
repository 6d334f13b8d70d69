//! Runs a plan: phases in order; within a phase, steps in order or in parallel up to the plan's limit. Each
//! completed step goes to the journal before the next starts. The first failure, Ctrl-C, or the loss of the
//! cluster lock stops the run at a safe point: steps already running finish, no new step starts, and the
//! summary says what the next run does. A second Ctrl-C abandons the steps under way too, journalled as such.
use super::clock;
use super::lock::Fence;
use super::output::{Progress, StepOutcome};
use super::redact::Redactor;
use super::rundir::{Journal, JournalEntry};
use super::steps::{self, StepContext, StepError};
use super::stop::Stop;
use crate::plan::{Execution, Phase, Plan, Step, describe};
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use tokio::sync::Semaphore;

#[derive(Clone)]
pub struct Executor {
    pub ctx: Arc<StepContext>,
    pub progress: Progress,
    pub journal: Journal,
    pub redactor: Arc<Redactor>,
    /// Set by Ctrl-C: finish what runs, start nothing new; the second time, abandon what runs.
    pub stop: Stop,
    /// Set when the cluster lock is lost: the same stop, since another run may now be changing the cluster.
    pub fence: Fence,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    pub step: String,
    pub host: String,
    pub error: String,
    /// What state the cluster was left in and what the next run does.
    pub next: String,
}

#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub steps_run: usize,
    pub changed: usize,
    pub failure: Option<Failure>,
    pub interrupted: bool,
    /// Why the run stopped early because it lost the cluster lock (then `interrupted` too).
    pub lock_lost: Option<String>,
    pub seconds: f64,
    /// Sum over phases of the longest path through it (sequential: all steps; parallel: the slowest): the
    /// time the run could not go below with this plan; `seconds` minus this is the executor's overhead.
    pub critical_path_seconds: f64,
    /// All step durations added up: what a fully serial run would have taken.
    pub serial_seconds: f64,
}

struct Done {
    step: Step,
    result: Result<bool, StepError>,
    seconds: f64,
}

impl Executor {
    pub async fn execute(&self, plan: &Plan) -> Summary {
        let started = Instant::now();
        let mut summary = Summary::default();
        for phase in &plan.phases {
            if self.halted() {
                summary.interrupted = true;
                break;
            }
            let hosts: Vec<String> = phase.steps.iter().map(|s| s.host.clone()).fold(Vec::new(), |mut v, h| {
                if !v.contains(&h) {
                    v.push(h);
                }
                v
            });
            self.progress.phase(phase.name, phase.title, &hosts);
            let done = self.run_phase(phase).await;
            self.progress.phase_finished();
            let mut phase_path = 0.0f64;
            for d in &done {
                // An abandoned step did not run to its end: the run is interrupted, the step not counted.
                if matches!(d.result, Err(StepError::Interrupted)) {
                    summary.interrupted = true;
                    continue;
                }
                summary.steps_run += 1;
                summary.serial_seconds += d.seconds;
                match phase.execution {
                    Execution::Sequential => phase_path += d.seconds,
                    Execution::Parallel { .. } => phase_path = phase_path.max(d.seconds),
                }
                match &d.result {
                    Ok(changed) => summary.changed += usize::from(*changed),
                    Err(error) if summary.failure.is_none() => {
                        let (step, host) = (d.step.id.clone(), d.step.host.clone());
                        summary.failure = Some(Failure { step, host, error: self.redactor.scrub(&error.to_string()), next: next_run(&d.step, error) });
                    }
                    Err(_) => {}
                }
            }
            summary.critical_path_seconds += phase_path;
            if summary.failure.is_some() || summary.interrupted {
                break;
            }
            if done.len() < phase.steps.len() {
                summary.interrupted = true;
                break;
            }
        }
        summary.seconds = started.elapsed().as_secs_f64();
        if summary.interrupted {
            summary.lock_lost = self.fence.lost();
        }
        let outcome = match (&summary.failure, summary.interrupted, &summary.lock_lost) {
            (Some(f), _, _) => format!("failed at {}", f.step),
            (None, true, Some(_)) => "stopped: cluster lock lost".to_string(),
            (None, true, None) => "interrupted".to_string(),
            (None, false, _) => "converged".to_string(),
        };
        self.record(&JournalEntry::Finished { outcome, at: clock::now() });
        summary
    }

    /// Checked before every step starts (the safe points): Ctrl-C, or a cluster lock this run no longer holds.
    fn halted(&self) -> bool {
        self.stop.requested() || self.fence.lost().is_some()
    }

    fn record(&self, entry: &JournalEntry) {
        if let Err(e) = self.journal.append(entry) {
            self.progress.note(&format!("warning: the journal could not be written: {e}"));
        }
    }

    async fn run_phase(&self, phase: &Phase) -> Vec<Done> {
        match phase.execution {
            Execution::Sequential => {
                let mut done = Vec::new();
                for step in &phase.steps {
                    if self.halted() {
                        break;
                    }
                    let d = self.run_step(step).await;
                    let failed = d.result.is_err();
                    done.push(d);
                    if failed {
                        break;
                    }
                }
                done
            }
            Execution::Parallel { limit } => {
                let permits = Arc::new(Semaphore::new(limit.max(1)));
                let failed = Arc::new(AtomicBool::new(false));
                let mut tasks = tokio::task::JoinSet::new();
                for step in phase.steps.clone() {
                    let this = self.clone();
                    let (permits, failed) = (permits.clone(), failed.clone());
                    tasks.spawn(async move {
                        let _permit = permits.acquire_owned().await.ok()?;
                        // A failure elsewhere in the phase: start nothing new, let running steps finish.
                        if failed.load(Ordering::SeqCst) || this.halted() {
                            return None;
                        }
                        let d = this.run_step(&step).await;
                        if d.result.is_err() {
                            failed.store(true, Ordering::SeqCst);
                        }
                        Some(d)
                    });
                }
                let mut done = Vec::new();
                while let Some(joined) = tasks.join_next().await {
                    match joined {
                        Ok(Some(d)) => done.push(d),
                        Ok(None) => {}
                        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                        Err(_) => {}
                    }
                }
                // Journal and summary in plan order, whatever order the steps finished in.
                let order = |s: &Step| phase.steps.iter().position(|p| p.id == s.id);
                done.sort_by_key(|d| order(&d.step));
                done
            }
        }
    }

    async fn run_step(&self, step: &Step) -> Done {
        self.progress.step_started(Some(&step.host), &step.id, &describe(&step.action));
        let started = Instant::now();
        // Every step is idempotent, so abandoning one midway leaves what the next run's probe will find.
        let result = tokio::select! {
            result = steps::run(step, &self.ctx) => result,
            () = self.stop.now() => Err(StepError::Interrupted),
        };
        let seconds = started.elapsed().as_secs_f64();
        let host = Some(step.host.clone());
        match &result {
            Ok(changed) => {
                let outcome = if *changed { StepOutcome::Changed } else { StepOutcome::Unchanged };
                self.progress.step_finished(Some(&step.host), &step.id, &outcome);
                self.record(&JournalEntry::StepDone { step_id: step.id.clone(), host, changed: *changed, at: clock::now(), seconds });
            }
            Err(error) => {
                let error = self.redactor.scrub(&error.to_string());
                self.progress.step_finished(Some(&step.host), &step.id, &StepOutcome::Failed(error.clone()));
                self.record(&JournalEntry::StepFailed { step_id: step.id.clone(), host, error, at: clock::now() });
            }
        }
        Done { step: step.clone(), result, seconds }
    }
}

/// What a failure at `step` leaves behind, what to fix first given the kind of `error`, and what the next
/// `kubeha apply` does about it.
fn next_run(step: &Step, error: &StepError) -> String {
    use crate::plan::Action::*;
    let tail = "The next `kubeha apply` probes the hosts again and continues from what is in place.";
    let state = match &step.action {
        Gate(_) => "No membership change was made after the last passed gate: etcd is as the previous step left it.",
        AddEtcdLearner { .. } | WaitLearnerCaughtUp { .. } | PromoteEtcdLearner { .. } | StartEtcdMember { .. } => {
            "At most one etcd member is in flux (a learner cannot vote, so quorum is unaffected)."
        }
        UpdateEtcdPeerUrl { .. } => {
            "The member's peer URL is what etcd last accepted; the next run restarts the member at its new address, or updates the URL again."
        }
        KubeadmInit { .. } | KubeadmJoinControlPlane { .. } | KubeadmJoinWorker { .. } => {
            "kubeadm stopped on this node; the next run resets this node's kubeadm files (never etcd) and retries."
        }
        RefreshControlPlane { .. } => {
            "The API server runs from the manifest kubeadm wrote, or from its previous one when kubeadm rolled back; the next run plans this step again while its etcd endpoints differ from the members."
        }
        RestartControlPlane { .. } => {
            "Every static pod manifest is put back when the restart script ends (one a machine that died midway left in /etc/kubernetes/*.yaml.kubeha makes the next run plan a restart that puts it back)."
        }
        UpgradeNode { node, .. } => &format!(
            "{node} is on its old or its new release, or between them on its static pods (kubeadm rolls them back when it fails); if it was drained it stays cordoned, marked as kubeha's, until the next run uncordons it."
        ),
        _ => "Hosts keep the files placed so far; nothing was removed.",
    };
    match fix_first(&step.host, error) {
        Some(fix) => format!("{state} {fix} {tail}"),
        None => format!("{state} {tail}"),
    }
}

/// What the operator should fix before running again, where the kind of error says more than its message.
fn fix_first(host: &str, error: &StepError) -> Option<String> {
    use crate::phases::etcd::EtcdStepError;
    if let Some(ssh) = error.ssh().filter(|e| !matches!(e, crate::ssh::SshError::CommandFailed { .. })) {
        let host = ssh.host();
        return Some(format!("{host} could not be used over SSH ({}): fix that first; `kubeha facts` shows when every host answers.", ssh.kind()));
    }
    match error {
        StepError::Etcd(EtcdStepError::Gate(_)) => Some(
            "etcd was not healthy enough for the next change: `kubeha status` shows which member is down or behind; the gate passes once it is back.".into(),
        ),
        StepError::Snapshot(_) => {
            Some(format!("No snapshot, so no membership change after it: check the free space in {} on {host}.", crate::paths::SNAPSHOT_DIR))
        }
        StepError::Timeout { what, within, look, .. } => {
            Some(format!("{what} was still not as expected after {} s: the cause is in {host}'s logs ({look}).", within.as_secs()))
        }
        StepError::Software(crate::phases::software::SoftwareError::Artifact(_)) => Some(
            "The release file could not be obtained or verified on this machine, so nothing of it reached the host: `kubeha artifacts fetch` says why; without internet access, an offline bundle (`kubeha artifacts fetch -o DIR` elsewhere) works."
                .into(),
        ),
        StepError::Verification { .. } => {
            Some("Every step ran, but the cluster failed a final check: `kubeha verify` repeats the checks and `kubeha status` shows etcd and the VIP.".into())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    //! The executor over recording hosts: safe points, the journal's order, the advice after a failure.
    //! No root, no SSH: each step is a ConfigureHost with no files, which is one command on its host.
    use super::*;
    use crate::exec::output::ProgressMode;
    use crate::exec::rundir::{self, RunDir};
    use crate::ssh::fake::RecordingTransport;
    use crate::ssh::{BoxFuture, Command, Output, SshError, Transport, Upload, UploadOutcome};
    use std::time::Duration;

    /// A recording host whose commands take `takes` and run `meanwhile` as they start: what a heartbeat
    /// task or an operator's Ctrl-C does while a step is under way.
    struct Host {
        recording: RecordingTransport,
        takes: Duration,
        meanwhile: Box<dyn Fn() + Send + Sync>,
    }

    impl Host {
        fn new(name: &str, takes: Duration, meanwhile: impl Fn() + Send + Sync + 'static) -> Arc<Host> {
            Arc::new(Host { recording: RecordingTransport::new(name), takes, meanwhile: Box::new(meanwhile) })
        }

        fn commands(&self) -> usize {
            self.recording.scripts().len()
        }
    }

    impl Transport for Host {
        fn host(&self) -> &str {
            self.recording.host()
        }
        fn exec<'a>(&'a self, command: &'a Command) -> BoxFuture<'a, Result<Output, SshError>> {
            (self.meanwhile)();
            let answer = self.recording.exec(command);
            Box::pin(async move {
                tokio::time::sleep(self.takes).await;
                answer.await
            })
        }
        fn upload<'a>(&'a self, file: &'a Upload) -> BoxFuture<'a, Result<UploadOutcome, SshError>> {
            self.recording.upload(file)
        }
        fn read_file<'a>(&'a self, path: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, SshError>> {
            self.recording.read_file(path)
        }
    }

    const QUICK: Duration = Duration::ZERO;
    /// Longer than any test runs: a step that ends only when it is abandoned.
    const FOREVER: Duration = Duration::from_secs(3600);

    fn nothing() {}

    /// A step on `host` named `host/ID`.
    fn configure(host: &str, id: &str) -> Step {
        Step { id: format!("host/{id}"), host: host.into(), action: crate::plan::Action::ConfigureHost { files: Vec::new() }, reason: "test".into() }
    }

    fn phase(execution: Execution, steps: Vec<Step>) -> Phase {
        Phase { name: "host", title: "Hosts", execution, steps }
    }

    fn on_cp1(ids: &[&str]) -> Vec<Step> {
        ids.iter().map(|id| configure("cp-1", id)).collect()
    }

    fn plan(phases: Vec<Phase>) -> Plan {
        Plan { cluster: "lab".into(), basis: crate::plan::Basis::Observed, findings: Vec::new(), phases }
    }

    /// The executor over `hosts`, with a fence and a stop of its own, and its journal's path.
    fn executor(hosts: &[Arc<Host>], state_dir: &std::path::Path) -> (Executor, std::path::PathBuf) {
        let inv = crate::test_support::lab();
        let secrets = crate::state::ClusterState::create(&inv).unwrap().secrets;
        let hosts = hosts.iter().map(|h| (h.host().to_string(), h.clone() as Arc<dyn Transport>)).collect();
        let ctx = StepContext::new(Arc::new(inv), Arc::default(), hosts, Arc::new(secrets));
        let redactor = Arc::new(Redactor::new(Vec::new()));
        let run_dir = RunDir::create(state_dir, "lab", "r1").unwrap();
        let journal = run_dir.journal().unwrap();
        let progress = Progress::new(ProgressMode::Quiet, redactor.clone());
        (Executor { ctx: Arc::new(ctx), progress, journal, redactor, stop: Stop::default(), fence: Fence::default() }, run_dir.journal_path())
    }

    /// The journal as "done ID", "failed ID: ERROR" and "finished OUTCOME" lines.
    fn journal(path: &std::path::Path) -> Vec<String> {
        rundir::read(path)
            .unwrap()
            .into_iter()
            .map(|e| match e {
                JournalEntry::Started { .. } => "started".to_string(),
                JournalEntry::StepDone { step_id, .. } => format!("done {step_id}"),
                JournalEntry::StepFailed { step_id, error, .. } => format!("failed {step_id}: {error}"),
                JournalEntry::Finished { outcome, .. } => format!("finished {outcome}"),
            })
            .collect()
    }

    #[tokio::test]
    async fn a_lost_lock_stops_the_run_before_the_next_step() {
        let tmp = tempfile::tempdir().unwrap();
        let fence = Fence::default();
        let host = Host::new("cp-1", QUICK, {
            let fence = fence.clone();
            move || fence.set("cluster lock lost on cp-2 (held by run r2)".into())
        });
        let plan = plan(vec![phase(Execution::Sequential, on_cp1(&["a", "b"])), phase(Execution::Parallel { limit: 4 }, on_cp1(&["c", "d"]))]);
        let (mut executor, journal_path) = executor(std::slice::from_ref(&host), tmp.path());
        executor.fence = fence;
        let summary = executor.execute(&plan).await;
        // The first step ran (its command lost the lock meanwhile) and finished; no other step started.
        assert_eq!(summary.steps_run, 1);
        assert_eq!(host.commands(), 1);
        assert!(summary.interrupted && summary.failure.is_none());
        assert_eq!(summary.lock_lost.as_deref(), Some("cluster lock lost on cp-2 (held by run r2)"));
        assert_eq!(journal(&journal_path), ["done host/a", "finished stopped: cluster lock lost"]);
    }

    #[tokio::test]
    async fn a_parallel_phase_starts_nothing_once_the_lock_is_lost() {
        let tmp = tempfile::tempdir().unwrap();
        let host = Host::new("cp-1", QUICK, nothing);
        let (executor, _) = executor(std::slice::from_ref(&host), tmp.path());
        executor.fence.set("lost before".into());
        let summary = executor.execute(&plan(vec![phase(Execution::Parallel { limit: 4 }, on_cp1(&["c", "d"]))])).await;
        assert_eq!((summary.steps_run, host.commands()), (0, 0));
        assert_eq!(summary.lock_lost.as_deref(), Some("lost before"));
    }

    /// Ctrl-C while the first step of a parallel phase runs: that step finishes and is journalled, the
    /// phase's other steps (waiting for a permit) and the next phase never start.
    #[tokio::test]
    async fn ctrl_c_in_a_parallel_phase_lets_the_step_under_way_finish_and_starts_no_other() {
        let tmp = tempfile::tempdir().unwrap();
        let stop = Stop::default();
        let host = Host::new("cp-1", Duration::from_millis(50), {
            let stop = stop.clone();
            move || {
                stop.request();
            }
        });
        let (mut executor, journal_path) = executor(std::slice::from_ref(&host), tmp.path());
        executor.stop = stop;
        let plan = plan(vec![phase(Execution::Parallel { limit: 1 }, on_cp1(&["a", "b", "c"])), phase(Execution::Sequential, on_cp1(&["d"]))]);
        let summary = executor.execute(&plan).await;
        assert_eq!((summary.steps_run, summary.changed, host.commands()), (1, 0, 1));
        assert!(summary.interrupted && summary.failure.is_none() && summary.lock_lost.is_none(), "{summary:?}");
        assert_eq!(journal(&journal_path), ["done host/a", "finished interrupted"]);
    }

    /// A second Ctrl-C abandons the steps under way: each is journalled as abandoned, not as failed by its
    /// own doing, and the run ends interrupted (exit 130), with nothing else started.
    #[tokio::test]
    async fn a_second_ctrl_c_abandons_the_steps_under_way_and_the_journal_names_them() {
        let tmp = tempfile::tempdir().unwrap();
        let hosts = [Host::new("cp-1", FOREVER, nothing), Host::new("cp-2", FOREVER, nothing), Host::new("cp-3", QUICK, nothing)];
        let (executor, journal_path) = executor(&hosts, tmp.path());
        let plan = plan(vec![
            phase(Execution::Parallel { limit: 2 }, vec![configure("cp-1", "a"), configure("cp-2", "b"), configure("cp-3", "c")]),
            phase(Execution::Sequential, vec![configure("cp-3", "d")]),
        ]);
        let stop = executor.stop.clone();
        let run = tokio::spawn(async move { executor.execute(&plan).await });
        // Both steps under way (one command each), then Ctrl-C twice.
        while hosts[0].commands() + hosts[1].commands() < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        stop.request();
        stop.request();
        let summary = tokio::time::timeout(Duration::from_secs(10), run).await.expect("the run ends without its hanging steps").unwrap();
        assert!(summary.interrupted && summary.failure.is_none(), "{summary:?}");
        assert_eq!(summary.steps_run, 0, "abandoned steps are not counted as run");
        assert_eq!(hosts[2].commands(), 0, "nothing started after the stop");
        let abandoned = "abandoned by Ctrl-C while it ran; the next apply runs it again";
        let mut journal = journal(&journal_path);
        // The two end together; which is journalled first is up to the scheduler.
        journal[..2].sort();
        assert_eq!(journal, [format!("failed host/a: {abandoned}"), format!("failed host/b: {abandoned}"), "finished interrupted".into()]);
    }

    /// Each step is journalled when it ends, so a kill loses none that finished: in a parallel phase in the
    /// order they finish, every one of them before the next phase's first, and the end last.
    #[tokio::test]
    async fn the_journal_records_steps_as_they_finish_and_phases_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        let ms = Duration::from_millis;
        let hosts = [Host::new("cp-1", ms(300), nothing), Host::new("cp-2", ms(0), nothing), Host::new("cp-3", ms(100), nothing)];
        let (executor, journal_path) = executor(&hosts, tmp.path());
        let plan = plan(vec![
            phase(Execution::Parallel { limit: 3 }, vec![configure("cp-1", "a"), configure("cp-2", "b"), configure("cp-3", "c")]),
            phase(Execution::Sequential, vec![configure("cp-3", "d"), configure("cp-1", "e")]),
        ]);
        let summary = executor.execute(&plan).await;
        assert!(summary.failure.is_none() && !summary.interrupted, "{summary:?}");
        assert_eq!(summary.steps_run, 5);
        assert_eq!(journal(&journal_path), ["done host/b", "done host/c", "done host/a", "done host/d", "done host/e", "finished converged"]);
        // The critical path is the slowest of the parallel phase plus the sequential phase, not the sum.
        assert!(summary.critical_path_seconds < summary.serial_seconds, "{summary:?}");
    }

    /// A failure in a parallel phase: the steps under way finish, no other starts, and the advice names the
    /// kind of failure (a host SSH cannot use) and what to fix first.
    #[tokio::test]
    async fn a_failed_step_stops_the_run_with_advice_for_its_kind() {
        let tmp = tempfile::tempdir().unwrap();
        let refused = SshError::Refused { host: "cp-2".into(), address: "198.18.0.12".into(), port: 22, detail: "Connection refused".into() };
        let cp2 = Arc::new(Host { recording: RecordingTransport::new("cp-2").respond("modprobe", Err(refused)), takes: QUICK, meanwhile: Box::new(nothing) });
        let hosts = [Host::new("cp-1", QUICK, nothing), cp2, Host::new("cp-3", QUICK, nothing)];
        let (executor, journal_path) = executor(&hosts, tmp.path());
        let plan = plan(vec![
            phase(Execution::Parallel { limit: 1 }, vec![configure("cp-1", "a"), configure("cp-2", "b"), configure("cp-3", "c")]),
            phase(Execution::Sequential, vec![configure("cp-1", "d")]),
        ]);
        let summary = executor.execute(&plan).await;
        let failure = summary.failure.expect("failed");
        assert_eq!((failure.step.as_str(), failure.host.as_str()), ("host/b", "cp-2"));
        assert!(failure.error.starts_with("cp-2: connection to 198.18.0.12:22 refused"), "{}", failure.error);
        assert!(failure.next.contains("cp-2 could not be used over SSH (refused): fix that first"), "{}", failure.next);
        assert!(failure.next.ends_with("continues from what is in place."), "{}", failure.next);
        assert_eq!(hosts[2].commands(), 0);
        let journal = journal(&journal_path);
        assert_eq!(journal.len(), 3, "{journal:?}");
        assert_eq!((journal[0].as_str(), journal[2].as_str()), ("done host/a", "finished failed at host/b"));
    }

    #[test]
    fn the_advice_after_a_failure_branches_on_its_kind() {
        let gate = Step {
            action: crate::plan::Action::Gate(crate::etcd::gate::Gate::new(crate::etcd::gate::GateWhen::Before, "add cp-4", &[])),
            ..configure("cp-1", "gate")
        };
        let host_step = configure("cp-1", "a");
        let gate_failure = crate::etcd::gate::GateFailure { when: "before", change: "add cp-4".into(), reasons: vec!["member cp-2 is unhealthy".into()] };
        let cases = [
            (&gate, StepError::Etcd(gate_failure.into()), "`kubeha status` shows which member is down or behind"),
            (
                &host_step,
                StepError::Snapshot(crate::phases::snapshot::SnapshotError::Failed {
                    host: "cp-1".into(),
                    command: "etcdctl snapshot save".into(),
                    detail: "no space".into(),
                }),
                "check the free space in /var/lib/kubeha/snapshots on cp-1",
            ),
            (
                &host_step,
                StepError::Timeout {
                    what: "VIP 198.18.0.100".into(),
                    within: Duration::from_secs(30),
                    last: "held by no control plane".into(),
                    look: "keepalived: journalctl -u keepalived",
                },
                "VIP 198.18.0.100 was still not as expected after 30 s: the cause is in cp-1's logs (keepalived: journalctl -u keepalived).",
            ),
            (&host_step, StepError::Verification { failed: vec!["readyz: not ok".into()] }, "`kubeha verify` repeats the checks"),
        ];
        for (step, error, advice) in cases {
            let next = next_run(step, &error);
            assert!(next.contains(advice), "{error}: {next}");
        }
        // A command that ran and failed says all in its message: no SSH advice.
        let failed =
            SshError::CommandFailed { host: "cp-1".into(), command: "kubeadm init".into(), status: crate::ssh::ExitStatus::Code(1), stderr: "x".into() };
        assert_eq!(
            next_run(&host_step, &StepError::Ssh(failed)),
            "Hosts keep the files placed so far; nothing was removed. The next `kubeha apply` probes the hosts again and continues from what is in place."
        );
    }

    /// The VIP wait's message is unchanged by the move to a typed Timeout.
    #[test]
    fn a_timeout_says_what_it_waited_for_what_it_saw_last_and_where_to_look() {
        let e = StepError::Timeout {
            what: "VIP 198.18.0.100".into(),
            within: Duration::from_secs(30),
            last: "held by cp-1 and cp-2".into(),
            look: "keepalived: journalctl -u keepalived",
        };
        assert_eq!(e.to_string(), "VIP 198.18.0.100: held by cp-1 and cp-2 after 30 s (keepalived: journalctl -u keepalived)");
    }
}

//! Runs a plan: phases in order; within a phase, steps in order or in parallel up to the plan's limit. Each
//! completed step goes to the journal before the next starts. The first failure, Ctrl-C, or the loss of the
//! cluster lock stops the run at a safe point: steps already running finish, no new step starts, and the
//! summary says what the next run does.
use super::clock;
use super::lock::Fence;
use super::output::{Progress, StepOutcome};
use super::redact::Redactor;
use super::rundir::{Journal, JournalEntry};
use super::steps::{self, StepContext};
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
    /// Set by Ctrl-C: finish what runs, start nothing new.
    pub stop: Arc<AtomicBool>,
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
    result: Result<bool, String>,
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
                summary.steps_run += 1;
                summary.serial_seconds += d.seconds;
                match phase.execution {
                    Execution::Sequential => phase_path += d.seconds,
                    Execution::Parallel { .. } => phase_path = phase_path.max(d.seconds),
                }
                match &d.result {
                    Ok(changed) => summary.changed += usize::from(*changed),
                    Err(error) if summary.failure.is_none() => {
                        summary.failure = Some(Failure { step: d.step.id.clone(), host: d.step.host.clone(), error: error.clone(), next: next_run(&d.step) });
                    }
                    Err(_) => {}
                }
            }
            summary.critical_path_seconds += phase_path;
            if summary.failure.is_some() {
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
        self.stop.load(Ordering::SeqCst) || self.fence.lost().is_some()
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
        let result = steps::run(step, &self.ctx).await.map_err(|e| self.redactor.scrub(&e.0));
        let seconds = started.elapsed().as_secs_f64();
        let host = Some(step.host.clone());
        match &result {
            Ok(changed) => {
                let outcome = if *changed { StepOutcome::Changed } else { StepOutcome::Unchanged };
                self.progress.step_finished(Some(&step.host), &step.id, &outcome);
                self.record(&JournalEntry::StepDone { step_id: step.id.clone(), host, changed: *changed, at: clock::now(), seconds });
            }
            Err(error) => {
                self.progress.step_finished(Some(&step.host), &step.id, &StepOutcome::Failed(error.clone()));
                self.record(&JournalEntry::StepFailed { step_id: step.id.clone(), host, error: error.clone(), at: clock::now() });
            }
        }
        Done { step: step.clone(), result, seconds }
    }
}

/// What a failure at `step` leaves behind and what the next `kubeha apply` does about it.
fn next_run(step: &Step) -> String {
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
        RestartControlPlane { .. } => {
            "Every static pod manifest is put back when the restart script ends (one a machine that died midway left in /etc/kubernetes/*.yaml.kubeha makes the next run plan a restart that puts it back)."
        }
        _ => "Hosts keep the files placed so far; nothing was removed.",
    };
    format!("{state} {tail}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::output::ProgressMode;
    use crate::exec::rundir::RunDir;
    use crate::ssh::{BoxFuture, Command, ExitStatus, Output, SshError, Transport, Upload, UploadOutcome};
    use std::sync::Mutex;

    /// A host whose every command succeeds and, as a heartbeat task would meanwhile, loses the cluster lock.
    struct LosesTheLock {
        fence: Fence,
        ran: Mutex<Vec<String>>,
    }

    impl Transport for LosesTheLock {
        fn host(&self) -> &str {
            "cp-1"
        }
        fn exec<'a>(&'a self, command: &'a Command) -> BoxFuture<'a, Result<Output, SshError>> {
            self.ran.lock().unwrap().push(command.script.clone());
            self.fence.set("cluster lock lost on cp-2 (held by run r2)".into());
            Box::pin(async { Ok(Output { status: ExitStatus::Code(0), stdout: b"1".to_vec(), stderr: Vec::new() }) })
        }
        fn upload<'a>(&'a self, _: &'a Upload) -> BoxFuture<'a, Result<UploadOutcome, SshError>> {
            Box::pin(async { Ok(UploadOutcome::Unchanged) })
        }
        fn read_file<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, SshError>> {
            Box::pin(async { Ok(None) })
        }
    }

    fn configure(id: &str) -> Step {
        Step { id: id.into(), host: "cp-1".into(), action: crate::plan::Action::ConfigureHost { files: Vec::new() }, reason: "test".into() }
    }

    fn phase(execution: Execution, ids: &[&str]) -> Phase {
        Phase { name: "host", title: "Hosts", execution, steps: ids.iter().map(|id| configure(id)).collect() }
    }

    fn plan(phases: Vec<Phase>) -> Plan {
        Plan { cluster: "lab".into(), basis: "observed", findings: Vec::new(), phases }
    }

    /// The executor, and its journal's path.
    fn executor(host: Arc<LosesTheLock>, state_dir: &std::path::Path) -> (Executor, std::path::PathBuf) {
        let inv = crate::inventory::load(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/inventories/lab.yaml"))).unwrap().inventory.unwrap();
        let secrets = crate::state::ClusterState::create(&inv).unwrap().secrets;
        let fence = host.fence.clone();
        let hosts = std::collections::HashMap::from([("cp-1".to_string(), host as Arc<dyn Transport>)]);
        let ctx = StepContext::new(Arc::new(inv), Arc::default(), hosts, Arc::new(secrets));
        let redactor = Arc::new(Redactor::new(Vec::new()));
        let run_dir = RunDir::create(state_dir, "lab", "r1").unwrap();
        let journal = run_dir.journal().unwrap();
        let progress = Progress::new(ProgressMode::Quiet, redactor.clone());
        (Executor { ctx: Arc::new(ctx), progress, journal, redactor, stop: Arc::default(), fence }, run_dir.journal_path())
    }

    #[tokio::test]
    async fn a_lost_lock_stops_the_run_before_the_next_step() {
        let tmp = tempfile::tempdir().unwrap();
        let host = Arc::new(LosesTheLock { fence: Fence::default(), ran: Mutex::default() });
        let plan = plan(vec![phase(Execution::Sequential, &["host/a", "host/b"]), phase(Execution::Parallel { limit: 4 }, &["host/c", "host/d"])]);
        let (executor, journal) = executor(host.clone(), tmp.path());
        let summary = executor.execute(&plan).await;
        // The first step ran (its command lost the lock meanwhile) and finished; no other step started.
        assert_eq!(summary.steps_run, 1);
        assert_eq!(host.ran.lock().unwrap().len(), 1);
        assert!(summary.interrupted && summary.failure.is_none());
        assert_eq!(summary.lock_lost.as_deref(), Some("cluster lock lost on cp-2 (held by run r2)"));
        let journal = std::fs::read_to_string(journal).unwrap();
        assert!(journal.contains("\"stopped: cluster lock lost\""), "{journal}");
    }

    #[tokio::test]
    async fn a_parallel_phase_starts_nothing_once_the_lock_is_lost() {
        let tmp = tempfile::tempdir().unwrap();
        let host = Arc::new(LosesTheLock { fence: Fence::default(), ran: Mutex::default() });
        host.fence.set("lost before".into());
        let plan = plan(vec![phase(Execution::Parallel { limit: 4 }, &["host/c", "host/d"])]);
        let summary = executor(host.clone(), tmp.path()).0.execute(&plan).await;
        assert_eq!((summary.steps_run, host.ran.lock().unwrap().len()), (0, 0));
        assert_eq!(summary.lock_lost.as_deref(), Some("lost before"));
    }
}

//! Runs a plan: phases in order; within a phase, steps in order or in parallel up to the plan's limit. Each
//! completed step goes to the journal before the next starts. The first failure (or Ctrl-C) stops the run at a
//! safe point: steps already running finish, no new step starts, and the summary says what the next run does.
use super::clock;
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
            if self.stop.load(Ordering::SeqCst) {
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
        let outcome = match (&summary.failure, summary.interrupted) {
            (Some(f), _) => format!("failed at {}", f.step),
            (None, true) => "interrupted".to_string(),
            (None, false) => "converged".to_string(),
        };
        self.record(&JournalEntry::Finished { outcome, at: clock::now() });
        summary
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
                    if self.stop.load(Ordering::SeqCst) {
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
                        if failed.load(Ordering::SeqCst) || this.stop.load(Ordering::SeqCst) {
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
        KubeadmInit { .. } | KubeadmJoinControlPlane { .. } | KubeadmJoinWorker { .. } => {
            "kubeadm stopped on this node; the next run resets this node's kubeadm files (never etcd) and retries."
        }
        _ => "Hosts keep the files placed so far; nothing was removed.",
    };
    format!("{state} {tail}")
}

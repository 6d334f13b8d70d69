//! A run that brings the cluster to an inventory: probe and plan under the cluster lock, ask the front end to
//! confirm, then execute with a journal and per-host logs in a run folder.
use super::planned::{self, Planned};
use crate::exec::logged::Logged;
use crate::exec::output::{Progress, ProgressMode};
use crate::exec::redact::Redactor;
use crate::exec::run::{Executor, Summary};
use crate::exec::rundir::{self, JournalEntry, RunDir};
use crate::exec::steps::StepContext;
use crate::exec::stop::Stop;
use crate::exec::{clock, lock};
use crate::inventory::{Host, Inventory};
use crate::plan::{self, Plan};
use crate::render::templates::Templates;
use crate::ssh::Transport;
use crate::ssh::targets::{Connection, Hosts};
use std::path::PathBuf;
use std::sync::Arc;

/// A run: `apply`, or a `node` command with its own checks.
pub struct Request {
    pub inv: Arc<Inventory>,
    /// The command line, for the lock holder and the journal.
    pub command: String,
    /// Hosts named as leaving whose inventory entries say how to reach them.
    pub leaving_known: Vec<Host>,
    /// The command's own conditions on what was found and planned; an error refuses the run unchanged.
    pub intent: Box<Intent>,
}

pub type Intent = dyn Fn(&Planned) -> anyhow::Result<()> + Send + Sync;

/// Whether to make the plan's changes (asked only when there are any); false ends the run unchanged.
pub type Confirm<'a> = dyn Fn(&Plan) -> anyhow::Result<bool> + 'a;

/// How the run goes.
pub struct Settings {
    /// Show the plan and stop: no lock, no run folder.
    pub dry_run: bool,
    /// Take over the cluster lock whatever state it is in.
    pub force_unlock: bool,
    /// Where run folders go.
    pub state_dir: PathBuf,
}

/// How a run ended when nothing failed before its steps.
pub enum Outcome {
    /// The plan has fatal findings: nothing was changed.
    Blocked,
    /// A dry run: the plan was shown.
    Planned,
    /// The front end did not confirm: nothing was changed.
    Declined,
    /// The steps ran (all, or up to a failure or a stop); their logs are in `run_dir`.
    Ran { summary: Summary, run_dir: PathBuf },
}

pub async fn run(request: &Request, settings: &Settings, confirm: &Confirm<'_>) -> anyhow::Result<Outcome> {
    let inv = request.inv.clone();
    let raw = planned::connect_all(&inv, "this run").await?;
    if let Some(previous) = rundir::last_interrupted(&settings.state_dir, &inv.name) {
        eprintln!(
            "note: run {} did not finish ({} steps done{}); this run re-probes the hosts and continues from what is in place",
            previous.run_id,
            previous.done_steps.len(),
            previous.last_failed.as_ref().map(|(s, _)| format!(", failed at {s}")).unwrap_or_default()
        );
    }
    let control_planes: Vec<Connection> = inv.control_planes().map(|h| (h.name.clone(), Ok(raw[&h.name].clone()))).collect();
    let me = lock::Holder::for_this_run(&request.command);
    let operator = me.operator.clone();
    let lock = if settings.dry_run { None } else { Some(lock::acquire(&control_planes, me, settings.force_unlock).await?.keep_alive(lock::HEARTBEAT_EVERY)) };
    let fence = lock.as_ref().map(lock::KeptLock::fence).unwrap_or_default();
    let result = execute(request, settings, confirm, &raw, (operator, fence)).await;
    if let Some(lock) = lock
        && let Err(e) = lock.release().await
    {
        // The run's own outcome matters more; a lock left on a host that stopped answering looks stale to
        // the next run once its heartbeat is old (HEARTBEAT_STALE_AFTER), and --force-unlock clears it.
        eprintln!("warning: {e}");
    }
    result
}

/// `held`: the operator as the lock names them, and the lock's fence (never set for a dry run).
async fn execute(request: &Request, settings: &Settings, confirm: &Confirm<'_>, raw: &Hosts, held: (String, lock::Fence)) -> anyhow::Result<Outcome> {
    let (operator, fence) = held;
    let inv = &request.inv;
    let planned = planned::plan(inv, raw, &Templates::builtin()?, &request.leaving_known).await?;
    let redactor = Arc::new(Redactor::new(planned.state.secret_strings()));
    eprint!("{}", redactor.scrub(&plan::text(&planned.plan)));
    if !planned.plan.blocked() {
        (request.intent)(&planned).map_err(|e| anyhow::anyhow!("{}", redactor.scrub(&format!("{e:#}"))))?;
    }
    if planned.plan.blocked() {
        return Ok(Outcome::Blocked);
    }
    if settings.dry_run {
        return Ok(Outcome::Planned);
    }
    if planned.plan.changes() > 0 && !confirm(&planned.plan)? {
        return Ok(Outcome::Declined);
    }

    // The run folder exists only for runs that change something: plans and refused runs leave none.
    let run_dir = RunDir::create(&settings.state_dir, &inv.name, &rundir::new_run_id())?.with_redactor(redactor.clone());
    let journal = run_dir.journal()?;
    let mut hosts: Hosts = Hosts::new();
    for (name, t) in raw.iter().chain(planned.leaving.iter()) {
        hosts.insert(name.clone(), Arc::new(Logged::new(t.clone(), run_dir.host_log(name)?)) as Arc<dyn Transport>);
    }
    journal.append(&JournalEntry::Started { run_id: run_dir.run_id().to_string(), command: request.command.clone(), operator, at: clock::now() })?;
    let stop = Stop::default();
    stop.on_ctrl_c();
    let executor = Executor {
        ctx: Arc::new(StepContext::new(inv.clone(), Arc::new(planned.desired), hosts, Arc::new(planned.state.secrets.clone())).with_os_ids(&planned.observed)),
        progress: Progress::new(ProgressMode::detect(), redactor.clone()),
        journal,
        redactor,
        stop,
        fence,
    };
    let summary = executor.execute(&planned.plan).await;
    Ok(Outcome::Ran { summary, run_dir: run_dir.path().to_path_buf() })
}

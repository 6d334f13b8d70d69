//! `kubeha apply`: probe, plan, show, confirm, then execute under the cluster lock, with a journal and
//! per-host logs in a run folder. `--dry-run` stops after showing the plan (= `kubeha plan`).
use super::{InventoryArg, Outcome, OutputFormat, report};
use crate::exec::live::{self, Hosts, Planned};
use crate::exec::logged::Logged;
use crate::exec::output::{Progress, ProgressMode};
use crate::exec::redact::Redactor;
use crate::exec::run::{Executor, Summary};
use crate::exec::rundir::{self, JournalEntry, RunDir};
use crate::exec::steps::StepContext;
use crate::exec::{clock, lock};
use crate::inventory::{Host, Inventory};
use crate::plan;
use crate::render::templates::Templates;
use crate::ssh::Transport;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    inventory: InventoryArg,
    #[command(flatten)]
    pub run: RunOptions,
}

/// How a run that changes the cluster goes: shared by `apply` and the `node` commands.
#[derive(clap::Args)]
pub struct RunOptions {
    /// Do not ask for confirmation (required when stdin is not a terminal).
    #[arg(long)]
    yes: bool,
    /// Show the plan and stop (the same as `kubeha plan`).
    #[arg(long)]
    dry_run: bool,
    /// Take over the cluster lock whatever state it is in: held by another run (stale after 2 minutes without
    /// a heartbeat, or not), or left without a readable holder record. Only when you are sure no other kubeha
    /// run works on this cluster: two runs interleaving membership changes can break etcd quorum.
    #[arg(long)]
    force_unlock: bool,
    /// Where run folders (journal, per-host logs) go; default $XDG_STATE_HOME/kubeha or ~/.local/state/kubeha.
    #[arg(long, value_name = "DIR", env = "KUBEHA_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Print a JSON summary of the run on stdout (the plan and progress go to stderr).
    #[arg(long, value_enum, default_value_t)]
    output: OutputFormat,
}

/// Exit code after Ctrl-C, as shells report a SIGINT death.
const EXIT_INTERRUPTED: u8 = 130;

pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let Some((_, inv)) = report::load_valid(&args.inventory.path)? else { return Ok(Outcome::Findings) };
    let command = format!("apply -i {}", args.inventory.path.display());
    converge(Request { inv: Arc::new(inv), command, leaving_known: Vec::new(), intent: Box::new(|_| Ok(())) }, &args.run)
}

/// A run that brings the cluster to an inventory: `apply`, or a `node` command with its own checks.
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

pub fn converge(request: Request, options: &RunOptions) -> anyhow::Result<Outcome> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(locked(request, options))
}

async fn locked(request: Request, args: &RunOptions) -> anyhow::Result<Outcome> {
    let inv = request.inv.clone();
    let raw = live::connect_all(&inv, "this run").await?;
    let base = args.state_dir.clone().unwrap_or_else(rundir::default_base);
    if let Some(previous) = rundir::last_interrupted(&base, &inv.name) {
        eprintln!(
            "note: run {} did not finish ({} steps done{}); this run re-probes the hosts and continues from what is in place",
            previous.run_id,
            previous.done_steps.len(),
            previous.last_failed.as_ref().map(|(s, _)| format!(", failed at {s}")).unwrap_or_default()
        );
    }
    let control_planes: Vec<crate::ssh::targets::Connection> = inv.control_planes().map(|h| (h.name.clone(), Ok(raw[&h.name].clone()))).collect();
    let me = lock::Holder::for_this_run(&request.command);
    let operator = me.operator.clone();
    let lock = if args.dry_run { None } else { Some(lock::acquire(&control_planes, me, args.force_unlock).await?.keep_alive(lock::HEARTBEAT_EVERY)) };
    let fence = lock.as_ref().map(lock::KeptLock::fence).unwrap_or_default();
    let result = execute(&request, args, &raw, &base, (operator, fence)).await;
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
async fn execute(request: &Request, args: &RunOptions, raw: &Hosts, base: &std::path::Path, held: (String, lock::Fence)) -> anyhow::Result<Outcome> {
    let (operator, fence) = held;
    let inv = &request.inv;
    let planned = live::plan(inv, raw, &Templates::builtin()?, &request.leaving_known).await?;
    let redactor = Arc::new(Redactor::new(planned.state.secret_strings()));
    eprint!("{}", redactor.scrub(&plan::text(&planned.plan)));
    if !planned.plan.blocked() {
        (request.intent)(&planned).map_err(|e| anyhow::anyhow!("{}", redactor.scrub(&format!("{e:#}"))))?;
    }
    if planned.plan.blocked() || args.dry_run {
        return Ok(if planned.plan.blocked() { Outcome::Findings } else { Outcome::Success });
    }
    if planned.plan.changes() > 0 && !args.yes && !confirm(&planned.plan)? {
        eprintln!("nothing was changed");
        return Ok(Outcome::Findings);
    }

    // The run folder exists only for runs that change something: plans and refused runs leave none.
    let run_dir = RunDir::create(base, &inv.name, &rundir::new_run_id())?.with_redactor(redactor.clone());
    let journal = run_dir.journal()?;
    let mut hosts: Hosts = Hosts::new();
    for (name, t) in raw.iter().chain(planned.leaving.iter()) {
        hosts.insert(name.clone(), Arc::new(Logged::new(t.clone(), run_dir.host_log(name)?)) as Arc<dyn Transport>);
    }
    journal.append(&JournalEntry::Started { run_id: run_dir.run_id().to_string(), command: request.command.clone(), operator, at: clock::now() })?;
    let stop_flag = Arc::new(AtomicBool::new(false));
    tokio::spawn(on_ctrl_c(stop_flag.clone()));
    let executor = Executor {
        ctx: Arc::new(StepContext::new(inv.clone(), Arc::new(planned.desired), hosts, Arc::new(planned.state.secrets.clone())).with_os_ids(&planned.observed)),
        progress: Progress::new(ProgressMode::detect(), redactor.clone()),
        journal,
        redactor,
        stop: stop_flag,
        fence,
    };
    let summary = executor.execute(&planned.plan).await;
    report_summary(&summary, run_dir.path(), args.output)?;
    Ok(match (&summary.failure, summary.interrupted) {
        (Some(_), _) => Outcome::Findings,
        (None, true) if summary.lock_lost.is_some() => Outcome::Findings,
        (None, true) => Outcome::Exit(EXIT_INTERRUPTED),
        (None, false) => Outcome::Success,
    })
}

async fn on_ctrl_c(stop: Arc<AtomicBool>) {
    if tokio::signal::ctrl_c().await.is_ok() {
        stop.store(true, Ordering::SeqCst);
        eprintln!("\nstopping after the steps under way (Ctrl-C again to abort at once; the next apply resumes either way)");
        if tokio::signal::ctrl_c().await.is_ok() {
            std::process::exit(i32::from(EXIT_INTERRUPTED));
        }
    }
}

fn confirm(plan: &plan::Plan) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        anyhow::bail!("refusing to apply {} changes without confirmation: stdin is not a terminal. Review `kubeha plan` and pass --yes", plan.changes());
    }
    eprint!("\nApply {} changes to cluster {}? Type yes to go on: ", plan.changes(), plan.cluster);
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(answer.trim() == "yes")
}

fn report_summary(summary: &Summary, run_dir: &std::path::Path, output: OutputFormat) -> anyhow::Result<()> {
    match &summary.failure {
        Some(f) => eprintln!("\nFAILED at step {} on {}: {}\n{}\nLogs: {}", f.step, f.host, f.error, f.next, run_dir.display()),
        None if let Some(why) = &summary.lock_lost => eprintln!(
            "\nSTOPPED after {} steps: {why}. Another kubeha run may be changing the cluster now: let it finish, then run \
             `kubeha apply` again, which continues from what is in place. Logs: {}",
            summary.steps_run,
            run_dir.display()
        ),
        None if summary.interrupted => eprintln!("\nInterrupted after {} steps; the next apply continues. Logs: {}", summary.steps_run, run_dir.display()),
        None => eprintln!(
            "\nConverged: {} steps, {} changed, in {:.1} s (critical path {:.1} s, serial {:.1} s). Logs: {}",
            summary.steps_run,
            summary.changed,
            summary.seconds,
            summary.critical_path_seconds,
            summary.serial_seconds,
            run_dir.display()
        ),
    }
    if output == OutputFormat::Json {
        let mut value = serde_json::to_value(summary)?;
        value["runDir"] = serde_json::Value::String(run_dir.display().to_string());
        println!("{}", serde_json::to_string_pretty(&value)?);
    }
    Ok(())
}

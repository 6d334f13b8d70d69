//! `kubeha apply`: the arguments, the prompt and the summary of a run (`action::apply`: probe, plan, show,
//! confirm, then execute under the cluster lock). `--dry-run` stops after showing the plan (= `kubeha plan`).
use super::{Exit, InventoryArg, OutputFormat, exit, report};
use crate::action::{
    self,
    apply::{Outcome, Request, Settings},
};
use crate::exec::run::Summary;
use crate::exec::rundir;
use crate::plan::Plan;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(clap::Args)]
#[command(after_help = exit::help(&[
    (Exit::Success, "converged (or, with --dry-run, planned)"),
    (Exit::Failed, "refused (preflight, a gate, the lock, no confirmation) or failed at a step: the message says what the next run does"),
    (Exit::Usage, "bad usage"),
    (Exit::Interrupted, "stopped by Ctrl-C after the steps under way (a second Ctrl-C abandons them); the next apply continues"),
]))]
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

pub fn run(args: Args) -> anyhow::Result<Exit> {
    let Some((_, inv)) = report::load_valid(&args.inventory.path)? else { return Ok(Exit::Failed) };
    let command = format!("apply -i {}", args.inventory.path.display());
    converge(Request { inv: Arc::new(inv), command, leaving_known: Vec::new(), intent: Box::new(|_| Ok(())) }, &args.run)
}

/// Runs `request` (`action::apply`) with the prompt as its confirmation, and reports how it went.
pub fn converge(request: Request, options: &RunOptions) -> anyhow::Result<Exit> {
    let settings =
        Settings { dry_run: options.dry_run, force_unlock: options.force_unlock, state_dir: options.state_dir.clone().unwrap_or_else(rundir::default_base) };
    let confirm = |plan: &Plan| if options.yes { Ok(true) } else { confirm(plan) };
    Ok(match super::block_on(action::apply::run(&request, &settings, &confirm))?? {
        Outcome::Blocked => Exit::Failed,
        Outcome::Planned => Exit::Success,
        Outcome::Declined => {
            eprintln!("nothing was changed");
            Exit::Failed
        }
        Outcome::Ran { summary, run_dir } => {
            report_summary(&summary, &run_dir, options.output)?;
            match (&summary.failure, summary.interrupted) {
                (Some(_), _) => Exit::Failed,
                (None, true) if summary.lock_lost.is_some() => Exit::Failed,
                (None, true) => Exit::Interrupted,
                (None, false) => Exit::Success,
            }
        }
    })
}

fn confirm(plan: &Plan) -> anyhow::Result<bool> {
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

//! Command-line surface: one file per command. Each turns its arguments into a call of the library and
//! returns an [`Exit`]; exit codes are mapped here and nowhere else, from the table in exit.rs.
mod apply;
mod artifacts;
mod backups;
mod certs;
mod check;
mod etcd;
mod exit;
mod facts;
mod init;
mod lab;
mod monitoring;
mod node;
mod plan;
mod render;
pub mod report;
mod status;
mod upgrade;
mod verify;

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "kubeha", version, about = "Provision highly-available Kubernetes clusters from one inventory, over SSH")]
#[command(after_help = exit::help_all())]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate an inventory and check that etcd keeps quorum when any one region, zone or rack is lost.
    Check(check::Args),
    /// Probe every host over SSH (read-only): OS, resources, installed components, listening ports.
    Facts(facts::Args),
    /// Render every configuration file (kubeadm, etcd, keepalived, HAProxy, CNI, systemd) into a folder.
    Render(render::Args),
    /// Show the ordered steps, with their quorum gates, that bring the cluster up.
    Plan(plan::Args),
    /// Bring the cluster to the inventory: probe, plan, confirm, then run the plan under the cluster lock.
    Apply(apply::Args),
    /// Change Kubernetes or etcd versions only: apply, refusing a plan that would change anything else. Rolls
    /// etcd one member at a time (leader last), the control planes one at a time, the workers one failure
    /// domain at a time.
    Upgrade(upgrade::Args),
    /// Add, replace or remove one host, with the same quorum gates as apply.
    Node(node::Args),
    /// Check the running cluster: etcd quorum and leader, the VIP, HAProxy backends, /readyz, nodes and labels.
    Verify(verify::Args),
    /// Show the cluster's health: hosts, etcd members and leader, the VIP, and how many more losses quorum takes.
    Status(status::Args),
    /// Certificates on every host with their expiry (`certs check`); `apply` renews those due.
    Certs(certs::Args),
    /// etcd snapshots (save and download) and restore after a loss of quorum (docs/restore.md).
    Etcd(etcd::Args),
    /// Prometheus for the cluster: `monitoring render` writes the scrape configuration and alert rules.
    Monitoring(monitoring::Args),
    /// Write a commented example inventory to start from.
    Init(init::Args),
    /// The release files the hosts need (`list`) and offline bundles of them (`fetch -o DIR`).
    Artifacts(artifacts::Args),
    /// Local lab machines (systemd-nspawn) for trying kubeha: up, down, status, kill, partition, heal.
    Lab(lab::Args),
}

/// Shared `-i/--inventory` argument.
#[derive(clap::Args)]
struct InventoryArg {
    /// The inventory file (YAML, apiVersion kubeha/v1alpha1).
    #[arg(short = 'i', long = "inventory", value_name = "FILE")]
    path: PathBuf,
}

/// Shared `--templates DIR` argument of the commands that render.
#[derive(clap::Args)]
struct TemplatesArg {
    /// Folder of NAME.tera files that replace built-in templates of the same name (e.g. haproxy/haproxy.cfg.tera,
    /// monitoring/rules.yml.tera).
    #[arg(long = "templates", value_name = "DIR")]
    dir: Option<PathBuf>,
}

impl TemplatesArg {
    fn load(&self) -> Result<crate::render::templates::Templates, crate::render::templates::TemplateError> {
        crate::render::templates::Templates::load(self.dir.as_deref())
    }
}

#[derive(Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
enum OutputFormat {
    #[default]
    Text,
    Json,
}

pub use exit::Exit;

/// Runs a command's async work on a multi-threaded runtime: SSH sessions to the hosts run in parallel.
fn block_on<F: std::future::Future>(work: F) -> anyhow::Result<F::Output> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(work))
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let exit = if e.use_stderr() { Exit::Usage } else { Exit::Success };
            let _ = e.print();
            return exit.into();
        }
    };
    let result = match cli.command {
        Command::Check(args) => check::run(args),
        Command::Facts(args) => facts::run(args),
        Command::Render(args) => render::run(args),
        Command::Plan(args) => plan::run(args),
        Command::Init(args) => init::run(args),
        Command::Apply(args) => apply::run(args),
        Command::Upgrade(args) => upgrade::run(args),
        Command::Verify(args) => verify::run(args),
        Command::Node(args) => node::run(args),
        Command::Status(args) => status::run(args),
        Command::Certs(args) => certs::run(args),
        Command::Etcd(args) => etcd::run(args),
        Command::Artifacts(args) => artifacts::run(args),
        Command::Lab(args) => lab::run(args),
        Command::Monitoring(args) => monitoring::run(args),
    };
    match result {
        Ok(exit) => exit.into(),
        Err(e) => {
            eprintln!("error: {e:#}");
            Exit::Failed.into()
        }
    }
}

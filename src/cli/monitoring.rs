//! `kubeha monitoring render`: the Prometheus configuration, alert rules and scrape identity of a cluster,
//! written into a folder (offline: nothing is asked of the hosts).
use super::{Exit, InventoryArg, TemplatesArg, report};
use crate::monitoring::{self, output};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Write the cluster's Prometheus scrape configuration, alert rules and scrape identity into a folder.
    #[command(after_help = "\
prometheus.yml scrapes every etcd, HAProxy, kubeha-metrics, API server and kubelet target; rules.yml alerts on the etcd
leader, members down, quorum margin (total and per zone/rack), leader changes, DB size, backup age, certificates, the
VIP, HAProxy backends and /readyz; prometheus-rbac.yaml is the read-only identity Prometheus scrapes with.
credentials/ (mode 0700) holds the Kubernetes CA and the scrape token, files of mode 0600 created empty for you to
fill (README.md in DIR says how); a later render keeps what you wrote there and rewrites only the other files.")]
    Render(RenderArgs),
}

#[derive(clap::Args)]
struct RenderArgs {
    #[command(flatten)]
    inventory: InventoryArg,
    /// Folder to write: new, empty, or written by an earlier `kubeha monitoring render`.
    #[arg(short = 'o', long = "output-dir", value_name = "DIR")]
    output: PathBuf,
    #[command(flatten)]
    templates: TemplatesArg,
}

pub fn run(args: Args) -> anyhow::Result<Exit> {
    let Command::Render(args) = args.command;
    let Some((loaded, inv)) = report::load_valid(&args.inventory.path)? else { return Ok(Exit::Failed) };
    let templates = args.templates.load()?;
    let files = monitoring::render(&inv, &templates)?;
    let written = output::write(&files, &args.output)?;
    let targets = monitoring::scrape::scrape_config(&inv).jobs.iter().map(|j| j.targets.len()).sum::<usize>();
    println!("{}: wrote {} files and {} scrape targets to {}", loaded.file, files.len(), targets, args.output.display());
    for path in &written.created {
        println!("fill {}: created empty (mode 0600), see README.md there", args.output.join(path).display());
    }
    for path in &written.kept {
        println!("kept {} (mode 0600)", args.output.join(path).display());
    }
    Ok(Exit::Success)
}

//! `kubeha lab`: local machines for trying kubeha (systemd-nspawn, root only).
use super::{InventoryArg, Outcome, OutputFormat, report};
use crate::inventory::Inventory;
use crate::lab::{self, layout::Layout};
use clap::Subcommand;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: LabCommand,
}

#[derive(Subcommand)]
enum LabCommand {
    /// Create (or complete) one machine per inventory host; running machines are kept. Serves the lab's
    /// download mirror on loopback when spec.artifacts.mirror is http://127.0.0.1:PORT.
    Up(InventoryArg),
    /// Stop the mirror and every machine, unmount, remove bridges and the lab's state; safe to repeat.
    Down(InventoryArg),
    /// Show every machine: running, link, SSH, memory.
    Status {
        #[command(flatten)]
        inventory: InventoryArg,
        #[arg(long, value_enum, default_value_t)]
        output: OutputFormat,
    },
    /// Power-cut a machine: its init and every process in it die at once.
    Kill {
        host: String,
        #[command(flatten)]
        inventory: InventoryArg,
    },
    /// Cut a machine's network link (it keeps running, unreachable).
    Partition {
        host: String,
        #[command(flatten)]
        inventory: InventoryArg,
    },
    /// Restore a partitioned machine's link.
    Heal {
        host: String,
        #[command(flatten)]
        inventory: InventoryArg,
    },
}

fn load(arg: &InventoryArg) -> anyhow::Result<Option<(Inventory, Layout)>> {
    let Some((_, inv)) = report::load_valid(&arg.path)? else { return Ok(None) };
    let layout = Layout::from_inventory(&inv, &lab::root())?;
    Ok(Some((inv, layout)))
}

pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let arg = match &args.command {
        LabCommand::Up(i) | LabCommand::Down(i) => i,
        LabCommand::Status { inventory, .. }
        | LabCommand::Kill { inventory, .. }
        | LabCommand::Partition { inventory, .. }
        | LabCommand::Heal { inventory, .. } => inventory,
    };
    let Some((inv, layout)) = load(arg)? else { return Ok(Outcome::Findings) };
    match args.command {
        LabCommand::Up(_) => {
            let ssh: Vec<_> = inv.hosts.iter().map(|h| (h.name.clone(), h.ssh.identity_file.clone(), h.ssh.known_hosts_file.clone())).collect();
            let mirror = lab::mirror::Wanted::from_inventory(&inv)?;
            let report = lab::up(&layout, &ssh, mirror.as_ref())?;
            for w in &report.warnings {
                eprintln!("warning: {w}");
            }
            if report.image_built {
                println!("image built in {:.1} s", report.image_seconds);
            }
            println!("upstream programs {} (built or verified in {:.1} s)", report.upstream.display(), report.upstream_seconds);
            if let Some(m) = &report.mirror {
                let how = if m.started { "started" } else { "kept running" };
                println!("mirror {} serves {} ({} {how})", m.url, m.root.display(), m.unit);
            }
            println!(
                "lab {}: {} machines running ({} booted, {} kept) in {:.1} s; SSH key {}, known_hosts {}",
                layout.cluster,
                layout.machines.len(),
                report.booted.len(),
                report.kept.len(),
                report.seconds,
                layout.identity_file().display(),
                layout.known_hosts_file().display()
            );
        }
        LabCommand::Down(_) => {
            let stopped = lab::down(&layout)?;
            println!("lab {}: down ({} machines cleaned: {})", layout.cluster, stopped.len(), stopped.join(", "));
        }
        LabCommand::Status { output, .. } => {
            let machines = lab::status(&layout)?;
            match output {
                OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&machines)?),
                OutputFormat::Text => {
                    for m in &machines {
                        println!(
                            "{:<12} {:<15} {:<8} link {:<11} ssh {:<3} {:>6.0} MiB",
                            m.name,
                            m.address,
                            m.state,
                            m.link,
                            if m.ssh { "yes" } else { "no" },
                            m.memory_mib
                        );
                    }
                }
            }
        }
        LabCommand::Kill { host, .. } => {
            lab::kill(&layout, &host)?;
            println!("{host}: powered off abruptly; `kubeha lab up` boots it again");
        }
        LabCommand::Partition { host, .. } => {
            lab::partition(&layout, &host, true)?;
            println!("{host}: link cut; `kubeha lab heal {host}` restores it");
        }
        LabCommand::Heal { host, .. } => {
            lab::partition(&layout, &host, false)?;
            println!("{host}: link restored");
        }
    }
    Ok(Outcome::Success)
}

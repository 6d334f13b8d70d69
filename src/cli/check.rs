//! `kubeha check`: validation plus the failure-domain verdicts.
use super::{Exit, InventoryArg, OutputFormat, report};
use crate::inventory::{self, Inventory, Severity};
use crate::topology::{self, Analysis};
use serde_json::json;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    inventory: InventoryArg,
    /// Treat warnings (e.g. a zone whose loss would lose quorum) as errors.
    #[arg(long)]
    strict: bool,
    #[arg(long, value_enum, default_value_t)]
    output: OutputFormat,
}

pub fn run(args: Args) -> anyhow::Result<Exit> {
    let loaded = inventory::load(&args.inventory.path)?;
    let analysis = loaded.inventory.as_ref().map(topology::analyse);
    let mut diagnostics = loaded.diagnostics.clone();
    if let Some(a) = &analysis {
        diagnostics.extend(a.warnings.iter().cloned());
    }
    if args.strict {
        for d in &mut diagnostics {
            d.severity = Severity::Error;
        }
    }
    let errors = diagnostics.iter().filter(|d| d.is_error()).count();
    let warnings = diagnostics.len() - errors;
    match args.output {
        OutputFormat::Json => {
            let doc = json!({
                "file": loaded.file,
                "valid": errors == 0,
                "errors": errors,
                "warnings": warnings,
                "diagnostics": diagnostics,
                "summary": loaded.inventory.as_ref().map(summary),
                "topology": analysis,
            });
            println!("{}", serde_json::to_string_pretty(&doc)?);
        }
        OutputFormat::Text => {
            if let (Some(inv), Some(a)) = (&loaded.inventory, &analysis) {
                print_topology(inv, a);
            }
            report::print_diagnostics(&loaded, &diagnostics);
            println!("{}: {}", loaded.file, verdict_line(errors, warnings, args.strict));
        }
    }
    Ok(if errors == 0 { Exit::Success } else { Exit::Failed })
}

fn verdict_line(errors: usize, warnings: usize, strict: bool) -> String {
    match (errors, warnings) {
        (0, 0) => "valid, no warnings".to_string(),
        (0, w) => format!("valid, {w} warning(s)"),
        (e, _) if strict => format!("{e} problem(s) (--strict counts warnings as errors)"),
        (e, 0) => format!("{e} error(s)"),
        (e, w) => format!("{e} error(s), {w} warning(s)"),
    }
}

fn summary(inv: &Inventory) -> serde_json::Value {
    json!({
        "cluster": inv.name,
        "hosts": inv.hosts.len(),
        "controlPlanes": inv.control_planes().count(),
        "workers": inv.workers().count(),
        "kubernetes": inv.kubernetes.version,
        "etcd": inv.etcd.version,
        "cni": format!("{} {}", inv.kubernetes.cni.name(), inv.kubernetes.cni_version),
    })
}

fn print_topology(inv: &Inventory, a: &Analysis) {
    println!(
        "cluster {}: {} hosts ({} control planes, {} workers), Kubernetes {}, etcd {}, {} {}",
        inv.name,
        inv.hosts.len(),
        a.members,
        inv.workers().count(),
        inv.kubernetes.version,
        inv.etcd.version,
        inv.kubernetes.cni.name(),
        inv.kubernetes.cni_version
    );
    println!(
        "etcd: {} members, quorum {}, tolerates {} member failure(s) and the loss of any {} zone(s)",
        a.members, a.quorum, a.tolerated_member_failures, a.tolerated_zone_failures
    );
    let width = a.domains.iter().map(|d| d.name.len()).max().unwrap_or(0);
    for d in &a.domains {
        let left = a.members - d.members;
        let state = if d.survives { "survives" } else { "LOSES QUORUM" };
        println!("  {:<6} {:<width$}  {} of {} members  {state} ({left} left, quorum {})", d.kind.name(), d.name, d.members, a.members, a.quorum);
    }
}

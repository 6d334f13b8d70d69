//! `kubeha artifacts list|fetch`: the release files an inventory's hosts need, and an offline bundle of them.
use super::{Exit, InventoryArg, OutputFormat, report};
use crate::artifacts::{self, Via, bundle, listing};
use crate::inventory::ArtifactSource;
use clap::Subcommand;
use serde_json::json;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: ArtifactsCommand,
}

#[derive(Subcommand)]
enum ArtifactsCommand {
    /// Show every file the hosts need: from where (URL or bundle path), for which hosts, with which checksum. No download.
    List(ListArgs),
    /// Download (or take from the cache) and verify every file, then write them with a manifest into DIR: a bundle
    /// for `spec.artifacts.bundle` on sites without internet access.
    Fetch(FetchArgs),
}

#[derive(clap::Args)]
struct ListArgs {
    #[command(flatten)]
    inventory: InventoryArg,
    #[arg(long, value_enum, default_value_t)]
    output: OutputFormat,
}

#[derive(clap::Args)]
struct FetchArgs {
    #[command(flatten)]
    inventory: InventoryArg,
    /// The bundle folder: created, or updated if an earlier fetch wrote it; refused if it holds anything else.
    #[arg(short = 'o', long = "output-dir", value_name = "DIR")]
    output: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<Exit> {
    match args.command {
        ArtifactsCommand::List(a) => list(a),
        ArtifactsCommand::Fetch(a) => fetch(a),
    }
}

fn source_name(source: &ArtifactSource) -> &'static str {
    match source {
        ArtifactSource::Upstream => "upstream",
        ArtifactSource::Mirror(_) => "mirror",
        ArtifactSource::Bundle(_) => "bundle",
    }
}

fn list(args: ListArgs) -> anyhow::Result<Exit> {
    let Some((loaded, inv)) = report::load_valid(&args.inventory.path)? else { return Ok(Exit::Failed) };
    let listed = listing::list(&inv)?;
    match args.output {
        OutputFormat::Json => {
            let doc = json!({
                "file": loaded.file,
                "arch": inv.artifacts.arch,
                "source": source_name(&inv.artifacts.source),
                "artifacts": listed,
            });
            println!("{}", serde_json::to_string_pretty(&doc)?);
        }
        OutputFormat::Text => {
            for l in &listed {
                let who = match l.scope {
                    artifacts::catalogue::Scope::ControlPlanes => "control planes",
                    artifacts::catalogue::Scope::AllNodes => "every node",
                };
                println!("{} {} ({}): {} for {}: {}", l.name, l.version, l.arch, l.provides.join(", "), who, l.hosts.join(", "));
                println!("  from     {}", l.from);
                match &l.checksum.value {
                    Some(v) => println!("  {:<8} {v} (from {})", l.checksum.algorithm.name(), l.checksum.from),
                    None => println!("  {:<8} from {}", l.checksum.algorithm.name(), l.checksum.from),
                }
            }
            println!("{}: {} artifact(s) from {}", loaded.file, listed.len(), source_name(&inv.artifacts.source));
        }
    }
    Ok(Exit::Success)
}

fn fetch(args: FetchArgs) -> anyhow::Result<Exit> {
    let Some((loaded, inv)) = report::load_valid(&args.inventory.path)? else { return Ok(Exit::Failed) };
    let options = artifacts::Options::standard()?;
    let obtained = super::block_on(artifacts::obtain(&inv, &options))??;
    let manifest = bundle::write(&args.output, &obtained)?;
    let mut bytes = 0;
    for o in &obtained {
        let via = match o.via {
            Via::Download => "downloaded",
            Via::Cache => "from the cache",
            Via::Bundle => "from the bundle",
        };
        bytes += std::fs::metadata(&o.path).map(|m| m.len()).unwrap_or(0);
        println!("{:<32} sha256:{}  {via}", o.artifact.label(), o.sha256);
    }
    println!(
        "{}: wrote a bundle of {} file(s), {:.1} MiB, to {} (manifest {}); use it with spec.artifacts.bundle: {}",
        loaded.file,
        obtained.len(),
        bytes as f64 / (1024.0 * 1024.0),
        args.output.display(),
        manifest.display(),
        args.output.display()
    );
    Ok(Exit::Success)
}

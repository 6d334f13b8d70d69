//! `kubeha render`: every configuration file, laid out as DIR/<host>/<path on host> and DIR/_cluster/.
use super::{Exit, InventoryArg, TemplatesArg, report};
use crate::render::{self, secrets::Secrets};
use anyhow::Context;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    inventory: InventoryArg,
    /// Folder to write; replaced if an earlier render made it, refused if it holds anything else.
    #[arg(short = 'o', long = "output-dir", value_name = "DIR")]
    output: PathBuf,
    #[command(flatten)]
    templates: TemplatesArg,
    /// YAML/JSON file with the cluster's secrets (bootstrapToken, certificateKey, caCertHash, vrrpAuthPass,
    /// etcdClusterToken). Without it, throwaway secrets are generated for this render only.
    #[arg(long, value_name = "FILE")]
    secrets: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<Exit> {
    let Some((loaded, inv)) = report::load_valid(&args.inventory.path)? else { return Ok(Exit::Failed) };
    let templates = args.templates.load()?;
    let secrets = match &args.secrets {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("cannot read secrets file {}", path.display()))?;
            let secrets: Secrets = serde_saphyr::from_str(&text).map_err(|e| anyhow::anyhow!("secrets file {}: {}", path.display(), e.without_snippet()))?;
            secrets.validate().with_context(|| format!("secrets file {}", path.display()))?;
            secrets
        }
        None => {
            eprintln!(
                "note: no --secrets given: the token, certificate key and CA pin in these files are throwaway values; `kubeha apply` uses the cluster's own"
            );
            Secrets::generate(&inv.name)?
        }
    };
    let files = render::render(&inv, &secrets, &templates)?;
    render::write_tree(&files, &args.output)?;
    for name in &templates.overridden {
        println!("template {name}: from {}", args.templates.dir.as_deref().unwrap_or_else(|| std::path::Path::new("")).display());
    }
    let secret_files = files.iter().filter(|f| f.is_secret()).count();
    println!(
        "{}: wrote {} files for {} hosts to {} ({} hold secrets, mode 0600)",
        loaded.file,
        files.len(),
        inv.hosts.len(),
        args.output.display(),
        secret_files
    );
    Ok(Exit::Success)
}

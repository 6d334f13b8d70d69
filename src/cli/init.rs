//! `kubeha init`: a commented example inventory that passes `kubeha check`, to edit from.
use super::Exit;
use anyhow::Context;
use std::io::Write;
use std::path::PathBuf;

pub const EXAMPLE: &str = include_str!("../../inventories/example.yaml");

#[derive(clap::Args)]
pub struct Args {
    /// Write to FILE instead of standard output; an existing file is kept unless --force.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,
    /// Replace FILE if it exists.
    #[arg(long, requires = "output")]
    force: bool,
}

pub fn run(args: Args) -> anyhow::Result<Exit> {
    let Some(path) = args.output else {
        print!("{EXAMPLE}");
        return Ok(Exit::Success);
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if args.force {
        options.create(true).truncate(true)
    } else {
        options.create_new(true)
    };
    let mut file = options.open(&path).with_context(|| {
        if path.exists() { format!("{} exists; pass --force to replace it", path.display()) } else { format!("cannot create {}", path.display()) }
    })?;
    file.write_all(EXAMPLE.as_bytes()).with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("wrote {}: edit the hosts, then `kubeha check -i {}`", path.display(), path.display());
    Ok(Exit::Success)
}

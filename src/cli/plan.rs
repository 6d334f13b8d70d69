pub fn run(_a: Args) -> anyhow::Result<super::Outcome> { todo!() }
#[derive(clap::Args)] pub struct Args {}

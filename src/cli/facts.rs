//! `kubeha facts`: read-only probes of every host over SSH, in parallel.
use super::{InventoryArg, Outcome, OutputFormat, report};
use crate::inventory::{self, Host, Inventory};
use crate::ssh::{self, ConnectOptions, HostTarget};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    inventory: InventoryArg,
    /// Record the host keys of hosts not yet in known_hosts (a changed key is always refused).
    #[arg(long)]
    accept_new_host_keys: bool,
    #[arg(long, value_enum, default_value_t)]
    output: OutputFormat,
}

/// The system-wide known_hosts is consulted after the inventory's own file, as OpenSSH does.
const GLOBAL_KNOWN_HOSTS: &str = "/etc/ssh/ssh_known_hosts";

/// How the transport reaches an inventory host: the inventory's SSH settings, translated.
pub fn target(host: &Host) -> HostTarget {
    let s = &host.ssh;
    let bastion = s.bastion.as_ref().map(|b| {
        Box::new(HostTarget {
            name: format!("bastion {}", b.address),
            address: b.address.clone(),
            port: b.port,
            user: b.user.clone(),
            identity_file: Some(b.identity_file.clone()),
            known_hosts_files: vec![b.known_hosts_file.clone(), GLOBAL_KNOWN_HOSTS.into()],
            r#become: ssh::Become::None,
            bastion: None,
        })
    });
    HostTarget {
        name: host.name.clone(),
        address: host.address.to_string(),
        port: s.port,
        user: s.user.clone(),
        identity_file: Some(s.identity_file.clone()),
        known_hosts_files: vec![s.known_hosts_file.clone(), GLOBAL_KNOWN_HOSTS.into()],
        r#become: match s.r#become {
            inventory::Become::None => ssh::Become::None,
            inventory::Become::Sudo => ssh::Become::Sudo,
        },
        bastion,
    }
}

pub fn connect_options(inv: &Inventory, accept_new_host_keys: bool) -> ConnectOptions {
    ConnectOptions { accept_new_host_keys, concurrency: inv.concurrency, ..ConnectOptions::default() }
}

pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let Some((_, inv)) = report::load_valid(&args.inventory.path)? else { return Ok(Outcome::Findings) };
    let targets: Vec<HostTarget> = inv.hosts.iter().map(target).collect();
    let options = connect_options(&inv, args.accept_new_host_keys);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let reports = runtime.block_on(crate::facts::gather(&targets, &options));
    match args.output {
        OutputFormat::Text => print!("{}", crate::facts::report::text(&reports)),
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&crate::facts::report::json(&reports))?),
    }
    let failed = crate::facts::report::failed_hosts(&reports);
    if failed.is_empty() {
        Ok(Outcome::Success)
    } else {
        eprintln!("error: {} of {} hosts failed: {}", failed.len(), reports.len(), failed.join(", "));
        Ok(Outcome::Findings)
    }
}

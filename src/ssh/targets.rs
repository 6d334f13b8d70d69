//! From the inventory to transport targets: the inventory's SSH settings, translated.
use super::{Become, ConnectOptions, HostTarget};
use crate::inventory::{self, Host, Inventory};

/// The system-wide known_hosts is consulted after the inventory's own file, as OpenSSH does.
const GLOBAL_KNOWN_HOSTS: &str = "/etc/ssh/ssh_known_hosts";

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
            r#become: Become::None,
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
            inventory::Become::None => Become::None,
            inventory::Become::Sudo => Become::Sudo,
        },
        bastion,
    }
}

pub fn connect_options(inv: &Inventory, accept_new_host_keys: bool) -> ConnectOptions {
    ConnectOptions { accept_new_host_keys, concurrency: inv.concurrency, ..ConnectOptions::default() }
}

/// A host name with its connected transport, or why it could not be reached.
pub type Connection = (String, Result<std::sync::Arc<dyn super::Transport>, super::SshError>);

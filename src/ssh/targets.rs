//! From inventory hosts to connected sessions: the inventory's SSH settings translated, and the one connect
//! path every command uses (the unreachable hosts come back with why, never as a failure of the others).
use super::{Become, ConnectOptions, HostTarget, SshError, Transport};
use crate::inventory::{self, Host, Inventory};
use std::collections::HashMap;
use std::sync::Arc;

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
pub type Connection = (String, Result<Arc<dyn Transport>, SshError>);

/// Connected hosts by name.
pub type Hosts = HashMap<String, Arc<dyn Transport>>;

/// Connects to every host of the inventory, one connection each, in parallel up to `concurrency`.
pub async fn connect(inv: &Inventory) -> (Hosts, Vec<SshError>) {
    connect_hosts(&inv.hosts, &connect_options(inv, false)).await
}

/// Connects to `hosts` with their own SSH settings: the ones that answered, and in the order given why the
/// others could not be reached.
pub async fn connect_hosts(hosts: &[Host], options: &ConnectOptions) -> (Hosts, Vec<SshError>) {
    let targets: Vec<HostTarget> = hosts.iter().map(target).collect();
    let mut reached = Hosts::new();
    let mut unreachable = Vec::new();
    for (name, result) in super::pool::connect_each(&targets, options).await {
        match result {
            Ok(session) => {
                reached.insert(name, session as Arc<dyn Transport>);
            }
            Err(e) => unreachable.push(e),
        }
    }
    (reached, unreachable)
}

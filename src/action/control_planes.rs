//! The control planes a command that works on etcd directly (snapshot, restore) can reach, in inventory order,
//! and why the others cannot be reached.
use crate::inventory::{Host, Inventory};
use crate::ssh::{SshError, Transport, targets::Hosts};
use std::sync::Arc;

/// A reachable control plane and its connection.
pub type Reachable<'a> = (&'a Host, Arc<dyn Transport>);

/// The reachable control planes in inventory order, and for each other one why it is not reachable.
pub fn split<'a>(inv: &'a Inventory, hosts: &Hosts, unreachable: &[SshError]) -> (Vec<Reachable<'a>>, Vec<String>) {
    let mut up = Vec::new();
    let mut down = Vec::new();
    for h in inv.control_planes() {
        match hosts.get(&h.name) {
            Some(t) => up.push((h, t.clone())),
            None => down.push(unreachable.iter().find(|e| e.host() == h.name).map(|e| e.to_string()).unwrap_or_else(|| format!("{}: not connected", h.name))),
        }
    }
    (up, down)
}

/// Their names, comma-separated, for messages.
pub fn names(list: &[Reachable]) -> String {
    list.iter().map(|(h, _)| h.name.as_str()).collect::<Vec<_>>().join(", ")
}

/// Their transports, for probes that ask any of them.
pub fn transports<'t>(list: &'t [Reachable]) -> Vec<&'t dyn Transport> {
    list.iter().map(|(_, t)| t.as_ref()).collect()
}

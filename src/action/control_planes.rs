//! The control planes a command that works on etcd directly (snapshot, restore) can reach, in inventory order,
//! and why the others cannot be reached.
use crate::inventory::{Host, Inventory};
use crate::ssh::{SshError, Transport, targets::Hosts};
use std::sync::Arc;

/// A reachable control plane and its connection.
pub type Reachable<'a> = (&'a Host, Arc<dyn Transport>);

/// A control plane with its connection or why it has none.
pub type Connection<'a> = (&'a Host, Result<Arc<dyn Transport>, String>);

/// Every control plane in inventory order, with its connection or why it has none.
pub fn each<'a>(inv: &'a Inventory, hosts: &Hosts, unreachable: &[SshError]) -> Vec<Connection<'a>> {
    inv.control_planes()
        .map(|h| {
            let connection = hosts
                .get(&h.name)
                .cloned()
                .ok_or_else(|| unreachable.iter().find(|e| e.host() == h.name).map_or_else(|| format!("{}: not connected", h.name), |e| e.to_string()));
            (h, connection)
        })
        .collect()
}

/// The reachable control planes in inventory order, and for each other one why it is not reachable.
pub fn split<'a>(inv: &'a Inventory, hosts: &Hosts, unreachable: &[SshError]) -> (Vec<Reachable<'a>>, Vec<String>) {
    let mut up = Vec::new();
    let mut down = Vec::new();
    for (h, connection) in each(inv, hosts, unreachable) {
        match connection {
            Ok(t) => up.push((h, t)),
            Err(why) => down.push(why),
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

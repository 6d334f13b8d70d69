//! The one rule that ties an etcd member to an inventory host: the same name, or the host's peer URL (a
//! member added but never started has no name yet). The planner, the executor, `status` and the membership
//! diff all ask it here: sites that each had their own version disagreed, and a member one site took for a
//! stranger was one another site would reset.
use super::gate::View;
use super::status::Member;
use crate::inventory::{Host, Inventory};

impl Member {
    /// Whether this is the member of the host named `name` whose peer URL is `peer_url`.
    pub fn is_of(&self, name: &str, peer_url: &str) -> bool {
        self.name == name || self.peer_urls.iter().any(|p| p == peer_url)
    }
}

/// The member that is this control plane, if the cluster lists one.
pub fn member_of<'v>(view: &'v View, host: &Host) -> Option<&'v Member> {
    let peer_url = host.peer_url();
    view.members.iter().find(|m| m.is_of(&host.name, &peer_url))
}

/// The control plane of the inventory that this member is, if any: none means it is not the inventory's.
pub fn host_of<'i>(inv: &'i Inventory, m: &Member) -> Option<&'i Host> {
    inv.control_planes().find(|h| m.is_of(&h.name, &h.peer_url()))
}

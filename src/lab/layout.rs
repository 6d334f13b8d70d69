//! What a lab looks like, derived purely from the inventory: machines, L2 segments, bridge and link
//! names, and where everything lives on disk. No I/O here, so it is unit-tested directly.
use crate::inventory::Inventory;
use ipnet::Ipv4Net;
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

/// 198.18.0.0/15 is reserved for network benchmarks and never routed: lab traffic cannot leak anywhere.
pub const LAB_RANGE: Ipv4Net = Ipv4Net::new_assert(Ipv4Addr::new(198, 18, 0, 0), 15);
/// Linux interface names have at most 15 bytes; nspawn names the host side of a machine's link `vb-NAME`.
const MAX_MACHINE_NAME: usize = 12;
pub const DEFAULT_ROOT: &str = "/var/lib/kubeha/lab";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    pub network: Ipv4Net,
    /// Host-side bridge: `kh-` + a hash of cluster and network, so leftovers are recognisable by name.
    pub bridge: String,
    /// The operator's address on the bridge; machines route other lab segments through it.
    pub gateway: Ipv4Addr,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Machine {
    pub name: String,
    pub address: Ipv4Addr,
    pub segment: usize,
}

impl Machine {
    /// The host side of the machine's virtual link: cutting it is a network partition.
    pub fn link(&self) -> String {
        format!("vb-{}", self.name)
    }
}

#[derive(Clone, Debug)]
pub struct Layout {
    pub cluster: String,
    pub root: PathBuf,
    pub segments: Vec<Segment>,
    pub machines: Vec<Machine>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LayoutError(pub String);

impl Layout {
    pub fn from_inventory(inv: &Inventory, root: &Path) -> Result<Self, LayoutError> {
        let mut problems = Vec::new();
        let mut addresses = Vec::new();
        for h in &inv.hosts {
            match h.address {
                IpAddr::V4(a) if LAB_RANGE.contains(&a) => addresses.push((h.name.clone(), a)),
                other => problems.push(format!("host {} has address {other}; lab machines must use IPv4 addresses in {LAB_RANGE}", h.name)),
            }
            if h.name.len() > MAX_MACHINE_NAME {
                problems.push(format!("host name {} is longer than {MAX_MACHINE_NAME} characters; the lab names its network link vb-NAME, at most 15", h.name));
            }
        }
        let vip = inv.load_balancer.vrrp().map(|v| (v.vip, v.network));
        if let Some((vip, _)) = vip
            && !matches!(vip, IpAddr::V4(a) if LAB_RANGE.contains(&a))
        {
            problems.push(format!("the VIP {vip} must be an IPv4 address in {LAB_RANGE} in a lab"));
        }
        if !problems.is_empty() {
            return Err(LayoutError(problems.join("\n")));
        }
        // One segment per network: the VIP's network (where keepalived needs every control plane), and a
        // /24 around any host outside it.
        let vip_net = vip.and_then(|(_, n)| match n {
            ipnet::IpNet::V4(n) => Some(n),
            ipnet::IpNet::V6(_) => None,
        });
        let mut networks: BTreeSet<Ipv4Net> = BTreeSet::new();
        let network_of = |a: Ipv4Addr| match vip_net {
            Some(n) if n.contains(&a) => n,
            _ => Ipv4Net::new_assert(a, 24).trunc(),
        };
        for (_, a) in &addresses {
            networks.insert(network_of(*a));
        }
        let used: BTreeSet<Ipv4Addr> =
            addresses.iter().map(|(_, a)| *a).chain(vip.and_then(|(v, _)| if let IpAddr::V4(v) = v { Some(v) } else { None })).collect();
        let mut segments = Vec::new();
        for network in networks {
            let Some(gateway) = network.hosts().rev().find(|a| !used.contains(a)) else {
                return Err(LayoutError(format!("network {network} has no free address left for the lab's bridge")));
            };
            segments.push(Segment { network, bridge: bridge_name(&inv.name, network), gateway });
        }
        let machines = addresses
            .into_iter()
            .map(|(name, address)| Machine { segment: segments.iter().position(|s| s.network == network_of(address)).unwrap_or(0), name, address })
            .collect();
        Ok(Self { cluster: inv.name.clone(), root: root.to_path_buf(), segments, machines })
    }

    pub fn machine(&self, name: &str) -> Option<&Machine> {
        self.machines.iter().find(|m| m.name == name)
    }

    pub fn cache_dir(&self) -> PathBuf {
        self.root.join("cache")
    }

    /// Everything of this lab: keys, known_hosts, machine overlays, recorded PIDs.
    pub fn state_dir(&self) -> PathBuf {
        self.root.join(&self.cluster)
    }

    pub fn machine_dir(&self, name: &str) -> PathBuf {
        self.state_dir().join("machines").join(name)
    }

    pub fn identity_file(&self) -> PathBuf {
        self.state_dir().join("id_ed25519")
    }

    pub fn known_hosts_file(&self) -> PathBuf {
        self.state_dir().join("known_hosts")
    }

    pub fn state_file(&self) -> PathBuf {
        self.state_dir().join("state.json")
    }
}

/// FNV-1a: stable across Rust versions (unlike std's hasher), enough to make names distinct.
pub fn short_hash(text: &str) -> String {
    let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    format!("{:08x}", hash as u32)
}

fn bridge_name(cluster: &str, network: Ipv4Net) -> String {
    format!("kh-{}", short_hash(&format!("{cluster}/{network}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::{self, PathContext};

    use crate::test_support::lab;

    #[test]
    fn lab_inventory_is_one_segment_with_a_free_gateway() {
        let layout = Layout::from_inventory(&lab(), Path::new("/x")).unwrap();
        assert_eq!(layout.segments.len(), 1);
        let s = &layout.segments[0];
        assert_eq!(s.network.to_string(), "198.18.0.0/24");
        assert_eq!(s.gateway, Ipv4Addr::new(198, 18, 0, 254));
        assert!(s.bridge.starts_with("kh-") && s.bridge.len() <= 15);
        assert_eq!(layout.machines.len(), 5);
        assert_eq!(layout.machine("cp-2").unwrap().link(), "vb-cp-2");
        assert_eq!(layout.identity_file(), Path::new("/x/lab/id_ed25519"));
    }

    #[test]
    fn refuses_addresses_outside_the_lab_range() {
        let loaded = inventory::load(Path::new("inventories/example.yaml")).unwrap();
        let err = Layout::from_inventory(&loaded.inventory.unwrap(), Path::new("/x")).unwrap_err().to_string();
        assert!(err.contains("host cp-1 has address 192.168.10.11; lab machines must use IPv4 addresses in 198.18.0.0/15"), "{err}");
        assert!(err.contains("the VIP 192.168.10.100"), "{err}");
    }

    #[test]
    fn workers_outside_the_vip_network_get_their_own_segment() {
        let mut text = std::fs::read_to_string("inventories/lab.yaml").unwrap();
        text = text.replace("198.18.0.21", "198.18.5.21").replace("198.18.0.22", "198.18.5.22");
        let loaded = inventory::parse("l.yaml".into(), text, &PathContext { inventory_dir: ".".into(), home: None });
        let layout = Layout::from_inventory(&loaded.inventory.unwrap(), Path::new("/x")).unwrap();
        assert_eq!(layout.segments.len(), 2);
        assert_ne!(layout.segments[0].bridge, layout.segments[1].bridge);
        assert_eq!(layout.machine("wk-1").unwrap().segment, 1);
        assert_eq!(layout.segments[1].gateway, Ipv4Addr::new(198, 18, 5, 254));
    }
}

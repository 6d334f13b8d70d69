use super::*;
use crate::inventory::{self, PathContext};
use proptest::prelude::*;

fn inventory_with(hosts: &[(bool, &str, Option<&str>)]) -> Inventory {
    let mut yaml = String::from(
        "apiVersion: kubeha/v1alpha1\nkind: Cluster\nmetadata: {name: t}\nspec:\n  kubernetes: {version: 1.36.4}\n  etcd: {version: 3.6.14}\n  controlPlane:\n    loadBalancer: {mode: keepalived-haproxy, vip: 198.18.0.250/24}\n  hosts:\n",
    );
    for (i, (cp, zone, rack)) in hosts.iter().enumerate() {
        let role = if *cp { "control-plane" } else { "worker" };
        let rack = rack.map(|r| format!(", rack: {r}")).unwrap_or_default();
        yaml.push_str(&format!("  - {{name: h{i}, address: 198.18.0.{}, roles: [{role}], zone: {zone}{rack}}}\n", i + 1));
    }
    let paths = PathContext { inventory_dir: ".".into(), home: None };
    let loaded = inventory::parse("t.yaml".into(), yaml, &paths);
    loaded.inventory.unwrap_or_else(|| panic!("{:?}", loaded.diagnostics))
}

#[test]
fn two_of_three_in_one_zone_loses_quorum_with_advice() {
    let inv = inventory_with(&[(true, "az-a", None), (true, "az-a", None), (true, "az-b", None)]);
    let a = analyse(&inv);
    let az_a = a.domains.iter().find(|d| d.name == "az-a").unwrap();
    assert!(!az_a.survives);
    assert_eq!(az_a.verdict, "zone az-a holds 2 of 3 etcd members: losing it loses quorum (1 left, 2 needed); add a third zone for one member from zone az-a");
    assert!(a.domains.iter().find(|d| d.name == "az-b").unwrap().survives);
    assert_eq!(a.tolerated_zone_failures, 0);
}

#[test]
fn three_zones_survive_one_loss_without_warnings() {
    let inv = inventory_with(&[(true, "a", Some("r1")), (true, "b", Some("r1")), (true, "c", Some("r1")), (false, "a", None), (false, "b", None)]);
    let a = analyse(&inv);
    assert!(a.domains.iter().all(|d| d.survives));
    assert_eq!(a.tolerated_zone_failures, 1);
    assert!(a.warnings.is_empty(), "{:?}", a.warnings);
    // Racks are per zone: "r1" in three zones is three racks.
    assert_eq!(a.domains.iter().filter(|d| d.kind == DomainKind::Rack).count(), 3);
}

#[test]
fn warns_on_even_single_and_crowded_workers() {
    let even = analyse(&inventory_with(&[(true, "a", None), (true, "b", None), (true, "c", None), (true, "d", None)]));
    assert!(even.warnings.iter().any(|w| w.message.starts_with("4 etcd members tolerate 1 failure")));
    let single = analyse(&inventory_with(&[(true, "a", None), (false, "a", None), (false, "a", None)]));
    assert!(single.warnings.iter().any(|w| w.message.starts_with("a single control plane")));
    assert!(single.warnings.iter().any(|w| w.message.starts_with("all 2 workers are in zone a")));
}

/// Independent model: remove every member of the lost domains and count who is left, using the
/// definition of a majority (strictly more than half) rather than the quorum formula.
fn brute_survives(zones: &[&str], lost: &[&str]) -> bool {
    let alive = zones.iter().filter(|z| !lost.contains(z)).count();
    2 * alive > zones.len()
}

fn brute_tolerated_zone_failures(zones: &[&str]) -> usize {
    let mut distinct: Vec<&str> = zones.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    let mut best = 0;
    for k in 1..=distinct.len() {
        let all_subsets_survive = (0u32..(1 << distinct.len())).filter(|mask| mask.count_ones() as usize == k).all(|mask| {
            let lost: Vec<&str> = distinct.iter().enumerate().filter(|(i, _)| mask & (1 << i) != 0).map(|(_, z)| *z).collect();
            brute_survives(zones, &lost)
        });
        if !all_subsets_survive {
            break;
        }
        best = k;
    }
    best
}

proptest! {
    #[test]
    fn zone_verdicts_match_brute_force(cp_zones in proptest::collection::vec(0usize..4, 1..9), workers in proptest::collection::vec(0usize..4, 0..4)) {
        const NAMES: [&str; 4] = ["az-a", "az-b", "az-c", "az-d"];
        let cps: Vec<&str> = cp_zones.iter().map(|z| NAMES[*z]).collect();
        let mut hosts: Vec<(bool, &str, Option<&str>)> = cps.iter().map(|z| (true, *z, None)).collect();
        hosts.extend(workers.iter().map(|z| (false, NAMES[*z], None)));
        let a = analyse(&inventory_with(&hosts));
        prop_assert_eq!(a.members, cps.len());
        for d in a.domains.iter().filter(|d| d.kind == DomainKind::Zone) {
            prop_assert_eq!(d.survives, brute_survives(&cps, &[d.name.as_str()]), "zone {}", d.name);
            prop_assert_eq!(d.members, cps.iter().filter(|z| **z == d.name).count());
        }
        prop_assert_eq!(a.tolerated_zone_failures, brute_tolerated_zone_failures(&cps));
        // Every losing domain produces exactly one warning, and no surviving one does.
        let losing = a.domains.iter().filter(|d| !d.survives).count();
        let verdict_warnings = a.warnings.iter().filter(|w| w.message.contains("loses quorum")).count();
        prop_assert_eq!(losing, verdict_warnings);
    }

    #[test]
    fn rack_verdicts_match_brute_force(cps in proptest::collection::vec((0usize..2, 0usize..3), 1..8)) {
        const ZONES: [&str; 2] = ["z1", "z2"];
        const RACKS: [&str; 3] = ["r1", "r2", "r3"];
        let hosts: Vec<(bool, &str, Option<&str>)> = cps.iter().map(|(z, r)| (true, ZONES[*z], Some(RACKS[*r]))).collect();
        let keys: Vec<String> = cps.iter().map(|(z, r)| format!("{}/{}", ZONES[*z], RACKS[*r])).collect();
        let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let a = analyse(&inventory_with(&hosts));
        for d in a.domains.iter().filter(|d| d.kind == DomainKind::Rack) {
            prop_assert_eq!(d.survives, brute_survives(&key_refs, &[d.name.as_str()]), "rack {}", d.name);
        }
    }
}

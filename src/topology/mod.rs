//! Failure-domain analysis (pure): which single region, zone or rack can be lost without losing etcd
//! quorum, and the warnings an operator should see before building the cluster.
use crate::etcd::quorum;
use crate::inventory::{Diagnostic, Host, Inventory};
use serde::Serialize;
use std::collections::BTreeMap;

/// etcd's own guidance: beyond seven members every write waits for more peers without adding much safety.
const MAX_RECOMMENDED_MEMBERS: usize = 7;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DomainKind {
    Region,
    Zone,
    Rack,
}

impl DomainKind {
    pub fn name(self) -> &'static str {
        match self {
            DomainKind::Region => "region",
            DomainKind::Zone => "zone",
            DomainKind::Rack => "rack",
        }
    }
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DomainVerdict {
    pub kind: DomainKind,
    /// Racks are named `zone/rack`: rack names repeat across zones in most data centres.
    pub name: String,
    pub members: usize,
    pub hosts: usize,
    pub survives: bool,
    pub verdict: String,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Analysis {
    pub members: usize,
    pub quorum: usize,
    pub tolerated_member_failures: usize,
    /// How many whole zones, in any combination, can fail with quorum intact.
    pub tolerated_zone_failures: usize,
    pub domains: Vec<DomainVerdict>,
    pub warnings: Vec<Diagnostic>,
}

/// The key a host has in a domain kind, if it declares one.
pub fn domain_of(host: &Host, kind: DomainKind) -> Option<String> {
    match kind {
        DomainKind::Region => host.region.clone(),
        DomainKind::Zone => Some(host.zone.clone()),
        DomainKind::Rack => host.rack.as_ref().map(|r| format!("{}/{r}", host.zone)),
    }
}

pub fn analyse(inv: &Inventory) -> Analysis {
    let members = inv.control_planes().count();
    let mut warnings = Vec::new();
    let mut domains = Vec::new();
    for kind in domain_kinds(inv) {
        domains.extend(verdicts(inv, *kind, members, &mut warnings));
    }
    let zone_counts = member_counts(inv, DomainKind::Zone);
    warnings.extend(member_count_warnings(members));
    warnings.extend(worker_spread_warning(inv));
    warnings.extend(partial_rack_warning(inv));
    Analysis {
        members,
        quorum: quorum::quorum(members),
        tolerated_member_failures: quorum::tolerance(members),
        tolerated_zone_failures: tolerated_domain_failures(&zone_counts.values().copied().collect::<Vec<_>>(), members),
        domains,
        warnings,
    }
}

/// The kinds of failure domain worth a verdict, widest first. Most clusters live in one region; a region
/// verdict only means something when there are several.
pub fn domain_kinds(inv: &Inventory) -> &'static [DomainKind] {
    let regions: std::collections::BTreeSet<&str> = inv.hosts.iter().filter_map(|h| h.region.as_deref()).collect();
    if regions.len() > 1 { &[DomainKind::Region, DomainKind::Zone, DomainKind::Rack] } else { &[DomainKind::Zone, DomainKind::Rack] }
}

/// etcd members per domain (only domains that hold at least one host are listed by callers).
fn member_counts(inv: &Inventory, kind: DomainKind) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for h in inv.control_planes() {
        if let Some(d) = domain_of(h, kind) {
            *counts.entry(d).or_insert(0) += 1;
        }
    }
    counts
}

/// The largest k such that losing ANY k domains keeps quorum: the worst case is losing the k fullest ones.
pub fn tolerated_domain_failures(counts: &[usize], members: usize) -> usize {
    let mut sorted = counts.to_vec();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    let mut lost = 0;
    let mut k = 0;
    for c in sorted {
        lost += c;
        if !quorum::survives(members, lost) {
            break;
        }
        k += 1;
    }
    k
}

fn verdicts(inv: &Inventory, kind: DomainKind, members: usize, warnings: &mut Vec<Diagnostic>) -> Vec<DomainVerdict> {
    let mut hosts: BTreeMap<String, usize> = BTreeMap::new();
    for h in &inv.hosts {
        if let Some(d) = domain_of(h, kind) {
            *hosts.entry(d).or_insert(0) += 1;
        }
    }
    let counts = member_counts(inv, kind);
    let member_domains = counts.len();
    let mut out = Vec::new();
    for (name, host_count) in hosts {
        let in_domain = counts.get(&name).copied().unwrap_or(0);
        let survives = quorum::survives(members, in_domain);
        let left = members - in_domain;
        let need = quorum::quorum(members);
        let kind_name = kind.name();
        let verdict = if in_domain == 0 {
            format!("{kind_name} {name} holds no etcd member: losing it cannot affect quorum")
        } else if survives {
            format!("{kind_name} {name} holds {in_domain} of {members} etcd members: losing it leaves {left}, quorum of {need} holds")
        } else {
            let advice = advice(kind_name, &name, in_domain, members, member_domains);
            format!("{kind_name} {name} holds {in_domain} of {members} etcd members: losing it loses quorum ({left} left, {need} needed); {advice}")
        };
        if !survives {
            warnings.push(Diagnostic::warning("topology", None, verdict.clone()));
        }
        out.push(DomainVerdict { kind, name, members: in_domain, hosts: host_count, survives, verdict });
    }
    out
}

/// The smallest change that makes losing this domain survivable.
fn advice(kind: &str, name: &str, in_domain: usize, members: usize, member_domains: usize) -> String {
    if members < 3 {
        return "use at least 3 control planes in 3 different zones".to_string();
    }
    let allowed = quorum::tolerance(members);
    let excess = in_domain - allowed;
    let moved = if excess == 1 { "one member".to_string() } else { format!("{excess} members") };
    match member_domains {
        1 => format!("spread the control planes over 3 {kind}s, at most {allowed} per {kind}"),
        2 => format!("add a third {kind} for {moved} from {kind} {name}"),
        _ => format!("move {moved} from {kind} {name} to another {kind}, at most {allowed} per {kind}"),
    }
}

fn member_count_warnings(members: usize) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    if members == 1 {
        out.push(
            Diagnostic::warning("topology", None, "a single control plane is not highly available: losing it stops the API and etcd")
                .with_hint("use 3 or 5 control planes"),
        );
    } else if members.is_multiple_of(2) {
        out.push(
            Diagnostic::warning(
                "topology",
                None,
                format!(
                    "{members} etcd members tolerate {} failure(s), no more than {}: the extra member adds load without safety",
                    quorum::tolerance(members),
                    members - 1
                ),
            )
            .with_hint("use an odd number of control planes"),
        );
    }
    if members > MAX_RECOMMENDED_MEMBERS {
        out.push(
            Diagnostic::warning("topology", None, format!("{members} etcd members: more than {MAX_RECOMMENDED_MEMBERS} slows every write"))
                .with_hint("use 5 or 7 control planes; add workers instead"),
        );
    }
    out
}

fn worker_spread_warning(inv: &Inventory) -> Option<Diagnostic> {
    let zones: std::collections::BTreeSet<&str> = inv.workers().map(|h| h.zone.as_str()).collect();
    let workers = inv.workers().count();
    (workers >= 2 && zones.len() == 1).then(|| {
        let zone = zones.into_iter().next().unwrap_or_default();
        Diagnostic::warning("topology", None, format!("all {workers} workers are in zone {zone}: losing it stops every workload"))
            .with_hint("spread workers over at least two zones")
    })
}

/// Rack verdicts only cover hosts that name a rack; say so when some control planes do not.
fn partial_rack_warning(inv: &Inventory) -> Option<Diagnostic> {
    let without: Vec<&str> = inv.control_planes().filter(|h| h.rack.is_none()).map(|h| h.name.as_str()).collect();
    let with = inv.control_planes().count() - without.len();
    (with > 0 && !without.is_empty()).then(|| {
        Diagnostic::warning("topology", None, format!("control planes {} have no rack, so the rack analysis cannot account for them", without.join(", ")))
    })
}

#[cfg(test)]
mod tests;

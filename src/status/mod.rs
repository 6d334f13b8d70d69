//! `kubeha status`: the cluster's health and how many more losses etcd's quorum can take, in total and per
//! failure domain. `report` is pure (observations in, a serialisable report out) so that every 3 a.m.
//! situation can be tested without machines; `observe` gathers the observations read-only over SSH and
//! `text` prints the report for a person.
pub mod backups;
pub mod certs;
mod display;
mod observe;

pub use display::text;
pub use observe::observe;

use crate::etcd::gate::View;
use crate::etcd::identity::member_of;
use crate::etcd::quorum;
use crate::etcd::status::Member;
use crate::inventory::{Host, Inventory};
use crate::pki::expiry::{self, Level};
use crate::ssh::SshError;
use crate::topology::{self, DomainKind};
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// Why `status` has no view of etcd.
#[derive(Clone, Debug, thiserror::Error)]
pub enum EtcdUnasked {
    #[error("no control plane is reachable over SSH")]
    NoControlPlaneReachable,
    /// Every reachable control plane was asked; the last one's answer.
    #[error(transparent)]
    NoAnswer(#[from] crate::facts::etcd::NoView),
}

/// What was seen on the live cluster.
#[derive(Clone, Debug)]
pub struct Observations {
    /// Hosts that could not be reached over SSH, with why (the message without the host's name).
    pub unreachable: BTreeMap<String, String>,
    /// etcd's view from the first reachable control plane whose member answered, or why none did.
    pub etcd: Result<View, EtcdUnasked>,
    /// Per reachable control plane: whether it holds the VIP, or why that could not be told. Empty when the
    /// load balancer is not keepalived-haproxy (then kubeha runs no VIP).
    pub vip: BTreeMap<String, Result<bool, SshError>>,
    /// Per reachable host: its certificates (see `certs check`), and the time their days left count from.
    pub certs: certs::Seen,
    /// Per reachable control plane: the backup timer's status file.
    pub backups: backups::Seen,
    pub now: i64,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub cluster: String,
    pub verdict: Verdict,
    /// Every host of the inventory, in inventory order.
    pub hosts: Vec<HostStatus>,
    /// etcd members that are no control plane of the inventory: they vote (unless learners) all the same.
    pub foreign_members: Vec<ForeignMember>,
    pub etcd: EtcdSummary,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vip: Option<VipStatus>,
    /// Per failure domain holding a control plane: what losing it now would leave. Empty when etcd could not
    /// be asked.
    pub domains: Vec<DomainStatus>,
    /// Why the verdict is not `healthy`, one sentence each.
    pub problems: Vec<String>,
    /// Certificates expiring within `pki::expiry::WARN_DAYS`: worth acting on soon, not a failure now (an
    /// expired one is a problem instead).
    pub warnings: Vec<String>,
    /// The scheduled backups; absent when they are off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backups: Option<backups::BackupSummary>,
    /// The documented way out when quorum is lost (or cannot be told).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub way_out: Option<String>,
}

/// The overall answer; `kubeha status` maps it to its exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Verdict {
    Healthy,
    /// Something is down or unusual, but quorum holds.
    Degraded,
    QuorumLost,
    /// No reachable control plane's etcd answered: whether quorum holds is unknown.
    EtcdUnavailable,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HostStatus {
    pub name: String,
    pub roles: Vec<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    pub zone: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rack: Option<String>,
    pub reachable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssh_error: Option<String>,
    /// Control planes only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etcd: Option<EtcdState>,
    /// Why the member is unhealthy, as etcd said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etcd_error: Option<String>,
    /// Reachable control planes under keepalived-haproxy only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vip_holder: Option<bool>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EtcdState {
    Leader,
    Follower,
    /// A non-voting member: an add that has not been promoted yet.
    Learner,
    /// A voting member that does not answer or reports errors.
    Unhealthy,
    /// An inventory control plane that is no etcd member.
    Missing,
    /// etcd could not be asked.
    Unknown,
}

impl EtcdState {
    pub fn name(self) -> &'static str {
        match self {
            EtcdState::Leader => "leader",
            EtcdState::Follower => "follower",
            EtcdState::Learner => "learner",
            EtcdState::Unhealthy => "unhealthy",
            EtcdState::Missing => "missing",
            EtcdState::Unknown => "unknown",
        }
    }

    fn is_healthy_voter(self) -> bool {
        matches!(self, EtcdState::Leader | EtcdState::Follower)
    }

    fn is_voter(self) -> bool {
        matches!(self, EtcdState::Leader | EtcdState::Follower | EtcdState::Unhealthy)
    }
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ForeignMember {
    /// The member's name, or its peer URL while it has none (added, never started).
    pub name: String,
    /// In hexadecimal, as `etcdctl member remove` takes it.
    pub id: String,
    pub state: EtcdState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etcd_error: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EtcdSummary {
    /// Why etcd could not be asked; the counts are then absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(flatten)]
    pub votes: Option<Votes>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Votes {
    /// Voting members etcd lists, in the inventory or not, healthy or not: quorum is a majority of these.
    pub voters: usize,
    pub healthy_voters: usize,
    pub quorum: usize,
    /// Further member losses quorum survives right now; negative when quorum is already lost.
    pub more_losses_tolerated: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VipStatus {
    pub address: IpAddr,
    pub holders: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DomainStatus {
    pub kind: DomainKind,
    /// Racks are `zone/rack`, as in `kubeha check`.
    pub name: String,
    pub voters: usize,
    pub healthy_voters: usize,
    /// Further member losses quorum would survive after losing this whole domain now; negative = lost.
    pub more_losses_if_lost: i64,
    pub sentence: String,
}

/// The report for `inv` from what was observed. `file` is the inventory's path, for the commands it quotes.
pub fn report(inv: &Inventory, file: &str, seen: &Observations) -> Report {
    let view = seen.etcd.as_ref().ok();
    let mut problems = Vec::new();
    let hosts: Vec<HostStatus> = inv.hosts.iter().map(|h| host_status(inv, h, view, seen)).collect();
    for h in &hosts {
        problems.extend(host_problems(h));
    }
    let foreign_members = view.map(|v| foreign(inv, v)).unwrap_or_default();
    for m in &foreign_members {
        problems.push(format!("{}: etcd {} that is not in the inventory", m.name, if m.state == EtcdState::Learner { "learner" } else { "member" }));
    }
    let vip = inv.load_balancer.vrrp().map(|vrrp| vip_status(vrrp.vip, seen, &mut problems));
    let mut warnings = Vec::new();
    for c in seen.certs.values().filter_map(|r| r.as_ref().ok()).flat_map(|found| &found.certs) {
        let target = if c.level(seen.now) == Level::Expired { &mut problems } else { &mut warnings };
        target.extend(expiry::warning(c, seen.now));
    }
    // A stale backup is a warning: the cluster serves all the same, but its way back is getting old.
    let backups = backups::summary(inv, &seen.backups, seen.now);
    if let Some(b) = backups.as_ref().filter(|b| !b.fresh) {
        warnings.push(b.detail.clone());
    }
    let votes = view.map(votes);
    let etcd = EtcdSummary { error: seen.etcd.as_ref().err().map(ToString::to_string), votes: votes.clone() };
    let domains = votes.as_ref().map(|votes| domains(inv, &hosts, votes)).unwrap_or_default();

    let verdict = match &votes {
        None => {
            problems.insert(0, format!("etcd could not be asked: {}", seen.etcd.as_ref().err().map(ToString::to_string).unwrap_or_default()));
            Verdict::EtcdUnavailable
        }
        Some(v) if v.more_losses_tolerated < 0 => {
            problems.insert(0, format!("quorum lost: {} of {} voting members healthy, {} needed", v.healthy_voters, v.voters, v.quorum));
            Verdict::QuorumLost
        }
        Some(v) => {
            if v.leader.is_none() {
                problems.push("no member reports itself leader (an election may be under way)".into());
            }
            if problems.is_empty() { Verdict::Healthy } else { Verdict::Degraded }
        }
    };
    let restore = format!("kubeha etcd restore -i {file} --snapshot SNAPSHOT (see docs/restore.md)");
    let way_out = match verdict {
        Verdict::QuorumLost => Some(format!("restore from a snapshot: {restore}")),
        // Without any answer the loss cannot be told from an outage of etcd alone; look before restoring.
        Verdict::EtcdUnavailable => Some(format!(
            "look at etcd on the control planes (systemctl status etcd; journalctl -u etcd); if a majority of members is gone for good, restore from a snapshot: {restore}"
        )),
        Verdict::Healthy | Verdict::Degraded => None,
    };
    Report { cluster: inv.name.clone(), verdict, hosts, foreign_members, etcd, vip, domains, problems, warnings, backups, way_out }
}

fn member_state(view: &View, m: &Member) -> (EtcdState, Option<String>) {
    let health = view.healthy(m).err().map(|e| e.to_string());
    if m.is_learner {
        return (EtcdState::Learner, health);
    }
    if health.is_some() {
        return (EtcdState::Unhealthy, health);
    }
    // A member's own status names the leader it follows; a leader names itself.
    let leads = view.statuses.iter().any(|s| s.member_id == m.id && s.leader == m.id);
    (if leads { EtcdState::Leader } else { EtcdState::Follower }, None)
}

fn host_status(inv: &Inventory, h: &Host, view: Option<&View>, seen: &Observations) -> HostStatus {
    let mut roles = Vec::new();
    if h.is_control_plane() {
        roles.push("control-plane");
    }
    if h.is_worker() {
        roles.push("worker");
    }
    let (etcd, etcd_error) = match (h.is_control_plane(), view) {
        (false, _) => (None, None),
        (true, None) => (Some(EtcdState::Unknown), None),
        (true, Some(v)) => match member_of(v, h) {
            None => (Some(EtcdState::Missing), None),
            Some(m) => {
                let (state, error) = member_state(v, m);
                (Some(state), error)
            }
        },
    };
    let ssh_error = seen.unreachable.get(&h.name).cloned();
    let vip_holder = match (h.is_control_plane() && inv.load_balancer.vrrp().is_some(), seen.vip.get(&h.name)) {
        (true, Some(Ok(holds))) => Some(*holds),
        _ => None,
    };
    HostStatus {
        name: h.name.clone(),
        roles,
        region: h.region.clone(),
        zone: h.zone.clone(),
        rack: h.rack.clone(),
        reachable: ssh_error.is_none(),
        ssh_error,
        etcd,
        etcd_error,
        vip_holder,
    }
}

fn host_problems(h: &HostStatus) -> Vec<String> {
    let mut out = Vec::new();
    if !h.reachable {
        out.push(format!("{} is unreachable over SSH", h.name));
    }
    let why = h.etcd_error.as_deref().map(|e| format!(" ({e})")).unwrap_or_default();
    match h.etcd {
        Some(EtcdState::Unhealthy) => out.push(format!("{}: etcd member unhealthy{why}", h.name)),
        Some(EtcdState::Missing) => out.push(format!("{}: control plane is not an etcd member", h.name)),
        Some(EtcdState::Learner) => {
            out.push(format!("{}: etcd member is still a learner{why} (an unfinished membership change; `kubeha apply` completes it)", h.name))
        }
        _ => {}
    }
    out
}

fn foreign(inv: &Inventory, view: &View) -> Vec<ForeignMember> {
    let ours: Vec<u64> = inv.control_planes().filter_map(|h| member_of(view, h)).map(|m| m.id).collect();
    view.members
        .iter()
        .filter(|m| !ours.contains(&m.id))
        .map(|m| {
            let (state, etcd_error) = member_state(view, m);
            ForeignMember { name: m.label(), id: format!("{:x}", m.id), state, etcd_error }
        })
        .collect()
}

fn votes(view: &View) -> Votes {
    let states: Vec<(&Member, EtcdState)> = view.members.iter().map(|m| (m, member_state(view, m).0)).collect();
    let voters = states.iter().filter(|(_, s)| s.is_voter()).count();
    let healthy_voters = states.iter().filter(|(_, s)| s.is_healthy_voter()).count();
    let leader = states.iter().find(|(_, s)| *s == EtcdState::Leader).map(|(m, _)| m.label());
    Votes { voters, healthy_voters, quorum: quorum::quorum(voters), more_losses_tolerated: quorum::margin(voters, healthy_voters), leader }
}

fn vip_status(address: IpAddr, seen: &Observations, problems: &mut Vec<String>) -> VipStatus {
    let holders: Vec<String> = seen.vip.iter().filter(|(_, r)| matches!(r, Ok(true))).map(|(h, _)| h.clone()).collect();
    for (host, result) in &seen.vip {
        if let Err(e) = result {
            problems.push(format!("{host}: cannot tell whether it holds the VIP: {}", observe::short(e)));
        }
    }
    match holders.len() {
        0 => problems.push(format!("no reachable control plane holds the VIP {address}")),
        1 => {}
        // Two holders means keepalived instances do not hear each other: clients reach either at random.
        _ => problems.push(format!("the VIP {address} is held by {} at once", holders.join(" and "))),
    }
    VipStatus { address, holders }
}

/// Per domain holding a control plane (losing a domain without one cannot change quorum): its healthy
/// voters and what losing all of them now would leave.
fn domains(inv: &Inventory, hosts: &[HostStatus], votes: &Votes) -> Vec<DomainStatus> {
    let state = |h: &Host| hosts.iter().find(|s| s.name == h.name).and_then(|s| s.etcd);
    let mut out = Vec::new();
    for &kind in topology::domain_kinds(inv) {
        let mut counts: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        for h in inv.control_planes() {
            let Some(domain) = topology::domain_of(h, kind) else { continue };
            let entry = counts.entry(domain).or_default();
            let s = state(h);
            entry.0 += usize::from(s.is_some_and(EtcdState::is_voter));
            entry.1 += usize::from(s.is_some_and(EtcdState::is_healthy_voter));
        }
        for (name, (voters, healthy_voters)) in counts {
            let left = quorum::margin(votes.voters, votes.healthy_voters.saturating_sub(healthy_voters));
            let sentence = sentence(kind, &name, healthy_voters, votes.more_losses_tolerated, left);
            out.push(DomainStatus { kind, name, voters, healthy_voters, more_losses_if_lost: left, sentence });
        }
    }
    out
}

fn sentence(kind: DomainKind, name: &str, healthy_in_domain: usize, now: i64, after: i64) -> String {
    let domain = format!("{} {name}", kind.name());
    if now < 0 {
        return format!("quorum is already lost; {domain} has {healthy_in_domain} healthy voter(s)");
    }
    if after < 0 {
        return format!("losing {domain} now would lose quorum");
    }
    let losses = if after == 1 { "loss" } else { "losses" };
    let none_left = if healthy_in_domain == 0 { " (no healthy voter left in it)" } else { "" };
    format!("losing {domain} now leaves {after} more {losses}{none_left}")
}

#[cfg(test)]
mod tests;

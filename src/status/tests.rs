//! The report against the situations an operator meets: all well, a member down, a zone down, quorum lost,
//! an unfinished add, a member nobody declared, etcd not answering, the VIP nowhere or twice.
use super::*;
use crate::etcd::status::EndpointHealth;
use crate::inventory::{self, PathContext};
use crate::test_support::{host_member, member_at, view};
use proptest::prelude::*;

const FILE: &str = "inventories/t.yaml";

/// Control planes cp-1.. (and workers wk-1..) at 198.18.0.11.. (.21..), keepalived-haproxy unless `external`.
fn inventory(cps: &[(&str, Option<&str>)], workers: &[&str], external: bool) -> Inventory {
    let lb = if external { "{mode: external, endpoint: 'api.example.com:6443'}" } else { "{mode: keepalived-haproxy, vip: 198.18.0.100/24}" };
    let mut yaml = format!(
        "apiVersion: kubeha/v1alpha1\nkind: Cluster\nmetadata: {{name: t}}\nspec:\n  kubernetes: {{version: 1.36.4}}\n  etcd: {{version: 3.6.14}}\n  controlPlane:\n    loadBalancer: {lb}\n  hosts:\n"
    );
    for (i, (zone, rack)) in cps.iter().enumerate() {
        let rack = rack.map(|r| format!(", rack: {r}")).unwrap_or_default();
        yaml.push_str(&format!("  - {{name: cp-{n}, address: 198.18.0.1{n}, roles: [control-plane], zone: {zone}{rack}}}\n", n = i + 1));
    }
    for (i, zone) in workers.iter().enumerate() {
        yaml.push_str(&format!("  - {{name: wk-{n}, address: 198.18.0.2{n}, roles: [worker], zone: {zone}}}\n", n = i + 1));
    }
    let loaded = inventory::parse("t.yaml".into(), yaml, &PathContext { inventory_dir: ".".into(), home: None });
    loaded.inventory.unwrap_or_else(|| panic!("{:?}", loaded.diagnostics))
}

/// Like the lab: three control planes in three zones, one rack each, and two workers.
fn lab() -> Inventory {
    inventory(&[("az-a", Some("r1")), ("az-b", Some("r1")), ("az-c", Some("r1"))], &["az-a", "az-b"], false)
}

/// The member for inventory host `name`, with id = its position among the control planes + 1.
fn member_named(inv: &Inventory, name: &str, learner: bool) -> Member {
    let (i, h) = inv.control_planes().enumerate().find(|(_, h)| h.name == name).unwrap();
    let member = host_member(i as u64 + 1, h);
    // A learner that has not started has no name yet.
    if learner { Member { name: String::new(), is_learner: true, ..member } } else { member }
}

/// A member at an address no inventory host has.
fn foreign_member(id: u64, name: &str) -> Member {
    member_at(id, name, &format!("10.9.9.{id}"), false)
}

fn all_members(inv: &Inventory) -> Vec<Member> {
    inv.control_planes().map(|h| member_named(inv, &h.name, false)).collect()
}

/// The last control plane asked, `host`, answered with `message`.
fn no_answer(host: &str, message: &str) -> EtcdUnasked {
    let last = crate::phases::etcd::EtcdStepError::Etcd { host: host.into(), message: message.into() };
    EtcdUnasked::NoAnswer(crate::facts::etcd::NoView::Last(Box::new(last)))
}

/// SSH to every host but `unreachable`; the VIP on `holders` among the reachable control planes.
/// Every reachable control plane's backup timer ran; the first one's took the snapshot a minute ago.
fn seen(inv: &Inventory, etcd: Result<View, EtcdUnasked>, unreachable: &[&str], holders: &[&str]) -> Observations {
    let reachable_cps = inv.control_planes().filter(|h| !unreachable.contains(&h.name.as_str()));
    let leader_took = crate::etcd::backup::LastSuccess {
        time: "1970-01-01T00:00:00Z".into(),
        unix: -60,
        file: "etcd-19700101T000000Z-r7.db".into(),
        size: 20_512,
        revision: 7,
        total_keys: 3,
        sha256: "0".repeat(64),
    };
    let backups = inv
        .control_planes()
        .filter(|h| !unreachable.contains(&h.name.as_str()))
        .enumerate()
        .map(|(i, h)| {
            let s = crate::etcd::backup::BackupStatus {
                last_attempt: Some("1970-01-01T00:00:00Z".into()),
                result: Some(if i == 0 { "ok" } else { "skipped" }.into()),
                message: Some(if i == 0 { "saved" } else { "skipped: not the leader" }.into()),
                last_success: (i == 0).then(|| leader_took.clone()),
                ..Default::default()
            };
            (h.name.clone(), Ok(Some(s)))
        })
        .collect();
    Observations {
        backups,
        unreachable: unreachable.iter().map(|h| (h.to_string(), "timed out after 15s while connecting".to_string())).collect(),
        vip: if inv.load_balancer.vrrp().is_some() {
            reachable_cps.map(|h| (h.name.clone(), Ok(holders.contains(&h.name.as_str())))).collect()
        } else {
            BTreeMap::new()
        },
        etcd,
        certs: BTreeMap::new(),
        now: 0,
    }
}

fn host<'r>(r: &'r Report, name: &str) -> &'r HostStatus {
    r.hosts.iter().find(|h| h.name == name).unwrap()
}

fn sentences(r: &Report) -> Vec<&str> {
    r.domains.iter().map(|d| d.sentence.as_str()).collect()
}

fn votes(r: &Report) -> (usize, usize, usize, i64) {
    let v = r.etcd.votes.as_ref().expect("votes");
    (v.voters, v.healthy_voters, v.quorum, v.more_losses_tolerated)
}

#[test]
fn three_healthy_control_planes() {
    let inv = lab();
    let r = report(&inv, FILE, &seen(&inv, Ok(view(all_members(&inv), 1, &[])), &[], &["cp-1"]));
    assert_eq!(r.verdict, Verdict::Healthy, "{:?}", r.problems);
    assert!(r.problems.is_empty() && r.way_out.is_none() && r.foreign_members.is_empty());
    assert_eq!(votes(&r), (3, 3, 2, 1));
    assert_eq!(r.etcd.votes.as_ref().unwrap().leader.as_deref(), Some("cp-1"));
    let states: Vec<Option<EtcdState>> = r.hosts.iter().map(|h| h.etcd).collect();
    assert_eq!(states, [Some(EtcdState::Leader), Some(EtcdState::Follower), Some(EtcdState::Follower), None, None]);
    assert_eq!(host(&r, "cp-1").vip_holder, Some(true));
    assert_eq!(host(&r, "cp-2").vip_holder, Some(false));
    assert_eq!(host(&r, "wk-1").vip_holder, None, "workers hold no VIP");
    // Domains holding a control plane only: the workers' racks cannot change quorum.
    assert_eq!(
        sentences(&r),
        [
            "losing zone az-a now leaves 0 more losses",
            "losing zone az-b now leaves 0 more losses",
            "losing zone az-c now leaves 0 more losses",
            "losing rack az-a/r1 now leaves 0 more losses",
            "losing rack az-b/r1 now leaves 0 more losses",
            "losing rack az-c/r1 now leaves 0 more losses",
        ]
    );
}

#[test]
fn one_dead_control_plane_degrades_and_leaves_no_margin() {
    let inv = lab();
    let r = report(&inv, FILE, &seen(&inv, Ok(view(all_members(&inv), 1, &["cp-2"])), &["cp-2"], &["cp-1"]));
    assert_eq!(r.verdict, Verdict::Degraded);
    assert_eq!(votes(&r), (3, 2, 2, 0));
    let cp2 = host(&r, "cp-2");
    assert!(!cp2.reachable);
    assert_eq!(cp2.ssh_error.as_deref(), Some("timed out after 15s while connecting"));
    assert_eq!((cp2.etcd, cp2.etcd_error.as_deref()), (Some(EtcdState::Unhealthy), Some("context deadline exceeded")));
    assert_eq!(cp2.vip_holder, None, "not asked");
    assert_eq!(r.problems, ["cp-2 is unreachable over SSH", "cp-2: etcd member unhealthy (context deadline exceeded)"], "the VIP is fine: held by exactly one");
    let zones: Vec<&str> = r.domains.iter().filter(|d| d.kind == DomainKind::Zone).map(|d| d.sentence.as_str()).collect();
    assert_eq!(
        zones,
        [
            "losing zone az-a now would lose quorum",
            "losing zone az-b now leaves 0 more losses (no healthy voter left in it)",
            "losing zone az-c now would lose quorum",
        ]
    );
    let az_a = &r.domains[0];
    assert_eq!((az_a.voters, az_a.healthy_voters, az_a.more_losses_if_lost), (1, 1, -1));
}

#[test]
fn five_members_with_a_whole_zone_of_two_dead_hold_quorum_with_no_margin() {
    let inv = inventory(&[("az-a", None), ("az-a", None), ("az-b", None), ("az-b", None), ("az-c", None)], &[], false);
    let r = report(&inv, FILE, &seen(&inv, Ok(view(all_members(&inv), 1, &["cp-3", "cp-4"])), &["cp-3", "cp-4"], &["cp-1"]));
    assert_eq!(r.verdict, Verdict::Degraded, "quorum holds");
    assert_eq!(votes(&r), (5, 3, 3, 0), "0 more losses");
    let by_zone: Vec<(&str, usize, usize, i64)> = r.domains.iter().map(|d| (d.name.as_str(), d.voters, d.healthy_voters, d.more_losses_if_lost)).collect();
    assert_eq!(by_zone, [("az-a", 2, 2, -2), ("az-b", 2, 0, 0), ("az-c", 1, 1, -1)], "no racks declared: zones only");
    assert_eq!(r.domains[1].sentence, "losing zone az-b now leaves 0 more losses (no healthy voter left in it)");
}

#[test]
fn quorum_lost_names_the_way_out() {
    let inv = lab();
    let r = report(&inv, FILE, &seen(&inv, Ok(view(all_members(&inv), 0, &["cp-2", "cp-3"])), &["cp-2", "cp-3"], &["cp-1"]));
    assert_eq!(r.verdict, Verdict::QuorumLost);
    assert_eq!(votes(&r), (3, 1, 2, -1));
    assert_eq!(r.problems[0], "quorum lost: 1 of 3 voting members healthy, 2 needed");
    assert!(!r.problems.iter().any(|p| p.contains("leader")), "no leader goes without saying: {:?}", r.problems);
    assert_eq!(r.way_out.as_deref(), Some("restore from a snapshot: kubeha etcd restore -i inventories/t.yaml --snapshot SNAPSHOT (see docs/restore.md)"));
    assert!(r.domains.iter().all(|d| d.more_losses_if_lost < 0 && d.sentence.starts_with("quorum is already lost")));
    // cp-1 answers status but, without quorum, not health: it counts as unhealthy too.
    let alone = view(all_members(&inv), 0, &["cp-2", "cp-3"]);
    let mut v = alone.clone();
    v.health[0] = EndpointHealth { endpoint: v.health[0].endpoint.clone(), healthy: false, error: Some("context deadline exceeded".into()) };
    let r = report(&inv, FILE, &seen(&inv, Ok(v), &["cp-2", "cp-3"], &[]));
    assert_eq!((r.verdict, votes(&r)), (Verdict::QuorumLost, (3, 0, 2, -2)));
    assert_eq!(host(&r, "cp-1").etcd, Some(EtcdState::Unhealthy));
}

#[test]
fn an_unstarted_learner_is_matched_by_peer_url_and_does_not_vote() {
    let inv = lab();
    let members = vec![member_named(&inv, "cp-1", false), member_named(&inv, "cp-2", false), member_named(&inv, "cp-3", true)];
    let r = report(&inv, FILE, &seen(&inv, Ok(view(members, 1, &["unstarted member https://198.18.0.13:2380"])), &[], &["cp-1"]));
    assert_eq!(r.verdict, Verdict::Degraded);
    assert_eq!(votes(&r), (2, 2, 2, 0), "a learner neither votes nor counts for quorum");
    assert_eq!(host(&r, "cp-3").etcd, Some(EtcdState::Learner));
    assert!(r.foreign_members.is_empty(), "{:?}", r.foreign_members);
    assert!(r.problems.iter().any(|p| p.starts_with("cp-3: etcd member is still a learner") && p.contains("kubeha apply")), "{:?}", r.problems);
    let az_c = r.domains.iter().find(|d| d.name == "az-c").unwrap();
    assert_eq!((az_c.voters, az_c.more_losses_if_lost), (0, 0));
}

#[test]
fn a_member_outside_the_inventory_is_listed_and_counts_for_quorum() {
    let inv = lab();
    let mut members = all_members(&inv);
    members.push(foreign_member(0xdead, "old-cp"));
    let r = report(&inv, FILE, &seen(&inv, Ok(view(members.clone(), 1, &["old-cp"])), &[], &["cp-1"]));
    assert_eq!(r.verdict, Verdict::Degraded);
    assert_eq!(votes(&r), (4, 3, 3, 0), "the foreign voter raises the quorum to 3");
    assert_eq!(r.foreign_members.len(), 1);
    let f = &r.foreign_members[0];
    assert_eq!((f.name.as_str(), f.id.as_str(), f.state), ("old-cp", "dead", EtcdState::Unhealthy));
    assert!(r.problems.contains(&"old-cp: etcd member that is not in the inventory".to_string()), "{:?}", r.problems);
    // Healthy, it still degrades the cluster: nobody declared it.
    let r = report(&inv, FILE, &seen(&inv, Ok(view(members, 1, &[])), &[], &["cp-1"]));
    assert_eq!((r.verdict, votes(&r)), (Verdict::Degraded, (4, 4, 3, 1)));
}

#[test]
fn a_control_plane_that_is_no_member_is_missing() {
    let inv = lab();
    let members = vec![member_named(&inv, "cp-1", false), member_named(&inv, "cp-2", false)];
    let r = report(&inv, FILE, &seen(&inv, Ok(view(members, 2, &[])), &[], &["cp-3"]));
    assert_eq!((r.verdict, votes(&r)), (Verdict::Degraded, (2, 2, 2, 0)));
    assert_eq!(host(&r, "cp-3").etcd, Some(EtcdState::Missing));
    assert_eq!(host(&r, "cp-2").etcd, Some(EtcdState::Leader));
    assert!(r.problems.contains(&"cp-3: control plane is not an etcd member".to_string()));
}

#[test]
fn etcd_unavailable_is_told_apart_from_quorum_lost() {
    let inv = lab();
    let r = report(&inv, FILE, &seen(&inv, Err(no_answer("cp-3", "etcdctl member list failed: context deadline exceeded")), &["cp-1", "cp-2"], &["cp-3"]));
    assert_eq!(r.verdict, Verdict::EtcdUnavailable);
    assert!(r.etcd.votes.is_none() && r.domains.is_empty());
    assert_eq!(r.etcd.error.as_deref(), Some("cp-3: etcdctl member list failed: context deadline exceeded"));
    assert_eq!(r.problems[0], "etcd could not be asked: cp-3: etcdctl member list failed: context deadline exceeded");
    assert!(inv.control_planes().all(|h| host(&r, &h.name).etcd == Some(EtcdState::Unknown)));
    let way_out = r.way_out.unwrap();
    assert!(way_out.starts_with("look at etcd on the control planes") && way_out.contains("kubeha etcd restore -i inventories/t.yaml"), "{way_out}");
}

#[test]
fn vip_nowhere_twice_or_unknown_degrades() {
    let inv = lab();
    let healthy = || Ok(view(all_members(&inv), 1, &[]));
    let r = report(&inv, FILE, &seen(&inv, healthy(), &[], &[]));
    assert_eq!((r.verdict, r.problems.as_slice()), (Verdict::Degraded, ["no reachable control plane holds the VIP 198.18.0.100".to_string()].as_slice()));
    let r = report(&inv, FILE, &seen(&inv, healthy(), &[], &["cp-1", "cp-3"]));
    assert_eq!(r.problems, ["the VIP 198.18.0.100 is held by cp-1 and cp-3 at once"]);
    assert_eq!(r.vip.as_ref().unwrap().holders, ["cp-1", "cp-3"]);
    let mut s = seen(&inv, healthy(), &[], &["cp-1"]);
    let failed = SshError::CommandFailed {
        host: "cp-2".into(),
        command: "ip -o addr show".into(),
        status: crate::ssh::ExitStatus::Code(1),
        stderr: "no such device".into(),
    };
    s.vip.insert("cp-2".into(), Err(failed));
    let r = report(&inv, FILE, &s);
    assert_eq!(
        (r.verdict, r.problems.as_slice()),
        (Verdict::Degraded, ["cp-2: cannot tell whether it holds the VIP: `ip -o addr show` failed with exit status 1: no such device".to_string()].as_slice())
    );
    assert_eq!(host(&r, "cp-2").vip_holder, None);
}

#[test]
fn an_external_load_balancer_has_no_vip_to_check() {
    let inv = inventory(&[("a", None), ("b", None), ("c", None)], &[], true);
    let r = report(&inv, FILE, &seen(&inv, Ok(view(all_members(&inv), 3, &[])), &[], &[]));
    assert_eq!(r.verdict, Verdict::Healthy, "{:?}", r.problems);
    assert!(r.vip.is_none() && r.hosts.iter().all(|h| h.vip_holder.is_none()));
    assert_eq!(r.etcd.votes.as_ref().unwrap().leader.as_deref(), Some("cp-3"));
}

#[test]
fn no_leader_with_quorum_is_degraded() {
    let inv = lab();
    let r = report(&inv, FILE, &seen(&inv, Ok(view(all_members(&inv), 0, &[])), &[], &["cp-1"]));
    assert_eq!(r.verdict, Verdict::Degraded);
    assert_eq!(r.problems, ["no member reports itself leader (an election may be under way)"]);
    assert!(r.etcd.votes.as_ref().unwrap().leader.is_none());
}

#[test]
fn json_is_camel_case_and_omits_what_does_not_apply() {
    let inv = lab();
    let r = report(&inv, FILE, &seen(&inv, Ok(view(all_members(&inv), 1, &["cp-2"])), &["cp-2"], &["cp-1"]));
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["verdict"], "degraded");
    assert_eq!(json["etcd"]["moreLossesTolerated"], 0);
    assert_eq!(json["etcd"]["healthyVoters"], 2);
    assert_eq!(json["etcd"]["leader"], "cp-1");
    assert_eq!(json["hosts"][1]["sshError"], "timed out after 15s while connecting");
    assert_eq!(json["hosts"][1]["etcd"], "unhealthy");
    assert_eq!(json["hosts"][0]["vipHolder"], true);
    assert!(json["hosts"][3].get("etcd").is_none() && json["hosts"][3].get("vipHolder").is_none(), "workers: {}", json["hosts"][3]);
    assert_eq!(json["domains"][0]["moreLossesIfLost"], -1);
    assert_eq!(json["domains"][0]["kind"], "zone");
    assert_eq!(json["vip"]["holders"][0], "cp-1");
    assert!(json.get("wayOut").is_none());
    let lost = report(&inv, FILE, &seen(&inv, Err(EtcdUnasked::NoControlPlaneReachable), &["cp-1", "cp-2", "cp-3"], &[]));
    let json = serde_json::to_value(&lost).unwrap();
    assert_eq!(json["verdict"], "etcdUnavailable");
    assert_eq!(json["etcd"], serde_json::json!({"error": "no control plane is reachable over SSH"}));
    assert!(json["wayOut"].is_string());
}

#[test]
fn text_is_aligned_and_says_what_losing_each_domain_does() {
    let inv = lab();
    let mut members = all_members(&inv);
    members.push(foreign_member(0xdead, "old-cp"));
    let r = report(&inv, FILE, &seen(&inv, Ok(view(members, 1, &["cp-2"])), &["cp-2"], &["cp-1"]));
    let table = "\
HOST    ROLE           ZONE  RACK  SSH  ETCD       VIP  NOTE
cp-1    control-plane  az-a  r1    ok   leader     yes
cp-2    control-plane  az-b  r1    no   unhealthy  -    timed out after 15s while connecting; etcd: context deadline exceeded
cp-3    control-plane  az-c  r1    ok   follower   no
wk-1    worker         az-a  -     ok   -          -
wk-2    worker         az-b  -     ok   -          -
old-cp  -              -     -     -    follower   -    not in the inventory (member id dead)
";
    assert!(text(&r).contains(table), "{}", text(&r));
    assert!(text(&r).contains("etcd: 3 of 4 voting members healthy, quorum 3, leader cp-1: tolerates 0 more member losses\n"), "{}", text(&r));

    let r = report(&inv, FILE, &seen(&inv, Ok(view(all_members(&inv), 0, &["cp-2", "cp-3"])), &["cp-2", "cp-3"], &["cp-1"]));
    let t = text(&r);
    assert!(t.starts_with("cluster t: QUORUM LOST\netcd: 1 of 3 voting members healthy, quorum 2: 1 short of quorum\n"), "{t}");
    assert!(t.ends_with("\nWay out: restore from a snapshot: kubeha etcd restore -i inventories/t.yaml --snapshot SNAPSHOT (see docs/restore.md)\n"), "{t}");
    assert!(!t.contains("If a whole domain is lost now"), "says nothing new once quorum is lost: {t}");

    let r = report(&inv, FILE, &seen(&inv, Ok(view(all_members(&inv), 1, &["cp-2"])), &["cp-2"], &["cp-1"]));
    assert_eq!(
        text(&r),
        "\
cluster t: DEGRADED, quorum holds
etcd: 2 of 3 voting members healthy, quorum 2, leader cp-1: tolerates 0 more member losses
VIP 198.18.0.100: held by cp-1

HOST  ROLE           ZONE  RACK  SSH  ETCD       VIP  NOTE
cp-1  control-plane  az-a  r1    ok   leader     yes
cp-2  control-plane  az-b  r1    no   unhealthy  -    timed out after 15s while connecting; etcd: context deadline exceeded
cp-3  control-plane  az-c  r1    ok   follower   no
wk-1  worker         az-a  -     ok   -          -
wk-2  worker         az-b  -     ok   -          -

If a whole domain is lost now:
  losing zone az-a now would lose quorum
  losing zone az-b now leaves 0 more losses (no healthy voter left in it)
  losing zone az-c now would lose quorum
  losing rack az-a/r1 now would lose quorum
  losing rack az-b/r1 now leaves 0 more losses (no healthy voter left in it)
  losing rack az-c/r1 now would lose quorum

Backups: newest etcd-19700101T000000Z-r7.db on cp-1, 1 min old (revision 7), limit 2 h
  cp-1  last backup here 1 min ago (revision 7, etcd-19700101T000000Z-r7.db)
  cp-2  not reachable
  cp-3  last run at 1970-01-01T00:00:00Z: skipped: not the leader; no backup taken here yet

Problems:
  cp-2 is unreachable over SSH
  cp-2: etcd member unhealthy (context deadline exceeded)
"
    );
}

#[test]
fn regions_get_a_column_and_verdicts_only_when_there_are_several() {
    let mut inv = lab();
    for (h, region) in inv.hosts.iter_mut().zip(["eu", "eu", "us", "eu", "us"]) {
        h.region = Some(region.into());
    }
    let r = report(&inv, FILE, &seen(&inv, Ok(view(all_members(&inv), 1, &[])), &[], &["cp-1"]));
    assert_eq!(r.domains[0].kind, DomainKind::Region);
    assert_eq!(r.domains[0].sentence, "losing region eu now would lose quorum");
    assert_eq!(r.domains[1].sentence, "losing region us now leaves 0 more losses");
    assert!(text(&r).contains("HOST  ROLE           REGION  ZONE"), "{}", text(&r));
}

proptest! {
    /// Against an independent model: after losing a domain, quorum holds iff the healthy voters outside it
    /// are strictly more than half of all voters.
    #[test]
    fn domain_margins_match_a_majority_count(zones in proptest::collection::vec((0usize..3, any::<bool>()), 1..8)) {
        const NAMES: [&str; 3] = ["az-a", "az-b", "az-c"];
        let cps: Vec<(&str, Option<&str>)> = zones.iter().map(|(z, _)| (NAMES[*z], None)).collect();
        let inv = inventory(&cps, &[], false);
        let down: Vec<String> = zones.iter().enumerate().filter(|(_, (_, up))| !up).map(|(i, _)| format!("cp-{}", i + 1)).collect();
        let down_refs: Vec<&str> = down.iter().map(String::as_str).collect();
        let r = report(&inv, FILE, &seen(&inv, Ok(view(all_members(&inv), 1, &down_refs)), &[], &["cp-1"]));
        let healthy = zones.iter().filter(|(_, up)| *up).count();
        prop_assert_eq!(votes(&r).1, healthy);
        prop_assert_eq!(r.verdict == Verdict::QuorumLost, 2 * healthy <= zones.len());
        for d in &r.domains {
            let in_domain = zones.iter().filter(|(z, up)| *up && NAMES[*z] == d.name).count();
            prop_assert_eq!(d.healthy_voters, in_domain);
            prop_assert_eq!(d.more_losses_if_lost >= 0, 2 * (healthy - in_domain) > zones.len(), "zone {}", d.name);
        }
    }
}

/// Under 30 days is a warning that leaves the verdict alone; an expired certificate is a problem.
#[test]
fn certificates_warn_under_30_days_and_fail_once_expired() {
    use crate::facts::certs::HostCerts;
    use crate::pki::expiry::{Cert, Parsed};
    let inv = lab();
    let mut s = seen(&inv, Ok(view(all_members(&inv), 1, &[])), &[], &["cp-1"]);
    s.now = 1_800_000_000;
    // The backup taken a minute before that `now`: not what this test is about.
    for status in s.backups.values_mut().filter_map(|b| b.as_mut().ok().and_then(Option::as_mut)) {
        if let Some(l) = status.last_success.as_mut() {
            l.unix = s.now - 60;
        }
    }
    let cert = |path: &str, days: i64| {
        Cert::new("cp-2", path, Parsed { subject: "x".into(), not_before: s.now - 86_400, not_after: s.now + days * 86_400 + 1, ca: false })
    };
    let certs = vec![cert("/etc/kubeha/pki/etcd/peer.crt", 12), cert("/etc/kubernetes/pki/apiserver.crt", 200)];
    s.certs.insert("cp-2".into(), Ok(HostCerts { certs, unreadable: vec![] }));
    let r = report(&inv, FILE, &s);
    assert_eq!(r.verdict, Verdict::Healthy, "{:?}", r.problems);
    assert_eq!(r.warnings.len(), 1);
    assert!(r.warnings[0].starts_with("certificate cp-2:/etc/kubeha/pki/etcd/peer.crt (x, kubeha) expires in 12 days"), "{:?}", r.warnings);
    assert!(text(&r).contains("\nWarnings:\n  certificate cp-2:/etc/kubeha/pki/etcd/peer.crt"), "{}", text(&r));

    s.certs.insert("cp-2".into(), Ok(HostCerts { certs: vec![cert("/etc/kubernetes/admin.conf", -1)], unreadable: vec![] }));
    let r = report(&inv, FILE, &s);
    assert_eq!(r.verdict, Verdict::Degraded);
    assert!(r.problems.iter().any(|p| p.contains("admin.conf (x, kubeadm) EXPIRED")), "{:?}", r.problems);
}

/// A backup older than its limit warns (the cluster serves all the same); the verdict stays healthy.
#[test]
fn a_stale_backup_is_a_warning_with_the_newest_named() {
    let inv = lab();
    let mut s = seen(&inv, Ok(view(all_members(&inv), 1, &[])), &[], &["cp-1"]);
    s.now = 3 * 3_600;
    let r = report(&inv, FILE, &s);
    assert_eq!(r.verdict, Verdict::Healthy, "{:?}", r.problems);
    assert_eq!(r.warnings, ["the newest etcd backup is etcd-19700101T000000Z-r7.db on cp-1, 3 h 1 min old (revision 7): older than the 2 h limit"]);
    assert!(!r.backups.unwrap().fresh);
}

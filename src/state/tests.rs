use super::*;

use crate::test_support::lab;

#[test]
fn a_new_state_pins_its_own_kubernetes_ca_and_covers_every_member() {
    let inv = lab();
    let state = ClusterState::create(&inv).unwrap();
    assert_eq!(state.secrets.ca_cert_hash, pki::discovery_hash(&state.kubernetes_ca.cert).unwrap());
    assert_eq!(state.etcd_members.keys().collect::<Vec<_>>(), ["cp-1", "cp-2", "cp-3"]);
    let files = state.etcd_files("cp-2");
    assert_eq!(files.len(), pki::member_file_names().len());
    assert!(files.iter().all(|f| f.path.starts_with("/etc/kubeha/pki/etcd/") && (f.mode == 0o600) == f.path.ends_with(".key")));
    assert!(!format!("{state:?}").contains("PRIVATE KEY"), "Debug shows no key");
}

#[test]
fn a_stored_state_round_trips_and_issues_only_for_new_members() {
    let inv = lab();
    let mut state = ClusterState::create(&inv).unwrap();
    let back = newest("lab", &[("cp-1".into(), Ok(Some(state.to_json())))]).unwrap().state.unwrap();
    assert!(back == state);
    assert!(!state.issue_missing_members(&inv).unwrap(), "nothing to issue twice");
    state.etcd_members.remove("cp-3");
    let generation = state.generation;
    assert!(state.issue_missing_members(&inv).unwrap());
    assert_eq!(state.generation, generation + 1);
    assert!(back.etcd_members["cp-1"] == state.etcd_members["cp-1"], "existing members keep their certificates");
}

#[test]
fn the_newest_generation_wins_and_equal_generations_must_agree() {
    let inv = lab();
    let old = ClusterState::create(&inv).unwrap();
    let mut new = old.clone();
    new.generation += 1;
    let found = vec![("cp-1".into(), Ok(Some(old.to_json()))), ("cp-2".into(), Ok(None)), ("cp-3".into(), Ok(Some(new.to_json())))];
    assert_eq!(newest("lab", &found).unwrap().state.unwrap().generation, new.generation);
    assert!(newest("lab", &[("cp-1".into(), Ok(None))]).unwrap().state.is_none());

    let other = ClusterState::create(&inv).unwrap();
    let err = newest("lab", &[("cp-1".into(), Ok(Some(old.to_json()))), ("cp-2".into(), Ok(Some(other.to_json())))]).unwrap_err();
    assert!(matches!(err, StateError::Disagree { .. }), "{err}");
    assert!(!err.to_string().contains(&old.secrets.bootstrap_token));
    let err = newest("prod", &[("cp-1".into(), Ok(Some(old.to_json())))]).unwrap_err();
    assert!(err.to_string().contains("belongs to cluster lab, not prod"), "{err}");
    let err = newest("lab", &[("cp-1".into(), Ok(Some("{".into())))]).unwrap_err();
    assert!(err.to_string().starts_with("cp-1:/etc/kubeha/cluster-state.json cannot be read"), "{err}");
}

#[test]
fn an_unreadable_copy_is_skipped_and_named_when_the_readable_copies_agree() {
    let inv = lab();
    let good = ClusterState::create(&inv).unwrap();
    let json = good.to_json();
    // Cut short by a crash, emptied, not readable at all, and a corrupt one quoting a secret where a number
    // belongs (serde would echo it).
    let token = good.secrets.bootstrap_token.clone();
    let cases: Vec<(Result<Option<String>, String>, &str)> = vec![
        (Ok(Some(json[..json.len() / 2].to_string())), "the file ends early (cut short)"),
        (Ok(Some(String::new())), "the file is empty"),
        (Err("cannot be read (cat: Input/output error)".into()), "cannot be read (cat: Input/output error)"),
        (Ok(Some(format!("{{\"format\": \"{token}\"}}"))), "the file does not hold a cluster state"),
    ];
    for (bad, problem) in cases {
        let found = vec![("cp-1".into(), Ok(Some(json.clone()))), ("cp-2".into(), bad), ("cp-3".into(), Ok(Some(json.clone())))];
        let newest = newest("lab", &found).unwrap_or_else(|e| panic!("{problem}: one bad copy blocked the run: {e}"));
        assert!(newest.state.unwrap() == good);
        assert_eq!(newest.skipped.len(), 1);
        assert_eq!(newest.skipped[0].host, "cp-2");
        assert!(newest.skipped[0].problem.starts_with(problem), "{:?}", newest.skipped[0]);
        assert!(!newest.skipped[0].problem.contains(&token), "a secret in {:?}", newest.skipped[0]);
    }
}

#[test]
fn without_a_readable_copy_or_with_disagreeing_ones_a_bad_copy_still_stops_the_run() {
    let inv = lab();
    let (a, b) = (ClusterState::create(&inv).unwrap(), ClusterState::create(&inv).unwrap());
    let err = newest("lab", &[("cp-1".into(), Ok(None)), ("cp-2".into(), Ok(Some(String::new())))]).unwrap_err();
    assert_eq!(err.to_string(), "cp-2:/etc/kubeha/cluster-state.json cannot be read: the file is empty; no control plane holds a readable copy");
    let found = vec![("cp-1".into(), Ok(Some(a.to_json()))), ("cp-2".into(), Ok(Some("{".into()))), ("cp-3".into(), Ok(Some(b.to_json())))];
    assert!(matches!(newest("lab", &found).unwrap_err(), StateError::Disagree { .. }));
}

#[test]
fn every_member_holds_the_same_api_server_etcd_client_pair() {
    let inv = lab();
    let mut state = ClusterState::create(&inv).unwrap();
    let pair = |s: &ClusterState, m: &str| {
        let files = &s.etcd_members[m];
        (files[pki::APISERVER_ETCD_CLIENT.0].clone(), files[pki::APISERVER_ETCD_CLIENT.1].clone())
    };
    assert!(pair(&state, "cp-1") == pair(&state, "cp-2") && pair(&state, "cp-1") == pair(&state, "cp-3"));
    // A state stored by an older kubeha, with a pair per member, converges to one pair once.
    let ca = Authority::from_pem(&state.etcd_ca.cert, &state.etcd_ca.key).unwrap();
    let own = pki::member_files(inv.control_planes().nth(1).unwrap(), &ca).unwrap();
    for (name, contents) in own.into_iter().filter(|(n, _)| n.starts_with("apiserver-etcd-client")) {
        state.etcd_members.get_mut("cp-2").unwrap().insert(name.to_string(), contents);
    }
    assert!(pair(&state, "cp-1") != pair(&state, "cp-2"));
    let generation = state.generation;
    assert!(state.issue_missing_members(&inv).unwrap());
    assert_eq!(state.generation, generation + 1);
    assert!(pair(&state, "cp-1") == pair(&state, "cp-2"));
    assert!(!state.issue_missing_members(&inv).unwrap(), "shared once, then nothing to change");
    // A new member gets the shared pair, not one of its own.
    state.etcd_members.remove("cp-3");
    state.issue_missing_members(&inv).unwrap();
    assert!(pair(&state, "cp-3") == pair(&state, "cp-1"));
}

/// Renewal is decided from the stored certificates at a given time: 300 days on, every 365-day leaf has 65
/// days left, under the default 90; the CA and the keys of certificates not due stay as they are.
#[test]
fn certificates_due_are_renewed_once_and_the_api_server_pair_stays_shared() {
    let inv = lab();
    let mut state = ClusterState::create(&inv).unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let before = state.clone();
    assert!(state.renew_due(&inv, now).unwrap().is_empty(), "fresh certificates are not due");
    assert!(state == before);

    let later = now + 300 * 86_400;
    let renewed = state.renew_due(&inv, later).unwrap();
    // 3 members x (server, peer, kubeha client) + the one shared API server pair.
    assert_eq!(renewed.len(), 10, "{renewed:?}");
    assert!(renewed.iter().any(|r| r.starts_with("cp-1 apiserver-etcd-client.crt, expires ")), "{renewed:?}");
    assert_eq!(state.generation, before.generation + 1);
    assert!(state.etcd_ca == before.etcd_ca);
    let pair = |s: &ClusterState, m: &str| s.etcd_members[m][pki::APISERVER_ETCD_CLIENT.0].clone();
    assert!(pair(&state, "cp-2") == pair(&state, "cp-1") && pair(&state, "cp-3") == pair(&state, "cp-1"));
    for m in ["cp-1", "cp-2", "cp-3"] {
        for name in ["server.crt", "peer.crt", "kubeha-etcd-client.crt", "server.key"] {
            assert!(state.etcd_members[m][name] != before.etcd_members[m][name], "{m} {name}");
        }
        assert!(state.etcd_members[m]["ca.crt"] == before.etcd_members[m]["ca.crt"]);
        let Contents::Certificate(pem) = &state.etcd_members[m]["server.crt"] else { panic!() };
        assert!(pki::expiry::days_left(pki::expiry::parse_pem(pem).unwrap().not_after, now) >= 364);
    }
    assert!(state.renew_due(&inv, now).unwrap().is_empty(), "renewed certificates are not due again");
}

/// A host moved to another address keeps its name: its server and peer certificates name the old address,
/// so they are re-issued for the new one (client certificates and the other members' files stay), once.
#[test]
fn a_readdressed_member_gets_server_and_peer_certificates_for_its_new_address() {
    let inv = lab();
    let mut state = ClusterState::create(&inv).unwrap();
    assert!(state.reissue_readdressed(&inv).unwrap().is_empty(), "fresh certificates match their hosts");
    let before = state.clone();
    let mut moved = inv.clone();
    let cp2 = moved.hosts.iter_mut().find(|h| h.name == "cp-2").unwrap();
    cp2.address = "198.18.0.23".parse().unwrap();
    let reissued = state.reissue_readdressed(&moved).unwrap();
    assert_eq!(
        reissued,
        ["cp-2 server.crt: issued for 198.18.0.12, the host is 198.18.0.23", "cp-2 peer.crt: issued for 198.18.0.12, the host is 198.18.0.23"]
    );
    assert_eq!(state.generation, before.generation + 1);
    for name in ["server.crt", "server.key", "peer.crt", "peer.key"] {
        assert!(state.etcd_members["cp-2"][name] != before.etcd_members["cp-2"][name], "{name}");
    }
    for name in ["kubeha-etcd-client.crt", "apiserver-etcd-client.crt", "ca.crt"] {
        assert!(state.etcd_members["cp-2"][name] == before.etcd_members["cp-2"][name], "{name}");
    }
    assert!(state.etcd_members["cp-1"] == before.etcd_members["cp-1"]);
    let Contents::Certificate(pem) = &state.etcd_members["cp-2"]["peer.crt"] else { panic!() };
    assert!(pki::sans::read(pem).unwrap().ips.contains(&"198.18.0.23".parse().unwrap()));
    assert!(state.reissue_readdressed(&moved).unwrap().is_empty(), "re-issued once");
}

/// A control plane taken out of the inventory loses its certificates from the state; the others keep the
/// shared API server pair even when the member that first held it goes.
#[test]
fn removed_members_are_pruned_and_the_shared_pair_survives() {
    let inv = lab();
    let mut state = ClusterState::create(&inv).unwrap();
    assert!(state.prune_removed(&inv).is_empty());
    let pair = state.etcd_members["cp-1"][pki::APISERVER_ETCD_CLIENT.0].clone();
    let generation = state.generation;
    let mut smaller = inv.clone();
    smaller.hosts.retain(|h| h.name != "cp-1");
    assert_eq!(state.prune_removed(&smaller), ["cp-1"]);
    assert_eq!(state.generation, generation + 1);
    assert!(!state.etcd_members.contains_key("cp-1"));
    assert!(!state.share_apiserver_etcd_client(), "the remaining members already hold the same pair");
    assert!(state.etcd_members["cp-2"][pki::APISERVER_ETCD_CLIENT.0] == pair);
}

use super::*;
use crate::inventory;

fn lab() -> Inventory {
    inventory::load(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/inventories/lab.yaml"))).unwrap().inventory.unwrap()
}

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
    let back = newest("lab", &[("cp-1".into(), Some(state.to_json()))]).unwrap().unwrap();
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
    let found = vec![("cp-1".into(), Some(old.to_json())), ("cp-2".into(), None), ("cp-3".into(), Some(new.to_json()))];
    assert_eq!(newest("lab", &found).unwrap().unwrap().generation, new.generation);
    assert!(newest("lab", &[("cp-1".into(), None)]).unwrap().is_none());

    let other = ClusterState::create(&inv).unwrap();
    let err = newest("lab", &[("cp-1".into(), Some(old.to_json())), ("cp-2".into(), Some(other.to_json()))]).unwrap_err();
    assert!(matches!(err, StateError::Disagree { .. }), "{err}");
    assert!(!err.to_string().contains(&old.secrets.bootstrap_token));
    let err = newest("prod", &[("cp-1".into(), Some(old.to_json()))]).unwrap_err();
    assert!(err.to_string().contains("belongs to cluster lab, not prod"), "{err}");
    let err = newest("lab", &[("cp-1".into(), Some("{".into()))]).unwrap_err();
    assert!(err.to_string().starts_with("cp-1:/etc/kubeha/cluster-state.json cannot be read"), "{err}");
}

//! Fixtures shared by the tests: the lab inventory, etcd members, and the view etcdctl reports of them.
//! Unit tests reach it as `crate::test_support`; the integration tests in tests/ through the
//! `test-support` feature, which Cargo.toml turns on for them only (kubeha's own dev-dependency).
use crate::etcd::gate::View;
use crate::etcd::status::{EndpointHealth, EndpointStatus, Member};
use crate::inventory::{Host, Inventory};

/// inventories/lab.yaml: three control planes cp-1..cp-3 at 198.18.0.11.. and two workers.
pub fn lab() -> Inventory {
    let path = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/inventories/lab.yaml"));
    crate::inventory::load(path).expect("inventories/lab.yaml loads").inventory.expect("inventories/lab.yaml is valid")
}

/// inventories/lab.yaml without its `spec.artifacts` block (and the comment above it), for tests that write
/// their own.
pub fn lab_yaml_without_artifacts() -> String {
    let lab = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/inventories/lab.yaml")).unwrap();
    let lines: Vec<&str> = lab.lines().collect();
    let start = lines.iter().position(|l| *l == "  artifacts:").expect("the lab inventory has spec.artifacts");
    let first = (0..start).rev().take_while(|i| lines[*i].starts_with("  #")).last().unwrap_or(start);
    let end = start + 1 + lines[start + 1..].iter().take_while(|l| l.starts_with("    ")).count();
    let kept: Vec<&str> = lines[..first].iter().chain(&lines[end..]).copied().collect();
    kept.join("\n") + "\n"
}

/// The etcd cluster ID of every fixture view.
pub const CLUSTER_ID: u64 = 0xc1a5_7e12;

/// A member whose URLs carry its name (`https://NAME:2380`): for rules that never look at addresses.
pub fn member(id: u64, name: &str, learner: bool) -> Member {
    member_at(id, name, name, learner)
}

/// Member `i` of the lab, at the address of the lab's cp-`i` (198.18.0.1`i`), so that the identity rule
/// matches it to that host when `name` is its name.
pub fn lab_member(i: u64, name: &str, learner: bool) -> Member {
    member_at(i, name, &format!("198.18.0.1{i}"), learner)
}

/// The member an inventory host becomes: its name and its peer and client URLs.
pub fn host_member(id: u64, host: &Host) -> Member {
    Member { id, name: host.name.clone(), peer_urls: vec![host.peer_url()], client_urls: vec![host.client_url()], is_learner: false }
}

/// A member with its peer (2380) and client (2379) URLs at `address`.
pub fn member_at(id: u64, name: &str, address: &str, learner: bool) -> Member {
    Member {
        id,
        name: name.into(),
        peer_urls: vec![format!("https://{address}:2380")],
        client_urls: vec![format!("https://{address}:2379")],
        is_learner: learner,
    }
}

/// As etcdctl reports `members`: those in `down` (by label) are missing from `endpoint status` and unhealthy
/// in `endpoint health`; every answering member names `leader` (0 = none) and is caught up.
pub fn view(members: Vec<Member>, leader: u64, down: &[&str]) -> View {
    let is_down = |m: &Member| down.contains(&m.label().as_str());
    View {
        cluster_id: CLUSTER_ID,
        statuses: members
            .iter()
            .filter(|m| !is_down(m))
            .map(|m| EndpointStatus {
                endpoint: m.client_urls[0].clone(),
                cluster_id: CLUSTER_ID,
                member_id: m.id,
                leader,
                raft_index: 100,
                raft_applied_index: 100,
                is_learner: m.is_learner,
                version: "3.6.14".into(),
                errors: vec![],
            })
            .collect(),
        health: members
            .iter()
            .map(|m| EndpointHealth { endpoint: m.client_urls[0].clone(), healthy: !is_down(m), error: is_down(m).then(|| "context deadline exceeded".into()) })
            .collect(),
        members,
    }
}

/// A control plane whose etcdctl answers as a healthy one-member cluster: member `member_name` (ID 1, the
/// leader, caught up) with its peer and client URLs at `address`, etcd `version`.
pub fn one_member_etcd(host: &str, member_name: &str, address: &str, version: &str) -> crate::ssh::fake::RecordingTransport {
    let url = format!("https://{address}:2379");
    crate::ssh::fake::RecordingTransport::new(host)
        .on("member list", format!(r#"{{"members":[{{"ID":1,"name":"{member_name}","peerURLs":["https://{address}:2380"],"clientURLs":["{url}"]}}]}}"#))
        .on(
            "endpoint status",
            format!(r#"[{{"Endpoint":"{url}","Status":{{"header":{{"member_id":1}},"version":"{version}","leader":1,"raftIndex":8,"raftAppliedIndex":8}}}}]"#),
        )
        .on("endpoint health", format!(r#"[{{"endpoint":"{url}","health":true}}]"#))
}

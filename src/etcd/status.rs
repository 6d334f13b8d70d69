//! etcd's view of itself, parsed from `etcdctl -w json` output (pure). Field names follow etcdctl's JSON:
//! IDs are uint64 numbers (beyond 2^53, so never read through f64) and zero or false fields are omitted.
use serde::Deserialize;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub id: u64,
    /// Empty for a member that was added but has not started yet.
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
    pub is_learner: bool,
}

impl Member {
    /// How messages name a member: its name, or its peer URL while it has none yet.
    pub fn label(&self) -> String {
        if self.name.is_empty() { format!("unstarted member {}", self.peer_urls.join(",")) } else { self.name.clone() }
    }
}

/// One member's own answer to `member list`: which cluster it belongs to (the response header's
/// cluster_id), which member it is, and the members it knows. A member that lost its data and bootstrapped
/// a cluster of its own answers with another cluster ID and a list of one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberList {
    pub cluster_id: u64,
    pub member_id: u64,
    pub members: Vec<Member>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointStatus {
    pub endpoint: String,
    /// The cluster the answering member belongs to (0 when not reported).
    pub cluster_id: u64,
    pub member_id: u64,
    pub leader: u64,
    pub raft_index: u64,
    pub raft_applied_index: u64,
    pub is_learner: bool,
    pub version: String,
    pub errors: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointHealth {
    pub endpoint: String,
    pub healthy: bool,
    pub error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot read etcdctl {what} output: {message}")]
pub struct ParseError {
    what: &'static str,
    message: String,
}

#[derive(Deserialize)]
struct RawMemberList {
    #[serde(default)]
    header: Option<RawHeader>,
    #[serde(default)]
    members: Vec<RawMember>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawMember {
    #[serde(rename = "ID")]
    id: u64,
    #[serde(default)]
    name: String,
    #[serde(default, rename = "peerURLs")]
    peer_urls: Vec<String>,
    #[serde(default, rename = "clientURLs")]
    client_urls: Vec<String>,
    #[serde(default)]
    is_learner: bool,
}

#[derive(Deserialize)]
struct RawEndpointStatus {
    #[serde(rename = "Endpoint")]
    endpoint: String,
    #[serde(rename = "Status")]
    status: RawStatus,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawStatus {
    header: RawHeader,
    #[serde(default)]
    leader: u64,
    #[serde(default)]
    raft_index: u64,
    #[serde(default)]
    raft_applied_index: u64,
    #[serde(default)]
    is_learner: bool,
    #[serde(default)]
    version: String,
    #[serde(default)]
    errors: Vec<String>,
}

#[derive(Deserialize)]
struct RawHeader {
    #[serde(default)]
    cluster_id: u64,
    #[serde(default)]
    member_id: u64,
}

#[derive(Deserialize)]
struct RawHealth {
    endpoint: String,
    health: bool,
    #[serde(default)]
    error: Option<String>,
}

pub fn parse_member_list(json: &str) -> Result<Vec<Member>, ParseError> {
    parse_member_list_answer(json).map(|l| l.members)
}

/// The member list with its header: the cluster and member that answered.
pub fn parse_member_list_answer(json: &str) -> Result<MemberList, ParseError> {
    let raw: RawMemberList = serde_json::from_str(json.trim()).map_err(|e| ParseError { what: "member list", message: e.to_string() })?;
    let (cluster_id, member_id) = raw.header.map_or((0, 0), |h| (h.cluster_id, h.member_id));
    let members = raw
        .members
        .into_iter()
        .map(|m| Member { id: m.id, name: m.name, peer_urls: m.peer_urls, client_urls: m.client_urls, is_learner: m.is_learner })
        .collect();
    Ok(MemberList { cluster_id, member_id, members })
}

/// etcdctl prints the endpoints it reached even when others failed (exit status non-zero), so the output
/// is parsed whatever the exit status; empty output means none answered.
pub fn parse_endpoint_status(json: &str) -> Result<Vec<EndpointStatus>, ParseError> {
    if json.trim().is_empty() {
        return Ok(Vec::new());
    }
    let raw: Vec<RawEndpointStatus> = serde_json::from_str(json.trim()).map_err(|e| ParseError { what: "endpoint status", message: e.to_string() })?;
    Ok(raw
        .into_iter()
        .map(|r| EndpointStatus {
            endpoint: r.endpoint,
            cluster_id: r.status.header.cluster_id,
            member_id: r.status.header.member_id,
            leader: r.status.leader,
            raft_index: r.status.raft_index,
            raft_applied_index: r.status.raft_applied_index,
            is_learner: r.status.is_learner,
            version: r.status.version,
            errors: r.status.errors,
        })
        .collect())
}

pub fn parse_endpoint_health(json: &str) -> Result<Vec<EndpointHealth>, ParseError> {
    if json.trim().is_empty() {
        return Ok(Vec::new());
    }
    let raw: Vec<RawHealth> = serde_json::from_str(json.trim()).map_err(|e| ParseError { what: "endpoint health", message: e.to_string() })?;
    Ok(raw.into_iter().map(|h| EndpointHealth { endpoint: h.endpoint, healthy: h.health, error: h.error.filter(|e| !e.is_empty()) }).collect())
}

/// etcd refuses membership changes until every voting member has been connected for its health interval
/// (5 s; `--strict-reconfig-check`), and refuses promotion until the learner has caught up. These refusals
/// mean "not yet" rather than "no": the change may be retried within a bound.
pub fn reconfiguration_not_ready(stderr: &str) -> bool {
    ["etcdserver: unhealthy cluster", "not enough started members", "can only promote a learner member which is in sync with leader"]
        .iter()
        .any(|m| stderr.contains(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured from etcd 3.4.23 (Debian) with etcdctl -w json, three members on loopback.
    const MEMBERS: &str = r#"{"header":{"cluster_id":10221830796114871476,"member_id":2101811916927406624,"raft_term":2},"members":[{"ID":2101811916927406624,"name":"m3","peerURLs":["https://127.0.0.53:23791"],"clientURLs":["https://127.0.0.53:23790"]},{"ID":4121359275663596127,"name":"m2","peerURLs":["https://127.0.0.52:23791"],"clientURLs":["https://127.0.0.52:23790"]},{"ID":7099749586112013263,"name":"m1","peerURLs":["https://127.0.0.51:23791"],"clientURLs":["https://127.0.0.51:23790"]}]}"#;
    const STATUS: &str = r#"[{"Endpoint":"https://127.0.0.51:23790","Status":{"header":{"cluster_id":10221830796114871476,"member_id":7099749586112013263,"revision":1,"raft_term":2},"version":"3.4.23","dbSize":20480,"leader":2101811916927406624,"raftIndex":8,"raftTerm":2,"raftAppliedIndex":8,"dbSizeInUse":20480}}]"#;
    const HEALTH: &str = r#"[{"endpoint":"https://127.0.0.53:23790","health":true,"took":"5.84958ms"},{"endpoint":"https://127.0.0.51:23790","health":false,"took":"5.0s","error":"context deadline exceeded"}]"#;

    #[test]
    fn parses_captured_output_with_full_64_bit_ids() {
        let answer = parse_member_list_answer(MEMBERS).unwrap();
        assert_eq!((answer.cluster_id, answer.member_id), (10221830796114871476, 2101811916927406624));
        let members = parse_member_list(MEMBERS).unwrap();
        assert_eq!(members, answer.members);
        assert_eq!(members.len(), 3);
        assert_eq!(members[2].id, 7099749586112013263);
        assert_eq!(members[2].name, "m1");
        assert!(!members[0].is_learner);
        let status = parse_endpoint_status(STATUS).unwrap();
        assert_eq!(status[0].member_id, 7099749586112013263);
        assert_eq!(status[0].cluster_id, 10221830796114871476);
        assert_eq!(status[0].leader, 2101811916927406624);
        assert_eq!(status[0].raft_applied_index, 8);
        let health = parse_endpoint_health(HEALTH).unwrap();
        assert!(health[0].healthy && !health[1].healthy);
        assert_eq!(health[1].error.as_deref(), Some("context deadline exceeded"));
    }

    #[test]
    fn unstarted_learner_is_named_by_its_peer_url() {
        let m = parse_member_list(r#"{"members":[{"ID":5,"peerURLs":["https://198.18.0.14:2380"],"isLearner":true}]}"#).unwrap();
        assert!(m[0].is_learner && m[0].client_urls.is_empty());
        assert_eq!(m[0].label(), "unstarted member https://198.18.0.14:2380");
    }

    #[test]
    fn reconfiguration_refusals_that_mean_not_yet() {
        // Both captured from etcdctl 3.4.23 against a cluster started a moment earlier / a fresh learner.
        assert!(reconfiguration_not_ready("Error: etcdserver: unhealthy cluster\n"));
        assert!(reconfiguration_not_ready("Error: etcdserver: can only promote a learner member which is in sync with leader"));
        assert!(!reconfiguration_not_ready("Error: etcdserver: member not found"));
    }

    #[test]
    fn garbage_is_an_error_and_silence_is_no_answer() {
        assert!(parse_member_list("Error: context deadline exceeded").is_err());
        assert_eq!(parse_endpoint_status("").unwrap(), vec![]);
    }
}

//! The cluster's state as the control planes store it, brought up to date with the inventory (new members'
//! certificates, renewals, new addresses), and the warnings that say so in the plan.
use crate::inventory::Inventory;
use crate::paths::STATE_FILE;
use crate::plan;
use crate::ssh::targets::Hosts;
use crate::state::{self, ClusterState};

/// The cluster's state as the control planes hold it.
pub struct StoredState {
    pub state: ClusterState,
    /// No control plane had any: new material was made (`plan` refuses it where a cluster seems to exist).
    pub new: bool,
    /// Copies that could not be read or used, passed over because others could; the state phase rewrites them.
    pub skipped: Vec<state::SkippedCopy>,
    /// kubeha's certificates re-issued because they were due (see `ClusterState::renew_due`).
    pub renewed: Vec<String>,
    /// Member certificates re-issued for a host's new address (see `ClusterState::reissue_readdressed`).
    pub reissued: Vec<String>,
}

/// The cluster's stored state, or new material when no control plane has any and nothing says a cluster
/// exists. New members of the inventory get their certificates here.
pub async fn cluster_state(inv: &Inventory, hosts: &Hosts) -> anyhow::Result<StoredState> {
    let mut found = Vec::new();
    for h in inv.control_planes() {
        let Some(t) = hosts.get(&h.name) else { continue };
        let copy =
            t.read_file(STATE_FILE).await.map(|bytes| bytes.map(|b| String::from_utf8_lossy(&b).into_owned())).map_err(|e| format!("cannot be read ({e})"));
        found.push((h.name.clone(), copy));
    }
    let newest = state::newest(&inv.name, &found)?;
    let (mut state, new) = match newest.state {
        Some(s) => (s, false),
        None => (ClusterState::create(inv)?, true),
    };
    state.issue_missing_members(inv)?;
    // New material was issued a moment ago: nothing in it can be due (and with the short-validity test hook
    // it would be re-issued for nothing).
    let renewed = if new { Vec::new() } else { state.renew_due(inv, time::OffsetDateTime::now_utc().unix_timestamp())? };
    let reissued = state.reissue_readdressed(inv)?;
    state.prune_removed(inv);
    Ok(StoredState { state, new, skipped: newest.skipped, renewed, reissued })
}

/// A warning per copy of the state that was passed over, naming its host.
pub(super) fn skipped_findings(skipped: &[state::SkippedCopy], used: &ClusterState) -> Vec<plan::Finding> {
    skipped
        .iter()
        .map(|s| plan::Finding {
            host: s.host.clone(),
            problem: format!(
                "{}:{STATE_FILE}: {}; skipped: the readable copies on the other control planes agree (generation {})",
                s.host, s.problem, used.generation
            ),
            fix: format!("`kubeha apply` rewrites {STATE_FILE} on {} in its cluster-state phase", s.host),
            fatal: false,
        })
        .collect()
}

/// A warning saying which of kubeha's certificates this run renews, and how they reach the members.
pub(super) fn renewed_finding(renewed: &[String], inv: &Inventory) -> Option<plan::Finding> {
    (!renewed.is_empty()).then(|| plan::Finding {
        host: renewed.iter().filter_map(|r| r.split(' ').next()).collect::<std::collections::BTreeSet<_>>().into_iter().collect::<Vec<_>>().join(", "),
        problem: format!(
            "kubeha's etcd certificates valid for less than {} days (spec.certificates.renewBefore) are renewed: {}",
            inv.certificates.renew_before_days,
            renewed.join("; ")
        ),
        fix: "nothing to do: this run stores them and restarts etcd one member at a time between quorum gates (and the API servers, for their etcd client certificate)".into(),
        fatal: false,
    })
}

/// A warning naming the members whose certificates were re-issued for their new addresses.
pub(super) fn reissued_finding(reissued: &[String]) -> Option<plan::Finding> {
    (!reissued.is_empty()).then(|| plan::Finding {
        host: reissued.iter().filter_map(|r| r.split(' ').next()).collect::<std::collections::BTreeSet<_>>().into_iter().collect::<Vec<_>>().join(", "),
        problem: format!("etcd member certificates name an address the host no longer has and are re-issued: {}", reissued.join("; ")),
        fix: "nothing to do: this run stores them, updates the member's peer URL and restarts it between quorum gates".into(),
        fatal: false,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_skipped_state_copy_is_a_warning_naming_its_host() {
        let inv = crate::inventory::load(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/inventories/lab.yaml"))).unwrap().inventory.unwrap();
        let used = super::ClusterState::create(&inv).unwrap();
        let skipped = [super::state::SkippedCopy { host: "cp-2".into(), problem: "the file is empty".into() }];
        let findings = super::skipped_findings(&skipped, &used);
        assert_eq!(findings.len(), 1);
        assert!(!findings[0].fatal);
        assert_eq!(findings[0].host, "cp-2");
        assert!(findings[0].problem.starts_with("cp-2:/etc/kubeha/cluster-state.json: the file is empty; skipped"), "{}", findings[0].problem);
        assert!(findings[0].fix.contains("rewrites /etc/kubeha/cluster-state.json on cp-2"), "{}", findings[0].fix);
    }
}

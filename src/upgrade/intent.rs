//! `kubeha upgrade`'s promise: the run changes versions and nothing else. A plan passes when every step
//! that changes something belongs to a version change: the software phase, etcd restarts that swap in a
//! staged release (with their gates and the snapshot), the upgrade phases, and the kubeadm configuration
//! files that name the release. Anything else (a member added, a file of another kind, a join) is refused
//! with the steps named, before any change: those belong to `kubeha apply`.
use crate::paths::KUBEADM_CONFIG;
use crate::plan::{Action, Plan, Step};

/// The steps of `plan` that are not part of a version change.
pub fn other_changes(plan: &Plan) -> Vec<&Step> {
    plan.phases
        .iter()
        .flat_map(|p| p.steps.iter().map(move |s| (p.name, s)))
        .filter(|(phase, s)| s.action.changes() && !versions_only(phase, s))
        .map(|(_, s)| s)
        .collect()
}

fn versions_only(phase: &str, s: &Step) -> bool {
    let kubeadm_config = |files: &[String]| files.iter().all(|f| f == KUBEADM_CONFIG);
    match (phase, &s.action) {
        ("software" | "upgrade-control-planes" | "upgrade-workers", _) => true,
        ("etcd", Action::StartEtcdMember { restart: true, binary: Some(_), .. } | Action::MoveEtcdLeader { .. }) => true,
        ("control-plane", Action::UploadKubeadmConfig { files } | Action::PlaceFiles { files }) | ("workers", Action::PlaceFiles { files }) => {
            kubeadm_config(files)
        }
        _ => false,
    }
}

/// Whether the plan changes any version at all.
pub fn changes_versions(plan: &Plan) -> bool {
    plan.steps().any(|s| match &s.action {
        Action::InstallSoftware { artifacts, staged, .. } => !artifacts.is_empty() || !staged.is_empty(),
        Action::UpgradeNode { .. } | Action::UncordonNode { .. } => true,
        _ => false,
    })
}

//! Everything `plan` and `apply` need, gathered read-only: every host connected, the stored state, the
//! desired files, what the hosts have now, and the plan from them.
use super::stored::{self, StoredState};
use crate::facts::cluster;
use crate::inventory::{Host, Inventory};
use crate::paths::{ADMIN_CONF, ETCD_DATA_DIR, STATE_FILE};
use crate::plan::desired::Desired;
use crate::plan::{self, Observed, Plan};
use crate::render::{self, templates::Templates};
use crate::ssh::targets::{self, Hosts};
use crate::ssh::{self, Transport};
use crate::state::ClusterState;
use std::collections::BTreeMap;

/// Connects to every host and fails, naming each, when any cannot be reached: planning and applying need all.
/// The failure also says what etcd looks like from the control planes that answered: an operator whose
/// machines died needs to know first whether quorum holds (replace them) or is lost (restore).
pub async fn connect_all(inv: &Inventory, purpose: &str) -> anyhow::Result<Hosts> {
    let (hosts, unreachable) = targets::connect(inv).await;
    if !unreachable.is_empty() {
        let list: Vec<String> = unreachable.iter().map(|e| format!("  {e}")).collect();
        let members: Vec<&dyn Transport> = inv.control_planes().filter_map(|h| hosts.get(&h.name)).map(|t| t.as_ref()).collect();
        let etcd = match crate::facts::etcd::view_from_any(&members).await {
            Ok(v) if !v.has_quorum() => format!(
                "\netcd has LOST QUORUM: {} of {} voting members answer. No membership change can run; {}",
                v.healthy_voters().len(),
                v.members.iter().filter(|m| !m.is_learner).count(),
                plan::RESTORE_HINT
            ),
            Ok(v) if !v.unhealthy_voters().is_empty() => format!(
                "\netcd keeps quorum, but {} do(es) not answer. Membership changes need every member that stays: take a dead control plane out with `kubeha node replace OLD --with NEW` or `kubeha node remove OLD` (and out of the inventory)",
                v.unhealthy_voters().join(", ")
            ),
            Ok(_) => String::new(),
            Err(e) => format!("\netcd could not be asked on any reachable control plane ({e})"),
        };
        anyhow::bail!("cannot reach {} host(s); {purpose} needs every host of the inventory:\n{}{etcd}", unreachable.len(), list.join("\n"));
    }
    Ok(hosts)
}

/// Everything `plan` and `apply` need, gathered read-only.
pub struct Planned {
    pub state: ClusterState,
    pub desired: Desired,
    pub observed: Observed,
    pub plan: Plan,
    /// Connections to hosts leaving the cluster that answered (their reset steps run over these).
    pub leaving: Hosts,
}

/// The desired files with `seed` holding the InitConfiguration (see `plan::seed_control_plane`), for an etcd
/// cluster that exists or not (`Observed::etcd_cluster`).
fn desired(inv: &Inventory, state: &ClusterState, templates: &Templates, seed: &str, etcd: render::context::EtcdCluster) -> anyhow::Result<Desired> {
    let rendered = render::render_seeded(inv, &state.secrets, templates, seed, etcd)?;
    Ok(Desired::build(inv, &rendered, state))
}

/// A dead host leaving the cluster should not hold the run up for long.
const LEAVING_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The hosts leaving the cluster (`cluster::leaving_hosts`) that answered, and why the others did not.
async fn connect_leaving(inv: &Inventory, observed: &Observed, known: &[Host]) -> (Hosts, BTreeMap<String, String>) {
    let options = ssh::ConnectOptions { connect_timeout: LEAVING_CONNECT_TIMEOUT, ..targets::connect_options(inv, false) };
    let (reached, failed) = targets::connect_hosts(&cluster::leaving_hosts(inv, observed, known), &options).await;
    (reached, failed.into_iter().map(|e| (e.host().to_string(), e.to_string())).collect())
}

/// `leaving_known`: hosts an operator named as leaving whose inventory entries give their SSH address.
pub async fn plan(inv: &Inventory, hosts: &Hosts, templates: &Templates, leaving_known: &[Host]) -> anyhow::Result<Planned> {
    let StoredState { state, new: new_cluster, skipped, renewed, reissued } = stored::cluster_state(inv, hosts).await?;
    // Probe with the files of a new cluster (every control plane is probed for the seed's files too), then
    // render for the seed the probe shows: a joined control plane, the inventory's first only when none is.
    let fresh = inv.first_control_plane().map(|h| h.name.clone()).unwrap_or_default();
    let probed = desired(inv, &state, templates, &fresh, render::context::EtcdCluster::New)?;
    let mut observed = cluster::observe(inv, &probed, hosts).await?;
    let seed = plan::seed_control_plane(inv, &observed).map(|h| h.name.clone()).unwrap_or_default();
    // Rendered again for what was observed (the probe's paths are the same either way): the seed, and
    // whether etcd exists (then every member's config says `existing`).
    let etcd = observed.etcd_cluster();
    let desired = if seed == probed.seed && etcd == render::context::EtcdCluster::New { probed } else { desired(inv, &state, templates, &seed, etcd)? };
    let (leaving, unreachable) = connect_leaving(inv, &observed, leaving_known).await;
    observed.reachable_leaving = leaving.keys().cloned().collect();
    observed.unreachable_leaving = unreachable;
    if new_cluster {
        refuse_if_a_cluster_exists(&observed)?;
    }
    let mut plan = plan::converge(inv, &desired, &observed, plan::Basis::Observed);
    plan.findings.extend(stored::skipped_findings(&skipped, &state));
    plan.findings.extend(stored::renewed_finding(&renewed, inv));
    plan.findings.extend(stored::reissued_finding(&reissued));
    Ok(Planned { state, desired, observed, plan, leaving })
}

/// Without stored state, new CAs would be generated: fatal for a cluster that already runs on others.
fn refuse_if_a_cluster_exists(observed: &Observed) -> anyhow::Result<()> {
    let evidence: Vec<String> = observed
        .hosts_with_etcd_data()
        .map(|h| format!("{h} has etcd data"))
        .chain(observed.hosts.iter().filter(|(_, o)| o.state.has(ADMIN_CONF)).map(|(h, _)| format!("{h} has {ADMIN_CONF}")))
        .collect();
    if evidence.is_empty() {
        return Ok(());
    }
    anyhow::bail!(
        "no control plane holds {STATE_FILE}, but a cluster seems to exist ({}). kubeha will not create new CAs and secrets over it. \
         Restore {STATE_FILE} from a backup onto one control plane, or clear the hosts (kubeadm reset -f; remove {ETCD_DATA_DIR}) to start anew",
        evidence.join(", ")
    )
}

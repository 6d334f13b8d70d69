//! The live cluster as the planner needs it: one connection per host, the cluster state from the control
//! planes (or new material for a new cluster), the desired files, and what the hosts have now. Read-only:
//! `plan` uses it as is, `apply` under the cluster lock.
use crate::facts::{self, observe};
use crate::inventory::{Host, Inventory};
use crate::paths::{ADMIN_CONF, ETCD_DATA_DIR, STATE_FILE};
use crate::phases::kubeadm;
use crate::plan::desired::Desired;
use crate::plan::{self, Observed, Plan};
use crate::render::{self, templates::Templates};
use crate::ssh::{self, SshError, Transport};
use crate::state::{self, ClusterState};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// The units whose state the planner looks at.
const UNITS: [&str; 6] = ["etcd", "haproxy", "keepalived", "kubelet", "containerd", crate::phases::backup::TIMER];

pub type Hosts = HashMap<String, Arc<dyn Transport>>;

/// Connects to every host of the inventory, one connection each, in parallel up to `concurrency`.
pub async fn connect(inv: &Inventory) -> (Hosts, Vec<SshError>) {
    let targets: Vec<ssh::HostTarget> = inv.hosts.iter().map(ssh::targets::target).collect();
    let mut hosts = HashMap::new();
    let mut unreachable = Vec::new();
    for (name, result) in ssh::pool::connect_each(&targets, &ssh::targets::connect_options(inv, false)).await {
        match result {
            Ok(session) => {
                hosts.insert(name, session as Arc<dyn Transport>);
            }
            Err(e) => unreachable.push(e),
        }
    }
    (hosts, unreachable)
}

/// Connects to every host and fails, naming each, when any cannot be reached: planning and applying need all.
/// The failure also says what etcd looks like from the control planes that answered: an operator whose
/// machines died needs to know first whether quorum holds (replace them) or is lost (restore).
pub async fn connect_all(inv: &Inventory, purpose: &str) -> anyhow::Result<Hosts> {
    let (hosts, unreachable) = connect(inv).await;
    if !unreachable.is_empty() {
        let list: Vec<String> = unreachable.iter().map(|e| format!("  {e}")).collect();
        let members: Vec<&dyn Transport> = inv.control_planes().filter_map(|h| hosts.get(&h.name)).map(|t| t.as_ref()).collect();
        let etcd = match crate::phases::etcd::view_from_any(&members).await {
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
fn skipped_findings(skipped: &[state::SkippedCopy], used: &ClusterState) -> Vec<plan::Finding> {
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
fn renewed_finding(renewed: &[String], inv: &Inventory) -> Option<plan::Finding> {
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
fn reissued_finding(reissued: &[String]) -> Option<plan::Finding> {
    (!reissued.is_empty()).then(|| plan::Finding {
        host: reissued.iter().filter_map(|r| r.split(' ').next()).collect::<std::collections::BTreeSet<_>>().into_iter().collect::<Vec<_>>().join(", "),
        problem: format!("etcd member certificates name an address the host no longer has and are re-issued: {}", reissued.join("; ")),
        fix: "nothing to do: this run stores them, updates the member's peer URL and restarts it between quorum gates".into(),
        fatal: false,
    })
}

/// The desired files with `seed` holding the InitConfiguration (see `plan::seed_control_plane`), for an etcd
/// cluster that exists or not (`Observed::etcd_cluster`).
pub fn desired(inv: &Inventory, state: &ClusterState, templates: &Templates, seed: &str, etcd: render::context::EtcdCluster) -> anyhow::Result<Desired> {
    let rendered = render::render_seeded(inv, &state.secrets, templates, seed, etcd)?;
    Ok(Desired::build(inv, &rendered, state))
}

/// Facts and kubeha's own state of every host (one probe pair per host, in parallel), then every running
/// member's own answer about etcd (compared by the planner), etcd's full view from a running member, and the
/// registered nodes from a control plane with admin.conf.
pub async fn observe(inv: &Inventory, desired: &Desired, hosts: &Hosts) -> anyhow::Result<Observed> {
    let mut tasks = tokio::task::JoinSet::new();
    let limit = Arc::new(tokio::sync::Semaphore::new(inv.concurrency.max(1)));
    for (name, t) in hosts {
        let (name, t, limit) = (name.clone(), t.clone(), limit.clone());
        let paths: Vec<String> = desired.probe_paths(&name).into_iter().map(String::from).collect();
        // kubeadm's certificates are renewed on control planes only; workers hold only the kubelet's.
        let control_plane = desired.control_planes.contains(&name);
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
            let certs = async {
                match control_plane {
                    true => facts::certs::probe(t.as_ref()).await.map(Some),
                    false => Ok(None),
                }
            };
            let (f, s, c) = tokio::join!(facts::probe(t.as_ref()), observe::observe(t.as_ref(), &paths, &UNITS), certs);
            (name, f, s, c)
        });
    }
    let mut observed = Observed { now: time::OffsetDateTime::now_utc().unix_timestamp(), ..Observed::default() };
    while let Some(joined) = tasks.join_next().await {
        let (name, f, s, c) = joined?;
        observed.facts.insert(name.clone(), f?);
        observed.hosts.insert(name.clone(), s?);
        if let Some(certs) = c? {
            observed.certs.insert(name, certs);
        }
    }
    let running: Vec<(String, Arc<dyn Transport>)> = inv
        .control_planes()
        .filter(|h| observed.host(&h.name).is_active("etcd"))
        .filter_map(|h| hosts.get(&h.name).map(|t| (h.name.clone(), t.clone())))
        .collect();
    let mut answers = tokio::task::JoinSet::new();
    for (name, t) in running.clone() {
        answers.spawn(async move { (name, crate::phases::etcd::member_list_answer(t.as_ref()).await) });
    }
    while let Some(joined) = answers.join_next().await {
        // A member that does not answer is not compared: the full view below and the gates report it.
        if let (name, Ok(answer)) = joined? {
            observed.etcd_answers.insert(name, answer);
        }
    }
    let members: Vec<&dyn Transport> = running.iter().map(|(_, t)| t.as_ref()).collect();
    observed.etcd = crate::phases::etcd::view_from_any(&members).await.ok();
    let admins: Vec<&crate::inventory::Host> = inv.control_planes().filter(|h| observed.host(&h.name).has(ADMIN_CONF)).collect();
    for h in admins {
        let Some(t) = hosts.get(&h.name) else { continue };
        let out = t.exec(&kubeadm::kubectl("get nodes -o json")).await?;
        if out.status.success() {
            observed.nodes = Some(kubeadm::parse_nodes(&out.stdout_text()).map_err(|e| anyhow::anyhow!("{}: {e}", h.name))?);
            observed.node_addresses = kubeadm::parse_node_addresses(&out.stdout_text());
            observed.node_machine_ids = kubeadm::parse_node_machine_ids(&out.stdout_text());
            observed.node_states = kubeadm::parse_node_states(&out.stdout_text());
            let config = t.exec(&kubeadm::cluster_version_command()).await?;
            observed.cluster_version = config.status.success().then(|| kubeadm::parse_cluster_version(&config.stdout_text())).flatten();
            observed.api_error = None;
            break;
        }
        observed.api_error = Some(format!("{}: {}", h.name, last_line(&String::from_utf8_lossy(&out.stderr))));
    }
    if observed.api_error.is_some() {
        for t in &members {
            if let Ok(holds) = crate::phases::etcd::holds_kubernetes_data(*t).await {
                observed.kubernetes_data = Some(holds);
                break;
            }
        }
    }
    Ok(observed)
}

/// kubectl repeats its error on every retry: the last line says it once.
fn last_line(text: &str) -> &str {
    text.trim().lines().last().unwrap_or_default()
}

/// Everything `plan` and `apply` need, gathered read-only.
pub struct Planned {
    pub state: ClusterState,
    pub new_cluster: bool,
    pub desired: Desired,
    pub observed: Observed,
    pub plan: Plan,
    /// Connections to hosts leaving the cluster that answered (their reset steps run over these).
    pub leaving: Hosts,
}

/// A dead host leaving the cluster should not hold the run up for long.
const LEAVING_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The hosts that are in the cluster but not in the inventory (etcd members by their peer address, nodes by
/// their InternalIP, plus `known` entries an operator named), reached with the inventory's SSH settings.
async fn connect_leaving(inv: &Inventory, observed: &Observed, known: &[Host]) -> (Hosts, BTreeMap<String, String>) {
    let listed = |n: &str| inv.hosts.iter().any(|h| h.name == n);
    let Some(template) = inv.control_planes().next() else { return Default::default() };
    let mut leaving: Vec<Host> = known.iter().filter(|h| !listed(&h.name)).cloned().collect();
    // An address that belongs to an inventory host is never a leaving host's, whatever name the cluster
    // knows it by (a renamed host: the planner refuses the rename and nothing there may be reset).
    let owned = |address: std::net::IpAddr| inv.hosts.iter().any(|h| h.address == address);
    let mut add = |name: &str, address: std::net::IpAddr| {
        if !listed(name) && !owned(address) && !leaving.iter().any(|h| h.name == name) {
            leaving.push(Host { name: name.to_string(), address, ..template.clone() });
        }
    };
    let strangers = observed.etcd.iter().flat_map(|v| v.members.iter()).filter(|m| crate::etcd::identity::host_of(inv, m).is_none());
    for m in strangers.filter(|m| !m.name.is_empty()) {
        if let Some(address) = m.peer_urls.iter().find_map(|u| peer_address(u)) {
            add(&m.name, address);
        }
    }
    for (name, address) in &observed.node_addresses {
        add(name, *address);
    }
    let targets: Vec<ssh::HostTarget> = leaving.iter().map(ssh::targets::target).collect();
    let options = ssh::ConnectOptions { connect_timeout: LEAVING_CONNECT_TIMEOUT, ..ssh::targets::connect_options(inv, false) };
    let (mut reached, mut failed) = (Hosts::new(), BTreeMap::new());
    for (name, result) in ssh::pool::connect_each(&targets, &options).await {
        match result {
            Ok(session) => {
                reached.insert(name, session as Arc<dyn Transport>);
            }
            Err(e) => {
                failed.insert(name, e.to_string());
            }
        }
    }
    (reached, failed)
}

/// The IP address of a peer URL such as https://198.18.0.12:2380 or https://[fd00::2]:2380.
fn peer_address(url: &str) -> Option<std::net::IpAddr> {
    let rest = url.split("://").nth(1)?;
    let host = rest.rsplit_once(':').map_or(rest, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']').parse().ok()
}

/// `leaving_known`: hosts an operator named as leaving whose inventory entries give their SSH address.
pub async fn plan(inv: &Inventory, hosts: &Hosts, templates: &Templates, leaving_known: &[Host]) -> anyhow::Result<Planned> {
    let StoredState { state, new: new_cluster, skipped, renewed, reissued } = cluster_state(inv, hosts).await?;
    // Probe with the files of a new cluster (every control plane is probed for the seed's files too), then
    // render for the seed the probe shows: a joined control plane, the inventory's first only when none is.
    let fresh = inv.first_control_plane().map(|h| h.name.clone()).unwrap_or_default();
    let probed = desired(inv, &state, templates, &fresh, render::context::EtcdCluster::New)?;
    let mut observed = observe(inv, &probed, hosts).await?;
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
    plan.findings.extend(skipped_findings(&skipped, &state));
    plan.findings.extend(renewed_finding(&renewed, inv));
    plan.findings.extend(reissued_finding(&reissued));
    Ok(Planned { state, new_cluster, desired, observed, plan, leaving })
}

/// Without stored state, new CAs would be generated: fatal for a cluster that already runs on others.
fn refuse_if_a_cluster_exists(observed: &Observed) -> anyhow::Result<()> {
    let evidence: Vec<String> = observed
        .facts
        .iter()
        .filter(|(_, f)| f.etcd_data_dir)
        .map(|(h, _)| format!("{h} has etcd data"))
        .chain(observed.hosts.iter().filter(|(_, s)| s.has(ADMIN_CONF)).map(|(h, _)| format!("{h} has {ADMIN_CONF}")))
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

    #[test]
    fn peer_addresses() {
        assert_eq!(super::peer_address("https://198.18.0.12:2380").unwrap().to_string(), "198.18.0.12");
        assert_eq!(super::peer_address("https://[fd00::2]:2380").unwrap().to_string(), "fd00::2");
        assert!(super::peer_address("https://cp-2.example:2380").is_none());
    }
}

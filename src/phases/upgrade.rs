//! One node's Kubernetes upgrade on the hosts: kubeadm's part on the node, then the drained kubelet swap,
//! with the node watched and uncordoned through a control plane's admin credential. Every part can run
//! again after a kill: `kubeadm upgrade apply` and `node` re-apply the release already in place, a drain
//! of a drained node and an uncordon of a schedulable one are no-ops, and the staged kubelet's swap is
//! refused only when nothing is staged (then the kubelet already runs the new release).
use super::kubeadm::{self, DRAINED_ANNOTATION, ReadyError};
use super::software::swap_staged;
use crate::artifacts::catalogue::Kind;
use crate::plan::KubeadmUpgrade;
use crate::ssh::{Command, SshError, Transport, quote};
use std::time::{Duration, Instant};

/// `kubeadm upgrade apply` pulls nothing here (the images are the runtime's), but it waits for every
/// static pod to come back with its new hash, one after the other, each bounded by kubeadm's own 5 min.
const KUBEADM_UPGRADE_TIMEOUT: Duration = Duration::from_secs(20 * 60);
/// A restarted kubelet posts its new version and Ready within seconds; an API server behind it may be
/// restarting too (its own node's pods come back).
const NODE_READY_WITHIN: Duration = Duration::from_secs(180);

#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    #[error(transparent)]
    Ssh(#[from] SshError),
    #[error(transparent)]
    Ready(#[from] ReadyError),
    #[error("{node}: not Ready on v{version} within {} s: {last}", within.as_secs())]
    NodeNotReady { node: String, version: String, within: Duration, last: String },
}

/// What one UpgradeNode step runs.
pub struct NodeUpgrade<'a> {
    pub node: &'a str,
    pub version: &'a str,
    pub kubeadm: KubeadmUpgrade,
    pub kubelet: bool,
    pub endpoint: &'a str,
    /// The node's own address when it is a control plane: its API server must serve before the next one goes.
    pub control_plane_address: Option<String>,
    pub ignore_preflight_errors: Vec<String>,
    pub drain_timeout: Duration,
}

/// The preflight checks `kubeadm upgrade` may only warn about: the inventory's, plus kubeadm's CoreDNS
/// migration checks when the cluster has no CoreDNS (spec.kubernetes.addons.coreDNS: false): kubeadm
/// runs them anyway and fails them for want of a CoreDNS Deployment to read ("start version '' not
/// supported", kubeadm 1.36, seen on the lab).
pub fn preflight_ignores(inv: &crate::inventory::Inventory) -> Vec<String> {
    let mut ignored = inv.kubernetes.ignore_preflight_errors.clone();
    if !inv.kubernetes.addons.core_dns {
        ignored.extend(["CoreDNSUnsupportedPlugins".to_string(), "CoreDNSMigration".to_string()]);
    }
    ignored
}

/// `t` is the node, `admin` a control plane with admin.conf (the same host for a control plane's own step).
pub async fn node(t: &dyn Transport, admin: &dyn Transport, u: &NodeUpgrade<'_>) -> Result<(), UpgradeError> {
    let ignore = if u.ignore_preflight_errors.is_empty() {
        String::new()
    } else {
        format!(" --ignore-preflight-errors={}", quote::quote(&u.ignore_preflight_errors.join(",")))
    };
    match u.kubeadm {
        KubeadmUpgrade::Apply => {
            // apply runs kubeadm's version-skew and cluster health checks before it changes anything, so a
            // `kubeadm upgrade plan` first would only run them twice (its CreateJob check waits out 60 s where
            // no pod-network Job can run, as in the lab). External etcd is kubeha's: kubeadm must not touch it.
            let apply = format!("kubeadm upgrade apply v{} --yes --etcd-upgrade=false{ignore}", u.version);
            t.run(&Command::script(apply).timeout(KUBEADM_UPGRADE_TIMEOUT)).await?;
        }
        KubeadmUpgrade::Node => {
            t.run(&Command::script(format!("kubeadm upgrade node --etcd-upgrade=false{ignore}")).timeout(KUBEADM_UPGRADE_TIMEOUT)).await?;
        }
        KubeadmUpgrade::Done => {}
    }
    if u.kubeadm != KubeadmUpgrade::Done
        && let Some(address) = &u.control_plane_address
    {
        kubeadm::wait_own_api_ready(t, address).await?;
        kubeadm::wait_until_api_ready(t, u.endpoint).await?;
    }
    if !u.kubelet {
        return Ok(());
    }
    drain(admin, u.node, u.version, u.drain_timeout).await?;
    swap_kubelet(t).await?;
    wait_node_on(admin, u.node, u.version).await?;
    uncordon(admin, u.node).await?;
    Ok(())
}

/// Cordons and drains `node`, marking it as kubeha's drain first (so a run that stops before the uncordon
/// is finished by the next one). Evictions honour PodDisruptionBudgets; kubectl retries those a budget
/// holds back until `timeout`, then the step fails with the node still cordoned.
pub async fn drain(admin: &dyn Transport, node: &str, version: &str, timeout: Duration) -> Result<(), SshError> {
    let n = quote::quote(node);
    let mark = kubeadm::kubectl(&format!("annotate node {n} {} --overwrite", quote::quote(&format!("{DRAINED_ANNOTATION}={version}")))).script;
    let drain = kubeadm::kubectl(&format!("drain {n} --ignore-daemonsets --delete-emptydir-data --timeout={}s", timeout.as_secs())).script;
    let script = format!("set -e\n{mark} >/dev/null\n{drain}\n");
    admin.run(&Command::script(script).timeout(timeout + Duration::from_secs(60))).await.map(|_| ())
}

/// The staged kubelet in place, then the kubelet restarted on it (the record moves only once it runs).
async fn swap_kubelet(t: &dyn Transport) -> Result<(), SshError> {
    let (before, after) = swap_staged(Kind::Kubelet);
    let script = format!("{before}systemctl daemon-reload && {{ systemctl restart kubelet.service{after}; }}");
    t.run(&Command::script(script).timeout(Duration::from_secs(120))).await.map(|_| ())
}

/// Uncordons `node` and takes kubeha's drain mark off.
pub async fn uncordon(admin: &dyn Transport, node: &str) -> Result<(), SshError> {
    let n = quote::quote(node);
    let uncordon = kubeadm::kubectl(&format!("uncordon {n}")).script;
    let unmark = kubeadm::kubectl(&format!("annotate node {n} {}-", quote::quote(DRAINED_ANNOTATION))).script;
    admin.run(&Command::script(format!("set -e\n{uncordon} >/dev/null\n{unmark} >/dev/null 2>&1 || true\n"))).await.map(|_| ())
}

/// Waits until `node` is Ready and its kubelet reports `version`.
async fn wait_node_on(admin: &dyn Transport, node: &str, version: &str) -> Result<(), UpgradeError> {
    let started = Instant::now();
    let want = crate::inventory::Version::parse(version);
    loop {
        let out = admin.exec(&kubeadm::kubectl(&format!("get node {} -o json", quote::quote(node)))).await?;
        let json = format!("{{\"items\":[{}]}}", out.stdout_text());
        let nodes = kubeadm::parse_registered(&json).unwrap_or_default();
        let not_ready = kubeadm::parse_not_ready(&json).unwrap_or_default();
        let last = match nodes.get(node).map(|n| &n.kubelet) {
            Some(s) if s.kubelet_version == want && !not_ready.contains_key(node) => return Ok(()),
            Some(s) => format!(
                "kubelet {}, {}",
                s.kubelet_version.map_or("of an unreadable version".to_string(), |v| format!("v{v}")),
                not_ready.get(node).map_or("Ready".to_string(), Clone::clone)
            ),
            None => format!("kubectl get node: {}", String::from_utf8_lossy(&out.stderr).trim()),
        };
        if started.elapsed() > NODE_READY_WITHIN {
            return Err(UpgradeError::NodeNotReady { node: node.into(), version: version.into(), within: NODE_READY_WITHIN, last });
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ssh::fake::RecordingTransport;

    const READY_NODE: &str = r#"{"metadata":{"name":"cp-2"},"spec":{"unschedulable":true},"status":{"nodeInfo":{"kubeletVersion":"v1.36.3"},"conditions":[{"type":"Ready","status":"True"}]}}"#;

    fn upgrade(kubeadm: KubeadmUpgrade, kubelet: bool) -> NodeUpgrade<'static> {
        NodeUpgrade {
            node: "cp-2",
            version: "1.36.3",
            kubeadm,
            kubelet,
            endpoint: "198.18.0.100:8443",
            control_plane_address: Some("198.18.0.12".into()),
            ignore_preflight_errors: Vec::new(),
            drain_timeout: Duration::from_secs(300),
        }
    }

    /// A control plane's upgrade in the order kubeadm documents: its kubeadm part, its API server and the
    /// API through the VIP, then drained (kubeha's mark first), the staged kubelet in and restarted, Ready on
    /// the new release, uncordoned and unmarked; the drain, watch and uncordon through the admin host.
    #[tokio::test]
    async fn a_control_plane_is_upgraded_then_drained_for_its_kubelet_and_uncordoned() {
        let cp2 = RecordingTransport::new("cp-2").on("/readyz", "ok");
        let admin = RecordingTransport::new("cp-1").on("get node 'cp-2' -o json", READY_NODE).on("get node cp-2 -o json", READY_NODE);
        node(&cp2, &admin, &upgrade(KubeadmUpgrade::Node, true)).await.unwrap();
        let on_node = cp2.scripts();
        assert!(on_node[0].starts_with("kubeadm upgrade node --etcd-upgrade=false"), "{on_node:?}");
        assert!(on_node[1].contains("https://198.18.0.12:6443/readyz") && on_node[2].contains("https://198.18.0.100:8443/readyz"), "{on_node:?}");
        assert!(on_node[3].contains("/var/lib/kubeha/software/staged/kubelet") && on_node[3].contains("systemctl restart kubelet.service"), "{on_node:?}");
        let on_admin = admin.scripts();
        assert!(
            on_admin[0].contains("annotate node cp-2 kubeha.io/drained-for-upgrade=1.36.3") && on_admin[0].contains("drain cp-2 --ignore-daemonsets"),
            "{on_admin:?}"
        );
        assert!(on_admin[0].contains("--timeout=300s"), "the drain is bounded by spec.upgrade.drainTimeout: {on_admin:?}");
        assert!(on_admin[1].contains("get node"), "{on_admin:?}");
        assert!(on_admin[2].contains("uncordon cp-2") && on_admin[2].contains("kubeha.io/drained-for-upgrade-"), "{on_admin:?}");
        assert_eq!(on_admin.len(), 3);
    }

    #[test]
    fn coredns_checks_are_ignored_only_without_coredns() {
        let mut inv = crate::test_support::lab();
        inv.kubernetes.ignore_preflight_errors = vec!["SystemVerification".into()];
        inv.kubernetes.addons.core_dns = false;
        assert_eq!(preflight_ignores(&inv), ["SystemVerification", "CoreDNSUnsupportedPlugins", "CoreDNSMigration"]);
        inv.kubernetes.addons.core_dns = true;
        assert_eq!(preflight_ignores(&inv), ["SystemVerification"]);
    }

    /// The seed runs `kubeadm upgrade apply` alone (its own checks refuse before any change), never etcd's.
    #[tokio::test]
    async fn the_seed_applies_without_touching_etcd() {
        let seed = RecordingTransport::new("cp-2").on("/readyz", "ok");
        let admin = RecordingTransport::new("cp-1");
        node(&seed, &admin, &upgrade(KubeadmUpgrade::Apply, false)).await.unwrap();
        let scripts = seed.scripts();
        assert!(scripts[0].starts_with("kubeadm upgrade apply v1.36.3 --yes --etcd-upgrade=false"), "{scripts:?}");
        assert!(!scripts.iter().any(|s| s.contains("upgrade plan")), "{scripts:?}");
        assert!(admin.scripts().is_empty(), "no kubelet swap: no drain");
    }
}

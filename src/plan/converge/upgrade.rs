//! The Kubernetes upgrade of joined nodes, planned from what they run now (so a run killed half way
//! resumes where the hosts are): the control planes one at a time, the first with `kubeadm upgrade
//! apply` (the cluster-wide part), the others with `kubeadm upgrade node`, each drained for its new
//! kubelet; then the workers one failure domain (zone, then rack) at a time, at most
//! spec.upgrade.maxUnavailable of a domain at once. Nodes kubeha drained in a run that stopped are
//! uncordoned. The version rules (`upgrade::rules`) refuse jumps and downgrades before anything changes.
use super::{Builder, step};
use crate::inventory::{Host, Version};
use crate::plan::{Action, Execution, Finding, KubeadmUpgrade, Step};
use crate::upgrade::rules;

/// kubelets may run up to three minors behind the API server (Kubernetes' skew policy since 1.28).
const KUBELET_SKEW: u32 = 3;

impl Builder<'_> {
    pub(super) fn upgrade(&mut self) {
        let target = self.inv.kubernetes.version;
        let Some(cluster) = self.observed.cluster_version else {
            // The software phase staged new kubelets for joined nodes, but without the cluster's version the
            // order of the upgrade cannot be known: nothing of it may start.
            if !self.kubelet_swaps.is_empty() && self.observed.nodes.is_some() {
                self.findings.push(Finding {
                    host: self.desired.seed.clone(),
                    problem: format!("the cluster's Kubernetes version could not be read (kube-system/kubeadm-config), and the inventory names {target}"),
                    fix: "check that `kubectl -n kube-system get configmap kubeadm-config` works with /etc/kubernetes/admin.conf on a control plane, then run kubeha again".into(),
                    fatal: true,
                });
            }
            return;
        };
        if let Err(refusal) = rules::kubernetes(cluster, target) {
            let host = self.desired.seed.clone();
            self.push_finding_once(Finding { host, problem: refusal.problem, fix: refusal.fix, fatal: true });
            return;
        }
        if self.kubelets_too_far_behind(target) {
            return;
        }
        let seed = self.desired.seed.clone();
        let via = seed.clone();
        let endpoint = self.endpoint();
        let mut apply_planned = false;
        let ordered: Vec<&Host> = self.seed_first().filter(|h| self.joined(h)).collect();
        let mut steps = Vec::new();
        for h in ordered {
            let runs = self.observed.state(&h.name).control_plane_version();
            // The cluster-wide part (kube-system/kubeadm-config moves last in it) once, on the seed; a
            // control plane whose pods are not on the target yet gets `kubeadm upgrade node`.
            let kubeadm = if cluster != target && h.name == seed {
                apply_planned = true;
                KubeadmUpgrade::Apply
            } else if runs != Some(target) {
                KubeadmUpgrade::Node
            } else {
                KubeadmUpgrade::Done
            };
            let why = match (kubeadm, runs) {
                (KubeadmUpgrade::Apply, _) => format!("the cluster's kubeadm configuration says {cluster}, the inventory {target}"),
                (_, Some(v)) if v != target => format!("its control plane runs {v}, the inventory says {target}"),
                (_, None) => format!("its control-plane manifests name no single release, the inventory says {target}"),
                _ => String::new(),
            };
            if let Some(s) = self.node_upgrade(h, kubeadm, why, &via, &endpoint) {
                steps.push(s);
            }
        }
        if !apply_planned && cluster != target {
            // Only the seed runs `kubeadm upgrade apply`; a seed that is not joined is a finding of its own
            // elsewhere (control-plane phase), and no other node may go first.
            return;
        }
        self.push("upgrade-control-planes", "Kubernetes upgrade of the control planes, one at a time", Execution::Sequential, steps);
        let limit = self.inv.upgrade.max_unavailable.min(self.inv.concurrency).max(1);
        let domains: Vec<Vec<Step>> = self
            .worker_domains()
            .into_iter()
            .map(|(domain, hosts)| {
                let steps = hosts.iter().filter_map(|h| self.node_upgrade(h, KubeadmUpgrade::Node, String::new(), &via, &endpoint));
                steps
                    .map(|mut s| {
                        s.reason = format!("{} (failure domain {domain})", s.reason);
                        s
                    })
                    .collect()
            })
            .collect();
        for steps in domains {
            let title = "Kubernetes upgrade of the workers of one failure domain, at most spec.upgrade.maxUnavailable at once";
            self.push("upgrade-workers", title, Execution::Parallel { limit }, steps);
        }
    }

    /// The step of one joined node: its kubeadm part (`why` says why it is needed) and, when the software
    /// phase staged its new kubelet, the drained swap; or only the uncordon a stopped run left to do.
    fn node_upgrade(&self, h: &Host, kubeadm: KubeadmUpgrade, why: String, via: &str, endpoint: &str) -> Option<Step> {
        let target = self.inv.kubernetes.version;
        let kubelet = self.kubelet_swaps.get(&h.name).copied();
        let state = self.observed.node(&h.name).map(|n| &n.kubelet);
        // A worker's kubeadm part is the kubelet configuration of the new release: it goes with the kubelet.
        let kubeadm = if h.is_control_plane() || kubelet.is_some() { kubeadm } else { KubeadmUpgrade::Done };
        if kubeadm == KubeadmUpgrade::Done && kubelet.is_none() {
            return state.filter(|s| s.unschedulable && s.drained_by_kubeha).map(|_| {
                let why = "cordoned by kubeha for an upgrade that finished without uncordoning it";
                step(format!("upgrade/{}/uncordon", h.name), via, Action::UncordonNode { node: h.name.clone() }, why)
            });
        }
        let mut reasons = Vec::new();
        if !why.is_empty() && kubeadm != KubeadmUpgrade::Done {
            reasons.push(why);
        }
        if kubelet.is_some() {
            let runs = state.and_then(|s| s.kubelet_version).map_or("an unknown release".to_string(), |v| v.to_string());
            reasons.push(format!("its kubelet runs {runs}, the inventory says {target}"));
        }
        let action = Action::UpgradeNode {
            node: h.name.clone(),
            version: target.to_string(),
            kubeadm,
            kubelet: kubelet.is_some(),
            via: via.to_string(),
            endpoint: endpoint.to_string(),
        };
        Some(step(format!("upgrade/{}", h.name), &h.name, action, reasons.join("; ")))
    }

    /// Joined workers grouped by failure domain (zone, then rack within it), in that order: a domain's
    /// workers are drained only after the previous domain's are back, so a zone is never short of nodes
    /// while another one is.
    fn worker_domains(&self) -> Vec<(String, Vec<&Host>)> {
        let mut domains: Vec<(String, Vec<&Host>)> = Vec::new();
        let mut workers: Vec<&Host> = self.inv.workers().filter(|h| self.joined(h)).collect();
        workers.sort_by(|a, b| (&a.zone, &a.rack).cmp(&(&b.zone, &b.rack)));
        for h in workers {
            let name = match &h.rack {
                Some(rack) => format!("zone {} rack {rack}", h.zone),
                None => format!("zone {}", h.zone),
            };
            match domains.last_mut() {
                Some((last, hosts)) if *last == name => hosts.push(h),
                _ => domains.push((name, vec![h])),
            }
        }
        domains
    }

    /// A kubelet more than KUBELET_SKEW minors behind the target could not talk to the upgraded API server:
    /// refused, naming the nodes, before anything changes.
    fn kubelets_too_far_behind(&mut self, target: Version) -> bool {
        let behind: Vec<(String, Version)> = self
            .observed
            .nodes
            .iter()
            .flatten()
            .filter_map(|(n, node)| node.kubelet.kubelet_version.map(|v| (n.clone(), v)))
            .filter(|(_, v)| v.major == target.major && target.minor.saturating_sub(v.minor) > KUBELET_SKEW)
            .collect();
        if behind.is_empty() {
            return false;
        }
        let listed: Vec<String> = behind.iter().map(|(n, v)| format!("{n} ({v})")).collect();
        self.findings.push(Finding {
            host: behind.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", "),
            problem: format!("kubelets more than {KUBELET_SKEW} minor releases behind Kubernetes {target}: {}", listed.join(", ")),
            fix: "upgrade those nodes' kubelets first (or replace the nodes), one minor at a time".into(),
            fatal: true,
        });
        true
    }
}

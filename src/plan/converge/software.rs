//! The software phase: per host, what kubeha installs that is missing, of another version, or changed since
//! kubeha installed it (see `software`). Runs before etcd, in parallel over hosts. A running etcd's binary
//! is only staged here: the etcd phase swaps it in with a restart between quorum gates. On a joined node a
//! new Kubernetes release is an upgrade: kubeadm and kubectl go in place here (nothing runs them but kubeha
//! and the operator), the kubelet is only staged, and the upgrade phase swaps it in after the node's control
//! plane is upgraded and the node drained. Version changes the upgrade rules refuse (`upgrade::rules`)
//! stop the plan here.
use super::{Builder, step};
use crate::artifacts::catalogue::{self, Artifact, Kind};
use crate::facts::HostFacts;
use crate::inventory::{Host, Version};
use crate::paths::{CONTAINERD_CONFIG, CONTAINERD_UNIT, KUBELET_CONF, KUBELET_KUBEADM_DROPIN, KUBELET_UNIT};
use crate::plan::{Action, Finding};
use crate::render::Group;
use crate::upgrade::rules;

/// The OS packages a control plane needs under keepalived-haproxy, from the host's own package manager.
pub const LOAD_BALANCER_PACKAGES: [&str; 2] = ["haproxy", "keepalived"];

/// The name `facts` probes a kind's main program under (`--version`), when it does.
fn probed_tool(kind: Kind) -> Option<&'static str> {
    match kind {
        Kind::Etcd => Some("etcd"),
        Kind::Kubeadm => Some("kubeadm"),
        Kind::Kubelet => Some("kubelet"),
        Kind::Containerd => Some("containerd"),
        _ => None,
    }
}

impl Builder<'_> {
    pub(super) fn software(&mut self) {
        let mut steps = Vec::new();
        for h in &self.inv.hosts {
            if let Some(s) = self.host_software(h) {
                steps.push(s);
            }
        }
        self.push("software", "programs and units kubeha installs, checksum-verified", self.parallel(), steps);
    }

    fn host_software(&mut self, h: &Host) -> Option<crate::plan::Step> {
        let state = self.observed.state(&h.name);
        let facts = self.observed.facts(&h.name);
        let joined = state.has(KUBELET_CONF);
        let (mut artifacts, mut staged, mut reasons, mut missing) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let wanted = catalogue::needed_on(self.inv, &h.name);
        for a in &wanted {
            let a = a.clone();
            let installed = state.software.get(&a.kind);
            let found = installed.map(|i| i.record.version.to_string()).or_else(|| probed_version(facts, a.kind));
            let Some(mut why) = crate::software::install_reason(&a, installed) else { continue };
            if installed.is_none()
                && let Some(v) = &found
            {
                why = format!("{} {v} found but not installed by kubeha, {} wanted", a.name(), a.version);
            }
            if let Some(refusal) = self.version_change_refused(h, &a, found.as_deref(), joined) {
                self.push_finding_once(refusal);
                continue;
            }
            if installed.is_none() && found.is_none() {
                missing.push(a.name());
            } else {
                reasons.push(why);
            }
            // A running member keeps running its binary until its gated restart swaps the new one in; a
            // joined node's kubelet until its upgrade (drained) does.
            if a.kind == Kind::Etcd && state.is_active("etcd") {
                self.etcd_swaps.insert(h.name.clone(), a.version);
                staged.push(a.label());
            } else if a.kind == Kind::Kubelet && joined && found.as_deref().and_then(Version::parse).is_some_and(|v| v != a.version) {
                self.kubelet_swaps.insert(h.name.clone(), a.version);
                staged.push(a.label());
            } else {
                artifacts.push(a.label());
            }
        }
        match missing.len() {
            0 => {}
            n if n == wanted.len() => reasons.insert(0, "nothing installed by kubeha yet".into()),
            _ => reasons.insert(0, format!("{} missing", missing.join(", "))),
        }
        let files = match self.stale(&h.name, Group::Software) {
            Some((files, why)) => {
                reasons.push(why);
                files
            }
            None => Vec::new(),
        };
        let packages = self.missing_packages(h, facts, &mut reasons);
        // A running service restarts when its program or unit changed (kubeadm starts the kubelet; the
        // executor starts a containerd that does not run yet).
        let changed = |programs: &[&str], units: &[&str]| {
            artifacts.iter().any(|l| programs.iter().any(|p| l.starts_with(&format!("{p} ")))) || files.iter().any(|f| units.contains(&f.as_str()))
        };
        let mut restart = Vec::new();
        if state.is_active("containerd") && changed(&["containerd", "runc"], &[CONTAINERD_CONFIG, CONTAINERD_UNIT]) {
            restart.push("containerd");
        }
        if state.is_active("kubelet") && changed(&["kubelet"], &[KUBELET_UNIT, KUBELET_KUBEADM_DROPIN]) {
            restart.push("kubelet");
        }
        if reasons.is_empty() {
            return None;
        }
        let action = Action::InstallSoftware { artifacts, staged, files, packages, restart };
        Some(step(format!("software/{}", h.name), &h.name, action, reasons.join("; ")))
    }

    /// A version change the upgrade rules refuse: the Kubernetes programs of a joined node (one minor at a
    /// time, never down), etcd on a running member (etcd's upgrade paths).
    fn version_change_refused(&self, h: &Host, a: &Artifact, found: Option<&str>, joined: bool) -> Option<Finding> {
        let found = Version::parse(found?)?;
        let verdict = match a.kind {
            Kind::Kubeadm | Kind::Kubelet | Kind::Kubectl if joined => rules::kubernetes(found, a.version),
            Kind::Etcd if self.observed.state(&h.name).is_active("etcd") => rules::etcd(found, a.version),
            _ => return None,
        };
        let refusal = verdict.err()?;
        Some(Finding { host: h.name.clone(), problem: refusal.problem, fix: refusal.fix, fatal: true })
    }

    /// A finding that several hosts share (the same refusal on every node) is listed once, naming them all.
    pub(super) fn push_finding_once(&mut self, f: Finding) {
        match self.findings.iter_mut().find(|g| g.problem == f.problem && g.fix == f.fix) {
            Some(g) if !g.host.split(", ").any(|h| h == f.host) => g.host = format!("{}, {}", g.host, f.host),
            Some(_) => {}
            None => self.findings.push(f),
        }
    }

    fn missing_packages(&mut self, h: &Host, facts: Option<&HostFacts>, reasons: &mut Vec<String>) -> Vec<&'static str> {
        let Some(facts) = facts else { return Vec::new() };
        if !h.is_control_plane() || self.inv.load_balancer.vrrp().is_none() {
            return Vec::new();
        }
        let missing: Vec<&'static str> = LOAD_BALANCER_PACKAGES.into_iter().filter(|p| facts.software.get(*p).is_none_or(Option::is_none)).collect();
        if missing.is_empty() {
            return missing;
        }
        if crate::software::package_manager(&facts.os_id).is_none() {
            self.findings.push(Finding {
                host: h.name.clone(),
                problem: format!("{} not installed, and kubeha knows no package manager for {}", missing.join(" and "), facts.os_pretty_name),
                fix: format!("install {} with the host's package manager, then run kubeha again", missing.join(" and ")),
                fatal: true,
            });
            return Vec::new();
        }
        reasons.push(format!("{} not installed", missing.join(" and ")));
        missing
    }
}

fn probed_version(facts: Option<&HostFacts>, kind: Kind) -> Option<String> {
    facts?.software.get(probed_tool(kind)?)?.clone().filter(|v| Version::parse(v).is_some())
}

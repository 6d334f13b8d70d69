//! The Kubernetes side, through kubeadm and an admin credential: init and joins of control planes and
//! workers, Node objects of re-addressed hosts, certificate renewal, the CNI, node labels and the join token.
use super::{Builder, differs, file_name, step};
use crate::facts::observe;
use crate::inventory::Host;
use crate::paths::{ADMIN_CONF, CNI_APPLIED, CNI_DIR, ETCD_PKI_DIR, KUBEADM_CONFIG, KUBELET_CONF, KUBERNETES_CA_CERT, KUBERNETES_CA_KEY, SET_ASIDE_MANIFESTS};
use crate::pki::expiry::{self, Owner};
use crate::plan::{Action, Execution, Finding, Phase};
use crate::render::{self, Group};

/// How long a refreshed join token lives: the run's joins start within minutes of the refresh (kubeadm
/// bounds each join to 5 min, the API wait to 2 min), and a token left by a killed run expires soon.
pub const JOIN_TOKEN_MINUTES: u32 = 60;

impl Builder<'_> {
    /// Whether `h` is a working node: kubeadm left kubelet.conf and the node is registered.
    pub(super) fn joined(&self, h: &Host) -> bool {
        self.observed.state(&h.name).has(KUBELET_CONF) && self.observed.registered(&h.name) && self.registered_at(h).is_none()
    }

    /// The address a node registered with when it is not its host's address now (a re-addressed host):
    /// its kubelet, and on a control plane its API server's certificate and manifest, still carry the old
    /// one, so the node is reset and joined again (kubeadm reset never touches kubeha's etcd).
    pub(super) fn registered_at(&self, h: &Host) -> Option<std::net::IpAddr> {
        self.observed.registered_at(h)
    }

    /// kubeadm refuses to run over an earlier attempt's files; `kubeadm reset -f` clears them (never etcd).
    fn leftovers(&self, h: &Host) -> bool {
        let state = self.observed.state(&h.name);
        state.has(KUBELET_CONF) || state.has(ADMIN_CONF) || (!h.is_control_plane() && state.has(KUBERNETES_CA_CERT))
    }

    fn join_reason(&self, h: &Host) -> String {
        if let Some(old) = self.registered_at(h).filter(|_| self.observed.registered(&h.name)) {
            return format!("re-addressed: the node registered at {old}, the inventory says {}; reset and joined again there", h.address);
        }
        if self.observed.state(&h.name).has(KUBELET_CONF) { "joined files present but the node is not registered".into() } else { "not joined".into() }
    }

    /// Nodes registered at another address than their host has now are deleted before they join again:
    /// kubeadm refuses to join a node whose name a Ready Node already has. A phase of its own, before every
    /// join, because worker joins run in parallel with each other and the deletion runs on the seed.
    pub(super) fn readdressed_nodes(&mut self) {
        let admin = self.desired.seed.clone();
        let steps = self
            .inv
            .hosts
            .iter()
            .filter(|h| self.observed.registered(&h.name))
            .filter_map(|h| self.registered_at(h).map(|old| (h, old)))
            .map(|(h, old)| {
                let why = format!("re-addressed: its Node is registered at {old}, the host is {} now; it joins again below", h.address);
                step(format!("readdressed/{}/node", h.name), &admin, Action::RemoveNode { node: h.name.clone() }, why)
            })
            .collect();
        self.push("readdressed", "nodes moved to another address: their Node objects go before they join again", Execution::Sequential, steps);
    }

    /// kubeadm init on the seed when the cluster has none, then control-plane joins one at a time: each join
    /// changes what the API path depends on, so the next starts only when the API answers.
    pub(super) fn control_plane(&mut self) {
        let endpoint = self.endpoint();
        let mut steps = Vec::new();
        let initialised = self.observed.nodes.is_some();
        // Leftovers of an init that failed before its API server wrote to etcd are retried (reset, init);
        // with Kubernetes data in etcd, or etcd not answering, the cluster may exist and is never re-made.
        let failed_init = self.observed.kubernetes_data == Some(false);
        if let (false, Some(err), false) = (initialised, &self.observed.api_error, failed_init) {
            self.findings.push(Finding {
                host: self.desired.seed.clone(),
                problem: format!("a control plane has {ADMIN_CONF} but the API does not answer ({err})"),
                fix: "bring the API server back (etcd healthy, kube-apiserver running); kubeha never re-initialises a cluster that may exist. If the cluster is really gone, run `kubeadm reset -f` on the control planes".into(),
                fatal: true,
            });
            return;
        }
        let mut init_planned = false;
        let mut certs_uploaded = false;
        // The seed first: its ClusterConfiguration (new etcd endpoints, SANs) must reach the cluster before
        // any join reads it, and its InitConfiguration must be in place before certificates are uploaded.
        let seed = self.desired.seed.clone();
        for h in self.seed_first() {
            let is_seed = h.name == seed;
            let kubeadm_files = vec![KUBEADM_CONFIG.to_string()];
            if is_seed && !initialised {
                let mut files = kubeadm_files;
                files.extend([KUBERNETES_CA_CERT.to_string(), KUBERNETES_CA_KEY.to_string()]);
                let reset_first = self.leftovers(h);
                let action = Action::KubeadmInit { config: KUBEADM_CONFIG.into(), files, reset_first };
                let why = if reset_first { "an earlier init did not finish" } else { "no cluster yet" };
                steps.push(step(format!("kubeadm/{}/init", h.name), &h.name, action, why));
                init_planned = true;
            } else if !self.joined(h) {
                if !init_planned && !certs_uploaded {
                    let why = "kubeadm keeps the certificates for joins 2 h only; init ran in an earlier run";
                    steps.push(step("kubeadm/upload-certs".into(), &seed, Action::UploadCerts { config: KUBEADM_CONFIG.into() }, why));
                    certs_uploaded = true;
                }
                let reset_first = self.leftovers(h);
                let action = Action::KubeadmJoinControlPlane { config: KUBEADM_CONFIG.into(), files: kubeadm_files, reset_first };
                steps.push(step(format!("kubeadm/{}/join", h.name), &h.name, action, self.join_reason(h)));
            } else {
                // Only the seed's file holds the ClusterConfiguration (init.yaml). It is uploaded again when the
                // cluster's copy names other etcd members, even with the file in place (a run stopped between
                // placing it and uploading it).
                let stale = self.stale(&h.name, Group::Kubeadm);
                let upload = if is_seed { stale.clone().or_else(|| self.cluster_configuration_stale()) } else { None };
                match (upload, stale) {
                    (Some((files, why)), _) => steps.push(step(format!("kubeadm/{}/config", h.name), &h.name, Action::UploadKubeadmConfig { files }, why)),
                    (None, Some((files, why))) => steps.push(step(format!("kubeadm/{}/config", h.name), &h.name, Action::PlaceFiles { files }, why)),
                    (None, None) => {}
                }
                steps.extend(self.refresh_control_plane(h));
                continue;
            }
            let ready = Action::WaitApiReady { endpoint: endpoint.clone(), node: h.name.clone() };
            steps.push(step(format!("kubeadm/{}/ready", h.name), &h.name, ready, "the next join needs a serving API"));
        }
        self.push("control-plane", "kubeadm init, then control-plane joins one at a time", Execution::Sequential, steps);
    }

    /// The etcd members every API server should name: the inventory's control planes.
    fn wanted_etcd_servers(&self) -> Vec<String> {
        render::context::etcd_endpoints(self.inv)
    }

    /// Why the cluster's ClusterConfiguration must be uploaded again although the seed's file is in place:
    /// it names other etcd endpoints than the members (`None` when they agree or the API did not say).
    fn cluster_configuration_stale(&self) -> Option<(Vec<String>, String)> {
        let have = self.observed.cluster_etcd_endpoints.as_ref()?;
        let want = self.wanted_etcd_servers();
        let why = format!("the cluster's ClusterConfiguration names etcd endpoints {}, the members are {}", have.join(","), want.join(","));
        (!observe::same_endpoints(have, &want)).then_some((Vec::new(), why))
    }

    /// A joined control plane whose API server's manifest names an etcd endpoint that is no member's any more
    /// (one was moved, replaced or removed since kubeadm wrote it): kubeadm writes its manifests again from the
    /// cluster's configuration, uploaded before it in this phase, and the API server restarts with every
    /// member. One control plane at a time, each waiting for its API server, so the API stays served through
    /// the others. A manifest that only lacks members added since is left alone: it still names its own
    /// host's member (kubeadm's stacked topology runs every API server on that alone), and restarting every
    /// API server for each member added would cost more than the failover targets it adds.
    fn refresh_control_plane(&self, h: &Host) -> Option<crate::plan::Step> {
        let have = self.observed.state(&h.name).apiserver_etcd_servers.as_ref()?;
        let want = self.wanted_etcd_servers();
        if have.iter().all(|e| want.contains(e)) {
            return None;
        }
        let why = format!("its API server names etcd endpoints {}, the members are {}", have.join(","), want.join(","));
        let action = Action::RefreshControlPlane { node: h.name.clone(), etcd_servers: want };
        Some(step(format!("kubeadm/{}/etcd-servers", h.name), &h.name, action, why))
    }

    /// The control planes with the seed first, then the others in inventory order: the order of every phase
    /// whose first step is cluster-wide (init or its config upload, `kubeadm upgrade apply`).
    pub(super) fn seed_first(&self) -> impl Iterator<Item = &Host> + '_ {
        let (inv, seed) = (self.inv, self.desired.seed.as_str());
        inv.control_planes().filter(move |h| h.name == seed).chain(inv.control_planes().filter(move |h| h.name != seed))
    }

    /// kubeadm's certificates valid for fewer than `renewBefore` days are renewed, and a control plane
    /// whose API server's etcd client certificate kubeha replaced in the etcd phase restarts its static pods
    /// (kube-apiserver reads it only at start). One control plane at a time, each waiting for its API
    /// server before the next, so the API stays served through the others. Only joined control planes:
    /// a node joining in this run gets fresh certificates and starts its pods anyway. CAs are not renewed
    /// (10 years; a different procedure); the kubelet rotates its own client certificate.
    pub(super) fn certificates(&mut self) {
        let before = self.inv.certificates.renew_before_days;
        let client = format!("{ETCD_PKI_DIR}/{}", crate::pki::APISERVER_ETCD_CLIENT.0);
        let mut steps = Vec::new();
        for h in self.inv.control_planes().filter(|h| self.joined(h)) {
            let mut due: Vec<&crate::pki::expiry::Cert> = self
                .observed
                .hosts
                .get(&h.name)
                .and_then(|o| o.certs.as_ref())
                .map(|c| {
                    c.certs.iter().filter(|c| c.owner == Owner::Kubeadm && !c.parsed.ca && expiry::due(c.parsed.not_after, self.observed.now, before)).collect()
                })
                .unwrap_or_default();
            due.sort_by_key(|c| c.parsed.not_after);
            let client_replaced = self.desired.file(&h.name, &client).is_some_and(|f| differs(self.observed.state(&h.name), f));
            let set_aside: Vec<&str> = SET_ASIDE_MANIFESTS.iter().copied().filter(|p| self.observed.state(&h.name).has(p)).collect();
            let why = match (due.first(), client_replaced) {
                (None, false) if set_aside.is_empty() => continue,
                (None, false) => format!("an earlier restart left {} out of the manifests: that pod is down", set_aside.join(", ")),
                (Some(first), _) => {
                    let days = first.days_left(self.observed.now);
                    let soonest = format!("{} in {days} days", file_name(&first.path));
                    format!("{} of kubeadm's certificates valid for less than {before} days (renewBefore), the first {soonest}", due.len())
                }
                (None, true) => "its API server's etcd client certificate was renewed".to_string(),
            };
            let action = Action::RestartControlPlane { node: h.name.clone(), renew_certs: !due.is_empty() };
            steps.push(step(format!("certs/{}/restart", h.name), &h.name, action, why));
        }
        self.push("certificates", "kubeadm's certificates renewed, control planes restarted one at a time", Execution::Sequential, steps);
    }

    pub(super) fn cni(&mut self) {
        let first = self.desired.seed.clone();
        let state = self.observed.state(&first);
        let Some(marker) = self.desired.file(&first, CNI_APPLIED) else { return };
        let mut steps = vec![];
        if state.digest(&marker.path) != Some(marker.digest.as_str()) {
            let cni = self.inv.kubernetes.cni;
            let manifest = format!("{CNI_DIR}/{}", file_name(render::cni_file(cni)));
            // Which CNI and version the manifest was rendered for is why it is applied, not what the step
            // runs with: the executor applies the manifest file, so that is the action's one field.
            let what = format!("{} {}", cni.name(), self.inv.kubernetes.cni_version);
            let why = if state.has(&marker.path) { format!("the {what} manifest changed since it was applied") } else { format!("{what} not applied yet") };
            steps.push(step("cni/apply".into(), &first, Action::ApplyCni { manifest }, why));
        }
        self.push("cni", "pod network", Execution::Sequential, steps);
    }

    pub(super) fn workers(&mut self) {
        let mut steps = Vec::new();
        for h in self.inv.workers() {
            if self.joined(h) {
                if let Some((files, why)) = self.stale(&h.name, Group::Kubeadm) {
                    steps.push(step(format!("workers/{}/config", h.name), &h.name, Action::PlaceFiles { files }, why));
                }
                continue;
            }
            let action = Action::KubeadmJoinWorker { config: KUBEADM_CONFIG.into(), files: vec![KUBEADM_CONFIG.into()], reset_first: self.leftovers(h) };
            steps.push(step(format!("workers/{}", h.name), &h.name, action, self.join_reason(h)));
        }
        self.push("workers", "worker joins", self.parallel(), steps);
    }

    /// Every node gets its failure-domain labels; those a kubelet may not set on itself (NodeRestriction)
    /// are only applied here, with an admin credential.
    pub(super) fn labels(&mut self) {
        let first = self.desired.seed.clone();
        let mut steps = Vec::new();
        for h in &self.inv.hosts {
            let want = h.node_labels();
            // A re-addressed node's Node is deleted and made anew by its join: its labels are gone then.
            let have = self.observed.node(&h.name).filter(|_| self.registered_at(h).is_none());
            let wrong: Vec<&str> = want.iter().filter(|(k, v)| have.and_then(|n| n.labels.get(k)) != Some(v)).map(|(k, _)| k.as_str()).collect();
            if wrong.is_empty() {
                continue;
            }
            let why = if have.is_none() { "node not registered yet".to_string() } else { format!("labels differ: {}", wrong.join(", ")) };
            let labels = want.iter().map(|(k, v)| format!("{k}={v}")).collect();
            steps.push(step(format!("labels/{}", h.name), &first, Action::LabelNode { node: h.name.clone(), labels }, why));
        }
        self.push("labels", "node labels (zone, rack, region and the inventory's own)", Execution::Sequential, steps);
    }

    /// The bootstrap token for this run's joins. A run that joins into an existing cluster refreshes it on
    /// the seed before the etcd phase: in a replace the old member leaves etcd before the new host's kubeadm
    /// join, and a join that then fails on an expired token leaves the cluster a member short. After the
    /// joins and labels (before hosts are retired) the token is deleted again; an init run deletes the
    /// token `kubeadm init` made (24 h) the same way. So no join credential outlives its run, and every later
    /// join refreshes one. A run without joins or init plans neither (a converged cluster plans nothing).
    pub(super) fn join_token(&mut self) {
        let steps = || self.phases.iter().flat_map(|p| &p.steps);
        let joins = steps().any(|s| matches!(s.action, Action::KubeadmJoinControlPlane { .. } | Action::KubeadmJoinWorker { .. }));
        let init = steps().any(|s| matches!(s.action, Action::KubeadmInit { .. }));
        if !joins && !init {
            return;
        }
        let seed = self.desired.seed.clone();
        let after = |name: &str, phases: &[Phase]| phases.iter().position(|p| p.name == name).map_or(phases.len(), |i| i + 1);
        if !init {
            let refresh = step("join-token/refresh".into(), &seed, Action::RefreshJoinToken { valid_minutes: JOIN_TOKEN_MINUTES }, "this run joins nodes");
            let at = after("host", &self.phases);
            let title = "bootstrap token for this run's joins, before any membership change";
            self.phases.insert(at, Phase { name: "join-token", title, execution: Execution::Sequential, steps: vec![refresh] });
        }
        let why = if init { "kubeadm init made a 24 h token; later joins refresh one" } else { "the joins are done" };
        let delete = step("join-token/delete".into(), &seed, Action::DeleteJoinToken, why);
        let at = after("labels", &self.phases);
        let title = "delete the bootstrap token: no join credential outlives the run";
        self.phases.insert(at, Phase { name: "join-token-delete", title, execution: Execution::Sequential, steps: vec![delete] });
    }
}

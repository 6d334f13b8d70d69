//! The cluster's own materials, kept on its control planes: the shared secrets, the etcd and Kubernetes CAs
//! and every member's etcd certificates. Stored at STATE_FILE (root, 0600) on every control plane, so any one
//! of them is enough to carry on, and nothing secret stays on the operator's disk. Re-using the stored
//! material is what makes a second apply render byte-identical files (idempotence), and what lets a run
//! killed midway resume with the same token, keys and certificates it had already handed out.
use crate::inventory::Inventory;
use crate::paths::STATE_FILE;
use crate::pki::{self, Authority, Contents, EtcdFile, PkiError, PrivateKeyPem, expiry, sans};
use crate::render::secrets::{Secrets, SecretsError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

const FORMAT: u32 = 1;

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterState {
    pub format: u32,
    pub cluster: String,
    /// Raised by every change; when control planes disagree, the highest generation is the newest.
    pub generation: u64,
    pub secrets: Secrets,
    pub etcd_ca: StoredCa,
    pub kubernetes_ca: StoredCa,
    /// Member name -> file name under the etcd PKI folder -> contents.
    pub etcd_members: BTreeMap<String, BTreeMap<String, Contents>>,
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StoredCa {
    pub cert: String,
    pub key: PrivateKeyPem,
}

impl fmt::Debug for ClusterState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClusterState {{ cluster: {}, generation: {}, <secrets redacted> }}", self.cluster, self.generation)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    #[error("{host}:{STATE_FILE} cannot be read: {message}")]
    Unreadable { host: String, message: String },
    #[error("{host}:{STATE_FILE} belongs to cluster {found}, not {expected}: this inventory points at another cluster's machines")]
    OtherCluster { host: String, found: String, expected: String },
    #[error(
        "{a} and {b} hold different cluster state of the same generation {generation}; compare {STATE_FILE} on both and keep the right one on every control plane"
    )]
    Disagree { a: String, b: String, generation: u64 },
}

fn authority(name: &str) -> Result<(Authority, StoredCa), PkiError> {
    let ca = Authority::generate(name)?;
    let stored = StoredCa { cert: ca.cert_pem().to_string(), key: ca.key_pem() };
    Ok((ca, stored))
}

impl ClusterState {
    /// New material for a cluster that has none yet. The Kubernetes CA exists before `kubeadm init` (which
    /// keeps a CA it finds), so join files pin the real CA from the start.
    pub fn create(inv: &Inventory) -> Result<Self, StateError> {
        let (_, etcd_ca) = authority("kubeha-etcd-ca")?;
        let (_, kubernetes_ca) = authority("kubernetes")?;
        let mut secrets = Secrets::generate(&inv.name)?;
        secrets.ca_cert_hash = pki::discovery_hash(&kubernetes_ca.cert)?;
        let mut state =
            ClusterState { format: FORMAT, cluster: inv.name.clone(), generation: 1, secrets, etcd_ca, kubernetes_ca, etcd_members: BTreeMap::new() };
        state.issue_missing_members(inv)?;
        Ok(state)
    }

    /// Issues etcd certificates for control planes of the inventory that have none yet; returns whether any
    /// were added (the state then has a new generation and must be stored again).
    pub fn issue_missing_members(&mut self, inv: &Inventory) -> Result<bool, StateError> {
        let missing: Vec<_> = inv.control_planes().filter(|h| !self.etcd_members.contains_key(&h.name)).collect();
        let mut changed = !missing.is_empty();
        if changed {
            let ca = Authority::from_pem(&self.etcd_ca.cert, &self.etcd_ca.key)?;
            for host in missing {
                let files = pki::member_files(host, &ca)?.into_iter().map(|(name, c)| (name.to_string(), c)).collect();
                self.etcd_members.insert(host.name.clone(), files);
            }
        }
        changed |= self.share_apiserver_etcd_client();
        if changed {
            self.generation += 1;
        }
        Ok(changed)
    }

    /// Re-issues the member certificates (server, peer, the client pairs) that expire within the inventory's
    /// `certificates.renewBefore` days of `now` (Unix seconds), signed by the same etcd CA. The stored
    /// certificates are what the members have (or get in this run), so their expiry needs no probe. The
    /// changed files then take etcd's usual way: placed and restarted one member at a time between quorum
    /// gates. The CA is not renewed here (10 years; it would need every leaf re-signed at once). Returns one
    /// line per renewed certificate ("cp-1 server.crt, expires 2027-01-27T08:01:00Z"); with any, the state
    /// has a new generation.
    pub fn renew_due(&mut self, inv: &Inventory, now: i64) -> Result<Vec<String>, StateError> {
        let before = inv.certificates.renew_before_days;
        let expires = |files: &BTreeMap<String, Contents>, name: &str| match files.get(name) {
            // A stored certificate that does not parse is as good as expired: replace it.
            Some(Contents::Certificate(pem)) => Some(expiry::parse_pem(pem).map_or(now, |p| p.not_after)),
            _ => None,
        };
        // The API server's pair is shared (see share_apiserver_etcd_client): renewed once, on the member
        // whose pair the others copy, then shared again.
        let shared_owner = self.etcd_members.keys().next().cloned();
        let mut due: Vec<(String, &str, &str, pki::LeafSpec, i64)> = Vec::new();
        for host in inv.control_planes().filter(|h| self.etcd_members.contains_key(&h.name)) {
            for (cert, key, spec) in pki::member_leaves(host) {
                let owner = if cert == pki::APISERVER_ETCD_CLIENT.0 { shared_owner.clone() } else { Some(host.name.clone()) };
                let Some(owner) = owner else { continue };
                let Some(not_after) = self.etcd_members.get(&owner).and_then(|files| expires(files, cert)) else { continue };
                if expiry::due(not_after, now, before) && !due.iter().any(|(o, c, ..)| *o == owner && *c == cert) {
                    due.push((owner, cert, key, spec, not_after));
                }
            }
        }
        if due.is_empty() {
            return Ok(Vec::new());
        }
        let ca = Authority::from_pem(&self.etcd_ca.cert, &self.etcd_ca.key)?;
        let mut renewed = Vec::new();
        for (owner, cert, key, spec, not_after) in due {
            let issued = ca.issue(&spec)?;
            let files = self.etcd_members.entry(owner.clone()).or_default();
            files.insert(cert.to_string(), Contents::Certificate(issued.cert_pem));
            files.insert(key.to_string(), Contents::Key(issued.key_pem));
            renewed.push(format!("{owner} {cert}, expires {}", expiry::rfc3339(not_after)));
        }
        self.share_apiserver_etcd_client();
        self.generation += 1;
        Ok(renewed)
    }

    /// Re-issues a member's server and peer certificates when they were issued for other addresses or names
    /// than the inventory gives its host now (a re-addressed host): etcd's peers and the API servers check
    /// the address they dial against these. Client certificates carry no address and are kept. Returns one
    /// line per re-issued certificate ("cp-2 peer.crt: issued for 198.18.0.12, the host is 198.18.0.22");
    /// with any, the state has a new generation.
    pub fn reissue_readdressed(&mut self, inv: &Inventory) -> Result<Vec<String>, StateError> {
        let mut stale: Vec<(String, &str, &str, pki::LeafSpec, String)> = Vec::new();
        for host in inv.control_planes() {
            let Some(files) = self.etcd_members.get(&host.name) else { continue };
            for (cert, key, spec) in pki::member_leaves(host).into_iter().filter(|(_, _, s)| !s.ips.is_empty()) {
                let Some(Contents::Certificate(pem)) = files.get(cert) else { continue };
                let want = sans::Sans { dns: spec.dns_names.iter().cloned().collect(), ips: spec.ips.iter().copied().collect() };
                // An unreadable certificate is re-issued like a mismatched one.
                let have = sans::read(pem).unwrap_or_default();
                if have != want {
                    let had: Vec<String> = have.ips.difference(&want.ips).map(|ip| ip.to_string()).collect();
                    let why = if had.is_empty() {
                        "its names differ from the inventory's".to_string()
                    } else {
                        format!("issued for {}, the host is {}", had.join(", "), host.address)
                    };
                    stale.push((host.name.clone(), cert, key, spec, why));
                }
            }
        }
        if stale.is_empty() {
            return Ok(Vec::new());
        }
        let ca = Authority::from_pem(&self.etcd_ca.cert, &self.etcd_ca.key)?;
        let mut reissued = Vec::new();
        for (member, cert, key, spec, why) in stale {
            let issued = ca.issue(&spec)?;
            let files = self.etcd_members.entry(member.clone()).or_default();
            files.insert(cert.to_string(), Contents::Certificate(issued.cert_pem));
            files.insert(key.to_string(), Contents::Key(issued.key_pem));
            reissued.push(format!("{member} {cert}: {why}"));
        }
        self.generation += 1;
        Ok(reissued)
    }

    /// Forgets the certificates of members the inventory no longer lists as control planes: a removed
    /// member's keys are not kept in every copy of the state forever, and a host added again later under
    /// that name gets new ones. The shared API server pair survives (every member holds the same one).
    /// Returns the names forgotten; with any, the state has a new generation.
    pub fn prune_removed(&mut self, inv: &Inventory) -> Vec<String> {
        let gone: Vec<String> = self.etcd_members.keys().filter(|name| !inv.control_planes().any(|h| &h.name == *name)).cloned().collect();
        for name in &gone {
            self.etcd_members.remove(name);
        }
        if !gone.is_empty() {
            self.generation += 1;
        }
        gone
    }

    /// Gives every member the same API server etcd client pair (the first member's, in name order). A
    /// control-plane `kubeadm join` downloads the seed's pair from the kubeadm-certs Secret and writes it over
    /// the joining host's own, so per-host pairs would differ from kubeha's files after every join and never
    /// converge. Returns whether any member's pair changed.
    pub fn share_apiserver_etcd_client(&mut self) -> bool {
        let pair = |files: &BTreeMap<String, Contents>| (files.get(pki::APISERVER_ETCD_CLIENT.0).cloned(), files.get(pki::APISERVER_ETCD_CLIENT.1).cloned());
        let Some((Some(cert), Some(key))) = self.etcd_members.values().next().map(pair) else { return false };
        let mut changed = false;
        for files in self.etcd_members.values_mut() {
            if pair(files) != (Some(cert.clone()), Some(key.clone())) {
                files.insert(pki::APISERVER_ETCD_CLIENT.0.to_string(), cert.clone());
                files.insert(pki::APISERVER_ETCD_CLIENT.1.to_string(), key.clone());
                changed = true;
            }
        }
        changed
    }

    pub fn etcd_files(&self, member: &str) -> Vec<EtcdFile> {
        let files = self.etcd_members.get(member).into_iter().flatten();
        files.map(|(name, contents)| EtcdFile::new(member, name, contents.clone())).collect()
    }

    /// Every secret string this state holds, for scrubbing logs and messages.
    pub fn secret_strings(&self) -> Vec<String> {
        let s = &self.secrets;
        let mut out = vec![s.bootstrap_token.clone(), s.certificate_key.clone(), s.vrrp_auth_pass.clone()];
        // The token's secret half travels alone in the bootstrap-token Secret kubeha applies (its id is public).
        out.extend(s.bootstrap_token.split_once('.').map(|(_, secret)| secret.to_string()));
        out.push(self.etcd_ca.key.expose().to_string());
        out.push(self.kubernetes_ca.key.expose().to_string());
        for files in self.etcd_members.values() {
            out.extend(files.values().filter_map(|c| match c {
                Contents::Key(k) => Some(k.expose().to_string()),
                Contents::Certificate(_) => None,
            }));
        }
        out
    }

    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("the cluster state is plain data");
        text.push('\n');
        text
    }
}

/// A copy of the state that could not be used and was passed over, with why (never its contents).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedCopy {
    pub host: String,
    pub problem: String,
}

/// The state to use, and the unusable copies passed over to find it (the state phase rewrites them).
#[derive(Debug)]
pub struct Newest {
    pub state: Option<ClusterState>,
    pub skipped: Vec<SkippedCopy>,
}

/// Picks the newest state among what the control planes hold (`Ok(None)` where the file is absent, `Err`
/// where it could not be read). Two
/// different states of the same generation cannot be merged safely: that is an error naming both hosts.
/// A copy that is empty or corrupt (a write cut short by a crash) is passed over when other copies are
/// readable: one bad disk must not block every run. With no readable copy at all it is an error, never a
/// new cluster (the unreadable copy may be the only state there is). A copy of another format or cluster is not damage but a wrong assumption: an error too.
pub fn newest(cluster: &str, found: &[(String, Result<Option<String>, String>)]) -> Result<Newest, StateError> {
    let mut best: Option<(String, ClusterState)> = None;
    let mut skipped = Vec::new();
    for (host, copy) in found {
        let text = match copy {
            Ok(None) => continue,
            Ok(Some(text)) => text,
            Err(problem) => {
                skipped.push(SkippedCopy { host: host.clone(), problem: problem.clone() });
                continue;
            }
        };
        let state = match parse(text) {
            Ok(state) => state,
            Err(problem) => {
                skipped.push(SkippedCopy { host: host.clone(), problem });
                continue;
            }
        };
        if state.format != FORMAT {
            return Err(StateError::Unreadable { host: host.clone(), message: format!("format {} is not {FORMAT}; use a matching kubeha", state.format) });
        }
        if let Err(e) = state.secrets.validate() {
            skipped.push(SkippedCopy { host: host.clone(), problem: e.to_string() });
            continue;
        }
        if state.cluster != cluster {
            return Err(StateError::OtherCluster { host: host.clone(), found: state.cluster, expected: cluster.to_string() });
        }
        best = match best {
            None => Some((host.clone(), state)),
            Some((h, b)) if b.generation > state.generation => Some((h, b)),
            Some((h, b)) if b.generation == state.generation && b != state => {
                return Err(StateError::Disagree { a: h, b: host.clone(), generation: b.generation });
            }
            Some((h, b)) if b.generation == state.generation => Some((h, b)),
            Some(_) => Some((host.clone(), state)),
        };
    }
    match (best, skipped.first()) {
        (None, Some(bad)) => {
            Err(StateError::Unreadable { host: bad.host.clone(), message: format!("{}; no control plane holds a readable copy", bad.problem) })
        }
        (best, _) => Ok(Newest { state: best.map(|(_, s)| s), skipped }),
    }
}

/// The state in a copy's text, or why it is not one. serde's messages can quote the text (secrets), so
/// only the kind and position of the problem are kept.
fn parse(text: &str) -> Result<ClusterState, String> {
    if text.trim().is_empty() {
        return Err("the file is empty".into());
    }
    serde_json::from_str(text).map_err(|e| {
        let kind = match e.classify() {
            serde_json::error::Category::Io => "cannot be read",
            serde_json::error::Category::Syntax => "is not valid JSON",
            serde_json::error::Category::Data => "does not hold a cluster state",
            serde_json::error::Category::Eof => "ends early (cut short)",
        };
        format!("the file {kind} (line {}, column {})", e.line(), e.column())
    })
}

#[cfg(test)]
mod tests;

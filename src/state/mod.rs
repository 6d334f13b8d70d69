//! The cluster's own materials, kept on its control planes: the shared secrets, the etcd and Kubernetes CAs
//! and every member's etcd certificates. Stored at STATE_FILE (root, 0600) on every control plane, so any one
//! of them is enough to carry on, and nothing secret stays on the operator's disk. Re-using the stored
//! material is what makes a second apply render byte-identical files (idempotence), and what lets a run
//! killed midway resume with the same token, keys and certificates it had already handed out.
use crate::inventory::Inventory;
use crate::pki::{self, Authority, Contents, EtcdFile, PkiError, PrivateKeyPem};
use crate::render::secrets::{Secrets, SecretsError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

pub const STATE_FILE: &str = "/etc/kubeha/cluster-state.json";
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
        if missing.is_empty() {
            return Ok(false);
        }
        let ca = Authority::from_pem(&self.etcd_ca.cert, &self.etcd_ca.key)?;
        for host in missing {
            let files = pki::member_files(host, &ca)?.into_iter().map(|(name, c)| (name.to_string(), c)).collect();
            self.etcd_members.insert(host.name.clone(), files);
        }
        self.generation += 1;
        Ok(true)
    }

    pub fn etcd_files(&self, member: &str) -> Vec<EtcdFile> {
        let files = self.etcd_members.get(member).into_iter().flatten();
        files.map(|(name, contents)| EtcdFile::new(member, name, contents.clone())).collect()
    }

    /// Every secret string this state holds, for scrubbing logs and messages.
    pub fn secret_strings(&self) -> Vec<String> {
        let s = &self.secrets;
        let mut out = vec![s.bootstrap_token.clone(), s.certificate_key.clone(), s.vrrp_auth_pass.clone()];
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

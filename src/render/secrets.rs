//! The cluster's shared secrets and identifiers that rendered files embed. They never appear in Debug
//! output, logs or error messages; the files holding them are written with mode 0600.
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Secrets {
    /// kubeadm bootstrap token, `[a-z0-9]{6}.[a-z0-9]{16}`.
    pub bootstrap_token: String,
    /// 32-byte AES key (64 hex characters) that encrypts the certificates kubeadm uploads for joins.
    pub certificate_key: String,
    /// `sha256:<hex>` of the cluster CA's SubjectPublicKeyInfo: what a joining node pins.
    pub ca_cert_hash: String,
    /// VRRP PASS authentication (at most 8 characters by the protocol).
    pub vrrp_auth_pass: String,
    /// etcd's initial-cluster-token: not secret, but unique per cluster so members never cross clusters.
    pub etcd_cluster_token: String,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secrets { <redacted> }")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("the operating system's random source failed: {0}")]
    Random(getrandom::Error),
    #[error("secrets field {field}: {problem}")]
    Invalid { field: &'static str, problem: &'static str },
}

const TOKEN_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
const HEX: &[u8] = b"0123456789abcdef";

fn random_string(alphabet: &[u8], len: usize) -> Result<String, SecretsError> {
    // Rejection sampling keeps every character equally likely (no modulo bias).
    let limit = 256 - 256 % alphabet.len();
    let mut out = String::with_capacity(len);
    while out.len() < len {
        let mut buf = [0u8; 64];
        getrandom::fill(&mut buf).map_err(SecretsError::Random)?;
        for b in buf.iter().filter(|b| usize::from(**b) < limit) {
            if out.len() == len {
                break;
            }
            out.push(char::from(alphabet[usize::from(*b) % alphabet.len()]));
        }
    }
    Ok(out)
}

impl Secrets {
    /// Fresh secrets for a cluster. `ca_cert_hash` is known only once the cluster CA exists; until then
    /// (e.g. `kubeha render` before any apply) a random pin is used that no real CA matches, so a
    /// rendered join file can never be used against the wrong cluster by accident.
    pub fn generate(cluster: &str) -> Result<Self, SecretsError> {
        Ok(Self {
            bootstrap_token: format!("{}.{}", random_string(TOKEN_ALPHABET, 6)?, random_string(TOKEN_ALPHABET, 16)?),
            certificate_key: random_string(HEX, 64)?,
            ca_cert_hash: format!("sha256:{}", random_string(HEX, 64)?),
            vrrp_auth_pass: random_string(TOKEN_ALPHABET, 8)?,
            etcd_cluster_token: format!("kubeha-{cluster}-{}", random_string(HEX, 12)?),
        })
    }

    /// Checks the formats kubeadm, etcd and keepalived expect, so a hand-edited secrets file fails here
    /// with the field's name instead of deep inside a remote command.
    pub fn validate(&self) -> Result<(), SecretsError> {
        let token_part = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| TOKEN_ALPHABET.contains(&b));
        let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| HEX.contains(&b));
        let token_ok = self.bootstrap_token.split_once('.').is_some_and(|(id, secret)| token_part(id, 6) && token_part(secret, 16));
        if !token_ok {
            return Err(SecretsError::Invalid { field: "bootstrapToken", problem: "expected [a-z0-9]{6}.[a-z0-9]{16}" });
        }
        if !hex(&self.certificate_key, 64) {
            return Err(SecretsError::Invalid { field: "certificateKey", problem: "expected 64 lower-case hex characters" });
        }
        if !self.ca_cert_hash.strip_prefix("sha256:").is_some_and(|h| hex(h, 64)) {
            return Err(SecretsError::Invalid { field: "caCertHash", problem: "expected sha256: followed by 64 lower-case hex characters" });
        }
        if !(1..=8).contains(&self.vrrp_auth_pass.len()) || !self.vrrp_auth_pass.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(SecretsError::Invalid { field: "vrrpAuthPass", problem: "expected 1 to 8 letters or digits" });
        }
        let token_chars = |b: u8| b.is_ascii_alphanumeric() || b == b'-';
        if self.etcd_cluster_token.is_empty() || self.etcd_cluster_token.len() > 128 || !self.etcd_cluster_token.bytes().all(token_chars) {
            return Err(SecretsError::Invalid { field: "etcdClusterToken", problem: "expected 1 to 128 letters, digits or '-'" });
        }
        Ok(())
    }

    /// Fixed, obviously fake values for golden tests and documentation.
    pub fn fixed_for_tests() -> Self {
        Self {
            bootstrap_token: "abcdef.0123456789abcdef".into(),
            certificate_key: "0".repeat(64),
            ca_cert_hash: format!("sha256:{}", "1".repeat(64)),
            vrrp_auth_pass: "testpass".into(),
            etcd_cluster_token: "kubeha-test-000000000000".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_are_valid_and_distinct() {
        let a = Secrets::generate("lab").unwrap();
        let b = Secrets::generate("lab").unwrap();
        a.validate().unwrap();
        assert_ne!(a.bootstrap_token, b.bootstrap_token);
        assert_ne!(a.certificate_key, b.certificate_key);
        assert!(a.etcd_cluster_token.starts_with("kubeha-lab-"));
    }

    #[test]
    fn debug_never_shows_secrets() {
        let s = Secrets::fixed_for_tests();
        let shown = format!("{s:?}");
        assert!(!shown.contains("abcdef") && !shown.contains("testpass"), "{shown}");
    }

    #[test]
    fn validation_names_the_field() {
        let mut s = Secrets::fixed_for_tests();
        s.bootstrap_token = "ABCDEF.0123456789abcdef".into();
        assert!(s.validate().unwrap_err().to_string().contains("bootstrapToken"));
        let mut s = Secrets::fixed_for_tests();
        s.vrrp_auth_pass = "toolongpass".into();
        assert!(s.validate().unwrap_err().to_string().contains("vrrpAuthPass"));
    }
}

//! Client authentication: the identity file (or OpenSSH's default ones), then the ssh-agent.
//!
//! An explicit identity file is tried alone before the agent, so a well-stocked agent cannot exhaust the
//! server's MaxAuthTries before the key the inventory names is offered.
use std::path::{Path, PathBuf};
use std::sync::Arc;

use russh::client::Handle;
use russh::keys::agent::AgentIdentity;
use russh::keys::agent::client::AgentClient;
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg};

use super::{HostTarget, PASSPHRASE_ENV, SshError};

/// Try every method in turn; `Auth` lists what was tried so the user sees why none worked.
pub async fn authenticate<H: russh::client::Handler>(handle: &mut Handle<H>, target: &HostTarget) -> Result<(), SshError> {
    let mut tried: Vec<String> = Vec::new();
    let mut key_problem: Option<SshError> = None;

    for path in identity_files(target) {
        let explicit = target.identity_file.is_some();
        match load_key(&path) {
            Ok(key) => {
                tried.push(format!("key {}", path.display()));
                if try_key(handle, target, key).await? {
                    return Ok(());
                }
            }
            Err(KeyLoad::Missing) if !explicit => {}
            Err(problem) => {
                let detail = problem.describe();
                tried.push(format!("key {} ({detail})", path.display()));
                key_problem.get_or_insert(SshError::Key { host: target.name.clone(), path, detail });
            }
        }
    }

    if std::env::var_os("SSH_AUTH_SOCK").is_some() {
        match try_agent(handle, target).await {
            Ok(Some(true)) => return Ok(()),
            Ok(Some(false)) => tried.push("ssh-agent".into()),
            Ok(None) => tried.push("ssh-agent (no keys)".into()),
            Err(detail) => tried.push(format!("ssh-agent ({detail})")),
        }
    }

    // An unreadable or locked key is the more useful message when nothing else got in.
    if let Some(problem) = key_problem {
        return Err(problem);
    }
    Err(SshError::Auth {
        host: target.name.clone(),
        user: target.user.clone(),
        tried: if tried.is_empty() { "no identity file and no agent".into() } else { tried.join(", ") },
    })
}

fn identity_files(target: &HostTarget) -> Vec<PathBuf> {
    if let Some(path) = &target.identity_file {
        return vec![path.clone()];
    }
    let Some(home) = std::env::var_os("HOME") else {
        return Vec::new();
    };
    ["id_ed25519", "id_ecdsa", "id_rsa"].iter().map(|name| Path::new(&home).join(".ssh").join(name)).collect()
}

enum KeyLoad {
    Missing,
    NeedsPassphrase,
    WrongPassphrase,
    Invalid(String),
}

impl KeyLoad {
    fn describe(&self) -> String {
        match self {
            KeyLoad::Missing => "file not found".into(),
            KeyLoad::NeedsPassphrase => format!("the key is encrypted; set {PASSPHRASE_ENV}"),
            KeyLoad::WrongPassphrase => {
                format!("cannot decrypt the key with the passphrase from {PASSPHRASE_ENV}")
            }
            KeyLoad::Invalid(detail) => detail.clone(),
        }
    }
}

fn load_key(path: &Path) -> Result<PrivateKey, KeyLoad> {
    if !path.exists() {
        return Err(KeyLoad::Missing);
    }
    // Read on demand and never stored: the passphrase lives only as long as this call.
    let passphrase = std::env::var(PASSPHRASE_ENV).ok();
    match russh::keys::load_secret_key(path, passphrase.as_deref()) {
        Ok(key) => Ok(key),
        Err(russh::keys::Error::KeyIsEncrypted) => Err(KeyLoad::NeedsPassphrase),
        Err(e) if passphrase.is_some() && looks_like_decrypt_failure(&e) => Err(KeyLoad::WrongPassphrase),
        Err(e) => Err(KeyLoad::Invalid(e.to_string())),
    }
}

fn looks_like_decrypt_failure(e: &russh::keys::Error) -> bool {
    matches!(e, russh::keys::Error::KeyIsCorrupt | russh::keys::Error::SshKey(_) | russh::keys::Error::Unpad(_))
}

async fn try_key<H: russh::client::Handler>(handle: &mut Handle<H>, target: &HostTarget, key: PrivateKey) -> Result<bool, SshError> {
    // For RSA keys negotiate rsa-sha2-256/512: OpenSSH 8.8+ refuses the SHA-1 `ssh-rsa` signature.
    let hash = if key.algorithm().is_rsa() { handle.best_supported_rsa_hash().await.map_err(|e| protocol(target, e))?.flatten() } else { None };
    let result = handle.authenticate_publickey(target.user.clone(), PrivateKeyWithHashAlg::new(Arc::new(key), hash)).await.map_err(|e| protocol(target, e))?;
    Ok(result.success())
}

/// `Ok(None)`: the agent holds no plain keys.
async fn try_agent<H: russh::client::Handler>(handle: &mut Handle<H>, target: &HostTarget) -> Result<Option<bool>, String> {
    let mut agent = AgentClient::connect_env().await.map_err(|e| e.to_string())?;
    let identities = agent.request_identities().await.map_err(|e| e.to_string())?;
    let keys: Vec<_> = identities
        .into_iter()
        .filter_map(|id| match id {
            AgentIdentity::PublicKey { key, .. } => Some(key),
            _ => None,
        })
        .collect();
    if keys.is_empty() {
        return Ok(None);
    }
    for key in keys {
        let hash = if key.algorithm().is_rsa() { handle.best_supported_rsa_hash().await.map_err(|e| e.to_string())?.flatten() } else { None };
        match handle.authenticate_publickey_with(target.user.clone(), key, hash, &mut agent).await {
            Ok(result) if result.success() => return Ok(Some(true)),
            Ok(_) => {}
            Err(e) => return Err(format!("{e:?}")),
        }
    }
    Ok(Some(false))
}

fn protocol(target: &HostTarget, e: russh::Error) -> SshError {
    SshError::Protocol { host: target.name.clone(), command: None, detail: e.to_string() }
}

//! `kubeha etcd backups pull` as a library action: the backups the control planes list, copied into a local
//! folder that keeps the same retention. Incremental (a name already there with the digest its `.sha256`
//! states is skipped), checked (each download against its `.sha256` before it is written), atomic (0600
//! temporary file, then rename, checksum first), and it deletes only files named like kubeha's backups.
use crate::digest::sha256_hex;
use crate::etcd::backup::{self, PullChoice};
use crate::phases::backup as remote;
use crate::ssh::Transport;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

/// What a pull did; `failed` names the downloads that did not pass their check (nothing of them was kept).
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PullReport {
    pub copied: Vec<Copied>,
    pub skipped: Vec<(String, &'static str)>,
    pub pruned: Vec<String>,
    pub failed: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Copied {
    pub name: String,
    pub host: String,
    pub size_bytes: u64,
    pub revision: i64,
    pub sha256: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("{path}: {source}")]
    Local { path: String, source: std::io::Error },
    #[error("no control plane could be listed; nothing was copied")]
    NothingListed,
}

fn local_err(path: &Path) -> impl FnOnce(std::io::Error) -> PullError + '_ {
    move |source| PullError::Local { path: path.display().to_string(), source }
}

/// Pulls from `hosts` (name, connection), whose backups are in `remote_dir`, into `out` (created 0700),
/// keeping `keep` there. A host that cannot be listed is left out (the caller reports it; `listed` says
/// which answered); a failed download is reported and the others go on.
pub async fn pull(hosts: &[(String, &dyn Transport)], remote_dir: &str, keep: usize, out: &Path) -> Result<(PullReport, Vec<String>), PullError> {
    create_private_dir(out)?;
    let mut lists = Vec::new();
    let mut problems = Vec::new();
    for (name, t) in hosts {
        match remote::list(*t, remote_dir).await {
            Ok(found) => lists.push((name.clone(), found.backups)),
            Err(e) => problems.push(e.to_string()),
        }
    }
    if lists.is_empty() {
        return Err(PullError::NothingListed);
    }
    let mut report = PullReport::default();
    for choice in backup::plan_pull(&lists, &local_backups(out)?, keep) {
        match choice {
            PullChoice::Skip { name, reason } => report.skipped.push((name, reason)),
            PullChoice::Copy { host, backup: b } => {
                let Some((_, t)) = hosts.iter().find(|(n, _)| *n == host) else { continue };
                match remote::download(*t, remote_dir, &b).await {
                    // `download` checked the bytes against this digest.
                    Ok(bytes) => {
                        let sha256 = b.sha256.clone().unwrap_or_default();
                        place(out, &b.name, &bytes, &sha256)?;
                        report.copied.push(Copied { name: b.name, host, size_bytes: bytes.len() as u64, revision: b.revision, sha256 });
                    }
                    Err(e) => report.failed.push(e.to_string()),
                }
            }
        }
    }
    let names: Vec<String> = local_backups(out)?.into_keys().collect();
    for name in backup::to_prune(&names, keep) {
        for file in [name.clone(), backup::checksum_name(&name)] {
            let path = out.join(&file);
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(local_err(&path)(e)),
                _ => {}
            }
        }
        report.pruned.push(name);
    }
    Ok((report, problems))
}

/// The backups in `dir` by name, with the digest of each, read from the file itself (not its .sha256): what
/// decides a skip is what is really there.
pub fn local_backups(dir: &Path) -> Result<BTreeMap<String, String>, PullError> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).map_err(local_err(dir))? {
        let entry = entry.map_err(local_err(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if backup::is_backup_name(&name) && entry.file_type().map_err(local_err(&path))?.is_file() {
            let bytes = std::fs::read(&path).map_err(local_err(&path))?;
            out.insert(name, sha256_hex(&bytes));
        }
    }
    Ok(out)
}

fn create_private_dir(dir: &Path) -> Result<(), PullError> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(local_err(dir))
}

/// The backup and its .sha256 into `dir`, checksum first: the folder never holds a backup under its name
/// without its checksum, or half of one.
fn place(dir: &Path, name: &str, bytes: &[u8], sha256: &str) -> Result<(), PullError> {
    write_private(&dir.join(backup::checksum_name(name)), format!("{sha256}  {name}\n").as_bytes())?;
    write_private(&dir.join(name), bytes)
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), PullError> {
    crate::private_file::write(path, bytes, true).map_err(local_err(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn placed_files_are_private_with_their_checksum_and_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let name = "etcd-20261203T140000Z-r3.db";
        let sha = sha256_hex(b"snapshot");
        place(dir.path(), name, b"snapshot", &sha).unwrap();
        for f in [name.to_string(), backup::checksum_name(name)] {
            assert_eq!(std::fs::metadata(dir.path().join(&f)).unwrap().permissions().mode() & 0o777, 0o600, "{f}");
        }
        assert_eq!(std::fs::read_to_string(dir.path().join(backup::checksum_name(name))).unwrap(), format!("{sha}  {name}\n"));
        assert_eq!(local_backups(dir.path()).unwrap().get(name), Some(&sha));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2, "no temporary file left");
    }
}

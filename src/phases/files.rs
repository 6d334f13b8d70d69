//! Placing rendered files on a host: the shared first half of most phases.
use crate::render::RenderedFile;
use crate::ssh::{Command, SshError, Transport, Upload, UploadOutcome};

/// Uploads one file (its folder created first), owned by root; returns whether it changed.
pub async fn place(t: &dyn Transport, path: &str, contents: Vec<u8>, mode: u32) -> Result<bool, SshError> {
    let dir = path.rsplit_once('/').map_or("/", |(d, _)| if d.is_empty() { "/" } else { d });
    t.run(&Command::argv(["mkdir", "-p", dir])).await?;
    let outcome = t.upload(&Upload { path: path.to_string(), contents, mode, owner: Some("root:root".into()) }).await?;
    Ok(outcome == UploadOutcome::Written)
}

/// Uploads rendered files; unchanged ones are skipped by the transport. Returns whether any changed.
pub async fn place_rendered(t: &dyn Transport, files: &[&RenderedFile]) -> Result<bool, SshError> {
    let mut changed = false;
    for f in files {
        changed |= place(t, &f.path, f.contents.as_bytes().to_vec(), f.mode).await?;
    }
    Ok(changed)
}

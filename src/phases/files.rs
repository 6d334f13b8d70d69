//! Placing files on a host: the shared first half of most phases.
use crate::render::RenderedFile;
use crate::ssh::{Command, SshError, Transport, Upload, UploadOutcome};

/// A file to place: path on the host, contents, mode. Owned by root.
pub struct FileSpec<'a> {
    pub path: &'a str,
    pub contents: &'a [u8],
    pub mode: u32,
}

/// Creates every folder the files need in one command, then uploads each file (the transport skips
/// unchanged ones). Returns whether any file changed.
pub async fn place_all(t: &dyn Transport, files: &[FileSpec<'_>]) -> Result<bool, SshError> {
    let mut dirs: Vec<&str> = files.iter().map(|f| f.path.rsplit_once('/').map_or("/", |(d, _)| if d.is_empty() { "/" } else { d })).collect();
    dirs.sort_unstable();
    dirs.dedup();
    if !dirs.is_empty() {
        t.run(&Command::argv(std::iter::once("mkdir").chain(std::iter::once("-p")).chain(dirs))).await?;
    }
    let mut changed = false;
    for f in files {
        let upload = Upload { path: f.path.to_string(), contents: f.contents.to_vec(), mode: f.mode, owner: Some("root:root".into()) };
        changed |= t.upload(&upload).await? == UploadOutcome::Written;
    }
    Ok(changed)
}

/// One file; see `place_all`.
pub async fn place(t: &dyn Transport, path: &str, contents: &[u8], mode: u32) -> Result<bool, SshError> {
    place_all(t, &[FileSpec { path, contents, mode }]).await
}

pub fn rendered_specs<'a>(files: &[&'a RenderedFile]) -> Vec<FileSpec<'a>> {
    files.iter().map(|f| FileSpec { path: &f.path, contents: f.contents.as_bytes(), mode: f.mode }).collect()
}

/// Uploads rendered files; see `place_all`.
pub async fn place_rendered(t: &dyn Transport, files: &[&RenderedFile]) -> Result<bool, SshError> {
    place_all(t, &rendered_specs(files)).await
}

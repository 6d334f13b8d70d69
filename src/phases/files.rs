//! Placing files on a host: the shared first half of most phases.
use crate::plan::FileMode;
use crate::plan::desired::FILE_OWNER;
use crate::render::RenderedFile;
use crate::ssh::{Command, SshError, Transport, Upload, UploadOutcome, quote::quote};

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
        let upload = Upload { path: f.path.to_string(), contents: f.contents.to_vec(), mode: f.mode, owner: Some(FILE_OWNER.into()) };
        changed |= t.upload(&upload).await? == UploadOutcome::Written;
    }
    Ok(changed)
}

/// Sets the mode and owner of files in place, in one exec: their contents are right, so nothing is
/// uploaded. chown before chmod (chown may clear set-id bits). A file gone since the plan is skipped:
/// what it would have exposed is gone with it.
pub async fn set_modes(t: &dyn Transport, files: &[FileMode]) -> Result<bool, SshError> {
    let mut script = String::from("set -e\n");
    for f in files {
        let q = quote(&f.path);
        script.push_str(&format!("if [ -f {q} ]; then chown -- {FILE_OWNER} {q}; chmod {:04o} -- {q}; fi\n", f.mode));
    }
    t.run(&Command::script(script)).await?;
    Ok(!files.is_empty())
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

//! Writes a monitoring folder. Unlike `kubeha render`, a re-render does not wipe the folder: the credential
//! files hold what the operator wrote into them, so they are kept (their mode forced back to 0600) and only the
//! generated files are replaced.
use super::{CREDENTIALS, MonitoringFile};
use crate::render::RenderError;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Marks a folder as kubeha's monitoring output, so a re-render may write into it and no other folder is touched.
pub const OUTPUT_MARKER: &str = ".kubeha-monitoring";
const SECRET: u32 = 0o600;
const PRIVATE_DIR: u32 = 0o700;

/// What happened to the credential files.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Written {
    /// Created empty: the operator must fill them.
    pub created: Vec<&'static str>,
    /// Kept as the operator left them (mode 0600).
    pub kept: Vec<&'static str>,
}

fn output_error(path: &Path, message: impl std::fmt::Display) -> RenderError {
    RenderError::Output { path: path.display().to_string(), message: message.to_string() }
}

pub fn write(files: &[MonitoringFile], dir: &Path) -> Result<Written, RenderError> {
    prepare(dir)?;
    for f in files {
        replace(&dir.join(f.path), f.mode, f.contents.as_bytes())?;
    }
    let mut written = Written::default();
    for credential in CREDENTIALS {
        let path = dir.join(credential);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| output_error(parent, e))?;
            std::fs::set_permissions(parent, std::fs::Permissions::from_mode(PRIVATE_DIR)).map_err(|e| output_error(parent, e))?;
        }
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if !meta.is_file() => return Err(output_error(&path, "exists and is not a regular file; remove it")),
            Ok(_) => {
                // A copy made with a wide umask (cp, an editor) is narrowed again: the token grants reading metrics.
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(SECRET)).map_err(|e| output_error(&path, e))?;
                written.kept.push(credential);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::OpenOptions::new().write(true).create_new(true).mode(SECRET).open(&path).map_err(|e| output_error(&path, e))?;
                written.created.push(credential);
            }
            Err(e) => return Err(output_error(&path, e)),
        }
    }
    Ok(written)
}

/// The folder exists afterwards and is kubeha's: new, empty, or marked by an earlier monitoring render.
fn prepare(dir: &Path) -> Result<(), RenderError> {
    match std::fs::metadata(dir) {
        Ok(meta) if !meta.is_dir() => return Err(output_error(dir, "exists and is not a folder; choose a folder for -o")),
        Ok(_) => {
            let empty = std::fs::read_dir(dir).map_err(|e| output_error(dir, e))?.next().is_none();
            if !empty && !dir.join(OUTPUT_MARKER).exists() {
                return Err(output_error(dir, "exists and is not an earlier `kubeha monitoring render`; choose an empty or new folder"));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::create_dir_all(dir).map_err(|e| output_error(dir, e))?,
        Err(e) => return Err(output_error(dir, e)),
    }
    replace(&dir.join(OUTPUT_MARKER), 0o644, b"rendered by `kubeha monitoring render`, which rewrites this folder's files and keeps credentials/\n")
}

/// Writes a sibling temporary file with its final mode, then renames it over `path`: a reader (a running
/// Prometheus reloading) never sees half a file.
fn replace(path: &Path, mode: u32, contents: &[u8]) -> Result<(), RenderError> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let temporary = path.with_file_name(format!(".{name}.tmp"));
    let _ = std::fs::remove_file(&temporary);
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(&temporary).map_err(|e| output_error(&temporary, e))?;
    file.write_all(contents).map_err(|e| output_error(&temporary, e))?;
    std::fs::rename(&temporary, path).map_err(|e| output_error(path, e))
}

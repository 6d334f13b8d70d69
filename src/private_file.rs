//! Files on the operator's machine that hold cluster data (etcd snapshots and backups hold every Secret): mode
//! 0600 from the first byte on, and written whole or not at all.

/// Writes `bytes` into a temporary file next to `out`, synced, then linked into place (which fails with
/// `AlreadyExists` if `out` exists, even if it appeared meanwhile) or, with `replace`, renamed over it.
pub fn write(out: &std::path::Path, bytes: &[u8], replace: bool) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let Some(file_name) = out.file_name() else {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{}: not a file name", out.display())));
    };
    let tmp = out.with_file_name(format!(".{}.kubeha-{}.part", file_name.to_string_lossy(), std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        if replace { std::fs::rename(&tmp, out) } else { std::fs::hard_link(&tmp, out) }
    };
    let result = write();
    let _ = std::fs::remove_file(&tmp);
    result
}

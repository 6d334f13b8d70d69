//! File upload and read on top of plain exec, so every [`Transport`] gets the same semantics.
//!
//! Upload is: compare (hash, mode, owner) -> skip if identical; else stream the bytes on stdin into a temp
//! file created by mktemp next to the target (same file system, so the final rename is atomic), check its
//! size, set mode and owner, rename. The size check is what stops a connection lost mid-transfer from
//! installing a truncated file (`cat` just sees EOF); corruption in transit is already excluded by the SSH
//! MAC, so re-hashing remotely (which tripled the time of a 64 MiB upload) buys nothing. The content never appears on a command line, and the temp file is 0600
//! from its creation (mktemp + umask), so secrets are never readable by others, even briefly.
use crate::digest::sha256_hex;
use std::time::Duration;

use super::quote::quote;
use super::{Command, ExitStatus, SshError, Transport, Upload, UploadOutcome};

/// Exit status our read script uses for "no such file" (distinct from cat's own failures).
const ABSENT_EXIT: u32 = 44;

/// Generous for large files on slow links; uploads are rare and big ones are artifacts.
fn upload_timeout(len: usize) -> Duration {
    Duration::from_secs(120 + (len as u64 >> 20))
}

pub async fn upload<T: Transport + ?Sized>(t: &T, file: &Upload) -> Result<UploadOutcome, SshError> {
    let hash = sha256_hex(&file.contents);
    let path = quote(&file.path);
    let probe = Command::script(format!("if [ -f {path} ]; then sha256sum < {path} | cut -d' ' -f1 && stat -c '%a %U:%G' -- {path}; else echo absent; fi"))
        .timeout(Duration::from_secs(60));
    let current = t.run(&probe).await?.stdout_text();
    if is_current(&current, &hash, file.mode, file.owner.as_deref()) {
        return Ok(UploadOutcome::Unchanged);
    }

    let chown = file.owner.as_deref().map(|o| format!("chown -- {} \"$t\"\n", quote(o))).unwrap_or_default();
    // Durable, not only atomic: the data is fsynced before the rename (or a crash can leave the new name on
    // an empty file, which is how a copy of the cluster state became unreadable), and the folder after it
    // (or the rename itself can be lost). coreutils `sync FILE...` fsyncs exactly the files and folders named.
    let script = format!(
        "set -e\numask 077\nt=$(mktemp -- {tmpl})\ntrap 'rm -f -- \"$t\"' EXIT\ncat > \"$t\"\n\
         if [ \"$(wc -c < \"$t\")\" -ne {len} ]; then echo 'upload truncated' >&2; exit 1; fi\n\
         chmod {mode:o} \"$t\"\n{chown}sync -- \"$t\"\nmv -f -- \"$t\" {path}\ntrap - EXIT\nsync -- {dir}\n",
        tmpl = quote(&format!("{}.kubeha.XXXXXXXX", file.path)),
        mode = file.mode,
        len = file.contents.len(),
        dir = quote(parent_dir(&file.path)),
    );
    let write = Command::script(script).stdin(file.contents.clone()).timeout(upload_timeout(file.contents.len()));
    t.run(&write).await?;
    Ok(UploadOutcome::Written)
}

/// The folder holding `path` ("/" for a top-level file, "." for a bare name).
fn parent_dir(path: &str) -> &str {
    match path.rsplit_once('/') {
        Some(("", _)) => "/",
        Some((dir, _)) => dir,
        None => ".",
    }
}

/// Pure comparison of the probe's output with what we want on disk.
pub fn is_current(probe_output: &str, hash: &str, mode: u32, owner: Option<&str>) -> bool {
    let mut lines = probe_output.lines();
    let (Some(remote_hash), Some(meta)) = (lines.next(), lines.next()) else {
        return false;
    };
    let Some((remote_mode, remote_owner)) = meta.trim().split_once(' ') else {
        return false;
    };
    let owner_ok = match owner {
        None => true,
        Some(want) if want.contains(':') => remote_owner == want,
        Some(want) => remote_owner.split(':').next() == Some(want),
    };
    remote_hash.trim() == hash && u32::from_str_radix(remote_mode, 8).ok() == Some(mode) && owner_ok
}

pub async fn read_file<T: Transport + ?Sized>(t: &T, path: &str) -> Result<Option<Vec<u8>>, SshError> {
    let path = quote(path);
    let command = Command::script(format!("if [ -e {path} ]; then exec cat -- {path}; else exit {ABSENT_EXIT}; fi")).timeout(Duration::from_secs(120));
    let out = t.exec(&command).await?;
    if out.status == ExitStatus::Code(ABSENT_EXIT) {
        return Ok(None);
    }
    Ok(Some(out.check(t.host(), &command)?.stdout))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_written_file_is_fsynced_before_the_rename_and_its_folder_after() {
        let fake = crate::ssh::fake::RecordingTransport::new("cp-1");
        let file = Upload { path: "/etc/kubeha/cluster-state.json".into(), contents: b"{}".to_vec(), mode: 0o600, owner: Some("root:root".into()) };
        assert_eq!(upload(&fake, &file).await.unwrap(), UploadOutcome::Written);
        let script = fake.scripts().into_iter().find(|s| s.contains("mktemp")).expect("the write script");
        let at = |needle: &str| script.find(needle).unwrap_or_else(|| panic!("{needle:?} missing from {script}"));
        assert!(at("cat > \"$t\"") < at("sync -- \"$t\""), "{script}");
        assert!(at("sync -- \"$t\"") < at("mv -f -- \"$t\" /etc/kubeha/cluster-state.json"), "{script}");
        assert!(at("mv -f -- ") < at("sync -- /etc/kubeha\n"), "{script}");
        assert_eq!((parent_dir("/x"), parent_dir("x"), parent_dir("/a/b/c")), ("/", ".", "/a/b"));
    }

    #[test]
    fn current_only_when_hash_mode_and_owner_match() {
        let h = sha256_hex(b"x");
        let out = format!("{h}\n600 root:root\n");
        assert!(is_current(&out, &h, 0o600, None));
        assert!(is_current(&out, &h, 0o600, Some("root")));
        assert!(is_current(&out, &h, 0o600, Some("root:root")));
        assert!(!is_current(&out, &h, 0o644, None));
        assert!(!is_current(&out, &h, 0o600, Some("etcd")));
        assert!(!is_current(&out, &sha256_hex(b"y"), 0o600, None));
        assert!(!is_current("absent\n", &h, 0o600, None));
    }
}

//! The files on a host that hold a secret, kubeha's own and those kubeadm and the kubelet write: the one
//! list of them, the shell that reports their mode and owner (absent files skipped), and its parser. The
//! state probe embeds the same lines (the planner tightens any that others could read); `verify` runs them
//! alone, read-only, one exec per host.
use super::parse::ProbeOutputError;
use crate::paths::{ETCD_PKI_DIR, ETCDCTL_ENV, KEEPALIVED_CONFIG, KUBEADM_CONFIG, KUBELET_PKI_DIR, KUBERNETES_DIR, KUBERNETES_PKI_DIR, STATE_FILE};
use crate::ssh::{Command, SshError, Transport};
use std::time::Duration;

/// A file's permission bits and owner as `stat` reports them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileMeta {
    /// Permission bits, e.g. 0o600 (no file type bits).
    pub mode: u32,
    pub owner: String,
    pub group: String,
}

/// Mode, owner and group of a file, in the words `FileMeta::parse` reads. `-L`: of the file a symlink points
/// at (kubelet-client-current.pem is one), the file whose contents are read and hashed.
pub const STAT: &str = "stat -L -c '%a %U %G'";

impl FileMeta {
    /// Readable (or writable) by anyone but its owner: a secret in such a file is no longer one.
    pub fn open_to_others(&self) -> bool {
        self.mode & 0o077 != 0
    }

    /// `STAT` output: "600 root root".
    pub fn parse(words: &str) -> Option<FileMeta> {
        let mut w = words.split(' ');
        let (mode, owner, group) = (w.next()?, w.next()?, w.next()?);
        if w.next().is_some() || owner.is_empty() || group.is_empty() {
            return None;
        }
        let mode = u32::from_str_radix(mode, 8).ok().filter(|m| *m <= 0o7777)?;
        Some(FileMeta { mode, owner: owner.to_string(), group: group.to_string() })
    }
}

/// Every file that holds a secret, as shell globs (a pattern without matches is skipped), with why it is one.
pub fn secret_files() -> Vec<(String, &'static str)> {
    vec![
        (STATE_FILE.into(), "kubeha's cluster state: both CA keys, every etcd member key, the bootstrap token and certificate key"),
        (format!("{ETCD_PKI_DIR}/*.key"), "the etcd CA key and each member's server, peer and client keys"),
        (ETCDCTL_ENV.into(), "no key itself, but kubeha writes it 0600: it points etcdctl at kubeha's root client key"),
        (KUBEADM_CONFIG.into(), "the kubeadm config: the bootstrap token (a join credential) and, on the seed, the certificate key"),
        (KEEPALIVED_CONFIG.into(), "the VRRP auth_pass: whoever knows it can announce the VIP"),
        (format!("{KUBERNETES_PKI_DIR}/*.key"), "kubeadm's keys: the Kubernetes CA, API server, service-account signing, front-proxy"),
        (format!("{KUBERNETES_PKI_DIR}/etcd/*.key"), "kubeadm's etcd keys (only where kubeadm ran a stacked etcd; kubeha's etcd is external)"),
        (format!("{KUBERNETES_DIR}/*.conf"), "kubeadm's kubeconfigs (admin, super-admin, controller-manager, scheduler, kubelet): embedded client keys"),
        (format!("{KUBELET_PKI_DIR}/kubelet-client-*.pem"), "the kubelet's rotating client certificate and key, in one file"),
        (format!("{KUBELET_PKI_DIR}/kubelet.key"), "the kubelet's serving key (self-signed, without server TLS bootstrap)"),
    ]
}

/// What a secret file kubeha did not write is tightened to: kubeadm and the kubelet write them 0600 root:root.
pub const PRIVATE: u32 = 0o600;

/// The shell: `secret <mode> <owner> <group> <path>` per existing file matching `secret_files()`. A pattern
/// without matches stays unexpanded in the loop and fails `-f`: skipped.
pub fn lines() -> String {
    let patterns: Vec<String> = secret_files().into_iter().map(|(p, _)| p).collect();
    format!("for f in {}; do if [ -f \"$f\" ]; then printf 'secret %s %s\\n' \"$({STAT} -- \"$f\")\" \"$f\"; fi; done\n", patterns.join(" "))
}

/// One `secret` line's words after the keyword: (path, meta). None when malformed.
pub fn parse_line(rest: &str) -> Option<(String, FileMeta)> {
    let mut w = rest.splitn(4, ' ');
    let (mode, owner, group, path) = (w.next()?, w.next()?, w.next()?, w.next()?);
    if !path.starts_with('/') {
        return None;
    }
    Some((path.to_string(), FileMeta::parse(&format!("{mode} {owner} {group}"))?))
}

/// Parses `lines()` output followed by `end`: the secret files found, or the first line not understood.
pub fn parse(output: &str) -> Result<Vec<(String, FileMeta)>, ProbeOutputError> {
    let mut found = Vec::new();
    for line in output.lines() {
        let bad = || ProbeOutputError::NotUnderstood(line.to_string());
        match line.split_once(' ') {
            Some(("secret", rest)) => found.push(parse_line(rest).ok_or_else(bad)?),
            None if line == "end" => {
                found.sort_by(|a, b| a.0.cmp(&b.0));
                found.dedup_by(|a, b| a.0 == b.0);
                return Ok(found);
            }
            _ => return Err(bad()),
        }
    }
    Err(ProbeOutputError::CutShort)
}

/// The secret files of one host with their modes and owners; read-only, one exec (as root: some are 0600).
pub async fn probe(t: &dyn Transport) -> Result<Vec<(String, FileMeta)>, SshError> {
    let script = format!("{}echo end\n", lines());
    let out = t.run(&Command::script(script).timeout(Duration::from_secs(30))).await?;
    parse(&out.stdout_text()).map_err(|detail| SshError::Protocol {
        host: t.host().into(),
        command: Some("secret files probe".into()),
        detail: format!("the secret files probe: {detail}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_modes_owners_and_refuses_a_malformed_line() {
        let out = "secret 600 root root /etc/kubeha/pki/etcd/server.key\nsecret 644 kubelet root /etc/kubernetes/pki/apiserver.key\nend\n";
        let found = parse(out).unwrap();
        assert_eq!(found[1].0, "/etc/kubernetes/pki/apiserver.key");
        assert_eq!(found[1].1, FileMeta { mode: 0o644, owner: "kubelet".into(), group: "root".into() });
        assert!(found[1].1.open_to_others() && !found[0].1.open_to_others());
        assert!(parse("secret 6x4 root root /etc/a\nend\n").is_err(), "a mode that is not octal");
        assert!(parse("secret 600 root /etc/a\nend\n").is_err(), "a missing group");
        assert!(parse("stat: cannot stat\nend\n").is_err(), "an unknown line");
        assert!(parse("secret 600 root root /etc/a\n").is_err(), "cut short");
    }

    /// The shell against a real folder: matches reported with their modes, unmatched patterns skipped.
    #[test]
    fn the_shell_reports_existing_files_and_skips_unmatched_patterns() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_string_lossy().to_string();
        std::fs::create_dir_all(dir.path().join("etc/kubernetes/pki")).unwrap();
        let key = dir.path().join("etc/kubernetes/pki/apiserver.key");
        std::fs::write(&key, "k").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let shell = format!("{}echo end\n", lines().replace(" /", &format!(" {root}/")));
        let out = std::process::Command::new("sh").arg("-c").arg(shell).output().unwrap();
        let found = parse(&String::from_utf8_lossy(&out.stdout)).unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, key.to_string_lossy());
        assert_eq!(found[0].1.mode, 0o644);
    }
}

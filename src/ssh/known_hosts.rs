//! Strict host key checking against OpenSSH known_hosts files.
//!
//! russh's own checker misses wildcards, negations, `@revoked`, tabs, and reports a host recorded under
//! another key type as "unknown" (a naive accept-new would then add a second key next to the real one). So we
//! tokenize lines ourselves, let `ssh_key` parse the key, and implement OpenSSH's matching rules here:
//! - the lookup name is `host` on port 22 and `[host]:port` otherwise, matched case-insensitively;
//! - a line matches if one of its comma-separated patterns matches (`*`, `?` globs) and no `!pattern` does;
//! - `|1|salt|hash` entries match when HMAC-SHA1(salt, name) equals hash;
//! - `@revoked` keys are refused for every host the line matches; `@cert-authority` lines are not used
//!   (we do not request host certificates, so they can never vouch for a plain key).
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use hmac::{Hmac, KeyInit, Mac};
use russh::keys::ssh_key::known_hosts::HostPatterns;
use russh::keys::ssh_key::{Algorithm, HashAlg, PublicKey};
use sha1::Sha1;

/// One usable line of a known_hosts file, remembered with where it came from for error messages.
#[derive(Debug, Clone)]
pub struct KnownEntry {
    pub file: PathBuf,
    pub line: usize,
    revoked: bool,
    hosts: HostPatterns,
    pub key: PublicKey,
}

/// All entries of a list of known_hosts files, in the order OpenSSH would consult them.
#[derive(Debug, Clone, Default)]
pub struct KnownHosts {
    entries: Vec<KnownEntry>,
    /// Lines that could not be parsed: skipped like OpenSSH does, but kept to explain a surprising "unknown".
    pub skipped: Vec<(PathBuf, usize)>,
}

/// The outcome of checking a presented host key.
#[derive(Debug, Clone)]
pub enum Verdict {
    Trusted { file: PathBuf, line: usize },
    Unknown,
    Changed { file: PathBuf, line: usize, recorded: PublicKey },
    Revoked { file: PathBuf, line: usize },
}

/// Why a host key was refused. Rendered verbatim to the user, so it says what to do.
#[derive(Debug, Clone)]
pub enum HostKeyProblem {
    Changed {
        lookup: String,
        file: PathBuf,
        line: usize,
        recorded_fingerprint: String,
        recorded_type: String,
        offered_fingerprint: String,
        offered_type: String,
    },
    Unknown {
        lookup: String,
        offered_fingerprint: String,
        offered_type: String,
        files: Vec<PathBuf>,
    },
    Revoked {
        lookup: String,
        file: PathBuf,
        line: usize,
        offered_fingerprint: String,
    },
    FileError {
        file: PathBuf,
        detail: String,
    },
    Certificate {
        lookup: String,
    },
}

impl fmt::Display for HostKeyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostKeyProblem::Changed { lookup, file, line, recorded_fingerprint, recorded_type, offered_fingerprint, offered_type } => write!(
                f,
                "HOST KEY CHANGED for {lookup}: {file}:{line} records {recorded_type} {recorded_fingerprint}, \
                 the server offered {offered_type} {offered_fingerprint}. This can be a man-in-the-middle attack or \
                 a reinstalled host; verify out of band, then remove line {line} of {file}",
                file = file.display()
            ),
            HostKeyProblem::Unknown { lookup, offered_fingerprint, offered_type, files } => write!(
                f,
                "host key for {lookup} is not known ({offered_type} {offered_fingerprint}; searched {}); \
                 verify it and rerun with --accept-new-host-keys to record it",
                files.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
            ),
            HostKeyProblem::Revoked { lookup, file, line, offered_fingerprint } => {
                write!(f, "host key {offered_fingerprint} of {lookup} is marked @revoked at {}:{line}", file.display())
            }
            HostKeyProblem::FileError { file, detail } => {
                write!(f, "cannot read or update known_hosts file {}: {detail}", file.display())
            }
            HostKeyProblem::Certificate { lookup } => {
                write!(f, "{lookup} presented a host certificate; only plain host keys are supported")
            }
        }
    }
}

/// The name OpenSSH looks up and records: plain on the default port, bracketed otherwise.
pub fn lookup_name(host: &str, port: u16) -> String {
    let host = host.to_ascii_lowercase();
    if port == 22 { host } else { format!("[{host}]:{port}") }
}

pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

impl KnownHosts {
    /// Load every file; a missing file is simply empty (the user may have none yet), an unreadable one is an
    /// error because silently ignoring it could turn "changed" into "unknown".
    pub fn load(files: &[PathBuf]) -> Result<Self, Box<HostKeyProblem>> {
        let mut known = KnownHosts::default();
        for file in files {
            match fs::read_to_string(file) {
                Ok(text) => known.add_text(file, &text),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(Box::new(HostKeyProblem::FileError { file: file.clone(), detail: e.to_string() }));
                }
            }
        }
        Ok(known)
    }

    pub fn add_text(&mut self, file: &Path, text: &str) {
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            match parse_line(raw) {
                Ok(Some((revoked, hosts, key))) => self.entries.push(KnownEntry { file: file.to_path_buf(), line, revoked, hosts, key }),
                Ok(None) => {}
                Err(()) => self.skipped.push((file.to_path_buf(), line)),
            }
        }
    }

    /// Key algorithms already recorded for this host, most trusted first: offering these to the server first
    /// makes it present the key we know instead of another type we would have to call a mismatch.
    pub fn recorded_algorithms(&self, host: &str, port: u16) -> Vec<Algorithm> {
        let name = lookup_name(host, port);
        let mut algs = Vec::new();
        for entry in self.entries.iter().filter(|e| !e.revoked && host_matches(&e.hosts, &name)) {
            let alg = entry.key.algorithm();
            if !algs.contains(&alg) {
                algs.push(alg);
            }
        }
        algs
    }

    /// The host key algorithms to ask for, as OpenSSH orders them (`order_hostkeyalgs`): the algorithms of
    /// keys recorded for this host first, then the rest, each part in `default` order. An RSA key is recorded
    /// as "ssh-rsa" but is verified by every RSA signature algorithm, so it brings rsa-sha2-512 and
    /// rsa-sha2-256 forward too, in `default`'s order (those before SHA-1 ssh-rsa): OpenSSH 8.8+ servers no
    /// longer offer ssh-rsa, and asking for it first made the server pick another key type, which we then had
    /// to call a changed key.
    pub fn host_key_order(&self, host: &str, port: u16, default: &[Algorithm]) -> Vec<Algorithm> {
        let recorded = self.recorded_algorithms(host, port);
        let is_recorded = |alg: &Algorithm| recorded.iter().any(|r| r == alg || (is_rsa(r) && is_rsa(alg)));
        let (first, rest): (Vec<Algorithm>, Vec<Algorithm>) = default.iter().cloned().partition(is_recorded);
        first.into_iter().chain(rest).collect()
    }

    pub fn check(&self, host: &str, port: u16, offered: &PublicKey) -> Verdict {
        let name = lookup_name(host, port);
        let matching: Vec<&KnownEntry> = self.entries.iter().filter(|e| host_matches(&e.hosts, &name)).collect();
        if let Some(e) = matching.iter().find(|e| e.revoked && same_key(&e.key, offered)) {
            return Verdict::Revoked { file: e.file.clone(), line: e.line };
        }
        let plain: Vec<&&KnownEntry> = matching.iter().filter(|e| !e.revoked).collect();
        if let Some(e) = plain.iter().find(|e| same_key(&e.key, offered)) {
            return Verdict::Trusted { file: e.file.clone(), line: e.line };
        }
        // Same type with another key is the classic change; a host recorded only under other types is a
        // mismatch too (never "unknown"): the server is not proving the identity we recorded.
        let changed = plain.iter().find(|e| e.key.algorithm() == offered.algorithm()).or_else(|| plain.first());
        match changed {
            Some(e) => Verdict::Changed { file: e.file.clone(), line: e.line, recorded: e.key.clone() },
            None => Verdict::Unknown,
        }
    }
}

fn is_rsa(alg: &Algorithm) -> bool {
    matches!(alg, Algorithm::Rsa { .. })
}

/// Compare key material only: the comment is not part of a host's identity.
fn same_key(a: &PublicKey, b: &PublicKey) -> bool {
    a.key_data() == b.key_data()
}

/// Split a line into marker, host patterns and key. Tabs and runs of spaces separate fields (OpenSSH accepts
/// both; ssh_key's own line parser does not). `Ok(None)` is a blank or comment line.
#[allow(clippy::type_complexity)]
fn parse_line(raw: &str) -> Result<Option<(bool, HostPatterns, PublicKey)>, ()> {
    let text = raw.trim();
    if text.is_empty() || text.starts_with('#') {
        return Ok(None);
    }
    let mut fields = text.split_whitespace();
    let mut first = fields.next().ok_or(())?;
    let mut revoked = false;
    if first.starts_with('@') {
        match first {
            "@revoked" => revoked = true,
            // A CA line cannot vouch for a plain key; skip it rather than treat it as this host's key.
            "@cert-authority" => return Ok(None),
            _ => return Err(()),
        }
        first = fields.next().ok_or(())?;
    }
    let hosts: HostPatterns = first.parse().map_err(|_| ())?;
    let key_type = fields.next().ok_or(())?;
    let key_b64 = fields.next().ok_or(())?;
    let key = PublicKey::from_openssh(&format!("{key_type} {key_b64}")).map_err(|_| ())?;
    Ok(Some((revoked, hosts, key)))
}

fn host_matches(hosts: &HostPatterns, name: &str) -> bool {
    match hosts {
        HostPatterns::HashedName { salt, hash } => {
            let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(salt) else {
                return false;
            };
            mac.update(name.as_bytes());
            mac.verify_slice(hash).is_ok()
        }
        HostPatterns::Patterns(patterns) => {
            let mut positive = false;
            for pattern in patterns {
                let pattern = pattern.to_ascii_lowercase();
                if let Some(negated) = pattern.strip_prefix('!') {
                    if glob(negated.as_bytes(), name.as_bytes()) {
                        return false; // a matching negation vetoes the whole line
                    }
                } else if glob(pattern.as_bytes(), name.as_bytes()) {
                    positive = true;
                }
            }
            positive
        }
    }
}

/// OpenSSH `match_pattern`: `*` is any run (also empty), `?` one character. Iterative with backtracking to the
/// last star, so it is linear-ish and cannot blow the stack on hostile patterns.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Serialises appends from the many connection tasks of one process (the file append itself is a single
/// write, so other processes appending at the same time do not interleave inside a line either).
static APPEND_LOCK: Mutex<()> = Mutex::new(());

/// Record a newly accepted key (accept-new). Written in plain `[host]:port` form so the user can read and
/// review what was accepted; the directory is created 0700 like ~/.ssh.
pub fn append(file: &Path, host: &str, port: u16, key: &PublicKey) -> io::Result<()> {
    let _guard = APPEND_LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.exists()
    {
        use std::os::unix::fs::DirBuilderExt;
        fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    }
    let needs_newline = match fs::read(file) {
        Ok(bytes) => bytes.last().is_some_and(|&b| b != b'\n'),
        Err(_) => false,
    };
    let mut key_text = key.to_openssh().map_err(io::Error::other)?;
    // Drop the comment ssh_key may carry; known_hosts lines are "name type base64".
    if let Some((kind, rest)) = key_text.split_once(' ') {
        let b64 = rest.split(' ').next().unwrap_or(rest);
        key_text = format!("{kind} {b64}");
    }
    let line = format!("{}{} {}\n", if needs_newline { "\n" } else { "" }, lookup_name(host, port), key_text);
    let mut f = fs::OpenOptions::new().create(true).append(true).open(file)?;
    f.write_all(line.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Two real ed25519 keys, one RSA and one ECDSA key (public halves of throwaway keys).
    const ED_A: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDjU6Veohxw2LMZkGjK3UydxXeHAP464VUkDCI+sHQQB";
    const ED_B: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDQZepEwltgkiwVe+4vg0Xlb6UbePeCSp7ATJpqqmUy2";
    const RSA: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQCUzRUROHDhcWK/51bC6oVJPGct1InC+H/T90q1vP0P0lk6dhA5/ES/4/IeHLo2aC60NW3wWZvnNdII0/8eTShHETOSwB4XBy7ozfvLF9i/p96zBmdrIZyQ0EbXmX8RZCuEESFPzKembVFUHHmw5ar08+cK0YndYoKKB9jQ8/blIe/vqqQl5JtzrWdmBdJOiy682IthIWf0PQQLZiO4X0c45JJPyutErKGVcLHHemSPb1T9aXNq0sTWaPD/KYtsWtjTl4XUKxdkGgeyTo5dtqL0brLzJUAYLgGb6GAXYS3kpbdvT9gILis0+CCjVouqtLkKZ2GB1JA4TUg/EuNLISUt";
    const ECDSA: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBFGR1gFz+Y+ZMWESELslsnPXJXK9mQlveD9/fZD8NHHDIoMB3ZA/QxP0ykjED5N9ul3S0l/oT69mETYEYwrWue0=";

    fn key(text: &str) -> PublicKey {
        PublicKey::from_openssh(text).expect("test key")
    }

    fn known(text: &str) -> KnownHosts {
        let mut k = KnownHosts::default();
        k.add_text(Path::new("/test/known_hosts"), text);
        k
    }

    #[test]
    fn plain_and_bracketed_port() {
        let k = known(&format!("host1 {ED_A}\n[host1]:2222 {ED_B}\n"));
        assert!(matches!(k.check("host1", 22, &key(ED_A)), Verdict::Trusted { line: 1, .. }));
        assert!(matches!(k.check("HOST1", 2222, &key(ED_B)), Verdict::Trusted { line: 2, .. }));
        assert!(matches!(k.check("host1", 2222, &key(ED_A)), Verdict::Changed { line: 2, .. }));
        assert!(matches!(k.check("host2", 22, &key(ED_A)), Verdict::Unknown));
    }

    #[test]
    fn hashed_entry_matches_only_its_name() {
        // Produced by `ssh-keygen -H` for the name "[10.0.0.5]:2222".
        let k = known(&format!("|1|2yF9SxXIxSsOUCarsutjVQTTE7Y=|qaayK30yeDuT3BkNzw5ghgSvTZs= {ED_A}\n"));
        assert!(matches!(k.check("10.0.0.5", 2222, &key(ED_A)), Verdict::Trusted { .. }));
        assert!(matches!(k.check("10.0.0.5", 22, &key(ED_A)), Verdict::Unknown));
    }

    #[test]
    fn wildcards_and_negation() {
        let k = known(&format!("*.prod.example,!bad.prod.example,10.1.?.9 {ED_A}\n"));
        assert!(matches!(k.check("cp1.prod.example", 22, &key(ED_A)), Verdict::Trusted { .. }));
        assert!(matches!(k.check("10.1.3.9", 22, &key(ED_A)), Verdict::Trusted { .. }));
        assert!(matches!(k.check("10.1.33.9", 22, &key(ED_A)), Verdict::Unknown));
        assert!(matches!(k.check("bad.prod.example", 22, &key(ED_A)), Verdict::Unknown));
        assert!(matches!(k.check("prod.example", 22, &key(ED_A)), Verdict::Unknown));
    }

    #[test]
    fn other_key_type_is_a_mismatch_not_unknown() {
        let k = known(&format!("host1 {ECDSA}\n"));
        match k.check("host1", 22, &key(ED_A)) {
            Verdict::Changed { line, recorded, .. } => {
                assert_eq!(line, 1);
                assert_eq!(recorded.algorithm(), key(ECDSA).algorithm());
            }
            other => panic!("expected Changed, got {other:?}"),
        }
        assert_eq!(k.recorded_algorithms("host1", 22), vec![key(ECDSA).algorithm()]);
    }

    #[test]
    fn a_recorded_rsa_key_asks_for_rsa_sha2_first_then_the_rest_in_default_order() {
        let defaults = russh::client::Config::default().preferred.key.to_vec();
        let names = |algs: Vec<Algorithm>| algs.iter().map(|a| a.as_str().to_string()).collect::<Vec<_>>();
        let k = known(&format!("host1 {RSA}\n"));
        let order = names(k.host_key_order("host1", 22, &defaults));
        assert_eq!(order[..3], ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"], "{order:?}");
        assert_eq!(order[3], "ssh-ed25519", "{order:?}");
        assert_eq!(order.len(), defaults.len());
        // Nothing recorded: the default order as is; ECDSA recorded: ECDSA first.
        assert_eq!(names(k.host_key_order("host2", 22, &defaults)), names(defaults.clone()));
        let k = known(&format!("host1 {ECDSA}\n"));
        assert_eq!(names(k.host_key_order("host1", 22, &defaults))[0], "ecdsa-sha2-nistp256");
    }

    #[test]
    fn same_type_change_points_at_the_same_type_line() {
        let k = known(&format!("host1 {ECDSA}\nhost1 {ED_B}\n"));
        assert!(matches!(k.check("host1", 22, &key(ED_A)), Verdict::Changed { line: 2, .. }));
        assert!(matches!(k.check("host1", 22, &key(ECDSA)), Verdict::Trusted { line: 1, .. }));
    }

    #[test]
    fn revoked_wins_over_trusted() {
        let k = known(&format!("host1 {ED_A}\n@revoked * {ED_A}\n"));
        assert!(matches!(k.check("host1", 22, &key(ED_A)), Verdict::Revoked { line: 2, .. }));
    }

    #[test]
    fn tabs_comments_markers_and_garbage() {
        let k = known(&format!("# comment\n\n  host1\t\t{}   trailing comment\n@cert-authority * {ED_B}\nnot a valid line\n", ED_A.replace(' ', "\t")));
        assert!(matches!(k.check("host1", 22, &key(ED_A)), Verdict::Trusted { line: 3, .. }));
        assert!(matches!(k.check("host1", 22, &key(ED_B)), Verdict::Changed { .. }));
        assert_eq!(k.skipped.len(), 1);
    }

    #[test]
    fn several_files_are_consulted_in_order() {
        let mut k = known(&format!("host1 {ED_A}\n"));
        k.add_text(Path::new("/etc/ssh/ssh_known_hosts"), &format!("host2 {ED_B}\n"));
        match k.check("host2", 22, &key(ED_B)) {
            Verdict::Trusted { file, .. } => {
                assert_eq!(file, Path::new("/etc/ssh/ssh_known_hosts"))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn glob_edge_cases() {
        assert!(glob(b"*", b""));
        assert!(glob(b"a*b*c", b"axxbyyc"));
        assert!(!glob(b"a*b*c", b"axxbyy"));
        assert!(glob(b"??", b"ab"));
        assert!(!glob(b"?", b""));
    }

    #[test]
    fn append_records_a_line_that_then_matches() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("sub/known_hosts");
        fs::create_dir_all(file.parent().unwrap()).unwrap();
        fs::write(&file, format!("other {ED_B}")).unwrap(); // no trailing newline
        append(&file, "10.0.0.7", 2200, &key(ED_A)).expect("append");
        let k = KnownHosts::load(std::slice::from_ref(&file)).expect("load");
        assert!(matches!(k.check("10.0.0.7", 2200, &key(ED_A)), Verdict::Trusted { line: 2, .. }));
        assert!(matches!(k.check("other", 22, &key(ED_B)), Verdict::Trusted { line: 1, .. }));
    }
}

//! Checksums: the published checksum files (`sha256sum` output, or a bare digest), and hashing while bytes stream.
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};
use std::fmt;
use std::io::Read;
use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        [Algorithm::Sha256, Algorithm::Sha512].into_iter().find(|a| a.name() == name)
    }
}

/// An expected digest, lower-case hex.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Checksum {
    pub algorithm: Algorithm,
    pub hex: String,
}

impl Checksum {
    /// `sha256:<hex>`, the form the cache index stores.
    pub fn parse(text: &str) -> Option<Self> {
        let (name, hex) = text.trim().split_once(':')?;
        let algorithm = Algorithm::parse(name)?;
        is_hex(hex, algorithm).then(|| Checksum { algorithm, hex: hex.to_ascii_lowercase() })
    }

    pub fn matches(&self, digests: &Digests) -> bool {
        digests.get(self.algorithm) == Some(self.hex.as_str())
    }
}

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.name(), self.hex)
    }
}

fn is_hex(s: &str, algorithm: Algorithm) -> bool {
    s.len() == algorithm.hex_len() && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Finds `file_name`'s digest in a checksum file. Accepts both forms upstream projects publish: a bare digest
/// (Kubernetes' `kubeadm.sha256`) and `sha256sum` lines `<hex>  [*]<name>` (etcd's SHA256SUMS, runc's combined
/// file, containerd's `.sha256sum`). A line naming another file never counts, so a combined file cannot hand
/// out another file's digest.
pub fn find_in_file(text: &str, file_name: &str, algorithm: Algorithm) -> Result<Checksum, String> {
    let mut seen = 0;
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        seen += 1;
        let mut words = line.split_whitespace();
        let (Some(hex), name) = (words.next(), words.next()) else { continue };
        let name = name.map(|n| n.trim_start_matches('*').trim_start_matches("./"));
        if name.is_none_or(|n| n == file_name || n.rsplit('/').next() == Some(file_name)) {
            return if is_hex(hex, algorithm) {
                Ok(Checksum { algorithm, hex: hex.to_ascii_lowercase() })
            } else {
                Err(format!("\"{hex}\" is not a {} digest", algorithm.name()))
            };
        }
    }
    Err(if seen == 0 { "the file is empty".to_string() } else { format!("no line for {file_name} among its {seen} line(s)") })
}

/// The digests of one file. sha256 is always computed: it keys the bundle manifest and is what the hosts'
/// `sha256sum` is compared with; sha512 only when the published checksum is a sha512.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Digests {
    pub sha256: String,
    pub sha512: Option<String>,
}

impl Digests {
    pub fn get(&self, algorithm: Algorithm) -> Option<&str> {
        match algorithm {
            Algorithm::Sha256 => Some(&self.sha256),
            Algorithm::Sha512 => self.sha512.as_deref(),
        }
    }
}

/// Hashes bytes as they arrive, so a download is verified without reading it a second time.
pub struct Hasher {
    sha256: Sha256,
    sha512: Option<Sha512>,
}

impl Hasher {
    pub fn new(also: Algorithm) -> Self {
        Self { sha256: Sha256::new(), sha512: (also == Algorithm::Sha512).then(Sha512::new) }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.sha256.update(bytes);
        if let Some(h) = &mut self.sha512 {
            h.update(bytes);
        }
    }

    pub fn finish(self) -> Digests {
        Digests { sha256: crate::digest::hex(&self.sha256.finalize()), sha512: self.sha512.map(|h| crate::digest::hex(&h.finalize())) }
    }
}

/// Hashes a file on disk (blocking: call it from `spawn_blocking` in async code).
pub fn hash_file(path: &Path, also: Algorithm) -> std::io::Result<Digests> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Hasher::new(also);
    let mut buffer = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            return Ok(hasher.finish());
        }
        hasher.update(&buffer[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    const B: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    #[test]
    fn bare_digest_and_sha256sum_lines_are_both_understood() {
        assert_eq!(find_in_file(&format!("{A}\n"), "kubeadm", Algorithm::Sha256).unwrap().hex, A);
        let sums = format!("{A}  etcd-v3.6.16-linux-arm64.tar.gz\n{B}  etcd-v3.6.16-linux-amd64.tar.gz\n");
        assert_eq!(find_in_file(&sums, "etcd-v3.6.16-linux-amd64.tar.gz", Algorithm::Sha256).unwrap().hex, B);
        // Binary-mode marker and a leading ./ as some release scripts write them.
        assert_eq!(find_in_file(&format!("{B} *runc.amd64\n{A} ./runc.arm64\n"), "runc.arm64", Algorithm::Sha256).unwrap().hex, A);
        assert_eq!(find_in_file(&format!("{}  x\n", B.to_uppercase()), "x", Algorithm::Sha256).unwrap().hex, B);
    }

    #[test]
    fn a_missing_line_or_a_bad_digest_is_an_error_not_a_guess() {
        let sums = format!("{A}  runc.arm64\n");
        assert_eq!(find_in_file(&sums, "runc.amd64", Algorithm::Sha256).unwrap_err(), "no line for runc.amd64 among its 1 line(s)");
        assert_eq!(find_in_file("", "x", Algorithm::Sha256).unwrap_err(), "the file is empty");
        assert_eq!(find_in_file("<html>404</html>", "x", Algorithm::Sha256).unwrap_err(), "\"<html>404</html>\" is not a sha256 digest");
        assert!(find_in_file(&format!("{A}\n"), "x", Algorithm::Sha512).is_err(), "a sha256 is no sha512");
    }

    #[test]
    fn streaming_hash_equals_one_shot_hash() {
        let mut h = Hasher::new(Algorithm::Sha512);
        h.update(b"hel");
        h.update(b"lo");
        let d = h.finish();
        assert_eq!(d.sha256, B);
        let sha512 = "9b71d224bd62f3785d96d46ad3ea3d73319bfbc2890caadae2dff72519673ca72323c3d99ba5c11d7c7acc6e14b8c5da0c4663475c2e5c3adef46f73bcdec043";
        assert_eq!(d.sha512.as_deref(), Some(sha512));
        assert!(Checksum::parse(&format!("sha256:{B}")).unwrap().matches(&d));
        // A published .sha512 file (the CNI plugins publish both) verifies the same bytes.
        let published = find_in_file(&format!("{sha512}  hello.tgz\n"), "hello.tgz", Algorithm::Sha512).unwrap();
        assert!(published.matches(&d));
        assert!(!published.matches(&Hasher::new(Algorithm::Sha256).finish()), "no sha512 computed, no match");
        assert_eq!(Checksum::parse("md5:abc"), None);
    }
}

//! The download cache: `<root>/<algorithm>/<digest>/<file name>`, keyed by the published checksum, plus an index
//! from URL to checksum so that a second run needs no HTTP at all (not even for the checksum file). Release URLs
//! name a version, so their content does not change; the index is written only after a verified download, and
//! every cached file is hashed again before it is used.
use super::checksum::{self, Algorithm, Checksum, Digests};
use super::download::PartFile;
use std::path::{Path, PathBuf};

pub struct Cache {
    root: PathBuf,
}

impl Cache {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    /// `$XDG_CACHE_HOME/kubeha/artifacts`, else `~/.cache/kubeha/artifacts`. XDG says relative values are ignored.
    pub fn default_root() -> Option<PathBuf> {
        let xdg = std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from).filter(|p| p.is_absolute());
        let base = xdg.or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
        Some(base.join("kubeha").join("artifacts"))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blob_path(&self, checksum: &Checksum, file_name: &str) -> PathBuf {
        self.root.join(checksum.algorithm.name()).join(&checksum.hex).join(file_name)
    }

    fn index_path(&self, url: &str) -> PathBuf {
        let mut key = checksum::Hasher::new(Algorithm::Sha256);
        key.update(url.as_bytes());
        self.root.join("by-url").join(key.finish().sha256)
    }

    /// The checksum a verified download of `url` had, if there was one.
    pub fn known_checksum(&self, url: &str) -> Option<Checksum> {
        let text = std::fs::read_to_string(self.index_path(url)).ok()?;
        let mut lines = text.lines();
        // The URL is stored too: the key is its hash, and a reader of the cache can see what an entry is.
        let checksum = Checksum::parse(lines.next()?)?;
        (lines.next() == Some(url)).then_some(checksum)
    }

    pub fn remember(&self, url: &str, checksum: &Checksum) -> std::io::Result<()> {
        let path = self.index_path(url);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let part = PartFile::beside(&path);
        std::fs::write(&part.path, format!("{checksum}\n{url}\n"))?;
        part.keep_as(&path)
    }

    /// The cached file if its content still matches; a file that does not (a disk error, someone's edit) is removed
    /// so the caller downloads it again. Blocking: it reads the whole file.
    pub fn verified(&self, checksum: &Checksum, file_name: &str) -> Option<(PathBuf, Digests)> {
        let path = self.blob_path(checksum, file_name);
        let digests = checksum::hash_file(&path, checksum.algorithm).ok()?;
        if checksum.matches(&digests) {
            Some((path, digests))
        } else {
            let _ = std::fs::remove_file(&path);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cached_file_that_no_longer_matches_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().to_path_buf());
        let good = Checksum { algorithm: Algorithm::Sha256, hex: crate::digest::sha256_hex(b"kubeadm") };
        let path = cache.blob_path(&good, "kubeadm");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"kubeadm").unwrap();
        assert_eq!(cache.verified(&good, "kubeadm").map(|(p, _)| p), Some(path.clone()));
        std::fs::write(&path, b"tampered").unwrap();
        assert_eq!(cache.verified(&good, "kubeadm"), None);
        assert!(!path.exists());
    }

    #[test]
    fn the_index_maps_a_url_to_its_verified_checksum() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().to_path_buf());
        let c = Checksum { algorithm: Algorithm::Sha256, hex: "ab".repeat(32) };
        assert_eq!(cache.known_checksum("http://m/a"), None);
        cache.remember("http://m/a", &c).unwrap();
        assert_eq!(cache.known_checksum("http://m/a"), Some(c));
        assert_eq!(cache.known_checksum("http://m/b"), None);
    }
}

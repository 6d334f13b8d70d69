//! Offline bundles: a folder with every file an inventory needs, at the same paths as below a mirror's base URL,
//! and `manifest.json` listing name, version, arch, file, url and sha256 of each. `artifacts fetch -o DIR` writes
//! one; `spec.artifacts.bundle: DIR` reads it, verifying every file against the manifest before it is used.
use super::catalogue::Artifact;
use super::checksum::{self, Algorithm, Checksum, Digests};
use super::download::PartFile;
use super::error::{ArtifactError, Mismatch};
use super::obtain::Obtained;
use serde::{Deserialize, Serialize};
use std::path::{Component, Path, PathBuf};

pub const MANIFEST_FILE: &str = "manifest.json";
pub const FORMAT: &str = "kubeha-bundle/v1";

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    pub artifacts: Vec<Entry>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub name: String,
    pub version: String,
    pub arch: String,
    /// Relative to the bundle folder.
    pub file: String,
    /// Where it was downloaded from.
    pub url: String,
    pub sha256: String,
}

impl Entry {
    fn describes(&self, a: &Artifact) -> bool {
        self.name == a.name() && self.version == a.version.to_string() && self.arch == a.arch.name()
    }
}

pub struct Bundle {
    dir: PathBuf,
    manifest: Manifest,
}

impl Bundle {
    /// Reads and checks the manifest. Its file paths are input like any other: one that climbs out of the folder
    /// (`../`, absolute) is refused rather than read.
    pub fn open(dir: &Path) -> Result<Self, ArtifactError> {
        let path = dir.join(MANIFEST_FILE);
        let shown = path.display().to_string();
        let bad = |reason: String| ArtifactError::Manifest { path: shown.clone(), reason };
        let text =
            std::fs::read_to_string(&path).map_err(|e| bad(format!("cannot read it: {e} (is {} a bundle from `kubeha artifacts fetch`?)", dir.display())))?;
        let manifest: Manifest = serde_json::from_str(&text).map_err(|e| bad(format!("not a bundle manifest: {e}")))?;
        if manifest.format != FORMAT {
            return Err(bad(format!("format \"{}\", expected \"{FORMAT}\"", manifest.format)));
        }
        for e in &manifest.artifacts {
            if !is_inside(&e.file) {
                return Err(bad(format!("{} {}: file \"{}\" is not a relative path inside the bundle", e.name, e.version, e.file)));
            }
            if Checksum::parse(&format!("sha256:{}", e.sha256)).is_none() {
                return Err(bad(format!("{} {}: sha256 \"{}\" is not a sha256 digest", e.name, e.version, e.sha256)));
            }
        }
        Ok(Self { dir: dir.to_path_buf(), manifest })
    }

    pub fn manifest_path(&self) -> PathBuf {
        self.dir.join(MANIFEST_FILE)
    }

    pub fn entry(&self, a: &Artifact) -> Result<&Entry, ArtifactError> {
        self.manifest
            .artifacts
            .iter()
            .find(|e| e.describes(a))
            .ok_or_else(|| ArtifactError::BundleMissingEntry { artifact: a.label(), manifest: self.manifest_path().display().to_string() })
    }

    pub fn path_of(&self, entry: &Entry) -> PathBuf {
        self.dir.join(&entry.file)
    }

    /// The bundle's file for `a` after hashing it against the manifest. Blocking: it reads the whole file.
    pub fn verified(&self, a: &Artifact) -> Result<(PathBuf, Digests, &Entry), ArtifactError> {
        let entry = self.entry(a)?;
        let path = self.path_of(entry);
        let digests = match checksum::hash_file(&path, Algorithm::Sha256) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ArtifactError::BundleMissingFile { artifact: a.label(), path: path.display().to_string() });
            }
            Err(e) => return Err(ArtifactError::io("cannot read", &path, e)),
        };
        if digests.sha256 != entry.sha256 {
            return Err(ArtifactError::Mismatch(Box::new(Mismatch {
                artifact: a.label(),
                location: path.display().to_string(),
                expected: Checksum { algorithm: Algorithm::Sha256, hex: entry.sha256.clone() },
                actual: format!("sha256:{}", digests.sha256),
                published_in: self.manifest_path().display().to_string(),
            })));
        }
        Ok((path, digests, entry))
    }
}

fn is_inside(file: &str) -> bool {
    let path = Path::new(file);
    !file.is_empty() && path.components().all(|c| matches!(c, Component::Normal(_)))
}

/// Writes `dir` as a bundle of `items`. A folder that holds something other than a bundle is refused, so a typo in
/// `-o` cannot scatter files into a home folder. The manifest is written last: a bundle cut short by an error has
/// no manifest naming files it lacks.
pub fn write(dir: &Path, items: &[Obtained]) -> Result<PathBuf, ArtifactError> {
    let manifest_path = dir.join(MANIFEST_FILE);
    let not_empty = std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some());
    if not_empty && !manifest_path.exists() {
        return Err(ArtifactError::Manifest {
            path: manifest_path.display().to_string(),
            reason: format!("missing, and {} is not empty: refusing to write a bundle into a folder that holds something else", dir.display()),
        });
    }
    std::fs::create_dir_all(dir).map_err(|e| ArtifactError::io("cannot create", dir, e))?;
    let mut entries = Vec::new();
    for item in items {
        let a = &item.artifact;
        let target = dir.join(&a.path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| ArtifactError::io("cannot create", parent, e))?;
        }
        if item.path != target {
            let part = PartFile::beside(&target);
            std::fs::copy(&item.path, &part.path).map_err(|e| ArtifactError::io("cannot copy into", &part.path, e))?;
            part.keep_as(&target).map_err(|e| ArtifactError::io("cannot rename into", &target, e))?;
        }
        entries.push(Entry {
            name: a.name().to_string(),
            version: a.version.to_string(),
            arch: a.arch.name().to_string(),
            file: a.path.clone(),
            url: item.url.clone(),
            sha256: item.sha256.clone(),
        });
    }
    let manifest = Manifest { format: FORMAT.to_string(), artifacts: entries };
    let text =
        serde_json::to_string_pretty(&manifest).map_err(|e| ArtifactError::Manifest { path: manifest_path.display().to_string(), reason: e.to_string() })?;
    let part = PartFile::beside(&manifest_path);
    std::fs::write(&part.path, text + "\n").map_err(|e| ArtifactError::io("cannot write", &part.path, e))?;
    part.keep_as(&manifest_path).map_err(|e| ArtifactError::io("cannot rename into", &manifest_path, e))?;
    Ok(manifest_path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_paths_must_stay_inside_the_bundle() {
        assert!(is_inside("release/v1.36.3/bin/linux/amd64/kubeadm"));
        for bad in ["", "../etc/passwd", "/etc/passwd", "a/../../b", "./a"] {
            assert!(!is_inside(bad), "{bad}");
        }
    }

    #[test]
    fn a_manifest_with_an_escaping_path_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = format!(
            r#"{{"format":"{FORMAT}","artifacts":[{{"name":"kubeadm","version":"1.36.3","arch":"amd64","file":"../x","url":"u","sha256":"{}"}}]}}"#,
            "a".repeat(64)
        );
        std::fs::write(dir.path().join(MANIFEST_FILE), manifest).unwrap();
        let err = Bundle::open(dir.path()).err().unwrap().to_string();
        assert!(err.contains("kubeadm 1.36.3: file \"../x\" is not a relative path inside the bundle"), "{err}");
    }

    #[test]
    fn writing_into_a_folder_that_is_no_bundle_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("notes.txt"), "mine").unwrap();
        let err = write(dir.path(), &[]).unwrap_err().to_string();
        assert!(err.contains("refusing to write a bundle into a folder that holds something else"), "{err}");
    }
}

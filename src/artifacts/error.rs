//! What can go wrong getting an artifact. Every variant names the artifact and the URL or path, so the operator
//! can open it in a browser or on disk; checksum errors carry both digests.
use super::checksum::Checksum;

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("{artifact}: {url} answered 404 Not Found (is the version right, and does the mirror have this file?)")]
    NotFound { artifact: String, url: String },
    #[error("{artifact}: {url} answered HTTP {status} (after {attempts} attempt(s))")]
    Status { artifact: String, url: String, status: u16, attempts: u32 },
    #[error("{artifact}: cannot reach {url}: {reason} (after {attempts} attempt(s))")]
    Unreachable { artifact: String, url: String, reason: String, attempts: u32 },
    #[error("{artifact}: the download of {url} was cut short after {received} of {expected} bytes: {reason} (after {attempts} attempt(s))")]
    Truncated { artifact: String, url: String, received: u64, expected: String, reason: String, attempts: u32 },
    /// Boxed: the largest variant, and errors travel in every `Result` of the module.
    #[error("{0}")]
    Mismatch(Box<Mismatch>),
    #[error("{artifact}: checksum file {url}: {reason}")]
    ChecksumFile { artifact: String, url: String, reason: String },
    #[error("{artifact}: the bundle has no file {path} (its manifest lists it); write the bundle again with `kubeha artifacts fetch -i FILE -o DIR`")]
    BundleMissingFile { artifact: String, path: String },
    #[error("{artifact}: bundle {manifest} has no entry for it (made for another inventory?); write it again with `kubeha artifacts fetch -i FILE -o DIR`")]
    BundleMissingEntry { artifact: String, manifest: String },
    #[error("bundle manifest {path}: {reason}")]
    Manifest { path: String, reason: String },
    #[error("{what} {path}: {source}")]
    Io { what: &'static str, path: String, source: std::io::Error },
    #[error("neither XDG_CACHE_HOME nor HOME is set: no folder for the artifact cache")]
    NoCacheFolder,
    #[error("cannot set up the HTTP client: {0}")]
    Client(String),
    /// A download or hashing task panicked or was cancelled: a bug, not a fault of the input.
    #[error("internal error: {0}")]
    Task(String),
}

#[derive(Debug, thiserror::Error)]
#[error("{artifact}: checksum mismatch for {location}: expected {expected} (from {published_in}), got {actual}; the file was not kept")]
pub struct Mismatch {
    pub artifact: String,
    /// The URL or the path of the file that did not match.
    pub location: String,
    pub expected: Checksum,
    pub actual: String,
    /// The checksum file or bundle manifest the expected digest came from.
    pub published_in: String,
}

impl ArtifactError {
    pub fn io(what: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        ArtifactError::Io { what, path: path.display().to_string(), source }
    }
}

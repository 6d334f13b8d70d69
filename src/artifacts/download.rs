//! HTTP with reqwest: timeouts, retries with exponential backoff on transient faults (connection errors, 5xx, a body
//! cut short) but never on 404, and streaming into a temp file beside the target that is renamed into place only
//! once its checksum matched.
use super::checksum::{Checksum, Digests, Hasher};
use super::error::{ArtifactError, Mismatch};
use indicatif::ProgressBar;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

#[derive(Clone, Copy, Debug)]
pub struct Retry {
    /// Tries in all, the first included.
    pub attempts: u32,
    /// The wait after the first failure; doubled after each further one, up to `max_delay`.
    pub first_delay: Duration,
    pub max_delay: Duration,
}

impl Retry {
    fn delay(&self, failures: u32) -> Duration {
        self.first_delay.saturating_mul(1 << failures.saturating_sub(1).min(16)).min(self.max_delay)
    }
}

#[derive(Clone, Copy, Debug)]
pub struct HttpOptions {
    pub connect_timeout: Duration,
    /// Between two reads of a body: a stalled transfer fails and is retried instead of hanging.
    pub read_timeout: Duration,
    pub retry: Retry,
}

impl Default for HttpOptions {
    /// 4 tries over about 3.5 s of waiting: long enough for a restarting mirror or a GitHub hiccup, short enough that
    /// an operator with a wrong mirror URL hears about it quickly.
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
            retry: Retry { attempts: 4, first_delay: Duration::from_millis(500), max_delay: Duration::from_secs(8) },
        }
    }
}

/// Checksum files are a few lines; anything much bigger is not one (an HTML error page, a wrong URL).
const MAX_CHECKSUM_FILE_BYTES: usize = 1024 * 1024;

pub struct Http {
    client: reqwest::Client,
    retry: Retry,
}

/// Why one try failed: transient faults are retried, fatal ones returned at once.
enum Failure {
    Transient(Transient),
    Fatal(ArtifactError),
}

enum Transient {
    Unreachable(String),
    Status(u16),
    Truncated { received: u64, expected: Option<u64>, reason: String },
}

impl Http {
    pub fn new(options: &HttpOptions) -> Result<Self, ArtifactError> {
        let client = reqwest::Client::builder()
            .connect_timeout(options.connect_timeout)
            .read_timeout(options.read_timeout)
            .user_agent(concat!("kubeha/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ArtifactError::Client(error_chain(&e)))?;
        Ok(Self { client, retry: options.retry })
    }

    /// A checksum file's text.
    pub async fn text(&self, artifact: &str, url: &str) -> Result<String, ArtifactError> {
        self.retrying(artifact, url, || self.text_once(artifact, url)).await
    }

    /// Streams `url` into `dest`, which exists afterwards only if the content matched `expected`.
    pub async fn file(
        &self,
        artifact: &str,
        url: &str,
        dest: &Path,
        expected: &Checksum,
        checksum_url: &str,
        bar: &ProgressBar,
    ) -> Result<Digests, ArtifactError> {
        self.retrying(artifact, url, || self.file_once(artifact, url, dest, expected, checksum_url, bar)).await
    }

    async fn retrying<T, F, Fut>(&self, artifact: &str, url: &str, mut once: F) -> Result<T, ArtifactError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        let mut failures = 0;
        loop {
            let transient = match once().await {
                Ok(value) => return Ok(value),
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Transient(t)) => t,
            };
            failures += 1;
            if failures >= self.retry.attempts {
                let (artifact, url, attempts) = (artifact.to_string(), url.to_string(), failures);
                return Err(match transient {
                    Transient::Unreachable(reason) => ArtifactError::Unreachable { artifact, url, reason, attempts },
                    Transient::Status(status) => ArtifactError::Status { artifact, url, status, attempts },
                    Transient::Truncated { received, expected, reason } => {
                        let expected = expected.map_or_else(|| "the announced".to_string(), |e| e.to_string());
                        ArtifactError::Truncated { artifact, url, received, expected, reason, attempts }
                    }
                });
            }
            tokio::time::sleep(self.retry.delay(failures)).await;
        }
    }

    async fn get(&self, artifact: &str, url: &str) -> Result<reqwest::Response, Failure> {
        let response = self.client.get(url).send().await.map_err(|e| Failure::Transient(Transient::Unreachable(error_chain(&e))))?;
        let status = response.status();
        match status.as_u16() {
            _ if status.is_success() => Ok(response),
            404 => Err(Failure::Fatal(ArtifactError::NotFound { artifact: artifact.to_string(), url: url.to_string() })),
            // Server trouble, throttling and request timeouts pass; other client errors will not.
            code if status.is_server_error() || code == 429 || code == 408 => Err(Failure::Transient(Transient::Status(code))),
            code => Err(Failure::Fatal(ArtifactError::Status { artifact: artifact.to_string(), url: url.to_string(), status: code, attempts: 1 })),
        }
    }

    async fn text_once(&self, artifact: &str, url: &str) -> Result<String, Failure> {
        let mut response = self.get(artifact, url).await?;
        let expected = response.content_length();
        let mut body = Vec::new();
        while let Some(chunk) = next_chunk(&mut response, body.len() as u64, expected).await? {
            body.extend_from_slice(&chunk[..]);
            if body.len() > MAX_CHECKSUM_FILE_BYTES {
                let reason = format!("larger than {MAX_CHECKSUM_FILE_BYTES} bytes, not a checksum file");
                return Err(Failure::Fatal(ArtifactError::ChecksumFile { artifact: artifact.to_string(), url: url.to_string(), reason }));
            }
        }
        String::from_utf8(body)
            .map_err(|_| Failure::Fatal(ArtifactError::ChecksumFile { artifact: artifact.to_string(), url: url.to_string(), reason: "not text".to_string() }))
    }

    async fn file_once(&self, artifact: &str, url: &str, dest: &Path, expected: &Checksum, checksum_url: &str, bar: &ProgressBar) -> Result<Digests, Failure> {
        let mut response = self.get(artifact, url).await?;
        let length = response.content_length();
        bar.set_position(0);
        if let Some(len) = length {
            bar.set_length(len);
        }
        let part = PartFile::beside(dest);
        let mut file = tokio::fs::File::create(&part.path).await.map_err(|e| fatal_io("cannot create", &part.path, e))?;
        let mut hasher = Hasher::new(expected.algorithm);
        let mut received = 0u64;
        while let Some(chunk) = next_chunk(&mut response, received, length).await? {
            file.write_all(&chunk[..]).await.map_err(|e| fatal_io("cannot write", &part.path, e))?;
            hasher.update(&chunk[..]);
            received += chunk.len() as u64;
            bar.set_position(received);
        }
        // Durable before the rename, so a crash cannot leave a verified name on unwritten blocks.
        file.sync_all().await.map_err(|e| fatal_io("cannot write", &part.path, e))?;
        drop(file);
        let digests = hasher.finish();
        if !expected.matches(&digests) {
            let actual = format!("{}:{}", expected.algorithm.name(), digests.get(expected.algorithm).unwrap_or_default());
            let (artifact, location, published_in) = (artifact.to_string(), url.to_string(), checksum_url.to_string());
            return Err(Failure::Fatal(ArtifactError::Mismatch(Box::new(Mismatch { artifact, location, expected: expected.clone(), actual, published_in }))));
        }
        part.keep_as(dest).map_err(|e| fatal_io("cannot rename into", dest, e))?;
        Ok(digests)
    }
}

/// The next piece of a body; a body that ends early (the connection closed before Content-Length bytes came, or a
/// read timed out) is a transient fault: the next try starts over.
async fn next_chunk(
    response: &mut reqwest::Response,
    received: u64,
    expected: Option<u64>,
) -> Result<Option<impl std::ops::Deref<Target = [u8]> + use<>>, Failure> {
    match response.chunk().await {
        Ok(Some(chunk)) => Ok(Some(chunk)),
        Ok(None) if expected.is_some_and(|e| e != received) => {
            Err(Failure::Transient(Transient::Truncated { received, expected, reason: "the connection closed early".to_string() }))
        }
        Ok(None) => Ok(None),
        Err(e) => Err(Failure::Transient(Transient::Truncated { received, expected, reason: error_chain(&e) })),
    }
}

fn fatal_io(what: &'static str, path: &Path, e: std::io::Error) -> Failure {
    Failure::Fatal(ArtifactError::io(what, path, e))
}

/// reqwest's Display stops at "error sending request"; the cause ("Connection refused") is in the source chain.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

/// A temp file beside its target (same file system, so the rename is atomic), removed unless kept.
pub struct PartFile {
    pub path: PathBuf,
    kept: bool,
}

impl PartFile {
    pub fn beside(target: &Path) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let unique = format!(".{name}.part-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        Self { path: target.with_file_name(unique), kept: false }
    }

    pub fn keep_as(mut self, target: &Path) -> std::io::Result<()> {
        std::fs::rename(&self.path, target)?;
        self.kept = true;
        Ok(())
    }
}

impl Drop for PartFile {
    fn drop(&mut self) {
        if !self.kept {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let r = Retry { attempts: 9, first_delay: Duration::from_millis(500), max_delay: Duration::from_secs(8) };
        let delays: Vec<u64> = (1..=7).map(|f| r.delay(f).as_millis() as u64).collect();
        assert_eq!(delays, [500, 1000, 2000, 4000, 8000, 8000, 8000]);
    }

    #[test]
    fn an_unkept_part_file_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("kubeadm");
        let part = PartFile::beside(&target);
        std::fs::write(&part.path, b"half").unwrap();
        let path = part.path.clone();
        assert!(path.file_name().unwrap().to_string_lossy().starts_with(".kubeadm.part-"));
        drop(part);
        assert!(!path.exists());
        let part = PartFile::beside(&target);
        std::fs::write(&part.path, b"whole").unwrap();
        part.keep_as(&target).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"whole");
    }
}

//! Gets every artifact an inventory needs onto this machine, verified: from the bundle it names, or from the cache,
//! or over HTTP (upstream or the mirror) into the cache. This is what the software phase calls before uploading.
use super::bundle::Bundle;
use super::cache::Cache;
use super::catalogue::{self, Artifact, Base};
use super::checksum::{self, Checksum, Digests};
use super::download::{Http, HttpOptions};
use super::error::ArtifactError;
use crate::inventory::{ArtifactSource, Inventory};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    Bundle,
    Cache,
    Download,
}

/// One artifact on local disk whose content was verified just now.
#[derive(Clone, Debug, Serialize)]
pub struct Obtained {
    pub artifact: Artifact,
    /// In the cache or in the bundle; read it, do not move it.
    pub path: PathBuf,
    /// What the hosts' `sha256sum` of the uploaded file must print.
    pub sha256: String,
    /// Where it came from (for a bundle: where the bundle got it).
    pub url: String,
    pub via: Via,
}

pub struct Options {
    pub cache_root: PathBuf,
    pub http: HttpOptions,
    /// Progress bars on stderr (only sensible when it is a terminal).
    pub progress: bool,
    /// Downloads at once.
    pub parallel: usize,
}

impl Options {
    /// The cache under XDG_CACHE_HOME, default HTTP behaviour, bars when stderr is a terminal.
    pub fn standard() -> Result<Self, ArtifactError> {
        use std::io::IsTerminal;
        let cache_root = Cache::default_root().ok_or(ArtifactError::NoCacheFolder)?;
        Ok(Self { cache_root, http: HttpOptions::default(), progress: std::io::stderr().is_terminal(), parallel: 4 })
    }
}

/// Every artifact `inv` needs, in catalogue order.
pub async fn obtain(inv: &Inventory, options: &Options) -> Result<Vec<Obtained>, ArtifactError> {
    obtain_these(catalogue::needed(inv), &inv.artifacts.source, options).await
}

pub async fn obtain_these(needed: Vec<Artifact>, source: &ArtifactSource, options: &Options) -> Result<Vec<Obtained>, ArtifactError> {
    match source {
        ArtifactSource::Bundle(dir) => {
            let dir = dir.clone();
            blocking(move || {
                let bundle = Bundle::open(&dir)?;
                needed.into_iter().map(|a| from_bundle(&bundle, a)).collect()
            })
            .await
        }
        ArtifactSource::Upstream => over_http(needed, None, options).await,
        ArtifactSource::Mirror(url) => over_http(needed, Some(url.clone()), options).await,
    }
}

fn from_bundle(bundle: &Bundle, artifact: Artifact) -> Result<Obtained, ArtifactError> {
    let (path, digests, entry) = bundle.verified(&artifact)?;
    let url = entry.url.clone();
    Ok(Obtained { artifact, path, sha256: digests.sha256, url, via: Via::Bundle })
}

async fn over_http(needed: Vec<Artifact>, mirror: Option<String>, options: &Options) -> Result<Vec<Obtained>, ArtifactError> {
    let http = Arc::new(Http::new(&options.http)?);
    let cache = Arc::new(Cache::new(options.cache_root.clone()));
    let mirror: Option<Arc<str>> = mirror.map(Arc::from);
    let bars = MultiProgress::with_draw_target(if options.progress { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() });
    let limit = Arc::new(tokio::sync::Semaphore::new(options.parallel.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for (index, artifact) in needed.into_iter().enumerate() {
        let (http, cache, mirror, limit) = (http.clone(), cache.clone(), mirror.clone(), limit.clone());
        let bar = bars.add(ProgressBar::new(0).with_style(bar_style()).with_message(artifact.label()));
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let base = mirror.as_deref().map_or(Base::Upstream, Base::Mirror);
            let result = one(&http, &cache, artifact, base, &bar).await;
            bar.finish_and_clear();
            (index, result)
        });
    }
    let mut results: Vec<(usize, Result<Obtained, ArtifactError>)> = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        results.push(joined.map_err(|e| ArtifactError::Task(format!("a download task failed: {e}")))?);
    }
    // The first failure in catalogue order, so the same fault gives the same message on every run.
    results.sort_by_key(|(index, _)| *index);
    results.into_iter().map(|(_, r)| r).collect()
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template("{msg:32} [{bar:30}] {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12} {eta}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

async fn one(http: &Http, cache: &Arc<Cache>, artifact: Artifact, base: Base<'_>, bar: &ProgressBar) -> Result<Obtained, ArtifactError> {
    let url = artifact.url(base);
    let checksum_url = artifact.checksum_url(base);
    let label = artifact.label();
    let file_name = artifact.file_name().to_string();
    let cached = |checksum: Checksum| {
        let (cache, file_name) = (cache.clone(), file_name.clone());
        blocking(move || Ok(cache.verified(&checksum, &file_name)))
    };
    let done = |artifact: Artifact, path: PathBuf, digests: Digests, url: String, via: Via| Obtained { artifact, path, sha256: digests.sha256, url, via };
    if let Some(known) = cache.known_checksum(&url)
        && let Some((path, digests)) = cached(known).await?
    {
        return Ok(done(artifact, path, digests, url, Via::Cache));
    }
    let text = http.text(&label, &checksum_url).await?;
    let expected = checksum::find_in_file(&text, &file_name, artifact.checksum_algorithm).map_err(|reason| ArtifactError::ChecksumFile {
        artifact: label.clone(),
        url: checksum_url.clone(),
        reason,
    })?;
    let remember = |expected: &Checksum| cache.remember(&url, expected).map_err(|e| ArtifactError::io("cannot write the cache index in", cache.root(), e));
    // The same file may already be cached from another URL (upstream before a mirror was set up).
    if let Some((path, digests)) = cached(expected.clone()).await? {
        remember(&expected)?;
        return Ok(done(artifact, path, digests, url, Via::Cache));
    }
    let dest = cache.blob_path(&expected, &file_name);
    if let Some(dir) = dest.parent() {
        std::fs::create_dir_all(dir).map_err(|e| ArtifactError::io("cannot create", dir, e))?;
    }
    let digests = http.file(&label, &url, &dest, &expected, &checksum_url, bar).await?;
    remember(&expected)?;
    Ok(done(artifact, dest, digests, url, Via::Download))
}

/// Hashing reads whole files: off the async threads, so downloads keep streaming meanwhile.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T, ArtifactError> + Send + 'static) -> Result<T, ArtifactError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| ArtifactError::Task(format!("a hashing task failed: {e}")))?
}

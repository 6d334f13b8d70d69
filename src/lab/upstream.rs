//! The upstream programs the machines run (Kubernetes, etcd and the lab's CRI runtime), built from their Go
//! modules by lab/upstream/build.sh into the lab's cache (keyed and verified there) and bound read-only into
//! every machine at rootfs::UPSTREAM_MOUNT.
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// A finished build: the folder that holds the programs.
pub struct Build {
    pub dir: PathBuf,
    pub seconds: f64,
}

/// The build script: `KUBEHA_LAB_UPSTREAM_BUILD`, or lab/upstream/build.sh of the source tree kubeha was
/// built from (the Go modules it builds live beside it).
fn build_script() -> PathBuf {
    std::env::var_os("KUBEHA_LAB_UPSTREAM_BUILD").map_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("lab/upstream/build.sh"), PathBuf::from)
}

/// Builds the programs unless the cache already holds this build (then it only verifies checksums).
/// The script's progress goes to our stderr; its last stdout line names the folder.
pub fn ensure(cache_dir: &Path) -> Result<Build> {
    let script = build_script();
    if !script.exists() {
        bail!("{} not found: the lab builds Kubernetes and etcd with it (set KUBEHA_LAB_UPSTREAM_BUILD)", script.display());
    }
    let started = Instant::now();
    let output = Command::new("bash")
        .arg(&script)
        .arg(cache_dir)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run {}", script.display()))?;
    if !output.status.success() {
        bail!("{} failed ({}); its messages are above", script.display(), output.status);
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let dir = PathBuf::from(stdout.lines().last().unwrap_or_default().trim());
    if !dir.is_absolute() || !dir.join("SHA256SUMS").exists() {
        bail!("{} printed {:?}, not the folder of a finished build", script.display(), stdout.trim());
    }
    Ok(Build { dir, seconds: started.elapsed().as_secs_f64() })
}

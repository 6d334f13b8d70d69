//! The software phase's effects on one host: OS packages from its package manager, then each artifact
//! obtained on the operator's machine (verified against its upstream checksum), uploaded into kubeha's
//! staging folder, its programs put in place by rename and recorded (`software::Record`), then the units
//! written and a running kubelet restarted. And the swap of a staged etcd binary at its member's restart.
use crate::artifacts::catalogue::{self, Artifact, Kind, Packaging};
use crate::artifacts::{ArtifactError, Obtained, Options};
use crate::inventory::{ArtifactSource, Inventory};
use crate::paths::{SOFTWARE_DIR, SOFTWARE_STAGED_DIR, software_record};
use crate::ssh::{Command, SshError, Transport, Upload, quote};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum SoftwareError {
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    #[error(transparent)]
    Ssh(#[from] SshError),
    #[error("{host}: {artifact} is not an artifact this inventory gives it (the plan and the inventory disagree)")]
    UnknownArtifact { host: String, artifact: String },
    #[error("{host}: cannot read {path}: {message}")]
    Local { host: String, path: String, message: String },
}

/// The artifacts of one run, each obtained (downloaded or found in the cache or bundle, and verified) at
/// most once however many hosts install it, and only when a step needs it.
pub struct Store {
    source: ArtifactSource,
    options: Result<Options, String>,
    obtained: Mutex<HashMap<String, Arc<tokio::sync::OnceCell<Obtained>>>>,
    /// What goes over the wire for each artifact, made once however many hosts receive it.
    wire: Mutex<HashMap<String, Arc<tokio::sync::OnceCell<WireBytes>>>>,
}

/// An artifact's bytes as uploaded, shared by every host's step.
type WireBytes = Arc<Vec<u8>>;

impl Store {
    /// The operator's cache (XDG) and the inventory's source; progress bars stay off (the run's output
    /// reports the step).
    pub fn for_inventory(inv: &Inventory) -> Self {
        let options = Options::standard().map(|o| Options { progress: false, ..o }).map_err(|e| e.to_string());
        Self { source: inv.artifacts.source.clone(), options, obtained: Mutex::default(), wire: Mutex::default() }
    }

    pub fn with_options(inv: &Inventory, options: Options) -> Self {
        Self { source: inv.artifacts.source.clone(), options: Ok(options), obtained: Mutex::default(), wire: Mutex::default() }
    }

    async fn get(&self, artifact: &Artifact) -> Result<Obtained, SoftwareError> {
        let cell = {
            let mut map = self.obtained.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(artifact.label()).or_default().clone()
        };
        let options = self.options.as_ref().map_err(|e| ArtifactError::Task(e.clone()))?;
        let got = cell
            .get_or_try_init(|| async {
                let mut all = crate::artifacts::obtain_these(vec![artifact.clone()], &self.source, options).await?;
                all.pop().ok_or_else(|| ArtifactError::Task(format!("{} was not obtained", artifact.label())))
            })
            .await?;
        Ok(got.clone())
    }
}

impl Store {
    /// The bytes uploaded for `obtained`: a single program gzip-compressed (level 1: a third of the size
    /// at some 50 MB/s, and `gzip` is on every host), an archive as it is (already compressed).
    async fn wire_form(&self, host: &str, obtained: &Obtained) -> Result<WireBytes, SoftwareError> {
        let cell = {
            let mut map = self.wire.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(obtained.artifact.label()).or_default().clone()
        };
        let local = |message: String| SoftwareError::Local { host: host.to_string(), path: obtained.path.display().to_string(), message };
        let (path, packaging) = (obtained.path.clone(), obtained.artifact.packaging);
        let bytes = cell
            .get_or_try_init(|| async {
                tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
                    let raw = std::fs::read(&path)?;
                    match packaging {
                        Packaging::TarGz => Ok(raw),
                        Packaging::Binary => gzip(&raw),
                    }
                })
                .await
                .map_err(|e| local(e.to_string()))?
                .map(Arc::new)
                .map_err(|e| local(e.to_string()))
            })
            .await?;
        Ok(bytes.clone())
    }
}

fn gzip(raw: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::with_capacity(raw.len() / 3), flate2::Compression::fast());
    encoder.write_all(raw)?;
    encoder.finish()
}

/// What one InstallSoftware step does on its host.
pub struct Install<'a> {
    pub artifacts: &'a [String],
    pub staged: &'a [String],
    pub packages: &'a [&'static str],
    pub os_id: Option<&'a str>,
}

/// Packages, then every artifact (staged ones beside), in the plan's order; true when anything changed.
pub async fn install(t: &dyn Transport, inv: &Inventory, store: &Store, step: &Install<'_>) -> Result<bool, SoftwareError> {
    let host = t.host().to_string();
    let mut changed = false;
    if !step.packages.is_empty() {
        install_packages(t, step.packages, step.os_id.unwrap_or_default()).await?;
        changed = true;
    }
    let needed = catalogue::needed_on(inv, &host);
    let find = |label: &String| {
        needed.iter().find(|a| a.label() == *label).cloned().ok_or_else(|| SoftwareError::UnknownArtifact { host: host.clone(), artifact: label.clone() })
    };
    for (label, stage) in step.artifacts.iter().map(|l| (l, false)).chain(step.staged.iter().map(|l| (l, true))) {
        let artifact = find(label)?;
        let obtained = store.get(&artifact).await?;
        let wire = store.wire_form(&host, &obtained).await?;
        put_in_place(t, &obtained, &wire, stage).await?;
        changed = true;
    }
    Ok(changed)
}

async fn install_packages(t: &dyn Transport, packages: &[&str], os_id: &str) -> Result<(), SshError> {
    let names = quote::join(packages.iter().copied());
    let script = match crate::software::package_manager(os_id) {
        // The package index may be stale or empty on a fresh image: one update, then the install again.
        Some("apt") => format!(
            "export DEBIAN_FRONTEND=noninteractive\napt-get install -y -q --no-install-recommends {names} || {{ apt-get update -q && apt-get install -y -q --no-install-recommends {names}; }}"
        ),
        _ => format!("dnf install -y -q {names}"),
    };
    t.run(&Command::script(script).timeout(Duration::from_secs(600))).await.map(|_| ())
}

/// The staging folder's name for an artifact's upload: its checksum, so a killed run's upload is reused
/// as it is; `.gz` for a program that travels compressed.
fn staged_artifact(artifact: &Artifact, sha256: &str) -> String {
    let gz = if artifact.packaging == Packaging::Binary { ".gz" } else { "" };
    format!("{SOFTWARE_STAGED_DIR}/{}-{}{gz}", &sha256[..16], artifact.file_name())
}

/// Uploads the artifact (skipped when the staging folder has it already), takes its programs out, puts each
/// in place by a rename in its own folder (a running program keeps its old file), and writes the record;
/// for a staged artifact the main program and the record wait in the staging folder for `swap_staged`.
async fn put_in_place(t: &dyn Transport, obtained: &Obtained, wire: &[u8], stage: bool) -> Result<(), SoftwareError> {
    let upload_path = staged_artifact(&obtained.artifact, &obtained.sha256);
    t.run(&Command::script(format!("mkdir -p -m 0700 {} {}", quote::quote(SOFTWARE_DIR), quote::quote(SOFTWARE_STAGED_DIR)))).await?;
    t.upload(&Upload { path: upload_path.clone(), contents: wire.to_vec(), mode: 0o644, owner: None }).await?;
    let script = install_script(&obtained.artifact, &obtained.sha256, &upload_path, stage);
    t.run(&Command::script(script).timeout(Duration::from_secs(300))).await?;
    Ok(())
}

/// The program of a kind that a running service executes, and so is staged instead of replaced while it
/// runs: etcd's server (swapped in by its member's gated restart) and the kubelet (swapped in by its node's
/// upgrade, after the drain). The other programs of an artifact go in place at once.
pub fn staged_program(kind: Kind) -> Option<&'static str> {
    match kind {
        Kind::Etcd => Some("etcd"),
        Kind::Kubelet => Some("kubelet"),
        _ => None,
    }
}

/// Where a staged program waits for its swap, and the record that goes with it.
fn staged_paths(kind: Kind) -> (String, String) {
    let program = staged_program(kind).unwrap_or(kind.name());
    (format!("{SOFTWARE_STAGED_DIR}/{program}"), format!("{SOFTWARE_STAGED_DIR}/{}.installed", kind.name()))
}

/// The host's script for one uploaded artifact. Programs are found by name wherever the archive keeps them
/// (etcd in a versioned folder, containerd in bin/, the CNI plugins at the top), exactly one each.
pub fn install_script(artifact: &Artifact, sha256: &str, upload: &str, stage: bool) -> String {
    let q = quote::quote;
    let unpack = match artifact.packaging {
        Packaging::TarGz => format!("tar -xzf {} -C \"$tmp\"", q(upload)),
        // Uncompressed on the host and checked against the checksum verified on the operator's machine: what
        // runs is byte for byte the upstream program.
        Packaging::Binary => format!(
            "gzip -dc -- {upload} > \"$tmp\"/{p}\nprintf '%s  %s\\n' {sha} \"$tmp\"/{p} | sha256sum -c --quiet - || {{ echo {bad} >&2; exit 1; }}",
            upload = q(upload),
            p = q(artifact.kind.provides()[0]),
            sha = q(sha256),
            bad = q(&format!("{} does not match its checksum after the upload", artifact.label())),
        ),
    };
    let (staged_binary, staged_record) = staged_paths(artifact.kind);
    let record = if stage { staged_record } else { software_record(artifact.kind.name()) };
    let mut s = format!(
        "set -eu\numask 022\ntmp=$(mktemp -d {})\ntrap 'rm -rf -- \"$tmp\"' EXIT\n{unpack}\n\
         printf 'artifact %s %s %s\\n' {} {} {} > \"$tmp/.record\"\n",
        q(&format!("{SOFTWARE_STAGED_DIR}/unpack.XXXXXX")),
        q(&artifact.version.to_string()),
        q(artifact.arch.name()),
        q(sha256),
    );
    for program in artifact.kind.provides() {
        let dest = artifact.kind.install_path(program);
        let place = if stage && staged_program(artifact.kind) == Some(*program) { staged_binary.clone() } else { dest.clone() };
        s.push_str(&format!(
            "found=$(find \"$tmp\" -type f -name {p} ! -name '.*')\n\
             [ -n \"$found\" ] && [ \"$(printf '%s\\n' \"$found\" | wc -l)\" -eq 1 ] || {{ echo {missing} >&2; exit 1; }}\n\
             mkdir -p -- \"$(dirname -- {place})\"\ninstall -m 0755 -- \"$found\" {place}.kubeha-new\nmv -f -- {place}.kubeha-new {place}\n\
             printf 'program %s %s\\n' \"$(sha256sum < {place} | cut -c1-64)\" {dest} >> \"$tmp/.record\"\n",
            p = q(program),
            missing = q(&format!("{} holds no single {program}", artifact.file_name())),
            place = q(&place),
            dest = q(&dest),
        ));
    }
    // The record last: it says what is in place, so a kill before it makes the next run install again.
    s.push_str(&format!("mv -f -- \"$tmp/.record\" {rec}\nsync -- {rec}\nrm -f -- {}\n", q(upload), rec = q(&record)));
    s
}

/// The shell that swaps a staged program in before its service (re)starts, and the one that records it
/// after: between them the unit restarts on the new binary. Refuses when nothing is staged (a plan from
/// another run).
pub fn swap_staged(kind: Kind) -> (String, String) {
    let (binary, record) = staged_paths(kind);
    let program = staged_program(kind).unwrap_or(kind.name());
    let q = quote::quote;
    let before = format!(
        "{{ [ -f {b} ] && [ -f {r} ]; }} || {{ echo 'no staged {program} binary in {dir}: run kubeha apply again (it stages it in the software phase)' >&2; exit 1; }}\n\
         {{ install -m 0755 -- {b} {dest}.kubeha-new && mv -f -- {dest}.kubeha-new {dest}; }} || exit 1\n",
        b = q(&binary),
        r = q(&record),
        dir = SOFTWARE_STAGED_DIR,
        dest = q(&kind.install_path(program)),
    );
    let after = format!(" && mv -f -- {r} {installed} && rm -f -- {b}", r = q(&record), installed = q(&software_record(kind.name())), b = q(&binary));
    (before, after)
}

/// After the units are written: systemd reads them, the kubelet is enabled (kubeadm starts it), containerd
/// is enabled and started when kubeha runs it, and `restart` restarted (they ran on what was replaced).
pub async fn units(t: &dyn Transport, kubelet: bool, containerd: bool, restart: &[&str]) -> Result<(), SshError> {
    let mut script = String::from("set -e\nsystemctl daemon-reload\n");
    if kubelet {
        script.push_str("systemctl enable kubelet.service >/dev/null 2>&1\n");
    }
    if containerd {
        script.push_str("systemctl enable --now containerd.service >/dev/null 2>&1\n");
    }
    for unit in restart {
        script.push_str(&format!("systemctl restart {}.service\n", quote::quote(unit)));
    }
    t.run(&Command::script(script).timeout(Duration::from_secs(120))).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifacts::catalogue::file;
    use crate::inventory::{Arch, Version};

    /// The install script on a real tarball in a temp root: programs placed by rename, the record lists each
    /// with its checksum, the upload removed; a staged etcd waits beside with its record.
    #[test]
    fn the_install_script_places_programs_and_records_them() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let src = root.join("src/etcd-v3.6.16-linux-amd64");
        std::fs::create_dir_all(&src).unwrap();
        for p in ["etcd", "etcdctl", "etcdutl", "README.md"] {
            std::fs::write(src.join(p), format!("{p} program\n")).unwrap();
        }
        let tarball = root.join("etcd.tar.gz");
        let ok = std::process::Command::new("tar").arg("-czf").arg(&tarball).arg("-C").arg(root.join("src")).arg(".").status().unwrap();
        assert!(ok.success());
        let artifact = file(Kind::Etcd, Version::new(3, 6, 16), Arch::Amd64, vec![]);
        let rooted = |script: String| {
            script
                .replace(SOFTWARE_STAGED_DIR, &root.join("staged").display().to_string())
                .replace(SOFTWARE_DIR, &root.join("software").display().to_string())
                .replace("/usr/local/bin", &root.join("bin").display().to_string())
        };
        for d in ["staged", "software", "bin"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        let run = |script: String| {
            let out = std::process::Command::new("sh").arg("-c").arg(rooted(script)).output().unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        };
        let upload = format!("{SOFTWARE_STAGED_DIR}/upload.tar.gz");
        std::fs::copy(&tarball, rooted(upload.clone())).unwrap();
        run(install_script(&artifact, &"f".repeat(64), &upload, false));
        let record = std::fs::read_to_string(root.join("software/etcd.installed")).unwrap();
        let sha = |p: &str| crate::digest::sha256_hex(format!("{p} program\n").as_bytes());
        assert_eq!(
            record,
            format!(
                "artifact 3.6.16 amd64 {}\nprogram {} /usr/local/bin/etcd\nprogram {} /usr/local/bin/etcdctl\nprogram {} /usr/local/bin/etcdutl\n",
                "f".repeat(64),
                sha("etcd"),
                sha("etcdctl"),
                sha("etcdutl")
            )
            .replace("/usr/local/bin", &root.join("bin").display().to_string())
        );
        assert_eq!(std::fs::read_to_string(root.join("bin/etcdctl")).unwrap(), "etcdctl program\n");
        assert!(!std::path::Path::new(&rooted(upload.clone())).exists(), "the upload is removed once installed");

        // Staged: etcd itself waits in the staging folder, etcdctl and etcdutl are replaced at once.
        std::fs::write(src.join("etcd"), "etcd 3.6.17\n").unwrap();
        let ok = std::process::Command::new("tar").arg("-czf").arg(rooted(upload.clone())).arg("-C").arg(root.join("src")).arg(".").status().unwrap();
        assert!(ok.success());
        run(install_script(&artifact, &"e".repeat(64), &upload, true));
        assert_eq!(std::fs::read_to_string(root.join("bin/etcd")).unwrap(), "etcd program\n", "the running binary stays");
        assert_eq!(std::fs::read_to_string(root.join("staged/etcd")).unwrap(), "etcd 3.6.17\n");
        let (before, after) = swap_staged(Kind::Etcd);
        run(format!("{before}true{after}"));
        assert_eq!(std::fs::read_to_string(root.join("bin/etcd")).unwrap(), "etcd 3.6.17\n");
        assert!(std::fs::read_to_string(root.join("software/etcd.installed")).unwrap().starts_with(&format!("artifact 3.6.16 amd64 {}", "e".repeat(64))));
        let out = std::process::Command::new("sh").arg("-c").arg(rooted(format!("{before}true{after}"))).output().unwrap();
        assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("no staged etcd binary"), "nothing staged: refused");
    }

    /// A single program travels gzip-compressed (a third of kubelet's bytes) and is checked, uncompressed on
    /// the host, against the checksum verified on the operator's machine: a damaged upload is refused.
    #[test]
    fn a_program_travels_compressed_and_is_checked_after_the_upload() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for d in ["staged", "software", "bin"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        let program = b"#!/bin/sh\necho kubelet v1.36.3\n".repeat(1000);
        let sha = crate::digest::sha256_hex(&program);
        let wire = gzip(&program).unwrap();
        assert!(wire.len() * 10 < program.len(), "compressed: {} of {} bytes", wire.len(), program.len());
        let artifact = file(Kind::Kubelet, Version::new(1, 36, 3), Arch::Amd64, vec![]);
        let upload = staged_artifact(&artifact, &sha);
        assert!(upload.ends_with("-kubelet.gz"), "{upload}");
        let rooted = |script: String| {
            script
                .replace(SOFTWARE_STAGED_DIR, &root.join("staged").display().to_string())
                .replace(SOFTWARE_DIR, &root.join("software").display().to_string())
                .replace("/usr/local/bin", &root.join("bin").display().to_string())
        };
        let run = |wire: &[u8]| {
            std::fs::write(rooted(upload.clone()), wire).unwrap();
            std::process::Command::new("sh").arg("-c").arg(rooted(install_script(&artifact, &sha, &upload, false))).output().unwrap()
        };
        let out = run(&wire);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(std::fs::read(root.join("bin/kubelet")).unwrap(), program);
        assert!(std::fs::read_to_string(root.join("software/kubelet.installed")).unwrap().contains(&format!("program {sha} ")));

        std::fs::remove_file(root.join("software/kubelet.installed")).unwrap();
        let other = gzip(b"not the kubelet").unwrap();
        let out = run(&other);
        assert!(!out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("kubelet 1.36.3 (amd64) does not match its checksum after the upload"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!root.join("software/kubelet.installed").exists(), "nothing recorded from a damaged upload");
    }

    #[test]
    fn an_archive_without_the_program_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("src")).unwrap();
        std::fs::write(root.join("src/readme"), "x").unwrap();
        let upload = root.join("a.tar.gz");
        assert!(std::process::Command::new("tar").arg("-czf").arg(&upload).arg("-C").arg(root.join("src")).arg(".").status().unwrap().success());
        let artifact = file(Kind::Crictl, Version::new(1, 36, 0), Arch::Amd64, vec![]);
        let script = install_script(&artifact, &"f".repeat(64), &upload.display().to_string(), false)
            .replace(SOFTWARE_STAGED_DIR, &root.display().to_string())
            .replace(SOFTWARE_DIR, &root.display().to_string())
            .replace("/usr/local/bin", &root.join("bin").display().to_string());
        let out = std::process::Command::new("sh").arg("-c").arg(script).output().unwrap();
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("holds no single crictl"), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(!root.join("crictl.installed").exists(), "no record for what was not installed");
    }
}

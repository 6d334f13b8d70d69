//! The artifact layer against a fake mirror on 127.0.0.1 (no internet): downloads verified against upstream-style
//! checksum files, the cache, retries and the faults that must not be retried, bundles written and read back.
#[path = "support/mirror.rs"]
mod mirror;

use assert_cmd::Command;
use kubeha::artifacts::download::{HttpOptions, Retry};
use kubeha::artifacts::{self, Artifact, ArtifactError, Options, Via, catalogue};
use kubeha::inventory::{Inventory, PathContext};
use mirror::{Mirror, Reply};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::time::Duration;

const ATTEMPTS: u32 = 3;

/// The lab inventory with containerd as the runtime (so all eight artifacts are needed) and `artifacts` added.
fn inventory_yaml(artifacts: &str) -> String {
    kubeha::test_support::lab_yaml_without_artifacts().replace("    containerRuntimeEndpoint: unix:///run/kubeha-lab-cri/cri.sock\n", "").replacen(
        "spec:\n",
        &format!("spec:\n  artifacts:\n{artifacts}"),
        1,
    )
}

fn inventory(artifacts: &str) -> Inventory {
    let loaded = kubeha::inventory::parse("t.yaml".into(), inventory_yaml(artifacts), &PathContext { inventory_dir: ".".into(), home: None });
    loaded.inventory.unwrap_or_else(|| panic!("{:?}", loaded.diagnostics))
}

fn mirrored(m: &Mirror) -> Inventory {
    inventory(&format!("    mirror: {}/\n", m.base))
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn content(a: &Artifact) -> Vec<u8> {
    format!("fake {} for the test mirror\n", a.label()).repeat(200).into_bytes()
}

/// Serves every artifact of `inv` and its checksum file the way its project publishes it: Kubernetes a bare digest,
/// the GitHub projects `sha256sum` lines, etcd and runc one file for all arches (another arch's line first).
fn publish(m: &Mirror, inv: &Inventory) -> Vec<Artifact> {
    let needed = catalogue::needed(inv);
    for a in &needed {
        let body = content(a);
        let digest = sha256(&body);
        let sums = match a.origin {
            catalogue::Origin::Kubernetes => format!("{digest}\n"),
            _ if a.checksum_path.ends_with("SHA256SUMS") || a.checksum_path.ends_with("runc.sha256sum") => {
                format!("{}  {}\n{digest}  {}\n", sha256(b"other"), a.file_name().replace("amd64", "arm64"), a.file_name())
            }
            _ => format!("{digest}  {}\n", a.file_name()),
        };
        m.serve(&a.path, body);
        m.serve(&a.checksum_path, sums);
    }
    needed
}

/// A started mirror publishing every artifact of the inventory that points at it, and an empty cache.
fn published() -> (Mirror, Inventory, Vec<Artifact>, tempfile::TempDir) {
    let m = Mirror::start();
    let inv = mirrored(&m);
    let needed = publish(&m, &inv);
    (m, inv, needed, tempfile::tempdir().unwrap())
}

fn options(cache: &Path) -> Options {
    let retry = Retry { attempts: ATTEMPTS, first_delay: Duration::from_millis(1), max_delay: Duration::from_millis(2) };
    let http = HttpOptions { connect_timeout: Duration::from_secs(2), read_timeout: Duration::from_secs(5), retry };
    Options { cache_root: cache.to_path_buf(), http, progress: false, parallel: 4 }
}

fn find<'a>(needed: &'a [Artifact], name: &str) -> &'a Artifact {
    needed.iter().find(|a| a.name() == name).unwrap()
}

/// No file of that name anywhere under `dir`, finished or partial.
fn files_named(dir: &Path, name: &str) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_named(&p, name));
            } else if p.file_name().unwrap().to_string_lossy().contains(name) {
                out.push(p.display().to_string());
            }
        }
    }
    out
}

#[tokio::test]
async fn downloads_are_verified_cached_and_reused_without_any_request() {
    let (m, inv, needed, cache) = published();
    let first = artifacts::obtain(&inv, &options(cache.path())).await.unwrap();
    assert_eq!(first.len(), 8);
    for (o, a) in first.iter().zip(&needed) {
        assert_eq!(o.via, Via::Download, "{}", a.label());
        assert_eq!(std::fs::read(&o.path).unwrap(), content(a));
        assert_eq!(o.sha256, sha256(&content(a)));
        assert_eq!(o.url, format!("{}/{}", m.base, a.path));
        assert!(o.path.starts_with(cache.path()));
    }
    assert_eq!(m.total_hits(), 16, "each file and each checksum file once");

    let second = artifacts::obtain(&inv, &options(cache.path())).await.unwrap();
    assert!(second.iter().all(|o| o.via == Via::Cache));
    assert_eq!(m.total_hits(), 16, "a cache hit makes no HTTP request");

    // A cached file that went bad is noticed (it is hashed before reuse) and downloaded again.
    let kubelet = second.iter().find(|o| o.artifact.name() == "kubelet").unwrap();
    std::fs::write(&kubelet.path, b"bit rot").unwrap();
    let third = artifacts::obtain(&inv, &options(cache.path())).await.unwrap();
    let again = third.iter().find(|o| o.artifact.name() == "kubelet").unwrap();
    assert_eq!(again.via, Via::Download);
    assert_eq!(std::fs::read(&again.path).unwrap(), content(find(&needed, "kubelet")));
    assert_eq!(m.hits(&find(&needed, "kubelet").path), 2);
    assert_eq!(m.total_hits(), 18);
}

#[tokio::test]
async fn a_checksum_mismatch_is_refused_and_nothing_is_kept() {
    let (m, inv, needed, cache) = published();
    let kubeadm = find(&needed, "kubeadm");
    m.serve(&kubeadm.path, b"a corrupted kubeadm".to_vec());
    let err = artifacts::obtain(&inv, &options(cache.path())).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ArtifactError::Mismatch(_)), "{text}");
    let expected = format!(
        "kubeadm 1.36.3 (amd64): checksum mismatch for {}/{}: expected sha256:{} (from {}/{}), got sha256:{}; the file was not kept",
        m.base,
        kubeadm.path,
        sha256(&content(kubeadm)),
        m.base,
        kubeadm.checksum_path,
        sha256(b"a corrupted kubeadm")
    );
    assert_eq!(text, expected);
    assert_eq!(m.hits(&kubeadm.path), 1, "a mismatch is not a transient fault");
    assert_eq!(files_named(cache.path(), "kubeadm"), Vec::<String>::new());
}

#[tokio::test]
async fn not_found_is_reported_at_once_without_retries() {
    let (m, inv, needed, cache) = published();
    let kubelet = find(&needed, "kubelet");
    m.script(&kubelet.path, vec![Reply::Status(404)]);
    let err = artifacts::obtain(&inv, &options(cache.path())).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("kubelet 1.36.3 (amd64): {}/{} answered 404 Not Found (is the version right, and does the mirror have this file?)", m.base, kubelet.path)
    );
    assert_eq!(m.hits(&kubelet.path), 1);
}

#[tokio::test]
async fn server_errors_are_retried_until_the_file_comes() {
    let (m, inv, needed, cache) = published();
    let kubectl = find(&needed, "kubectl");
    m.script(&kubectl.path, vec![Reply::Status(500), Reply::Status(503), Reply::Body(content(kubectl))]);
    m.script(&kubectl.checksum_path, vec![Reply::Status(502), Reply::Body(format!("{}\n", sha256(&content(kubectl))).into_bytes())]);
    let got = artifacts::obtain(&inv, &options(cache.path())).await.unwrap();
    assert_eq!(got.iter().find(|o| o.artifact.name() == "kubectl").unwrap().via, Via::Download);
    assert_eq!((m.hits(&kubectl.path), m.hits(&kubectl.checksum_path)), (3, 2));

    // Past the last attempt the status is the error (a fresh cache, or kubectl would come from it).
    let cache = tempfile::tempdir().unwrap();
    m.script(&kubectl.path, vec![Reply::Status(500)]);
    let err = artifacts::obtain(&inv, &options(cache.path())).await.unwrap_err();
    assert_eq!(err.to_string(), format!("kubectl 1.36.3 (amd64): {}/{} answered HTTP 500 (after 3 attempt(s))", m.base, kubectl.path));
    assert_eq!(m.hits(&kubectl.path), 3 + ATTEMPTS as usize);
}

#[tokio::test]
async fn a_body_shorter_than_its_content_length_is_retried_then_reported() {
    let (m, inv, needed, cache) = published();
    let crictl = find(&needed, "crictl");
    let full = content(crictl);
    m.script(&crictl.path, vec![Reply::Truncated { body: full[..1000].to_vec(), declared: full.len() }]);
    let err = artifacts::obtain(&inv, &options(cache.path())).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ArtifactError::Truncated { received: 1000, .. }), "{text}");
    let head = format!("crictl 1.36.0 (amd64): the download of {}/{} was cut short after 1000 of {} bytes: ", m.base, crictl.path, full.len());
    assert!(text.starts_with(&head) && text.ends_with("(after 3 attempt(s))"), "{text}");
    assert_eq!(m.hits(&crictl.path), ATTEMPTS as usize);
    assert_eq!(files_named(cache.path(), "crictl"), Vec::<String>::new(), "no partial file is left");

    // Cut short once, whole the next time: the retry starts over and the file is good.
    m.script(&crictl.path, vec![Reply::Truncated { body: full[..10].to_vec(), declared: full.len() }, Reply::Body(full.clone())]);
    let got = artifacts::obtain(&inv, &options(cache.path())).await.unwrap();
    assert_eq!(std::fs::read(&got.iter().find(|o| o.artifact.name() == "crictl").unwrap().path).unwrap(), full);
}

#[tokio::test]
async fn an_unreachable_mirror_names_the_url() {
    let (mut m, inv, _, cache) = published();
    m.stop();
    let err = artifacts::obtain(&inv, &options(cache.path())).await.unwrap_err().to_string();
    let etcd_sums = format!("{}/etcd-io/etcd/releases/download/v3.6.16/SHA256SUMS", m.base);
    assert!(err.starts_with(&format!("etcd 3.6.16 (amd64): cannot reach {etcd_sums}: ")), "{err}");
    assert!(err.contains("Connection refused") && err.ends_with("(after 3 attempt(s))"), "{err}");
}

fn kubeha(cache: &Path) -> Command {
    let mut c = Command::cargo_bin("kubeha").unwrap();
    c.env("XDG_CACHE_HOME", cache).env_remove("HTTP_PROXY").env_remove("http_proxy");
    c
}

fn write_inventory(dir: &Path, artifacts: &str) -> std::path::PathBuf {
    let path = dir.join("cluster.yaml");
    std::fs::write(&path, inventory_yaml(artifacts)).unwrap();
    path
}

fn manifest(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap()
}

/// `artifacts fetch -o DIR` with the mirror up, then DIR as `spec.artifacts.bundle` with the mirror stopped: the
/// same files come out of it, verified against the manifest, and a second bundle can be made from the first.
#[test]
fn a_fetched_bundle_serves_the_inventory_with_the_mirror_stopped() {
    let work = tempfile::tempdir().unwrap();
    let (mut m, _, needed, _) = published();
    let online = write_inventory(work.path(), &format!("    mirror: {}\n", m.base));
    let bundle = work.path().join("bundle");
    let out = kubeha(&work.path().join("cache")).args(["artifacts", "fetch", "-i"]).arg(&online).arg("-o").arg(&bundle).assert().success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(stdout.contains("wrote a bundle of 8 file(s)"), "{stdout}");
    let written = manifest(&bundle);
    assert_eq!(written["format"], "kubeha-bundle/v1");
    let entries = written["artifacts"].as_array().unwrap();
    assert_eq!(entries.len(), 8);
    for (e, a) in entries.iter().zip(&needed) {
        assert_eq!(e["name"], a.name());
        assert_eq!(e["version"], a.version.to_string());
        assert_eq!(e["url"], format!("{}/{}", m.base, a.path));
        assert_eq!(e["sha256"], sha256(&content(a)));
        assert_eq!(std::fs::read(bundle.join(e["file"].as_str().unwrap())).unwrap(), content(a));
    }
    m.stop();

    let offline_dir = tempfile::tempdir().unwrap();
    let offline = write_inventory(offline_dir.path(), &format!("    bundle: {}\n", bundle.display()));
    let copy = work.path().join("copy");
    kubeha(&work.path().join("cache-2")).args(["artifacts", "fetch", "-i"]).arg(&offline).arg("-o").arg(&copy).assert().success();
    let copied = manifest(&copy);
    assert_eq!(copied["artifacts"], written["artifacts"], "the copy lists the same files, urls and digests");

    let listed = kubeha(&work.path().join("cache-2")).args(["artifacts", "list", "--output", "json", "-i"]).arg(&offline).assert().success();
    let listed: serde_json::Value = serde_json::from_slice(&listed.get_output().stdout).unwrap();
    assert_eq!(listed["source"], "bundle");
    assert_eq!(listed["artifacts"][1]["from"], bundle.join(&needed[1].path).display().to_string());
    assert_eq!(listed["artifacts"][1]["checksum"]["value"], sha256(&content(&needed[1])));
}

#[tokio::test]
async fn a_bundle_missing_a_file_or_holding_a_corrupted_one_is_refused() {
    let (_mirror, inv, needed, cache) = published();
    let got = artifacts::obtain(&inv, &options(cache.path())).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    artifacts::bundle::write(dir.path(), &got).unwrap();
    let from_bundle = inventory(&format!("    bundle: {}\n", dir.path().display()));
    let ok = artifacts::obtain(&from_bundle, &options(cache.path())).await.unwrap();
    assert!(ok.iter().all(|o| o.via == Via::Bundle && o.path.starts_with(dir.path())));

    let runc = find(&needed, "runc");
    let runc_path = dir.path().join(&runc.path);
    std::fs::write(&runc_path, b"not runc").unwrap();
    let err = artifacts::obtain(&from_bundle, &options(cache.path())).await.unwrap_err().to_string();
    let manifest = dir.path().join("manifest.json");
    assert_eq!(
        err,
        format!(
            "runc 1.3.3 (amd64): checksum mismatch for {}: expected sha256:{} (from {}), got sha256:{}; the file was not kept",
            runc_path.display(),
            sha256(&content(runc)),
            manifest.display(),
            sha256(b"not runc")
        )
    );

    std::fs::remove_file(&runc_path).unwrap();
    let err = artifacts::obtain(&from_bundle, &options(cache.path())).await.unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "runc 1.3.3 (amd64): the bundle has no file {} (its manifest lists it); write the bundle again with `kubeha artifacts fetch -i FILE -o DIR`",
            runc_path.display()
        )
    );

    // A bundle made for another inventory (other versions) lacks entries; that is said, not guessed around.
    let other = inventory(&format!("    bundle: {}\n    versions: {{runc: 1.3.4}}\n", dir.path().display()));
    let err = artifacts::obtain(&other, &options(cache.path())).await.unwrap_err().to_string();
    assert!(err.starts_with(&format!("runc 1.3.4 (amd64): bundle {} has no entry for it", manifest.display())), "{err}");
}

#[test]
fn list_json_names_source_hosts_and_where_the_checksum_comes_from() {
    let work = tempfile::tempdir().unwrap();
    let path = write_inventory(work.path(), "    mirror: http://127.0.0.1:9/base/\n    arch: arm64\n");
    let out = kubeha(work.path()).args(["artifacts", "list", "--output", "json", "-i"]).arg(&path).assert().success();
    let doc: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(doc["source"], "mirror");
    assert_eq!(doc["arch"], "arm64");
    let list = doc["artifacts"].as_array().unwrap();
    let names: Vec<&str> = list.iter().map(|a| a["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["etcd", "kubeadm", "kubelet", "kubectl", "crictl", "cni-plugins", "containerd", "runc"]);
    let etcd = &list[0];
    assert_eq!(etcd["version"], "3.6.16");
    assert_eq!(etcd["scope"], "control-planes");
    assert_eq!(etcd["hosts"], serde_json::json!(["cp-1", "cp-2", "cp-3"]));
    assert_eq!(etcd["provides"], serde_json::json!(["etcd", "etcdctl", "etcdutl"]));
    assert_eq!(etcd["packaging"], "tar.gz");
    assert_eq!(etcd["from"], "http://127.0.0.1:9/base/etcd-io/etcd/releases/download/v3.6.16/etcd-v3.6.16-linux-arm64.tar.gz");
    assert_eq!(
        etcd["checksum"],
        serde_json::json!({"algorithm": "sha256", "value": null, "from": "http://127.0.0.1:9/base/etcd-io/etcd/releases/download/v3.6.16/SHA256SUMS"})
    );
    assert_eq!(list[1]["scope"], "all-nodes");
    assert_eq!(list[1]["hosts"].as_array().unwrap().len(), 5);
    assert_eq!(list[1]["from"], "http://127.0.0.1:9/base/release/v1.36.3/bin/linux/arm64/kubeadm");

    let text = kubeha(work.path()).args(["artifacts", "list", "-i"]).arg(&path).assert().success();
    let text = String::from_utf8_lossy(&text.get_output().stdout).into_owned();
    assert!(text.contains("kubeadm 1.36.3 (arm64): kubeadm for every node: cp-1, cp-2, cp-3, wk-1, wk-2\n"), "{text}");
    assert!(text.contains("  sha256   from http://127.0.0.1:9/base/release/v1.36.3/bin/linux/arm64/kubeadm.sha256\n"), "{text}");
}

#[test]
fn fetching_from_a_broken_bundle_fails_with_the_path_and_writes_nothing() {
    let work = tempfile::tempdir().unwrap();
    let empty = work.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let path = write_inventory(work.path(), &format!("    bundle: {}\n", empty.display()));
    let out = work.path().join("out");
    kubeha(work.path())
        .args(["artifacts", "fetch", "-i"])
        .arg(&path)
        .arg("-o")
        .arg(&out)
        .assert()
        .code(1)
        .stderr(predicates::str::contains(format!("error: bundle manifest {}/manifest.json: cannot read it", empty.display())));
    assert!(!out.exists());
}

//! Every kubeadm file kubeha renders must be accepted by the real kubeadm (`kubeadm config validate`), not
//! only by our own golden files and the lab stand-ins' schema.
//!
//! The kubeadm binary is `$KUBEHA_KUBEADM` if set, else `kubeadm` on PATH. Without one the test fails:
//! scripts/test.sh builds it (lab/upstream/build.sh) and points KUBEHA_KUBEADM at it.
use assert_cmd::Command;
use std::path::{Path, PathBuf};

/// Inventories that `kubeha check` rejects on purpose (examples of errors). None today: every file under
/// inventories/ is meant to be a working cluster.
const REJECTED_ON_PURPOSE: &[&str] = &[];

fn kubeadm() -> PathBuf {
    if let Some(p) = std::env::var_os("KUBEHA_KUBEADM") {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "KUBEHA_KUBEADM={} is not a file", p.display());
        return p;
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| std::env::split_paths(&paths).map(|d| d.join("kubeadm")).find(|p| p.is_file()));
    on_path.unwrap_or_else(|| {
        panic!(
            "no kubeadm: set KUBEHA_KUBEADM to a kubeadm binary or put kubeadm on PATH; scripts/test.sh builds it \
             (lab/upstream/build.sh) and sets KUBEHA_KUBEADM"
        )
    })
}

fn kubeadm_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            kubeadm_files(&path, out);
        } else if path.ends_with("etc/kubeha/kubeadm.yaml") {
            out.push(path);
        }
    }
}

#[test]
fn rendered_kubeadm_configs_pass_real_kubeadm_validation() {
    let kubeadm = kubeadm();
    let mut inventories: Vec<PathBuf> =
        std::fs::read_dir("inventories").unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|x| x == "yaml")).collect();
    inventories.sort();
    assert!(!inventories.is_empty());
    let tmp = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    let mut validated = 0;
    for inventory in &inventories {
        let name = inventory.file_stem().unwrap().to_string_lossy().to_string();
        if REJECTED_ON_PURPOSE.contains(&name.as_str()) {
            continue;
        }
        let out = tmp.path().join(&name);
        Command::cargo_bin("kubeha").unwrap().args(["render", "-i"]).arg(inventory).arg("-o").arg(&out).assert().success();
        let mut files = Vec::new();
        kubeadm_files(&out, &mut files);
        files.sort();
        assert!(!files.is_empty(), "{name}: no kubeadm file rendered");
        for file in files {
            let run = std::process::Command::new(&kubeadm).args(["config", "validate", "--config"]).arg(&file).output().unwrap();
            validated += 1;
            if !run.status.success() {
                let shown = file.strip_prefix(tmp.path()).unwrap_or(&file).display().to_string();
                failures.push(format!(
                    "{shown}: kubeadm config validate exited {:?}\n{}{}\n--- file ---\n{}",
                    run.status.code(),
                    String::from_utf8_lossy(&run.stdout),
                    String::from_utf8_lossy(&run.stderr),
                    std::fs::read_to_string(&file).unwrap()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "real kubeadm ({}) rejected {} of {validated} files:\n\n{}", kubeadm.display(), failures.len(), failures.join("\n\n"));
}

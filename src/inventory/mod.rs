//! The inventory: raw YAML in, a validated model (or every finding about it) out.
mod build;
mod checks;
pub mod diagnostic;
mod model;
mod reader;
pub mod support;
mod yaml;

pub use build::{API_VERSION, KIND, PathContext};
pub use diagnostic::{Diagnostic, Diagnostics, Mark, Severity};
pub use model::*;

use std::path::{Path, PathBuf};

/// The source text next to its findings, so reports can quote the lines they point at.
#[derive(Debug)]
pub struct Loaded {
    pub file: String,
    pub source: String,
    pub inventory: Option<Inventory>,
    pub diagnostics: Vec<Diagnostic>,
}

/// Files beyond this size are not inventories; refusing them early bounds memory for any input.
const MAX_INVENTORY_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read inventory {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("inventory {path} is {size} bytes; the limit is {MAX_INVENTORY_BYTES}")]
    TooLarge { path: String, size: u64 },
}

/// Reads and validates an inventory file. Relative paths inside it are taken from the file's folder.
pub fn load(path: &Path) -> Result<Loaded, LoadError> {
    let shown = path.display().to_string();
    let size = std::fs::metadata(path).map_err(|source| LoadError::Read { path: shown.clone(), source })?.len();
    if size > MAX_INVENTORY_BYTES {
        return Err(LoadError::TooLarge { path: shown, size });
    }
    let bytes = std::fs::read(path).map_err(|source| LoadError::Read { path: shown.clone(), source })?;
    let inventory_dir = path.parent().map(Path::to_path_buf).filter(|p| !p.as_os_str().is_empty()).unwrap_or_else(|| PathBuf::from("."));
    let paths = PathContext { inventory_dir, home: std::env::var_os("HOME").map(PathBuf::from) };
    Ok(parse_bytes(shown, bytes, &paths))
}

/// Validates an inventory file's bytes (`load` without the file system; the fuzz targets start here).
pub fn parse_bytes(file: String, bytes: Vec<u8>, paths: &PathContext) -> Loaded {
    match String::from_utf8(bytes) {
        Ok(source) => parse(file, source, paths),
        Err(e) => {
            // The bytes before the first invalid one are unchanged in the lossy text, so the offset holds there.
            let offset = e.utf8_error().valid_up_to();
            let source = String::from_utf8_lossy(e.as_bytes()).into_owned();
            let line = source[..offset.min(source.len())].matches('\n').count() as u32 + 1;
            let diagnostic = Diagnostic::error("", Some(Mark { line, column: 1, offset }), "the file is not valid UTF-8");
            Loaded { file, source, inventory: None, diagnostics: vec![diagnostic] }
        }
    }
}

/// Validates inventory text; `file` is only the name used in messages.
pub fn parse(file: String, source: String, paths: &PathContext) -> Loaded {
    let mut diags = Diagnostics::default();
    let mut duplicate_keys = Vec::new();
    let inventory = match yaml::parse(&source, &mut duplicate_keys) {
        Ok(Some(root)) => build::inventory(&root, paths, &mut diags),
        Ok(None) => {
            diags.error("", None, "the inventory is empty; `kubeha init` writes an example to start from");
            None
        }
        Err(fatal) => {
            diags.push(fatal);
            None
        }
    };
    for d in duplicate_keys {
        diags.push(d);
    }
    // A duplicate key alone does not stop the walk (the first value is used), but it is still an error.
    let inventory = if diags.has_errors() { None } else { inventory };
    Loaded { file, source, inventory, diagnostics: diags.into_sorted() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_certificates(extra: &str) -> Loaded {
        let lab = crate::test_support::lab_yaml_without_artifacts();
        let yaml = lab.replacen("spec:\n", &format!("spec:\n{extra}"), 1);
        parse("t.yaml".into(), yaml, &PathContext { inventory_dir: ".".into(), home: None })
    }

    #[test]
    fn renew_before_defaults_to_90_days_and_is_validated_with_its_line() {
        let inv = with_certificates("").inventory.unwrap();
        assert_eq!(inv.certificates.renew_before_days, 90);
        let inv = with_certificates("  certificates: {renewBefore: 45}\n").inventory.unwrap();
        assert_eq!(inv.certificates.renew_before_days, 45);
        for bad in ["0", "365", "ninety", "-3"] {
            let loaded = with_certificates(&format!("  certificates:\n    renewBefore: {bad}\n"));
            let errors: Vec<String> = loaded.diagnostics.iter().map(|d| d.located("t.yaml")).collect();
            assert!(loaded.inventory.is_none(), "{bad}");
            assert_eq!(
                errors,
                [format!(
                    "t.yaml:10:18: spec.certificates.renewBefore: invalid value \"{bad}\": expected a whole number of days from 1 to 364 (certificates live 365 days)"
                )],
                "{bad}"
            );
        }
        let loaded = with_certificates("  certificates: {renewBefor: 4}\n");
        assert!(loaded.diagnostics[0].to_string().contains("unknown field \"renewBefor\""), "{}", loaded.diagnostics[0]);
    }

    #[test]
    fn artifacts_default_to_upstream_amd64_and_pinned_versions() {
        let inv = with_certificates("").inventory.unwrap();
        assert_eq!(inv.artifacts.arch, Arch::Amd64);
        assert_eq!(inv.artifacts.source, ArtifactSource::Upstream);
        assert_eq!(inv.artifacts.versions.crictl, Version::new(1, 36, 0), "follows Kubernetes 1.36");
        assert_eq!(inv.artifacts.versions.runc, support::DEFAULT_RUNC_VERSION);
        let inv = with_certificates("  artifacts:\n    mirror: https://mirror.example.com/k8s/\n    versions: {containerd: 2.1.5}\n").inventory.unwrap();
        assert_eq!(inv.artifacts.source, ArtifactSource::Mirror("https://mirror.example.com/k8s".into()));
        assert_eq!(inv.artifacts.versions.containerd, Version::new(2, 1, 5));
        let inv = with_certificates("  artifacts: {bundle: offline, arch: arm64}\n").inventory.unwrap();
        assert_eq!(inv.artifacts.source, ArtifactSource::Bundle(PathBuf::from("./offline")));
    }

    #[test]
    fn artifacts_errors_name_the_field_the_value_and_the_line() {
        let cases = [
            ("  artifacts: {arch: x86_64}\n", "t.yaml:9:21: spec.artifacts.arch: unknown value \"x86_64\", expected one of amd64, arm64"),
            (
                "  artifacts: {mirror: ftp://m.example.com}\n",
                "t.yaml:9:23: spec.artifacts.mirror: invalid value \"ftp://m.example.com\": expected an http:// or https:// base URL like https://mirror.example.com/k8s (no query or fragment)",
            ),
            (
                "  artifacts: {mirror: \"http://m/?a=1\"}\n",
                "t.yaml:9:23: spec.artifacts.mirror: invalid value \"http://m/?a=1\": expected an http:// or https:// base URL like https://mirror.example.com/k8s (no query or fragment)",
            ),
            (
                "  artifacts: {mirror: http://m, bundle: b}\n",
                "t.yaml:9:41: spec.artifacts.bundle: invalid value \"b\": mirror and bundle exclude each other (a bundle is used without any HTTP)",
            ),
            (
                "  artifacts:\n    versions: {runc: 1.3}\n",
                "t.yaml:10:22: spec.artifacts.versions.runc: invalid value \"1.3\": expected a release version like 1.36.4",
            ),
        ];
        for (extra, expected) in cases {
            let loaded = with_certificates(extra);
            let errors: Vec<String> = loaded.diagnostics.iter().map(|d| d.located("t.yaml")).collect();
            assert!(loaded.inventory.is_none(), "{extra}");
            assert_eq!(errors, [expected.to_string()], "{extra}");
        }
        let loaded = with_certificates("  artifacts: {versions: {cni: 1.8.0}}\n");
        assert!(
            loaded.diagnostics[0].to_string().contains("unknown field \"cni\", expected one of crictl, containerd, runc, cniPlugins"),
            "{}",
            loaded.diagnostics[0]
        );
    }
}

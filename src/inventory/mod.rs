//! The inventory: raw YAML in, a validated model (or every finding about it) out.
mod build;
mod checks;
pub mod diagnostic;
mod model;
mod reader;
pub mod schedule;
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

    fn with_backup(backup: &str) -> Loaded {
        let lab = std::fs::read_to_string("inventories/lab.yaml").unwrap();
        let yaml = lab.replacen("    version: 3.6.16            # lab/upstream/etcd/go.mod\n", &format!("    version: 3.6.16\n{backup}"), 1);
        assert_ne!(yaml, lab, "the lab inventory's etcd version line moved");
        parse("t.yaml".into(), yaml, &PathContext { inventory_dir: ".".into(), home: None })
    }

    fn errors(loaded: &Loaded) -> Vec<String> {
        loaded.diagnostics.iter().map(|d| d.located("t.yaml")).collect()
    }

    #[test]
    fn backups_are_on_by_default_hourly_keeping_a_day() {
        let backup = with_backup("").inventory.unwrap().etcd.backup.unwrap();
        assert_eq!(backup.schedule, Schedule { calendar: "hourly".into(), max_age_seconds: 7_200 });
        assert_eq!((backup.keep, backup.dir.as_str()), (24, crate::paths::DEFAULT_BACKUP_DIR));
        let line = |l: &str| with_backup(&format!("    backup:\n      {l}\n"));
        let daily = line("schedule: daily").inventory.unwrap().etcd.backup.unwrap();
        assert_eq!(daily.schedule.max_age_seconds, 2 * 86_400, "two periods");
        let free = with_backup("    backup:\n      schedule: \"*-*-* 00/6:00:00\"\n      maxAge: 13h\n      keep: 8\n      dir: /srv/etcd-backups/\n");
        let free = free.inventory.unwrap().etcd.backup.unwrap();
        assert_eq!(
            (free.schedule.calendar.as_str(), free.schedule.max_age_seconds, free.keep, free.dir.as_str()),
            ("*-*-* 00/6:00:00", 46_800, 8, "/srv/etcd-backups")
        );
        assert!(line("enabled: false").inventory.unwrap().etcd.backup.is_none());
    }

    #[test]
    fn backup_errors_name_the_field_the_value_and_the_line() {
        let cases = [
            ("keep: 0", "t.yaml:33:13: spec.etcd.backup.keep: invalid value \"0\": expected a whole number from 1 to 10000"),
            (
                "dir: var/backups",
                "t.yaml:33:12: spec.etcd.backup.dir: invalid value \"var/backups\": expected an absolute folder like /var/lib/kubeha/etcd-backups (letters, digits, / . _ - only, not / itself, no ..)",
            ),
            (
                "dir: /",
                "t.yaml:33:12: spec.etcd.backup.dir: invalid value \"/\": expected an absolute folder like /var/lib/kubeha/etcd-backups (letters, digits, / . _ - only, not / itself, no ..)",
            ),
            (
                "dir: /var/lib/../etc",
                "t.yaml:33:12: spec.etcd.backup.dir: invalid value \"/var/lib/../etc\": expected an absolute folder like /var/lib/kubeha/etcd-backups (letters, digits, / . _ - only, not / itself, no ..)",
            ),
            (
                "schedule: \"daily; reboot\"",
                "t.yaml:33:17: spec.etcd.backup.schedule: invalid value \"daily; reboot\": expected \"hourly\", \"daily\", \"weekly\" or a systemd OnCalendar expression (letters, digits, spaces and * , - . / ~ : _ + only)",
            ),
            (
                "schedule: \"daily\\nExecStart=/bin/sh\"",
                "t.yaml:33:17: spec.etcd.backup.schedule: invalid value \"daily\\nExecStart=/bin/sh\": expected \"hourly\", \"daily\", \"weekly\" or a systemd OnCalendar expression (letters, digits, spaces and * , - . / ~ : _ + only)",
            ),
            (
                "schedule: \"\"",
                "t.yaml:33:17: spec.etcd.backup.schedule: invalid value \"\": expected \"hourly\", \"daily\", \"weekly\" or a systemd OnCalendar expression (letters, digits, spaces and * , - . / ~ : _ + only)",
            ),
            (
                "schedule: \"Mon..Fri 02:00\"",
                "t.yaml:33:17: spec.etcd.backup.maxAge: schedule \"Mon..Fri 02:00\" is not a shorthand kubeha knows the period of: say how old the newest backup may get, e.g. maxAge: 26h",
            ),
            ("maxAge: 2w", "t.yaml:33:15: spec.etcd.backup.maxAge: invalid value \"2w\": expected a duration like 90m, 26h or 8d"),
            ("enabled: maybe", "t.yaml:33:16: spec.etcd.backup.enabled: invalid value \"maybe\": expected true or false"),
        ];
        // The field's line: two below the lab inventory's etcd version line (`backup:`, then the field).
        let lab = std::fs::read_to_string("inventories/lab.yaml").unwrap();
        let line = lab.lines().position(|l| l.starts_with("    version: 3.6.16 ")).unwrap() + 3;
        for (field, expected) in cases {
            let loaded = with_backup(&format!("    backup:\n      {field}\n"));
            assert!(loaded.inventory.is_none(), "{field}");
            assert_eq!(errors(&loaded), [expected.replacen("t.yaml:33:", &format!("t.yaml:{line}:"), 1)], "{field}");
        }
        let loaded = with_backup("    backup: {kep: 3}\n");
        assert!(errors(&loaded)[0].contains("unknown field \"kep\", expected one of enabled, schedule, keep, dir, maxAge"), "{:?}", errors(&loaded));
    }

    #[test]
    fn registry_mirrors_are_validated_with_their_lines() {
        let with_mirrors = |yaml: &str| {
            let lab = std::fs::read_to_string("inventories/lab.yaml").unwrap();
            let edited = lab.replacen("    cni: flannel\n", &format!("    cni: flannel\n    registryMirrors:\n{yaml}"), 1);
            assert_ne!(edited, lab);
            let line = lab.lines().position(|l| l == "    cni: flannel").unwrap() + 3;
            (parse("t.yaml".into(), edited, &PathContext { inventory_dir: ".".into(), home: None }), line)
        };
        let (ok, _) = with_mirrors("      quay.io:443: [https://m1.example.com, http://10.0.0.5:5000/quay]\n");
        let inv = ok.inventory.unwrap();
        assert_eq!(inv.kubernetes.registry_mirrors["quay.io:443"], ["https://m1.example.com", "http://10.0.0.5:5000/quay"]);
        let (bad, line) = with_mirrors("      \"registry..k8s.io\": [https://m.example.com]\n      docker.io: [ftp://m.example.com]\n      quay.io: []\n");
        assert!(bad.inventory.is_none());
        assert_eq!(
            errors(&bad),
            [
                format!(
                    "t.yaml:{line}:7: spec.kubernetes.registryMirrors: invalid registry \"registry..k8s.io\": expected a registry host like registry.k8s.io or quay.io:443"
                ),
                format!(
                    "t.yaml:{}:19: spec.kubernetes.registryMirrors.docker.io[0]: invalid value \"ftp://m.example.com\": expected a mirror URL like https://mirror.example.com or http://10.0.0.5:5000",
                    line + 1
                ),
                format!("t.yaml:{}:16: spec.kubernetes.registryMirrors.quay.io: expected at least one mirror URL (http:// or https://)", line + 2),
            ]
        );
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

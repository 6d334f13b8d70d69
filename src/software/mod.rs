//! What kubeha installs on a host and how it knows what is there: a record per artifact kind
//! (`paths::software_record`), written by the software phase after the programs are in place, naming the
//! artifact (version, arch, sha256) and the sha256 of every program taken from it. The state probe reads the
//! records and hashes the programs again, so a program replaced or damaged on the host since is seen, not
//! only a version that `--version` prints. Pure: the probe's script text and parser, and the comparison.
pub mod record;

pub use record::{Installed, Record};

use crate::artifacts::catalogue::Artifact;

/// How a host installs OS packages (HAProxy, keepalived), from its os-release ID.
pub fn package_manager(os_id: &str) -> Option<&'static str> {
    match os_id {
        "debian" | "ubuntu" | "linuxmint" | "raspbian" => Some("apt"),
        "rhel" | "centos" | "rocky" | "almalinux" | "fedora" | "ol" | "amzn" => Some("dnf"),
        _ => None,
    }
}

/// Why `artifact` must be installed on a host, or None when the host has exactly it.
pub fn install_reason(artifact: &Artifact, installed: Option<&Installed>) -> Option<String> {
    let Some(have) = installed else { return Some(format!("{} {} missing", artifact.name(), artifact.version)) };
    if have.record.version != artifact.version || have.record.arch != artifact.arch.name() {
        return Some(format!(
            "{} {} ({}) installed, {} ({}) wanted",
            artifact.name(),
            have.record.version,
            have.record.arch,
            artifact.version,
            artifact.arch.name()
        ));
    }
    let expected: Vec<String> = artifact.kind.provides().iter().map(|p| artifact.kind.install_path(p)).collect();
    let recorded: Vec<&str> = have.record.programs.iter().map(|p| p.path.as_str()).collect();
    if expected.iter().any(|p| !recorded.contains(&p.as_str())) {
        return Some(format!("{} {}: kubeha's record lacks some of its programs", artifact.name(), artifact.version));
    }
    let changed: Vec<&str> = have.changed().collect();
    match changed.as_slice() {
        [] => None,
        [one] => Some(format!("{one} differs from the {} {} kubeha installed (changed on the host)", artifact.name(), artifact.version)),
        [first, rest @ ..] => {
            Some(format!("{first} and {} more programs differ from the {} {} kubeha installed", rest.len(), artifact.name(), artifact.version))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::record::Program;
    use super::*;
    use crate::artifacts::catalogue::{Kind, file};
    use crate::inventory::{Arch, Version};

    fn installed(version: Version, programs: &[(&str, &str, Option<&str>)]) -> Installed {
        Installed {
            record: Record {
                kind: Kind::Etcd,
                version,
                arch: "amd64".into(),
                sha256: "a".repeat(64),
                programs: programs.iter().map(|(path, sha, _)| Program { path: (*path).into(), sha256: (*sha).into() }).collect(),
            },
            current: programs.iter().map(|(path, _, now)| ((*path).to_string(), now.map(str::to_string))).collect(),
        }
    }

    #[test]
    fn a_host_needs_an_artifact_it_lacks_has_in_another_version_or_has_changed() {
        let etcd = file(Kind::Etcd, Version::new(3, 6, 16), Arch::Amd64, vec![]);
        let (x, y) = ("1".repeat(64), "2".repeat(64));
        let all = |now: &str| -> Vec<(&'static str, String, Option<String>)> {
            ["/usr/local/bin/etcd", "/usr/local/bin/etcdctl", "/usr/local/bin/etcdutl"].iter().map(|p| (*p, x.clone(), Some(now.to_string()))).collect()
        };
        let build = |version: Version, v: Vec<(&'static str, String, Option<String>)>| {
            let refs: Vec<(&str, &str, Option<&str>)> = v.iter().map(|(p, s, n)| (*p, s.as_str(), n.as_deref())).collect();
            installed(version, &refs)
        };
        assert_eq!(install_reason(&etcd, None).as_deref(), Some("etcd 3.6.16 missing"));
        assert_eq!(install_reason(&etcd, Some(&build(Version::new(3, 6, 16), all(&x)))), None);
        assert_eq!(
            install_reason(&etcd, Some(&build(Version::new(3, 6, 15), all(&x)))).as_deref(),
            Some("etcd 3.6.15 (amd64) installed, 3.6.16 (amd64) wanted")
        );
        let mut one_changed = all(&x);
        one_changed[1].2 = Some(y.clone());
        assert_eq!(
            install_reason(&etcd, Some(&build(Version::new(3, 6, 16), one_changed))).as_deref(),
            Some("/usr/local/bin/etcdctl differs from the etcd 3.6.16 kubeha installed (changed on the host)")
        );
        let mut gone = all(&x);
        gone[0].2 = None;
        gone[2].2 = None;
        assert_eq!(
            install_reason(&etcd, Some(&build(Version::new(3, 6, 16), gone))).as_deref(),
            Some("/usr/local/bin/etcd and 1 more programs differ from the etcd 3.6.16 kubeha installed")
        );
        let short = build(Version::new(3, 6, 16), all(&x)[..2].to_vec());
        assert!(install_reason(&etcd, Some(&short)).unwrap().contains("lacks some of its programs"));
    }
}

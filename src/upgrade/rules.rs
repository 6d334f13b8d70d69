//! Which version changes a running cluster may take, per its projects' own rules: Kubernetes one minor at a
//! time and never down (kubeadm's upgrade policy; control planes before kubelets, which the planner orders),
//! etcd one minor at a time, only from the patch releases the next minor's upgrade guide requires, and never
//! down across minors. Pure: the planner turns a refusal into a fatal finding before anything changes.
use crate::inventory::Version;

/// The kind of change from the running version to the inventory's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    None,
    /// Another patch release of the same minor (either way).
    Patch,
    /// The next minor release.
    Minor,
}

/// Why a change is refused, and the path that is allowed instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub problem: String,
    pub fix: String,
}

/// etcd's minimum patch release before its next minor: the upgrade guides name fixes the newer minor relies
/// on in a mixed cluster (3.6: the 3.5.20 and 3.5.24 membership fixes and the zombie-member fix of 3.5.26;
/// 3.7: 3.6.11).
const ETCD_UPGRADE_FROM: &[((u32, u32), Version)] = &[((3, 6), Version::new(3, 5, 26)), ((3, 7), Version::new(3, 6, 11))];

fn change(from: Version, to: Version) -> Option<Change> {
    match (to.major == from.major, to.minor.checked_sub(from.minor)) {
        _ if to == from => Some(Change::None),
        (true, Some(0)) => Some(Change::Patch),
        (true, Some(1)) => Some(Change::Minor),
        _ => None,
    }
}

/// A cluster running Kubernetes `from` set to `to`.
pub fn kubernetes(from: Version, to: Version) -> Result<Change, Refusal> {
    let minor = |v: Version| format!("{}.{}", v.major, v.minor);
    if to < from {
        let why = if (to.major, to.minor) == (from.major, from.minor) { "kubeha upgrades only forward" } else { "kubeadm does not downgrade a cluster" };
        return Err(Refusal {
            problem: format!("Kubernetes {from} runs, the inventory names {to}: a downgrade"),
            fix: format!("{why}; set spec.kubernetes.version back to {from} (or a later {} release)", minor(from)),
        });
    }
    change(from, to).ok_or_else(|| Refusal {
        problem: format!("Kubernetes {from} runs, the inventory names {to}: more than one minor release at once"),
        fix: format!(
            "Kubernetes upgrades one minor at a time (control planes and kubelets may be only so far apart): set spec.kubernetes.version to a {}.{} release, apply, then to {to}",
            from.major,
            from.minor + 1
        ),
    })
}

/// An etcd member running `from` set to `to`.
pub fn etcd(from: Version, to: Version) -> Result<Change, Refusal> {
    let minor = |v: Version| format!("{}.{}", v.major, v.minor);
    let same_minor = (to.major, to.minor) == (from.major, from.minor);
    if to < from && !same_minor {
        return Err(Refusal {
            problem: format!("etcd {from} runs, the inventory names {to}: a downgrade across minor releases"),
            fix: format!(
                "etcd's downgrade is an offline procedure (etcdutl migrate) kubeha does not run; set spec.etcd.version back to a {} release",
                minor(from)
            ),
        });
    }
    let Some(kind) = change(from, to) else {
        return Err(Refusal {
            problem: format!("etcd {from} runs, the inventory names {to}: more than one minor release at once"),
            fix: format!("etcd upgrades one minor at a time: set spec.etcd.version to a {}.{} release, apply, then to {to}", from.major, from.minor + 1),
        });
    };
    if kind == Change::Minor
        && let Some((_, required)) = ETCD_UPGRADE_FROM.iter().find(|(target, _)| *target == (to.major, to.minor))
        && from < *required
    {
        return Err(Refusal {
            problem: format!("etcd {from} runs, the inventory names {to}: etcd {} can be reached only from {required} or later", minor(to)),
            fix: format!("set spec.etcd.version to {required} or a later {} release first, apply, then to {to}", minor(from)),
        });
    }
    Ok(kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn kubernetes_goes_one_minor_at_a_time_and_never_down() {
        assert_eq!(kubernetes(v("1.35.4"), v("1.35.4")), Ok(Change::None));
        assert_eq!(kubernetes(v("1.35.4"), v("1.35.9")), Ok(Change::Patch));
        assert_eq!(kubernetes(v("1.35.4"), v("1.36.3")), Ok(Change::Minor));
        let jump = kubernetes(v("1.35.4"), v("1.37.2")).unwrap_err();
        assert!(jump.problem.contains("more than one minor release at once") && jump.fix.contains("a 1.36 release, apply, then to 1.37.2"), "{jump:?}");
        let down = kubernetes(v("1.36.3"), v("1.35.4")).unwrap_err();
        assert!(down.problem.contains("a downgrade") && down.fix.contains("back to 1.36.3"), "{down:?}");
        let patch_down = kubernetes(v("1.36.3"), v("1.36.1")).unwrap_err();
        assert!(patch_down.problem.contains("a downgrade") && patch_down.fix.contains("only forward"), "{patch_down:?}");
    }

    #[test]
    fn etcd_follows_its_upgrade_paths() {
        assert_eq!(etcd(v("3.6.15"), v("3.6.16")), Ok(Change::Patch));
        assert_eq!(etcd(v("3.6.16"), v("3.6.15")), Ok(Change::Patch), "a patch downgrade within a minor is etcd's supported rollback");
        assert_eq!(etcd(v("3.5.36"), v("3.6.16")), Ok(Change::Minor));
        assert_eq!(etcd(v("3.5.26"), v("3.6.0")), Ok(Change::Minor));
        let early = etcd(v("3.5.25"), v("3.6.16")).unwrap_err();
        assert!(early.problem.contains("only from 3.5.26 or later") && early.fix.contains("3.5.26 or a later 3.5 release first"), "{early:?}");
        assert!(etcd(v("3.6.10"), v("3.7.0")).unwrap_err().problem.contains("only from 3.6.11"));
        assert_eq!(etcd(v("3.6.11"), v("3.7.3")), Ok(Change::Minor));
        let jump = etcd(v("3.5.36"), v("3.7.3")).unwrap_err();
        assert!(jump.fix.contains("a 3.6 release, apply, then to 3.7.3"), "{jump:?}");
        let down = etcd(v("3.6.16"), v("3.5.36")).unwrap_err();
        assert!(down.problem.contains("downgrade across minor releases") && down.fix.contains("a 3.6 release"), "{down:?}");
    }
}

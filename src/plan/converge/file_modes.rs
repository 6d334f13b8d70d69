//! Files whose contents are right but whose mode or owner drifted: set back in place, without an upload
//! or a restart.
use super::{Builder, differs, file_name, step};
use crate::facts::observe::FileMeta;
use crate::facts::secret_files;
use crate::plan::{Action, FileMode, Phase, desired};
use std::collections::BTreeSet;

/// "server.key mode 0644, want 0600", "admin.conf owner kubelet:root, want root:root": what drifted in the
/// mode and owner of files whose contents are right; the first three files named, the rest counted.
fn modes_reason(drifted: &[(&str, &FileMeta, u32)]) -> String {
    let mut parts: Vec<String> = drifted
        .iter()
        .take(3)
        .map(|(path, have, want)| {
            let mut what = Vec::new();
            if have.mode != *want {
                what.push(format!("mode {:04o}, want {want:04o}", have.mode));
            }
            let owner = format!("{}:{}", have.owner, have.group);
            if owner != desired::FILE_OWNER {
                what.push(format!("owner {owner}, want {}", desired::FILE_OWNER));
            }
            format!("{} {}", file_name(path), what.join(", "))
        })
        .collect();
    if drifted.len() > 3 {
        parts.push(format!("and {} more files", drifted.len() - 3));
    }
    parts.join("; ")
}

impl Builder<'_> {
    /// Files whose contents are right but whose mode or owner drifted (a key made world-readable, a chown
    /// to another user): kubeha's own files back to their desired mode, secret files kubeadm or the kubelet
    /// wrote (on joined nodes) back to 0600 once others can read them; owner root:root for both. A
    /// chmod/chown step per host, not an upload, so no restart decision sees it (those compare contents
    /// only: `stale`, `differs`, `etcd_needs_restart`). Built after every other phase, so files a step of this plan uploads anyway
    /// (the upload sets mode and owner) are left out; placed right after the cluster state, so a secret
    /// exposed is closed before the long phases run.
    pub(super) fn file_modes(&mut self) {
        let mut steps = Vec::new();
        for h in &self.inv.hosts {
            let state = self.observed.state(&h.name);
            let placed: BTreeSet<&str> = self.phases.iter().flat_map(|p| &p.steps).filter(|s| s.host == h.name).flat_map(|s| s.action.placed_files()).collect();
            let owned = |m: &FileMeta| format!("{}:{}", m.owner, m.group) == desired::FILE_OWNER;
            let mut drifted: Vec<(&str, &FileMeta, u32)> = Vec::new();
            for f in self.desired.host_files(&h.name).filter(|f| state.has(&f.path) && !differs(state, f) && !placed.contains(f.path.as_str())) {
                if let Some(have) = state.meta(&f.path).filter(|m| m.mode != f.mode || !owned(m)) {
                    drifted.push((&f.path, have, f.mode));
                }
            }
            // kubeadm's files on a host that is not joined are leftovers the join's `kubeadm reset` removes.
            let joined = self.joined(h);
            let theirs = state.secret_files.iter().filter(|p| joined && self.desired.file(&h.name, p).is_none() && !placed.contains(p.as_str()));
            for p in theirs {
                if let Some(have) = state.meta(p).filter(|m| m.open_to_others() || !owned(m)) {
                    drifted.push((p, have, if have.open_to_others() { secret_files::PRIVATE } else { have.mode }));
                }
            }
            if drifted.is_empty() {
                continue;
            }
            let files = drifted.iter().map(|(path, _, mode)| FileMode { path: path.to_string(), mode: *mode }).collect();
            steps.push(step(format!("file-modes/{}", h.name), &h.name, Action::FixFileModes { files }, modes_reason(&drifted)));
        }
        if steps.is_empty() {
            return;
        }
        let at = self.phases.iter().position(|p| p.name == "state").map_or(0, |i| i + 1);
        let title = "modes and owners of files whose contents are right: chmod/chown in place, nothing restarts";
        self.phases.insert(at, Phase { name: "file-modes", title, execution: self.parallel(), steps });
    }
}

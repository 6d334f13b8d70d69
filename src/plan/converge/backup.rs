//! The scheduled etcd backup: its timer on every control plane, a first backup when the timer is new, and
//! the timer removed when backups are turned off.
use super::{Builder, step};
use crate::plan::{Action, Execution};
use crate::render::Group;

impl Builder<'_> {
    /// The backup timer on every control plane, once etcd and the control plane run: installed where its files
    /// are missing or differ, (re)started where it is not active. When a control plane gets it for the first
    /// time, the backup also runs once on every control plane (in order; the leader's run takes the snapshot,
    /// the others skip), so a new cluster has a backup at the end of its first apply and `verify` can say so.
    pub(super) fn backup(&mut self) {
        let mut steps = Vec::new();
        if self.inv.etcd.backup.is_none() {
            for h in self.inv.control_planes().filter(|h| self.observed.state(&h.name).has(crate::paths::ETCD_BACKUP_TIMER)) {
                let why = "spec.etcd.backup.enabled is false, but the backup timer is installed";
                steps.push(step(format!("backup/{}/remove", h.name), &h.name, Action::RemoveEtcdBackup, why));
            }
            self.push("backup", "scheduled etcd backups turned off: the timer removed, the backups kept", Execution::Sequential, steps);
            return;
        }
        let mut first_time = false;
        for h in self.inv.control_planes() {
            let state = self.observed.state(&h.name);
            let stale = self.stale(&h.name, Group::Backup);
            let timer_down = !state.is_active(crate::phases::backup::TIMER);
            if stale.is_none() && !timer_down {
                continue;
            }
            first_time |= !state.has(crate::paths::ETCD_BACKUP_SCRIPT);
            let reason = stale.as_ref().map(|(_, why)| why.clone()).unwrap_or_else(|| format!("{} not active", crate::phases::backup::TIMER));
            // A timer that ran before reads a changed schedule only at a restart; a new one is just started.
            let restart = stale.is_some() && state.has(crate::paths::ETCD_BACKUP_TIMER);
            let action = Action::InstallEtcdBackup { files: self.desired.paths_in(h, Group::Backup), restart };
            steps.push(step(format!("backup/{}", h.name), &h.name, action, reason));
        }
        if first_time {
            for h in self.inv.control_planes() {
                let why = "the backup timer is new: a first backup now, before its first scheduled run";
                steps.push(step(format!("backup/{}/run", h.name), &h.name, Action::RunEtcdBackup, why));
            }
        }
        self.push("backup", "scheduled etcd backups: timer on every control plane, snapshots on the leader", Execution::Sequential, steps);
    }
}

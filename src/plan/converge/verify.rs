//! The end of a plan: the final verification, and the guard that the files were rendered for the seed the
//! planner chooses.
use super::{Builder, seed_control_plane, step};
use crate::plan::{Action, Execution, Finding};

impl Builder<'_> {
    /// The files were rendered for `desired.seed`; a plan for another seed would run admin steps where the
    /// InitConfiguration and markers are not. The live pipeline renders for `seed_control_plane`, so this
    /// only guards against a caller that did not.
    pub(super) fn seed_matches(&mut self) {
        let chosen = seed_control_plane(self.inv, self.observed).map(|h| h.name.clone()).unwrap_or_default();
        if chosen != self.desired.seed {
            self.findings.push(Finding {
                host: self.desired.seed.clone(),
                problem: format!("the files were rendered with {} as the seed, but the seed is {chosen} (a joined control plane)", self.desired.seed),
                fix: "a kubeha bug: please report it with `kubeha plan` output".into(),
                fatal: true,
            });
        }
    }

    pub(super) fn verify(&mut self) {
        let first = self.desired.seed.clone();
        let checks = crate::plan::verify::checks(self.inv);
        let steps = vec![step("verify".into(), &first, Action::Verify { checks }, "final verification")];
        self.push("verify", "final verification", Execution::Sequential, steps);
    }
}

//! The intent of `kubeha upgrade`: only versions change; a plan with anything else is refused unchanged.
use super::Planned;
use super::apply::Intent;
use crate::upgrade::intent;

pub fn intent() -> Box<Intent> {
    Box::new(|planned: &Planned| {
        let others = intent::other_changes(&planned.plan);
        if !others.is_empty() {
            let listed: Vec<String> = others.iter().map(|s| format!("{} on {} ({})", s.id, s.host, s.reason)).collect();
            anyhow::bail!(
                "kubeha upgrade changes versions only, and this plan also has: {}. Run `kubeha apply` for those (it upgrades too), or bring the inventory back to what runs except for the versions",
                listed.join("; ")
            );
        }
        if !intent::changes_versions(&planned.plan) {
            eprintln!("nothing to upgrade: every host runs the versions the inventory names");
        }
        Ok(())
    })
}

//! Upgrades: the version rules a running cluster's change must follow (`rules`), kept apart from the
//! planner that orders the work (`plan/converge/upgrade.rs`) and the effects on the hosts
//! (`phases/upgrade.rs`).
pub mod intent;
pub mod rules;

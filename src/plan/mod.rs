//! A plan is data: ordered phases of steps, each on a host, with quorum gates as steps of their own.
//! Builders are pure (inventory [+ facts] -> plan), so plans can be printed, diffed and golden-tested,
//! and the executor runs exactly what was shown.
mod display;
mod fresh;

pub use crate::etcd::gate::{Gate, GateWhen};
pub use display::text;
pub use fresh::fresh;

use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub cluster: String,
    /// What the plan assumed about the hosts: `fresh` for `plan --offline`.
    pub basis: &'static str,
    pub phases: Vec<Phase>,
}

impl Plan {
    pub fn steps(&self) -> impl Iterator<Item = &Step> {
        self.phases.iter().flat_map(|p| p.steps.iter())
    }
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Phase {
    pub name: &'static str,
    pub title: &'static str,
    pub execution: Execution,
    pub steps: Vec<Step>,
}

/// How a phase's steps may run: the executor may overlap steps only where the plan says so.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum Execution {
    Sequential,
    Parallel { limit: usize },
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    /// Stable across runs of the same plan: the journal records completed steps by this id.
    pub id: String,
    /// The host the step runs on; gates run on a member that is already healthy.
    pub host: Option<String>,
    pub action: Action,
    pub reason: String,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum Action {
    Preflight { checks: Vec<String> },
    ConfigureHost { files: Vec<String> },
    GenerateEtcdPki { members: Vec<String> },
    InstallEtcdPki { files: Vec<String> },
    StartEtcdMember { member: String, initial_cluster_state: &'static str },
    AddEtcdLearner { member: String, peer_url: String },
    WaitLearnerCaughtUp { member: String },
    PromoteEtcdLearner { member: String },
    Gate(Gate),
    StartLoadBalancer { files: Vec<String>, services: Vec<&'static str> },
    CheckVip { vip: String },
    KubeadmInit { endpoint: String, config: String },
    KubeadmJoinControlPlane { endpoint: String, config: String },
    KubeadmJoinWorker { endpoint: String, config: String },
    WaitApiReady { endpoint: String },
    ApplyCni { cni: &'static str, version: String, manifest: String },
    LabelNode { node: String, labels: Vec<String> },
    Verify { checks: Vec<String> },
}

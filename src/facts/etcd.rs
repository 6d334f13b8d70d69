//! etcd as its members answer it, read-only over SSH on the control planes: what the planner, the gates,
//! `status` and `verify` look at.
use crate::etcd::gate::View;
use crate::phases::etcd::{EtcdStepError, etcdctl, member_list_json};
use crate::ssh::Transport;

/// This member's own answer to `member list` (its cluster ID, its ID, the members it knows), asked of its
/// local endpoint only: the planner compares every member's answer, so a member that formed a cluster of
/// its own cannot pass for the cluster.
pub async fn member_list_answer(t: &dyn Transport) -> Result<crate::etcd::status::MemberList, EtcdStepError> {
    crate::etcd::status::parse_member_list_answer(&member_list_json(t).await?)
        .map_err(|e| EtcdStepError::Etcd { host: t.host().into(), message: e.to_string() })
}

/// etcd's view of itself, asked on `t`. Member status and health are read for the whole cluster; members
/// that do not answer simply miss from them, which the gate reports. Status and health are asked at the
/// same time: with a member down each waits for its command timeout.
pub async fn view(t: &dyn Transport) -> Result<View, EtcdStepError> {
    let members = member_list_json(t).await?;
    let status_command = etcdctl(&["endpoint", "status", "--cluster", "-w", "json"]);
    let health_command = etcdctl(&["endpoint", "health", "--cluster", "-w", "json"]);
    let (statuses, health) = tokio::join!(t.exec(&status_command), t.exec(&health_command));
    View::from_etcdctl(&members, &statuses?.stdout_text(), &health?.stdout_text())
        .map_err(|e| EtcdStepError::Etcd { host: t.host().into(), message: e.to_string() })
}

/// Whether etcd holds any Kubernetes object (a key under /registry/, where the API server keeps them): after
/// a `kubeadm init` that failed before its API server wrote anything, no cluster exists to protect.
pub async fn holds_kubernetes_data(t: &dyn Transport) -> Result<bool, EtcdStepError> {
    let out = t.exec(&etcdctl(&["get", "/registry/", "--prefix", "--keys-only", "--limit=1"])).await?;
    if !out.status.success() {
        return Err(EtcdStepError::Etcd { host: t.host().into(), message: format!("etcdctl get failed: {}", String::from_utf8_lossy(&out.stderr).trim()) });
    }
    Ok(!out.stdout_text().trim().is_empty())
}

/// The view from the first of `members` whose local etcd answers, or the last reason none did.
pub async fn view_from_any(members: &[&dyn Transport]) -> Result<View, NoView> {
    let mut last = NoView::NoneToAsk;
    for t in members {
        match view(*t).await {
            Ok(v) => return Ok(v),
            Err(e) => last = NoView::Last(Box::new(e)),
        }
    }
    Err(last)
}

/// Why no member gave a view: the error of the last one asked.
#[derive(Clone, Debug, thiserror::Error)]
pub enum NoView {
    #[error("no control plane to ask")]
    NoneToAsk,
    #[error(transparent)]
    Last(Box<EtcdStepError>),
}

//! Taking a host out of the cluster: its Node object drained and deleted, and the host itself reset so that
//! it can never rejoin by accident (etcd with old data) or claim the VIP (keepalived still enabled).
use super::kubeadm::kubectl;
use crate::render::context::ETCD_DATA_DIR;
use crate::ssh::{Command, SshError, Transport, quote};
use std::time::Duration;

/// Evicts what runs on `node` (bounded: a dead node's pods never confirm), then deletes the Node object.
/// A node that is already gone is fine: an interrupted run may have deleted it.
pub async fn remove_node(t: &dyn Transport, node: &str) -> Result<(), SshError> {
    let n = quote::quote(node);
    let get = kubectl(&format!("get node {n} -o name")).script;
    let drain = kubectl(&format!("drain {n} --ignore-daemonsets --delete-emptydir-data --force --timeout=60s")).script;
    let delete = kubectl(&format!("delete node {n} --ignore-not-found")).script;
    // A drain that times out (pods on a dead node) does not stop the removal: deleting the Node object is
    // what lets those pods be scheduled elsewhere.
    let script = format!("if {get} >/dev/null 2>&1; then {drain} || echo 'drain incomplete; deleting the node anyway' >&2; {delete}; fi");
    t.run(&Command::script(script).timeout(Duration::from_secs(150))).await.map(|_| ())
}

/// The shell that moves etcd's data dir aside under a name with `tag` and the time: data is never deleted.
pub fn move_etcd_data_aside(tag: &str) -> String {
    let dir = ETCD_DATA_DIR;
    format!("if [ -e {dir} ]; then mv {dir} {dir}.{tag}-$(date -u +%Y%m%dT%H%M%SZ); fi")
}

/// kubeadm reset, kubeha's services stopped and disabled, etcd data moved aside, kubeha's secrets (cluster
/// state, etcd keys) removed. Safe to repeat.
pub async fn reset(t: &dyn Transport) -> Result<(), SshError> {
    let script = format!(
        "if command -v kubeadm >/dev/null 2>&1; then kubeadm reset -f; fi; \
         for unit in keepalived haproxy etcd kubelet; do systemctl disable --now $unit.service >/dev/null 2>&1; done; \
         systemctl reset-failed etcd.service >/dev/null 2>&1; \
         {}; rm -rf /etc/kubeha",
        move_etcd_data_aside("removed")
    );
    t.run(&Command::script(script).timeout(Duration::from_secs(180))).await.map(|_| ())
}

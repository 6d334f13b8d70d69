//! Taking a host out of the cluster: its Node object drained and deleted, and the host itself reset so that
//! it can never rejoin by accident (etcd with old data) or claim the VIP (keepalived still enabled).
use super::kubeadm::kubectl;
use crate::paths::{ETCD_DATA_DIR, KUBEHA_DIR};
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

#[derive(Debug, thiserror::Error)]
pub enum ResetError {
    #[error(transparent)]
    Ssh(#[from] SshError),
    #[error("{host}: refusing to reset: its machine-id is {found:?}, the node that left reported {expected:?}; the address belongs to another machine now")]
    OtherMachine { host: String, found: String, expected: String },
}

/// kubeadm reset, kubeha's services stopped and disabled, etcd data moved aside, kubeha's secrets (cluster
/// state, etcd keys) removed. Safe to repeat. With `machine_id` (what the leaving host's Node reported), the
/// machine must still be that one: an address given to another machine since is never reset.
pub async fn reset(t: &dyn Transport, machine_id: Option<&str>, cri_socket: &str) -> Result<(), ResetError> {
    if let Some(expected) = machine_id {
        let found = t.run(&Command::script("cat /etc/machine-id").timeout(Duration::from_secs(10))).await?.stdout_text().trim().to_string();
        if found != expected {
            return Err(ResetError::OtherMachine { host: t.host().into(), found, expected: expected.into() });
        }
    }
    let script = format!(
        "if command -v kubeadm >/dev/null 2>&1; then {}; fi; \
         for unit in keepalived haproxy etcd kubelet; do systemctl disable --now $unit.service >/dev/null 2>&1; done; \
         systemctl disable --now {} {} >/dev/null 2>&1; \
         systemctl reset-failed etcd.service >/dev/null 2>&1; \
         {}; rm -rf {KUBEHA_DIR}",
        crate::phases::kubeadm::reset_command(cri_socket),
        crate::phases::loadbalancer::METRICS_SOCKET,
        crate::phases::backup::TIMER,
        move_etcd_data_aside("removed")
    );
    t.run(&Command::script(script).timeout(Duration::from_secs(180))).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ssh::fake::RecordingTransport;

    const SOCKET: &str = "unix:///run/kubeha-lab-cri/cri.sock";

    #[tokio::test]
    async fn a_machine_that_is_not_the_node_that_left_is_never_reset() {
        let other = RecordingTransport::new("cp-2").on("cat /etc/machine-id", "bbbb\n");
        let refused = reset(&other, Some("aaaa"), SOCKET).await.unwrap_err();
        assert!(matches!(&refused, ResetError::OtherMachine { found, expected, .. } if found == "bbbb" && expected == "aaaa"), "{refused}");
        assert!(!other.scripts().iter().any(|s| s.contains("kubeadm reset")), "{:?}", other.scripts());

        let same = RecordingTransport::new("cp-2").on("cat /etc/machine-id", "aaaa\n").on("kubeadm", "");
        reset(&same, Some("aaaa"), SOCKET).await.unwrap();
        let reset_etcd_kept = format!("kubeadm reset -f --skip-phases=remove-etcd-member --cri-socket {SOCKET}");
        assert!(same.scripts().iter().any(|s| s.contains(&reset_etcd_kept)), "{:?}", same.scripts());
        // A host that left answers no scrape either, and takes no more backups (its backups stay on it).
        let disabled = "systemctl disable --now kubeha-metrics.socket kubeha-etcd-backup.timer";
        assert!(same.scripts().iter().any(|s| s.contains(disabled)), "{:?}", same.scripts());
    }
}

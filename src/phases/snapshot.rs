//! etcd snapshots on a member, kept in /var/lib/kubeha/snapshots (interim: replaced by the verified,
//! rotated implementation of the snapshot branch when it lands).
use crate::ssh::{Command, SshError, Transport, quote};
use std::time::Duration;

pub const SNAPSHOT_DIR: &str = "/var/lib/kubeha/snapshots";

pub async fn save(t: &dyn Transport, reason: &str) -> Result<(), SshError> {
    let file = quote::quote(&format!("{SNAPSHOT_DIR}/$(date -u +%Y%m%dT%H%M%SZ)-{reason}.db"));
    let script = format!(
        "umask 077; mkdir -p {SNAPSHOT_DIR}; set -a; . /etc/kubeha/etcdctl.env; ETCDCTL_ENDPOINTS=https://127.0.0.1:2379; set +a; f={}; etcdctl snapshot save \"$f\" >/dev/null && etcdctl snapshot status \"$f\" -w json",
        file.replace('\'', "\"")
    );
    t.run(&Command::script(script).timeout(Duration::from_secs(120))).await.map(|_| ())
}

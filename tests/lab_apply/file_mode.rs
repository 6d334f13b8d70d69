//! Issue 17 on the converged lab: a secret made readable by others is drift. kubeha's etcd server key on cp-2 and kubeadm's API server key on cp-3 are chmodded to
//! 0644 over ssh: `plan --detailed-exitcode` exits 2 and shows the chmod step with what drifted, `verify`
//! fails naming both files, `apply` sets them back to 0600 in place without restarting etcd or the API
//! server, then `verify` passes and the plan is empty. Checked with the OpenSSH client, not with kubeha.
use crate::support::drill::{CP2, CP3, kubeha_ok, kubeha_with, lab_inventory, ssh, ssh_ok, text};
use std::path::Path;

const ETCD_KEY: &str = "/etc/kubeha/pki/etcd/server.key";
const APISERVER_KEY: &str = "/etc/kubernetes/pki/apiserver.key";

/// Mode, owner and group of a file on a lab machine ("600 root root").
fn stat(address: &str, path: &str) -> String {
    ssh_ok(address, &format!("stat -c '%a %U %G' {path}")).trim().to_string()
}

/// etcd's main process and when it started: both change with any restart of the unit.
fn etcd_process(address: &str) -> String {
    ssh_ok(address, "systemctl show -p MainPID -p ExecMainStartTimestampMonotonic etcd").trim().to_string()
}

/// Puts the keys back to 0600 however the test ends, so a failed assertion leaves no readable key behind.
struct RestoreModes;

impl Drop for RestoreModes {
    fn drop(&mut self) {
        let _ = ssh(CP2, &format!("chmod 600 {ETCD_KEY}"));
        let _ = ssh(CP3, &format!("chmod 600 {APISERVER_KEY}"));
    }
}

/// On a converged cluster, with kubeha's run folders under `state`.
pub fn a_key_made_world_readable_is_planned_fixed_in_place_without_a_restart_and_verified(state: &Path) {
    let converged = kubeha_with(lab_inventory(), state, &["plan", "--detailed-exitcode"]).output().unwrap();
    assert_eq!(converged.status.code(), Some(0), "converged before the chmod:\n{}", text(&converged));
    assert_eq!(stat(CP2, ETCD_KEY), "600 root root");

    let _restore = RestoreModes;
    let etcd_before = etcd_process(CP2);
    let apiserver_before = ssh_ok(CP3, "pidof kube-apiserver").trim().to_string();
    ssh_ok(CP2, &format!("chmod 644 {ETCD_KEY}"));
    ssh_ok(CP3, &format!("chmod 644 {APISERVER_KEY}"));

    let plan = kubeha_with(lab_inventory(), state, &["plan", "--detailed-exitcode"]).output().unwrap();
    let shown = text(&plan);
    assert_eq!(plan.status.code(), Some(2), "a readable key is drift:\n{shown}");
    assert!(shown.contains(&format!("chmod/chown {ETCD_KEY} 0600 in place")), "the chmod step on cp-2:\n{shown}");
    assert!(shown.contains("[server.key mode 0644, want 0600]"), "what drifted:\n{shown}");
    assert!(shown.contains(&format!("chmod/chown {APISERVER_KEY} 0600 in place")), "kubeadm's key too:\n{shown}");
    assert!(shown.contains("[apiserver.key mode 0644, want 0600]"), "{shown}");
    assert!(!shown.contains("restart etcd member") && !shown.contains("GATE"), "a mode fix restarts nothing:\n{shown}");

    let verify = kubeha_with(lab_inventory(), state, &["verify"]).output().unwrap();
    let report = text(&verify);
    assert!(!verify.status.success(), "verify fails on a readable key:\n{report}");
    assert!(report.contains(&format!("cp-2: {ETCD_KEY} mode 0644")), "names host and file:\n{report}");
    assert!(report.contains(&format!("cp-3: {APISERVER_KEY} mode 0644")), "kubeadm's files are checked too:\n{report}");

    kubeha_ok(lab_inventory(), state, &["apply", "--yes"]);
    assert_eq!(stat(CP2, ETCD_KEY), "600 root root");
    assert_eq!(stat(CP3, APISERVER_KEY), "600 root root");
    assert_eq!(etcd_process(CP2), etcd_before, "etcd on cp-2 was not restarted");
    assert_eq!(ssh_ok(CP3, "pidof kube-apiserver").trim(), apiserver_before, "the API server on cp-3 was not restarted");

    let verify = kubeha_with(lab_inventory(), state, &["verify"]).output().unwrap();
    assert!(verify.status.success(), "verify passes once the keys are private again:\n{}", text(&verify));
    let again = kubeha_with(lab_inventory(), state, &["plan", "--detailed-exitcode"]).output().unwrap();
    assert_eq!(again.status.code(), Some(0), "converged again:\n{}", text(&again));
}

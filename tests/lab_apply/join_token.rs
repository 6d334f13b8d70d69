//! Issue 12 item 3 on the converged lab: a join long after `kubeadm init` must not depend on init's 24 h
//! bootstrap token. Every bootstrap token is deleted (as if they had expired), a worker is taken out (`node
//! remove wk-2`, which resets it) and added back (`node add wk-2`): the join succeeds because the run refreshes
//! the token first, and no bootstrap token is left afterwards.
//! Checked with kubectl on a control plane and the OpenSSH client, not with kubeha.
use crate::support::drill::{CP1, kubeha_ok, kubeha_with, lab_inventory, ssh_ok, text};
use std::path::Path;

const KUBECTL: &str = "kubectl --kubeconfig /etc/kubernetes/admin.conf";

/// The bootstrap-token Secrets in kube-system that authenticate a join, by name. kubeadm's upload-certs keeps
/// a token of its own without usages (base64 "true" absent) whose only job is to expire the kubeadm-certs
/// Secret after 2 h: it cannot authenticate anyone and is not counted.
fn bootstrap_tokens() -> Vec<String> {
    let out = ssh_ok(CP1, &format!("{KUBECTL} get secrets -n kube-system --field-selector type=bootstrap.kubernetes.io/token -o json"));
    let list: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let authenticates = |s: &serde_json::Value| s["data"]["usage-bootstrap-authentication"].as_str() == Some("dHJ1ZQ==");
    list["items"].as_array().unwrap().iter().filter(|s| authenticates(s)).map(|s| s["metadata"]["name"].as_str().unwrap_or("").to_string()).collect()
}

/// On a converged cluster, with kubeha's run folders under `state`.
pub fn a_worker_joins_after_every_bootstrap_token_is_gone_and_no_token_stays(state: &Path) {
    assert!(bootstrap_tokens().is_empty(), "the init run deletes init's 24 h token: {:?}", bootstrap_tokens());

    kubeha_ok(lab_inventory(), state, &["node", "remove", "wk-2", "--yes"]);
    // What 24 hours do to init's token, and what an operator's cleanup does to any other.
    ssh_ok(CP1, &format!("{KUBECTL} delete secrets -n kube-system --field-selector type=bootstrap.kubernetes.io/token --ignore-not-found"));

    let plan = kubeha_with(lab_inventory(), state, &["node", "add", "wk-2", "--dry-run"]).output().unwrap();
    let shown = text(&plan);
    let refresh = shown.find("create or refresh the bootstrap token").unwrap_or_else(|| panic!("no token refresh planned:\n{shown}"));
    let join = shown.find("as a worker").unwrap_or_else(|| panic!("no worker join planned:\n{shown}"));
    assert!(refresh < join, "the token is refreshed before the join:\n{shown}");

    kubeha_ok(lab_inventory(), state, &["node", "add", "wk-2", "--yes"]);
    let nodes = ssh_ok(CP1, &format!("{KUBECTL} get node wk-2 -o name"));
    assert_eq!(nodes.trim(), "node/wk-2");
    assert!(bootstrap_tokens().is_empty(), "the run deletes the token it refreshed: {:?}", bootstrap_tokens());

    let again = kubeha_with(lab_inventory(), state, &["plan", "--detailed-exitcode"]).output().unwrap();
    assert_eq!(again.status.code(), Some(0), "converged, no token step planned:\n{}", text(&again));
}

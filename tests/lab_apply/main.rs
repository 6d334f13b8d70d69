//! `kubeha apply` end to end on the lab (3 control planes in 3 zones + 2 workers): real systemd machines,
//! sshd, etcd 3.6, keepalived, HAProxy, kubeadm, the kubelet and the control plane (the lab's CRI runtime
//! runs the static pods as host processes; see README).
//! Results are checked with tools other than kubeha's own code: the OpenSSH client, etcdctl inside the
//! machines with /etc/kubeha/etcdctl.env, `ip addr`, curl. Needs root (see tests/lab_machines.rs).
//!
//! One cluster serves every scenario in order (a bootstrap costs some 2.5 minutes of the CI budget): an offline
//! bundle and a corrupt mirror refused (software.rs), the bootstrap from the bundle killed twice and resumed,
//! then day-2 scenarios that each leave the cluster converged as they
//! found it (they say so with `plan --detailed-exitcode`), and last the two that kill machines.
mod file_mode;
mod join_token;
mod software;
#[path = "../support/mod.rs"]
mod support;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::drill::{VIP, kill_command_after, kubeha_with, newest_journal, ssh, text};
use support::lab::{INVENTORY, Lab, kubeha};

const CONTROL_PLANES: [(&str, &str); 3] = [("cp-1", "198.18.0.11"), ("cp-2", "198.18.0.12"), ("cp-3", "198.18.0.13")];

/// kubeha on the lab inventory with its run folders under `state`, so the test can read its journal.
fn kubeha_in(state: &Path, args: &[&str]) -> Command {
    kubeha_with(Path::new(INVENTORY), state, args)
}

fn apply(state: &Path) -> Output {
    kubeha_in(state, &["apply", "--yes", "--output", "json"]).output().unwrap()
}

fn summary(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "apply failed:\n{}", text(out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("apply --output json: {e}\n{}", text(out)))
}

fn members(address: &str) -> serde_json::Value {
    let out = ssh(address, "set -a; . /etc/kubeha/etcdctl.env; set +a; etcdctl member list -w json");
    assert!(out.status.success(), "etcdctl on {address}: {}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn vip_holders() -> Vec<&'static str> {
    CONTROL_PLANES.iter().filter(|(_, a)| text(&ssh(a, "ip -o addr show")).contains(&format!(" {VIP}/"))).map(|(n, _)| *n).collect()
}

/// What an operator would check after apply, without kubeha.
fn assert_cluster_is_up() {
    let list = members("198.18.0.12");
    let members = list["members"].as_array().unwrap();
    let mut names: Vec<&str> = members.iter().map(|m| m["name"].as_str().unwrap_or("")).collect();
    names.sort_unstable();
    assert_eq!(names, ["cp-1", "cp-2", "cp-3"], "{list}");
    assert!(members.iter().all(|m| m.get("isLearner").is_none_or(|l| l == false)), "no learner may remain: {list}");
    assert_eq!(vip_holders().len(), 1, "exactly one control plane holds the VIP");
    let readyz = ssh("198.18.0.21", &format!("curl -sS --max-time 5 --cacert /etc/kubernetes/pki/ca.crt https://{VIP}:8443/readyz"));
    assert_eq!(text(&readyz).trim(), "ok", "readyz through the VIP from a worker");
    let nodes = ssh("198.18.0.11", "kubectl --kubeconfig /etc/kubernetes/admin.conf get nodes -o json");
    let nodes: serde_json::Value = serde_json::from_slice(&nodes.stdout).unwrap();
    let zones: Vec<(String, String)> = nodes["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (n["metadata"]["name"].as_str().unwrap().to_string(), n["metadata"]["labels"]["topology.kubernetes.io/zone"].as_str().unwrap_or("").to_string())
        })
        .collect();
    assert_eq!(zones.len(), 5, "{zones:?}");
    assert!(zones.contains(&("wk-2".into(), "az-b".into())), "{zones:?}");
    let ready = |n: &serde_json::Value| n["status"]["conditions"].as_array().is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"));
    let not_ready: Vec<&str> = nodes["items"].as_array().unwrap().iter().filter(|n| !ready(n)).map(|n| n["metadata"]["name"].as_str().unwrap_or("")).collect();
    assert!(not_ready.is_empty(), "nodes not Ready: {not_ready:?}");
    // The real programs at the inventory's versions.
    let version = text(&ssh("198.18.0.11", "kubectl --kubeconfig /etc/kubernetes/admin.conf get --raw /version"));
    assert!(version.contains("\"gitVersion\": \"v1.36.3\""), "{version}");
    let status = text(&ssh("198.18.0.13", "set -a; . /etc/kubeha/etcdctl.env; set +a; etcdctl endpoint status -w json"));
    assert!(status.contains("\"version\":\"3.6."), "etcd 3.6: {status}");
}

/// After a machine came back: every API server answers /readyz on its own address again (bounded).
fn wait_for_readyz_everywhere() {
    let started = Instant::now();
    for (name, address) in CONTROL_PLANES {
        while text(&ssh(address, "curl -sk --max-time 2 https://127.0.0.1:6443/readyz")).trim() != "ok" {
            assert!(started.elapsed() < Duration::from_secs(120), "the API server on {name} is not ready 120 s after the lab came back");
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

/// After a control plane came back, VRRP settles where priorities say: cp-1, first in the inventory, has
/// the highest priority and takes the VIP back (preempts) once its health check has passed `rise` times,
/// some seconds after its API server is ready. Until then the VIP may be moving (briefly on none or two),
/// so the failover test waits for that settled state before it picks the holder to kill.
fn wait_for_vip_back_on_cp1() {
    let started = Instant::now();
    while vip_holders() != ["cp-1"] {
        assert!(started.elapsed() < Duration::from_secs(60), "the VIP did not settle on cp-1 within 60 s: held by {:?}", vip_holders());
        std::thread::sleep(Duration::from_millis(500));
    }
}

const KUBECTL: &str = "kubectl --kubeconfig /etc/kubernetes/admin.conf";

/// The holder of a kube-system Lease, the node name before kube-controller-manager's or kube-scheduler's
/// `_<uuid>`, and when it acquired it (seconds since the epoch).
fn lease(address: &str, name: &str) -> Option<(String, f64)> {
    let out = ssh(address, &format!("{KUBECTL} -n kube-system get lease {name} -o json"));
    let lease: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let holder = lease["spec"]["holderIdentity"].as_str()?.split('_').next()?.to_string();
    let acquired = chrono_seconds(lease["spec"]["acquireTime"].as_str()?)?;
    Some((holder, acquired))
}

/// RFC 3339 with microseconds, UTC (a Lease's MicroTime), as seconds since the epoch, read by GNU date.
fn chrono_seconds(time: &str) -> Option<f64> {
    let out = Command::new("date").args(["-u", "-d", time, "+%s.%N"]).output().ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

fn now_seconds() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64()
}

/// Leader election of the real controller-manager and scheduler: one holder each; killing the holder's
/// machine moves each Lease it held to another control plane. The bound, read from the Lease's acquireTime:
/// a candidate counts the lease duration (15 s) from when IT last saw the record change, which is up to one
/// retry period after the holder's last renewal, and notices the expiry up to one retry period later; client-go
/// jitters the 2 s retry period by up to 120 % (4.4 s). So at most 15 + 2 × 4.4 = 23.8 s after the kill.
const LEASE_MOVE_BOUND_S: f64 = 15.0 + 2.0 * 2.0 * 2.2;

fn leases_move_when_their_holder_dies() {
    let names = ["kube-controller-manager", "kube-scheduler"];
    let before: Vec<(String, f64)> = names.iter().map(|n| lease("198.18.0.11", n).unwrap_or_else(|| panic!("no Lease {n}"))).collect();
    let victim = before[0].0.clone();
    assert!(CONTROL_PLANES.iter().any(|(n, _)| *n == victim), "the holder is a control plane: {before:?}");
    let survivor = CONTROL_PLANES.iter().find(|(n, _)| *n != victim).unwrap().1;
    let killed_at = now_seconds();
    let killed = kubeha(&["lab", "kill", &victim]);
    assert!(killed.status.success(), "{}", text(&killed));
    for (name, (holder, _)) in names.iter().zip(&before).filter(|(_, (h, _))| *h == victim) {
        let started = Instant::now();
        let moved = loop {
            match lease(survivor, name) {
                Some((h, acquired)) if h != *holder => break (h, acquired),
                _ => assert!(started.elapsed() < Duration::from_secs(60), "Lease {name} still held by {holder} 60 s after the kill"),
            }
            std::thread::sleep(Duration::from_millis(250));
        };
        let after = moved.1 - killed_at;
        eprintln!("Lease {name}: {holder} killed, {} acquired it {after:.1} s later", moved.0);
        assert!(after <= LEASE_MOVE_BOUND_S, "Lease {name} moved {after:.1} s after the kill (bound {LEASE_MOVE_BOUND_S} s)");
    }
    let back = kubeha(&["lab", "up"]);
    assert!(back.status.success(), "{}", text(&back));
}

#[test]
fn apply_from_a_bundle_resumes_after_sigkill_converges_is_idempotent_then_day_2_and_failover() {
    let state = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    let lab = Lab::up();

    // Without a terminal and without --yes, apply shows the plan and refuses; nothing changes.
    let refused = kubeha_in(state.path(), &["apply"]).stdin(Stdio::null()).output().unwrap();
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(text(&refused).contains("without confirmation: stdin is not a terminal"), "{}", text(&refused));
    assert!(!text(&ssh("198.18.0.11", "ls /etc/kubeha 2>&1")).contains("cluster-state.json"), "a refused apply changed a host");

    // A bundle for air-gapped sites; a mirror with a corrupt kubeadm refused before anything is installed.
    let bundle = software::a_bundle_is_fetched_and_a_bad_mirror_file_is_refused_before_anything_is_installed(work, state.path(), &lab.inventory);

    // With the lab's mirror stopped the bootstrap installs from the bundle alone. It is SIGKILLed with a
    // learner in flux, then again right after kubeadm init; the next run takes over the dead run's lock,
    // resumes and converges. A concurrent run is refused.
    let offline = software::offline_inventory(work, &lab.inventory, &bundle);
    let offline_kubeha = |args: &[&str]| software::kubeha(work, "offline", &offline, state.path(), args);
    let within = Duration::from_secs(180);
    kill_command_after(offline_kubeha(&["apply", "--yes"]), state.path(), "etcd/cp-2/start", within);
    kill_command_after(offline_kubeha(&["apply", "--yes"]), state.path(), "kubeadm/cp-1/init", within);
    let killed_journal = newest_journal(state.path());
    let resumed = offline_kubeha(&["apply", "--yes", "--output", "json"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let journal = {
        let started = Instant::now();
        loop {
            let j =
                newest_journal(state.path()).filter(|j| Some(j) != killed_journal.as_ref() && std::fs::read_to_string(j).is_ok_and(|t| t.contains("stepDone")));
            if let Some(j) = j {
                break j;
            }
            assert!(started.elapsed() < Duration::from_secs(60), "the resumed run did no step within 60 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let concurrent = offline_kubeha(&["apply", "--yes", "--output", "json"]).output().unwrap();
    assert_eq!(concurrent.status.code(), Some(1), "{}", text(&concurrent));
    assert!(text(&concurrent).contains("another kubeha run holds the cluster lock"), "{}", text(&concurrent));
    let resumed_out = resumed.wait_with_output().unwrap();
    let resumed_summary = summary(&resumed_out);
    assert!(text(&resumed_out).contains("did not finish"), "the resumed run names the interrupted one: {}", text(&resumed_out));
    assert!(std::fs::read_to_string(journal).unwrap().contains("\"outcome\":\"converged\""));
    assert!(resumed_summary["changed"].as_u64().unwrap() > 0, "the resumed run did the rest of the bootstrap: {resumed_summary}");
    assert_cluster_is_up();
    software::assert_installed_from_the_bundle();
    let plan = offline_kubeha(&["plan", "--detailed-exitcode"]).output().unwrap();
    assert_eq!(plan.status.code(), Some(0), "converged from the bundle, no software step left: {}", text(&plan));

    // The mirror back (lab up starts it): the lab's inventory names the same bytes, so nothing is to change.
    let back = kubeha(&["lab", "up"]);
    assert!(back.status.success(), "{}", text(&back));
    let plan = kubeha(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(0), "converged after the kills: {}", text(&plan));
    assert!(text(&plan).contains("Nothing to change"), "{}", text(&plan));
    let again = summary(&apply(state.path()));
    assert_eq!(again["changed"], 0, "a second apply changes nothing: {again}");

    // The software phase checks programs by checksum: one changed on a host since is installed again.
    assert!(ssh("198.18.0.21", "printf x >> /usr/local/bin/kubectl").status.success());
    let plan = kubeha(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(2), "{}", text(&plan));
    assert!(text(&plan).contains("/usr/local/bin/kubectl differs from the kubectl 1.36.3 kubeha installed"), "{}", text(&plan));
    let fixed = summary(&apply(state.path()));
    assert_eq!(fixed["changed"], 1, "only wk-1's software step: {fixed}");
    assert!(text(&ssh("198.18.0.21", "kubectl version --client")).contains("v1.36.3"));

    // Secrets never reach the operator's disk or output, the killed runs' folders included.
    let state_file: serde_json::Value = serde_json::from_slice(&ssh("198.18.0.11", "cat /etc/kubeha/cluster-state.json").stdout).unwrap();
    let secrets: Vec<&str> = ["bootstrapToken", "certificateKey"].iter().filter_map(|k| state_file["secrets"][k].as_str()).collect();
    assert_eq!(secrets.len(), 2, "{}", state_file["secrets"].as_object().map(|o| o.keys().cloned().collect::<Vec<_>>().join(",")).unwrap_or_default());
    for secret in secrets {
        let found = Command::new("grep").args(["-rlF", secret]).arg(state.path()).output().unwrap();
        assert!(found.stdout.is_empty(), "a secret is in {}", String::from_utf8_lossy(&found.stdout));
        assert!(!text(&plan).contains(secret));
    }

    // Day-2 scenarios on the converged cluster; each leaves it converged.
    file_mode::a_key_made_world_readable_is_planned_fixed_in_place_without_a_restart_and_verified(state.path());
    join_token::a_worker_joins_after_every_bootstrap_token_is_gone_and_no_token_stays(state.path());

    // Last, what kills machines.
    leases_move_when_their_holder_dies();
    wait_for_readyz_everywhere();
    wait_for_vip_back_on_cp1();

    // The VIP holder dies: keepalived moves the VIP and the API answers through it again within 10 s.
    let holder = vip_holders()[0];
    let survivor = CONTROL_PLANES.iter().find(|(n, _)| *n != holder).unwrap().1;
    let killed = kubeha(&["lab", "kill", holder]);
    assert!(killed.status.success(), "{}", text(&killed));
    let started = Instant::now();
    let readyz = format!("curl -sS --max-time 1 --cacert /etc/kubernetes/pki/ca.crt https://{VIP}:8443/readyz");
    let mut answered = false;
    for _ in 0..40 {
        if text(&ssh(survivor, &readyz)).trim() == "ok" {
            answered = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let failover = started.elapsed();
    assert!(answered && failover < Duration::from_secs(10), "readyz through the VIP after killing {holder}: {failover:?}");
    eprintln!("VIP failover after killing {holder}: readyz answered after {:.1} s", failover.as_secs_f64());
}

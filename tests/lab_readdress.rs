//! Issue 12 item 12 on the lab (3 control planes + 2 workers): a control plane moved to another address keeps
//! its name. cp-3 is killed and booted again at 198.18.0.33 (the machine keeps its disk: etcd data, kubeadm's
//! files and certificates naming 198.18.0.13), and the inventory says so. `apply` re-issues cp-3's etcd
//! server and peer certificates for the new address, points the member at its new peer URL between quorum
//! gates (writes go on through cp-1 and cp-2), restarts it there with its data, and resets and joins cp-3's
//! node again; kubeadm writes the other API servers' manifests again, so none names the old address. Checked
//! with etcdctl, openssl, kubectl and the manifests, not with kubeha. Needs root (see
//! tests/lab_machines.rs).
mod support;
use std::sync::Arc;
use std::time::Instant;
use support::drill::{CP1, CP2, Etcdctl, QuorumMonitor, edited_inventory, kubeha_ok, kubeha_with, lab_inventory, report, ssh_ok, text};
use support::lab::Lab;

const MOVED: &str = "198.18.0.33";
const KUBECTL: &str = "kubectl --kubeconfig /etc/kubernetes/admin.conf";

/// The IP addresses the certificate served at `address:port` was issued for, as the openssl client on the
/// test host reads them.
fn served_ips(address: &str, port: u16) -> String {
    let script = format!("openssl s_client -connect {address}:{port} </dev/null 2>/dev/null | openssl x509 -noout -ext subjectAltName");
    let out = std::process::Command::new("sh").arg("-c").arg(&script).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_readdressed_control_plane_is_moved_with_its_data_and_joined_again() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let _lab = Lab::up();
    kubeha_ok(lab_inventory(), state, &["apply", "--yes"]);
    let etcdctl = Arc::new(Etcdctl::from(CP1));
    etcdctl.write_keys(&[CP1], "/readdress/", 200);

    let moved = edited_inventory(state, "moved.yaml", |t| t.replace("{name: cp-3, address: 198.18.0.13", &format!("{{name: cp-3, address: {MOVED}")));
    kubeha_ok(lab_inventory(), state, &["lab", "kill", "cp-3"]);
    kubeha_ok(&moved, state, &["lab", "up"]);

    let plan = kubeha_with(&moved, state, &["plan"]).output().unwrap();
    let shown = text(&plan);
    let at = |needle: &str| shown.find(needle).unwrap_or_else(|| panic!("{needle:?} not planned:\n{shown}"));
    assert!(at("GATE before move cp-3") < at("update etcd member cp-3"), "{shown}");
    assert!(at(&format!("to peer URL https://{MOVED}:2380")) < at("GATE after move cp-3"), "{shown}");
    assert!(shown.contains("re-addressed: etcd knows it at https://198.18.0.13:2380"), "{shown}");
    assert!(shown.contains("re-addressed: the node registered at 198.18.0.13"), "{shown}");
    assert!(at("drain node cp-3 and delete it") < at("as a control plane"), "{shown}");
    assert!(!shown.contains("retire"), "nothing is retired:\n{shown}");
    // The API servers that stay were started naming cp-3's old client URL: kubeadm writes them again.
    for cp in ["cp-1", "cp-2"] {
        assert!(at("(kubeadm init phase upload-config kubeadm)") < at(&format!("kubeadm upgrade node phase control-plane on {cp}")), "{shown}");
    }

    let monitor = QuorumMonitor::start(etcdctl.clone(), vec![CP1.into(), CP2.into()]);
    let started = Instant::now();
    let out = kubeha_with(&moved, state, &["apply", "--yes"]).output().unwrap();
    let writes = monitor.finish();
    eprintln!("$ kubeha apply --yes (moved cp-3)\n{}", text(&out));
    assert!(out.status.success(), "apply after the move failed");
    report("re-addressed control plane", started, &writes);
    assert!(writes.longest_unavailable < std::time::Duration::from_secs(10), "etcd stayed writable: {writes:?}");

    // etcd: cp-3 at its new peer URL, serving a certificate for its new address, with the data it had.
    let list = etcdctl.run(&[CP1], &["member", "list"]);
    let cp3 = list.lines().find(|l| l.contains(", cp-3,")).unwrap_or_else(|| panic!("cp-3 is a member: {list}"));
    assert!(cp3.contains(&format!("https://{MOVED}:2380")) && cp3.contains("started"), "{cp3}");
    assert!(served_ips(MOVED, 2379).contains(&format!("IP Address:{MOVED}")), "{}", served_ips(MOVED, 2379));
    assert!(served_ips(MOVED, 2380).contains(&format!("IP Address:{MOVED}")), "{}", served_ips(MOVED, 2380));
    assert_eq!(etcdctl.count(&[MOVED], "/readdress/"), 200, "cp-3 kept and serves the cluster's data");
    // Kubernetes: the node is back at its new address and its API server serves a certificate for it.
    let ip = ssh_ok(CP1, &format!("{KUBECTL} get node cp-3 -o jsonpath='{{.status.addresses[?(@.type==\"InternalIP\")].address}}'"));
    assert_eq!(ip.trim(), MOVED);
    let zone = ssh_ok(CP1, &format!("{KUBECTL} get node cp-3 -o jsonpath='{{.metadata.labels.topology\\.kubernetes\\.io/zone}}'"));
    assert_eq!(zone.trim(), "az-c", "the new Node has its labels");
    assert!(served_ips(MOVED, 6443).contains(&format!("IP Address:{MOVED}")), "{}", served_ips(MOVED, 6443));
    // Every API server talks to cp-3's etcd member at its new address, none to the old one.
    for host in [CP1, CP2, MOVED] {
        let flag = ssh_ok(host, "grep -- --etcd-servers= /etc/kubernetes/manifests/kube-apiserver.yaml");
        assert!(flag.contains(&format!("https://{MOVED}:2379")) && !flag.contains("198.18.0.13"), "{host}: {flag}");
    }
    let stored = ssh_ok(CP1, &format!("{KUBECTL} -n kube-system get configmap kubeadm-config -o jsonpath='{{.data.ClusterConfiguration}}'"));
    assert!(stored.contains(&format!("https://{MOVED}:2379")) && !stored.contains("198.18.0.13:2379"), "{stored}");

    let again = kubeha_with(&moved, state, &["plan", "--detailed-exitcode"]).output().unwrap();
    assert_eq!(again.status.code(), Some(0), "converged after the move:\n{}", text(&again));
    kubeha_ok(&moved, state, &["verify"]);
}

//! The first control plane on real machines: etcd grown by the plan's steps, keepalived + HAProxy, then the
//! kubeadm stand-in's `init` with kubeha's rendered InitConfiguration. The stand-in API server must become
//! ready through the VIP, i.e. through real keepalived and a real HAProxy TLS health check. Needs root.
mod support;
use kubeha::phases::loadbalancer;
use kubeha::pki::{self, Authority};
use kubeha::render::secrets::Secrets;
use kubeha::ssh::Command as Remote;
use std::time::Duration;
use support::lab::{self, Lab};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubeadm_init_serves_through_the_vip() {
    let lab = Lab::up();
    let inv = &lab.inventory;
    let hosts = lab::connect(inv.control_planes(), inv).await;
    let pki_files = pki::etcd_files(inv, &Authority::generate("kubeha-etcd-ca-lab").unwrap()).unwrap();
    let secrets = Secrets::generate("lab").unwrap();
    let rendered = lab::rendered(inv, &secrets);
    assert_eq!(lab::run_etcd_phases(inv, &hosts, &pki_files, &rendered).await, 5);
    for name in ["cp-1", "cp-2", "cp-3"] {
        let files = lab::files_of(&rendered, name, |t| t.starts_with("keepalived/") || t.starts_with("haproxy/"));
        loadbalancer::apply(hosts[name].as_ref(), &files).await.unwrap();
    }

    let cp1 = hosts["cp-1"].as_ref();
    kubeadm(cp1, lab::files_of(&rendered, "cp-1", |t| t == "kubeadm/init.yaml")[0], "kubeadm init --config /etc/kubeha/kubeadm.yaml --upload-certs").await;

    // Through the VIP from another control plane: keepalived holds it, HAProxy's TLS check found cp-1 healthy.
    let readyz = hosts["cp-2"].run(&Remote::script("curl -sk --max-time 5 https://198.18.0.100:8443/readyz")).await.unwrap().stdout_text();
    assert_eq!(readyz.trim(), "ok");
    let nodes = cp1.run(&Remote::script("kubectl --kubeconfig /etc/kubernetes/admin.conf get nodes -o json")).await.unwrap().stdout_text();
    let nodes: serde_json::Value = serde_json::from_str(&nodes).unwrap();
    let cp1_node = &nodes["items"][0];
    assert_eq!(cp1_node["metadata"]["name"], "cp-1");
    assert_eq!(cp1_node["metadata"]["labels"]["topology.kubernetes.io/zone"], "az-a");

    // Joins pin the CA that init created, read back from cp-1; token and certificate key are the init's.
    let ca = String::from_utf8(cp1.read_file("/etc/kubernetes/pki/ca.crt").await.unwrap().unwrap()).unwrap();
    let joined = lab::rendered(inv, &Secrets { ca_cert_hash: pki::discovery_hash(&ca).unwrap(), ..secrets.clone() });
    kubeadm(hosts["cp-2"].as_ref(), lab::files_of(&joined, "cp-2", |t| t == "kubeadm/join.yaml")[0], "kubeadm join --config /etc/kubeha/kubeadm.yaml").await;
    let workers = lab::connect(inv.workers().filter(|h| h.name == "wk-1"), inv).await;
    kubeadm(workers["wk-1"].as_ref(), lab::files_of(&joined, "wk-1", |t| t == "kubeadm/join.yaml")[0], "kubeadm join --config /etc/kubeha/kubeadm.yaml").await;
    let nodes = cp1.run(&Remote::script("kubectl --kubeconfig /etc/kubernetes/admin.conf get nodes -o json")).await.unwrap().stdout_text();
    let nodes: serde_json::Value = serde_json::from_str(&nodes).unwrap();
    let mut names: Vec<&str> = nodes["items"].as_array().unwrap().iter().map(|n| n["metadata"]["name"].as_str().unwrap()).collect();
    names.sort_unstable();
    assert_eq!(names, ["cp-1", "cp-2", "wk-1"]);
    // cp-2's own API server serves now: HAProxy has a second healthy backend.
    let own = hosts["cp-2"].run(&Remote::script("curl -sk --max-time 5 https://198.18.0.12:6443/readyz")).await.unwrap().stdout_text();
    assert_eq!(own.trim(), "ok");
}

/// Places a kubeadm config (0600: it holds the token and certificate key) and runs kubeadm with it.
async fn kubeadm(t: &dyn kubeha::ssh::Transport, config: &kubeha::render::RenderedFile, command: &str) {
    kubeha::phases::files::place(t, &config.path, config.contents.as_bytes(), 0o600).await.unwrap();
    let out = t.exec(&Remote::script(command).timeout(Duration::from_secs(180))).await.unwrap();
    assert!(out.status.success(), "{}: `{command}` failed:\n{}\n{}", t.host(), out.stdout_text(), String::from_utf8_lossy(&out.stderr));
}

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
    let rendered = lab::rendered(inv, &Secrets::generate("lab").unwrap());
    assert_eq!(lab::run_etcd_phases(inv, &hosts, &pki_files, &rendered).await, 5);
    for name in ["cp-1", "cp-2", "cp-3"] {
        let files = lab::files_of(&rendered, name, |t| t.starts_with("keepalived/") || t.starts_with("haproxy/"));
        loadbalancer::apply(hosts[name].as_ref(), &files).await.unwrap();
    }

    let init = lab::files_of(&rendered, "cp-1", |t| t == "kubeadm/init.yaml");
    let cp1 = hosts["cp-1"].as_ref();
    kubeha::ssh::Transport::upload(
        cp1,
        &kubeha::ssh::Upload { path: init[0].path.clone(), contents: init[0].contents.as_bytes().to_vec(), mode: 0o600, owner: Some("root:root".into()) },
    )
    .await
    .unwrap();
    let out = cp1.exec(&Remote::script("kubeadm init --config /etc/kubeha/kubeadm.yaml --upload-certs").timeout(Duration::from_secs(180))).await.unwrap();
    assert!(out.status.success(), "kubeadm init failed:\n{}\n{}", out.stdout_text(), String::from_utf8_lossy(&out.stderr));

    // Through the VIP from another control plane: keepalived holds it, HAProxy's TLS check found cp-1 healthy.
    let readyz = hosts["cp-2"].run(&Remote::script("curl -sk --max-time 5 https://198.18.0.100:8443/readyz")).await.unwrap().stdout_text();
    assert_eq!(readyz.trim(), "ok");
    let nodes = cp1.run(&Remote::script("kubectl --kubeconfig /etc/kubernetes/admin.conf get nodes -o json")).await.unwrap().stdout_text();
    let nodes: serde_json::Value = serde_json::from_str(&nodes).unwrap();
    let cp1_node = &nodes["items"][0];
    assert_eq!(cp1_node["metadata"]["name"], "cp-1");
    assert_eq!(cp1_node["metadata"]["labels"]["topology.kubernetes.io/zone"], "az-a");
}

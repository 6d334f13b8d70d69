//! The plan's PKI and etcd phases executed on real machines: the lab's three control planes with Debian's
//! etcd, kubeha's certificates and rendered configuration, over kubeha's SSH. Needs root (see lab_machines.rs).
mod support;
use kubeha::phases::etcd as phase;
use kubeha::pki::{self, Authority};
use kubeha::render::secrets::Secrets;
use kubeha::ssh::Command as Remote;
use support::lab::{self, Lab};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_grows_one_member_at_a_time_between_gates() {
    let lab = Lab::up();
    let inv = &lab.inventory;
    let hosts = lab::connect(inv.control_planes(), inv).await;
    let ca = Authority::generate("kubeha-etcd-ca-lab").unwrap();
    let pki_files = pki::etcd_files(inv, &ca).unwrap();
    let rendered = lab::rendered(inv, &Secrets::generate("lab").unwrap());
    assert_eq!(lab::run_etcd_phases(inv, &hosts, &pki_files, &rendered).await, 5);

    // Checked independently of kubeha's parsers: etcdctl inside a machine, as an operator would.
    let out = hosts["cp-3"]
        .run(&Remote::script("set -a; . /etc/kubeha/etcdctl.env; set +a; etcdctl member list -w table; etcdctl put kubeha-test ok >/dev/null; etcdctl get kubeha-test --print-value-only"))
        .await
        .unwrap()
        .stdout_text();
    for name in ["cp-1", "cp-2", "cp-3"] {
        assert!(out.contains(&format!("| {name} |")), "{out}");
    }
    assert!(!out.contains("true"), "no learner may remain: {out}");
    assert!(out.trim_end().ends_with("ok"), "{out}");
    let mode = hosts["cp-2"].run(&Remote::script("stat -c %a /etc/kubeha/pki/etcd/server.key /etc/kubeha/etcdctl.env")).await.unwrap().stdout_text();
    assert_eq!(mode.split_whitespace().collect::<Vec<_>>(), ["600", "600"]);

    // A second run changes nothing: every file is already in place.
    for (name, t) in &hosts {
        let mine: Vec<&pki::EtcdFile> = pki_files.iter().filter(|f| &f.host == name).collect();
        let etcd_files = lab::files_of(&rendered, name, |t| t.starts_with("etcd/") || t == "systemd/etcd.service");
        assert!(!phase::install(t.as_ref(), &mine, &etcd_files).await.unwrap(), "{name} changed on the second run");
    }
}

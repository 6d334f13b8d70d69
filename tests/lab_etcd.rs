//! The plan's PKI and etcd phases executed on real machines: the lab's three control planes with Debian's
//! etcd, kubeha's certificates and rendered configuration, over kubeha's SSH. Needs root (see lab_machines.rs).
use assert_cmd::Command;
use kubeha::inventory::{self, Inventory};
use kubeha::phases::etcd as phase;
use kubeha::pki::{self, Authority};
use kubeha::plan::{self, Action};
use kubeha::render::{self, Target, secrets::Secrets, templates::Templates};
use kubeha::ssh::{self, Command as Remote, Transport};
use std::collections::HashMap;
use std::sync::Arc;

const INVENTORY: &str = "inventories/lab.yaml";

fn kubeha(args: &[&str]) -> std::process::Output {
    Command::cargo_bin("kubeha").unwrap().args(args).args(["-i", INVENTORY]).output().unwrap()
}

struct LabGuard;

impl Drop for LabGuard {
    fn drop(&mut self) {
        let _ = kubeha(&["lab", "down"]);
    }
}

async fn connect(inv: &Inventory) -> HashMap<String, Arc<dyn Transport>> {
    let targets: Vec<ssh::HostTarget> = inv.control_planes().map(ssh::targets::target).collect();
    let options = ssh::targets::connect_options(inv, false);
    ssh::pool::connect_each(&targets, &options).await.into_iter().map(|(name, s)| (name, s.expect("connect") as Arc<dyn Transport>)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_grows_one_member_at_a_time_between_gates() {
    let _ = kubeha(&["lab", "down"]);
    let _guard = LabGuard;
    assert!(kubeha(&["lab", "up"]).status.success());
    let inv = inventory::load(std::path::Path::new(INVENTORY)).unwrap().inventory.unwrap();
    let hosts = connect(&inv).await;
    let ca = Authority::generate("kubeha-etcd-ca-lab").unwrap();
    let pki_files = pki::etcd_files(&inv, &ca).unwrap();
    let rendered = render::render(&inv, &Secrets::generate("lab").unwrap(), &Templates::builtin().unwrap()).unwrap();
    let etcd_files = |host: &str| -> Vec<&render::RenderedFile> {
        rendered.iter().filter(|f| f.target == Target::Host(host.into()) && (f.template.starts_with("etcd/") || f.template == "systemd/etcd.service")).collect()
    };

    // Execute the plan's own steps, in order, as the executor will.
    let plan = plan::fresh(&inv);
    let mut gates = 0;
    for phase in plan.phases.iter().filter(|p| p.name == "pki" || p.name == "etcd") {
        for step in &phase.steps {
            let t = step.host.as_ref().map(|h| hosts[h].as_ref());
            let result = match (&step.action, t) {
                (Action::GenerateEtcdPki { .. }, None) => Ok(()),
                (Action::InstallEtcdPki { .. }, Some(t)) => {
                    let mine: Vec<&pki::EtcdFile> = pki_files.iter().filter(|f| f.host == t.host()).collect();
                    phase::install(t, &mine, &etcd_files(t.host())).await.map(|_| ()).map_err(Into::into)
                }
                (Action::StartEtcdMember { .. }, Some(t)) => phase::start(t, false).await.map_err(Into::into),
                (Action::Gate(g), Some(t)) => {
                    gates += 1;
                    phase::gate(t, g).await
                }
                (Action::AddEtcdLearner { member, peer_url }, Some(t)) => phase::add_learner(t, member, peer_url).await,
                (Action::WaitLearnerCaughtUp { member }, Some(t)) => phase::wait_caught_up(t, member).await,
                (Action::PromoteEtcdLearner { member }, Some(t)) => phase::promote(t, member).await,
                (other, _) => panic!("unexpected step {other:?}"),
            };
            if let Err(e) = result {
                let log = hosts["cp-1"].exec(&Remote::script("journalctl -u etcd --no-pager | tail -20")).await.map(|o| o.stdout_text()).unwrap_or_default();
                panic!("step {} failed: {e}\ncp-1 etcd log:\n{log}", step.id);
            }
        }
    }
    assert_eq!(gates, 5);

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
        assert!(!phase::install(t.as_ref(), &mine, &etcd_files(name)).await.unwrap(), "{name} changed on the second run");
    }
}

//! Shared by the lab tests: the lab's lifetime and SSH connections to its machines, and the plan's etcd
//! steps run on them. The lab tests use inventories/lab.yaml and need root (see tests/lab_machines.rs).
#![allow(dead_code)]
use kubeha::inventory::{self, Inventory};
use kubeha::phases::etcd as etcd_phase;
use kubeha::pki;
use kubeha::plan::{self, Action};
use kubeha::render::{self, RenderedFile, Target};
use kubeha::ssh::{self, Command as Remote, Transport};
use std::collections::HashMap;
use std::sync::Arc;

pub const INVENTORY: &str = "inventories/lab.yaml";

pub fn kubeha(args: &[&str]) -> std::process::Output {
    assert_cmd::Command::cargo_bin("kubeha").unwrap().args(args).args(["-i", INVENTORY]).output().unwrap()
}

/// A running lab that is torn down on every exit path, including a failed assertion.
pub struct Lab {
    pub inventory: Inventory,
}

impl Lab {
    /// Cleans leftovers of an earlier run, then boots the lab.
    pub fn up() -> Self {
        let _ = kubeha(&["lab", "down"]);
        let out = kubeha(&["lab", "up"]);
        assert!(out.status.success(), "lab up: {}", String::from_utf8_lossy(&out.stderr));
        Lab { inventory: inventory::load(std::path::Path::new(INVENTORY)).unwrap().inventory.unwrap() }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = kubeha(&["lab", "down"]);
    }
}

pub async fn connect(hosts: impl Iterator<Item = &inventory::Host>, inv: &Inventory) -> HashMap<String, Arc<dyn Transport>> {
    let targets: Vec<ssh::HostTarget> = hosts.map(ssh::targets::target).collect();
    let options = ssh::targets::connect_options(inv, false);
    ssh::pool::connect_each(&targets, &options).await.into_iter().map(|(name, s)| (name, s.expect("connect") as Arc<dyn Transport>)).collect()
}

/// Rendered files of one host whose template matches.
pub fn files_of<'a>(rendered: &'a [RenderedFile], host: &str, template: impl Fn(&str) -> bool) -> Vec<&'a RenderedFile> {
    rendered.iter().filter(|f| f.target == Target::Host(host.into()) && template(f.template)).collect()
}

/// Runs the plan's pki and etcd phases step by step, as the executor will; returns the number of gates passed.
pub async fn run_etcd_phases(inv: &Inventory, hosts: &HashMap<String, Arc<dyn Transport>>, pki_files: &[pki::EtcdFile], rendered: &[RenderedFile]) -> usize {
    let etcd_files = |host: &str| files_of(rendered, host, |t| t.starts_with("etcd/") || t == "systemd/etcd.service");
    let mut gates = 0;
    for phase in plan::fresh(inv).phases.iter().filter(|p| p.name == "pki" || p.name == "etcd") {
        for step in &phase.steps {
            let t = step.host.as_ref().map(|h| hosts[h].as_ref());
            let result = match (&step.action, t) {
                (Action::GenerateEtcdPki { .. }, None) => Ok(()),
                (Action::InstallEtcdPki { .. }, Some(t)) => {
                    let mine: Vec<&pki::EtcdFile> = pki_files.iter().filter(|f| f.host == t.host()).collect();
                    etcd_phase::install(t, &mine, &etcd_files(t.host())).await.map(|_| ()).map_err(Into::into)
                }
                (Action::StartEtcdMember { .. }, Some(t)) => etcd_phase::start(t, false).await.map_err(Into::into),
                (Action::Gate(g), Some(t)) => {
                    gates += 1;
                    etcd_phase::gate(t, g).await
                }
                (Action::AddEtcdLearner { member, peer_url }, Some(t)) => etcd_phase::add_learner(t, member, peer_url).await,
                (Action::WaitLearnerCaughtUp { member }, Some(t)) => etcd_phase::wait_caught_up(t, member).await,
                (Action::PromoteEtcdLearner { member }, Some(t)) => etcd_phase::promote(t, member).await,
                (other, _) => panic!("unexpected step {other:?}"),
            };
            if let Err(e) = result {
                let log = hosts["cp-1"].exec(&Remote::script("journalctl -u etcd --no-pager | tail -20")).await.map(|o| o.stdout_text()).unwrap_or_default();
                panic!("step {} failed: {e}\ncp-1 etcd log:\n{log}", step.id);
            }
        }
    }
    gates
}

pub fn rendered(inv: &Inventory, secrets: &render::secrets::Secrets) -> Vec<RenderedFile> {
    render::render(inv, secrets, &render::templates::Templates::builtin().unwrap()).unwrap()
}

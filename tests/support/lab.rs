//! Shared by the lab tests: the lab's lifetime and SSH connections to its machines. The lab tests use inventories/lab.yaml and need root (see tests/lab_machines.rs).
#![allow(dead_code)]
use kubeha::inventory::{self, Inventory};
use kubeha::render::{self, RenderedFile, Target};
use kubeha::ssh::{self, Transport};
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
/// The files of `host` in the renderer's `group`: the same set the planner places for that group's phase.
pub fn files_of<'a>(rendered: &'a [RenderedFile], host: &str, group: render::Group) -> Vec<&'a RenderedFile> {
    rendered.iter().filter(|f| f.target == Target::Host(host.into()) && f.group == group).collect()
}

pub fn rendered(inv: &Inventory, secrets: &render::secrets::Secrets) -> Vec<RenderedFile> {
    render::render(inv, secrets, &render::templates::Templates::builtin().unwrap()).unwrap()
}

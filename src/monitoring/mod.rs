//! `kubeha monitoring render`: a Prometheus scrape configuration for every target the inventory implies, the
//! alert rules, the read-only identity Prometheus scrapes with, and the credential files it reads (empty, 0600,
//! for the operator to fill). Pure up to `output::write`.
pub mod output;
pub mod rules;
pub mod scrape;

use crate::inventory::Inventory;
use crate::paths::METRICS_TEXTFILE_DIR;
use crate::render::context::{ETCD_METRICS_PORT, HAPROXY_EXPORTER_PORT, KUBEHA_METRICS_PORT};
use crate::render::{RenderError, render_template, templates::Templates};
use serde::Serialize;

/// One generated file, at a path relative to the output folder.
#[derive(Clone, Debug)]
pub struct MonitoringFile {
    pub path: &'static str,
    pub mode: u32,
    pub contents: String,
}

/// The files the scrape configuration reads that only the operator can fill (see scrape::KUBERNETES_CA_FILE).
pub const CREDENTIALS: [&str; 2] = [scrape::KUBERNETES_CA_FILE, scrape::TOKEN_FILE];

#[derive(Serialize)]
struct Readme {
    cluster: String,
    token_file: &'static str,
    ca_file: &'static str,
    etcd_port: u16,
    haproxy_port: u16,
    kubeha_metrics_port: u16,
    textfile_dir: &'static str,
}

pub fn render(inv: &Inventory, templates: &Templates) -> Result<Vec<MonitoringFile>, RenderError> {
    const PUBLIC: u32 = 0o644;
    let what = "monitoring";
    let readme = Readme {
        cluster: inv.name.clone(),
        token_file: scrape::TOKEN_FILE,
        ca_file: scrape::KUBERNETES_CA_FILE,
        etcd_port: ETCD_METRICS_PORT,
        haproxy_port: HAPROXY_EXPORTER_PORT,
        kubeha_metrics_port: KUBEHA_METRICS_PORT,
        textfile_dir: METRICS_TEXTFILE_DIR,
    };
    let public = |path, contents| MonitoringFile { path, mode: PUBLIC, contents };
    Ok(vec![
        public("prometheus.yml", render_template(templates, "monitoring/prometheus.yml", what, &scrape::scrape_config(inv))?),
        public("rules.yml", render_template(templates, "monitoring/rules.yml", what, &rules::rules(inv))?),
        public("prometheus-rbac.yaml", render_template(templates, "monitoring/prometheus-rbac.yaml", what, &readme)?),
        public("README.md", render_template(templates, "monitoring/README.md", what, &readme)?),
    ])
}

#[cfg(test)]
mod tests;

//! Rendering: the validated inventory and the cluster's secrets become every file kubeha installs,
//! each with its destination host, path and mode.
pub mod context;
pub mod secrets;
pub mod templates;

use crate::inventory::{Cni, Host, Inventory};
use crate::paths;
use secrets::Secrets;
use serde::Serialize;
use std::path::{Path, PathBuf};
use templates::Templates;

/// Where a file goes: one host, or the cluster as a whole (applied through the API, e.g. the CNI).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase", tag = "kind", content = "name")]
pub enum Target {
    Host(String),
    Cluster,
}

/// The file groups the planner reasons about; each maps to a phase and its service. The renderer names a
/// rendered file's group where it names its path, so no second table of paths can disagree with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Group {
    State,
    Host,
    /// The units of programs the software phase installs (the kubelet's and kubeadm's drop-in for it).
    Software,
    Etcd,
    LoadBalancer,
    Kubeadm,
    KubernetesCa,
    Cni,
    /// The etcd backup script and timer: placed after the control plane exists, the timer enabled.
    Backup,
}

#[derive(Clone, Debug, Serialize)]
pub struct RenderedFile {
    pub target: Target,
    /// Absolute path on the host; for cluster files, a path relative to the cluster folder.
    pub path: String,
    pub mode: u32,
    #[serde(skip)]
    pub group: Group,
    pub template: &'static str,
    #[serde(skip)]
    pub contents: String,
}

impl RenderedFile {
    /// Files that hold a secret are written 0600 everywhere: on hosts and in a render folder.
    pub fn is_secret(&self) -> bool {
        self.mode & 0o077 == 0
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error(transparent)]
    Template(#[from] templates::TemplateError),
    #[error("rendering {template} for {target}: {message}")]
    Render { template: &'static str, target: String, message: String },
    #[error("{path}: {message}")]
    Output { path: String, message: String },
}

const SECRET: u32 = 0o600;
const PUBLIC: u32 = 0o644;
const EXECUTABLE: u32 = 0o755;

struct Renderer<'a> {
    templates: &'a Templates,
    files: Vec<RenderedFile>,
}

impl Renderer<'_> {
    fn add<C: Serialize>(&mut self, target: &Target, (path, group): (&str, Group), mode: u32, template: &'static str, context: &C) -> Result<(), RenderError> {
        let contents = render_template(self.templates, template, &target_name(target), context)?;
        self.files.push(RenderedFile { target: target.clone(), path: path.to_string(), mode, group, template, contents });
        Ok(())
    }
}

/// One template with its typed context, ending in a newline; `target` names what it is for in errors.
pub fn render_template<C: Serialize>(templates: &Templates, template: &'static str, target: &str, context: &C) -> Result<String, RenderError> {
    let failed = |message: String| RenderError::Render { template, target: target.to_string(), message };
    let ctx = tera::Context::from_serialize(context).map_err(|e| failed(templates::error_chain(&e)))?;
    let contents = templates.tera.render(template, &ctx).map_err(|e| failed(templates::error_chain(&e)))?;
    Ok(ensure_newline(contents))
}

fn ensure_newline(mut text: String) -> String {
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text
}

fn target_name(t: &Target) -> String {
    match t {
        Target::Host(h) => format!("host {h}"),
        Target::Cluster => "the cluster".to_string(),
    }
}

/// The template of the seed's kubeadm file; every other host gets `kubeadm/join.yaml`.
pub const INIT_TEMPLATE: &str = "kubeadm/init.yaml";

/// Every file of a cluster that does not exist yet (what `kubeha render` shows): the seed, which gets
/// init.yaml, is the inventory's first control plane (where `plan::seed_control_plane` falls back to when
/// no control plane is joined) `apply` renders with `render_seeded` for the seed it observed.
pub fn render(inv: &Inventory, secrets: &Secrets, templates: &Templates) -> Result<Vec<RenderedFile>, RenderError> {
    let seed = inv.first_control_plane().map(|h| h.name.clone()).unwrap_or_default();
    render_seeded(inv, secrets, templates, &seed, context::EtcdCluster::New)
}

/// Every file of the cluster, hosts in inventory order, then cluster-wide files. `seed` gets the
/// InitConfiguration (kubeadm/init.yaml: `kubeadm init` there when no cluster exists, its ClusterConfiguration
/// uploaded from there later); every other host gets a JoinConfiguration (kubeadm/join.yaml). `etcd` says
/// whether the etcd cluster exists (then no member's config may bootstrap a new one).
pub fn render_seeded(
    inv: &Inventory,
    secrets: &Secrets,
    templates: &Templates,
    seed: &str,
    etcd: context::EtcdCluster,
) -> Result<Vec<RenderedFile>, RenderError> {
    let mut r = Renderer { templates, files: Vec::new() };
    for host in &inv.hosts {
        let target = Target::Host(host.name.clone());
        host_files(&mut r, inv, host, &target, secrets, host.is_control_plane() && host.name == seed, etcd)?;
    }
    let cni = context::cni(inv);
    let file = cni_file(inv.kubernetes.cni);
    r.add(&Target::Cluster, (file, Group::Cni), PUBLIC, file, &cni)?;
    Ok(r.files)
}

/// The cluster file of a CNI; its path under the cluster folder is also its template's name.
pub fn cni_file(cni: Cni) -> &'static str {
    match cni {
        Cni::Flannel => "cni/flannel.yaml",
        Cni::Calico => "cni/calico.yaml",
        Cni::Cilium => "cni/cilium-values.yaml",
    }
}

fn host_files(
    r: &mut Renderer,
    inv: &Inventory,
    host: &Host,
    target: &Target,
    secrets: &Secrets,
    first: bool,
    etcd: context::EtcdCluster,
) -> Result<(), RenderError> {
    let prerequisites = context::host_prerequisites(inv);
    r.add(target, (paths::SYSCTL_CONF, Group::Host), PUBLIC, "host/sysctl.conf", &prerequisites)?;
    r.add(target, (paths::MODULES_LOAD_CONF, Group::Host), PUBLIC, "host/modules-load.conf", &prerequisites)?;
    if let Some(unit) = context::kubelet_unit(inv) {
        r.add(target, (paths::KUBELET_UNIT, Group::Software), PUBLIC, "systemd/kubelet.service", &unit)?;
        r.add(target, (paths::KUBELET_KUBEADM_DROPIN, Group::Software), PUBLIC, "systemd/kubelet-kubeadm.conf", &unit)?;
    }
    if let Some(c) = context::containerd(inv) {
        r.add(target, (paths::CONTAINERD_CONFIG, Group::Software), PUBLIC, "containerd/config.toml", &c)?;
        r.add(target, (paths::CONTAINERD_UNIT, Group::Software), PUBLIC, "systemd/containerd.service", &c)?;
        for hosts in context::registry_hosts(inv) {
            r.add(target, (&paths::containerd_registry_hosts(&hosts.registry), Group::Software), PUBLIC, "containerd/hosts.toml", &hosts)?;
        }
    }
    if host.is_control_plane() {
        r.add(target, (paths::ETCD_CONFIG, Group::Etcd), PUBLIC, "etcd/etcd.conf.yml", &context::etcd_config(inv, host, secrets, etcd))?;
        r.add(target, (paths::ETCD_UNIT, Group::Etcd), PUBLIC, "systemd/etcd.service", &context::etcd_unit())?;
        r.add(target, (paths::ETCDCTL_ENV, Group::Etcd), SECRET, "etcd/etcdctl.env", &context::etcdctl_env(inv))?;
        if let Some(k) = context::keepalived(inv, host, secrets) {
            r.add(target, (paths::KEEPALIVED_CONFIG, Group::LoadBalancer), SECRET, "keepalived/keepalived.conf", &k)?;
        }
        if let Some(c) = context::check_script(inv) {
            r.add(target, (paths::CHECK_SCRIPT, Group::LoadBalancer), EXECUTABLE, "keepalived/check_apiserver.sh", &c)?;
        }
        if let Some(h) = context::haproxy(inv) {
            r.add(target, (paths::HAPROXY_CONFIG, Group::LoadBalancer), PUBLIC, "haproxy/haproxy.cfg", &h)?;
        }
        if let Some(m) = context::kubeha_metrics(inv) {
            r.add(target, (paths::KUBEHA_METRICS_SCRIPT, Group::LoadBalancer), EXECUTABLE, "monitoring/kubeha-metrics.sh", &m)?;
            r.add(target, (paths::KUBEHA_METRICS_SOCKET, Group::LoadBalancer), PUBLIC, "systemd/kubeha-metrics.socket", &m)?;
            r.add(target, (paths::KUBEHA_METRICS_SERVICE, Group::LoadBalancer), PUBLIC, "systemd/kubeha-metrics@.service", &m)?;
        }
        if let Some(b) = context::etcd_backup(inv, host) {
            r.add(target, (paths::ETCD_BACKUP_SCRIPT, Group::Backup), EXECUTABLE, "etcd/etcd-backup.sh", &b)?;
            r.add(target, (paths::ETCD_BACKUP_SERVICE, Group::Backup), PUBLIC, "systemd/kubeha-etcd-backup.service", &b)?;
            r.add(target, (paths::ETCD_BACKUP_TIMER, Group::Backup), PUBLIC, "systemd/kubeha-etcd-backup.timer", &b)?;
        }
    }
    let kubeadm_file = (paths::KUBEADM_CONFIG, Group::Kubeadm);
    if first {
        r.add(target, kubeadm_file, SECRET, INIT_TEMPLATE, &context::kubeadm_init(inv, host, secrets))
    } else {
        r.add(target, kubeadm_file, SECRET, "kubeadm/join.yaml", &context::kubeadm_join(inv, host, secrets))
    }
}

/// Marks a folder as kubeha's render output, so a re-render may replace it and nothing else is touched.
pub const OUTPUT_MARKER: &str = ".kubeha-render";

/// Writes DIR/<host>/<path on host> and DIR/_cluster/<path>. An existing folder is replaced only if an
/// earlier render created it, so stale files of removed hosts do not linger and no user folder is wiped.
pub fn write_tree(files: &[RenderedFile], dir: &Path) -> Result<(), RenderError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let out_err = |path: &Path, e: std::io::Error| RenderError::Output { path: path.display().to_string(), message: e.to_string() };
    if dir.exists() {
        let empty = std::fs::read_dir(dir).map_err(|e| out_err(dir, e))?.next().is_none();
        if !empty && !dir.join(OUTPUT_MARKER).exists() {
            return Err(RenderError::Output {
                path: dir.display().to_string(),
                message: "exists and is not an earlier kubeha render; choose an empty or new folder".into(),
            });
        }
        std::fs::remove_dir_all(dir).map_err(|e| out_err(dir, e))?;
    }
    std::fs::create_dir_all(dir).map_err(|e| out_err(dir, e))?;
    std::fs::write(dir.join(OUTPUT_MARKER), "rendered by kubeha; `kubeha render` replaces this folder\n").map_err(|e| out_err(dir, e))?;
    for f in files {
        let path = output_path(dir, f);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| out_err(parent, e))?;
        }
        // The mode is set at creation, so a secret is never readable by others, not even for a moment.
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(f.mode).open(&path).map_err(|e| out_err(&path, e))?;
        file.write_all(f.contents.as_bytes()).map_err(|e| out_err(&path, e))?;
    }
    Ok(())
}

pub fn output_path(dir: &Path, f: &RenderedFile) -> PathBuf {
    match &f.target {
        Target::Host(h) => dir.join(h).join(f.path.trim_start_matches('/')),
        Target::Cluster => dir.join("_cluster").join(&f.path),
    }
}

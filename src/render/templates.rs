//! The template set: built into the binary, each replaceable by a file of the same name in a user folder.
use std::path::Path;
use tera::Tera;

macro_rules! builtin {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../../templates/", $name, ".tera")))),*]
    };
}

/// Every template kubeha renders, by name (path under templates/ without `.tera`).
pub const BUILTIN: &[(&str, &str)] = builtin!(
    "kubeadm/init.yaml",
    "kubeadm/join.yaml",
    "etcd/etcd.conf.yml",
    "etcd/etcdctl.env",
    "systemd/etcd.service",
    "keepalived/keepalived.conf",
    "keepalived/check_apiserver.sh",
    "haproxy/haproxy.cfg",
    "host/sysctl.conf",
    "host/modules-load.conf",
    "cni/flannel.yaml",
    "cni/calico.yaml",
    "cni/cilium-values.yaml",
    "monitoring/prometheus.yml",
    "monitoring/rules.yml",
    "monitoring/prometheus-rbac.yaml",
    "monitoring/README.md",
    "monitoring/kubeha-metrics.sh",
    "systemd/kubeha-metrics.socket",
    "systemd/kubeha-metrics@.service",
    "systemd/kubelet.service",
    "systemd/kubelet-kubeadm.conf",
    "systemd/containerd.service",
    "containerd/config.toml",
    "containerd/hosts.toml",
    "etcd/etcd-backup.sh",
    "systemd/kubeha-etcd-backup.service",
    "systemd/kubeha-etcd-backup.timer",
);

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("template {name}: {message}")]
    Invalid { name: String, message: String },
    #[error("{path}: not a kubeha template name; overridable templates are: {known}")]
    Unknown { path: String, known: String },
    #[error("cannot read template folder {path}: {source}")]
    Read { path: String, source: std::io::Error },
}

pub struct Templates {
    pub(super) tera: Tera,
    /// Names taken from the user's folder, so output can say which files were customised.
    pub overridden: Vec<String>,
}

impl Templates {
    pub fn builtin() -> Result<Self, TemplateError> {
        Self::from_sources(BUILTIN.iter().map(|(n, s)| ((*n).to_string(), (*s).to_string())).collect(), Vec::new())
    }

    /// The built-in templates, or those with the overrides of `dir` when the user gave one (`--templates`).
    pub fn load(dir: Option<&Path>) -> Result<Self, TemplateError> {
        match dir {
            Some(dir) => Self::with_overrides(dir),
            None => Self::builtin(),
        }
    }

    /// Built-in templates, with any `NAME.tera` found under `dir` replacing the built-in of that name. A file
    /// whose name matches no template is an error: a typo would otherwise be silently ignored.
    pub fn with_overrides(dir: &Path) -> Result<Self, TemplateError> {
        let mut sources: Vec<(String, String)> = BUILTIN.iter().map(|(n, s)| ((*n).to_string(), (*s).to_string())).collect();
        let mut overridden = Vec::new();
        for file in files_under(dir)? {
            let relative = file.strip_prefix(dir).unwrap_or(&file).to_string_lossy().replace('\\', "/");
            let Some(name) = relative.strip_suffix(".tera").filter(|n| sources.iter().any(|(known, _)| known == n)) else {
                let known = BUILTIN.iter().map(|(n, _)| format!("{n}.tera")).collect::<Vec<_>>().join(", ");
                return Err(TemplateError::Unknown { path: file.display().to_string(), known });
            };
            let text = std::fs::read_to_string(&file).map_err(|source| TemplateError::Read { path: file.display().to_string(), source })?;
            if let Some(slot) = sources.iter_mut().find(|(n, _)| n == name) {
                slot.1 = text;
            }
            overridden.push(name.to_string());
        }
        overridden.sort();
        Self::from_sources(sources, overridden)
    }

    fn from_sources(sources: Vec<(String, String)>, overridden: Vec<String>) -> Result<Self, TemplateError> {
        let mut tera = Tera::default();
        tera.register_filter("json_encode", tera_contrib::json::json_encode);
        for (name, text) in &sources {
            tera.add_raw_template(name, text).map_err(|e| TemplateError::Invalid { name: name.clone(), message: error_chain(&e) })?;
        }
        Ok(Self { tera, overridden })
    }
}

pub(super) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn files_under(dir: &Path) -> Result<Vec<std::path::PathBuf>, TemplateError> {
    let read_err = |source| TemplateError::Read { path: dir.display().to_string(), source };
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current).map_err(read_err)? {
            let path = entry.map_err(read_err)?.path();
            if path.is_dir() { pending.push(path) } else { out.push(path) }
        }
    }
    out.sort();
    Ok(out)
}

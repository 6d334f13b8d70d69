//! What an inventory's hosts need downloaded: one entry per upstream release file, where it lives, where its
//! published checksum lives, and which hosts need it. Pure: no I/O, so `artifacts list` and the URL rules are
//! testable without a network.
use super::checksum::Algorithm;
use crate::inventory::{Arch, Inventory, Version};
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Etcd,
    Kubeadm,
    Kubelet,
    Kubectl,
    Crictl,
    CniPlugins,
    Containerd,
    Runc,
}

impl Kind {
    pub const ALL: [Kind; 8] = [Kind::Etcd, Kind::Kubeadm, Kind::Kubelet, Kind::Kubectl, Kind::Crictl, Kind::CniPlugins, Kind::Containerd, Kind::Runc];

    /// How the inventory spells it (`spec.artifacts.preinstalled`, like the keys of `spec.artifacts.versions`).
    pub fn inventory_name(self) -> &'static str {
        match self {
            Kind::CniPlugins => "cniPlugins",
            other => other.name(),
        }
    }

    /// Where a program of this kind goes on a host: where upstream's install instructions put it, and where
    /// kubeha's units (etcd, kubelet) run it from.
    pub fn install_path(self, program: &str) -> String {
        match self {
            Kind::CniPlugins => format!("{}/{program}", crate::paths::CNI_BIN_DIR),
            Kind::Runc => "/usr/local/sbin/runc".into(),
            _ => format!("/usr/local/bin/{program}"),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Etcd => "etcd",
            Kind::Kubeadm => "kubeadm",
            Kind::Kubelet => "kubelet",
            Kind::Kubectl => "kubectl",
            Kind::Crictl => "crictl",
            Kind::CniPlugins => "cni-plugins",
            Kind::Containerd => "containerd",
            Kind::Runc => "runc",
        }
    }

    /// The programs the file holds; for an archive, what the software phase takes out of it.
    pub fn provides(self) -> &'static [&'static str] {
        match self {
            Kind::Etcd => &["etcd", "etcdctl", "etcdutl"],
            Kind::Kubeadm => &["kubeadm"],
            Kind::Kubelet => &["kubelet"],
            Kind::Kubectl => &["kubectl"],
            Kind::Crictl => &["crictl"],
            Kind::CniPlugins => &[
                "bandwidth",
                "bridge",
                "dhcp",
                "dummy",
                "firewall",
                "host-device",
                "host-local",
                "ipvlan",
                "loopback",
                "macvlan",
                "portmap",
                "ptp",
                "sbr",
                "static",
                "tap",
                "tuning",
                "vlan",
                "vrf",
            ],
            Kind::Containerd => &["containerd", "containerd-shim-runc-v2", "ctr"],
            Kind::Runc => &["runc"],
        }
    }
}

/// Which upstream host a file comes from; a mirror replaces every origin's base URL and keeps the paths.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    /// Kubernetes' release downloads.
    Kubernetes,
    /// A GitHub release (etcd, containerd, runc, CNI plugins, cri-tools).
    GitHub,
}

impl Origin {
    pub fn base_url(self) -> &'static str {
        match self {
            Origin::Kubernetes => "https://dl.k8s.io",
            Origin::GitHub => "https://github.com",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Packaging {
    #[serde(rename = "binary")]
    Binary,
    #[serde(rename = "tar.gz")]
    TarGz,
}

/// Which hosts need a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    ControlPlanes,
    AllNodes,
}

/// Where URLs point: the upstream release locations or a mirror with the same paths below its base URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Base<'a> {
    Upstream,
    /// Without a trailing '/' (the inventory stores it that way).
    Mirror(&'a str),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Artifact {
    pub kind: Kind,
    pub version: Version,
    pub arch: Arch,
    pub origin: Origin,
    /// The file's path below its origin's base URL, e.g. `release/v1.36.3/bin/linux/amd64/kubeadm`. The same
    /// path is used on a mirror and inside a bundle.
    pub path: String,
    /// The path of the checksum file the upstream project publishes for it, below the same base.
    pub checksum_path: String,
    pub checksum_algorithm: Algorithm,
    pub packaging: Packaging,
    pub scope: Scope,
    /// The hosts that need it, in inventory order.
    pub hosts: Vec<String>,
}

impl Artifact {
    pub fn name(&self) -> &'static str {
        self.kind.name()
    }

    /// How errors and listings name it: `kubeadm 1.36.3 (amd64)`.
    pub fn label(&self) -> String {
        format!("{} {} ({})", self.name(), self.version, self.arch.name())
    }

    /// The last path segment: what upstream calls the file, and what its checksum file lists.
    pub fn file_name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }

    pub fn url(&self, base: Base) -> String {
        join(self.base_url(base), &self.path)
    }

    pub fn checksum_url(&self, base: Base) -> String {
        join(self.base_url(base), &self.checksum_path)
    }

    fn base_url<'a>(&self, base: Base<'a>) -> &'a str {
        match base {
            Base::Upstream => self.origin.base_url(),
            Base::Mirror(url) => url,
        }
    }
}

fn join(base: &str, path: &str) -> String {
    format!("{}/{path}", base.trim_end_matches('/'))
}

/// The containerd sockets: only an inventory whose kubelets talk to containerd gets containerd and runc installed;
/// another endpoint means the operator brings the runtime (the lab does: its own CRI runtime).
const CONTAINERD_ENDPOINTS: &[&str] = &["unix:///var/run/containerd/containerd.sock", "unix:///run/containerd/containerd.sock"];

/// Whether the kubelets talk to containerd (then kubeha installs and configures it, unless preinstalled).
pub fn talks_to_containerd(inv: &Inventory) -> bool {
    CONTAINERD_ENDPOINTS.contains(&inv.kubernetes.container_runtime_endpoint.as_str())
}

/// Whether kubeha runs the hosts' containerd: installs it, renders its config and unit, starts it.
pub fn installs_containerd(inv: &Inventory) -> bool {
    talks_to_containerd(inv) && !inv.artifacts.preinstalled.contains(&Kind::Containerd)
}

/// Every file the inventory's hosts need from kubeha, in install order (etcd first, the runtime last): what
/// `spec.artifacts.preinstalled` names is the site's own and left out.
pub fn needed(inv: &Inventory) -> Vec<Artifact> {
    let mut all = every_needed(inv);
    all.retain(|a| !inv.artifacts.preinstalled.contains(&a.kind));
    all
}

/// The artifacts `host` gets from kubeha, in install order.
pub fn needed_on(inv: &Inventory, host: &str) -> Vec<Artifact> {
    needed(inv).into_iter().filter(|a| a.hosts.iter().any(|h| h == host)).collect()
}

fn every_needed(inv: &Inventory) -> Vec<Artifact> {
    let arch = inv.artifacts.arch;
    let v = inv.artifacts.versions;
    let control_planes: Vec<String> = inv.control_planes().map(|h| h.name.clone()).collect();
    let all: Vec<String> = inv.hosts.iter().map(|h| h.name.clone()).collect();
    let mut out = vec![file(Kind::Etcd, inv.etcd.version, arch, control_planes)];
    for kind in [Kind::Kubeadm, Kind::Kubelet, Kind::Kubectl] {
        out.push(file(kind, inv.kubernetes.version, arch, all.clone()));
    }
    out.push(file(Kind::Crictl, v.crictl, arch, all.clone()));
    out.push(file(Kind::CniPlugins, v.cni_plugins, arch, all.clone()));
    if talks_to_containerd(inv) {
        out.push(file(Kind::Containerd, v.containerd, arch, all.clone()));
        out.push(file(Kind::Runc, v.runc, arch, all));
    }
    out
}

/// One artifact with its upstream layout: the one place that knows each project's file and checksum names.
pub fn file(kind: Kind, version: Version, arch: Arch, hosts: Vec<String>) -> Artifact {
    let a = arch.name();
    let github = |repo: &str, file: String| format!("{repo}/releases/download/v{version}/{file}");
    let (origin, path, checksum_path, packaging) = match kind {
        Kind::Etcd => {
            let path = github("etcd-io/etcd", format!("etcd-v{version}-linux-{a}.tar.gz"));
            (Origin::GitHub, path, github("etcd-io/etcd", "SHA256SUMS".into()), Packaging::TarGz)
        }
        Kind::Kubeadm | Kind::Kubelet | Kind::Kubectl => {
            let path = format!("release/v{version}/bin/linux/{a}/{}", kind.name());
            (Origin::Kubernetes, path.clone(), format!("{path}.sha256"), Packaging::Binary)
        }
        Kind::Crictl => {
            let path = github("kubernetes-sigs/cri-tools", format!("crictl-v{version}-linux-{a}.tar.gz"));
            (Origin::GitHub, path.clone(), format!("{path}.sha256"), Packaging::TarGz)
        }
        Kind::CniPlugins => {
            let path = github("containernetworking/plugins", format!("cni-plugins-linux-{a}-v{version}.tgz"));
            (Origin::GitHub, path.clone(), format!("{path}.sha256"), Packaging::TarGz)
        }
        Kind::Containerd => {
            let path = github("containerd/containerd", format!("containerd-{version}-linux-{a}.tar.gz"));
            (Origin::GitHub, path.clone(), format!("{path}.sha256sum"), Packaging::TarGz)
        }
        Kind::Runc => {
            // runc publishes one checksum file for all its release files.
            (Origin::GitHub, github("opencontainers/runc", format!("runc.{a}")), github("opencontainers/runc", "runc.sha256sum".into()), Packaging::Binary)
        }
    };
    let scope = if kind == Kind::Etcd { Scope::ControlPlanes } else { Scope::AllNodes };
    Artifact { kind, version, arch, origin, path, checksum_path, checksum_algorithm: Algorithm::Sha256, packaging, scope, hosts }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_urls_follow_each_project_s_release_layout() {
        let k8s = Version::new(1, 36, 3);
        let gh = "https://github.com";
        let cases = [
            (
                Kind::Kubeadm,
                k8s,
                Arch::Amd64,
                "https://dl.k8s.io/release/v1.36.3/bin/linux/amd64/kubeadm",
                "https://dl.k8s.io/release/v1.36.3/bin/linux/amd64/kubeadm.sha256",
            ),
            (
                Kind::Kubelet,
                k8s,
                Arch::Arm64,
                "https://dl.k8s.io/release/v1.36.3/bin/linux/arm64/kubelet",
                "https://dl.k8s.io/release/v1.36.3/bin/linux/arm64/kubelet.sha256",
            ),
            (
                Kind::Kubectl,
                k8s,
                Arch::Amd64,
                "https://dl.k8s.io/release/v1.36.3/bin/linux/amd64/kubectl",
                "https://dl.k8s.io/release/v1.36.3/bin/linux/amd64/kubectl.sha256",
            ),
            (
                Kind::Etcd,
                Version::new(3, 6, 16),
                Arch::Amd64,
                "/etcd-io/etcd/releases/download/v3.6.16/etcd-v3.6.16-linux-amd64.tar.gz",
                "/etcd-io/etcd/releases/download/v3.6.16/SHA256SUMS",
            ),
            (
                Kind::Crictl,
                Version::new(1, 36, 0),
                Arch::Arm64,
                "/kubernetes-sigs/cri-tools/releases/download/v1.36.0/crictl-v1.36.0-linux-arm64.tar.gz",
                "/kubernetes-sigs/cri-tools/releases/download/v1.36.0/crictl-v1.36.0-linux-arm64.tar.gz.sha256",
            ),
            (
                Kind::CniPlugins,
                Version::new(1, 8, 0),
                Arch::Amd64,
                "/containernetworking/plugins/releases/download/v1.8.0/cni-plugins-linux-amd64-v1.8.0.tgz",
                "/containernetworking/plugins/releases/download/v1.8.0/cni-plugins-linux-amd64-v1.8.0.tgz.sha256",
            ),
            (
                Kind::Containerd,
                Version::new(2, 2, 0),
                Arch::Amd64,
                "/containerd/containerd/releases/download/v2.2.0/containerd-2.2.0-linux-amd64.tar.gz",
                "/containerd/containerd/releases/download/v2.2.0/containerd-2.2.0-linux-amd64.tar.gz.sha256sum",
            ),
            // runc publishes one checksum file for all its release files.
            (
                Kind::Runc,
                Version::new(1, 3, 3),
                Arch::Arm64,
                "/opencontainers/runc/releases/download/v1.3.3/runc.arm64",
                "/opencontainers/runc/releases/download/v1.3.3/runc.sha256sum",
            ),
        ];
        for (kind, version, arch, url, checksum_url) in cases {
            let a = file(kind, version, arch, vec![]);
            // GitHub paths are written without their host above, to keep the table readable.
            let full = |u: &str| if u.starts_with('/') { format!("{gh}{u}") } else { u.to_string() };
            assert_eq!((a.url(Base::Upstream), a.checksum_url(Base::Upstream)), (full(url), full(checksum_url)), "{kind:?}");
        }
    }

    #[test]
    fn a_mirror_replaces_every_origin_and_keeps_the_paths() {
        let etcd = file(Kind::Etcd, Version::new(3, 6, 16), Arch::Amd64, vec![]);
        let kubeadm = file(Kind::Kubeadm, Version::new(1, 36, 3), Arch::Amd64, vec![]);
        let mirror = Base::Mirror("http://127.0.0.1:8080/k8s");
        assert_eq!(etcd.url(mirror), "http://127.0.0.1:8080/k8s/etcd-io/etcd/releases/download/v3.6.16/etcd-v3.6.16-linux-amd64.tar.gz");
        assert_eq!(kubeadm.checksum_url(mirror), "http://127.0.0.1:8080/k8s/release/v1.36.3/bin/linux/amd64/kubeadm.sha256");
        assert_eq!(kubeadm.file_name(), "kubeadm");
        assert_eq!(etcd.label(), "etcd 3.6.16 (amd64)");
    }

    fn inventory(extra: &str, endpoint: Option<&str>) -> Inventory {
        let mut yaml = crate::inventory::lab_yaml_without_artifacts().replacen("spec:\n", &format!("spec:\n{extra}"), 1);
        yaml = match endpoint {
            Some(e) => yaml.replace("unix:///run/kubeha-lab-cri/cri.sock", e),
            None => yaml.replace("    containerRuntimeEndpoint: unix:///run/kubeha-lab-cri/cri.sock\n", ""),
        };
        let paths = crate::inventory::PathContext { inventory_dir: ".".into(), home: None };
        let loaded = crate::inventory::parse("t.yaml".into(), yaml, &paths);
        loaded.inventory.unwrap_or_else(|| panic!("{:?}", loaded.diagnostics))
    }

    #[test]
    fn control_planes_get_etcd_and_every_node_the_kubernetes_binaries() {
        let needed = needed(&inventory("", None));
        let names: Vec<&str> = needed.iter().map(Artifact::name).collect();
        assert_eq!(names, ["etcd", "kubeadm", "kubelet", "kubectl", "crictl", "cni-plugins", "containerd", "runc"]);
        assert_eq!(needed[0].hosts, ["cp-1", "cp-2", "cp-3"]);
        assert_eq!(needed[1].hosts, ["cp-1", "cp-2", "cp-3", "wk-1", "wk-2"]);
        // Defaults: crictl follows Kubernetes' minor, the runtime versions are pinned in inventory::support.
        assert_eq!(needed[4].version, Version::new(1, 36, 0));
        assert_eq!(needed[6].version, crate::inventory::support::DEFAULT_CONTAINERD_VERSION);
    }

    #[test]
    fn what_the_site_preinstalls_is_neither_fetched_nor_installed() {
        let inv = inventory("  artifacts: {preinstalled: [crictl, cniPlugins, etcd]}\n", None);
        let names: Vec<&str> = needed(&inv).iter().map(Artifact::name).collect();
        assert_eq!(names, ["kubeadm", "kubelet", "kubectl", "containerd", "runc"]);
        assert!(needed_on(&inv, "cp-1").iter().all(|a| a.kind != Kind::Etcd));
        assert_eq!(Kind::Etcd.install_path("etcd"), crate::paths::ETCD_BINARY, "kubeha's etcd unit runs what the software phase installs");
        let loaded = crate::inventory::parse(
            "t.yaml".into(),
            crate::inventory::lab_yaml_without_artifacts().replacen("spec:\n", "spec:\n  artifacts: {preinstalled: [crictl, cni]}\n", 1),
            &crate::inventory::PathContext { inventory_dir: ".".into(), home: None },
        );
        let errors: Vec<(String, Option<u32>)> = loaded.diagnostics.iter().map(|d| (d.to_string(), d.mark.map(|m| m.line))).collect();
        let expected =
            "spec.artifacts.preinstalled[1]: unknown value \"cni\", expected one of etcd, kubeadm, kubelet, kubectl, crictl, cniPlugins, containerd, runc";
        assert_eq!(errors, [(expected.to_string(), Some(9))]);
    }

    #[test]
    fn another_runtime_endpoint_means_no_containerd_and_pinned_versions_are_used() {
        let extra = "  artifacts:\n    arch: arm64\n    versions: {crictl: 1.35.1, cniPlugins: 1.7.1}\n";
        let needed = needed(&inventory(extra, Some("unix:///run/crio/crio.sock")));
        let names: Vec<String> = needed.iter().map(Artifact::label).collect();
        assert_eq!(
            names,
            [
                "etcd 3.6.16 (arm64)",
                "kubeadm 1.36.3 (arm64)",
                "kubelet 1.36.3 (arm64)",
                "kubectl 1.36.3 (arm64)",
                "crictl 1.35.1 (arm64)",
                "cni-plugins 1.7.1 (arm64)"
            ]
        );
    }
}

//! What kubeha supports, in one table: versions and the component releases it pins.
//! Kept in one place so a release bump is a one-line change with a test that says what moved.
use super::model::{Cni, Version};

/// Kubernetes minors with upstream patch support on 2026-11-25 (1.34 reached end of life on 2026-10-27).
pub const KUBERNETES_MINORS: &[(u32, u32)] = &[(1, 35), (1, 36), (1, 37)];

/// etcd branches that receive patches. kubeadm refuses external etcd below 3.5.24 (`MinExternalEtcdVersion`).
pub const ETCD_MINORS: &[(u32, u32)] = &[(3, 5), (3, 6), (3, 7)];
pub const ETCD_MINIMUM: Version = Version::new(3, 5, 24);

pub fn kubernetes_supported(v: Version) -> bool {
    KUBERNETES_MINORS.contains(&(v.major, v.minor))
}

pub fn etcd_supported(v: Version) -> bool {
    ETCD_MINORS.contains(&(v.major, v.minor)) && v >= ETCD_MINIMUM
}

/// The release of each CNI that kubeha installs unless the inventory pins another.
pub fn default_cni_version(cni: Cni) -> Version {
    match cni {
        Cni::Flannel => Version::new(0, 28, 9),
        Cni::Calico => Version::new(3, 32, 2),
        Cni::Cilium => Version::new(1, 20, 0),
    }
}

/// crictl's releases follow Kubernetes' minors (cri-tools v1.N.0 is made for Kubernetes 1.N), so the default
/// follows the inventory's Kubernetes version instead of being pinned.
pub fn default_crictl_version(kubernetes: Version) -> Version {
    Version::new(kubernetes.major, kubernetes.minor, 0)
}

/// The node runtime releases kubeha installs unless `spec.artifacts.versions` pins others.
pub const DEFAULT_CONTAINERD_VERSION: Version = Version::new(2, 2, 0);
pub const DEFAULT_RUNC_VERSION: Version = Version::new(1, 3, 3);
/// The containernetworking/plugins release (bridge, portmap, loopback, host-local ... that the CNIs call).
pub const DEFAULT_CNI_PLUGINS_VERSION: Version = Version::new(1, 8, 0);

/// The sandbox ("pause") image kubeadm of a Kubernetes minor expects (cmd/kubeadm/app/constants PauseVersion;
/// 1.36's read from the v1.36.3 source, 1.35's from kubeadm's 1.35 release; 1.37 assumed unchanged until
/// checked). containerd pins it; kubeadm's preflight warns when the runtime's differs.
pub fn sandbox_image(kubernetes: Version) -> &'static str {
    match (kubernetes.major, kubernetes.minor) {
        (1, 35) => "registry.k8s.io/pause:3.10.1",
        _ => "registry.k8s.io/pause:3.10.2",
    }
}

pub fn minors_list(minors: &[(u32, u32)]) -> String {
    minors.iter().map(|(a, b)| format!("{a}.{b}")).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn support_matrix() {
        assert!(kubernetes_supported(Version::new(1, 36, 4)));
        assert!(!kubernetes_supported(Version::new(1, 34, 9)));
        assert!(etcd_supported(Version::new(3, 6, 14)));
        assert!(etcd_supported(Version::new(3, 5, 24)));
        assert!(!etcd_supported(Version::new(3, 5, 23)));
        assert!(!etcd_supported(Version::new(3, 4, 23)));
    }
}

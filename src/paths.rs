//! Every path kubeha reads or writes on a host, in one place: the renderer, the planner, the probes, the
//! phases and the verification all name a host's files through these, so that moving one file is one edit
//! here (kubeha's folders, etcd's, kubeadm's and the kubelet's, the load balancer's and the host setup's).

/// kubeha's own folder: removed whole when a host is reset.
pub const KUBEHA_DIR: &str = "/etc/kubeha";
/// The cluster state (secrets, CAs, member certificates) on every control plane.
pub const STATE_FILE: &str = "/etc/kubeha/cluster-state.json";
/// The kubeadm config of a host: InitConfiguration on the seed, JoinConfiguration elsewhere.
pub const KUBEADM_CONFIG: &str = "/etc/kubeha/kubeadm.yaml";
/// Where etcdctl finds the endpoints and kubeha's root client certificate (sourced by every etcdctl call).
pub const ETCDCTL_ENV: &str = "/etc/kubeha/etcdctl.env";
/// The etcd CA and each member's server, peer and client certificates and keys.
pub const ETCD_PKI_DIR: &str = "/etc/kubeha/pki/etcd";
pub const CNI_DIR: &str = "/etc/kubeha/cni";
/// Holds the digest of the CNI manifest last applied successfully: applied state is not a file kubectl keeps.
pub const CNI_APPLIED: &str = "/etc/kubeha/cni/applied";

/// The cluster lock (one per control plane; a majority holds the cluster).
pub const LOCK_DIR: &str = "/var/lib/kubeha/lock";
/// Snapshots kept on a voter, taken before membership changes or by `kubeha etcd snapshot`.
pub const SNAPSHOT_DIR: &str = "/var/lib/kubeha/snapshots";
/// Where the backup timer keeps its snapshots unless `spec.etcd.backup.dir` says otherwise.
pub const DEFAULT_BACKUP_DIR: &str = "/var/lib/kubeha/etcd-backups";
/// The backup timer (issue 16) on every control plane: its script, units, and the status file it leaves
/// after every run (what `kubeha status`, `verify` and `etcd backups list` read).
pub const ETCD_BACKUP_SCRIPT: &str = "/usr/local/lib/kubeha/etcd-backup";
pub const ETCD_BACKUP_SERVICE: &str = "/etc/systemd/system/kubeha-etcd-backup.service";
pub const ETCD_BACKUP_TIMER: &str = "/etc/systemd/system/kubeha-etcd-backup.timer";
pub const ETCD_BACKUP_STATUS: &str = "/var/lib/kubeha/etcd-backup-status.json";
/// The backup's Prometheus textfile, in METRICS_TEXTFILE_DIR.
pub const ETCD_BACKUP_TEXTFILE: &str = "/var/lib/kubeha/metrics/etcd-backup.prom";
/// Where `kubeha etcd restore` uploads the snapshot it restores.
pub const RESTORE_DIR: &str = "/var/lib/kubeha/restore";

pub const ETCD_CONFIG: &str = "/etc/etcd/etcd.conf.yml";
/// Not a file: the key under which the state probe reports the digest of ETCD_CONFIG without the settings
/// etcd reads only at its first start (see `facts::observe`).
pub const ETCD_CONFIG_RUNTIME: &str = "/etc/etcd/etcd.conf.yml#runtime";
pub const ETCD_UNIT: &str = "/etc/systemd/system/etcd.service";
pub const ETCD_DATA_DIR: &str = "/var/lib/etcd";
pub const ETCD_BINARY: &str = "/usr/local/bin/etcd";

/// What kubeha installed on a host (the software phase): one record per artifact kind, `<kind>.installed`,
/// naming the artifact's version and checksum and the sha256 of every program taken from it.
pub const SOFTWARE_DIR: &str = "/var/lib/kubeha/software";
/// Where a program waits that cannot replace the running one yet (etcd on a running member: swapped in by its
/// restart between quorum gates), with the record that becomes `<kind>.installed` once it runs.
pub const SOFTWARE_STAGED_DIR: &str = "/var/lib/kubeha/software/staged";
/// The kubelet's unit and kubeadm's drop-in for it, as kubeadm's packages ship them (the software phase
/// installs the kubelet without packages).
pub const KUBELET_UNIT: &str = "/etc/systemd/system/kubelet.service";
pub const KUBELET_KUBEADM_DROPIN: &str = "/etc/systemd/system/kubelet.service.d/10-kubeadm.conf";

/// Where the CNI plugins go (containernetworking's default, where every CNI's manifests expect them).
pub const CNI_BIN_DIR: &str = "/opt/cni/bin";
pub const CONTAINERD_CONFIG: &str = "/etc/containerd/config.toml";
pub const CONTAINERD_UNIT: &str = "/etc/systemd/system/containerd.service";
/// containerd's `config_path` for registries (config.toml names it): one hosts.toml per registry host.
pub const CONTAINERD_CERTS_DIR: &str = "/etc/containerd/certs.d";

pub fn containerd_registry_hosts(registry: &str) -> String {
    format!("{CONTAINERD_CERTS_DIR}/{registry}/hosts.toml")
}

pub fn software_record(kind_name: &str) -> String {
    format!("{SOFTWARE_DIR}/{kind_name}.installed")
}

pub const SYSCTL_CONF: &str = "/etc/sysctl.d/90-kubeha.conf";
pub const MODULES_LOAD_CONF: &str = "/etc/modules-load.d/kubeha.conf";

pub const HAPROXY_CONFIG: &str = "/etc/haproxy/haproxy.cfg";
pub const KEEPALIVED_CONFIG: &str = "/etc/keepalived/keepalived.conf";
pub const CHECK_SCRIPT: &str = "/etc/keepalived/check_apiserver.sh";
/// kubeha-metrics (installed with keepalived): the script systemd runs per scrape, its socket and service units.
pub const KUBEHA_METRICS_SCRIPT: &str = "/usr/local/sbin/kubeha-metrics";
pub const KUBEHA_METRICS_SOCKET: &str = "/etc/systemd/system/kubeha-metrics.socket";
pub const KUBEHA_METRICS_SERVICE: &str = "/etc/systemd/system/kubeha-metrics@.service";
/// Textfiles (`*.prom`, Prometheus text format) that kubeha-metrics serves as they are: the contract for
/// programs on the control planes that report a fact, e.g. the etcd backup timer's last success.
pub const METRICS_TEXTFILE_DIR: &str = "/var/lib/kubeha/metrics";

/// kubeadm's folder; a restart sets a static pod's manifest aside here (`<pod>.yaml.kubeha`).
pub const KUBERNETES_DIR: &str = "/etc/kubernetes";
/// kubeadm's certificates (and the Kubernetes CA kubeha places there).
pub const KUBERNETES_PKI_DIR: &str = "/etc/kubernetes/pki";
pub const KUBERNETES_CA_CERT: &str = "/etc/kubernetes/pki/ca.crt";
pub const KUBERNETES_CA_KEY: &str = "/etc/kubernetes/pki/ca.key";
pub const ADMIN_CONF: &str = "/etc/kubernetes/admin.conf";
pub const KUBELET_CONF: &str = "/etc/kubernetes/kubelet.conf";
/// The kubeconfigs kubeadm writes with an embedded client certificate (kubelet.conf usually points at
/// KUBELET_CLIENT_CERT instead; super-admin.conf exists on the first control plane since 1.29).
pub const KUBECONFIGS: [&str; 5] =
    [ADMIN_CONF, "/etc/kubernetes/super-admin.conf", "/etc/kubernetes/controller-manager.conf", "/etc/kubernetes/scheduler.conf", KUBELET_CONF];
pub const MANIFESTS_DIR: &str = "/etc/kubernetes/manifests";
/// kubeadm's static pods that read certificates or kubeconfigs only at start (etcd is kubeha's own service),
/// and where a restart sets each manifest aside (`<pod>.yaml.kubeha` in KUBERNETES_DIR, next to the
/// manifests folder) while the kubelet stops the pod. The probe looks for the latter: one left there by a
/// run that died keeps that pod down until a restart puts it back.
pub const STATIC_PODS: [&str; 3] = ["kube-apiserver", "kube-controller-manager", "kube-scheduler"];
/// The API server's manifest: its `--etcd-servers` is what the planner compares with the etcd members.
pub const APISERVER_MANIFEST: &str = "/etc/kubernetes/manifests/kube-apiserver.yaml";
pub const SET_ASIDE_MANIFESTS: [&str; 3] =
    ["/etc/kubernetes/kube-apiserver.yaml.kubeha", "/etc/kubernetes/kube-controller-manager.yaml.kubeha", "/etc/kubernetes/kube-scheduler.yaml.kubeha"];

pub const KUBELET_PKI_DIR: &str = "/var/lib/kubelet/pki";
/// The kubelet's rotating client certificate and key (one file).
pub const KUBELET_CLIENT_CERT: &str = "/var/lib/kubelet/pki/kubelet-client-current.pem";

#[cfg(test)]
mod tests {
    use super::*;

    /// The paths spelled out in full (constants cannot be joined at compile time) stay inside their folders.
    #[test]
    fn spelled_out_paths_stay_in_their_folders() {
        for p in [STATE_FILE, KUBEADM_CONFIG, ETCDCTL_ENV, ETCD_PKI_DIR, CNI_DIR] {
            assert!(p.starts_with(&format!("{KUBEHA_DIR}/")), "{p}");
        }
        assert!(CNI_APPLIED.starts_with(&format!("{CNI_DIR}/")));
        assert!(ETCD_BACKUP_TEXTFILE.starts_with(&format!("{METRICS_TEXTFILE_DIR}/")) && ETCD_BACKUP_TEXTFILE.ends_with(".prom"));
        for p in [LOCK_DIR, SNAPSHOT_DIR, RESTORE_DIR, DEFAULT_BACKUP_DIR, ETCD_BACKUP_STATUS] {
            assert!(p.starts_with("/var/lib/kubeha/"), "{p}");
        }
        assert_eq!(ETCD_CONFIG_RUNTIME, format!("{ETCD_CONFIG}#runtime"));
        for p in [KUBERNETES_PKI_DIR, ADMIN_CONF, KUBELET_CONF, MANIFESTS_DIR].iter().chain(&KUBECONFIGS) {
            assert!(p.starts_with(&format!("{KUBERNETES_DIR}/")), "{p}");
        }
        for p in [KUBERNETES_CA_CERT, KUBERNETES_CA_KEY] {
            assert!(p.starts_with(&format!("{KUBERNETES_PKI_DIR}/")), "{p}");
        }
        let set_aside: Vec<String> = STATIC_PODS.iter().map(|p| format!("{KUBERNETES_DIR}/{p}.yaml.kubeha")).collect();
        assert_eq!(set_aside, SET_ASIDE_MANIFESTS);
        assert!(KUBELET_CLIENT_CERT.starts_with(&format!("{KUBELET_PKI_DIR}/")));
    }
}

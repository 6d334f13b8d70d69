//! The single probe script: one exec per host prints every fact in `@@kubeha NAME@@` sections, which the
//! pure parsers in `parse` take apart. One round trip instead of a dozen keeps `facts` fast on 30+ hosts.
//!
//! The clock comes first so it is sampled as close as possible to the moment we measure locally. Commands
//! that may be missing are probed with `command -v`, never assumed; `ss` falls back to /proc/net/tcp{,6}.
use crate::inventory::{ETCD_CLIENT_PORT, ETCD_PEER_PORT};
use crate::render::context::{API_SERVER_PORT, ETCD_METRICS_PORT, HAPROXY_EXPORTER_PORT, KUBEHA_METRICS_PORT, KUBELET_PORT};

use crate::paths::{ETCD_DATA_DIR, KUBERNETES_DIR};

/// Ports whose listeners matter to an HA control plane: etcd client/peer/metrics, API server, HAProxy's exporter
/// and front end for the API, kubeha-metrics, kubelet. A stranger on the exporter's port would stop HAProxy from
/// starting, so it is watched as closely as the API's.
pub const WATCHED_PORTS: [u16; 8] =
    [ETCD_CLIENT_PORT, ETCD_PEER_PORT, ETCD_METRICS_PORT, API_SERVER_PORT, HAPROXY_EXPORTER_PORT, 8443, KUBEHA_METRICS_PORT, KUBELET_PORT];

/// Software whose installed version is reported.
pub const SOFTWARE: [&str; 6] = ["etcd", "keepalived", "haproxy", "kubeadm", "kubelet", "containerd"];

/// Every fact but the paths section, which `probe` adds from `paths`.
const FACTS: &str = r#"PATH="$PATH:/usr/local/sbin:/usr/local/bin:/usr/sbin:/sbin:/usr/bin:/bin"
s() { printf '@@kubeha %s@@\n' "$1"; }
s time; date +%s.%N
s os-release; cat /etc/os-release 2>/dev/null
s kernel; uname -r
s arch; uname -m
s cpus; nproc 2>/dev/null || getconf _NPROCESSORS_ONLN
s meminfo; grep -E '^(MemTotal|SwapTotal):' /proc/meminfo
s swaps; cat /proc/swaps 2>/dev/null
s hostname; hostname 2>/dev/null || cat /proc/sys/kernel/hostname
s systemd; if [ -d /run/systemd/system ]; then echo running; elif command -v systemctl >/dev/null 2>&1; then echo installed; else echo absent; fi
for b in etcd keepalived haproxy kubeadm kubelet containerd; do
  s "bin $b"
  if p=$(command -v "$b" 2>/dev/null); then
    echo "path $p"
    case $b in
      haproxy) "$p" -v ;;
      kubeadm) "$p" version -o short ;;
      *) "$p" --version ;;
    esac 2>&1 | head -n 3
  else
    echo absent
  fi
done
s listen
if command -v ss >/dev/null 2>&1; then echo "source ss"; ss -Htln; else echo "source proc"; cat /proc/net/tcp /proc/net/tcp6 2>/dev/null; fi
s sockets
find /run -maxdepth 3 -type s 2>/dev/null | head -n 500
"#;

/// The probe: every fact of FACTS, then whether etcd's data and kubeadm's folder exist, then the end marker.
pub fn probe() -> String {
    format!("{FACTS}s paths\nif [ -d {ETCD_DATA_DIR}/member ]; then echo etcd-data-dir; fi\nif [ -d {KUBERNETES_DIR} ]; then echo etc-kubernetes; fi\ns end\n")
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_probe_ends_with_the_paths_section_and_the_end_marker() {
        let probe = super::probe();
        let tail = "s paths\nif [ -d /var/lib/etcd/member ]; then echo etcd-data-dir; fi\nif [ -d /etc/kubernetes ]; then echo etc-kubernetes; fi\ns end\n";
        assert!(probe.ends_with(&format!("head -n 500\n{tail}")), "{probe}");
    }
}

//! Kernel settings and modules kubeadm's preflight expects. Inside containers (the lab's machines) modules
//! cannot be loaded and some sysctls do not exist; what matters is checked after loading: IP forwarding.
use crate::ssh::{Command, SshError, Transport};

pub async fn load(t: &dyn Transport) -> Result<(), SshError> {
    let script = r#"PATH="$PATH:/usr/sbin:/sbin"
for m in $(grep -v '^#' /etc/modules-load.d/kubeha.conf); do
  modprobe "$m" 2>/dev/null || [ -d "/sys/module/$m" ] || echo "module $m could not be loaded (not available here)" >&2
done
sysctl -e -q -p /etc/sysctl.d/90-kubeha.conf >/dev/null 2>&1 || true
[ "$(cat /proc/sys/net/ipv4/ip_forward)" = 1 ] || { echo "net.ipv4.ip_forward is still 0 after loading /etc/sysctl.d/90-kubeha.conf" >&2; exit 1; }"#;
    t.run(&Command::script(script)).await.map(|_| ())
}

//! keepalived (the VIP) and HAProxy (VIP:port spread over the API servers) on a control plane.
use super::files;
use crate::render::RenderedFile;
use crate::ssh::{Command, SshError, Transport, quote};

/// Places haproxy.cfg, keepalived.conf, the check script and kubeha-metrics, then (re)starts the services: restarted only
/// when a file changed, so a converged host keeps its VIP and connections.
pub async fn apply(t: &dyn Transport, rendered: &[&RenderedFile]) -> Result<bool, SshError> {
    let changed = files::place_rendered(t, rendered).await?;
    start(t, &crate::inventory::LOAD_BALANCER_SERVICES, changed).await?;
    Ok(changed)
}

/// kubeha-metrics' socket unit (paths::KUBEHA_METRICS_SOCKET): started after the load balancer's services.
pub const METRICS_SOCKET: &str = "kubeha-metrics.socket";

/// Enables and starts `services` in their order (the plan's: HAProxy first, as keepalived's health check
/// goes through it), then kubeha-metrics; when their files changed, reloads them (or starts them when stopped).
/// A reload keeps the VIP where it is and HAProxy's connections open, so a rolling configuration change over
/// the control planes (a member added or replaced) never takes the API endpoint away.
pub async fn start(t: &dyn Transport, services: &[&str], reload: bool) -> Result<(), SshError> {
    let verb = if reload { "reload-or-restart" } else { "start" };
    let units: Vec<String> = services.iter().map(|s| quote::quote(&format!("{s}.service"))).collect();
    let starts: Vec<String> = units.iter().map(|u| format!("systemctl {verb} {u}")).collect();
    // kubeha-metrics last: it only reports on the VIP. daemon-reload first, so a changed socket unit is the one
    // restarted; a changed script needs nothing (each scrape runs it anew).
    let script = format!(
        "systemctl daemon-reload; systemctl enable {} {METRICS_SOCKET} >/dev/null 2>&1; {} && systemctl {verb} {METRICS_SOCKET}",
        units.join(" "),
        starts.join(" && ")
    );
    t.run(&Command::script(script)).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ssh::fake::RecordingTransport;

    /// kubeha-metrics is enabled with the load balancer and (re)started after it, once systemd has read a changed
    /// socket unit; without changes it is only started, like HAProxy and keepalived.
    #[tokio::test]
    async fn kubeha_metrics_starts_after_haproxy_and_keepalived() {
        let fake = RecordingTransport::new("cp-1").on("systemctl", "");
        start(&fake, &["haproxy", "keepalived"], true).await.unwrap();
        start(&fake, &["haproxy", "keepalived"], false).await.unwrap();
        let scripts = fake.scripts();
        let reload = &scripts[0];
        assert!(reload.starts_with("systemctl daemon-reload;") && reload.contains(&format!("keepalived.service {METRICS_SOCKET} >/dev/null")), "{reload}");
        assert!(reload.ends_with(&format!("systemctl reload-or-restart keepalived.service && systemctl reload-or-restart {METRICS_SOCKET}")), "{reload}");
        assert!(scripts[1].ends_with(&format!("systemctl start keepalived.service && systemctl start {METRICS_SOCKET}")), "{}", scripts[1]);
    }
}

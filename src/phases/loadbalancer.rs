//! keepalived (the VIP) and HAProxy (VIP:port spread over the API servers) on a control plane.
use super::files;
use crate::render::RenderedFile;
use crate::ssh::{Command, SshError, Transport};
use std::net::IpAddr;

/// Places haproxy.cfg, keepalived.conf, the check script and kubeha-metrics, then (re)starts the services: restarted only
/// when a file changed, so a converged host keeps its VIP and connections.
pub async fn apply(t: &dyn Transport, rendered: &[&RenderedFile]) -> Result<bool, SshError> {
    let changed = files::place_rendered(t, rendered).await?;
    start(t, changed).await?;
    Ok(changed)
}

/// kubeha-metrics' socket unit (render::context::KUBEHA_METRICS_SOCKET): started after HAProxy and keepalived.
pub const METRICS_SOCKET: &str = "kubeha-metrics.socket";

/// Starts HAProxy and keepalived; when their files changed, reloads them (or starts them when stopped).
/// A reload keeps the VIP where it is and HAProxy's connections open, so a rolling configuration change
/// over the control planes (a member added or replaced) never takes the API endpoint away.
pub async fn start(t: &dyn Transport, reload: bool) -> Result<(), SshError> {
    let verb = if reload { "reload-or-restart" } else { "start" };
    // HAProxy first: keepalived's health check goes through it.
    // kubeha-metrics last: it only reports on the VIP. daemon-reload first, so a changed socket unit is the one
    // restarted; a changed script needs nothing (each scrape runs it anew).
    let script = format!(
        "systemctl daemon-reload; systemctl enable haproxy.service keepalived.service {METRICS_SOCKET} >/dev/null 2>&1; \
         systemctl {verb} haproxy.service && systemctl {verb} keepalived.service && systemctl {verb} {METRICS_SOCKET}"
    );
    t.run(&Command::script(script)).await.map(|_| ())
}

/// Whether this host holds `vip` on any interface right now.
pub async fn holds_vip(t: &dyn Transport, vip: IpAddr) -> Result<bool, SshError> {
    let out = t.run(&Command::argv(["ip", "-o", "addr", "show"]).unprivileged()).await?;
    let needle = format!(" {vip}/");
    Ok(out.stdout_text().lines().any(|l| l.contains(&needle)))
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
        start(&fake, true).await.unwrap();
        start(&fake, false).await.unwrap();
        let scripts = fake.scripts();
        let reload = &scripts[0];
        assert!(reload.starts_with("systemctl daemon-reload;") && reload.contains(&format!("keepalived.service {METRICS_SOCKET} >/dev/null")), "{reload}");
        assert!(reload.ends_with(&format!("systemctl reload-or-restart keepalived.service && systemctl reload-or-restart {METRICS_SOCKET}")), "{reload}");
        assert!(scripts[1].ends_with(&format!("systemctl start keepalived.service && systemctl start {METRICS_SOCKET}")), "{}", scripts[1]);
    }
}

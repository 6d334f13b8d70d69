//! keepalived (the VIP) and HAProxy (VIP:port spread over the API servers) on a control plane.
use super::files;
use crate::render::RenderedFile;
use crate::ssh::{Command, SshError, Transport, quote};
use std::net::IpAddr;

/// Places haproxy.cfg, keepalived.conf and the check script, then (re)starts both services: restarted only
/// when a file changed, so a converged host keeps its VIP and connections.
pub async fn apply(t: &dyn Transport, rendered: &[&RenderedFile]) -> Result<bool, SshError> {
    let changed = files::place_rendered(t, rendered).await?;
    start(t, &crate::inventory::LOAD_BALANCER_SERVICES, changed).await?;
    Ok(changed)
}

/// Enables and starts `services` in their order (the plan's: HAProxy first, as keepalived's health check
/// goes through it); when their files changed, reloads them (or starts them when stopped). A reload keeps
/// the VIP where it is and HAProxy's connections open, so a rolling configuration change over the control
/// planes (a member added or replaced) never takes the API endpoint away.
pub async fn start(t: &dyn Transport, services: &[&str], reload: bool) -> Result<(), SshError> {
    let verb = if reload { "reload-or-restart" } else { "start" };
    let units: Vec<String> = services.iter().map(|s| quote::quote(&format!("{s}.service"))).collect();
    let starts: Vec<String> = units.iter().map(|u| format!("systemctl {verb} {u}")).collect();
    let script = format!("systemctl enable {} >/dev/null 2>&1; {}", units.join(" "), starts.join(" && "));
    t.run(&Command::script(script)).await.map(|_| ())
}

/// Whether this host holds `vip` on any interface right now.
pub async fn holds_vip(t: &dyn Transport, vip: IpAddr) -> Result<bool, SshError> {
    let out = t.run(&Command::argv(["ip", "-o", "addr", "show"]).unprivileged()).await?;
    let needle = format!(" {vip}/");
    Ok(out.stdout_text().lines().any(|l| l.contains(&needle)))
}

//! Who holds the load balancer's VIP: asked of each control plane, read-only.
use crate::ssh::{Command, SshError, Transport};
use std::net::IpAddr;

/// Whether this host holds `vip` on any interface right now.
pub async fn holds_vip(t: &dyn Transport, vip: IpAddr) -> Result<bool, SshError> {
    let out = t.run(&Command::argv(["ip", "-o", "addr", "show"]).unprivileged()).await?;
    let needle = format!(" {vip}/");
    Ok(out.stdout_text().lines().any(|l| l.contains(&needle)))
}

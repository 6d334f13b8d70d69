//! One Linux bridge per lab segment, carrying the operator's address on that segment.
use super::layout::{Layout, Segment};
use super::system::run;
use anyhow::Result;
use std::path::Path;

pub fn exists(bridge: &str) -> bool {
    Path::new("/sys/class/net").join(bridge).exists()
}

pub fn ensure(layout: &Layout, s: &Segment) -> Result<()> {
    if !exists(&s.bridge) {
        run("ip", &["link", "add", "name", &s.bridge, "type", "bridge"])?;
    }
    run("ip", &["addr", "replace", &format!("{}/{}", s.gateway, s.network.prefix_len()), "dev", &s.bridge])?;
    run("ip", &["link", "set", &s.bridge, "up"])?;
    if layout.segments.len() > 1 {
        // Forwarding only for packets arriving on lab bridges: segments reach each other through the host,
        // and since machines have no default route, nothing of the lab is forwarded anywhere else.
        std::fs::write(format!("/proc/sys/net/ipv4/conf/{}/forwarding", s.bridge), "1")?;
    }
    Ok(())
}

pub fn remove(bridge: &str) -> Result<()> {
    if exists(bridge) {
        run("ip", &["link", "delete", bridge])?;
    }
    Ok(())
}

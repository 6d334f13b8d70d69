//! The report as text for a person on call: the verdict first, then one aligned row per host (and per etcd
//! member outside the inventory), what losing each failure domain now would do, and the problems.
use super::{EtcdState, HostStatus, Report, Verdict};

pub fn text(r: &Report) -> String {
    let mut out = String::new();
    let verdict = match r.verdict {
        Verdict::Healthy => "healthy",
        Verdict::Degraded => "DEGRADED, quorum holds",
        Verdict::QuorumLost => "QUORUM LOST",
        Verdict::EtcdUnavailable => "etcd UNAVAILABLE, quorum unknown",
    };
    out.push_str(&format!("cluster {}: {verdict}\n", r.cluster));
    out.push_str(&etcd_line(r));
    if let Some(vip) = &r.vip {
        let holders = if vip.holders.is_empty() { "no reachable control plane".to_string() } else { vip.holders.join(" and ") };
        out.push_str(&format!("VIP {}: held by {holders}\n", vip.address));
    }
    out.push('\n');
    out.push_str(&table(r));

    // Once quorum is lost, "what if" per domain says nothing new; the way out matters.
    if r.verdict != Verdict::QuorumLost && !r.domains.is_empty() {
        out.push_str("\nIf a whole domain is lost now:\n");
        for d in &r.domains {
            out.push_str(&format!("  {}\n", d.sentence));
        }
    }
    if let Some(b) = &r.backups {
        out.push_str(&format!("\nBackups: {}\n", b.detail));
        let width = b.hosts.iter().map(|h| h.host.len()).max().unwrap_or(0);
        for h in &b.hosts {
            out.push_str(&format!("  {:<width$}  {}\n", h.host, h.sentence));
        }
    }
    out.push_str(&section("Problems", &r.problems));
    out.push_str(&section("Warnings", &r.warnings));
    if let Some(way_out) = &r.way_out {
        out.push_str(&format!("\nWay out: {way_out}\n"));
    }
    out
}

fn etcd_line(r: &Report) -> String {
    let Some(v) = &r.etcd.votes else {
        return format!("etcd: cannot be asked: {}\n", r.etcd.error.as_deref().unwrap_or("no answer"));
    };
    let counts = format!("{} of {} voting members healthy, quorum {}", v.healthy_voters, v.voters, v.quorum);
    if v.more_losses_tolerated < 0 {
        return format!("etcd: {counts}: {} short of quorum\n", -v.more_losses_tolerated);
    }
    let leader = v.leader.as_deref().unwrap_or("none");
    let losses = if v.more_losses_tolerated == 1 { "loss" } else { "losses" };
    format!("etcd: {counts}, leader {leader}: tolerates {} more member {losses}\n", v.more_losses_tolerated)
}

fn table(r: &Report) -> String {
    let regions = r.hosts.iter().any(|h| h.region.is_some());
    let vip = r.vip.is_some();
    let mut header = vec!["HOST", "ROLE"];
    if regions {
        header.push("REGION");
    }
    header.extend(["ZONE", "RACK", "SSH", "ETCD"]);
    if vip {
        header.push("VIP");
    }
    header.push("NOTE");
    let mut rows: Vec<Vec<String>> = vec![header.into_iter().map(String::from).collect()];
    for h in &r.hosts {
        let mut row = vec![h.name.clone(), h.roles.join(",")];
        if regions {
            row.push(h.region.clone().unwrap_or_else(|| "-".into()));
        }
        row.push(h.zone.clone());
        row.push(h.rack.clone().unwrap_or_else(|| "-".into()));
        row.push(if h.reachable { "ok" } else { "no" }.into());
        row.push(h.etcd.map_or("-", EtcdState::name).into());
        if vip {
            row.push(vip_cell(h).into());
        }
        let note: Vec<String> = h.ssh_error.iter().cloned().chain(h.etcd_error.iter().map(|e| format!("etcd: {e}"))).collect();
        row.push(note.join("; "));
        rows.push(row);
    }
    for m in &r.foreign_members {
        let mut row = vec![m.name.clone(), "-".into()];
        if regions {
            row.push("-".into());
        }
        row.extend(["-".into(), "-".into(), "-".into(), m.state.name().into()]);
        if vip {
            row.push("-".into());
        }
        let error = m.etcd_error.as_deref().map(|e| format!("; etcd: {e}")).unwrap_or_default();
        row.push(format!("not in the inventory (member id {}){error}", m.id));
        rows.push(row);
    }
    align(&rows)
}

/// yes/no for a control plane that was asked, ? when asking failed, - when it was not asked.
fn vip_cell(h: &HostStatus) -> &'static str {
    match h.vip_holder {
        Some(true) => "yes",
        Some(false) => "no",
        None if h.reachable && h.etcd.is_some() => "?",
        None => "-",
    }
}

/// A titled list after a blank line, one indented line per entry; nothing when empty.
pub(super) fn section(title: &str, lines: &[String]) -> String {
    if lines.is_empty() {
        return String::new();
    }
    let mut out = format!("\n{title}:\n");
    for l in lines {
        out.push_str(&format!("  {l}\n"));
    }
    out
}

/// Columns padded to their widest cell, two spaces apart, without trailing blanks.
pub(super) fn align(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns).map(|c| rows.iter().filter_map(|r| r.get(c)).map(|s| s.chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row.iter().enumerate().map(|(c, cell)| format!("{cell:<width$}", width = widths[c])).collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

//! Pure parsers of the probe output (see `script`). No I/O: tested on output captured from real hosts
//! (fixtures/) and on hand-written edge cases.
use std::collections::BTreeMap;

/// Why the output of a line-per-fact probe (the state probe, the secret files probe) is not one to plan
/// from: a line it does not understand, or no `end` line, which means the output was cut short.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeOutputError {
    #[error("cannot understand {0:?}")]
    NotUnderstood(String),
    #[error("cannot understand {0:?} after the end")]
    AfterTheEnd(String),
    #[error("the output was cut short")]
    CutShort,
}

/// The probe output split into its `@@kubeha NAME@@` sections (name -> body).
#[derive(Debug, Default)]
pub struct Sections {
    bodies: BTreeMap<String, String>,
}

impl Sections {
    pub fn split(output: &str) -> Sections {
        let mut bodies = BTreeMap::new();
        let mut current: Option<(String, String)> = None;
        for line in output.lines() {
            if let Some(name) = line.strip_prefix("@@kubeha ").and_then(|rest| rest.strip_suffix("@@")) {
                if let Some((n, b)) = current.take() {
                    bodies.insert(n, b);
                }
                current = Some((name.to_string(), String::new()));
            } else if let Some((_, body)) = current.as_mut() {
                body.push_str(line);
                body.push('\n');
            }
        }
        if let Some((n, b)) = current {
            bodies.insert(n, b);
        }
        Sections { bodies }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.bodies.get(name).map(String::as_str)
    }

    /// The first non-empty line of a section, trimmed.
    pub fn first_line(&self, name: &str) -> Option<&str> {
        self.get(name)?.lines().map(str::trim).find(|l| !l.is_empty())
    }

    /// The probe ran to the end (a truncated output must not be mistaken for "nothing installed").
    pub fn complete(&self) -> bool {
        self.bodies.contains_key("end")
    }
}

/// `/etc/os-release` fields we report. Values may be quoted with `"` or `'`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct OsRelease {
    pub id: String,
    pub version_id: String,
    pub pretty_name: String,
}

pub fn os_release(text: &str) -> OsRelease {
    let mut os = OsRelease::default();
    for line in text.lines() {
        let Some((key, value)) = line.trim().split_once('=') else {
            continue;
        };
        let value = unquote(value.trim());
        match key {
            "ID" => os.id = value,
            "VERSION_ID" => os.version_id = value,
            "PRETTY_NAME" => os.pretty_name = value,
            _ => {}
        }
    }
    os
}

fn unquote(value: &str) -> String {
    let inner =
        value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\''))).unwrap_or(value);
    inner.replace("\\\"", "\"").replace("\\\\", "\\")
}

/// `MemTotal` and `SwapTotal` from /proc/meminfo, in bytes.
pub fn meminfo(text: &str) -> (Option<u64>, Option<u64>) {
    let field = |name: &str| {
        text.lines().find_map(|l| {
            let rest = l.strip_prefix(name)?.strip_prefix(':')?;
            let mut parts = rest.split_whitespace();
            let value: u64 = parts.next()?.parse().ok()?;
            let unit = parts.next().unwrap_or("");
            Some(if unit.eq_ignore_ascii_case("kb") { value * 1024 } else { value })
        })
    };
    (field("MemTotal"), field("SwapTotal"))
}

/// Swap is on when /proc/swaps lists any device or file below its header line.
pub fn swap_active(proc_swaps: &str) -> bool {
    proc_swaps.lines().skip(1).any(|l| !l.trim().is_empty())
}

/// Local ports in LISTEN state from the `listen` section: `ss -Htln` output, or /proc/net/tcp{,6} when ss is
/// missing (the first line says which).
pub fn listening_ports(section: &str) -> Vec<u16> {
    let mut lines = section.lines();
    let mut ports: Vec<u16> = match lines.next().map(str::trim) {
        Some("source ss") => lines.filter_map(ss_line_port).collect(),
        Some("source proc") => lines.filter_map(proc_net_tcp_line_port).collect(),
        _ => Vec::new(),
    };
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// `LISTEN 0 128 0.0.0.0:2379 0.0.0.0:*` / `[::]:6443` / `*:10250` / `127.0.0.53%lo:53`: the port is after
/// the last colon of the fourth column.
fn ss_line_port(line: &str) -> Option<u16> {
    let mut cols = line.split_whitespace();
    let state = cols.next()?;
    if state != "LISTEN" {
        return None;
    }
    let local = cols.nth(2)?;
    local.rsplit_once(':')?.1.parse().ok()
}

/// `   1: 0100007F:094B 00000000:0000 0A ...`: state 0A is LISTEN, the port is hex after the colon.
fn proc_net_tcp_line_port(line: &str) -> Option<u16> {
    let mut cols = line.split_whitespace();
    let slot = cols.next()?;
    if !slot.ends_with(':') {
        return None; // the header line
    }
    let local = cols.next()?;
    let _remote = cols.next()?;
    if cols.next()? != "0A" {
        return None;
    }
    u16::from_str_radix(local.rsplit_once(':')?.1, 16).ok()
}

/// What a `bin NAME` section says: absent, or present with the version found in its output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Installed {
    Absent,
    Present { path: String, version: Option<String> },
}

pub fn installed(section: &str) -> Installed {
    let mut lines = section.lines();
    match lines.next().map(str::trim) {
        Some(first) if first.starts_with("path ") => {
            let path = first["path ".len()..].to_string();
            let rest: Vec<&str> = lines.collect();
            Installed::Present { path, version: rest.iter().find_map(|l| version_token(l)) }
        }
        _ => Installed::Absent,
    }
}

/// The first version-looking word of a line: digits and dots with at least one dot, optionally prefixed by
/// `v` and followed by a suffix (`3.4.23`, `v1.31.2`, `2.6.12-1+deb12u4`, `1.6.20~ds1`). Every tool prints its
/// version differently; they all contain such a word, and none before it on the same line.
pub fn version_token(line: &str) -> Option<String> {
    line.split(|c: char| c.is_whitespace() || c == ',' || c == '(' || c == ')').find_map(|word| {
        let core = word.strip_prefix('v').unwrap_or(word);
        let numeric: String = core.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
        let looks_like_version =
            numeric.contains('.') && numeric.starts_with(|c: char| c.is_ascii_digit()) && numeric.split('.').filter(|p| !p.is_empty()).count() >= 2;
        looks_like_version.then(|| core.trim_end_matches([':', ';']).to_string())
    })
}

/// Seconds since the epoch from `date +%s.%N` (BusyBox prints `%N` literally: then the fraction is dropped).
pub fn epoch_seconds(text: &str) -> Option<f64> {
    let text = text.trim();
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    let whole: i64 = whole.parse().ok()?;
    let frac: f64 = if !frac.is_empty() && frac.bytes().all(|b| b.is_ascii_digit()) { format!("0.{frac}").parse().ok()? } else { 0.0 };
    Some(whole as f64 + frac)
}

/// Clock offset of the host (positive: the host is ahead) from a remote timestamp taken somewhere between
/// two local instants. The midpoint is the best estimate; half the interval bounds the error.
pub fn clock_offset_ms(local_before: f64, local_after: f64, remote: f64) -> (i64, i64) {
    let midpoint = (local_before + local_after) / 2.0;
    (((remote - midpoint) * 1000.0).round() as i64, (((local_after - local_before) / 2.0) * 1000.0).round() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEBIAN12: &str = include_str!("fixtures/debian12-root.txt");
    const ETCD_HAPROXY: &str = include_str!("fixtures/debian12-etcd-haproxy.txt");
    const PROC_NET_TCP: &str = include_str!("fixtures/proc-net-tcp.txt");

    #[test]
    fn sections_of_a_real_probe() {
        let s = Sections::split(DEBIAN12);
        assert!(s.complete());
        assert_eq!(s.first_line("kernel"), Some("6.18.44-fc-v657"));
        assert_eq!(s.first_line("arch"), Some("x86_64"));
        assert_eq!(s.first_line("hostname"), Some("vm"));
        assert_eq!(s.first_line("cpus"), Some("2"));
        let os = os_release(s.get("os-release").unwrap());
        assert_eq!(os, OsRelease { id: "debian".into(), version_id: "12".into(), pretty_name: "Debian GNU/Linux 12 (bookworm)".into() });
        assert_eq!(meminfo(s.get("meminfo").unwrap()), (Some(24684092 * 1024), Some(0)));
        assert!(!swap_active(s.get("swaps").unwrap()));
        assert_eq!(installed(s.get("bin etcd").unwrap()), Installed::Absent);
        assert_eq!(listening_ports(s.get("listen").unwrap()), vec![2024]);
        let clock = epoch_seconds(s.get("time").unwrap()).unwrap();
        assert!((clock - 1_795_610_456.728_606).abs() < 1e-5, "{clock}");
    }

    #[test]
    fn real_version_outputs() {
        let s = Sections::split(ETCD_HAPROXY);
        let version = |name: &str| match installed(s.get(&format!("bin {name}")).unwrap()) {
            Installed::Present { version, .. } => version,
            Installed::Absent => None,
        };
        assert_eq!(version("etcd").as_deref(), Some("3.4.23"));
        assert_eq!(version("keepalived").as_deref(), Some("2.2.7"));
        assert_eq!(version("haproxy").as_deref(), Some("2.6.12-1+deb12u4"));
        assert_eq!(version("containerd").as_deref(), Some("1.6.20~ds1"));
        assert_eq!(installed(s.get("bin kubeadm").unwrap()), Installed::Absent);
        assert_eq!(listening_ports(s.get("listen").unwrap()), vec![2024, 2379, 6443]);
    }

    #[test]
    fn kubernetes_version_formats() {
        // `kubeadm version -o short` and `kubelet --version` (their documented output formats).
        assert_eq!(version_token("v1.31.2").as_deref(), Some("1.31.2"));
        assert_eq!(version_token("Kubernetes v1.31.2").as_deref(), Some("1.31.2"));
        assert_eq!(version_token("etcd Version: 3.5.16").as_deref(), Some("3.5.16"));
        assert_eq!(version_token("containerd containerd.io 1.7.22 7f7fdf5f").as_deref(), Some("1.7.22"));
        assert_eq!(version_token("Git SHA: Not provided"), None);
        assert_eq!(version_token("Go Version: go1.19.8"), None);
    }

    #[test]
    fn proc_net_tcp_fallback_from_real_tables() {
        // Captured while 127.0.0.1:2379 (v4) and [::]:6443 (v6) listened, plus many non-listening sockets.
        let ports = listening_ports(PROC_NET_TCP);
        assert!(ports.contains(&2379), "{ports:?}");
        assert!(ports.contains(&6443), "{ports:?}");
        assert!(ports.contains(&2024), "{ports:?}");
    }

    #[test]
    fn ss_address_forms() {
        let section = "source ss\nLISTEN 0 4096 [::]:10250 [::]:*\nLISTEN 0 4096 127.0.0.53%lo:53 0.0.0.0:*\n\
                       LISTEN 0 4096 *:8443 *:*\nLISTEN 0 4096 [::ffff:10.0.0.1]:2380 [::]:*\n";
        assert_eq!(listening_ports(section), vec![53, 2380, 8443, 10250]);
        assert_eq!(listening_ports("garbage\n"), Vec::<u16>::new());
    }

    #[test]
    fn swap_and_meminfo_variants() {
        assert!(swap_active("Filename Type Size Used Priority\n/swapfile file 1048572 0 -2\n"));
        assert_eq!(meminfo("MemTotal: 1000 kB\n"), (Some(1024000), None));
    }

    #[test]
    fn os_release_quoting() {
        let os = os_release("ID='rocky'\nVERSION_ID=\"9.4\"\nPRETTY_NAME=\"Say \\\"hi\\\"\"\n");
        assert_eq!(os.id, "rocky");
        assert_eq!(os.version_id, "9.4");
        assert_eq!(os.pretty_name, "Say \"hi\"");
    }

    #[test]
    fn clock() {
        assert_eq!(clock_offset_ms(100.0, 100.010, 100.505), (500, 5));
        assert_eq!(clock_offset_ms(100.0, 100.0, 99.0), (-1000, 0));
        assert_eq!(epoch_seconds("1700000000.%N"), Some(1700000000.0));
        assert_eq!(epoch_seconds("nope"), None);
    }

    #[test]
    fn truncated_output_is_incomplete() {
        let cut = &DEBIAN12[..DEBIAN12.find("@@kubeha listen@@").unwrap()];
        assert!(!Sections::split(cut).complete());
    }
}

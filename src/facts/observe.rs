//! What kubeha itself has put on a host: the digest of every file it manages, whether its services run, and
//! the host's addresses (who holds the VIP). One exec per host, parsed by a pure function; the planner
//! compares this with what it would render.
use crate::ssh::{Command, SshError, Transport, quote};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

/// A host as kubeha finds it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostState {
    /// Path -> lower-case hex SHA-256 of its contents; absent files are missing from the map.
    pub digests: BTreeMap<String, String>,
    /// Unit name (without .service) -> active right now.
    pub active: BTreeMap<String, bool>,
    pub addresses: Vec<IpAddr>,
}

impl HostState {
    pub fn digest(&self, path: &str) -> Option<&str> {
        self.digests.get(path).map(String::as_str)
    }

    pub fn has(&self, path: &str) -> bool {
        self.digests.contains_key(path)
    }

    pub fn is_active(&self, unit: &str) -> bool {
        self.active.get(unit).copied().unwrap_or(false)
    }
}

/// The script: `file <sha256> <path>` per existing file, `unit <name> <state>` per unit, `addr <ip>` per
/// address. Paths and unit names are quoted; sha256sum reads the file by redirection so odd names are safe.
pub fn script(paths: &[&str], units: &[&str]) -> String {
    let mut s = String::from("PATH=\"$PATH:/usr/sbin:/sbin\"\n");
    for p in paths {
        let q = quote::quote(p);
        s.push_str(&format!("if [ -f {q} ]; then printf 'file %s %s\\n' \"$(sha256sum < {q} | cut -c1-64)\" {q}; fi\n"));
    }
    for u in units {
        let q = quote::quote(u);
        s.push_str(&format!("printf 'unit %s %s\\n' {q} \"$(systemctl is-active {q}.service 2>/dev/null || true)\"\n"));
    }
    s.push_str("ip -o addr show 2>/dev/null | awk '{print \"addr \" $4}'\necho end\n");
    s
}

/// Parses the script's output. Unknown lines are ignored; a missing `end` means the output was cut short.
pub fn parse(output: &str) -> Option<HostState> {
    let mut state = HostState::default();
    let mut complete = false;
    for line in output.lines() {
        let mut words = line.splitn(3, ' ');
        match (words.next(), words.next(), words.next()) {
            (Some("file"), Some(digest), Some(path)) if digest.len() == 64 => {
                state.digests.insert(path.to_string(), digest.to_string());
            }
            (Some("unit"), Some(name), state_word) => {
                state.active.insert(name.to_string(), state_word == Some("active"));
            }
            (Some("addr"), Some(cidr), None) => {
                if let Ok(ip) = cidr.split('/').next().unwrap_or_default().parse() {
                    state.addresses.push(ip);
                }
            }
            (Some("end"), None, None) => complete = true,
            _ => {}
        }
    }
    complete.then_some(state)
}

/// Runs the script on one host (as root: some files are 0600).
pub async fn observe(t: &dyn Transport, paths: &[&str], units: &[&str]) -> Result<HostState, SshError> {
    let out = t.run(&Command::script(script(paths, units)).timeout(Duration::from_secs(60))).await?;
    parse(&out.stdout_text()).ok_or_else(|| SshError::Protocol {
        host: t.host().into(),
        command: Some("state probe".into()),
        detail: "the state probe's output was cut short".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_files_units_and_addresses() {
        let out = format!(
            "file {} /etc/etcd/etcd.conf.yml\nfile short /x\nunit etcd active\nunit haproxy inactive\nunit keepalived \naddr 127.0.0.1/8\naddr 198.18.0.100/24\naddr fe80::1/64\nend\n",
            "a".repeat(64)
        );
        let s = parse(&out).unwrap();
        assert_eq!(s.digest("/etc/etcd/etcd.conf.yml"), Some("a".repeat(64).as_str()));
        assert!(!s.has("/x"));
        assert!(s.is_active("etcd") && !s.is_active("haproxy") && !s.is_active("keepalived") && !s.is_active("kubelet"));
        assert!(s.addresses.contains(&"198.18.0.100".parse().unwrap()));
        assert_eq!(s.addresses.len(), 3);
        assert!(parse("unit etcd active\n").is_none(), "cut short");
    }

    #[test]
    fn script_quotes_every_path() {
        let s = script(&["/etc/a b", "/etc/it's"], &["etcd"]);
        assert!(s.contains("[ -f '/etc/a b' ]") && s.contains(r"'/etc/it'\''s'"), "{s}");
    }

    #[tokio::test]
    async fn runs_one_command_as_root() {
        let fake = crate::ssh::fake::RecordingTransport::new("cp-1").on("sha256sum", "unit etcd active\nend\n");
        let s = observe(&fake, &["/etc/x"], &["etcd"]).await.unwrap();
        assert!(s.is_active("etcd"));
        assert_eq!(fake.scripts().len(), 1);
    }
}

//! Read-only facts about hosts, gathered with one probe exec per host (see `script`) and parsed by pure
//! functions (see `parse`).
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use thiserror::Error;

use crate::ssh::{Command, ConnectOptions, HostTarget, SshError, Transport};

pub mod certs;
pub mod cluster;
pub mod etcd;
pub mod observe;
pub mod parse;
pub mod report;
pub mod script;
pub mod secret_files;
pub mod vip;

use parse::{Installed, Sections};

/// What kubeha knows about a host before planning anything.
/// Serialized in camelCase like every other JSON output of kubeha.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HostFacts {
    pub hostname: String,
    pub os_id: String,
    pub os_version: String,
    pub os_pretty_name: String,
    pub kernel: String,
    pub arch: String,
    pub cpus: u32,
    pub memory_bytes: u64,
    pub swap_on: bool,
    /// Host clock minus operator clock; positive means the host is ahead.
    pub clock_offset_ms: i64,
    /// The offset is exact to within this many milliseconds (half the measuring interval).
    pub clock_uncertainty_ms: i64,
    /// systemd is PID 1 (not merely installed).
    pub systemd: bool,
    /// Installed version per tool of `script::SOFTWARE`; `None` when absent, "unknown" when present but
    /// its version output was not understood.
    pub software: BTreeMap<String, Option<String>>,
    /// Which of `script::WATCHED_PORTS` have a listener.
    pub listening: BTreeMap<u16, bool>,
    /// /var/lib/etcd/member exists: an etcd member has run here (never wipe it implicitly).
    pub etcd_data_dir: bool,
    pub etc_kubernetes: bool,
    /// Unix sockets under /run (three levels deep): where a container runtime answers.
    pub sockets: Vec<String>,
}

impl HostFacts {
    /// Whether a unix socket exists at `path` (/var/run is /run on every systemd host).
    pub fn has_socket(&self, path: &str) -> bool {
        let path = path.strip_prefix("/var/run/").map_or_else(|| path.to_string(), |rest| format!("/run/{rest}"));
        self.sockets.contains(&path)
    }
}

#[derive(Debug, Clone, Error)]
pub enum FactsError {
    #[error(transparent)]
    Ssh(#[from] SshError),
    #[error("{host}: cannot understand the facts probe output: {detail}")]
    Parse { host: String, detail: String },
}

impl FactsError {
    pub fn host(&self) -> &str {
        match self {
            FactsError::Ssh(e) => e.host(),
            FactsError::Parse { host, .. } => host,
        }
    }
}

/// One host's outcome: facts, or why there are none.
#[derive(Debug)]
pub struct HostReport {
    pub host: String,
    pub result: Result<HostFacts, FactsError>,
}

const PROBE_TIMEOUT: Duration = Duration::from_secs(60);

fn now_epoch() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or_default()
}

/// Run the probe on one host. The probe's first output is the host's clock, so the arrival of the first
/// chunk of output bounds when it was sampled (tighter than the end of the whole probe).
pub async fn probe(transport: &dyn Transport) -> Result<HostFacts, FactsError> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    // Run as root when become applies: /var/lib/etcd is 0700.
    let command = Command::script(script::probe()).timeout(PROBE_TIMEOUT).stream_to(tx);
    let before = now_epoch();
    // `command` (and with it the sender) moves into the exec future, so `recv` ends when exec ends even on
    // a transport that never streams.
    let exec = async move { transport.run(&command).await };
    let first_output = async { rx.recv().await.map(|_| now_epoch()) };
    let (output, first_at) = tokio::join!(exec, first_output);
    let output = output?;
    let after = first_at.unwrap_or_else(now_epoch);
    from_output(transport.host(), &output.stdout_text(), before, after)
}

/// Build facts from the probe output and the local instants around the remote clock sample. Pure.
pub fn from_output(host: &str, output: &str, local_before: f64, local_after: f64) -> Result<HostFacts, FactsError> {
    let parse_error = |detail: &str| FactsError::Parse { host: host.to_string(), detail: detail.to_string() };
    let sections = Sections::split(output);
    if !sections.complete() {
        return Err(parse_error("the probe output is truncated"));
    }
    let required = |name: &str| sections.first_line(name).ok_or_else(|| parse_error(&format!("no {name}")));
    let remote_time = parse::epoch_seconds(required("time")?).ok_or_else(|| parse_error("the host clock is not a number"))?;
    let (clock_offset_ms, clock_uncertainty_ms) = parse::clock_offset_ms(local_before, local_after, remote_time);
    let os = parse::os_release(sections.get("os-release").unwrap_or_default());
    let (memory, _swap_total) = parse::meminfo(sections.get("meminfo").unwrap_or_default());
    let listening_now = parse::listening_ports(sections.get("listen").unwrap_or_default());
    let paths: Vec<&str> = sections.get("paths").unwrap_or_default().lines().map(str::trim).collect();

    let software = script::SOFTWARE
        .iter()
        .map(|name| {
            let state = parse::installed(sections.get(&format!("bin {name}")).unwrap_or_default());
            let version = match state {
                Installed::Absent => None,
                Installed::Present { version, .. } => Some(version.unwrap_or_else(|| "unknown".into())),
            };
            (name.to_string(), version)
        })
        .collect();

    Ok(HostFacts {
        hostname: required("hostname")?.to_string(),
        os_id: if os.id.is_empty() { "unknown".into() } else { os.id },
        os_version: os.version_id,
        os_pretty_name: os.pretty_name,
        kernel: required("kernel")?.to_string(),
        arch: required("arch")?.to_string(),
        cpus: required("cpus")?.parse().map_err(|_| parse_error("the CPU count is not a number"))?,
        memory_bytes: memory.ok_or_else(|| parse_error("no MemTotal in /proc/meminfo"))?,
        swap_on: parse::swap_active(sections.get("swaps").unwrap_or_default()),
        clock_offset_ms,
        clock_uncertainty_ms,
        systemd: sections.first_line("systemd") == Some("running"),
        software,
        listening: script::WATCHED_PORTS.iter().map(|p| (*p, listening_now.contains(p))).collect(),
        etcd_data_dir: paths.contains(&"etcd-data-dir"),
        etc_kubernetes: paths.contains(&"etc-kubernetes"),
        sockets: sections.get("sockets").unwrap_or_default().lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect(),
    })
}

/// Connect to every target (bounded concurrency, one connection each) and probe them all. Every host gets a
/// report, in the order given; a failing host does not stop the others.
pub async fn gather(targets: &[HostTarget], opts: &ConnectOptions) -> Vec<HostReport> {
    let connected = crate::ssh::pool::connect_each(targets, opts).await;
    let hosts = connected.into_iter().map(|(name, session)| (name, session.map(|s| s as Arc<dyn Transport>))).collect();
    probe_all(hosts, opts.concurrency).await
}

/// A host name and its transport, or why there is none.
pub type ProbeTarget = (String, Result<Arc<dyn Transport>, SshError>);

/// Probe hosts that are already connected (or failed to), e.g. over a pool the caller keeps for later
/// steps, or over fakes in tests. Reports come back in input order.
pub async fn probe_all(hosts: Vec<ProbeTarget>, concurrency: usize) -> Vec<HostReport> {
    let limit = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for (index, (name, transport)) in hosts.into_iter().enumerate() {
        let limit = limit.clone();
        tasks.spawn(async move {
            let result = match transport {
                Ok(transport) => {
                    let _permit = limit.acquire_owned().await.expect("semaphore is never closed");
                    probe(transport.as_ref()).await
                }
                Err(e) => Err(FactsError::Ssh(e)),
            };
            (index, HostReport { host: name, result })
        });
    }
    let mut reports: Vec<(usize, HostReport)> = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(r) => reports.push(r),
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    reports.sort_by_key(|(i, _)| *i);
    reports.into_iter().map(|(_, r)| r).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ssh::fake::RecordingTransport;

    const DEBIAN12: &str = include_str!("fixtures/debian12-root.txt");
    const CONTROL_PLANE: &str = include_str!("fixtures/control-plane-handwritten.txt");

    #[tokio::test]
    async fn probe_runs_one_command_as_root_and_parses_it() {
        let fake = RecordingTransport::new("cp1").on("@@kubeha", DEBIAN12);
        let facts = probe(&fake).await.expect("facts");
        assert_eq!(fake.scripts().len(), 1, "one exec per host");
        assert!(matches!(&fake.recorded()[0], crate::ssh::fake::Recorded::Exec { as_root: true, .. }));
        assert_eq!(facts.hostname, "vm");
        assert_eq!(facts.os_id, "debian");
        assert_eq!(facts.os_version, "12");
        assert_eq!(facts.cpus, 2);
        assert!(!facts.swap_on);
        assert!(facts.software.values().all(Option::is_none));
        assert!(facts.listening.values().all(|l| !l));
        // The fixture's clock is from when it was captured: a large offset, computed, not a failure.
        assert!(facts.clock_offset_ms != 0);
    }

    #[test]
    fn control_plane_host() {
        let facts = from_output("cp2", CONTROL_PLANE, 1_800_000_000.0, 1_800_000_000.010).expect("facts");
        assert_eq!(facts.clock_offset_ms, 1_245);
        assert_eq!(facts.clock_uncertainty_ms, 5);
        assert_eq!(facts.software["kubeadm"].as_deref(), Some("1.31.2"));
        assert_eq!(facts.software["kubelet"].as_deref(), Some("1.31.2"));
        assert_eq!(facts.software["etcd"].as_deref(), Some("3.5.16"));
        assert_eq!(facts.software["haproxy"].as_deref(), Some("unknown"));
        assert_eq!(facts.software["keepalived"], None);
        assert!(facts.swap_on);
        assert!(facts.systemd);
        assert!(facts.etcd_data_dir && facts.etc_kubernetes);
        // kubeadm's default endpoint names /var/run, which is /run.
        assert!(facts.has_socket("/var/run/containerd/containerd.sock") && facts.has_socket("/run/containerd/containerd.sock"));
        assert!(!facts.has_socket("/run/kubeha-lab-cri/cri.sock"));
        assert_eq!(facts.listening.iter().filter(|(_, l)| **l).map(|(p, _)| *p).collect::<Vec<_>>(), vec![2379, 2380, 6443, 10250]);
    }

    #[test]
    fn truncated_probe_is_an_error_naming_the_host() {
        let cut = &DEBIAN12[..DEBIAN12.find("@@kubeha paths@@").unwrap()];
        let err = from_output("w3", cut, 0.0, 0.0).unwrap_err();
        assert_eq!(err.host(), "w3");
        assert!(err.to_string().contains("truncated"), "{err}");
    }

    #[tokio::test]
    async fn probe_all_keeps_order_and_reports_every_host() {
        let ok: Arc<dyn Transport> = Arc::new(RecordingTransport::new("a").on("@@kubeha", DEBIAN12));
        let broken: Arc<dyn Transport> = Arc::new(RecordingTransport::new("c").on("@@kubeha", "garbage"));
        let down = SshError::Refused { host: "b".into(), address: "10.0.0.2".into(), port: 22, detail: "connection refused".into() };
        let reports = probe_all(vec![("a".into(), Ok(ok)), ("b".into(), Err(down)), ("c".into(), Ok(broken))], 2).await;
        assert_eq!(reports.iter().map(|r| r.host.as_str()).collect::<Vec<_>>(), ["a", "b", "c"]);
        assert!(reports[0].result.is_ok());
        assert!(matches!(reports[1].result, Err(FactsError::Ssh(SshError::Refused { .. }))));
        assert!(matches!(reports[2].result, Err(FactsError::Parse { .. })));
        assert_eq!(report::failed_hosts(&reports), ["b", "c"]);
    }

    #[tokio::test]
    async fn probe_failure_is_reported_for_the_host() {
        let fake = RecordingTransport::new("cp9")
            .respond("@@kubeha", Err(SshError::Sudo { host: "cp9".into(), command: "probe".into(), message: "a password is required".into() }));
        let err = probe(&fake).await.unwrap_err();
        assert_eq!(err.host(), "cp9");
        assert!(matches!(err, FactsError::Ssh(SshError::Sudo { .. })));
    }
}

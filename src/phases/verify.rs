//! The final verification (also `kubeha verify`): every etcd member healthy with one leader and no learner,
//! the VIP on exactly one control plane, /readyz through the endpoint, every HAProxy backend up, every node
//! registered with its labels and Ready, no certificate expired, every file holding a secret readable by
//! its owner only. Each check reports what it saw, so a failure says where to look.
use super::kubeadm;
use crate::etcd::gate::{Gate, GateWhen, evaluate};
use crate::facts::secret_files::{self, FileMeta};
use crate::inventory::Inventory;
use crate::pki::expiry;
use crate::plan::verify::VerifyCheck;
use crate::render::context;
use crate::ssh::{Command, Transport};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Check {
    pub name: String,
    pub ok: bool,
    /// Passed, but wants attention soon (a certificate expiring within 30 days): never fails a run.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub warning: bool,
    pub detail: String,
}

fn check(name: impl Into<String>, result: Result<String, String>) -> Check {
    match result {
        Ok(detail) => Check { name: name.into(), ok: true, warning: false, detail },
        Err(detail) => Check { name: name.into(), ok: false, warning: false, detail },
    }
}

/// Certificates: an expired one fails (something already broke or is about to), one expiring within
/// WARN_DAYS or a host whose certificates could not be read is a warning; `kubeha apply` renews them.
pub fn certificates_check(seen: &crate::status::certs::Seen, now: i64) -> Check {
    let name = VerifyCheck::Certificates.to_string();
    let mut expired = Vec::new();
    let mut warnings = Vec::new();
    for (host, found) in seen {
        match found {
            Err(e) => warnings.push(format!("{host}: certificates could not be read: {e}")),
            Ok(found) => {
                for c in &found.certs {
                    let target = if c.level(now) == expiry::Level::Expired { &mut expired } else { &mut warnings };
                    target.extend(expiry::warning(c, now));
                }
            }
        }
    }
    let count: usize = seen.values().filter_map(|f| f.as_ref().ok()).map(|f| f.certs.len()).sum();
    let mut c = check(name, if expired.is_empty() { Ok(format!("{count} certificates")) } else { Err(expired.join("; ")) });
    if !warnings.is_empty() {
        c.warning = c.ok;
        c.detail = if c.ok { warnings.join("; ") } else { format!("{}; {}", c.detail, warnings.join("; ")) };
    }
    c
}

/// Checks until all pass or `within` is over: right after a change HAProxy needs two good health checks
/// (rise 2, every 2 s) before a new backend counts as up, and keepalived a few adverts to settle.
pub async fn run_until_ok(inv: &Inventory, hosts: &HashMap<String, Arc<dyn Transport>>, checks: &[VerifyCheck], within: std::time::Duration) -> Vec<Check> {
    let started = std::time::Instant::now();
    loop {
        let results = run(inv, hosts, checks).await;
        if results.iter().all(|c| c.ok) || started.elapsed() > within {
            return results;
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

/// Runs `checks` (`plan::verify::checks`, or the plan's Verify step's) in their order.
pub async fn run(inv: &Inventory, hosts: &HashMap<String, Arc<dyn Transport>>, checks: &[VerifyCheck]) -> Vec<Check> {
    let cps: Vec<&Arc<dyn Transport>> = inv.control_planes().filter_map(|h| hosts.get(&h.name)).collect();
    let first = cps.first().map(|t| t.as_ref());
    let mut results = Vec::new();
    for c in checks {
        let name = c.to_string();
        results.push(match c {
            VerifyCheck::Etcd { voters } => check(name, etcd_check(&cps, &Gate::new(GateWhen::After, "verification", voters)).await),
            VerifyCheck::Vip { vip } => check(name, vip_check(&cps, *vip).await),
            VerifyCheck::HaproxyBackends { .. } => check(name, haproxy_check(inv, &cps).await),
            VerifyCheck::Readyz { endpoint } => check(name, readyz_check(first, endpoint).await),
            VerifyCheck::Nodes { .. } => check(name, nodes_ready_check(inv, first).await),
            VerifyCheck::Certificates => certificates_check(&crate::status::certs::probe_all(hosts).await, time::OffsetDateTime::now_utc().unix_timestamp()),
            VerifyCheck::SecretFiles => secret_files_check(&secret_files_all(hosts).await),
            VerifyCheck::EtcdBackup { max_age_seconds } => check(name, backup_check(&cps, *max_age_seconds).await),
        });
    }
    results
}

/// The backup timer's status files of the reachable control planes; one that cannot be read is named.
async fn backup_check(cps: &[&Arc<dyn Transport>], max_age: u64) -> Result<String, String> {
    let mut statuses = Vec::new();
    let mut unreadable = Vec::new();
    for t in cps {
        match super::backup::read_status(t.as_ref()).await {
            Ok(Some(s)) => statuses.push((t.host().to_string(), s)),
            Ok(None) => {}
            Err(e) => unreadable.push(e.to_string()),
        }
    }
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    crate::etcd::backup::freshness(&statuses, now, max_age).map_err(|e| format!("{e}{}", tail(&unreadable)))
}

async fn vip_check(cps: &[&Arc<dyn Transport>], vip: std::net::IpAddr) -> Result<String, String> {
    let mut holders = Vec::new();
    let mut errors = Vec::new();
    for t in cps {
        match crate::facts::vip::holds_vip(t.as_ref(), vip).await {
            Ok(true) => holders.push(t.host().to_string()),
            Ok(false) => {}
            Err(e) => errors.push(e.to_string()),
        }
    }
    match (holders.len(), errors.is_empty()) {
        (1, true) => Ok(format!("held by {}", holders[0])),
        (0, _) => Err(format!("no control plane holds it{}", tail(&errors))),
        _ => Err(format!("held by {}{}", holders.join(" and "), tail(&errors))),
    }
}

async fn readyz_check(first: Option<&dyn Transport>, endpoint: &str) -> Result<String, String> {
    let Some(t) = first else { return Err("no control plane reachable".into()) };
    match t.exec(&kubeadm::readyz(endpoint)).await {
        Ok(out) if out.stdout_text().trim() == "ok" => Ok(format!("ok from {}", t.host())),
        Ok(out) => Err(format!("{}{}", out.stdout_text().trim(), String::from_utf8_lossy(&out.stderr).trim())),
        Err(e) => Err(e.to_string()),
    }
}

async fn nodes_ready_check(inv: &Inventory, first: Option<&dyn Transport>) -> Result<String, String> {
    let Some(t) = first else { return Err("no control plane reachable".into()) };
    match t.run(&kubeadm::kubectl("get nodes -o json")).await {
        Ok(out) => {
            let json = out.stdout_text();
            kubeadm::parse_registered(&json).map_err(|e| e.to_string()).and_then(|nodes| nodes_check(inv, &nodes)).and_then(|seen| ready_check(&seen, &json))
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Host -> the secret files found there with their modes and owners, or why they could not be read.
pub type SecretFilesSeen = BTreeMap<String, Result<Vec<(String, FileMeta)>, String>>;

/// One read-only probe per host, all hosts at once.
async fn secret_files_all(hosts: &HashMap<String, Arc<dyn Transport>>) -> SecretFilesSeen {
    let mut tasks = tokio::task::JoinSet::new();
    for (name, t) in hosts {
        let (name, t) = (name.clone(), t.clone());
        tasks.spawn(async move { (name, secret_files::probe(t.as_ref()).await.map_err(|e| e.to_string())) });
    }
    let mut seen = SecretFilesSeen::new();
    while let Some(joined) = tasks.join_next().await {
        // A probe task that panicked is a host whose files were not seen: said so, not passed.
        match joined {
            Ok((name, result)) => seen.insert(name, result),
            Err(e) => seen.insert("?".into(), Err(e.to_string())),
        };
    }
    seen
}

/// Fails naming host and file for every secret file (see `secret_files::secret_files()`) that its group or
/// others may read, and for every host whose files could not be read: a secret file nobody checked is not
/// known to be private. `kubeha apply` sets them back to 0600 (or kubeha's own mode) in place.
pub fn secret_files_check(seen: &SecretFilesSeen) -> Check {
    let mut problems = Vec::new();
    let mut count = 0;
    for (host, found) in seen {
        match found {
            Err(e) => problems.push(format!("{host}: secret files could not be read: {e}")),
            Ok(found) => {
                count += found.len();
                for (path, meta) in found.iter().filter(|(_, m)| m.open_to_others()) {
                    problems.push(format!("{host}: {path} mode {:04o} (readable by group or others, want 0600)", meta.mode));
                }
            }
        }
    }
    check(
        VerifyCheck::SecretFiles.to_string(),
        if problems.is_empty() { Ok(format!("{count} files on {} hosts", seen.len())) } else { Err(problems.join("; ")) },
    )
}

fn tail(errors: &[String]) -> String {
    if errors.is_empty() { String::new() } else { format!(" ({})", errors.join("; ")) }
}

async fn etcd_check(cps: &[&Arc<dyn Transport>], gate: &Gate) -> Result<String, String> {
    let members: Vec<&dyn Transport> = cps.iter().map(|t| t.as_ref()).collect();
    let view = crate::facts::etcd::view_from_any(&members).await.map_err(|e| e.to_string())?;
    evaluate(gate, &view).map(|_| "all members answer".to_string()).map_err(|e| e.to_string())
}

fn nodes_check(inv: &Inventory, nodes: &std::collections::BTreeMap<String, kubeadm::RegisteredNode>) -> Result<String, String> {
    let mut problems = Vec::new();
    for h in &inv.hosts {
        match nodes.get(&h.name) {
            None => problems.push(format!("{} not registered", h.name)),
            Some(node) => {
                for (k, v) in h.node_labels() {
                    if node.labels.get(&k) != Some(&v) {
                        problems.push(format!("{} lacks {k}={v}", h.name));
                    }
                }
            }
        }
    }
    if problems.is_empty() { Ok(format!("{} nodes", nodes.len())) } else { Err(problems.join("; ")) }
}

/// Every registered node Ready: a node whose kubelet cannot run pods (runtime or network not ready, kubelet
/// stopped) is named with what its kubelet reports.
fn ready_check(registered: &str, json: &str) -> Result<String, String> {
    let not_ready = kubeadm::parse_not_ready(json).map_err(|e| e.to_string())?;
    if not_ready.is_empty() {
        return Ok(format!("{registered}, all Ready"));
    }
    Err(not_ready.iter().map(|(node, why)| format!("{node} not Ready ({why})")).collect::<Vec<_>>().join("; "))
}

/// The HAProxy check: on every control plane, exactly the expected backends (one per control plane of the
/// inventory, at its API server's address), each UP. Only counting the DOWN ones passed a HAProxy with no
/// backends at all, or one still sending traffic to a removed control plane.
async fn haproxy_check(inv: &Inventory, cps: &[&Arc<dyn Transport>]) -> Result<String, String> {
    let expected = context::haproxy(inv).map(|h| h.backends).unwrap_or_default();
    let mut problems = Vec::new();
    for t in cps {
        match haproxy_backends(t.as_ref()).await {
            Ok(seen) => problems.extend(backend_problems(&expected, &seen).into_iter().map(|p| format!("{}: {p}", t.host()))),
            Err(e) => problems.push(format!("{}: {e}", t.host())),
        }
    }
    if problems.is_empty() { Ok(format!("all up on {} control planes", cps.len())) } else { Err(problems.join("; ")) }
}

/// What one control plane's HAProxy gets wrong: expected backends it lacks or has at another address,
/// backends it should not have, and backends not UP.
fn backend_problems(expected: &[context::Backend], seen: &[BackendState]) -> Vec<String> {
    let mut problems = Vec::new();
    for e in expected {
        match seen.iter().find(|s| s.name == e.name) {
            None => problems.push(format!("backend {} ({}) missing", e.name, e.address)),
            Some(s) if s.address.as_deref().is_some_and(|a| a != e.address) => {
                problems.push(format!("backend {} at {} instead of {}", e.name, s.address.as_deref().unwrap_or_default(), e.address))
            }
            Some(s) if s.status != "UP" => problems.push(format!("backend {} {}", e.name, s.status)),
            Some(_) => {}
        }
    }
    for s in seen.iter().filter(|s| !expected.iter().any(|e| e.name == s.name)) {
        problems.push(format!(
            "unexpected backend {}{} (not a control plane of the inventory)",
            s.name,
            s.address.as_deref().map(|a| format!(" ({a})")).unwrap_or_default()
        ));
    }
    problems
}

/// One server of the kube-apiserver backend as HAProxy's status page shows it.
#[derive(Debug, PartialEq, Eq)]
pub struct BackendState {
    pub name: String,
    /// "UP", "DOWN", "MAINT", ...
    pub status: String,
    /// `host:port`, when this HAProxy's CSV has the `addr` column (1.9 and later).
    pub address: Option<String>,
}

/// The kube-apiserver backend's servers from HAProxy's loopback CSV status page.
async fn haproxy_backends(t: &dyn Transport) -> Result<Vec<BackendState>, String> {
    let out = t.run(&Command::script("curl -sS --max-time 5 'http://127.0.0.1:8404/stats;csv'")).await.map_err(|e| e.to_string())?;
    Ok(parse_stats_csv(&out.stdout_text()))
}

pub fn parse_stats_csv(csv: &str) -> Vec<BackendState> {
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().trim_start_matches("# ").split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name);
    let (Some(px), Some(sv), Some(status)) = (col("pxname"), col("svname"), col("status")) else { return Vec::new() };
    let addr = col("addr");
    lines
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|f| f.get(px) == Some(&"kube-apiserver") && !matches!(f.get(sv), Some(&"FRONTEND") | Some(&"BACKEND") | None))
        .map(|f| BackendState {
            name: f[sv].to_string(),
            status: f.get(status).unwrap_or(&"?").to_string(),
            address: addr.and_then(|a| f.get(a)).filter(|a| !a.is_empty()).map(|a| a.to_string()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ssh::fake::RecordingTransport;

    fn state(name: &str, status: &str, address: Option<&str>) -> BackendState {
        BackendState { name: name.into(), status: status.into(), address: address.map(String::from) }
    }

    #[test]
    fn backends_from_the_status_csv() {
        let csv = "# pxname,svname,qcur,status,weight\nstats,FRONTEND,,OPEN,\nkube-apiserver,FRONTEND,,OPEN,\nkube-apiserver,cp-1,0,UP,1\nkube-apiserver,cp-2,0,DOWN,1\nkube-apiserver,BACKEND,0,UP,1\n";
        assert_eq!(parse_stats_csv(csv), [state("cp-1", "UP", None), state("cp-2", "DOWN", None)]);
        let with_addr = "# pxname,svname,status,addr\nkube-apiserver,cp-1,UP,198.18.0.11:6443\nkube-apiserver,BACKEND,UP,\n";
        assert_eq!(parse_stats_csv(with_addr), [state("cp-1", "UP", Some("198.18.0.11:6443"))]);
    }

    use crate::test_support::lab;

    /// The HAProxy check of a whole verification, each control plane's status page answering `csvs`.
    async fn haproxy_with(csvs: &[(&str, &str)]) -> Check {
        let hosts: HashMap<String, Arc<dyn Transport>> =
            csvs.iter().map(|(host, csv)| (host.to_string(), Arc::new(RecordingTransport::new(*host).on("8404/stats", *csv)) as Arc<dyn Transport>)).collect();
        run(&lab(), &hosts, &crate::plan::verify::checks(&lab())).await.into_iter().find(|c| c.name.starts_with("HAProxy")).expect("a HAProxy check")
    }

    const HEADER: &str = "# pxname,svname,status,addr\n";

    fn all_up() -> String {
        format!("{HEADER}kube-apiserver,cp-1,UP,198.18.0.11:6443\nkube-apiserver,cp-2,UP,198.18.0.12:6443\nkube-apiserver,cp-3,UP,198.18.0.13:6443\n")
    }

    #[tokio::test]
    async fn haproxy_with_no_backends_fails_naming_every_missing_one() {
        let up = all_up();
        let check = haproxy_with(&[("cp-1", &up), ("cp-2", HEADER), ("cp-3", &up)]).await;
        assert!(!check.ok, "{check:?}");
        assert_eq!(
            check.detail,
            "cp-2: backend cp-1 (198.18.0.11:6443) missing; cp-2: backend cp-2 (198.18.0.12:6443) missing; cp-2: backend cp-3 (198.18.0.13:6443) missing"
        );
    }

    #[tokio::test]
    async fn haproxy_with_a_stale_or_foreign_backend_fails_naming_it() {
        let up = all_up();
        let stale = format!(
            "{HEADER}kube-apiserver,cp-1,UP,198.18.0.11:6443\nkube-apiserver,cp-2,UP,198.18.0.99:6443\nkube-apiserver,cp-3,UP,198.18.0.13:6443\nkube-apiserver,cp-9,UP,198.18.0.19:6443\n"
        );
        let check = haproxy_with(&[("cp-1", &up), ("cp-2", &up), ("cp-3", &stale)]).await;
        assert!(!check.ok, "{check:?}");
        assert_eq!(
            check.detail,
            "cp-3: backend cp-2 at 198.18.0.99:6443 instead of 198.18.0.12:6443; cp-3: unexpected backend cp-9 (198.18.0.19:6443) (not a control plane of the inventory)"
        );
        let check = haproxy_with(&[("cp-1", &up), ("cp-2", &up), ("cp-3", &up)]).await;
        assert!(check.ok, "{check:?}");
        assert_eq!((check.name.as_str(), check.detail.as_str()), ("HAProxy: the 3 expected backends up on each control plane", "all up on 3 control planes"));
    }

    #[test]
    fn certificates_warn_under_30_days_and_fail_once_expired() {
        use crate::facts::certs::HostCerts;
        use crate::pki::expiry::{Cert, Parsed};
        let now = 1_800_000_000;
        let cert = |path: &str, days: i64| {
            Cert::new("cp-1", path, Parsed { subject: "x".into(), not_before: now - 86_400, not_after: now + days * 86_400 + 1, ca: false })
        };
        let seen = |certs: Vec<Cert>| [("cp-1".to_string(), Ok(HostCerts { certs, unreadable: vec![] }))].into_iter().collect();
        let c = certificates_check(&seen(vec![cert("/etc/kubeha/pki/etcd/server.crt", 300)]), now);
        assert!(c.ok && !c.warning && c.detail == "1 certificates", "{c:?}");
        let c = certificates_check(&seen(vec![cert("/etc/kubeha/pki/etcd/server.crt", 29)]), now);
        assert!(c.ok && c.warning && c.detail.contains("expires in 29 days"), "{c:?}");
        assert_eq!(serde_json::to_value(&c).unwrap()["warning"], true);
        let c = certificates_check(&seen(vec![cert("/etc/kubeha/pki/etcd/server.crt", -1), cert("/etc/kubernetes/pki/apiserver.crt", 3)]), now);
        assert!(!c.ok && !c.warning && c.detail.contains("EXPIRED") && c.detail.contains("expires in 3 days"), "{c:?}");
        assert!(serde_json::to_value(&c).unwrap().get("warning").is_none());
    }

    /// Each host's secret files probe answering `output`, through a whole verification.
    async fn secret_files_with(outputs: &[(&str, &str)]) -> Check {
        let hosts: HashMap<String, Arc<dyn Transport>> = outputs
            .iter()
            .map(|(host, out)| (host.to_string(), Arc::new(RecordingTransport::new(*host).on("stat -L -c", *out)) as Arc<dyn Transport>))
            .collect();
        run(&lab(), &hosts, &crate::plan::verify::checks(&lab())).await.into_iter().find(|c| c.name.starts_with("secret files")).expect("a secret files check")
    }

    #[tokio::test]
    async fn a_secret_file_others_can_read_fails_naming_host_and_file() {
        let private = "secret 600 root root /etc/kubeha/pki/etcd/server.key\nsecret 600 root root /etc/kubernetes/admin.conf\nend\n";
        let check = secret_files_with(&[("cp-1", private), ("cp-2", private), ("wk-1", "end\n")]).await;
        assert!(check.ok, "{check:?}");
        assert_eq!(check.detail, "4 files on 3 hosts");
        let opened = "secret 644 root root /etc/kubeha/pki/etcd/server.key\nsecret 640 root root /etc/kubernetes/pki/apiserver.key\nend\n";
        let check = secret_files_with(&[("cp-1", private), ("cp-2", opened)]).await;
        assert!(!check.ok, "{check:?}");
        assert_eq!(
            check.detail,
            "cp-2: /etc/kubeha/pki/etcd/server.key mode 0644 (readable by group or others, want 0600); cp-2: /etc/kubernetes/pki/apiserver.key mode 0640 (readable by group or others, want 0600)"
        );
    }

    #[test]
    fn a_host_whose_secret_files_could_not_be_read_fails() {
        let seen: SecretFilesSeen = [("cp-3".to_string(), Err("connection lost".to_string()))].into_iter().collect();
        let check = secret_files_check(&seen);
        assert!(!check.ok && check.detail == "cp-3: secret files could not be read: connection lost", "{check:?}");
    }
}

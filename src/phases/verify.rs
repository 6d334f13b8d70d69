//! The final verification (also `kubeha verify`): every etcd member healthy with one leader and no learner,
//! the VIP on exactly one control plane, /readyz through the endpoint, every HAProxy backend up, every node
//! registered with its labels. Each check reports what it saw, so a failure says where to look.
use super::{etcd, kubeadm, loadbalancer};
use crate::etcd::gate::{Gate, GateWhen, evaluate};
use crate::inventory::Inventory;
use crate::render::context::{self, host_port};
use crate::ssh::{Command, Transport};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

fn check(name: impl Into<String>, result: Result<String, String>) -> Check {
    match result {
        Ok(detail) => Check { name: name.into(), ok: true, detail },
        Err(detail) => Check { name: name.into(), ok: false, detail },
    }
}

/// Checks until all pass or `within` is over: right after a change HAProxy needs two good health checks
/// (rise 2, every 2 s) before a new backend counts as up, and keepalived a few adverts to settle.
pub async fn run_until_ok(inv: &Inventory, hosts: &HashMap<String, Arc<dyn Transport>>, within: std::time::Duration) -> Vec<Check> {
    let started = std::time::Instant::now();
    loop {
        let checks = run(inv, hosts).await;
        if checks.iter().all(|c| c.ok) || started.elapsed() > within {
            return checks;
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

pub async fn run(inv: &Inventory, hosts: &HashMap<String, Arc<dyn Transport>>) -> Vec<Check> {
    let cps: Vec<&Arc<dyn Transport>> = inv.control_planes().filter_map(|h| hosts.get(&h.name)).collect();
    let voters: Vec<String> = inv.control_planes().map(|h| h.name.clone()).collect();
    let (host, port) = inv.load_balancer.endpoint();
    let endpoint = host_port(&host, port);
    let mut checks = Vec::new();

    let gate = Gate::new(GateWhen::After, "verification", &voters);
    checks.push(check(format!("etcd: {} members healthy, one leader, no learner", voters.len()), etcd_check(&cps, &gate).await));

    if let Some(vrrp) = inv.load_balancer.vrrp() {
        let mut holders = Vec::new();
        let mut errors = Vec::new();
        for t in &cps {
            match loadbalancer::holds_vip(t.as_ref(), vrrp.vip).await {
                Ok(true) => holders.push(t.host().to_string()),
                Ok(false) => {}
                Err(e) => errors.push(e.to_string()),
            }
        }
        let vip = match (holders.len(), errors.is_empty()) {
            (1, true) => Ok(format!("held by {}", holders[0])),
            (0, _) => Err(format!("no control plane holds it{}", tail(&errors))),
            _ => Err(format!("held by {}{}", holders.join(" and "), tail(&errors))),
        };
        checks.push(check(format!("VIP {} on exactly one control plane", vrrp.vip), vip));

        let mut down = Vec::new();
        for t in &cps {
            match haproxy_backends(t.as_ref()).await {
                Ok(states) => down.extend(states.into_iter().filter(|(_, s)| s != "UP").map(|(b, s)| format!("{}: {b} {s}", t.host()))),
                Err(e) => down.push(format!("{}: {e}", t.host())),
            }
        }
        let n = cps.len();
        checks.push(check(
            format!("HAProxy: {n} backends up on each of {n} control planes"),
            if down.is_empty() { Ok("all up".into()) } else { Err(down.join("; ")) },
        ));
    }

    let first = cps.first().map(|t| t.as_ref());
    let ready = match first {
        Some(t) => match t.exec(&kubeadm::readyz(&endpoint)).await {
            Ok(out) if out.stdout_text().trim() == "ok" => Ok(format!("ok from {}", t.host())),
            Ok(out) => Err(format!("{}{}", out.stdout_text().trim(), String::from_utf8_lossy(&out.stderr).trim())),
            Err(e) => Err(e.to_string()),
        },
        None => Err("no control plane reachable".into()),
    };
    checks.push(check(format!("/readyz through {endpoint}"), ready));

    let nodes = match first {
        Some(t) => match t.run(&kubeadm::kubectl("get nodes -o json")).await {
            Ok(out) => kubeadm::parse_nodes(&out.stdout_text()).and_then(|nodes| nodes_check(inv, &nodes)),
            Err(e) => Err(e.to_string()),
        },
        None => Err("no control plane reachable".into()),
    };
    checks.push(check(format!("{} nodes registered with their labels", inv.hosts.len()), nodes));
    checks
}

fn tail(errors: &[String]) -> String {
    if errors.is_empty() { String::new() } else { format!(" ({})", errors.join("; ")) }
}

async fn etcd_check(cps: &[&Arc<dyn Transport>], gate: &Gate) -> Result<String, String> {
    let members: Vec<&dyn Transport> = cps.iter().map(|t| t.as_ref()).collect();
    let view = etcd::view_from_any(&members).await?;
    evaluate(gate, &view).map(|_| "all members answer".to_string()).map_err(|e| e.to_string())
}

fn nodes_check(inv: &Inventory, nodes: &std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>) -> Result<String, String> {
    let mut problems = Vec::new();
    for h in &inv.hosts {
        match nodes.get(&h.name) {
            None => problems.push(format!("{} not registered", h.name)),
            Some(labels) => {
                for (k, v) in context::node_labels(h) {
                    if labels.get(&k) != Some(&v) {
                        problems.push(format!("{} lacks {k}={v}", h.name));
                    }
                }
            }
        }
    }
    if problems.is_empty() { Ok(format!("{} nodes", nodes.len())) } else { Err(problems.join("; ")) }
}

/// Backend server name -> status ("UP", "DOWN", ...) from HAProxy's loopback CSV status page.
async fn haproxy_backends(t: &dyn Transport) -> Result<Vec<(String, String)>, String> {
    let out = t.run(&Command::script("curl -sS --max-time 5 'http://127.0.0.1:8404/stats;csv'")).await.map_err(|e| e.to_string())?;
    Ok(parse_stats_csv(&out.stdout_text()))
}

pub fn parse_stats_csv(csv: &str) -> Vec<(String, String)> {
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().trim_start_matches("# ").split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name);
    let (Some(px), Some(sv), Some(status)) = (col("pxname"), col("svname"), col("status")) else { return Vec::new() };
    lines
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|f| f.get(px) == Some(&"kube-apiserver") && !matches!(f.get(sv), Some(&"FRONTEND") | Some(&"BACKEND") | None))
        .map(|f| (f[sv].to_string(), f.get(status).unwrap_or(&"?").to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn backends_from_the_status_csv() {
        let csv = "# pxname,svname,qcur,status,weight\nstats,FRONTEND,,OPEN,\nkube-apiserver,FRONTEND,,OPEN,\nkube-apiserver,cp-1,0,UP,1\nkube-apiserver,cp-2,0,DOWN,1\nkube-apiserver,BACKEND,0,UP,1\n";
        assert_eq!(super::parse_stats_csv(csv), [("cp-1".to_string(), "UP".to_string()), ("cp-2".to_string(), "DOWN".to_string())]);
    }
}

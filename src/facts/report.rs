//! Rendering of gathered facts: aligned text for people, JSON for tools. Failed hosts are listed with their
//! error in both, so one unreachable host never hides the others.
use std::fmt::Write;

use serde_json::{Value, json};

use super::{FactsError, HostFacts, HostReport};

/// Names of the hosts that failed, in report order (for the exit status and its message).
pub fn failed_hosts(reports: &[HostReport]) -> Vec<&str> {
    reports.iter().filter(|r| r.result.is_err()).map(|r| r.host.as_str()).collect()
}

pub fn text(reports: &[HostReport]) -> String {
    let mut out = String::new();
    for (i, report) in reports.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        match &report.result {
            Ok(facts) => host_text(&mut out, &report.host, facts),
            Err(e) => {
                let _ = writeln!(out, "{}: FAILED ({})\n  {e}", report.host, error_kind(e));
            }
        }
    }
    let failed = failed_hosts(reports);
    if !failed.is_empty() {
        let _ = writeln!(out, "\n{} of {} hosts failed: {}", failed.len(), reports.len(), failed.join(", "));
    }
    out
}

fn host_text(out: &mut String, host: &str, f: &HostFacts) {
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    let os = if f.os_pretty_name.is_empty() { format!("{} {}", f.os_id, f.os_version) } else { f.os_pretty_name.clone() };
    let software = f.software.iter().map(|(name, v)| format!("{name} {}", v.as_deref().unwrap_or("absent"))).collect::<Vec<_>>().join(", ");
    let listening = f.listening.iter().map(|(port, on)| format!("{port}{}", if *on { " listening" } else { " free" })).collect::<Vec<_>>().join(", ");
    let rows = [
        ("hostname", f.hostname.clone()),
        ("os", format!("{os} [{} {}]", f.os_id, f.os_version)),
        ("kernel", format!("{} ({})", f.kernel, f.arch)),
        ("cpus", f.cpus.to_string()),
        ("memory", format!("{:.1} GiB", f.memory_bytes as f64 / (1u64 << 30) as f64)),
        ("swap", if f.swap_on { "on".into() } else { "off".into() }),
        ("clock offset", format!("{:+} ms (±{} ms)", f.clock_offset_ms, f.clock_uncertainty_ms)),
        ("systemd", yes_no(f.systemd).into()),
        ("software", software),
        ("ports", listening),
        ("etcd data dir", yes_no(f.etcd_data_dir).into()),
        (crate::paths::KUBERNETES_DIR, yes_no(f.etc_kubernetes).into()),
    ];
    let _ = writeln!(out, "{host}:");
    for (label, value) in rows {
        let _ = writeln!(out, "  {label:<16}{value}");
    }
}

fn error_kind(e: &FactsError) -> &'static str {
    match e {
        FactsError::Ssh(e) => e.kind(),
        FactsError::Parse { .. } => "parse",
    }
}

pub fn json(reports: &[HostReport]) -> Value {
    let hosts: Vec<Value> = reports
        .iter()
        .map(|r| match &r.result {
            Ok(facts) => json!({ "host": r.host, "ok": true, "facts": facts }),
            Err(e) => json!({
                "host": r.host,
                "ok": false,
                "error": { "kind": error_kind(e), "message": e.to_string() },
            }),
        })
        .collect();
    json!({ "hosts": hosts, "failed": failed_hosts(reports) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::from_output;
    use crate::ssh::SshError;
    use std::time::Duration;

    fn reports() -> Vec<HostReport> {
        let facts = from_output("cp2", include_str!("fixtures/control-plane-handwritten.txt"), 1_800_000_000.0, 1_800_000_000.010).unwrap();
        vec![
            HostReport { host: "cp2".into(), result: Ok(facts) },
            HostReport {
                host: "cp3".into(),
                result: Err(FactsError::Ssh(SshError::Timeout {
                    host: "cp3".into(),
                    during: "connecting to 10.0.0.13:22".into(),
                    after: Duration::from_secs(15),
                })),
            },
        ]
    }

    #[test]
    fn text_report() {
        let expected = "\
cp2:
  hostname        cp2
  os              Ubuntu 24.04.1 LTS [ubuntu 24.04]
  kernel          6.8.0-45-generic (aarch64)
  cpus            4
  memory          7.7 GiB
  swap            on
  clock offset    +1245 ms (±5 ms)
  systemd         yes
  software        containerd 1.7.22, etcd 3.5.16, haproxy unknown, keepalived absent, kubeadm 1.31.2, kubelet 1.31.2
  ports           2379 listening, 2380 listening, 2381 free, 6443 listening, 8405 free, 8443 free, 9654 free, 10250 listening
  etcd data dir   yes
  /etc/kubernetes yes

cp3: FAILED (timeout)
  cp3: timed out after 15s while connecting to 10.0.0.13:22

1 of 2 hosts failed: cp3
";
        assert_eq!(text(&reports()), expected);
    }

    #[test]
    fn json_report() {
        let v = json(&reports());
        assert_eq!(v["failed"], json!(["cp3"]));
        assert_eq!(v["hosts"][0]["facts"]["software"]["kubeadm"], json!("1.31.2"));
        assert_eq!(v["hosts"][0]["facts"]["software"]["keepalived"], Value::Null);
        assert_eq!(v["hosts"][0]["facts"]["listening"]["8443"], json!(false));
        assert_eq!(v["hosts"][0]["facts"]["clockOffsetMs"], json!(1245));
        assert_eq!(v["hosts"][1]["error"]["kind"], json!("timeout"));
        assert_eq!(v["hosts"][1]["ok"], json!(false));
    }
}

//! `kubeha certs check`: every certificate kubeha, kubeadm or the kubelet manages on every host, soonest
//! expiry first. Pure (what each host answered in, a report out); `observe_certs` gathers it read-only.
use super::display::{align, section};
use crate::facts::certs::{self, HostCerts};
use crate::inventory::Inventory;
use crate::pki::expiry::{self, Level, Owner, WARN_DAYS};
use crate::ssh::SshError;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CertReport {
    pub cluster: String,
    /// When "days left" was counted (RFC 3339, UTC).
    pub checked_at: String,
    pub warn_days: i64,
    pub verdict: CertVerdict,
    /// Soonest expiry first.
    pub certificates: Vec<CertRow>,
    /// Hosts whose certificates could not be read, and files that hold no readable certificate: unknown
    /// expiry is not "fine".
    pub unknown: Vec<Unknown>,
    /// One sentence per certificate under `warnDays` or expired.
    pub warnings: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum CertVerdict {
    Ok,
    /// A certificate expires within `warnDays`; all are still valid.
    Expiring,
    /// A certificate has expired, or some could not be read.
    Failed,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CertRow {
    pub host: String,
    pub path: String,
    pub subject: String,
    pub owner: Owner,
    pub ca: bool,
    pub not_after: String,
    pub days_left: i64,
    pub level: Level,
    #[serde(skip)]
    not_after_unix: i64,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Unknown {
    pub host: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    pub problem: String,
}

/// Per host of the inventory: what its probe found, or why it could not be asked.
pub type Seen = BTreeMap<String, Result<HostCerts, SshError>>;

pub fn report(cluster: &str, seen: &Seen, now: i64) -> CertReport {
    let mut certificates = Vec::new();
    let mut unknown = Vec::new();
    let mut warnings = Vec::new();
    for (host, result) in seen {
        match result {
            // The host is named beside the problem: the SSH error's own host prefix would repeat it.
            Err(e) => unknown.push(Unknown { host: host.clone(), path: None, problem: super::observe::short(e) }),
            Ok(found) => {
                for (path, problem) in &found.unreadable {
                    unknown.push(Unknown { host: host.clone(), path: Some(path.clone()), problem: problem.clone() });
                }
                for c in &found.certs {
                    warnings.extend(expiry::warning(c, now));
                    certificates.push(CertRow {
                        host: c.host.clone(),
                        path: c.path.clone(),
                        subject: c.parsed.subject.clone(),
                        owner: c.owner,
                        ca: c.parsed.ca,
                        not_after: expiry::rfc3339(c.parsed.not_after),
                        days_left: c.days_left(now),
                        level: c.level(now),
                        not_after_unix: c.parsed.not_after,
                    });
                }
            }
        }
    }
    certificates.sort_by(|a, b| (a.not_after_unix, &a.host, &a.path).cmp(&(b.not_after_unix, &b.host, &b.path)));
    let worst = certificates.iter().map(|c| c.level).max().unwrap_or(Level::Ok);
    let verdict = match worst {
        Level::Expired => CertVerdict::Failed,
        _ if !unknown.is_empty() => CertVerdict::Failed,
        Level::Expiring => CertVerdict::Expiring,
        Level::Ok => CertVerdict::Ok,
    };
    CertReport { cluster: cluster.to_string(), checked_at: expiry::rfc3339(now), warn_days: WARN_DAYS, verdict, certificates, unknown, warnings }
}

pub fn text(r: &CertReport) -> String {
    let verdict = match r.verdict {
        CertVerdict::Ok => format!("no certificate expires within {} days", r.warn_days),
        CertVerdict::Expiring => format!("{} certificate(s) expire within {} days", r.warnings.len(), r.warn_days),
        CertVerdict::Failed => "EXPIRED or unreadable certificates".to_string(),
    };
    let mut out = format!("cluster {}: {verdict} (checked {})\n\n", r.cluster, r.checked_at);
    let mut rows = vec![["HOST", "OWNER", "NOT AFTER", "DAYS", "SUBJECT", "CERTIFICATE"].map(String::from).to_vec()];
    for c in &r.certificates {
        let days = match c.level {
            Level::Expired => "expired".to_string(),
            _ => c.days_left.to_string(),
        };
        let owner = if c.ca { format!("{} (CA)", c.owner.name()) } else { c.owner.name().to_string() };
        rows.push(vec![c.host.clone(), owner, c.not_after.clone(), days, c.subject.clone(), c.path.clone()]);
    }
    out.push_str(&align(&rows));
    out.push_str(&section("Warnings", &r.warnings));
    let unknown: Vec<String> =
        r.unknown.iter().map(|u| format!("{}{}: {}", u.host, u.path.as_deref().map(|p| format!(":{p}")).unwrap_or_default(), u.problem)).collect();
    out.push_str(&section("Could not be read", &unknown));
    out
}

/// Every reachable host's certificates (in parallel), the unreachable ones with why.
pub async fn observe_certs(inv: &Inventory) -> Seen {
    let (hosts, unreachable) = crate::ssh::targets::connect(inv).await;
    let mut seen: Seen = unreachable.into_iter().map(|e| (e.host().to_string(), Err(e))).collect();
    seen.extend(probe_all(&hosts).await);
    seen
}

/// The certificate probe on each of `hosts`, in parallel: `status` and `verify` read the same.
pub async fn probe_all(hosts: &crate::ssh::targets::Hosts) -> Seen {
    let mut tasks = tokio::task::JoinSet::new();
    for (name, t) in hosts {
        let (name, t) = (name.clone(), t.clone());
        tasks.spawn(async move { (name, certs::probe(t.as_ref()).await) });
    }
    let mut seen = Seen::new();
    while let Some(joined) = tasks.join_next().await {
        // A probe task that panicked says nothing about expiry; the host is left out.
        if let Ok((name, result)) = joined {
            seen.insert(name, result);
        }
    }
    seen
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::expiry::{Cert, Parsed};

    const NOW: i64 = 1_800_000_000;
    const DAY: i64 = 86_400;

    fn cert(host: &str, path: &str, days: i64) -> Cert {
        Cert::new(host, path, Parsed { subject: path.rsplit('/').next().unwrap().into(), not_before: NOW - DAY, not_after: NOW + days * DAY + 60, ca: false })
    }

    fn seen(certs: Vec<Cert>) -> Seen {
        let mut seen = Seen::new();
        for c in certs {
            seen.entry(c.host.clone()).or_insert_with(|| Ok(HostCerts::default())).as_mut().unwrap().certs.push(c);
        }
        seen
    }

    #[test]
    fn sorted_by_expiry_with_verdicts() {
        let fine = seen(vec![cert("cp-1", "/etc/kubernetes/pki/apiserver.crt", 300), cert("cp-2", "/etc/kubeha/pki/etcd/server.crt", 200)]);
        let r = report("lab", &fine, NOW);
        assert_eq!(r.verdict, CertVerdict::Ok);
        assert_eq!(r.certificates[0].host, "cp-2");
        assert_eq!(r.certificates[0].days_left, 200);
        assert!(r.warnings.is_empty());

        let soon = seen(vec![cert("cp-1", "/etc/kubernetes/pki/apiserver.crt", 300), cert("cp-2", "/etc/kubeha/pki/etcd/peer.crt", 12)]);
        let r = report("lab", &soon, NOW);
        assert_eq!(r.verdict, CertVerdict::Expiring);
        assert_eq!(r.warnings.len(), 1);

        let gone = seen(vec![cert("cp-1", "/etc/kubernetes/admin.conf", -3)]);
        assert_eq!(report("lab", &gone, NOW).verdict, CertVerdict::Failed);

        let mut unreachable = soon.clone();
        let refused = SshError::Refused { host: "cp-3".into(), address: "198.18.0.13".into(), port: 22, detail: "198.18.0.13:22: Connection refused".into() };
        unreachable.insert("cp-3".into(), Err(refused));
        let r = report("lab", &unreachable, NOW);
        assert_eq!(r.verdict, CertVerdict::Failed);
        assert_eq!((r.unknown[0].host.as_str(), r.unknown[0].problem.as_str()), ("cp-3", "Connection refused"));
    }

    #[test]
    fn text_and_json() {
        let mut s = seen(vec![cert("cp-1", "/etc/kubernetes/pki/apiserver.crt", 300), cert("cp-2", "/etc/kubeha/pki/etcd/peer.crt", 12)]);
        s.get_mut("cp-1").unwrap().as_mut().unwrap().unreadable.push(("/etc/kubernetes/pki/x.crt".into(), "no PEM certificate".into()));
        let r = report("lab", &s, NOW);
        let text = text(&r);
        let expected = "\
cluster lab: EXPIRED or unreadable certificates (checked 2027-01-15T08:00:00Z)

HOST  OWNER    NOT AFTER             DAYS  SUBJECT        CERTIFICATE
cp-2  kubeha   2027-01-27T08:01:00Z  12    peer.crt       /etc/kubeha/pki/etcd/peer.crt
cp-1  kubeadm  2027-11-11T08:01:00Z  300   apiserver.crt  /etc/kubernetes/pki/apiserver.crt

Warnings:
  certificate cp-2:/etc/kubeha/pki/etcd/peer.crt (peer.crt, kubeha) expires in 12 days, on 2027-01-27T08:01:00Z; `kubeha apply` renews it

Could not be read:
  cp-1:/etc/kubernetes/pki/x.crt: no PEM certificate
";
        assert_eq!(text, expected);
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["verdict"], "failed");
        assert_eq!(json["warnDays"], 30);
        assert_eq!(json["certificates"][0]["daysLeft"], 12);
        assert_eq!(json["certificates"][0]["owner"], "kubeha");
        assert_eq!(json["certificates"][0]["level"], "expiring");
        assert_eq!(json["certificates"][1]["notAfter"], "2027-11-11T08:01:00Z");
        assert_eq!(json["unknown"][0]["path"], "/etc/kubernetes/pki/x.crt");
    }
}

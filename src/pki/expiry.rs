//! When certificates expire, and who renews them. Pure: PEM text in, expiry out, so that what `certs check`,
//! `status`, `verify` and the planner decide can be tested on certificates made with any validity.
//! Times are Unix seconds: what x509 notAfter means, comparable without a clock inside this module.
use crate::paths::{ETCD_PKI_DIR, KUBELET_CLIENT_CERT, KUBELET_CONF, KUBERNETES_CA_CERT};
use serde::Serialize;

/// `status`, `verify` and `certs check` warn when a certificate expires within this many days: a month
/// leaves time for a maintenance window, and is what kubeadm's own `certs check-expiration` highlights.
pub const WARN_DAYS: i64 = 30;

const DAY: i64 = 86_400;

/// Who renews a certificate, which decides what renewing it takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Owner {
    /// Issued from kubeha's cluster state (etcd PKI, the Kubernetes CA): re-issued by `kubeha apply`.
    Kubeha,
    /// Issued by kubeadm on the node: `kubeadm certs renew`.
    Kubeadm,
    /// The kubelet's client certificate: the kubelet rotates it itself (rotateCertificates), nobody else.
    Kubelet,
}

impl Owner {
    /// The one rule mapping where a certificate lives to who renews it.
    pub fn of(path: &str) -> Owner {
        if path.starts_with(ETCD_PKI_DIR) || path == KUBERNETES_CA_CERT {
            Owner::Kubeha
        } else if path == KUBELET_CLIENT_CERT || path == KUBELET_CONF {
            Owner::Kubelet
        } else {
            Owner::Kubeadm
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Owner::Kubeha => "kubeha",
            Owner::Kubeadm => "kubeadm",
            Owner::Kubelet => "kubelet",
        }
    }
}

/// What one certificate says about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed {
    /// The subject's common name ("" when it has none).
    pub subject: String,
    /// notBefore, Unix seconds: with notAfter, the lifetime the kubelet's rotation deadline is a share of.
    pub not_before: i64,
    /// notAfter, Unix seconds.
    pub not_after: i64,
    /// A CA lives 10 years and is renewed by a different procedure (every leaf re-signed): reported, never
    /// renewed in place.
    pub ca: bool,
}

/// The first certificate of a PEM text (a leaf comes before its chain; a combined file's key is ignored).
pub fn parse_pem(pem: &str) -> Result<Parsed, String> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| format!("no PEM certificate: {e}"))?;
    let cert = block.parse_x509().map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let subject = cert.subject().iter_common_name().next().and_then(|cn| cn.as_str().ok()).unwrap_or_default().to_string();
    let validity = cert.validity();
    Ok(Parsed { subject, not_before: validity.not_before.timestamp(), not_after: validity.not_after.timestamp(), ca: cert.is_ca() })
}

/// One certificate found on one host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cert {
    pub host: String,
    /// The file holding it (for a kubeconfig, the kubeconfig: its client-certificate-data).
    pub path: String,
    pub owner: Owner,
    pub parsed: Parsed,
}

impl Cert {
    pub fn new(host: &str, path: &str, parsed: Parsed) -> Self {
        Cert { host: host.to_string(), path: path.to_string(), owner: Owner::of(path), parsed }
    }

    /// Whole days left at `now`, rounded down (negative once expired).
    pub fn days_left(&self, now: i64) -> i64 {
        days_left(self.parsed.not_after, now)
    }

    /// A certificate the kubelet rotates itself is late only once the kubelet should have replaced it: a
    /// fixed 30 days would flag every kubelet certificate issued for less than that (a short-lived cluster
    /// CA setting), and let a year-long one sit unrotated for a month without a word.
    pub fn level(&self, now: i64) -> Level {
        match self.owner {
            Owner::Kubelet => kubelet_level(&self.parsed, now),
            Owner::Kubeha | Owner::Kubeadm => level(self.parsed.not_after, now),
        }
    }
}

/// The kubelet requests a new client certificate at a random point between 70% and 90% of the current
/// one's lifetime (its certificate manager's jitter); past 90% the rotation is overdue.
const KUBELET_ROTATION_DEADLINE_PERCENT: i64 = 90;

fn kubelet_level(c: &Parsed, now: i64) -> Level {
    let lifetime = (c.not_after - c.not_before).max(0);
    let deadline = c.not_before + lifetime * KUBELET_ROTATION_DEADLINE_PERCENT / 100;
    if c.not_after <= now {
        Level::Expired
    } else if now >= deadline {
        Level::Expiring
    } else {
        Level::Ok
    }
}

pub fn days_left(not_after: i64, now: i64) -> i64 {
    (not_after - now).div_euclid(DAY)
}

/// Whether a certificate valid until `not_after` is due for renewal `before_days` ahead of it at `now`.
pub fn due(not_after: i64, now: i64, before_days: u32) -> bool {
    not_after - now < i64::from(before_days) * DAY
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Level {
    Ok,
    /// Expires within WARN_DAYS.
    Expiring,
    Expired,
}

pub fn level(not_after: i64, now: i64) -> Level {
    if not_after <= now {
        Level::Expired
    } else if due(not_after, now, WARN_DAYS as u32) {
        Level::Expiring
    } else {
        Level::Ok
    }
}

/// notAfter as RFC 3339 in UTC, as people and scripts read it.
pub fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| format!("@{unix}"))
}

/// One sentence per certificate that expires within WARN_DAYS or has expired (none for the others): what
/// `status` and `verify` show, and `certs check` sums up.
pub fn warning(c: &Cert, now: i64) -> Option<String> {
    let what = format!("{}:{} ({}, {})", c.host, c.path, c.parsed.subject, c.owner.name());
    let fix = match c.owner {
        Owner::Kubeha | Owner::Kubeadm => "`kubeha apply` renews it",
        Owner::Kubelet => "the kubelet renews it itself; check that it runs and that its CSRs are approved",
    };
    let late = match c.owner {
        Owner::Kubelet => ", past the point where the kubelet rotates it",
        Owner::Kubeha | Owner::Kubeadm => "",
    };
    match c.level(now) {
        Level::Ok => None,
        Level::Expiring => Some(format!("certificate {what} expires in {} days, on {}{late}; {fix}", c.days_left(now), rfc3339(c.parsed.not_after))),
        Level::Expired => Some(format!("certificate {what} EXPIRED on {}; {fix}", rfc3339(c.parsed.not_after))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{Authority, LeafSpec};

    #[test]
    fn parses_subject_expiry_and_ca_of_issued_certificates() {
        let ca = Authority::generate("kubeha-etcd-ca").unwrap();
        let leaf = ca.issue(&LeafSpec { common_name: "cp-1-server".into(), server: true, ..LeafSpec::default() }).unwrap();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let parsed = parse_pem(&leaf.cert_pem).unwrap();
        assert_eq!(parsed.subject, "cp-1-server");
        assert!(!parsed.ca);
        assert!((now - parsed.not_before).abs() < 2 * DAY, "issued now, give or take a clock skew allowance");
        assert!((364..=365).contains(&days_left(parsed.not_after, now)), "{}", days_left(parsed.not_after, now));
        let ca = parse_pem(ca.cert_pem()).unwrap();
        assert!(ca.ca && ca.subject == "kubeha-etcd-ca");
        assert!(parse_pem("not a certificate").is_err());
    }

    #[test]
    fn a_combined_file_yields_its_certificate_not_its_key() {
        let ca = Authority::generate("kubernetes").unwrap();
        let leaf = ca.issue(&LeafSpec { common_name: "system:node:cp-1".into(), client: true, ..LeafSpec::default() }).unwrap();
        let combined = format!("{}{}", leaf.cert_pem, leaf.key_pem.expose());
        assert_eq!(parse_pem(&combined).unwrap().subject, "system:node:cp-1");
    }

    #[test]
    fn days_round_down_and_levels_follow_the_warning_threshold() {
        let now = 1_000_000_000;
        assert_eq!(days_left(now + 30 * DAY, now), 30);
        assert_eq!(days_left(now + 30 * DAY - 1, now), 29);
        assert_eq!(days_left(now - 1, now), -1);
        assert_eq!(level(now + 30 * DAY, now), Level::Ok);
        assert_eq!(level(now + 30 * DAY - 1, now), Level::Expiring);
        assert_eq!(level(now, now), Level::Expired);
        assert!(due(now + 89 * DAY, now, 90) && !due(now + 90 * DAY, now, 90));
    }

    #[test]
    fn owners_follow_the_paths() {
        assert_eq!(Owner::of("/etc/kubeha/pki/etcd/server.crt"), Owner::Kubeha);
        assert_eq!(Owner::of("/etc/kubernetes/pki/ca.crt"), Owner::Kubeha);
        assert_eq!(Owner::of("/etc/kubernetes/pki/apiserver.crt"), Owner::Kubeadm);
        assert_eq!(Owner::of("/etc/kubernetes/admin.conf"), Owner::Kubeadm);
        assert_eq!(Owner::of("/var/lib/kubelet/pki/kubelet-client-current.pem"), Owner::Kubelet);
    }

    #[test]
    fn a_kubelet_certificate_is_late_only_past_its_rotation_deadline() {
        let now = 1_000_000_000;
        let kubelet = |issued_days_ago: i64, days_left: i64| {
            let parsed = Parsed { subject: "system:node:cp-1".into(), not_before: now - issued_days_ago * DAY, not_after: now + days_left * DAY, ca: false };
            Cert::new("cp-1", KUBELET_CLIENT_CERT, parsed)
        };
        // Issued for 20 days an hour ago (a short-lived test cluster): 19 days left is not late.
        assert_eq!(kubelet(1, 19).level(now), Level::Ok);
        assert_eq!(warning(&kubelet(1, 19), now), None);
        // A year-long certificate with 30 days left is past 90% of its life: the kubelet should have rotated it.
        let late = kubelet(335, 30);
        assert_eq!(late.level(now), Level::Expiring);
        assert!(warning(&late, now).unwrap().contains("past the point where the kubelet rotates it"), "{:?}", warning(&late, now));
        assert_eq!(kubelet(300, 65).level(now), Level::Ok);
        assert_eq!(kubelet(20, -1).level(now), Level::Expired);
        // The same 30 days left on a kubeadm certificate is a warning.
        let kubeadm = Cert::new("cp-1", "/etc/kubernetes/pki/apiserver.crt", kubelet(1, 19).parsed);
        assert_eq!(kubeadm.level(now), Level::Expiring);
    }

    #[test]
    fn warnings_name_host_path_and_way_out() {
        let now = 1_000_000_000;
        let cert = |days: i64| {
            Cert::new(
                "cp-1",
                "/etc/kubernetes/pki/apiserver.crt",
                Parsed { subject: "kube-apiserver".into(), not_before: now - DAY, not_after: now + days * DAY, ca: false },
            )
        };
        assert_eq!(warning(&cert(31), now), None);
        let w = warning(&cert(12), now).unwrap();
        assert!(w.starts_with("certificate cp-1:/etc/kubernetes/pki/apiserver.crt (kube-apiserver, kubeadm) expires in 12 days, on 2001-"), "{w}");
        assert!(w.ends_with("`kubeha apply` renews it"), "{w}");
        assert!(warning(&cert(-2), now).unwrap().contains("EXPIRED on 2001-09-"), "{:?}", warning(&cert(-2), now));
    }
}

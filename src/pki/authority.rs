//! A certificate authority and the leaf certificates it signs.
use super::PkiError;
use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType};
use std::fmt;
use std::net::IpAddr;
use time::{Duration, OffsetDateTime};

/// kubeadm's defaults: CAs for 10 years, leaves for 1 year.
const CA_VALIDITY: Duration = Duration::days(3650);
const LEAF_VALIDITY_DAYS: i64 = 365;
/// Test hook, the one place it is read: leaf certificates (kubeha's, and kubeadm's through the rendered
/// ClusterConfiguration) valid for this many days instead of 365, so that a lab test can make them due for
/// renewal and watch `apply` renew them. Never set it on a real cluster: every run would renew them again.
pub const TEST_VALIDITY_ENV: &str = "KUBEHA_TEST_CERT_VALIDITY_DAYS";

/// The leaf validity the test hook asks for, if it is set to a whole number of days from 1 to 365.
pub fn test_validity_days() -> Option<u32> {
    std::env::var(TEST_VALIDITY_ENV).ok()?.trim().parse().ok().filter(|d| (1..=365).contains(d))
}

fn leaf_validity() -> Duration {
    Duration::days(test_validity_days().map_or(LEAF_VALIDITY_DAYS, i64::from))
}
/// Tolerates clocks a little behind the operator's on freshly booted hosts.
const BACKDATE: Duration = Duration::minutes(5);

/// A PEM private key. Its Debug and Display never show the key. It serializes as the PEM text, for the
/// cluster state file that only control planes hold (mode 0600).
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct PrivateKeyPem(String);

impl PrivateKeyPem {
    pub fn new(pem: String) -> Self {
        Self(pem)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PrivateKeyPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivateKeyPem(<redacted>)")
    }
}

#[derive(Clone, Debug)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: PrivateKeyPem,
}

/// What a leaf certificate is for.
#[derive(Clone, Debug, Default)]
pub struct LeafSpec {
    pub common_name: String,
    pub organization: Option<String>,
    pub dns_names: Vec<String>,
    pub ips: Vec<IpAddr>,
    pub server: bool,
    pub client: bool,
}

pub struct Authority {
    cert_pem: String,
    key: KeyPair,
}

impl fmt::Debug for Authority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authority").field("cert_pem", &self.cert_pem).field("key", &"<redacted>").finish()
    }
}

fn rcgen_err(what: &str) -> impl FnOnce(rcgen::Error) -> PkiError + '_ {
    move |source| PkiError::Rcgen { what: what.to_string(), source }
}

fn validity(params: &mut CertificateParams, length: Duration) {
    let now = OffsetDateTime::now_utc();
    params.not_before = now - BACKDATE;
    params.not_after = now + length;
}

impl Authority {
    /// A new CA with an ECDSA P-256 key (kubeadm's ECDSA-P256 option; small and fast to verify).
    pub fn generate(common_name: &str) -> Result<Self, PkiError> {
        let key = KeyPair::generate().map_err(rcgen_err(common_name))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        validity(&mut params, CA_VALIDITY);
        let cert = params.self_signed(&key).map_err(rcgen_err(common_name))?;
        Ok(Self { cert_pem: cert.pem(), key })
    }

    /// A CA that already exists on the cluster, read back to sign new certificates (e.g. for a new member).
    pub fn from_pem(cert_pem: &str, key_pem: &PrivateKeyPem) -> Result<Self, PkiError> {
        let key = KeyPair::from_pem(key_pem.expose()).map_err(rcgen_err("CA key"))?;
        Issuer::from_ca_cert_pem(cert_pem, &key).map_err(rcgen_err("CA certificate"))?;
        Ok(Self { cert_pem: cert_pem.to_string(), key })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn key_pem(&self) -> PrivateKeyPem {
        PrivateKeyPem(self.key.serialize_pem())
    }

    pub fn issue(&self, spec: &LeafSpec) -> Result<Issued, PkiError> {
        let what = spec.common_name.as_str();
        let issuer = Issuer::from_ca_cert_pem(&self.cert_pem, &self.key).map_err(rcgen_err(what))?;
        let key = KeyPair::generate().map_err(rcgen_err(what))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, spec.common_name.as_str());
        if let Some(org) = &spec.organization {
            params.distinguished_name.push(DnType::OrganizationName, org.as_str());
        }
        for name in &spec.dns_names {
            params.subject_alt_names.push(SanType::DnsName(name.as_str().try_into().map_err(rcgen_err(what))?));
        }
        params.subject_alt_names.extend(spec.ips.iter().map(|ip| SanType::IpAddress(*ip)));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        if spec.server {
            params.extended_key_usages.push(ExtendedKeyUsagePurpose::ServerAuth);
        }
        if spec.client {
            params.extended_key_usages.push(ExtendedKeyUsagePurpose::ClientAuth);
        }
        params.use_authority_key_identifier_extension = true;
        validity(&mut params, leaf_validity());
        let cert = params.signed_by(&key, &issuer).map_err(rcgen_err(what))?;
        Ok(Issued { cert_pem: cert.pem(), key_pem: PrivateKeyPem(key.serialize_pem()) })
    }
}

/// kubeadm's discovery pin: `sha256:` and the hex SHA-256 of the CA's DER SubjectPublicKeyInfo.
pub fn discovery_hash(cert_pem: &str) -> Result<String, PkiError> {
    let parse_err = |message: String| PkiError::Parse { what: "CA".into(), message };
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).map_err(|e| parse_err(e.to_string()))?;
    let cert = pem.parse_x509().map_err(|e| parse_err(e.to_string()))?;
    Ok(format!("sha256:{}", crate::digest::sha256_hex(cert.tbs_certificate.subject_pki.raw)))
}

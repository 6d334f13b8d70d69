//! What names and addresses a certificate is valid for. Pure: PEM in, subject alternative names out, so that
//! the state can tell a member certificate issued for an address the host no longer has (a re-addressed
//! host: its peers and API servers would dial a certificate that does not match).
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use x509_parser::extensions::GeneralName;

/// The DNS names and IP addresses of the first certificate in `pem`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sans {
    pub dns: BTreeSet<String>,
    pub ips: BTreeSet<IpAddr>,
}

pub fn read(pem: &str) -> Result<Sans, String> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| format!("no PEM certificate: {e}"))?;
    let cert = block.parse_x509().map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let mut sans = Sans::default();
    let Some(ext) = cert.subject_alternative_name().map_err(|e| format!("unreadable subjectAltName: {e}"))? else { return Ok(sans) };
    for name in &ext.value.general_names {
        match name {
            GeneralName::DNSName(d) => {
                sans.dns.insert((*d).to_string());
            }
            GeneralName::IPAddress(bytes) => {
                if let Some(ip) = ip_of(bytes) {
                    sans.ips.insert(ip);
                }
            }
            _ => {}
        }
    }
    Ok(sans)
}

fn ip_of(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => Some(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(bytes).ok()?))),
        16 => Some(IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{Authority, LeafSpec};

    #[test]
    fn reads_the_names_and_addresses_a_leaf_was_issued_for() {
        let ca = Authority::generate("kubeha-etcd-ca").unwrap();
        let ips: Vec<IpAddr> = vec!["198.18.0.12".parse().unwrap(), "::1".parse().unwrap()];
        let spec = LeafSpec { common_name: "cp-2-peer".into(), dns_names: vec!["cp-2".into()], ips: ips.clone(), server: true, ..LeafSpec::default() };
        let sans = read(&ca.issue(&spec).unwrap().cert_pem).unwrap();
        assert_eq!(sans.ips, ips.into_iter().collect());
        assert_eq!(sans.dns, ["cp-2".to_string()].into_iter().collect());
        let client = read(&ca.issue(&LeafSpec { common_name: "kubeha".into(), client: true, ..LeafSpec::default() }).unwrap().cert_pem).unwrap();
        assert_eq!(client, Sans::default());
        assert!(read("garbage").is_err());
    }
}

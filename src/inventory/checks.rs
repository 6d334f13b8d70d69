//! Checks that span several fields: uniqueness, overlapping networks, the VIP's L2 segment, versions.
//! They run on the draft so that one run reports every problem, even when other fields failed to parse.
use super::build::{HostDraft, SpecDraft};
use super::diagnostic::Diagnostics;
use super::model::{LoadBalancer, Vrrp};
use super::reader::Located;
use super::support;
use std::collections::HashMap;
use std::net::IpAddr;

pub fn run(d: &SpecDraft, diags: &mut Diagnostics) {
    unique_hosts(&d.hosts, diags);
    control_plane_present(d, diags);
    versions(d, diags);
    subnets(d, diags);
    if let Some(lb) = &d.load_balancer
        && let LoadBalancer::KeepalivedHaproxy(vrrp) = &lb.value
    {
        vip(d, lb, vrrp, diags);
    }
}

fn unique_hosts(hosts: &[HostDraft], diags: &mut Diagnostics) {
    let mut names: HashMap<&str, &HostDraft> = HashMap::new();
    let mut addresses: HashMap<IpAddr, &HostDraft> = HashMap::new();
    for h in hosts {
        if let Some(name) = &h.name
            && let Some(first) = names.insert(&name.value, h)
        {
            diags.error(format!("{}.name", h.path()), Some(name.mark), format!("duplicate host name \"{}\" (also {})", name.value, first.path()));
        }
        if let Some(address) = &h.address
            && let Some(first) = addresses.insert(address.value, h)
        {
            let other = format!("{} ({})", first.path(), first.label());
            diags.error(format!("{}.address", h.path()), Some(address.mark), format!("duplicate address {} (also {other})", address.value));
        }
    }
}

fn control_plane_present(d: &SpecDraft, diags: &mut Diagnostics) {
    let roles_known = d.hosts.iter().all(|h| h.roles.is_some());
    if roles_known && !d.hosts.iter().any(|h| h.roles.as_ref().is_some_and(|r| r.value.control_plane)) {
        diags.error("spec.hosts", Some(d.hosts_mark), "no host has the role control-plane; etcd and the API server need at least one (three for HA)");
    }
}

fn versions(d: &SpecDraft, diags: &mut Diagnostics) {
    if let Some(v) = &d.kubernetes_version
        && !support::kubernetes_supported(v.value)
    {
        diags.error(
            "spec.kubernetes.version",
            Some(v.mark),
            format!("unsupported Kubernetes version {}: kubeha supports {}", v.value, support::minors_list(support::KUBERNETES_MINORS)),
        );
    }
    if let Some(v) = &d.etcd_version
        && !support::etcd_supported(v.value)
    {
        diags.error(
            "spec.etcd.version",
            Some(v.mark),
            format!(
                "unsupported etcd version {}: kubeha supports {} (at least {}, kubeadm's minimum for external etcd)",
                v.value,
                support::minors_list(support::ETCD_MINORS),
                support::ETCD_MINIMUM
            ),
        );
    }
}

fn subnets(d: &SpecDraft, diags: &mut Diagnostics) {
    let (Some(pods), Some(services)) = (&d.pod_subnet, &d.service_subnet) else { return };
    if pods.value.contains(&services.value) || services.value.contains(&pods.value) {
        diags.error("spec.kubernetes.serviceSubnet", Some(services.mark), format!("{} overlaps podSubnet {}", services.value, pods.value));
    }
    let vip = d.load_balancer.as_ref().and_then(|lb| lb.value.vrrp()).map(|v| v.vip);
    for (field, net) in [("podSubnet", pods), ("serviceSubnet", services)] {
        for h in &d.hosts {
            if let Some(a) = h.address.as_ref().filter(|a| net.value.contains(&a.value)) {
                let name = h.label();
                diags.error(
                    format!("spec.kubernetes.{field}"),
                    Some(net.mark),
                    format!("{} contains the address {} of host {name}; pods and services would shadow it", net.value, a.value),
                );
            }
        }
        if let Some(vip) = vip.filter(|v| net.value.contains(v)) {
            diags.error(format!("spec.kubernetes.{field}"), Some(net.mark), format!("{} contains the VIP {vip}", net.value));
        }
    }
}

fn vip(d: &SpecDraft, lb: &Located<LoadBalancer>, vrrp: &Vrrp, diags: &mut Diagnostics) {
    const PATH: &str = "spec.controlPlane.loadBalancer.vip";
    let network = vrrp.network;
    if network.prefix_len() < network.max_prefix_len() && (vrrp.vip == network.network() || (vrrp.vip.is_ipv4() && vrrp.vip == network.broadcast())) {
        diags.error(PATH, Some(lb.mark), format!("{} is the network or broadcast address of {network}, not a usable VIP", vrrp.vip));
    }
    if [6443, 2379, 2380, 10250, 10257, 10259].contains(&vrrp.port) {
        diags.push(
            super::diagnostic::Diagnostic::error(
                "spec.controlPlane.loadBalancer.port",
                Some(lb.mark),
                format!("port {} is used by a control-plane component on the same host", vrrp.port),
            )
            .with_hint("HAProxy runs on the control planes; the usual choice is 8443"),
        );
    }
    for h in &d.hosts {
        let Some(address) = &h.address else { continue };
        let name = h.label();
        if address.value == vrrp.vip {
            diags.error(format!("{}.address", h.path()), Some(address.mark), format!("host {name} has the VIP {} as its own address", vrrp.vip));
        }
        let is_cp = h.roles.as_ref().is_some_and(|r| r.value.control_plane);
        if is_cp && !network.contains(&address.value) {
            diags.push(
                super::diagnostic::Diagnostic::error(
                    format!("{}.address", h.path()),
                    Some(address.mark),
                    format!("control plane {name} ({}) is outside the VIP's network {network}; keepalived moves the VIP by VRRP, which needs every control plane on one L2 segment", address.value),
                )
                .with_hint("put the control planes in one subnet, or use loadBalancer mode external with your own load balancer"),
            );
        }
    }
}

/// RFC 1123 label as Kubernetes uses it for node names: lower-case alphanumerics and '-', at most 63.
pub fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty() && b.len() <= 63 && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-') && b[0] != b'-' && b[b.len() - 1] != b'-'
}

pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

pub fn dns_label(v: &Located<String>, path: &str, diags: &mut Diagnostics) -> bool {
    let ok = is_dns_label(&v.value);
    if !ok {
        diags.error(path, Some(v.mark), format!("invalid name \"{}\": must be a DNS-1123 label (lower-case letters, digits and '-', starting and ending with a letter or digit, at most 63 characters)", v.value));
    }
    ok
}

pub fn dns_subdomain(v: &Located<String>, path: &str, diags: &mut Diagnostics) -> bool {
    let ok = is_dns_subdomain(&v.value);
    if !ok {
        diags.error(path, Some(v.mark), format!("invalid value \"{}\": must be a DNS-1123 subdomain like cluster.local", v.value));
    }
    ok
}

/// A CRI socket as kubeadm and the kubelet take it: `unix://` and an absolute path. Only printable characters
/// without whitespace, so the value reads the same in every file and command line it lands in.
pub fn cri_endpoint(v: &Located<String>, path: &str, diags: &mut Diagnostics) -> bool {
    let s = &v.value;
    let ok = s.strip_prefix("unix:///").is_some_and(|rest| !rest.is_empty()) && s.bytes().all(|b| b.is_ascii_graphic());
    if !ok {
        diags.error(path, Some(v.mark), format!("invalid value \"{s}\": expected a unix socket URL like unix:///run/containerd/containerd.sock"));
    }
    ok
}

/// `spec.etcd.backup.dir`: an absolute folder of plain path characters (it is written into a script and a
/// unit file), not `/` and without `..` (rotation deletes files in it: it must be the folder meant).
pub fn backup_dir(v: &Located<String>, path: &str, diags: &mut Diagnostics) -> bool {
    let s = v.value.trim_end_matches('/');
    let plain = s.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-".contains(&b));
    let ok = s.starts_with('/') && plain && !s.split('/').any(|part| part == "..") && s.len() <= 256;
    if !ok {
        diags.error(
            path,
            Some(v.mark),
            format!(
                "invalid value {:?}: expected an absolute folder like /var/lib/kubeha/etcd-backups (letters, digits, / . _ - only, not / itself, no ..)",
                v.value
            ),
        );
    }
    ok
}

/// `spec.artifacts.mirror`: an http(s) base URL that upstream paths are appended to, so no query or fragment.
/// Returns it without a trailing '/', the form URLs are built from.
pub fn mirror_url(v: &Located<String>, path: &str, diags: &mut Diagnostics) -> Option<String> {
    let s = v.value.trim();
    let ok = reqwest::Url::parse(s)
        .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some_and(|h| !h.is_empty()) && u.query().is_none() && u.fragment().is_none());
    if !ok {
        diags.error(
            path,
            Some(v.mark),
            format!("invalid value \"{s}\": expected an http:// or https:// base URL like https://mirror.example.com/k8s (no query or fragment)"),
        );
        return None;
    }
    Some(s.trim_end_matches('/').to_string())
}

/// One kubeadm preflight check name (`SystemVerification`, `Swap`, `all`). kubeadm splits its flag form on
/// commas, so a comma or whitespace inside one name is a list written as a string.
/// A registry host as image references name it: DNS labels, an optional port (`quay.io:443`).
pub fn registry_host(s: &str) -> bool {
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (s, None),
    };
    let label =
        |l: &str| !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') && !l.starts_with('-') && !l.ends_with('-');
    !host.is_empty() && host.split('.').all(label) && port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0))
}

/// A registry mirror's URL: http or https with a host, an optional path; no query, no fragment, nothing
/// that could end the quoted TOML string it is written into.
pub fn registry_mirror_url(v: &Located<String>, path: &str, diags: &mut Diagnostics) -> bool {
    let s = v.value.trim();
    let ok = s.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
        && reqwest::Url::parse(s).is_ok_and(|u| {
            matches!(u.scheme(), "http" | "https") && u.host_str().is_some_and(|h| !h.is_empty()) && u.query().is_none() && u.fragment().is_none()
        });
    if !ok {
        diags.error(path, Some(v.mark), format!("invalid value \"{s}\": expected a mirror URL like https://mirror.example.com or http://10.0.0.5:5000"));
    }
    ok
}

pub fn preflight_check_name(v: &Located<String>, path: &str, diags: &mut Diagnostics) -> bool {
    let s = &v.value;
    let ok = !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic() && b != b',');
    if !ok {
        diags.error(
            path,
            Some(v.mark),
            format!("invalid value \"{s}\": expected one preflight check name like SystemVerification (no commas or spaces; list each name on its own)"),
        );
    }
    ok
}

/// Linux interface names: at most 15 bytes, no '/', whitespace or ':'; we also refuse anything a config
/// file could misread, so the name can be written into keepalived.conf as is.
pub fn interface_name(v: &Located<String>, path: &str, diags: &mut Diagnostics) -> bool {
    let s = &v.value;
    let ok = !s.is_empty() && s.len() <= 15 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) && !s.starts_with('-');
    if !ok {
        diags.error(path, Some(v.mark), format!("invalid interface name \"{s}\": at most 15 letters, digits, '.', '_' or '-'"));
    }
    ok
}

/// A Kubernetes label or taint key: optional DNS subdomain prefix and '/', then a name of at most 63.
pub fn label_key(v: &Located<String>, path: &str, diags: &mut Diagnostics) -> bool {
    let (prefix, name) = match v.value.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, v.value.as_str()),
    };
    let ok = prefix.is_none_or(is_dns_subdomain) && !name.is_empty() && is_label_value(name);
    if !ok {
        diags.error(path, Some(v.mark), format!("invalid label key \"{}\": expected [prefix/]name, name at most 63 alphanumerics, '-', '_' or '.'", v.value));
    }
    ok
}

fn is_label_value(s: &str) -> bool {
    let b = s.as_bytes();
    b.is_empty()
        || (b.len() <= 63
            && b.iter().all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(c))
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric())
}

/// Zones, racks and label values end up as Kubernetes label values, so they must be valid ones.
pub fn label_value(v: &Located<String>, path: &str, diags: &mut Diagnostics) -> bool {
    let ok = is_label_value(&v.value);
    if !ok {
        diags.error(
            path,
            Some(v.mark),
            format!(
                "invalid value \"{}\": must be a Kubernetes label value (at most 63 alphanumerics, '-', '_' or '.', starting and ending alphanumeric)",
                v.value
            ),
        );
    }
    ok
}

use super::*;
use crate::pki::discovery_hash;
use std::process::Command;

use crate::test_support::lab;

fn openssl(args: &[&str], input: Option<&[u8]>) -> (bool, String) {
    use std::io::Write;
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("openssl CLI");
    child.stdin.take().unwrap().write_all(input.unwrap_or_default()).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn every_member_gets_its_files_and_openssl_verifies_them() {
    let inv = lab();
    let ca = Authority::generate("kubeha-etcd-ca-lab").unwrap();
    let files = etcd_files(&inv, &ca).unwrap();
    assert_eq!(files.len(), 3 * member_file_names().len());
    let dir = tempfile::tempdir().unwrap();
    let write = |f: &EtcdFile| {
        let path = dir.path().join(format!("{}-{}", f.host, f.path.rsplit('/').next().unwrap()));
        let text = match &f.contents {
            Contents::Certificate(c) => c.clone(),
            Contents::Key(k) => k.expose().to_string(),
        };
        std::fs::write(&path, text).unwrap();
        path.to_string_lossy().into_owned()
    };
    let paths: Vec<(String, String, u32)> = files.iter().map(|f| (f.host.clone(), write(f), f.mode)).collect();
    let ca_file = &paths.iter().find(|(h, p, _)| h == "cp-1" && p.ends_with("ca.crt")).unwrap().1;
    for (host, path, mode) in &paths {
        if path.ends_with(".key") {
            assert_eq!(*mode, 0o600, "{path}");
            continue;
        }
        assert_eq!(*mode, 0o644);
        let purpose = if path.contains("client") { "sslclient" } else { "sslserver" };
        let (ok, out) = openssl(&["verify", "-CAfile", ca_file, "-purpose", purpose, path], None);
        assert!(ok, "{host} {path}: {out}");
        if path.ends_with("server.crt") || path.ends_with("peer.crt") {
            let (_, text) = openssl(&["x509", "-noout", "-ext", "subjectAltName,extendedKeyUsage", "-in", path], None);
            let address = inv.host(host).unwrap().address.to_string();
            assert!(
                text.contains(&format!("IP Address:{address}")) && text.contains(&format!("DNS:{host}")) && text.contains("IP Address:127.0.0.1"),
                "{text}"
            );
            assert!(text.contains("TLS Web Server Authentication") && text.contains("TLS Web Client Authentication"), "{text}");
        }
    }
}

#[test]
fn a_certificate_from_another_ca_does_not_verify() {
    let ca = Authority::generate("one").unwrap();
    let other = Authority::generate("two").unwrap();
    let leaf = other.issue(&LeafSpec { common_name: "x".into(), client: true, ..LeafSpec::default() }).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.crt"), ca.cert_pem()).unwrap();
    std::fs::write(dir.path().join("leaf.crt"), &leaf.cert_pem).unwrap();
    let (ok, _) = openssl(&["verify", "-CAfile", &dir.path().join("ca.crt").to_string_lossy(), &dir.path().join("leaf.crt").to_string_lossy()], None);
    assert!(!ok);
}

#[test]
fn discovery_hash_matches_openssl() {
    let ca = Authority::generate("kubernetes").unwrap();
    let (_, pubkey) = openssl(&["x509", "-pubkey", "-noout"], Some(ca.cert_pem().as_bytes()));
    let der = Command::new("sh")
        .args(["-c", "openssl pkey -pubin -outform der | sha256sum"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    let mut der = der;
    der.stdin.take().unwrap().write_all(pubkey.as_bytes()).unwrap();
    let out = der.wait_with_output().unwrap();
    let expected = String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_string();
    assert_eq!(discovery_hash(ca.cert_pem()).unwrap(), format!("sha256:{expected}"));
}

#[test]
fn an_existing_ca_can_be_loaded_and_keeps_signing() {
    let ca = Authority::generate("kubeha-etcd-ca").unwrap();
    let again = Authority::from_pem(ca.cert_pem(), &ca.key_pem()).unwrap();
    let leaf = again.issue(&LeafSpec { common_name: "n".into(), server: true, ips: vec!["198.18.0.14".parse().unwrap()], ..LeafSpec::default() }).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.crt"), ca.cert_pem()).unwrap();
    std::fs::write(dir.path().join("leaf.crt"), &leaf.cert_pem).unwrap();
    let (ok, out) = openssl(&["verify", "-CAfile", &dir.path().join("ca.crt").to_string_lossy(), &dir.path().join("leaf.crt").to_string_lossy()], None);
    assert!(ok, "{out}");
}

#[test]
fn keys_never_show_in_debug() {
    let ca = Authority::generate("x").unwrap();
    let shown = format!("{ca:?} {:?}", ca.key_pem());
    assert!(!shown.contains("PRIVATE KEY"), "{shown}");
}

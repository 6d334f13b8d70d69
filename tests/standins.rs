//! Runs the Python tests of the kubeha lab stand-ins (tests/lab/standins/test_standins.py) so that
//! `cargo test` covers them. They need Debian's /usr/bin/python3 with python3-yaml, openssl, and for the
//! cluster tests etcd-server + etcd-client (without them the tests fail: scripts/test.sh installs them), and they
//! bind loopback addresses 127.0.0.11-13/21-22/100.

use std::process::Command;

#[test]
fn lab_standins_python_tests_pass() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new("/usr/bin/python3")
        .args(["-m", "unittest", "discover", "-s", "tests/lab/standins", "-v"])
        .current_dir(root)
        .output()
        .expect("run /usr/bin/python3 (apt-get install -y python3 python3-yaml)");
    // unittest reports on stderr; show everything so a failure can be read from `cargo test` output.
    println!("{}", String::from_utf8_lossy(&out.stdout));
    println!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "stand-in tests failed (exit {:?}); see the output above", out.status.code());
}

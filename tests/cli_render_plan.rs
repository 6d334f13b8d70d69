//! `kubeha render` and `kubeha plan` run as the real binary.
use assert_cmd::Command;
use predicates::prelude::*;
use std::os::unix::fs::PermissionsExt;

fn kubeha() -> Command {
    Command::cargo_bin("kubeha").unwrap()
}

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn render_writes_every_host_with_private_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    kubeha().args(["render", "-i", "inventories/lab.yaml", "-o"]).arg(&out).assert().success().stdout(predicate::str::contains("wrote 62 files for 5 hosts"));
    assert_eq!(mode(&out.join("cp-1/etc/kubeha/kubeadm.yaml")), 0o600);
    assert_eq!(mode(&out.join("cp-2/etc/keepalived/keepalived.conf")), 0o600);
    assert_eq!(mode(&out.join("cp-2/etc/keepalived/check_apiserver.sh")), 0o755);
    assert_eq!(mode(&out.join("cp-3/etc/haproxy/haproxy.cfg")), 0o644);
    assert!(out.join("_cluster/cni/flannel.yaml").exists());
    assert!(!out.join("wk-1/etc/etcd").exists(), "workers run no etcd");
    assert_eq!(mode(&out.join("cp-1/usr/local/lib/kubeha/etcd-backup")), 0o755);
    let timer = std::fs::read_to_string(out.join("cp-2/etc/systemd/system/kubeha-etcd-backup.timer")).unwrap();
    assert!(timer.contains("OnCalendar=hourly\n") && timer.contains("Persistent=true\n"), "{timer}");
    assert!(!out.join("wk-1/usr/local/lib/kubeha/etcd-backup").exists(), "backups run on the control planes only");
    // Throwaway secrets differ per render; they must never be the test fixtures.
    let init = std::fs::read_to_string(out.join("cp-1/etc/kubeha/kubeadm.yaml")).unwrap();
    assert!(!init.contains("abcdef.0123456789abcdef"));
}

#[test]
fn render_replaces_its_own_output_but_never_a_foreign_folder() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    kubeha().args(["render", "-i", "inventories/lab.yaml", "-o"]).arg(&out).assert().success();
    std::fs::write(out.join("stale"), "x").unwrap();
    kubeha().args(["render", "-i", "inventories/single-rack.yaml", "-o"]).arg(&out).assert().success();
    assert!(!out.join("stale").exists() && !out.join("cp-1").exists() && out.join("node-1").exists());

    let foreign = dir.path().join("home");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("precious"), "keep").unwrap();
    kubeha()
        .args(["render", "-i", "inventories/lab.yaml", "-o"])
        .arg(&foreign)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("is not an earlier kubeha render"));
    assert_eq!(std::fs::read_to_string(foreign.join("precious")).unwrap(), "keep");
}

#[test]
fn render_with_a_secrets_file_is_deterministic_and_validated() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets.yaml");
    std::fs::write(&secrets, "bootstrapToken: abcdef.0123456789abcdef\ncertificateKey: \"0000000000000000000000000000000000000000000000000000000000000000\"\ncaCertHash: \"sha256:1111111111111111111111111111111111111111111111111111111111111111\"\nvrrpAuthPass: testpass\netcdClusterToken: kubeha-test-000000000000\n").unwrap();
    let out = dir.path().join("out");
    kubeha().args(["render", "-i", "inventories/lab.yaml", "--secrets"]).arg(&secrets).arg("-o").arg(&out).assert().success();
    let join = std::fs::read_to_string(out.join("wk-2/etc/kubeha/kubeadm.yaml")).unwrap();
    let golden = std::fs::read_to_string("tests/golden/render/lab__wk-2__etc__kubeha__kubeadm.yaml.snap").unwrap();
    assert!(golden.ends_with(&join), "render with fixed secrets must equal the golden file");

    std::fs::write(&secrets, "bootstrapToken: nope\n").unwrap();
    kubeha()
        .args(["render", "-i", "inventories/lab.yaml", "--secrets"])
        .arg(&secrets)
        .arg("-o")
        .arg(dir.path().join("o2"))
        .assert()
        .code(1)
        .stderr(predicate::str::contains("secrets file"));
}

#[test]
fn render_and_plan_refuse_an_invalid_inventory() {
    let dir = tempfile::tempdir().unwrap();
    kubeha()
        .args(["render", "-i", "tests/fixtures/broken.yaml", "-o"])
        .arg(dir.path().join("o"))
        .assert()
        .code(1)
        .stdout(predicate::str::contains("broken.yaml:3:18"));
    kubeha().args(["plan", "--offline", "-i", "tests/fixtures/broken.yaml"]).assert().code(1).stderr(predicate::str::contains("has 17 error(s)"));
    assert!(!dir.path().join("o").exists());
}

#[test]
fn plan_offline_prints_the_gated_order() {
    let out = kubeha().args(["plan", "--offline", "-i", "inventories/lab.yaml"]).assert().success().get_output().stdout.clone();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(text, std::fs::read_to_string("tests/golden/plan/lab__text.snap").unwrap().split_once("---\n").unwrap().1.split_once("---\n").unwrap().1);
    let json = kubeha().args(["plan", "--offline", "-i", "inventories/prod-3az.yaml", "--output", "json"]).output().unwrap();
    let plan: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let phases: Vec<&str> = plan["phases"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(
        phases,
        ["state", "host", "software", "etcd", "loadbalancer", "control-plane", "cni", "workers", "labels", "join-token-delete", "backup", "verify"]
    );
}

/// Live planning needs every host; an unreachable one (here: nothing listens on loopback port 1) is named.
#[test]
fn plan_names_the_hosts_it_cannot_reach() {
    let dir = tempfile::tempdir().unwrap();
    let lab = std::fs::read_to_string("inventories/lab.yaml").unwrap();
    let unreachable = lab.replace("port: 22", "port: 1").replace("198.18.0.", "127.0.0.");
    let path = dir.path().join("unreachable.yaml");
    std::fs::write(&path, unreachable).unwrap();
    let out = kubeha().args(["plan", "--detailed-exitcode", "-i"]).arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot reach 5 host(s)") && stderr.contains("cp-2"), "{stderr}");
}

#[test]
fn monitoring_render_writes_config_rules_and_private_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mon");
    kubeha().args(["monitoring", "render", "-i", "inventories/lab.yaml", "-o"]).arg(&out).assert().success().stdout(
        predicate::str::contains("wrote 4 files and 17 scrape targets")
            .and(predicate::str::contains("credentials/prometheus.token: created empty (mode 0600)")),
    );
    assert_eq!(mode(&out.join("credentials/prometheus.token")), 0o600);
    assert_eq!(mode(&out.join("credentials/kubernetes-ca.crt")), 0o600);
    assert_eq!(mode(&out.join("credentials")), 0o700);
    let config = std::fs::read_to_string(out.join("prometheus.yml")).unwrap();
    assert!(config.contains("\"198.18.0.11:2381\"") && config.contains("credentials_file: \"credentials/prometheus.token\""), "{config}");
}

#[test]
fn monitoring_render_refuses_a_file_or_foreign_folder_as_output() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("taken");
    std::fs::write(&file, "x").unwrap();
    kubeha()
        .args(["monitoring", "render", "-i", "inventories/lab.yaml", "-o"])
        .arg(&file)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("taken: exists and is not a folder"));
    kubeha()
        .args(["monitoring", "render", "-i", "inventories/lab.yaml", "-o"])
        .arg(dir.path())
        .assert()
        .code(1)
        .stderr(predicate::str::contains("is not an earlier `kubeha monitoring render`"));
    kubeha().args(["monitoring", "render", "-i", "tests/fixtures/broken.yaml", "-o"]).arg(dir.path().join("new")).assert().code(1);
    assert!(!dir.path().join("new").exists(), "an invalid inventory writes nothing");
}

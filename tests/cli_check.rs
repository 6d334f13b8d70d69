//! `kubeha check` and `kubeha init` run as the real binary.
use assert_cmd::Command;
use predicates::prelude::*;

fn kubeha() -> Command {
    Command::cargo_bin("kubeha").unwrap()
}

const EXAMPLES: &[&str] = &["lab", "prod-3az", "two-zones-witness", "single-rack", "example"];

#[test]
fn every_example_inventory_passes_check() {
    for name in EXAMPLES {
        kubeha().args(["check", "-i", &format!("inventories/{name}.yaml")]).assert().success().stdout(predicate::str::contains("valid"));
    }
}

#[test]
fn lab_inventory_has_no_warnings_even_strict() {
    kubeha().args(["check", "--strict", "-i", "inventories/lab.yaml"]).assert().success().stdout(predicate::str::contains("valid, no warnings"));
}

#[test]
fn strict_turns_topology_warnings_into_errors() {
    kubeha()
        .args(["check", "-i", "inventories/single-rack.yaml"])
        .assert()
        .success()
        .stdout(predicate::str::contains("warning: topology: zone edge-1 holds 3 of 3 etcd members: losing it loses quorum"));
    kubeha().args(["check", "--strict", "-i", "inventories/single-rack.yaml"]).assert().code(1);
}

/// Every class of mistake in one file is reported in one run, each with file:line:column and field path.
#[test]
fn broken_inventory_reports_every_error_with_its_location() {
    let expected = [
        "tests/fixtures/broken.yaml:3:18: metadata.name: invalid name \"Bad_Name\"",
        "tests/fixtures/broken.yaml:5:25: spec.kubernetes.version: unsupported Kubernetes version 1.30.1",
        "tests/fixtures/broken.yaml:5:73: spec.kubernetes.serviceSubnet: 10.96.0.0/12 overlaps podSubnet 10.96.0.0/16",
        "tests/fixtures/broken.yaml:5:92: spec.kubernetes.cni: unknown value \"weave\", expected one of flannel, calico, cilium",
        "tests/fixtures/broken.yaml:6:19: spec.etcd.version: unsupported etcd version 3.4.23",
        "tests/fixtures/broken.yaml:8:19: spec.controlPlane.loadBalancer.port: port 6443 is used by a control-plane component",
        "tests/fixtures/broken.yaml:9:27: spec.ssh.port: invalid value \"0\": expected a port number from 1 to 65535",
        "tests/fixtures/broken.yaml:12:12: spec.hosts[1].name: duplicate host name \"cp-1\" (also spec.hosts[0])",
        "tests/fixtures/broken.yaml:12:27: spec.hosts[1].address: duplicate address 198.18.0.11 (also spec.hosts[0] (cp-1))",
        "tests/fixtures/broken.yaml:13:12: spec.hosts[2].name: invalid name \"CP_3\": must be a DNS-1123 label",
        "tests/fixtures/broken.yaml:13:27: spec.hosts[2].address: control plane CP_3 (10.0.0.13) is outside the VIP's network 198.18.0.0/24",
        "use loadBalancer mode external",
        "tests/fixtures/broken.yaml:14:5: spec.hosts[3]: missing required field \"address\"",
        "tests/fixtures/broken.yaml:15:5: spec.hosts[3]: unknown field \"adress\", expected one of name, address, roles, zone, rack, region, labels, taints, ssh (did you mean \"address\"?)",
        "tests/fixtures/broken.yaml:16:21: spec.hosts[3].roles[1]: unknown value \"boss\"",
        "tests/fixtures/broken.yaml:18:5: spec.hosts[3]: duplicate key \"zone\" (first defined at line 17, column 5)",
        "tests/fixtures/broken.yaml:19:27: spec.hosts[4].address: invalid value \"198.18.0.300\": expected an IPv4 or IPv6 address",
        "tests/fixtures/broken.yaml:20:27: spec.hosts[5].address: host wk-3 has the VIP 198.18.0.100 as its own address",
        "tests/fixtures/broken.yaml: 17 error(s)",
    ];
    let output = kubeha().args(["check", "-i", "tests/fixtures/broken.yaml"]).assert().code(1).get_output().stdout.clone();
    let text = String::from_utf8(output).unwrap();
    for line in expected {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
}

fn check_snippet(yaml: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inv.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = kubeha().args(["check", "-i"]).arg(&path).output().unwrap();
    (out.status.code().unwrap(), String::from_utf8_lossy(&out.stdout).replace(&path.display().to_string(), "inv.yaml"))
}

const HEAD: &str = "apiVersion: kubeha/v1alpha1\nkind: Cluster\nmetadata: {name: t}\nspec:\n  kubernetes: {version: 1.36.4}\n  etcd: {version: 3.6.14}\n";

#[test]
fn missing_mode_specific_fields_and_pod_subnet_over_hosts() {
    let (code, out) = check_snippet(&format!(
        "{HEAD}  controlPlane:\n    loadBalancer: {{mode: external, vip: 10.0.0.1/24}}\n  hosts:\n  - {{name: a, address: 10.244.1.1, roles: [control-plane], zone: z}}\n"
    ));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("field \"vip\" does not apply to mode external"), "{out}");
    assert!(out.contains("missing required field \"endpoint\""), "{out}");
    assert!(out.contains("spec.kubernetes.podSubnet: 10.244.0.0/16 contains the address 10.244.1.1 of host a"), "{out}");
}

#[test]
fn keepalived_mode_needs_a_vip_and_a_control_plane() {
    let (code, out) = check_snippet(&format!(
        "{HEAD}  controlPlane:\n    loadBalancer: {{mode: keepalived-haproxy}}\n  hosts:\n  - {{name: a, address: 10.0.0.1, roles: [worker], zone: z}}\n"
    ));
    assert_eq!(code, 1);
    assert!(out.contains("spec.controlPlane.loadBalancer: missing required field \"vip\""), "{out}");
    assert!(out.contains("no host has the role control-plane"), "{out}");
}

#[test]
fn unknown_mode_and_wrong_shapes() {
    let (code, out) = check_snippet(&format!("{HEAD}  controlPlane:\n    loadBalancer: {{mode: kube-vip}}\n  hosts: {{a: 1}}\n"));
    assert_eq!(code, 1);
    assert!(out.contains("unknown value \"kube-vip\", expected one of keepalived-haproxy, external"), "{out}");
    assert!(out.contains("spec.hosts: expected a list, found a mapping"), "{out}");
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    for input in ["", "\u{0}\u{1}", "[", "- - -", ": :", "spec: *nope", "a: !!binary 123", "apiVersion: [1, {2: 3}]"] {
        let (code, out) = check_snippet(input);
        assert_eq!(code, 1, "{input:?}: {out}");
        assert!(!out.contains("panicked"), "{out}");
    }
}

#[test]
fn json_output_is_machine_readable() {
    let out = kubeha().args(["check", "-i", "inventories/prod-3az.yaml", "--output", "json"]).output().unwrap();
    assert!(out.status.success());
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["valid"], true);
    assert_eq!(doc["summary"]["controlPlanes"], 5);
    assert_eq!(doc["topology"]["toleratedZoneFailures"], 1);
    let zone = doc["topology"]["domains"].as_array().unwrap().iter().find(|d| d["name"] == "eu-west-1a").unwrap();
    assert_eq!(zone["members"], 2);
    assert_eq!(zone["survives"], true);

    let out = kubeha().args(["check", "-i", "tests/fixtures/broken.yaml", "--output", "json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["valid"], false);
    assert_eq!(doc["errors"], 17);
    let first = &doc["diagnostics"][0];
    assert_eq!((first["mark"]["line"].as_u64(), first["mark"]["column"].as_u64()), (Some(3), Some(18)));
    assert_eq!(first["path"], "metadata.name");
}

#[test]
fn missing_file_is_a_clear_error() {
    kubeha().args(["check", "-i", "does/not/exist.yaml"]).assert().code(1).stderr(predicate::str::contains("cannot read inventory does/not/exist.yaml"));
}

#[test]
fn usage_errors_exit_64() {
    kubeha().arg("frobnicate").assert().code(64);
    kubeha().args(["check"]).assert().code(64);
}

#[test]
fn init_writes_an_inventory_that_passes_check_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cluster.yaml");
    kubeha().args(["init", "-o"]).arg(&path).assert().success();
    kubeha().args(["check", "--strict", "-i"]).arg(&path).assert().success();
    std::fs::write(&path, "mine").unwrap();
    kubeha().args(["init", "-o"]).arg(&path).assert().code(1).stderr(predicate::str::contains("pass --force"));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "mine");
    kubeha().args(["init", "--force", "-o"]).arg(&path).assert().success();
    kubeha().arg("init").assert().success().stdout(predicate::str::starts_with("# kubeha inventory"));
}

#[test]
fn node_settings_are_checked_with_field_value_and_line() {
    let yaml = "apiVersion: kubeha/v1alpha1\nkind: Cluster\nmetadata: {name: t}\nspec:\n  kubernetes:\n    version: 1.36.4\n    containerRuntimeEndpoint: /run/cri.sock\n    ignorePreflightErrors: [\"Swap,SystemVerification\", \"\"]\n    addons: {coreDNS: no, kubeProxi: false}\n    kubelet:\n      cgroupDriver: cgroupsfs\n      cgroupsPerQOS: false\n      enforceNodeAllocatable: [pods, system-reserved]\n  etcd: {version: 3.6.14}\n  controlPlane:\n    loadBalancer: {mode: external, endpoint: api.example.com:6443}\n  hosts:\n  - {name: a, address: 10.0.0.1, roles: [control-plane], zone: z}\n";
    let (code, out) = check_snippet(yaml);
    assert_eq!(code, 1, "{out}");
    for expected in [
        "spec.kubernetes.containerRuntimeEndpoint: invalid value \"/run/cri.sock\": expected a unix socket URL",
        "inv.yaml:7:",
        "spec.kubernetes.ignorePreflightErrors[0]: invalid value \"Swap,SystemVerification\"",
        "spec.kubernetes.ignorePreflightErrors[1]: invalid value \"\"",
        "spec.kubernetes.addons.coreDNS: invalid value \"no\": expected true or false",
        "unknown field \"kubeProxi\", expected one of coreDNS, kubeProxy (did you mean \"kubeProxy\"?)",
        "spec.kubernetes.kubelet.cgroupDriver: unknown value \"cgroupsfs\", expected one of systemd, cgroupfs (did you mean \"cgroupfs\"?)",
        "spec.kubernetes.kubelet.enforceNodeAllocatable[1]: unknown value \"system-reserved\", expected one of pods, none",
        "spec.kubernetes.kubelet.cgroupsPerQOS: cgroupsPerQOS is false but enforceNodeAllocatable contains \"pods\"",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
    // cgroupsPerQOS false with the kubelet's default enforcement is refused too, and with [] (kubeadm drops
    // an empty list, so the kubelet enforces its default); [none] is the setting that works.
    let unset = yaml.replace("      enforceNodeAllocatable: [pods, system-reserved]\n", "").replace("cgroupsfs", "cgroupfs");
    let (_, out) = check_snippet(&unset);
    assert!(out.contains("enforceNodeAllocatable is unset (the kubelet's default is [pods])"), "{out}");
    let empty = yaml.replace("[pods, system-reserved]", "[]").replace("cgroupsfs", "cgroupfs");
    let (_, out) = check_snippet(&empty);
    assert!(out.contains("enforceNodeAllocatable is [], which kubeadm leaves out"), "{out}");
    let none = yaml.replace("[pods, system-reserved]", "[none]").replace("cgroupsfs", "cgroupfs");
    let (_, out) = check_snippet(&none);
    assert!(!out.contains("kubelet.cgroupsPerQOS"), "{out}");
}

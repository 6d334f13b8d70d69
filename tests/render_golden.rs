//! Golden files: every file rendered for every example inventory, and every offline plan, as insta
//! snapshots. Update after an intended change with `INSTA_UPDATE=always cargo test` (or `cargo insta review`).
use kubeha::inventory::{self, Inventory};
use kubeha::render::{self, Target, secrets::Secrets, templates::Templates};

const EXAMPLES: &[&str] = &["lab", "prod-3az", "two-zones-witness", "single-rack", "example"];

fn load(name: &str) -> Inventory {
    let loaded = inventory::load(std::path::Path::new(&format!("inventories/{name}.yaml"))).unwrap();
    loaded.inventory.unwrap_or_else(|| panic!("{name}: {:?}", loaded.diagnostics))
}

fn rendered(name: &str) -> Vec<render::RenderedFile> {
    render::render(&load(name), &Secrets::fixed_for_tests(), &Templates::builtin().unwrap()).unwrap()
}

fn snapshot_name(inventory: &str, f: &render::RenderedFile) -> String {
    let target = match &f.target {
        Target::Host(h) => h.clone(),
        Target::Cluster => "_cluster".to_string(),
    };
    format!("{inventory}__{target}__{}", f.path.trim_start_matches('/').replace('/', "__"))
}

#[test]
fn rendered_files_match_golden() {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("golden/render");
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| {
        for name in EXAMPLES {
            let files = rendered(name);
            let listing: Vec<String> = files.iter().map(|f| format!("{:o} {}", f.mode, snapshot_name(name, f))).collect();
            insta::assert_snapshot!(format!("{name}__files"), listing.join("\n"));
            for f in &files {
                insta::assert_snapshot!(snapshot_name(name, f), f.contents);
            }
        }
    });
}

#[test]
fn offline_plans_match_golden() {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("golden/plan");
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| {
        for name in EXAMPLES {
            let plan = kubeha::plan::offline(&load(name)).unwrap();
            insta::assert_snapshot!(format!("{name}__text"), kubeha::plan::text(&plan));
            insta::assert_snapshot!(format!("{name}__json"), serde_json::to_string_pretty(&plan).unwrap());
        }
    });
}

/// Every rendered YAML file parses back, and the values that matter come back unchanged.
#[test]
fn rendered_yaml_parses_back() {
    for name in EXAMPLES {
        let inv = load(name);
        for f in rendered(name).iter().filter(|f| f.path.ends_with(".yaml") || f.path.ends_with(".yml")) {
            let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&f.contents).unwrap_or_else(|e| panic!("{name} {}: {e}", f.path));
            assert!(!docs.is_empty(), "{} {}", name, f.path);
            if f.template == "kubeadm/init.yaml" {
                let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
                assert_eq!(kinds, ["InitConfiguration", "ClusterConfiguration", "KubeletConfiguration"]);
                let (host, port) = inv.load_balancer.endpoint();
                let endpoint = docs[1]["controlPlaneEndpoint"].as_str().unwrap();
                assert_eq!(endpoint, format!("{host}:{port}"));
                assert_eq!(docs[1]["networking"]["podSubnet"], inv.kubernetes.pod_subnet.to_string());
                assert_eq!(docs[1]["etcd"]["external"]["endpoints"].as_array().unwrap().len(), inv.control_planes().count());
                assert_eq!(docs[2]["cgroupDriver"], inv.kubernetes.kubelet.cgroup_driver.name());
                assert_eq!(docs[2]["containerRuntimeEndpoint"], inv.kubernetes.container_runtime_endpoint);
                assert_eq!(docs[0]["nodeRegistration"]["criSocket"], inv.kubernetes.container_runtime_endpoint);
                assert_eq!(docs[1]["dns"]["disabled"].as_bool().unwrap_or(false), !inv.kubernetes.addons.core_dns);
                assert_eq!(docs[1]["proxy"]["disabled"].as_bool().unwrap_or(false), !inv.kubernetes.addons.kube_proxy);
                assert!(docs.iter().all(|d| d["apiVersion"] == "kubeadm.k8s.io/v1beta4" || d["kind"] == "KubeletConfiguration"));
            }
            if f.template == "kubeadm/join.yaml" {
                let Target::Host(h) = &f.target else { panic!() };
                let host = inv.host(h).unwrap();
                assert_eq!(docs[0]["kind"], "JoinConfiguration");
                assert_eq!(docs[0]["controlPlane"].is_object(), host.is_control_plane(), "{h}");
                let labels = docs[0]["nodeRegistration"]["kubeletExtraArgs"][1]["value"].as_str().unwrap();
                assert!(labels.contains(&format!("topology.kubernetes.io/zone={}", host.zone)), "{labels}");
            }
            if f.template == "etcd/etcd.conf.yml" {
                assert_eq!(docs[0]["client-transport-security"]["client-cert-auth"], true);
                assert_eq!(docs[0]["peer-transport-security"]["client-cert-auth"], true);
                assert!(docs[0]["initial-cluster"].as_str().unwrap().starts_with(&format!("{}=https://", inv.control_planes().next().unwrap().name)));
            }
        }
    }
}

/// Secrets live only in files written 0600, and only those that need them.
#[test]
fn secret_files_are_private() {
    let secrets = Secrets::fixed_for_tests();
    for name in EXAMPLES {
        for f in rendered(name) {
            let holds_secret = [&secrets.bootstrap_token, &secrets.certificate_key, &secrets.vrrp_auth_pass].iter().any(|s| f.contents.contains(s.as_str()));
            if holds_secret {
                assert_eq!(f.mode, 0o600, "{name} {}", f.path);
            }
        }
    }
}

/// The members of the etcd phase and the HAProxy backends follow the control planes, in inventory order,
/// and keepalived priorities are distinct with the health-check weight larger than any gap.
#[test]
fn load_balancer_configuration_is_consistent() {
    let inv = load("prod-3az");
    let files = rendered("prod-3az");
    let mut priorities = Vec::new();
    for cp in inv.control_planes() {
        let haproxy = files.iter().find(|f| f.target == Target::Host(cp.name.clone()) && f.path == "/etc/haproxy/haproxy.cfg").unwrap();
        for other in inv.control_planes() {
            assert!(haproxy.contents.contains(&format!("server {} {}:6443 check", other.name, other.address)));
        }
        let keepalived = files.iter().find(|f| f.target == Target::Host(cp.name.clone()) && f.path == "/etc/keepalived/keepalived.conf").unwrap();
        let field = |key: &str| keepalived.contents.lines().find_map(|l| l.trim().strip_prefix(key)).unwrap().trim().parse::<i64>().unwrap();
        priorities.push(field("priority "));
        let weight = field("weight ");
        assert!(-weight > 5 - 1, "weight {weight} must exceed the largest priority gap");
    }
    let mut distinct = priorities.clone();
    distinct.dedup();
    assert_eq!(distinct.len(), priorities.len(), "{priorities:?}");
}

#[test]
fn user_templates_override_by_name_and_typos_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("haproxy")).unwrap();
    std::fs::write(dir.path().join("haproxy/haproxy.cfg.tera"), "# custom {{ port }}\n").unwrap();
    let templates = Templates::with_overrides(dir.path()).unwrap();
    assert_eq!(templates.overridden, ["haproxy/haproxy.cfg"]);
    let files = render::render(&load("lab"), &Secrets::fixed_for_tests(), &templates).unwrap();
    assert_eq!(files.iter().find(|f| f.path == "/etc/haproxy/haproxy.cfg").unwrap().contents, "# custom 8443\n");

    std::fs::write(dir.path().join("haproxy/haproxy.conf.tera"), "x").unwrap();
    let err = Templates::with_overrides(dir.path()).err().unwrap().to_string();
    assert!(err.contains("haproxy.conf.tera: not a kubeha template name"), "{err}");

    let broken = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(broken.path().join("etcd")).unwrap();
    std::fs::write(broken.path().join("etcd/etcd.conf.yml.tera"), "name: {{ no_such_value }}\n").unwrap();
    let templates = Templates::with_overrides(broken.path()).unwrap();
    let err = render::render(&load("lab"), &Secrets::fixed_for_tests(), &templates).unwrap_err().to_string();
    assert!(err.contains("rendering etcd/etcd.conf.yml for host cp-1"), "{err}");
    assert!(err.contains("no_such_value"), "{err}");
}

/// spec.kubernetes.registryMirrors become containerd hosts.toml files, one per registry, on every node
/// where kubeha runs containerd: the mirrors in the inventory's order, then the registry itself (Docker
/// Hub under its real server name). runc's cgroup driver follows the kubelet's.
#[test]
fn registry_mirrors_become_containerd_hosts_files() {
    let files = rendered("prod-3az");
    let inv = load("prod-3az");
    for h in &inv.hosts {
        let of = |path: &str| files.iter().find(|f| f.target == Target::Host(h.name.clone()) && f.path == path).map(|f| f.contents.as_str());
        let docker = of("/etc/containerd/certs.d/docker.io/hosts.toml").unwrap_or_else(|| panic!("{}: docker.io hosts.toml", h.name));
        let lines: Vec<&str> = docker.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()).collect();
        assert_eq!(
            lines,
            [
                "server = \"https://registry-1.docker.io\"",
                "[host.\"https://mirror.prod.example.com/docker.io\"]",
                "  capabilities = [\"pull\", \"resolve\"]",
                "[host.\"http://10.20.0.5:5000\"]",
                "  capabilities = [\"pull\", \"resolve\"]",
            ]
        );
        assert!(of("/etc/containerd/certs.d/registry.k8s.io/hosts.toml").unwrap().contains("server = \"https://registry.k8s.io\""));
        assert!(of("/etc/containerd/config.toml").unwrap().contains("SystemdCgroup = true"), "the kubelet's driver is systemd");
    }
    // The lab brings its own runtime: no containerd files at all.
    assert!(rendered("lab").iter().all(|f| !f.path.starts_with("/etc/containerd/")));
}

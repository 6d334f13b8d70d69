//! The renderer without Prometheus: what is scraped, what the rules are made of, and how the folder is written.
use super::*;
use crate::inventory::{self, PathContext};
use std::os::unix::fs::PermissionsExt;

fn example(name: &str) -> Inventory {
    let loaded = inventory::load(std::path::Path::new(&format!("inventories/{name}.yaml"))).unwrap();
    loaded.inventory.unwrap_or_else(|| panic!("{name}: {:?}", loaded.diagnostics))
}

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn rendered(inv: &Inventory) -> Vec<MonitoringFile> {
    render(inv, &Templates::builtin().unwrap()).unwrap()
}

fn contents<'a>(files: &'a [MonitoringFile], path: &str) -> &'a str {
    &files.iter().find(|f| f.path == path).unwrap().contents
}

#[test]
fn every_control_plane_is_an_etcd_haproxy_and_apiserver_target_and_every_host_a_kubelet() {
    let inv = example("prod-3az");
    let config = scrape::scrape_config(&inv);
    let job = |name: &str| config.jobs.iter().find(|j| j.name == name).unwrap_or_else(|| panic!("no job {name}"));
    for h in inv.control_planes() {
        for (name, port) in [(scrape::ETCD_JOB, 2381), (scrape::HAPROXY_JOB, 8405), (scrape::KUBEHA_METRICS_JOB, 9654), (scrape::APISERVER_JOB, 6443)] {
            let address = format!("{}:{port}", h.address);
            assert!(job(name).targets.iter().any(|t| t.address == address), "{name} lacks {address}");
        }
    }
    assert_eq!(job(scrape::KUBELET_JOB).targets.len(), inv.hosts.len());
    assert_eq!(job(scrape::ETCD_JOB).targets.len(), inv.control_planes().count());
    let text = contents(&rendered(&inv), "prometheus.yml").to_string();
    for h in inv.control_planes() {
        assert!(text.contains(&format!("\"{}:2381\"", h.address)), "{}", h.name);
    }
}

#[test]
fn external_load_balancer_has_no_haproxy_or_vip_targets_or_rules() {
    let inv = example("two-zones-witness");
    let names: Vec<&str> = scrape::scrape_config(&inv).jobs.iter().map(|j| j.name).collect();
    assert_eq!(names, [scrape::ETCD_JOB, scrape::APISERVER_JOB, scrape::KUBELET_JOB]);
    let rules = contents(&rendered(&inv), "rules.yml").to_string();
    assert!(!rules.contains("KubehaVipHeldByNone") && !rules.contains("haproxy_server_status"), "{rules}");
    // Nothing serves the backup textfile without kubeha-metrics: a backup alert would fire forever.
    assert!(!rules.contains(rules::BACKUP_METRIC), "{rules}");
}

#[test]
fn target_labels_name_failure_domains_as_check_and_status_do() {
    let inv = example("lab");
    let cp1 = inv.host("cp-1").unwrap();
    let labels = scrape::host_labels(cp1);
    assert_eq!(labels.get("zone").map(String::as_str), Some("az-a"));
    assert_eq!(labels.get("rack").map(String::as_str), Some("az-a/r1"), "racks are zone/rack, as topology::domain_of names them");
    assert_eq!(labels.get("node").map(String::as_str), Some("cp-1"));
    assert!(!labels.contains_key("region"));
}

#[test]
fn quorum_and_domain_rules_come_from_the_topology_analysis() {
    let lab = rules::rules(&example("lab"));
    assert_eq!((lab.voters, lab.quorum), (3, 2));
    let domains: Vec<String> = lab.domains.iter().map(|d| format!("{} {}", d.label, d.name)).collect();
    assert_eq!(domains, ["zone az-a", "zone az-b", "zone az-c", "rack az-a/r1", "rack az-b/r1", "rack az-c/r1"]);
    let prod = rules::rules(&example("prod-3az"));
    assert_eq!((prod.voters, prod.quorum), (5, 3));
    // A single rack cannot lose its one zone by design: `check` warns, and no alert fires forever about it.
    assert!(rules::rules(&example("single-rack")).domains.is_empty());
    let text = contents(&rendered(&example("prod-3az")), "rules.yml").to_string();
    assert!(text.contains("sum(kubeha:etcd_member_healthy) - 3 <= 0"), "{text}");
}

#[test]
fn credentials_are_created_empty_and_private_and_kept_on_rerender() {
    let inv = example("lab");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("mon");
    let first = output::write(&rendered(&inv), &out).unwrap();
    assert_eq!(first.created, [scrape::KUBERNETES_CA_FILE, scrape::TOKEN_FILE]);
    assert_eq!(mode(&out.join("credentials")), 0o700);
    for credential in CREDENTIALS {
        let path = out.join(credential);
        assert_eq!(mode(&path), 0o600, "{credential}");
        assert_eq!(std::fs::read(&path).unwrap(), b"");
    }
    assert_eq!(mode(&out.join("prometheus.yml")), 0o644);

    // The operator fills the token with a wide umask; a re-render keeps it and narrows the mode again.
    let token = out.join(scrape::TOKEN_FILE);
    std::fs::write(&token, "operator-token").unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(out.join("rules.yml"), "stale").unwrap();
    let second = output::write(&rendered(&inv), &out).unwrap();
    assert_eq!(second.kept, [scrape::KUBERNETES_CA_FILE, scrape::TOKEN_FILE]);
    assert_eq!(std::fs::read_to_string(&token).unwrap(), "operator-token");
    assert_eq!(mode(&token), 0o600);
    assert!(std::fs::read_to_string(out.join("rules.yml")).unwrap().contains("KubehaEtcdNoLeader"));
}

#[test]
fn a_bad_output_folder_is_refused_with_its_path() {
    let inv = example("lab");
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let err = output::write(&rendered(&inv), &file).unwrap_err().to_string();
    assert!(err.contains("a-file") && err.contains("not a folder"), "{err}");

    let foreign = tmp.path().join("home");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("notes.txt"), "mine").unwrap();
    let err = output::write(&rendered(&inv), &foreign).unwrap_err().to_string();
    assert!(err.contains("home") && err.contains("not an earlier `kubeha monitoring render`"), "{err}");
    assert_eq!(std::fs::read_to_string(foreign.join("notes.txt")).unwrap(), "mine");

    let under_file = file.join("mon");
    let err = output::write(&rendered(&inv), &under_file).unwrap_err().to_string();
    assert!(err.contains("a-file/mon"), "{err}");
}

#[test]
fn a_credential_path_that_is_not_a_file_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("mon");
    output::write(&rendered(&example("lab")), &out).unwrap();
    std::fs::remove_file(out.join(scrape::TOKEN_FILE)).unwrap();
    std::fs::create_dir(out.join(scrape::TOKEN_FILE)).unwrap();
    let err = output::write(&rendered(&example("lab")), &out).unwrap_err().to_string();
    assert!(err.contains("prometheus.token") && err.contains("not a regular file"), "{err}");
}

#[test]
fn ipv6_targets_are_bracketed() {
    let yaml = "apiVersion: kubeha/v1alpha1\nkind: Cluster\nmetadata: {name: v6}\nspec:\n  kubernetes: {version: 1.36.4, podSubnet: 'fd00:10::/56', serviceSubnet: 'fd00:20::/112'}\n  etcd: {version: 3.6.14}\n  controlPlane:\n    loadBalancer: {mode: external, endpoint: 'api.example.com:6443'}\n  hosts:\n  - {name: cp-1, address: 'fd00::11', roles: [control-plane], zone: a}\n  - {name: cp-2, address: 'fd00::12', roles: [control-plane], zone: b}\n  - {name: cp-3, address: 'fd00::13', roles: [control-plane], zone: c}\n";
    let loaded = inventory::parse("v6.yaml".into(), yaml.into(), &PathContext { inventory_dir: ".".into(), home: None });
    let inv = loaded.inventory.unwrap_or_else(|| panic!("{:?}", loaded.diagnostics));
    let text = contents(&rendered(&inv), "prometheus.yml").to_string();
    assert!(text.contains("\"[fd00::11]:2381\"") && text.contains("\"[fd00::13]:10250\""), "{text}");
}

/// The backup alert's age comes from `spec.etcd.backup` (two periods of the schedule, or `maxAge`), and
/// there is no backup alert when backups are off.
#[test]
fn the_backup_alert_age_follows_the_schedule() {
    let mut inv = example("lab");
    assert_eq!(rules::rules(&inv).backup_max_age_seconds, 7_200, "hourly by default");
    let backup = inv.etcd.backup.as_mut().unwrap();
    backup.schedule = crate::inventory::Schedule { calendar: "*-*-* 02:00:00".into(), max_age_seconds: 93_600 };
    let text = contents(&rendered(&inv), "rules.yml").to_string();
    assert!(text.contains(&format!("time() - max({}) > 93600", rules::BACKUP_METRIC)), "{text}");
    inv.etcd.backup = None;
    assert!(!rules::rules(&inv).backup);
    assert!(!contents(&rendered(&inv), "rules.yml").contains(rules::BACKUP_METRIC));
}

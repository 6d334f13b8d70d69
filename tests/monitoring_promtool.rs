//! `kubeha monitoring render` against the real Prometheus tools: promtool from Debian's `prometheus` package
//! (scripts/test.sh installs it). The rendered configuration and rules load (`promtool check`), and every alert
//! fires on series that should fire it and stays silent on series that should not (`promtool test rules`).
//!
//! The rule tests are generated here, one file per alert, for each example inventory: the series carry the labels
//! the rendered scrape configuration gives each target, and the expected annotations come from the rendered rules.
//! Which failure-domain alerts fire is not written by hand: `kubeha status`'s own report for the same situation
//! says which domains' loss would lose quorum, so the rules and `status` cannot drift apart unnoticed.
use assert_cmd::Command;
use kubeha::etcd::status::Member;
use kubeha::inventory::{self, Host, Inventory};
use kubeha::monitoring::scrape::{self, APISERVER_JOB, ETCD_JOB, HAPROXY_JOB, KUBEHA_METRICS_JOB, KUBELET_JOB};
use kubeha::render::context::{self, API_SERVER_PORT, ETCD_METRICS_PORT, HAPROXY_EXPORTER_PORT, KUBEHA_METRICS_PORT, KUBELET_PORT};
use kubeha::test_support::{host_member, view};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const INVENTORIES: &[&str] = &["lab", "prod-3az", "two-zones-witness", "single-rack"];

type Labels = BTreeMap<String, String>;

/// Never a skip: without promtool these tests would check nothing, so its absence fails them.
fn promtool() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).map(|dir| dir.join("promtool")).find(|p| p.is_file()).unwrap_or_else(|| {
        panic!("promtool not found on PATH: install Debian's `prometheus` package (`apt-get install prometheus`; scripts/test.sh installs it)")
    })
}

fn promtool_ok(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new(promtool()).args(args).current_dir(dir).output().expect("promtool runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool {} in {} failed:\n{text}", args.join(" "), dir.display());
    text
}

fn load(name: &str) -> Inventory {
    let loaded = inventory::load(Path::new(&format!("inventories/{name}.yaml"))).unwrap();
    loaded.inventory.unwrap_or_else(|| panic!("{name}: {:?}", loaded.diagnostics))
}

/// The real binary's output folder for an example inventory.
fn render(name: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("monitoring");
    Command::cargo_bin("kubeha").unwrap().args(["monitoring", "render", "-i", &format!("inventories/{name}.yaml"), "-o"]).arg(&out).assert().success();
    (tmp, out)
}

#[test]
fn rendered_configuration_and_rules_pass_promtool_check() {
    for name in INVENTORIES {
        let (_tmp, out) = render(name);
        let config = promtool_ok(&out, &["check", "config", "prometheus.yml"]);
        assert!(config.contains("1 rule files found"), "{name}: {config}");
        promtool_ok(&out, &["check", "rules", "rules.yml"]);
    }
}

#[derive(Deserialize)]
struct RuleFile {
    groups: Vec<RuleGroup>,
}

#[derive(Deserialize)]
struct RuleGroup {
    rules: Vec<Rule>,
}

#[derive(Deserialize)]
struct Rule {
    alert: Option<String>,
    #[serde(default)]
    labels: Labels,
    #[serde(default)]
    annotations: Labels,
}

fn rendered_rules(out: &Path) -> Vec<Rule> {
    let text = std::fs::read_to_string(out.join("rules.yml")).unwrap();
    let file: RuleFile = serde_saphyr::from_str(&text).unwrap();
    file.groups.into_iter().flat_map(|g| g.rules).filter(|r| r.alert.is_some()).collect()
}

/// The labels Prometheus gives every series of `h` scraped by `job` on `port` (scrape::host_labels + job, instance).
fn target(job: &str, port: u16, h: &Host) -> Labels {
    let mut labels = scrape::host_labels(h);
    labels.insert("job".into(), job.into());
    labels.insert("instance".into(), context::host_port(&h.address.to_string(), port));
    labels
}

fn with(mut labels: Labels, extra: &[(&str, &str)]) -> Labels {
    labels.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    labels
}

fn series(metric: &str, labels: &Labels, values: &str) -> Value {
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    json!({"series": format!("{metric}{{{}}}", inner.join(", ")), "values": values})
}

/// An alert the case expects: the rule it comes from (the alert's rules told apart by their own labels) and the
/// labels of the series that fire it.
struct Expected {
    rule: Labels,
    labels: Labels,
}

struct Case {
    alert: &'static str,
    what: String,
    input: Vec<Value>,
    eval: &'static str,
    fires: Vec<Expected>,
}

fn fires(labels: Labels) -> Expected {
    Expected { rule: Labels::new(), labels }
}

fn fires_rule(rule: &[(&str, &str)], labels: Labels) -> Expected {
    Expected { rule: with(Labels::new(), rule), labels }
}

/// The alert Prometheus raises: series labels plus the rule's, its annotations with `{{ $labels.x }}` filled in.
fn expected_alert(rules: &[Rule], alert: &str, e: &Expected) -> Value {
    let rule = rules
        .iter()
        .find(|r| r.alert.as_deref() == Some(alert) && e.rule.iter().all(|(k, v)| r.labels.get(k) == Some(v)))
        .unwrap_or_else(|| panic!("no rule {alert} with labels {:?}", e.rule));
    let mut labels = e.labels.clone();
    labels.extend(rule.labels.clone());
    let annotations: Labels = rule
        .annotations
        .iter()
        .map(|(k, text)| (k.clone(), labels.iter().fold(text.clone(), |t, (name, value)| t.replace(&format!("{{{{ $labels.{name} }}}}"), value))))
        .collect();
    assert!(annotations.values().all(|a| !a.contains("{{")), "{alert}: annotation with a template this test cannot fill: {annotations:?}");
    json!({"exp_labels": labels, "exp_annotations": annotations})
}

/// `kubeha status`'s report with `down` unhealthy (not answering): the domains whose loss would then lose quorum.
fn status_domains_that_would_lose_quorum(inv: &Inventory, down: &[&str]) -> Vec<(String, String)> {
    let members: Vec<Member> = inv.control_planes().enumerate().map(|(i, h)| host_member(i as u64 + 1, h)).collect();
    let leader = members.iter().find(|m| !down.contains(&m.name.as_str())).map_or(0, |m| m.id);
    let view = view(members, leader, down);
    let seen = kubeha::status::Observations {
        unreachable: BTreeMap::new(),
        etcd: Ok(view),
        vip: BTreeMap::new(),
        certs: BTreeMap::new(),
        backups: BTreeMap::new(),
        now: 0,
    };
    let report = kubeha::status::report(inv, "t.yaml", &seen);
    report.domains.iter().filter(|d| d.more_losses_if_lost < 0).map(|d| (d.kind.name().to_string(), d.name.clone())).collect()
}

/// up and has_leader for every member, `down` answering nothing.
fn etcd_members(cps: &[&Host], down: &[&str]) -> Vec<Value> {
    let mut input = Vec::new();
    for h in cps {
        let t = target(ETCD_JOB, ETCD_METRICS_PORT, h);
        let is_down = down.contains(&h.name.as_str());
        input.push(series("up", &t, if is_down { "0x30" } else { "1x30" }));
        if !is_down {
            input.push(series("etcd_server_has_leader", &t, "1x30"));
        }
    }
    input
}

fn etcd_cases(inv: &Inventory) -> Vec<Case> {
    let cps: Vec<&Host> = inv.control_planes().collect();
    let first = cps[0];
    let etcd = |h: &Host| target(ETCD_JOB, ETCD_METRICS_PORT, h);
    let per_member = |metric: &str, values: &dyn Fn(&Host) -> &'static str| -> Vec<Value> { cps.iter().map(|h| series(metric, &etcd(h), values(h))).collect() };
    let mut cases = Vec::new();

    for (leaderless, what) in [(true, "the first member has no leader"), (false, "every member has a leader")] {
        let mut input = per_member("up", &|_| "1x15");
        input.extend(per_member("etcd_server_has_leader", &|h| if leaderless && h.name == first.name { "0x15" } else { "1x15" }));
        let fires = if leaderless { vec![fires(etcd(first))] } else { vec![] };
        cases.push(Case { alert: "KubehaEtcdNoLeader", what: what.into(), input, eval: "10m", fires });
    }
    for (down, what) in [(true, "the first member does not answer"), (false, "every member answers")] {
        let downs: Vec<&str> = if down { vec![first.name.as_str()] } else { vec![] };
        let fires = if down { vec![fires(etcd(first))] } else { vec![] };
        cases.push(Case { alert: "KubehaEtcdMemberDown", what: what.into(), input: etcd_members(&cps, &downs), eval: "10m", fires });
    }

    // Margin 0: exactly a quorum healthy. One member fewer down keeps a margin of 1.
    let quorum = kubeha::etcd::quorum::quorum(cps.len());
    let at_margin_zero = cps.len() - quorum;
    for down_count in [Some(at_margin_zero), at_margin_zero.checked_sub(1)].into_iter().flatten() {
        let downs: Vec<&str> = cps.iter().take(down_count).map(|h| h.name.as_str()).collect();
        let fires = if down_count == at_margin_zero { vec![fires(Labels::new())] } else { vec![] };
        let what = format!("{down_count} of {} members down (quorum {quorum})", cps.len());
        cases.push(Case { alert: "KubehaEtcdQuorumMarginZero", what, input: etcd_members(&cps, &downs), eval: "10m", fires });
    }

    for (frequent, what) in [(true, "one member sees a leader change every minute"), (false, "leader changes long ago only")] {
        let input = per_member("etcd_server_leader_changes_seen_total", &|h| if frequent && h.name == first.name { "0+1x20" } else { "3x20" });
        let fires = if frequent { vec![fires(etcd(first))] } else { vec![] };
        cases.push(Case { alert: "KubehaEtcdFrequentLeaderChanges", what: what.into(), input, eval: "15m", fires });
    }
    for (near, what) in [(true, "the first member's database is at 90% of its quota"), (false, "every database at 5% of its quota")] {
        let mut input = per_member("etcd_mvcc_db_total_size_in_bytes", &|h| if near && h.name == first.name { "1800000000x20" } else { "100000000x20" });
        input.extend(per_member("etcd_server_quota_backend_bytes", &|_| "2000000000x20"));
        let fires = if near { vec![fires(etcd(first))] } else { vec![] };
        cases.push(Case { alert: "KubehaEtcdDatabaseNearQuota", what: what.into(), input, eval: "15m", fires });
    }
    cases
}

/// Per failure domain: with the first member down, the domains `kubeha status` says could not be lost now.
fn domain_cases(inv: &Inventory, rules: &[Rule]) -> Vec<Case> {
    let cps: Vec<&Host> = inv.control_planes().collect();
    let first = cps[0];
    let rendered: BTreeSet<(String, String)> = rules
        .iter()
        .filter(|r| r.alert.as_deref() == Some("KubehaEtcdDomainLossWouldLoseQuorum"))
        .map(|r| (r.labels["domain_kind"].clone(), r.labels["domain"].clone()))
        .collect();
    let design = kubeha::topology::analyse(inv);
    let would_lose = status_domains_that_would_lose_quorum(inv, &[&first.name]);
    for (kind, name) in &would_lose {
        // A domain without a rule must be one the design itself cannot lose (`kubeha check` warns about those).
        let survives_by_design = design.domains.iter().any(|d| d.kind.name() == kind && &d.name == name && d.survives);
        assert!(rendered.contains(&(kind.clone(), name.clone())) || !survives_by_design, "{}: no rule for {kind} {name}", inv.name);
    }
    let expected: Vec<Expected> = would_lose
        .iter()
        .filter(|d| rendered.contains(d))
        .map(|(kind, name)| fires_rule(&[("domain", name)], with(Labels::new(), &[("domain_kind", kind), ("domain", name)])))
        .collect();
    // No rule at all when the design can lose no domain it declares (single-rack): nothing to test then.
    if rendered.is_empty() {
        return vec![];
    }
    vec![
        Case {
            alert: "KubehaEtcdDomainLossWouldLoseQuorum",
            what: format!("{} down: status says losing {would_lose:?} would lose quorum", first.name),
            input: etcd_members(&cps, &[&first.name]),
            eval: "10m",
            fires: expected,
        },
        Case { alert: "KubehaEtcdDomainLossWouldLoseQuorum", what: "every member healthy".into(), input: etcd_members(&cps, &[]), eval: "10m", fires: vec![] },
    ]
}

fn backup_cases(inv: &Inventory) -> Vec<Case> {
    let first = inv.control_planes().next().unwrap();
    let metrics = target(KUBEHA_METRICS_JOB, KUBEHA_METRICS_PORT, first);
    let backup = |values: &str| series(kubeha::monitoring::rules::BACKUP_METRIC, &metrics, values);
    // Sample values are Unix times; the test clock starts at 0, so "0+60x200" is a backup every minute.
    vec![
        Case {
            alert: "KubehaEtcdBackupTooOld",
            what: "last backup at time 0, 3 h ago".into(),
            input: vec![backup("0x200")],
            eval: "3h",
            fires: vec![fires(Labels::new())],
        },
        Case { alert: "KubehaEtcdBackupTooOld", what: "a backup every minute".into(), input: vec![backup("0+60x200")], eval: "3h", fires: vec![] },
        Case {
            alert: "KubehaEtcdBackupMissing",
            what: "no backup metric for 2.5 h".into(),
            input: vec![series("up", &metrics, "1x200")],
            eval: "150m",
            fires: vec![fires(Labels::new())],
        },
        Case { alert: "KubehaEtcdBackupMissing", what: "the backup metric present".into(), input: vec![backup("0+60x200")], eval: "150m", fires: vec![] },
    ]
}

fn certificate_cases(inv: &Inventory) -> Vec<Case> {
    let first = inv.control_planes().next().unwrap();
    let worker = inv.hosts.last().unwrap();
    let kubelet = target(KUBELET_JOB, KUBELET_PORT, worker);
    let apiserver = target(APISERVER_JOB, API_SERVER_PORT, first);
    let mut cases = Vec::new();
    for (metric, certificate) in
        [("kubelet_certificate_manager_client_ttl_seconds", "kubelet-client"), ("kubelet_certificate_manager_server_ttl_seconds", "kubelet-serving")]
    {
        let ten_days = vec![series(metric, &kubelet, "864000x10")];
        let fired = vec![fires_rule(&[("certificate", certificate)], kubelet.clone())];
        cases.push(Case { alert: "KubehaCertificateExpiresSoon", what: format!("{certificate}: 10 days left"), input: ten_days, eval: "5m", fires: fired });
        let long = vec![series(metric, &kubelet, "25920000x10")];
        cases.push(Case { alert: "KubehaCertificateExpiresSoon", what: format!("{certificate}: 300 days left"), input: long, eval: "5m", fires: vec![] });
    }
    // The API server's histogram of the client certificates presented to it: all expiring within a day, or within
    // about a year.
    let buckets = ["0", "1800", "3600", "7200", "21600", "43200", "86400", "172800", "345600", "604800", "2592000", "7776000", "15552000", "31104000", "+Inf"];
    for (smallest, fire) in [("86400", true), ("31104000", false)] {
        let smallest: f64 = smallest.parse().unwrap();
        let mut input: Vec<Value> = buckets
            .iter()
            .map(|le| {
                let counted = *le == "+Inf" || le.parse::<f64>().unwrap() >= smallest;
                series(
                    "apiserver_client_certificate_expiration_seconds_bucket",
                    &with(apiserver.clone(), &[("le", le)]),
                    if counted { "0+10x20" } else { "0x20" },
                )
            })
            .collect();
        input.push(series("apiserver_client_certificate_expiration_seconds_count", &apiserver, "0+10x20"));
        let fired = if fire { vec![fires_rule(&[("certificate", "apiserver-clients")], apiserver.clone())] } else { vec![] };
        let what = format!("API server clients' certificates expire after {smallest} s at the earliest");
        cases.push(Case { alert: "KubehaCertificateExpiresSoon", what, input, eval: "10m", fires: fired });
    }
    cases
}

fn api_cases(inv: &Inventory) -> Vec<Case> {
    let cps: Vec<&Host> = inv.control_planes().collect();
    let first = cps[0];
    let mut cases = Vec::new();
    if let Some(vrrp) = inv.load_balancer.vrrp() {
        let vip = vrrp.vip.to_string();
        let held = |holders: usize| -> Vec<Value> {
            cps.iter()
                .enumerate()
                .map(|(i, h)| {
                    series(
                        kubeha::monitoring::rules::VIP_METRIC,
                        &with(target(KUBEHA_METRICS_JOB, KUBEHA_METRICS_PORT, h), &[("vip", &vip)]),
                        if i < holders { "1x10" } else { "0x10" },
                    )
                })
                .collect()
        };
        cases.push(Case { alert: "KubehaVipHeldByNone", what: "no holder".into(), input: held(0), eval: "5m", fires: vec![fires(Labels::new())] });
        cases.push(Case { alert: "KubehaVipHeldByNone", what: "one holder".into(), input: held(1), eval: "5m", fires: vec![] });
        cases.push(Case { alert: "KubehaVipHeldByTwo", what: "two holders".into(), input: held(2), eval: "5m", fires: vec![fires(Labels::new())] });
        cases.push(Case { alert: "KubehaVipHeldByTwo", what: "one holder".into(), input: held(1), eval: "5m", fires: vec![] });

        let server = cps[1].name.as_str();
        let haproxy = target(HAPROXY_JOB, HAPROXY_EXPORTER_PORT, first);
        let backend = kubeha::monitoring::rules::HAPROXY_BACKEND;
        let state = |s: &str| with(haproxy.clone(), &[("proxy", backend), ("server", server), ("state", s)]);
        for (down, what) in [(true, "HAProxy on the first control plane finds the second's API server down"), (false, "every API server up")] {
            let input = vec![
                series("haproxy_server_status", &state("DOWN"), if down { "1x10" } else { "0x10" }),
                series("haproxy_server_status", &state("UP"), if down { "0x10" } else { "1x10" }),
            ];
            let fired = if down { vec![fires(state("DOWN"))] } else { vec![] };
            cases.push(Case { alert: "KubehaHaproxyBackendDown", what: what.into(), input, eval: "5m", fires: fired });
        }
    }
    let apiserver = |h: &Host| target(APISERVER_JOB, API_SERVER_PORT, h);
    let check = |h: &Host, name: &str| with(apiserver(h), &[("name", name), ("type", "readyz")]);
    let ready = |h: &Host| vec![series("up", &apiserver(h), "1x10"), series("kubernetes_healthcheck", &check(h, "etcd"), "1x10")];
    let mut unreachable: Vec<Value> = cps.iter().skip(1).flat_map(|h| ready(h)).collect();
    unreachable.push(series("up", &apiserver(first), "0x10"));
    cases.push(Case {
        alert: "KubehaApiServerNotReady",
        what: "the first API server does not answer".into(),
        input: unreachable,
        eval: "5m",
        fires: vec![fires(apiserver(first))],
    });
    let mut failing: Vec<Value> = cps.iter().skip(1).flat_map(|h| ready(h)).collect();
    failing.extend([
        series("up", &apiserver(first), "1x10"),
        series("kubernetes_healthcheck", &check(first, "etcd"), "0x10"),
        series("kubernetes_healthcheck", &check(first, "ping"), "1x10"),
    ]);
    cases.push(Case {
        alert: "KubehaApiServerNotReady",
        what: "the first API server's etcd readyz check fails".into(),
        input: failing,
        eval: "5m",
        fires: vec![fires(apiserver(first))],
    });
    let all_ready: Vec<Value> = cps.iter().flat_map(|h| ready(h)).collect();
    cases.push(Case { alert: "KubehaApiServerNotReady", what: "every API server ready".into(), input: all_ready, eval: "5m", fires: vec![] });
    cases
}

/// Writes one `promtool test rules` file per alert under OUT/tests and returns their names.
fn write_rule_tests(out: &Path, rules: &[Rule], cases: &[Case]) -> Vec<String> {
    let dir = out.join("tests");
    std::fs::create_dir_all(&dir).unwrap();
    let alerts: BTreeSet<&str> = cases.iter().map(|c| c.alert).collect();
    let mut files = Vec::new();
    for alert in alerts {
        let tests: Vec<Value> = cases
            .iter()
            .filter(|c| c.alert == alert)
            .map(|c| {
                let exp_alerts: Vec<Value> = c.fires.iter().map(|e| expected_alert(rules, alert, e)).collect();
                json!({
                    "name": format!("{alert}: {}", c.what),
                    "interval": "1m",
                    "input_series": c.input,
                    "alert_rule_test": [{"eval_time": c.eval, "alertname": alert, "exp_alerts": exp_alerts}],
                })
            })
            .collect();
        // JSON is YAML: promtool reads it as such.
        let file = json!({"rule_files": ["../rules.yml"], "evaluation_interval": "1m", "tests": tests});
        let name = format!("tests/{alert}.test.yml");
        std::fs::write(out.join(&name), serde_json::to_string_pretty(&file).unwrap()).unwrap();
        files.push(name);
    }
    files
}

#[test]
fn every_alert_fires_when_it_should_and_stays_silent_otherwise() {
    for name in INVENTORIES {
        let inv = load(name);
        let (_tmp, out) = render(name);
        let rules = rendered_rules(&out);
        let mut cases = etcd_cases(&inv);
        cases.extend(domain_cases(&inv, &rules));
        if inv.load_balancer.vrrp().is_some() {
            cases.extend(backup_cases(&inv));
        }
        cases.extend(certificate_cases(&inv));
        cases.extend(api_cases(&inv));

        // Every alert the rules define has a case that fires it and one that keeps it silent.
        let defined: BTreeSet<&str> = rules.iter().filter_map(|r| r.alert.as_deref()).collect();
        for alert in &defined {
            let of_alert: Vec<&Case> = cases.iter().filter(|c| c.alert == *alert).collect();
            assert!(of_alert.iter().any(|c| !c.fires.is_empty()), "{name}: no case fires {alert}");
            assert!(of_alert.iter().any(|c| c.fires.is_empty()), "{name}: no case keeps {alert} silent");
        }
        let tested: BTreeSet<&str> = cases.iter().map(|c| c.alert).collect();
        assert_eq!(tested, defined, "{name}: cases for alerts the rules do not define");

        let files = write_rule_tests(&out, &rules, &cases);
        let mut args = vec!["test", "rules"];
        args.extend(files.iter().map(String::as_str));
        let report = promtool_ok(&out, &args);
        assert_eq!(report.matches("SUCCESS").count(), files.len(), "{name}: {report}");
    }
}

/// kubeha-metrics answers an HTTP request with metrics promtool accepts, reads the VIP from the interfaces and
/// passes the textfiles through. Run with sh on this machine: loopback's 127.0.0.1 stands in for the VIP.
#[test]
fn kubeha_metrics_script_answers_valid_metrics() {
    let inv = load("lab");
    let files =
        kubeha::render::render(&inv, &kubeha::render::secrets::Secrets::fixed_for_tests(), &kubeha::render::templates::Templates::builtin().unwrap()).unwrap();
    let script = files.iter().find(|f| f.path == kubeha::paths::KUBEHA_METRICS_SCRIPT).expect("kubeha-metrics is rendered for the lab's control planes");
    let vip = inv.load_balancer.vrrp().unwrap().vip.to_string();
    let tmp = tempfile::tempdir().unwrap();
    let textfiles = tmp.path().join("metrics");
    std::fs::create_dir(&textfiles).unwrap();
    let backup =
        format!("# HELP {m} Unix time of the last verified etcd snapshot.\n# TYPE {m} gauge\n{m} 1.7e+09\n", m = kubeha::monitoring::rules::BACKUP_METRIC);
    std::fs::write(textfiles.join("etcd-backup.prom"), &backup).unwrap();
    let text = script.contents.replace(&format!(" {vip}/"), " 127.0.0.1/").replace(kubeha::paths::METRICS_TEXTFILE_DIR, &textfiles.display().to_string());
    let path = tmp.path().join("kubeha-metrics");
    std::fs::write(&path, text).unwrap();

    let out = std::process::Command::new("sh")
        .arg(&path)
        .stdin(
            std::fs::File::open({
                let request = tmp.path().join("request");
                std::fs::write(&request, "GET /metrics HTTP/1.1\r\nHost: cp-1:9654\r\nAccept: */*\r\n\r\n").unwrap();
                request
            })
            .unwrap(),
        )
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let answer = String::from_utf8(out.stdout).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP head ends with an empty line");
    assert!(head.starts_with("HTTP/1.0 200 OK\r\n") && head.contains("Content-Type: text/plain; version=0.0.4"), "{head}");
    assert!(body.contains(&format!("kubeha_vip_held{{vip=\"{vip}\"}} 1\n")), "loopback holds the stand-in VIP:\n{body}");
    assert!(body.ends_with(&backup), "the textfile is passed through as it is:\n{body}");

    let mut check = std::process::Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    check.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let checked = check.wait_with_output().unwrap();
    assert!(checked.status.success(), "promtool check metrics: {}{}", String::from_utf8_lossy(&checked.stdout), String::from_utf8_lossy(&checked.stderr));
}

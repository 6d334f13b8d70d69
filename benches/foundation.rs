//! `cargo bench --bench foundation`: check, plan and render of a generated 5,000-host inventory.
//! Prints wall times (best and median of several runs, in-process and as the real binary) and the peak
//! resident memory of the process. Goal from the issue: check and plan under 1 s and 200 MiB.
use kubeha::inventory::{self, PathContext};
use kubeha::render::{self, secrets::Secrets, templates::Templates};
use std::time::{Duration, Instant};

const HOSTS: usize = 5_000;
const CONTROL_PLANES: usize = 5;
const RUNS: usize = 7;

fn generate() -> String {
    let mut y = String::from(
        "apiVersion: kubeha/v1alpha1\nkind: Cluster\nmetadata: {name: big}\nspec:\n  kubernetes: {version: 1.36.4, cni: calico}\n  etcd: {version: 3.6.14}\n  controlPlane:\n    loadBalancer: {mode: keepalived-haproxy, vip: 198.18.0.100/24}\n  hosts:\n",
    );
    for i in 0..HOSTS {
        let zone = ["az-a", "az-b", "az-c"][i % 3];
        let (name, role, address) = if i < CONTROL_PLANES {
            (format!("cp-{i}"), "control-plane", format!("198.18.0.{}", i + 11))
        } else {
            (format!("wk-{i}"), "worker", format!("198.19.{}.{}", i / 250, i % 250 + 1))
        };
        y.push_str(&format!("  - {{name: {name}, address: {address}, roles: [{role}], zone: {zone}, rack: r{}}}\n", i % 50));
    }
    y
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()).unwrap_or(f64::NAN);
    kib / 1024.0
}

fn measure(label: &str, mut f: impl FnMut()) {
    let mut times: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort();
    println!("{label:<44} best {:>8.1} ms   median {:>8.1} ms", ms(times[0]), ms(times[RUNS / 2]));
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let text = generate();
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("big.yaml");
    std::fs::write(&file, &text).expect("write inventory");
    println!("inventory: {HOSTS} hosts ({CONTROL_PLANES} control planes), {} KiB", text.len() / 1024);
    let paths = PathContext { inventory_dir: ".".into(), home: None };
    let base_rss = peak_rss_mib();

    measure("in-process: parse + validate + topology", || {
        let loaded = inventory::parse("big.yaml".into(), text.clone(), &paths);
        let inv = loaded.inventory.expect("valid");
        std::hint::black_box(kubeha::topology::analyse(&inv));
    });
    let inv = inventory::parse("big.yaml".into(), text.clone(), &paths).inventory.expect("valid");
    measure("in-process: plan --offline (build + text)", || {
        let plan = kubeha::plan::offline(&inv).unwrap();
        std::hint::black_box(kubeha::plan::text(&plan));
    });
    let templates = Templates::builtin().expect("templates");
    measure("in-process: render all files (in memory)", || {
        std::hint::black_box(render::render(&inv, &Secrets::fixed_for_tests(), &templates).expect("render"));
    });
    println!("peak resident memory of this process: {:.1} MiB (before the runs: {base_rss:.1} MiB)", peak_rss_mib());

    let binary = env!("CARGO_BIN_EXE_kubeha");
    for args in [vec!["check"], vec!["plan", "--offline"], vec!["plan", "--offline", "--output", "json"]] {
        measure(&format!("binary: kubeha {}", args.join(" ")), || {
            let out = std::process::Command::new(binary).args(&args).arg("-i").arg(&file).output().expect("run kubeha");
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        });
    }
    // Peak memory of the binary itself, when GNU time is installed to report it.
    for args in [vec!["check"], vec!["plan", "--offline"]] {
        let out = std::process::Command::new("/usr/bin/time").args(["-f", "%M"]).arg(binary).args(&args).arg("-i").arg(&file).output();
        if let Some(out) = out.ok().filter(|o| o.status.success()) {
            let kib: f64 = String::from_utf8_lossy(&out.stderr).lines().last().and_then(|l| l.trim().parse().ok()).unwrap_or(f64::NAN);
            println!("binary: kubeha {:<30} peak resident memory {:.1} MiB", args.join(" "), kib / 1024.0);
        }
    }
}

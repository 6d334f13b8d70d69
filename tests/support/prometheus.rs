//! A real Prometheus (Debian's package) on 127.0.0.1 for lab tests: started on a rendered `kubeha monitoring
//! render` folder, asked through its HTTP API, stopped by its PID on every exit path (Drop).
#![allow(dead_code)]
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Prometheus {
    child: Child,
    pub base: String,
    _storage: tempfile::TempDir,
}

/// One scrape target as /api/v1/targets reports it.
#[derive(Debug, Clone)]
pub struct Target {
    pub job: String,
    pub instance: String,
    pub health: String,
    pub last_error: String,
}

impl Prometheus {
    /// Runs `prometheus` on `dir`/prometheus.yml, listening on a free loopback port, its data in a temp folder.
    pub fn start(dir: &Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let storage = tempfile::tempdir().unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", storage.path().display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus (Debian's package, installed by scripts/test.sh)");
        let p = Prometheus { child, base: format!("http://127.0.0.1:{port}"), _storage: storage };
        let started = Instant::now();
        while p.get("/-/ready").is_none() {
            assert!(started.elapsed() < Duration::from_secs(30), "prometheus did not get ready within 30 s");
            std::thread::sleep(Duration::from_millis(200));
        }
        p
    }

    fn get(&self, path: &str) -> Option<String> {
        let out = Command::new("curl").args(["-fsS", "--max-time", "5", &format!("{}{path}", self.base)]).output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn api(&self, path: &str) -> serde_json::Value {
        let body = self.get(path).unwrap_or_else(|| panic!("prometheus {path} did not answer"));
        serde_json::from_str(&body).unwrap()
    }

    pub fn targets(&self) -> Vec<Target> {
        let doc = self.api("/api/v1/targets?state=active");
        doc["data"]["activeTargets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| Target {
                job: t["labels"]["job"].as_str().unwrap_or("").into(),
                instance: t["labels"]["instance"].as_str().unwrap_or("").into(),
                health: t["health"].as_str().unwrap_or("").into(),
                last_error: t["lastError"].as_str().unwrap_or("").into(),
            })
            .collect()
    }

    /// The names of the alerts firing now (pending ones are not yet).
    pub fn firing(&self) -> Vec<String> {
        let doc = self.api("/api/v1/alerts");
        let mut names: Vec<String> = doc["data"]["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["state"] == "firing")
            .filter_map(|a| a["labels"]["alertname"].as_str().map(String::from))
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// Waits (bounded) until `ok` holds for the targets; panics with the last seen ones.
    pub fn wait_targets(&self, within: Duration, ok: impl Fn(&[Target]) -> bool) -> Vec<Target> {
        let started = Instant::now();
        loop {
            let t = self.targets();
            if ok(&t) {
                return t;
            }
            assert!(started.elapsed() < within, "targets after {within:?}: {t:#?}");
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    /// Waits (bounded) until every alert of `names` fires; returns how long that took.
    pub fn wait_firing(&self, names: &[&str], within: Duration) -> Duration {
        let started = Instant::now();
        loop {
            let firing = self.firing();
            if names.iter().all(|n| firing.iter().any(|f| f == n)) {
                return started.elapsed();
            }
            assert!(started.elapsed() < within, "after {within:?} firing {firing:?}, wanted {names:?}");
            std::thread::sleep(Duration::from_secs(2));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

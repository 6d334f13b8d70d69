//! A real etcd cluster on loopback for tests: members on 127.0.0.x, TLS with certificates from kubeha's PKI,
//! client-cert auth on both ports. Members are stopped by PID when the cluster is dropped, on every exit path.
#![allow(dead_code)]
use kubeha::pki::{Authority, LeafSpec};
use std::net::{IpAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long a test waits for a freshly started cluster to be healthy.
pub const HEALTHY_WITHIN: Duration = Duration::from_secs(30);

pub struct Member {
    pub name: String,
    pub ip: String,
    pub child: Option<Child>,
}

pub struct EtcdCluster {
    pub dir: tempfile::TempDir,
    pub members: Vec<Member>,
    pub token: String,
    ca_key: kubeha::pki::PrivateKeyPem,
    client_port: u16,
    peer_port: u16,
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

/// A member's certificate (server and peer, both purposes) written as NAME.crt / NAME.key into `dir`.
fn issue_member(ca: &Authority, dir: &Path, name: &str, ip: IpAddr) {
    let spec = LeafSpec { common_name: name.into(), dns_names: vec!["localhost".into()], ips: vec![ip], server: true, client: true, ..LeafSpec::default() };
    let cert = ca.issue(&spec).unwrap();
    write(&dir.join(format!("{name}.crt")), &cert.cert_pem);
    write(&dir.join(format!("{name}.key")), cert.key_pem.expose());
}

impl EtcdCluster {
    /// Ports are derived from the test's own number so parallel test binaries never collide.
    pub fn start(names: &[&str], first_ip: u8, port_base: u16) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = Authority::generate("test-etcd-ca").unwrap();
        write(&dir.path().join("ca.crt"), ca.cert_pem());
        let members: Vec<Member> =
            names.iter().enumerate().map(|(i, n)| Member { name: n.to_string(), ip: format!("127.0.0.{}", first_ip + i as u8), child: None }).collect();
        for m in &members {
            issue_member(&ca, dir.path(), &m.name, m.ip.parse().unwrap());
        }
        let client = ca.issue(&LeafSpec { common_name: "kubeha".into(), client: true, ..LeafSpec::default() }).unwrap();
        write(&dir.path().join("client.crt"), &client.cert_pem);
        write(&dir.path().join("client.key"), client.key_pem.expose());
        let mut cluster = Self { dir, members, token: format!("test-{port_base}"), ca_key: ca.key_pem(), client_port: port_base, peer_port: port_base + 1 };
        let initial: Vec<String> = cluster.members.iter().map(|m| format!("{}={}", m.name, cluster.peer_url(m))).collect();
        for i in 0..cluster.members.len() {
            cluster.spawn(i, &initial.join(","), "new");
        }
        cluster
    }

    pub fn peer_url(&self, m: &Member) -> String {
        format!("https://{}:{}", m.ip, self.peer_port)
    }

    pub fn client_url(&self, m: &Member) -> String {
        format!("https://{}:{}", m.ip, self.client_port)
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Starts member `i` (again) with the given initial cluster; its data dir survives restarts.
    pub fn spawn(&mut self, i: usize, initial_cluster: &str, state: &str) {
        let m = &self.members[i];
        let f = |n: &str| self.file(n).to_string_lossy().into_owned();
        let log = std::fs::File::create(self.file(&format!("{}.log", m.name))).unwrap();
        let child = Command::new("etcd")
            .args(["--name", &m.name, "--data-dir", &f(&format!("{}.data", m.name))])
            .args(["--listen-client-urls", &self.client_url(m), "--advertise-client-urls", &self.client_url(m)])
            .args(["--listen-peer-urls", &self.peer_url(m), "--initial-advertise-peer-urls", &self.peer_url(m)])
            .args(["--initial-cluster", initial_cluster, "--initial-cluster-state", state, "--initial-cluster-token", &self.token])
            .args([
                "--cert-file",
                &f(&format!("{}.crt", m.name)),
                "--key-file",
                &f(&format!("{}.key", m.name)),
                "--trusted-ca-file",
                &f("ca.crt"),
                "--client-cert-auth",
            ])
            .args([
                "--peer-cert-file",
                &f(&format!("{}.crt", m.name)),
                "--peer-key-file",
                &f(&format!("{}.key", m.name)),
                "--peer-trusted-ca-file",
                &f("ca.crt"),
                "--peer-client-cert-auth",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("etcd (Debian package etcd-server)");
        self.members[i].child = Some(child);
    }

    /// Registers a member (with its certificate) that is not started yet; etcd membership is the caller's.
    pub fn add_member(&mut self, name: &str, ip: &str) -> usize {
        let ca = Authority::from_pem(&std::fs::read_to_string(self.file("ca.crt")).unwrap(), &self.ca_key).unwrap();
        issue_member(&ca, self.dir.path(), name, ip.parse().unwrap());
        self.members.push(Member { name: name.into(), ip: ip.into(), child: None });
        self.members.len() - 1
    }

    pub fn stop(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// etcdctl as kubeha uses it: v3 API, TLS with the kubeha client certificate.
    pub fn etcdctl(&self, endpoints: &[&Member], args: &[&str]) -> Output {
        let eps: Vec<String> = endpoints.iter().map(|m| self.client_url(m)).collect();
        Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &eps.join(","), "--cacert"])
            .arg(self.file("ca.crt"))
            .arg("--cert")
            .arg(self.file("client.crt"))
            .arg("--key")
            .arg(self.file("client.key"))
            .args(["--dial-timeout", "2s", "--command-timeout", "3s"])
            .args(args)
            .output()
            .unwrap()
    }

    /// Waits (bounded) until every running member answers health through TLS.
    pub fn wait_healthy(&self, deadline: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < deadline {
            let running: Vec<&Member> = self.members.iter().filter(|m| m.child.is_some()).collect();
            let reachable = running.iter().all(|m| TcpStream::connect((m.ip.as_str(), self.client_port)).is_ok());
            if reachable && self.etcdctl(&running, &["endpoint", "health"]).status.success() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.stop(i);
        }
    }
}

impl EtcdCluster {
    /// etcd's view of itself, asked through the running members, as kubeha reads it.
    pub fn view(&self) -> kubeha::etcd::gate::View {
        let any: Vec<&Member> = self.members.iter().filter(|m| m.child.is_some()).collect();
        let text = |args: &[&str]| String::from_utf8_lossy(&self.etcdctl(&any, args).stdout).into_owned();
        kubeha::etcd::gate::View::from_etcdctl(
            // Served by the member itself, as kubeha asks (etcd 3.6 lists linearizably by default).
            &text(&["member", "list", "--consistency=s", "-w", "json"]),
            &text(&["endpoint", "status", "--cluster", "-w", "json"]),
            &text(&["endpoint", "health", "--cluster", "-w", "json"]),
        )
        .unwrap()
    }
}

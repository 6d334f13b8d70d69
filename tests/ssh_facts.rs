//! `facts::gather` against real sshd hosts, one of them unreachable.
mod support;

use std::time::Duration;

use kubeha::facts::{self, FactsError, report};
use kubeha::ssh::{ConnectOptions, HostTarget, SshError};
use support::sshd::TestSshd;

#[tokio::test(flavor = "multi_thread")]
async fn gather_reports_every_host_and_names_the_failed_one() {
    let a = TestSshd::start("127.0.0.35");
    let b = TestSshd::start("127.0.0.36");
    // Something listening on a watched port, as etcd would (tolerate a leftover listener of an earlier run).
    let _etcd_like = std::net::TcpListener::bind(("127.0.0.35", 2379));
    let closed_port = std::net::TcpListener::bind(("127.0.0.37", 0)).unwrap().local_addr().unwrap().port();
    let mut down = HostTarget::new("down", "127.0.0.37", "root");
    down.port = closed_port;
    let targets = vec![a.target("a", "root"), down, b.target("b", "root")];

    let opts = ConnectOptions { connect_timeout: Duration::from_secs(10), ..Default::default() };
    let reports = facts::gather(&targets, &opts).await;
    assert_eq!(reports.iter().map(|r| r.host.as_str()).collect::<Vec<_>>(), vec!["a", "down", "b"]);
    assert_eq!(report::failed_hosts(&reports), vec!["down"]);
    assert!(matches!(reports[1].result, Err(FactsError::Ssh(SshError::Refused { .. }))));

    let local_hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let local_cpus = std::thread::available_parallelism().unwrap().get() as u32;
    for r in [&reports[0], &reports[2]] {
        let f = r.result.as_ref().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(f.hostname, local_hostname.trim());
        assert_eq!(f.cpus, local_cpus);
        assert_eq!(f.kernel, String::from_utf8(std::process::Command::new("uname").arg("-r").output().unwrap().stdout).unwrap().trim());
        assert!(f.clock_offset_ms.abs() <= 50 + f.clock_uncertainty_ms, "same machine, offset {}", f.clock_offset_ms);
        assert!(f.memory_bytes > 0);
        assert!(f.listening[&2379], "{:?}", f.listening);
    }
    let text = report::text(&reports);
    assert!(text.contains("1 of 3 hosts failed: down"), "{text}");
    let json = report::json(&reports);
    assert_eq!(json["hosts"][1]["error"]["kind"], "refused");
}

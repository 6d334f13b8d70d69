//! keepalived and HAProxy from kubeha's rendered configuration on the lab's three control planes: exactly one
//! machine holds the VIP, HAProxy listens on the VIP's port, and when the holder loses power the VIP moves.
//! Needs root (see lab_machines.rs).
mod support;
use kubeha::facts::vip::holds_vip;
use kubeha::phases::loadbalancer;
use kubeha::render::secrets::Secrets;
use kubeha::ssh::{Command as Remote, Transport};
use std::collections::HashMap;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::lab::{self, Lab, kubeha};

/// Polls (every 200 ms, at most `within`) until exactly one of `names` holds the VIP; returns it and the time.
async fn single_holder(hosts: &HashMap<String, Arc<dyn Transport>>, names: &[&str], vip: std::net::IpAddr, within: Duration) -> (Vec<String>, Duration) {
    let started = Instant::now();
    loop {
        let mut holders = Vec::new();
        for name in names {
            if holds_vip(hosts[*name].as_ref(), vip).await.unwrap() {
                holders.push(name.to_string());
            }
        }
        if holders.len() == 1 || started.elapsed() > within {
            return (holders, started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn vip_port_answers(vip: std::net::IpAddr, port: u16) -> bool {
    TcpStream::connect_timeout(&SocketAddr::new(vip, port), Duration::from_secs(1)).is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_vip_holder_and_failover_on_power_loss() {
    let lab = Lab::up();
    let inv = &lab.inventory;
    let vrrp = inv.load_balancer.vrrp().unwrap().clone();
    let hosts = lab::connect(inv.control_planes(), inv).await;
    let rendered = lab::rendered(inv, &Secrets::generate("lab").unwrap());
    // Selected by the renderer's group, as the planner does: the load balancer's files now include kubeha-metrics.
    let lb_files = |host: &str| lab::files_of(&rendered, host, ::kubeha::render::Group::LoadBalancer);
    for name in ["cp-1", "cp-2", "cp-3"] {
        assert!(loadbalancer::apply(hosts[name].as_ref(), &lb_files(name)).await.unwrap(), "{name}: first apply writes files");
        let listening = hosts[name].run(&Remote::script(format!("ss -Hltn 'sport = :{}'", vrrp.port))).await.unwrap().stdout_text();
        assert!(!listening.trim().is_empty(), "{name}: HAProxy does not listen on {}", vrrp.port);
    }
    // No API server runs yet, so every health check fails alike: the distinct priorities still decide.
    let (holders, took) = single_holder(&hosts, &["cp-1", "cp-2", "cp-3"], vrrp.vip, Duration::from_secs(20)).await;
    assert_eq!(holders, ["cp-1"], "exactly the highest-priority control plane holds the VIP");
    eprintln!("VIP on cp-1 after {took:?}");
    assert!(vip_port_answers(vrrp.vip, vrrp.port), "HAProxy answers on VIP:port from the operator");

    // Converged: a second apply changes nothing and restarts nothing, the VIP stays.
    for name in ["cp-1", "cp-2", "cp-3"] {
        assert!(!loadbalancer::apply(hosts[name].as_ref(), &lb_files(name)).await.unwrap(), "{name}: second apply changed files");
    }
    assert!(holds_vip(hosts["cp-1"].as_ref(), vrrp.vip).await.unwrap());

    // Power cut on the holder: VRRP moves the VIP to the next priority within seconds.
    assert!(kubeha(&["lab", "kill", "cp-1"]).status.success());
    let (holders, took) = single_holder(&hosts, &["cp-2", "cp-3"], vrrp.vip, Duration::from_secs(10)).await;
    assert_eq!(holders, ["cp-2"], "after {took:?}");
    eprintln!("VIP moved to cp-2 {took:?} after the power cut");
    assert!(vip_port_answers(vrrp.vip, vrrp.port), "VIP:port answers again after failover");
}

//! kubeha: provisions highly-available Kubernetes clusters from one declarative inventory.
pub mod cli;
pub mod etcd;
pub mod exec;
pub mod facts;
pub mod inventory;
pub mod lab;
pub mod monitoring;
pub mod phases;
pub mod pki;
pub mod plan;
pub mod render;
pub mod ssh;
pub mod state;
pub mod status;
pub mod topology;

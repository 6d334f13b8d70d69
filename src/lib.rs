//! kubeha: provisions highly-available Kubernetes clusters from one declarative inventory.
pub mod action;
pub mod artifacts;
pub mod backups;
pub mod cli;
pub mod digest;
pub mod etcd;
pub mod exec;
pub mod facts;
pub mod inventory;
pub mod lab;
pub mod monitoring;
pub mod paths;
pub mod phases;
pub mod pki;
pub mod plan;
pub mod private_file;
pub mod render;
pub mod software;
pub mod ssh;
pub mod state;
pub mod status;
#[cfg(any(test, feature = "test-support"))]
pub mod test_support;
pub mod topology;
pub mod upgrade;

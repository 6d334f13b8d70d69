//! kubeha: provisions highly-available Kubernetes clusters from one declarative inventory.
pub mod cli;
pub mod facts;
pub mod ssh;

//! kubeha: provisions highly-available Kubernetes clusters from one declarative inventory.
pub mod cli;

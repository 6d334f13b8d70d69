//! The effects of plan steps on hosts, one file per phase. Each function runs one step over a Transport.
pub mod backup;
pub mod etcd;
pub mod files;
pub mod host;
pub mod kubeadm;
pub mod loadbalancer;
pub mod restore;
pub mod retire;
pub mod snapshot;
pub mod software;
pub mod upgrade;
pub mod verify;

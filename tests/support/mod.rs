pub mod drill;
pub mod etcd_cluster;
pub mod lab;
pub mod mirror;
pub mod prometheus;
pub mod sshd;

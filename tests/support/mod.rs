pub mod etcd_cluster;
pub mod lab;
pub mod sshd;
pub mod drill;

//! Certificates kubeha issues, made in memory with rcgen: the etcd CA with every member's server and peer
//! certificates and the client certificates of the API server and of kubeha, and the Kubernetes cluster CA,
//! created before `kubeadm init` so that join files can pin it from the start. Private keys leave memory only
//! towards the control planes (mode 0600); their Debug form never shows them.
mod authority;
pub mod etcd;
pub mod expiry;
pub mod sans;

pub use authority::{Authority, Issued, LeafSpec, PrivateKeyPem, TEST_VALIDITY_ENV, discovery_hash, test_validity_days};
pub use etcd::{APISERVER_ETCD_CLIENT, Contents, EtcdFile, etcd_files, member_file_names, member_files, member_leaves};

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("certificate {what}: {source}")]
    Rcgen { what: String, source: rcgen::Error },
    #[error("certificate {what}: {message}")]
    Parse { what: String, message: String },
}

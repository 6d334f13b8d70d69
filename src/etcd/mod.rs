//! etcd membership rules that every command shares (pure).
pub mod quorum;

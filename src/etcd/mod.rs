//! etcd membership rules every command shares (pure): quorum arithmetic, parsed status, quorum gates.
pub mod gate;
pub mod quorum;
pub mod status;

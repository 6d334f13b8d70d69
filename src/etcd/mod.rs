//! etcd membership rules every command shares (pure): quorum arithmetic, parsed status, quorum gates and
//! the membership changes that remain.
pub mod backup;
pub mod gate;
pub mod identity;
pub mod leader;
pub mod membership;
pub mod quorum;
pub mod snapshot;
pub mod status;

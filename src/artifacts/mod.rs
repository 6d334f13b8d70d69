//! Release artifacts on the operator's machine: which files an inventory's hosts need (catalogue), downloading them
//! once with retries and progress (download), verifying them against the checksums their projects publish
//! (checksum), keeping them (cache) and offline bundles (bundle). Hosts never download anything: the software phase
//! calls [`obtain`] for verified local paths and uploads those over SSH.
pub mod bundle;
pub mod cache;
pub mod catalogue;
pub mod checksum;
pub mod download;
mod error;
pub mod listing;
mod obtain;

pub use catalogue::{Artifact, Kind};
pub use error::{ArtifactError, Mismatch};
pub use obtain::{Obtained, Options, Via, obtain, obtain_these};

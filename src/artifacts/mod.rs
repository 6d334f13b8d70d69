//! Release artifacts on the operator's machine: which files an inventory's hosts need (catalogue), downloading them
//! once with retries and progress (download), verifying them against the checksums their projects publish
//! (checksum), keeping them (cache) and offline bundles (bundle). Hosts never download anything: the software phase
//! calls [`obtain`] for verified local paths and uploads those over SSH: each [`Obtained`] carries the file's path,
//! its sha256 (to compare with the host's `sha256sum` before uploading), the hosts that need it, and whether it is a
//! binary or a tarball with the programs `Kind::provides` names.
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

//! Running plans on hosts. So far: the cluster lock that keeps two runs from interleaving.
pub mod clock;
pub mod lock;
pub mod redact;
pub mod rundir;

//! Running plans on hosts: the cluster lock that keeps two runs from interleaving, and the output of a run
//! (progress on stderr, per-host logs and the step journal on disk, all with secrets redacted).
pub mod clock;
pub mod lock;
pub mod logged;
pub mod output;
pub mod redact;
pub mod run;
pub mod rundir;
pub mod steps;
pub mod stop;

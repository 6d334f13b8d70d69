//! The pipeline of the commands that change a cluster, as a library: probe, plan, confirm, lock, run (apply, the
//! node commands and upgrade's intent), and etcd's snapshot and restore. It takes plain settings and a confirm
//! callback, so the CLI (arguments, output, the prompt) or a test can drive it.
pub mod apply;
pub mod control_planes;
pub mod node;
pub mod planned;
pub mod restore;
pub mod snapshot;
mod stored;
pub mod upgrade;

pub use planned::Planned;

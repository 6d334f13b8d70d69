//! The pipeline of the commands that change a cluster, as a library: probe, plan, confirm, lock, run. It takes
//! plain settings and a confirm callback, so the CLI (arguments, output, the prompt) or a test can drive it.
pub mod apply;
pub mod node;
pub mod planned;
mod stored;
pub mod upgrade;

pub use planned::Planned;

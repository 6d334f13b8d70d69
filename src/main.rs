//! Entry point: parse arguments, hand them to the cli layer, map the outcome to an exit code.
use std::process::ExitCode;

fn main() -> ExitCode {
    kubeha::cli::main()
}

//! The exit codes, in one table: what each code means, the number scripts see, and the help and README
//! texts generated from the same rows so that the documentation cannot drift from what the code returns.
use std::process::ExitCode;

/// How a command ended, as scripts see it. Several meanings share 2: each is "working, but look" for its
/// command, and no command returns two of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    Success,
    /// Errors found (invalid inventory, warnings under `--strict`, preflight errors), a refused or failed
    /// run, or a command that could not do its work.
    Failed,
    /// `plan --detailed-exitcode` with changes to apply (Terraform's convention).
    PlanHasChanges,
    /// `status`: something is down but quorum holds.
    Degraded,
    /// `certs check`: a certificate expires soon, all still valid.
    CertsExpiring,
    /// Unknown command or flag: sysexits' EX_USAGE, which keeps 2 free for the meanings above.
    Usage,
    /// A run stopped by Ctrl-C, as shells report a death by SIGINT.
    Interrupted,
}

impl Exit {
    /// Every exit, in the order of their codes: the rows of the table.
    pub const ALL: [Exit; 7] = [Exit::Success, Exit::Failed, Exit::PlanHasChanges, Exit::Degraded, Exit::CertsExpiring, Exit::Usage, Exit::Interrupted];

    pub fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::Failed => 1,
            Exit::PlanHasChanges | Exit::Degraded | Exit::CertsExpiring => 2,
            Exit::Usage => 64,
            Exit::Interrupted => 130,
        }
    }

    /// The meaning in the top-level help and the README; a command's own help may say it in its terms.
    pub fn meaning(self) -> &'static str {
        match self {
            Exit::Success => "success (warnings allowed)",
            Exit::Failed => "errors found (invalid inventory, warnings under `--strict`, preflight errors), a refused run, or the command failed",
            Exit::PlanHasChanges => "`plan --detailed-exitcode`: changes pending",
            Exit::Degraded => "`status`: degraded but quorum holds",
            Exit::CertsExpiring => "`certs check`: a certificate expires within 30 days",
            Exit::Usage => "bad usage (unknown command or flag)",
            Exit::Interrupted => "`apply` or a `node` command stopped by Ctrl-C (after the steps under way); the next apply continues",
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit.code())
    }
}

/// An `after_help` text: "Exit codes:" and one row per exit, its code right-aligned; a meaning's further
/// lines (after `\n`) are indented under its first.
pub fn help(rows: &[(Exit, &str)]) -> String {
    let mut text = String::from("Exit codes:");
    for (exit, meaning) in rows {
        let mut lines = meaning.lines();
        text.push_str(&format!("\n{:>3}  {}", exit.code(), lines.next().unwrap_or_default()));
        for more in lines {
            text.push_str(&format!("\n     {more}"));
        }
    }
    text
}

/// The top-level help: every exit with its general meaning.
pub fn help_all() -> String {
    help(&Exit::ALL.map(|e| (e, e.meaning())))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's table (section "Exit codes"), checked against this one by a test.
    fn markdown() -> String {
        let mut table = String::from("| code | meaning |\n|---|---|\n");
        for exit in Exit::ALL {
            table.push_str(&format!("| {} | {} |\n", exit.code(), exit.meaning()));
        }
        table
    }

    /// The numbers are an interface: scripts and the CLI tests compare them.
    #[test]
    fn every_exit_keeps_its_number() {
        let codes: Vec<(Exit, u8)> = Exit::ALL.iter().map(|e| (*e, e.code())).collect();
        assert_eq!(
            codes,
            [
                (Exit::Success, 0),
                (Exit::Failed, 1),
                (Exit::PlanHasChanges, 2),
                (Exit::Degraded, 2),
                (Exit::CertsExpiring, 2),
                (Exit::Usage, 64),
                (Exit::Interrupted, 130)
            ]
        );
    }

    #[test]
    fn the_readme_shows_this_table() {
        let readme = include_str!("../../README.md");
        assert!(readme.contains(&markdown()), "README.md's exit code table differs from cli/exit.rs; put this one there:\n{}", markdown());
    }

    #[test]
    fn help_rows_align_and_indent_further_lines() {
        let text = help(&[(Exit::Success, "fine"), (Exit::Degraded, "first\nsecond"), (Exit::Usage, "bad usage")]);
        assert_eq!(text, "Exit codes:\n  0  fine\n  2  first\n     second\n 64  bad usage");
    }
}

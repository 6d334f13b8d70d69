//! Findings about an inventory: each names where it is (line:column and a field path), what is wrong and,
//! where we know one, the way out. Errors and warnings share one type so `check` can report them together.
use serde::Serialize;
use std::fmt;

/// A position in the inventory file, 1-based like editors and compilers print them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Mark {
    pub line: u32,
    pub column: u32,
    /// Byte offset, so a snippet can underline the exact spot.
    #[serde(skip)]
    pub offset: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    /// Field path such as `spec.hosts[3].address`; empty for the document itself.
    pub path: String,
    pub message: String,
    /// Absent for findings about the whole topology rather than one spot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mark: Option<Mark>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn error(path: impl Into<String>, mark: Option<Mark>, message: impl Into<String>) -> Self {
        Self { severity: Severity::Error, path: path.into(), message: message.into(), mark, hint: None }
    }

    pub fn warning(path: impl Into<String>, mark: Option<Mark>, message: impl Into<String>) -> Self {
        Self { severity: Severity::Warning, path: path.into(), message: message.into(), mark, hint: None }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// One line in the form compilers use, so editors and grep understand it:
    /// `inventory.yaml:23:5: spec.hosts[3]: unknown field "adress", expected one of ...`.
    pub fn located(&self, file: &str) -> String {
        let mut line = String::from(file);
        if let Some(mark) = self.mark {
            line.push_str(&format!(":{}:{}", mark.line, mark.column));
        }
        line.push_str(": ");
        if self.severity == Severity::Warning {
            line.push_str("warning: ");
        }
        line.push_str(&self.to_string());
        line
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, " ({hint})")?;
        }
        Ok(())
    }
}

/// Collects findings while a pass walks the inventory, so one run reports every problem at once.
#[derive(Debug, Default)]
pub struct Diagnostics {
    items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn push(&mut self, diagnostic: Diagnostic) {
        self.items.push(diagnostic);
    }

    pub fn error(&mut self, path: impl Into<String>, mark: Option<Mark>, message: impl Into<String>) {
        self.push(Diagnostic::error(path, mark, message));
    }

    pub fn warning(&mut self, path: impl Into<String>, mark: Option<Mark>, message: impl Into<String>) {
        self.push(Diagnostic::warning(path, mark, message));
    }

    pub fn has_errors(&self) -> bool {
        self.items.iter().any(Diagnostic::is_error)
    }

    /// Findings in file order, errors before warnings at the same spot, so output reads top to bottom.
    pub fn into_sorted(mut self) -> Vec<Diagnostic> {
        self.items.sort_by_key(|a| (a.mark, a.severity));
        self.items
    }
}

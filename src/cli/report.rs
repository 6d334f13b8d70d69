//! Printing inventory findings: one grep-able `file:line:col: ...` line each, plus a quoted snippet of
//! the inventory when a person is reading (stdout is a terminal).
use crate::inventory::{Diagnostic, Inventory, Loaded};
use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource};
use std::io::IsTerminal;

pub fn print_diagnostics(loaded: &Loaded, diagnostics: &[Diagnostic]) {
    print!("{}", render_diagnostics(loaded, diagnostics, std::io::stdout().is_terminal()));
}

/// The text `print_diagnostics` prints; `snippets` is the terminal mode. Pure, so it can be fuzzed.
pub fn render_diagnostics(loaded: &Loaded, diagnostics: &[Diagnostic], snippets: bool) -> String {
    let mut out = String::new();
    for d in diagnostics {
        out.push_str(&d.located(&loaded.file));
        out.push('\n');
        if snippets && d.mark.is_some() {
            out.push_str(&snippet(loaded, d));
        }
    }
    out
}

/// Loads an inventory for a command that needs a valid one; prints the findings and returns None otherwise.
pub fn load_valid(path: &std::path::Path) -> anyhow::Result<Option<(Loaded, Inventory)>> {
    let mut loaded = crate::inventory::load(path)?;
    match loaded.inventory.take() {
        Some(inv) => Ok(Some((loaded, inv))),
        None => {
            let errors: Vec<Diagnostic> = loaded.diagnostics.iter().filter(|d| d.is_error()).cloned().collect();
            print_diagnostics(&loaded, &errors);
            eprintln!("error: {} has {} error(s); `kubeha check -i {}` explains them", loaded.file, errors.len(), loaded.file);
            Ok(None)
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
struct Located {
    message: String,
    src: NamedSource<String>,
    label: LabeledSpan,
}

impl miette::Diagnostic for Located {
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(&self.src)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        Some(Box::new(std::iter::once(self.label.clone())))
    }
}

/// The lines around a finding with its token underlined.
pub fn snippet(loaded: &Loaded, d: &Diagnostic) -> String {
    let Some(mark) = d.mark else { return String::new() };
    // A mark that is not on a character boundary would make the slice below panic; never let a report crash.
    let offset = loaded.source.floor_char_boundary(mark.offset);
    let report = Located {
        message: d.to_string(),
        src: NamedSource::new(&loaded.file, loaded.source.clone()),
        label: LabeledSpan::at(offset..offset + token_len(&loaded.source[offset..]), "here"),
    };
    let handler = GraphicalReportHandler::new_themed(GraphicalTheme::unicode_nocolor()).with_context_lines(1);
    let mut out = String::new();
    let _ = handler.render_report(&mut out, &report);
    out
}

/// The length of the YAML token starting the text: a quoted scalar up to its closing quote, else up to
/// the next separator.
fn token_len(text: &str) -> usize {
    let mut chars = text.char_indices();
    match chars.next() {
        Some((_, q @ ('"' | '\''))) => chars.find(|(_, c)| *c == q).map_or(text.len(), |(i, _)| i + 1),
        Some(_) => text.find([',', '}', ']', '\n', '#', ':']).unwrap_or(text.len()).max(1),
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::{PathContext, parse};

    fn loaded(src: &str) -> Loaded {
        parse("inv.yaml".into(), src.into(), &PathContext { inventory_dir: ".".into(), home: None })
    }

    /// The snippet of the finding about the key `bogus`, and that finding's byte offset.
    fn bogus_snippet(src: &str) -> (String, usize) {
        let loaded = loaded(src);
        let d = loaded.diagnostics.iter().find(|d| d.message.contains("bogus")).unwrap();
        (snippet(&loaded, d), d.mark.unwrap().offset)
    }

    #[test]
    fn snippet_underlines_the_offending_key() {
        let src = "apiVersion: kubeha/v1alpha1\nkind: Cluster\nmetadata: {name: x}\nspec:\n  etcd: {version: 3.6.14}\n  bogus: 1\n";
        let (text, _) = bogus_snippet(src);
        assert!(text.contains("inv.yaml:6:3"), "{text}");
        assert!(text.contains("  bogus: 1"), "{text}");
        assert!(text.contains("   ·   ──┬──") && text.contains("╰── here"), "underline of the 5-character key: {text}");
        assert_eq!(token_len("\"a,b\" rest"), 5);
        assert_eq!(token_len("adress: 1"), 6);
    }

    #[test]
    fn snippet_after_non_ascii_text_underlines_the_offending_key() {
        // "ä" is two bytes and "€" three: character and byte offsets differ after them, and the character
        // offset of `bogus` falls inside a "€" (what made `kubeha check` panic on a terminal).
        let src = "# Zähler für äöü\napiVersion: kubeha/v1alpha1\nkind: Cluster\nmetadata: {name: x}\nspec:\n  etcd: {version: 3.6.14}\n  # €€€€\n  bogus: 1\n";
        let (text, offset) = bogus_snippet(src);
        assert_eq!(offset, src.find("bogus").unwrap());
        assert!(text.contains("inv.yaml:8:3"), "{text}");
        assert!(text.contains("   ·   ──┬──") && text.contains("╰── here"), "underline of the 5-character key: {text}");
    }

    #[test]
    fn snippet_of_a_mark_inside_a_character_does_not_panic() {
        let loaded = loaded("ä: 1\n");
        let d = Diagnostic::error("x", Some(crate::inventory::Mark { line: 1, column: 1, offset: 1 }), "inside ä");
        assert!(snippet(&loaded, &d).contains("inside ä"));
    }
}

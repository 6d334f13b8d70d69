//! A YAML document as a tree whose every node knows its line and column.
//!
//! serde stops at the first error; operators want every problem of an inventory in one run. So the
//! inventory is first loaded into this located tree (with the same parser serde-saphyr uses), and the
//! typed model is built from the tree by a walker that collects all errors.
use super::diagnostic::{Diagnostic, Mark};
use serde_saphyr::granit_parser::{Event, Marker, Parser, ScalarStyle};
use std::collections::HashMap;

/// Alias expansion copies nodes; this bounds the copies so a "billion laughs" file cannot exhaust memory.
const MAX_NODES: usize = 2_000_000;

#[derive(Clone, Debug)]
pub struct Node {
    pub mark: Mark,
    pub value: Value,
}

#[derive(Clone, Debug)]
pub enum Value {
    /// `plain` distinguishes `null` from `"null"`: only unquoted scalars can mean null.
    Scalar {
        text: String,
        plain: bool,
    },
    Sequence(Vec<Node>),
    Mapping(Vec<Entry>),
}

#[derive(Clone, Debug)]
pub struct Entry {
    pub key: String,
    pub key_mark: Mark,
    pub value: Node,
}

impl Node {
    /// YAML 1.2 core schema null: empty, `~` or `null` written without quotes.
    pub fn is_null(&self) -> bool {
        matches!(&self.value, Value::Scalar { text, plain: true } if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    pub fn kind_name(&self) -> &'static str {
        match &self.value {
            _ if self.is_null() => "null",
            Value::Scalar { .. } => "a scalar",
            Value::Sequence(_) => "a list",
            Value::Mapping(_) => "a mapping",
        }
    }
}

/// `Mark::offset` is a byte offset (snippets slice the source with it), but the parser's `index()` counts
/// characters: after any non-ASCII text (a comment with "ä") the two differ and slicing would panic or
/// point at the wrong token. The parser's byte offset is used when it has one, else the index is converted.
fn mark_of(source: &str, marker: &Marker) -> Mark {
    let offset = marker
        .byte_offset()
        .filter(|&b| source.is_char_boundary(b))
        .unwrap_or_else(|| source.char_indices().nth(marker.index()).map_or(source.len(), |(b, _)| b));
    Mark { line: u32::try_from(marker.line()).unwrap_or(u32::MAX), column: u32::try_from(marker.col() + 1).unwrap_or(u32::MAX), offset }
}

/// Parses one YAML document. Returns the root (None for an empty file) or the diagnostics that made the
/// document unusable. Duplicate keys are reported and the first occurrence kept, so later checks still run.
pub fn parse(source: &str, duplicate_keys: &mut Vec<Diagnostic>) -> Result<Option<Node>, Diagnostic> {
    let mut builder = Builder { stack: Vec::new(), anchors: HashMap::new(), root: None, documents: 0, nodes: 0, duplicates: duplicate_keys };
    for event in Parser::new_from_str(source) {
        let (event, span) = event.map_err(|e| Diagnostic::error("", Some(mark_of(source, e.marker())), format!("invalid YAML: {}", e.info_message())))?;
        builder.event(event, mark_of(source, &span.start))?;
    }
    Ok(builder.root)
}

trait InfoMessage {
    fn info_message(&self) -> String;
}

impl InfoMessage for serde_saphyr::granit_parser::ScanError {
    fn info_message(&self) -> String {
        // The Display form repeats the position we already print; keep only the description.
        let text = self.to_string();
        match text.find(" at ") {
            Some(cut) => text[..cut].to_string(),
            None => text,
        }
    }
}

enum Open {
    Sequence { mark: Mark, anchor: usize, items: Vec<Node> },
    Mapping { mark: Mark, anchor: usize, entries: Vec<Entry>, pending_key: Option<Node> },
}

struct Builder<'d> {
    stack: Vec<Open>,
    anchors: HashMap<usize, Node>,
    root: Option<Node>,
    documents: usize,
    nodes: usize,
    duplicates: &'d mut Vec<Diagnostic>,
}

impl Builder<'_> {
    fn event(&mut self, event: Event<'_>, mark: Mark) -> Result<(), Diagnostic> {
        match event {
            Event::DocumentStart(..) => {
                self.documents += 1;
                if self.documents > 1 {
                    return Err(Diagnostic::error("", Some(mark), "the inventory must be a single YAML document, found a second one"));
                }
            }
            Event::Scalar(text, style, anchor, _tag) => {
                let plain = matches!(style, ScalarStyle::Plain);
                self.complete(Node { mark, value: Value::Scalar { text: text.into_owned(), plain } }, anchor)?;
            }
            Event::SequenceStart(_, anchor, _) => self.stack.push(Open::Sequence { mark, anchor, items: Vec::new() }),
            Event::MappingStart(_, anchor, _) => self.stack.push(Open::Mapping { mark, anchor, entries: Vec::new(), pending_key: None }),
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor) = match self.stack.pop() {
                    Some(Open::Sequence { mark, anchor, items }) => (Node { mark, value: Value::Sequence(items) }, anchor),
                    Some(Open::Mapping { mark, anchor, entries, .. }) => (Node { mark, value: Value::Mapping(entries) }, anchor),
                    None => return Err(Diagnostic::error("", Some(mark), "invalid YAML: unbalanced collection end")),
                };
                self.complete(node, anchor)?;
            }
            Event::Alias(id) => {
                let Some(target) = self.anchors.get(&id).cloned() else {
                    return Err(Diagnostic::error("", Some(mark), "invalid YAML: alias to an unknown anchor"));
                };
                self.nodes += count_nodes(&target);
                let node = Node { mark, value: target.value };
                self.complete(node, 0)?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Attaches a finished node to its parent (or makes it the root), remembering anchored nodes.
    fn complete(&mut self, node: Node, anchor: usize) -> Result<(), Diagnostic> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(Diagnostic::error("", Some(node.mark), format!("the document expands to more than {MAX_NODES} nodes (aliases?); refusing to load it")));
        }
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Open::Sequence { items, .. }) => items.push(node),
            Some(Open::Mapping { pending_key, .. }) if pending_key.is_none() => *pending_key = Some(node),
            Some(Open::Mapping { .. }) => self.finish_entry(node)?,
        }
        Ok(())
    }

    /// Adds `key: value` to the innermost mapping; a repeated key is reported with the mapping's path and
    /// the first occurrence is kept.
    fn finish_entry(&mut self, value: Node) -> Result<(), Diagnostic> {
        let path = self.open_path();
        let Some(Open::Mapping { entries, pending_key, .. }) = self.stack.last_mut() else { return Ok(()) };
        let Some(key) = pending_key.take() else { return Ok(()) };
        let Value::Scalar { text, .. } = key.value else {
            return Err(Diagnostic::error(path, Some(key.mark), "mapping keys must be plain strings, not lists or mappings"));
        };
        match entries.iter().find(|e| e.key == text) {
            Some(first) => self.duplicates.push(Diagnostic::error(
                path,
                Some(key.mark),
                format!("duplicate key \"{text}\" (first defined at line {}, column {})", first.key_mark.line, first.key_mark.column),
            )),
            None => entries.push(Entry { key: text, key_mark: key.mark, value }),
        }
        Ok(())
    }

    /// The field path of the innermost open collection, e.g. `spec.hosts[3]`, built from the keys and
    /// indices under which its parents are being filled.
    fn open_path(&self) -> String {
        let mut path = String::new();
        for open in self.stack.iter().rev().skip(1).rev() {
            match open {
                Open::Sequence { items, .. } => path.push_str(&format!("[{}]", items.len())),
                Open::Mapping { pending_key: Some(Node { value: Value::Scalar { text, .. }, .. }), .. } => {
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(text);
                }
                Open::Mapping { .. } => {}
            }
        }
        path
    }
}

fn count_nodes(node: &Node) -> usize {
    match &node.value {
        Value::Scalar { .. } => 1,
        Value::Sequence(items) => 1 + items.iter().map(count_nodes).sum::<usize>(),
        Value::Mapping(entries) => 1 + entries.iter().map(|e| 1 + count_nodes(&e.value)).sum::<usize>(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(src: &str) -> (Result<Option<Node>, Diagnostic>, Vec<Diagnostic>) {
        let mut dups = Vec::new();
        let root = parse(src, &mut dups);
        (root, dups)
    }

    #[test]
    fn offsets_are_bytes_after_non_ascii_text() {
        let src = "# grüße äöü\nkey: 1\n";
        let (root, _) = load(src);
        let Value::Mapping(entries) = root.unwrap().unwrap().value else { panic!("not a mapping") };
        assert_eq!(entries[0].key_mark.offset, src.find("key").unwrap());
        assert_eq!((entries[0].key_mark.line, entries[0].key_mark.column), (2, 1));
    }

    #[test]
    fn positions_are_one_based() {
        let (root, _) = load("a:\n  b: 1\n");
        let Value::Mapping(entries) = root.unwrap().unwrap().value else { panic!() };
        let Value::Mapping(inner) = &entries[0].value.value else { panic!() };
        assert_eq!((inner[0].key_mark.line, inner[0].key_mark.column), (2, 3));
        assert_eq!((inner[0].value.mark.line, inner[0].value.mark.column), (2, 6));
    }

    #[test]
    fn duplicate_keys_are_reported_and_first_kept() {
        let (root, dups) = load("a: 1\nb: 2\na: 3\n");
        assert_eq!(dups.len(), 1);
        assert!(dups[0].message.contains("duplicate key \"a\" (first defined at line 1, column 1)"), "{}", dups[0].message);
        let (_, nested) = load("spec:\n  hosts:\n  - {name: a}\n  - name: b\n    name: c\n");
        assert_eq!(nested[0].path, "spec.hosts[1]");
        assert_eq!(dups[0].mark.unwrap().line, 3);
        let Value::Mapping(entries) = root.unwrap().unwrap().value else { panic!() };
        assert_eq!(entries.len(), 2);
    }

    #[test]
    fn quoted_null_is_a_string() {
        let (root, _) = load("a: null\nb: \"null\"\nc:\n");
        let Value::Mapping(e) = root.unwrap().unwrap().value else { panic!() };
        assert!(e[0].value.is_null());
        assert!(!e[1].value.is_null());
        assert!(e[2].value.is_null());
    }

    #[test]
    fn alias_bombs_are_refused() {
        let mut src = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..9 {
            src.push_str(&format!("a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n", p = i - 1));
        }
        let (root, _) = load(&src);
        assert!(root.unwrap_err().message.contains("more than"));
    }

    #[test]
    fn syntax_errors_carry_a_position() {
        let (root, _) = load("a: [1, 2\nb: 3\n");
        let err = root.unwrap_err();
        assert!(err.message.starts_with("invalid YAML"), "{}", err.message);
        assert!(err.mark.is_some());
    }

    #[test]
    fn second_document_is_refused() {
        let (root, _) = load("a: 1\n---\nb: 2\n");
        assert!(root.unwrap_err().message.contains("single YAML document"));
    }
}

//! Typed access to the located YAML tree that records every problem instead of stopping at the first.
use super::diagnostic::{Diagnostics, Mark};
use super::yaml::{Entry, Node, Value};

/// A value with the position it came from, so later checks can still point at the right line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Located<T> {
    pub value: T,
    pub mark: Mark,
}

/// A mapping whose keys were checked against the fields the schema allows.
pub struct Fields<'n> {
    path: String,
    entries: &'n [Entry],
}

impl<'n> Fields<'n> {
    /// Reports a non-mapping and every unknown key at once; `None` means the node is not a mapping.
    pub fn of(node: &'n Node, path: &str, allowed: &[&str], diags: &mut Diagnostics) -> Option<Self> {
        let Value::Mapping(entries) = &node.value else {
            diags.error(path, Some(node.mark), format!("expected a mapping with fields {}, found {}", allowed.join(", "), node.kind_name()));
            return None;
        };
        for entry in entries.iter().filter(|e| !allowed.contains(&e.key.as_str())) {
            let mut message = format!("unknown field \"{}\", expected one of {}", entry.key, allowed.join(", "));
            if let Some(close) = closest(&entry.key, allowed) {
                message.push_str(&format!(" (did you mean \"{close}\"?)"));
            }
            diags.error(path, Some(entry.key_mark), message);
        }
        Some(Self { path: path.to_string(), entries })
    }

    /// The value of a field that may be absent; an explicit null counts as absent.
    pub fn optional(&self, key: &str) -> Option<&'n Node> {
        self.entries.iter().find(|e| e.key == key).map(|e| &e.value).filter(|v| !v.is_null())
    }

    pub fn required(&self, key: &str, mark: Mark, diags: &mut Diagnostics) -> Option<&'n Node> {
        let found = self.optional(key);
        if found.is_none() {
            diags.error(&self.path, Some(mark), format!("missing required field \"{key}\""));
        }
        found
    }

    pub fn child_path(&self, key: &str) -> String {
        join(&self.path, key)
    }
}

pub fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
}

/// The text of a scalar. Numbers and booleans are accepted as text too (`version: 1.36` stays "1.36":
/// the located tree keeps the source spelling, so nothing is lost to float parsing).
pub fn text(node: &Node, path: &str, diags: &mut Diagnostics) -> Option<Located<String>> {
    match &node.value {
        Value::Scalar { text, .. } => Some(Located { value: text.clone(), mark: node.mark }),
        _ => {
            diags.error(path, Some(node.mark), format!("expected a string, found {}", node.kind_name()));
            None
        }
    }
}

pub fn list<'n>(node: &'n Node, path: &str, diags: &mut Diagnostics) -> Option<&'n [Node]> {
    match &node.value {
        Value::Sequence(items) => Some(items),
        _ => {
            diags.error(path, Some(node.mark), format!("expected a list, found {}", node.kind_name()));
            None
        }
    }
}

pub fn entries<'n>(node: &'n Node, path: &str, diags: &mut Diagnostics) -> Option<&'n [Entry]> {
    match &node.value {
        Value::Mapping(entries) => Some(entries),
        _ => {
            diags.error(path, Some(node.mark), format!("expected a mapping, found {}", node.kind_name()));
            None
        }
    }
}

/// Parses a scalar with `parse`, reporting `what` it should have been together with the offending value.
pub fn parsed<T>(node: &Node, path: &str, what: &str, diags: &mut Diagnostics, parse: impl FnOnce(&str) -> Option<T>) -> Option<Located<T>> {
    let raw = text(node, path, diags)?;
    match parse(raw.value.trim()) {
        Some(value) => Some(Located { value, mark: raw.mark }),
        None => {
            diags.error(path, Some(raw.mark), format!("invalid value \"{}\": expected {what}", raw.value));
            None
        }
    }
}

/// `true` or `false` as YAML 1.2 spells them; `yes`/`on` are not booleans there, so they are refused.
pub fn boolean(node: &Node, path: &str, diags: &mut Diagnostics) -> Option<Located<bool>> {
    parsed(node, path, "true or false", diags, |s| match s {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    })
}

pub fn port(node: &Node, path: &str, diags: &mut Diagnostics) -> Option<Located<u16>> {
    parsed(node, path, "a port number from 1 to 65535", diags, |s| s.parse::<u16>().ok().filter(|p| *p != 0))
}

/// One of a fixed set of names (a mode, a CNI); the error lists the accepted ones.
pub fn choice<T: Copy>(node: &Node, path: &str, options: &[(&str, T)], diags: &mut Diagnostics) -> Option<Located<T>> {
    let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
    let raw = text(node, path, diags)?;
    match options.iter().find(|(n, _)| *n == raw.value) {
        Some((_, value)) => Some(Located { value: *value, mark: raw.mark }),
        None => {
            let mut message = format!("unknown value \"{}\", expected one of {}", raw.value, names.join(", "));
            if let Some(close) = closest(&raw.value, &names) {
                message.push_str(&format!(" (did you mean \"{close}\"?)"));
            }
            diags.error(path, Some(raw.mark), message);
            None
        }
    }
}

/// The allowed name nearest to a typo, when it is near enough to be a likely intent.
fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let lower = word.to_ascii_lowercase();
    candidates.iter().map(|c| (edit_distance(&lower, &c.to_ascii_lowercase()), *c)).filter(|(d, c)| *d <= 2.max(c.len() / 4)).min().map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(previous + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_the_nearest_field() {
        assert_eq!(closest("adress", &["name", "address", "roles"]), Some("address"));
        assert_eq!(closest("zzzzzz", &["name", "address"]), None);
        assert_eq!(closest("identityfile", &["identityFile", "user"]), Some("identityFile"));
    }
}

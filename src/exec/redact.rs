//! Keeps secrets (bootstrap tokens, certificate keys, private keys) out of everything kubeha prints or writes
//! to disk: remote command output echoes them back more often than one would expect.
use std::fmt;

const REPLACEMENT: &str = "[redacted]";
/// Shorter values would scrub ordinary words out of logs and make them unreadable.
const MIN_SECRET_LEN: usize = 6;
/// A line of a PEM body this long is random enough to be recognised on its own; shorter ones
/// (the tail line of a key) could match unrelated text.
const MIN_PEM_LINE_LEN: usize = 17;

#[derive(Clone, Default)]
pub struct Redactor {
    /// Longest first, without duplicates.
    secrets: Vec<String>,
}

impl Redactor {
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        let mut all = Vec::new();
        for secret in secrets {
            if secret.contains('\n') {
                // A key may leak partially (one line of it in an error message), or re-wrapped with other line endings.
                all.extend(pem_body_lines(&secret).map(str::to_string));
            }
            if secret.chars().count() >= MIN_SECRET_LEN {
                all.push(secret);
            }
        }
        all.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        all.dedup();
        Redactor { secrets: all }
    }

    pub fn scrub(&self, text: &str) -> String {
        let hidden = merged(self.occurrences(text));
        let mut out = String::with_capacity(text.len());
        let mut copied_to = 0;
        for (start, end) in hidden {
            out.push_str(&text[copied_to..start]);
            out.push_str(REPLACEMENT);
            copied_to = end;
        }
        out.push_str(&text[copied_to..]);
        out
    }

    /// Byte ranges of every occurrence of every secret, overlapping ones included: replacing one secret at a time
    /// would destroy the text a second, overlapping secret needs to be found, and leave part of it visible.
    fn occurrences(&self, text: &str) -> Vec<(usize, usize)> {
        let mut found = Vec::new();
        for secret in &self.secrets {
            let mut from = 0;
            while let Some(offset) = text[from..].find(secret.as_str()) {
                let start = from + offset;
                found.push((start, start + secret.len()));
                // Step one character, not the whole match, so overlapping repeats are found too.
                from = start + text[start..].chars().next().map_or(1, char::len_utf8);
            }
        }
        found
    }
}

/// The body lines of a PEM block (or any multi-line secret), without the `-----BEGIN/END` armour.
fn pem_body_lines(secret: &str) -> impl Iterator<Item = &str> {
    secret.lines().map(str::trim).filter(|line| !line.starts_with("-----") && line.len() >= MIN_PEM_LINE_LEN)
}

/// Sorted, with overlapping or touching ranges joined: one `[redacted]` per leak, never a fragment between two.
fn merged(mut ranges: Vec<(usize, usize)>) -> Vec<(usize, usize)> {
    ranges.sort_unstable();
    let mut out: Vec<(usize, usize)> = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        match out.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => out.push((start, end)),
        }
    }
    out
}

/// Never prints the secrets themselves: a `{:?}` in an error message must not undo the redaction.
impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redactor").field("secrets", &self.secrets.len()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redactor(secrets: &[&str]) -> Redactor {
        Redactor::new(secrets.iter().map(|s| s.to_string()))
    }

    #[test]
    fn token_inside_a_kubeadm_output_line() {
        let r = redactor(&["abcdef.0123456789abcdef"]);
        let line = "kubeadm join 10.0.0.10:6443 --token abcdef.0123456789abcdef --discovery-token-ca-cert-hash sha256:1234";
        assert_eq!(r.scrub(line), "kubeadm join 10.0.0.10:6443 --token [redacted] --discovery-token-ca-cert-hash sha256:1234");
    }

    const KEY: &str = "-----BEGIN PRIVATE KEY-----\n\
                       MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgQ5vJ7Xx0Yb3G8m2k\n\
                       hRANCAAS8kR2y5TDc3w9gq1ZpVvWc0NqYbx3l4m5Yt0g0KpC8e9Q4n1z2f6h7j8\n\
                       k9l0m1n2\n\
                       -----END PRIVATE KEY-----\n";

    #[test]
    fn pem_key_whole_and_in_part() {
        let r = redactor(&[KEY]);
        assert_eq!(r.scrub(&format!("wrote {KEY}done")), "wrote [redacted]done");
        // One line of the key in an error message, e.g. from a parser that quotes its input.
        let partial = "bad key: hRANCAAS8kR2y5TDc3w9gq1ZpVvWc0NqYbx3l4m5Yt0g0KpC8e9Q4n1z2f6h7j8 at line 3";
        assert_eq!(r.scrub(partial), "bad key: [redacted] at line 3");
        // The same key re-wrapped with CRLF line endings.
        assert_eq!(r.scrub(&KEY.replace('\n', "\r\n")), "-----BEGIN PRIVATE KEY-----\r\n[redacted]\r\n[redacted]\r\nk9l0m1n2\r\n-----END PRIVATE KEY-----\r\n");
    }

    #[test]
    fn overlapping_secrets_are_replaced_entirely() {
        let r = redactor(&["secret-alpha", "alpha-beta-gamma"]);
        assert_eq!(r.scrub("x secret-alpha-beta-gamma y"), "x [redacted] y");
        let nested = redactor(&["token123", "xxtoken123yy"]);
        assert_eq!(nested.scrub("a xxtoken123yy b token123 c"), "a [redacted] b [redacted] c");
    }

    #[test]
    fn repeated_overlapping_occurrences_of_one_secret() {
        let r = redactor(&["aaaaaa"]);
        assert_eq!(r.scrub("aaaaaaa!"), "[redacted]!");
    }

    #[test]
    fn nothing_to_redact_returns_identical_text() {
        let text = "etcd member etcd-1 started, ünïcode ok\n";
        assert_eq!(redactor(&["not-in-there"]).scrub(text), text);
        assert_eq!(Redactor::default().scrub(text), text);
    }

    #[test]
    fn short_and_empty_values_are_ignored() {
        let r = redactor(&["", "admin", "kube"]);
        assert_eq!(r.scrub("admin kube"), "admin kube");
    }

    #[test]
    fn debug_does_not_show_secrets() {
        assert_eq!(format!("{:?}", redactor(&["hunter22"])), "Redactor { secrets: 1 }");
    }

    #[test]
    fn shareable_across_tasks() {
        fn assert_send_sync<T: Send + Sync + Clone>() {}
        assert_send_sync::<Redactor>();
    }
}

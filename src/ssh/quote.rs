//! POSIX shell quoting. Every value that reaches a remote shell goes through `quote`, so no inventory value
//! (a path, a user name, a label) can change the shape of the command.

/// Quote one word for a POSIX shell. Words made only of characters that no shell treats specially are left as
/// they are (readable logs); everything else is wrapped in single quotes, inside which only `'` itself needs
/// care: close the quote, emit an escaped quote, reopen.
pub fn quote(word: &str) -> String {
    if !word.is_empty() && word.bytes().all(is_plain) {
        return word.to_string();
    }
    let mut out = String::with_capacity(word.len() + 2);
    out.push('\'');
    for ch in word.chars() {
        if ch == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(ch);
        }
    }
    out.push('\'');
    out
}

/// Quote every word and join them with spaces: the argv of one simple command.
pub fn join<I, S>(words: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    words.into_iter().map(|w| quote(w.as_ref())).collect::<Vec<_>>().join(" ")
}

fn is_plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/' | b':' | b'@' | b'%' | b'+' | b',' | b'=')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn plain_words_stay_readable() {
        assert_eq!(quote("/etc/kubernetes/admin.conf"), "/etc/kubernetes/admin.conf");
        assert_eq!(join(["systemctl", "restart", "etcd"]), "systemctl restart etcd");
    }

    #[test]
    fn specials_are_quoted() {
        assert_eq!(quote(""), "''");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), "'it'\\''s'");
        assert_eq!(quote("$(reboot)"), "'$(reboot)'");
        assert_eq!(quote("~root"), "'~root'");
        assert_eq!(quote("-n"), "-n");
    }

    /// Round-trip through a real `sh -c`: printf prints each argument back between NUL separators, so the
    /// result must equal the input byte for byte, whatever the input. NUL itself cannot be in an argv.
    fn round_trip(words: &[String]) -> Vec<String> {
        let script = format!("printf '%s\\0' {}", join(words));
        let out = std::process::Command::new("sh").arg("-c").arg(&script).output().expect("run sh");
        assert!(out.status.success(), "sh failed for {script:?}: {}", String::from_utf8_lossy(&out.stderr));
        let mut parts: Vec<String> = String::from_utf8(out.stdout).expect("utf8").split('\0').map(str::to_string).collect();
        parts.pop(); // the trailing separator
        parts
    }

    #[test]
    fn hostile_words_round_trip() {
        let words: Vec<String> = [
            "'", "\"", "\\", "$HOME", "`id`", "$(id)", "a;b", "a&&b", "a|b", "*", "?", "[a]", "{a,b}", "~", "#x", "\n", "\t", " ", "!", "-e", "--", "é ü",
            "'\\''",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(round_trip(&words), words);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
        #[test]
        fn any_words_round_trip_through_sh(words in proptest::collection::vec("[^\\x00]{0,12}", 1..5)) {
            prop_assert_eq!(round_trip(&words), words);
        }
    }
}

//! `spec.etcd.backup.schedule`: a systemd OnCalendar expression, and the period behind it. The period is
//! what decides when the newest backup is too old (alert rule, `kubeha verify`): two periods, so one missed
//! or slow run is tolerated and two are not.

/// systemd's shorthand calendar events (systemd.time(7), "Calendar Events") and their periods. A month or
/// a year is taken at its longest (31 and 366 days), so the limit is never shorter than the real gap.
const SHORTHANDS: &[(&str, u64)] = &[
    ("minutely", 60),
    ("hourly", 3_600),
    ("daily", 86_400),
    ("weekly", 7 * 86_400),
    ("monthly", 31 * 86_400),
    ("quarterly", 92 * 86_400),
    ("semiannually", 184 * 86_400),
    ("yearly", 366 * 86_400),
    ("annually", 366 * 86_400),
];

/// How many periods the newest backup may be old before it counts as missed.
pub const PERIODS_BEFORE_STALE: u64 = 2;

/// The period of a shorthand (`hourly`, `daily`, ...). A free OnCalendar expression has none kubeha could
/// compute reliably (`Mon..Fri 02:00` has gaps of one and three days), so the inventory must then say
/// `maxAge` itself: guessing one (say, daily) would make a weekly schedule's alert fire for six days a week.
pub fn shorthand_period(calendar: &str) -> Option<u64> {
    SHORTHANDS.iter().find(|(name, _)| *name == calendar).map(|(_, seconds)| *seconds)
}

/// What an OnCalendar expression may contain: what systemd's syntax uses (digits, names, `*`, `,`, `-`,
/// `..`, `/`, `~`, `:`, spaces, a time zone like `Europe/Berlin` or `America/New_York`), nothing else. The
/// value is written into a unit file: a newline would add a directive of its own, and no character the
/// shell treats specially is needed.
pub fn calendar_is_safe(calendar: &str) -> bool {
    !calendar.trim().is_empty() && calendar.len() <= 128 && calendar.bytes().all(|b| b.is_ascii_alphanumeric() || b" *,-./~:_+".contains(&b))
}

/// `maxAge`: a whole number with a unit, `90m`, `26h`, `8d`, or plain seconds.
pub fn parse_duration(text: &str) -> Option<u64> {
    let text = text.trim();
    let (digits, unit) = match text.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => (&text[..i], c),
        _ => (text, 's'),
    };
    let multiplier = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3_600,
        'd' => 86_400,
        _ => return None,
    };
    let n: u64 = digits.parse().ok().filter(|n| *n > 0)?;
    n.checked_mul(multiplier)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shorthands_map_to_their_periods() {
        assert_eq!(shorthand_period("hourly"), Some(3_600));
        assert_eq!(shorthand_period("daily"), Some(86_400));
        assert_eq!(shorthand_period("weekly"), Some(604_800));
        assert_eq!(shorthand_period("monthly"), Some(2_678_400));
        assert_eq!(shorthand_period("*-*-* 02:00:00"), None);
        assert_eq!(shorthand_period("Hourly"), None, "systemd's shorthands are lower case");
    }

    #[test]
    fn calendars_with_shell_or_unit_syntax_are_refused() {
        for good in ["hourly", "*-*-* 00/4:00:00", "Mon..Fri 02:30", "*-*-* 02:00 Europe/Berlin", "*:0/15", "Sat *-*-1..7 03:00 America/New_York"] {
            assert!(calendar_is_safe(good), "{good}");
        }
        for bad in ["", "  ", "hourly\nExecStart=/bin/sh", "daily; rm -rf /", "$(reboot)", "`id`", "daily|x", "a'b", "a\"b", "a>b", "a&b"] {
            assert!(!calendar_is_safe(bad), "{bad:?}");
        }
    }

    #[test]
    fn durations_take_a_unit() {
        assert_eq!(parse_duration("90m"), Some(5_400));
        assert_eq!(parse_duration("26h"), Some(93_600));
        assert_eq!(parse_duration("8d"), Some(691_200));
        assert_eq!(parse_duration("7200"), Some(7_200));
        for bad in ["", "0h", "h", "1w", "-1h", "1.5h", "99999999999999999999d"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }
}

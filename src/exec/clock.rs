//! Wall-clock timestamps for logs, the journal and progress lines: RFC 3339, UTC, whole seconds.
use time::OffsetDateTime;
use time::macros::format_description;

/// Whole seconds: sub-second digits only make log lines harder to scan, and `Instant`s measure durations.
pub fn timestamp(at: OffsetDateTime) -> String {
    let format = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    // Formatting a UTC date-time with these components cannot fail; fall back rather than panic all the same.
    at.to_offset(time::UtcOffset::UTC).format(format).unwrap_or_else(|_| at.unix_timestamp().to_string())
}

pub fn now() -> String {
    timestamp(OffsetDateTime::now_utc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn utc_whole_seconds() {
        assert_eq!(timestamp(datetime!(2026-11-25 10:00:00.987 UTC)), "2026-11-25T10:00:00Z");
        assert_eq!(timestamp(datetime!(2026-11-25 12:30:05 +02:30)), "2026-11-25T10:00:05Z");
    }
}

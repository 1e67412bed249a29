//! Argo CD's timestamps: RFC 3339 in UTC at second precision
//! (`metav1.Time` serializes whole seconds), and Go's `time.Kitchen`.

use std::time::Duration;

use jiff::Timestamp;

/// The current time, truncated to the second as `metav1.Time` stores it.
pub(crate) fn now() -> Timestamp {
    truncate(Timestamp::now())
}

pub(crate) fn truncate(ts: Timestamp) -> Timestamp {
    Timestamp::from_second(ts.as_second()).unwrap_or(ts)
}

/// `2006-01-02T15:04:05Z`.
pub(crate) fn format(ts: Timestamp) -> String {
    truncate(ts).strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Parses an RFC 3339 timestamp; `None` for anything else.
pub(crate) fn parse(text: &str) -> Option<Timestamp> {
    text.parse().ok()
}

/// Go's `time.Kitchen` layout (`3:04PM`), in UTC.
pub(crate) fn kitchen(ts: Timestamp) -> String {
    let seconds_of_day = ts.as_second().rem_euclid(86_400);
    let hour = seconds_of_day / 3600;
    let minute = (seconds_of_day % 3600) / 60;
    let (hour12, meridiem) = match hour {
        0 => (12, "AM"),
        1..=11 => (hour, "AM"),
        12 => (12, "PM"),
        _ => (hour - 12, "PM"),
    };
    format!("{hour12}:{minute:02}{meridiem}")
}

/// `ts + d`, saturating at the end of jiff's range.
pub(crate) fn add(ts: Timestamp, d: Duration) -> Timestamp {
    let d = jiff::SignedDuration::try_from(d).unwrap_or(jiff::SignedDuration::MAX);
    ts.checked_add(d).unwrap_or(Timestamp::MAX)
}

/// How long from `now` until `at` (zero if `at` has passed).
pub(crate) fn until(now: Timestamp, at: Timestamp) -> Duration {
    let d = at.duration_since(now);
    Duration::try_from(d).unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(text: &str) -> Timestamp {
        parse(text).unwrap_or_else(|| panic!("bad timestamp {text}"))
    }

    #[test]
    fn format_is_rfc3339_utc_at_second_precision() {
        let t = ts("2026-03-04T05:06:07.891Z");
        assert_eq!(format(t), "2026-03-04T05:06:07Z");
    }

    #[test]
    fn kitchen_matches_go_layout() {
        assert_eq!(kitchen(ts("2026-03-04T00:05:00Z")), "12:05AM");
        assert_eq!(kitchen(ts("2026-03-04T09:41:59Z")), "9:41AM");
        assert_eq!(kitchen(ts("2026-03-04T12:00:00Z")), "12:00PM");
        assert_eq!(kitchen(ts("2026-03-04T15:04:05Z")), "3:04PM");
    }

    #[test]
    fn until_is_zero_for_the_past() {
        let t = ts("2026-03-04T00:00:10Z");
        assert_eq!(until(t, ts("2026-03-04T00:00:05Z")), Duration::ZERO);
        assert_eq!(until(t, ts("2026-03-04T00:00:12Z")), Duration::from_secs(2));
        assert_eq!(add(t, Duration::from_secs(5)), ts("2026-03-04T00:00:15Z"));
    }
}

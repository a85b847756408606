//! Timestamps as the feeds write them.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

/// Parses RFC 3339 (`2023-01-02T03:04:05Z`, offsets, fractions), NVD's zone-less
/// `2022-12-01T05:15:11.730` (UTC by NVD's documentation), the legacy feed's `2022-08-31T16:15Z`
/// and a bare date.
pub(crate) fn parse_timestamp(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    let naive = s.strip_suffix('Z').unwrap_or(s);
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S%.f",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(naive, fmt) {
            return Some(t.and_utc());
        }
    }
    parse_date(s)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

/// Parses `YYYY-MM-DD`.
pub(crate) fn parse_date(s: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feed_timestamps() {
        for s in [
            "2023-01-02T03:04:05Z",
            "2023-01-02T03:04:05.123456Z",
            "2023-01-02T05:04:05+02:00",
            "2023-01-02T03:04:05",
            "2023-01-02T03:04:05.730",
        ] {
            let t = parse_timestamp(s).unwrap();
            assert_eq!(
                t.format("%Y-%m-%d %H:%M:%S").to_string(),
                "2023-01-02 03:04:05",
                "{s}"
            );
        }
        assert!(parse_timestamp("2022-08-31T16:15Z").is_some());
        assert!(parse_timestamp("2006-03-14").is_some());
        assert!(parse_timestamp("yesterday").is_none());
        assert!(parse_timestamp("").is_none());
    }
}

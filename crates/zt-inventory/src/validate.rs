//! Parsing and validating a report from outside input, with errors that name the offending field.

use crate::report::InventoryReport;

/// Upper bounds that keep one report from costing the server unbounded work.
pub const MAX_APPS: usize = 100_000;
pub const MAX_NAME_LEN: usize = 512;
pub const MAX_VERSION_LEN: usize = 256;
pub const MAX_FIELD_LEN: usize = 1024;
pub const MAX_HOSTNAME_LEN: usize = 255;
/// Tags a host carries at most, and characters per tag.
pub const MAX_TAGS: usize = 64;
pub const MAX_TAG_LEN: usize = 64;

/// How far a report's `collected_at` may be from the server's clock, either way.
pub const MAX_CLOCK_SKEW: chrono::TimeDelta = chrono::TimeDelta::days(1);

/// Checks a report's `collected_at` against the server's clock `now` and returns the time
/// the server orders the host's reports by.
///
/// A host clock days off would otherwise decide which inventory is current: one report
/// dated in the future makes every later report look older ("stale"), freezing the host, and
/// one dated in the distant past is stale from the start. Reports more than
/// [`MAX_CLOCK_SKEW`] either way are refused (naming `collected_at`); a report from a clock
/// ahead by less is ordered as of `now` (when it arrived), so a clock that jumps ahead and
/// back never holds later reports back.
pub fn check_collected_at(
    collected_at: chrono::DateTime<chrono::Utc>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<chrono::DateTime<chrono::Utc>, ReportError> {
    let skew = collected_at.signed_duration_since(now);
    if skew.abs() > MAX_CLOCK_SKEW {
        let hours = skew.num_minutes().abs() as f64 / 60.0;
        let (way, fix) = if skew > chrono::TimeDelta::zero() {
            ("ahead of", "")
        } else {
            ("behind", " (or the report waited that long to be sent)")
        };
        return Err(ReportError::new(
            "collected_at",
            format!(
                "{collected_at} is {hours:.1} h {way} the server's clock{fix}; at most {} h \
                 either way are accepted: check the host's clock",
                MAX_CLOCK_SKEW.num_hours()
            ),
        ));
    }
    Ok(collected_at.min(now))
}

/// Why a report was refused; `field` is a path such as `apps[3].version` (empty when the
/// document as a whole is malformed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", if field.is_empty() { message.clone() } else { format!("{field}: {message}") })]
pub struct ReportError {
    pub field: String,
    pub message: String,
}

impl ReportError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        ReportError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Parses JSON bytes into a report and checks every field.
pub fn parse_report(bytes: &[u8]) -> Result<InventoryReport, ReportError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let report: InventoryReport = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let field = if path == "." { String::new() } else { path };
        ReportError::new(field, inner.to_string())
    })?;
    de.end()
        .map_err(|e| ReportError::new("", format!("trailing data after the report: {e}")))?;
    validate_report(&report)?;
    Ok(report)
}

/// Checks the semantic rules that serde's types cannot express.
pub fn validate_report(report: &InventoryReport) -> Result<(), ReportError> {
    let field = |name: &'static str| move || name.to_string();
    text(
        field("host.hostname"),
        &report.host.hostname,
        1,
        MAX_HOSTNAME_LEN,
    )?;
    text(field("host.os.id"), &report.host.os.id, 1, MAX_FIELD_LEN)?;
    text(
        field("host.os.version_id"),
        &report.host.os.version_id,
        0,
        MAX_FIELD_LEN,
    )?;
    text(
        field("host.os.name"),
        &report.host.os.name,
        0,
        MAX_FIELD_LEN,
    )?;
    text(field("host.arch"), &report.host.arch, 0, MAX_FIELD_LEN)?;
    if report.apps.len() > MAX_APPS {
        return Err(ReportError::new(
            "apps",
            format!("{} apps; at most {MAX_APPS} per report", report.apps.len()),
        ));
    }
    if let Some(tags) = &report.tags {
        if tags.len() > MAX_TAGS {
            return Err(ReportError::new(
                "tags",
                format!("{} tags; at most {MAX_TAGS}", tags.len()),
            ));
        }
        for (i, tag) in tags.iter().enumerate() {
            if let Some(problem) = tag_problem(tag) {
                return Err(ReportError::new(format!("tags[{i}]"), problem));
            }
        }
    }
    for (i, app) in report.apps.iter().enumerate() {
        // The field path is only formatted when a value is refused: valid reports (the
        // common case, thousands per second) allocate nothing here.
        let f = |name: &'static str| move || format!("apps[{i}].{name}");
        text(f("name"), &app.name, 1, MAX_NAME_LEN)?;
        text(f("version"), &app.version, 1, MAX_VERSION_LEN)?;
        for (name, value) in [
            ("arch", &app.arch),
            ("vendor", &app.vendor),
            ("source_name", &app.source_name),
            ("source_version", &app.source_version),
            ("purl", &app.purl),
            ("cpe", &app.cpe),
        ] {
            if let Some(v) = value {
                text(f(name), v, 0, MAX_FIELD_LEN)?;
            }
        }
    }
    Ok(())
}

/// What is wrong with a host tag, if anything: tags are 1 to [`MAX_TAG_LEN`] ASCII letters, digits
/// and `-_.:/=` (so `env=prod` and `dmz` are tags, and a list of them can be written
/// comma-separated). The server checks tags set through its API by the same rule.
pub fn tag_problem(tag: &str) -> Option<String> {
    if tag.is_empty() || tag.chars().count() > MAX_TAG_LEN {
        return Some(format!(
            "a tag has 1 to {MAX_TAG_LEN} characters, not {tag:?}"
        ));
    }
    tag.chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '/' | '=')))
        .map(|c| format!("tag {tag:?} has {c:?}; tags are ASCII letters, digits and - _ . : / ="))
}

/// What is wrong with a text field of outside input, if anything: longer than `max`
/// characters (counted as JSON Schema's `maxLength` counts them, in code points), or holding
/// control characters (Unicode category Cc: U+0000–U+001F and U+007F–U+009F, which the
/// OpenAPI document's pattern `^[^\x00-\x1f\x7f-\x9f]*$` excludes). The server's request
/// fields use it too, so every text bound the API documents is checked the one way.
pub fn text_problem(value: &str, max: usize) -> Option<String> {
    // A string of at most `max` bytes has at most `max` characters: counting is needed only
    // for longer ones (valid reports, thousands per second, never count).
    if value.len() > max {
        let chars = value.chars().count();
        if chars > max {
            return Some(format!("{chars} characters long; at most {max}"));
        }
    }
    if value.chars().any(char::is_control) {
        return Some("contains control characters".into());
    }
    None
}

fn text(
    field: impl FnOnce() -> String,
    value: &str,
    min: usize,
    max: usize,
) -> Result<(), ReportError> {
    if value.len() < min {
        return Err(ReportError::new(field(), "must not be empty"));
    }
    if let Some(message) = crate::text_problem(value, max) {
        return Err(ReportError::new(field(), message));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn collected_at_is_bounded_and_a_clock_ahead_is_ordered_as_of_arrival() {
        use chrono::TimeDelta;
        let now = chrono::Utc::now();
        for behind in [TimeDelta::zero(), TimeDelta::hours(23), TimeDelta::days(1)] {
            assert_eq!(check_collected_at(now - behind, now).unwrap(), now - behind);
        }
        // Ahead (within the bound): ordered as of now.
        assert_eq!(
            check_collected_at(now + TimeDelta::hours(20), now).unwrap(),
            now
        );
        for off in [
            TimeDelta::days(1) + TimeDelta::seconds(1),
            TimeDelta::days(400),
            -TimeDelta::days(1) - TimeDelta::seconds(1),
            -TimeDelta::days(20000),
        ] {
            let e = check_collected_at(now + off, now).unwrap_err();
            assert_eq!(e.field, "collected_at", "{off}");
            assert!(e.message.contains("clock"), "{}", e.message);
        }
    }

    use super::*;

    const GOOD: &str = r#"{"report_id":"7d8a6b1e-2f0c-4c1e-9a55-0b7f1d3e2a10",
        "collected_at":"2026-11-26T10:00:00Z",
        "host":{"hostname":"web-1","os":{"id":"debian","version_id":"12","name":"Debian GNU/Linux 12 (bookworm)"},"arch":"x86_64"},
        "apps":[{"name":"openssl","version":"3.0.11-1~deb12u2","source":"dpkg","source_name":"openssl"}]}"#;

    #[test]
    fn accepts_a_valid_report() {
        let r = parse_report(GOOD.as_bytes()).unwrap();
        assert_eq!(r.apps.len(), 1);
        assert_eq!(r.apps[0].source_name.as_deref(), Some("openssl"));
    }

    #[test]
    fn names_the_offending_field() {
        let bad = GOOD.replace(r#""source":"dpkg""#, r#""source":"floppy""#);
        let e = parse_report(bad.as_bytes()).unwrap_err();
        assert_eq!(e.field, "apps[0].source");

        let bad = GOOD.replace(r#""version":"3.0.11-1~deb12u2""#, r#""version":12"#);
        assert_eq!(
            parse_report(bad.as_bytes()).unwrap_err().field,
            "apps[0].version"
        );

        let bad = GOOD.replace(r#""hostname":"web-1","#, "");
        let e = parse_report(bad.as_bytes()).unwrap_err();
        assert_eq!(e.field, "host");
        assert!(e.message.contains("hostname"), "{e}");

        let bad = GOOD.replace("7d8a6b1e-2f0c", "not-a-uuid");
        assert_eq!(parse_report(bad.as_bytes()).unwrap_err().field, "report_id");

        let bad = GOOD.replace(r#""version":"3.0.11-1~deb12u2""#, r#""version":"""#);
        assert_eq!(
            parse_report(bad.as_bytes()).unwrap_err().field,
            "apps[0].version"
        );
    }

    #[test]
    fn malformed_json_is_an_error_not_a_panic() {
        for input in [
            "",
            "{",
            "[]",
            "null",
            "{\"report_id\":",
            &GOOD[..GOOD.len() - 3],
        ] {
            assert!(parse_report(input.as_bytes()).is_err(), "{input:?}");
        }
        let trailing = format!("{GOOD} {{}}");
        assert!(parse_report(trailing.as_bytes()).is_err());
    }
}

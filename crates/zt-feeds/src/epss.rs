//! FIRST EPSS scores: `cve,epss,percentile` CSV, optionally gzip-compressed, optionally with a
//! leading `#model_version:…,score_date:…` comment line.

use chrono::NaiveDate;
use zt_advisory::{is_cve_id, EpssScore};

use crate::RecordFailure;

/// True when the text starts like an EPSS file (comment line and/or the header).
pub(crate) fn looks_like_epss(head: &str) -> bool {
    let mut lines = head
        .lines()
        .map(|l| l.trim_start_matches('\u{feff}').trim());
    let mut first = lines.next().unwrap_or("");
    if first.starts_with('#') {
        first = lines.next().unwrap_or("");
    }
    let cols: Vec<&str> = first.split([',', ';']).map(str::trim).collect();
    cols.len() >= 2 && cols[0].eq_ignore_ascii_case("cve") && cols[1].eq_ignore_ascii_case("epss")
}

/// The `score_date:YYYY-MM-DD…` of the comment line, when present.
fn score_date(comment: &str) -> Option<NaiveDate> {
    let at = comment.find("score_date:")?;
    let rest = &comment[at + "score_date:".len()..];
    NaiveDate::parse_from_str(rest.get(..10)?, "%Y-%m-%d").ok()
}

/// Reads every row; a bad row is reported by line number and skipped.
pub(crate) fn parse_epss(text: &str, on_record: impl FnMut(Result<EpssScore, RecordFailure>)) {
    // A &str is valid UTF-8 and reading from memory cannot fail.
    let _ = parse_epss_reader(text.as_bytes(), on_record);
}

/// [`parse_epss`] reading line by line from `reader` (a file or a gzip stream: the daily file
/// is never all in memory). Fails only when reading fails; a line that is not UTF-8 is a bad
/// row.
pub(crate) fn parse_epss_reader(
    mut reader: impl std::io::BufRead,
    mut on_record: impl FnMut(Result<EpssScore, RecordFailure>),
) -> std::io::Result<()> {
    let mut date = None;
    let mut header_seen = false;
    let mut buf = Vec::new();
    let mut i = 0usize;
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf)? == 0 {
            return Ok(());
        }
        i += 1;
        let line_no = i;
        let Ok(line) = std::str::from_utf8(&buf) else {
            on_record(Err(RecordFailure {
                record_id: Some(format!("line {line_no}")),
                reason: "not UTF-8".into(),
            }));
            continue;
        };
        let line = line.trim_start_matches('\u{feff}').trim();
        if line.is_empty() {
            continue;
        }
        if line.starts_with('#') {
            date = date.or_else(|| score_date(line));
            continue;
        }
        if !header_seen && line.to_ascii_lowercase().starts_with("cve") && !line.starts_with("CVE-")
        {
            header_seen = true;
            continue;
        }
        let fail = |id: Option<&str>, reason: String| RecordFailure {
            record_id: Some(match id {
                Some(id) => format!("{id} (line {line_no})"),
                None => format!("line {line_no}"),
            }),
            reason,
        };
        let mut cols = line.split([',', ';']).map(str::trim);
        let (Some(cve), Some(epss), Some(pct)) = (cols.next(), cols.next(), cols.next()) else {
            on_record(Err(fail(None, "expected cve,epss,percentile".into())));
            continue;
        };
        if !is_cve_id(cve) {
            on_record(Err(fail(None, format!("{cve:?} is not a CVE id"))));
            continue;
        }
        let parse = |s: &str| s.parse::<f64>().ok().filter(|x| (0.0..=1.0).contains(x));
        match (parse(epss), parse(pct)) {
            (Some(epss), Some(percentile)) => on_record(Ok(EpssScore {
                cve: cve.to_string(),
                epss,
                percentile,
                date,
            })),
            _ => on_record(Err(fail(
                Some(cve),
                format!("epss {epss:?} / percentile {pct:?} must be numbers in 0..1"),
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_first_style_files() {
        let text = "#model_version:v2025.03.14,score_date:2025-08-20T12:55:00Z\ncve,epss,percentile\nCVE-2024-0001,0.5,0.9\nCVE-2024-0002,x,0.1\nbogus\n";
        assert!(looks_like_epss(text));
        let mut ok = Vec::new();
        let mut bad = Vec::new();
        parse_epss(text, |r| match r {
            Ok(s) => ok.push(s),
            Err(e) => bad.push(e),
        });
        assert_eq!(ok.len(), 1);
        assert_eq!(ok[0].date, NaiveDate::from_ymd_opt(2025, 8, 20));
        assert_eq!(bad.len(), 2);
        assert_eq!(bad[0].record_id.as_deref(), Some("CVE-2024-0002 (line 4)"));
    }
}

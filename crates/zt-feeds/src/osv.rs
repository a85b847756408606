//! OSV records (<https://ossf.github.io/osv-schema/>) → [`Advisory`].
//!
//! The serde structs are lenient where real data varies (missing optional fields, `null`s) and
//! strict where a wrong value would make matching wrong (ids, range events, timestamps).

use serde::Deserialize;
use serde_json::Value;
use zt_advisory::{
    Advisory, AffectedPackage, AffectedRange, Cvss, RangeEvent, RangeKind, SeverityLabel, Source,
};

use crate::time::parse_timestamp;
use crate::{severity_label, RecordFailure};

#[derive(Debug, Deserialize)]
pub(crate) struct OsvRecord {
    id: String,
    #[serde(default)]
    modified: Option<String>,
    #[serde(default)]
    published: Option<String>,
    #[serde(default)]
    withdrawn: Option<String>,
    #[serde(default)]
    aliases: Option<Vec<String>>,
    #[serde(default)]
    upstream: Option<Vec<String>>,
    #[serde(default)]
    related: Option<Vec<String>>,
    #[serde(default)]
    summary: Option<String>,
    #[serde(default)]
    details: Option<String>,
    #[serde(default)]
    severity: Option<Vec<OsvSeverity>>,
    #[serde(default)]
    affected: Option<Vec<OsvAffected>>,
    #[serde(default)]
    references: Option<Vec<OsvReference>>,
    #[serde(default)]
    database_specific: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct OsvSeverity {
    #[serde(rename = "type")]
    kind: String,
    score: String,
}

#[derive(Debug, Deserialize)]
struct OsvReference {
    #[serde(default)]
    url: Option<String>,
}

#[derive(Debug, Deserialize)]
struct OsvAffected {
    #[serde(default)]
    package: Option<OsvPackage>,
    #[serde(default)]
    severity: Option<Vec<OsvSeverity>>,
    #[serde(default)]
    ranges: Option<Vec<OsvRange>>,
    #[serde(default)]
    versions: Option<Vec<String>>,
    #[serde(default)]
    ecosystem_specific: Option<Value>,
    #[serde(default)]
    database_specific: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct OsvPackage {
    ecosystem: String,
    name: String,
    #[serde(default)]
    purl: Option<String>,
}

#[derive(Debug, Deserialize)]
struct OsvRange {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    repo: Option<String>,
    #[serde(default)]
    events: Vec<OsvEvent>,
}

#[derive(Debug, Deserialize)]
struct OsvEvent {
    #[serde(default)]
    introduced: Option<String>,
    #[serde(default)]
    fixed: Option<String>,
    #[serde(default)]
    last_affected: Option<String>,
    #[serde(default)]
    limit: Option<String>,
}

/// The cheap test used by format detection: an object with `id` and (`affected` or `modified`)
/// and none of the NVD/KEV keys.
pub(crate) fn looks_like_osv(v: &Value) -> bool {
    v.get("id").is_some_and(Value::is_string)
        && (v.get("affected").is_some() || v.get("modified").is_some())
        && v.get("cve").is_none()
        && v.get("sourceIdentifier").is_none()
}

/// Parses one OSV record from its JSON text.
#[cfg(test)]
pub(crate) fn parse_osv_bytes(bytes: &[u8]) -> Result<Advisory, RecordFailure> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| RecordFailure {
        record_id: None,
        reason: format!("invalid JSON: {e}"),
    })?;
    parse_osv_value(v)
}

/// Converts one OSV record already parsed as a JSON value (array elements, zip entries).
pub(crate) fn parse_osv_value(v: Value) -> Result<Advisory, RecordFailure> {
    let id = v.get("id").and_then(Value::as_str).map(str::to_string);
    match serde_path_to_error::deserialize::<_, OsvRecord>(v) {
        Ok(raw) => convert(raw),
        Err(e) => Err(RecordFailure {
            record_id: id,
            reason: describe_serde_error(&e),
        }),
    }
}

pub(crate) fn describe_serde_error<E: std::fmt::Display>(
    e: &serde_path_to_error::Error<E>,
) -> String {
    let path = e.path().to_string();
    if path.is_empty() || path == "." {
        e.inner().to_string()
    } else {
        format!("{}: {}", path, e.inner())
    }
}

fn convert(raw: OsvRecord) -> Result<Advisory, RecordFailure> {
    let id = raw.id.trim().to_string();
    let fail = |reason: String| RecordFailure {
        record_id: Some(id.clone()),
        reason,
    };
    if id.is_empty() {
        return Err(fail("empty id".to_string()));
    }
    let mut adv = Advisory::new(id.clone(), Source::Osv);
    let ts = |field: &str, v: &Option<String>| -> Result<_, RecordFailure> {
        match v.as_deref().map(str::trim) {
            None | Some("") => Ok(None),
            Some(s) => parse_timestamp(s)
                .map(Some)
                .ok_or_else(|| fail(format!("{field}: invalid timestamp {s:?}"))),
        }
    };
    adv.modified = ts("modified", &raw.modified)?;
    adv.published = ts("published", &raw.published)?;
    adv.withdrawn = ts("withdrawn", &raw.withdrawn)?;
    adv.aliases = clean_ids(raw.aliases.unwrap_or_default(), &id);
    adv.upstream = clean_ids(raw.upstream.unwrap_or_default(), &id);
    adv.related = clean_ids(raw.related.unwrap_or_default(), &id);
    adv.summary = raw.summary.unwrap_or_default().trim().to_string();
    adv.details = raw.details.unwrap_or_default();
    adv.references = raw
        .references
        .unwrap_or_default()
        .into_iter()
        .filter_map(|r| r.url)
        .collect();

    let source_name = id_source_name(&id);
    for s in raw.severity.unwrap_or_default() {
        add_severity(&mut adv.cvss, &mut adv.severity_labels, &s);
    }

    if let Some(db) = &raw.database_specific {
        // GHSA: database_specific.severity = "MODERATE"; cwe_ids = ["CWE-79"].
        if let Some(label) = db.get("severity").and_then(Value::as_str) {
            push_label(&mut adv.severity_labels, source_name, label);
        }
        if let Some(cwes) = db.get("cwe_ids").and_then(Value::as_array) {
            adv.cwes = cwes
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect();
        }
    }

    for a in raw.affected.unwrap_or_default() {
        let Some(pkg) = a.package else {
            // An affected entry without a package names only commits (GIT ranges of a
            // repository): nothing a version matcher can use, and not an error.
            continue;
        };
        let mut out = AffectedPackage::new(pkg.ecosystem.trim(), pkg.name.trim());
        out.purl = pkg.purl.filter(|p| !p.trim().is_empty());
        out.versions = a.versions.unwrap_or_default();
        for r in a.ranges.unwrap_or_default() {
            let kind = match r.kind.as_str() {
                "SEMVER" => RangeKind::Semver,
                "ECOSYSTEM" => RangeKind::Ecosystem,
                "GIT" => RangeKind::Git,
                other => return Err(fail(format!("unknown range type {other:?}"))),
            };
            let mut events = Vec::with_capacity(r.events.len());
            for e in r.events {
                let ev = match (e.introduced, e.fixed, e.last_affected, e.limit) {
                    (Some(v), None, None, None) => RangeEvent::Introduced(v),
                    (None, Some(v), None, None) => RangeEvent::Fixed(v),
                    (None, None, Some(v), None) => RangeEvent::LastAffected(v),
                    (None, None, None, Some(v)) => RangeEvent::Limit(v),
                    _ => {
                        return Err(fail(format!(
                            "affected {}/{}: a range event must have exactly one of \
                             introduced, fixed, last_affected, limit",
                            out.ecosystem, out.name
                        )))
                    }
                };
                events.push(ev);
            }
            out.ranges.push(AffectedRange {
                kind,
                repo: r.repo,
                events,
            });
        }
        for s in a.severity.unwrap_or_default() {
            add_severity(&mut adv.cvss, &mut out.severity_labels, &s);
        }
        if let Some(es) = &a.ecosystem_specific {
            // Ubuntu: binaries = [{binary_name, binary_version}]; some feeds use plain strings.
            if let Some(bins) = es.get("binaries").and_then(Value::as_array) {
                for b in bins {
                    let name = b
                        .as_str()
                        .or_else(|| b.get("binary_name").and_then(Value::as_str));
                    if let Some(n) = name {
                        if !out.binaries.iter().any(|x| x == n) {
                            out.binaries.push(n.to_string());
                        }
                    }
                }
            }
            // Debian: urgency; OSS-Fuzz and others: severity.
            for key in ["urgency", "severity"] {
                if let Some(label) = es.get(key).and_then(Value::as_str) {
                    push_label(&mut out.severity_labels, source_name, label);
                }
            }
        }
        if let Some(ds) = &a.database_specific {
            // RustSec: informational = "unmaintained" | "unsound" | "notice" | null.
            if let Some(info) = ds.get("informational").and_then(Value::as_str) {
                adv.informational = Some(info.to_string());
            }
        }
        adv.affected.push(out);
    }
    Ok(adv)
}

/// Adds a CVSS vector (scored by us) or a label from an OSV `severity` entry.
fn add_severity(cvss: &mut Vec<Cvss>, labels: &mut Vec<SeverityLabel>, s: &OsvSeverity) {
    match s.kind.as_str() {
        "CVSS_V2" | "CVSS_V3" | "CVSS_V4" => {
            // An unscorable vector is dropped rather than failing the whole record: the
            // record still says which versions are affected.
            if let Ok(c) = Cvss::from_vector(&s.score) {
                if !cvss.iter().any(|x| x.vector == c.vector) {
                    cvss.push(c);
                }
            }
        }
        _ => push_label(labels, &s.kind.to_ascii_lowercase(), &s.score),
    }
}

fn push_label(labels: &mut Vec<SeverityLabel>, source: &str, label: &str) {
    let label = label.trim();
    if label.is_empty() {
        return;
    }
    let l = SeverityLabel {
        source: source.to_string(),
        label: label.to_string(),
        severity: severity_label(label),
    };
    if !labels.contains(&l) {
        labels.push(l);
    }
}

/// "GHSA-…" → "ghsa", "RUSTSEC-…" → "rustsec", "UBUNTU-CVE-…" → "ubuntu".
fn id_source_name(id: &str) -> &'static str {
    let prefix = id.split('-').next().unwrap_or("");
    match prefix {
        "GHSA" => "ghsa",
        "PYSEC" => "pypa",
        "RUSTSEC" => "rustsec",
        "GO" => "go",
        "DSA" | "DLA" | "DTSA" => "debian",
        "UBUNTU" | "USN" | "LSN" => "ubuntu",
        "CGA" => "chainguard",
        "CVE" => "cve",
        "OSV" => "oss-fuzz",
        _ => "osv",
    }
}

/// Trims, drops empties and the record's own id, and removes duplicates (keeping order).
fn clean_ids(ids: Vec<String>, own: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(ids.len());
    for i in ids {
        let i = i.trim();
        if i.is_empty() || i == own || out.iter().any(|x| x == i) {
            continue;
        }
        out.push(i.to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_a_minimal_record() {
        let a = parse_osv_bytes(
            br#"{"id":"GHSA-x","modified":"2023-01-02T03:04:05Z","aliases":["CVE-2023-1111","GHSA-x"],
                "severity":[{"type":"CVSS_V3","score":"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
                "database_specific":{"severity":"MODERATE"},
                "affected":[{"package":{"ecosystem":"PyPI","name":"x"},
                  "ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"1.2"}]}]}]}"#,
        )
        .unwrap();
        assert_eq!(a.aliases, vec!["CVE-2023-1111"]);
        assert_eq!(a.cvss[0].score, 9.8);
        assert_eq!(a.severity_labels[0].label, "MODERATE");
        assert_eq!(a.affected[0].fixed_versions(), vec!["1.2"]);
    }

    #[test]
    fn reports_bad_records_with_their_id() {
        let e = parse_osv_bytes(br#"{"id":"X-1","modified":123}"#).unwrap_err();
        assert_eq!(e.record_id.as_deref(), Some("X-1"));
        assert!(e.reason.contains("modified"), "{}", e.reason);
        let e = parse_osv_bytes(br#"{"modified":"2020-01-01T00:00:00Z"}"#).unwrap_err();
        assert_eq!(e.record_id, None);
        assert!(e.reason.contains("id"), "{}", e.reason);
        let e = parse_osv_bytes(br#"{"id":"X-2","modified":"yesterday"}"#).unwrap_err();
        assert!(e.reason.contains("timestamp"), "{}", e.reason);
        let e = parse_osv_bytes(
            br#"{"id":"X-3","affected":[{"package":{"ecosystem":"npm","name":"a"},"ranges":[{"type":"SEMVER","events":[{"introduced":"0","fixed":"1"}]}]}]}"#,
        )
        .unwrap_err();
        assert!(e.reason.contains("exactly one"), "{}", e.reason);
        assert!(parse_osv_bytes(br#"{"id":"X-4""#).is_err());
    }
}

//! CISA Known Exploited Vulnerabilities: the JSON catalog and its CSV twin.

use serde::Deserialize;
use serde_json::Value;
use zt_advisory::{is_cve_id, KevEntry};

use crate::osv::describe_serde_error;
use crate::time::parse_date;
use crate::RecordFailure;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawKev {
    #[serde(rename = "cveID")]
    cve_id: String,
    #[serde(default)]
    vendor_project: Option<String>,
    #[serde(default)]
    product: Option<String>,
    #[serde(default)]
    vulnerability_name: Option<String>,
    date_added: String,
    #[serde(default)]
    short_description: Option<String>,
    #[serde(default)]
    required_action: Option<String>,
    #[serde(default)]
    due_date: Option<String>,
    #[serde(default)]
    known_ransomware_campaign_use: Option<String>,
    #[serde(default)]
    notes: Option<String>,
    /// A list in the JSON catalog, a comma-separated string in the CSV.
    #[serde(default)]
    cwes: Option<Value>,
}

/// True for the catalog object.
pub(crate) fn looks_like_kev(v: &Value) -> bool {
    v.get("catalogVersion").is_some()
        || (v.get("vulnerabilities").is_some_and(Value::is_array)
            && v.pointer("/vulnerabilities/0/cveID").is_some())
}

pub(crate) fn parse_kev_value(v: Value) -> Result<KevEntry, RecordFailure> {
    let id = v.get("cveID").and_then(Value::as_str).map(str::to_string);
    let raw: RawKev = serde_path_to_error::deserialize(v).map_err(|e| RecordFailure {
        record_id: id,
        reason: describe_serde_error(&e),
    })?;
    convert(raw)
}

fn convert(raw: RawKev) -> Result<KevEntry, RecordFailure> {
    let cve = raw.cve_id.trim().to_string();
    let fail = |reason: String| RecordFailure {
        record_id: Some(cve.clone()),
        reason,
    };
    if !is_cve_id(&cve) {
        return Err(fail(format!("cveID {cve:?} is not a CVE id")));
    }
    let date_added = parse_date(&raw.date_added)
        .ok_or_else(|| fail(format!("dateAdded: invalid date {:?}", raw.date_added)))?;
    let due_date = match raw.due_date.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(s) => Some(parse_date(s).ok_or_else(|| fail(format!("dueDate: invalid date {s:?}")))?),
    };
    let cwes = match raw.cwes {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
        Some(Value::String(s)) => s
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
        _ => Vec::new(),
    };
    Ok(KevEntry {
        cve,
        vendor_project: raw.vendor_project.unwrap_or_default(),
        product: raw.product.unwrap_or_default(),
        vulnerability_name: raw.vulnerability_name.unwrap_or_default(),
        date_added,
        short_description: raw.short_description.unwrap_or_default(),
        required_action: raw.required_action.unwrap_or_default(),
        due_date,
        known_ransomware_campaign_use: raw.known_ransomware_campaign_use.unwrap_or_default(),
        notes: raw.notes.unwrap_or_default(),
        cwes,
    })
}

/// The CSV header of the catalog (first columns).
pub(crate) fn looks_like_kev_csv(head: &str) -> bool {
    head.trim_start_matches('\u{feff}')
        .starts_with("cveID,vendorProject,product")
}

/// Reads the CSV catalog: each row is a record; a bad row is reported with its line.
pub(crate) fn parse_kev_csv(
    bytes: &[u8],
    mut on_record: impl FnMut(Result<KevEntry, RecordFailure>),
) -> Result<(), String> {
    let mut reader = csv::ReaderBuilder::new().flexible(false).from_reader(bytes);
    let headers = reader.headers().map_err(|e| e.to_string())?.clone();
    for (i, row) in reader.records().enumerate() {
        let line = i + 2;
        let row = match row {
            Ok(r) => r,
            Err(e) => {
                on_record(Err(RecordFailure {
                    record_id: Some(format!("line {line}")),
                    reason: e.to_string(),
                }));
                continue;
            }
        };
        let mut obj = serde_json::Map::new();
        for (h, v) in headers.iter().zip(row.iter()) {
            obj.insert(h.to_string(), Value::String(v.to_string()));
        }
        on_record(parse_kev_value(Value::Object(obj)).map_err(|mut f| {
            f.record_id = Some(match f.record_id {
                Some(id) => format!("{id} (line {line})"),
                None => format!("line {line}"),
            });
            f
        }));
    }
    Ok(())
}

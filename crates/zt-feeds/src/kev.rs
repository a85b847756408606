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

/// Reads the CSV catalog (from memory, a file or a gzip stream: row by row): each row is a
/// record; a bad row is reported with its line.
pub(crate) fn parse_kev_csv(
    input: impl std::io::Read,
    mut on_record: impl FnMut(Result<KevEntry, RecordFailure>),
) -> Result<(), String> {
    let mut reader = csv::ReaderBuilder::new().flexible(false).from_reader(input);
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

/// True when the start of a JSON document is the KEV catalog object.
pub(crate) fn looks_like_kev_json_head(head: &str) -> bool {
    let t = head.trim_start_matches('\u{feff}').trim_start();
    t.starts_with('{')
        && (t.contains("\"catalogVersion\"")
            || (t.contains("\"vulnerabilities\"") && t.contains("\"cveID\"")))
}

/// Reads the JSON catalog from `reader` one entry of `vulnerabilities` at a time (the
/// catalog is never all in memory as a document); every other member is skipped unread.
/// Fails when the document itself is not a catalog object or not JSON.
pub(crate) fn parse_kev_json_reader(
    reader: impl std::io::Read,
    on_record: &mut dyn FnMut(Result<KevEntry, RecordFailure>),
) -> Result<(), String> {
    use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

    struct Catalog<'a>(&'a mut dyn FnMut(Result<KevEntry, RecordFailure>));
    struct Entries<'a>(&'a mut dyn FnMut(Result<KevEntry, RecordFailure>));

    impl<'de> DeserializeSeed<'de> for Catalog<'_> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_map(self)
        }
    }
    impl<'de> Visitor<'de> for Catalog<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("the KEV catalog object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let on_record = self.0;
            while let Some(key) = map.next_key::<String>()? {
                if key == "vulnerabilities" {
                    map.next_value_seed(Entries(&mut *on_record))?;
                } else {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
            Ok(())
        }
    }
    impl<'de> DeserializeSeed<'de> for Entries<'_> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_seq(self)
        }
    }
    impl<'de> Visitor<'de> for Entries<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an array of KEV entries")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while let Some(v) = seq.next_element::<Value>()? {
                (self.0)(parse_kev_value(v));
            }
            Ok(())
        }
    }

    let mut de = serde_json::Deserializer::from_reader(reader);
    Catalog(on_record)
        .deserialize(&mut de)
        .map_err(|e| format!("invalid KEV catalog: {e}"))?;
    de.end().map_err(|e| format!("invalid KEV catalog: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_catalog_streams_entry_by_entry_and_names_bad_ones() {
        let doc = r#"{"title":"t","catalogVersion":"1","extra":{"a":[1,2]},"vulnerabilities":[
            {"cveID":"CVE-2021-44228","dateAdded":"2021-12-10","dueDate":"2021-12-24"},
            {"cveID":"nope","dateAdded":"2021-12-10"}]}"#;
        assert!(looks_like_kev_json_head(doc));
        let mut ok = Vec::new();
        let mut bad = Vec::new();
        parse_kev_json_reader(doc.as_bytes(), &mut |r| match r {
            Ok(k) => ok.push(k.cve),
            Err(e) => bad.push(e.record_id),
        })
        .unwrap();
        assert_eq!(ok, vec!["CVE-2021-44228".to_string()]);
        assert_eq!(bad, vec![Some("nope".to_string())]);
        let err = parse_kev_json_reader(&b"{\"vulnerabilities\": 3}"[..], &mut |_| {}).unwrap_err();
        assert!(err.contains("KEV"), "{err}");
    }
}

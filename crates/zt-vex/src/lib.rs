//! VEX documents (Vulnerability Exploitability eXchange) in the two formats ZeroTrace
//! exchanges: CycloneDX 1.6 (a BOM whose `vulnerabilities` carry an `analysis`) and OpenVEX
//! 0.2.0. One model ([`VexDocument`]) in the CycloneDX vocabulary; reading either format
//! refuses the whole document at its first problem, naming its JSON path; writing produces
//! documents the formats' own validators accept. No I/O, no HTTP, no SQL.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Map, Value};

mod cyclonedx;
mod openvex;

pub use cyclonedx::write_cyclonedx;
pub use openvex::write_openvex;

/// The two formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    CycloneDx,
    OpenVex,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::CycloneDx => "cyclonedx",
            Format::OpenVex => "openvex",
        }
    }
}

/// CycloneDX `analysis.state` values.
pub const STATES: [&str; 5] = [
    "in_triage",
    "exploitable",
    "not_affected",
    "false_positive",
    "resolved",
];
/// CycloneDX `analysis.justification` values.
pub const JUSTIFICATIONS: [&str; 9] = [
    "code_not_present",
    "code_not_reachable",
    "requires_configuration",
    "requires_dependency",
    "requires_environment",
    "protected_by_compiler",
    "protected_at_runtime",
    "protected_at_perimeter",
    "protected_by_mitigating_control",
];
/// CycloneDX `analysis.response` values.
pub const RESPONSES: [&str; 5] = [
    "can_not_fix",
    "will_not_fix",
    "update",
    "rollback",
    "workaround_available",
];

/// A package a statement is about (empty list: every package).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    pub name: String,
    pub version: Option<String>,
    /// The purl type (`deb`, `npm`, `pypi`, …) when the product came as a purl.
    pub purl_type: Option<String>,
    pub purl: Option<String>,
}

/// One decision about one vulnerability, in the CycloneDX vocabulary.
#[derive(Debug, Clone, PartialEq)]
pub struct VexStatement {
    pub vuln_id: String,
    pub state: String,
    pub justification: Option<String>,
    pub response: Vec<String>,
    pub detail: Option<String>,
    /// The packages it is about (empty: every package).
    pub products: Vec<Product>,
    /// ZeroTrace's own: hide the findings (None: as the state implies).
    pub suppress: Option<bool>,
    /// ZeroTrace's own: until when.
    pub expires_at: Option<DateTime<Utc>>,
    /// ZeroTrace's own: hosts with these tags only.
    pub tags: Vec<String>,
    pub updated_at: Option<DateTime<Utc>>,
}

impl VexStatement {
    /// Whether the statement hides its findings: explicit, or a state that says the finding
    /// needs no fix here (not affected, false positive, resolved).
    pub fn suppresses(&self) -> bool {
        self.suppress.unwrap_or(matches!(
            self.state.as_str(),
            "not_affected" | "false_positive" | "resolved"
        ))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct VexDocument {
    pub format: Format,
    /// The document's id (`@id`, `serialNumber`).
    pub id: Option<String>,
    /// Who made the statements (`author`, or the BOM's authors / manufacturer / tool).
    pub author: Option<String>,
    pub timestamp: Option<DateTime<Utc>>,
    pub statements: Vec<VexStatement>,
}

/// A document refused, with where (a JSON path such as `statements[2].status`) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct VexError {
    pub path: String,
    pub message: String,
}

impl VexError {
    pub(crate) fn at(path: impl Into<String>, message: impl Into<String>) -> VexError {
        VexError {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Documents larger than this are refused.
pub const MAX_BYTES: usize = 32 * 1024 * 1024;
/// Statements per document at most.
pub const MAX_STATEMENTS: usize = 100_000;

/// Reads a CycloneDX or OpenVEX document (told apart by `bomFormat` / `@context`).
pub fn parse(bytes: &[u8]) -> Result<VexDocument, VexError> {
    if bytes.len() > MAX_BYTES {
        return Err(VexError::at("$", format!("larger than {MAX_BYTES} bytes")));
    }
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        VexError::at(
            "$",
            format!("not JSON (line {}, column {}): {e}", e.line(), e.column()),
        )
    })?;
    let Some(obj) = value.as_object() else {
        return Err(VexError::at("$", "a VEX document is a JSON object"));
    };
    if obj.contains_key("bomFormat") {
        cyclonedx::read(value)
    } else if obj
        .get("@context")
        .and_then(Value::as_str)
        .is_some_and(|c| c.starts_with("https://openvex.dev/ns"))
    {
        openvex::read(value)
    } else {
        Err(VexError::at(
            "$",
            "neither CycloneDX (bomFormat) nor OpenVEX (@context https://openvex.dev/ns/…)",
        ))
    }
}

/// Deserializes `value` into `T`, a refusal naming the JSON path under `base`.
pub(crate) fn typed<T: for<'de> Deserialize<'de>>(value: Value, base: &str) -> Result<T, VexError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let path = match (path == ".", base.is_empty()) {
            (true, true) => "$".to_string(),
            (true, false) => base.to_string(),
            (false, true) => path,
            (false, false) => format!("{base}.{path}"),
        };
        VexError::at(path, e.into_inner().to_string())
    })
}

/// A product from a purl (`pkg:type/namespace/name@version?qualifiers`).
pub(crate) fn product_of_purl(purl: &str, path: &str) -> Result<Product, VexError> {
    let p: packageurl::PackageUrl = purl
        .parse()
        .map_err(|e| VexError::at(path, format!("not a package URL: {e}")))?;
    Ok(Product {
        name: p.name().to_string(),
        version: p.version().map(str::to_string),
        purl_type: Some(p.ty().to_string()),
        purl: Some(purl.to_string()),
    })
}

/// The purl of a product (its own, or `pkg:generic/name@version`).
pub(crate) fn purl_of(p: &Product) -> String {
    if let Some(purl) = &p.purl {
        return purl.clone();
    }
    let ty = p.purl_type.as_deref().unwrap_or("generic");
    match packageurl::PackageUrl::new(ty, p.name.as_str()) {
        Ok(mut u) => match &p.version {
            Some(v) => match u.with_version(v.as_str()) {
                Ok(u) => u.to_string(),
                Err(_) => format!("pkg:{ty}/{}", p.name),
            },
            None => u.to_string(),
        },
        Err(_) => format!("pkg:generic/{}", p.name),
    }
}

pub(crate) fn check_in(value: &str, allowed: &[&str], path: &str) -> Result<(), VexError> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(VexError::at(
            path,
            format!("{value:?} is not one of {}", allowed.join(", ")),
        ))
    }
}

pub(crate) fn zt_properties(s: &VexStatement) -> Vec<Value> {
    let mut props = Vec::new();
    props.push(json!({"name": "zerotrace:suppress", "value": s.suppresses().to_string()}));
    if let Some(e) = s.expires_at {
        props.push(json!({"name": "zerotrace:expires_at", "value": e.to_rfc3339()}));
    }
    for t in &s.tags {
        props.push(json!({"name": "zerotrace:tag", "value": t}));
    }
    props
}

pub(crate) fn object(pairs: Vec<(&str, Value)>) -> Value {
    let mut m = Map::new();
    for (k, v) in pairs {
        if !v.is_null() {
            m.insert(k.to_string(), v);
        }
    }
    Value::Object(m)
}

impl VexDocument {
    /// The suppressing statement of this document about a finding (its vulnerability named
    /// by `ids`, an id or alias, in package `name` at `version`), live at `now`.
    pub fn covering(
        &self,
        ids: &[&str],
        name: &str,
        version: &str,
        now: DateTime<Utc>,
    ) -> Option<&VexStatement> {
        self.statements.iter().find(|s| {
            s.suppresses()
                && ids.contains(&s.vuln_id.as_str())
                && s.expires_at.is_none_or(|e| e > now)
                && (s.products.is_empty()
                    || s.products.iter().any(|p| {
                        p.name == name && p.version.as_deref().is_none_or(|v| v == version)
                    }))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_name_the_json_path() {
        let e = parse(br#"{"bomFormat":"CycloneDX","specVersion":"1.6","vulnerabilities":[{"id":"CVE-1","analysis":{"state":"fine"}}]}"#).unwrap_err();
        assert_eq!(e.path, "vulnerabilities[0].analysis.state");
        let e = parse(br#"{"@context":"https://openvex.dev/ns/v0.2.0","statements":[{"vulnerability":{"name":"CVE-1"},"status":"not_affected","justification":"because","products":[]}]}"#).unwrap_err();
        assert_eq!(e.path, "statements[0].justification");
        let e = parse(br#"{"@context":"https://openvex.dev/ns/v0.2.0","statements":[{"vulnerability":{"name":"CVE-1"},"status":"fixed","products":[{"@id":"not a purl"}]}]}"#).unwrap_err();
        assert_eq!(e.path, "statements[0].products[0].@id");
        let e = parse(br#"{"bomFormat":"CycloneDX","specVersion":"1.6","vulnerabilities":[{"id":"CVE-1","analysis":{"state":"resolved"},"affects":[{"ref":"nowhere"}]}]}"#).unwrap_err();
        assert_eq!(e.path, "vulnerabilities[0].affects[0].ref");
        let e = parse(br#"{"bomFormat":"CycloneDX","specVersion":"1.6","vulnerabilities":[{"analysis":{"state":"resolved"}}]}"#).unwrap_err();
        assert_eq!(e.path, "vulnerabilities[0]");
        let e = parse(b"[1]").unwrap_err();
        assert_eq!(e.path, "$");
        let e = parse(b"{\"a\":").unwrap_err();
        assert!(e.message.contains("line 1"), "{e}");
    }

    #[test]
    fn both_formats_round_trip_the_decisions() {
        let doc = VexDocument {
            format: Format::CycloneDx,
            id: None,
            author: Some("Acme security".into()),
            timestamp: None,
            statements: vec![VexStatement {
                vuln_id: "CVE-2023-4863".into(),
                state: "not_affected".into(),
                justification: Some("code_not_reachable".into()),
                response: vec!["will_not_fix".into()],
                detail: Some("never decodes WebP".into()),
                products: vec![Product {
                    name: "libwebp7".into(),
                    version: Some("1.2.4-0.2".into()),
                    purl_type: Some("deb".into()),
                    purl: None,
                }],
                suppress: Some(true),
                expires_at: Some("2030-01-01T00:00:00Z".parse().unwrap()),
                tags: vec!["dmz".into()],
                updated_at: None,
            }],
        };
        let cdx = write_cyclonedx(&doc, "3e671687-395b-41f5-a30f-a58921a69b79", "0.1.0");
        let back = parse(cdx.to_string().as_bytes()).unwrap();
        assert_eq!(back.statements.len(), 1);
        let s = &back.statements[0];
        assert_eq!(s.state, "not_affected");
        assert_eq!(s.justification.as_deref(), Some("code_not_reachable"));
        assert_eq!(s.response, ["will_not_fix"]);
        assert_eq!(s.products[0].name, "libwebp7");
        assert_eq!(s.products[0].version.as_deref(), Some("1.2.4-0.2"));
        assert_eq!(s.expires_at, doc.statements[0].expires_at);
        assert_eq!(s.tags, ["dmz"]);
        assert_eq!(back.author.as_deref(), Some("Acme security"));
        let ov = write_openvex(&doc, "https://zerotrace.invalid/vex/1");
        let back = parse(ov.to_string().as_bytes()).unwrap();
        let s = &back.statements[0];
        assert_eq!(s.state, "not_affected");
        assert_eq!(s.justification.as_deref(), Some("code_not_reachable"));
        assert_eq!(s.products[0].name, "libwebp7");
        // What OpenVEX has no field for travels in status_notes, and comes back.
        let notes = ov["statements"][0]["status_notes"].as_str().unwrap();
        assert!(
            notes.starts_with("never decodes WebP\nZeroTrace: suppress=true; expires_at=2030-01-01T00:00:00+00:00; tag=dmz"),
            "{notes}"
        );
        assert_eq!(s.suppress, Some(true));
        assert_eq!(s.expires_at, doc.statements[0].expires_at);
        assert_eq!(s.tags, ["dmz"]);
        assert_eq!(s.detail.as_deref(), Some("never decodes WebP"));
        assert!(back
            .covering(&["CVE-2023-4863"], "libwebp7", "1.2.4-0.2", Utc::now())
            .is_some());
        // After the expiry the statement covers nothing, here as in CycloneDX.
        assert!(back
            .covering(
                &["CVE-2023-4863"],
                "libwebp7",
                "1.2.4-0.2",
                "2031-01-01T00:00:00Z".parse().unwrap()
            )
            .is_none());
        // A bad value of ours refuses the document, naming the field.
        let mut bad = ov.clone();
        bad["statements"][0]["status_notes"] = json!("ZeroTrace: suppress=maybe");
        let e = parse(bad.to_string().as_bytes()).unwrap_err();
        assert_eq!(e.path, "statements[0].status_notes");
        assert!(back
            .covering(&["CVE-2023-4863"], "libwebp7", "1.3.0", Utc::now())
            .is_none());
    }
}

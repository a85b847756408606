//! OpenVEX 0.2.0 (https://github.com/openvex/spec): statements of a status about a
//! vulnerability for products named by purls.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::*;

/// The product id of "every package" in documents ZeroTrace writes.
pub const ANY_PACKAGE: &str = "urn:zerotrace:any-package";

/// OpenVEX 0.2.0 has no field for an expiry or for hiding findings, and its JSON schema
/// allows no fields of ours in a statement. What CycloneDX carries as `zerotrace:`
/// properties goes into `status_notes` instead, as one line starting with this, e.g.
/// `ZeroTrace: suppress=true; expires_at=2030-01-01T00:00:00+00:00; tag=dmz`; reading it
/// back restores them. Other tools show the line as text: they keep applying a
/// `not_affected` statement after the expiry (the document says so in words).
pub const NOTES_PREFIX: &str = "ZeroTrace: ";

const STATUSES: [&str; 4] = ["not_affected", "affected", "fixed", "under_investigation"];
const OPENVEX_JUSTIFICATIONS: [&str; 5] = [
    "component_not_present",
    "vulnerable_code_not_present",
    "vulnerable_code_not_in_execute_path",
    "vulnerable_code_cannot_be_controlled_by_adversary",
    "inline_mitigations_already_exist",
];

#[derive(Deserialize)]
struct Doc {
    #[serde(rename = "@id")]
    id: Option<String>,
    author: Option<String>,
    timestamp: Option<DateTime<Utc>>,
    statements: Vec<Statement>,
}

#[derive(Deserialize)]
struct Statement {
    vulnerability: Vulnerability,
    #[serde(default)]
    products: Vec<ProductRef>,
    status: String,
    justification: Option<String>,
    impact_statement: Option<String>,
    action_statement: Option<String>,
    status_notes: Option<String>,
    timestamp: Option<DateTime<Utc>>,
}

#[derive(Deserialize)]
struct Vulnerability {
    name: String,
}

#[derive(Deserialize)]
struct ProductRef {
    #[serde(rename = "@id")]
    id: String,
}

fn state_of(status: &str) -> &'static str {
    match status {
        "not_affected" => "not_affected",
        "affected" => "exploitable",
        "fixed" => "resolved",
        _ => "in_triage",
    }
}

fn justification_of(j: &str) -> &'static str {
    match j {
        "component_not_present" | "vulnerable_code_not_present" => "code_not_present",
        "vulnerable_code_not_in_execute_path" => "code_not_reachable",
        "vulnerable_code_cannot_be_controlled_by_adversary" => "requires_environment",
        _ => "protected_by_mitigating_control",
    }
}

pub(crate) fn read(value: Value) -> Result<VexDocument, VexError> {
    let doc: Doc = typed(value, "")?;
    if doc.statements.len() > MAX_STATEMENTS {
        return Err(VexError::at(
            "statements",
            format!("more than {MAX_STATEMENTS}"),
        ));
    }
    let mut statements = Vec::with_capacity(doc.statements.len());
    for (i, s) in doc.statements.iter().enumerate() {
        let at = |field: &str| format!("statements[{i}].{field}");
        if s.vulnerability.name.trim().is_empty() {
            return Err(VexError::at(at("vulnerability.name"), "must not be empty"));
        }
        check_in(&s.status, &STATUSES, &at("status"))?;
        if let Some(j) = &s.justification {
            check_in(j, &OPENVEX_JUSTIFICATIONS, &at("justification"))?;
        }
        if s.status == "not_affected" && s.justification.is_none() && s.impact_statement.is_none() {
            return Err(VexError::at(
                at("justification"),
                "a not_affected statement needs a justification or an impact_statement",
            ));
        }
        let mut products = Vec::with_capacity(s.products.len());
        for (k, p) in s.products.iter().enumerate() {
            if p.id == ANY_PACKAGE {
                continue;
            }
            products.push(product_of_purl(&p.id, &at(&format!("products[{k}].@id")))?);
        }
        let (notes, ours) = split_notes(s.status_notes.as_deref());
        let detail = [&s.impact_statement, &s.action_statement, &notes]
            .iter()
            .filter_map(|t| t.as_deref())
            .collect::<Vec<_>>()
            .join("\n");
        statements.push(VexStatement {
            vuln_id: s.vulnerability.name.trim().to_string(),
            state: state_of(&s.status).to_string(),
            justification: s
                .justification
                .as_deref()
                .map(|j| justification_of(j).to_string()),
            response: Vec::new(),
            detail: (!detail.is_empty()).then_some(detail),
            products,
            suppress: None,
            expires_at: None,
            tags: Vec::new(),
            updated_at: s.timestamp,
        });
        if let Some(line) = ours {
            let last = statements.len() - 1;
            read_ours(line, &mut statements[last], &at("status_notes"))?;
        }
    }
    Ok(VexDocument {
        format: Format::OpenVex,
        id: doc.id,
        author: doc.author,
        timestamp: doc.timestamp,
        statements,
    })
}

/// `status_notes` without our line, and our line (after the prefix).
fn split_notes(notes: Option<&str>) -> (Option<String>, Option<&str>) {
    let Some(notes) = notes else {
        return (None, None);
    };
    let mut ours = None;
    let rest: Vec<&str> = notes
        .lines()
        .filter(|l| match l.strip_prefix(NOTES_PREFIX) {
            Some(tail) => {
                ours = Some(tail);
                false
            }
            None => true,
        })
        .collect();
    let rest = rest.join("\n");
    ((!rest.trim().is_empty()).then_some(rest), ours)
}

/// Our line's `key=value; …` pairs into the statement; an unknown key is ignored (a newer
/// ZeroTrace may add some), a bad value refuses the document.
fn read_ours(line: &str, s: &mut VexStatement, path: &str) -> Result<(), VexError> {
    for pair in line.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key.trim() {
            "suppress" => {
                s.suppress = Some(match value.trim() {
                    "true" => true,
                    "false" => false,
                    other => {
                        return Err(VexError::at(
                            path,
                            format!("suppress={other:?}: true or false"),
                        ))
                    }
                })
            }
            "expires_at" => {
                s.expires_at = Some(
                    DateTime::parse_from_rfc3339(value.trim())
                        .map_err(|e| {
                            VexError::at(path, format!("expires_at={value:?}: not RFC 3339: {e}"))
                        })?
                        .with_timezone(&Utc),
                )
            }
            "tag" => s.tags.push(value.trim().to_string()),
            _ => {}
        }
    }
    Ok(())
}

/// Our line for a statement (see [`NOTES_PREFIX`]).
fn ours_line(s: &VexStatement) -> String {
    let mut parts = vec![format!("suppress={}", s.suppresses())];
    if let Some(e) = s.expires_at {
        parts.push(format!("expires_at={}", e.to_rfc3339()));
    }
    for t in &s.tags {
        parts.push(format!("tag={t}"));
    }
    format!("{NOTES_PREFIX}{}", parts.join("; "))
}

fn status_of(state: &str) -> &'static str {
    match state {
        "not_affected" | "false_positive" => "not_affected",
        "exploitable" => "affected",
        "resolved" => "fixed",
        _ => "under_investigation",
    }
}

fn openvex_justification(j: &str) -> &'static str {
    match j {
        "code_not_present" => "vulnerable_code_not_present",
        "code_not_reachable" => "vulnerable_code_not_in_execute_path",
        "requires_configuration" | "requires_dependency" | "requires_environment" => {
            "vulnerable_code_cannot_be_controlled_by_adversary"
        }
        _ => "inline_mitigations_already_exist",
    }
}

/// The document as OpenVEX 0.2.0; `id` is the document's IRI.
pub fn write_openvex(doc: &VexDocument, id: &str) -> Value {
    let statements: Vec<Value> = doc
        .statements
        .iter()
        .map(|s| {
            let status = status_of(&s.state);
            let products: Vec<Value> = if s.products.is_empty() {
                vec![json!({ "@id": ANY_PACKAGE })]
            } else {
                s.products
                    .iter()
                    .map(|p| json!({ "@id": purl_of(p) }))
                    .collect()
            };
            let mut impact = None;
            let justification = s.justification.as_deref().map(openvex_justification);
            if status == "not_affected" && justification.is_none() {
                impact = Some(
                    s.detail
                        .clone()
                        .unwrap_or_else(|| format!("marked {} in ZeroTrace", s.state)),
                );
            }
            let action = (status == "affected").then(|| {
                let mut parts: Vec<String> = s.response.clone();
                if let Some(d) = &s.detail {
                    parts.push(d.clone());
                }
                if parts.is_empty() {
                    "no action decided yet".to_string()
                } else {
                    parts.join("; ")
                }
            });
            let detail_note = (impact.is_none() && action.is_none())
                .then(|| s.detail.clone())
                .flatten();
            let mut notes = String::new();
            if let Some(d) = detail_note {
                notes.push_str(&d);
                notes.push('\n');
            }
            notes.push_str(&ours_line(s));
            object(vec![
                ("vulnerability", json!({ "name": s.vuln_id })),
                ("timestamp", json!(s.updated_at.map(|t| t.to_rfc3339()))),
                ("products", Value::Array(products)),
                ("status", json!(status)),
                ("justification", json!(justification)),
                ("impact_statement", json!(impact)),
                ("action_statement", json!(action)),
                ("status_notes", json!(notes)),
            ])
        })
        .collect();
    object(vec![
        ("@context", json!("https://openvex.dev/ns/v0.2.0")),
        ("@id", json!(id)),
        (
            "author",
            json!(doc.author.clone().unwrap_or_else(|| "ZeroTrace".into())),
        ),
        (
            "timestamp",
            json!(doc.timestamp.unwrap_or_else(Utc::now).to_rfc3339()),
        ),
        ("version", json!(1)),
        ("statements", Value::Array(statements)),
    ])
}

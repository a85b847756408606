//! OpenVEX 0.2.0 (https://github.com/openvex/spec): statements of a status about a
//! vulnerability for products named by purls.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::*;

/// The product id of "every package" in documents ZeroTrace writes.
pub const ANY_PACKAGE: &str = "urn:zerotrace:any-package";

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
        let detail = [&s.impact_statement, &s.action_statement, &s.status_notes]
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
    }
    Ok(VexDocument {
        format: Format::OpenVex,
        id: doc.id,
        author: doc.author,
        timestamp: doc.timestamp,
        statements,
    })
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
            let notes = (impact.is_none() && action.is_none())
                .then(|| s.detail.clone())
                .flatten();
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

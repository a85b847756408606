//! CycloneDX 1.6 VEX: a BOM whose `vulnerabilities` carry an `analysis` and `affects`
//! references to its `components` (or purls).

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::*;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Bom {
    bom_format: String,
    spec_version: String,
    serial_number: Option<String>,
    #[serde(default)]
    metadata: Option<Metadata>,
    #[serde(default)]
    components: Vec<Component>,
    #[serde(default)]
    vulnerabilities: Vec<Vuln>,
}

#[derive(Deserialize)]
struct Metadata {
    timestamp: Option<DateTime<Utc>>,
    #[serde(default)]
    authors: Vec<Named>,
    manufacturer: Option<Named>,
    supplier: Option<Named>,
}

#[derive(Deserialize)]
struct Named {
    name: Option<String>,
}

#[derive(Deserialize)]
struct Component {
    #[serde(rename = "bom-ref")]
    bom_ref: Option<String>,
    name: String,
    version: Option<String>,
    purl: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Vuln {
    id: String,
    analysis: Option<Analysis>,
    #[serde(default)]
    affects: Vec<Affect>,
    #[serde(default)]
    properties: Vec<Property>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Analysis {
    state: Option<String>,
    justification: Option<String>,
    #[serde(default)]
    response: Vec<String>,
    detail: Option<String>,
    last_updated: Option<DateTime<Utc>>,
}

#[derive(Deserialize)]
struct Affect {
    #[serde(rename = "ref")]
    reference: String,
}

#[derive(Deserialize)]
struct Property {
    name: String,
    value: Option<String>,
}

pub(crate) fn read(value: Value) -> Result<VexDocument, VexError> {
    let bom: Bom = typed(value, "")?;
    if bom.bom_format != "CycloneDX" {
        return Err(VexError::at("bomFormat", "must be \"CycloneDX\""));
    }
    if !matches!(bom.spec_version.as_str(), "1.4" | "1.5" | "1.6" | "1.7") {
        return Err(VexError::at(
            "specVersion",
            format!(
                "{:?}: VEX analyses are read from CycloneDX 1.4 to 1.7",
                bom.spec_version
            ),
        ));
    }
    if bom.vulnerabilities.len() > MAX_STATEMENTS {
        return Err(VexError::at(
            "vulnerabilities",
            format!("more than {MAX_STATEMENTS}"),
        ));
    }
    let mut by_ref: HashMap<&str, (usize, &Component)> = HashMap::new();
    for (i, c) in bom.components.iter().enumerate() {
        if let Some(r) = &c.bom_ref {
            by_ref.insert(r.as_str(), (i, c));
        }
    }
    let mut statements = Vec::with_capacity(bom.vulnerabilities.len());
    for (i, v) in bom.vulnerabilities.iter().enumerate() {
        let at = |field: &str| format!("vulnerabilities[{i}].{field}");
        if v.id.trim().is_empty() {
            return Err(VexError::at(at("id"), "must not be empty"));
        }
        let Some(analysis) = &v.analysis else {
            return Err(VexError::at(
                at("analysis"),
                "a VEX statement needs an analysis",
            ));
        };
        let Some(state) = &analysis.state else {
            return Err(VexError::at(at("analysis.state"), "missing"));
        };
        check_in(state, &STATES, &at("analysis.state"))?;
        if let Some(j) = &analysis.justification {
            check_in(j, &JUSTIFICATIONS, &at("analysis.justification"))?;
        }
        for (k, r) in analysis.response.iter().enumerate() {
            check_in(r, &RESPONSES, &at(&format!("analysis.response[{k}]")))?;
        }
        let mut products = Vec::with_capacity(v.affects.len());
        for (k, a) in v.affects.iter().enumerate() {
            let path = at(&format!("affects[{k}].ref"));
            match by_ref.get(a.reference.as_str()) {
                Some((ci, c)) => {
                    if c.name.trim().is_empty() {
                        return Err(VexError::at(
                            format!("components[{ci}].name"),
                            "must not be empty",
                        ));
                    }
                    let cpath = format!("components[{ci}].purl");
                    products.push(match &c.purl {
                        Some(purl) => product_of_purl(purl, &cpath)?,
                        None => Product {
                            name: c.name.clone(),
                            version: c.version.clone(),
                            purl_type: None,
                            purl: None,
                        },
                    });
                }
                None if a.reference.starts_with("pkg:") => {
                    products.push(product_of_purl(&a.reference, &path)?)
                }
                None => {
                    return Err(VexError::at(
                        path,
                        format!(
                            "{:?} names no component of the document and is not a package URL",
                            a.reference
                        ),
                    ))
                }
            }
        }
        let mut s = VexStatement {
            vuln_id: v.id.trim().to_string(),
            state: state.clone(),
            justification: analysis.justification.clone(),
            response: analysis.response.clone(),
            detail: analysis.detail.clone(),
            products,
            suppress: None,
            expires_at: None,
            tags: Vec::new(),
            updated_at: analysis.last_updated,
        };
        for (k, p) in v.properties.iter().enumerate() {
            let path = at(&format!("properties[{k}].value"));
            let value = p.value.as_deref().unwrap_or("");
            match p.name.as_str() {
                "zerotrace:suppress" => {
                    s.suppress = Some(match value {
                        "true" => true,
                        "false" => false,
                        _ => return Err(VexError::at(path, "true or false")),
                    })
                }
                "zerotrace:expires_at" => {
                    s.expires_at = Some(
                        DateTime::parse_from_rfc3339(value)
                            .map_err(|e| VexError::at(path, format!("not RFC 3339: {e}")))?
                            .with_timezone(&Utc),
                    )
                }
                "zerotrace:tag" => s.tags.push(value.to_string()),
                _ => {}
            }
        }
        statements.push(s);
    }
    let author = bom.metadata.as_ref().and_then(|m| {
        m.authors
            .iter()
            .find_map(|a| a.name.clone())
            .or_else(|| m.manufacturer.as_ref().and_then(|n| n.name.clone()))
            .or_else(|| m.supplier.as_ref().and_then(|n| n.name.clone()))
    });
    Ok(VexDocument {
        format: Format::CycloneDx,
        id: bom.serial_number,
        author,
        timestamp: bom.metadata.and_then(|m| m.timestamp),
        statements,
    })
}

/// The document as CycloneDX 1.6 VEX. `serial` is a UUID (the BOM's serial number).
pub fn write_cyclonedx(doc: &VexDocument, serial: &str, tool_version: &str) -> Value {
    // One component per distinct product, referenced by its purl.
    let mut components: BTreeMap<String, Value> = BTreeMap::new();
    let mut vulnerabilities = Vec::with_capacity(doc.statements.len());
    for (i, s) in doc.statements.iter().enumerate() {
        let mut affects = Vec::new();
        for p in &s.products {
            let purl = purl_of(p);
            components.entry(purl.clone()).or_insert_with(|| {
                object(vec![
                    ("type", json!("library")),
                    ("bom-ref", json!(purl)),
                    ("name", json!(p.name)),
                    ("version", json!(p.version)),
                    ("purl", json!(purl)),
                ])
            });
            affects.push(json!({ "ref": purl }));
        }
        let analysis = object(vec![
            ("state", json!(s.state)),
            ("justification", json!(s.justification)),
            (
                "response",
                if s.response.is_empty() {
                    Value::Null
                } else {
                    json!(s.response)
                },
            ),
            ("detail", json!(s.detail)),
            ("lastUpdated", json!(s.updated_at.map(|t| t.to_rfc3339()))),
        ]);
        vulnerabilities.push(object(vec![
            ("bom-ref", json!(format!("vex-{i}"))),
            ("id", json!(s.vuln_id)),
            ("analysis", analysis),
            (
                "affects",
                if affects.is_empty() {
                    Value::Null
                } else {
                    Value::Array(affects)
                },
            ),
            ("properties", Value::Array(zt_properties(s))),
        ]));
    }
    let mut metadata = object(vec![
        (
            "timestamp",
            json!(doc.timestamp.unwrap_or_else(Utc::now).to_rfc3339()),
        ),
        (
            "tools",
            json!({"components": [{"type": "application", "name": "ZeroTrace",
                "version": tool_version}]}),
        ),
    ]);
    if let Some(a) = &doc.author {
        metadata["authors"] = json!([{ "name": a }]);
    }
    object(vec![
        ("bomFormat", json!("CycloneDX")),
        ("specVersion", json!("1.6")),
        ("serialNumber", json!(format!("urn:uuid:{serial}"))),
        ("version", json!(1)),
        ("metadata", metadata),
        (
            "components",
            Value::Array(components.into_values().collect()),
        ),
        ("vulnerabilities", Value::Array(vulnerabilities)),
    ])
}

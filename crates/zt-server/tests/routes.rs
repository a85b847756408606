//! The router and the OpenAPI document come from one registration; these tests keep it so:
//! every documented operation is routed, no `/api` route is registered around the document,
//! every operation says who may call it and how it fails, and the bounds the document states
//! are the ones the server checks.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::Value;
use tower::ServiceExt;
use zt_server::routes::router;
use zt_server::{AppState, ServerConfig};
use zt_store::SqliteStore;

fn document() -> Value {
    serde_json::from_str(zt_server::routes::openapi_json()).expect("the OpenAPI document parses")
}

fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            ops.push((method.clone(), path.clone(), op.clone()));
        }
    }
    ops
}

#[tokio::test]
async fn every_documented_route_is_routed() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("zerotrace.db"))
        .await
        .unwrap();
    let state = AppState::new(Arc::new(store), ServerConfig::default());
    let app = router(state);
    let doc = document();
    let id = uuid::Uuid::new_v4().to_string();
    let ops = operations(&doc);
    assert!(ops.len() >= 14, "{} operations", ops.len());
    for (method, path, _) in ops {
        let uri = path
            .replace("{company_id}", &id)
            .replace("{agent_id}", &id)
            .replace("{report_id}", &id)
            .replace("{vuln_id}", "CVE-2024-0001");
        let uri = regex_free_fill(&uri, &id);
        let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap();
        let resp = app
            .clone()
            .oneshot(
                Request::builder()
                    .method(method.clone())
                    .uri(&uri)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = resp.status();
        // Without a token every API route answers 401 (enroll: 400 for the empty body);
        // the system routes answer themselves. Never the router's 404/405.
        assert!(
            status != StatusCode::NOT_FOUND && status != StatusCode::METHOD_NOT_ALLOWED,
            "{method} {uri} is not routed: {status}"
        );
    }
    let resp = app
        .oneshot(Request::builder().uri("/nope").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

/// Any other `{param}` of a path (routes added later) gets a UUID.
fn regex_free_fill(uri: &str, id: &str) -> String {
    let mut out = String::new();
    let mut rest = uri;
    while let Some(start) = rest.find('{') {
        let end = rest[start..]
            .find('}')
            .map(|e| start + e)
            .unwrap_or(rest.len() - 1);
        out.push_str(&rest[..start]);
        out.push_str(id);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// Routes registered with plain `.route("/api…")` would be served without being documented
/// (and missed by the cross-tenant matrix): every `/api` route goes through `routes!`.
#[test]
fn no_api_route_is_registered_around_the_document() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut offenders = Vec::new();
    let mut stack = vec![src];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for (n, line) in text.lines().enumerate() {
                let compact: String = line.chars().filter(|c| !c.is_whitespace()).collect();
                for call in [
                    ".route(\"/api",
                    ".route_service(\"/api",
                    ".nest(\"/api",
                    ".nest_service(\"/api",
                ] {
                    if compact.contains(call) {
                        offenders.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
                    }
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "register API handlers with utoipa_axum::routes! and #[utoipa::path] instead:\n{}",
        offenders.join("\n")
    );
}

#[test]
fn every_operation_says_who_may_call_it_and_how_it_fails() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
    let schemes: BTreeSet<String> = doc["components"]["securitySchemes"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(
        schemes,
        [
            zt_server::openapi::OPERATOR,
            zt_server::openapi::COMPANY_ADMIN,
            zt_server::openapi::COMPANY_VIEWER,
            zt_server::openapi::AGENT,
            zt_server::openapi::SESSION,
        ]
        .map(String::from)
        .into_iter()
        .collect()
    );
    let public: BTreeSet<&str> = [
        "get /metrics",
        "get /healthz",
        "get /readyz",
        "get /api/openapi.json",
        "post /api/v1/enroll",
        "post /api/v1/session",
    ]
    .into_iter()
    .collect();
    for (method, path, op) in operations(&doc) {
        let route = format!("{method} {path}");
        let security: Vec<String> = op["security"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|r| r.as_object().unwrap().keys().cloned())
            .collect();
        for s in &security {
            assert!(schemes.contains(s), "{route}: unknown scheme {s}");
        }
        let responses = op["responses"].as_object().unwrap();
        if security.is_empty() {
            assert!(
                public.contains(route.as_str()),
                "{route} has no security requirement: say who may call it"
            );
        } else {
            for code in ["401", "403"] {
                assert!(
                    responses.contains_key(code),
                    "{route}: no {code} documented"
                );
            }
        }
        if path.contains('{') && !security.is_empty() {
            assert!(responses.contains_key("404"), "{route}: no 404 documented");
        }
        if op.get("requestBody").is_some() {
            assert!(responses.contains_key("400"), "{route}: no 400 documented");
            assert!(responses.contains_key("413"), "{route}: no 413 documented");
        }
        if responses.contains_key("429") {
            assert!(
                responses["429"]["headers"]["Retry-After"].is_object(),
                "{route}: 429 without Retry-After"
            );
        }
        for (code, r) in responses {
            if code.starts_with('4') || code.starts_with('5') {
                if code == "503" && route == "get /readyz" {
                    continue;
                }
                assert_eq!(
                    r["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/Error",
                    "{route} {code}"
                );
            }
        }
    }
}

/// The bounds the document gives the report's fields are the validator's.
#[test]
fn documented_bounds_are_the_validated_ones() {
    let doc = document();
    let schemas = &doc["components"]["schemas"];
    let max =
        |schema: &str, field: &str| schemas[schema]["properties"][field]["maxLength"].as_u64();
    assert_eq!(
        max("Host", "hostname"),
        Some(zt_inventory::MAX_HOSTNAME_LEN as u64)
    );
    assert_eq!(max("App", "name"), Some(zt_inventory::MAX_NAME_LEN as u64));
    assert_eq!(
        max("App", "version"),
        Some(zt_inventory::MAX_VERSION_LEN as u64)
    );
    for field in ["id", "version_id", "name"] {
        assert_eq!(
            max("OsInfo", field),
            Some(zt_inventory::MAX_FIELD_LEN as u64),
            "OsInfo.{field}"
        );
    }
    for field in [
        "arch",
        "vendor",
        "source_name",
        "source_version",
        "purl",
        "cpe",
    ] {
        assert_eq!(
            max("App", field),
            Some(zt_inventory::MAX_FIELD_LEN as u64),
            "App.{field}"
        );
    }
    assert_eq!(
        schemas["InventoryReport"]["properties"]["apps"]["maxItems"].as_u64(),
        Some(zt_inventory::MAX_APPS as u64)
    );
    // Sources: exactly the ones the report contract knows.
    let sources: BTreeSet<String> = schemas["AppSource"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let known: BTreeSet<String> = zt_inventory::AppSource::ALL
        .iter()
        .map(|s| s.as_str().to_string())
        .collect();
    assert_eq!(sources, known);
}

/// Every `$ref` of the document names a schema it has: a dangling one makes clients and
/// schema-based fuzzers skip (or reject) the parameter or body that uses it.
#[test]
fn every_reference_resolves() {
    fn walk(doc: &Value, v: &Value, at: &str, dangling: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    let mut target = doc;
                    for part in r.trim_start_matches("#/").split('/') {
                        target = &target[part];
                    }
                    if target.is_null() {
                        dangling.push(format!("{at}: {r}"));
                    }
                }
                for (k, child) in map {
                    walk(doc, child, &format!("{at}/{k}"), dangling);
                }
            }
            Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    walk(doc, child, &format!("{at}/{i}"), dangling);
                }
            }
            _ => {}
        }
    }
    let doc = document();
    let mut dangling = Vec::new();
    walk(&doc, &doc, "", &mut dangling);
    assert!(dangling.is_empty(), "dangling references: {dangling:#?}");
}

/// The enumerations the document lists are the wire names the server parses (the analyses'
/// CycloneDX VEX vocabulary is declared by a macro, whose names the document once missed).
#[test]
fn documented_enumerations_are_the_wire_names() {
    let doc = document();
    let schemas = &doc["components"]["schemas"];
    let names = |schema: &str| -> BTreeSet<String> {
        schemas[schema]["enum"]
            .as_array()
            .unwrap_or_else(|| panic!("{schema} is an enumeration: {}", schemas[schema]))
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    };
    use zt_store::analysis::{AnalysisState, AnalysisStatus, Justification, VexResponse};
    let wire = |all: Vec<&'static str>| all.into_iter().map(String::from).collect::<BTreeSet<_>>();
    assert_eq!(
        names("AnalysisState"),
        wire(AnalysisState::ALL.iter().map(|s| s.as_str()).collect())
    );
    assert_eq!(
        names("AnalysisStatus"),
        wire(AnalysisStatus::ALL.iter().map(|s| s.as_str()).collect())
    );
    assert_eq!(
        names("Justification"),
        wire(Justification::ALL.iter().map(|s| s.as_str()).collect())
    );
    assert_eq!(
        names("VexResponse"),
        wire(VexResponse::ALL.iter().map(|s| s.as_str()).collect())
    );
    assert!(names("AnalysisState").contains("in_triage"));
}

//! The router serves exactly the routes the OpenAPI document lists.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use tower::ServiceExt;
use zt_server::routes::{router, API_ROUTES};
use zt_server::{AppState, ServerConfig};
use zt_store::SqliteStore;

#[test]
fn openapi_lists_exactly_the_served_routes() {
    let doc: serde_json::Value =
        serde_json::from_str(zt_server::routes::OPENAPI_JSON).expect("the OpenAPI document parses");
    let mut documented = BTreeSet::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            documented.insert((method.clone(), path.clone()));
        }
    }
    let served: BTreeSet<(String, String)> = API_ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(documented, served);
}

#[tokio::test]
async fn every_listed_route_is_routed() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("zerotrace.db"))
        .await
        .unwrap();
    let state = AppState::new(Arc::new(store), ServerConfig::default());
    let app = router(state);
    let id = uuid::Uuid::new_v4().to_string();
    for (method, path) in API_ROUTES {
        let uri = path
            .replace("{company_id}", &id)
            .replace("{agent_id}", &id)
            .replace("{report_id}", &id)
            .replace("{vuln_id}", "CVE-2024-0001");
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

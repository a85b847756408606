//! Health, readiness, metrics, the OpenAPI document, and JSON answers for unknown routes.

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::error::ApiError;
use crate::state::AppState;

/// The OpenAPI 3.1 document, maintained by hand beside the routes (a test checks that it
/// lists exactly the routes the router serves).
pub const OPENAPI_JSON: &str = include_str!("../openapi.json");

pub async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

/// The process is up.
pub async fn healthz() -> Response {
    Json(json!({ "status": "ok" })).into_response()
}

/// The process can do its job: the database answers and the match index is loaded.
pub async fn readyz(State(state): State<AppState>) -> Response {
    let db = state.store.ping().await.is_ok();
    let index = state.ready.load(Ordering::Relaxed);
    let status = if db && index {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({
            "status": if status == StatusCode::OK { "ready" } else { "not_ready" },
            "database": db,
            "match_index": index,
            "knowledge_revision": state.matcher.load().revision,
        })),
    )
        .into_response()
}

pub async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON).into_response()
}

pub async fn not_found() -> Response {
    metrics::counter!("http_requests_total", "route" => "unmatched", "status" => "404")
        .increment(1);
    ApiError::not_found().into_response()
}

pub async fn method_not_allowed() -> Response {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this method is not allowed on this path",
    )
    .into_response()
}

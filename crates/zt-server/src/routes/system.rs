//! Health, readiness, metrics, the OpenAPI document, and JSON answers for unknown routes.

use std::sync::atomic::Ordering;
use std::sync::OnceLock;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::error::ApiError;
use crate::state::AppState;

/// The OpenAPI 3.1 document as served: generated from the handlers once per process.
pub fn openapi_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        crate::openapi::document()
            .to_pretty_json()
            .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    })
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "system",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

/// Liveness: the process is up.
#[utoipa::path(get, path = "/healthz", tag = "system",
    responses((status = 200, description = "Up", body = Health)))]
pub async fn healthz() -> Response {
    Json(Health {
        status: "ok".into(),
    })
    .into_response()
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok`
    status: String,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Readiness {
    /// `ready` or `not_ready`
    status: String,
    database: bool,
    match_index: bool,
    #[schema(minimum = 0)]
    knowledge_revision: u64,
}

/// Readiness: the database answers and the match index is loaded.
#[utoipa::path(get, path = "/readyz", tag = "system",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "Not ready", body = Readiness),
    ))]
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
        Json(Readiness {
            status: if status == StatusCode::OK {
                "ready"
            } else {
                "not_ready"
            }
            .into(),
            database: db,
            match_index: index,
            knowledge_revision: state.matcher.load().revision,
        }),
    )
        .into_response()
}

/// This document.
#[utoipa::path(get, path = "/api/openapi.json", tag = "system",
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object)))]
pub async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], openapi_json()).into_response()
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

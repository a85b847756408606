//! The HTTP surface: which path goes where, and the helpers the handlers share.

mod admin;
mod agent;
mod events;
mod reads;
mod system;

pub use system::OPENAPI_JSON;

use axum::body::{Body, Bytes};
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{middleware, Router};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::de::DeserializeOwned;
use tower_http::decompression::RequestDecompressionLayer;
use tower_http::trace::TraceLayer;

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Every route of the API, as the OpenAPI document lists them (a test keeps the two equal).
pub const API_ROUTES: &[(&str, &str)] = &[
    ("post", "/api/v1/enroll"),
    ("post", "/api/v1/inventory"),
    ("get", "/api/v1/reports/{report_id}"),
    ("get", "/api/v1/companies"),
    ("post", "/api/v1/companies"),
    ("post", "/api/v1/companies/{company_id}/tokens"),
    ("get", "/api/v1/companies/{company_id}/summary"),
    ("get", "/api/v1/companies/{company_id}/agents"),
    (
        "get",
        "/api/v1/companies/{company_id}/agents/{agent_id}/apps",
    ),
    ("get", "/api/v1/companies/{company_id}/findings"),
    (
        "get",
        "/api/v1/companies/{company_id}/vulnerabilities/{vuln_id}",
    ),
    ("get", "/api/v1/companies/{company_id}/events"),
    ("get", "/api/v1/events"),
    ("get", "/metrics"),
    ("get", "/healthz"),
    ("get", "/readyz"),
];

pub fn router(state: AppState) -> Router {
    let system = Router::new()
        .route("/metrics", get(system::metrics))
        .route("/healthz", get(system::healthz))
        .route("/readyz", get(system::readyz));
    let mut app = system;
    if state.config.role.runs_api() {
        // Inventories are inflated by their handler, which keeps the compressed bytes.
        let inventory = Router::new().route("/api/v1/inventory", post(agent::inventory));
        let api = Router::new()
            .route("/api/v1/enroll", post(agent::enroll))
            .route("/api/v1/reports/{report_id}", get(agent::report_status))
            .route(
                "/api/v1/companies",
                get(admin::list_companies).post(admin::create_company),
            )
            .route(
                "/api/v1/companies/{company_id}/tokens",
                post(admin::create_token),
            )
            .route(
                "/api/v1/companies/{company_id}/summary",
                get(reads::summary),
            )
            .route("/api/v1/companies/{company_id}/agents", get(reads::agents))
            .route(
                "/api/v1/companies/{company_id}/agents/{agent_id}/apps",
                get(reads::apps),
            )
            .route(
                "/api/v1/companies/{company_id}/findings",
                get(reads::findings),
            )
            .route(
                "/api/v1/companies/{company_id}/vulnerabilities/{vuln_id}",
                get(reads::vulnerability),
            )
            .route(
                "/api/v1/companies/{company_id}/events",
                get(events::company_events),
            )
            .route("/api/v1/events", get(events::all_events))
            .route("/api/openapi.json", get(system::openapi))
            .route("/", get(crate::dashboard::page))
            .route("/assets/dashboard.js", get(crate::dashboard::script))
            .route("/assets/dashboard.css", get(crate::dashboard::style))
            .layer(
                RequestDecompressionLayer::new()
                    .gzip(true)
                    .deflate(false)
                    .br(false)
                    .zstd(false),
            );
        app = app.merge(api).merge(inventory);
    }
    app.route_layer(middleware::from_fn(crate::telemetry::track_http))
        .fallback(system::not_found)
        .method_not_allowed_fallback(system::method_not_allowed)
        // Handlers enforce the configured limit themselves (with a JSON 413), after checking
        // the token; axum's own default limit must not cut in first.
        .layer(DefaultBodyLimit::disable())
        // Refusals (429/503 under load) are expected backpressure, and internal errors are
        // logged where they happen with their cause: per-request failure lines at ERROR would
        // flood the log exactly when the server is busiest.
        .layer(
            TraceLayer::new_for_http().on_failure(
                tower_http::trace::DefaultOnFailure::new().level(tracing::Level::DEBUG),
            ),
        )
        .with_state(state)
}

/// Reads a request body (decompressed by the layer above) up to `limit` bytes.
pub async fn read_body(body: Body, limit: usize) -> ApiResult<Bytes> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) => {
            if e.downcast_ref::<LengthLimitError>().is_some() {
                Err(ApiError::too_large(limit))
            } else {
                Err(ApiError::invalid_request(
                    "",
                    format!("the request body could not be read (bad gzip?): {e}"),
                ))
            }
        }
    }
}

/// Parses a JSON request body, naming the offending field on failure.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> ApiResult<T> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { String::new() } else { path };
        ApiError::invalid_request(field, e.into_inner().to_string())
    })?;
    de.end()
        .map_err(|e| ApiError::invalid_request("", format!("trailing data after the JSON: {e}")))?;
    Ok(value)
}

/// Checks a text field of a request: length bounds, no control characters.
pub fn check_text(field: &str, value: &str, min: usize, max: usize) -> ApiResult<()> {
    if value.len() < min {
        return Err(ApiError::invalid_request(field, "must not be empty"));
    }
    if value.len() > max {
        return Err(ApiError::invalid_request(
            field,
            format!("{} bytes long; at most {max}", value.len()),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(ApiError::invalid_request(
            field,
            "contains control characters",
        ));
    }
    Ok(())
}

pub fn created<T: serde::Serialize>(value: T) -> axum::response::Response {
    (StatusCode::CREATED, axum::Json(value)).into_response()
}

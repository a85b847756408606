//! The HTTP surface: which path goes where, and the helpers the handlers share.

mod admin;
mod agent;
pub(crate) mod analyses;
mod events;
mod feeds;
mod lifecycle;
pub(crate) mod notifications;
pub(crate) mod reads;
pub(crate) mod session;
mod sla;
mod system;
mod vex;
mod views;

pub use views::record_trends;

pub use session::PrincipalInfo;
pub use system::openapi_json;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, FromRequestParts};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::{middleware, Router};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::de::DeserializeOwned;
use tower_http::decompression::RequestDecompressionLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::config::ServerRole;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The API's routes and the OpenAPI document, from the same registrations: a handler is
/// served if and only if it is documented. Every route under `/api` is registered here with
/// `routes!` (a test fails on any registered another way); the dashboard's HTML and assets
/// are the only other routes (see [`router`]).
pub fn api_router_parts(role: ServerRole) -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let system = OpenApiRouter::with_openapi(crate::openapi::ApiDoc::openapi())
        .routes(routes!(system::metrics))
        .routes(routes!(system::healthz))
        .routes(routes!(system::readyz))
        .routes(routes!(system::openapi));
    let api = OpenApiRouter::new()
        .routes(routes!(agent::enroll))
        .routes(routes!(agent::report_status))
        .routes(routes!(admin::list_companies, admin::create_company))
        .routes(routes!(admin::create_token, lifecycle::list_tokens))
        .routes(routes!(reads::summary))
        .routes(routes!(reads::agents))
        .routes(routes!(reads::apps))
        .routes(routes!(reads::findings))
        .routes(routes!(reads::vulnerability))
        .routes(routes!(views::agent, lifecycle::decommission_agent))
        .routes(routes!(views::agent_reports))
        .routes(routes!(views::software))
        .routes(routes!(views::vulnerabilities))
        .routes(routes!(views::trends))
        .routes(routes!(views::overview))
        .routes(routes!(events::company_events))
        .routes(routes!(events::all_events))
        .routes(routes!(session::sign_in, session::sign_out))
        .routes(routes!(lifecycle::revoke_token))
        .routes(routes!(
            lifecycle::rotate_agent_token,
            lifecycle::revoke_agent_token
        ))
        .routes(routes!(lifecycle::rotate_enroll_secret))
        .routes(routes!(lifecycle::delete_company))
        .routes(routes!(feeds::feeds))
        .routes(routes!(analyses::list_analyses, analyses::create_analysis))
        .routes(routes!(
            analyses::get_analysis,
            analyses::update_analysis,
            analyses::withdraw_analysis
        ))
        .routes(routes!(analyses::audit))
        .routes(routes!(analyses::get_tags, analyses::put_tags))
        .routes(routes!(sla::get_sla, sla::put_sla))
        .routes(routes!(sla::remediation))
        .routes(routes!(vex::export_vex, vex::import_vex))
        .routes(routes!(
            notifications::list_rules,
            notifications::create_rule
        ))
        .routes(routes!(
            notifications::get_rule,
            notifications::patch_rule,
            notifications::delete_rule
        ))
        .routes(routes!(notifications::test_rule))
        .routes(routes!(notifications::deliveries))
        .layer(
            RequestDecompressionLayer::new()
                .gzip(true)
                .deflate(false)
                .br(false)
                .zstd(false),
        );
    // Inventories are inflated by their handler, which keeps the compressed bytes.
    let inventory = OpenApiRouter::new().routes(routes!(agent::inventory));
    let documented = system.merge(api).merge(inventory);
    let (all, mut doc) = documented.split_for_parts();
    crate::openapi::admit_sessions(&mut doc);
    crate::openapi::mark_cursors(&mut doc);
    if role.runs_api() {
        (all, doc)
    } else {
        // Worker processes serve health and metrics only (the document still describes the
        // whole API).
        let (system, _) = OpenApiRouter::<AppState>::new()
            .routes(routes!(system::metrics))
            .routes(routes!(system::healthz))
            .routes(routes!(system::readyz))
            .split_for_parts();
        (system, doc)
    }
}

pub fn router(state: AppState) -> Router {
    let (mut app, _) = api_router_parts(state.config.role);
    if state.config.role.runs_api() {
        // The dashboard: HTML and its assets, not part of the JSON API.
        app = app.merge(crate::dashboard::routes());
    }
    app.route_layer(middleware::from_fn(complete_even_if_abandoned))
        .route_layer(middleware::from_fn(crate::telemetry::track_http))
        // Before any handler: a write made with the session cookie carries its CSRF token.
        .layer(middleware::from_fn(crate::auth::csrf_guard))
        // A request body must arrive whole within the configured time (a slow upload cannot
        // hold a handler); the handlers' `read_body` answers 408 when it does not.
        .layer(tower_http::map_request_body::MapRequestBodyLayer::new(
            Body::new,
        ))
        .layer(tower_http::timeout::RequestBodyDeadlineLayer::new(
            state.config.body_timeout,
        ))
        // Before everything: an address that failed to authenticate too often is refused
        // before its credential is looked at (`preauth.rs`).
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::preauth::guard,
        ))
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

/// Runs each request's handler on a task of its own, to the end even when the client goes
/// away: hyper drops a request's future when its connection closes (a browser leaving a page
/// aborts its requests), and a database call dropped halfway can leave its pooled connection
/// out of step, so that later queries on it read another query's answer (seen on PostgreSQL:
/// a session just created not found, one just ended still found).
async fn complete_even_if_abandoned(
    request: axum::extract::Request,
    next: middleware::Next,
) -> axum::response::Response {
    match tokio::spawn(next.run(request)).await {
        Ok(response) => response,
        Err(e) => ApiError::internal(format!("request handler failed: {e}")).into_response(),
    }
}

/// Query parameters deserialized into `T` (a struct deriving `IntoParams`, which documents
/// them); a malformed query string answers the API's JSON 400, not axum's plain-text one.
/// Keep the fields `Option<String>` and parse them with the helpers below, so that every
/// refusal names its parameter.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|axum::extract::Query(v)| ApiQuery(v))
            .map_err(|e| ApiError::invalid_request("", e.body_text()))
    }
}

/// Reads a request body (decompressed by the layer above) up to `limit` bytes.
pub async fn read_body(body: Body, limit: usize) -> ApiResult<Bytes> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) => {
            let timed_out =
                std::iter::successors(Some(&*e as &(dyn std::error::Error + 'static)), |e| {
                    e.source()
                })
                .any(|e| e.is::<tower_http::timeout::TimeoutError>());
            if e.downcast_ref::<LengthLimitError>().is_some() {
                Err(ApiError::too_large(limit))
            } else if timed_out {
                Err(ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "request_timeout",
                    "the request body did not arrive in time",
                ))
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
///
/// A number with a zero fraction (`30.0`, `3e1`) is an integer in JSON Schema, and so in the
/// OpenAPI document: it is taken where an integer is expected, as the document promises.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> ApiResult<T> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let mut value: serde_json::Value = serde::Deserialize::deserialize(&mut de)
        .map_err(|e| ApiError::invalid_request("", e.to_string()))?;
    de.end()
        .map_err(|e| ApiError::invalid_request("", format!("trailing data after the JSON: {e}")))?;
    integral_floats_as_integers(&mut value);
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { String::new() } else { path };
        ApiError::invalid_request(field, e.into_inner().to_string())
    })
}

/// Rewrites every float with a zero fraction that fits an `i64`/`u64` as that integer.
fn integral_floats_as_integers(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64() {
                if f.fract() == 0.0 && f.is_finite() {
                    // Within ±2^53 an f64 is exact; beyond, the conversion would guess.
                    if f.abs() <= 9_007_199_254_740_992.0 {
                        *v = serde_json::Value::from(f as i64);
                    }
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(integral_floats_as_integers),
        serde_json::Value::Object(map) => map.values_mut().for_each(integral_floats_as_integers),
        _ => {}
    }
}

/// Checks a text field of a request: length bounds, no control characters.
/// Checks a text field of a request: length bounds in characters (as the OpenAPI document's
/// `minLength`/`maxLength` count), no control characters.
pub fn check_text(field: &str, value: &str, min: usize, max: usize) -> ApiResult<()> {
    if value.chars().take(min).count() < min {
        return Err(ApiError::invalid_request(field, "must not be empty"));
    }
    match zt_inventory::text_problem(value, max) {
        Some(problem) => Err(ApiError::invalid_request(field, problem)),
        None => Ok(()),
    }
}

pub fn created<T: serde::Serialize>(value: T) -> axum::response::Response {
    (StatusCode::CREATED, axum::Json(value)).into_response()
}

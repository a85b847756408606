//! `GET /api/v1/feeds` (operator): how current the vulnerability knowledge is, per source
//! (DESIGN.md "Knowledge stays current by itself").

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Serialize;
use zt_store::knowledge::FeedState;

use crate::auth::authenticate;
use crate::error::{ApiError, ApiResult};
use crate::openapi::{E401, E403, E429};
use crate::state::AppState;

/// One knowledge source: an online feed of the scheduled sync (`nvd`, `osv:<ecosystem>`,
/// `kev`, `epss`) or the records of an import of files (`import:<kind>`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FeedStatus {
    #[schema(example = "osv:PyPI")]
    pub source: String,
    /// The last sync or import that was tried.
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// The last one that succeeded (what the knowledge of this source is as current as).
    pub last_success_at: Option<DateTime<Utc>>,
    /// Records read at the last success.
    pub records: u64,
    /// The error of the last attempt when it failed; null when it succeeded.
    pub error: Option<String>,
}

impl From<&FeedState> for FeedStatus {
    fn from(s: &FeedState) -> Self {
        FeedStatus {
            source: s.feed.clone(),
            last_attempt_at: s.last_attempt_at,
            last_success_at: s.last_success_at,
            records: s.records,
            error: s.error().map(str::to_string),
        }
    }
}

/// Every knowledge source with its last attempt, last success, records and last error.
#[utoipa::path(get, path = "/api/v1/feeds", tag = "knowledge",
    responses((status = 200, description = "Every source, by name", body = [FeedStatus]), E401, E403, E429),
    security(("operator" = [])))]
pub async fn feeds(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    let principal = authenticate(&state, &headers).await?;
    if principal != zt_store::model::Principal::Operator {
        return Err(ApiError::forbidden(
            "only the operator sees the feeds' status",
        ));
    }
    state.limits.check(&principal).await?;
    let items: Vec<FeedStatus> = state
        .store
        .feed_states()
        .await?
        .iter()
        .map(FeedStatus::from)
        .collect();
    Ok(Json(items).into_response())
}

//! What agents call: enroll, post an inventory, ask how a report is doing.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;
use zt_inventory::{InventoryReport, OsInfo, MAX_FIELD_LEN, MAX_HOSTNAME_LEN};
use zt_store::model::{AcceptOutcome, IncomingReport, NewAgent, Principal};

use super::{check_text, created, parse_json, read_body};
use crate::auth::{authenticate, generate_token, hash_token, principal_of, TokenKind};
use crate::body::{gunzip, parse_inventory, Encoding};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Bodies above this are parsed on the blocking pool, not on the async workers.
const INLINE_PARSE_LIMIT: usize = 64 * 1024;
/// The declared body size (0 when unknown): big reports are parsed off the async workers.
fn raw_len(headers: &HeaderMap) -> usize {
    headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .map(|n| {
            if headers.contains_key(axum::http::header::CONTENT_ENCODING) {
                n * 5
            } else {
                n
            }
        })
        .unwrap_or(usize::MAX)
}

/// An enrollment request is small; anything bigger is not one.
const ENROLL_BODY_LIMIT: usize = 64 * 1024;

#[derive(Debug, Deserialize)]
pub struct EnrollRequest {
    enroll_secret: String,
    hostname: String,
    os: OsInfo,
    #[serde(default)]
    arch: String,
    #[serde(default)]
    agent_version: String,
}

pub async fn enroll(State(state): State<AppState>, body: Body) -> ApiResult<Response> {
    let bytes = read_body(body, ENROLL_BODY_LIMIT.min(state.config.body_limit)).await?;
    let req: EnrollRequest = parse_json(&bytes)?;
    check_text("enroll_secret", &req.enroll_secret, 1, 256)?;
    let company_id = match principal_of(&state, &req.enroll_secret).await {
        Ok(Principal::Enroll { company_id }) => company_id,
        Ok(_) | Err(_) => return Err(ApiError::unauthorized()),
    };
    state
        .limits
        .check(&Principal::Enroll { company_id })
        .await?;
    check_text("hostname", &req.hostname, 1, MAX_HOSTNAME_LEN)?;
    check_text("os.id", &req.os.id, 1, MAX_FIELD_LEN)?;
    check_text("os.version_id", &req.os.version_id, 0, MAX_FIELD_LEN)?;
    check_text("os.name", &req.os.name, 0, MAX_FIELD_LEN)?;
    check_text("arch", &req.arch, 0, MAX_FIELD_LEN)?;
    check_text("agent_version", &req.agent_version, 0, MAX_FIELD_LEN)?;

    let token = generate_token(TokenKind::Agent);
    let agent = NewAgent {
        company_id,
        // Time-ordered: tenant tables are keyed (company_id, agent_id, ...), so agents enrolled
        // together store their apps and findings on the same few B-tree pages instead of on
        // random ones (a first-time fleet load then stays in cache; see ARCHITECTURE.md).
        agent_id: uuid::Uuid::now_v7(),
        hostname: req.hostname,
        os: req.os,
        arch: req.arch,
        agent_version: req.agent_version,
        token_hash: hash_token(&token),
        enrolled_at: Utc::now(),
    };
    if !state.store.enroll_agent(&agent).await? {
        // The company was deleted after the secret was checked.
        return Err(ApiError::unauthorized());
    }
    tracing::info!(company = %company_id, agent = %agent.agent_id, hostname = %agent.hostname, "agent enrolled");
    Ok(created(json!({
        "agent_id": agent.agent_id,
        "agent_token": token,
        "report_interval_s": state.config.report_interval_s,
    })))
}

pub async fn inventory(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let principal = authenticate(&state, &headers).await?;
    let Principal::Agent {
        company_id,
        agent_id,
    } = principal
    else {
        return Err(ApiError::forbidden("only agent tokens post inventories"));
    };
    state.limits.check(&principal).await?;
    let encoding = crate::body::encoding(&headers)?;
    let raw = read_body(body, state.config.body_limit).await?;
    let accepted_at = Utc::now();
    let limit = state.config.body_limit;
    let work = move || -> Result<(InventoryReport, [u8; 32], Vec<u8>), ApiError> {
        let inflated;
        let json: &[u8] = match encoding {
            Encoding::Identity => &raw,
            Encoding::Gzip => {
                inflated = gunzip(&raw, limit)?;
                &inflated
            }
        };
        let report = parse_inventory(json).map_err(|e| {
            let mut err =
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_report", e.message.clone());
            if !e.field.is_empty() {
                err.field = Some(e.field.clone());
            }
            err
        })?;
        let digest = zt_inventory::inventory_digest(&report.apps);
        // Kept as received: compressed bodies stay compressed in the queue.
        Ok((report, digest, raw.to_vec()))
    };
    let (report, digest, body) = if raw_len(&headers) <= INLINE_PARSE_LIMIT {
        work()?
    } else {
        tokio::task::spawn_blocking(work)
            .await
            .map_err(ApiError::internal)??
    };
    let report_id = report.report_id;
    let incoming = IncomingReport {
        company_id,
        agent_id,
        report_id,
        collected_at: report.collected_at,
        accepted_at,
        digest,
        app_count: u32::try_from(report.apps.len()).unwrap_or(u32::MAX),
        body,
    };
    drop(report);
    match state.ingest.accept(incoming).await? {
        AcceptOutcome::Queued | AcceptOutcome::Unchanged => Ok((
            StatusCode::ACCEPTED,
            Json(json!({ "report_id": report_id })),
        )
            .into_response()),
        AcceptOutcome::Duplicate => {
            Ok((StatusCode::OK, Json(json!({ "report_id": report_id }))).into_response())
        }
        AcceptOutcome::Conflict => Err(ApiError::new(
            StatusCode::CONFLICT,
            "report_id_conflict",
            "this report_id was already used by another agent",
        )),
        AcceptOutcome::QueueFull => Err(ApiError::queue_full(5)),
    }
}

pub async fn report_status(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(report_id): Path<String>,
) -> ApiResult<Response> {
    let principal = authenticate(&state, &headers).await?;
    let Principal::Agent {
        company_id,
        agent_id,
    } = principal
    else {
        return Err(ApiError::forbidden(
            "report status is for the agent that sent the report",
        ));
    };
    state.limits.check(&principal).await?;
    let report_id = uuid::Uuid::parse_str(&report_id).map_err(|_| ApiError::not_found())?;
    let status = state
        .store
        .report_status(company_id, agent_id, report_id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(status).into_response())
}

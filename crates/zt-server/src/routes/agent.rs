//! What agents call: enroll, post an inventory, ask how a report is doing.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;
use zt_inventory::{InventoryReport, OsInfo, MAX_FIELD_LEN, MAX_HOSTNAME_LEN};
use zt_store::model::{AcceptOutcome, AgentId, IncomingReport, NewAgent, Principal, ReportStatus};

use super::{check_text, created, parse_json, read_body};
use crate::auth::{authenticate, bearer, generate_token, hash_token, principal_of, TokenKind};
use crate::body::{gunzip, parse_inventory, Encoding};
use crate::client::ClientAddr;
use crate::error::{ApiError, ApiResult};
use crate::openapi::{E400, E401, E403, E404, E409, E413, E415, E429, E503};
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

#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"enroll_secret": "zte_…", "hostname": "web-1",
    "os": {"id": "debian", "version_id": "12", "name": "Debian GNU/Linux 12 (bookworm)"},
    "arch": "x86_64", "agent_version": "0.1.0"}))]
pub struct EnrollRequest {
    /// The company's enroll secret (`zte_…`): it says which company the agent joins.
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*$"
    )]
    enroll_secret: String,
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*$"
    )]
    hostname: String,
    os: OsInfo,
    #[serde(default)]
    #[schema(max_length = 1024, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    arch: String,
    #[serde(default)]
    #[schema(max_length = 1024, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    agent_version: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Enrolled {
    #[schema(value_type = Uuid)]
    agent_id: AgentId,
    /// The agent's bearer token (`zta_…`); shown this once (stored hashed).
    agent_token: String,
    /// How often the agent should report, in seconds.
    #[schema(minimum = 0)]
    report_interval_s: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReportAccepted {
    report_id: Uuid,
}

/// Enrolls an agent into the company whose enroll secret the body carries.
#[utoipa::path(post, path = "/api/v1/enroll", tag = "agents",
    request_body = EnrollRequest,
    responses(
        (status = 201, description = "Enrolled", body = Enrolled),
        E400, E401, E413, E429,
    ),
    extensions(("x-zerotrace-body-credential" = json!("enroll_secret"))))]
pub async fn enroll(
    State(state): State<AppState>,
    client: ClientAddr,
    body: Body,
) -> ApiResult<Response> {
    let bytes = read_body(body, ENROLL_BODY_LIMIT.min(state.config.body_limit)).await?;
    let req: EnrollRequest = parse_json(&bytes)?;
    check_text("enroll_secret", &req.enroll_secret, 1, 256)?;
    let company_id = match principal_of(&state, &req.enroll_secret).await {
        Ok(Principal::Enroll { company_id }) => company_id,
        Ok(_) | Err(_) => {
            // Who keeps guessing secrets (the client's address: through trusted proxies).
            tracing::warn!(client = %client.ip, "enrollment refused: unknown enroll secret");
            return Err(ApiError::unauthorized());
        }
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
        agent_id: AgentId::now_v7(),
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
    tracing::info!(company = %company_id, agent = %agent.agent_id, hostname = %agent.hostname,
        client = %client.ip, "agent enrolled");
    Ok(created(Enrolled {
        agent_id: agent.agent_id,
        agent_token: token,
        report_interval_s: state.config.report_interval_s,
    }))
}

/// Posts an inventory report (`Content-Encoding: gzip` accepted). Stored durably with its
/// queue entry before the answer; the same report_id again stores nothing.
#[utoipa::path(post, path = "/api/v1/inventory", tag = "agents",
    request_body(content = InventoryReport, description = "The host's whole inventory; \
        gzip-compressed bodies (Content-Encoding: gzip) are inflated up to the body limit"),
    responses(
        (status = 202, description = "Accepted: stored with its queue entry (or recorded as unchanged)", body = ReportAccepted),
        (status = 200, description = "This report_id was accepted before: nothing stored again", body = ReportAccepted),
        E400, E401, E403, E409, E413, E415, E429, E503,
    ),
    security(("agent" = [])))]
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
    let collected_at =
        zt_inventory::check_collected_at(report.collected_at, accepted_at).map_err(|e| {
            let mut err = ApiError::new(StatusCode::BAD_REQUEST, "invalid_report", e.message);
            err.field = Some(e.field);
            err
        })?;
    if collected_at != report.collected_at {
        metrics::counter!("reports_clock_ahead_total").increment(1);
        tracing::debug!(agent = %agent_id, collected_at = %report.collected_at, "report dated ahead of the server's clock: ordered as of its arrival");
    }
    let incoming = IncomingReport {
        company_id,
        agent_id,
        report_id,
        collected_at,
        accepted_at,
        digest,
        app_count: u32::try_from(report.apps.len()).unwrap_or(u32::MAX),
        body,
    };
    let tags = report.tags;
    drop(report.apps);
    let outcome = state.ingest.accept(incoming).await?;
    // The host's tags as its agent sends them replace those it sent before (tags set through
    // the API stay). Applied once the report is stored, and again for a repeated report: a
    // failure here answers 500, the agent sends the same report again, and the tags follow.
    // Reports without the field (older agents) leave the reported tags as they are.
    if let (
        Some(tags),
        AcceptOutcome::Queued | AcceptOutcome::Unchanged | AcceptOutcome::Duplicate,
    ) = (&tags, outcome)
    {
        let ctx = zt_store::analysis::ChangeContext {
            actor: zt_store::analysis::Actor {
                kind: "agent".into(),
                token_id: bearer(&headers)
                    .map(|t| crate::routes::analyses::token_id(&hash_token(t))),
                role: None,
            },
            at: accepted_at,
            comment: Some("tags sent with the agent's report".into()),
        };
        state
            .store
            .set_reported_tags(company_id, agent_id, tags, &ctx)
            .await?;
    }
    match outcome {
        AcceptOutcome::Queued | AcceptOutcome::Unchanged => {
            Ok((StatusCode::ACCEPTED, Json(ReportAccepted { report_id })).into_response())
        }
        AcceptOutcome::Duplicate => {
            Ok((StatusCode::OK, Json(ReportAccepted { report_id })).into_response())
        }
        AcceptOutcome::Conflict => Err(ApiError::new(
            StatusCode::CONFLICT,
            "report_id_conflict",
            "this report_id was already used by another agent",
        )),
        AcceptOutcome::QueueFull => Err(ApiError::queue_full(5)),
    }
}

/// How a report is doing, for the agent that sent it.
#[utoipa::path(get, path = "/api/v1/reports/{report_id}", tag = "agents",
    params(("report_id" = Uuid, Path, description = "The report_id the agent chose")),
    responses((status = 200, description = "Report status", body = ReportStatus), E401, E403, E404, E429),
    security(("agent" = [])))]
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

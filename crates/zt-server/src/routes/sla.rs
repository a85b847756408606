//! SLA policy and time to remediate (DESIGN.md "SLA"). Company-scoped: a foreign or unknown
//! id answers 404; company admins and the operator change the policy, viewers read it.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use zt_store::sla::{remediation_stats, RemediationStats, SlaPolicy};

use super::analyses::caller;
use super::{parse_json, read_body, ApiQuery};
use crate::error::{ApiError, ApiResult};
use crate::openapi::{E400, E401, E403, E404, E413, E429};
use crate::state::AppState;

/// The company's SLA policy (the defaults until one is set).
#[utoipa::path(get, path = "/api/v1/companies/{company_id}/sla", tag = "sla",
    params(("company_id" = Uuid, Path, description = "The company")),
    responses((status = 200, description = "The policy", body = SlaPolicy), E401, E403, E404, E429),
    security(("operator" = []), ("company_admin" = []), ("company_viewer" = [])))]
pub async fn get_sla(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(company_id): Path<String>,
) -> ApiResult<Response> {
    let caller = caller(&state, &headers, &company_id).await?;
    Ok(Json(state.store.sla_policy(caller.company_id).await?).into_response())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"critical_days": 7, "high_days": 30, "medium_days": 90,
    "low_days": 180, "unknown_days": 180, "kev_uses_cisa_due_date": true}))]
pub struct PutSla {
    #[schema(minimum = 1, maximum = 3650)]
    critical_days: u32,
    #[schema(minimum = 1, maximum = 3650)]
    high_days: u32,
    #[schema(minimum = 1, maximum = 3650)]
    medium_days: u32,
    #[schema(minimum = 1, maximum = 3650)]
    low_days: u32,
    #[schema(minimum = 1, maximum = 3650)]
    unknown_days: u32,
    kev_uses_cisa_due_date: bool,
    /// Why, for the audit trail.
    #[schema(max_length = 2000, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    comment: Option<String>,
}

/// Replaces the company's SLA policy: every finding's due date follows at once.
#[utoipa::path(put, path = "/api/v1/companies/{company_id}/sla", tag = "sla",
    params(("company_id" = Uuid, Path, description = "The company")),
    request_body = PutSla,
    responses((status = 200, description = "The policy now", body = SlaPolicy),
        E400, E401, E403, E404, E413, E429),
    security(("operator" = []), ("company_admin" = [])))]
pub async fn put_sla(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(company_id): Path<String>,
    body: Body,
) -> ApiResult<Response> {
    let caller = caller(&state, &headers, &company_id).await?;
    if !caller.may_write() {
        return Err(ApiError::forbidden(
            "only company admins and the operator change the SLA policy",
        ));
    }
    let bytes = read_body(body, 16 * 1024).await?;
    let req: PutSla = parse_json(&bytes)?;
    if let Some(c) = &req.comment {
        if let Some(problem) = zt_inventory::text_problem(c, 2000) {
            return Err(ApiError::invalid_request("comment", problem));
        }
    }
    let policy = SlaPolicy {
        critical_days: req.critical_days,
        high_days: req.high_days,
        medium_days: req.medium_days,
        low_days: req.low_days,
        unknown_days: req.unknown_days,
        kev_uses_cisa_due_date: req.kev_uses_cisa_due_date,
    };
    state
        .store
        .set_sla_policy(caller.company_id, &policy, &caller.context(req.comment))
        .await?;
    Ok(Json(policy).into_response())
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RemediationQuery {
    /// The period, in days back from now (default 30).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 400)]
    days: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Remediation {
    days: u32,
    /// Per severity: findings remediated in the period (package removed or upgraded) and
    /// the median and 90th percentile of days from first seen to resolved.
    severities: Vec<RemediationStats>,
}

/// Time to remediate (MTTR): median and p90 days from first seen to resolved per severity,
/// over the findings remediated in the last `days` days.
#[utoipa::path(get, path = "/api/v1/companies/{company_id}/remediation", tag = "sla",
    params(("company_id" = Uuid, Path, description = "The company"), RemediationQuery),
    responses((status = 200, description = "Time to remediate", body = Remediation), E400, E401, E403, E404, E429),
    security(("operator" = []), ("company_admin" = []), ("company_viewer" = [])))]
pub async fn remediation(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(company_id): Path<String>,
    ApiQuery(q): ApiQuery<RemediationQuery>,
) -> ApiResult<Response> {
    let caller = caller(&state, &headers, &company_id).await?;
    let days = match q.days.as_deref() {
        None | Some("") => 30,
        Some(s) => match s.parse::<u32>() {
            Ok(n) if (1..=400).contains(&n) && s.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => {
                return Err(ApiError::invalid_request(
                    "days",
                    "must be a number from 1 to 400",
                ))
            }
        },
    };
    let since = Utc::now() - chrono::Duration::days(i64::from(days));
    let rows = state
        .store
        .remediation_rows(caller.company_id, since)
        .await?;
    Ok(Json(Remediation {
        days,
        severities: remediation_stats(&rows),
    })
    .into_response())
}

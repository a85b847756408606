//! Analyses (DESIGN.md "Analyses"): decisions about one vulnerability in a scope, the audit
//! trail, host tags. Company-scoped: a foreign or unknown id answers 404. Company admins and
//! the operator write; viewers read; agent tokens and enroll secrets get 403.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;
use zt_store::analysis::{
    Actor, Analysis, AnalysisDecision, AnalysisFilter, AnalysisScope, AnalysisState,
    AnalysisStatus, AuditEntry, ChangeContext, Justification, NewAnalysis, NewAudit, VexResponse,
};
use zt_store::model::{AgentId, CompanyId, Principal, Role, TokenHash};

use super::reads::PageQuery;
use super::{created, parse_json, read_body, ApiQuery};
use crate::auth::{bearer, company_access, hash_token, principal_of_hash, session_cookie};
use crate::error::{ApiError, ApiResult};
use crate::openapi::{E400, E401, E403, E404, E413, E429};
use crate::state::AppState;

const BODY_LIMIT: usize = 256 * 1024;
const MAX_COMMENT: usize = 2000;

/// The public id of a token: the first 8 bytes of its hash, in hex (never the token).
pub fn token_id(hash: &TokenHash) -> String {
    hex::encode(&hash.0[..8])
}

/// The caller, the company it may act on, and who it is for the audit trail.
pub(crate) struct Caller {
    pub company_id: CompanyId,
    pub principal: Principal,
    pub actor: Actor,
}

impl Caller {
    pub(crate) fn may_write(&self) -> bool {
        matches!(
            self.principal,
            Principal::Operator
                | Principal::User {
                    role: Role::Admin,
                    ..
                }
        )
    }

    fn require_write(&self) -> ApiResult<()> {
        if self.may_write() {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                "only company admins and the operator change analyses and tags",
            ))
        }
    }

    pub(crate) fn context(&self, comment: Option<String>) -> ChangeContext {
        ChangeContext {
            actor: self.actor.clone(),
            at: Utc::now(),
            comment,
        }
    }
}

/// Authenticates (bearer token or session cookie), checks the company and the rate limit.
pub(crate) async fn caller(
    state: &AppState,
    headers: &HeaderMap,
    company_id: &str,
) -> ApiResult<Caller> {
    let hash = if let Some(token) = bearer(headers) {
        hash_token(token)
    } else {
        let session = session_cookie(headers).ok_or_else(ApiError::unauthorized)?;
        crate::auth::session_token(state, session)
            .await?
            .ok_or_else(ApiError::unauthorized)?
    };
    let principal = principal_of_hash(state, hash).await?;
    let company_id = company_access(state, &principal, company_id).await?;
    state.limits.check(&principal).await?;
    let (kind, role) = match principal {
        Principal::Operator => ("operator", None),
        Principal::User { role, .. } => ("user", Some(role.as_str().to_string())),
        Principal::Agent { .. } => ("agent", None),
        Principal::Enroll { .. } => ("enroll", None),
    };
    Ok(Caller {
        company_id,
        principal,
        actor: Actor {
            kind: kind.to_string(),
            token_id: Some(token_id(&hash)),
            role,
        },
    })
}

fn check_comment(comment: &Option<String>) -> ApiResult<()> {
    if let Some(c) = comment {
        if let Some(problem) = zt_inventory::text_problem(c, MAX_COMMENT) {
            return Err(ApiError::invalid_request("comment", problem));
        }
    }
    Ok(())
}

fn parse_analysis_id(id: &str) -> ApiResult<Uuid> {
    id.parse().map_err(|_| ApiError::not_found())
}

/// A present field, even when null (`Some(None)`), apart from an absent one (`None`).
fn present<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "vuln_id": "CVE-2023-4863",
    "scope": {"tags": ["dmz"], "package": {"name": "libwebp7"}},
    "state": "exploitable", "response": ["will_not_fix"], "suppress": true,
    "expires_at": "2030-03-31T00:00:00Z", "comment": "accepted until the March release"}))]
pub struct CreateAnalysis {
    /// Any id or alias of the vulnerability's group.
    #[schema(min_length = 1, max_length = 512)]
    vuln_id: String,
    /// Empty: every host of the company.
    #[serde(default)]
    scope: AnalysisScope,
    state: AnalysisState,
    justification: Option<Justification>,
    #[serde(default)]
    response: Vec<VexResponse>,
    #[schema(max_length = 10000, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    details: Option<String>,
    /// Hide the covered findings from counts, lists and notifications.
    #[serde(default)]
    suppress: bool,
    /// When the decision lapses (RFC 3339, in the future); its findings then return.
    expires_at: Option<DateTime<Utc>>,
    /// Why, for the audit trail.
    #[schema(max_length = 2000, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    comment: Option<String>,
}

/// Fields to change; absent fields keep their value, `null` clears a clearable one.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"state": "not_affected", "justification": "code_not_reachable",
    "comment": "reviewed with the vendor"}))]
pub struct UpdateAnalysis {
    scope: Option<AnalysisScope>,
    state: Option<AnalysisState>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Justification>)]
    justification: Option<Option<Justification>>,
    response: Option<Vec<VexResponse>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, max_length = 10000, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    details: Option<Option<String>>,
    suppress: Option<bool>,
    /// When the decision lapses (RFC 3339, in the future); `null`: it never lapses.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<DateTime<Utc>>)]
    expires_at: Option<Option<DateTime<Utc>>>,
    #[schema(max_length = 2000, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    comment: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[allow(dead_code)] // the shape of `Page<Analysis>`, for the document
pub struct AnalysisPage {
    items: Vec<Analysis>,
    next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[allow(dead_code)]
pub struct AuditPage {
    items: Vec<AuditEntry>,
    next_cursor: Option<String>,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AnalysisQuery {
    /// Only analyses in this status.
    #[param(value_type = Option<AnalysisStatus>)]
    status: Option<String>,
    /// Only analyses of this vulnerability (any id or alias of its group).
    #[param(value_type = Option<String>, max_length = 512)]
    vuln_id: Option<String>,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WithdrawQuery {
    /// Why, for the audit trail.
    #[param(value_type = Option<String>, max_length = 2000, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    comment: Option<String>,
}

/// Records a decision about a vulnerability in a scope (CycloneDX VEX vocabulary). A
/// suppressing analysis hides the findings in its scope, present and future, until it
/// expires or is withdrawn.
#[utoipa::path(post, path = "/api/v1/companies/{company_id}/analyses", tag = "analyses",
    params(("company_id" = Uuid, Path, description = "The company")),
    request_body = CreateAnalysis,
    responses(
        (status = 201, description = "Created", body = Analysis),
        E400, E401, E403, E404, E413, E429,
    ),
    security(("operator" = []), ("company_admin" = [])))]
pub async fn create_analysis(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(company_id): Path<String>,
    body: Body,
) -> ApiResult<Response> {
    let caller = caller(&state, &headers, &company_id).await?;
    caller.require_write()?;
    let bytes = read_body(body, BODY_LIMIT).await?;
    let req: CreateAnalysis = parse_json(&bytes)?;
    check_comment(&req.comment)?;
    let new = NewAnalysis {
        analysis_id: Uuid::now_v7(),
        vuln_id: req.vuln_id.trim().to_string(),
        decision: AnalysisDecision {
            scope: req.scope,
            state: req.state,
            justification: req.justification,
            response: req.response,
            details: req.details,
            suppress: req.suppress,
            expires_at: req.expires_at,
        },
        source: None,
    };
    let analysis = state
        .store
        .create_analysis(caller.company_id, &new, &caller.context(req.comment))
        .await?;
    Ok(created(analysis))
}

/// The company's analyses, newest first (withdrawn and expired ones too, unless `status`
/// says otherwise).
#[utoipa::path(get, path = "/api/v1/companies/{company_id}/analyses", tag = "analyses",
    params(("company_id" = Uuid, Path, description = "The company"), AnalysisQuery, PageQuery),
    responses((status = 200, description = "Analyses", body = AnalysisPage), E400, E401, E403, E404, E429),
    security(("operator" = []), ("company_admin" = []), ("company_viewer" = [])))]
pub async fn list_analyses(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(company_id): Path<String>,
    ApiQuery(q): ApiQuery<AnalysisQuery>,
    ApiQuery(paging): ApiQuery<PageQuery>,
) -> ApiResult<Response> {
    let caller = caller(&state, &headers, &company_id).await?;
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(AnalysisStatus::parse(s).ok_or_else(|| {
            ApiError::invalid_request(
                "status",
                format!("must be one of {}", AnalysisStatus::names()),
            )
        })?),
    };
    if q.vuln_id.as_ref().is_some_and(|v| v.chars().count() > 512) {
        return Err(ApiError::invalid_request(
            "vuln_id",
            "at most 512 characters",
        ));
    }
    let filter = AnalysisFilter {
        status,
        vuln_id: q.vuln_id.filter(|v| !v.is_empty()),
    };
    let page = state
        .store
        .list_analyses(caller.company_id, &filter, &paging.page()?, Utc::now())
        .await?;
    Ok(Json(page).into_response())
}

/// One analysis.
#[utoipa::path(get, path = "/api/v1/companies/{company_id}/analyses/{analysis_id}", tag = "analyses",
    params(
        ("company_id" = Uuid, Path, description = "The company"),
        ("analysis_id" = Uuid, Path, description = "An analysis of the company"),
    ),
    responses((status = 200, description = "The analysis", body = Analysis), E401, E403, E404, E429),
    security(("operator" = []), ("company_admin" = []), ("company_viewer" = [])))]
pub async fn get_analysis(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((company_id, analysis_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let caller = caller(&state, &headers, &company_id).await?;
    let id = parse_analysis_id(&analysis_id)?;
    let a = state
        .store
        .get_analysis(caller.company_id, id, Utc::now())
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(a).into_response())
}

/// Changes an analysis (not a withdrawn one): the covered findings follow at once.
#[utoipa::path(patch, path = "/api/v1/companies/{company_id}/analyses/{analysis_id}", tag = "analyses",
    params(
        ("company_id" = Uuid, Path, description = "The company"),
        ("analysis_id" = Uuid, Path, description = "An analysis of the company"),
    ),
    request_body = UpdateAnalysis,
    responses((status = 200, description = "The changed analysis", body = Analysis),
        E400, E401, E403, E404, E413, E429),
    security(("operator" = []), ("company_admin" = [])))]
pub async fn update_analysis(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((company_id, analysis_id)): Path<(String, String)>,
    body: Body,
) -> ApiResult<Response> {
    let caller = caller(&state, &headers, &company_id).await?;
    let id = parse_analysis_id(&analysis_id)?;
    caller.require_write()?;
    let bytes = read_body(body, BODY_LIMIT).await?;
    let req: UpdateAnalysis = parse_json(&bytes)?;
    check_comment(&req.comment)?;
    let current = state
        .store
        .get_analysis(caller.company_id, id, Utc::now())
        .await?
        .filter(|a| a.status != AnalysisStatus::Withdrawn)
        .ok_or_else(ApiError::not_found)?;
    let mut d = current.decision();
    if let Some(scope) = req.scope {
        d.scope = scope;
    }
    if let Some(s) = req.state {
        d.state = s;
    }
    if let Some(j) = req.justification {
        d.justification = j;
    }
    if let Some(r) = req.response {
        d.response = r;
    }
    if let Some(x) = req.details {
        d.details = x;
    }
    if let Some(s) = req.suppress {
        d.suppress = s;
    }
    if let Some(e) = req.expires_at {
        d.expires_at = e;
    } else if current.status == AnalysisStatus::Expired {
        // An expired analysis changed without a new expiry stays expired: its old date is
        // in the past, which a decision may not carry.
        return Err(ApiError::invalid_request(
            "expires_at",
            "the analysis has expired: give a new expiry (or null for none) to renew it",
        ));
    }
    let a = state
        .store
        .update_analysis(caller.company_id, id, &d, &caller.context(req.comment))
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(a).into_response())
}

/// Withdraws an analysis: its findings return at once; the analysis and its history stay
/// (status `withdrawn`).
#[utoipa::path(delete, path = "/api/v1/companies/{company_id}/analyses/{analysis_id}", tag = "analyses",
    params(
        ("company_id" = Uuid, Path, description = "The company"),
        ("analysis_id" = Uuid, Path, description = "An analysis of the company"),
        WithdrawQuery,
    ),
    responses((status = 200, description = "The withdrawn analysis", body = Analysis),
        E400, E401, E403, E404, E429),
    security(("operator" = []), ("company_admin" = [])))]
pub async fn withdraw_analysis(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((company_id, analysis_id)): Path<(String, String)>,
    ApiQuery(q): ApiQuery<WithdrawQuery>,
) -> ApiResult<Response> {
    let caller = caller(&state, &headers, &company_id).await?;
    let id = parse_analysis_id(&analysis_id)?;
    caller.require_write()?;
    check_comment(&q.comment)?;
    let a = state
        .store
        .withdraw_analysis(caller.company_id, id, &caller.context(q.comment))
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(a).into_response())
}

/// Every change made in the company (analyses, tags, tokens), newest first; append-only.
#[utoipa::path(get, path = "/api/v1/companies/{company_id}/audit", tag = "analyses",
    params(("company_id" = Uuid, Path, description = "The company"), PageQuery),
    responses((status = 200, description = "Audit entries", body = AuditPage), E400, E401, E403, E404, E429),
    security(("operator" = []), ("company_admin" = []), ("company_viewer" = [])))]
pub async fn audit(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(company_id): Path<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Response> {
    let caller = caller(&state, &headers, &company_id).await?;
    let page = state
        .store
        .list_audit(caller.company_id, &q.page()?)
        .await?;
    Ok(Json(page).into_response())
}

/// A host tag (the document's name for the items of `tags`).
#[derive(ToSchema)]
#[schema(value_type = String, min_length = 1, max_length = 64, pattern = r"^[A-Za-z0-9_.:/=-]+$")]
#[allow(dead_code)]
pub struct TagName(String);

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"tags": ["dmz", "prod"]}))]
pub struct Tags {
    /// ASCII letters, digits and `- _ . : / =`, 1-64 characters each, at most 64.
    #[schema(value_type = Vec<TagName>, max_items = 64)]
    tags: Vec<String>,
    /// Why, for the audit trail (on PUT).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 2000, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    comment: Option<String>,
}

/// A host's tags and where they came from.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"tags": ["dmz", "env=prod", "prod"], "assigned": ["dmz", "prod"],
    "reported": ["env=prod"]}))]
pub struct HostTags {
    /// The host's tags (both sources): what analysis scopes and `tag` filters see.
    tags: Vec<String>,
    /// Set through this API (`PUT` replaces these).
    assigned: Vec<String>,
    /// Sent by the host's agent with its reports (`zerotrace-agent --tag`); each report
    /// replaces these, and `PUT` leaves them alone.
    reported: Vec<String>,
}

impl From<zt_store::analysis::AgentTags> for HostTags {
    fn from(t: zt_store::analysis::AgentTags) -> Self {
        HostTags {
            tags: t.effective(),
            assigned: t.assigned,
            reported: t.reported,
        }
    }
}

fn parse_agent(agent_id: &str) -> ApiResult<AgentId> {
    agent_id.parse().map_err(|_| ApiError::not_found())
}

/// A host's tags (usable in analysis scopes and as the `tag` filter of lists).
#[utoipa::path(get, path = "/api/v1/companies/{company_id}/agents/{agent_id}/tags", tag = "analyses",
    params(
        ("company_id" = Uuid, Path, description = "The company"),
        ("agent_id" = Uuid, Path, description = "An agent of the company"),
    ),
    responses((status = 200, description = "The tags", body = HostTags), E401, E403, E404, E429),
    security(("operator" = []), ("company_admin" = []), ("company_viewer" = [])))]
pub async fn get_tags(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((company_id, agent_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let caller = caller(&state, &headers, &company_id).await?;
    let agent_id = parse_agent(&agent_id)?;
    let tags = state
        .store
        .agent_tags(caller.company_id, agent_id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(HostTags::from(tags)).into_response())
}

/// Replaces the host's tags set through the API (the tags its agent reports stay);
/// analyses scoped by tag follow at once.
#[utoipa::path(put, path = "/api/v1/companies/{company_id}/agents/{agent_id}/tags", tag = "analyses",
    params(
        ("company_id" = Uuid, Path, description = "The company"),
        ("agent_id" = Uuid, Path, description = "An agent of the company"),
    ),
    request_body = Tags,
    responses((status = 200, description = "The tags now", body = HostTags), E400, E401, E403, E404, E413, E429),
    security(("operator" = []), ("company_admin" = [])))]
pub async fn put_tags(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((company_id, agent_id)): Path<(String, String)>,
    body: Body,
) -> ApiResult<Response> {
    let caller = caller(&state, &headers, &company_id).await?;
    let agent_id = parse_agent(&agent_id)?;
    caller.require_write()?;
    let bytes = read_body(body, BODY_LIMIT).await?;
    let req: Tags = parse_json(&bytes)?;
    check_comment(&req.comment)?;
    let tags = state
        .store
        .set_agent_tags(
            caller.company_id,
            agent_id,
            &req.tags,
            &caller.context(req.comment),
        )
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok((StatusCode::OK, Json(HostTags::from(tags))).into_response())
}

/// Audits a token created through the API (called by the token route).
pub(crate) async fn audit_token_created(
    state: &AppState,
    caller: &Caller,
    token: &str,
    role: Role,
) -> ApiResult<()> {
    let id = token_id(&hash_token(token));
    state
        .store
        .append_audit(
            caller.company_id,
            &NewAudit {
                action: "token.created".into(),
                object: format!("token/{id}"),
                before: None,
                after: Some(serde_json::json!({"token_id": id, "role": role.as_str()})),
            },
            &caller.context(None),
        )
        .await?;
    Ok(())
}

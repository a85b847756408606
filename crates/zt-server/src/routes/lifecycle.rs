//! The life of credentials, agents and companies (DESIGN.md "Tokens, agents, companies"):
//! list and revoke user tokens, rotate and revoke agent tokens, decommission an agent, rotate
//! the enroll secret, purge a company. Each change takes effect on every API process at once
//! (`revocation.rs`). Company admins (and the operator) manage their company; only the
//! operator purges one, naming it again in `confirm`.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use zt_store::analysis::NewAudit;
use zt_store::model::{AgentId, CompanyId, Principal, Revoked, Role, TokenInfo};

use super::analyses::Caller;
use super::{created, ApiQuery};
use crate::auth::{authenticate, company_access};
use crate::error::{ApiError, ApiResult};
use crate::openapi::{E400, E401, E403, E404, E409, E429};
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenList {
    items: Vec<TokenInfo>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AgentTokenRotated {
    #[schema(value_type = Uuid)]
    agent_id: AgentId,
    /// The agent's new bearer token (`zta_…`); shown this once. Its old one no longer works.
    agent_token: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AgentDecommissioned {
    #[schema(value_type = Uuid)]
    agent_id: AgentId,
    /// Its open findings, now resolved with resolution `decommissioned`.
    resolved_findings: u64,
    /// Its apps, removed from the company's software counts.
    removed_apps: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EnrollSecretRotated {
    #[schema(value_type = Uuid)]
    company_id: CompanyId,
    /// The new enroll secret (`zte_…`); shown this once. The old one no longer enrolls.
    enroll_secret: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CompanyDeleted {
    #[schema(value_type = Uuid)]
    company_id: CompanyId,
    /// Rows deleted, by table.
    deleted: std::collections::BTreeMap<String, u64>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConfirmQuery {
    /// The company's id or its exact name, to confirm that this company is to be deleted.
    #[param(required = true, min_length = 1, max_length = 200)]
    confirm: Option<String>,
}

/// The company of the path, for the operator or an admin of that company (a viewer is
/// refused; another company's user gets 404, like a missing company).
async fn admin_scope(state: &AppState, headers: &HeaderMap, company_id: &str) -> ApiResult<Caller> {
    let caller = super::analyses::caller(state, headers, company_id).await?;
    if let Principal::User { role, .. } = caller.principal {
        if role != Role::Admin {
            return Err(ApiError::forbidden(
                "only company admins manage tokens and agents",
            ));
        }
    }
    Ok(caller)
}

/// Makes a revocation felt at once on this process and the others (caches forgotten, the
/// credentials revision read), then appends the change to the company's audit trail (who,
/// when, what; never a secret). Every lifecycle change here revokes something.
async fn revoked_and_audited(
    state: &AppState,
    caller: &Caller,
    revoked: &Revoked,
    action: &str,
    object: String,
    after: serde_json::Value,
) -> ApiResult<()> {
    crate::revocation::revoked(state, revoked).await;
    state
        .store
        .append_audit(
            caller.company_id,
            &NewAudit {
                action: action.into(),
                object,
                before: None,
                after: Some(after),
            },
            &caller.context(None),
        )
        .await?;
    Ok(())
}

fn parse_agent(agent_id: &str) -> ApiResult<AgentId> {
    agent_id.parse().map_err(|_| ApiError::not_found())
}

/// The company's user tokens, revoked and expired ones included (never their secrets).
#[utoipa::path(get, path = "/api/v1/companies/{company_id}/tokens", tag = "tokens",
    params(("company_id" = Uuid, Path, description = "The company")),
    responses((status = 200, description = "The tokens, oldest first", body = TokenList),
        E401, E403, E404, E429),
    security(("operator" = []), ("company_admin" = [])))]
pub async fn list_tokens(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(company_id): Path<String>,
) -> ApiResult<Response> {
    let company_id = admin_scope(&state, &headers, &company_id).await?.company_id;
    let items = state.store.list_tokens(company_id).await?;
    Ok(Json(TokenList { items }).into_response())
}

/// Revokes a user token at once, on every API process; the dashboard sessions opened with it
/// end. Revoking a revoked token changes nothing.
#[utoipa::path(delete, path = "/api/v1/companies/{company_id}/tokens/{token_id}", tag = "tokens",
    params(
        ("company_id" = Uuid, Path, description = "The company"),
        ("token_id" = Uuid, Path, description = "A user token of the company"),
    ),
    responses((status = 204, description = "Revoked"), E401, E403, E404, E429),
    security(("operator" = []), ("company_admin" = [])))]
pub async fn revoke_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((company_id, token_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let caller = admin_scope(&state, &headers, &company_id).await?;
    let company_id = caller.company_id;
    let token_id: uuid::Uuid = token_id.parse().map_err(|_| ApiError::not_found())?;
    let revoked = state
        .store
        .revoke_token(company_id, token_id, chrono::Utc::now())
        .await?
        .ok_or_else(ApiError::not_found)?;
    revoked_and_audited(
        &state,
        &caller,
        &revoked,
        "token.revoked",
        format!("token/{token_id}"),
        serde_json::json!({"token_id": token_id}),
    )
    .await?;
    tracing::info!(company = %company_id, token = %token_id, "user token revoked");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Gives an agent a new token and revokes its old one at once (install the new one on the
/// host: `agent_token` in its state file).
#[utoipa::path(post, path = "/api/v1/companies/{company_id}/agents/{agent_id}/token", tag = "agents",
    params(
        ("company_id" = Uuid, Path, description = "The company"),
        ("agent_id" = Uuid, Path, description = "A live agent of the company"),
    ),
    responses((status = 201, description = "The new token, shown this once", body = AgentTokenRotated),
        E401, E403, E404, E429),
    security(("operator" = []), ("company_admin" = [])))]
pub async fn rotate_agent_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((company_id, agent_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let caller = admin_scope(&state, &headers, &company_id).await?;
    let company_id = caller.company_id;
    let agent_id = parse_agent(&agent_id)?;
    let (agent_token, revoked) =
        crate::accounts::rotate_agent_token(&*state.store, company_id, agent_id)
            .await?
            .ok_or_else(ApiError::not_found)?;
    revoked_and_audited(
        &state,
        &caller,
        &revoked,
        "agent.token_rotated",
        format!("agent/{agent_id}"),
        serde_json::json!({"agent_id": agent_id}),
    )
    .await?;
    tracing::info!(company = %company_id, agent = %agent_id, "agent token rotated");
    Ok(created(AgentTokenRotated {
        agent_id,
        agent_token,
    }))
}

/// Revokes an agent's token at once: it can no longer report (until given a new one, see
/// the POST). Its data stays.
#[utoipa::path(delete, path = "/api/v1/companies/{company_id}/agents/{agent_id}/token", tag = "agents",
    params(
        ("company_id" = Uuid, Path, description = "The company"),
        ("agent_id" = Uuid, Path, description = "A live agent of the company"),
    ),
    responses((status = 204, description = "Revoked"), E401, E403, E404, E429),
    security(("operator" = []), ("company_admin" = [])))]
pub async fn revoke_agent_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((company_id, agent_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let caller = admin_scope(&state, &headers, &company_id).await?;
    let company_id = caller.company_id;
    let agent_id = parse_agent(&agent_id)?;
    let revoked = state
        .store
        .replace_agent_token(company_id, agent_id, None, chrono::Utc::now())
        .await?
        .ok_or_else(ApiError::not_found)?;
    revoked_and_audited(
        &state,
        &caller,
        &revoked,
        "agent.token_revoked",
        format!("agent/{agent_id}"),
        serde_json::json!({"agent_id": agent_id}),
    )
    .await?;
    tracing::info!(company = %company_id, agent = %agent_id, "agent token revoked");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Decommissions a host: its token revoked, its open findings resolved with resolution
/// `decommissioned`, its apps gone from the company's counts, its waiting reports dropped;
/// it leaves the hosts list and the summary (a `findings.changed` event tells live pages).
#[utoipa::path(delete, path = "/api/v1/companies/{company_id}/agents/{agent_id}", tag = "agents",
    params(
        ("company_id" = Uuid, Path, description = "The company"),
        ("agent_id" = Uuid, Path, description = "A live agent of the company"),
    ),
    responses((status = 200, description = "Decommissioned", body = AgentDecommissioned),
        E401, E403, E404, E429),
    security(("operator" = []), ("company_admin" = [])))]
pub async fn decommission_agent(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((company_id, agent_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let caller = admin_scope(&state, &headers, &company_id).await?;
    let company_id = caller.company_id;
    let agent_id = parse_agent(&agent_id)?;
    let done = state
        .store
        .decommission_agent(company_id, agent_id, chrono::Utc::now())
        .await?
        .ok_or_else(ApiError::not_found)?;
    revoked_and_audited(
        &state,
        &caller,
        &done.revoked,
        "agent.decommissioned",
        format!("agent/{agent_id}"),
        serde_json::json!({"agent_id": agent_id, "resolved_findings": done.resolved_findings}),
    )
    .await?;
    tracing::info!(company = %company_id, agent = %agent_id,
        resolved = done.resolved_findings, "agent decommissioned");
    Ok(Json(AgentDecommissioned {
        agent_id,
        resolved_findings: done.resolved_findings,
        removed_apps: done.removed_apps,
    })
    .into_response())
}

/// Replaces the company's enroll secret: the old one stops enrolling at once (enrolled
/// agents keep their own tokens).
#[utoipa::path(post, path = "/api/v1/companies/{company_id}/enroll-secret", tag = "companies",
    params(("company_id" = Uuid, Path, description = "The company")),
    responses((status = 201, description = "The new secret, shown this once", body = EnrollSecretRotated),
        E401, E403, E404, E429),
    security(("operator" = []), ("company_admin" = [])))]
pub async fn rotate_enroll_secret(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(company_id): Path<String>,
) -> ApiResult<Response> {
    let caller = admin_scope(&state, &headers, &company_id).await?;
    let company_id = caller.company_id;
    let (enroll_secret, revoked) = crate::accounts::rotate_enroll_secret(&*state.store, company_id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    revoked_and_audited(
        &state,
        &caller,
        &revoked,
        "enroll_secret.rotated",
        format!("company/{company_id}"),
        serde_json::json!({}),
    )
    .await?;
    tracing::info!(company = %company_id, "enroll secret rotated");
    Ok(created(EnrollSecretRotated {
        company_id,
        enroll_secret,
    }))
}

/// Deletes a company with all its data: agents, reports, apps, findings, tokens, sessions,
/// events, trend points. The operator's business; `confirm` must repeat the company's id or
/// exact name.
#[utoipa::path(delete, path = "/api/v1/companies/{company_id}", tag = "companies",
    params(("company_id" = Uuid, Path, description = "The company"), ConfirmQuery),
    responses((status = 200, description = "Deleted", body = CompanyDeleted),
        E400, E401, E403, E404, E409, E429),
    security(("operator" = [])))]
pub async fn delete_company(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(company_id): Path<String>,
    ApiQuery(query): ApiQuery<ConfirmQuery>,
) -> ApiResult<Response> {
    let principal = authenticate(&state, &headers).await?;
    if principal != Principal::Operator {
        return Err(ApiError::forbidden("only the operator deletes companies"));
    }
    let company_id = company_access(&state, &principal, &company_id).await?;
    let company = state
        .store
        .get_company(company_id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let confirm = query.confirm.unwrap_or_default();
    let confirm = confirm.trim();
    if confirm.is_empty() {
        return Err(ApiError::invalid_request(
            "confirm",
            "repeat the company's id or exact name to delete it with all its data",
        ));
    }
    if confirm != company.name && confirm.parse::<CompanyId>().ok() != Some(company_id) {
        // Well-formed, but it names another company (or none): nothing is deleted.
        let mut e = ApiError::new(
            StatusCode::CONFLICT,
            "confirmation_mismatch",
            "confirm is neither this company's id nor its exact name; nothing was deleted",
        );
        e.field = Some("confirm".into());
        return Err(e);
    }
    let purged = state
        .store
        .delete_company(company_id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    crate::revocation::revoked(&state, &purged.revoked).await;
    tracing::warn!(company = %company_id, name = %company.name, "company deleted with all its data");
    Ok(Json(CompanyDeleted {
        company_id,
        deleted: purged.tables.into_iter().collect(),
    })
    .into_response())
}

//! Companies and user tokens.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use zt_store::model::{Company, CompanyId, Principal, Role};

use super::{check_text, created, parse_json, read_body};
use crate::auth::authenticate;
use crate::error::{ApiError, ApiResult};
use crate::openapi::{E400, E401, E403, E404, E413, E429};
use crate::state::AppState;

const ADMIN_BODY_LIMIT: usize = 64 * 1024;

#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"name": "Acme Corp"}))]
pub struct CreateCompany {
    /// Shown to people; leading and trailing white space is dropped, and what is left must
    /// not be empty.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CompanyCreated {
    #[schema(value_type = Uuid)]
    id: CompanyId,
    name: String,
    /// Agents enroll with it; shown this once (stored hashed).
    enroll_secret: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CompanyList {
    items: Vec<Company>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"role": "viewer", "name": "CI export", "expires_in_days": 90}))]
pub struct CreateToken {
    role: Role,
    /// What the token is for, shown in the token list.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    name: Option<String>,
    /// The token stops working this many days from now (default: never).
    #[schema(minimum = 1, maximum = 3650)]
    expires_in_days: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenCreated {
    /// The bearer token (`ztu_…`); shown this once (stored hashed).
    token: String,
    /// Names the token in the list and to revoke it.
    token_id: uuid::Uuid,
    #[schema(value_type = Uuid)]
    company_id: CompanyId,
    role: Role,
    name: Option<String>,
    expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Creates a company with its enroll secret; the operator's business.
#[utoipa::path(post, path = "/api/v1/companies", tag = "companies",
    request_body = CreateCompany,
    responses(
        (status = 201, description = "Created; the enroll secret is shown this once", body = CompanyCreated),
        E400, E401, E403, E413,
    ),
    security(("operator" = [])))]
pub async fn create_company(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let principal = authenticate(&state, &headers).await?;
    if principal != Principal::Operator {
        return Err(ApiError::forbidden("only the operator creates companies"));
    }
    let bytes = read_body(body, ADMIN_BODY_LIMIT).await?;
    let req: CreateCompany = parse_json(&bytes)?;
    let name = req.name.trim().to_string();
    check_text("name", &name, 1, 200)?;
    let (company, secret) = crate::accounts::create_company(&*state.store, &name).await?;
    Ok(created(CompanyCreated {
        id: company.id,
        name: company.name,
        enroll_secret: secret,
    }))
}

/// The companies the caller sees: the operator every one, a user only their own.
#[utoipa::path(get, path = "/api/v1/companies", tag = "companies",
    responses((status = 200, description = "Companies", body = CompanyList), E401, E403, E429),
    security(("operator" = []), ("company_admin" = []), ("company_viewer" = [])))]
pub async fn list_companies(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let principal = authenticate(&state, &headers).await?;
    state.limits.check(&principal).await?;
    let companies = match principal {
        Principal::Operator => state.store.list_companies().await?,
        Principal::User { company_id, .. } => state
            .store
            .get_company(company_id)
            .await?
            .into_iter()
            .collect(),
        _ => {
            return Err(ApiError::forbidden(
                "agent tokens and enroll secrets cannot read company data",
            ))
        }
    };
    Ok(Json(CompanyList { items: companies }).into_response())
}

/// A user token for a company: the operator or an admin of that company may create one.
#[utoipa::path(post, path = "/api/v1/companies/{company_id}/tokens", tag = "tokens",
    params(("company_id" = Uuid, Path, description = "The company")),
    request_body = CreateToken,
    responses(
        (status = 201, description = "Created; the token is shown this once", body = TokenCreated),
        E400, E401, E403, E404, E413, E429,
    ),
    security(("operator" = []), ("company_admin" = [])))]
pub async fn create_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(company_id): Path<String>,
    body: Body,
) -> ApiResult<Response> {
    let caller = super::analyses::caller(&state, &headers, &company_id).await?;
    let company_id = caller.company_id;
    if let Principal::User { role, .. } = caller.principal {
        if role != Role::Admin {
            return Err(ApiError::forbidden("only company admins create tokens"));
        }
    }
    let bytes = read_body(body, ADMIN_BODY_LIMIT).await?;
    let req: CreateToken = parse_json(&bytes)?;
    let name = match req.name {
        Some(name) => {
            let name = name.trim().to_string();
            check_text("name", &name, 1, 100)?;
            Some(name)
        }
        None => None,
    };
    if let Some(days) = req.expires_in_days {
        if !(1..=crate::accounts::MAX_TOKEN_DAYS).contains(&days) {
            return Err(ApiError::invalid_request(
                "expires_in_days",
                format!("must be from 1 to {}", crate::accounts::MAX_TOKEN_DAYS),
            ));
        }
    }
    let (token, info) = crate::accounts::create_named_token(
        &*state.store,
        company_id,
        req.role,
        name,
        req.expires_in_days,
    )
    .await?
    .ok_or_else(ApiError::not_found)?;
    super::analyses::audit_token_created(&state, &caller, &token, req.role).await?;
    Ok(created(TokenCreated {
        token,
        token_id: info.token_id,
        company_id,
        role: req.role,
        name: info.name,
        expires_at: info.expires_at,
    }))
}

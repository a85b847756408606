//! Companies and user tokens.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use zt_store::model::{Principal, Role};

use super::{check_text, created, parse_json, read_body};
use crate::auth::{authenticate, company_access};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

const ADMIN_BODY_LIMIT: usize = 64 * 1024;

#[derive(Debug, Deserialize)]
struct CreateCompany {
    name: String,
}

#[derive(Debug, Deserialize)]
struct CreateToken {
    role: Role,
}

/// Creates a company with its enroll secret; the operator's business.
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
    Ok(created(json!({
        "id": company.id,
        "name": company.name,
        "enroll_secret": secret,
    })))
}

/// The operator sees every company, a user only their own.
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
    Ok(Json(json!({ "items": companies })).into_response())
}

/// A user token for a company: the operator or an admin of that company may create one.
pub async fn create_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(company_id): Path<String>,
    body: Body,
) -> ApiResult<Response> {
    let principal = authenticate(&state, &headers).await?;
    state.limits.check(&principal).await?;
    let company_id = company_access(&state, &principal, &company_id).await?;
    if let Principal::User { role, .. } = principal {
        if role != Role::Admin {
            return Err(ApiError::forbidden("only company admins create tokens"));
        }
    }
    let bytes = read_body(body, ADMIN_BODY_LIMIT).await?;
    let req: CreateToken = parse_json(&bytes)?;
    let token = crate::accounts::create_user_token(&*state.store, company_id, req.role)
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(created(json!({
        "token": token,
        "company_id": company_id,
        "role": req.role,
    })))
}

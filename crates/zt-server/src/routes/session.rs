//! Dashboard sign-in (DESIGN.md "Dashboard sign-in"): a browser trades a token for an HttpOnly
//! session cookie and a CSRF token, so that no script of the page ever holds the token; sign-out
//! ends the session in the store, on every API process at once.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use zt_store::model::{CompanyId, NewSession, Principal, Role};

use super::{check_text, parse_json, read_body};
use crate::auth::{
    bearer, csrf_token, generate_token, hash_token, principal_of, session_cookie, session_token,
    TokenKind, SESSION_COOKIE,
};
use crate::error::{ApiError, ApiResult};
use crate::openapi::{E400, E401, E403, E413, E415, E429};
use crate::state::AppState;

const SESSION_BODY_LIMIT: usize = 4 * 1024;

#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"token": "ztu_…"}))]
pub struct SignIn {
    /// An operator token (`zto_…`) or a user token (`ztu_…`).
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*$"
    )]
    token: String,
}

/// Who a session (or token) is.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PrincipalInfo {
    /// `operator` or `user`.
    kind: &'static str,
    /// A user's company.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<uuid::Uuid>)]
    company_id: Option<CompanyId>,
    /// A user's role.
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<Role>,
}

impl PrincipalInfo {
    pub fn of(principal: &Principal) -> Option<PrincipalInfo> {
        match *principal {
            Principal::Operator => Some(PrincipalInfo {
                kind: "operator",
                company_id: None,
                role: None,
            }),
            Principal::User { company_id, role } => Some(PrincipalInfo {
                kind: "user",
                company_id: Some(company_id),
                role: Some(role),
            }),
            Principal::Agent { .. } | Principal::Enroll { .. } => None,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionOpened {
    /// Send it as `X-ZeroTrace-CSRF` with every write made with the session cookie.
    csrf: String,
    principal: PrincipalInfo,
    expires_at: chrono::DateTime<Utc>,
}

/// The `Set-Cookie` value of the session cookie (`max_age` 0 clears it).
pub(crate) fn cookie(state: &AppState, value: &str, max_age: u64) -> ApiResult<HeaderValue> {
    // The server's own TLS always marks the cookie Secure; behind a TLS proxy the flag says so.
    let secure = if state.config.secure_cookies || state.config.tls {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{secure}"
    ))
    .map_err(ApiError::internal)
}

/// Signs in to the dashboard: the token in the body opens a session, whose id comes back only
/// as an HttpOnly cookie.
#[utoipa::path(post, path = "/api/v1/session", tag = "session",
    request_body(content = SignIn, content_type = "application/json"),
    responses(
        (status = 200, description = "Signed in; `Set-Cookie: zt_session=…; HttpOnly; SameSite=Strict; Path=/`",
            body = SessionOpened,
            headers(("Set-Cookie" = String, description = "The session cookie"))),
        E400, E401, E403, E413, E415, E429,
    ),
    extensions(
        ("x-zerotrace-body-credential" = json!("token")),
        ("x-zerotrace-body-credential-schemes" = json!(["operator", "company_admin", "company_viewer"])),
    ))]
pub async fn sign_in(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    // A cross-site form can post text/plain without asking; JSON it cannot.
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "sign-in takes Content-Type: application/json",
        ));
    }
    let bytes = read_body(body, SESSION_BODY_LIMIT).await?;
    let req: SignIn = parse_json(&bytes)?;
    check_text("token", &req.token, 1, 256)?;
    let token = req.token.trim();
    let principal = principal_of(&state, token).await?;
    let info = PrincipalInfo::of(&principal).ok_or_else(|| {
        ApiError::forbidden("agent tokens and enroll secrets cannot sign in to the dashboard")
    })?;
    state.limits.check(&principal).await?;
    let (id, expires_at) = open_session(&state, &headers, hash_token(token)).await?;
    let mut resp = Json(SessionOpened {
        csrf: csrf_token(&id),
        principal: info,
        expires_at,
    })
    .into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        cookie(&state, &id, state.config.session_ttl.as_secs())?,
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// When a session opened now ends.
pub(crate) fn session_expiry(
    state: &AppState,
    now: chrono::DateTime<Utc>,
) -> chrono::DateTime<Utc> {
    now + chrono::Duration::from_std(state.config.session_ttl)
        .unwrap_or(chrono::Duration::hours(12))
}

/// Opens a dashboard session bound to the token of `token_hash` (a token sign-in's, or the
/// one an OIDC sign-in was given); returns the session id (the cookie's value) and when it
/// ends. A browser signing in again leaves no session of its own behind.
pub(crate) async fn open_session(
    state: &AppState,
    headers: &HeaderMap,
    token_hash: zt_store::model::TokenHash,
) -> ApiResult<(String, chrono::DateTime<Utc>)> {
    if let Some(old) = session_cookie(headers) {
        state.store.end_session(hash_token(old)).await?;
    }
    let id = generate_token(TokenKind::Session);
    let now = Utc::now();
    let expires_at = session_expiry(state, now);
    state
        .store
        .create_session(&NewSession {
            session_hash: hash_token(&id),
            token_hash,
            created_at: now,
            expires_at,
        })
        .await?;
    Ok((id, expires_at))
}

/// Signs out: ends the session of the cookie on the server (with the session's
/// `X-ZeroTrace-CSRF` header) and clears the cookie.
#[utoipa::path(delete, path = "/api/v1/session", tag = "session",
    params(("X-ZeroTrace-CSRF" = String, Header, description = "The session's CSRF token (from sign-in)")),
    responses(
        (status = 204, description = "Signed out; the cookie is cleared",
            headers(("Set-Cookie" = String, description = "The session cookie, expired"))),
        E401, E403,
    ),
    security(("session" = [])))]
pub async fn sign_out(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    let clear = cookie(&state, "", 0)?;
    let Some(session) = session_cookie(&headers) else {
        // A valid token is not a session: there is nothing of it to end here.
        if let Some(token) = bearer(&headers) {
            principal_of(&state, token).await?;
            return Err(ApiError::forbidden(
                "sign-out ends a dashboard session: send its cookie, not a token",
            ));
        }
        return Err(ApiError::unauthorized());
    };
    // The CSRF header was checked on the way in (`auth::csrf_guard`).
    if session_token(&state, session).await?.is_none() {
        let mut resp = ApiError::unauthorized().into_response();
        resp.headers_mut().insert(header::SET_COOKIE, clear);
        return Ok(resp);
    }
    state.store.end_session(hash_token(session)).await?;
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut().insert(header::SET_COOKIE, clear);
    Ok(resp)
}

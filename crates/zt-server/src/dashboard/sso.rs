//! `/signin/sso` and `/signin/sso/callback`: signing people in through the OpenID Connect
//! provider of `--oidc-issuer` (the protocol is in `crate::oidc`). Browser navigations with
//! redirects, not JSON calls: they belong to the dashboard, like `/signin`, and answer pages.
//!
//! The callback ends where a token sign-in ends: a `zt_session` cookie (HttpOnly,
//! SameSite=Strict) bound to a user token of the mapped company and role. It answers a small
//! page that moves on by itself rather than a redirect: the callback is reached from the
//! provider's site, and a browser keeps a SameSite=Strict cookie off the rest of a redirect
//! chain that began on another site, so the first page after it would not be signed in.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use maud::html;
use zt_store::analysis::{Actor, ChangeContext, NewAudit};
use zt_store::model::NewUserToken;

use super::layout::bare_page;
use super::signin::safe_next;
use super::{param, Params, Req};
use crate::auth::{generate_token, hash_token, TokenKind};
use crate::oidc::{OidcError, FLOW_COOKIE, FLOW_TTL};
use crate::routes::session::{cookie as session_set_cookie, open_session, session_expiry};
use crate::state::AppState;

/// The flow cookie is sent on the provider's redirect back (a top-level cross-site
/// navigation), so it is SameSite=Lax, and only to the callback's path.
fn flow_cookie(state: &AppState, value: &str, max_age: u64) -> Option<HeaderValue> {
    let secure = if state.config.secure_cookies || state.config.tls {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{FLOW_COOKIE}={value}; HttpOnly; SameSite=Lax; Path=/signin/sso; Max-Age={max_age}{secure}"
    ))
    .ok()
}

fn flow_of(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == FLOW_COOKIE)
        .map(|(_, value)| value.trim())
        .filter(|v| !v.is_empty() && v.len() <= 4096)
}

/// A page saying why signing in did not work, with a way to try again.
fn refusal(status: StatusCode, title: &str, message: &str) -> Response {
    let mut resp = bare_page(
        title,
        html! {
            section .signin {
                h1 { (title) }
                p #error .banner role="alert" { (message) }
                p { a href="/signin" { "Back to sign-in" } }
            }
        },
    );
    *resp.status_mut() = status;
    resp
}

fn not_configured() -> Response {
    refusal(
        StatusCode::NOT_FOUND,
        "Single sign-on is not set up",
        "This server has no OpenID Connect provider (--oidc-issuer): sign in with a token.",
    )
}

fn provider_down(e: &OidcError) -> Response {
    tracing::warn!(error = %e, "OIDC sign-in failed at the provider");
    refusal(
        StatusCode::BAD_GATEWAY,
        "The identity provider cannot be reached",
        "Signing in through the identity provider failed on the way there; try again later.",
    )
}

/// `GET /signin/sso?next=/…`: sends the browser to the provider.
pub async fn start(State(state): State<AppState>, params: Params) -> Response {
    let Some(oidc) = state.oidc.as_ref() else {
        return not_configured();
    };
    let next = safe_next(param(&params, "next"));
    match oidc.start(&*state.store, next).await {
        Ok((url, flow)) => {
            let mut resp = StatusCode::SEE_OTHER.into_response();
            let h = resp.headers_mut();
            if let Ok(location) = HeaderValue::from_str(&url) {
                h.insert(header::LOCATION, location);
            }
            if let Some(c) = flow_cookie(&state, &flow, FLOW_TTL.as_secs()) {
                h.insert(header::SET_COOKIE, c);
            }
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            resp
        }
        Err(e) => provider_down(&e),
    }
}

/// `GET /signin/sso/callback?code=…&state=…`: the provider's answer. Opens a session when
/// the answer is valid for the sign-in this browser started and one of the person's groups
/// is mapped; a page saying why not otherwise.
pub async fn callback(State(state): State<AppState>, req: Req, params: Params) -> Response {
    let mut resp = finish(&state, &req, &params).await;
    // Whatever came of it, the flow is over.
    if let Some(clear) = flow_cookie(&state, "", 0) {
        resp.headers_mut().append(header::SET_COOKIE, clear);
    }
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

async fn finish(
    state: &AppState,
    req: &Req,
    params: &std::collections::HashMap<String, String>,
) -> Response {
    let Some(oidc) = state.oidc.as_ref() else {
        return not_configured();
    };
    if let Some(error) = param(params, "error") {
        let detail = param(params, "error_description").unwrap_or("");
        return refusal(
            StatusCode::UNAUTHORIZED,
            "Not signed in",
            &format!("The identity provider did not sign you in: {error} {detail}"),
        );
    }
    let Some(cookie) = flow_of(&req.headers) else {
        return refusal(
            StatusCode::BAD_REQUEST,
            "Not signed in",
            "No sign-in was started in this browser (or it was already finished): start again.",
        );
    };
    let flow = match oidc.open(&*state.store, cookie).await {
        Ok(f) => f,
        Err(OidcError::Provider(m)) => return provider_down(&OidcError::Provider(m)),
        Err(e) => return refusal(StatusCode::BAD_REQUEST, "Not signed in", &e.to_string()),
    };
    let (Some(code), Some(got_state)) = (param(params, "code"), param(params, "state")) else {
        return refusal(
            StatusCode::BAD_REQUEST,
            "Not signed in",
            "The identity provider's answer lacks its code or state.",
        );
    };
    let identity = match oidc.finish(&flow, code, got_state).await {
        Ok(i) => i,
        Err(e @ OidcError::Provider(_)) => return provider_down(&e),
        Err(OidcError::Invalid(m)) => {
            tracing::warn!(reason = %m, "OIDC sign-in refused");
            return refusal(StatusCode::BAD_REQUEST, "Not signed in", &m);
        }
        Err(OidcError::Rejected(m)) => {
            tracing::warn!(reason = %m, "OIDC sign-in refused");
            return refusal(StatusCode::UNAUTHORIZED, "Not signed in", &m);
        }
    };
    let who = identity
        .label
        .clone()
        .unwrap_or_else(|| identity.subject.clone());
    let Some(mapping) = oidc.config.map_groups(&identity.groups).cloned() else {
        tracing::info!(subject = %identity.subject, groups = ?identity.groups,
            "OIDC sign-in refused: no group mapped");
        return refusal(
            StatusCode::FORBIDDEN,
            "No access",
            &format!(
                "You are signed in at the identity provider as {who}, but none of your groups \
                 gives access to ZeroTrace. Ask its operator to map one (--oidc-map)."
            ),
        );
    };
    // The person's own token, living as long as the session: authorization stays with tokens
    // (listed, revocable), and the session is bound to it as a token sign-in's is.
    let token = generate_token(TokenKind::User);
    let now = Utc::now();
    let name: String = format!("sso: {who}").chars().take(100).collect();
    let token_id = uuid::Uuid::now_v7();
    let created = state
        .store
        .create_token(&NewUserToken {
            company_id: mapping.company_id,
            token_id,
            role: mapping.role,
            name: Some(name),
            hash: hash_token(&token),
            created_at: now,
            expires_at: Some(session_expiry(state, now)),
        })
        .await;
    match created {
        Ok(true) => {}
        Ok(false) => {
            tracing::error!(company = %mapping.company_id, group = %mapping.group,
                "OIDC group mapped to a company that does not exist");
            return refusal(
                StatusCode::FORBIDDEN,
                "No access",
                "Your group is mapped to a company that does not exist (any more).",
            );
        }
        Err(e) => {
            tracing::error!(error = %e, "creating the token of an OIDC sign-in");
            return refusal(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Not signed in",
                "Internal error.",
            );
        }
    }
    let audit = state
        .store
        .append_audit(
            mapping.company_id,
            &NewAudit {
                action: "session.sso_signed_in".into(),
                object: format!(
                    "token/{}",
                    crate::routes::analyses::token_id(&hash_token(&token))
                ),
                before: None,
                after: Some(serde_json::json!({
                    "issuer": oidc.config.issuer,
                    "subject": identity.subject,
                    "who": who,
                    "group": mapping.group,
                    "role": mapping.role.as_str(),
                })),
            },
            &ChangeContext {
                actor: Actor {
                    kind: "sso".into(),
                    token_id: Some(crate::routes::analyses::token_id(&hash_token(&token))),
                    role: Some(mapping.role.as_str().into()),
                },
                at: now,
                comment: None,
            },
        )
        .await;
    if let Err(e) = audit {
        tracing::error!(error = %e, "recording an OIDC sign-in");
        return refusal(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Not signed in",
            "Internal error.",
        );
    }
    let (session, _) = match open_session(state, &req.headers, hash_token(&token)).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = ?e, "opening the session of an OIDC sign-in");
            return refusal(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Not signed in",
                "Internal error.",
            );
        }
    };
    tracing::info!(company = %mapping.company_id, role = mapping.role.as_str(),
        subject = %identity.subject, "signed in through OIDC");
    let next = if flow.next == "/" {
        format!("/c/{}", mapping.company_id)
    } else {
        safe_next(Some(&flow.next)).to_string()
    };
    let mut resp = bare_page(
        "Signed in",
        html! {
            meta http-equiv="refresh" content=(format!("0;url={next}"));
            section .signin {
                h1 { "Signed in" }
                p { "Signed in as " (who) " (" (mapping.role.as_str()) "). " a #continue href=(next) { "Continue" } }
            }
        },
    );
    match session_set_cookie(state, &session, state.config.session_ttl.as_secs()) {
        Ok(c) => {
            resp.headers_mut().append(header::SET_COOKIE, c);
        }
        Err(_) => {
            return refusal(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Not signed in",
                "Internal error.",
            );
        }
    }
    resp
}

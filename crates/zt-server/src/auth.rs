//! Tokens: generation, hashing, and who a request's bearer token is.
//!
//! A token is a kind prefix plus 256 random bits in base64url (`zto_` operator, `ztu_` user,
//! `zta_` agent, `zte_` enroll secret). Only SHA-256 hashes are stored: the tokens are
//! high-entropy, so a slow password hash would add cost without adding safety.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap};
use base64::Engine;
use parking_lot::Mutex;
use rand::RngCore;
use sha2::{Digest, Sha256};
use zt_store::model::{CompanyId, Principal, TokenHash};

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// What a token is for; its prefix says so at a glance in logs and configs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Operator,
    User,
    Agent,
    Enroll,
}

impl TokenKind {
    fn prefix(self) -> &'static str {
        match self {
            TokenKind::Operator => "zto_",
            TokenKind::User => "ztu_",
            TokenKind::Agent => "zta_",
            TokenKind::Enroll => "zte_",
        }
    }
}

/// A new random token of `kind`.
pub fn generate_token(kind: TokenKind) -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!(
        "{}{}",
        kind.prefix(),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

pub fn hash_token(token: &str) -> TokenHash {
    TokenHash(Sha256::digest(token.as_bytes()).into())
}

/// The bearer token of a request, if it carries a well-formed one.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim();
    (!token.is_empty() && token.len() <= 256).then_some(token)
}

/// Resolved tokens, kept briefly so that a busy agent costs no database read per request.
/// Unknown tokens are not cached (they would let a flood of garbage grow the map).
pub struct TokenCache {
    entries: Mutex<HashMap<TokenHash, (Principal, Instant)>>,
    ttl: Duration,
}

impl TokenCache {
    pub fn new(ttl: Duration) -> Self {
        TokenCache {
            entries: Mutex::new(HashMap::new()),
            ttl,
        }
    }

    fn get(&self, hash: &TokenHash) -> Option<Principal> {
        let entries = self.entries.lock();
        let (p, at) = entries.get(hash)?;
        (at.elapsed() < self.ttl).then_some(*p)
    }

    fn put(&self, hash: TokenHash, principal: Principal) {
        let mut entries = self.entries.lock();
        if entries.len() > 100_000 {
            let ttl = self.ttl;
            entries.retain(|_, (_, at)| at.elapsed() < ttl);
        }
        entries.insert(hash, (principal, Instant::now()));
    }
}

/// Who sent the request (401 when nobody we know).
pub async fn authenticate(state: &AppState, headers: &HeaderMap) -> ApiResult<Principal> {
    let token = bearer(headers).ok_or_else(ApiError::unauthorized)?;
    principal_of(state, token).await
}

pub async fn principal_of(state: &AppState, token: &str) -> ApiResult<Principal> {
    let hash = hash_token(token);
    if let Some(env) = state.config.admin_token_env {
        if env == hash {
            return Ok(Principal::Operator);
        }
    }
    if let Some(p) = state.tokens.get(&hash) {
        return Ok(p);
    }
    if let Some(shared) = &state.shared {
        if let Some(p) = shared.cached_principal(&hash).await {
            state.tokens.put(hash, p);
            return Ok(p);
        }
    }
    let p = state
        .store
        .resolve_token(hash)
        .await?
        .ok_or_else(ApiError::unauthorized)?;
    // With ZEROTRACE_ADMIN_TOKEN set, a generated operator token from an earlier start is void.
    if p == Principal::Operator && state.config.admin_token_env.is_some() {
        return Err(ApiError::unauthorized());
    }
    state.tokens.put(hash, p);
    if let Some(shared) = &state.shared {
        shared.cache_principal(&hash, &p).await;
    }
    Ok(p)
}

/// Checks that `principal` may read company `company_id` (given as the raw path segment).
/// Users of another company and unknown ids get the same 404; agent and enroll tokens read
/// nothing.
pub async fn company_access(
    state: &AppState,
    principal: &Principal,
    company_id: &str,
) -> ApiResult<CompanyId> {
    let parsed = company_id.parse::<CompanyId>().ok();
    match principal {
        Principal::Operator => {
            let id = parsed.ok_or_else(ApiError::not_found)?;
            if state.store.get_company(id).await?.is_none() {
                return Err(ApiError::not_found());
            }
            Ok(id)
        }
        Principal::User {
            company_id: own, ..
        } => match parsed {
            Some(id) if id == *own => Ok(id),
            _ => Err(ApiError::not_found()),
        },
        Principal::Agent { .. } | Principal::Enroll { .. } => Err(ApiError::forbidden(
            "agent tokens and enroll secrets cannot read company data",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_prefixed_random_and_hash_stably() {
        let a = generate_token(TokenKind::Agent);
        let b = generate_token(TokenKind::Agent);
        assert!(a.starts_with("zta_") && a.len() == 4 + 43, "{a}");
        assert_ne!(a, b);
        assert_eq!(hash_token(&a), hash_token(&a));
        assert_ne!(hash_token(&a), hash_token(&b));
    }

    #[test]
    fn bearer_parsing_rejects_malformed_headers() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, "Bearer zta_x".parse().unwrap());
        assert_eq!(bearer(&h), Some("zta_x"));
        h.insert(header::AUTHORIZATION, "bearer   zta_y ".parse().unwrap());
        assert_eq!(bearer(&h), Some("zta_y"));
        h.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, "Bearer ".parse().unwrap());
        assert_eq!(bearer(&h), None);
    }
}

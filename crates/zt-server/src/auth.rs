//! Tokens: generation, hashing, and who a request's credential is: its bearer token or, from
//! a browser, its dashboard session cookie.
//!
//! A token is a kind prefix plus 256 random bits in base64url (`zto_` operator, `ztu_` user,
//! `zta_` agent, `zte_` enroll secret, `zts_` dashboard session id). Only SHA-256 hashes are
//! stored: the tokens are high-entropy, so a slow password hash would add cost without adding
//! safety.
//!
//! A session (DESIGN.md "Dashboard sign-in") is bound to the token it was opened with: each
//! request resolves that token again, so the cookie authorizes exactly what the token may, and
//! nothing once the token is revoked. Its CSRF token is derived from the session id (a hash),
//! so it can be checked, and rendered into pages, without a look-up.

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
    Session,
}

impl TokenKind {
    fn prefix(self) -> &'static str {
        match self {
            TokenKind::Operator => "zto_",
            TokenKind::User => "ztu_",
            TokenKind::Agent => "zta_",
            TokenKind::Enroll => "zte_",
            TokenKind::Session => "zts_",
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

/// The cookie that carries a dashboard session id.
pub const SESSION_COOKIE: &str = "zt_session";
/// The header a write sent with the session cookie must carry (the session's CSRF token).
pub const CSRF_HEADER: &str = "x-zerotrace-csrf";

/// The session id of a request's `zt_session` cookie, if it carries a well-formed one.
pub fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim())
        .filter(|v| !v.is_empty() && v.len() <= 256)
}

/// The CSRF token of a session: a one-way function of its id, so that the server can check it
/// (and put it into the pages it renders) without storing it, while a page that cannot read
/// the HttpOnly cookie cannot compute it.
pub fn csrf_token(session_id: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"zerotrace-csrf\0");
    h.update(session_id.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(h.finalize())
}

/// Whether `given` is the CSRF token of `session_id` (compared in constant time).
pub fn csrf_matches(session_id: &str, given: &str) -> bool {
    let want = csrf_token(session_id);
    want.len() == given.len()
        && want
            .bytes()
            .zip(given.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// Resolved tokens, kept briefly so that a busy agent costs no database read per request.
/// Unknown tokens are not cached (they would let a flood of garbage grow the map).
///
/// Every entry carries the credentials revision it was resolved at (`Storage::
/// credentials_revision`, bumped by every revocation): an entry of an older revision than the
/// one this process last saw is a miss, so a revocation on any process takes effect here as
/// soon as the revision is seen (`revocation::watch`), even for an answer that was in flight.
pub struct TokenCache {
    entries: Mutex<HashMap<TokenHash, (Principal, Instant, u64)>>,
    ttl: Duration,
    revision: std::sync::atomic::AtomicU64,
    /// Tokens used since the last flush, with when (`last_used_at`, written in batches).
    used: Mutex<HashMap<TokenHash, chrono::DateTime<chrono::Utc>>>,
}

impl TokenCache {
    pub fn new(ttl: Duration) -> Self {
        TokenCache {
            entries: Mutex::new(HashMap::new()),
            ttl,
            revision: std::sync::atomic::AtomicU64::new(0),
            used: Mutex::new(HashMap::new()),
        }
    }

    /// The newest credentials revision this process has seen.
    pub fn revision(&self) -> u64 {
        self.revision.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Records a newer revision: every entry resolved before it is void. Returns whether it
    /// was newer.
    pub fn saw_revision(&self, revision: u64) -> bool {
        let old = self
            .revision
            .fetch_max(revision, std::sync::atomic::Ordering::AcqRel);
        if revision > old {
            self.entries.lock().retain(|_, (_, _, r)| *r >= revision);
            true
        } else {
            false
        }
    }

    /// Drops these tokens' entries at once (revoked by this process).
    pub fn forget(&self, hashes: &[TokenHash]) {
        let mut entries = self.entries.lock();
        for h in hashes {
            entries.remove(h);
        }
    }

    fn get(&self, hash: &TokenHash) -> Option<Principal> {
        let current = self.revision();
        let entries = self.entries.lock();
        let (p, at, rev) = entries.get(hash)?;
        (at.elapsed() < self.ttl && *rev >= current).then_some(*p)
    }

    /// Caches `principal`, resolved at `revision` (read before the resolution started).
    fn put(&self, hash: TokenHash, principal: Principal, revision: u64) {
        if revision < self.revision() {
            return;
        }
        let mut entries = self.entries.lock();
        if entries.len() > 100_000 {
            let ttl = self.ttl;
            entries.retain(|_, (_, at, _)| at.elapsed() < ttl);
        }
        entries.insert(hash, (principal, Instant::now(), revision));
    }

    fn mark_used(&self, hash: TokenHash) {
        self.used.lock().insert(hash, chrono::Utc::now());
    }

    /// The tokens used since the last call, with when each was last used.
    pub fn take_used(&self) -> Vec<(TokenHash, chrono::DateTime<chrono::Utc>)> {
        std::mem::take(&mut *self.used.lock()).into_iter().collect()
    }
}

/// Who sent the request (401 when nobody we know): its bearer token, or else the token
/// behind its session cookie. (A write with the cookie was checked for its CSRF header
/// before it got here: see [`csrf_guard`].)
pub async fn authenticate(state: &AppState, headers: &HeaderMap) -> ApiResult<Principal> {
    if let Some(token) = bearer(headers) {
        return principal_of(state, token).await;
    }
    let session = session_cookie(headers).ok_or_else(ApiError::unauthorized)?;
    let token_hash = session_token(state, session)
        .await?
        .ok_or_else(ApiError::unauthorized)?;
    principal_of_hash(state, token_hash).await
}

/// The hash of the token a live session was opened with (None: unknown, ended or expired).
/// Read from the store every time, so that a sign-out on one API process ends the session on
/// all of them at once.
pub async fn session_token(state: &AppState, session_id: &str) -> ApiResult<Option<TokenHash>> {
    Ok(state
        .store
        .resolve_session(hash_token(session_id), chrono::Utc::now())
        .await?)
}

/// Refuses a write that carries the session cookie (and no bearer token) without the
/// session's CSRF token in `X-ZeroTrace-CSRF`: a page of another site can make the browser
/// send the cookie, but cannot read the token. Reads need none (they change nothing, and
/// SameSite=Strict keeps the cookie off other sites' requests anyway).
pub async fn csrf_guard(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::http::Method;
    use axum::response::IntoResponse;
    let method = request.method();
    let write = !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    let headers = request.headers();
    let sign_in = *method == Method::POST && request.uri().path() == SIGN_IN_PATH;
    if write && !sign_in && bearer(headers).is_none() {
        if let Some(session) = session_cookie(headers) {
            let given = headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !csrf_matches(session, given) {
                return ApiError::forbidden(
                    "a write with the session cookie needs the session's X-ZeroTrace-CSRF header",
                )
                .into_response();
            }
        }
    }
    next.run(request).await
}

/// Sign-in takes the token in its body and needs no CSRF token (a stale cookie must not keep
/// anyone from signing in again).
pub const SIGN_IN_PATH: &str = "/api/v1/session";

pub async fn principal_of(state: &AppState, token: &str) -> ApiResult<Principal> {
    principal_of_hash(state, hash_token(token)).await
}

/// Who a token hash belongs to (401 when nobody, or revoked, or expired).
pub async fn principal_of_hash(state: &AppState, hash: TokenHash) -> ApiResult<Principal> {
    if let Some(env) = state.config.admin_token_env {
        if env == hash {
            return Ok(Principal::Operator);
        }
    }
    let p = resolve_hash(state, hash).await?;
    state.tokens.mark_used(hash);
    Ok(p)
}

async fn resolve_hash(state: &AppState, hash: TokenHash) -> ApiResult<Principal> {
    if let Some(p) = state.tokens.get(&hash) {
        return Ok(p);
    }
    // The revision before the look-up: an answer that races a revocation is cached under the
    // older revision, which the newer one voids.
    let revision = state.tokens.revision();
    if let Some(shared) = &state.shared {
        if let Some(p) = shared.cached_principal(&hash, revision).await {
            state.tokens.put(hash, p, revision);
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
    state.tokens.put(hash, p, revision);
    if let Some(shared) = &state.shared {
        shared.cache_principal(&hash, &p, revision).await;
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
    fn a_newer_credentials_revision_voids_what_was_cached_before_it() {
        let cache = TokenCache::new(Duration::from_secs(30));
        let viewer = Principal::User {
            company_id: CompanyId::new_v4(),
            role: zt_store::model::Role::Viewer,
        };
        let (a, b) = (hash_token("ztu_a"), hash_token("ztu_b"));
        cache.put(a, viewer, 0);
        assert_eq!(cache.get(&a), Some(viewer));
        // A revocation somewhere: everything resolved before it is a miss.
        assert!(cache.saw_revision(1));
        assert_eq!(cache.get(&a), None);
        assert!(!cache.saw_revision(1), "not newer");
        // An answer that was in flight during the revocation is not cached.
        cache.put(b, viewer, 0);
        assert_eq!(cache.get(&b), None);
        cache.put(b, viewer, 1);
        assert_eq!(cache.get(&b), Some(viewer));
        cache.forget(&[b]);
        assert_eq!(cache.get(&b), None);
        // Use is remembered until taken, once per token.
        cache.mark_used(a);
        cache.mark_used(a);
        cache.mark_used(b);
        let mut used: Vec<TokenHash> = cache.take_used().into_iter().map(|(h, _)| h).collect();
        used.sort_by_key(|h| h.0);
        let mut want = vec![a, b];
        want.sort_by_key(|h| h.0);
        assert_eq!(used, want);
        assert!(cache.take_used().is_empty());
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

//! Revocation on every API process at once, and `last_used_at` without a write per request.
//!
//! Every change that takes authority away (a token revoked, an agent decommissioned or its
//! token rotated, an enroll secret replaced, a company purged) bumps the store's credentials
//! revision in its own transaction. Each process watches it ([`watch`], a one-row read every
//! [`POLL`]); a newer revision voids every credential this process cached before it (and
//! every entry other replicas shared in Redis before it: they carry their revision). The
//! process that made the change takes it in at once ([`revoked`]).
//!
//! Tokens used are remembered in memory and written in one batch every [`TOUCH_EVERY`].

use std::time::Duration;

use base64::Engine;
use rand::RngCore;
use tokio::sync::watch as stop_watch;
use zt_store::model::Revoked;

use crate::state::AppState;

/// How often the credentials revision is read.
pub const POLL: Duration = Duration::from_millis(250);
/// How often the tokens used since the last time are recorded.
pub const TOUCH_EVERY: Duration = Duration::from_secs(60);

/// Takes a change made by this process in at once: the revoked tokens' cached entries go
/// (here and in Redis), and the new revision voids whatever else was cached.
pub async fn revoked(state: &AppState, revoked: &Revoked) {
    state.tokens.forget(&revoked.hashes);
    if let Some(shared) = &state.shared {
        shared.forget(&revoked.hashes).await;
    }
    match state.store.credentials_revision().await {
        Ok(r) => {
            state.tokens.saw_revision(r);
        }
        Err(e) => tracing::warn!(error = %e, "reading the credentials revision failed"),
    }
}

/// The key that signs credentials shared through Redis: kept in the store, so that every
/// replica has the same one and Redis never sees it. Loaded before the server takes requests.
pub async fn load_signing_key(state: &AppState) {
    let Some(shared) = &state.shared else {
        return;
    };
    let mut fresh = [0u8; 32];
    rand::rng().fill_bytes(&mut fresh);
    let proposed = base64::engine::general_purpose::STANDARD.encode(fresh);
    match state
        .store
        .deployment_secret("credential-cache-key", &proposed)
        .await
    {
        Ok(stored) => match base64::engine::general_purpose::STANDARD
            .decode(stored.trim())
            .ok()
            .and_then(|k| <[u8; 32]>::try_from(k.as_slice()).ok())
        {
            Some(key) => shared.set_signing_key(key),
            None => tracing::error!("the stored credential cache key is malformed: credentials are not shared through Redis"),
        },
        Err(e) => tracing::warn!(error = %e, "no credential cache key: credentials are not shared through Redis"),
    }
}

/// Watches the credentials revision and records tokens' use, until `stop`.
pub async fn watch(state: AppState, mut stop: stop_watch::Receiver<bool>) {
    let mut poll = tokio::time::interval(POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut touch = tokio::time::interval(TOUCH_EVERY);
    touch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    touch.tick().await;
    loop {
        tokio::select! {
            _ = poll.tick() => {
                match state.store.credentials_revision().await {
                    Ok(r) => {
                        if state.tokens.saw_revision(r) {
                            tracing::debug!(revision = r, "credentials changed: cached credentials dropped");
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "reading the credentials revision failed"),
                }
            }
            _ = touch.tick() => record_use(&state).await,
            _ = stop.changed() => {
                record_use(&state).await;
                return;
            }
        }
    }
}

/// Writes when the tokens used since the last time were last used.
pub async fn record_use(state: &AppState) {
    let used = state.tokens.take_used();
    if used.is_empty() {
        return;
    }
    if let Err(e) = state.store.touch_tokens(&used).await {
        tracing::warn!(error = %e, tokens = used.len(), "recording when tokens were last used failed");
    }
}

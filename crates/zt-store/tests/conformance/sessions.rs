//! Dashboard sessions: stored hashed, bound to their token, ended by sign-out, by the token's
//! end and by expiry.

use chrono::{DateTime, Duration, Utc};
use zt_store::model::*;
use zt_store::Storage;

use super::{company, hash};

fn session(id: u8, token: u8, now: DateTime<Utc>, ttl: Duration) -> NewSession {
    NewSession {
        session_hash: hash(id),
        token_hash: hash(token),
        created_at: now,
        expires_at: now + ttl,
    }
}

pub async fn sessions_resolve_to_their_token_until_ended(store: &dyn Storage) {
    let acme = company(store, "Acme", 100).await;
    assert!(store
        .create_user_token(acme, Role::Viewer, hash(101), Utc::now())
        .await
        .unwrap());
    let now = Utc::now();
    store
        .create_session(&session(110, 101, now, Duration::hours(1)))
        .await
        .unwrap();
    store
        .create_session(&session(111, 101, now, Duration::hours(1)))
        .await
        .unwrap();
    store
        .create_session(&session(112, 102, now, Duration::hours(1)))
        .await
        .unwrap();
    // Already expired: never resolves, and the purge takes it.
    store
        .create_session(&session(113, 101, now, Duration::milliseconds(-1)))
        .await
        .unwrap();

    assert_eq!(
        store.resolve_session(hash(110), now).await.unwrap(),
        Some(hash(101))
    );
    assert_eq!(
        store.resolve_session(hash(112), now).await.unwrap(),
        Some(hash(102))
    );
    assert_eq!(store.resolve_session(hash(113), now).await.unwrap(), None);
    assert_eq!(store.resolve_session(hash(119), now).await.unwrap(), None);
    // Expiry is checked against the time given.
    assert_eq!(
        store
            .resolve_session(hash(110), now + Duration::hours(2))
            .await
            .unwrap(),
        None
    );

    // Sign-out ends one session, once.
    assert!(store.end_session(hash(110)).await.unwrap());
    assert!(!store.end_session(hash(110)).await.unwrap());
    assert_eq!(store.resolve_session(hash(110), now).await.unwrap(), None);
    assert_eq!(
        store.resolve_session(hash(111), now).await.unwrap(),
        Some(hash(101))
    );

    // The purge removes what expired, nothing else.
    assert_eq!(store.purge_sessions(Utc::now()).await.unwrap(), 1);
    assert_eq!(
        store.resolve_session(hash(111), now).await.unwrap(),
        Some(hash(101))
    );

    // Ending a token's sessions ends all of them and no other token's.
    assert_eq!(store.end_token_sessions(hash(101)).await.unwrap(), 1);
    assert_eq!(store.resolve_session(hash(111), now).await.unwrap(), None);
    assert_eq!(
        store.resolve_session(hash(112), now).await.unwrap(),
        Some(hash(102))
    );
    // Later everything expires.
    assert_eq!(
        store
            .purge_sessions(Utc::now() + Duration::hours(2))
            .await
            .unwrap(),
        1
    );
    assert_eq!(store.resolve_session(hash(112), now).await.unwrap(), None);
}

//! Dashboard sessions: hashed session ids bound to the token they were opened with.

use chrono::{DateTime, Utc};

use super::PgStore;
use crate::common::token_hash_from;
use crate::model::*;
use crate::Result;

impl PgStore {
    pub(crate) async fn create_session_impl(&self, session: &NewSession) -> Result<()> {
        sqlx::query(
            "INSERT INTO sessions (session_hash, token_hash, created_at, expires_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(&session.session_hash.0[..])
        .bind(&session.token_hash.0[..])
        .bind(session.created_at)
        .bind(session.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub(crate) async fn resolve_session_impl(
        &self,
        session_hash: TokenHash,
        now: DateTime<Utc>,
    ) -> Result<Option<TokenHash>> {
        let hash: Option<Vec<u8>> = sqlx::query_scalar(
            "SELECT token_hash FROM sessions WHERE session_hash = $1 AND expires_at > $2",
        )
        .bind(&session_hash.0[..])
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        hash.map(|h| token_hash_from(&h)).transpose()
    }

    pub(crate) async fn end_session_impl(&self, session_hash: TokenHash) -> Result<bool> {
        let n = sqlx::query("DELETE FROM sessions WHERE session_hash = $1")
            .bind(&session_hash.0[..])
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(n == 1)
    }

    pub(crate) async fn end_token_sessions_impl(&self, token_hash: TokenHash) -> Result<u64> {
        let n = sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(&token_hash.0[..])
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(n)
    }

    pub(crate) async fn purge_sessions_impl(&self, now: DateTime<Utc>) -> Result<u64> {
        let n = sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(n)
    }
}

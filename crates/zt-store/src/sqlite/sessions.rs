//! Dashboard sessions: hashed session ids bound to the token they were opened with.

use chrono::{DateTime, Utc};

use super::SqliteStore;
use crate::common::{ms, token_hash_from};
use crate::model::*;
use crate::Result;

const RESOLVE: &str = "SELECT token_hash FROM sessions WHERE session_hash = ?1 AND expires_at > ?2";
const END: &str = "DELETE FROM sessions WHERE session_hash = ?1";
const END_TOKEN: &str = "DELETE FROM sessions WHERE token_hash = ?1";
const PURGE: &str = "DELETE FROM sessions WHERE expires_at <= ?1";

impl SqliteStore {
    pub(crate) async fn create_session_impl(&self, session: &NewSession) -> Result<()> {
        let mut w = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO sessions (session_hash, token_hash, created_at, expires_at) \
             VALUES (?1, ?2, ?3, ?4)",
        )
        .bind(&session.session_hash.0[..])
        .bind(&session.token_hash.0[..])
        .bind(ms(session.created_at))
        .bind(ms(session.expires_at))
        .execute(&mut *w.tx)
        .await?;
        w.commit().await?;
        Ok(())
    }

    pub(crate) async fn resolve_session_impl(
        &self,
        session_hash: TokenHash,
        now: DateTime<Utc>,
    ) -> Result<Option<TokenHash>> {
        let hash: Option<Vec<u8>> = sqlx::query_scalar(RESOLVE)
            .bind(&session_hash.0[..])
            .bind(ms(now))
            .fetch_optional(&self.pool)
            .await?;
        hash.map(|h| token_hash_from(&h)).transpose()
    }

    pub(crate) async fn end_session_impl(&self, session_hash: TokenHash) -> Result<bool> {
        let mut w = self.begin_write().await?;
        let n = sqlx::query(END)
            .bind(&session_hash.0[..])
            .execute(&mut *w.tx)
            .await?
            .rows_affected();
        w.commit().await?;
        Ok(n == 1)
    }

    pub(crate) async fn end_token_sessions_impl(&self, token_hash: TokenHash) -> Result<u64> {
        let mut w = self.begin_write().await?;
        let n = sqlx::query(END_TOKEN)
            .bind(&token_hash.0[..])
            .execute(&mut *w.tx)
            .await?
            .rows_affected();
        w.commit().await?;
        Ok(n)
    }

    pub(crate) async fn purge_sessions_impl(&self, now: DateTime<Utc>) -> Result<u64> {
        let mut w = self.begin_background_write().await?;
        let n = sqlx::query(PURGE)
            .bind(ms(now))
            .execute(&mut *w.tx)
            .await?
            .rows_affected();
        w.commit().await?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use sqlx::Row;

    /// A session is read on every dashboard request: by its key, never by a scan; the purges
    /// use their indexes.
    #[tokio::test]
    async fn session_statements_seek() {
        let dir = tempfile::tempdir().unwrap();
        let store = super::SqliteStore::open(&dir.path().join("plan.db"))
            .await
            .unwrap();
        for sql in [super::RESOLVE, super::END, super::END_TOKEN, super::PURGE] {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")));
            for _ in 0..sql.matches('?').count() {
                q = q.bind(vec![0u8; 32]);
            }
            let plan: Vec<String> = q
                .fetch_all(store.pool())
                .await
                .unwrap()
                .iter()
                .map(|row| row.get::<String, _>(3))
                .collect();
            assert!(
                plan.iter().all(|step| !step.starts_with("SCAN ")),
                "{sql} scans: {plan:#?}"
            );
        }
    }
}

//! Companies, credentials and agent enrollment.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::SqliteStore;
use crate::common::events::enrolled_event;
use crate::common::reads::company_from_row;
use crate::common::{agent_from, company_from, ms, principal_from, token_hash_from};
use crate::model::*;
use crate::Result;

impl SqliteStore {
    pub(crate) async fn operator_token_hash_impl(&self) -> Result<Option<TokenHash>> {
        let row = sqlx::query(
            "SELECT token_hash FROM credentials WHERE kind = 'operator' AND revoked_at IS NULL \
             ORDER BY created_at LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| token_hash_from(r.get::<&[u8], _>(0)))
            .transpose()
    }

    pub(crate) async fn init_operator_token_impl(&self, hash: TokenHash) -> Result<bool> {
        let mut w = self.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO credentials (token_hash, kind, created_at) \
             SELECT ?1, 'operator', ?2 \
             WHERE NOT EXISTS (SELECT 1 FROM credentials WHERE kind = 'operator' AND revoked_at IS NULL)",
        )
        .bind(&hash.0[..])
        .bind(ms(Utc::now()))
        .execute(&mut *w.tx)
        .await?
        .rows_affected();
        w.commit().await?;
        Ok(inserted == 1)
    }

    pub(crate) async fn create_company_impl(
        &self,
        company: &Company,
        enroll_secret_hash: TokenHash,
    ) -> Result<()> {
        let mut w = self.begin_write().await?;
        sqlx::query("INSERT INTO companies (company_id, name, created_at) VALUES (?1, ?2, ?3)")
            .bind(company.id)
            .bind(&company.name)
            .bind(ms(company.created_at))
            .execute(&mut *w.tx)
            .await?;
        sqlx::query(
            "INSERT INTO credentials (token_hash, kind, company_id, created_at) \
             VALUES (?1, 'enroll', ?2, ?3)",
        )
        .bind(&enroll_secret_hash.0[..])
        .bind(company.id)
        .bind(ms(company.created_at))
        .execute(&mut *w.tx)
        .await?;
        w.commit().await
    }

    pub(crate) async fn list_companies_impl(&self) -> Result<Vec<Company>> {
        let rows = sqlx::query(
            "SELECT company_id, name, created_at FROM companies ORDER BY name, company_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(company_from_row).collect()
    }

    pub(crate) async fn get_company_impl(&self, company_id: CompanyId) -> Result<Option<Company>> {
        let row =
            sqlx::query("SELECT company_id, name, created_at FROM companies WHERE company_id = ?1")
                .bind(company_id)
                .fetch_optional(&self.pool)
                .await?;
        row.as_ref().map(company_from_row).transpose()
    }

    pub(crate) async fn create_user_token_impl(
        &self,
        company_id: CompanyId,
        role: Role,
        hash: TokenHash,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let mut w = self.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO credentials (token_hash, kind, company_id, role, created_at) \
             SELECT ?1, 'user', ?2, ?3, ?4 WHERE EXISTS (SELECT 1 FROM companies WHERE company_id = ?2)",
        )
        .bind(&hash.0[..])
        .bind(company_id)
        .bind(role.as_str())
        .bind(ms(now))
        .execute(&mut *w.tx)
        .await?
        .rows_affected();
        w.commit().await?;
        Ok(inserted == 1)
    }

    pub(crate) async fn resolve_token_impl(&self, hash: TokenHash) -> Result<Option<Principal>> {
        let row = sqlx::query(
            "SELECT kind, company_id, agent_id, role FROM credentials \
             WHERE token_hash = ?1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?2)",
        )
        .bind(&hash.0[..])
        .bind(ms(Utc::now()))
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let company = row
            .get::<Option<&[u8]>, _>(1)
            .map(company_from)
            .transpose()?;
        let agent = row.get::<Option<&[u8]>, _>(2).map(agent_from).transpose()?;
        principal_from(row.get(0), company, agent, row.get(3)).map(Some)
    }

    pub(crate) async fn enroll_agent_impl(&self, agent: &NewAgent) -> Result<bool> {
        let mut w = self.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO agents (company_id, agent_id, hostname, os_id, os_version_id, os_name, arch, \
             agent_version, enrolled_at) \
             SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9 \
             WHERE EXISTS (SELECT 1 FROM companies WHERE company_id = ?1)",
        )
        .bind(agent.company_id)
        .bind(agent.agent_id)
        .bind(&agent.hostname)
        .bind(&agent.os.id)
        .bind(&agent.os.version_id)
        .bind(&agent.os.name)
        .bind(&agent.arch)
        .bind(&agent.agent_version)
        .bind(ms(agent.enrolled_at))
        .execute(&mut *w.tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO credentials (token_hash, kind, company_id, agent_id, created_at) \
             VALUES (?1, 'agent', ?2, ?3, ?4)",
        )
        .bind(&agent.token_hash.0[..])
        .bind(agent.company_id)
        .bind(agent.agent_id)
        .bind(ms(agent.enrolled_at))
        .execute(&mut *w.tx)
        .await?;
        super::events::append_in_tx(&mut w.tx, &[enrolled_event(agent)], ms(agent.enrolled_at))
            .await?;
        w.commit().await?;
        self.signal_events();
        Ok(true)
    }
}

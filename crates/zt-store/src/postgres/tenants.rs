//! Companies, credentials and agent enrollment.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{set_company, PgStore};
use crate::common::events::enrolled_event;
use crate::common::reads::company_from_row;
use crate::common::{principal_from, token_hash_from};
use crate::model::*;
use crate::Result;

impl PgStore {
    pub(crate) async fn operator_token_hash_impl(&self) -> Result<Option<TokenHash>> {
        let hash: Option<Vec<u8>> = sqlx::query_scalar(
            "SELECT token_hash FROM credentials WHERE kind = 'operator' AND revoked_at IS NULL \
             ORDER BY created_at LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        hash.map(|h| token_hash_from(&h)).transpose()
    }

    pub(crate) async fn init_operator_token_impl(&self, hash: TokenHash) -> Result<bool> {
        // The partial unique index allows one live operator token: a concurrent start loses.
        let inserted = sqlx::query(
            "INSERT INTO credentials (token_hash, kind, created_at) VALUES ($1, 'operator', $2) \
             ON CONFLICT DO NOTHING",
        )
        .bind(&hash.0[..])
        .bind(Utc::now())
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(inserted == 1)
    }

    pub(crate) async fn create_company_impl(
        &self,
        company: &Company,
        enroll_secret_hash: TokenHash,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT INTO companies (company_id, name, created_at) VALUES ($1, $2, $3)")
            .bind(company.id)
            .bind(&company.name)
            .bind(company.created_at)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO credentials (token_hash, kind, company_id, created_at) \
             VALUES ($1, 'enroll', $2, $3)",
        )
        .bind(&enroll_secret_hash.0[..])
        .bind(company.id)
        .bind(company.created_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
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
            sqlx::query("SELECT company_id, name, created_at FROM companies WHERE company_id = $1")
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
        let inserted = sqlx::query(
            "INSERT INTO credentials (token_hash, kind, company_id, role, created_at) \
             SELECT $1, 'user', $2, $3, $4 WHERE EXISTS (SELECT 1 FROM companies WHERE company_id = $2)",
        )
        .bind(&hash.0[..])
        .bind(company_id)
        .bind(role.as_str())
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(inserted == 1)
    }

    pub(crate) async fn resolve_token_impl(&self, hash: TokenHash) -> Result<Option<Principal>> {
        let row = sqlx::query(
            "SELECT kind, company_id, agent_id, role FROM credentials \
             WHERE token_hash = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $2)",
        )
        .bind(&hash.0[..])
        .bind(Utc::now())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        principal_from(
            row.try_get(0)?,
            row.try_get(1)?,
            row.try_get(2)?,
            row.try_get(3)?,
        )
        .map(Some)
    }

    pub(crate) async fn enroll_agent_impl(&self, agent: &NewAgent) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        // FOR KEY SHARE: the company cannot vanish before the agent row is in.
        let exists: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM companies WHERE company_id = $1 FOR KEY SHARE")
                .bind(agent.company_id)
                .fetch_optional(&mut *tx)
                .await?;
        if exists.is_none() {
            return Ok(false);
        }
        set_company(&mut tx, agent.company_id).await?;
        sqlx::query(
            "INSERT INTO agents (company_id, agent_id, hostname, os_id, os_version_id, os_name, arch, \
             agent_version, enrolled_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(agent.company_id)
        .bind(agent.agent_id)
        .bind(&agent.hostname)
        .bind(&agent.os.id)
        .bind(&agent.os.version_id)
        .bind(&agent.os.name)
        .bind(&agent.arch)
        .bind(&agent.agent_version)
        .bind(agent.enrolled_at)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO credentials (token_hash, kind, company_id, agent_id, created_at) \
             VALUES ($1, 'agent', $2, $3, $4)",
        )
        .bind(&agent.token_hash.0[..])
        .bind(agent.company_id)
        .bind(agent.agent_id)
        .bind(agent.enrolled_at)
        .execute(&mut *tx)
        .await?;
        let mut scope = super::queue::CompanyScope::new();
        super::events::append_in_tx(
            &mut tx,
            &mut scope,
            &[enrolled_event(agent)],
            agent.enrolled_at,
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }
}

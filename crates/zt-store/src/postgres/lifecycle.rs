//! The life of credentials, agents and companies on PostgreSQL (issue 17; the twin of
//! `sqlite/lifecycle.rs`, the shared parts in `common/lifecycle.rs`).

use chrono::{DateTime, Utc};
use sqlx::Row;
use uuid::Uuid;

use super::{severity_from_rank, PgStore, Tx};
use crate::common::lifecycle::{
    decommissioned_event, plain_identifier, purge_order, ResolvedItem, DECOMMISSIONED, LIST_CAP,
};
use crate::common::token_hash_from;
use crate::model::*;
use crate::Result;

/// Ends the sessions of `revoked` tokens and bumps the credentials revision.
async fn revoked_in_tx(tx: &mut Tx, revoked: &Revoked) -> Result<()> {
    let hashes: Vec<Vec<u8>> = revoked.hashes.iter().map(|h| h.0.to_vec()).collect();
    if !hashes.is_empty() {
        sqlx::query("DELETE FROM sessions WHERE token_hash = ANY($1)")
            .bind(&hashes)
            .execute(&mut **tx)
            .await?;
    }
    sqlx::query("UPDATE credentials_revision SET revision = revision + 1 WHERE singleton = 1")
        .execute(&mut **tx)
        .await?;
    Ok(())
}

fn hashes_of(rows: &[sqlx::postgres::PgRow]) -> Result<Revoked> {
    let hashes = rows
        .iter()
        .map(|r| token_hash_from(&r.try_get::<Vec<u8>, _>(0)?))
        .collect::<Result<_>>()?;
    Ok(Revoked { hashes })
}

async fn revoke_agent_tokens(
    tx: &mut Tx,
    company_id: CompanyId,
    agent_id: AgentId,
    now: DateTime<Utc>,
) -> Result<Revoked> {
    let rows = sqlx::query(
        "UPDATE credentials SET revoked_at = $3 \
         WHERE company_id = $1 AND agent_id = $2 AND kind = 'agent' AND revoked_at IS NULL \
         RETURNING token_hash",
    )
    .bind(company_id)
    .bind(agent_id)
    .bind(now)
    .fetch_all(&mut **tx)
    .await?;
    hashes_of(&rows)
}

/// The hostname of a live (not decommissioned) agent, its row locked for the change.
async fn live_agent(
    tx: &mut Tx,
    company_id: CompanyId,
    agent_id: AgentId,
) -> Result<Option<String>> {
    Ok(sqlx::query_scalar(
        "SELECT hostname FROM agents \
         WHERE company_id = $1 AND agent_id = $2 AND decommissioned_at IS NULL FOR UPDATE",
    )
    .bind(company_id)
    .bind(agent_id)
    .fetch_optional(&mut **tx)
    .await?)
}

async fn company_exists(tx: &mut Tx, company_id: CompanyId) -> Result<bool> {
    let found: Option<i32> =
        sqlx::query_scalar("SELECT 1 FROM companies WHERE company_id = $1 FOR UPDATE")
            .bind(company_id)
            .fetch_optional(&mut **tx)
            .await?;
    Ok(found.is_some())
}

impl PgStore {
    pub(crate) async fn create_token_impl(&self, t: &NewUserToken) -> Result<bool> {
        let inserted = sqlx::query(
            "INSERT INTO credentials (token_hash, kind, company_id, role, created_at, token_id, \
             name, expires_at) \
             SELECT $1, 'user', $2, $3, $4, $5, $6, $7 \
             WHERE EXISTS (SELECT 1 FROM companies WHERE company_id = $2)",
        )
        .bind(&t.hash.0[..])
        .bind(t.company_id)
        .bind(t.role.as_str())
        .bind(t.created_at)
        .bind(t.token_id)
        .bind(t.name.as_deref())
        .bind(t.expires_at)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(inserted == 1)
    }

    pub(crate) async fn list_tokens_impl(&self, company_id: CompanyId) -> Result<Vec<TokenInfo>> {
        let rows = sqlx::query(
            "SELECT token_id, role, name, created_at, last_used_at, expires_at, revoked_at \
             FROM credentials WHERE company_id = $1 AND kind = 'user' \
             ORDER BY created_at, token_id",
        )
        .bind(company_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let role: String = r.try_get(1)?;
                Ok(TokenInfo {
                    token_id: r.try_get(0)?,
                    role: Role::parse(&role)
                        .ok_or_else(|| crate::common::corrupt("user token without role"))?,
                    name: r.try_get(2)?,
                    created_at: r.try_get(3)?,
                    last_used_at: r.try_get(4)?,
                    expires_at: r.try_get(5)?,
                    revoked_at: r.try_get(6)?,
                })
            })
            .collect()
    }

    pub(crate) async fn revoke_token_impl(
        &self,
        company_id: CompanyId,
        token_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Option<Revoked>> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "SELECT token_hash, revoked_at FROM credentials \
             WHERE token_id = $1 AND company_id = $2 AND kind = 'user' FOR UPDATE",
        )
        .bind(token_id)
        .bind(company_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else { return Ok(None) };
        if row.try_get::<Option<DateTime<Utc>>, _>(1)?.is_some() {
            return Ok(Some(Revoked::default()));
        }
        let hash = token_hash_from(&row.try_get::<Vec<u8>, _>(0)?)?;
        sqlx::query("UPDATE credentials SET revoked_at = $2 WHERE token_hash = $1")
            .bind(&hash.0[..])
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let revoked = Revoked { hashes: vec![hash] };
        revoked_in_tx(&mut tx, &revoked).await?;
        tx.commit().await?;
        Ok(Some(revoked))
    }

    pub(crate) async fn replace_agent_token_impl(
        &self,
        company_id: CompanyId,
        agent_id: AgentId,
        new: Option<TokenHash>,
        now: DateTime<Utc>,
    ) -> Result<Option<Revoked>> {
        let mut tx = self.begin_for_company(company_id).await?;
        if live_agent(&mut tx, company_id, agent_id).await?.is_none() {
            return Ok(None);
        }
        let revoked = revoke_agent_tokens(&mut tx, company_id, agent_id, now).await?;
        if let Some(new) = new {
            sqlx::query(
                "INSERT INTO credentials (token_hash, kind, company_id, agent_id, created_at) \
                 VALUES ($1, 'agent', $2, $3, $4)",
            )
            .bind(&new.0[..])
            .bind(company_id)
            .bind(agent_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        revoked_in_tx(&mut tx, &revoked).await?;
        tx.commit().await?;
        Ok(Some(revoked))
    }

    pub(crate) async fn decommission_agent_impl(
        &self,
        company_id: CompanyId,
        agent_id: AgentId,
        now: DateTime<Utc>,
    ) -> Result<Option<Decommissioned>> {
        let mut tx = self.begin_for_company(company_id).await?;
        let Some(hostname) = live_agent(&mut tx, company_id, agent_id).await? else {
            return Ok(None);
        };
        let revoked = revoke_agent_tokens(&mut tx, company_id, agent_id, now).await?;
        let rows = sqlx::query(
            "SELECT f.vuln_id, f.severity, f.kev, s.name, s.version, s.ecosystem, s.source \
             FROM findings f JOIN software s ON s.software_key = f.software_key \
             WHERE f.company_id = $1 AND f.agent_id = $2 AND f.resolved_at IS NULL \
             ORDER BY f.severity DESC, f.vuln_id LIMIT $3",
        )
        .bind(company_id)
        .bind(agent_id)
        .bind(LIST_CAP as i64)
        .fetch_all(&mut *tx)
        .await?;
        let items = rows
            .iter()
            .map(|r| {
                Ok(ResolvedItem {
                    vuln_id: r.try_get(0)?,
                    severity: severity_from_rank(r.try_get(1)?),
                    kev: r.try_get(2)?,
                    package: PackageRef {
                        name: r.try_get(3)?,
                        version: r.try_get(4)?,
                        ecosystem: r.try_get(5)?,
                        source: r.try_get(6)?,
                    },
                })
            })
            .collect::<Result<Vec<_>>>()?;
        // Its findings leave the vulnerability rollup (none of them stays open); the rows are
        // written after company_software's, the order batches lock them in.
        let before = super::rollup::contributions(&mut tx, company_id, &[agent_id]).await?;
        let resolved = sqlx::query(
            "UPDATE findings SET resolved_at = $3, resolution = $4 \
             WHERE company_id = $1 AND agent_id = $2 AND resolved_at IS NULL",
        )
        .bind(company_id)
        .bind(agent_id)
        .bind(now)
        .bind(DECOMMISSIONED)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        // The host no longer counts for the software it ran (keys in order, as batches do).
        sqlx::query(
            "UPDATE company_software cs SET hosts = cs.hosts - 1 FROM \
             (SELECT DISTINCT software_key FROM apps \
              WHERE company_id = $1 AND agent_id = $2 AND removed_at IS NULL) a \
             WHERE cs.company_id = $1 AND cs.software_key = a.software_key",
        )
        .bind(company_id)
        .bind(agent_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "DELETE FROM company_software WHERE company_id = $1 AND hosts <= 0 AND software_key IN \
             (SELECT software_key FROM apps WHERE company_id = $1 AND agent_id = $2)",
        )
        .bind(company_id)
        .bind(agent_id)
        .execute(&mut *tx)
        .await?;
        let after = crate::common::rollup::Contributions::of([(company_id, agent_id)]);
        super::rollup::write_delta(
            &mut tx,
            company_id,
            &crate::common::rollup::RollupDelta::between(&before, &after),
        )
        .await?;
        let removed_apps = sqlx::query(
            "UPDATE apps SET removed_at = $3 \
             WHERE company_id = $1 AND agent_id = $2 AND removed_at IS NULL",
        )
        .bind(company_id)
        .bind(agent_id)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query(
            "UPDATE agents SET decommissioned_at = $3, open_critical = 0, open_high = 0, \
             open_medium = 0, open_low = 0, open_unknown = 0, open_kev = 0, open_fixable = 0, \
             app_count = 0, inventory = NULL, inventory_digest = NULL, accepted_digest = NULL \
             WHERE company_id = $1 AND agent_id = $2",
        )
        .bind(company_id)
        .bind(agent_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let dropped: Vec<Uuid> = sqlx::query_scalar(
            "UPDATE queue SET state = 'dead', finished_at = $3, lease_owner = NULL, \
             last_error = 'agent decommissioned' \
             WHERE state IN ('queued', 'leased') AND company_id = $1 AND agent_id = $2 \
             RETURNING report_id",
        )
        .bind(company_id)
        .bind(agent_id)
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        if !dropped.is_empty() {
            sqlx::query(
                "UPDATE reports SET status = 'failed', error = 'agent decommissioned', body = NULL \
                 WHERE company_id = $1 AND report_id = ANY($2)",
            )
            .bind(company_id)
            .bind(&dropped)
            .execute(&mut *tx)
            .await?;
        }
        revoked_in_tx(&mut tx, &revoked).await?;
        let event = decommissioned_event(company_id, agent_id, &hostname, &items, resolved);
        if let Some(event) = &event {
            let mut scope = super::queue::CompanyScope::new();
            super::events::append_in_tx(&mut tx, &mut scope, std::slice::from_ref(event), now)
                .await?;
        }
        tx.commit().await?;
        Ok(Some(Decommissioned {
            revoked,
            resolved_findings: resolved,
            removed_apps,
        }))
    }

    pub(crate) async fn replace_enroll_secret_impl(
        &self,
        company_id: CompanyId,
        new: TokenHash,
        now: DateTime<Utc>,
    ) -> Result<Option<Revoked>> {
        let mut tx = self.pool.begin().await?;
        if !company_exists(&mut tx, company_id).await? {
            return Ok(None);
        }
        let rows = sqlx::query(
            "UPDATE credentials SET revoked_at = $2 \
             WHERE company_id = $1 AND kind = 'enroll' AND revoked_at IS NULL \
             RETURNING token_hash",
        )
        .bind(company_id)
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        let revoked = hashes_of(&rows)?;
        sqlx::query(
            "INSERT INTO credentials (token_hash, kind, company_id, created_at) \
             VALUES ($1, 'enroll', $2, $3)",
        )
        .bind(&new.0[..])
        .bind(company_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        revoked_in_tx(&mut tx, &revoked).await?;
        tx.commit().await?;
        Ok(Some(revoked))
    }

    pub(crate) async fn delete_company_impl(
        &self,
        company_id: CompanyId,
    ) -> Result<Option<CompanyPurged>> {
        let mut tx = self.begin_for_company(company_id).await?;
        if !company_exists(&mut tx, company_id).await? {
            return Ok(None);
        }
        let rows = sqlx::query(
            "SELECT token_hash FROM credentials WHERE company_id = $1 AND revoked_at IS NULL",
        )
        .bind(company_id)
        .fetch_all(&mut *tx)
        .await?;
        let revoked = hashes_of(&rows)?;
        revoked_in_tx(&mut tx, &revoked).await?;
        // Every table of the schema with a company_id column (partitioned parents, not their
        // partitions: the parent's row-level security applies).
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT c.relname::text FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             JOIN pg_attribute a ON a.attrelid = c.oid \
             WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') \
               AND NOT c.relispartition AND a.attname = 'company_id' AND NOT a.attisdropped",
        )
        .fetch_all(&mut *tx)
        .await?;
        let mut purged = CompanyPurged {
            revoked,
            tables: Vec::new(),
        };
        for table in purge_order(tables) {
            if !plain_identifier(&table) {
                return Err(crate::common::corrupt(&format!(
                    "table name {table:?} cannot be purged"
                )));
            }
            let n = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE company_id = $1"
            )))
            .bind(company_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            purged.tables.push((table, n));
        }
        tx.commit().await?;
        Ok(Some(purged))
    }

    pub(crate) async fn credentials_revision_impl(&self) -> Result<u64> {
        let n: i64 =
            sqlx::query_scalar("SELECT revision FROM credentials_revision WHERE singleton = 1")
                .fetch_one(&self.pool)
                .await?;
        Ok(n as u64)
    }

    pub(crate) async fn touch_tokens_impl(
        &self,
        used: &[(TokenHash, DateTime<Utc>)],
    ) -> Result<()> {
        if used.is_empty() {
            return Ok(());
        }
        let hashes: Vec<Vec<u8>> = used.iter().map(|(h, _)| h.0.to_vec()).collect();
        let times: Vec<DateTime<Utc>> = used.iter().map(|(_, t)| *t).collect();
        sqlx::query(
            "UPDATE credentials c SET last_used_at = u.at \
             FROM unnest($1::bytea[], $2::timestamptz[]) AS u(h, at) \
             WHERE c.token_hash = u.h AND (c.last_used_at IS NULL OR c.last_used_at < u.at)",
        )
        .bind(&hashes)
        .bind(&times)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub(crate) async fn deployment_secret_impl(
        &self,
        name: &str,
        proposed: &str,
    ) -> Result<String> {
        let key = format!("secret:{name}");
        sqlx::query("INSERT INTO zt_meta (key, value) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(&key)
            .bind(proposed)
            .execute(&self.pool)
            .await?;
        Ok(
            sqlx::query_scalar("SELECT value FROM zt_meta WHERE key = $1")
                .bind(&key)
                .fetch_one(&self.pool)
                .await?,
        )
    }
}

//! The life of credentials, agents and companies on SQLite (issue 17; the shared parts are in
//! `common/lifecycle.rs`).

use chrono::{DateTime, Utc};
use sqlx::Row;
use uuid::Uuid;

use super::SqliteStore;
use crate::common::lifecycle::{
    decommissioned_event, plain_identifier, purge_order, ResolvedItem, DECOMMISSIONED, LIST_CAP,
};
use crate::common::{from_ms, ms, opt_ms, severity_from_rank, token_hash_from, uuid_from};
use crate::model::*;
use crate::Result;

type Tx = sqlx::Transaction<'static, sqlx::Sqlite>;

/// Ends the sessions of `revoked` tokens and bumps the credentials revision (every change
/// that takes authority away ends in it).
async fn revoked_in_tx(tx: &mut Tx, revoked: &Revoked) -> Result<()> {
    for hash in &revoked.hashes {
        sqlx::query("DELETE FROM sessions WHERE token_hash = ?1")
            .bind(&hash.0[..])
            .execute(&mut **tx)
            .await?;
    }
    sqlx::query("UPDATE credentials_revision SET revision = revision + 1 WHERE singleton = 1")
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Revokes an agent's live tokens; their hashes.
async fn revoke_agent_tokens(
    tx: &mut Tx,
    company_id: CompanyId,
    agent_id: AgentId,
    now: i64,
) -> Result<Revoked> {
    let rows = sqlx::query(
        "UPDATE credentials SET revoked_at = ?3 \
         WHERE company_id = ?1 AND agent_id = ?2 AND kind = 'agent' AND revoked_at IS NULL \
         RETURNING token_hash",
    )
    .bind(company_id)
    .bind(agent_id)
    .bind(now)
    .fetch_all(&mut **tx)
    .await?;
    let hashes = rows
        .iter()
        .map(|r| token_hash_from(r.get::<&[u8], _>(0)))
        .collect::<Result<_>>()?;
    Ok(Revoked { hashes })
}

/// The hostname of a live (not decommissioned) agent.
async fn live_agent(
    tx: &mut Tx,
    company_id: CompanyId,
    agent_id: AgentId,
) -> Result<Option<String>> {
    Ok(sqlx::query_scalar(
        "SELECT hostname FROM agents \
         WHERE company_id = ?1 AND agent_id = ?2 AND decommissioned_at IS NULL",
    )
    .bind(company_id)
    .bind(agent_id)
    .fetch_optional(&mut **tx)
    .await?)
}

impl SqliteStore {
    pub(crate) async fn create_token_impl(&self, t: &NewUserToken) -> Result<bool> {
        let mut w = self.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO credentials (token_hash, kind, company_id, role, created_at, token_id, \
             name, expires_at) \
             SELECT ?1, 'user', ?2, ?3, ?4, ?5, ?6, ?7 \
             WHERE EXISTS (SELECT 1 FROM companies WHERE company_id = ?2)",
        )
        .bind(&t.hash.0[..])
        .bind(t.company_id)
        .bind(t.role.as_str())
        .bind(ms(t.created_at))
        .bind(t.token_id)
        .bind(t.name.as_deref())
        .bind(t.expires_at.map(ms))
        .execute(&mut *w.tx)
        .await?
        .rows_affected();
        w.commit().await?;
        Ok(inserted == 1)
    }

    pub(crate) async fn list_tokens_impl(&self, company_id: CompanyId) -> Result<Vec<TokenInfo>> {
        let rows = sqlx::query(
            "SELECT token_id, role, name, created_at, last_used_at, expires_at, revoked_at \
             FROM credentials WHERE company_id = ?1 AND kind = 'user' \
             ORDER BY created_at, token_id",
        )
        .bind(company_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(TokenInfo {
                    token_id: uuid_from(r.get::<&[u8], _>(0))?,
                    role: Role::parse(r.get(1))
                        .ok_or_else(|| crate::common::corrupt("user token without role"))?,
                    name: r.get(2),
                    created_at: from_ms(r.get(3)),
                    last_used_at: opt_ms(r.get(4)),
                    expires_at: opt_ms(r.get(5)),
                    revoked_at: opt_ms(r.get(6)),
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
        let mut w = self.begin_write().await?;
        let row = sqlx::query(
            "SELECT token_hash, revoked_at FROM credentials \
             WHERE token_id = ?1 AND company_id = ?2 AND kind = 'user'",
        )
        .bind(token_id)
        .bind(company_id)
        .fetch_optional(&mut *w.tx)
        .await?;
        let Some(row) = row else { return Ok(None) };
        if row.get::<Option<i64>, _>(1).is_some() {
            return Ok(Some(Revoked::default()));
        }
        let hash = token_hash_from(row.get::<&[u8], _>(0))?;
        sqlx::query("UPDATE credentials SET revoked_at = ?2 WHERE token_hash = ?1")
            .bind(&hash.0[..])
            .bind(ms(now))
            .execute(&mut *w.tx)
            .await?;
        let revoked = Revoked { hashes: vec![hash] };
        revoked_in_tx(&mut w.tx, &revoked).await?;
        w.commit().await?;
        Ok(Some(revoked))
    }

    pub(crate) async fn replace_agent_token_impl(
        &self,
        company_id: CompanyId,
        agent_id: AgentId,
        new: Option<TokenHash>,
        now: DateTime<Utc>,
    ) -> Result<Option<Revoked>> {
        let mut w = self.begin_write().await?;
        if live_agent(&mut w.tx, company_id, agent_id).await?.is_none() {
            return Ok(None);
        }
        let revoked = revoke_agent_tokens(&mut w.tx, company_id, agent_id, ms(now)).await?;
        if let Some(new) = new {
            sqlx::query(
                "INSERT INTO credentials (token_hash, kind, company_id, agent_id, created_at) \
                 VALUES (?1, 'agent', ?2, ?3, ?4)",
            )
            .bind(&new.0[..])
            .bind(company_id)
            .bind(agent_id)
            .bind(ms(now))
            .execute(&mut *w.tx)
            .await?;
        }
        revoked_in_tx(&mut w.tx, &revoked).await?;
        w.commit().await?;
        Ok(Some(revoked))
    }

    pub(crate) async fn decommission_agent_impl(
        &self,
        company_id: CompanyId,
        agent_id: AgentId,
        now: DateTime<Utc>,
    ) -> Result<Option<Decommissioned>> {
        let now_ms = ms(now);
        let mut w = self.begin_write().await?;
        let Some(hostname) = live_agent(&mut w.tx, company_id, agent_id).await? else {
            return Ok(None);
        };
        let revoked = revoke_agent_tokens(&mut w.tx, company_id, agent_id, now_ms).await?;
        // What the event lists: the worst first.
        let rows = sqlx::query(
            "SELECT f.vuln_id, f.severity, f.kev, s.name, s.version, s.ecosystem, s.source \
             FROM findings f JOIN software s ON s.software_key = f.software_key \
             WHERE f.company_id = ?1 AND f.agent_id = ?2 AND f.resolved_at IS NULL \
             ORDER BY f.severity DESC, f.vuln_id LIMIT ?3",
        )
        .bind(company_id)
        .bind(agent_id)
        .bind(LIST_CAP as i64)
        .fetch_all(&mut *w.tx)
        .await?;
        let items: Vec<ResolvedItem> = rows
            .iter()
            .map(|r| ResolvedItem {
                vuln_id: r.get(0),
                severity: severity_from_rank(r.get(1)),
                kev: r.get::<i64, _>(2) != 0,
                package: PackageRef {
                    name: r.get(3),
                    version: r.get(4),
                    ecosystem: r.get(5),
                    source: r.get(6),
                },
            })
            .collect();
        // Its findings leave the vulnerability rollup (none of them stays open).
        let before = super::rollup::contributions(&mut w.tx, [(company_id, agent_id)]).await?;
        let after = crate::common::rollup::Contributions::of([(company_id, agent_id)]);
        super::rollup::write_delta(
            &mut w.tx,
            &crate::common::rollup::RollupDelta::between(&before, &after),
        )
        .await?;
        let resolved = sqlx::query(
            "UPDATE findings SET resolved_at = ?3, resolution = ?4 \
             WHERE company_id = ?1 AND agent_id = ?2 AND resolved_at IS NULL",
        )
        .bind(company_id)
        .bind(agent_id)
        .bind(now_ms)
        .bind(DECOMMISSIONED)
        .execute(&mut *w.tx)
        .await?
        .rows_affected();
        // The host no longer counts for the software it ran.
        sqlx::query(
            "UPDATE company_software SET hosts = hosts - 1 WHERE company_id = ?1 AND software_key IN \
             (SELECT DISTINCT software_key FROM apps WHERE company_id = ?1 AND agent_id = ?2)",
        )
        .bind(company_id)
        .bind(agent_id)
        .execute(&mut *w.tx)
        .await?;
        sqlx::query(
            "DELETE FROM company_software WHERE company_id = ?1 AND hosts <= 0 AND software_key IN \
             (SELECT software_key FROM apps WHERE company_id = ?1 AND agent_id = ?2)",
        )
        .bind(company_id)
        .bind(agent_id)
        .execute(&mut *w.tx)
        .await?;
        let removed_apps = sqlx::query("DELETE FROM apps WHERE company_id = ?1 AND agent_id = ?2")
            .bind(company_id)
            .bind(agent_id)
            .execute(&mut *w.tx)
            .await?
            .rows_affected();
        sqlx::query(
            "UPDATE agents SET decommissioned_at = ?3, open_critical = 0, open_high = 0, \
             open_medium = 0, open_low = 0, open_unknown = 0, open_kev = 0, open_fixable = 0, \
             app_count = 0, inventory = NULL, inventory_digest = NULL, accepted_digest = NULL \
             WHERE company_id = ?1 AND agent_id = ?2",
        )
        .bind(company_id)
        .bind(agent_id)
        .bind(now_ms)
        .execute(&mut *w.tx)
        .await?;
        // Reports still waiting are dropped: nothing may reopen the host's findings.
        sqlx::query(
            "UPDATE reports SET status = 'failed', error = 'agent decommissioned', body = NULL \
             WHERE company_id = ?1 AND report_id IN (SELECT report_id FROM queue \
             WHERE state IN ('queued', 'leased') AND company_id = ?1 AND agent_id = ?2)",
        )
        .bind(company_id)
        .bind(agent_id)
        .execute(&mut *w.tx)
        .await?;
        sqlx::query(
            "UPDATE queue SET state = 'dead', finished_at = ?3, lease_owner = NULL, \
             last_error = 'agent decommissioned' \
             WHERE state IN ('queued', 'leased') AND company_id = ?1 AND agent_id = ?2",
        )
        .bind(company_id)
        .bind(agent_id)
        .bind(now_ms)
        .execute(&mut *w.tx)
        .await?;
        let event = decommissioned_event(company_id, agent_id, &hostname, &items, resolved);
        if let Some(event) = &event {
            super::events::append_in_tx(&mut w.tx, std::slice::from_ref(event), now_ms).await?;
        }
        revoked_in_tx(&mut w.tx, &revoked).await?;
        w.commit().await?;
        if event.is_some() {
            self.signal_events();
        }
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
        let mut w = self.begin_write().await?;
        let exists: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM companies WHERE company_id = ?1")
                .bind(company_id)
                .fetch_optional(&mut *w.tx)
                .await?;
        if exists.is_none() {
            return Ok(None);
        }
        let rows = sqlx::query(
            "UPDATE credentials SET revoked_at = ?2 \
             WHERE company_id = ?1 AND kind = 'enroll' AND revoked_at IS NULL \
             RETURNING token_hash",
        )
        .bind(company_id)
        .bind(ms(now))
        .fetch_all(&mut *w.tx)
        .await?;
        let hashes = rows
            .iter()
            .map(|r| token_hash_from(r.get::<&[u8], _>(0)))
            .collect::<Result<_>>()?;
        sqlx::query(
            "INSERT INTO credentials (token_hash, kind, company_id, created_at) \
             VALUES (?1, 'enroll', ?2, ?3)",
        )
        .bind(&new.0[..])
        .bind(company_id)
        .bind(ms(now))
        .execute(&mut *w.tx)
        .await?;
        let revoked = Revoked { hashes };
        revoked_in_tx(&mut w.tx, &revoked).await?;
        w.commit().await?;
        Ok(Some(revoked))
    }

    pub(crate) async fn delete_company_impl(
        &self,
        company_id: CompanyId,
    ) -> Result<Option<CompanyPurged>> {
        let mut w = self.begin_write().await?;
        let exists: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM companies WHERE company_id = ?1")
                .bind(company_id)
                .fetch_optional(&mut *w.tx)
                .await?;
        if exists.is_none() {
            return Ok(None);
        }
        let rows = sqlx::query(
            "SELECT token_hash FROM credentials WHERE company_id = ?1 AND revoked_at IS NULL",
        )
        .bind(company_id)
        .fetch_all(&mut *w.tx)
        .await?;
        let hashes = rows
            .iter()
            .map(|r| token_hash_from(r.get::<&[u8], _>(0)))
            .collect::<Result<_>>()?;
        let revoked = Revoked { hashes };
        revoked_in_tx(&mut w.tx, &revoked).await?;
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT m.name FROM sqlite_master m JOIN pragma_table_info(m.name) p \
             WHERE m.type = 'table' AND p.name = 'company_id'",
        )
        .fetch_all(&mut *w.tx)
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
                "DELETE FROM {table} WHERE company_id = ?1"
            )))
            .bind(company_id)
            .execute(&mut *w.tx)
            .await?
            .rows_affected();
            purged.tables.push((table, n));
        }
        w.commit().await?;
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
        let mut w = self.begin_background_write().await?;
        for (hash, at) in used {
            sqlx::query(
                "UPDATE credentials SET last_used_at = ?2 \
                 WHERE token_hash = ?1 AND (last_used_at IS NULL OR last_used_at < ?2)",
            )
            .bind(&hash.0[..])
            .bind(ms(*at))
            .execute(&mut *w.tx)
            .await?;
        }
        w.commit().await
    }

    pub(crate) async fn deployment_secret_impl(
        &self,
        name: &str,
        proposed: &str,
    ) -> Result<String> {
        let key = format!("secret:{name}");
        let mut w = self.begin_write().await?;
        sqlx::query("INSERT INTO zt_meta (key, value) VALUES (?1, ?2) ON CONFLICT DO NOTHING")
            .bind(&key)
            .bind(proposed)
            .execute(&mut *w.tx)
            .await?;
        w.commit().await?;
        Ok(
            sqlx::query_scalar("SELECT value FROM zt_meta WHERE key = ?1")
                .bind(&key)
                .fetch_one(&self.pool)
                .await?,
        )
    }
}

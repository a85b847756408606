//! Re-matching known software when the knowledge changes, and the findings that follow.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::Row;
use uuid::Uuid;
use zt_inventory::{Software, SoftwareKey};

use super::process::{write_matches, COUNTERS_FROM_FINDINGS};
use super::{key_uuid, to_u64, PgStore};
use crate::common::matches::{diff_matches, pending_generation, PairState};
use crate::common::reads::software_from_row;
use crate::model::*;
use crate::Result;

impl PgStore {
    pub(crate) async fn software_to_rematch_impl(
        &self,
        revision: u64,
        after: Option<SoftwareKey>,
        limit: u32,
    ) -> Result<Vec<(SoftwareKey, Software)>> {
        let revision = i64::try_from(revision).unwrap_or(i64::MAX);
        let rows = sqlx::query(
            "SELECT software_key, ecosystem, name, version, source, source_name, source_version, \
             vendor, purl, cpe FROM software \
             WHERE matched_revision < $1 AND ($2::uuid IS NULL OR software_key > $2) \
             ORDER BY software_key LIMIT $3",
        )
        .bind(revision)
        .bind(after.as_ref().map(key_uuid))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(software_from_row).collect()
    }

    pub(crate) async fn store_rematch_impl(
        &self,
        results: &[MatchedSoftware],
        revision: u64,
    ) -> Result<MatchDelta> {
        let rev = i64::try_from(revision).unwrap_or(i64::MAX);
        let mut delta = MatchDelta::default();
        if results.is_empty() {
            return Ok(delta);
        }
        let mut tx = self.pool.begin().await?;
        let mut keys: Vec<Uuid> = results.iter().map(|m| key_uuid(&m.key)).collect();
        keys.sort();
        keys.dedup();
        // Locked in key order; software already at this revision (another process did it) or
        // unknown is left alone.
        let eligible: Vec<Uuid> = sqlx::query_scalar(
            "SELECT software_key FROM software WHERE software_key = ANY($1) AND matched_revision < $2 \
             ORDER BY software_key FOR UPDATE",
        )
        .bind(&keys)
        .bind(rev)
        .fetch_all(&mut *tx)
        .await?;
        if eligible.is_empty() {
            tx.commit().await?;
            return Ok(delta);
        }
        // What findings of each pair show now, to tell which pairs changed.
        let rows = sqlx::query(
            "SELECT software_key, vuln_id, severity, kev, fixable FROM software_vulns \
             WHERE software_key = ANY($1)",
        )
        .bind(&eligible)
        .fetch_all(&mut *tx)
        .await?;
        let mut old: HashMap<Uuid, HashMap<String, PairState>> = HashMap::new();
        for row in rows {
            old.entry(row.try_get(0)?).or_default().insert(
                row.try_get(1)?,
                (
                    i64::from(row.try_get::<i16, _>(2)?),
                    row.try_get(3)?,
                    row.try_get(4)?,
                ),
            );
        }
        let eligible_set: std::collections::HashSet<Uuid> = eligible.iter().copied().collect();
        let mut updated: Vec<&MatchedSoftware> = Vec::with_capacity(eligible.len());
        let mut seen = std::collections::HashSet::new();
        for m in results {
            let k = key_uuid(&m.key);
            if !eligible_set.contains(&k) || !seen.insert(k) {
                continue;
            }
            diff_matches(&mut delta, m, old.remove(&k).unwrap_or_default());
            updated.push(m);
        }
        sqlx::query("DELETE FROM software_vulns WHERE software_key = ANY($1)")
            .bind(&eligible)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE software SET matched_revision = $2 WHERE software_key = ANY($1)")
            .bind(&eligible)
            .bind(rev)
            .execute(&mut *tx)
            .await?;
        write_matches(&mut tx, &updated, rev).await?;
        if !delta.is_empty() {
            sqlx::query(
                "INSERT INTO zt_meta (key, value) VALUES ('rematch_generation', '1') \
                 ON CONFLICT (key) DO UPDATE SET value = (zt_meta.value::bigint + 1)::text",
            )
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(delta)
    }

    pub(crate) async fn reconcile_pending_impl(&self) -> Result<Option<u64>> {
        let row = sqlx::query(
            "SELECT (SELECT value::bigint FROM zt_meta WHERE key = 'rematch_generation'), \
                    (SELECT value::bigint FROM zt_meta WHERE key = 'reconciled_generation')",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(pending_generation(row.try_get(0)?, row.try_get(1)?))
    }

    pub(crate) async fn mark_reconciled_impl(&self, generation: u64) -> Result<()> {
        sqlx::query(
            "INSERT INTO zt_meta (key, value) VALUES ('reconciled_generation', $1) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value \
             WHERE zt_meta.value::bigint < excluded.value::bigint",
        )
        .bind(generation.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub(crate) async fn reconcile_findings_impl(
        &self,
        company_id: CompanyId,
        after: Option<AgentId>,
        limit: u32,
        now: DateTime<Utc>,
    ) -> Result<Option<AgentId>> {
        let mut tx = self.begin_for_company(company_id).await?;
        // Agents locked first, in id order, as the workers lock them.
        let agents: Vec<AgentId> = sqlx::query_scalar(
            "SELECT agent_id FROM agents WHERE company_id = $1 AND ($2::uuid IS NULL OR agent_id > $2) \
             ORDER BY agent_id LIMIT $3 FOR UPDATE",
        )
        .bind(company_id)
        .bind(after)
        .bind(i64::from(limit.max(1)))
        .fetch_all(&mut *tx)
        .await?;
        let (Some(&first), Some(&last)) = (agents.first(), agents.last()) else {
            tx.commit().await?;
            return Ok(None);
        };
        let before = super::rollup::contributions(&mut tx, company_id, &agents).await?;
        // Every app × cached match has an open finding with current columns.
        sqlx::query(
            "INSERT INTO findings (company_id, agent_id, software_key, vuln_id, severity, kev, \
             fixable, first_seen) \
             SELECT DISTINCT a.company_id, a.agent_id, a.software_key, sv.vuln_id, sv.severity, sv.kev, \
             sv.fixable, $4::timestamptz \
             FROM apps a JOIN software_vulns sv ON sv.software_key = a.software_key \
             WHERE a.company_id = $1 AND a.agent_id BETWEEN $2 AND $3 AND a.removed_at IS NULL \
             ON CONFLICT (company_id, agent_id, software_key, vuln_id) DO UPDATE SET \
             resolved_at = NULL, resolution = NULL, severity = excluded.severity, \
             kev = excluded.kev, fixable = excluded.fixable \
             WHERE findings.resolved_at IS NOT NULL OR findings.severity <> excluded.severity \
             OR findings.kev <> excluded.kev OR findings.fixable <> excluded.fixable",
        )
        .bind(company_id)
        .bind(first)
        .bind(last)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        // An open finding whose pair is no longer matched is resolved.
        sqlx::query(
            "UPDATE findings SET resolved_at = $4, resolution = 'not_affected' \
             WHERE company_id = $1 AND agent_id BETWEEN $2 AND $3 AND resolved_at IS NULL \
             AND NOT EXISTS (SELECT 1 FROM software_vulns sv \
                WHERE sv.software_key = findings.software_key AND sv.vuln_id = findings.vuln_id)",
        )
        .bind(company_id)
        .bind(first)
        .bind(last)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        // New findings an analysis covers are suppressed before they are counted.
        super::analyses::cover_agents(&mut tx, company_id, &agents, now).await?;
        let sql = format!(
            "UPDATE agents a SET {COUNTERS_FROM_FINDINGS} \
             WHERE a.company_id = $1 AND a.agent_id BETWEEN $2 AND $3"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(company_id)
            .bind(first)
            .bind(last)
            .execute(&mut *tx)
            .await?;
        let after = super::rollup::contributions(&mut tx, company_id, &agents).await?;
        super::rollup::write_delta(
            &mut tx,
            company_id,
            &crate::common::rollup::RollupDelta::between(&before, &after),
        )
        .await?;
        tx.commit().await?;
        Ok(Some(last))
    }

    /// Open findings of a company counted from the findings rows (what the per-agent counters
    /// must always agree with; used by tests and the benchmark's comparison).
    pub async fn summary_from_findings(&self, company_id: CompanyId) -> Result<Summary> {
        let mut tx = self.begin_for_company(company_id).await?;
        let row = sqlx::query(
            "SELECT count(*), coalesce(sum(app_count), 0)::bigint FROM agents WHERE company_id = $1",
        )
        .bind(company_id)
        .fetch_one(&mut *tx)
        .await?;
        let mut summary = Summary {
            agents: to_u64(row.try_get(0)?),
            apps: to_u64(row.try_get(1)?),
            ..Summary::default()
        };
        let rows = sqlx::query(
            "SELECT severity, count(*), count(*) FILTER (WHERE kev), count(*) FILTER (WHERE fixable) \
             FROM findings WHERE company_id = $1 AND resolved_at IS NULL AND NOT suppressed \
             GROUP BY severity",
        )
        .bind(company_id)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        for row in rows {
            summary.findings.add(
                super::severity_from_rank(row.try_get(0)?),
                to_u64(row.try_get(1)?),
            );
            summary.kev += to_u64(row.try_get(2)?);
            summary.fixable += to_u64(row.try_get(3)?);
        }
        Ok(summary)
    }
}

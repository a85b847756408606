//! Re-matching known software when the knowledge changes, and the findings that follow.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::Row;
use zt_inventory::{Software, SoftwareKey};

use super::process::write_matches;
use super::SqliteStore;
use crate::common::matches::{diff_matches, pending_generation, PairState};
use crate::common::reads::software_from_row;
use crate::common::{agent_from, ms};
use crate::model::*;
use crate::Result;

impl SqliteStore {
    pub(crate) async fn software_to_rematch_impl(
        &self,
        revision: u64,
        after: Option<SoftwareKey>,
        limit: u32,
    ) -> Result<Vec<(SoftwareKey, Software)>> {
        let revision = i64::try_from(revision).unwrap_or(i64::MAX);
        let after = after.map(|k| k.0.to_vec()).unwrap_or_default();
        let rows = sqlx::query(
            "SELECT software_key, ecosystem, name, version, source, source_name, source_version, \
             vendor, purl, cpe FROM software \
             WHERE matched_revision < ?1 AND software_key > ?2 ORDER BY software_key LIMIT ?3",
        )
        .bind(revision)
        .bind(after)
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
        let mut w = self.begin_background_write().await?;
        let mut updated: Vec<&MatchedSoftware> = Vec::with_capacity(results.len());
        for m in results {
            let current: Option<i64> =
                sqlx::query_scalar("SELECT matched_revision FROM software WHERE software_key = ?1")
                    .bind(&m.key.0[..])
                    .fetch_optional(&mut *w.tx)
                    .await?;
            match current {
                Some(r) if r < rev => {}
                // Already at this revision (another process did it) or unknown: leave it.
                _ => continue,
            }
            // What findings of each pair show now, to tell which pairs changed.
            let rows = sqlx::query(
                "SELECT vuln_id, severity, kev, fixable FROM software_vulns WHERE software_key = ?1",
            )
            .bind(&m.key.0[..])
            .fetch_all(&mut *w.tx)
            .await?;
            let before: HashMap<String, PairState> = rows
                .iter()
                .map(|r| (r.get::<String, _>(0), (r.get(1), r.get(2), r.get(3))))
                .collect();
            diff_matches(&mut delta, m, before);
            sqlx::query("DELETE FROM software_vulns WHERE software_key = ?1")
                .bind(&m.key.0[..])
                .execute(&mut *w.tx)
                .await?;
            sqlx::query("UPDATE software SET matched_revision = ?2 WHERE software_key = ?1")
                .bind(&m.key.0[..])
                .bind(rev)
                .execute(&mut *w.tx)
                .await?;
            updated.push(m);
        }
        write_matches(&mut w.tx, &updated, rev).await?;
        if !delta.is_empty() {
            sqlx::query(
                "INSERT INTO zt_meta (key, value) VALUES ('rematch_generation', '1') \
                 ON CONFLICT (key) DO UPDATE SET value = CAST(zt_meta.value AS INTEGER) + 1",
            )
            .execute(&mut *w.tx)
            .await?;
        }
        w.commit().await?;
        Ok(delta)
    }

    pub(crate) async fn reconcile_pending_impl(&self) -> Result<Option<u64>> {
        let row = sqlx::query(
            "SELECT (SELECT CAST(value AS INTEGER) FROM zt_meta WHERE key = 'rematch_generation'), \
                    (SELECT CAST(value AS INTEGER) FROM zt_meta WHERE key = 'reconciled_generation')",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(pending_generation(row.get(0), row.get(1)))
    }

    pub(crate) async fn mark_reconciled_impl(&self, generation: u64) -> Result<()> {
        let mut w = self.begin_background_write().await?;
        sqlx::query(
            "INSERT INTO zt_meta (key, value) VALUES ('reconciled_generation', ?1) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value \
             WHERE CAST(zt_meta.value AS INTEGER) < CAST(excluded.value AS INTEGER)",
        )
        .bind(generation.to_string())
        .execute(&mut *w.tx)
        .await?;
        w.commit().await
    }

    pub(crate) async fn reconcile_findings_impl(
        &self,
        company_id: CompanyId,
        after: Option<AgentId>,
        limit: u32,
        now: DateTime<Utc>,
    ) -> Result<Option<AgentId>> {
        let now = ms(now);
        let after = after.map(|a| a.as_bytes().to_vec()).unwrap_or_default();
        let agents: Vec<Vec<u8>> = sqlx::query_scalar(
            "SELECT agent_id FROM agents WHERE company_id = ?1 AND agent_id > ?2 \
             ORDER BY agent_id LIMIT ?3",
        )
        .bind(company_id)
        .bind(&after)
        .bind(i64::from(limit.max(1)))
        .fetch_all(&self.pool)
        .await?;
        let Some(last) = agents.last() else {
            return Ok(None);
        };
        let last = agent_from(last)?;
        let (first, end) = (agents[0].clone(), last.as_bytes().to_vec());
        let mut w = self.begin_background_write().await?;
        let mut page = Vec::with_capacity(agents.len());
        for a in &agents {
            page.push((company_id, agent_from(a)?));
        }
        let before = super::rollup::contributions(&mut w.tx, page.iter().copied()).await?;
        // Every app × cached match has an open finding with current columns.
        sqlx::query(
            "INSERT INTO findings (company_id, agent_id, software_key, vuln_id, severity, kev, \
             fixable, first_seen) \
             SELECT a.company_id, a.agent_id, a.software_key, sv.vuln_id, sv.severity, sv.kev, \
             sv.fixable, ?4 \
             FROM apps a JOIN software_vulns sv ON sv.software_key = a.software_key \
             WHERE a.company_id = ?1 AND a.agent_id >= ?2 AND a.agent_id <= ?3 \
             GROUP BY a.agent_id, a.software_key, sv.vuln_id \
             ON CONFLICT (company_id, agent_id, software_key, vuln_id) DO UPDATE SET \
             resolved_at = NULL, resolution = NULL, severity = excluded.severity, \
             kev = excluded.kev, fixable = excluded.fixable \
             WHERE findings.resolved_at IS NOT NULL OR findings.severity <> excluded.severity \
             OR findings.kev <> excluded.kev OR findings.fixable <> excluded.fixable",
        )
        .bind(company_id)
        .bind(&first)
        .bind(&end)
        .bind(now)
        .execute(&mut *w.tx)
        .await?;
        // An open finding whose pair is no longer matched is resolved.
        sqlx::query(
            "UPDATE findings SET resolved_at = ?4, resolution = 'not_affected' \
             WHERE company_id = ?1 AND agent_id >= ?2 AND agent_id <= ?3 AND resolved_at IS NULL \
             AND NOT EXISTS (SELECT 1 FROM software_vulns sv \
                WHERE sv.software_key = findings.software_key AND sv.vuln_id = findings.vuln_id)",
        )
        .bind(company_id)
        .bind(&first)
        .bind(&end)
        .bind(now)
        .execute(&mut *w.tx)
        .await?;
        // New findings an analysis covers are suppressed before they are counted.
        let mut covered = std::collections::HashSet::with_capacity(agents.len());
        for a in &agents {
            covered.insert((company_id, agent_from(a)?));
        }
        super::analyses::cover_agents(&mut w.tx, &covered, now).await?;
        sqlx::query(
            "UPDATE agents SET (open_critical, open_high, open_medium, open_low, open_unknown, \
             open_kev, open_fixable) = (SELECT coalesce(sum(f.severity = 5), 0), \
             coalesce(sum(f.severity = 4), 0), coalesce(sum(f.severity = 3), 0), \
             coalesce(sum(f.severity = 2), 0), coalesce(sum(f.severity <= 1), 0), \
             coalesce(sum(f.kev), 0), coalesce(sum(f.fixable), 0) FROM findings f \
             WHERE f.company_id = agents.company_id AND f.agent_id = agents.agent_id \
             AND f.resolved_at IS NULL AND f.suppressed = 0) \
             WHERE company_id = ?1 AND agent_id >= ?2 AND agent_id <= ?3",
        )
        .bind(company_id)
        .bind(&first)
        .bind(&end)
        .execute(&mut *w.tx)
        .await?;
        let after = super::rollup::contributions(&mut w.tx, page).await?;
        super::rollup::write_delta(
            &mut w.tx,
            &crate::common::rollup::RollupDelta::between(&before, &after),
        )
        .await?;
        w.commit().await?;
        Ok(Some(last))
    }
}

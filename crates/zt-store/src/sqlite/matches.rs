//! Re-matching known software when the knowledge changes, and the findings that follow.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sqlx::Row;
use zt_inventory::{Software, SoftwareKey};

use super::process::write_matches;
use super::SqliteStore;
use crate::common::matches::{
    changed_keys, diff_matches, pending_generation, reconciled, FindingState, PairChange, PairState,
};
use crate::common::reads::software_from_row;
use crate::common::rollup::Contributions;
use crate::common::{agent_from, key_from, ms};
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
        // Their hosts' findings follow in `reconcile_software` (durably waiting for it).
        let changed: Vec<String> = changed_keys(&delta).iter().map(|k| k.to_hex()).collect();
        for chunk in changed.chunks(5_000) {
            sqlx::query(
                "INSERT OR IGNORE INTO rematch_pending (software_key) \
                 SELECT unhex(value) FROM json_each(?1)",
            )
            .bind(super::process::json(chunk)?)
            .execute(&mut *w.tx)
            .await?;
        }
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
        sqlx::query("DELETE FROM rematch_pending")
            .execute(&mut *w.tx)
            .await?;
        w.commit().await
    }

    pub(crate) async fn rematch_base_impl(&self) -> Result<Option<u64>> {
        let v: Option<i64> = sqlx::query_scalar(
            "SELECT CAST(value AS INTEGER) FROM zt_meta WHERE key = 'rematch_base'",
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(v.and_then(|v| u64::try_from(v).ok()))
    }

    pub(crate) async fn set_rematch_base_impl(&self, revision: u64) -> Result<()> {
        let mut w = self.begin_background_write().await?;
        sqlx::query(
            "INSERT INTO zt_meta (key, value) VALUES ('rematch_base', ?1) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(revision.to_string())
        .execute(&mut *w.tx)
        .await?;
        w.commit().await
    }

    pub(crate) async fn advisories_changed_since_impl(&self, revision: u64) -> Result<Vec<String>> {
        let ids: Vec<String> =
            sqlx::query_scalar("SELECT id FROM kb_advisories WHERE changed_revision > ?1")
                .bind(i64::try_from(revision).unwrap_or(i64::MAX))
                .fetch_all(&self.pool)
                .await?;
        Ok(ids)
    }

    pub(crate) async fn software_of_vulns_impl(&self, ids: &[String]) -> Result<Vec<SoftwareKey>> {
        let mut out = Vec::new();
        for chunk in ids.chunks(5_000) {
            let rows: Vec<Vec<u8>> = sqlx::query_scalar(
                "SELECT DISTINCT sv.software_key FROM software_vulns sv \
                 WHERE sv.vuln_id IN (SELECT value FROM json_each(?1) \
                    UNION SELECT va.vuln_id FROM vuln_aliases va \
                    WHERE va.alias IN (SELECT value FROM json_each(?1)))",
            )
            .bind(super::process::json(chunk)?)
            .fetch_all(&self.pool)
            .await?;
            for r in rows {
                out.push(key_from(&r)?);
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    pub(crate) async fn confirm_matches_impl(
        &self,
        keys: &[SoftwareKey],
        since: u64,
        revision: u64,
    ) -> Result<u64> {
        if keys.is_empty() {
            return Ok(0);
        }
        let hex: Vec<String> = keys.iter().map(|k| k.to_hex()).collect();
        let mut w = self.begin_background_write().await?;
        let done = sqlx::query(
            "UPDATE software SET matched_revision = ?3 \
             WHERE software_key IN (SELECT unhex(value) FROM json_each(?1)) \
             AND matched_revision >= ?2 AND matched_revision < ?3",
        )
        .bind(super::process::json(&hex)?)
        .bind(i64::try_from(since).unwrap_or(i64::MAX))
        .bind(i64::try_from(revision).unwrap_or(i64::MAX))
        .execute(&mut *w.tx)
        .await?
        .rows_affected();
        w.commit().await?;
        Ok(done)
    }

    pub(crate) async fn vuln_enrichment_impl(&self) -> Result<Vec<VulnEnrichment>> {
        let rows = sqlx::query(
            "SELECT vuln_id, kev, kev_due_date, epss, epss_percentile FROM vulns ORDER BY vuln_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(VulnEnrichment {
                    vuln_id: r.try_get(0)?,
                    kev: r.try_get::<i64, _>(1)? != 0,
                    kev_due_date: r.try_get(2)?,
                    epss: r.try_get(3)?,
                    epss_percentile: r.try_get(4)?,
                })
            })
            .collect()
    }

    pub(crate) async fn update_enrichment_impl(
        &self,
        changes: &[VulnEnrichment],
        revision: u64,
    ) -> Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let rev = i64::try_from(revision).unwrap_or(i64::MAX);
        let rows: Vec<serde_json::Value> = changes
            .iter()
            .map(|c| {
                serde_json::json!([
                    c.vuln_id,
                    c.kev as i64,
                    c.kev_due_date,
                    c.epss,
                    c.epss_percentile
                ])
            })
            .collect();
        let mut w = self.begin_background_write().await?;
        for chunk in rows.chunks(2_000) {
            sqlx::query(
                "UPDATE vulns SET kev = j.value->>1, kev_due_date = j.value->>2, \
                 epss = j.value->>3, epss_percentile = j.value->>4, revision = ?2 \
                 FROM json_each(?1) j WHERE vulns.vuln_id = j.value->>0",
            )
            .bind(serde_json::Value::Array(chunk.to_vec()).to_string())
            .bind(rev)
            .execute(&mut *w.tx)
            .await?;
            // The cached matches' flag, which findings copy; their versions wait for the
            // reconciliation.
            let keys: Vec<Vec<u8>> = sqlx::query_scalar(
                "UPDATE software_vulns SET kev = j.value->>1 FROM json_each(?1) j \
                 WHERE software_vulns.vuln_id = j.value->>0 AND software_vulns.kev <> j.value->>1 \
                 RETURNING software_key",
            )
            .bind(serde_json::Value::Array(chunk.to_vec()).to_string())
            .fetch_all(&mut *w.tx)
            .await?;
            if keys.is_empty() {
                continue;
            }
            let hex: Vec<String> = keys.iter().map(hex::encode).collect();
            sqlx::query(
                "INSERT OR IGNORE INTO rematch_pending (software_key) \
                 SELECT unhex(value) FROM json_each(?1)",
            )
            .bind(super::process::json(&hex)?)
            .execute(&mut *w.tx)
            .await?;
            sqlx::query(
                "INSERT INTO zt_meta (key, value) VALUES ('rematch_generation', '1') \
                 ON CONFLICT (key) DO UPDATE SET value = CAST(zt_meta.value AS INTEGER) + 1",
            )
            .execute(&mut *w.tx)
            .await?;
        }
        w.commit().await
    }

    pub(crate) async fn pending_software_impl(&self) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM rematch_pending")
            .fetch_one(&self.pool)
            .await?;
        Ok(n.max(0) as u64)
    }

    pub(crate) async fn reconcile_software_impl(
        &self,
        company_id: CompanyId,
        after: Option<AgentId>,
        limit: u32,
        now: DateTime<Utc>,
    ) -> Result<Option<ReconcileStep>> {
        if after.is_none() {
            // A company with none of the waiting versions has nothing to reconcile.
            let any: Option<i64> = sqlx::query_scalar(
                "SELECT 1 FROM rematch_pending p JOIN company_software cs \
                 ON cs.company_id = ?1 AND cs.software_key = p.software_key \
                 WHERE cs.hosts > 0 LIMIT 1",
            )
            .bind(company_id)
            .fetch_optional(&self.pool)
            .await?;
            if any.is_none() {
                return Ok(None);
            }
        }
        let now_ms = ms(now);
        let after = after.map(|a| a.as_bytes().to_vec()).unwrap_or_default();
        let mut w = self.begin_background_write().await?;
        // The agents the step can change: an app or an open finding of a waiting version
        // (every other agent of the company is left alone).
        let agents: Vec<Vec<u8>> = sqlx::query_scalar(
            "SELECT agent_id FROM agents WHERE company_id = ?1 AND agent_id > ?2 AND agent_id IN ( \
               SELECT agent_id FROM apps WHERE company_id = ?1 AND agent_id > ?2 \
               AND software_key IN (SELECT software_key FROM rematch_pending) \
               UNION SELECT agent_id FROM findings WHERE company_id = ?1 AND agent_id > ?2 \
               AND resolved_at IS NULL \
               AND software_key IN (SELECT software_key FROM rematch_pending)) \
             ORDER BY agent_id LIMIT ?3",
        )
        .bind(company_id)
        .bind(&after)
        .bind(i64::from(limit.max(1)))
        .fetch_all(&mut *w.tx)
        .await?;
        let Some(end) = agents.last().cloned() else {
            w.commit().await?;
            return Ok(None);
        };
        let last = agent_from(&end)?;
        let first = agents[0].clone();
        // The rows that change (a pair matched now with no finding, a resolved one or
        // different columns; an open finding whose pair is no longer matched), and the open
        // findings of their (agent, vulnerability) before the write (the rollup's
        // contributions). The agents outside the step in [first, end] hold none of the
        // waiting versions, so the range selects the step's agents' rows.
        let rows = sqlx::query(
            "WITH src AS (SELECT a.agent_id, a.software_key, sv.vuln_id, sv.severity, sv.kev, \
               sv.fixable FROM apps a JOIN software_vulns sv ON sv.software_key = a.software_key \
               WHERE a.company_id = ?1 AND a.agent_id >= ?2 AND a.agent_id <= ?3 \
               AND a.software_key IN (SELECT software_key FROM rematch_pending) \
               GROUP BY a.agent_id, a.software_key, sv.vuln_id), \
             cur AS (SELECT f.agent_id, f.software_key, f.vuln_id, f.severity, f.kev, f.fixable, \
               f.resolved_at IS NULL AS open, f.suppressed FROM findings f \
               WHERE f.company_id = ?1 AND f.agent_id >= ?2 AND f.agent_id <= ?3 \
               AND f.software_key IN (SELECT software_key FROM rematch_pending)), \
             chg AS ( \
               SELECT s.agent_id, s.software_key, s.vuln_id, c.open AS old_open, \
               c.severity AS old_severity, c.kev AS old_kev, c.fixable AS old_fixable, \
               s.severity AS severity, s.kev AS kev, s.fixable AS fixable, \
               coalesce(c.suppressed, 0) AS suppressed \
               FROM src s LEFT JOIN cur c ON c.agent_id = s.agent_id \
               AND c.software_key = s.software_key AND c.vuln_id = s.vuln_id \
               WHERE c.agent_id IS NULL OR NOT c.open OR c.severity <> s.severity \
               OR c.kev <> s.kev OR c.fixable <> s.fixable \
               UNION ALL \
               SELECT c.agent_id, c.software_key, c.vuln_id, c.open, c.severity, c.kev, \
               c.fixable, NULL, NULL, NULL, c.suppressed FROM cur c WHERE c.open \
               AND NOT EXISTS (SELECT 1 FROM software_vulns sv \
                 WHERE sv.software_key = c.software_key AND sv.vuln_id = c.vuln_id)), \
             pairs AS (SELECT DISTINCT agent_id, vuln_id FROM chg), \
             before AS (SELECT f.agent_id, f.vuln_id, f.severity, count(*) AS n, \
               coalesce(sum(f.kev), 0) AS k, coalesce(sum(f.fixable), 0) AS x \
               FROM findings f JOIN pairs p ON f.agent_id = p.agent_id AND f.vuln_id = p.vuln_id \
               WHERE f.company_id = ?1 AND f.resolved_at IS NULL \
               GROUP BY f.agent_id, f.vuln_id, f.severity) \
             SELECT 0, agent_id, software_key, vuln_id, old_open, old_severity, old_kev, \
               old_fixable, severity, kev, fixable, 0, 0, 0, suppressed FROM chg \
             UNION ALL SELECT 1, agent_id, NULL, vuln_id, NULL, NULL, NULL, NULL, severity, \
               NULL, NULL, n, k, x, 0 FROM before",
        )
        .bind(company_id)
        .bind(&first)
        .bind(&end)
        .fetch_all(&mut *w.tx)
        .await?;
        let mut changes = Vec::new();
        let mut before = Contributions::default();
        for r in &rows {
            let agent = agent_from(r.try_get::<&[u8], _>(1)?)?;
            let vuln_id: String = r.try_get(3)?;
            if r.try_get::<i64, _>(0)? != 0 {
                before.add_row(
                    (company_id, agent),
                    vuln_id,
                    r.try_get(8)?,
                    [r.try_get(11)?, r.try_get(12)?, r.try_get(13)?],
                );
                continue;
            }
            let state = |sev: Option<i64>, kev: Option<i64>, fix: Option<i64>| {
                Some(FindingState {
                    severity: sev?,
                    kev: kev? != 0,
                    fixable: fix? != 0,
                })
            };
            let old_open: Option<i64> = r.try_get(4)?;
            changes.push(PairChange {
                agent,
                key: key_from(r.try_get::<&[u8], _>(2)?)?,
                vuln_id,
                old: old_open.map(|o| o != 0).zip(state(
                    r.try_get(5)?,
                    r.try_get(6)?,
                    r.try_get(7)?,
                )),
                new: state(r.try_get(8)?, r.try_get(9)?, r.try_get(10)?),
                suppressed: r.try_get::<i64, _>(14)? != 0,
            });
        }
        let done = reconciled(company_id, &changes, before);
        if done.touched.is_empty() {
            w.commit().await?;
            return Ok(Some(ReconcileStep { last, agents: 0 }));
        }
        // Every app × cached match of the waiting versions has an open finding with current
        // columns (the rows read above).
        // A finding that reopens is told its SLA crossings again (its `sla_notified` clears).
        sqlx::query(
            "INSERT INTO findings (company_id, agent_id, software_key, vuln_id, severity, kev, \
             fixable, first_seen) \
             SELECT a.company_id, a.agent_id, a.software_key, sv.vuln_id, sv.severity, sv.kev, \
             sv.fixable, ?4 \
             FROM apps a JOIN software_vulns sv ON sv.software_key = a.software_key \
             WHERE a.company_id = ?1 AND a.agent_id >= ?2 AND a.agent_id <= ?3 \
             AND a.software_key IN (SELECT software_key FROM rematch_pending) \
             GROUP BY a.agent_id, a.software_key, sv.vuln_id \
             ON CONFLICT (company_id, agent_id, software_key, vuln_id) DO UPDATE SET \
             resolved_at = NULL, resolution = NULL, severity = excluded.severity, \
             kev = excluded.kev, fixable = excluded.fixable, \
             sla_notified = CASE WHEN findings.resolved_at IS NULL THEN findings.sla_notified ELSE 0 END \
             WHERE findings.resolved_at IS NOT NULL OR findings.severity <> excluded.severity \
             OR findings.kev <> excluded.kev OR findings.fixable <> excluded.fixable",
        )
        .bind(company_id)
        .bind(&first)
        .bind(&end)
        .bind(now_ms)
        .execute(&mut *w.tx)
        .await?;
        // An open finding of those versions whose pair is no longer matched is resolved.
        sqlx::query(
            "UPDATE findings SET resolved_at = ?4, resolution = 'not_affected' \
             WHERE company_id = ?1 AND agent_id >= ?2 AND agent_id <= ?3 AND resolved_at IS NULL \
             AND software_key IN (SELECT software_key FROM rematch_pending) \
             AND NOT EXISTS (SELECT 1 FROM software_vulns sv \
                WHERE sv.software_key = findings.software_key AND sv.vuln_id = findings.vuln_id)",
        )
        .bind(company_id)
        .bind(&first)
        .bind(&end)
        .bind(now_ms)
        .execute(&mut *w.tx)
        .await?;
        let touched: HashSet<(CompanyId, AgentId)> =
            done.touched.iter().map(|a| (company_id, *a)).collect();
        // New findings an analysis covers are suppressed before they are counted.
        super::analyses::cover_agents(&mut w.tx, &touched, now_ms).await?;
        let hex: Vec<String> = done
            .touched
            .iter()
            .map(|a| hex::encode(a.as_bytes()))
            .collect();
        sqlx::query(
            "UPDATE agents SET (open_critical, open_high, open_medium, open_low, open_unknown, \
             open_kev, open_fixable) = (SELECT coalesce(sum(f.severity = 5), 0), \
             coalesce(sum(f.severity = 4), 0), coalesce(sum(f.severity = 3), 0), \
             coalesce(sum(f.severity = 2), 0), coalesce(sum(f.severity <= 1), 0), \
             coalesce(sum(f.kev), 0), coalesce(sum(f.fixable), 0) FROM findings f \
             WHERE f.company_id = agents.company_id AND f.agent_id = agents.agent_id \
             AND f.resolved_at IS NULL AND f.suppressed = 0) \
             WHERE company_id = ?1 AND agent_id IN (SELECT unhex(value) FROM json_each(?2))",
        )
        .bind(company_id)
        .bind(super::process::json(&hex)?)
        .execute(&mut *w.tx)
        .await?;
        super::rollup::write_delta(&mut w.tx, &done.rollup).await?;
        // Findings opened by a knowledge change notify as those opened by a report.
        let mut keys: Vec<SoftwareKey> = done
            .opened
            .iter()
            .chain(&done.raised)
            .map(|(_, f)| f.key)
            .collect();
        keys.sort();
        keys.dedup();
        let packages = super::apply::load_packages(&mut w.tx, &keys).await?;
        super::notify::changed_in_tx(
            &mut w.tx,
            done.opened
                .iter()
                .map(|(a, f)| (company_id, *a, f))
                .collect(),
            done.raised
                .iter()
                .map(|(a, f)| (company_id, *a, f))
                .collect(),
            &packages,
            now,
        )
        .await?;
        w.commit().await?;
        Ok(Some(ReconcileStep {
            last,
            agents: done.touched.len() as u64,
        }))
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
        // A finding that reopens is told its SLA crossings again (its `sla_notified` clears).
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
             kev = excluded.kev, fixable = excluded.fixable, \
             sla_notified = CASE WHEN findings.resolved_at IS NULL THEN findings.sla_notified ELSE 0 END \
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

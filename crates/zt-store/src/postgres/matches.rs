//! Re-matching known software when the knowledge changes, and the findings that follow.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::Row;
use uuid::Uuid;
use zt_inventory::{Software, SoftwareKey};

use super::process::{write_matches, COUNTERS_FROM_FINDINGS};
use super::queue::CompanyScope;
use super::{key_uuid, to_u64, uuid_key, PgStore};
use crate::common::matches::{
    changed_keys, diff_matches, pending_generation, reconciled, FindingState, PairChange, PairState,
};
use crate::common::reads::software_from_row;
use crate::common::rollup::Contributions;
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
        // Their hosts' findings follow in `reconcile_software` (durably waiting for it).
        let changed: Vec<Uuid> = changed_keys(&delta).iter().map(key_uuid).collect();
        if !changed.is_empty() {
            sqlx::query(
                "INSERT INTO rematch_pending (software_key) SELECT unnest($1::uuid[]) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(&changed)
            .execute(&mut *tx)
            .await?;
        }
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
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO zt_meta (key, value) VALUES ('reconciled_generation', $1) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value \
             WHERE zt_meta.value::bigint < excluded.value::bigint",
        )
        .bind(generation.to_string())
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM rematch_pending")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn rematch_base_impl(&self) -> Result<Option<u64>> {
        let v: Option<i64> =
            sqlx::query_scalar("SELECT value::bigint FROM zt_meta WHERE key = 'rematch_base'")
                .fetch_optional(&self.pool)
                .await?;
        Ok(v.and_then(|v| u64::try_from(v).ok()))
    }

    pub(crate) async fn set_rematch_base_impl(&self, revision: u64) -> Result<()> {
        sqlx::query(
            "INSERT INTO zt_meta (key, value) VALUES ('rematch_base', $1) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(revision.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub(crate) async fn advisories_changed_since_impl(&self, revision: u64) -> Result<Vec<String>> {
        let ids: Vec<String> =
            sqlx::query_scalar("SELECT id FROM kb_advisories WHERE changed_revision > $1")
                .bind(i64::try_from(revision).unwrap_or(i64::MAX))
                .fetch_all(&self.pool)
                .await?;
        Ok(ids)
    }

    pub(crate) async fn software_of_vulns_impl(&self, ids: &[String]) -> Result<Vec<SoftwareKey>> {
        let mut out = Vec::new();
        for chunk in ids.chunks(10_000) {
            let rows: Vec<Uuid> = sqlx::query_scalar(
                "SELECT DISTINCT sv.software_key FROM software_vulns sv \
                 WHERE sv.vuln_id = ANY($1) OR sv.vuln_id IN \
                    (SELECT va.vuln_id FROM vuln_aliases va WHERE va.alias = ANY($1))",
            )
            .bind(chunk)
            .fetch_all(&self.pool)
            .await?;
            out.extend(rows.into_iter().map(uuid_key));
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
        let mut ids: Vec<Uuid> = keys.iter().map(key_uuid).collect();
        ids.sort();
        let done = sqlx::query(
            "UPDATE software SET matched_revision = $3 WHERE software_key = ANY($1) \
             AND matched_revision >= $2 AND matched_revision < $3",
        )
        .bind(&ids)
        .bind(i64::try_from(since).unwrap_or(i64::MAX))
        .bind(i64::try_from(revision).unwrap_or(i64::MAX))
        .execute(&self.pool)
        .await?
        .rows_affected();
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
                    kev: r.try_get(1)?,
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
        let mut tx = self.pool.begin().await?;
        for chunk in changes.chunks(5_000) {
            let ids: Vec<&str> = chunk.iter().map(|c| c.vuln_id.as_str()).collect();
            let kev: Vec<bool> = chunk.iter().map(|c| c.kev).collect();
            let due: Vec<Option<&str>> = chunk.iter().map(|c| c.kev_due_date.as_deref()).collect();
            let epss: Vec<Option<f64>> = chunk.iter().map(|c| c.epss).collect();
            let pct: Vec<Option<f64>> = chunk.iter().map(|c| c.epss_percentile).collect();
            sqlx::query(
                "UPDATE vulns v SET kev = t.kev, kev_due_date = t.due, epss = t.epss, \
                 epss_percentile = t.pct, revision = $6 \
                 FROM unnest($1::text[], $2::bool[], $3::text[], $4::float8[], $5::float8[]) \
                    AS t(id, kev, due, epss, pct) \
                 WHERE v.vuln_id = t.id",
            )
            .bind(&ids)
            .bind(&kev)
            .bind(&due)
            .bind(&epss)
            .bind(&pct)
            .bind(rev)
            .execute(&mut *tx)
            .await?;
            // The cached matches' flag, which findings copy; their versions wait for the
            // reconciliation.
            let keys: Vec<Uuid> = sqlx::query_scalar(
                "UPDATE software_vulns sv SET kev = t.kev \
                 FROM unnest($1::text[], $2::bool[]) AS t(id, kev) \
                 WHERE sv.vuln_id = t.id AND sv.kev <> t.kev RETURNING sv.software_key",
            )
            .bind(&ids)
            .bind(&kev)
            .fetch_all(&mut *tx)
            .await?;
            if keys.is_empty() {
                continue;
            }
            sqlx::query(
                "INSERT INTO rematch_pending (software_key) SELECT DISTINCT unnest($1::uuid[]) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(&keys)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO zt_meta (key, value) VALUES ('rematch_generation', '1') \
                 ON CONFLICT (key) DO UPDATE SET value = (zt_meta.value::bigint + 1)::text",
            )
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn pending_software_impl(&self) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM rematch_pending")
            .fetch_one(&self.pool)
            .await?;
        Ok(to_u64(n))
    }

    pub(crate) async fn reconcile_software_impl(
        &self,
        company_id: CompanyId,
        after: Option<AgentId>,
        limit: u32,
        now: DateTime<Utc>,
    ) -> Result<Option<ReconcileStep>> {
        let mut tx = self.begin_for_company(company_id).await?;
        // The waiting versions, bound as an array below: every other statement then names
        // only this company's tables and the reference tables (on Citus `rematch_pending`
        // stays on the coordinator), so each goes whole to the company's node.
        let pending: Vec<Uuid> =
            sqlx::query_scalar("SELECT software_key FROM rematch_pending ORDER BY software_key")
                .fetch_all(&mut *tx)
                .await?;
        if pending.is_empty() {
            tx.commit().await?;
            return Ok(None);
        }
        if after.is_none() {
            // A company with none of the waiting versions has nothing to reconcile.
            let any: Option<i32> = sqlx::query_scalar(
                "SELECT 1 FROM company_software WHERE company_id = $1 AND hosts > 0 \
                 AND software_key IN (SELECT unnest($2::uuid[])) LIMIT 1",
            )
            .bind(company_id)
            .bind(&pending)
            .fetch_optional(&mut *tx)
            .await?;
            if any.is_none() {
                tx.commit().await?;
                return Ok(None);
            }
        }
        // Set-wide statements over a company's apps and findings: with a nested loop over a
        // CTE or a function scan their cost grows with the product of the two sides, which
        // the planner picks when its estimates are off (right after a large import, before
        // the statistics catch up: measured minutes instead of a second), so only hash and
        // merge joins for these two statements (index scans stay), with the memory to hash
        // and sort a company's rows without spilling (the default 4 MB holds ~50,000).
        sqlx::query("SET LOCAL enable_nestloop = off")
            .execute(&mut *tx)
            .await?;
        sqlx::query("SET LOCAL work_mem = '32MB'")
            .execute(&mut *tx)
            .await?;
        // The agents the step can change — an app or an open finding of a waiting version —
        // locked first, in id order, as the workers lock them; every other agent of the
        // company is left alone (and unlocked).
        let agents: Vec<AgentId> = sqlx::query_scalar(
            "SELECT agent_id FROM agents WHERE company_id = $1 \
             AND ($2::uuid IS NULL OR agent_id > $2) AND agent_id IN ( \
               SELECT a.agent_id FROM apps a WHERE a.company_id = $1 \
               AND ($2::uuid IS NULL OR a.agent_id > $2) AND a.removed_at IS NULL \
               AND a.software_key IN (SELECT unnest($3::uuid[])) \
               UNION SELECT f.agent_id FROM findings f WHERE f.company_id = $1 \
               AND ($2::uuid IS NULL OR f.agent_id > $2) AND f.resolved_at IS NULL \
               AND f.software_key IN (SELECT unnest($3::uuid[]))) \
             ORDER BY agent_id LIMIT $4 FOR UPDATE",
        )
        .bind(company_id)
        .bind(after)
        .bind(&pending)
        .bind(i64::from(limit.max(1)))
        .fetch_all(&mut *tx)
        .await?;
        let (Some(&first), Some(&last)) = (agents.first(), agents.last()) else {
            tx.commit().await?;
            return Ok(None);
        };
        // One statement for the step's findings (its sub-statements all see the findings as
        // they were before it): the rows that change (`chg`: a pair matched now with no
        // finding, a resolved one or different columns; an open finding whose pair is no
        // longer matched), written by the upsert and the resolve, returned with the open
        // findings of their (agent, vulnerability) before the write (`before`: the rollup's
        // contributions). The agents outside the step in [first, last] hold none of the
        // waiting versions, so the range selects the step's agents' rows.
        // A finding that reopens is told its SLA crossings again (its `sla_notified` clears).
        let rows = sqlx::query(
            "WITH pend AS MATERIALIZED (SELECT unnest($4::uuid[]) AS software_key), \
             held AS MATERIALIZED (SELECT DISTINCT a.agent_id, a.software_key FROM apps a \
               WHERE a.company_id = $1 AND a.agent_id BETWEEN $2 AND $3 AND a.removed_at IS NULL \
               AND a.software_key IN (SELECT software_key FROM pend)), \
             src AS MATERIALIZED (SELECT h.agent_id, h.software_key, sv.vuln_id, \
               sv.severity, sv.kev, sv.fixable \
               FROM held h JOIN software_vulns sv ON sv.software_key = h.software_key \
               AND sv.software_key = ANY($4::uuid[])), \
             fin AS MATERIALIZED (SELECT f.agent_id, f.software_key, f.vuln_id, f.severity, \
               f.kev, f.fixable, f.resolved_at IS NULL AS open, f.suppressed, \
               f.software_key IN (SELECT software_key FROM pend) AS waiting FROM findings f \
               WHERE f.company_id = $1 AND f.agent_id BETWEEN $2 AND $3), \
             cur AS MATERIALIZED (SELECT * FROM fin WHERE waiting), \
             chg AS MATERIALIZED ( \
               SELECT s.agent_id, s.software_key, s.vuln_id, c.open AS old_open, \
               c.severity AS old_severity, c.kev AS old_kev, c.fixable AS old_fixable, \
               s.severity, s.kev, s.fixable, coalesce(c.suppressed, false) AS suppressed \
               FROM src s LEFT JOIN cur c ON c.agent_id = s.agent_id \
               AND c.software_key = s.software_key AND c.vuln_id = s.vuln_id \
               WHERE c.agent_id IS NULL OR NOT c.open OR c.severity <> s.severity \
               OR c.kev <> s.kev OR c.fixable <> s.fixable \
               UNION ALL \
               SELECT c.agent_id, c.software_key, c.vuln_id, c.open, c.severity, c.kev, \
               c.fixable, NULL, NULL, NULL, c.suppressed FROM cur c WHERE c.open \
               AND NOT EXISTS (SELECT 1 FROM software_vulns sv \
                 WHERE sv.software_key = ANY($4::uuid[]) \
                 AND sv.software_key = c.software_key AND sv.vuln_id = c.vuln_id)), \
             upserted AS (INSERT INTO findings (company_id, agent_id, software_key, vuln_id, \
               severity, kev, fixable, first_seen) \
               SELECT $1, chg.agent_id, chg.software_key, chg.vuln_id, chg.severity, chg.kev, \
               chg.fixable, $5::timestamptz FROM chg WHERE chg.severity IS NOT NULL \
               ORDER BY chg.agent_id, chg.software_key, chg.vuln_id \
               ON CONFLICT (company_id, agent_id, software_key, vuln_id) DO UPDATE SET \
               resolved_at = NULL, resolution = NULL, severity = excluded.severity, \
               kev = excluded.kev, fixable = excluded.fixable, \
               sla_notified = CASE WHEN findings.resolved_at IS NULL \
                 THEN findings.sla_notified ELSE 0 END \
               WHERE findings.resolved_at IS NOT NULL OR findings.severity <> excluded.severity \
               OR findings.kev <> excluded.kev OR findings.fixable <> excluded.fixable \
               RETURNING 1), \
             resolved AS (UPDATE findings f SET resolved_at = $5, resolution = 'not_affected' \
               WHERE f.company_id = $1 AND f.agent_id BETWEEN $2 AND $3 \
               AND (f.agent_id, f.software_key, f.vuln_id) IN (SELECT chg.agent_id, \
                 chg.software_key, chg.vuln_id FROM chg WHERE chg.severity IS NULL) \
               AND f.resolved_at IS NULL RETURNING 1), \
             before AS (SELECT f.agent_id, f.vuln_id, f.severity, count(*) AS n, \
               count(*) FILTER (WHERE f.kev) AS k, count(*) FILTER (WHERE f.fixable) AS x \
               FROM fin f JOIN (SELECT DISTINCT agent_id, vuln_id FROM chg) p \
               ON f.agent_id = p.agent_id AND f.vuln_id = p.vuln_id \
               WHERE f.open GROUP BY f.agent_id, f.vuln_id, f.severity) \
             SELECT false, agent_id, software_key, vuln_id, old_open, old_severity, old_kev, \
               old_fixable, severity, kev, fixable, 0::bigint, 0::bigint, 0::bigint, suppressed \
               FROM chg \
             UNION ALL SELECT true, agent_id, NULL, vuln_id, NULL, NULL, NULL, NULL, severity, \
               NULL, NULL, n, k, x, false FROM before",
        )
        .bind(company_id)
        .bind(first)
        .bind(last)
        .bind(&pending)
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        sqlx::query("SET LOCAL enable_nestloop TO DEFAULT")
            .execute(&mut *tx)
            .await?;
        sqlx::query("SET LOCAL work_mem TO DEFAULT")
            .execute(&mut *tx)
            .await?;
        let mut changes = Vec::new();
        let mut before = Contributions::default();
        for r in &rows {
            let agent: AgentId = r.try_get(1)?;
            let vuln_id: String = r.try_get(3)?;
            if r.try_get::<bool, _>(0)? {
                before.add_row(
                    (company_id, agent),
                    vuln_id,
                    i64::from(r.try_get::<i16, _>(8)?),
                    [r.try_get(11)?, r.try_get(12)?, r.try_get(13)?],
                );
                continue;
            }
            let state = |sev: Option<i16>, kev: Option<bool>, fix: Option<bool>| {
                Some(FindingState {
                    severity: i64::from(sev?),
                    kev: kev?,
                    fixable: fix?,
                })
            };
            let old_open: Option<bool> = r.try_get(4)?;
            changes.push(PairChange {
                agent,
                key: uuid_key(r.try_get(2)?),
                vuln_id,
                old: old_open.zip(state(r.try_get(5)?, r.try_get(6)?, r.try_get(7)?)),
                new: state(r.try_get(8)?, r.try_get(9)?, r.try_get(10)?),
                suppressed: r.try_get(14)?,
            });
        }
        let done = reconciled(company_id, &changes, before);
        if done.touched.is_empty() {
            tx.commit().await?;
            return Ok(Some(ReconcileStep { last, agents: 0 }));
        }
        // New findings an analysis covers are suppressed before they are counted: with
        // analyses the agents are recounted, else their counters move by what the changed
        // rows say (no read of their other findings).
        if super::analyses::cover_agents(&mut tx, company_id, &done.touched, now).await? {
            let sql = format!(
                "UPDATE agents a SET {COUNTERS_FROM_FINDINGS} \
                 WHERE a.company_id = $1 AND a.agent_id = ANY($2)"
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(company_id)
                .bind(&done.touched)
                .execute(&mut *tx)
                .await?;
        } else if !done.counters.is_empty() {
            let agents: Vec<AgentId> = done.counters.iter().map(|(a, _)| *a).collect();
            let column = |i: usize| -> Vec<i32> {
                done.counters
                    .iter()
                    .map(|(_, d)| i32::try_from(d[i]).unwrap_or_default())
                    .collect()
            };
            sqlx::query(
                "UPDATE agents a SET open_critical = a.open_critical + d.c, \
                 open_high = a.open_high + d.h, open_medium = a.open_medium + d.m, \
                 open_low = a.open_low + d.l, open_unknown = a.open_unknown + d.u, \
                 open_kev = a.open_kev + d.k, open_fixable = a.open_fixable + d.x \
                 FROM unnest($2::uuid[], $3::int[], $4::int[], $5::int[], $6::int[], $7::int[], \
                   $8::int[], $9::int[]) AS d(agent_id, c, h, m, l, u, k, x) \
                 WHERE a.company_id = $1 AND a.agent_id = d.agent_id",
            )
            .bind(company_id)
            .bind(&agents)
            .bind(column(0))
            .bind(column(1))
            .bind(column(2))
            .bind(column(3))
            .bind(column(4))
            .bind(column(5))
            .bind(column(6))
            .execute(&mut *tx)
            .await?;
        }
        super::rollup::write_delta(&mut tx, company_id, &done.rollup).await?;
        // Findings opened by a knowledge change notify as those opened by a report.
        let mut keys: Vec<SoftwareKey> = done
            .opened
            .iter()
            .chain(&done.raised)
            .map(|(_, f)| f.key)
            .collect();
        keys.sort();
        keys.dedup();
        let packages = super::events::load_packages(&mut tx, &keys).await?;
        let mut scope = CompanyScope::new();
        super::notify::changed_in_tx(
            &mut tx,
            &mut scope,
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
        tx.commit().await?;
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
        // A finding that reopens is told its SLA crossings again (its `sla_notified` clears).
        sqlx::query(
            "INSERT INTO findings (company_id, agent_id, software_key, vuln_id, severity, kev, \
             fixable, first_seen) \
             SELECT DISTINCT a.company_id, a.agent_id, a.software_key, sv.vuln_id, sv.severity, sv.kev, \
             sv.fixable, $4::timestamptz \
             FROM apps a JOIN software_vulns sv ON sv.software_key = a.software_key \
             WHERE a.company_id = $1 AND a.agent_id BETWEEN $2 AND $3 AND a.removed_at IS NULL \
             ON CONFLICT (company_id, agent_id, software_key, vuln_id) DO UPDATE SET \
             resolved_at = NULL, resolution = NULL, severity = excluded.severity, \
             kev = excluded.kev, fixable = excluded.fixable, \
             sla_notified = CASE WHEN findings.resolved_at IS NULL THEN findings.sla_notified ELSE 0 END \
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

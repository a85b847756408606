//! Applying processed reports: new software with its matches, the inventory diff, findings and
//! the agents' finding counters, all in the batch's one transaction.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::Row;
use uuid::Uuid;
use zt_inventory::SoftwareKey;

use super::queue::CompanyScope;
use super::{key_uuid, severity_rank, to_i32, uuid_key, PgStore, Tx};
use crate::common::inventory::{
    decode_inventory, distinct_vulns, package_id, plan_carry_over, Inventory, InventoryDiff,
};
use crate::common::json_list;
use crate::model::*;
use crate::Result;

/// Recomputes the open-finding counters of the agent(s) the WHERE clause picks from their
/// findings; appended to an `UPDATE agents a SET …` statement.
///
/// "Open" is tested in the FILTERs, not in the WHERE clause: with `resolved_at IS NULL` there,
/// the planner may read the agent's rows from the partial index `findings_open`, whose leading
/// columns after company_id are severity and vuln_id — a pass over every open finding of the
/// company for each report (seen in a profile: ~20% of PostgreSQL's CPU during a fleet load).
/// Without it only the primary key (company_id, agent_id, …) fits.
pub(crate) const COUNTERS_FROM_FINDINGS: &str =
    "(open_critical, open_high, open_medium, open_low, \
     open_unknown, open_kev, open_fixable) = (SELECT \
     count(*) FILTER (WHERE f.resolved_at IS NULL AND f.severity = 5), \
     count(*) FILTER (WHERE f.resolved_at IS NULL AND f.severity = 4), \
     count(*) FILTER (WHERE f.resolved_at IS NULL AND f.severity = 3), \
     count(*) FILTER (WHERE f.resolved_at IS NULL AND f.severity = 2), \
     count(*) FILTER (WHERE f.resolved_at IS NULL AND f.severity <= 1), \
     count(*) FILTER (WHERE f.resolved_at IS NULL AND f.kev), \
     count(*) FILTER (WHERE f.resolved_at IS NULL AND f.fixable) \
     FROM findings f WHERE f.company_id = a.company_id AND f.agent_id = a.agent_id)";

/// PostgreSQL text cannot hold NUL; advisory text is the one place it could come from.
pub(crate) fn pg_text(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains('\0') {
        std::borrow::Cow::Owned(s.replace('\0', "\u{fffd}"))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

/// The agent row as the batch found (and then changed) it.
struct AgentState {
    stored_at: Option<DateTime<Utc>>,
    inventory: Option<Vec<u8>>,
    app_count: i32,
}

impl PgStore {
    pub(crate) async fn finish_batch_impl(
        &self,
        batch: &ProcessedBatch,
    ) -> Result<Vec<ReportOutcome>> {
        let now = batch.now;
        let mut tx = self.pool.begin().await?;

        // The leases first (queue rows in id order): a claimer skips locked rows, so nobody
        // takes over a lease while its batch is being written.
        let mut leases: Vec<&LeaseRef> = batch.reports.iter().map(|r| &r.lease).collect();
        leases.sort_by_key(|l| l.queue_id);
        let ids: Vec<i64> = leases.iter().map(|l| l.queue_id).collect();
        let owners: Vec<&str> = leases.iter().map(|l| l.owner.as_str()).collect();
        let attempts: Vec<i32> = leases.iter().map(|l| to_i32(l.attempts)).collect();
        let ours: HashSet<i64> = if ids.is_empty() {
            HashSet::new()
        } else {
            sqlx::query_scalar::<_, i64>(
                "SELECT q.queue_id FROM queue q \
                 JOIN unnest($1::bigint[], $2::text[], $3::int[]) AS l(id, owner, attempts) \
                   ON q.queue_id = l.id \
                 WHERE q.state = 'leased' AND q.lease_owner = l.owner AND q.attempts = l.attempts \
                 ORDER BY q.queue_id FOR UPDATE OF q",
            )
            .bind(&ids)
            .bind(&owners)
            .bind(&attempts)
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .collect()
        };

        insert_new_software(&mut tx, &batch.software, batch.revision, now).await?;

        // Per company (in id order), its agents locked in id order, each agent's reports
        // oldest first so that the newest inventory is the one left stored.
        let mut by_company: BTreeMap<CompanyId, Vec<usize>> = BTreeMap::new();
        for (i, r) in batch.reports.iter().enumerate() {
            by_company.entry(r.company_id).or_default().push(i);
        }
        let mut outcomes = vec![ReportOutcome::LeaseLost; batch.reports.len()];
        let mut done_queue: Vec<i64> = Vec::new();
        let mut scope = CompanyScope::new();
        for (company_id, mut idx) in by_company {
            idx.retain(|&i| ours.contains(&batch.reports[i].lease.queue_id));
            if idx.is_empty() {
                continue;
            }
            idx.sort_by_key(|&i| {
                let r = &batch.reports[i];
                (r.agent_id, r.collected_at)
            });
            scope.enter(&mut tx, company_id).await?;
            let mut agent_ids: Vec<Uuid> = idx.iter().map(|&i| batch.reports[i].agent_id).collect();
            agent_ids.dedup();
            let rows = sqlx::query(
                "SELECT agent_id, inventory_collected_at, inventory, app_count FROM agents \
                 WHERE company_id = $1 AND agent_id = ANY($2) ORDER BY agent_id FOR UPDATE",
            )
            .bind(company_id)
            .bind(&agent_ids)
            .fetch_all(&mut *tx)
            .await?;
            let mut agents: HashMap<AgentId, AgentState> = HashMap::with_capacity(rows.len());
            for row in rows {
                agents.insert(
                    row.try_get(0)?,
                    AgentState {
                        stored_at: row.try_get(1)?,
                        inventory: row.try_get(2)?,
                        app_count: row.try_get(3)?,
                    },
                );
            }
            let mut report_ids: Vec<Uuid> = Vec::with_capacity(idx.len());
            let mut report_outcomes: Vec<&str> = Vec::with_capacity(idx.len());
            for i in idx {
                let r = &batch.reports[i];
                let outcome = match agents.get_mut(&r.agent_id) {
                    // The agent is gone: nothing to apply the report to.
                    None => ReportOutcome::Stale,
                    Some(agent) if agent.stored_at.is_some_and(|at| at > r.collected_at) => {
                        ReportOutcome::Stale
                    }
                    Some(agent) => apply_report(&mut tx, r, agent, now).await?,
                };
                outcomes[i] = outcome;
                done_queue.push(r.lease.queue_id);
                report_ids.push(r.report_id);
                report_outcomes.push(match outcome {
                    ReportOutcome::Applied { .. } => "applied",
                    _ => "stale",
                });
            }
            sqlx::query(
                "UPDATE reports r SET status = 'done', outcome = u.outcome, processed_at = $2, \
                 body = NULL, error = NULL \
                 FROM unnest($3::uuid[], $4::text[]) AS u(report_id, outcome) \
                 WHERE r.company_id = $1 AND r.report_id = u.report_id",
            )
            .bind(company_id)
            .bind(now)
            .bind(&report_ids)
            .bind(&report_outcomes)
            .execute(&mut *tx)
            .await?;
        }
        if !done_queue.is_empty() {
            sqlx::query(
                "UPDATE queue SET state = 'done', finished_at = $2, lease_owner = NULL \
                 WHERE queue_id = ANY($1)",
            )
            .bind(&done_queue)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(outcomes)
    }

    pub(crate) async fn unmatched_software_impl(
        &self,
        keys: &[SoftwareKey],
    ) -> Result<Vec<SoftwareKey>> {
        let mut unknown = Vec::new();
        for chunk in keys.chunks(10_000) {
            let ids: Vec<Uuid> = chunk.iter().map(key_uuid).collect();
            let known: Vec<Uuid> = sqlx::query_scalar(
                "SELECT software_key FROM software WHERE software_key = ANY($1)",
            )
            .bind(&ids)
            .fetch_all(&self.pool)
            .await?;
            let known: HashSet<Uuid> = known.into_iter().collect();
            unknown.extend(
                chunk
                    .iter()
                    .filter(|k| !known.contains(&key_uuid(k)))
                    .copied(),
            );
        }
        Ok(unknown)
    }
}

/// Inserts software never seen before with its match results. Software another worker inserted
/// meanwhile keeps that worker's results (both came from a current index; any older revision
/// is brought up to date by the rematch). Rows go in key order: concurrent batches that share
/// new software wait for each other instead of deadlocking.
pub(crate) async fn insert_new_software(
    tx: &mut Tx,
    software: &[MatchedSoftware],
    revision: u64,
    now: DateTime<Utc>,
) -> Result<()> {
    if software.is_empty() {
        return Ok(());
    }
    let revision = i64::try_from(revision).unwrap_or(i64::MAX);
    let mut sorted: Vec<&MatchedSoftware> = software.iter().collect();
    sorted.sort_by_key(|m| m.key);
    sorted.dedup_by_key(|m| m.key);
    let keys: Vec<Uuid> = sorted.iter().map(|m| key_uuid(&m.key)).collect();
    let col = |f: fn(&zt_inventory::Software) -> &str| -> Vec<&str> {
        sorted.iter().map(|m| f(&m.software)).collect()
    };
    let opt = |f: fn(&zt_inventory::Software) -> Option<&str>| -> Vec<Option<&str>> {
        sorted.iter().map(|m| f(&m.software)).collect()
    };
    let inserted: Vec<Uuid> = sqlx::query_scalar(
        "INSERT INTO software (software_key, ecosystem, name, version, source, source_name, \
         source_version, vendor, purl, cpe, matched_revision, created_at) \
         SELECT k, e, n, v, s, sn, sv, vd, p, c, $11, $12 \
         FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
                     $7::text[], $8::text[], $9::text[], $10::text[]) WITH ORDINALITY \
            AS t(k, e, n, v, s, sn, sv, vd, p, c, ord) \
         ORDER BY ord \
         ON CONFLICT (software_key) DO NOTHING RETURNING software_key",
    )
    .bind(&keys)
    .bind(col(|s| &s.ecosystem))
    .bind(col(|s| &s.name))
    .bind(col(|s| &s.version))
    .bind(col(|s| s.source.as_str()))
    .bind(opt(|s| s.source_name.as_deref()))
    .bind(opt(|s| s.source_version.as_deref()))
    .bind(opt(|s| s.vendor.as_deref()))
    .bind(opt(|s| s.purl.as_deref()))
    .bind(opt(|s| s.cpe.as_deref()))
    .bind(revision)
    .bind(now)
    .fetch_all(&mut **tx)
    .await?;
    let inserted: HashSet<Uuid> = inserted.into_iter().collect();
    let fresh: Vec<&MatchedSoftware> = sorted
        .into_iter()
        .filter(|m| inserted.contains(&key_uuid(&m.key)))
        .collect();
    write_matches(tx, &fresh, revision).await
}

/// Writes the cached matches of these software versions and upserts their vulnerabilities.
pub(crate) async fn write_matches(
    tx: &mut Tx,
    software: &[&MatchedSoftware],
    revision: i64,
) -> Result<()> {
    let mut pairs: Vec<(Uuid, &StoredMatch)> = software
        .iter()
        .flat_map(|m| m.matches.iter().map(move |x| (key_uuid(&m.key), x)))
        .collect();
    if pairs.is_empty() {
        return Ok(());
    }
    pairs.sort_by(|a, b| (a.0, &a.1.vulnerability.id).cmp(&(b.0, &b.1.vulnerability.id)));
    pairs.dedup_by(|a, b| a.0 == b.0 && a.1.vulnerability.id == b.1.vulnerability.id);
    let keys: Vec<Uuid> = pairs.iter().map(|p| p.0).collect();
    let ids: Vec<&str> = pairs
        .iter()
        .map(|p| p.1.vulnerability.id.as_str())
        .collect();
    // Arrays of arrays must be rectangular in PostgreSQL: fixed versions travel as JSON.
    let fixed: Vec<String> = pairs
        .iter()
        .map(|p| json_list(&p.1.fixed_versions))
        .collect();
    let sev: Vec<i16> = pairs
        .iter()
        .map(|p| severity_rank(p.1.vulnerability.severity))
        .collect();
    let kev: Vec<bool> = pairs.iter().map(|p| p.1.vulnerability.kev).collect();
    let fixable: Vec<bool> = pairs
        .iter()
        .map(|p| !p.1.fixed_versions.is_empty())
        .collect();
    let method: Vec<&str> = pairs.iter().map(|p| p.1.method.as_str()).collect();
    let confidence: Vec<&str> = pairs.iter().map(|p| p.1.confidence.as_str()).collect();
    sqlx::query(
        "INSERT INTO software_vulns (software_key, vuln_id, fixed_versions, severity, kev, fixable, \
         method, confidence) \
         SELECT k, id, ARRAY(SELECT jsonb_array_elements_text(fx::jsonb)), sev, kev, fixable, m, c \
         FROM unnest($1::uuid[], $2::text[], $3::text[], $4::smallint[], $5::bool[], $6::bool[], \
                     $7::text[], $8::text[]) WITH ORDINALITY AS t(k, id, fx, sev, kev, fixable, m, c, ord) \
         ORDER BY ord \
         ON CONFLICT (software_key, vuln_id) DO UPDATE SET fixed_versions = excluded.fixed_versions, \
         severity = excluded.severity, kev = excluded.kev, fixable = excluded.fixable, \
         method = excluded.method, confidence = excluded.confidence",
    )
    .bind(&keys)
    .bind(&ids)
    .bind(&fixed)
    .bind(&sev)
    .bind(&kev)
    .bind(&fixable)
    .bind(&method)
    .bind(&confidence)
    .execute(&mut **tx)
    .await?;

    let (mut vulns, mut aliases) = distinct_vulns(pairs.iter().map(|p| p.1));
    vulns.sort_by(|a, b| a.id.cmp(&b.id));
    aliases.sort();
    aliases.dedup();
    let v_ids: Vec<&str> = vulns.iter().map(|v| v.id.as_str()).collect();
    let v_aliases: Vec<String> = vulns.iter().map(|v| json_list(&v.aliases)).collect();
    let v_summary: Vec<String> = vulns
        .iter()
        .map(|v| pg_text(&v.summary).into_owned())
        .collect();
    let v_sev: Vec<i16> = vulns.iter().map(|v| severity_rank(v.severity)).collect();
    let cv: Vec<Option<&str>> = vulns
        .iter()
        .map(|v| v.cvss.as_ref().map(|c| c.version.as_str()))
        .collect();
    let cvec: Vec<Option<&str>> = vulns
        .iter()
        .map(|v| v.cvss.as_ref().map(|c| c.vector.as_str()))
        .collect();
    let cs: Vec<Option<f64>> = vulns
        .iter()
        .map(|v| v.cvss.as_ref().map(|c| c.score))
        .collect();
    let v_kev: Vec<bool> = vulns.iter().map(|v| v.kev).collect();
    let due: Vec<Option<&str>> = vulns.iter().map(|v| v.kev_due_date.as_deref()).collect();
    let epss: Vec<Option<f64>> = vulns.iter().map(|v| v.epss).collect();
    let pct: Vec<Option<f64>> = vulns.iter().map(|v| v.epss_percentile).collect();
    let info: Vec<bool> = vulns.iter().map(|v| v.informational).collect();
    sqlx::query(
        "INSERT INTO vulns (vuln_id, aliases, summary, severity, cvss_version, cvss_vector, cvss_score, \
         kev, kev_due_date, epss, epss_percentile, informational, revision) \
         SELECT id, ARRAY(SELECT jsonb_array_elements_text(al::jsonb)), su, sev, cv, cvec, cs, kev, due, \
         epss, pct, info, $13 \
         FROM unnest($1::text[], $2::text[], $3::text[], $4::smallint[], $5::text[], $6::text[], \
                     $7::float8[], $8::bool[], $9::text[], $10::float8[], $11::float8[], $12::bool[]) \
            WITH ORDINALITY AS t(id, al, su, sev, cv, cvec, cs, kev, due, epss, pct, info, ord) \
         ORDER BY ord \
         ON CONFLICT (vuln_id) DO UPDATE SET aliases = excluded.aliases, summary = excluded.summary, \
         severity = excluded.severity, cvss_version = excluded.cvss_version, \
         cvss_vector = excluded.cvss_vector, cvss_score = excluded.cvss_score, kev = excluded.kev, \
         kev_due_date = excluded.kev_due_date, epss = excluded.epss, \
         epss_percentile = excluded.epss_percentile, informational = excluded.informational, \
         revision = excluded.revision WHERE excluded.revision >= vulns.revision",
    )
    .bind(&v_ids)
    .bind(&v_aliases)
    .bind(&v_summary)
    .bind(&v_sev)
    .bind(&cv)
    .bind(&cvec)
    .bind(&cs)
    .bind(&v_kev)
    .bind(&due)
    .bind(&epss)
    .bind(&pct)
    .bind(&info)
    .bind(revision)
    .execute(&mut **tx)
    .await?;
    if !aliases.is_empty() {
        let a: Vec<&str> = aliases.iter().map(|x| x.0).collect();
        let v: Vec<&str> = aliases.iter().map(|x| x.1).collect();
        sqlx::query(
            "INSERT INTO vuln_aliases (alias, vuln_id) SELECT a, v \
             FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS t(a, v, ord) ORDER BY ord \
             ON CONFLICT DO NOTHING",
        )
        .bind(&a)
        .bind(&v)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

async fn apply_report(
    tx: &mut Tx,
    r: &ProcessedReport,
    agent: &mut AgentState,
    now: DateTime<Utc>,
) -> Result<ReportOutcome> {
    // The stored inventory and the package of each stored software version.
    let old = match agent.inventory.as_deref().map(decode_inventory) {
        Some(Ok(decoded)) => decoded,
        _ if agent.app_count == 0 => (HashSet::new(), HashMap::new()),
        _ => load_inventory(tx, r).await?,
    };
    let mut diff = InventoryDiff::new(old, r);
    // Rows in key order: concurrent writers lock them in one order.
    diff.sort();
    let InventoryDiff {
        deleted,
        inserted,
        removed_sw,
        added_sw,
        ..
    } = &diff;

    if !deleted.is_empty() {
        let keys: Vec<Uuid> = deleted.iter().map(|(k, _)| key_uuid(k)).collect();
        let arch: Vec<&str> = deleted.iter().map(|(_, a)| a.as_str()).collect();
        // Kept as removed for the retention period (history of what was installed).
        sqlx::query(
            "UPDATE apps SET removed_at = $3 \
             FROM unnest($4::uuid[], $5::text[]) AS d(software_key, arch) \
             WHERE apps.company_id = $1 AND apps.agent_id = $2 AND apps.software_key = d.software_key \
             AND apps.arch = d.arch AND apps.removed_at IS NULL",
        )
        .bind(r.company_id)
        .bind(r.agent_id)
        .bind(now)
        .bind(&keys)
        .bind(&arch)
        .execute(&mut **tx)
        .await?;
    }
    if !inserted.is_empty() {
        let keys: Vec<Uuid> = inserted.iter().map(|(k, _)| key_uuid(k)).collect();
        let arch: Vec<&str> = inserted.iter().map(|(_, a)| a.as_str()).collect();
        sqlx::query(
            "INSERT INTO apps (company_id, agent_id, software_key, arch, first_seen) \
             SELECT $1, $2, k, a, $3 FROM unnest($4::uuid[], $5::text[]) AS t(k, a) \
             ON CONFLICT (company_id, agent_id, software_key, arch) DO UPDATE SET \
             removed_at = NULL, first_seen = excluded.first_seen WHERE apps.removed_at IS NOT NULL",
        )
        .bind(r.company_id)
        .bind(r.agent_id)
        .bind(now)
        .bind(&keys)
        .bind(&arch)
        .execute(&mut **tx)
        .await?;
    }
    if !removed_sw.is_empty() {
        let keys: Vec<Uuid> = removed_sw.iter().map(key_uuid).collect();
        sqlx::query(
            "UPDATE findings SET resolved_at = $3, resolution = 'removed' \
             WHERE company_id = $1 AND agent_id = $2 AND resolved_at IS NULL \
             AND software_key = ANY($4)",
        )
        .bind(r.company_id)
        .bind(r.agent_id)
        .bind(now)
        .bind(&keys)
        .execute(&mut **tx)
        .await?;
    }
    if !added_sw.is_empty() {
        let keys: Vec<Uuid> = added_sw.iter().map(key_uuid).collect();
        sqlx::query(
            "INSERT INTO findings (company_id, agent_id, software_key, vuln_id, severity, kev, fixable, first_seen) \
             SELECT $1, $2, sv.software_key, sv.vuln_id, sv.severity, sv.kev, sv.fixable, $3 \
             FROM software_vulns sv WHERE sv.software_key = ANY($4) \
             ORDER BY sv.software_key, sv.vuln_id \
             ON CONFLICT (company_id, agent_id, software_key, vuln_id) DO UPDATE SET \
             resolved_at = NULL, resolution = NULL, severity = excluded.severity, kev = excluded.kev, \
             fixable = excluded.fixable",
        )
        .bind(r.company_id)
        .bind(r.agent_id)
        .bind(now)
        .bind(&keys)
        .execute(&mut **tx)
        .await?;
    }
    if !diff.changed_pkgs.is_empty() {
        carry_over_findings(tx, r, now, &diff).await?;
    }

    let app_count = i32::try_from(diff.new_apps.len()).unwrap_or(i32::MAX);
    let inventory = diff.encoded();
    // The counters only move when findings did.
    let sql = format!(
        "UPDATE agents a SET hostname = $3, os_id = $4, os_version_id = $5, os_name = $6, arch = $7, \
         inventory_digest = $8, inventory_collected_at = $9, last_report_at = $10, app_count = $11, \
         inventory = $12{} WHERE a.company_id = $1 AND a.agent_id = $2",
        if diff.findings_changed() {
            format!(", {COUNTERS_FROM_FINDINGS}")
        } else {
            String::new()
        }
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(r.company_id)
        .bind(r.agent_id)
        .bind(&r.hostname)
        .bind(&r.os.id)
        .bind(&r.os.version_id)
        .bind(&r.os.name)
        .bind(&r.arch)
        .bind(&r.digest[..])
        .bind(r.collected_at)
        .bind(now)
        .bind(app_count)
        .bind(&inventory)
        .execute(&mut **tx)
        .await?;
    agent.stored_at = Some(r.collected_at);
    agent.app_count = app_count;
    agent.inventory = Some(inventory);
    Ok(diff.outcome())
}

/// The findings of changed packages (see `plan_carry_over`), in bulk.
async fn carry_over_findings(
    tx: &mut Tx,
    r: &ProcessedReport,
    now: DateTime<Utc>,
    diff: &InventoryDiff,
) -> Result<()> {
    let old_keys: Vec<Uuid> = diff.changed_old_keys().map(key_uuid).collect();
    let new_keys: Vec<Uuid> = diff.changed_new_keys().map(key_uuid).collect();
    let old_rows = sqlx::query(
        "SELECT software_key, vuln_id, first_seen FROM findings \
         WHERE company_id = $1 AND agent_id = $2 AND resolved_at = $3 AND resolution = 'removed' \
         AND software_key = ANY($4)",
    )
    .bind(r.company_id)
    .bind(r.agent_id)
    .bind(now)
    .bind(&old_keys)
    .fetch_all(&mut **tx)
    .await?;
    if old_rows.is_empty() {
        return Ok(());
    }
    let new_rows = sqlx::query(
        "SELECT software_key, vuln_id, first_seen FROM findings \
         WHERE company_id = $1 AND agent_id = $2 AND resolved_at IS NULL \
         AND software_key = ANY($3)",
    )
    .bind(r.company_id)
    .bind(r.agent_id)
    .bind(&new_keys)
    .fetch_all(&mut **tx)
    .await?;
    let seen = |rows: Vec<PgRow>| -> Result<Vec<(SoftwareKey, String, DateTime<Utc>)>> {
        rows.iter()
            .map(|row| Ok((uuid_key(row.try_get(0)?), row.try_get(1)?, row.try_get(2)?)))
            .collect()
    };
    let plan = plan_carry_over(diff, seen(old_rows)?, seen(new_rows)?);
    let (first_seen_updates, resolutions) = (plan.first_seen, plan.resolutions);
    if !first_seen_updates.is_empty() {
        let keys: Vec<Uuid> = first_seen_updates.iter().map(|u| key_uuid(&u.0)).collect();
        let vulns: Vec<&str> = first_seen_updates.iter().map(|u| u.1.as_str()).collect();
        let seen: Vec<DateTime<Utc>> = first_seen_updates.iter().map(|u| u.2).collect();
        sqlx::query(
            "UPDATE findings f SET first_seen = least(f.first_seen, u.first_seen) \
             FROM unnest($3::uuid[], $4::text[], $5::timestamptz[]) AS u(software_key, vuln_id, first_seen) \
             WHERE f.company_id = $1 AND f.agent_id = $2 AND f.software_key = u.software_key \
             AND f.vuln_id = u.vuln_id",
        )
        .bind(r.company_id)
        .bind(r.agent_id)
        .bind(&keys)
        .bind(&vulns)
        .bind(&seen)
        .execute(&mut **tx)
        .await?;
    }
    let keys: Vec<Uuid> = resolutions.iter().map(|u| key_uuid(&u.0)).collect();
    let vulns: Vec<&str> = resolutions.iter().map(|u| u.1.as_str()).collect();
    let how: Vec<&str> = resolutions.iter().map(|u| u.2).collect();
    sqlx::query(
        "UPDATE findings f SET resolution = u.resolution \
         FROM unnest($3::uuid[], $4::text[], $5::text[]) AS u(software_key, vuln_id, resolution) \
         WHERE f.company_id = $1 AND f.agent_id = $2 AND f.software_key = u.software_key \
         AND f.vuln_id = u.vuln_id",
    )
    .bind(r.company_id)
    .bind(r.agent_id)
    .bind(&keys)
    .bind(&vulns)
    .bind(&how)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The stored inventory from the app rows (when the compact form is missing or damaged).
async fn load_inventory(tx: &mut Tx, r: &ProcessedReport) -> Result<Inventory> {
    let rows = sqlx::query(
        "SELECT a.software_key, a.arch, s.ecosystem, s.name FROM apps a \
         JOIN software s ON s.software_key = a.software_key \
         WHERE a.company_id = $1 AND a.agent_id = $2 AND a.removed_at IS NULL",
    )
    .bind(r.company_id)
    .bind(r.agent_id)
    .fetch_all(&mut **tx)
    .await?;
    let mut apps = HashSet::with_capacity(rows.len());
    let mut pkg = HashMap::with_capacity(rows.len());
    for row in &rows {
        let key = uuid_key(row.try_get(0)?);
        apps.insert((key, row.try_get::<String, _>(1)?));
        let package = format!(
            "{}\u{0}{}",
            row.try_get::<&str, _>(2)?,
            row.try_get::<&str, _>(3)?
        );
        pkg.insert(key, package_id(&package));
    }
    Ok((apps, pkg))
}

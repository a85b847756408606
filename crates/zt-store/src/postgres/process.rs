//! Writing a processed batch: new software with its matches, then each company's reports
//! (see `apply.rs`), the report rows and queue entries, all in the batch's one transaction.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use uuid::Uuid;
use zt_inventory::SoftwareKey;

use super::apply::{apply_company, write_company_software};
use super::events::{append_in_tx, load_packages};
use super::queue::CompanyScope;
use super::{key_uuid, severity_rank, to_i32, PgStore, Tx};
use crate::common::events::{processed_report_events, NetChanges};
use crate::common::inventory::distinct_vulns;
use crate::common::json_list;
use crate::common::rollup::RollupDelta;
use crate::model::*;
use crate::Result;

/// Recomputes the open-finding counters of the agent(s) the WHERE clause picks from their
/// findings; appended to an `UPDATE agents a SET …` statement.
///
/// Findings an analysis suppresses are not counted.
///
/// "Open" is tested in the FILTERs, not in the WHERE clause: with `resolved_at IS NULL` there,
/// the planner may read the agent's rows from the partial index `findings_open`, whose leading
/// columns after company_id are severity and vuln_id — a pass over every open finding of the
/// company for each report (seen in a profile: ~20% of PostgreSQL's CPU during a fleet load).
/// Without it only the primary key (company_id, agent_id, …) fits.
pub(crate) const COUNTERS_FROM_FINDINGS: &str =
    "(open_critical, open_high, open_medium, open_low, \
     open_unknown, open_kev, open_fixable) = (SELECT \
     count(*) FILTER (WHERE f.resolved_at IS NULL AND NOT f.suppressed AND f.severity = 5), \
     count(*) FILTER (WHERE f.resolved_at IS NULL AND NOT f.suppressed AND f.severity = 4), \
     count(*) FILTER (WHERE f.resolved_at IS NULL AND NOT f.suppressed AND f.severity = 3), \
     count(*) FILTER (WHERE f.resolved_at IS NULL AND NOT f.suppressed AND f.severity = 2), \
     count(*) FILTER (WHERE f.resolved_at IS NULL AND NOT f.suppressed AND f.severity <= 1), \
     count(*) FILTER (WHERE f.resolved_at IS NULL AND NOT f.suppressed AND f.kev), \
     count(*) FILTER (WHERE f.resolved_at IS NULL AND NOT f.suppressed AND f.fixable) \
     FROM findings f WHERE f.company_id = a.company_id AND f.agent_id = a.agent_id)";

/// PostgreSQL text cannot hold NUL; advisory text is the one place it could come from.
pub(crate) fn pg_text(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains('\0') {
        std::borrow::Cow::Owned(s.replace('\0', "\u{fffd}"))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
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

        // Per company, in id order (the lock order every writer uses).
        let mut by_company: BTreeMap<CompanyId, Vec<usize>> = BTreeMap::new();
        for (i, r) in batch.reports.iter().enumerate() {
            by_company.entry(r.company_id).or_default().push(i);
        }
        let mut outcomes = vec![ReportOutcome::LeaseLost; batch.reports.len()];
        let mut done_queue: Vec<i64> = Vec::new();
        let mut changes: HashMap<usize, NetChanges> = HashMap::new();
        let mut software_hosts: Vec<(CompanyId, HashMap<SoftwareKey, i64>, RollupDelta)> =
            Vec::new();
        let mut scope = CompanyScope::new();
        for (company_id, mut idx) in by_company {
            idx.retain(|&i| ours.contains(&batch.reports[i].lease.queue_id));
            if idx.is_empty() {
                continue;
            }
            scope.enter(&mut tx, company_id).await?;
            let applied = apply_company(&mut tx, company_id, batch, &idx, self.is_citus()).await?;
            for (&i, outcome) in idx.iter().zip(applied.outcomes) {
                outcomes[i] = outcome;
                done_queue.push(batch.reports[i].lease.queue_id);
            }
            changes.extend(applied.changes);
            software_hosts.push((company_id, applied.software_hosts, applied.rollup));
        }
        // Companies in id order, keys in order: concurrent batches lock these rows in one
        // order, and only from here to the commit.
        for (company_id, deltas, rollup) in &software_hosts {
            scope.enter(&mut tx, *company_id).await?;
            write_company_software(&mut tx, *company_id, deltas).await?;
            super::rollup::write_delta(&mut tx, *company_id, rollup).await?;
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
        // The settled reports' events, last (see `events.rs`).
        let mut keys: Vec<SoftwareKey> = changes.values().flat_map(|c| c.listed_keys()).collect();
        keys.sort();
        keys.dedup();
        let packages = load_packages(&mut tx, &keys).await?;
        let none = NetChanges::default();
        let mut events = Vec::new();
        for (i, outcome) in outcomes.iter().enumerate() {
            let label = match outcome {
                ReportOutcome::Applied { .. } => "applied",
                ReportOutcome::Stale => "stale",
                ReportOutcome::LeaseLost => continue,
            };
            let changed = changes.get(&i).unwrap_or(&none);
            events.extend(processed_report_events(
                &batch.reports[i],
                label,
                changed,
                &packages,
            ));
        }
        // Notifications of the opened findings, in this transaction (issue 14).
        let opened = changes.iter().flat_map(|(&i, c)| {
            let r = &batch.reports[i];
            c.opened.iter().map(move |f| (r.company_id, r.agent_id, f))
        });
        super::notify::opened_in_tx(&mut tx, &mut scope, opened.collect(), &packages, now).await?;
        append_in_tx(&mut tx, &mut scope, &events, now).await?;
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

//! Accepting reports and the queue: `FOR UPDATE SKIP LOCKED` claims with leases, priorities,
//! retries and dead letters, shared by any number of worker processes.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use sqlx::Row;
use uuid::Uuid;

use super::{digest_from, set_company, to_i32, to_u32, to_u64, PgStore, Tx, QUEUE_CHANNEL};
use crate::common::accept::{decide, AcceptInput, AcceptedState};
use crate::common::queue::{poison_error, ClaimBudget};
use crate::model::*;
use crate::Result;

/// Queue entries looked at (and row-locked) per claim, whatever their app counts. Entries
/// locked but not taken are unlocked at commit, a few milliseconds later.
const CLAIM_SCAN_LIMIT: i64 = 32;

/// `done` entries counted exactly up to this many; beyond it `QueueStats::done` is a lower
/// bound (counting a day of finished entries every few seconds would cost more than it tells).
const DONE_COUNT_CAP: i64 = 100_000;

/// Rows deleted per retention transaction: short transactions never hold up ingest.
pub(crate) const PURGE_BATCH: i64 = 1_000;

/// Tracks which company the transaction is scoped to, so a switch costs one statement and
/// staying costs none.
pub(crate) struct CompanyScope {
    current: Option<CompanyId>,
}

impl CompanyScope {
    pub(crate) fn new() -> Self {
        CompanyScope { current: None }
    }

    pub(crate) async fn enter(&mut self, tx: &mut Tx, company_id: CompanyId) -> Result<()> {
        if self.current != Some(company_id) {
            set_company(tx, company_id).await?;
            self.current = Some(company_id);
        }
        Ok(())
    }
}

/// One agent row change: (agent, last seen, new digest, new collection time).
type AgentUpdate = (
    AgentId,
    DateTime<Utc>,
    Option<Vec<u8>>,
    Option<DateTime<Utc>>,
);

impl PgStore {
    pub(crate) async fn accept_reports_impl(
        &self,
        reports: &[IncomingReport],
        queue_bound: u64,
    ) -> Result<Vec<AcceptOutcome>> {
        if reports.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.pool.begin().await?;
        let mut scope = CompanyScope::new();
        let pending: u64 = to_u64(
            sqlx::query_scalar("SELECT count(*) FROM queue WHERE state IN ('queued', 'leased')")
                .fetch_one(&mut *tx)
                .await?,
        );

        // Companies in id order and their agents in id order: the lock order every writer uses.
        let mut by_company: BTreeMap<CompanyId, Vec<usize>> = BTreeMap::new();
        for (i, r) in reports.iter().enumerate() {
            by_company.entry(r.company_id).or_default().push(i);
        }
        let mut agents: HashMap<(CompanyId, AgentId), AcceptedState> = HashMap::new();
        let mut existing: HashMap<(CompanyId, ReportId), AgentId> = HashMap::new();
        for (&company_id, idx) in &by_company {
            scope.enter(&mut tx, company_id).await?;
            let mut agent_ids: Vec<AgentId> = idx.iter().map(|&i| reports[i].agent_id).collect();
            agent_ids.sort();
            agent_ids.dedup();
            // Locked first, so that a concurrent group commit of the same agent (another API
            // process) is serialized before the duplicate and "unchanged" checks below.
            let rows = sqlx::query(
                "SELECT agent_id, accepted_digest, accepted_collected_at FROM agents \
                 WHERE company_id = $1 AND agent_id = ANY($2) ORDER BY agent_id FOR UPDATE",
            )
            .bind(company_id)
            .bind(&agent_ids)
            .fetch_all(&mut *tx)
            .await?;
            for row in rows {
                agents.insert(
                    (company_id, row.try_get(0)?),
                    AcceptedState {
                        digest: row.try_get(1)?,
                        collected_at: row.try_get(2)?,
                        update: None,
                    },
                );
            }
            let report_ids: Vec<Uuid> = idx.iter().map(|&i| reports[i].report_id).collect();
            let rows = sqlx::query(
                "SELECT report_id, agent_id FROM reports WHERE company_id = $1 AND report_id = ANY($2)",
            )
            .bind(company_id)
            .bind(&report_ids)
            .fetch_all(&mut *tx)
            .await?;
            for row in rows {
                existing.insert((company_id, row.try_get(0)?), row.try_get(1)?);
            }
        }

        let mut input = AcceptInput {
            reports,
            existing,
            agents,
            pending,
            queue_bound,
        };
        let mut decisions = decide(&mut input);
        let agents = input.agents;

        // Write per company: report rows (queued ones with their body, unchanged ones done at
        // once) and the agents' accepted state.
        for (&company_id, idx) in by_company.iter().rev() {
            let stored: Vec<usize> = idx
                .iter()
                .copied()
                .filter(|&i| {
                    matches!(
                        decisions[i],
                        AcceptOutcome::Queued | AcceptOutcome::Unchanged
                    )
                })
                .collect();
            let mut updates: Vec<AgentUpdate> = Vec::new();
            for (&(c, a), state) in &agents {
                if c != company_id {
                    continue;
                }
                if let Some(u) = &state.update {
                    let (digest, collected) = u.newest.unzip();
                    updates.push((a, u.seen, digest.map(|d| d.to_vec()), collected));
                }
            }
            if stored.is_empty() && updates.is_empty() {
                continue;
            }
            scope.enter(&mut tx, company_id).await?;
            if !stored.is_empty() {
                let inserted =
                    insert_reports(&mut tx, company_id, reports, &decisions, &stored).await?;
                // Only a race with another process on the same report id can leave one out.
                for &i in &stored {
                    if !inserted.contains(&reports[i].report_id) {
                        decisions[i] = AcceptOutcome::Duplicate;
                    }
                }
            }
            if !updates.is_empty() {
                updates.sort_by_key(|u| u.0);
                let ids: Vec<AgentId> = updates.iter().map(|u| u.0).collect();
                let seen: Vec<DateTime<Utc>> = updates.iter().map(|u| u.1).collect();
                let digests: Vec<Option<Vec<u8>>> = updates.iter().map(|u| u.2.clone()).collect();
                let collected: Vec<Option<DateTime<Utc>>> = updates.iter().map(|u| u.3).collect();
                sqlx::query(
                    "UPDATE agents a SET last_seen_at = u.seen, \
                     accepted_digest = coalesce(u.digest, a.accepted_digest), \
                     accepted_collected_at = coalesce(u.collected, a.accepted_collected_at) \
                     FROM unnest($2::uuid[], $3::timestamptz[], $4::bytea[], $5::timestamptz[]) \
                        AS u(agent_id, seen, digest, collected) \
                     WHERE a.company_id = $1 AND a.agent_id = u.agent_id",
                )
                .bind(company_id)
                .bind(&ids)
                .bind(&seen)
                .bind(&digests)
                .bind(&collected)
                .execute(&mut *tx)
                .await?;
            }
        }

        // The queue entries, in arrival order (ids ascend with it).
        let queued: Vec<&IncomingReport> = reports
            .iter()
            .zip(&decisions)
            .filter(|(_, d)| **d == AcceptOutcome::Queued)
            .map(|(r, _)| r)
            .collect();
        if !queued.is_empty() {
            let companies: Vec<CompanyId> = queued.iter().map(|r| r.company_id).collect();
            let report_ids: Vec<Uuid> = queued.iter().map(|r| r.report_id).collect();
            let agent_ids: Vec<AgentId> = queued.iter().map(|r| r.agent_id).collect();
            let app_counts: Vec<i32> = queued.iter().map(|r| to_i32(r.app_count)).collect();
            let collected: Vec<DateTime<Utc>> = queued.iter().map(|r| r.collected_at).collect();
            let accepted: Vec<DateTime<Utc>> = queued.iter().map(|r| r.accepted_at).collect();
            sqlx::query(
                "INSERT INTO queue (company_id, report_id, agent_id, app_count, collected_at, state, \
                 visible_at, enqueued_at) \
                 SELECT c, r, a, n, col, 'queued', acc, acc \
                 FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::int[], $5::timestamptz[], \
                             $6::timestamptz[]) WITH ORDINALITY AS t(c, r, a, n, col, acc, ord) \
                 ORDER BY ord",
            )
            .bind(&companies)
            .bind(&report_ids)
            .bind(&agent_ids)
            .bind(&app_counts)
            .bind(&collected)
            .bind(&accepted)
            .execute(&mut *tx)
            .await?;
            // Delivered at commit: idle workers of every process wake up.
            sqlx::query("SELECT pg_notify($1, '')")
                .bind(QUEUE_CHANNEL)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(decisions)
    }

    pub(crate) async fn claim_batch_impl(&self, req: &ClaimRequest) -> Result<Vec<ClaimedReport>> {
        let now = req.now;
        let lease_until =
            now + chrono::Duration::from_std(req.lease).unwrap_or(chrono::Duration::seconds(3600));
        let overdue_before = now
            - chrono::Duration::from_std(req.overdue_after).unwrap_or(chrono::Duration::days(3650));
        let mut tx = self.pool.begin().await?;
        // Entries that waited longer than the bound first, oldest first (`queue_waiting`):
        // newest-first alone left the oldest reports of a burst waiting until it was over.
        let mut rows = sqlx::query(
            "SELECT queue_id, company_id, report_id, agent_id, app_count, attempts, state, collected_at \
             FROM queue WHERE state IN ('queued', 'leased') AND visible_at <= $1 \
             AND enqueued_at < $2 \
             ORDER BY enqueued_at, queue_id LIMIT $3 FOR UPDATE SKIP LOCKED",
        )
        .bind(now)
        .bind(overdue_before)
        .bind(CLAIM_SCAN_LIMIT)
        .fetch_all(&mut *tx)
        .await?;
        // Then the newest.
        if (rows.len() as i64) < CLAIM_SCAN_LIMIT {
            let taken: Vec<i64> = rows
                .iter()
                .map(|r| r.try_get::<i64, _>(0))
                .collect::<std::result::Result<_, _>>()?;
            rows.extend(
                sqlx::query(
                    "SELECT queue_id, company_id, report_id, agent_id, app_count, attempts, state, \
                     collected_at FROM queue WHERE state IN ('queued', 'leased') AND visible_at <= $1 \
                     AND queue_id <> ALL($3) \
                     ORDER BY priority DESC, queue_id DESC LIMIT $2 FOR UPDATE SKIP LOCKED",
                )
                .bind(now)
                .bind(CLAIM_SCAN_LIMIT - rows.len() as i64)
                .bind(&taken)
                .fetch_all(&mut *tx)
                .await?,
            );
        }
        if rows.is_empty() {
            tx.commit().await?;
            return Ok(Vec::new());
        }
        struct Entry {
            queue_id: i64,
            company_id: CompanyId,
            report_id: ReportId,
            agent_id: AgentId,
            app_count: i32,
            attempts: i32,
            leased: bool,
            collected_at: DateTime<Utc>,
        }
        let mut entries = Vec::with_capacity(rows.len());
        for row in &rows {
            entries.push(Entry {
                queue_id: row.try_get(0)?,
                company_id: row.try_get(1)?,
                report_id: row.try_get(2)?,
                agent_id: row.try_get(3)?,
                app_count: row.try_get(4)?,
                attempts: row.try_get(5)?,
                leased: row.try_get::<&str, _>(6)? == "leased",
                collected_at: row.try_get(7)?,
            });
        }

        let mut scope = CompanyScope::new();
        // Per company: when each of its agents' stored inventory was collected.
        let mut stored_at: HashMap<CompanyId, HashMap<AgentId, Option<DateTime<Utc>>>> =
            HashMap::new();
        let mut claimed: Vec<ClaimedReport> = Vec::new();
        let mut stale: Vec<(i64, CompanyId, ReportId)> = Vec::new();
        let mut budget = ClaimBudget::new(req.max_apps);
        for e in &entries {
            if e.leased && e.attempts >= to_i32(req.max_attempts) {
                let error = poison_error(e.attempts);
                dead_letter(
                    &mut tx,
                    &mut scope,
                    e.queue_id,
                    e.company_id,
                    e.report_id,
                    e.agent_id,
                    &error,
                    now,
                )
                .await?;
                continue;
            }
            if let std::collections::hash_map::Entry::Vacant(slot) = stored_at.entry(e.company_id) {
                scope.enter(&mut tx, e.company_id).await?;
                let ids: Vec<AgentId> = entries
                    .iter()
                    .filter(|x| x.company_id == e.company_id)
                    .map(|x| x.agent_id)
                    .collect();
                let rows = sqlx::query(
                    "SELECT agent_id, inventory_collected_at FROM agents \
                     WHERE company_id = $1 AND agent_id = ANY($2)",
                )
                .bind(e.company_id)
                .bind(&ids)
                .fetch_all(&mut *tx)
                .await?;
                let mut map = HashMap::new();
                for row in rows {
                    map.insert(row.try_get(0)?, row.try_get(1)?);
                }
                slot.insert(map);
            }
            let newer_stored = stored_at
                .get(&e.company_id)
                .and_then(|m| m.get(&e.agent_id))
                .and_then(|at| *at)
                .is_some_and(|at| e.collected_at < at);
            if newer_stored {
                // A newer inventory of this agent is stored already (newest-first claiming
                // overtook it): settled here, without parsing it.
                stale.push((e.queue_id, e.company_id, e.report_id));
                continue;
            }
            if !budget.take(u64::try_from(e.app_count).unwrap_or(0)) {
                break;
            }
            claimed.push(ClaimedReport {
                queue_id: e.queue_id,
                company_id: e.company_id,
                agent_id: e.agent_id,
                report_id: e.report_id,
                attempts: to_u32(e.attempts.saturating_add(1)),
                app_count: to_u32(e.app_count),
                digest: [0; 32],
                collected_at: e.collected_at,
                body: Vec::new(),
            });
            if budget.is_full() {
                break;
            }
        }

        if !stale.is_empty() {
            let ids: Vec<i64> = stale.iter().map(|s| s.0).collect();
            sqlx::query(
                "UPDATE queue SET state = 'done', finished_at = $2, lease_owner = NULL \
                 WHERE queue_id = ANY($1)",
            )
            .bind(&ids)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        if !claimed.is_empty() {
            let ids: Vec<i64> = claimed.iter().map(|c| c.queue_id).collect();
            sqlx::query(
                "UPDATE queue SET state = 'leased', attempts = attempts + 1, lease_owner = $2, \
                 visible_at = $3 WHERE queue_id = ANY($1)",
            )
            .bind(&ids)
            .bind(&req.owner)
            .bind(lease_until)
            .execute(&mut *tx)
            .await?;
        }
        // Report rows per company: stale ones settled, claimed ones marked processing (and
        // their bodies read in the same statement).
        let mut companies: Vec<CompanyId> = stale
            .iter()
            .map(|s| s.1)
            .chain(claimed.iter().map(|c| c.company_id))
            .collect();
        companies.sort();
        companies.dedup();
        for company_id in companies {
            scope.enter(&mut tx, company_id).await?;
            let stale_ids: Vec<Uuid> = stale
                .iter()
                .filter(|s| s.1 == company_id)
                .map(|s| s.2)
                .collect();
            if !stale_ids.is_empty() {
                sqlx::query(
                    "UPDATE reports SET status = 'done', outcome = 'stale', processed_at = $3, body = NULL \
                     WHERE company_id = $1 AND report_id = ANY($2)",
                )
                .bind(company_id)
                .bind(&stale_ids)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            let claimed_ids: Vec<Uuid> = claimed
                .iter()
                .filter(|c| c.company_id == company_id)
                .map(|c| c.report_id)
                .collect();
            if claimed_ids.is_empty() {
                continue;
            }
            let rows = sqlx::query(
                "UPDATE reports SET status = 'processing', attempts = attempts + 1 \
                 WHERE company_id = $1 AND report_id = ANY($2) RETURNING report_id, body, digest",
            )
            .bind(company_id)
            .bind(&claimed_ids)
            .fetch_all(&mut *tx)
            .await?;
            for row in rows {
                let report_id: Uuid = row.try_get(0)?;
                if let Some(c) = claimed
                    .iter_mut()
                    .find(|c| c.company_id == company_id && c.report_id == report_id)
                {
                    c.body = row.try_get::<Option<Vec<u8>>, _>(1)?.unwrap_or_default();
                    c.digest = digest_from(row.try_get::<&[u8], _>(2)?);
                }
            }
        }
        tx.commit().await?;
        Ok(claimed)
    }

    pub(crate) async fn release_impl(&self, leases: &[LeaseRef]) -> Result<()> {
        if leases.is_empty() {
            return Ok(());
        }
        let mut sorted: Vec<&LeaseRef> = leases.iter().collect();
        sorted.sort_by_key(|l| l.queue_id);
        let ids: Vec<i64> = sorted.iter().map(|l| l.queue_id).collect();
        let owners: Vec<&str> = sorted.iter().map(|l| l.owner.as_str()).collect();
        let attempts: Vec<i32> = sorted.iter().map(|l| to_i32(l.attempts)).collect();
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query(
            "UPDATE queue q SET state = 'queued', attempts = q.attempts - 1, lease_owner = NULL, \
             visible_at = now() \
             FROM unnest($1::bigint[], $2::text[], $3::int[]) AS l(id, owner, attempts) \
             WHERE q.queue_id = l.id AND q.state = 'leased' AND q.lease_owner = l.owner \
             AND q.attempts = l.attempts RETURNING q.company_id, q.report_id",
        )
        .bind(&ids)
        .bind(&owners)
        .bind(&attempts)
        .fetch_all(&mut *tx)
        .await?;
        let mut by_company: BTreeMap<CompanyId, Vec<ReportId>> = BTreeMap::new();
        for row in rows {
            by_company
                .entry(row.try_get(0)?)
                .or_default()
                .push(row.try_get(1)?);
        }
        for (company_id, report_ids) in by_company {
            set_company(&mut tx, company_id).await?;
            sqlx::query(
                "UPDATE reports SET status = 'queued', attempts = attempts - 1 \
                 WHERE company_id = $1 AND report_id = ANY($2)",
            )
            .bind(company_id)
            .bind(&report_ids)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn fail_impl(&self, failures: &[Failure], now: DateTime<Utc>) -> Result<()> {
        if failures.is_empty() {
            return Ok(());
        }
        let mut sorted: Vec<&Failure> = failures.iter().collect();
        sorted.sort_by_key(|f| f.lease.queue_id);
        let mut tx = self.pool.begin().await?;
        let mut scope = CompanyScope::new();
        for f in sorted {
            let l = &f.lease;
            let row = sqlx::query(
                "SELECT company_id, report_id, agent_id FROM queue \
                 WHERE queue_id = $1 AND state = 'leased' AND lease_owner = $2 AND attempts = $3 \
                 FOR UPDATE",
            )
            .bind(l.queue_id)
            .bind(&l.owner)
            .bind(to_i32(l.attempts))
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = row else { continue };
            let company_id: CompanyId = row.try_get(0)?;
            let report_id: ReportId = row.try_get(1)?;
            let agent_id: AgentId = row.try_get(2)?;
            match f.retry_at {
                Some(at) => {
                    // A retried entry drops below fresh work, so one poison report does not
                    // hold up everyone else's.
                    sqlx::query(
                        "UPDATE queue SET state = 'queued', lease_owner = NULL, visible_at = $2, \
                         last_error = $3, priority = greatest(priority - 1, -32000) WHERE queue_id = $1",
                    )
                    .bind(l.queue_id)
                    .bind(at)
                    .bind(&f.error)
                    .execute(&mut *tx)
                    .await?;
                    scope.enter(&mut tx, company_id).await?;
                    sqlx::query(
                        "UPDATE reports SET status = 'queued', error = $3 \
                         WHERE company_id = $1 AND report_id = $2",
                    )
                    .bind(company_id)
                    .bind(report_id)
                    .bind(&f.error)
                    .execute(&mut *tx)
                    .await?;
                }
                None => {
                    dead_letter(
                        &mut tx, &mut scope, l.queue_id, company_id, report_id, agent_id, &f.error,
                        now,
                    )
                    .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn queue_stats_impl(&self) -> Result<QueueStats> {
        let row = sqlx::query(
            "SELECT count(*) FILTER (WHERE state = 'queued'), count(*) FILTER (WHERE state = 'leased'), \
             min(enqueued_at) FROM queue WHERE state IN ('queued', 'leased')",
        )
        .fetch_one(&self.pool)
        .await?;
        let dead: i64 = sqlx::query_scalar("SELECT count(*) FROM queue WHERE state = 'dead'")
            .fetch_one(&self.pool)
            .await?;
        let done: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM (SELECT 1 FROM queue WHERE state = 'done' LIMIT $1) d",
        )
        .bind(DONE_COUNT_CAP)
        .fetch_one(&self.pool)
        .await?;
        Ok(QueueStats {
            queued: to_u64(row.try_get(0)?),
            leased: to_u64(row.try_get(1)?),
            dead: to_u64(dead),
            done: to_u64(done),
            oldest_pending_at: row.try_get(2)?,
        })
    }

    pub(crate) async fn purge_finished_impl(&self, before: DateTime<Utc>) -> Result<u64> {
        // Small batches, each its own transaction: retention never holds locks for long.
        let mut purged = 0u64;
        loop {
            let started = std::time::Instant::now();
            let n = sqlx::query(
                "DELETE FROM queue WHERE queue_id IN (SELECT queue_id FROM queue \
                 WHERE state = 'done' AND finished_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
            )
            .bind(before)
            .bind(PURGE_BATCH)
            .execute(&self.pool)
            .await?
            .rows_affected();
            crate::common::janitor_timing("purge queue entries", started, n);
            purged += n;
            if n < PURGE_BATCH as u64 {
                break;
            }
        }
        for company in self.company_ids().await? {
            loop {
                let started = std::time::Instant::now();
                let mut tx = self.begin_for_company(company).await?;
                let n = sqlx::query(
                    "DELETE FROM reports WHERE company_id = $1 AND report_id IN \
                     (SELECT report_id FROM reports WHERE company_id = $1 AND status = 'done' \
                      AND processed_at < $2 LIMIT $3)",
                )
                .bind(company)
                .bind(before)
                .bind(PURGE_BATCH)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                tx.commit().await?;
                crate::common::janitor_timing("purge report records", started, n);
                if n < PURGE_BATCH as u64 {
                    break;
                }
            }
        }
        Ok(purged)
    }

    /// Every company id (the shared companies table), for per-company maintenance.
    pub(crate) async fn company_ids(&self) -> Result<Vec<CompanyId>> {
        Ok(
            sqlx::query_scalar("SELECT company_id FROM companies ORDER BY company_id")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    pub(crate) async fn report_status_impl(
        &self,
        company_id: CompanyId,
        agent_id: AgentId,
        report_id: ReportId,
    ) -> Result<Option<ReportStatus>> {
        let mut tx = self.begin_for_company(company_id).await?;
        let row = sqlx::query(
            "SELECT status, outcome, accepted_at, processed_at, attempts, error FROM reports \
             WHERE company_id = $1 AND report_id = $2 AND agent_id = $3",
        )
        .bind(company_id)
        .bind(report_id)
        .bind(agent_id)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        let Some(row) = row else { return Ok(None) };
        let status: &str = row.try_get(0)?;
        Ok(Some(ReportStatus {
            report_id,
            status: ReportState::parse(status).unwrap_or(ReportState::Queued),
            outcome: row.try_get(1)?,
            accepted_at: row.try_get(2)?,
            processed_at: row.try_get(3)?,
            attempts: to_u32(row.try_get(4)?),
            error: row.try_get(5)?,
        }))
    }
}

/// Inserts the report rows of one company (the transaction is scoped to it); returns the ids
/// actually inserted.
async fn insert_reports(
    tx: &mut Tx,
    company_id: CompanyId,
    reports: &[IncomingReport],
    decisions: &[AcceptOutcome],
    stored: &[usize],
) -> Result<std::collections::HashSet<ReportId>> {
    let mut report_ids = Vec::with_capacity(stored.len());
    let mut agent_ids = Vec::with_capacity(stored.len());
    let mut collected = Vec::with_capacity(stored.len());
    let mut accepted = Vec::with_capacity(stored.len());
    let mut processed: Vec<Option<DateTime<Utc>>> = Vec::with_capacity(stored.len());
    let mut status = Vec::with_capacity(stored.len());
    let mut outcome: Vec<Option<&str>> = Vec::with_capacity(stored.len());
    let mut app_counts = Vec::with_capacity(stored.len());
    let mut digests: Vec<&[u8]> = Vec::with_capacity(stored.len());
    let mut bodies: Vec<Option<&[u8]>> = Vec::with_capacity(stored.len());
    for &i in stored {
        let r = &reports[i];
        let queued = decisions[i] == AcceptOutcome::Queued;
        report_ids.push(r.report_id);
        agent_ids.push(r.agent_id);
        collected.push(r.collected_at);
        accepted.push(r.accepted_at);
        processed.push((!queued).then_some(r.accepted_at));
        status.push(if queued { "queued" } else { "done" });
        outcome.push((!queued).then_some("unchanged"));
        app_counts.push(to_i32(r.app_count));
        digests.push(&r.digest[..]);
        bodies.push(queued.then_some(&r.body[..]));
    }
    let inserted: Vec<Uuid> = sqlx::query_scalar(
        "INSERT INTO reports (company_id, report_id, agent_id, collected_at, accepted_at, processed_at, \
         status, outcome, app_count, digest, body) \
         SELECT $1, r, a, col, acc, pro, st, oc, n, d, b \
         FROM unnest($2::uuid[], $3::uuid[], $4::timestamptz[], $5::timestamptz[], $6::timestamptz[], \
                     $7::text[], $8::text[], $9::int[], $10::bytea[], $11::bytea[]) \
            AS t(r, a, col, acc, pro, st, oc, n, d, b) \
         ON CONFLICT DO NOTHING RETURNING report_id",
    )
    .bind(company_id)
    .bind(&report_ids)
    .bind(&agent_ids)
    .bind(&collected)
    .bind(&accepted)
    .bind(&processed)
    .bind(&status)
    .bind(&outcome)
    .bind(&app_counts)
    .bind(&digests)
    .bind(&bodies)
    .fetch_all(&mut **tx)
    .await?;
    Ok(inserted.into_iter().collect())
}

/// Moves an entry to the dead letters. When it was the agent's newest accepted inventory, the
/// next report with that inventory must be processed again, so the accepted digest falls back
/// to the stored inventory's.
#[allow(clippy::too_many_arguments)]
async fn dead_letter(
    tx: &mut Tx,
    scope: &mut CompanyScope,
    queue_id: i64,
    company_id: CompanyId,
    report_id: ReportId,
    agent_id: AgentId,
    error: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    sqlx::query(
        "UPDATE queue SET state = 'dead', lease_owner = NULL, finished_at = $2, last_error = $3 \
         WHERE queue_id = $1",
    )
    .bind(queue_id)
    .bind(now)
    .bind(error)
    .execute(&mut **tx)
    .await?;
    scope.enter(tx, company_id).await?;
    sqlx::query(
        "UPDATE reports SET status = 'failed', error = $3, processed_at = $4 \
         WHERE company_id = $1 AND report_id = $2",
    )
    .bind(company_id)
    .bind(report_id)
    .bind(error)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "UPDATE agents SET accepted_digest = inventory_digest, \
         accepted_collected_at = inventory_collected_at WHERE company_id = $1 AND agent_id = $2 \
         AND accepted_digest = (SELECT digest FROM reports WHERE company_id = $1 AND report_id = $3)",
    )
    .bind(company_id)
    .bind(agent_id)
    .bind(report_id)
    .execute(&mut **tx)
    .await?;
    super::notify::report_failed_in_tx(tx, scope, company_id, report_id, agent_id, error, now)
        .await?;
    Ok(())
}

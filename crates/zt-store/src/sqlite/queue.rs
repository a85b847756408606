//! Accepting reports and the queue: claims with leases, retries, dead letters, retention.

use chrono::{DateTime, Utc};
use sqlx::Row;

use std::collections::HashMap;

use super::process::json;
use super::rows::{padded_chunks, values};
use super::SqliteStore;
use crate::common::accept::{decide, AcceptInput, AcceptedState, AgentUpdate};
use crate::common::queue::{poison_error, ClaimBudget};
use crate::common::{agent_from, company_from, from_ms, ms, opt_ms, uuid_from};
use crate::model::*;
use crate::{Result, StoreError};

type Tx = sqlx::Transaction<'static, sqlx::Sqlite>;

/// (company, agent)
type AgentKey = (CompanyId, AgentId);

/// Rows one retention transaction deletes at most (measured with 10 M app records: a
/// batch of findings takes a few milliseconds).
const PURGE_BATCH: i64 = 1_000;

/// Finished queue entries (`queue_finished`), a batch at a time.
pub(super) const PURGE_QUEUE_SQL: &str = "DELETE FROM queue WHERE queue_id IN \
     (SELECT queue_id FROM queue WHERE state = 'done' AND finished_at < ?1 LIMIT ?2)";
/// Processed report records (`reports_processed`), a batch at a time.
pub(super) const PURGE_REPORTS_SQL: &str = "DELETE FROM reports WHERE rowid IN \
     (SELECT rowid FROM reports WHERE processed_at < ?1 AND status = 'done' LIMIT ?2)";
/// Findings resolved before the cut-off (`findings_resolved`), a batch at a time.
pub(super) const PURGE_FINDINGS_SQL: &str = "DELETE FROM findings \
     WHERE (company_id, agent_id, software_key, vuln_id) IN \
     (SELECT company_id, agent_id, software_key, vuln_id FROM findings \
      WHERE resolved_at < ?1 LIMIT ?2)";

/// Reports looked at per claim, whatever their app counts (reports may list no apps).
const CLAIM_SCAN_LIMIT: i64 = 256;
/// Reports read per step of a claim.
const CLAIM_PAGE: i64 = 4;

impl SqliteStore {
    pub(crate) async fn accept_reports_impl(
        &self,
        reports: &[IncomingReport],
        queue_bound: u64,
    ) -> Result<Vec<AcceptOutcome>> {
        if reports.is_empty() {
            return Ok(Vec::new());
        }
        // Every statement is a round trip to SQLite's thread: look-ups and writes go in bulk
        // (one statement each for the whole group), only report bodies are bound one by one.
        let ids: Vec<(String, String, String)> = reports
            .iter()
            .map(|r| {
                (
                    hex::encode(r.company_id.as_bytes()),
                    hex::encode(r.report_id.as_bytes()),
                    hex::encode(r.agent_id.as_bytes()),
                )
            })
            .collect();
        let mut w = self.begin_write().await?;
        let pending: i64 =
            sqlx::query_scalar("SELECT count(*) FROM queue WHERE state IN ('queued', 'leased')")
                .fetch_one(&mut *w.tx)
                .await?;
        let rows = sqlx::query(
            "SELECT r.company_id, r.report_id, r.agent_id FROM json_each(?1) j \
             JOIN reports r ON r.company_id = unhex(j.value->>0) AND r.report_id = unhex(j.value->>1)",
        )
        .bind(json(&ids)?)
        .fetch_all(&mut *w.tx)
        .await?;
        let mut existing: HashMap<(CompanyId, ReportId), AgentId> = HashMap::new();
        for row in &rows {
            existing.insert(
                (
                    company_from(row.get::<&[u8], _>(0))?,
                    uuid_from(row.get::<&[u8], _>(1))?,
                ),
                agent_from(row.get::<&[u8], _>(2))?,
            );
        }
        let rows = sqlx::query(
            "SELECT DISTINCT a.company_id, a.agent_id, a.accepted_digest, a.accepted_collected_at \
             FROM json_each(?1) j \
             JOIN agents a ON a.company_id = unhex(j.value->>0) AND a.agent_id = unhex(j.value->>2)",
        )
        .bind(json(&ids)?)
        .fetch_all(&mut *w.tx)
        .await?;
        let mut agents: HashMap<AgentKey, AcceptedState> = HashMap::new();
        for row in &rows {
            agents.insert(
                (
                    company_from(row.get::<&[u8], _>(0))?,
                    agent_from(row.get::<&[u8], _>(1))?,
                ),
                AcceptedState {
                    digest: row.get(2),
                    collected_at: opt_ms(row.get(3)),
                    update: None,
                },
            );
        }
        let mut input = AcceptInput {
            reports,
            existing,
            agents,
            pending: u64::try_from(pending).unwrap_or(0),
            queue_bound,
        };
        let out = decide(&mut input);

        let mut unchanged: Vec<&IncomingReport> = Vec::new();
        for (r, outcome) in reports.iter().zip(&out) {
            match outcome {
                AcceptOutcome::Unchanged => unchanged.push(r),
                AcceptOutcome::Queued => {
                    sqlx::query(
                        "INSERT INTO reports (company_id, report_id, agent_id, collected_at, accepted_at, \
                         status, app_count, digest, body) \
                         VALUES (?1, ?2, ?3, ?4, ?5, 'queued', ?6, ?7, ?8)",
                    )
                    .bind(r.company_id)
                    .bind(r.report_id)
                    .bind(r.agent_id)
                    .bind(ms(r.collected_at))
                    .bind(ms(r.accepted_at))
                    .bind(r.app_count)
                    .bind(&r.digest[..])
                    .bind(&r.body[..])
                    .execute(&mut *w.tx)
                    .await?;
                    // One row per statement, in accept order (queue ids order the claims); a
                    // multi-row insert would need the statement journal (`rows.rs`).
                    sqlx::query(
                        "INSERT INTO queue (company_id, report_id, agent_id, app_count, state, \
                         visible_at, enqueued_at) VALUES (?1, ?2, ?3, ?4, 'queued', ?5, ?5)",
                    )
                    .bind(r.company_id)
                    .bind(r.report_id)
                    .bind(r.agent_id)
                    .bind(r.app_count)
                    .bind(ms(r.accepted_at))
                    .execute(&mut *w.tx)
                    .await?;
                }
                _ => {}
            }
        }
        // Rows go in as parameters, not JSON (see `rows.rs`).
        for chunk in padded_chunks(&unchanged) {
            let sql = format!(
                "INSERT OR FAIL INTO reports (company_id, report_id, agent_id, collected_at, \
                 accepted_at, processed_at, status, outcome, app_count, digest) VALUES {} \
                 ON CONFLICT DO NOTHING",
                values(chunk.len(), "(?, ?, ?, ?, ?, ?, 'done', 'unchanged', ?, ?)")
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for u in chunk {
                q = q
                    .bind(u.company_id)
                    .bind(u.report_id)
                    .bind(u.agent_id)
                    .bind(ms(u.collected_at))
                    .bind(ms(u.accepted_at))
                    .bind(ms(u.accepted_at))
                    .bind(u.app_count)
                    .bind(&u.digest[..]);
            }
            q.execute(&mut *w.tx).await?;
        }
        let updates: Vec<(AgentKey, AgentUpdate)> = input
            .agents
            .into_iter()
            .filter_map(|(k, s)| Some((k, s.update?)))
            .collect();
        for chunk in padded_chunks(&updates) {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(accepted_agents_sql(chunk.len())));
            for ((company_id, agent_id), u) in chunk {
                let (digest, collected) = match &u.newest {
                    Some((digest, collected)) => (Some(&digest[..]), Some(ms(*collected))),
                    None => (None, None),
                };
                q = q
                    .bind(company_id)
                    .bind(agent_id)
                    .bind(ms(u.seen))
                    .bind(digest)
                    .bind(collected);
            }
            q.execute(&mut *w.tx).await?;
        }
        w.commit().await?;
        Ok(out)
    }

    pub(crate) async fn claim_batch_impl(&self, req: &ClaimRequest) -> Result<Vec<ClaimedReport>> {
        let (done, claimed) = tokio::sync::oneshot::channel();
        self.pending_claims.lock().push(PendingClaim {
            request: req.clone(),
            done,
        });
        {
            let turn = self.background_turn().await;
            let group = std::mem::take(&mut *self.pending_claims.lock());
            // Empty when the claimer before us served ours too.
            if !group.is_empty() {
                let mut w = turn.begin().await?;
                tracing::debug!(claims = group.len(), "group claim");
                let mut results = Vec::with_capacity(group.len());
                for pending in &group {
                    results.push(claim_in_tx(&mut w.tx, &pending.request).await);
                }
                let committed = w.commit().await;
                for (pending, result) in group.into_iter().zip(results) {
                    let result = match (&committed, result) {
                        (Ok(()), r) => r,
                        (Err(e), _) => Err(StoreError::Other(format!("claiming failed: {e}"))),
                    };
                    let _ = pending.done.send(result);
                }
            }
        }
        let mut claimed = claimed.await.map_err(|_| {
            StoreError::Other("the group claim carrying this request was abandoned".into())
        })??;

        // Bodies are read after the write lock is released: they can be large, and the lease
        // keeps them ours.
        for c in &mut claimed {
            let row = sqlx::query(
                "SELECT body, digest, collected_at FROM reports WHERE company_id = ?1 AND report_id = ?2",
            )
            .bind(c.company_id)
            .bind(c.report_id)
            .fetch_optional(&self.pool)
            .await?;
            if let Some(row) = row {
                c.body = row.get::<Option<Vec<u8>>, _>(0).unwrap_or_default();
                let digest: &[u8] = row.get(1);
                c.digest = digest.try_into().unwrap_or([0; 32]);
                c.collected_at = from_ms(row.get(2));
            }
        }
        Ok(claimed)
    }

    pub(crate) async fn release_impl(&self, leases: &[LeaseRef]) -> Result<()> {
        if leases.is_empty() {
            return Ok(());
        }
        let now = ms(Utc::now());
        let mut w = self.begin_background_write().await?;
        for l in leases {
            let row = sqlx::query(
                "UPDATE queue SET state = 'queued', attempts = attempts - 1, lease_owner = NULL, \
                 visible_at = ?4 \
                 WHERE queue_id = ?1 AND state = 'leased' AND lease_owner = ?2 AND attempts = ?3 \
                 RETURNING company_id, report_id",
            )
            .bind(l.queue_id)
            .bind(&l.owner)
            .bind(l.attempts)
            .bind(now)
            .fetch_optional(&mut *w.tx)
            .await?;
            if let Some(row) = row {
                sqlx::query(
                    "UPDATE reports SET status = 'queued', attempts = attempts - 1 \
                     WHERE company_id = ?1 AND report_id = ?2",
                )
                .bind(row.get::<&[u8], _>(0))
                .bind(row.get::<&[u8], _>(1))
                .execute(&mut *w.tx)
                .await?;
            }
        }
        w.commit().await
    }

    pub(crate) async fn fail_impl(&self, failures: &[Failure], now: DateTime<Utc>) -> Result<()> {
        if failures.is_empty() {
            return Ok(());
        }
        let now = ms(now);
        let mut w = self.begin_background_write().await?;
        for f in failures {
            let l = &f.lease;
            let row = sqlx::query(
                "SELECT company_id, report_id, agent_id FROM queue \
                 WHERE queue_id = ?1 AND state = 'leased' AND lease_owner = ?2 AND attempts = ?3",
            )
            .bind(l.queue_id)
            .bind(&l.owner)
            .bind(l.attempts)
            .fetch_optional(&mut *w.tx)
            .await?;
            let Some(row) = row else { continue };
            let company_id = company_from(row.get::<&[u8], _>(0))?;
            let report_id = uuid_from(row.get::<&[u8], _>(1))?;
            let agent_id = agent_from(row.get::<&[u8], _>(2))?;
            match f.retry_at {
                Some(at) => {
                    sqlx::query(
                        "UPDATE queue SET state = 'queued', lease_owner = NULL, visible_at = ?2, \
                         last_error = ?3 WHERE queue_id = ?1",
                    )
                    .bind(l.queue_id)
                    .bind(ms(at))
                    .bind(&f.error)
                    .execute(&mut *w.tx)
                    .await?;
                    sqlx::query(
                        "UPDATE reports SET status = 'queued', error = ?3 \
                         WHERE company_id = ?1 AND report_id = ?2",
                    )
                    .bind(company_id)
                    .bind(report_id)
                    .bind(&f.error)
                    .execute(&mut *w.tx)
                    .await?;
                }
                None => {
                    dead_letter(
                        &mut w.tx, l.queue_id, company_id, report_id, agent_id, &f.error, now,
                    )
                    .await?;
                }
            }
        }
        w.commit().await
    }

    pub(crate) async fn queue_stats_impl(&self) -> Result<QueueStats> {
        let rows =
            sqlx::query("SELECT state, count(*), min(enqueued_at) FROM queue GROUP BY state")
                .fetch_all(&self.pool)
                .await?;
        let mut stats = QueueStats::default();
        let mut oldest: Option<i64> = None;
        for row in rows {
            let n = u64::try_from(row.get::<i64, _>(1)).unwrap_or(0);
            let state = row.get::<&str, _>(0);
            if matches!(state, "queued" | "leased") {
                let at = row.get::<Option<i64>, _>(2);
                oldest = oldest.into_iter().chain(at).min();
            }
            match state {
                "queued" => stats.queued = n,
                "leased" => stats.leased = n,
                "dead" => stats.dead = n,
                "done" => stats.done = n,
                _ => {}
            }
        }
        stats.oldest_pending_at = oldest.map(from_ms);
        Ok(stats)
    }

    pub(crate) async fn purge_finished_impl(&self, before: DateTime<Utc>) -> Result<u64> {
        let before = ms(before);
        let queue = self
            .purge_in_batches("purge queue entries", PURGE_QUEUE_SQL, before)
            .await?;
        self.purge_in_batches("purge report records", PURGE_REPORTS_SQL, before)
            .await?;
        Ok(queue)
    }

    pub(crate) async fn purge_history_impl(&self, before: DateTime<Utc>) -> Result<u64> {
        // Apps are deleted when they leave an agent here; resolved findings stay until now.
        self.purge_in_batches("purge resolved findings", PURGE_FINDINGS_SQL, ms(before))
            .await
    }

    /// Runs a retention statement (`?1` the cut-off, `?2` the batch size) until it deletes
    /// less than a batch, each batch in its own short transaction: the single writer is never
    /// held long, and ingest (and so the live updates) goes on between batches.
    async fn purge_in_batches(
        &self,
        task: &'static str,
        sql: &'static str,
        before: i64,
    ) -> Result<u64> {
        let mut purged = 0u64;
        loop {
            let started = std::time::Instant::now();
            let mut w = self.begin_background_write().await?;
            let n = sqlx::query(sql)
                .bind(before)
                .bind(PURGE_BATCH)
                .execute(&mut *w.tx)
                .await?
                .rows_affected();
            w.commit().await?;
            crate::common::janitor_timing(task, started, n);
            purged += n;
            if n < PURGE_BATCH as u64 {
                return Ok(purged);
            }
        }
    }

    pub(crate) async fn report_status_impl(
        &self,
        company_id: CompanyId,
        agent_id: AgentId,
        report_id: ReportId,
    ) -> Result<Option<ReportStatus>> {
        let row = sqlx::query(
            "SELECT status, outcome, accepted_at, processed_at, attempts, error FROM reports \
             WHERE company_id = ?1 AND report_id = ?2 AND agent_id = ?3",
        )
        .bind(company_id)
        .bind(report_id)
        .bind(agent_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let status: &str = row.get(0);
        Ok(Some(ReportStatus {
            report_id,
            status: ReportState::parse(status).unwrap_or(ReportState::Queued),
            outcome: row.get(1),
            accepted_at: from_ms(row.get(2)),
            processed_at: opt_ms(row.get(3)),
            attempts: u32::try_from(row.get::<i64, _>(4)).unwrap_or(0),
            error: row.get(5),
        }))
    }
}

/// Moves an entry to the dead letters. When it was the agent's newest accepted inventory, the
/// next report with that inventory must be processed again, so the accepted digest falls back
/// to the stored inventory's.
async fn dead_letter(
    tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
    queue_id: i64,
    company_id: CompanyId,
    report_id: ReportId,
    agent_id: AgentId,
    error: &str,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "UPDATE queue SET state = 'dead', lease_owner = NULL, finished_at = ?2, last_error = ?3 \
         WHERE queue_id = ?1",
    )
    .bind(queue_id)
    .bind(now)
    .bind(error)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "UPDATE reports SET status = 'failed', error = ?3, processed_at = ?4 \
         WHERE company_id = ?1 AND report_id = ?2",
    )
    .bind(company_id)
    .bind(report_id)
    .bind(error)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "UPDATE agents SET accepted_digest = inventory_digest, \
         accepted_collected_at = inventory_collected_at WHERE company_id = ?1 AND agent_id = ?2 \
         AND accepted_digest = (SELECT digest FROM reports WHERE company_id = ?1 AND report_id = ?3)",
    )
    .bind(company_id)
    .bind(agent_id)
    .bind(report_id)
    .execute(&mut **tx)
    .await?;
    super::notify::report_failed_in_tx(tx, company_id, report_id, agent_id, error, now).await?;
    Ok(())
}

/// The queue columns a claim reads: `queue_id, company_id, report_id, agent_id, app_count,
/// attempts, state, stale (a newer inventory is stored), enqueued_at` (0-8).
const CLAIM_COLUMNS: &str = "SELECT q.queue_id, q.company_id, q.report_id, q.agent_id, \
     q.app_count, q.attempts, q.state, coalesce(r.collected_at < a.inventory_collected_at, 0), \
     q.enqueued_at \
     FROM queue q \
     LEFT JOIN reports r ON r.company_id = q.company_id AND r.report_id = q.report_id \
     LEFT JOIN agents a ON a.company_id = q.company_id AND a.agent_id = q.agent_id";

/// Visible entries accepted before ?2, oldest first after (?3, ?4) (`queue_waiting`).
pub(super) fn claim_overdue_sql() -> String {
    format!(
        "{CLAIM_COLUMNS} WHERE q.state IN ('queued', 'leased') AND q.visible_at <= ?1 \
         AND q.enqueued_at < ?2 AND (q.enqueued_at, q.queue_id) > (?3, ?4) \
         ORDER BY q.enqueued_at, q.queue_id LIMIT ?5"
    )
}

/// Visible entries, newest first before ?2 (`queue_pending`).
pub(super) fn claim_newest_sql() -> String {
    format!(
        "{CLAIM_COLUMNS} WHERE q.state IN ('queued', 'leased') AND q.visible_at <= ?1 \
         AND q.queue_id < ?2 ORDER BY q.queue_id DESC LIMIT ?3"
    )
}

/// What one claim has gathered so far.
struct Gathered {
    claimed: Vec<ClaimedReport>,
    stale: Vec<(i64, String, String)>,
    budget: ClaimBudget,
    /// Entries looked at (an entry may come up in both phases).
    seen: std::collections::HashSet<i64>,
}

impl Gathered {
    /// Takes, settles or skips one entry; true when the batch is full.
    async fn consider(
        &mut self,
        tx: &mut Tx,
        req: &ClaimRequest,
        row: &sqlx::sqlite::SqliteRow,
        now: i64,
    ) -> Result<bool> {
        let queue_id: i64 = row.get(0);
        if !self.seen.insert(queue_id) {
            return Ok(false);
        }
        let company_id = company_from(row.get::<&[u8], _>(1))?;
        let report_id = uuid_from(row.get::<&[u8], _>(2))?;
        let agent_id = agent_from(row.get::<&[u8], _>(3))?;
        let app_count: i64 = row.get(4);
        let attempts: i64 = row.get(5);
        let state: &str = row.get(6);
        if state == "leased" && attempts >= i64::from(req.max_attempts) {
            let error = poison_error(attempts);
            dead_letter(tx, queue_id, company_id, report_id, agent_id, &error, now).await?;
            return Ok(false);
        }
        if row.get::<bool, _>(7) {
            // A newer inventory of this agent is stored already (newest-first claiming
            // overtook it): settled here, without parsing it.
            self.stale.push((
                queue_id,
                hex::encode(company_id.as_bytes()),
                hex::encode(report_id.as_bytes()),
            ));
            return Ok(false);
        }
        let app_count = u64::try_from(app_count).unwrap_or(0);
        if !self.budget.take(app_count) {
            return Ok(true);
        }
        self.claimed.push(ClaimedReport {
            queue_id,
            company_id,
            agent_id,
            report_id,
            attempts: u32::try_from(attempts + 1).unwrap_or(u32::MAX),
            app_count: u32::try_from(app_count).unwrap_or(u32::MAX),
            digest: [0; 32],
            collected_at: DateTime::<Utc>::UNIX_EPOCH,
            body: Vec::new(),
        });
        Ok(self.budget.is_full())
    }
}

/// Claims one worker's batch inside the group's transaction (see `claim_batch_impl`): the
/// visible entries that waited longer than the request's bound, oldest first, then the
/// newest ones, up to the request's app budget, settling stale and poisoned ones on the way.
async fn claim_in_tx(tx: &mut Tx, req: &ClaimRequest) -> Result<Vec<ClaimedReport>> {
    let now = ms(req.now);
    let lease_until = now + i64::try_from(req.lease.as_millis()).unwrap_or(i64::MAX / 2);
    let overdue_before = now - i64::try_from(req.overdue_after.as_millis()).unwrap_or(i64::MAX / 2);
    let mut g = Gathered {
        claimed: Vec::new(),
        stale: Vec::new(),
        budget: ClaimBudget::new(req.max_apps),
        seen: std::collections::HashSet::new(),
    };
    // Small pages: a batch usually needs one or two reports, and each row looked at costs
    // two look-ups for the staleness check.
    let mut scanned = 0i64;
    let mut full = false;
    // Overdue entries first, oldest first: under a burst, newest-first alone left the oldest
    // reports waiting until the burst was over.
    let mut after = (i64::MIN, i64::MIN);
    'overdue: while scanned < CLAIM_SCAN_LIMIT {
        let rows = sqlx::query(sqlx::AssertSqlSafe(claim_overdue_sql()))
            .bind(now)
            .bind(overdue_before)
            .bind(after.0)
            .bind(after.1)
            .bind(CLAIM_PAGE)
            .fetch_all(&mut **tx)
            .await?;
        scanned += CLAIM_PAGE;
        let last_page = (rows.len() as i64) < CLAIM_PAGE;
        for row in rows {
            after = (row.get(8), row.get(0));
            if g.consider(tx, req, &row, now).await? {
                full = true;
                break 'overdue;
            }
        }
        if last_page {
            break;
        }
    }
    let mut before = i64::MAX;
    'pages: while !full && scanned < CLAIM_SCAN_LIMIT {
        let rows = sqlx::query(sqlx::AssertSqlSafe(claim_newest_sql()))
            .bind(now)
            .bind(before)
            .bind(CLAIM_PAGE)
            .fetch_all(&mut **tx)
            .await?;
        scanned += CLAIM_PAGE;
        let last_page = (rows.len() as i64) < CLAIM_PAGE;
        for row in rows {
            before = row.get(0);
            if g.consider(tx, req, &row, now).await? {
                break 'pages;
            }
        }
        if last_page {
            break;
        }
    }
    let Gathered { claimed, stale, .. } = g;
    if !stale.is_empty() {
        let queue_ids: Vec<i64> = stale.iter().map(|(q, _, _)| *q).collect();
        sqlx::query(
            "UPDATE OR FAIL queue SET state = 'done', finished_at = ?2, lease_owner = NULL \
             WHERE queue_id IN (SELECT j.value FROM json_each(?1) j)",
        )
        .bind(json(&queue_ids)?)
        .bind(now)
        .execute(&mut **tx)
        .await?;
        let keys: Vec<(&str, &str)> = stale
            .iter()
            .map(|(_, c, r)| (c.as_str(), r.as_str()))
            .collect();
        sqlx::query(
            "UPDATE reports SET status = 'done', outcome = 'stale', processed_at = ?2, body = NULL \
             WHERE (company_id, report_id) IN \
             (SELECT unhex(j.value->>0), unhex(j.value->>1) FROM json_each(?1) j)",
        )
        .bind(json(&keys)?)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    }
    if !claimed.is_empty() {
        let queue_ids: Vec<i64> = claimed.iter().map(|c| c.queue_id).collect();
        sqlx::query(
            "UPDATE OR FAIL queue SET state = 'leased', attempts = attempts + 1, lease_owner = ?2, \
             visible_at = ?3 WHERE queue_id IN (SELECT j.value FROM json_each(?1) j)",
        )
        .bind(json(&queue_ids)?)
        .bind(&req.owner)
        .bind(lease_until)
        .execute(&mut **tx)
        .await?;
        for chunk in padded_chunks(&claimed) {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(claimed_reports_sql(chunk.len())));
            for c in chunk {
                q = q.bind(c.company_id).bind(c.report_id);
            }
            q.execute(&mut **tx).await?;
        }
    }
    Ok(claimed)
}

/// A worker's claim waiting for the next group claim, and where its batch goes.
#[derive(Debug)]
pub(crate) struct PendingClaim {
    request: ClaimRequest,
    done: tokio::sync::oneshot::Sender<Result<Vec<ClaimedReport>>>,
}

/// Claims waiting for the writer; shared by the clones of one store.
pub(crate) type PendingClaims = std::sync::Arc<parking_lot::Mutex<Vec<PendingClaim>>>;

/// The accept path's agents rows: last seen, and the newest accepted inventory when a report
/// was queued. (Also EXPLAINed by the plan test in `apply.rs`.)
pub(super) fn accepted_agents_sql(n: usize) -> String {
    format!(
        "UPDATE OR FAIL agents SET last_seen_at = u.column3, \
         accepted_digest = coalesce(u.column4, agents.accepted_digest), \
         accepted_collected_at = coalesce(u.column5, agents.accepted_collected_at) \
         FROM (VALUES {}) AS u \
         WHERE agents.company_id = u.column1 AND agents.agent_id = u.column2",
        values(n, "(?, ?, ?, ?, ?)")
    )
}

/// Claimed reports marked as processing.
pub(super) fn claimed_reports_sql(n: usize) -> String {
    format!(
        "UPDATE OR FAIL reports SET status = 'processing', attempts = attempts + 1 \
         WHERE (company_id, report_id) IN (SELECT column1, column2 FROM (VALUES {}))",
        values(n, "(?, ?)")
    )
}

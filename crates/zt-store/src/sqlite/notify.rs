//! Notifications on SQLite: the outbox written inside the writer's transactions (see
//! `common/notify.rs` for the steps), rules, the dispatchers' claim and the delivery log. One
//! writer at a time, so a claim is one short write transaction.

use std::collections::HashSet;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;
use uuid::Uuid;

use super::rows::{padded_chunks, values};
use super::SqliteStore;
use crate::common::notify::*;
use crate::common::{from_ms, ms};
use crate::model::*;
use crate::notify::*;
use crate::Result;

type Tx = sqlx::Transaction<'static, sqlx::Sqlite>;

/// Writes the messages these candidates cause, inside the caller's transaction.
pub(crate) async fn write_in_tx(
    tx: &mut Tx,
    cands: &[Candidate],
    now: DateTime<Utc>,
) -> Result<()> {
    if cands.is_empty() {
        return Ok(());
    }
    let mut companies: Vec<CompanyId> = cands.iter().map(|c| c.company_id).collect();
    companies.sort();
    companies.dedup();
    let mut rules = Vec::new();
    for chunk in padded_chunks(&companies) {
        let sql = format!(
            "SELECT {RULE_COLUMNS} FROM notification_rules WHERE company_id IN ({})",
            values(chunk.len(), "?")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for c in &chunk {
            q = q.bind(**c);
        }
        let mut seen = HashSet::new();
        for row in q.fetch_all(&mut **tx).await? {
            let rule = rule_from_row(&row, 0)?;
            if seen.insert(rule.rule_id) {
                rules.push(rule);
            }
        }
    }
    if rules.is_empty() {
        return Ok(());
    }
    let pairs = matching(&rules, cands);
    if pairs.is_empty() {
        return Ok(());
    }
    // Keys first: those inserted now are news.
    let keys: Vec<(Uuid, String)> = pairs
        .iter()
        .map(|&(r, c)| (rules[r].rule_id, cands[c].key()))
        .collect();
    let mut fresh: HashSet<(Uuid, String)> = HashSet::new();
    for chunk in padded_chunks(&keys) {
        let sql = format!(
            "INSERT INTO notification_keys (rule_id, key, created_at) VALUES {} \
             ON CONFLICT DO NOTHING RETURNING rule_id, key",
            values(chunk.len(), "(?, ?, ?)")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (rule, key) in &chunk {
            q = q.bind(*rule).bind(key.as_str()).bind(ms(now));
        }
        for row in q.fetch_all(&mut **tx).await? {
            fresh.insert((
                crate::common::uuid_from(row.get::<&[u8], _>(0))?,
                row.get(1),
            ));
        }
    }
    let mut rule_ids: Vec<Uuid> = pairs.iter().map(|&(r, _)| rules[r].rule_id).collect();
    rule_ids.sort();
    rule_ids.dedup();
    let mut open = Vec::new();
    for chunk in padded_chunks(&rule_ids) {
        let sql = format!(
            "SELECT DISTINCT outbox_id, rule_id, group_key, data FROM notification_outbox \
             WHERE rule_id IN ({}) AND state = 'pending' AND attempts = 0",
            values(chunk.len(), "?")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for r in &chunk {
            q = q.bind(**r);
        }
        for row in q.fetch_all(&mut **tx).await? {
            open.push(OpenRow {
                outbox_id: row.get(0),
                rule_id: crate::common::uuid_from(row.get::<&[u8], _>(1))?,
                group_key: row.get(2),
                data: row.get(3),
            });
        }
    }
    let plan = plan(&rules, cands, &pairs, &fresh, open, now);
    // Many rows per statement (a new vulnerability for 100 rules is 100 rows); chunks are
    // not padded: a repeated row would be a second message.
    for chunk in plan.inserts.chunks(64) {
        let sql = format!(
            "INSERT INTO notification_outbox (delivery_id, company_id, rule_id, event, group_key, \
             data, created_at, due_at, state, attempts) VALUES {}",
            values(chunk.len(), "(?, ?, ?, ?, ?, ?, ?, ?, 'pending', 0)")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for i in chunk {
            q = q
                .bind(i.delivery_id)
                .bind(i.company_id)
                .bind(i.rule_id)
                .bind(i.event.as_str())
                .bind(i.group_key.as_str())
                .bind(i.data.as_str())
                .bind(ms(now))
                .bind(ms(i.due_at));
        }
        q.execute(&mut **tx).await?;
    }
    for (id, data) in &plan.updates {
        sqlx::query("UPDATE notification_outbox SET data = ? WHERE outbox_id = ?")
            .bind(data)
            .bind(id)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// `report.failed` for a report dead-lettered in this transaction.
pub(crate) async fn report_failed_in_tx(
    tx: &mut Tx,
    company_id: CompanyId,
    report_id: ReportId,
    agent_id: AgentId,
    error: &str,
    now: i64,
) -> Result<()> {
    let hostname: Option<String> =
        sqlx::query_scalar("SELECT hostname FROM agents WHERE company_id = ? AND agent_id = ?")
            .bind(company_id)
            .bind(agent_id)
            .fetch_optional(&mut **tx)
            .await?;
    let cand = report_failed_candidate(
        company_id,
        report_id,
        agent_id,
        hostname.as_deref().unwrap_or(""),
        error,
    );
    write_in_tx(tx, &[cand], from_ms(now)).await
}

#[async_trait]
impl NotificationStore for SqliteStore {
    async fn create_rule(&self, rule: &NotificationRule) -> Result<bool> {
        let mut w = self.begin_write().await?;
        let exists: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM companies WHERE company_id = ?")
                .bind(rule.company_id)
                .fetch_optional(&mut *w.tx)
                .await?;
        if exists.is_none() {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO notification_rules (name, events, min_severity, kev_only, tags, \
             digest_minutes, stale_days, dest_kind, dest_url, dest_to, secret_sealed, updated_at, \
             company_id, rule_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(rule.name.as_str())
        .bind(json_strings(&rule.events))
        .bind(severity_name(rule.min_severity))
        .bind(rule.kev_only)
        .bind(json_strings(&rule.tags))
        .bind(i64::from(rule.digest_minutes))
        .bind(i64::from(rule.stale_days))
        .bind(rule.destination.kind.as_str())
        .bind(rule.destination.url.as_deref())
        .bind(json_strings(&rule.destination.to))
        .bind(rule.secret_sealed.as_deref())
        .bind(ms(rule.updated_at))
        .bind(rule.company_id)
        .bind(rule.rule_id)
        .bind(ms(rule.created_at))
        .execute(&mut *w.tx)
        .await?;
        w.commit().await?;
        Ok(true)
    }

    async fn list_rules(&self, company_id: CompanyId) -> Result<Vec<NotificationRule>> {
        let sql = format!(
            "SELECT {RULE_COLUMNS} FROM notification_rules WHERE company_id = ? \
             ORDER BY created_at, rule_id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(company_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| rule_from_row(r, 0)).collect()
    }

    async fn get_rule(
        &self,
        company_id: CompanyId,
        rule_id: Uuid,
    ) -> Result<Option<NotificationRule>> {
        let sql = format!(
            "SELECT {RULE_COLUMNS} FROM notification_rules WHERE company_id = ? AND rule_id = ?"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(company_id)
            .bind(rule_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| rule_from_row(&r, 0)).transpose()
    }

    async fn update_rule(&self, rule: &NotificationRule) -> Result<bool> {
        let mut w = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE notification_rules SET name = ?, events = ?, min_severity = ?, kev_only = ?, \
             tags = ?, digest_minutes = ?, stale_days = ?, dest_kind = ?, dest_url = ?, \
             dest_to = ?, secret_sealed = ?, updated_at = ? WHERE company_id = ? AND rule_id = ?",
        )
        .bind(rule.name.as_str())
        .bind(json_strings(&rule.events))
        .bind(severity_name(rule.min_severity))
        .bind(rule.kev_only)
        .bind(json_strings(&rule.tags))
        .bind(i64::from(rule.digest_minutes))
        .bind(i64::from(rule.stale_days))
        .bind(rule.destination.kind.as_str())
        .bind(rule.destination.url.as_deref())
        .bind(json_strings(&rule.destination.to))
        .bind(rule.secret_sealed.as_deref())
        .bind(ms(rule.updated_at))
        .bind(rule.company_id)
        .bind(rule.rule_id)
        .execute(&mut *w.tx)
        .await?;
        w.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_rule(&self, company_id: CompanyId, rule_id: Uuid) -> Result<bool> {
        let mut w = self.begin_write().await?;
        let done =
            sqlx::query("DELETE FROM notification_rules WHERE company_id = ? AND rule_id = ?")
                .bind(company_id)
                .bind(rule_id)
                .execute(&mut *w.tx)
                .await?;
        if done.rows_affected() == 1 {
            sqlx::query(
                "DELETE FROM notification_outbox WHERE rule_id = ? AND company_id = ? \
                 AND state IN ('pending', 'leased')",
            )
            .bind(rule_id)
            .bind(company_id)
            .execute(&mut *w.tx)
            .await?;
            sqlx::query("DELETE FROM notification_keys WHERE rule_id = ?")
                .bind(rule_id)
                .execute(&mut *w.tx)
                .await?;
        }
        w.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn enqueue_notifications(
        &self,
        requests: &[NotificationRequest],
        now: DateTime<Utc>,
    ) -> Result<u64> {
        let cands: Vec<Candidate> = requests.iter().map(Candidate::from).collect();
        let mut w = self.begin_background_write().await?;
        let before: i64 = sqlx::query_scalar("SELECT count(*) FROM notification_keys")
            .fetch_one(&mut *w.tx)
            .await?;
        write_in_tx(&mut w.tx, &cands, now).await?;
        let after: i64 = sqlx::query_scalar("SELECT count(*) FROM notification_keys")
            .fetch_one(&mut *w.tx)
            .await?;
        w.commit().await?;
        Ok(u64::try_from(after - before).unwrap_or(0))
    }

    async fn scan_stale_agents(&self, now: DateTime<Utc>) -> Result<u64> {
        let sql = format!(
            "SELECT {RULE_COLUMNS} FROM notification_rules WHERE events LIKE '%\"agent.stale\"%'"
        );
        let rules: Vec<NotificationRule> = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| rule_from_row(r, 0))
            .collect::<Result<_>>()?;
        let mut cands = Vec::new();
        for rule in &rules {
            let days = rule.stale_days.max(1);
            let cutoff = now - chrono::Duration::days(i64::from(days));
            let rows = sqlx::query(
                "SELECT agent_id, hostname, seen_at FROM agents WHERE company_id = ? \
                 AND seen_at < ? ORDER BY seen_at LIMIT 1000",
            )
            .bind(rule.company_id)
            .bind(ms(cutoff))
            .fetch_all(&self.pool)
            .await?;
            for row in rows {
                cands.push(agent_stale_candidate(
                    rule.company_id,
                    crate::common::agent_from(row.get::<&[u8], _>(0))?,
                    row.get::<&str, _>(1),
                    from_ms(row.get(2)),
                    days,
                ));
            }
        }
        if cands.is_empty() {
            return Ok(0);
        }
        cands.sort_by(|a, b| (a.company_id, &a.subject).cmp(&(b.company_id, &b.subject)));
        cands.dedup_by(|a, b| a.company_id == b.company_id && a.subject == b.subject);
        let n = cands.len() as u64;
        let mut w = self.begin_background_write().await?;
        write_in_tx(&mut w.tx, &cands, now).await?;
        w.commit().await?;
        Ok(n)
    }

    async fn claim_notifications(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease: std::time::Duration,
        limit: u32,
    ) -> Result<Vec<ClaimedNotification>> {
        // Background work: ingest's writes go first (see `background_gate`).
        let mut w = self.begin_background_write().await?;
        let sql = format!(
            "SELECT o.outbox_id, o.delivery_id, o.event, o.data, o.created_at, o.attempts, {} \
             FROM notification_outbox o JOIN notification_rules r \
             ON r.company_id = o.company_id AND r.rule_id = o.rule_id \
             WHERE o.state IN ('pending', 'leased') AND o.due_at <= ? ORDER BY o.due_at LIMIT ?",
            rule_columns("r")
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(ms(now))
            .bind(i64::from(limit.max(1)))
            .fetch_all(&mut *w.tx)
            .await?;
        let until = ms(now) + i64::try_from(lease.as_millis()).unwrap_or(60_000);
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let outbox_id: i64 = row.get(0);
            let attempts: i64 = row.get(5);
            sqlx::query(
                "UPDATE notification_outbox SET state = 'leased', lease_owner = ?, \
                 attempts = attempts + 1, due_at = ? WHERE outbox_id = ?",
            )
            .bind(owner)
            .bind(until)
            .bind(outbox_id)
            .execute(&mut *w.tx)
            .await?;
            let rule = rule_from_row(&row, 6)?;
            out.push(ClaimedNotification {
                outbox_id,
                delivery_id: crate::common::uuid_from(row.get::<&[u8], _>(1))?,
                company_id: rule.company_id,
                event: row.get(2),
                data: serde_json::from_str(row.get::<&str, _>(3)).unwrap_or_default(),
                created_at: from_ms(row.get(4)),
                attempt: u32::try_from(attempts + 1).unwrap_or(u32::MAX),
                owner: owner.to_string(),
                rule,
            });
        }
        w.commit().await?;
        Ok(out)
    }

    async fn finish_notification(
        &self,
        c: &ClaimedNotification,
        a: &AttemptRecord,
        outcome: DeliveryOutcome,
    ) -> Result<bool> {
        // Background work: ingest's writes go first (see `background_gate`).
        let mut w = self.begin_background_write().await?;
        let (state, due, finished) = match outcome {
            DeliveryOutcome::Sent => ("sent", ms(a.attempted_at), Some(ms(a.attempted_at))),
            DeliveryOutcome::Dead => ("dead", ms(a.attempted_at), Some(ms(a.attempted_at))),
            DeliveryOutcome::Retry(at) => ("pending", ms(at), None),
        };
        let done = sqlx::query(
            "UPDATE notification_outbox SET state = ?, due_at = ?, finished_at = ?, \
             lease_owner = NULL, last_error = ? \
             WHERE outbox_id = ? AND state = 'leased' AND lease_owner = ? AND attempts = ?",
        )
        .bind(state)
        .bind(due)
        .bind(finished)
        .bind(a.error.as_deref())
        .bind(c.outbox_id)
        .bind(&c.owner)
        .bind(i64::from(c.attempt))
        .execute(&mut *w.tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        insert_delivery(
            &mut w.tx,
            c.company_id,
            c.rule.rule_id,
            Some(c.outbox_id),
            c.delivery_id,
            &c.event,
            c.attempt,
            outcome_label(outcome),
            a,
            next_attempt(outcome),
        )
        .await?;
        w.commit().await?;
        Ok(true)
    }

    async fn record_test_delivery(
        &self,
        rule: &NotificationRule,
        delivery_id: Uuid,
        a: &AttemptRecord,
        ok: bool,
    ) -> Result<()> {
        let mut w = self.begin_write().await?;
        let outcome = if ok { "test_sent" } else { "test_failed" };
        insert_delivery(
            &mut w.tx,
            rule.company_id,
            rule.rule_id,
            None,
            delivery_id,
            "test",
            1,
            outcome,
            a,
            None,
        )
        .await?;
        w.commit().await
    }

    async fn list_deliveries(
        &self,
        company_id: CompanyId,
        rule_id: Option<Uuid>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<DeliveryRecord>> {
        let before = before.unwrap_or(i64::MAX);
        let limit = i64::from(limit.max(1));
        let rows = match rule_id {
            Some(rule) => {
                let sql = format!(
                    "SELECT {DELIVERY_COLUMNS} FROM notification_deliveries \
                     WHERE company_id = ? AND rule_id = ? AND seq < ? ORDER BY seq DESC LIMIT ?"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(company_id)
                    .bind(rule)
                    .bind(before)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                let sql = format!(
                    "SELECT {DELIVERY_COLUMNS} FROM notification_deliveries \
                     WHERE company_id = ? AND seq < ? ORDER BY seq DESC LIMIT ?"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(company_id)
                    .bind(before)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter().map(delivery_from_row).collect()
    }

    async fn outbox_stats(&self) -> Result<OutboxStats> {
        let row = sqlx::query(
            "SELECT count(*), min(created_at) FROM notification_outbox \
             WHERE state IN ('pending', 'leased')",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(OutboxStats {
            backlog: u64::try_from(row.get::<i64, _>(0)).unwrap_or(0),
            oldest: row.get::<Option<i64>, _>(1).map(from_ms),
        })
    }

    async fn purge_notifications(&self, before: DateTime<Utc>) -> Result<u64> {
        let mut w = self.begin_background_write().await?;
        let a = sqlx::query(
            "DELETE FROM notification_outbox WHERE finished_at IS NOT NULL AND finished_at < ?",
        )
        .bind(ms(before))
        .execute(&mut *w.tx)
        .await?;
        let b = sqlx::query("DELETE FROM notification_deliveries WHERE attempted_at < ?")
            .bind(ms(before))
            .execute(&mut *w.tx)
            .await?;
        w.commit().await?;
        Ok(a.rows_affected() + b.rows_affected())
    }
}

#[allow(clippy::too_many_arguments)]
async fn insert_delivery(
    tx: &mut Tx,
    company_id: CompanyId,
    rule_id: Uuid,
    outbox_id: Option<i64>,
    delivery_id: Uuid,
    event: &str,
    attempt: u32,
    outcome: &str,
    a: &AttemptRecord,
    next: Option<DateTime<Utc>>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO notification_deliveries (company_id, rule_id, outbox_id, delivery_id, event, \
         attempt, attempted_at, outcome, status, response_excerpt, error, next_attempt_at, \
         duration_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(company_id)
    .bind(rule_id)
    .bind(outbox_id)
    .bind(delivery_id)
    .bind(event)
    .bind(i64::from(attempt))
    .bind(ms(a.attempted_at))
    .bind(outcome)
    .bind(a.status.map(i64::from))
    .bind(bounded_excerpt(a.response_excerpt.as_deref()))
    .bind(a.error.as_deref())
    .bind(next.map(ms))
    .bind(i64::from(a.duration_ms))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

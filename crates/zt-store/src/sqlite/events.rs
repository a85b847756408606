//! The event log on SQLite: appended inside the writer's transactions (so ids follow commit
//! order: there is one writer), read by the SSE streams, pruned by the janitor. Wake-ups
//! after a commit are in-process (SQLite serves one process).

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::rows::{padded_chunks, values};
use super::SqliteStore;
use crate::common::events::{assigned_ids, event_json, prunable_prefix, PRUNE_BATCH};
use crate::common::ms;
use crate::common::reads::event_from_row;
use crate::model::*;
use crate::Result;

type Tx = sqlx::Transaction<'static, sqlx::Sqlite>;

/// Processes' listeners for committed events (see [`SqliteStore::signal_events`]).
pub(crate) type EventListeners =
    std::sync::Arc<parking_lot::Mutex<Vec<tokio::sync::mpsc::Sender<()>>>>;

const EVENT_COLUMNS: &str = "SELECT event_id, company_id, kind, created_at, data FROM events";

/// Appends `events` inside a write transaction; returns the newest id (the log's head).
pub(crate) async fn append_in_tx(tx: &mut Tx, events: &[NewEvent], now: i64) -> Result<i64> {
    let last: i64 = if events.is_empty() {
        sqlx::query_scalar("SELECT last_id FROM event_log WHERE singleton = 1")
            .fetch_one(&mut **tx)
            .await?
    } else {
        sqlx::query_scalar(
            "UPDATE event_log SET last_id = last_id + ?1 WHERE singleton = 1 RETURNING last_id",
        )
        .bind(events.len() as i64)
        .fetch_one(&mut **tx)
        .await?
    };
    let rows: Vec<(i64, &NewEvent, String)> = assigned_ids(last, events.len())
        .zip(events)
        .map(|(id, e)| (id, e, event_json(e)))
        .collect();
    // Rows as parameters (`rows.rs`); a padded, repeated row changes nothing.
    for chunk in padded_chunks(&rows) {
        let sql = format!(
            "INSERT OR FAIL INTO events (event_id, company_id, kind, created_at, data) \
             VALUES {} ON CONFLICT DO NOTHING",
            values(chunk.len(), "(?, ?, ?, ?, ?)")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (id, e, data) in chunk {
            q = q
                .bind(*id)
                .bind(e.company_id)
                .bind(e.kind.as_str())
                .bind(now)
                .bind(data.as_str());
        }
        q.execute(&mut **tx).await?;
    }
    Ok(last)
}

impl SqliteStore {
    /// Wakes this process's event readers after a commit that appended events.
    pub(crate) fn signal_events(&self) {
        let mut listeners = self.event_listeners.lock();
        listeners.retain(|l| !l.is_closed());
        for l in listeners.iter() {
            // Full: a wake-up is pending already.
            let _ = l.try_send(());
        }
    }

    pub(crate) async fn event_notifications_impl(&self) -> Result<tokio::sync::mpsc::Receiver<()>> {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        self.event_listeners.lock().push(tx);
        Ok(rx)
    }

    pub(crate) async fn events_after_impl(
        &self,
        company: Option<CompanyId>,
        after: u64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>> {
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let limit = i64::from(limit.max(1));
        let rows = match company {
            None => {
                let sql = format!("{EVENT_COLUMNS} WHERE event_id > ?1 ORDER BY event_id LIMIT ?2");
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(after)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?
            }
            Some(c) => {
                // Two index ranges (the company's, the global events') instead of an OR that
                // would walk every company's events after the position.
                let sql = format!(
                    "SELECT * FROM (SELECT * FROM ({EVENT_COLUMNS} WHERE company_id = ?1 \
                     AND event_id > ?2 ORDER BY event_id LIMIT ?3) \
                     UNION ALL SELECT * FROM ({EVENT_COLUMNS} WHERE company_id IS NULL \
                     AND event_id > ?2 ORDER BY event_id LIMIT ?3)) ORDER BY event_id LIMIT ?3"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(c)
                    .bind(after)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter().map(event_from_row).collect()
    }

    pub(crate) async fn event_log_bounds_impl(&self) -> Result<EventLogBounds> {
        let row = sqlx::query(
            "SELECT (SELECT last_id FROM event_log WHERE singleton = 1), \
             (SELECT pruned_through FROM event_prune WHERE singleton = 1)",
        )
        .fetch_one(&self.pool)
        .await?;
        let n = |i: usize| u64::try_from(row.get::<i64, _>(i)).unwrap_or(0);
        Ok(EventLogBounds {
            head: n(0),
            pruned_through: n(1),
        })
    }

    pub(crate) async fn append_events_impl(
        &self,
        events: &[NewEvent],
        now: DateTime<Utc>,
    ) -> Result<u64> {
        let mut w = self.begin_write().await?;
        let head = append_in_tx(&mut w.tx, events, ms(now)).await?;
        w.commit().await?;
        self.signal_events();
        Ok(u64::try_from(head).unwrap_or(0))
    }

    pub(crate) async fn prune_events_impl(&self, before: DateTime<Utc>) -> Result<u64> {
        let before = ms(before);
        let mut pruned = 0u64;
        loop {
            let started = std::time::Instant::now();
            let mut w = self.begin_background_write().await?;
            let rows = sqlx::query(
                "SELECT event_id, created_at FROM events \
                 WHERE event_id > (SELECT pruned_through FROM event_prune WHERE singleton = 1) \
                 ORDER BY event_id LIMIT ?1",
            )
            .bind(PRUNE_BATCH as i64)
            .fetch_all(&mut *w.tx)
            .await?;
            let created: Vec<i64> = rows.iter().map(|r| r.get(1)).collect();
            let n = prunable_prefix(&created, &before);
            if n == 0 {
                return Ok(pruned);
            }
            let through: i64 = rows[n - 1].get(0);
            sqlx::query("DELETE FROM events WHERE event_id <= ?1")
                .bind(through)
                .execute(&mut *w.tx)
                .await?;
            sqlx::query("UPDATE event_prune SET pruned_through = ?1 WHERE singleton = 1")
                .bind(through)
                .execute(&mut *w.tx)
                .await?;
            w.commit().await?;
            crate::common::janitor_timing("prune events", started, n as u64);
            pruned += n as u64;
            if n < rows.len() || rows.len() < PRUNE_BATCH {
                return Ok(pruned);
            }
        }
    }
}

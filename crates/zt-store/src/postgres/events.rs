//! The event log on PostgreSQL (see migrations/postgres/0200_events.sql): appended as the
//! last statements of the transaction whose change it reports, ids taken under the
//! `event_log` row lock (so they follow commit order across processes), announced with NOTIFY
//! on [`EVENTS_CHANNEL`] at commit.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::Row;
use uuid::Uuid;
use zt_inventory::SoftwareKey;

use super::queue::CompanyScope;
use super::{key_uuid, to_u64, uuid_key, PgStore, Tx};
use crate::common::events::{assigned_ids, event_json, prunable_prefix, PRUNE_BATCH};
use crate::common::reads::event_from_row;
use crate::model::*;
use crate::Result;

/// NOTIFY channel announcing committed events.
pub const EVENTS_CHANNEL: &str = "zerotrace_events";

const EVENT_COLUMNS: &str = "SELECT event_id, company_id, kind, created_at, data FROM events";

/// Events as parallel arrays: ids, kinds, JSON data.
type EventRows<'a> = (Vec<i64>, Vec<&'a str>, Vec<String>);

/// Appends `events` as the transaction's last writes (the `event_log` row stays locked until
/// the commit: see the module documentation); returns the newest id.
pub(crate) async fn append_in_tx(
    tx: &mut Tx,
    scope: &mut CompanyScope,
    events: &[NewEvent],
    now: DateTime<Utc>,
) -> Result<i64> {
    if events.is_empty() {
        return Ok(0);
    }
    let last: i64 = sqlx::query_scalar(
        "UPDATE event_log SET last_id = last_id + $1 WHERE singleton RETURNING last_id",
    )
    .bind(events.len() as i64)
    .fetch_one(&mut **tx)
    .await?;
    // Per company (the row-level security policy checks each row's company against the
    // transaction's); global events go in under any scope.
    let mut by_company: BTreeMap<Option<CompanyId>, EventRows> = BTreeMap::new();
    for (id, e) in assigned_ids(last, events.len()).zip(events) {
        let rows = by_company.entry(e.company_id).or_default();
        rows.0.push(id);
        rows.1.push(e.kind.as_str());
        rows.2.push(event_json(e));
    }
    for (company, (ids, kinds, data)) in by_company {
        if let Some(c) = company {
            scope.enter(tx, c).await?;
        }
        sqlx::query(
            "INSERT INTO events (event_id, company_id, kind, created_at, data) \
             SELECT i, $1, k, $2, d FROM unnest($3::bigint[], $4::text[], $5::text[]) AS t(i, k, d)",
        )
        .bind(company)
        .bind(now)
        .bind(&ids)
        .bind(&kinds)
        .bind(&data)
        .execute(&mut **tx)
        .await?;
    }
    // Delivered at commit: every API process's stream hub wakes up.
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(EVENTS_CHANNEL)
        .execute(&mut **tx)
        .await?;
    Ok(last)
}

/// Name, version, ecosystem and source of these software versions (a shared table).
pub(crate) async fn load_packages(
    tx: &mut Tx,
    keys: &[SoftwareKey],
) -> Result<HashMap<SoftwareKey, PackageRef>> {
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let ids: Vec<Uuid> = keys.iter().map(key_uuid).collect();
    let rows = sqlx::query(
        "SELECT software_key, name, version, ecosystem, source FROM software \
         WHERE software_key = ANY($1)",
    )
    .bind(&ids)
    .fetch_all(&mut **tx)
    .await?;
    let mut out = HashMap::with_capacity(rows.len());
    for row in rows {
        out.insert(
            uuid_key(row.try_get(0)?),
            PackageRef {
                name: row.try_get(1)?,
                version: row.try_get(2)?,
                ecosystem: row.try_get(3)?,
                source: row.try_get(4)?,
            },
        );
    }
    Ok(out)
}

/// Lets the rest of the transaction read every company's events (the streams that span
/// companies: the operator's, and each process's tail of the log).
async fn all_companies(tx: &mut Tx) -> Result<()> {
    super::set_all_companies(tx).await
}

impl PgStore {
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
                let mut tx = self.pool.begin().await?;
                all_companies(&mut tx).await?;
                let sql = format!("{EVENT_COLUMNS} WHERE event_id > $1 ORDER BY event_id LIMIT $2");
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(after)
                    .bind(limit)
                    .fetch_all(&mut *tx)
                    .await?;
                tx.commit().await?;
                rows
            }
            Some(c) => {
                let mut tx = self.begin_for_company(c).await?;
                // Two index ranges (the company's, the global events') instead of an OR.
                let sql = format!(
                    "SELECT * FROM (({EVENT_COLUMNS} WHERE company_id = $1 AND event_id > $2 \
                     ORDER BY event_id LIMIT $3) UNION ALL ({EVENT_COLUMNS} \
                     WHERE company_id IS NULL AND event_id > $2 ORDER BY event_id LIMIT $3)) e \
                     ORDER BY event_id LIMIT $3"
                );
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(c)
                    .bind(after)
                    .bind(limit)
                    .fetch_all(&mut *tx)
                    .await?;
                tx.commit().await?;
                rows
            }
        };
        rows.iter().map(event_from_row).collect()
    }

    pub(crate) async fn event_log_bounds_impl(&self) -> Result<EventLogBounds> {
        let row = sqlx::query(
            "SELECT (SELECT last_id FROM event_log WHERE singleton), \
             (SELECT pruned_through FROM event_prune WHERE singleton)",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(EventLogBounds {
            head: to_u64(row.try_get(0)?),
            pruned_through: to_u64(row.try_get(1)?),
        })
    }

    pub(crate) async fn append_events_impl(
        &self,
        events: &[NewEvent],
        now: DateTime<Utc>,
    ) -> Result<u64> {
        let mut tx = self.pool.begin().await?;
        let mut scope = CompanyScope::new();
        let head = append_in_tx(&mut tx, &mut scope, events, now).await?;
        tx.commit().await?;
        if events.is_empty() {
            return Ok(self.event_log_bounds_impl().await?.head);
        }
        Ok(to_u64(head))
    }

    pub(crate) async fn prune_events_impl(&self, before: DateTime<Utc>) -> Result<u64> {
        let mut pruned = 0u64;
        loop {
            let started = std::time::Instant::now();
            let mut tx = self.pool.begin().await?;
            all_companies(&mut tx).await?;
            // The watermark row locked first: two pruners take turns.
            let from: i64 = sqlx::query_scalar(
                "SELECT pruned_through FROM event_prune WHERE singleton FOR UPDATE",
            )
            .fetch_one(&mut *tx)
            .await?;
            let rows = sqlx::query(
                "SELECT event_id, created_at FROM events WHERE event_id > $1 \
                 ORDER BY event_id LIMIT $2",
            )
            .bind(from)
            .bind(PRUNE_BATCH as i64)
            .fetch_all(&mut *tx)
            .await?;
            let created: Vec<DateTime<Utc>> = rows
                .iter()
                .map(|r| r.try_get(1))
                .collect::<std::result::Result<_, _>>()?;
            let n = prunable_prefix(&created, &before);
            if n == 0 {
                tx.commit().await?;
                return Ok(pruned);
            }
            let through: i64 = rows[n - 1].try_get(0)?;
            sqlx::query("DELETE FROM events WHERE event_id > $1 AND event_id <= $2")
                .bind(from)
                .bind(through)
                .execute(&mut *tx)
                .await?;
            sqlx::query("UPDATE event_prune SET pruned_through = $1 WHERE singleton")
                .bind(through)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            crate::common::janitor_timing("prune events", started, n as u64);
            pruned += n as u64;
            if n < rows.len() || rows.len() < PRUNE_BATCH {
                return Ok(pruned);
            }
        }
    }

    /// A receiver that gets `()` after every NOTIFY of committed events (from any process),
    /// on a listening connection of its own that reconnects by itself.
    pub(crate) async fn event_notifications_impl(&self) -> Result<tokio::sync::mpsc::Receiver<()>> {
        let mut listener = sqlx::postgres::PgListener::connect_with(&self.pool).await?;
        listener.listen(EVENTS_CHANNEL).await?;
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tx.closed() => return,
                    got = listener.recv() => match got {
                        // Full channel: a wake-up is pending already.
                        Ok(_) => { let _ = tx.try_send(()); }
                        // The listener reconnects on the next recv (readers poll meanwhile).
                        Err(_) => {
                            let _ = tx.try_send(());
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    },
                }
            }
        });
        Ok(rx)
    }
}

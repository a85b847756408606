//! Table statistics and dead rows, for a PostgreSQL whose autovacuum is off; and the
//! companies' agent totals folded (`totals.rs`), whatever autovacuum does.
//!
//! The planner sizes every join from table statistics. Without them (a server configured with
//! `autovacuum = off` never analyzes), it guesses one row for "this company's open findings"
//! and walks all of them for each report that removes software: seen on such a server, a
//! resolve statement read 7,000 index entries to update 3 rows. When autovacuum is on it does
//! this work and upkeep does nothing; when it is off, upkeep analyzes the store's tables (and
//! vacuums the queue) once they changed enough, on a connection of the login role
//! (the owner of the schema: the application role may not analyze), one server process at a
//! time.

use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};

use super::PgStore;
use crate::Result;

/// How often a process looks at the statistics.
const UPKEEP_EVERY: Duration = Duration::from_secs(10);

/// Advisory lock key: one process at a time does the upkeep ("ztupkeep").
const UPKEEP_LOCK: i64 = 0x7a74_7570_6b65_6570;

impl PgStore {
    pub(crate) async fn upkeep_impl(&self) -> Result<()> {
        {
            let mut due = self
                .upkeep_due
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let now = Instant::now();
            if now < *due {
                return Ok(());
            }
            *due = now + UPKEEP_EVERY;
        }
        // The companies' sums of their agents' counters: their delta rows folded (`totals.rs`).
        let folded = self.fold_company_totals().await?;
        if folded > 0 {
            tracing::debug!(companies = folded, "agent totals folded");
        }
        // Asked on the pool: a server with autovacuum on (the usual case) costs no connection.
        let autovacuum: bool = sqlx::query_scalar("SELECT current_setting('autovacuum')::boolean")
            .fetch_one(&self.pool)
            .await?;
        if autovacuum {
            return Ok(());
        }
        let mut conn = PgConnection::connect_with(&self.connect_options).await?;
        let result = upkeep(&mut conn).await;
        conn.close().await?;
        result
    }
}

async fn upkeep(conn: &mut PgConnection) -> Result<()> {
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(UPKEEP_LOCK)
        .fetch_one(&mut *conn)
        .await?;
    if !locked {
        return Ok(());
    }
    // A table is analyzed when its rows changed by as many as it had at the last analysis (so
    // a growing table is analyzed at 50, 100, 200, … rows: estimates stay within 2x, and a
    // fleet load of 10 M app records pays for ~15 analyses per partition, not ~100 at
    // autovacuum's 10%). Only the queue, which every report passes through and the retention
    // empties, is vacuumed; the rest churns little and is left to the operator.
    let due: Vec<(String, bool)> = sqlx::query_as(
        "SELECT quote_ident(s.relname), \
                s.relname = 'queue' AND s.n_dead_tup > 1000 + greatest(c.reltuples, 0) \
         FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid \
         WHERE s.schemaname = current_schema() \
           AND (s.n_mod_since_analyze > 50 + greatest(c.reltuples, 0) \
                OR (s.relname = 'queue' AND s.n_dead_tup > 1000 + greatest(c.reltuples, 0))) \
         ORDER BY s.relname",
    )
    .fetch_all(&mut *conn)
    .await?;
    for (table, vacuum) in due {
        let sql = if vacuum {
            format!("VACUUM (ANALYZE) {table}")
        } else {
            format!("ANALYZE {table}")
        };
        let started = Instant::now();
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut *conn)
            .await?;
        tracing::debug!(
            table,
            vacuum,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "table upkeep"
        );
    }
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(UPKEEP_LOCK)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

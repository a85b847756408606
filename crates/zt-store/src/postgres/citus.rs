//! Citus mode (issue 18): the same schema spread over several PostgreSQL nodes by the Citus
//! extension, distributed by company.
//!
//! Where each table goes is decided from the catalog, not from a list kept by hand, so that a
//! table a later migration adds is placed by the same rule:
//! - a table with a `company_id` column whose every unique key contains `company_id` is
//!   *distributed* by it, co-located with `companies`: all of a company's rows live on one
//!   node, every tenant query (they all name their company) is routed to that node, and joins
//!   between tenant tables stay on it;
//! - the knowledge the tenant queries join with (`software`, `software_vulns`, `vulns`,
//!   `vuln_aliases`) becomes *reference* tables, copied to every node;
//! - everything else stays a plain table *on the coordinator*: the queue (claimed across
//!   companies with `FOR UPDATE SKIP LOCKED`, keyed by `queue_id` alone), the event log and
//!   outbox (ids handed out in commit order), credentials and sessions (looked up before a
//!   company is known), the knowledge base's raw records and bookkeeping.
//!
//! Row-level security needs the transaction's company on the workers too: `set_company` says
//! `SET LOCAL`, which Citus replays on every worker connection of the transaction when the
//! session has `citus.propagate_set_commands = 'local'` (set on every pooled connection in
//! Citus mode). `set_config()` is not carried to the workers.
//!
//! The coordinator opens its connections to the workers as the *current* role, which is
//! `zerotrace_app` after the pool's `SET ROLE`: that role must be able to log in.

use sqlx::{Executor, PgConnection, Row};

use super::APP_ROLE;
use crate::{Result, StoreError};

/// Tables without `company_id` that tenant queries join with: copied to every node.
pub const REFERENCE_TABLES: &[&str] = &["software", "software_vulns", "vulns", "vuln_aliases"];

/// The triggers of migration 0960 that keep the company totals on one node (see
/// `distribute_locked`).
const TOTALS_TRIGGERS: [&str; 2] = ["agents_totals_insert", "agents_totals_update"];

/// The table every distributed table is co-located with.
pub const COLOCATION_ANCHOR: &str = "companies";

/// Session-level advisory lock key serializing placement work between processes that start
/// at once ("zt-citus" in ASCII).
const PLACEMENT_LOCK: i64 = 0x7a74_2d63_6974_7573;

/// Where a table lives in a Citus cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Placement {
    /// Hash-distributed by `company_id`, co-located with `companies`.
    Distributed,
    /// Copied to every node.
    Reference,
    /// A plain table on the coordinator.
    Coordinator,
}

impl Placement {
    pub fn as_str(self) -> &'static str {
        match self {
            Placement::Distributed => "distributed by company_id",
            Placement::Reference => "reference table (every node)",
            Placement::Coordinator => "stays on the coordinator",
        }
    }
}

/// One line of the plan.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TablePlan {
    pub table: String,
    /// Where the rule puts it.
    pub target: Placement,
    /// Where it is now (`Coordinator` for a table Citus does not manage).
    pub current: Placement,
    /// Whether it is partitioned (its partitions follow it).
    pub partitioned: bool,
    /// Rows it holds now (what the conversion copies).
    pub rows: i64,
    /// Why the rule put it there.
    pub reason: String,
}

impl TablePlan {
    pub fn pending(&self) -> bool {
        self.target != self.current
    }
}

/// Whether the database has the citus extension.
pub async fn installed(conn: &mut PgConnection) -> Result<bool> {
    Ok(
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')")
            .fetch_one(&mut *conn)
            .await?,
    )
}

/// Whether the schema was distributed (recorded in zt_meta by [`distribute`]).
pub async fn schema_distributed(conn: &mut PgConnection) -> Result<bool> {
    let v: Option<String> = sqlx::query_scalar("SELECT value FROM zt_meta WHERE key = 'citus'")
        .fetch_optional(&mut *conn)
        .await?;
    Ok(v.as_deref() == Some("distributed"))
}

/// The plan for every table of the schema, companies first (the co-location anchor must be
/// distributed before the tables co-located with it), then the other distributed tables,
/// reference tables, and the tables that stay.
pub async fn plan(conn: &mut PgConnection) -> Result<Vec<TablePlan>> {
    if !installed(conn).await? {
        return Err(StoreError::Other(
            "the database has no citus extension: CREATE EXTENSION citus and add the worker \
             nodes (citus_add_node) first"
                .into(),
        ));
    }
    // Shards are hidden from pg_class for client sessions (citus.override_table_visibility);
    // the name filter is a second guard against planning a shard (`<table>_<shard id>`).
    let rows = sqlx::query(
        "SELECT c.relname::text, c.relkind = 'p', \
                EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid \
                        AND a.attname = 'company_id' AND NOT a.attisdropped), \
                NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisunique \
                        AND NOT EXISTS (SELECT 1 FROM pg_attribute a \
                                        WHERE a.attrelid = c.oid AND a.attname = 'company_id' \
                                          AND a.attnum = ANY (i.indkey::int2[]))), \
                (SELECT p.partmethod::text || p.repmodel::text FROM pg_dist_partition p \
                 WHERE p.logicalrelid = c.oid) \
         FROM pg_class c \
         WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p') \
           AND NOT c.relispartition AND c.relname !~ '_[0-9]+$' \
         ORDER BY c.relname",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut plan = Vec::with_capacity(rows.len());
    for row in rows {
        let table: String = row.try_get(0)?;
        let partitioned: bool = row.try_get(1)?;
        let has_company: bool = row.try_get(2)?;
        let keys_have_company: bool = row.try_get(3)?;
        let dist: Option<String> = row.try_get(4)?;
        let current = match dist.as_deref() {
            Some(m) if m.starts_with('h') => Placement::Distributed,
            Some(m) if m.starts_with('n') && m.ends_with('t') => Placement::Reference,
            _ => Placement::Coordinator,
        };
        let (target, reason) = if REFERENCE_TABLES.contains(&table.as_str()) {
            (
                Placement::Reference,
                "knowledge that tenant queries join with".to_string(),
            )
        } else if table.starts_with("_sqlx") {
            (Placement::Coordinator, "migration bookkeeping".to_string())
        } else if has_company && keys_have_company {
            (
                Placement::Distributed,
                "tenant rows; every unique key holds company_id".to_string(),
            )
        } else if has_company {
            (
                Placement::Coordinator,
                "a unique key without company_id (ids handed out across companies)".to_string(),
            )
        } else {
            (
                Placement::Coordinator,
                "no company_id; not joined with tenant rows".to_string(),
            )
        };
        plan.push(TablePlan {
            table,
            target,
            current,
            partitioned,
            rows: 0,
            reason,
        });
    }
    for t in plan.iter_mut().filter(|t| t.pending()) {
        t.rows = count(conn, &t.table).await?;
    }
    plan.sort_by_key(|t| {
        let rank = match (t.target, t.table.as_str()) {
            (Placement::Distributed, COLOCATION_ANCHOR) => 0,
            (Placement::Distributed, _) => 1,
            (Placement::Reference, _) => 2,
            (Placement::Coordinator, _) => 3,
        };
        (rank, t.table.clone())
    });
    Ok(plan)
}

async fn count(conn: &mut PgConnection, table: &str) -> Result<i64> {
    // The name comes from pg_class and is quoted as an identifier.
    Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM {}",
        quote_ident(table)
    )))
    .fetch_one(&mut *conn)
    .await?)
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The plan as an operator reads it before anything changes.
pub fn describe(plan: &[TablePlan]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let width = plan.iter().map(|t| t.table.len()).max().unwrap_or(5).max(5);
    let _ = writeln!(
        out,
        "{:<width$}  {:<29}  {:>10}  action",
        "table", "placement", "rows"
    );
    for t in plan {
        let action = if !t.pending() {
            "none (already so)".to_string()
        } else {
            match t.target {
                Placement::Distributed if t.table == COLOCATION_ANCHOR => {
                    "create_distributed_table(company_id)".to_string()
                }
                Placement::Distributed => {
                    format!("create_distributed_table(company_id, colocate_with => {COLOCATION_ANCHOR})")
                }
                Placement::Reference => "create_reference_table".to_string(),
                Placement::Coordinator => "none".to_string(),
            }
        };
        let part = if t.partitioned { " (partitioned)" } else { "" };
        let _ = writeln!(
            out,
            "{:<width$}  {:<29}  {:>10}  {action}{part} — {}",
            t.table,
            t.target.as_str(),
            t.rows,
            t.reason
        );
    }
    out
}

/// What [`distribute`] did to one table.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Moved {
    pub table: String,
    pub placement: Placement,
    pub rows_before: i64,
    pub rows_after: i64,
}

/// Carries out the pending lines of `plan`, one table per statement (each commits on its
/// own: an interrupted run is resumed by running it again), then checks that every moved
/// table holds as many rows as before and records the mode in zt_meta. Writes to a table
/// wait while Citus copies its rows to the shards; reads go on.
pub async fn distribute(conn: &mut PgConnection, plan: &[TablePlan]) -> Result<Vec<Moved>> {
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(PLACEMENT_LOCK)
        .execute(&mut *conn)
        .await?;
    let result = distribute_locked(conn, plan).await;
    let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(PLACEMENT_LOCK)
        .execute(&mut *conn)
        .await;
    let moved = result?;
    unlocked?;
    Ok(moved)
}

async fn distribute_locked(conn: &mut PgConnection, plan: &[TablePlan]) -> Result<Vec<Moved>> {
    let mut moved = Vec::new();
    // A deployment made on one node keeps its company totals with statement triggers on
    // `agents` (migration 0960), which Citus refuses on a distributed table; in Citus mode the
    // reads sum the agents instead (`totals.rs`), so the triggers go. Only those still there:
    // once `agents` is distributed, Citus refuses trigger DDL on it, even `IF EXISTS`.
    let present: Vec<String> = sqlx::query_scalar(
        "SELECT tgname::text FROM pg_trigger \
         WHERE tgrelid = 'agents'::regclass AND tgname::text = ANY($1)",
    )
    .bind(&TOTALS_TRIGGERS[..])
    .fetch_all(&mut *conn)
    .await?;
    for trigger in &present {
        // One of `TOTALS_TRIGGERS`, plain identifiers.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP TRIGGER {trigger} ON agents"
        )))
        .execute(&mut *conn)
        .await?;
    }
    // Another process may have placed tables while this one waited for the lock.
    let fresh = self::plan(conn).await?;
    for t in plan {
        let Some(now) = fresh.iter().find(|f| f.table == t.table) else {
            continue;
        };
        if !now.pending() {
            continue;
        }
        let before = count(conn, &t.table).await?;
        let statement = match now.target {
            Placement::Distributed if t.table == COLOCATION_ANCHOR => {
                "SELECT create_distributed_table($1::regclass, 'company_id')".to_string()
            }
            Placement::Distributed => format!(
                "SELECT create_distributed_table($1::regclass, 'company_id', colocate_with => '{COLOCATION_ANCHOR}')"
            ),
            Placement::Reference => "SELECT create_reference_table($1::regclass)".to_string(),
            Placement::Coordinator => continue,
        };
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .bind(quote_ident(&t.table))
            .execute(&mut *conn)
            .await
            .map_err(|e| {
                StoreError::Other(format!("distributing table {} failed: {e}", t.table))
            })?;
        // Citus copied the rows to the shards and emptied the local table; a count that
        // differs means rows were lost on the way: stop before anything else moves.
        let after = count(conn, &t.table).await?;
        if after != before {
            return Err(StoreError::Corrupt(format!(
                "table {} held {before} rows before it was distributed and {after} after",
                t.table
            )));
        }
        moved.push(Moved {
            table: t.table.clone(),
            placement: now.target,
            rows_before: before,
            rows_after: after,
        });
    }
    // Citus's own clean-up of the local copies (citus_cleanup_orphaned_resources runs by
    // itself later; the local data is gone already).
    sqlx::query(
        "INSERT INTO zt_meta (key, value) VALUES ('citus', 'distributed') \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )
    .execute(&mut *conn)
    .await?;
    Ok(moved)
}

/// What `PgStore::connect` does in a database with the citus extension, on the migrating
/// connection after the migrations: a schema created just now (no company yet, nothing
/// distributed) is distributed; a distributed schema gets the tables later migrations added
/// placed by the same rule; a populated schema that was never distributed is left alone
/// (`zerotrace admin citus distribute` converts it, printing its plan first). Then the app
/// role is made able to log in, which the coordinator's connections to the workers need.
/// Returns whether the schema is distributed.
pub async fn prepare(conn: &mut PgConnection, app_role: bool) -> Result<bool> {
    let distributed = if schema_distributed(conn).await? {
        let plan = plan(conn).await?;
        if plan.iter().any(TablePlan::pending) {
            distribute(conn, &plan).await?;
        }
        true
    } else {
        let plan = plan(conn).await?;
        let untouched = plan.iter().all(|t| t.current == Placement::Coordinator);
        let empty: bool = sqlx::query_scalar("SELECT NOT EXISTS (SELECT 1 FROM companies)")
            .fetch_one(&mut *conn)
            .await?;
        if untouched && empty {
            distribute(conn, &plan).await?;
            true
        } else {
            tracing::warn!(
                "the database has the citus extension but ZeroTrace's tables are not \
                 distributed: run `zerotrace admin citus distribute` to spread them over the \
                 worker nodes"
            );
            false
        }
    };
    if app_role {
        ensure_app_role_login(conn).await?;
    }
    Ok(distributed)
}

/// Citus connects to the workers as the current role: `zerotrace_app` (NOLOGIN when the
/// migrations create it) must be allowed to log in.
async fn ensure_app_role_login(conn: &mut PgConnection) -> Result<()> {
    if app_role_can_login(conn).await? {
        return Ok(());
    }
    let altered = conn
        .execute(sqlx::AssertSqlSafe(format!("ALTER ROLE {APP_ROLE} LOGIN")))
        .await;
    // Roles belong to the cluster, not to one database: another ZeroTrace store opening a
    // database of the same cluster at the same moment may have made the same change, and
    // PostgreSQL then refuses ours ("tuple concurrently updated"). What counts is the result.
    if altered.is_err() && app_role_can_login(conn).await? {
        return Ok(());
    }
    altered.map_err(|e| {
        StoreError::Other(format!(
            "Citus opens its connections to the worker nodes as the role {APP_ROLE}, which \
                 cannot log in, and making it a login role failed ({e}): run `ALTER ROLE \
                 {APP_ROLE} LOGIN` as a superuser on the coordinator (Citus carries it to the \
                 workers) and let the workers authenticate it (pg_hba.conf, or a password in \
                 pg_dist_authinfo)"
        ))
    })?;
    Ok(())
}

async fn app_role_can_login(conn: &mut PgConnection) -> Result<bool> {
    Ok(
        sqlx::query_scalar("SELECT rolcanlogin FROM pg_roles WHERE rolname = $1")
            .bind(APP_ROLE)
            .fetch_optional(&mut *conn)
            .await?
            .unwrap_or(true),
    )
}

impl super::PgStore {
    /// The placement plan of this database's tables (on a connection of the login role, the
    /// tables' owner).
    pub async fn citus_plan(&self) -> Result<Vec<TablePlan>> {
        use sqlx::Connection;
        let mut conn = PgConnection::connect_with(self.connect_options())
            .await
            .map_err(super::explain_connect_error)?;
        let plan = plan(&mut conn).await;
        let _ = conn.close().await;
        plan
    }

    /// Carries out `plan` (see [`distribute`]); the servers must be restarted afterwards so
    /// that their connections carry the company to the workers.
    pub async fn citus_distribute(&self, plan: &[TablePlan]) -> Result<Vec<Moved>> {
        use sqlx::Connection;
        let mut conn = PgConnection::connect_with(self.connect_options())
            .await
            .map_err(super::explain_connect_error)?;
        let moved = distribute(&mut conn, plan).await;
        let _ = conn.close().await;
        moved
    }
}

//! The embedded SQLite backend (WAL mode, one file in the data dir).
//!
//! SQLite allows one writer at a time. Writers of this process queue on an async mutex rather
//! than in SQLite's busy handler (which sleeps in steps and would add tens of milliseconds of
//! latency under load); writers of other processes on the same file (a `--role worker` beside a
//! `--role api`) still meet the busy timeout. Every write transaction starts with
//! `BEGIN IMMEDIATE`, so it holds the write lock from its first statement and never has to
//! upgrade a read lock (which could fail with SQLITE_BUSY mid-transaction).
//!
//! Many values go in one statement, never one statement per row: every statement costs a round
//! trip to the connection's worker thread. Reads and the cold write paths take them as one JSON
//! parameter expanded by `json_each`.
//!
//! The hot multi-row writes (accepting reports, claims, `apply.rs`) bind their rows as plain
//! parameters instead (`rows.rs`) and say `INSERT OR FAIL` / `UPDATE OR FAIL`. A statement that
//! may abort halfway — default conflict mode ABORT, `ON CONFLICT DO UPDATE`, or any SQL
//! function call such as `unhex` or `->>` — makes SQLite copy every page it touches into a
//! statement journal first; FAIL needs no undo, and our transactions roll back as a whole on any
//! error anyway (measured: the statement journal was ~15% of server CPU on first-time
//! inventories).

pub(crate) mod analyses;
mod apply;
pub mod backup;
pub(crate) mod events;
pub(crate) mod knowledge;
mod lifecycle;
mod matches;
pub(crate) mod notify;
pub(crate) mod process;
mod queue;
pub(crate) mod reads;
pub(crate) mod rollup;
mod rows;
mod sessions;
mod tenants;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, Sqlite, SqlitePool, Transaction};
use tokio::sync::{Mutex, MutexGuard};
use zt_inventory::SoftwareKey;

use crate::common::keyset::{KeyBinder, KeyKind, KeyVal};
use crate::common::reads::Cols;
use crate::common::views::Dialect;
use crate::common::{from_ms, key_from, opt_ms, uuid_from};
use crate::Result;

/// The SQLite store. Clone is cheap (a pool handle).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// Readers.
    pub(crate) pool: SqlitePool,
    /// The one connection every write transaction of this process uses (see `open`).
    writer: SqlitePool,
    write_lock: Arc<Mutex<()>>,
    /// Background writers (queue workers, re-matching, retention) pass this gate first, so at
    /// most one of them waits for the write lock at a time: an accepted report, whose HTTP
    /// answer waits for its commit, queues behind at most one background transaction.
    background_gate: Arc<Mutex<()>>,
    /// Worker batches waiting to be written by the next group commit (see `process.rs`).
    pending_batches: process::PendingBatches,
    /// Worker claims waiting to be served by the next group claim (see `queue.rs`).
    pending_claims: queue::PendingClaims,
    /// Woken after every commit that appended events (see `events.rs`).
    event_listeners: events::EventListeners,
}

/// The schema's migrations (`migrations/sqlite/`), embedded.
pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// Page cache of the writer connection (negative: KiB): the pages ingest touches at scale.
const WRITER_CACHE_KIB: &str = "-524288";

/// A write transaction holding this process's write lock.
pub(crate) struct WriteTx<'a> {
    pub(crate) tx: Transaction<'static, Sqlite>,
    _guard: MutexGuard<'a, ()>,
    _gate: Option<MutexGuard<'a, ()>>,
}

impl WriteTx<'_> {
    pub(crate) async fn commit(self) -> Result<()> {
        self.tx.commit().await?;
        Ok(())
    }
}

impl SqliteStore {
    /// Opens (creating when missing) the database file at `path` and brings its schema up to date.
    pub async fn open(path: &Path) -> Result<SqliteStore> {
        let options = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // WAL + NORMAL is durable across application crashes; only an OS crash can lose
            // the last transactions (SQLite documentation, "WAL mode").
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true)
            .pragma("temp_store", "memory")
            // Readers keep a small cache: in WAL mode a reader drops its whole cache whenever
            // another connection (the writer) committed, so a large one is only freed and
            // refilled (measured: 64 MiB cost ~7% more server CPU on 1 M first-time apps).
            .pragma("cache_size", "-4096")
            // Checkpoints run in the background (`housekeeping`); a committing writer only
            // checkpoints itself when the WAL grew past 64 MiB regardless.
            .pragma("wal_autocheckpoint", "16384");
        // All writes of this process go through one dedicated connection. In WAL mode a
        // connection's page cache stays valid only while nobody else writes: when writes
        // rotated over a pool, every transaction began by re-reading the tenant B-tree pages
        // it touched (measured: a third of ingest CPU in page reads and cache truncation).
        // The lone writer keeps a large, always-warm cache.
        let writer = SqlitePoolOptions::new()
            .min_connections(1)
            .max_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(
                options
                    .clone()
                    .pragma("cache_size", WRITER_CACHE_KIB)
                    // Multi-row statements come in several shapes each (`rows.rs`).
                    .statement_cache_capacity(512),
            )
            .await?;
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
        let store = SqliteStore {
            pool,
            writer,
            write_lock: Arc::new(Mutex::new(())),
            background_gate: Arc::new(Mutex::new(())),
            pending_batches: Default::default(),
            pending_claims: Default::default(),
            event_listeners: Default::default(),
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<()> {
        MIGRATOR.run(&self.writer).await?;
        Ok(())
    }

    /// The connection pool, for the backend's own modules.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Starts a write transaction (`BEGIN IMMEDIATE`) after taking this process's write lock.
    pub(crate) async fn begin_write(&self) -> Result<WriteTx<'_>> {
        let guard = self.write_lock.lock().await;
        let tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        Ok(WriteTx {
            tx,
            _guard: guard,
            _gate: None,
        })
    }

    /// Like [`Self::begin_write`], for work nobody waits on interactively (see
    /// `background_gate`).
    pub(crate) async fn begin_background_write(&self) -> Result<WriteTx<'_>> {
        self.background_turn().await.begin().await
    }

    /// The write lock for background work, before any transaction: a group commit checks
    /// whether anything is left to write first, since an empty `BEGIN IMMEDIATE` … `ROLLBACK`
    /// still costs the writer connection a round of work.
    pub(crate) async fn background_turn(&self) -> WriteTurn<'_> {
        let gate = self.background_gate.lock().await;
        let guard = self.write_lock.lock().await;
        WriteTurn {
            writer: &self.writer,
            guard,
            gate,
        }
    }
}

/// This process's write lock, held by background work that has not begun its transaction.
pub(crate) struct WriteTurn<'a> {
    writer: &'a SqlitePool,
    guard: MutexGuard<'a, ()>,
    gate: MutexGuard<'a, ()>,
}

impl<'a> WriteTurn<'a> {
    pub(crate) async fn begin(self) -> Result<WriteTx<'a>> {
        let tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        Ok(WriteTx {
            tx,
            _guard: self.guard,
            _gate: Some(self.gate),
        })
    }
}

// --- conversions shared by the modules ---------------------------------------------------------

/// Times are epoch milliseconds, ids and keys raw bytes, string lists JSON text (lenient:
/// what does not parse reads as empty).
impl Cols for SqliteRow {
    plain_cols!();

    fn rank(&self, i: usize) -> Result<i64> {
        Ok(self.try_get(i)?)
    }
    fn int(&self, i: usize) -> Result<i64> {
        Ok(self.try_get(i)?)
    }
    fn time(&self, i: usize) -> Result<DateTime<Utc>> {
        Ok(from_ms(self.try_get(i)?))
    }
    fn opt_time(&self, i: usize) -> Result<Option<DateTime<Utc>>> {
        Ok(opt_ms(self.try_get(i)?))
    }
    fn uuid(&self, i: usize) -> Result<uuid::Uuid> {
        uuid_from(self.try_get::<&[u8], _>(i)?)
    }
    fn opt_uuid(&self, i: usize) -> Result<Option<uuid::Uuid>> {
        self.try_get::<Option<&[u8]>, _>(i)?
            .map(uuid_from)
            .transpose()
    }
    fn software_key(&self, i: usize) -> Result<SoftwareKey> {
        key_from(self.try_get::<&[u8], _>(i)?)
    }
    fn strings(&self, i: usize) -> Result<Vec<String>> {
        let text: Option<&str> = self.try_get(i)?;
        Ok(text
            .and_then(|t| serde_json::from_str(t).ok())
            .unwrap_or_default())
    }
}

impl KeyBinder for Sqlite {
    fn push_key(qb: &mut sqlx::QueryBuilder<Sqlite>, value: &KeyVal) {
        match value {
            KeyVal::Int(i) => qb.push_bind(*i),
            KeyVal::Float(f) => qb.push_bind(*f),
            KeyVal::Text(s) => qb.push_bind(s.clone()),
            KeyVal::Time(t) => qb.push_bind(crate::common::ms(*t)),
            KeyVal::Uuid(u) => qb.push_bind(u.as_bytes().to_vec()),
            KeyVal::Key(k) => qb.push_bind(k.0.to_vec()),
        };
    }

    fn push_output(qb: &mut sqlx::QueryBuilder<Sqlite>, expr: &str, _kind: KeyKind) {
        qb.push(expr);
    }
}

impl Dialect for Sqlite {
    const LIKE: &'static str = "LIKE";
    const OUTER_FIRST_JOIN: &'static str = "CROSS JOIN";

    fn list_text(column: &str) -> String {
        column.to_string()
    }

    const UNINDEXED_ORDER: &'static str = "+";
    const OPEN_BY_VULN_SEVERITIES: &'static str = "";
    const FENCES_FINDINGS_OF_VULNS: bool = false;
    const FENCES_NEWEST_FINDINGS: bool = false;

    fn indexed_by(index: &str) -> String {
        format!(" INDEXED BY {index}")
    }
}

/// A JSON array of hex strings, for `json_each` + `unhex` on the SQL side.
pub(crate) fn hex_list<'a>(keys: impl IntoIterator<Item = &'a [u8]>) -> String {
    let mut out = String::from("[");
    for (i, k) in keys.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('"');
        out.push_str(&hex::encode(k));
        out.push('"');
    }
    out.push(']');
    out
}

/// SQLite writers take turns on the write lock (see `begin_write`): nothing to run again.
macro_rules! once {
    ($body:expr) => {
        $body.await
    };
}

delegate_storage!(SqliteStore, once, {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn notifications(&self) -> &dyn crate::notify::NotificationStore {
        self
    }

    async fn housekeeping(&self) -> Result<()> {
        // PASSIVE: copies committed pages into the database file without blocking writers
        // or readers; the WAL restarts from its beginning once everything was copied.
        sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&self.pool)
            .await?;
        Ok(())
    }
});

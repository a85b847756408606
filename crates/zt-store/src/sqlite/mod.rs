//! The embedded SQLite backend (WAL mode, one file in the data dir).
//!
//! SQLite allows one writer at a time. Writers of this process queue on an async mutex rather
//! than in SQLite's busy handler (which sleeps in steps and would add tens of milliseconds of
//! latency under load); writers of other processes on the same file (a `--role worker` beside a
//! `--role api`) still meet the busy timeout. Every write transaction starts with
//! `BEGIN IMMEDIATE`, so it holds the write lock from its first statement and never has to
//! upgrade a read lock (which could fail with SQLITE_BUSY mid-transaction).
//!
//! Bulk rows travel as one JSON parameter expanded by `json_each` inside SQLite: one statement
//! per table instead of one per row, which matters because every statement costs a round trip
//! to the connection's worker thread.

pub(crate) mod knowledge;
mod matches;
pub(crate) mod process;
mod queue;
pub(crate) mod reads;
mod tenants;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};
use tokio::sync::{Mutex, MutexGuard};
use uuid::Uuid;
use zt_advisory::{KnowledgeBase, Severity};
use zt_inventory::{Software, SoftwareKey};

use crate::model::*;
use crate::storage::Storage;
use crate::{Result, StoreError};

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
}

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
            .pragma("cache_size", "-65536")
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
            .connect_with(options.clone().pragma("cache_size", WRITER_CACHE_KIB))
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
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<()> {
        sqlx::migrate!("./migrations/sqlite")
            .run(&self.writer)
            .await?;
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
        let gate = self.background_gate.lock().await;
        let guard = self.write_lock.lock().await;
        let tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        Ok(WriteTx {
            tx,
            _guard: guard,
            _gate: Some(gate),
        })
    }
}

// --- conversions shared by the modules ---------------------------------------------------------

pub(crate) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(crate) fn from_ms(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

pub(crate) fn opt_ms(ms: Option<i64>) -> Option<DateTime<Utc>> {
    ms.map(from_ms)
}

pub(crate) fn uuid_from(bytes: &[u8]) -> Result<Uuid> {
    Uuid::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("bad uuid in database: {e}")))
}

pub(crate) fn key_from(bytes: &[u8]) -> Result<SoftwareKey> {
    let arr: [u8; 16] = bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt("bad software key in database".into()))?;
    Ok(SoftwareKey(arr))
}

pub(crate) fn severity_rank(s: Severity) -> i64 {
    match s {
        Severity::Unknown => 0,
        Severity::None => 1,
        Severity::Low => 2,
        Severity::Medium => 3,
        Severity::High => 4,
        Severity::Critical => 5,
    }
}

pub(crate) fn severity_from_rank(r: i64) -> Severity {
    match r {
        1 => Severity::None,
        2 => Severity::Low,
        3 => Severity::Medium,
        4 => Severity::High,
        5 => Severity::Critical,
        _ => Severity::Unknown,
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

#[async_trait]
impl Storage for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn housekeeping(&self) -> Result<()> {
        // PASSIVE: copies committed pages into the database file without blocking writers
        // or readers; the WAL restarts from its beginning once everything was copied.
        sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn operator_token_hash(&self) -> Result<Option<TokenHash>> {
        self.operator_token_hash_impl().await
    }

    async fn init_operator_token(&self, hash: TokenHash) -> Result<bool> {
        self.init_operator_token_impl(hash).await
    }

    async fn create_company(&self, company: &Company, enroll_secret_hash: TokenHash) -> Result<()> {
        self.create_company_impl(company, enroll_secret_hash).await
    }

    async fn list_companies(&self) -> Result<Vec<Company>> {
        self.list_companies_impl().await
    }

    async fn get_company(&self, company_id: CompanyId) -> Result<Option<Company>> {
        self.get_company_impl(company_id).await
    }

    async fn create_user_token(
        &self,
        company_id: CompanyId,
        role: Role,
        hash: TokenHash,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        self.create_user_token_impl(company_id, role, hash, now)
            .await
    }

    async fn resolve_token(&self, hash: TokenHash) -> Result<Option<Principal>> {
        self.resolve_token_impl(hash).await
    }

    async fn enroll_agent(&self, agent: &NewAgent) -> Result<bool> {
        self.enroll_agent_impl(agent).await
    }

    async fn accept_reports(
        &self,
        reports: &[IncomingReport],
        queue_bound: u64,
    ) -> Result<Vec<AcceptOutcome>> {
        self.accept_reports_impl(reports, queue_bound).await
    }

    async fn claim_batch(&self, request: &ClaimRequest) -> Result<Vec<ClaimedReport>> {
        self.claim_batch_impl(request).await
    }

    async fn release(&self, leases: &[LeaseRef]) -> Result<()> {
        self.release_impl(leases).await
    }

    async fn fail(&self, failures: &[Failure], now: DateTime<Utc>) -> Result<()> {
        self.fail_impl(failures, now).await
    }

    async fn finish_batch(&self, batch: &ProcessedBatch) -> Result<Vec<ReportOutcome>> {
        self.finish_batch_impl(batch).await
    }

    async fn queue_stats(&self) -> Result<QueueStats> {
        self.queue_stats_impl().await
    }

    async fn purge_finished(&self, before: DateTime<Utc>) -> Result<u64> {
        self.purge_finished_impl(before).await
    }

    async fn purge_history(&self, before: DateTime<Utc>) -> Result<u64> {
        self.purge_history_impl(before).await
    }

    async fn report_status(
        &self,
        company_id: CompanyId,
        agent_id: AgentId,
        report_id: ReportId,
    ) -> Result<Option<ReportStatus>> {
        self.report_status_impl(company_id, agent_id, report_id)
            .await
    }

    async fn unmatched_software(&self, keys: &[SoftwareKey]) -> Result<Vec<SoftwareKey>> {
        self.unmatched_software_impl(keys).await
    }

    async fn software_to_rematch(
        &self,
        revision: u64,
        after: Option<SoftwareKey>,
        limit: u32,
    ) -> Result<Vec<(SoftwareKey, Software)>> {
        self.software_to_rematch_impl(revision, after, limit).await
    }

    async fn store_rematch(
        &self,
        results: &[MatchedSoftware],
        revision: u64,
    ) -> Result<MatchDelta> {
        self.store_rematch_impl(results, revision).await
    }

    async fn reconcile_pending(&self) -> Result<Option<u64>> {
        self.reconcile_pending_impl().await
    }

    async fn reconcile_findings(
        &self,
        company_id: CompanyId,
        after: Option<AgentId>,
        limit: u32,
        now: DateTime<Utc>,
    ) -> Result<Option<AgentId>> {
        self.reconcile_findings_impl(company_id, after, limit, now)
            .await
    }

    async fn mark_reconciled(&self, generation: u64) -> Result<()> {
        self.mark_reconciled_impl(generation).await
    }

    async fn knowledge_revision(&self) -> Result<u64> {
        self.knowledge_revision_impl().await
    }

    async fn load_knowledge(&self) -> Result<KnowledgeBase> {
        self.load_knowledge_impl().await
    }

    async fn summary(&self, company_id: CompanyId) -> Result<Summary> {
        self.summary_impl(company_id).await
    }

    async fn list_agents(&self, company_id: CompanyId, page: &PageRequest) -> Result<Page<Agent>> {
        self.list_agents_impl(company_id, page).await
    }

    async fn get_agent(&self, company_id: CompanyId, agent_id: AgentId) -> Result<Option<Agent>> {
        self.get_agent_impl(company_id, agent_id).await
    }

    async fn list_apps(
        &self,
        company_id: CompanyId,
        agent_id: AgentId,
        page: &PageRequest,
    ) -> Result<Option<Page<AppRow>>> {
        self.list_apps_impl(company_id, agent_id, page).await
    }

    async fn list_findings(
        &self,
        company_id: CompanyId,
        filter: &FindingFilter,
        page: &PageRequest,
    ) -> Result<Page<FindingRow>> {
        self.list_findings_impl(company_id, filter, page).await
    }

    async fn vulnerability(&self, company_id: CompanyId, id: &str) -> Result<Option<VulnDetail>> {
        self.vulnerability_impl(company_id, id).await
    }
}

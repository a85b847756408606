//! The PostgreSQL backend: many `zerotrace server` processes (API replicas and workers) share
//! one database.
//!
//! Design (see also migrations/postgres/):
//! - Tenant tables (agents, reports, apps, findings) are hash-partitioned by company_id
//!   (`PgOptions::partitions`, fixed when the schema is created) and protected by row-level
//!   security: a row is visible only while the transaction's `zerotrace.company_id` setting
//!   names its company. Every method that touches tenant rows sets it per transaction
//!   (`set_company`), once per company when a transaction spans several (a worker batch, a
//!   group commit of reports); nothing reads tenant rows without it. The pool's connections
//!   `SET ROLE zerotrace_app`, a role that is neither superuser nor owner nor BYPASSRLS, and
//!   the tables FORCE row-level security, so even a query that forgets its `company_id = …`
//!   clause cannot see another company's rows.
//! - Shared tables (companies, credentials, queue, software, match cache, knowledge) carry no
//!   inventory: the paths that legitimately span companies (token look-up, queue claims, the
//!   match cache, the knowledge base) use only those, and step into a company to touch its rows.
//! - The queue is claimed with `FOR UPDATE SKIP LOCKED`; a lease is an expiry time plus the
//!   owner and attempt number, checked (under a row lock) when the batch is written. Queued
//!   reports are announced with NOTIFY on [`QUEUE_CHANNEL`].
//! - Summary counters are maintained per agent in the same transaction that changes the
//!   agent's findings; the company summary sums its agents' rows.
//! - Concurrent writers lock in one order (queue rows, then agents by company and id, shared
//!   rows by key) and retry a transaction that still lost a deadlock or serialization race.

pub(crate) mod analyses;
mod apply;
pub mod citus;
mod events;
mod knowledge;
mod lifecycle;
mod matches;
pub(crate) mod notify;
mod process;
mod queue;
mod reads;
mod retention;
mod rollup;
mod sessions;
mod tenants;
mod totals;
mod upkeep;

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{Connection, Executor, PgConnection, PgPool, Postgres, Row, Transaction};
use uuid::Uuid;
use zt_advisory::Severity;
use zt_inventory::SoftwareKey;

use crate::common::keyset::{KeyBinder, KeyKind, KeyVal};
use crate::common::reads::Cols;
use crate::common::views::Dialect;
use crate::model::*;
use crate::{Result, StoreError};

/// The role the server's queries run as (created by the migrations when the migrating login may).
pub const APP_ROLE: &str = "zerotrace_app";

pub use events::EVENTS_CHANNEL;

/// NOTIFY channel announcing newly queued reports.
pub const QUEUE_CHANNEL: &str = "zerotrace_queue";

/// How to open the PostgreSQL store.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// Hash partitions per tenant table, used only when the schema is created.
    pub partitions: u32,
    /// Connections in the pool.
    pub max_connections: u32,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            partitions: 16,
            max_connections: 16,
        }
    }
}

/// How the store's connections are protected by row-level security.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RlsMode {
    /// Connections switch to the `zerotrace_app` role (neither superuser nor owner).
    AppRole,
    /// The login role is used as is; it is bound by the FORCEd policies unless it is a
    /// superuser or has BYPASSRLS.
    LoginRole { bypasses: bool },
}

/// The PostgreSQL store. Clone is cheap (a pool handle).
#[derive(Debug, Clone)]
pub struct PgStore {
    pub(crate) pool: PgPool,
    connect_options: PgConnectOptions,
    rls: RlsMode,
    partitions: u32,
    /// Whether the database has the citus extension (see `citus.rs`).
    citus: bool,
    /// When this process next looks at table statistics (see `upkeep.rs`).
    upkeep_due: std::sync::Arc<std::sync::Mutex<std::time::Instant>>,
}

pub(crate) type Tx = Transaction<'static, Postgres>;

impl PgStore {
    /// Connects to `url` (`postgres://user@host:port/db`), creates or upgrades the schema and
    /// opens the pool.
    pub async fn connect(url: &str, options: &PgOptions) -> Result<PgStore> {
        // Notices ("relation … already exists, skipping") are noise in the server's log. JIT
        // off: with table statistics, a batch's agents update (a correlated count over the
        // partitioned findings) is costed above `jit_above_cost`, and compiling it took
        // ~700 ms of CPU per execution for a statement that runs in milliseconds (seen in a
        // profile: libLLVM during a fleet load). Nothing the store runs gains from JIT.
        let connect_options = PgConnectOptions::from_str(url)?
            .application_name("zerotrace")
            .options([("client_min_messages", "warning"), ("jit", "off")]);
        let partitions = options.partitions.clamp(1, 1024);

        // Migrations run as the login role (it owns the schema), on a connection of their own;
        // sqlx serializes concurrent migrators with an advisory lock.
        let mut attempt = 0u32;
        let (mut conn, citus) = loop {
            let mut conn = PgConnection::connect_with(&connect_options)
                .await
                .map_err(explain_connect_error)?;
            let citus = citus::installed(&mut conn).await?;
            sqlx::query("SELECT set_config('zerotrace.partitions', $1, false)")
                .bind(partitions.to_string())
                .execute(&mut conn)
                .await?;
            match sqlx::migrate!("./migrations/postgres").run(&mut conn).await {
                Ok(()) => break (conn, citus),
                // On Citus a migration's DDL carries the application role to the worker
                // nodes, and roles belong to the whole cluster: a store migrating another
                // database of the cluster at the same moment makes PostgreSQL refuse one of
                // the two ("tuple concurrently updated"). The migration rolled back; run the
                // migrations again on a new connection (the old one holds the migrator's lock
                // until it closes).
                Err(e) if citus && attempt < 5 && concurrently_updated(&e) => {
                    attempt += 1;
                    tracing::warn!(error = %e, attempt, "a migration met a concurrent role change on the cluster; retrying");
                    conn.close().await.ok();
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                }
                Err(e) => return Err(e.into()),
            }
        };
        let row: (bool, bool, bool) = sqlx::query_as(
            "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1) \
                    AND pg_has_role(current_user, $1, 'MEMBER'), \
                    r.rolsuper, r.rolbypassrls \
             FROM pg_roles r WHERE r.rolname = current_user",
        )
        .bind(APP_ROLE)
        .fetch_one(&mut conn)
        .await?;
        let stored_partitions: Option<String> =
            sqlx::query_scalar("SELECT value FROM zt_meta WHERE key = 'partitions'")
                .fetch_optional(&mut conn)
                .await?;
        if citus {
            citus::prepare(&mut conn, row.0).await?;
        }
        conn.close().await?;
        let rls = if row.0 {
            RlsMode::AppRole
        } else {
            RlsMode::LoginRole {
                bypasses: row.1 || row.2,
            }
        };
        let partitions = stored_partitions
            .and_then(|p| p.parse().ok())
            .unwrap_or(partitions);

        // Citus replays `SET LOCAL` (the company of the transaction, see `set_company`) on
        // its worker connections only when told to; `set_config()` it never carries.
        let connect_options = if citus {
            connect_options.options([("citus.propagate_set_commands", "local")])
        } else {
            connect_options
        };
        let use_role = rls == RlsMode::AppRole;
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(2))
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if use_role {
                        conn.execute("SET ROLE zerotrace_app").await?;
                    }
                    Ok(())
                })
            })
            .connect_with(connect_options.clone())
            .await
            .map_err(explain_connect_error)?;
        Ok(PgStore {
            pool,
            connect_options,
            rls,
            partitions,
            citus,
            upkeep_due: std::sync::Arc::new(std::sync::Mutex::new(std::time::Instant::now())),
        })
    }

    /// The connection pool (connections run as the application role; see [`RlsMode`]).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// How row-level security applies to this store's connections.
    pub fn rls_mode(&self) -> RlsMode {
        self.rls
    }

    /// Hash partitions per tenant table (as the schema was created).
    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    /// Whether the database has the citus extension (the store then runs in Citus mode).
    pub fn is_citus(&self) -> bool {
        self.citus
    }

    /// The options the pool connects with (for a LISTEN connection of its own).
    pub fn connect_options(&self) -> &PgConnectOptions {
        &self.connect_options
    }

    /// A transaction working for one company: tenant rows of other companies are invisible
    /// in it, and writing them is refused, whatever the SQL says.
    pub async fn begin_for_company(&self, company_id: CompanyId) -> Result<Tx> {
        let mut tx = self.pool.begin().await?;
        set_company(&mut tx, company_id).await?;
        Ok(tx)
    }

    /// A receiver that gets `()` after every NOTIFY of newly queued reports (from any
    /// process), on a listening connection of its own that reconnects by itself. The
    /// listening task ends when the receiver is dropped.
    pub async fn queue_notifications_impl(&self) -> Result<tokio::sync::mpsc::Receiver<()>> {
        let mut listener = sqlx::postgres::PgListener::connect_with(&self.pool).await?;
        listener.listen(QUEUE_CHANNEL).await?;
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tx.closed() => return,
                    got = listener.recv() => match got {
                        // Full channel: a wake-up is pending already.
                        Ok(_) => { let _ = tx.try_send(()); }
                        // The listener reconnects on the next recv; do not spin meanwhile.
                        Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
                    },
                }
            }
        });
        Ok(rx)
    }
}

/// Scopes the rest of the transaction to one company (row-level security).
///
/// `SET LOCAL` rather than `set_config(…, true)` (the same on one server): Citus carries
/// `SET LOCAL` to the workers that hold the company's shards, where the policies are
/// checked, and `set_config()` not. SET takes no parameters; the value is a UUID's text.
pub(crate) async fn set_company(tx: &mut Tx, company_id: CompanyId) -> Result<()> {
    let id: Uuid = company_id.as_uuid();
    tx.execute(sqlx::AssertSqlSafe(format!(
        "SET LOCAL zerotrace.company_id = '{id}'"
    )))
    .await?;
    Ok(())
}

/// Lets the rest of the transaction see every company's rows of the tables whose policy
/// allows it (events, notifications: the dispatchers and streams that serve every company).
/// `SET LOCAL` for the reason given at [`set_company`].
pub(crate) async fn set_all_companies(tx: &mut Tx) -> Result<()> {
    tx.execute("SET LOCAL zerotrace.all_companies = 'on'")
        .await?;
    Ok(())
}

/// Whether a migration failed because another session changed the same catalog row at the
/// same moment (a cluster-wide one: a role, on Citus).
fn concurrently_updated(e: &sqlx::migrate::MigrateError) -> bool {
    matches!(e, sqlx::migrate::MigrateError::ExecuteMigration(sqlx::Error::Database(db), _)
        if db.message() == "tuple concurrently updated")
}

/// A connection error with its cause and fix spelled out where the usual reading of it
/// misleads: a TLS failure against a server whose certificate rustls cannot use.
pub(crate) fn explain_connect_error(e: sqlx::Error) -> StoreError {
    // rustls's refusal arrives as an I/O error ("invalid peer certificate: …") from the
    // handshake, other TLS trouble as `Error::Tls`.
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    let tls = matches!(e, sqlx::Error::Tls(_))
        || text.contains("peer certificate")
        || text.contains("UnsupportedCertVersion");
    if !tls {
        return StoreError::Database(e);
    }
    let cause = if text.contains("UnsupportedCertVersion") {
        "the server's certificate is X.509 version 1 (Citus generates such a self-signed one \
         when it turns TLS on), which rustls refuses even when it is not asked to verify it"
    } else {
        "the TLS handshake with the database server failed"
    };
    StoreError::Other(format!(
        "cannot connect to the database over TLS ({text}): {cause}. Fix: give the server a \
         version 3 certificate (ssl_cert_file and ssl_key_file in postgresql.conf, then \
         SELECT pg_reload_conf(); see README, \"Running on Citus\"), or add \
         sslmode=disable to the database URL on a network you trust"
    ))
}

/// Transactions that lost a deadlock or a serialization race are run again this often.
pub(crate) const RETRIES: u32 = 4;

/// Deadlock (40P01) and serialization failures (40001): the transaction rolled back whole and
/// may simply run again.
pub(crate) fn is_retryable(e: &StoreError) -> bool {
    match e {
        StoreError::Database(sqlx::Error::Database(db)) => {
            matches!(db.code().as_deref(), Some("40P01") | Some("40001"))
        }
        _ => false,
    }
}

/// Runs `$body` (an async expression yielding `Result<T>`) again when it lost a deadlock.
macro_rules! retry_on_conflict {
    ($body:expr) => {{
        let mut attempt = 0u32;
        loop {
            match $body.await {
                Err(e)
                    if crate::postgres::is_retryable(&e) && attempt < crate::postgres::RETRIES =>
                {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(5 << attempt)).await;
                }
                other => break other,
            }
        }
    }};
}

// --- conversions shared by the modules ---------------------------------------------------------

pub(crate) fn key_uuid(k: &SoftwareKey) -> Uuid {
    Uuid::from_bytes(k.0)
}

pub(crate) fn uuid_key(u: Uuid) -> SoftwareKey {
    SoftwareKey(*u.as_bytes())
}

/// The severity rank (`common::severity_rank`) as the `smallint` column holds it.
pub(crate) fn severity_rank(s: Severity) -> i16 {
    crate::common::severity_rank(s) as i16
}

pub(crate) fn severity_from_rank(r: i16) -> Severity {
    crate::common::severity_from_rank(i64::from(r))
}

pub(crate) fn to_i32(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

pub(crate) fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

pub(crate) fn to_u32(n: i32) -> u32 {
    u32::try_from(n).unwrap_or(0)
}

pub(crate) fn digest_from(bytes: &[u8]) -> [u8; 32] {
    bytes.try_into().unwrap_or([0; 32])
}

/// Times are `timestamptz`, ids and keys `uuid`, severity ranks `smallint`, string lists
/// `text[]`.
impl Cols for PgRow {
    plain_cols!();

    fn rank(&self, i: usize) -> Result<i64> {
        Ok(i64::from(self.try_get::<i16, _>(i)?))
    }
    fn int(&self, i: usize) -> Result<i64> {
        use sqlx::{Column, TypeInfo};
        let ty = self.column(i).type_info().name().to_string();
        Ok(match ty.as_str() {
            "INT2" => i64::from(self.try_get::<i16, _>(i)?),
            "INT4" => i64::from(self.try_get::<i32, _>(i)?),
            _ => self.try_get::<i64, _>(i)?,
        })
    }
    fn time(&self, i: usize) -> Result<DateTime<Utc>> {
        Ok(self.try_get(i)?)
    }
    fn opt_time(&self, i: usize) -> Result<Option<DateTime<Utc>>> {
        Ok(self.try_get(i)?)
    }
    fn uuid(&self, i: usize) -> Result<Uuid> {
        Ok(self.try_get(i)?)
    }
    fn opt_uuid(&self, i: usize) -> Result<Option<Uuid>> {
        Ok(self.try_get(i)?)
    }
    fn software_key(&self, i: usize) -> Result<SoftwareKey> {
        Ok(uuid_key(self.try_get(i)?))
    }
    fn strings(&self, i: usize) -> Result<Vec<String>> {
        Ok(self
            .try_get::<Option<Vec<String>>, _>(i)?
            .unwrap_or_default())
    }
}

impl KeyBinder for Postgres {
    fn push_key(qb: &mut sqlx::QueryBuilder<Postgres>, value: &KeyVal) {
        match value {
            KeyVal::Int(i) => qb.push_bind(*i),
            KeyVal::Float(f) => qb.push_bind(*f),
            KeyVal::Text(s) => qb.push_bind(s.clone()),
            KeyVal::Time(t) => qb.push_bind(*t),
            KeyVal::Uuid(u) => qb.push_bind(*u),
            KeyVal::Key(k) => qb.push_bind(key_uuid(k)),
        };
    }

    fn push_output(qb: &mut sqlx::QueryBuilder<Postgres>, expr: &str, kind: KeyKind) {
        match kind {
            KeyKind::Int => qb.push(format!("({expr})::bigint")),
            KeyKind::Float => qb.push(format!("({expr})::float8")),
            _ => qb.push(expr),
        };
    }
}

impl Dialect for Postgres {
    const LIKE: &'static str = "ILIKE";
    const OUTER_FIRST_JOIN: &'static str = "JOIN";

    fn list_text(column: &str) -> String {
        format!("array_to_string({column}, ' ')")
    }

    const UNINDEXED_ORDER: &'static str = "";
    const OPEN_BY_VULN_SEVERITIES: &'static str = crate::common::views::ALL_RANKS;
    const FENCES_FINDINGS_OF_VULNS: bool = true;
    const FENCES_NEWEST_FINDINGS: bool = true;

    fn indexed_by(_index: &str) -> String {
        String::new()
    }
}

delegate_storage!(PgStore, retry_on_conflict, {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn notifications(&self) -> &dyn crate::notify::NotificationStore {
        self
    }

    async fn housekeeping(&self) -> Result<()> {
        // Statistics when autovacuum is off; retention runs through `purge_*`.
        self.upkeep_impl().await
    }

    async fn queue_notifications(&self) -> Result<Option<tokio::sync::mpsc::Receiver<()>>> {
        Ok(Some(self.queue_notifications_impl().await?))
    }
});

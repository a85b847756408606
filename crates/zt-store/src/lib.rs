//! The storage interface of ZeroTrace and its implementations: SQLite (embedded default) and
//! PostgreSQL. The queue lives in the same store as the data, so that "accepted" and "stored"
//! are one transaction.
//!
//! Layout: [`storage::Storage`] is the interface the server uses (`Arc<dyn Storage>`);
//! [`model`] holds the types crossing it; `sqlite/` and `postgres/` implement it, sharing the
//! backend-neutral code (no SQL) in `common/`.
//! Knowledge-base tables (advisories, KEV, EPSS, feed state) live in `*/knowledge.rs`.

pub mod analysis;
pub mod any;
pub mod exclusive;
#[macro_use]
mod common;
pub mod knowledge;
pub mod model;
pub mod notify;
pub mod postgres;
pub mod sla;
pub mod sqlite;
pub mod storage;

pub use any::AnyStore;
/// The re-match after a knowledge change, for either backend.
pub use common::rematch;
pub use postgres::{PgOptions, PgStore};
pub use sqlite::SqliteStore;
pub use storage::Storage;

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A value read back from the database is not what the schema promises.
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// A caller-supplied value (e.g. a page cursor) is malformed.
    #[error("invalid {field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

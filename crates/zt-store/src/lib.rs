//! The storage interface of ZeroTrace and its implementations: SQLite (embedded default) and
//! PostgreSQL. The queue lives in the same store as the data, so that "accepted" and "stored"
//! are one transaction.
//!
//! Layout: `sqlite/` and `postgres/` hold the backends; each backend implements the storage
//! traits. Knowledge-base tables (advisories, KEV, EPSS, feed state) live in `*/knowledge.rs`.

pub mod sqlite;

pub use sqlite::SqliteStore;

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

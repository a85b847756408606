//! Either backend behind one value, for the commands that open "the store" from
//! `--data-dir` or `--database-url` and also need the knowledge-base methods beside the
//! [`Storage`] interface.

use std::path::Path;
use std::sync::Arc;

use crate::knowledge::{FeedState, ImportSummary, KnowledgeImport, KnowledgeStatus};
use crate::postgres::{PgOptions, PgStore};
use crate::sqlite::SqliteStore;
use crate::storage::Storage;
use crate::{Result, StoreError};

// One value per process: the size difference costs nothing worth a Box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum AnyStore {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

/// Whether a `--database-url` names PostgreSQL.
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// The URL with any password replaced, for logs and banners.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            if userinfo.contains(':') {
                format!("{scheme}://{user}:***@{host}")
            } else {
                format!("{scheme}://{userinfo}@{host}")
            }
        }
        None => url.to_string(),
    }
}

impl From<SqliteStore> for AnyStore {
    fn from(store: SqliteStore) -> Self {
        AnyStore::Sqlite(store)
    }
}

impl From<PgStore> for AnyStore {
    fn from(store: PgStore) -> Self {
        AnyStore::Postgres(store)
    }
}

impl AnyStore {
    /// Opens the SQLite file at `path`.
    pub async fn open_sqlite(path: &Path) -> Result<AnyStore> {
        Ok(AnyStore::Sqlite(SqliteStore::open(path).await?))
    }

    /// Connects to PostgreSQL (`postgres://…`).
    pub async fn open_postgres(url: &str, options: &PgOptions) -> Result<AnyStore> {
        if !is_postgres_url(url) {
            return Err(StoreError::Invalid {
                field: "database url",
                message: format!("expected postgres://…, got {}", redact_url(url)),
            });
        }
        Ok(AnyStore::Postgres(PgStore::connect(url, options).await?))
    }

    /// The store as the server and the admin commands use it.
    pub fn storage(&self) -> Arc<dyn Storage> {
        match self {
            AnyStore::Sqlite(s) => Arc::new(s.clone()),
            AnyStore::Postgres(s) => Arc::new(s.clone()),
        }
    }

    pub async fn import_knowledge(&self, batch: KnowledgeImport) -> Result<ImportSummary> {
        match self {
            AnyStore::Sqlite(s) => s.import_knowledge(batch).await,
            AnyStore::Postgres(s) => s.import_knowledge(batch).await,
        }
    }

    pub async fn knowledge_status(&self) -> Result<KnowledgeStatus> {
        match self {
            AnyStore::Sqlite(s) => s.knowledge_status().await,
            AnyStore::Postgres(s) => s.knowledge_status().await,
        }
    }

    pub async fn feed_state(&self, feed: &str) -> Result<Option<FeedState>> {
        match self {
            AnyStore::Sqlite(s) => s.feed_state(feed).await,
            AnyStore::Postgres(s) => s.feed_state(feed).await,
        }
    }

    pub async fn save_feed_state(&self, state: &FeedState) -> Result<()> {
        match self {
            AnyStore::Sqlite(s) => s.save_feed_state(state).await,
            AnyStore::Postgres(s) => s.save_feed_state(state).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_recognized_and_passwords_never_shown() {
        assert!(is_postgres_url("postgres://u@h/db"));
        assert!(is_postgres_url("postgresql://u@h/db"));
        assert!(!is_postgres_url("mysql://u@h/db"));
        assert_eq!(
            redact_url("postgres://alice:s3cret@db:5432/zt"),
            "postgres://alice:***@db:5432/zt"
        );
        assert_eq!(
            redact_url("postgres://alice@db/zt"),
            "postgres://alice@db/zt"
        );
        assert_eq!(redact_url("postgres://db/zt"), "postgres://db/zt");
    }
}

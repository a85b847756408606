//! Types of the knowledge-base API (advisories, KEV, EPSS, feed state), shared by the SQLite
//! backend (`sqlite/knowledge.rs`) and the PostgreSQL one to come.
//!
//! The backends provide, as inherent async methods with these exact signatures:
//! - `import_knowledge(&self, KnowledgeImport) -> Result<ImportSummary>`: one transaction per
//!   call; incremental by `modified` (see [`ImportSummary`]); bumps the knowledge revision when
//!   anything changed; never half-applies.
//! - `load_knowledge_impl(&self) -> Result<KnowledgeBase>` and `knowledge_revision_impl(&self)`,
//!   behind `Storage::{load_knowledge, knowledge_revision}`.
//! - `knowledge_status(&self) -> Result<KnowledgeStatus>`, `feed_state(&self, feed)`,
//!   `save_feed_state(&self, &FeedState)`.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

/// Bumped whenever the normalized record shape changes: stored rows of an older version are
/// rewritten by the next import of the same record even when its `modified` is unchanged,
/// and a binary snapshot of another version is ignored and rebuilt.
pub const KNOWLEDGE_MODEL_VERSION: i64 = 1;

pub use zt_advisory::import::{FeedState, ImportCounts, ImportSummary, KnowledgeImport};

/// One past import, for `feeds status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportLogEntry {
    pub finished_at: DateTime<Utc>,
    pub origin: String,
    pub summary: ImportSummary,
}

/// What the knowledge base holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnowledgeStatus {
    pub revision: u64,
    pub changed_at: Option<DateTime<Utc>>,
    /// (source, advisories) for each source.
    pub advisories_by_source: Vec<(String, u64)>,
    pub withdrawn: u64,
    pub kev: u64,
    pub epss: u64,
    pub epss_date: Option<NaiveDate>,
    pub feeds: Vec<FeedState>,
    pub recent_imports: Vec<ImportLogEntry>,
}

/// The feed names an import of files records its status under, with the records of each:
/// `import:<kind>` (kinds `osv`, `nvd`, `alpine-secdb`, ..., `kev`, `epss`), apart from the
/// online sources' names so that an import never moves a sync's cursor or validators.
pub fn import_feeds(batch: &KnowledgeImport) -> Vec<(String, u64)> {
    let mut counts: std::collections::BTreeMap<String, u64> = Default::default();
    for a in &batch.advisories {
        *counts
            .entry(format!("import:{}", a.source.as_str()))
            .or_default() += 1;
    }
    if !batch.kev.is_empty() {
        counts.insert("import:kev".into(), batch.kev.len() as u64);
    }
    if !batch.epss.is_empty() {
        counts.insert("import:epss".into(), batch.epss.len() as u64);
    }
    counts.into_iter().collect()
}

/// Records the outcome of an import of files under [`import_feeds`]' names: success moves
/// `last_success_at` and `records`; a failure keeps them and records the error.
pub async fn record_import(
    store: &dyn crate::Storage,
    feeds: &[(String, u64)],
    started: DateTime<Utc>,
    origin: &str,
    outcome: std::result::Result<(), String>,
) -> crate::Result<()> {
    for (feed, records) in feeds {
        let mut state = store.feed_state(feed).await?.unwrap_or(FeedState {
            feed: feed.clone(),
            ..Default::default()
        });
        state.url = Some(origin.to_string());
        state.last_attempt_at = Some(started);
        match &outcome {
            Ok(()) => {
                state.last_success_at = Some(Utc::now());
                state.last_status = Some("ok".into());
                state.records = *records;
            }
            Err(e) => state.last_status = Some(format!("error: {e}")),
        }
        store.save_feed_state(&state).await?;
    }
    Ok(())
}

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
use zt_advisory::{Advisory, EpssScore, KevEntry};

/// Bumped whenever the normalized record shape changes: stored rows of an older version are
/// rewritten by the next import of the same record even when its `modified` is unchanged,
/// and a binary snapshot of another version is ignored and rebuilt.
pub const KNOWLEDGE_MODEL_VERSION: i64 = 1;

/// Records to import in one transaction.
#[derive(Debug, Clone, Default)]
pub struct KnowledgeImport {
    pub advisories: Vec<Advisory>,
    pub kev: Vec<KevEntry>,
    pub epss: Vec<EpssScore>,
    /// What the import came from, for `feeds status` ("import: 3 paths", "sync: nvd").
    pub origin: String,
}

/// What happened to the records of one kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportCounts {
    /// Records handed to the import.
    pub received: u64,
    /// Not stored before.
    pub new: u64,
    /// Stored before and replaced: newer `modified`, or different content where the source has
    /// no `modified` (KEV, EPSS, secdb conversions), or stored by an older model version.
    pub updated: u64,
    /// Same content, or same `modified`, as stored.
    pub unchanged: u64,
    /// Skipped: older `modified` than the stored record.
    pub skipped_older: u64,
    /// Skipped: the same id came more than once in this import; the newest copy was used.
    pub skipped_duplicate: u64,
}

impl ImportCounts {
    pub fn changed(&self) -> u64 {
        self.new + self.updated
    }

    pub fn skipped(&self) -> u64 {
        self.skipped_older + self.skipped_duplicate
    }

    pub fn add(&mut self, other: &ImportCounts) {
        self.received += other.received;
        self.new += other.new;
        self.updated += other.updated;
        self.unchanged += other.unchanged;
        self.skipped_older += other.skipped_older;
        self.skipped_duplicate += other.skipped_duplicate;
    }
}

/// The outcome of one import.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportSummary {
    pub advisories: ImportCounts,
    pub kev: ImportCounts,
    pub epss: ImportCounts,
    /// The knowledge revision after the import (unchanged when nothing changed).
    pub revision: u64,
}

impl ImportSummary {
    pub fn total(&self) -> ImportCounts {
        let mut t = self.advisories;
        t.add(&self.kev);
        t.add(&self.epss);
        t
    }

    pub fn changed(&self) -> bool {
        self.total().changed() > 0
    }
}

/// Sync bookkeeping of one online feed ("nvd", "kev", "epss", "osv:PyPI").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedState {
    pub feed: String,
    pub url: Option<String>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// Feed-specific resume point (NVD: the lastModified watermark, RFC 3339).
    pub cursor: Option<String>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub last_success_at: Option<DateTime<Utc>>,
    /// "ok", "not-modified", or the error of the last attempt.
    pub last_status: Option<String>,
    /// Records read at the last successful sync.
    pub records: u64,
}

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

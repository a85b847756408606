//! What an import of knowledge records takes and tells, and the bookkeeping of an online
//! feed: plain data shared by the store (which applies imports) and the sync (which makes
//! them), so that neither depends on the other.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{Advisory, EpssScore, KevEntry};

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
    /// Stored before and removed: KEV entries the catalog no longer lists (withdrawn by CISA).
    #[serde(default)]
    pub removed: u64,
}

impl ImportCounts {
    pub fn changed(&self) -> u64 {
        self.new + self.updated + self.removed
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
        self.removed += other.removed;
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

impl FeedState {
    /// The error of the last attempt, when it failed.
    pub fn error(&self) -> Option<&str> {
        self.last_status
            .as_deref()
            .and_then(|s| s.strip_prefix("error: "))
    }
}

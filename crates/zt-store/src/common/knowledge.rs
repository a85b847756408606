//! The backend-neutral half of a knowledge import (see `crate::knowledge` for the rules):
//! deduplicating and counting the records, encoding and hashing them, classifying each against
//! what is stored, and the snapshot and import-log encodings. The backends read the stored
//! state and write the rows.

use std::collections::HashMap;

use sha2::{Digest, Sha256};
use zt_advisory::{Advisory, EpssScore, KevEntry, KnowledgeBase};

use super::ms;
use crate::knowledge::{ImportCounts, ImportSummary, KnowledgeImport, KNOWLEDGE_MODEL_VERSION};
use crate::{Result, StoreError};

/// How an incoming record compares with the stored one.
pub(crate) enum Verdict {
    New,
    Updated,
    Unchanged,
    Older,
}

pub(crate) fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

pub(crate) struct StoredAdvisory {
    /// Epoch milliseconds.
    pub(crate) modified: Option<i64>,
    pub(crate) hash: String,
    pub(crate) model_version: i64,
}

pub(crate) fn classify_advisory(
    incoming_modified: Option<i64>,
    hash: &str,
    stored: Option<&StoredAdvisory>,
) -> Verdict {
    let Some(s) = stored else {
        return Verdict::New;
    };
    if s.model_version != KNOWLEDGE_MODEL_VERSION {
        return Verdict::Updated;
    }
    if s.hash == hash {
        return Verdict::Unchanged;
    }
    match (incoming_modified, s.modified) {
        (Some(new), Some(old)) if new < old => Verdict::Older,
        // Same `modified`: the source says nothing changed (edited copies of one record, as in
        // some test fixtures, do not overwrite each other back and forth).
        (Some(new), Some(old)) if new == old => Verdict::Unchanged,
        _ => Verdict::Updated,
    }
}

/// Keeps one copy per key: the one with the newest `modified` (the first on ties).
pub(crate) fn dedupe_by<T>(
    items: Vec<T>,
    key: impl Fn(&T) -> String,
    modified: impl Fn(&T) -> Option<i64>,
    counts: &mut ImportCounts,
) -> Vec<T> {
    let mut index: HashMap<String, usize> = HashMap::with_capacity(items.len());
    let mut out: Vec<T> = Vec::with_capacity(items.len());
    for item in items {
        let k = key(&item);
        match index.get(&k) {
            Some(&i) => {
                counts.skipped_duplicate += 1;
                if modified(&item) > modified(&out[i]) {
                    out[i] = item;
                }
            }
            None => {
                index.insert(k, out.len());
                out.push(item);
            }
        }
    }
    out
}

/// An advisory with its stored form: the JSON record and its content hash.
pub(crate) struct EncodedAdvisory {
    pub(crate) advisory: Advisory,
    pub(crate) json: String,
    pub(crate) hash: String,
}

/// An import's records after the work that needs no database: deduplicated, counted as
/// received, advisories encoded and hashed.
pub(crate) struct PreparedImport {
    pub(crate) summary: ImportSummary,
    pub(crate) advisories: Vec<EncodedAdvisory>,
    pub(crate) kev: Vec<KevEntry>,
    pub(crate) epss: Vec<EpssScore>,
    pub(crate) origin: String,
}

/// Deduplicates and encodes a batch. Runs before the transaction: it is the CPU-heavy part.
pub(crate) fn prepare_import(batch: KnowledgeImport) -> Result<PreparedImport> {
    let mut summary = ImportSummary {
        advisories: ImportCounts {
            received: batch.advisories.len() as u64,
            ..Default::default()
        },
        kev: ImportCounts {
            received: batch.kev.len() as u64,
            ..Default::default()
        },
        epss: ImportCounts {
            received: batch.epss.len() as u64,
            ..Default::default()
        },
        revision: 0,
    };
    let advisories = dedupe_by(
        batch.advisories,
        |a| a.id.clone(),
        |a| a.modified.map(ms),
        &mut summary.advisories,
    );
    let kev = dedupe_by(batch.kev, |k| k.cve.clone(), |_| None, &mut summary.kev);
    let epss = dedupe_by(
        batch.epss,
        |e| e.cve.clone(),
        |e| {
            e.date
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|t| ms(t.and_utc()))
        },
        &mut summary.epss,
    );
    let mut encoded = Vec::with_capacity(advisories.len());
    for advisory in advisories {
        let json = serde_json::to_string(&advisory).map_err(|e| {
            StoreError::Other(format!("cannot encode advisory {}: {e}", advisory.id))
        })?;
        let hash = sha256_hex(json.as_bytes());
        encoded.push(EncodedAdvisory {
            advisory,
            json,
            hash,
        });
    }
    Ok(PreparedImport {
        summary,
        advisories: encoded,
        kev,
        epss,
        origin: batch.origin,
    })
}

/// Counts each advisory against the stored ones (by id); returns those to write.
pub(crate) fn advisories_to_write(
    advisories: Vec<EncodedAdvisory>,
    stored: &HashMap<String, StoredAdvisory>,
    counts: &mut ImportCounts,
) -> Vec<EncodedAdvisory> {
    let mut out = Vec::new();
    for e in advisories {
        let modified = e.advisory.modified.map(ms);
        match classify_advisory(modified, &e.hash, stored.get(&e.advisory.id)) {
            Verdict::New => counts.new += 1,
            Verdict::Updated => counts.updated += 1,
            Verdict::Unchanged => {
                counts.unchanged += 1;
                continue;
            }
            Verdict::Older => {
                counts.skipped_older += 1;
                continue;
            }
        }
        out.push(e);
    }
    out
}

/// Counts each KEV entry against the stored content hashes (by CVE; entries have no
/// `modified`: content decides); returns `(cve, hash, json)` of those to write.
pub(crate) fn kev_to_write(
    kev: &[KevEntry],
    stored: &HashMap<String, String>,
    counts: &mut ImportCounts,
) -> Result<Vec<(String, String, String)>> {
    let mut out = Vec::new();
    for k in kev {
        let json = serde_json::to_string(k)
            .map_err(|e| StoreError::Other(format!("cannot encode KEV {}: {e}", k.cve)))?;
        let hash = sha256_hex(json.as_bytes());
        match stored.get(&k.cve) {
            Some(h) if *h == hash => {
                counts.unchanged += 1;
                continue;
            }
            Some(_) => counts.updated += 1,
            None => counts.new += 1,
        }
        out.push((k.cve.clone(), hash, json));
    }
    Ok(out)
}

/// The stored KEV entries an import's catalog no longer lists: CISA withdraws entries now and
/// then, and the catalog is always published whole, so an import that carries KEV entries
/// replaces the catalog. An import without KEV entries withdraws nothing. Sorted.
pub(crate) fn kev_withdrawn(
    kev: &[KevEntry],
    stored: &HashMap<String, String>,
    counts: &mut ImportCounts,
) -> Vec<String> {
    if kev.is_empty() {
        return Vec::new();
    }
    let listed: std::collections::HashSet<&str> = kev.iter().map(|k| k.cve.as_str()).collect();
    let mut gone: Vec<String> = stored
        .keys()
        .filter(|cve| !listed.contains(cve.as_str()))
        .cloned()
        .collect();
    gone.sort();
    counts.removed += gone.len() as u64;
    gone
}

/// Counts each EPSS score against the stored `(score, percentile, date)` (by CVE): incremental
/// by score date, then by value. `date_of` gives a score's date as the backend stores it.
pub(crate) fn epss_to_write<'a, D: PartialOrd>(
    epss: &'a [EpssScore],
    stored: &HashMap<String, (f64, f64, Option<D>)>,
    date_of: impl Fn(&EpssScore) -> Option<D>,
    counts: &mut ImportCounts,
) -> Vec<&'a EpssScore> {
    let mut out = Vec::new();
    for e in epss {
        let date = date_of(e);
        match stored.get(&e.cve) {
            None => counts.new += 1,
            Some((score, pct, stored_date)) => {
                if *score == e.epss && *pct == e.percentile && *stored_date == date {
                    counts.unchanged += 1;
                    continue;
                }
                if let (Some(new), Some(old)) = (&date, stored_date) {
                    if new < old {
                        counts.skipped_older += 1;
                        continue;
                    }
                }
                counts.updated += 1;
            }
        }
        out.push(e);
    }
    out
}

pub(crate) fn encode_summary(summary: &ImportSummary) -> Result<String> {
    serde_json::to_string(summary)
        .map_err(|e| StoreError::Other(format!("cannot encode import summary: {e}")))
}

pub(crate) fn decode_summary(text: &str) -> Result<ImportSummary> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::Corrupt(format!("import log entry is not a summary: {e}")))
}

/// A stored advisory record; `id` names it in the error.
pub(crate) fn decode_advisory(record: &str, id: impl FnOnce() -> String) -> Result<Advisory> {
    serde_json::from_str(record)
        .map_err(|e| StoreError::Corrupt(format!("advisory {} does not decode: {e}", id())))
}

/// A stored KEV record; `cve` names it in the error.
pub(crate) fn decode_kev(record: &str, cve: impl FnOnce() -> String) -> Result<KevEntry> {
    serde_json::from_str(record)
        .map_err(|e| StoreError::Corrupt(format!("KEV entry {} does not decode: {e}", cve())))
}

/// The CVE ids the advisories name (ids, aliases, upstream), possibly repeated. EPSS is loaded
/// only for those: a finding can only be about those, and the other ~90 % of the 300k scores
/// would cost load time on every scan.
pub(crate) fn named_cves(kb: &KnowledgeBase) -> impl Iterator<Item = &str> {
    kb.advisories
        .iter()
        .flat_map(|a| std::iter::once(&a.id).chain(&a.aliases).chain(&a.upstream))
        .map(String::as_str)
        .filter(|id| zt_advisory::is_cve_id(id))
}

pub(crate) fn encode_snapshot(kb: &KnowledgeBase) -> Result<Vec<u8>> {
    postcard::to_stdvec(kb)
        .map_err(|e| StoreError::Other(format!("cannot encode the knowledge snapshot: {e}")))
}

/// The snapshot's knowledge when it is of this revision and format and decodes; `None` sends
/// the caller to the rows (a snapshot is only a cache).
pub(crate) fn usable_snapshot(
    snap_revision: i64,
    format: i64,
    data: &[u8],
    revision: u64,
) -> Option<KnowledgeBase> {
    if snap_revision as u64 == revision && format == KNOWLEDGE_MODEL_VERSION {
        postcard::from_bytes::<KnowledgeBase>(data).ok()
    } else {
        None
    }
}

//! The knowledge base in SQLite: advisories, KEV, EPSS, the revision counter, a binary snapshot
//! for fast loading, and feed-sync state. Types and the contract: `crate::knowledge`.
//!
//! Import = one `BEGIN IMMEDIATE` transaction: classify every record against what is stored,
//! write only what changed (bulk, as one JSON parameter expanded by `json_each`), bump the
//! revision and rebuild the snapshot when anything changed, commit. Any error rolls all of it
//! back, so an import is applied whole or not at all.
//!
//! Loading: `zerotrace scan` must load the knowledge and match in well under a second, and
//! decoding tens of thousands of JSON records plus 300k EPSS rows is too slow for that. The
//! import therefore also stores the whole [`KnowledgeBase`] postcard-encoded at its revision;
//! [`SqliteStore::load_knowledge_impl`] decodes that one blob, and falls back to the rows (and
//! rewrites the snapshot) when it is missing, stale or of another format.

use std::collections::HashMap;

use chrono::{NaiveDate, Utc};
use sqlx::{Row, Sqlite, Transaction};
use zt_advisory::{EpssScore, KnowledgeBase};

use super::SqliteStore;
use crate::common::knowledge::{
    advisories_to_write, decode_advisory, decode_kev, decode_summary, encode_snapshot,
    encode_summary, epss_to_write, kev_to_write, kev_withdrawn, named_cves, prepare_import,
    usable_snapshot, PreparedImport, StoredAdvisory,
};
use crate::common::{from_ms, ms, opt_ms};
use crate::knowledge::{
    FeedState, ImportLogEntry, ImportSummary, KnowledgeImport, KnowledgeStatus,
    KNOWLEDGE_MODEL_VERSION,
};
use crate::Result;

/// Rows per bulk statement: bounds the size of one JSON parameter.
const BULK_ROWS: usize = 2_000;

impl SqliteStore {
    /// Imports records in one transaction (see `crate::knowledge` for the rules).
    pub async fn import_knowledge(&self, batch: KnowledgeImport) -> Result<ImportSummary> {
        let now = Utc::now();
        // Deduplicated, serialized and hashed outside the transaction: the CPU-heavy part.
        let PreparedImport {
            mut summary,
            advisories,
            kev,
            epss,
            origin,
        } = prepare_import(batch)?;

        let mut w = self.begin_write().await?;
        let tx = &mut w.tx;

        // --- advisories
        let mut stored: HashMap<String, StoredAdvisory> = HashMap::new();
        let rows =
            sqlx::query("SELECT id, modified, content_hash, model_version FROM kb_advisories")
                .fetch_all(&mut **tx)
                .await?;
        for r in rows {
            stored.insert(
                r.try_get("id")?,
                StoredAdvisory {
                    modified: r.try_get("modified")?,
                    hash: r.try_get("content_hash")?,
                    model_version: r.try_get("model_version")?,
                },
            );
        }
        let to_write: Vec<serde_json::Value> =
            advisories_to_write(advisories, &stored, &mut summary.advisories)
                .into_iter()
                .map(|e| {
                    let a = &e.advisory;
                    serde_json::json!([
                        a.id,
                        a.source.as_str(),
                        a.modified.map(ms),
                        a.is_withdrawn() as i64,
                        e.hash,
                        e.json
                    ])
                })
                .collect();
        // The revision this import makes (written advisories mean it changes something): the
        // re-match finds the advisories changed since the revision it last brought current.
        let changed_revision = read_revision(tx).await? as i64 + 1;
        for chunk in to_write.chunks(BULK_ROWS) {
            sqlx::query(
                "INSERT INTO kb_advisories
                     (id, source, modified, withdrawn, content_hash, model_version, record, imported_at,
                      changed_revision)
                 SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'),
                        json_extract(value, '$[2]'), json_extract(value, '$[3]'),
                        json_extract(value, '$[4]'), ?1, json_extract(value, '$[5]'), ?2, ?4
                 FROM json_each(?3)
                 WHERE true
                 ON CONFLICT (id) DO UPDATE SET
                     source = excluded.source, modified = excluded.modified,
                     withdrawn = excluded.withdrawn, content_hash = excluded.content_hash,
                     model_version = excluded.model_version, record = excluded.record,
                     imported_at = excluded.imported_at, changed_revision = excluded.changed_revision",
            )
            .bind(KNOWLEDGE_MODEL_VERSION)
            .bind(ms(now))
            .bind(serde_json::Value::Array(chunk.to_vec()).to_string())
            .bind(changed_revision)
            .execute(&mut **tx)
            .await?;
        }

        // --- KEV (no `modified` per entry: content decides)
        let stored_kev: HashMap<String, String> =
            sqlx::query("SELECT cve, content_hash FROM kb_kev")
                .fetch_all(&mut **tx)
                .await?
                .into_iter()
                .map(|r| Ok((r.try_get("cve")?, r.try_get("content_hash")?)))
                .collect::<Result<_>>()?;
        let withdrawn = kev_withdrawn(&kev, &stored_kev, &mut summary.kev);
        for chunk in withdrawn.chunks(BULK_ROWS) {
            sqlx::query("DELETE FROM kb_kev WHERE cve IN (SELECT value FROM json_each(?1))")
                .bind(
                    serde_json::to_string(chunk).map_err(|e| {
                        crate::StoreError::Other(format!("cannot encode KEV ids: {e}"))
                    })?,
                )
                .execute(&mut **tx)
                .await?;
        }
        let kev_rows: Vec<serde_json::Value> = kev_to_write(&kev, &stored_kev, &mut summary.kev)?
            .into_iter()
            .map(|(cve, hash, json)| serde_json::json!([cve, hash, json]))
            .collect();
        for chunk in kev_rows.chunks(BULK_ROWS) {
            sqlx::query(
                "INSERT INTO kb_kev (cve, content_hash, record, imported_at)
                 SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'),
                        json_extract(value, '$[2]'), ?1
                 FROM json_each(?2)
                 WHERE true
                 ON CONFLICT (cve) DO UPDATE SET content_hash = excluded.content_hash,
                     record = excluded.record, imported_at = excluded.imported_at",
            )
            .bind(ms(now))
            .bind(serde_json::Value::Array(chunk.to_vec()).to_string())
            .execute(&mut **tx)
            .await?;
        }

        // --- EPSS (incremental by score date, then by value)
        if !epss.is_empty() {
            let mut stored_epss: HashMap<String, (f64, f64, Option<String>)> =
                HashMap::with_capacity(epss.len());
            let rows = sqlx::query("SELECT cve, epss, percentile, score_date FROM kb_epss")
                .fetch_all(&mut **tx)
                .await?;
            for r in rows {
                stored_epss.insert(
                    r.try_get("cve")?,
                    (
                        r.try_get("epss")?,
                        r.try_get("percentile")?,
                        r.try_get("score_date")?,
                    ),
                );
            }
            // ISO dates compare as strings.
            let date_of = |e: &EpssScore| e.date.map(|d| d.to_string());
            let epss_rows: Vec<serde_json::Value> =
                epss_to_write(&epss, &stored_epss, date_of, &mut summary.epss)
                    .into_iter()
                    .map(|e| serde_json::json!([e.cve, e.epss, e.percentile, date_of(e)]))
                    .collect();
            for chunk in epss_rows.chunks(BULK_ROWS * 5) {
                sqlx::query(
                    "INSERT INTO kb_epss (cve, epss, percentile, score_date)
                     SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'),
                            json_extract(value, '$[2]'), json_extract(value, '$[3]')
                     FROM json_each(?1)
                     WHERE true
                     ON CONFLICT (cve) DO UPDATE SET epss = excluded.epss,
                         percentile = excluded.percentile, score_date = excluded.score_date",
                )
                .bind(serde_json::Value::Array(chunk.to_vec()).to_string())
                .execute(&mut **tx)
                .await?;
            }
        }

        // --- revision, snapshot, log
        let mut revision = read_revision(tx).await?;
        if summary.changed() {
            revision += 1;
            sqlx::query("UPDATE kb_state SET revision = ?1, changed_at = ?2 WHERE id = 1")
                .bind(revision as i64)
                .bind(ms(now))
                .execute(&mut **tx)
                .await?;
            let kb = load_from_rows(tx, revision).await?;
            write_snapshot(tx, &kb).await?;
        }
        summary.revision = revision;
        sqlx::query("INSERT INTO kb_imports (finished_at, origin, summary) VALUES (?1, ?2, ?3)")
            .bind(ms(Utc::now()))
            .bind(&origin)
            .bind(encode_summary(&summary)?)
            .execute(&mut **tx)
            .await?;
        // Keep the log short.
        sqlx::query("DELETE FROM kb_imports WHERE id <= (SELECT max(id) - 100 FROM kb_imports)")
            .execute(&mut **tx)
            .await?;
        w.commit().await?;
        Ok(summary)
    }

    /// The knowledge revision: bumped by every import that changed something.
    pub(crate) async fn knowledge_revision_impl(&self) -> Result<u64> {
        let r: i64 = sqlx::query_scalar("SELECT revision FROM kb_state WHERE id = 1")
            .fetch_optional(&self.pool)
            .await?
            .unwrap_or(0);
        Ok(r.max(0) as u64)
    }

    /// Everything the match index is built from, at the current revision.
    pub(crate) async fn load_knowledge_impl(&self) -> Result<KnowledgeBase> {
        // One read transaction so the snapshot and the revision agree.
        let mut tx = self.pool.begin().await?;
        let revision = read_revision(&mut tx).await?;
        let snapshot =
            sqlx::query("SELECT revision, format_version, data FROM kb_snapshot WHERE id = 1")
                .fetch_optional(&mut *tx)
                .await?;
        if let Some(row) = snapshot {
            let data: &[u8] = row.try_get("data")?;
            // A stale snapshot, or one that does not decode, is only a cache: fall through to
            // the rows.
            if let Some(kb) = usable_snapshot(
                row.try_get("revision")?,
                row.try_get("format_version")?,
                data,
                revision,
            ) {
                return Ok(kb);
            }
        }
        let kb = load_from_rows(&mut tx, revision).await?;
        tx.commit().await?;
        // Refresh the cache for the next load; a read-only store simply does without.
        if let Ok(mut w) = self.begin_write().await {
            if read_revision(&mut w.tx).await.ok() == Some(revision)
                && write_snapshot(&mut w.tx, &kb).await.is_ok()
            {
                let _ = w.commit().await;
            }
        }
        Ok(kb)
    }

    /// Counts and sync state for `feeds status`.
    pub async fn knowledge_status(&self) -> Result<KnowledgeStatus> {
        let mut status = KnowledgeStatus::default();
        let state = sqlx::query("SELECT revision, changed_at FROM kb_state WHERE id = 1")
            .fetch_optional(&self.pool)
            .await?;
        if let Some(r) = state {
            status.revision = r.try_get::<i64, _>("revision")?.max(0) as u64;
            status.changed_at = opt_ms(r.try_get("changed_at")?);
        }
        for r in sqlx::query(
            "SELECT source, count(*) AS n, sum(withdrawn) AS w FROM kb_advisories
             GROUP BY source ORDER BY source",
        )
        .fetch_all(&self.pool)
        .await?
        {
            let n: i64 = r.try_get("n")?;
            let w: Option<i64> = r.try_get("w")?;
            status.withdrawn += w.unwrap_or(0).max(0) as u64;
            status
                .advisories_by_source
                .push((r.try_get("source")?, n.max(0) as u64));
        }
        let kev: i64 = sqlx::query_scalar("SELECT count(*) FROM kb_kev")
            .fetch_one(&self.pool)
            .await?;
        status.kev = kev.max(0) as u64;
        let epss = sqlx::query("SELECT count(*) AS n, max(score_date) AS d FROM kb_epss")
            .fetch_one(&self.pool)
            .await?;
        status.epss = epss.try_get::<i64, _>("n")?.max(0) as u64;
        status.epss_date = epss
            .try_get::<Option<String>, _>("d")?
            .and_then(|d| NaiveDate::parse_from_str(&d, "%Y-%m-%d").ok());
        status.feeds = self.feed_states().await?;
        for r in sqlx::query(
            "SELECT finished_at, origin, summary FROM kb_imports ORDER BY id DESC LIMIT 10",
        )
        .fetch_all(&self.pool)
        .await?
        {
            let summary: String = r.try_get("summary")?;
            status.recent_imports.push(ImportLogEntry {
                finished_at: from_ms(r.try_get("finished_at")?),
                origin: r.try_get("origin")?,
                summary: decode_summary(&summary)?,
            });
        }
        Ok(status)
    }

    /// The sync state of one feed, if it was ever synced.
    pub async fn feed_state(&self, feed: &str) -> Result<Option<FeedState>> {
        let row = sqlx::query("SELECT * FROM kb_feed_state WHERE feed = ?1")
            .bind(feed)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| feed_state_from_row(&r)).transpose()
    }

    /// Every feed's sync state, by name.
    pub async fn feed_states(&self) -> Result<Vec<FeedState>> {
        sqlx::query("SELECT * FROM kb_feed_state ORDER BY feed")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(feed_state_from_row)
            .collect()
    }

    /// Creates or replaces a feed's sync state.
    pub async fn save_feed_state(&self, state: &FeedState) -> Result<()> {
        let mut w = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO kb_feed_state (feed, url, etag, last_modified, cursor, last_attempt_at,
                                        last_success_at, last_status, records)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT (feed) DO UPDATE SET url = excluded.url, etag = excluded.etag,
                 last_modified = excluded.last_modified, cursor = excluded.cursor,
                 last_attempt_at = excluded.last_attempt_at,
                 last_success_at = excluded.last_success_at,
                 last_status = excluded.last_status, records = excluded.records",
        )
        .bind(&state.feed)
        .bind(&state.url)
        .bind(&state.etag)
        .bind(&state.last_modified)
        .bind(&state.cursor)
        .bind(state.last_attempt_at.map(ms))
        .bind(state.last_success_at.map(ms))
        .bind(&state.last_status)
        .bind(state.records as i64)
        .execute(&mut *w.tx)
        .await?;
        w.commit().await
    }
}

fn feed_state_from_row(r: &sqlx::sqlite::SqliteRow) -> Result<FeedState> {
    Ok(FeedState {
        feed: r.try_get("feed")?,
        url: r.try_get("url")?,
        etag: r.try_get("etag")?,
        last_modified: r.try_get("last_modified")?,
        cursor: r.try_get("cursor")?,
        last_attempt_at: opt_ms(r.try_get("last_attempt_at")?),
        last_success_at: opt_ms(r.try_get("last_success_at")?),
        last_status: r.try_get("last_status")?,
        records: r.try_get::<i64, _>("records")?.max(0) as u64,
    })
}

async fn read_revision(tx: &mut Transaction<'static, Sqlite>) -> Result<u64> {
    let r: Option<i64> = sqlx::query_scalar("SELECT revision FROM kb_state WHERE id = 1")
        .fetch_optional(&mut **tx)
        .await?;
    Ok(r.unwrap_or(0).max(0) as u64)
}

/// Decodes every stored row (the slow path; the snapshot is the fast one).
async fn load_from_rows(
    tx: &mut Transaction<'static, Sqlite>,
    revision: u64,
) -> Result<KnowledgeBase> {
    let mut kb = KnowledgeBase {
        revision,
        ..Default::default()
    };
    let rows = sqlx::query("SELECT id, record FROM kb_advisories ORDER BY id")
        .fetch_all(&mut **tx)
        .await?;
    kb.advisories.reserve(rows.len());
    for r in rows {
        let record: String = r.try_get("record")?;
        kb.advisories.push(decode_advisory(&record, || {
            r.try_get("id").unwrap_or_default()
        })?);
    }
    for r in sqlx::query("SELECT cve, record FROM kb_kev ORDER BY cve")
        .fetch_all(&mut **tx)
        .await?
    {
        let record: String = r.try_get("record")?;
        kb.kev.push(decode_kev(&record, || {
            r.try_get("cve").unwrap_or_default()
        })?);
    }
    // EPSS only for the CVEs the advisories name (see `named_cves`).
    let named: std::collections::HashSet<&str> = named_cves(&kb).collect();
    let rows = sqlx::query("SELECT cve, epss, percentile, score_date FROM kb_epss ORDER BY cve")
        .fetch_all(&mut **tx)
        .await?;
    let mut epss = Vec::with_capacity(named.len());
    for r in rows {
        let cve: String = r.try_get("cve")?;
        if !named.contains(cve.as_str()) {
            continue;
        }
        let date: Option<String> = r.try_get("score_date")?;
        epss.push(EpssScore {
            cve,
            epss: r.try_get("epss")?,
            percentile: r.try_get("percentile")?,
            date: date.and_then(|d| NaiveDate::parse_from_str(&d, "%Y-%m-%d").ok()),
        });
    }
    drop(named);
    kb.epss = epss;
    Ok(kb)
}

async fn write_snapshot(tx: &mut Transaction<'static, Sqlite>, kb: &KnowledgeBase) -> Result<()> {
    let data = encode_snapshot(kb)?;
    sqlx::query(
        "INSERT INTO kb_snapshot (id, revision, format_version, data) VALUES (1, ?1, ?2, ?3)
         ON CONFLICT (id) DO UPDATE SET revision = excluded.revision,
             format_version = excluded.format_version, data = excluded.data",
    )
    .bind(kb.revision as i64)
    .bind(KNOWLEDGE_MODEL_VERSION)
    .bind(data)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl SqliteStore {
    /// One server process owns a SQLite database: a hold within the process is enough.
    pub(crate) async fn try_exclusive_impl(
        &self,
        name: &str,
    ) -> Result<Option<crate::exclusive::ExclusiveGuard>> {
        Ok(crate::exclusive::ExclusiveGuard::local(name))
    }
}

impl SqliteStore {
    /// Every stored EPSS score, by CVE (a bundle carries them all).
    pub(crate) async fn epss_scores_impl(&self) -> Result<Vec<EpssScore>> {
        let rows =
            sqlx::query("SELECT cve, epss, percentile, score_date FROM kb_epss ORDER BY cve")
                .fetch_all(&self.pool)
                .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let date: Option<String> = r.try_get("score_date")?;
            out.push(EpssScore {
                cve: r.try_get("cve")?,
                epss: r.try_get("epss")?,
                percentile: r.try_get("percentile")?,
                date: date.and_then(|d| NaiveDate::parse_from_str(&d, "%Y-%m-%d").ok()),
            });
        }
        Ok(out)
    }
}

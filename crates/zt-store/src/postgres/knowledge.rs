//! The knowledge base in PostgreSQL: the same contract as `sqlite/knowledge.rs` (see
//! `crate::knowledge`), shared by every server process.
//!
//! An import is one transaction that first locks the revision row, so concurrent imports (two
//! `feeds import` runs, a sync beside an import) apply one after the other and each classifies
//! records against what the previous one committed. Bulk rows travel as arrays (`unnest`).

use std::collections::HashMap;

use chrono::{NaiveDate, Utc};
use sqlx::postgres::PgRow;
use sqlx::Row;
use zt_advisory::{EpssScore, KnowledgeBase};

use super::{PgStore, Tx};
use crate::common::knowledge::{
    advisories_to_write, decode_advisory, decode_kev, decode_summary, encode_snapshot,
    encode_summary, epss_to_write, kev_to_write, kev_withdrawn, named_cves, prepare_import,
    usable_snapshot, PreparedImport, StoredAdvisory,
};
use crate::common::ms;
use crate::knowledge::{
    FeedState, ImportLogEntry, ImportSummary, KnowledgeImport, KnowledgeStatus,
    KNOWLEDGE_MODEL_VERSION,
};
use crate::Result;

/// Rows per bulk statement.
const BULK_ROWS: usize = 5_000;

impl PgStore {
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

        let mut tx = self.pool.begin().await?;
        let mut revision: u64 = {
            let r: i64 =
                sqlx::query_scalar("SELECT revision FROM kb_state WHERE id = 1 FOR UPDATE")
                    .fetch_one(&mut *tx)
                    .await?;
            r.max(0) as u64
        };

        // --- advisories
        let mut stored: HashMap<String, StoredAdvisory> = HashMap::new();
        let rows =
            sqlx::query("SELECT id, modified, content_hash, model_version FROM kb_advisories")
                .fetch_all(&mut *tx)
                .await?;
        for r in rows {
            let modified: Option<chrono::DateTime<Utc>> = r.try_get(1)?;
            stored.insert(
                r.try_get(0)?,
                StoredAdvisory {
                    modified: modified.map(ms),
                    hash: r.try_get(2)?,
                    model_version: r.try_get(3)?,
                },
            );
        }
        let mut to_write = advisories_to_write(advisories, &stored, &mut summary.advisories);
        drop(stored);
        to_write.sort_by(|x, y| x.advisory.id.cmp(&y.advisory.id));
        for chunk in to_write.chunks(BULK_ROWS) {
            let ids: Vec<&str> = chunk.iter().map(|c| c.advisory.id.as_str()).collect();
            let sources: Vec<&str> = chunk.iter().map(|c| c.advisory.source.as_str()).collect();
            let modified: Vec<Option<chrono::DateTime<Utc>>> =
                chunk.iter().map(|c| c.advisory.modified).collect();
            let withdrawn: Vec<bool> = chunk.iter().map(|c| c.advisory.is_withdrawn()).collect();
            let hashes: Vec<&str> = chunk.iter().map(|c| c.hash.as_str()).collect();
            let records: Vec<&str> = chunk.iter().map(|c| c.json.as_str()).collect();
            sqlx::query(
                "INSERT INTO kb_advisories
                     (id, source, modified, withdrawn, content_hash, model_version, record, imported_at,
                      changed_revision)
                 SELECT id, src, m, w, h, $7, rec, $8, $9
                 FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::bool[], $5::text[],
                             $6::text[]) AS t(id, src, m, w, h, rec)
                 ON CONFLICT (id) DO UPDATE SET
                     source = excluded.source, modified = excluded.modified,
                     withdrawn = excluded.withdrawn, content_hash = excluded.content_hash,
                     model_version = excluded.model_version, record = excluded.record,
                     imported_at = excluded.imported_at, changed_revision = excluded.changed_revision",
            )
            .bind(&ids)
            .bind(&sources)
            .bind(&modified)
            .bind(&withdrawn)
            .bind(&hashes)
            .bind(&records)
            .bind(KNOWLEDGE_MODEL_VERSION)
            .bind(now)
            // The revision this import makes (written advisories mean it changes something):
            // the re-match finds the advisories changed since the revision it last brought
            // current.
            .bind(revision as i64 + 1)
            .execute(&mut *tx)
            .await?;
        }

        // --- KEV (no `modified` per entry: content decides)
        let stored_kev: HashMap<String, String> =
            sqlx::query("SELECT cve, content_hash FROM kb_kev")
                .fetch_all(&mut *tx)
                .await?
                .into_iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect::<Result<_>>()?;
        let withdrawn = kev_withdrawn(&kev, &stored_kev, &mut summary.kev);
        for chunk in withdrawn.chunks(BULK_ROWS) {
            sqlx::query("DELETE FROM kb_kev WHERE cve = ANY($1)")
                .bind(chunk)
                .execute(&mut *tx)
                .await?;
        }
        let mut kev_rows = kev_to_write(&kev, &stored_kev, &mut summary.kev)?;
        kev_rows.sort();
        for chunk in kev_rows.chunks(BULK_ROWS) {
            let cves: Vec<&str> = chunk.iter().map(|c| c.0.as_str()).collect();
            let hashes: Vec<&str> = chunk.iter().map(|c| c.1.as_str()).collect();
            let records: Vec<&str> = chunk.iter().map(|c| c.2.as_str()).collect();
            sqlx::query(
                "INSERT INTO kb_kev (cve, content_hash, record, imported_at)
                 SELECT c, h, r, $4 FROM unnest($1::text[], $2::text[], $3::text[]) AS t(c, h, r)
                 ON CONFLICT (cve) DO UPDATE SET content_hash = excluded.content_hash,
                     record = excluded.record, imported_at = excluded.imported_at",
            )
            .bind(&cves)
            .bind(&hashes)
            .bind(&records)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }

        // --- EPSS (incremental by score date, then by value)
        if !epss.is_empty() {
            let mut stored_epss: HashMap<String, (f64, f64, Option<NaiveDate>)> =
                HashMap::with_capacity(epss.len());
            let rows = sqlx::query("SELECT cve, epss, percentile, score_date FROM kb_epss")
                .fetch_all(&mut *tx)
                .await?;
            for r in rows {
                stored_epss.insert(r.try_get(0)?, (r.try_get(1)?, r.try_get(2)?, r.try_get(3)?));
            }
            let mut epss_rows: Vec<&EpssScore> =
                epss_to_write(&epss, &stored_epss, |e| e.date, &mut summary.epss);
            epss_rows.sort_by(|a, b| a.cve.cmp(&b.cve));
            for chunk in epss_rows.chunks(BULK_ROWS * 4) {
                let cves: Vec<&str> = chunk.iter().map(|e| e.cve.as_str()).collect();
                let scores: Vec<f64> = chunk.iter().map(|e| e.epss).collect();
                let pcts: Vec<f64> = chunk.iter().map(|e| e.percentile).collect();
                let dates: Vec<Option<NaiveDate>> = chunk.iter().map(|e| e.date).collect();
                sqlx::query(
                    "INSERT INTO kb_epss (cve, epss, percentile, score_date)
                     SELECT c, s, p, d FROM unnest($1::text[], $2::float8[], $3::float8[], $4::date[])
                        AS t(c, s, p, d)
                     ON CONFLICT (cve) DO UPDATE SET epss = excluded.epss,
                         percentile = excluded.percentile, score_date = excluded.score_date",
                )
                .bind(&cves)
                .bind(&scores)
                .bind(&pcts)
                .bind(&dates)
                .execute(&mut *tx)
                .await?;
            }
        }

        // --- revision, snapshot, log
        if summary.changed() {
            revision += 1;
            sqlx::query("UPDATE kb_state SET revision = $1, changed_at = $2 WHERE id = 1")
                .bind(revision as i64)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            let kb = load_from_rows(&mut tx, revision).await?;
            write_snapshot(&mut tx, &kb).await?;
        }
        summary.revision = revision;
        sqlx::query("INSERT INTO kb_imports (finished_at, origin, summary) VALUES ($1, $2, $3)")
            .bind(Utc::now())
            .bind(&origin)
            .bind(encode_summary(&summary)?)
            .execute(&mut *tx)
            .await?;
        // Keep the log short.
        sqlx::query("DELETE FROM kb_imports WHERE id <= (SELECT max(id) - 100 FROM kb_imports)")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(summary)
    }

    pub(crate) async fn knowledge_revision_impl(&self) -> Result<u64> {
        let r: Option<i64> = sqlx::query_scalar("SELECT revision FROM kb_state WHERE id = 1")
            .fetch_optional(&self.pool)
            .await?;
        Ok(r.unwrap_or(0).max(0) as u64)
    }

    pub(crate) async fn load_knowledge_impl(&self) -> Result<KnowledgeBase> {
        // One transaction (REPEATABLE READ) so the snapshot and the revision agree.
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .execute(&mut *tx)
            .await?;
        let revision = read_revision(&mut tx).await?;
        let snapshot =
            sqlx::query("SELECT revision, format_version, data FROM kb_snapshot WHERE id = 1")
                .fetch_optional(&mut *tx)
                .await?;
        if let Some(row) = snapshot {
            let data: &[u8] = row.try_get(2)?;
            // A stale snapshot, or one that does not decode, is only a cache: fall through to
            // the rows.
            if let Some(kb) = usable_snapshot(row.try_get(0)?, row.try_get(1)?, data, revision) {
                tx.commit().await?;
                return Ok(kb);
            }
        }
        let kb = load_from_rows(&mut tx, revision).await?;
        tx.commit().await?;
        // Refresh the cache for the next load, unless the knowledge moved on meanwhile.
        let mut tx = self.pool.begin().await?;
        let current: i64 =
            sqlx::query_scalar("SELECT revision FROM kb_state WHERE id = 1 FOR UPDATE")
                .fetch_one(&mut *tx)
                .await?;
        if current as u64 == revision {
            write_snapshot(&mut tx, &kb).await?;
        }
        tx.commit().await?;
        Ok(kb)
    }

    /// Counts and sync state for `feeds status`.
    pub async fn knowledge_status(&self) -> Result<KnowledgeStatus> {
        let mut status = KnowledgeStatus::default();
        if let Some(r) = sqlx::query("SELECT revision, changed_at FROM kb_state WHERE id = 1")
            .fetch_optional(&self.pool)
            .await?
        {
            status.revision = r.try_get::<i64, _>(0)?.max(0) as u64;
            status.changed_at = r.try_get(1)?;
        }
        for r in sqlx::query(
            "SELECT source, count(*), count(*) FILTER (WHERE withdrawn) FROM kb_advisories
             GROUP BY source ORDER BY source",
        )
        .fetch_all(&self.pool)
        .await?
        {
            let n: i64 = r.try_get(1)?;
            let w: i64 = r.try_get(2)?;
            status.withdrawn += w.max(0) as u64;
            status
                .advisories_by_source
                .push((r.try_get(0)?, n.max(0) as u64));
        }
        let kev: i64 = sqlx::query_scalar("SELECT count(*) FROM kb_kev")
            .fetch_one(&self.pool)
            .await?;
        status.kev = kev.max(0) as u64;
        let epss = sqlx::query("SELECT count(*), max(score_date) FROM kb_epss")
            .fetch_one(&self.pool)
            .await?;
        status.epss = epss.try_get::<i64, _>(0)?.max(0) as u64;
        status.epss_date = epss.try_get(1)?;
        status.feeds = self.feed_states().await?;
        for r in sqlx::query(
            "SELECT finished_at, origin, summary FROM kb_imports ORDER BY id DESC LIMIT 10",
        )
        .fetch_all(&self.pool)
        .await?
        {
            let summary: String = r.try_get(2)?;
            status.recent_imports.push(ImportLogEntry {
                finished_at: r.try_get(0)?,
                origin: r.try_get(1)?,
                summary: decode_summary(&summary)?,
            });
        }
        Ok(status)
    }

    /// The sync state of one feed, if it was ever synced.
    pub async fn feed_state(&self, feed: &str) -> Result<Option<FeedState>> {
        let row = sqlx::query(FEED_COLUMNS_WHERE_FEED)
            .bind(feed)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| feed_state_from_row(&r)).transpose()
    }

    /// Every feed's sync state, by name.
    pub async fn feed_states(&self) -> Result<Vec<FeedState>> {
        sqlx::query(
            "SELECT feed, url, etag, last_modified, cursor, last_attempt_at, last_success_at, \
             last_status, records FROM kb_feed_state ORDER BY feed",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(feed_state_from_row)
        .collect()
    }

    /// Creates or replaces a feed's sync state.
    pub async fn save_feed_state(&self, state: &FeedState) -> Result<()> {
        sqlx::query(
            "INSERT INTO kb_feed_state (feed, url, etag, last_modified, cursor, last_attempt_at,
                                        last_success_at, last_status, records)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
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
        .bind(state.last_attempt_at)
        .bind(state.last_success_at)
        .bind(&state.last_status)
        .bind(i64::try_from(state.records).unwrap_or(i64::MAX))
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

const FEED_COLUMNS_WHERE_FEED: &str = "SELECT feed, url, etag, last_modified, cursor, \
     last_attempt_at, last_success_at, last_status, records FROM kb_feed_state WHERE feed = $1";

fn feed_state_from_row(r: &PgRow) -> Result<FeedState> {
    Ok(FeedState {
        feed: r.try_get(0)?,
        url: r.try_get(1)?,
        etag: r.try_get(2)?,
        last_modified: r.try_get(3)?,
        cursor: r.try_get(4)?,
        last_attempt_at: r.try_get(5)?,
        last_success_at: r.try_get(6)?,
        last_status: r.try_get(7)?,
        records: r.try_get::<i64, _>(8)?.max(0) as u64,
    })
}

async fn read_revision(tx: &mut Tx) -> Result<u64> {
    let r: Option<i64> = sqlx::query_scalar("SELECT revision FROM kb_state WHERE id = 1")
        .fetch_optional(&mut **tx)
        .await?;
    Ok(r.unwrap_or(0).max(0) as u64)
}

/// Decodes every stored row (the slow path; the snapshot is the fast one).
async fn load_from_rows(tx: &mut Tx, revision: u64) -> Result<KnowledgeBase> {
    let mut kb = KnowledgeBase {
        revision,
        ..Default::default()
    };
    let rows = sqlx::query("SELECT id, record FROM kb_advisories ORDER BY id")
        .fetch_all(&mut **tx)
        .await?;
    kb.advisories.reserve(rows.len());
    for r in rows {
        let record: &str = r.try_get(1)?;
        kb.advisories.push(decode_advisory(record, || {
            r.try_get(0).unwrap_or_default()
        })?);
    }
    for r in sqlx::query("SELECT cve, record FROM kb_kev ORDER BY cve")
        .fetch_all(&mut **tx)
        .await?
    {
        let record: &str = r.try_get(1)?;
        kb.kev
            .push(decode_kev(record, || r.try_get(0).unwrap_or_default())?);
    }
    // EPSS only for the CVEs the advisories name (see `named_cves`): filtered in SQL.
    let named: Vec<&str> = {
        let mut v: Vec<&str> = named_cves(&kb).collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    let rows = sqlx::query(
        "SELECT cve, epss, percentile, score_date FROM kb_epss WHERE cve = ANY($1) ORDER BY cve",
    )
    .bind(&named)
    .fetch_all(&mut **tx)
    .await?;
    let mut epss = Vec::with_capacity(rows.len());
    for r in rows {
        epss.push(EpssScore {
            cve: r.try_get(0)?,
            epss: r.try_get(1)?,
            percentile: r.try_get(2)?,
            date: r.try_get(3)?,
        });
    }
    kb.epss = epss;
    Ok(kb)
}

async fn write_snapshot(tx: &mut Tx, kb: &KnowledgeBase) -> Result<()> {
    let data = encode_snapshot(kb)?;
    sqlx::query(
        "INSERT INTO kb_snapshot (id, revision, format_version, data) VALUES (1, $1, $2, $3)
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

impl PgStore {
    /// A session-level advisory lock shared by every process on this database.
    pub(crate) async fn try_exclusive_impl(
        &self,
        name: &str,
    ) -> Result<Option<crate::exclusive::ExclusiveGuard>> {
        crate::exclusive::ExclusiveGuard::postgres(&self.pool, name).await
    }
}

impl PgStore {
    /// Every stored EPSS score, by CVE (a bundle carries them all).
    pub(crate) async fn epss_scores_impl(&self) -> Result<Vec<EpssScore>> {
        let rows =
            sqlx::query("SELECT cve, epss, percentile, score_date FROM kb_epss ORDER BY cve")
                .fetch_all(&self.pool)
                .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            out.push(EpssScore {
                cve: r.try_get(0)?,
                epss: r.try_get(1)?,
                percentile: r.try_get(2)?,
                date: r.try_get(3)?,
            });
        }
        Ok(out)
    }
}

//! Applying processed reports: new software with its matches, the inventory diff, findings.

use std::collections::HashSet;

use serde::Serialize;
use sqlx::{Sqlite, Transaction};
use zt_inventory::SoftwareKey;

use super::apply::write_batches;
use super::{hex_list, SqliteStore};
use crate::common::inventory::distinct_vulns;
use crate::common::{json_list, key_from, severity_rank};
use crate::model::*;
use crate::{Result, StoreError};

type Tx = Transaction<'static, Sqlite>;

/// One software row as JSON for `json_each`.
#[derive(Serialize)]
struct SoftwareJson<'a> {
    k: String,
    e: &'a str,
    n: &'a str,
    v: &'a str,
    s: &'a str,
    sn: Option<&'a str>,
    sv: Option<&'a str>,
    vd: Option<&'a str>,
    p: Option<&'a str>,
    c: Option<&'a str>,
}

/// One cached match as JSON for `json_each`.
#[derive(Serialize)]
struct MatchJson<'a> {
    k: String,
    id: &'a str,
    fx: &'a [String],
    sev: i64,
    kev: bool,
    fixable: bool,
    m: &'a str,
    c: &'a str,
}

/// One vulnerability as JSON for `json_each`.
#[derive(Serialize)]
struct VulnJson<'a> {
    id: &'a str,
    aliases: String,
    summary: &'a str,
    sev: i64,
    cv: Option<&'a str>,
    cvec: Option<&'a str>,
    cs: Option<f64>,
    kev: bool,
    due: Option<&'a str>,
    epss: Option<f64>,
    pct: Option<f64>,
    info: bool,
}

impl SqliteStore {
    /// Writes a worker's batch. Batches finished while another one is being written wait and
    /// are then written together, in one transaction (group commit): a write transaction
    /// costs far more than the rows in it (measured on 1 M first-time app records: 62 s of
    /// server CPU with one 100-app batch per transaction, 28 s with 5,000 apps per
    /// transaction), while each batch stays the unit of leasing and retrying.
    pub(crate) async fn finish_batch_impl(
        &self,
        batch: &ProcessedBatch,
    ) -> Result<Vec<ReportOutcome>> {
        let (done, mut outcome) = tokio::sync::oneshot::channel();
        self.pending_batches.lock().push(PendingBatch {
            batch: batch.clone(),
            done,
        });
        let abandoned =
            || StoreError::Other("the group commit carrying this batch was abandoned".into());
        loop {
            match outcome.try_recv() {
                Ok(result) => return result,
                Err(tokio::sync::oneshot::error::TryRecvError::Closed) => return Err(abandoned()),
                Err(tokio::sync::oneshot::error::TryRecvError::Empty) => {}
            }
            let turn = self.background_turn().await;
            let group = take_group(&mut self.pending_batches.lock());
            if group.is_empty() {
                // A writer before us took ours along (and is done: we hold the lock now).
                break;
            }
            // On failure the group's senders are dropped: their batches see "abandoned" and
            // are retried through their leases.
            let w = turn.begin().await?;
            // Ours may be beyond this group's size limit: then the loop writes the next one.
            self.write_group(w, group).await;
        }
        outcome.await.map_err(|_| abandoned())?
    }

    /// Writes a group of batches in one transaction; when that fails, writes each batch in
    /// its own so that one bad batch cannot fail the others.
    async fn write_group(&self, mut w: super::WriteTx<'_>, group: Vec<PendingBatch>) {
        let batches: Vec<&ProcessedBatch> = group.iter().map(|p| &p.batch).collect();
        tracing::debug!(batches = batches.len(), "group commit");
        let together = match write_batches(&mut w.tx, &batches).await {
            Ok(outcomes) => w.commit().await.map(|()| outcomes),
            Err(e) => Err(e),
        };
        if together.is_ok() {
            self.signal_events();
        }
        match together {
            Ok(outcomes) => {
                for (pending, outcome) in group.into_iter().zip(outcomes) {
                    let _ = pending.done.send(Ok(outcome));
                }
            }
            Err(e) if group.len() == 1 => {
                if let Some(pending) = group.into_iter().next() {
                    let _ = pending.done.send(Err(e));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, batches = group.len(), "group commit failed; writing its batches one by one");
                // The failed transaction was rolled back when `w` went out of scope above.
                for pending in group {
                    let result = async {
                        let mut w = self.begin_write().await?;
                        let mut outcomes = write_batches(&mut w.tx, &[&pending.batch]).await?;
                        w.commit().await?;
                        self.signal_events();
                        outcomes
                            .pop()
                            .ok_or_else(|| StoreError::Other("a batch without outcome".into()))
                    }
                    .await;
                    let _ = pending.done.send(result);
                }
            }
        }
    }

    pub(crate) async fn unmatched_software_impl(
        &self,
        keys: &[SoftwareKey],
    ) -> Result<Vec<SoftwareKey>> {
        let mut unknown = Vec::new();
        // Bounded parameter size per statement.
        for chunk in keys.chunks(2000) {
            let list = hex_list(chunk.iter().map(|k| &k.0[..]));
            let known: Vec<Vec<u8>> = sqlx::query_scalar(
                "SELECT s.software_key FROM json_each(?1) j \
                 JOIN software s ON s.software_key = unhex(j.value)",
            )
            .bind(list)
            .fetch_all(&self.pool)
            .await?;
            let known: HashSet<Vec<u8>> = known.into_iter().collect();
            unknown.extend(chunk.iter().filter(|k| !known.contains(&k.0[..])).copied());
        }
        Ok(unknown)
    }
}

/// A batch waiting for the next group commit, and where its outcome goes.
#[derive(Debug)]
pub(crate) struct PendingBatch {
    batch: ProcessedBatch,
    done: tokio::sync::oneshot::Sender<Result<Vec<ReportOutcome>>>,
}

/// App records one group commit writes at most: the write lock is held for the whole
/// transaction, and an accepted report's answer waits for it (about 15 µs per app record).
const GROUP_COMMIT_APPS: usize = 6_000;

/// The oldest waiting batches up to [`GROUP_COMMIT_APPS`] (always at least one); the rest
/// wait for the next writer.
fn take_group(pending: &mut Vec<PendingBatch>) -> Vec<PendingBatch> {
    let mut apps = 0;
    let mut n = 0;
    for p in pending.iter() {
        let size: usize = p.batch.reports.iter().map(|r| r.apps.len()).sum();
        if n > 0 && apps + size > GROUP_COMMIT_APPS {
            break;
        }
        apps += size;
        n += 1;
    }
    pending.drain(..n).collect()
}

/// Batches waiting for the writer; shared by the clones of one store.
pub(crate) type PendingBatches = std::sync::Arc<parking_lot::Mutex<Vec<PendingBatch>>>;

/// Inserts software never seen before with its match results. Software another worker inserted
/// meanwhile keeps that worker's results (both came from a current index; any older revision
/// is brought up to date by the rematch).
pub(crate) async fn insert_new_software(
    tx: &mut Tx,
    software: &[MatchedSoftware],
    revision: u64,
    now: i64,
) -> Result<()> {
    if software.is_empty() {
        return Ok(());
    }
    let revision = i64::try_from(revision).unwrap_or(i64::MAX);
    let rows: Vec<SoftwareJson> = software
        .iter()
        .map(|m| {
            let s = &m.software;
            SoftwareJson {
                k: m.key.to_hex(),
                e: &s.ecosystem,
                n: &s.name,
                v: &s.version,
                s: s.source.as_str(),
                sn: s.source_name.as_deref(),
                sv: s.source_version.as_deref(),
                vd: s.vendor.as_deref(),
                p: s.purl.as_deref(),
                c: s.cpe.as_deref(),
            }
        })
        .collect();
    let inserted: Vec<Vec<u8>> = sqlx::query_scalar(
        "INSERT INTO software (software_key, ecosystem, name, version, source, source_name, \
         source_version, vendor, purl, cpe, matched_revision, created_at) \
         SELECT unhex(j.value->>'$.k'), j.value->>'$.e', j.value->>'$.n', j.value->>'$.v', \
         j.value->>'$.s', j.value->>'$.sn', j.value->>'$.sv', j.value->>'$.vd', j.value->>'$.p', \
         j.value->>'$.c', ?2, ?3 FROM json_each(?1) j WHERE true \
         ON CONFLICT (software_key) DO NOTHING RETURNING software_key",
    )
    .bind(json(&rows)?)
    .bind(revision)
    .bind(now)
    .fetch_all(&mut **tx)
    .await?;
    let inserted: HashSet<SoftwareKey> = inserted
        .iter()
        .map(|k| key_from(k))
        .collect::<Result<_>>()?;
    let fresh: Vec<&MatchedSoftware> = software
        .iter()
        .filter(|m| inserted.contains(&m.key))
        .collect();
    write_matches(tx, &fresh, revision).await
}

/// Writes the cached matches of these software versions and upserts their vulnerabilities.
pub(crate) async fn write_matches(
    tx: &mut Tx,
    software: &[&MatchedSoftware],
    revision: i64,
) -> Result<()> {
    let matches: Vec<MatchJson> = software
        .iter()
        .flat_map(|m| {
            m.matches.iter().map(move |x| MatchJson {
                k: m.key.to_hex(),
                id: &x.vulnerability.id,
                fx: &x.fixed_versions,
                sev: severity_rank(x.vulnerability.severity),
                kev: x.vulnerability.kev,
                fixable: !x.fixed_versions.is_empty(),
                m: &x.method,
                c: &x.confidence,
            })
        })
        .collect();
    if matches.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO software_vulns (software_key, vuln_id, fixed_versions, severity, kev, fixable, \
         method, confidence) \
         SELECT unhex(j.value->>'$.k'), j.value->>'$.id', j.value->'$.fx', j.value->>'$.sev', \
         j.value->>'$.kev', j.value->>'$.fixable', j.value->>'$.m', j.value->>'$.c' \
         FROM json_each(?1) j WHERE true \
         ON CONFLICT (software_key, vuln_id) DO UPDATE SET fixed_versions = excluded.fixed_versions, \
         severity = excluded.severity, kev = excluded.kev, fixable = excluded.fixable, \
         method = excluded.method, confidence = excluded.confidence",
    )
    .bind(json(&matches)?)
    .execute(&mut **tx)
    .await?;

    let (vulns, aliases) = distinct_vulns(software.iter().flat_map(|m| m.matches.iter()));
    let vulns: Vec<VulnJson> = vulns
        .into_iter()
        .map(|v| VulnJson {
            id: &v.id,
            aliases: json_list(&v.aliases),
            summary: &v.summary,
            sev: severity_rank(v.severity),
            cv: v.cvss.as_ref().map(|c| c.version.as_str()),
            cvec: v.cvss.as_ref().map(|c| c.vector.as_str()),
            cs: v.cvss.as_ref().map(|c| c.score),
            kev: v.kev,
            due: v.kev_due_date.as_deref(),
            epss: v.epss,
            pct: v.epss_percentile,
            info: v.informational,
        })
        .collect();
    sqlx::query(
        "INSERT INTO vulns (vuln_id, aliases, summary, severity, cvss_version, cvss_vector, cvss_score, \
         kev, kev_due_date, epss, epss_percentile, informational, revision) \
         SELECT j.value->>'$.id', j.value->>'$.aliases', j.value->>'$.summary', j.value->>'$.sev', \
         j.value->>'$.cv', j.value->>'$.cvec', j.value->>'$.cs', j.value->>'$.kev', j.value->>'$.due', \
         j.value->>'$.epss', j.value->>'$.pct', j.value->>'$.info', ?2 FROM json_each(?1) j WHERE true \
         ON CONFLICT (vuln_id) DO UPDATE SET aliases = excluded.aliases, summary = excluded.summary, \
         severity = excluded.severity, cvss_version = excluded.cvss_version, \
         cvss_vector = excluded.cvss_vector, cvss_score = excluded.cvss_score, kev = excluded.kev, \
         kev_due_date = excluded.kev_due_date, epss = excluded.epss, \
         epss_percentile = excluded.epss_percentile, informational = excluded.informational, \
         revision = excluded.revision WHERE excluded.revision >= vulns.revision",
    )
    .bind(json(&vulns)?)
    .bind(revision)
    .execute(&mut **tx)
    .await?;
    if !aliases.is_empty() {
        sqlx::query(
            "INSERT OR IGNORE INTO vuln_aliases (alias, vuln_id) \
             SELECT j.value->>0, j.value->>1 FROM json_each(?1) j",
        )
        .bind(json(&aliases)?)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

pub(crate) fn json<T: Serialize + ?Sized>(value: &T) -> Result<String> {
    serde_json::to_string(value)
        .map_err(|e| crate::StoreError::Other(format!("encoding rows: {e}")))
}

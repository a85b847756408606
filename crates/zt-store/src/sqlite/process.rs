//! Applying processed reports: new software with its matches, the inventory diff, findings.

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, Sqlite, Transaction};
use zt_inventory::SoftwareKey;

use super::{hex_list, SqliteStore};
use crate::common::inventory::{
    decode_inventory, distinct_vulns, package_id, plan_carry_over, Inventory, InventoryDiff,
};
use crate::common::{json_list, key_from, ms, severity_rank};
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

/// Applies batches inside one transaction; one outcome list per batch, in order.
async fn write_batches(
    tx: &mut Tx,
    batches: &[&ProcessedBatch],
) -> Result<Vec<Vec<ReportOutcome>>> {
    for batch in batches {
        insert_new_software(tx, &batch.software, batch.revision, ms(batch.now)).await?;
    }
    // One agent's reports oldest first across the whole group, so that the newest inventory
    // is the one left stored.
    let mut order: Vec<(usize, usize)> = batches
        .iter()
        .enumerate()
        .flat_map(|(b, batch)| (0..batch.reports.len()).map(move |i| (b, i)))
        .collect();
    order.sort_by_key(|&(b, i)| {
        let r = &batches[b].reports[i];
        (r.company_id, r.agent_id, r.collected_at)
    });
    let mut outcomes: Vec<Vec<ReportOutcome>> = batches
        .iter()
        .map(|b| vec![ReportOutcome::LeaseLost; b.reports.len()])
        .collect();
    for (b, i) in order {
        outcomes[b][i] = apply_report(tx, &batches[b].reports[i], ms(batches[b].now)).await?;
    }
    Ok(outcomes)
}

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

async fn lease_is_ours(tx: &mut Tx, lease: &LeaseRef) -> Result<bool> {
    let row: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM queue WHERE queue_id = ?1 AND state = 'leased' AND lease_owner = ?2 AND attempts = ?3",
    )
    .bind(lease.queue_id)
    .bind(&lease.owner)
    .bind(lease.attempts)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(row.is_some())
}

async fn mark_done(tx: &mut Tx, r: &ProcessedReport, outcome: &str, now: i64) -> Result<()> {
    sqlx::query(
        "UPDATE reports SET status = 'done', outcome = ?3, processed_at = ?4, body = NULL, error = NULL \
         WHERE company_id = ?1 AND report_id = ?2",
    )
    .bind(r.company_id)
    .bind(r.report_id)
    .bind(outcome)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "UPDATE queue SET state = 'done', finished_at = ?2, lease_owner = NULL WHERE queue_id = ?1",
    )
    .bind(r.lease.queue_id)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn apply_report(tx: &mut Tx, r: &ProcessedReport, now: i64) -> Result<ReportOutcome> {
    if !lease_is_ours(tx, &r.lease).await? {
        return Ok(ReportOutcome::LeaseLost);
    }
    let agent = sqlx::query(
        "SELECT inventory_collected_at, inventory, app_count FROM agents \
         WHERE company_id = ?1 AND agent_id = ?2",
    )
    .bind(r.company_id)
    .bind(r.agent_id)
    .fetch_optional(&mut **tx)
    .await?;
    let collected = ms(r.collected_at);
    let Some(agent) = agent else {
        // The agent is gone: nothing to apply the report to.
        mark_done(tx, r, "stale", now).await?;
        return Ok(ReportOutcome::Stale);
    };
    if agent
        .get::<Option<i64>, _>(0)
        .is_some_and(|stored_at| stored_at > collected)
    {
        mark_done(tx, r, "stale", now).await?;
        return Ok(ReportOutcome::Stale);
    }

    // The stored inventory and the package of each stored software version.
    let blob: Option<Vec<u8>> = agent.get(1);
    let stored_count: i64 = agent.get(2);
    let old = match blob.as_deref().map(decode_inventory) {
        Some(Ok(decoded)) => decoded,
        _ if stored_count == 0 => (HashSet::new(), HashMap::new()),
        _ => load_inventory(tx, r).await?,
    };
    let diff = InventoryDiff::new(old, r);
    let InventoryDiff {
        deleted,
        inserted,
        removed_sw,
        added_sw,
        ..
    } = &diff;

    if !deleted.is_empty() {
        let list: Vec<(String, &str)> = deleted
            .iter()
            .map(|(k, a)| (k.to_hex(), a.as_str()))
            .collect();
        sqlx::query(
            "DELETE FROM apps WHERE company_id = ?1 AND agent_id = ?2 AND (software_key, arch) IN \
             (SELECT unhex(j.value->>0), j.value->>1 FROM json_each(?3) j)",
        )
        .bind(r.company_id)
        .bind(r.agent_id)
        .bind(json(&list)?)
        .execute(&mut **tx)
        .await?;
    }
    if !inserted.is_empty() {
        let list: Vec<(String, &str)> = inserted
            .iter()
            .map(|(k, a)| (k.to_hex(), a.as_str()))
            .collect();
        sqlx::query(
            "INSERT INTO apps (company_id, agent_id, software_key, arch, first_seen) \
             SELECT ?1, ?2, unhex(j.value->>0), j.value->>1, ?3 FROM json_each(?4) j WHERE true \
             ON CONFLICT DO NOTHING",
        )
        .bind(r.company_id)
        .bind(r.agent_id)
        .bind(now)
        .bind(json(&list)?)
        .execute(&mut **tx)
        .await?;
    }
    if !removed_sw.is_empty() {
        sqlx::query(
            "UPDATE findings SET resolved_at = ?3, resolution = 'removed' \
             WHERE company_id = ?1 AND agent_id = ?2 AND resolved_at IS NULL \
             AND software_key IN (SELECT unhex(j.value) FROM json_each(?4) j)",
        )
        .bind(r.company_id)
        .bind(r.agent_id)
        .bind(now)
        .bind(hex_list(removed_sw.iter().map(|k| &k.0[..])))
        .execute(&mut **tx)
        .await?;
    }
    if !added_sw.is_empty() {
        sqlx::query(
            "INSERT INTO findings (company_id, agent_id, software_key, vuln_id, severity, kev, fixable, first_seen) \
             SELECT ?1, ?2, sv.software_key, sv.vuln_id, sv.severity, sv.kev, sv.fixable, ?3 \
             FROM json_each(?4) j JOIN software_vulns sv ON sv.software_key = unhex(j.value) WHERE true \
             ON CONFLICT (company_id, agent_id, software_key, vuln_id) DO UPDATE SET \
             resolved_at = NULL, resolution = NULL, severity = excluded.severity, kev = excluded.kev, \
             fixable = excluded.fixable",
        )
        .bind(r.company_id)
        .bind(r.agent_id)
        .bind(now)
        .bind(hex_list(added_sw.iter().map(|k| &k.0[..])))
        .execute(&mut **tx)
        .await?;
    }
    if !diff.changed_pkgs.is_empty() {
        carry_over_findings(tx, r, now, &diff).await?;
    }

    sqlx::query(
        "UPDATE agents SET hostname = ?3, os_id = ?4, os_version_id = ?5, os_name = ?6, arch = ?7, \
         inventory_digest = ?8, inventory_collected_at = ?9, last_report_at = ?10, app_count = ?11, \
         inventory = ?12 WHERE company_id = ?1 AND agent_id = ?2",
    )
    .bind(r.company_id)
    .bind(r.agent_id)
    .bind(&r.hostname)
    .bind(&r.os.id)
    .bind(&r.os.version_id)
    .bind(&r.os.name)
    .bind(&r.arch)
    .bind(&r.digest[..])
    .bind(collected)
    .bind(now)
    .bind(i64::try_from(diff.new_apps.len()).unwrap_or(i64::MAX))
    .bind(diff.encoded())
    .execute(&mut **tx)
    .await?;
    mark_done(tx, r, "applied", now).await?;
    Ok(diff.outcome())
}

/// The findings of changed packages (see `plan_carry_over`).
async fn carry_over_findings(
    tx: &mut Tx,
    r: &ProcessedReport,
    now: i64,
    diff: &InventoryDiff,
) -> Result<()> {
    let old_rows = sqlx::query(
        "SELECT software_key, vuln_id, first_seen FROM findings \
         WHERE company_id = ?1 AND agent_id = ?2 AND resolved_at = ?3 AND resolution = 'removed' \
         AND software_key IN (SELECT unhex(j.value) FROM json_each(?4) j)",
    )
    .bind(r.company_id)
    .bind(r.agent_id)
    .bind(now)
    .bind(hex_list(diff.changed_old_keys().map(|k| &k.0[..])))
    .fetch_all(&mut **tx)
    .await?;
    if old_rows.is_empty() {
        return Ok(());
    }
    let new_rows = sqlx::query(
        "SELECT software_key, vuln_id, first_seen FROM findings \
         WHERE company_id = ?1 AND agent_id = ?2 AND resolved_at IS NULL \
         AND software_key IN (SELECT unhex(j.value) FROM json_each(?3) j)",
    )
    .bind(r.company_id)
    .bind(r.agent_id)
    .bind(hex_list(diff.changed_new_keys().map(|k| &k.0[..])))
    .fetch_all(&mut **tx)
    .await?;
    let seen = |rows: Vec<SqliteRow>| -> Result<Vec<(SoftwareKey, String, i64)>> {
        rows.iter()
            .map(|row| Ok((key_from(row.get::<&[u8], _>(0))?, row.get(1), row.get(2))))
            .collect()
    };
    let plan = plan_carry_over(diff, seen(old_rows)?, seen(new_rows)?);
    for (new_key, vuln, first_seen) in &plan.first_seen {
        sqlx::query(
            "UPDATE findings SET first_seen = ?5 WHERE company_id = ?1 AND agent_id = ?2 \
             AND software_key = ?3 AND vuln_id = ?4",
        )
        .bind(r.company_id)
        .bind(r.agent_id)
        .bind(&new_key.0[..])
        .bind(vuln)
        .bind(first_seen)
        .execute(&mut **tx)
        .await?;
    }
    for (old_key, vuln, resolution) in &plan.resolutions {
        sqlx::query(
            "UPDATE findings SET resolution = ?5 WHERE company_id = ?1 AND agent_id = ?2 \
             AND software_key = ?3 AND vuln_id = ?4",
        )
        .bind(r.company_id)
        .bind(r.agent_id)
        .bind(&old_key.0[..])
        .bind(vuln)
        .bind(*resolution)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// The stored inventory from the app rows (when the compact form is missing or damaged).
async fn load_inventory(tx: &mut Tx, r: &ProcessedReport) -> Result<Inventory> {
    let rows = sqlx::query(
        "SELECT a.software_key, a.arch, s.ecosystem || char(0) || s.name FROM apps a \
         JOIN software s ON s.software_key = a.software_key \
         WHERE a.company_id = ?1 AND a.agent_id = ?2",
    )
    .bind(r.company_id)
    .bind(r.agent_id)
    .fetch_all(&mut **tx)
    .await?;
    let mut apps = HashSet::with_capacity(rows.len());
    let mut pkg = HashMap::with_capacity(rows.len());
    for row in &rows {
        let key = key_from(row.get::<&[u8], _>(0))?;
        apps.insert((key, row.get::<String, _>(1)));
        pkg.insert(key, package_id(row.get::<&str, _>(2)));
    }
    Ok((apps, pkg))
}

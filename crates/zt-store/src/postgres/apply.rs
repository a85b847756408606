//! Applying one company's reports of a worker batch with a fixed number of statements,
//! whatever their count.
//!
//! Applied report by report, a batch of 32 first-time inventories cost ~100 statements, and
//! on the partitioned tenant tables every statement is planned again (custom plans: the
//! company id picks the partition): planning alone was ~17% of PostgreSQL's CPU during a fleet
//! load. Here the diffs are computed in memory and each kind of change is written for all of
//! the company's reports at once, rows travelling as parallel arrays (`unnest`): apps removed
//! and added, findings resolved and opened, the carry-over of changed packages, the agents
//! rows (with their open-finding counters) and the report rows.
//!
//! An agent may have several reports in one batch. They are applied oldest first in rounds:
//! round k holds every agent's k-th report, and each round's writes finish before the next
//! round's diffs are written, so a later report sees what the earlier one stored.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sqlx::Row;
use uuid::Uuid;
use zt_inventory::SoftwareKey;

use super::process::COUNTERS_FROM_FINDINGS;
use super::{key_uuid, uuid_key, Tx};
use crate::common::events::{net_changes, ChangedFinding, NetChanges, RowChanges};
use crate::common::inventory::{
    encode_inventory, known_inventory, next_round, package_id, plan_round_carry_over, FindingSeen,
    Inventory, InventoryDiff,
};
use crate::common::rollup::RollupDelta;
use crate::model::*;
use crate::Result;

/// An agent as the batch found it, and as its applied reports leave it.
struct AgentState {
    /// When the stored inventory was collected (None: no report processed yet).
    stored_at: Option<DateTime<Utc>>,
    blob: Option<Vec<u8>>,
    app_count: i32,
    /// The inventory after a report of this batch, for the agent's next one.
    current: Option<Inventory>,
    /// The last report of this batch applied to the agent: its agents row is written from it
    /// and `current` at the end.
    last_applied: Option<usize>,
    /// Whether any applied report moved its open findings (the counters are recomputed then).
    findings_changed: bool,
}

/// What applying one company's reports did.
pub(crate) struct CompanyApplied {
    /// Each report's outcome, in the order given.
    pub(crate) outcomes: Vec<ReportOutcome>,
    /// What each applied report (index into `batch.reports`) changed, for its events.
    pub(crate) changes: HashMap<usize, NetChanges>,
    /// Hosts gained (+) and lost (-) per software version (see `company_software`).
    pub(crate) software_hosts: HashMap<SoftwareKey, i64>,
    /// What the moved findings change in the vulnerability rollup (`company_vulns`).
    pub(crate) rollup: RollupDelta,
}

/// Applies `reports` (indexes into `batch.reports`, all of `company_id`, the transaction
/// scoped to it). `citus`: the database distributes the tenant tables (see `write_round`).
pub(crate) async fn apply_company(
    tx: &mut Tx,
    company_id: CompanyId,
    batch: &ProcessedBatch,
    reports: &[usize],
    citus: bool,
) -> Result<CompanyApplied> {
    let now = batch.now;
    let report = |i: usize| &batch.reports[i];
    let mut agent_ids: Vec<AgentId> = reports.iter().map(|&i| report(i).agent_id).collect();
    agent_ids.sort();
    agent_ids.dedup();
    // Locked in id order: the order every writer of agents rows uses.
    let rows = sqlx::query(
        "SELECT agent_id, inventory_collected_at, inventory, app_count FROM agents \
         WHERE company_id = $1 AND agent_id = ANY($2) ORDER BY agent_id FOR UPDATE",
    )
    .bind(company_id)
    .bind(&agent_ids)
    .fetch_all(&mut **tx)
    .await?;
    let mut agents: HashMap<AgentId, AgentState> = HashMap::with_capacity(rows.len());
    for row in rows {
        agents.insert(
            row.try_get(0)?,
            AgentState {
                stored_at: row.try_get(1)?,
                blob: row.try_get(2)?,
                app_count: row.try_get(3)?,
                current: None,
                last_applied: None,
                findings_changed: false,
            },
        );
    }

    // The vulnerability rollup's view of the agents that have findings, before they move.
    let mut stored: Vec<AgentId> = agents
        .iter()
        .filter(|(_, a)| a.stored_at.is_some())
        .map(|(id, _)| *id)
        .collect();
    stored.sort();
    let before = super::rollup::contributions(tx, company_id, &stored).await?;

    // Oldest first per agent, so that the newest inventory is the one left stored.
    let mut todo: Vec<usize> = reports.to_vec();
    todo.sort_by_key(|&i| (report(i).agent_id, report(i).collected_at));
    let mut outcomes: HashMap<usize, ReportOutcome> = HashMap::with_capacity(reports.len());
    let mut changes: HashMap<usize, NetChanges> = HashMap::new();
    let mut software_hosts: HashMap<SoftwareKey, i64> = HashMap::new();
    while !todo.is_empty() {
        let (round, later) = next_round(todo, |i| report(i).agent_id);
        let mut applied: Vec<(usize, InventoryDiff, bool)> = Vec::with_capacity(round.len());
        for i in round {
            let r = report(i);
            let agent = agents.get_mut(&r.agent_id);
            let Some(agent) = agent.filter(|a| a.stored_at.is_none_or(|s| s <= r.collected_at))
            else {
                // The agent is gone, or a newer inventory of it is stored already.
                outcomes.insert(i, ReportOutcome::Stale);
                continue;
            };
            let known = known_inventory(
                agent.current.take(),
                agent.blob.as_deref(),
                i64::from(agent.app_count),
            );
            let old = match known {
                Some(inventory) => inventory,
                None => load_inventory(tx, company_id, r.agent_id).await?,
            };
            let mut diff = InventoryDiff::new(old, r);
            diff.sort();
            outcomes.insert(i, diff.outcome());
            agent.last_applied = Some(i);
            agent.findings_changed |= diff.findings_changed();
            // `stored_at` moves on after the round is written.
            applied.push((i, diff, agent.stored_at.is_none()));
        }
        let mut rows = write_round(tx, company_id, now, batch, &applied, citus).await?;
        for (i, diff, _) in applied {
            let r = report(i);
            for k in &diff.added_sw {
                *software_hosts.entry(*k).or_default() += 1;
            }
            for k in &diff.removed_sw {
                *software_hosts.entry(*k).or_default() -= 1;
            }
            changes.insert(i, net_changes(&diff, rows.remove(&i).unwrap_or_default()));
            if let Some(agent) = agents.get_mut(&r.agent_id) {
                agent.stored_at = Some(r.collected_at);
                agent.current = Some((diff.new_apps, diff.new_pkg));
            }
        }
        todo = later;
    }
    // New findings an analysis covers are suppressed before they are counted.
    let mut changed: Vec<AgentId> = agents
        .iter()
        .filter(|(_, a)| a.findings_changed)
        .map(|(id, _)| *id)
        .collect();
    changed.sort();
    super::analyses::cover_agents(tx, company_id, &changed, now).await?;
    write_agents(tx, company_id, now, batch, &agents).await?;
    let after = super::rollup::contributions(tx, company_id, &changed).await?;
    let rollup = RollupDelta::between(&before, &after);

    // The report rows: settled with their outcome, bodies dropped.
    let report_ids: Vec<Uuid> = reports.iter().map(|&i| report(i).report_id).collect();
    let labels: Vec<&str> = reports
        .iter()
        .map(|i| match outcomes.get(i) {
            Some(ReportOutcome::Applied { .. }) => "applied",
            _ => "stale",
        })
        .collect();
    sqlx::query(
        "UPDATE reports r SET status = 'done', outcome = u.outcome, processed_at = $2, \
         body = NULL, error = NULL \
         FROM unnest($3::uuid[], $4::text[]) AS u(report_id, outcome) \
         WHERE r.company_id = $1 AND r.report_id = u.report_id",
    )
    .bind(company_id)
    .bind(now)
    .bind(&report_ids)
    .bind(&labels)
    .execute(&mut **tx)
    .await?;
    Ok(CompanyApplied {
        outcomes: reports
            .iter()
            .map(|i| outcomes.get(i).copied().unwrap_or(ReportOutcome::Stale))
            .collect(),
        changes,
        software_hosts,
        rollup,
    })
}

/// Adds host deltas to the company's `company_software` rows (the transaction scoped to the
/// company), keys in order, and drops the versions no host runs any more. Called last before
/// the events: the rows' locks are held only until the commit that follows.
pub(crate) async fn write_company_software(
    tx: &mut Tx,
    company_id: CompanyId,
    deltas: &HashMap<SoftwareKey, i64>,
) -> Result<()> {
    let mut rows: Vec<(Uuid, i64)> = deltas
        .iter()
        .filter(|(_, d)| **d != 0)
        .map(|(k, d)| (key_uuid(k), *d))
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    rows.sort();
    let keys: Vec<Uuid> = rows.iter().map(|r| r.0).collect();
    let deltas: Vec<i64> = rows.iter().map(|r| r.1).collect();
    sqlx::query(
        "INSERT INTO company_software (company_id, software_key, hosts) \
         SELECT $1, k, d FROM unnest($2::uuid[], $3::bigint[]) WITH ORDINALITY AS t(k, d, ord) \
         ORDER BY ord \
         ON CONFLICT (company_id, software_key) \
         DO UPDATE SET hosts = company_software.hosts + excluded.hosts",
    )
    .bind(company_id)
    .bind(&keys)
    .bind(&deltas)
    .execute(&mut **tx)
    .await?;
    if deltas.iter().any(|d| *d < 0) {
        sqlx::query(
            "DELETE FROM company_software WHERE company_id = $1 AND software_key = ANY($2) \
             AND hosts <= 0",
        )
        .bind(company_id)
        .bind(&keys)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Rows as parallel arrays: (agent, software) and optionally arch.
#[derive(Default)]
struct KeyRows<'a> {
    agents: Vec<AgentId>,
    keys: Vec<Uuid>,
    archs: Vec<&'a str>,
}

impl<'a> KeyRows<'a> {
    fn push(&mut self, agent: AgentId, key: &SoftwareKey, arch: Option<&'a str>) {
        self.agents.push(agent);
        self.keys.push(key_uuid(key));
        if let Some(arch) = arch {
            self.archs.push(arch);
        }
    }

    fn is_empty(&self) -> bool {
        self.agents.is_empty()
    }
}

/// The app and finding rows of one round's diffs (agents in id order, each diff in key order:
/// rows are locked in one order by every writer); returns the finding rows each report
/// opened and resolved.
async fn write_round(
    tx: &mut Tx,
    company_id: CompanyId,
    now: DateTime<Utc>,
    batch: &ProcessedBatch,
    applied: &[(usize, InventoryDiff, bool)],
    citus: bool,
) -> Result<HashMap<usize, RowChanges>> {
    // An agent has one report per round.
    let report_of: HashMap<AgentId, usize> = applied
        .iter()
        .map(|(i, _, _)| (batch.reports[*i].agent_id, *i))
        .collect();
    let mut changes: HashMap<usize, RowChanges> = HashMap::new();
    let mut record = |rows: Vec<sqlx::postgres::PgRow>, opened: bool| -> Result<()> {
        for row in &rows {
            let agent: AgentId = row.try_get(0)?;
            let finding = ChangedFinding {
                key: uuid_key(row.try_get(1)?),
                vuln_id: row.try_get(2)?,
                severity: i64::from(row.try_get::<i16, _>(3)?),
                kev: row.try_get(4)?,
            };
            if let Some(i) = report_of.get(&agent) {
                let entry = changes.entry(*i).or_default();
                if opened {
                    entry.opened.push(finding);
                } else {
                    entry.resolved.push(finding);
                }
            }
        }
        Ok(())
    };
    let mut deleted = KeyRows::default();
    let mut removed_sw = KeyRows::default();
    // [agents seen before, first inventories]: an agent none of whose reports was processed yet
    // has no app or finding rows, so its rows go in without the conflict checks.
    let mut inserted = [KeyRows::default(), KeyRows::default()];
    let mut added_sw = [KeyRows::default(), KeyRows::default()];
    for (i, diff, first) in applied {
        let agent = batch.reports[*i].agent_id;
        let first = usize::from(*first);
        for (k, arch) in &diff.deleted {
            deleted.push(agent, k, Some(arch));
        }
        for (k, arch) in &diff.inserted {
            inserted[first].push(agent, k, Some(arch));
        }
        for k in &diff.removed_sw {
            removed_sw.push(agent, k, None);
        }
        for k in &diff.added_sw {
            added_sw[first].push(agent, k, None);
        }
    }

    if !deleted.is_empty() {
        // Kept as removed for the retention period (history of what was installed).
        sqlx::query(
            "UPDATE apps SET removed_at = $2 \
             FROM unnest($3::uuid[], $4::uuid[], $5::text[]) AS d(agent_id, software_key, arch) \
             WHERE apps.company_id = $1 AND apps.agent_id = d.agent_id \
             AND apps.software_key = d.software_key AND apps.arch = d.arch \
             AND apps.removed_at IS NULL",
        )
        .bind(company_id)
        .bind(now)
        .bind(&deleted.agents)
        .bind(&deleted.keys)
        .bind(&deleted.archs)
        .execute(&mut **tx)
        .await?;
    }
    for (first, inserted) in inserted.iter().enumerate() {
        if inserted.is_empty() {
            continue;
        }
        let sql = format!(
            "INSERT INTO apps (company_id, agent_id, software_key, arch, first_seen) \
             SELECT $1, a, k, ar, $2 FROM unnest($3::uuid[], $4::uuid[], $5::text[]) AS t(a, k, ar){}",
            if first == 1 && !citus {
                ""
            } else if first == 1 {
                // Rows new to their agent (under its row lock): no conflict can arise. Citus
                // runs an INSERT … SELECT from `unnest` through the coordinator and writes
                // the rows with COPY, which PostgreSQL refuses under row-level security; with
                // an ON CONFLICT clause it inserts them from intermediate results instead.
                " ON CONFLICT (company_id, agent_id, software_key, arch) DO NOTHING"
            } else {
                " ON CONFLICT (company_id, agent_id, software_key, arch) DO UPDATE SET \
                 removed_at = NULL, first_seen = excluded.first_seen \
                 WHERE apps.removed_at IS NOT NULL"
            }
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(company_id)
            .bind(now)
            .bind(&inserted.agents)
            .bind(&inserted.keys)
            .bind(&inserted.archs)
            .execute(&mut **tx)
            .await?;
    }
    if !removed_sw.is_empty() {
        let rows = sqlx::query(
            "UPDATE findings f SET resolved_at = $2, resolution = 'removed' \
             FROM unnest($3::uuid[], $4::uuid[]) AS d(agent_id, software_key) \
             WHERE f.company_id = $1 AND f.agent_id = d.agent_id \
             AND f.software_key = d.software_key AND f.resolved_at IS NULL \
             RETURNING f.agent_id, f.software_key, f.vuln_id, f.severity, f.kev",
        )
        .bind(company_id)
        .bind(now)
        .bind(&removed_sw.agents)
        .bind(&removed_sw.keys)
        .fetch_all(&mut **tx)
        .await?;
        record(rows, false)?;
    }
    for (first, added_sw) in added_sw.iter().enumerate() {
        if added_sw.is_empty() {
            continue;
        }
        let sql = format!(
            "INSERT INTO findings (company_id, agent_id, software_key, vuln_id, severity, kev, \
             fixable, first_seen) \
             SELECT $1, t.a, sv.software_key, sv.vuln_id, sv.severity, sv.kev, sv.fixable, $2 \
             FROM unnest($3::uuid[], $4::uuid[]) AS t(a, k) \
             JOIN software_vulns sv ON sv.software_key = t.k \
             ORDER BY t.a, sv.software_key, sv.vuln_id{}",
            // Findings of versions the agent had before open again with what their match
            // says now, and are told their SLA crossings again (`sla_notified` clears).
            if first == 1 {
                ""
            } else {
                " ON CONFLICT (company_id, agent_id, software_key, vuln_id) DO UPDATE SET \
                 resolved_at = NULL, resolution = NULL, severity = excluded.severity, \
                 kev = excluded.kev, fixable = excluded.fixable, \
                 sla_notified = CASE WHEN findings.resolved_at IS NULL THEN findings.sla_notified ELSE 0 END"
            }
        );
        let sql = format!("{sql} RETURNING agent_id, software_key, vuln_id, severity, kev");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(company_id)
            .bind(now)
            .bind(&added_sw.agents)
            .bind(&added_sw.keys)
            .fetch_all(&mut **tx)
            .await?;
        record(rows, true)?;
    }
    carry_over_findings(tx, company_id, now, batch, applied).await?;
    Ok(changes)
}

/// A finding row read back for the carry-over: agent, (software, vuln, first_seen).
type SeenRow = (AgentId, FindingSeen<DateTime<Utc>>);

/// The findings of changed packages (see `plan_carry_over`), for the whole round at once.
async fn carry_over_findings(
    tx: &mut Tx,
    company_id: CompanyId,
    now: DateTime<Utc>,
    batch: &ProcessedBatch,
    applied: &[(usize, InventoryDiff, bool)],
) -> Result<()> {
    let changed: Vec<(AgentId, &InventoryDiff)> = applied
        .iter()
        .filter(|(_, diff, _)| !diff.changed_pkgs.is_empty())
        .map(|(i, diff, _)| (batch.reports[*i].agent_id, diff))
        .collect();
    if changed.is_empty() {
        return Ok(());
    }
    // What the round just resolved as removed, and what it opened, of the changed packages.
    let mut old_keys = KeyRows::default();
    let mut new_keys = KeyRows::default();
    for (agent, diff) in &changed {
        for k in diff.changed_old_keys() {
            old_keys.push(*agent, k, None);
        }
        for k in diff.changed_new_keys() {
            new_keys.push(*agent, k, None);
        }
    }
    let old_rows = read_seen(tx, company_id, &old_keys, Some(now)).await?;
    if old_rows.is_empty() {
        return Ok(());
    }
    let new_rows = read_seen(tx, company_id, &new_keys, None).await?;
    let plan = plan_round_carry_over(&changed, old_rows, new_rows);
    set_finding_column(tx, company_id, "first_seen", "timestamptz", plan.first_seen).await?;
    set_finding_column(tx, company_id, "resolution", "text", plan.resolutions).await
}

/// Findings of these (agent, software) rows: open ones, or (with a time) the ones resolved as
/// removed at that time.
async fn read_seen(
    tx: &mut Tx,
    company_id: CompanyId,
    keys: &KeyRows<'_>,
    removed_at: Option<DateTime<Utc>>,
) -> Result<Vec<SeenRow>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(
        "SELECT f.agent_id, f.software_key, f.vuln_id, f.first_seen FROM findings f \
         JOIN unnest($2::uuid[], $3::uuid[]) AS d(agent_id, software_key) \
           ON f.agent_id = d.agent_id AND f.software_key = d.software_key \
         WHERE f.company_id = $1 AND CASE WHEN $4::timestamptz IS NULL \
           THEN f.resolved_at IS NULL \
           ELSE f.resolved_at = $4 AND f.resolution = 'removed' END",
    )
    .bind(company_id)
    .bind(&keys.agents)
    .bind(&keys.keys)
    .bind(removed_at)
    .fetch_all(&mut **tx)
    .await?;
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get(0)?,
                (uuid_key(row.try_get(1)?), row.try_get(2)?, row.try_get(3)?),
            ))
        })
        .collect()
}

/// Sets one column of these findings ((agent, software, vuln, value) rows).
async fn set_finding_column<V>(
    tx: &mut Tx,
    company_id: CompanyId,
    column: &str,
    sql_type: &str,
    mut rows: Vec<(AgentId, (SoftwareKey, String, V))>,
) -> Result<()>
where
    V: Copy + Send + sqlx::postgres::PgHasArrayType + for<'q> sqlx::Encode<'q, sqlx::Postgres>,
    V: sqlx::Type<sqlx::Postgres> + 'static,
{
    if rows.is_empty() {
        return Ok(());
    }
    rows.sort_by(|(a, x), (b, y)| (a, x.0, &x.1).cmp(&(b, y.0, &y.1)));
    let agents: Vec<AgentId> = rows.iter().map(|(a, _)| *a).collect();
    let keys: Vec<Uuid> = rows.iter().map(|(_, r)| key_uuid(&r.0)).collect();
    let vulns: Vec<&str> = rows.iter().map(|(_, r)| r.1.as_str()).collect();
    let values: Vec<V> = rows.iter().map(|(_, r)| r.2).collect();
    // One row per finding (`plan_carry_over` says so): `UPDATE … FROM` would apply only one of
    // several.
    let sql = format!(
        "UPDATE findings f SET {column} = u.value \
         FROM unnest($2::uuid[], $3::uuid[], $4::text[], $5::{sql_type}[]) \
           AS u(agent_id, software_key, vuln_id, value) \
         WHERE f.company_id = $1 AND f.agent_id = u.agent_id \
         AND f.software_key = u.software_key AND f.vuln_id = u.vuln_id"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(company_id)
        .bind(&agents)
        .bind(&keys)
        .bind(&vulns)
        .bind(&values)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The agents rows of every agent a report was applied to: its last report and the inventory
/// it left; the open-finding counters of those whose findings moved.
async fn write_agents(
    tx: &mut Tx,
    company_id: CompanyId,
    now: DateTime<Utc>,
    batch: &ProcessedBatch,
    agents: &HashMap<AgentId, AgentState>,
) -> Result<()> {
    for recount in [false, true] {
        let mut updates: Vec<(&ProcessedReport, &Inventory)> = agents
            .values()
            .filter(|a| a.findings_changed == recount)
            .filter_map(|a| Some((&batch.reports[a.last_applied?], a.current.as_ref()?)))
            .collect();
        if updates.is_empty() {
            continue;
        }
        updates.sort_by_key(|(r, _)| r.agent_id);
        let ids: Vec<AgentId> = updates.iter().map(|(r, _)| r.agent_id).collect();
        let text = |f: fn(&ProcessedReport) -> &str| -> Vec<&str> {
            updates.iter().map(|(r, _)| f(r)).collect()
        };
        let digests: Vec<&[u8]> = updates.iter().map(|(r, _)| &r.digest[..]).collect();
        let collected: Vec<DateTime<Utc>> = updates.iter().map(|(r, _)| r.collected_at).collect();
        let counts: Vec<i32> = updates
            .iter()
            .map(|(_, (apps, _))| i32::try_from(apps.len()).unwrap_or(i32::MAX))
            .collect();
        let inventories: Vec<Vec<u8>> = updates
            .iter()
            .map(|(_, (apps, pkg))| encode_inventory(apps, pkg))
            .collect();
        let sql = format!(
            "UPDATE agents a SET hostname = u.hostname, os_id = u.os_id, \
             os_version_id = u.os_version_id, os_name = u.os_name, arch = u.arch, \
             inventory_digest = u.digest, inventory_collected_at = u.collected, \
             last_report_at = $2, app_count = u.app_count, inventory = u.inventory{} \
             FROM unnest($3::uuid[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], \
                         $9::bytea[], $10::timestamptz[], $11::int[], $12::bytea[]) \
               AS u(agent_id, hostname, os_id, os_version_id, os_name, arch, digest, collected, \
                    app_count, inventory) \
             WHERE a.company_id = $1 AND a.agent_id = u.agent_id",
            if recount {
                format!(", {COUNTERS_FROM_FINDINGS}")
            } else {
                String::new()
            }
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(company_id)
            .bind(now)
            .bind(&ids)
            .bind(text(|r| &r.hostname))
            .bind(text(|r| &r.os.id))
            .bind(text(|r| &r.os.version_id))
            .bind(text(|r| &r.os.name))
            .bind(text(|r| &r.arch))
            .bind(&digests)
            .bind(&collected)
            .bind(&counts)
            .bind(&inventories)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// The stored inventory from the app rows (when the compact form is missing or damaged).
async fn load_inventory(
    tx: &mut Tx,
    company_id: CompanyId,
    agent_id: AgentId,
) -> Result<Inventory> {
    let rows = sqlx::query(
        "SELECT a.software_key, a.arch, s.ecosystem, s.name FROM apps a \
         JOIN software s ON s.software_key = a.software_key \
         WHERE a.company_id = $1 AND a.agent_id = $2 AND a.removed_at IS NULL",
    )
    .bind(company_id)
    .bind(agent_id)
    .fetch_all(&mut **tx)
    .await?;
    let mut apps = HashSet::with_capacity(rows.len());
    let mut pkg = HashMap::with_capacity(rows.len());
    for row in &rows {
        let key = uuid_key(row.try_get(0)?);
        apps.insert((key, row.try_get::<String, _>(1)?));
        let package = format!(
            "{}\u{0}{}",
            row.try_get::<&str, _>(2)?,
            row.try_get::<&str, _>(3)?
        );
        pkg.insert(key, package_id(&package));
    }
    Ok((apps, pkg))
}

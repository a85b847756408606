//! Applying a group commit's reports with a fixed number of statements, whatever its size.
//!
//! Every statement is a round trip between the async side and the connection's thread, and
//! the lone writer sat idle for a third of the time waiting for the next one when reports were
//! applied one by one (eight statements each). Here the diffs are computed in memory and each
//! kind of change is written for the whole group at once: the leases and agents are read in
//! one query each, then apps, findings, agents, reports and queue entries are written in bulk
//! (rows bound as parameters, see `rows.rs`).
//!
//! An agent may have several reports in one group. They are applied oldest first in rounds:
//! round k holds every agent's k-th report, and each round's writes finish before the next
//! round's diffs are written, so a later report sees what the earlier one stored.

use std::collections::{HashMap, HashSet};

use sqlx::sqlite::SqliteRow;
use sqlx::{Row, Sqlite, Transaction};
use zt_inventory::SoftwareKey;

use super::process::insert_new_software;
use super::rows::{padded_chunks, values};
use crate::common::events::{
    net_changes, processed_report_events, ChangedFinding, NetChanges, RowChanges,
};
use crate::common::inventory::{
    encode_inventory, known_inventory, next_round, package_id, plan_round_carry_over, FindingSeen,
    Inventory, InventoryDiff,
};
use crate::common::rollup::RollupDelta;
use crate::common::{agent_from, company_from, key_from, ms};
use crate::model::*;
use crate::Result;

type Tx = Transaction<'static, Sqlite>;
type AgentKey = (CompanyId, AgentId);

/// An agent as this group found it, and as its applied reports leave it.
struct AgentState {
    /// When the stored inventory was collected (None: no report processed yet).
    stored_at: Option<i64>,
    blob: Option<Vec<u8>>,
    app_count: i64,
    /// The inventory after a report of this group, for the agent's next one.
    current: Option<Inventory>,
    /// The last report of this group applied to the agent: its agents row is written from it
    /// and `current` at the end.
    last_applied: Option<At>,
}

/// A report's final state, for the reports and queue rows.
struct Done {
    company_id: CompanyId,
    report_id: ReportId,
    queue_id: i64,
    outcome: &'static str,
    now: i64,
}

/// A report of the group: (batch, index in the batch).
type At = (usize, usize);

/// Applies batches inside one transaction; one outcome list per batch, in order.
pub(crate) async fn write_batches(
    tx: &mut Tx,
    batches: &[&ProcessedBatch],
) -> Result<Vec<Vec<ReportOutcome>>> {
    for batch in batches {
        insert_new_software(tx, &batch.software, batch.revision, ms(batch.now)).await?;
    }
    let report = |(b, i): At| &batches[b].reports[i];
    let mut outcomes: Vec<Vec<ReportOutcome>> = batches
        .iter()
        .map(|b| vec![ReportOutcome::LeaseLost; b.reports.len()])
        .collect();
    let all: Vec<At> = batches
        .iter()
        .enumerate()
        .flat_map(|(b, batch)| (0..batch.reports.len()).map(move |i| (b, i)))
        .collect();
    if all.is_empty() {
        return Ok(outcomes);
    }

    let ours = leases_held(tx, all.iter().map(|&at| &report(at).lease)).await?;
    // Oldest first per agent, so that the newest inventory is the one left stored.
    let mut todo: Vec<At> = all
        .into_iter()
        .filter(|&at| ours.contains(&report(at).lease.queue_id))
        .collect();
    todo.sort_by_key(|&at| {
        let r = report(at);
        (r.company_id, r.agent_id, r.collected_at)
    });
    let mut keys: Vec<AgentKey> = todo
        .iter()
        .map(|&at| (report(at).company_id, report(at).agent_id))
        .collect();
    keys.dedup();
    let mut agents = load_agents(tx, &keys).await?;
    // The vulnerability rollup's view of the agents that have findings, before they move.
    let before = super::rollup::contributions(
        tx,
        agents
            .iter()
            .filter(|(_, a)| a.stored_at.is_some())
            .map(|(k, _)| *k),
    )
    .await?;

    // Hosts gained (+) and lost (-) per company and software version, and the agents whose
    // open findings moved (their counters are recounted).
    let mut software_hosts: HashMap<(CompanyId, SoftwareKey), i64> = HashMap::new();
    let mut recount: HashSet<AgentKey> = HashSet::new();
    let mut done: Vec<Done> = Vec::with_capacity(todo.len());
    // Every settled report with its outcome, and what the applied ones changed: their events.
    let mut settled: Vec<(At, &'static str)> = Vec::with_capacity(todo.len());
    let mut changes: HashMap<At, NetChanges> = HashMap::new();
    while !todo.is_empty() {
        let (round, later) = next_round(todo, |at| (report(at).company_id, report(at).agent_id));
        let mut applied: Vec<(At, InventoryDiff)> = Vec::with_capacity(round.len());
        for at in round {
            let r = report(at);
            let now = ms(batches[at.0].now);
            let collected = ms(r.collected_at);
            let agent = agents.get_mut(&(r.company_id, r.agent_id));
            let Some(agent) = agent.filter(|a| a.stored_at.is_none_or(|s| s <= collected)) else {
                // The agent is gone, or a newer inventory of it is stored already.
                outcomes[at.0][at.1] = ReportOutcome::Stale;
                done.push(Done::of(r, "stale", now));
                settled.push((at, "stale"));
                continue;
            };
            let known =
                known_inventory(agent.current.take(), agent.blob.as_deref(), agent.app_count);
            let old = match known {
                Some(inventory) => inventory,
                None => load_inventory(tx, r.company_id, r.agent_id).await?,
            };
            let diff = InventoryDiff::new(old, r);
            outcomes[at.0][at.1] = diff.outcome();
            done.push(Done::of(r, "applied", now));
            settled.push((at, "applied"));
            agent.last_applied = Some(at);
            // `stored_at` and `current` move on after the round is written: `write_round`
            // tells an agent's first inventory by the state before it.
            applied.push((at, diff));
        }
        let mut rows = write_round(tx, batches, &applied, &agents).await?;
        for ((b, i), diff) in applied {
            let r = &batches[b].reports[i];
            host_deltas(&mut software_hosts, r.company_id, &diff);
            if diff.findings_changed() {
                recount.insert((r.company_id, r.agent_id));
            }
            let report_rows = rows.remove(&(b, i)).unwrap_or_default();
            changes.insert((b, i), net_changes(&diff, report_rows));
            if let Some(agent) = agents.get_mut(&(r.company_id, r.agent_id)) {
                agent.stored_at = Some(ms(r.collected_at));
                agent.current = Some((diff.new_apps, diff.new_pkg));
            }
        }
        todo = later;
    }

    write_company_software(tx, &software_hosts).await?;
    // New findings an analysis covers are suppressed before they are counted.
    if let Some(first) = batches.first() {
        super::analyses::cover_agents(tx, &recount, ms(first.now)).await?;
    }
    let counters = count_open_findings(tx, &recount).await?;
    let after = super::rollup::contributions(tx, recount.iter().copied()).await?;
    super::rollup::write_delta(tx, &RollupDelta::between(&before, &after)).await?;
    write_agents(tx, batches, &agents, &counters).await?;
    mark_done(tx, &done).await?;
    write_events(tx, batches, &settled, &changes).await?;
    Ok(outcomes)
}

/// The events of the settled reports (`report.processed`, `findings.changed`), last in the
/// transaction.
async fn write_events(
    tx: &mut Tx,
    batches: &[&ProcessedBatch],
    settled: &[(At, &'static str)],
    changes: &HashMap<At, NetChanges>,
) -> Result<()> {
    let mut keys: Vec<SoftwareKey> = changes.values().flat_map(|c| c.listed_keys()).collect();
    keys.sort();
    keys.dedup();
    let packages = load_packages(tx, &keys).await?;
    let none = NetChanges::default();
    let mut events = Vec::with_capacity(settled.len() * 2);
    for &(at, outcome) in settled {
        let r = &batches[at.0].reports[at.1];
        let changed = changes.get(&at).unwrap_or(&none);
        events.extend(processed_report_events(r, outcome, changed, &packages));
    }
    let now = batches.iter().map(|b| ms(b.now)).max().unwrap_or_default();
    // Notifications of the opened findings, in this transaction (issue 14).
    let opened = settled.iter().filter_map(|&(at, _)| {
        let r = &batches[at.0].reports[at.1];
        changes
            .get(&at)
            .map(|c| c.opened.iter().map(move |f| (r.company_id, r.agent_id, f)))
    });
    super::notify::opened_in_tx(
        tx,
        opened.flatten().collect(),
        &packages,
        crate::common::from_ms(now),
    )
    .await?;
    super::events::append_in_tx(tx, &events, now).await?;
    Ok(())
}

/// Name, version, ecosystem and source of these software versions.
pub(crate) async fn load_packages(
    tx: &mut Tx,
    keys: &[SoftwareKey],
) -> Result<HashMap<SoftwareKey, PackageRef>> {
    let mut out = HashMap::with_capacity(keys.len());
    for chunk in padded_chunks(keys) {
        let mut q = sqlx::query(sqlx::AssertSqlSafe(packages_sql(chunk.len())));
        for k in chunk {
            q = q.bind(&k.0[..]);
        }
        for row in q.fetch_all(&mut **tx).await? {
            out.insert(
                key_from(row.get::<&[u8], _>(0))?,
                PackageRef {
                    name: row.get(1),
                    version: row.get(2),
                    ecosystem: row.get(3),
                    source: row.get(4),
                },
            );
        }
    }
    Ok(out)
}

/// A finding row a write returned (`RETURNING` [`CHANGED_COLUMNS`]), with its agent.
fn changed_row(row: &SqliteRow) -> Result<(AgentKey, ChangedFinding)> {
    Ok((
        (
            company_from(row.get::<&[u8], _>(0))?,
            agent_from(row.get::<&[u8], _>(1))?,
        ),
        ChangedFinding {
            key: key_from(row.get::<&[u8], _>(2))?,
            vuln_id: row.get(3),
            severity: row.get(4),
            kev: row.get(5),
        },
    ))
}

/// What the finding writes return for the events.
const CHANGED_COLUMNS: &str =
    "RETURNING company_id, agent_id, software_key, vuln_id, severity, kev";

impl Done {
    fn of(r: &ProcessedReport, outcome: &'static str, now: i64) -> Done {
        Done {
            company_id: r.company_id,
            report_id: r.report_id,
            queue_id: r.lease.queue_id,
            outcome,
            now,
        }
    }
}

/// The queue ids of these leases that are still held as they say.
async fn leases_held<'a>(
    tx: &mut Tx,
    leases: impl Iterator<Item = &'a LeaseRef>,
) -> Result<HashSet<i64>> {
    let leases: Vec<&LeaseRef> = leases.collect();
    let mut ours = HashSet::with_capacity(leases.len());
    for chunk in padded_chunks(&leases) {
        let sql = leases_sql(chunk.len());
        let mut q = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql));
        for l in chunk {
            q = q.bind(l.queue_id).bind(l.owner.as_str()).bind(l.attempts);
        }
        ours.extend(q.fetch_all(&mut **tx).await?);
    }
    Ok(ours)
}

async fn load_agents(tx: &mut Tx, keys: &[AgentKey]) -> Result<HashMap<AgentKey, AgentState>> {
    let mut agents = HashMap::with_capacity(keys.len());
    for chunk in padded_chunks(keys) {
        let sql = load_agents_sql(chunk.len());
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (company_id, agent_id) in chunk {
            q = q.bind(company_id).bind(agent_id);
        }
        for row in q.fetch_all(&mut **tx).await? {
            let key = (
                company_from(row.get::<&[u8], _>(0))?,
                agent_from(row.get::<&[u8], _>(1))?,
            );
            agents.insert(
                key,
                AgentState {
                    stored_at: row.get(2),
                    blob: row.get(3),
                    app_count: row.get(4),
                    current: None,
                    last_applied: None,
                },
            );
        }
    }
    Ok(agents)
}

/// An app row to insert or delete.
struct AppRow<'a> {
    company_id: CompanyId,
    agent_id: AgentId,
    key: SoftwareKey,
    arch: &'a str,
    now: i64,
}

fn app_row<'a>(r: &ProcessedReport, now: i64, app: &'a (SoftwareKey, String)) -> AppRow<'a> {
    AppRow {
        company_id: r.company_id,
        agent_id: r.agent_id,
        key: app.0,
        arch: app.1.as_str(),
        now,
    }
}

/// The app and finding rows of one round's diffs; returns the finding rows each report
/// opened and resolved.
async fn write_round(
    tx: &mut Tx,
    batches: &[&ProcessedBatch],
    applied: &[(At, InventoryDiff)],
    agents: &HashMap<AgentKey, AgentState>,
) -> Result<HashMap<At, RowChanges>> {
    // An agent has one report per round.
    let report_of: HashMap<AgentKey, At> = applied
        .iter()
        .map(|&((b, i), _)| {
            let r = &batches[b].reports[i];
            ((r.company_id, r.agent_id), (b, i))
        })
        .collect();
    let mut changes: HashMap<At, RowChanges> = HashMap::new();
    let mut record = |rows: Vec<SqliteRow>, opened: bool| -> Result<()> {
        for row in &rows {
            let (agent, finding) = changed_row(row)?;
            if let Some(at) = report_of.get(&agent) {
                let entry = changes.entry(*at).or_default();
                if opened {
                    entry.opened.push(finding);
                } else {
                    entry.resolved.push(finding);
                }
            }
        }
        Ok(())
    };
    let mut deleted: Vec<AppRow> = Vec::new();
    let mut inserted: Vec<AppRow> = Vec::new();
    // (company, agent, software, now)
    let mut removed_sw: Vec<(CompanyId, AgentId, SoftwareKey, i64)> = Vec::new();
    let mut added_sw: Vec<(CompanyId, AgentId, SoftwareKey, i64)> = Vec::new();
    let mut reopen: Vec<(CompanyId, AgentId, SoftwareKey)> = Vec::new();
    for ((b, i), diff) in applied {
        let r = &batches[*b].reports[*i];
        let now = ms(batches[*b].now);
        deleted.extend(diff.deleted.iter().map(|app| app_row(r, now, app)));
        inserted.extend(diff.inserted.iter().map(|app| app_row(r, now, app)));
        removed_sw.extend(
            diff.removed_sw
                .iter()
                .map(|k| (r.company_id, r.agent_id, *k, now)),
        );
        added_sw.extend(
            diff.added_sw
                .iter()
                .map(|k| (r.company_id, r.agent_id, *k, now)),
        );
        // An agent's findings are only ever written from its reports (or by re-matching its
        // stored apps), so before its first processed report there is nothing to reopen.
        let first = agents
            .get(&(r.company_id, r.agent_id))
            .is_none_or(|a| a.stored_at.is_none());
        if !first {
            reopen.extend(diff.added_sw.iter().map(|k| (r.company_id, r.agent_id, *k)));
        }
    }
    // Key order: neighbouring rows land on the same B-tree pages.
    let app_order = |a: &AppRow, b: &AppRow| {
        (a.company_id, a.agent_id, a.key, a.arch).cmp(&(b.company_id, b.agent_id, b.key, b.arch))
    };
    deleted.sort_by(app_order);
    inserted.sort_by(app_order);

    for chunk in padded_chunks(&deleted) {
        let sql = delete_apps_sql(chunk.len());
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for a in chunk {
            q = q
                .bind(a.company_id)
                .bind(a.agent_id)
                .bind(&a.key.0[..])
                .bind(a.arch);
        }
        q.execute(&mut **tx).await?;
    }
    for chunk in padded_chunks(&inserted) {
        let sql = insert_apps_sql(chunk.len());
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for a in chunk {
            q = q
                .bind(a.company_id)
                .bind(a.agent_id)
                .bind(&a.key.0[..])
                .bind(a.arch)
                .bind(a.now);
        }
        q.execute(&mut **tx).await?;
    }
    for (now, rows) in by_value(removed_sw.iter().map(|&(c, a, k, now)| (now, (c, a, k)))) {
        for chunk in padded_chunks(&rows) {
            let mut q =
                sqlx::query(sqlx::AssertSqlSafe(resolve_removed_sql(chunk.len()))).bind(now);
            for (c, a, k) in chunk {
                q = q.bind(c).bind(a).bind(&k.0[..]);
            }
            record(q.fetch_all(&mut **tx).await?, false)?;
        }
    }
    // Findings of versions the agent had before open again with what their match says now,
    // and are told their SLA crossings again (`sla_notified` clears).
    // (`ON CONFLICT DO UPDATE` in the insert below would do it too, but implies a statement
    // journal, see `rows.rs`.)
    for chunk in padded_chunks(&reopen) {
        let mut q = sqlx::query(sqlx::AssertSqlSafe(reopen_sql(chunk.len())));
        for (c, a, k) in chunk {
            q = q.bind(c).bind(a).bind(&k.0[..]);
        }
        record(q.fetch_all(&mut **tx).await?, true)?;
    }
    for chunk in padded_chunks(&added_sw) {
        let mut q = sqlx::query(sqlx::AssertSqlSafe(insert_findings_sql(chunk.len())));
        for (c, a, k, now) in chunk {
            q = q.bind(c).bind(a).bind(&k.0[..]).bind(*now);
        }
        record(q.fetch_all(&mut **tx).await?, true)?;
    }
    carry_over_findings(tx, batches, applied).await?;
    Ok(changes)
}

/// A finding row read back for the carry-over: (company, agent, software, vuln, first_seen).
type SeenRow = (CompanyId, AgentId, SoftwareKey, String, i64);

/// The findings of changed packages (see `plan_carry_over`), for the whole round at once.
async fn carry_over_findings(
    tx: &mut Tx,
    batches: &[&ProcessedBatch],
    applied: &[(At, InventoryDiff)],
) -> Result<()> {
    let changed: Vec<(&ProcessedReport, i64, &InventoryDiff)> = applied
        .iter()
        .filter(|(_, diff)| !diff.changed_pkgs.is_empty())
        .map(|((b, i), diff)| (&batches[*b].reports[*i], ms(batches[*b].now), diff))
        .collect();
    if changed.is_empty() {
        return Ok(());
    }
    // What the round just resolved as removed, and what it opened, of the changed packages.
    let old_keys: Vec<(CompanyId, AgentId, SoftwareKey, i64)> = changed
        .iter()
        .flat_map(|(r, now, d)| {
            d.changed_old_keys()
                .map(move |k| (r.company_id, r.agent_id, *k, *now))
        })
        .collect();
    let new_keys: Vec<(CompanyId, AgentId, SoftwareKey, i64)> = changed
        .iter()
        .flat_map(|(r, now, d)| {
            d.changed_new_keys()
                .map(move |k| (r.company_id, r.agent_id, *k, *now))
        })
        .collect();
    let mut old_rows = Vec::new();
    for (now, keys) in by_value(old_keys.iter().map(|&(c, a, k, now)| (now, (c, a, k)))) {
        old_rows.extend(read_seen(tx, &keys, Some(now)).await?);
    }
    if old_rows.is_empty() {
        return Ok(());
    }
    let new_keys: Vec<(CompanyId, AgentId, SoftwareKey)> =
        new_keys.iter().map(|&(c, a, k, _)| (c, a, k)).collect();
    let new_rows = read_seen(tx, &new_keys, None).await?;

    let tagged = |rows: Vec<SeenRow>| -> Vec<(AgentKey, FindingSeen<i64>)> {
        rows.into_iter()
            .map(|(c, a, k, v, s)| ((c, a), (k, v, s)))
            .collect()
    };
    let changed: Vec<(AgentKey, &InventoryDiff)> = changed
        .iter()
        .map(|(r, _, diff)| ((r.company_id, r.agent_id), *diff))
        .collect();
    let plan = plan_round_carry_over(&changed, tagged(old_rows), tagged(new_rows));
    set_finding_column(tx, "first_seen", plan.first_seen).await?;
    set_finding_column(tx, "resolution", plan.resolutions).await
}

/// Sets one column of these findings ((company, agent), (software, vuln, value) rows), one
/// statement per distinct value.
async fn set_finding_column<V>(
    tx: &mut Tx,
    column: &str,
    rows: Vec<(AgentKey, FindingSeen<V>)>,
) -> Result<()>
where
    V: Ord + Copy + Send + for<'q> sqlx::Encode<'q, Sqlite> + sqlx::Type<Sqlite> + 'static,
{
    for (value, keys) in by_value(
        rows.into_iter()
            .map(|((c, a), (k, v, x))| (x, (c, a, k, v))),
    ) {
        for chunk in padded_chunks(&keys) {
            let sql = set_finding_column_sql(column, chunk.len());
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(value);
            for (c, a, k, v) in chunk {
                q = q.bind(c).bind(a).bind(&k.0[..]).bind(v.as_str());
            }
            q.execute(&mut **tx).await?;
        }
    }
    Ok(())
}

/// Rows grouped by a value that each statement binds once for all its rows: a statement whose
/// rows carry their own values needs `UPDATE … FROM (VALUES …)`, which SQLite may plan as a
/// scan of the target table.
fn by_value<V: Ord, R>(
    rows: impl Iterator<Item = (V, R)>,
) -> std::collections::BTreeMap<V, Vec<R>> {
    let mut groups: std::collections::BTreeMap<V, Vec<R>> = std::collections::BTreeMap::new();
    for (value, row) in rows {
        groups.entry(value).or_default().push(row);
    }
    groups
}

/// Findings of these (company, agent, software) rows: open ones, or (with a time) the ones
/// resolved as removed at that time.
async fn read_seen(
    tx: &mut Tx,
    keys: &[(CompanyId, AgentId, SoftwareKey)],
    removed_at: Option<i64>,
) -> Result<Vec<SeenRow>> {
    let mut out = Vec::new();
    for chunk in padded_chunks(keys) {
        let sql = read_seen_sql(chunk.len(), removed_at.is_some());
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (c, a, k) in chunk {
            q = q.bind(c).bind(a).bind(&k.0[..]);
        }
        if let Some(at) = removed_at {
            q = q.bind(at);
        }
        for row in q.fetch_all(&mut **tx).await? {
            out.push(seen_row(&row)?);
        }
    }
    Ok(out)
}

fn seen_row(row: &SqliteRow) -> Result<SeenRow> {
    Ok((
        company_from(row.get::<&[u8], _>(0))?,
        agent_from(row.get::<&[u8], _>(1))?,
        key_from(row.get::<&[u8], _>(2))?,
        row.get(3),
        row.get(4),
    ))
}

/// Adds what a diff did to a company's hosts per software version.
fn host_deltas(
    deltas: &mut HashMap<(CompanyId, SoftwareKey), i64>,
    company_id: CompanyId,
    diff: &InventoryDiff,
) {
    for k in &diff.added_sw {
        *deltas.entry((company_id, *k)).or_default() += 1;
    }
    for k in &diff.removed_sw {
        *deltas.entry((company_id, *k)).or_default() -= 1;
    }
}

/// Applies host deltas to `company_software`: the touched rows are read, deleted and written
/// again with their new counts (versions no host runs any more are left out). Three
/// statements per chunk, each finding its rows by key.
async fn write_company_software(
    tx: &mut Tx,
    deltas: &HashMap<(CompanyId, SoftwareKey), i64>,
) -> Result<()> {
    let mut keys: Vec<(CompanyId, SoftwareKey)> = deltas
        .iter()
        .filter(|(_, d)| **d != 0)
        .map(|(k, _)| *k)
        .collect();
    keys.sort();
    for chunk in padded_chunks(&keys) {
        let mut q = sqlx::query(sqlx::AssertSqlSafe(read_company_software_sql(chunk.len())));
        for (c, k) in &chunk {
            q = q.bind(*c).bind(&k.0[..]);
        }
        let mut hosts: HashMap<(CompanyId, SoftwareKey), i64> = HashMap::new();
        for row in q.fetch_all(&mut **tx).await? {
            hosts.insert(
                (
                    company_from(row.get::<&[u8], _>(0))?,
                    key_from(row.get::<&[u8], _>(1))?,
                ),
                row.get(2),
            );
        }
        if !hosts.is_empty() {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(delete_company_software_sql(
                chunk.len(),
            )));
            for (c, k) in &chunk {
                q = q.bind(*c).bind(&k.0[..]);
            }
            q.execute(&mut **tx).await?;
        }
        let rows: Vec<(CompanyId, SoftwareKey, i64)> = chunk
            .iter()
            .map(|&&(c, k)| {
                let now = hosts.get(&(c, k)).copied().unwrap_or(0);
                (c, k, now + deltas.get(&(c, k)).copied().unwrap_or(0))
            })
            .filter(|(_, _, n)| *n > 0)
            .collect();
        for part in padded_chunks(&rows) {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(insert_company_software_sql(part.len())));
            for (c, k, n) in part {
                q = q.bind(*c).bind(&k.0[..]).bind(*n);
            }
            q.execute(&mut **tx).await?;
        }
    }
    Ok(())
}

/// Open findings of an agent: critical, high, medium, low, unknown (and none), KEV, fixable.
type Counters = [i64; 7];

/// The open-finding counters of these agents, counted from their findings (an agent with
/// none reads as zeros).
async fn count_open_findings(
    tx: &mut Tx,
    agents: &HashSet<AgentKey>,
) -> Result<HashMap<AgentKey, Counters>> {
    let mut keys: Vec<AgentKey> = agents.iter().copied().collect();
    keys.sort();
    let mut out: HashMap<AgentKey, Counters> =
        keys.iter().map(|k| (*k, Counters::default())).collect();
    for chunk in padded_chunks(&keys) {
        let mut q = sqlx::query(sqlx::AssertSqlSafe(count_open_sql(chunk.len())));
        for (c, a) in chunk {
            q = q.bind(c).bind(a);
        }
        for row in q.fetch_all(&mut **tx).await? {
            let key = (
                company_from(row.get::<&[u8], _>(0))?,
                agent_from(row.get::<&[u8], _>(1))?,
            );
            let mut counters = Counters::default();
            for (i, n) in counters.iter_mut().enumerate() {
                *n = row.get(2 + i);
            }
            out.insert(key, counters);
        }
    }
    Ok(out)
}

/// The agents rows of every agent a report was applied to: its last report, the inventory
/// it left and (when its findings moved) its open-finding counters.
async fn write_agents(
    tx: &mut Tx,
    batches: &[&ProcessedBatch],
    agents: &HashMap<AgentKey, AgentState>,
    counters: &HashMap<AgentKey, Counters>,
) -> Result<()> {
    let mut updates: Vec<(&ProcessedReport, i64, &Inventory)> = agents
        .values()
        .filter_map(|a| {
            let (b, i) = a.last_applied?;
            Some((
                &batches[b].reports[i],
                ms(batches[b].now),
                a.current.as_ref()?,
            ))
        })
        .collect();
    updates.sort_by_key(|(r, _, _)| (r.company_id, r.agent_id));
    for chunk in padded_chunks(&updates) {
        let sql = agents_sql(chunk.len());
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (r, now, (apps, pkg)) in chunk {
            q = q
                .bind(r.company_id)
                .bind(r.agent_id)
                .bind(r.hostname.as_str())
                .bind(r.os.id.as_str())
                .bind(r.os.version_id.as_str())
                .bind(r.os.name.as_str())
                .bind(r.arch.as_str())
                .bind(&r.digest[..])
                .bind(ms(r.collected_at))
                .bind(*now)
                .bind(i64::try_from(apps.len()).unwrap_or(i64::MAX))
                .bind(encode_inventory(apps, pkg));
            // NULL keeps a counter as it is (the agent's findings did not move).
            let counted = counters.get(&(r.company_id, r.agent_id));
            for i in 0..7 {
                q = q.bind(counted.map(|c| c[i]));
            }
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Reports and their queue entries done.
async fn mark_done(tx: &mut Tx, done: &[Done]) -> Result<()> {
    for chunk in padded_chunks(done) {
        let sql = reports_done_sql(chunk.len());
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for d in &chunk {
            q = q
                .bind(d.company_id)
                .bind(d.report_id)
                .bind(d.outcome)
                .bind(d.now);
        }
        q.execute(&mut **tx).await?;
        let sql = queue_done_sql(chunk.len());
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for d in &chunk {
            q = q.bind(d.queue_id).bind(d.now);
        }
        q.execute(&mut **tx).await?;
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
        "SELECT a.software_key, a.arch, s.ecosystem || char(0) || s.name FROM apps a \
         JOIN software s ON s.software_key = a.software_key \
         WHERE a.company_id = ?1 AND a.agent_id = ?2",
    )
    .bind(company_id)
    .bind(agent_id)
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

// The statements, as functions of their row count (the plan test below EXPLAINs each).

fn leases_sql(n: usize) -> String {
    format!(
        "SELECT q.queue_id FROM (VALUES {}) AS l \
             JOIN queue q ON q.queue_id = l.column1 \
             WHERE q.state = 'leased' AND q.lease_owner = l.column2 AND q.attempts = l.column3",
        values(n, "(?, ?, ?)")
    )
}

fn load_agents_sql(n: usize) -> String {
    format!(
        "SELECT a.company_id, a.agent_id, a.inventory_collected_at, a.inventory, a.app_count \
             FROM (VALUES {}) AS k \
             JOIN agents a ON a.company_id = k.column1 AND a.agent_id = k.column2",
        values(n, "(?, ?)")
    )
}

fn delete_apps_sql(n: usize) -> String {
    format!(
        // `IN (VALUES …)` here would scan the table; `IN (SELECT … FROM (VALUES …))` seeks.
        "DELETE FROM apps WHERE (company_id, agent_id, software_key, arch) IN \
             (SELECT column1, column2, column3, column4 FROM (VALUES {}))",
        values(n, "(?, ?, ?, ?)")
    )
}

fn insert_apps_sql(n: usize) -> String {
    format!(
        "INSERT OR FAIL INTO apps (company_id, agent_id, software_key, arch, first_seen) \
             VALUES {} ON CONFLICT DO NOTHING",
        values(n, "(?, ?, ?, ?, ?)")
    )
}

fn resolve_removed_sql(n: usize) -> String {
    format!(
        "UPDATE OR FAIL findings SET resolved_at = ?, resolution = 'removed' \
         WHERE resolved_at IS NULL AND (company_id, agent_id, software_key) IN \
         (SELECT column1, column2, column3 FROM (VALUES {})) {CHANGED_COLUMNS}",
        values(n, "(?, ?, ?)")
    )
}

fn reopen_sql(n: usize) -> String {
    const MATCH: &str = "FROM software_vulns sv \
         WHERE sv.software_key = findings.software_key AND sv.vuln_id = findings.vuln_id";
    format!(
        "UPDATE OR FAIL findings SET resolved_at = NULL, resolution = NULL, \
         sla_notified = CASE WHEN resolved_at IS NULL THEN sla_notified ELSE 0 END, \
         severity = (SELECT sv.severity {MATCH}), kev = (SELECT sv.kev {MATCH}), \
         fixable = (SELECT sv.fixable {MATCH}) \
         WHERE (company_id, agent_id, software_key) IN \
         (SELECT column1, column2, column3 FROM (VALUES {})) \
         AND EXISTS (SELECT 1 {MATCH}) {CHANGED_COLUMNS}",
        values(n, "(?, ?, ?)")
    )
}

fn insert_findings_sql(n: usize) -> String {
    // CROSS JOIN: SQLite keeps the rows as the outer loop and seeks the matches by key.
    format!(
        "INSERT OR FAIL INTO findings (company_id, agent_id, software_key, vuln_id, severity, \
         kev, fixable, first_seen) \
         SELECT v.column1, v.column2, sv.software_key, sv.vuln_id, sv.severity, sv.kev, \
         sv.fixable, v.column4 \
         FROM (VALUES {}) AS v CROSS JOIN software_vulns sv ON sv.software_key = v.column3 \
         WHERE true ON CONFLICT DO NOTHING {CHANGED_COLUMNS}",
        values(n, "(?, ?, ?, ?)")
    )
}

fn packages_sql(n: usize) -> String {
    format!(
        "SELECT software_key, name, version, ecosystem, source FROM software \
         WHERE software_key IN (SELECT column1 FROM (VALUES {}))",
        values(n, "(?)")
    )
}

fn set_finding_column_sql(column: &str, n: usize) -> String {
    format!(
        "UPDATE OR FAIL findings SET {column} = ? \
         WHERE (company_id, agent_id, software_key, vuln_id) IN \
         (SELECT column1, column2, column3, column4 FROM (VALUES {}))",
        values(n, "(?, ?, ?, ?)")
    )
}

fn read_seen_sql(n: usize, removed: bool) -> String {
    let condition = if removed {
        "f.resolved_at = ? AND f.resolution = 'removed'"
    } else {
        "f.resolved_at IS NULL"
    };
    format!(
        "SELECT f.company_id, f.agent_id, f.software_key, f.vuln_id, f.first_seen \
         FROM findings f WHERE (f.company_id, f.agent_id, f.software_key) IN \
         (SELECT column1, column2, column3 FROM (VALUES {})) AND {condition}",
        values(n, "(?, ?, ?)")
    )
}

fn agents_sql(n: usize) -> String {
    format!(
        "UPDATE OR FAIL agents SET hostname = v.column3, os_id = v.column4, \
             os_version_id = v.column5, os_name = v.column6, arch = v.column7, \
             inventory_digest = v.column8, inventory_collected_at = v.column9, \
             last_report_at = v.column10, app_count = v.column11, inventory = v.column12, \
             open_critical = coalesce(v.column13, agents.open_critical), \
             open_high = coalesce(v.column14, agents.open_high), \
             open_medium = coalesce(v.column15, agents.open_medium), \
             open_low = coalesce(v.column16, agents.open_low), \
             open_unknown = coalesce(v.column17, agents.open_unknown), \
             open_kev = coalesce(v.column18, agents.open_kev), \
             open_fixable = coalesce(v.column19, agents.open_fixable) \
             FROM (VALUES {}) AS v \
             WHERE agents.company_id = v.column1 AND agents.agent_id = v.column2",
        values(
            n,
            "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        )
    )
}

/// Open findings per agent, counted (see `count_open_findings`): the primary key's
/// (company, agent) prefix reads exactly the agent's rows. (With `IN (SELECT … FROM (VALUES
/// …))` SQLite seeks by the company alone, through a partial index of open findings: a pass
/// over the company's findings per statement.) DISTINCT: padding repeats the last row.
pub(super) fn count_open_sql(n: usize) -> String {
    format!(
        "SELECT f.company_id, f.agent_id, sum(f.severity = 5), sum(f.severity = 4), \
         sum(f.severity = 3), sum(f.severity = 2), sum(f.severity <= 1), sum(f.kev), \
         sum(f.fixable) \
         FROM (SELECT DISTINCT column1, column2 FROM (VALUES {})) AS v CROSS JOIN findings f \
         ON f.company_id = v.column1 AND f.agent_id = v.column2 \
         WHERE f.resolved_at IS NULL AND f.suppressed = 0 GROUP BY f.company_id, f.agent_id",
        values(n, "(?, ?)")
    )
}

fn read_company_software_sql(n: usize) -> String {
    format!(
        "SELECT company_id, software_key, hosts FROM company_software \
         WHERE (company_id, software_key) IN (SELECT column1, column2 FROM (VALUES {}))",
        values(n, "(?, ?)")
    )
}

fn delete_company_software_sql(n: usize) -> String {
    format!(
        "DELETE FROM company_software \
         WHERE (company_id, software_key) IN (SELECT column1, column2 FROM (VALUES {}))",
        values(n, "(?, ?)")
    )
}

fn insert_company_software_sql(n: usize) -> String {
    format!(
        "INSERT OR FAIL INTO company_software (company_id, software_key, hosts) VALUES {} \
         ON CONFLICT DO NOTHING",
        values(n, "(?, ?, ?)")
    )
}

fn reports_done_sql(n: usize) -> String {
    format!(
        "UPDATE OR FAIL reports SET status = 'done', outcome = v.column3, \
             processed_at = v.column4, body = NULL, error = NULL FROM (VALUES {}) AS v \
             WHERE reports.company_id = v.column1 AND reports.report_id = v.column2",
        values(n, "(?, ?, ?, ?)")
    )
}

fn queue_done_sql(n: usize) -> String {
    format!(
        "UPDATE OR FAIL queue SET state = 'done', finished_at = v.column2, lease_owner = NULL \
             FROM (VALUES {}) AS v WHERE queue.queue_id = v.column1",
        values(n, "(?, ?)")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every statement of the group writer finds its rows through a key, whatever the row
    /// count: one that scanned a tenant table would cost a full pass per group commit.
    #[tokio::test]
    async fn statements_seek_and_never_scan_a_table() {
        let dir = tempfile::tempdir().unwrap();
        let store = super::super::SqliteStore::open(&dir.path().join("plan.db"))
            .await
            .unwrap();
        let statements = [
            leases_sql(4),
            load_agents_sql(4),
            delete_apps_sql(4),
            insert_apps_sql(4),
            resolve_removed_sql(4),
            reopen_sql(4),
            insert_findings_sql(4),
            set_finding_column_sql("first_seen", 4),
            set_finding_column_sql("resolution", 4),
            read_seen_sql(4, false),
            read_seen_sql(4, true),
            agents_sql(4),
            reports_done_sql(4),
            queue_done_sql(4),
            packages_sql(4),
            count_open_sql(4),
            read_company_software_sql(4),
            delete_company_software_sql(4),
            insert_company_software_sql(4),
            super::super::queue::accepted_agents_sql(4),
            super::super::queue::claimed_reports_sql(4),
            super::super::queue::claim_overdue_sql(),
            super::super::queue::claim_newest_sql(),
            super::super::queue::PURGE_QUEUE_SQL.to_string(),
            super::super::queue::PURGE_REPORTS_SQL.to_string(),
            super::super::queue::PURGE_FINDINGS_SQL.to_string(),
        ]
        .into_iter()
        .chain(super::super::rollup::statements());
        let mut bad = Vec::new();
        for sql in statements {
            let params = sql.matches('?').count();
            let mut q = sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")));
            for _ in 0..params {
                q = q.bind(vec![0u8; 16]);
            }
            let plan: Vec<String> = q
                .fetch_all(store.pool())
                .await
                .unwrap()
                .iter()
                .map(|row| row.get::<String, _>(3))
                .collect();
            for step in &plan {
                let scans_a_table = step.starts_with("SCAN ")
                    && !step.contains("CONSTANT ROW")
                    && !step.contains("VALUES CLAUSE")
                    && !["SCAN v", "SCAN k", "SCAN l", "SCAN (subquery"]
                        .iter()
                        .any(|ok| step.starts_with(ok));
                if scans_a_table {
                    bad.push(format!("{sql}\nscans: {plan:#?}"));
                }
            }
        }
        assert!(bad.is_empty(), "{}", bad.join("\n\n"));
    }
}

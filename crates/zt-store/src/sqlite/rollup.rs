//! The statements of the vulnerability rollup (`company_vulns`; what changes is decided in
//! `common/rollup.rs`): the open-finding contributions of some agents, read through the
//! primary key's (company, agent) prefix, and a delta written by key (read, delete, insert:
//! no `ON CONFLICT DO UPDATE` in a multi-row write, see `rows.rs`).

use std::collections::HashMap;

use sqlx::{Row, Sqlite, Transaction};

use super::rows::{padded_chunks, values};
use crate::common::rollup::{Contributions, RollupCounts, RollupDelta, RollupKey};
use crate::common::{agent_from, company_from};
use crate::model::*;
use crate::Result;

type Tx = Transaction<'static, Sqlite>;

/// The open-finding contributions of `agents` (see `common/rollup.rs`).
pub(crate) async fn contributions(
    tx: &mut Tx,
    agents: impl IntoIterator<Item = (CompanyId, AgentId)>,
) -> Result<Contributions> {
    let mut keys: Vec<(CompanyId, AgentId)> = agents.into_iter().collect();
    keys.sort();
    keys.dedup();
    let mut out = Contributions::of(keys.iter().copied());
    for chunk in padded_chunks(&keys) {
        let mut q = sqlx::query(sqlx::AssertSqlSafe(contributions_sql(chunk.len())));
        for (c, a) in chunk {
            q = q.bind(c).bind(a);
        }
        for row in q.fetch_all(&mut **tx).await? {
            out.add_row(
                (
                    company_from(row.get::<&[u8], _>(0))?,
                    agent_from(row.get::<&[u8], _>(1))?,
                ),
                row.get(2),
                row.get(3),
                [row.get(4), row.get(5), row.get(6)],
            );
        }
    }
    Ok(out)
}

/// Adds `delta` to the rollup: the touched rows are read, deleted and written again with
/// their new counts (rows no open finding is left in are not written again).
pub(crate) async fn write_delta(tx: &mut Tx, delta: &RollupDelta) -> Result<()> {
    if delta.is_empty() {
        return Ok(());
    }
    let keys = delta.keys();
    let mut now: HashMap<RollupKey, RollupCounts> = HashMap::new();
    for chunk in padded_chunks(&keys) {
        let mut q = sqlx::query(sqlx::AssertSqlSafe(read_sql(chunk.len())));
        for (c, v, s) in chunk.iter().map(|k| **k) {
            q = q.bind(*c).bind(v.as_str()).bind(*s);
        }
        for row in q.fetch_all(&mut **tx).await? {
            now.insert(
                (
                    company_from(row.get::<&[u8], _>(0))?,
                    row.get(1),
                    row.get(2),
                ),
                [row.get(3), row.get(4), row.get(5), row.get(6)],
            );
        }
        if !now.is_empty() {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(delete_sql(chunk.len())));
            for (c, v, s) in chunk.iter().map(|k| **k) {
                q = q.bind(*c).bind(v.as_str()).bind(*s);
            }
            q.execute(&mut **tx).await?;
        }
    }
    let rows: Vec<(&RollupKey, RollupCounts)> = delta
        .applied_to(&now)
        .into_iter()
        .filter_map(|(k, v)| Some((k, v?)))
        .collect();
    for chunk in padded_chunks(&rows) {
        let mut q = sqlx::query(sqlx::AssertSqlSafe(insert_sql(chunk.len())));
        for ((c, v, s), n) in chunk.iter().map(|(k, n)| (*k, n)) {
            q = q.bind(*c).bind(v.as_str()).bind(*s);
            for x in n {
                q = q.bind(*x);
            }
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Contributions per agent: the primary key's (company, agent) prefix reads exactly the
/// agents' rows (see `apply::count_open_sql`). DISTINCT: padding repeats the last row.
pub(super) fn contributions_sql(n: usize) -> String {
    format!(
        "SELECT f.company_id, f.agent_id, f.vuln_id, f.severity, count(*), sum(f.kev), \
         sum(f.fixable) \
         FROM (SELECT DISTINCT column1, column2 FROM (VALUES {})) AS v CROSS JOIN findings f \
         ON f.company_id = v.column1 AND f.agent_id = v.column2 \
         WHERE f.resolved_at IS NULL \
         GROUP BY f.company_id, f.agent_id, f.vuln_id, f.severity",
        values(n, "(?, ?)")
    )
}

fn read_sql(n: usize) -> String {
    format!(
        "SELECT company_id, vuln_id, severity, hosts, findings, kev, fixable FROM company_vulns \
         WHERE (company_id, vuln_id, severity) IN \
         (SELECT column1, column2, column3 FROM (VALUES {}))",
        values(n, "(?, ?, ?)")
    )
}

fn delete_sql(n: usize) -> String {
    format!(
        "DELETE FROM company_vulns WHERE (company_id, vuln_id, severity) IN \
         (SELECT column1, column2, column3 FROM (VALUES {}))",
        values(n, "(?, ?, ?)")
    )
}

fn insert_sql(n: usize) -> String {
    format!(
        "INSERT OR FAIL INTO company_vulns (company_id, vuln_id, severity, hosts, findings, kev, \
         fixable) VALUES {} ON CONFLICT DO NOTHING",
        values(n, "(?, ?, ?, ?, ?, ?, ?)")
    )
}

#[cfg(test)]
pub(super) fn statements() -> Vec<String> {
    vec![
        contributions_sql(4),
        read_sql(4),
        delete_sql(4),
        insert_sql(4),
    ]
}

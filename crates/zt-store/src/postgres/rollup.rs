//! The statements of the vulnerability rollup (`company_vulns`; what changes is decided in
//! `common/rollup.rs`), in a transaction scoped to the company: the open-finding
//! contributions of some agents, and a delta added by key.

use sqlx::Row;

use super::Tx;
use crate::common::rollup::{Contributions, RollupDelta};
use crate::model::*;
use crate::Result;

/// The open-finding contributions of `agents` of `company_id` (see `common/rollup.rs`).
///
/// "Open" is tested in the FILTERs and HAVING, not in the WHERE clause, as in
/// `process::COUNTERS_FROM_FINDINGS`: with `resolved_at IS NULL` there the planner may read
/// the agents' rows from the partial index `findings_open` (a pass over the company's open
/// findings) instead of the primary key's (company, agent) prefix.
pub(crate) async fn contributions(
    tx: &mut Tx,
    company_id: CompanyId,
    agents: &[AgentId],
) -> Result<Contributions> {
    let mut out = Contributions::of(agents.iter().map(|a| (company_id, *a)));
    if agents.is_empty() {
        return Ok(out);
    }
    let rows = sqlx::query(
        "SELECT agent_id, vuln_id, severity, \
         count(*) FILTER (WHERE resolved_at IS NULL), \
         count(*) FILTER (WHERE resolved_at IS NULL AND kev), \
         count(*) FILTER (WHERE resolved_at IS NULL AND fixable) \
         FROM findings WHERE company_id = $1 AND agent_id = ANY($2) \
         GROUP BY agent_id, vuln_id, severity \
         HAVING count(*) FILTER (WHERE resolved_at IS NULL) > 0",
    )
    .bind(company_id)
    .bind(agents)
    .fetch_all(&mut **tx)
    .await?;
    for row in rows {
        let severity: i16 = row.try_get(2)?;
        out.add_row(
            (company_id, row.try_get(0)?),
            row.try_get(1)?,
            i64::from(severity),
            [row.try_get(3)?, row.try_get(4)?, row.try_get(5)?],
        );
    }
    Ok(out)
}

/// Adds `delta` (rows of `company_id` only) to the rollup, keys in order (concurrent
/// batches lock the rows in one order), and drops the rows no open finding is left in.
pub(crate) async fn write_delta(
    tx: &mut Tx,
    company_id: CompanyId,
    delta: &RollupDelta,
) -> Result<()> {
    if delta.is_empty() {
        return Ok(());
    }
    let mut vulns: Vec<&str> = Vec::new();
    let mut severities: Vec<i16> = Vec::new();
    let mut counts: [Vec<i64>; 4] = Default::default();
    for ((c, vuln, severity), d) in delta.rows() {
        if *c != company_id {
            continue;
        }
        vulns.push(vuln);
        severities.push(i16::try_from(*severity).unwrap_or_default());
        for (list, n) in counts.iter_mut().zip(d) {
            list.push(*n);
        }
    }
    sqlx::query(
        "INSERT INTO company_vulns (company_id, vuln_id, severity, hosts, findings, kev, fixable) \
         SELECT $1, v, s, h, f, k, x FROM unnest($2::text[], $3::smallint[], $4::bigint[], \
         $5::bigint[], $6::bigint[], $7::bigint[]) WITH ORDINALITY AS t(v, s, h, f, k, x, ord) \
         ORDER BY ord \
         ON CONFLICT (company_id, vuln_id, severity) DO UPDATE SET \
         hosts = company_vulns.hosts + excluded.hosts, \
         findings = company_vulns.findings + excluded.findings, \
         kev = company_vulns.kev + excluded.kev, fixable = company_vulns.fixable + excluded.fixable",
    )
    .bind(company_id)
    .bind(&vulns)
    .bind(&severities)
    .bind(&counts[0])
    .bind(&counts[1])
    .bind(&counts[2])
    .bind(&counts[3])
    .execute(&mut **tx)
    .await?;
    if counts[1].iter().any(|n| *n < 0) {
        sqlx::query(
            "DELETE FROM company_vulns WHERE company_id = $1 AND findings <= 0 \
             AND (vuln_id, severity) IN (SELECT * FROM unnest($2::text[], $3::smallint[]))",
        )
        .bind(company_id)
        .bind(&vulns)
        .bind(&severities)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

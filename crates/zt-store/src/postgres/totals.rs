//! Each company's sums of its agents' counters (agents, apps, open findings by severity, KEV,
//! fixable): what the company summary, the daily trend point and the operator's overview show.
//!
//! On one PostgreSQL node the sums are the delta rows of `company_agent_totals`, written by a
//! statement trigger on `agents` (migration 0960 says why delta rows, and why a trigger) and
//! folded together here when a company's rows pile up. On Citus the trigger does not exist
//! and the sums are read from the agents themselves (each worker sums its own), as before.

use chrono::{DateTime, Utc};
use sqlx::{Postgres, QueryBuilder};
use uuid::Uuid;

use super::{PgStore, Tx};
use crate::model::CompanyId;
use crate::Result;

/// The sums' columns in the order `common::reads::summary_from_row` reads them.
const SUM_COLUMNS: &str = "coalesce(sum(agents), 0)::bigint, coalesce(sum(apps), 0)::bigint, \
     coalesce(sum(open_critical), 0)::bigint, coalesce(sum(open_high), 0)::bigint, \
     coalesce(sum(open_medium), 0)::bigint, coalesce(sum(open_low), 0)::bigint, \
     coalesce(sum(open_unknown), 0)::bigint, coalesce(sum(open_kev), 0)::bigint, \
     coalesce(sum(open_fixable), 0)::bigint";

/// The same sums read from the agent rows (Citus).
const AGENT_SUM_COLUMNS: &str = "count(*) FILTER (WHERE decommissioned_at IS NULL), \
     coalesce(sum(app_count), 0)::bigint, \
     coalesce(sum(open_critical), 0)::bigint, coalesce(sum(open_high), 0)::bigint, \
     coalesce(sum(open_medium), 0)::bigint, coalesce(sum(open_low), 0)::bigint, \
     coalesce(sum(open_unknown), 0)::bigint, coalesce(sum(open_kev), 0)::bigint, \
     coalesce(sum(open_fixable), 0)::bigint";

/// A company's delta rows are folded into one once it has more than this many: the reads stay
/// a handful of rows, and a fleet that keeps reporting costs one short statement per company
/// now and then.
const FOLD_ABOVE: i64 = 32;

impl PgStore {
    /// `SELECT` of one company's sums (company `$1`), columns as [`SUM_COLUMNS`].
    pub(crate) fn company_sums_sql(&self) -> String {
        if self.citus {
            format!("SELECT {AGENT_SUM_COLUMNS} FROM agents WHERE company_id = $1")
        } else {
            format!("SELECT {SUM_COLUMNS} FROM company_agent_totals WHERE company_id = $1")
        }
    }

    /// Every company's sums and its stale hosts (live agents last seen before `stale_before`),
    /// in a transaction marked operator-wide: `company_id`, the sums as [`SUM_COLUMNS`], the
    /// stale count. Companies without agents may be missing.
    pub(crate) async fn all_company_sums(
        &self,
        tx: &mut Tx,
        companies: &[Uuid],
        stale_before: DateTime<Utc>,
    ) -> Result<Vec<sqlx::postgres::PgRow>> {
        if self.citus {
            return Ok(sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT company_id, {AGENT_SUM_COLUMNS}, \
                 count(*) FILTER (WHERE seen_at < $1 AND decommissioned_at IS NULL) \
                 FROM agents GROUP BY company_id"
            )))
            .bind(stale_before)
            .fetch_all(&mut **tx)
            .await?);
        }
        // The stale hosts per company through `agents_seen` (company, seen_at): a range of the
        // stale ones only, never every agent.
        let mut qb: QueryBuilder<Postgres> = QueryBuilder::new(
            "SELECT c.id, t.agents, t.apps, t.c, t.h, t.m, t.l, t.u, t.k, t.x, \
             (SELECT count(*) FROM agents a WHERE a.company_id = c.id AND a.seen_at < ",
        );
        qb.push_bind(stale_before);
        qb.push(
            " AND a.decommissioned_at IS NULL) \
             FROM unnest(",
        );
        qb.push_bind(companies.to_vec());
        qb.push(format!(
            "::uuid[]) AS c(id) CROSS JOIN LATERAL (SELECT {SUM_COLUMNS} \
             FROM company_agent_totals s WHERE s.company_id = c.id) \
             AS t(agents, apps, c, h, m, l, u, k, x)"
        ));
        Ok(qb.build().fetch_all(&mut **tx).await?)
    }

    /// Folds the delta rows of every company that has more than [`FOLD_ABOVE`] into one row
    /// each; returns how many companies it folded. Safe beside writers (their new rows are not
    /// among those deleted) and beside another process folding (a row is deleted once, and each
    /// folder re-inserts the sum of what it deleted).
    pub(crate) async fn fold_company_totals(&self) -> Result<u64> {
        if self.citus {
            return Ok(0);
        }
        let mut tx = self.pool.begin().await?;
        super::set_all_companies(&mut tx).await?;
        let piled: Vec<Uuid> = sqlx::query_scalar(
            "SELECT company_id FROM company_agent_totals GROUP BY company_id \
             HAVING count(*) > $1",
        )
        .bind(FOLD_ABOVE)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        for &company in &piled {
            let mut tx = self.begin_for_company(CompanyId(company)).await?;
            fold_company(&mut tx, company).await?;
            tx.commit().await?;
        }
        Ok(piled.len() as u64)
    }
}

/// Replaces a company's delta rows by their sum, in one statement.
async fn fold_company(tx: &mut Tx, company: Uuid) -> Result<()> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "WITH gone AS (DELETE FROM company_agent_totals WHERE company_id = $1 \
           RETURNING agents, apps, open_critical, open_high, open_medium, open_low, \
             open_unknown, open_kev, open_fixable) \
         INSERT INTO company_agent_totals (company_id, agents, apps, open_critical, open_high, \
           open_medium, open_low, open_unknown, open_kev, open_fixable) \
         SELECT $1, {SUM_COLUMNS} FROM gone HAVING count(*) > 0"
    )))
    .bind(company)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

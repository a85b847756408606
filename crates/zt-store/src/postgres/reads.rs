//! Company-scoped reads: summary, agents, apps, findings, one vulnerability. Each runs in a
//! transaction scoped to the company (row-level security) besides its own `company_id = $1`.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::{Postgres, QueryBuilder, Row};
use uuid::Uuid;

use super::{to_u64, PgStore};
use crate::common::findings::push_finding_conditions;
use crate::common::reads::{
    app_from_row, decode_cursor, finding_from_row, hex_bytes, invalid_cursor, limit_of, page_of,
    summary_from_row, trend_point, unknown_vuln, vuln_from_row, Cols, FINDING_COLUMNS,
};
use crate::common::views::{self, AGENT_SELECT};
use crate::model::*;
use crate::Result;

fn uuid_cursor(hex: &str) -> Result<Uuid> {
    Uuid::from_slice(&hex_bytes(hex)?).map_err(invalid_cursor)
}

impl PgStore {
    pub(crate) async fn summary_impl(&self, company_id: CompanyId) -> Result<Summary> {
        let mut tx = self.begin_for_company(company_id).await?;
        // The sums of the agents' counters (`totals.rs`).
        let row = sqlx::query(sqlx::AssertSqlSafe(self.company_sums_sql()))
            .bind(company_id)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        let n = |i: usize| -> Result<u64> { Ok(to_u64(row.try_get(i)?)) };
        Ok(Summary {
            agents: n(0)?,
            apps: n(1)?,
            findings: SeverityCounts {
                critical: n(2)?,
                high: n(3)?,
                medium: n(4)?,
                low: n(5)?,
                unknown: n(6)?,
            },
            kev: n(7)?,
            fixable: n(8)?,
            ..Default::default()
        })
    }

    pub(crate) async fn list_agents_impl(
        &self,
        company_id: CompanyId,
        filter: &AgentFilter,
        page: &PageRequest,
    ) -> Result<Page<Agent>> {
        let (mut qb, keyset, limit) = views::agents_query::<Postgres>(company_id, filter, page)?;
        let mut tx = self.begin_for_company(company_id).await?;
        let rows = qb.build().fetch_all(&mut *tx).await?;
        tx.commit().await?;
        views::agents_page(&rows, &keyset, limit)
    }

    pub(crate) async fn get_agent_impl(
        &self,
        company_id: CompanyId,
        agent_id: AgentId,
    ) -> Result<Option<Agent>> {
        let mut tx = self.begin_for_company(company_id).await?;
        let sql = format!("{AGENT_SELECT} FROM agents WHERE company_id = $1 AND agent_id = $2");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(company_id)
            .bind(agent_id)
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        row.as_ref().map(views::agent_from_counted_row).transpose()
    }

    pub(crate) async fn list_apps_impl(
        &self,
        company_id: CompanyId,
        agent_id: AgentId,
        page: &PageRequest,
    ) -> Result<Option<Page<AppRow>>> {
        let after: Option<(String, String, Uuid, String)> = match &page.cursor {
            Some(c) => {
                let (n, v, k, a): (String, String, String, String) = decode_cursor(c)?;
                Some((n, v, uuid_cursor(&k)?, a))
            }
            None => None,
        };
        let limit = limit_of(page);
        let mut tx = self.begin_for_company(company_id).await?;
        let exists: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM agents WHERE company_id = $1 AND agent_id = $2")
                .bind(company_id)
                .bind(agent_id)
                .fetch_optional(&mut *tx)
                .await?;
        if exists.is_none() {
            tx.commit().await?;
            return Ok(None);
        }
        let rows = sqlx::query(
            "SELECT s.name, s.version, s.ecosystem, s.source, a.arch, s.vendor, s.source_name, \
             s.source_version, s.purl, s.cpe, a.first_seen, a.software_key, \
             (SELECT count(*) FROM findings f WHERE f.company_id = a.company_id \
                AND f.agent_id = a.agent_id AND f.software_key = a.software_key AND f.resolved_at IS NULL) \
             FROM apps a JOIN software s ON s.software_key = a.software_key \
             WHERE a.company_id = $1 AND a.agent_id = $2 AND a.removed_at IS NULL \
             AND ($3::text IS NULL OR (s.name, s.version, a.software_key, a.arch) > ($3, $4, $5, $6)) \
             ORDER BY s.name, s.version, a.software_key, a.arch LIMIT $7",
        )
        .bind(company_id)
        .bind(agent_id)
        .bind(after.as_ref().map(|a| a.0.as_str()))
        .bind(after.as_ref().map(|a| a.1.as_str()))
        .bind(after.as_ref().map(|a| a.2))
        .bind(after.as_ref().map(|a| a.3.as_str()))
        .bind(limit + 1)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(page_of(&rows, limit, app_from_row)?))
    }

    pub(crate) async fn list_findings_impl(
        &self,
        company_id: CompanyId,
        filter: &FindingFilter,
        page: &PageRequest,
    ) -> Result<Page<FindingRow>> {
        if views::walks_company_vulns(filter) {
            let mut tx = self.begin_for_company(company_id).await?;
            let vulns: Vec<(String, i64)> =
                views::ordered_vulns_query::<Postgres>(company_id, filter, page)?
                    .build_query_as()
                    .fetch_all(&mut *tx)
                    .await?;
            let ids: Vec<String> = vulns.iter().map(|(v, _)| v.clone()).collect();
            let mut round = 0;
            loop {
                let n = views::walk_prefix(&vulns, limit_of(page) + 1, round);
                let (mut qb, keyset, limit) =
                    views::findings_query::<Postgres>(company_id, filter, page, Some(&ids[..n]))?;
                let rows = qb.build().fetch_all(&mut *tx).await?;
                if rows.len() as i64 > limit || n == vulns.len() {
                    tx.commit().await?;
                    return views::findings_page(&rows, &keyset, limit);
                }
                round += 1;
            }
        }
        if let Some(page) = self.search_findings(company_id, filter, page).await? {
            return Ok(page);
        }
        if !views::default_finding_order(filter) {
            let (mut qb, keyset, limit) =
                views::findings_query::<Postgres>(company_id, filter, page, None)?;
            let mut tx = self.begin_for_company(company_id).await?;
            let rows = qb.build().fetch_all(&mut *tx).await?;
            tx.commit().await?;
            return views::findings_page(&rows, &keyset, limit);
        }
        let limit = limit_of(page);
        let cursor: Option<(i16, String, Uuid, Uuid)> = match &page.cursor {
            Some(c) => {
                let (sev, vuln, agent, key): (i64, String, String, String) = decode_cursor(c)?;
                let sev = i16::try_from(sev).map_err(invalid_cursor)?;
                Some((sev, vuln, uuid_cursor(&agent)?, uuid_cursor(&key)?))
            }
            None => None,
        };
        let mut qb: QueryBuilder<Postgres> = QueryBuilder::new("");
        match &cursor {
            None => {
                push_findings_arm(&mut qb, company_id, filter, |qb| {
                    qb.push(
                        " ORDER BY f.severity DESC, f.vuln_id, f.agent_id, f.software_key LIMIT ",
                    )
                    .push_bind(limit + 1);
                });
                qb.push(" ORDER BY 10 DESC, 7, 1, 25");
            }
            Some((sev, vuln, agent, key)) => {
                // Two index ranges instead of one OR: the rest of the cursor's severity after
                // its position, then the lower severities from their start. Each arm reads
                // only the rows it returns, however deep the page.
                qb.push("SELECT * FROM ((");
                push_findings_arm(&mut qb, company_id, filter, |qb| {
                    qb.push(" AND f.severity = ")
                        .push_bind(*sev)
                        .push(" AND (f.vuln_id, f.agent_id, f.software_key) > (")
                        .push_bind(vuln.clone())
                        .push(", ")
                        .push_bind(*agent)
                        .push(", ")
                        .push_bind(*key)
                        .push(") ORDER BY f.vuln_id, f.agent_id, f.software_key LIMIT ")
                        .push_bind(limit + 1);
                });
                qb.push(") UNION ALL (");
                push_findings_arm(&mut qb, company_id, filter, |qb| {
                    qb.push(" AND f.severity < ")
                        .push_bind(*sev)
                        .push(" ORDER BY f.severity DESC, f.vuln_id, f.agent_id, f.software_key LIMIT ")
                        .push_bind(limit + 1);
                });
                qb.push(")) page ORDER BY 10 DESC, 7, 1, 25 LIMIT ")
                    .push_bind(limit + 1);
            }
        }
        let mut tx = self.begin_for_company(company_id).await?;
        let rows = qb.build().fetch_all(&mut *tx).await?;
        tx.commit().await?;
        page_of(&rows, limit, finding_from_row)
    }

    /// A text search in the default order read through what the text matches
    /// ([`views::walks_search`]); `None`: the ordered walk answers it (the filter is not such
    /// a search, or the hosts the text names are so many that the walk is quick).
    async fn search_findings(
        &self,
        company_id: CompanyId,
        filter: &FindingFilter,
        page: &PageRequest,
    ) -> Result<Option<Page<FindingRow>>> {
        let Some(q) = views::walks_search(filter)
            .then(|| crate::common::findings::search_of(filter))
            .flatten()
        else {
            return Ok(None);
        };
        let mut tx = self.begin_for_company(company_id).await?;
        let (hosts, agents): (i64, i64) = views::search_hosts_query::<Postgres>(company_id, q)
            .build_query_as()
            .fetch_one(&mut *tx)
            .await?;
        if views::search_hosts_dense(hosts, agents) {
            tx.commit().await?;
            return Ok(None);
        }
        let cursor = views::severity_cursor(page)?;
        let limit = limit_of(page);
        let groups: Vec<(i64, String, i64)> =
            views::search_groups_query::<Postgres>(company_id, filter, cursor.as_ref())
                .build_query_as()
                .fetch_all(&mut *tx)
                .await?;
        let mut rows = Vec::new();
        let mut round = 0;
        while !groups.is_empty() {
            let n = views::search_prefix(&groups, limit + 1, round);
            rows = views::search_page_query::<Postgres>(
                company_id,
                filter,
                cursor.as_ref(),
                views::SearchArm::Groups(&groups[..n]),
                limit,
            )
            .build()
            .fetch_all(&mut *tx)
            .await?;
            if rows.len() as i64 > limit || n == groups.len() {
                break;
            }
            round += 1;
        }
        let named = if hosts > 0 {
            views::search_page_query::<Postgres>(
                company_id,
                filter,
                cursor.as_ref(),
                views::SearchArm::Hosts,
                limit,
            )
            .build()
            .fetch_all(&mut *tx)
            .await?
        } else {
            Vec::new()
        };
        tx.commit().await?;
        views::search_page(rows, named, limit).map(Some)
    }

    pub(crate) async fn vulnerability_impl(
        &self,
        company_id: CompanyId,
        id: &str,
        page: &PageRequest,
    ) -> Result<Option<VulnDetail>> {
        let mut tx = self.begin_for_company(company_id).await?;
        // The id as given, or the group an alias belongs to; only groups the company has
        // (or had) findings of are visible to it.
        let vuln_id: Option<String> = sqlx::query_scalar(
            "SELECT c.vuln_id FROM (SELECT $2::text COLLATE \"C\" AS vuln_id \
                UNION SELECT vuln_id FROM vuln_aliases WHERE alias = $2) c \
             WHERE EXISTS (SELECT 1 FROM findings f WHERE f.company_id = $1 AND f.vuln_id = c.vuln_id) \
             ORDER BY c.vuln_id = $2 DESC, c.vuln_id LIMIT 1",
        )
        .bind(company_id)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(vuln_id) = vuln_id else {
            tx.commit().await?;
            return Ok(None);
        };
        let row = sqlx::query(
            "SELECT vuln_id, aliases, summary, severity, cvss_version, cvss_vector, cvss_score, kev, \
             kev_due_date, epss, epss_percentile, informational FROM vulns WHERE vuln_id = $1",
        )
        .bind(&vuln_id)
        .fetch_optional(&mut *tx)
        .await?;
        let vulnerability = match row {
            Some(row) => vuln_from_row(&row)?,
            None => unknown_vuln(&vuln_id),
        };
        let counts = views::vuln_counts_query::<Postgres>(company_id, &vuln_id)
            .build()
            .fetch_one(&mut *tx)
            .await?;
        let rows =
            views::affected_packages_query::<Postgres>(company_id, std::slice::from_ref(&vuln_id))
                .build()
                .fetch_all(&mut *tx)
                .await?;
        let (packages, fixed_versions) = views::affected_packages(&rows)?
            .remove(&vuln_id)
            .unwrap_or_default();
        let (mut qb, keyset, limit) =
            views::affected_query::<Postgres>(company_id, &vuln_id, page)?;
        let rows = qb.build().fetch_all(&mut *tx).await?;
        let affected = views::affected_page(&rows, &keyset, limit)?;
        let mut ids = vec![vulnerability.id.clone()];
        ids.extend(vulnerability.aliases.iter().cloned());
        let records: Vec<String> =
            sqlx::query_scalar("SELECT record FROM kb_advisories WHERE id = ANY($1) ORDER BY id")
                .bind(&ids)
                .fetch_all(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok(Some(VulnDetail {
            references: views::references_of(&records),
            hosts: counts.count(0)?,
            findings: counts.count(1)?,
            packages,
            fixed_versions,
            vulnerability,
            affected: affected.items,
            next_cursor: affected.next_cursor,
        }))
    }

    pub(crate) async fn list_reports_impl(
        &self,
        company_id: CompanyId,
        agent_id: AgentId,
        page: &PageRequest,
    ) -> Result<Option<Page<ReportRecord>>> {
        let (mut qb, keyset, limit) = views::reports_query::<Postgres>(company_id, agent_id, page)?;
        let mut tx = self.begin_for_company(company_id).await?;
        let exists: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM agents WHERE company_id = $1 AND agent_id = $2")
                .bind(company_id)
                .bind(agent_id)
                .fetch_optional(&mut *tx)
                .await?;
        if exists.is_none() {
            tx.commit().await?;
            return Ok(None);
        }
        let rows = qb.build().fetch_all(&mut *tx).await?;
        tx.commit().await?;
        Ok(Some(views::reports_page(&rows, &keyset, limit)?))
    }

    pub(crate) async fn list_software_impl(
        &self,
        company_id: CompanyId,
        filter: &SoftwareFilter,
        page: &PageRequest,
    ) -> Result<Page<SoftwareRow>> {
        let (mut qb, keyset, limit) = views::software_query::<Postgres>(company_id, filter, page)?;
        let mut tx = self.begin_for_company(company_id).await?;
        let rows = qb.build().fetch_all(&mut *tx).await?;
        tx.commit().await?;
        views::software_page(&rows, &keyset, limit)
    }

    pub(crate) async fn list_vulnerabilities_impl(
        &self,
        company_id: CompanyId,
        filter: &VulnFilter,
        page: &PageRequest,
    ) -> Result<Page<VulnRow>> {
        let (mut qb, keyset, limit) = views::vulns_query::<Postgres>(company_id, filter, page)?;
        let mut tx = self.begin_for_company(company_id).await?;
        let rows = qb.build().fetch_all(&mut *tx).await?;
        let mut page = views::vulns_page(&rows, &keyset, limit)?;
        if !page.items.is_empty() {
            let ids: Vec<String> = page
                .items
                .iter()
                .map(|v| v.vulnerability.id.clone())
                .collect();
            let rows = views::affected_packages_query::<Postgres>(company_id, &ids)
                .build()
                .fetch_all(&mut *tx)
                .await?;
            views::attach_packages(&mut page, views::affected_packages(&rows)?);
        }
        tx.commit().await?;
        Ok(page)
    }

    pub(crate) async fn trends_impl(
        &self,
        company_id: CompanyId,
        since: NaiveDate,
    ) -> Result<Vec<TrendPoint>> {
        let mut tx = self.begin_for_company(company_id).await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT day, {} FROM company_daily WHERE company_id = $1 AND day >= $2 ORDER BY day",
            crate::common::reads::TREND_COLUMNS
        )))
        .bind(company_id)
        .bind(since)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter()
            .map(|row| trend_point(row, row.try_get::<NaiveDate, _>(0)?))
            .collect()
    }

    pub(crate) async fn record_trends_impl(
        &self,
        at: DateTime<Utc>,
        keep_from: NaiveDate,
    ) -> Result<u64> {
        let day = at.date_naive();
        let companies = self.company_ids().await?;
        for &company in &companies {
            // One short transaction per company, from the sums of its agents' counters
            // (`totals.rs`; the first two columns are the agents and apps).
            let started = std::time::Instant::now();
            let mut tx = self.begin_for_company(company).await?;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO company_daily (company_id, day, critical, high, medium, low, \
                 unknown, kev, fixable) \
                 SELECT $1, $2, s.c, s.h, s.m, s.l, s.u, s.k, s.x FROM ({}) \
                   AS s(agents, apps, c, h, m, l, u, k, x) \
                 ON CONFLICT (company_id, day) DO UPDATE SET critical = excluded.critical, \
                 high = excluded.high, medium = excluded.medium, low = excluded.low, \
                 unknown = excluded.unknown, kev = excluded.kev, fixable = excluded.fixable",
                self.company_sums_sql()
            )))
            .bind(company)
            .bind(day)
            .execute(&mut *tx)
            .await?;
            // Overdue (per severity) and suppressed findings at `at` (issue 13), counted
            // through the findings filter.
            let sla = self.sla_counts(company, at).await?;
            let mut q = sqlx::query(TREND_SLA_UPDATE).bind(company).bind(day);
            for v in crate::common::reads::trend_sla_values(&sla) {
                q = q.bind(v);
            }
            q.execute(&mut *tx).await?;
            sqlx::query("DELETE FROM company_daily WHERE company_id = $1 AND day < $2")
                .bind(company)
                .bind(keep_from)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            crate::common::janitor_timing("trend point", started, 1);
        }
        Ok(companies.len() as u64)
    }

    pub(crate) async fn overview_impl(
        &self,
        stale_before: DateTime<Utc>,
    ) -> Result<Vec<CompanyOverview>> {
        let companies = self.list_companies_impl().await?;
        // Every company's sums in one statement (`totals.rs`): a transaction marked
        // operator-wide may read them (migrations 0950 and 0960; one company-scoped query per
        // company cost a round trip each).
        let ids: Vec<Uuid> = companies.iter().map(|c| c.id.0).collect();
        let mut tx = self.pool.begin().await?;
        super::set_all_companies(&mut tx).await?;
        let rows = self.all_company_sums(&mut tx, &ids, stale_before).await?;
        tx.commit().await?;
        let mut counts = HashMap::with_capacity(rows.len());
        for row in &rows {
            let company = CompanyId(row.try_get::<Uuid, _>(0)?);
            counts.insert(company, (summary_from_row(row, 1)?, row.count(10)?));
        }
        Ok(views::overview_rows(companies, counts))
    }
}

/// One page-picking query over findings, as a subquery with [`FINDING_COLUMNS`]' columns;
/// `tail` adds conditions, ORDER BY and LIMIT. Every filter (the text search too, see
/// `findings::push_finding_conditions`) is on findings alone, so the page is picked from findings
/// first (a MATERIALIZED CTE answered from the `findings_open` index, reading only the rows
/// it returns) and only those rows are joined to agents, software and vulnerabilities.
/// Joining first let the planner, which cannot estimate the row-level-security filter, join a
/// whole company's findings and sort them (measured with 10 M app rows: p95 112 ms before, a
/// few ms after).
fn push_findings_arm(
    qb: &mut QueryBuilder<Postgres>,
    company_id: CompanyId,
    filter: &FindingFilter,
    tail: impl FnOnce(&mut QueryBuilder<Postgres>),
) {
    qb.push("SELECT * FROM (");
    qb.push("WITH picked AS MATERIALIZED (SELECT f.* FROM findings f");
    qb.push(" WHERE f.company_id = ").push_bind(company_id);
    push_finding_conditions(qb, company_id, filter);
    tail(qb);
    qb.push(") ");
    // The joined tenant tables name the company themselves, not only through the CTE's
    // rows (the same rows either way): on Citus a query goes whole to the company's node only
    // when every distributed table in it is filtered by the company in so many words.
    let columns = FINDING_COLUMNS.replacen("FROM findings f", "FROM picked f", 1);
    let mut rest = columns.as_str();
    for join in [
        "ag.company_id = f.company_id",
        "an.company_id = f.company_id",
    ] {
        if let Some((head, tail)) = rest.split_once(join) {
            qb.push(head);
            qb.push(&join[..join.len() - "f.company_id".len()])
                .push_bind(company_id);
            rest = tail;
        }
    }
    qb.push(rest);
    qb.push(") arm");
}

/// A trend point's SLA columns (see `common::reads::trend_sla_values`), of company $1 and day $2.
const TREND_SLA_UPDATE: &str = "UPDATE company_daily SET overdue = $3, suppressed = $4, \
     overdue_critical = $5, overdue_high = $6, overdue_medium = $7, overdue_low = $8, \
     overdue_unknown = $9 WHERE company_id = $1 AND day = $2";

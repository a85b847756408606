//! Company-scoped reads: summary, agents, apps, findings, vulnerabilities, software, a host's
//! reports, trends, and the operator's overview (the list statements are built in
//! `common/views.rs`).

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::{QueryBuilder, Row, Sqlite};

use super::SqliteStore;
use crate::common::findings::push_finding_conditions;
use crate::common::reads::{
    app_from_row, decode_cursor, finding_from_row, hex_bytes, limit_of, page_of, summary_from_row,
    trend_point, unknown_vuln, vuln_from_row, Cols, FINDING_COLUMNS,
};
use crate::common::views::{self, AGENT_SELECT};
use crate::common::{company_from, ms};
use crate::model::*;
use crate::{Result, StoreError};

impl SqliteStore {
    pub(crate) async fn summary_impl(&self, company_id: CompanyId) -> Result<Summary> {
        // The sums of the counters kept on each agent row (`company_agent_totals`).
        let row = sqlx::query(SUMMARY_SQL)
            .bind(company_id)
            .fetch_one(&self.pool)
            .await?;
        summary_from_row(&row, 0)
    }

    pub(crate) async fn list_agents_impl(
        &self,
        company_id: CompanyId,
        filter: &AgentFilter,
        page: &PageRequest,
    ) -> Result<Page<Agent>> {
        let (mut qb, keyset, limit) = views::agents_query::<Sqlite>(company_id, filter, page)?;
        let rows = qb.build().fetch_all(&self.pool).await?;
        views::agents_page(&rows, &keyset, limit)
    }

    pub(crate) async fn get_agent_impl(
        &self,
        company_id: CompanyId,
        agent_id: AgentId,
    ) -> Result<Option<Agent>> {
        let sql = format!("{AGENT_SELECT} FROM agents WHERE company_id = ?1 AND agent_id = ?2");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(company_id)
            .bind(agent_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(views::agent_from_counted_row).transpose()
    }

    async fn agent_exists(&self, company_id: CompanyId, agent_id: AgentId) -> Result<bool> {
        let exists: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM agents WHERE company_id = ?1 AND agent_id = ?2")
                .bind(company_id)
                .bind(agent_id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(exists.is_some())
    }

    pub(crate) async fn list_apps_impl(
        &self,
        company_id: CompanyId,
        agent_id: AgentId,
        page: &PageRequest,
    ) -> Result<Option<Page<AppRow>>> {
        if !self.agent_exists(company_id, agent_id).await? {
            return Ok(None);
        }
        let (name, version, key, arch) = match &page.cursor {
            Some(c) => {
                let (n, v, k, a): (String, String, String, String) = decode_cursor(c)?;
                (n, v, hex_bytes(&k)?, a)
            }
            None => (String::new(), String::new(), Vec::new(), String::new()),
        };
        let limit = limit_of(page);
        let rows = sqlx::query(
            "SELECT s.name, s.version, s.ecosystem, s.source, a.arch, s.vendor, s.source_name, \
             s.source_version, s.purl, s.cpe, a.first_seen, a.software_key, \
             (SELECT count(*) FROM findings f WHERE f.company_id = a.company_id \
                AND f.agent_id = a.agent_id AND f.software_key = a.software_key AND f.resolved_at IS NULL) \
             FROM apps a JOIN software s ON s.software_key = a.software_key \
             WHERE a.company_id = ?1 AND a.agent_id = ?2 \
             AND (s.name, s.version, a.software_key, a.arch) > (?3, ?4, ?5, ?6) \
             ORDER BY s.name, s.version, a.software_key, a.arch LIMIT ?7",
        )
        .bind(company_id)
        .bind(agent_id)
        .bind(&name)
        .bind(&version)
        .bind(&key)
        .bind(&arch)
        .bind(limit + 1)
        .fetch_all(&self.pool)
        .await?;
        Ok(Some(page_of(&rows, limit, app_from_row)?))
    }

    pub(crate) async fn list_findings_impl(
        &self,
        company_id: CompanyId,
        filter: &FindingFilter,
        page: &PageRequest,
    ) -> Result<Page<FindingRow>> {
        if views::walks_company_vulns(filter) {
            let vulns: Vec<(String, i64)> =
                views::ordered_vulns_query::<Sqlite>(company_id, filter, page)?
                    .build_query_as()
                    .fetch_all(&self.pool)
                    .await?;
            let ids: Vec<String> = vulns.iter().map(|(v, _)| v.clone()).collect();
            let mut round = 0;
            loop {
                let n = views::walk_prefix(&vulns, limit_of(page) + 1, round);
                let (mut qb, keyset, limit) =
                    views::findings_query::<Sqlite>(company_id, filter, page, Some(&ids[..n]))?;
                let rows = qb.build().fetch_all(&self.pool).await?;
                if rows.len() as i64 > limit || n == vulns.len() {
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
                views::findings_query::<Sqlite>(company_id, filter, page, None)?;
            let rows = qb.build().fetch_all(&self.pool).await?;
            return views::findings_page(&rows, &keyset, limit);
        }
        let (mut qb, limit) = severity_findings_query(company_id, filter, page)?;
        let rows = qb.build().fetch_all(&self.pool).await?;
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
        let (hosts, agents): (i64, i64) = views::search_hosts_query::<Sqlite>(company_id, q)
            .build_query_as()
            .fetch_one(&self.pool)
            .await?;
        if views::search_hosts_dense(hosts, agents) {
            return Ok(None);
        }
        let cursor = views::severity_cursor(page)?;
        let limit = limit_of(page);
        let groups: Vec<(i64, String, i64)> =
            views::search_groups_query::<Sqlite>(company_id, filter, cursor.as_ref())
                .build_query_as()
                .fetch_all(&self.pool)
                .await?;
        let mut rows = Vec::new();
        let mut round = 0;
        while !groups.is_empty() {
            let n = views::search_prefix(&groups, limit + 1, round);
            rows = views::search_page_query::<Sqlite>(
                company_id,
                filter,
                cursor.as_ref(),
                views::SearchArm::Groups(&groups[..n]),
                limit,
            )
            .build()
            .fetch_all(&self.pool)
            .await?;
            if rows.len() as i64 > limit || n == groups.len() {
                break;
            }
            round += 1;
        }
        let named = if hosts > 0 {
            views::search_page_query::<Sqlite>(
                company_id,
                filter,
                cursor.as_ref(),
                views::SearchArm::Hosts,
                limit,
            )
            .build()
            .fetch_all(&self.pool)
            .await?
        } else {
            Vec::new()
        };
        views::search_page(rows, named, limit).map(Some)
    }

    pub(crate) async fn vulnerability_impl(
        &self,
        company_id: CompanyId,
        id: &str,
        page: &PageRequest,
    ) -> Result<Option<VulnDetail>> {
        // The id as given, or the group an alias belongs to; only groups the company has
        // (or had) findings of are visible to it.
        let vuln_id: Option<String> = sqlx::query_scalar(
            "SELECT c.vuln_id FROM (SELECT ?2 AS vuln_id UNION SELECT vuln_id FROM vuln_aliases WHERE alias = ?2) c \
             WHERE EXISTS (SELECT 1 FROM findings f WHERE f.company_id = ?1 AND f.vuln_id = c.vuln_id) \
             ORDER BY c.vuln_id = ?2 DESC LIMIT 1",
        )
        .bind(company_id)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(vuln_id) = vuln_id else {
            return Ok(None);
        };
        let row = sqlx::query(
            "SELECT vuln_id, aliases, summary, severity, cvss_version, cvss_vector, cvss_score, kev, \
             kev_due_date, epss, epss_percentile, informational FROM vulns WHERE vuln_id = ?1",
        )
        .bind(&vuln_id)
        .fetch_optional(&self.pool)
        .await?;
        let vulnerability = match row {
            Some(row) => vuln_from_row(&row)?,
            None => unknown_vuln(&vuln_id),
        };
        let counts = views::vuln_counts_query::<Sqlite>(company_id, &vuln_id)
            .build()
            .fetch_one(&self.pool)
            .await?;
        let rows =
            views::affected_packages_query::<Sqlite>(company_id, std::slice::from_ref(&vuln_id))
                .build()
                .fetch_all(&self.pool)
                .await?;
        let (packages, fixed_versions) = views::affected_packages(&rows)?
            .remove(&vuln_id)
            .unwrap_or_default();
        let (mut qb, keyset, limit) = views::affected_query::<Sqlite>(company_id, &vuln_id, page)?;
        let rows = qb.build().fetch_all(&self.pool).await?;
        let affected = views::affected_page(&rows, &keyset, limit)?;
        let mut ids = vec![vulnerability.id.clone()];
        ids.extend(vulnerability.aliases.iter().cloned());
        let records: Vec<String> = sqlx::query_scalar(
            "SELECT record FROM kb_advisories WHERE id IN (SELECT j.value FROM json_each(?1) j) \
             ORDER BY id",
        )
        .bind(super::process::json(&ids)?)
        .fetch_all(&self.pool)
        .await?;
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
        if !self.agent_exists(company_id, agent_id).await? {
            return Ok(None);
        }
        let (mut qb, keyset, limit) = views::reports_query::<Sqlite>(company_id, agent_id, page)?;
        let rows = qb.build().fetch_all(&self.pool).await?;
        Ok(Some(views::reports_page(&rows, &keyset, limit)?))
    }

    pub(crate) async fn list_software_impl(
        &self,
        company_id: CompanyId,
        filter: &SoftwareFilter,
        page: &PageRequest,
    ) -> Result<Page<SoftwareRow>> {
        let (mut qb, keyset, limit) = views::software_query::<Sqlite>(company_id, filter, page)?;
        let rows = qb.build().fetch_all(&self.pool).await?;
        views::software_page(&rows, &keyset, limit)
    }

    pub(crate) async fn list_vulnerabilities_impl(
        &self,
        company_id: CompanyId,
        filter: &VulnFilter,
        page: &PageRequest,
    ) -> Result<Page<VulnRow>> {
        let (mut qb, keyset, limit) = views::vulns_query::<Sqlite>(company_id, filter, page)?;
        let rows = qb.build().fetch_all(&self.pool).await?;
        let mut page = views::vulns_page(&rows, &keyset, limit)?;
        if !page.items.is_empty() {
            let ids: Vec<String> = page
                .items
                .iter()
                .map(|v| v.vulnerability.id.clone())
                .collect();
            let rows = views::affected_packages_query::<Sqlite>(company_id, &ids)
                .build()
                .fetch_all(&self.pool)
                .await?;
            views::attach_packages(&mut page, views::affected_packages(&rows)?);
        }
        Ok(page)
    }

    pub(crate) async fn trends_impl(
        &self,
        company_id: CompanyId,
        since: NaiveDate,
    ) -> Result<Vec<TrendPoint>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT day, {} FROM company_daily WHERE company_id = ?1 AND day >= ?2 ORDER BY day",
            crate::common::reads::TREND_COLUMNS
        )))
        .bind(company_id)
        .bind(since.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let day: String = row.get(0);
                let date = NaiveDate::parse_from_str(&day, "%Y-%m-%d")
                    .map_err(|e| StoreError::Corrupt(format!("bad trend day {day}: {e}")))?;
                trend_point(row, date)
            })
            .collect()
    }

    pub(crate) async fn record_trends_impl(
        &self,
        at: DateTime<Utc>,
        keep_from: NaiveDate,
    ) -> Result<u64> {
        let day = at.date_naive();
        let companies: Vec<Vec<u8>> = sqlx::query_scalar("SELECT company_id FROM companies")
            .fetch_all(&self.pool)
            .await?;
        let day = day.to_string();
        // One short transaction per company (its agents' counters, `company_agent_totals`):
        // ingest waits for one of them at most.
        for company in &companies {
            let started = std::time::Instant::now();
            // Overdue (per severity) and suppressed findings at `at` (issue 13), counted
            // through the findings filter.
            let sla = self
                .sla_counts(crate::common::company_from(company)?, at)
                .await?;
            let mut w = self.begin_background_write().await?;
            sqlx::query(RECORD_TREND_SQL)
                .bind(company)
                .bind(&day)
                .execute(&mut *w.tx)
                .await?;
            let mut q = sqlx::query(TREND_SLA_UPDATE).bind(company).bind(&day);
            for v in crate::common::reads::trend_sla_values(&sla) {
                q = q.bind(v);
            }
            q.execute(&mut *w.tx).await?;
            w.commit().await?;
            crate::common::janitor_timing("trend point", started, 1);
        }
        let started = std::time::Instant::now();
        let mut w = self.begin_background_write().await?;
        let pruned = sqlx::query("DELETE FROM company_daily WHERE day < ?1")
            .bind(keep_from.to_string())
            .execute(&mut *w.tx)
            .await?
            .rows_affected();
        w.commit().await?;
        crate::common::janitor_timing("prune trend points", started, pruned);
        Ok(companies.len() as u64)
    }

    pub(crate) async fn overview_impl(
        &self,
        stale_before: DateTime<Utc>,
    ) -> Result<Vec<CompanyOverview>> {
        let companies = self.list_companies_impl().await?;
        // Every company's counters (`company_agent_totals`) with its stale agents.
        let rows = sqlx::query(OVERVIEW_SQL)
            .bind(ms(stale_before))
            .fetch_all(&self.pool)
            .await?;
        let mut counts = std::collections::HashMap::with_capacity(rows.len());
        for row in &rows {
            counts.insert(
                company_from(row.get::<&[u8], _>(0))?,
                (summary_from_row(row, 1)?, row.count(10)?),
            );
        }
        Ok(crate::common::views::overview_rows(companies, counts))
    }
}

/// The findings list in its default order (most severe first, then vulnerability id, agent
/// and software ascending), from the `findings_open` index. After a cursor it reads two index
/// ranges instead of one `OR` (which SQLite answers by walking from the company's first
/// finding to the cursor, so that page k of an export cost k pages): the rest of the
/// cursor's severity after its position, and the lower severities from their start.
pub(super) fn severity_findings_query(
    company_id: CompanyId,
    filter: &FindingFilter,
    page: &PageRequest,
) -> Result<(QueryBuilder<Sqlite>, i64)> {
    let limit = limit_of(page);
    // One host's findings: read through the primary key and sorted, not by walking the
    // company's open findings in order looking for the host's (`+`: no index for the order).
    let plus = if filter.agent_id.is_some() { "+" } else { "" };
    let arm = |qb: &mut QueryBuilder<Sqlite>| {
        qb.push(FINDING_COLUMNS);
        qb.push(" WHERE f.company_id = ").push_bind(company_id);
        push_finding_conditions(qb, company_id, filter);
    };
    let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new("");
    match &page.cursor {
        None => {
            arm(&mut qb);
            qb.push(format!(
                " ORDER BY {plus}f.severity DESC, f.vuln_id, f.agent_id, f.software_key LIMIT "
            ))
            .push_bind(limit + 1);
        }
        Some(c) => {
            let (sev, vuln, agent, key): (i64, String, String, String) = decode_cursor(c)?;
            qb.push("SELECT * FROM (SELECT * FROM (");
            arm(&mut qb);
            qb.push(" AND f.severity = ")
                .push_bind(sev)
                .push(" AND (f.vuln_id, f.agent_id, f.software_key) > (")
                .push_bind(vuln)
                .push(", ")
                .push_bind(hex_bytes(&agent)?)
                .push(", ")
                .push_bind(hex_bytes(&key)?)
                .push(format!(
                    ") ORDER BY {plus}f.vuln_id, f.agent_id, f.software_key LIMIT "
                ))
                .push_bind(limit + 1);
            qb.push(") UNION ALL SELECT * FROM (");
            arm(&mut qb);
            qb.push(" AND f.severity < ")
                .push_bind(sev)
                .push(format!(
                    " ORDER BY {plus}f.severity DESC, f.vuln_id, f.agent_id, f.software_key LIMIT "
                ))
                .push_bind(limit + 1);
            qb.push(")) ORDER BY 10 DESC, 7, 1, 25 LIMIT ")
                .push_bind(limit + 1);
        }
    }
    Ok((qb, limit))
}

/// A company's counters: agents, apps, open findings by severity, KEV, fixable (0-8), from
/// its row of `company_agent_totals` (migration 0960; none for a company without agents).
pub(super) const SUMMARY_SQL: &str =
    "SELECT coalesce(sum(agents), 0), coalesce(sum(apps), 0), coalesce(sum(open_critical), 0), \
     coalesce(sum(open_high), 0), coalesce(sum(open_medium), 0), coalesce(sum(open_low), 0), \
     coalesce(sum(open_unknown), 0), coalesce(sum(open_kev), 0), coalesce(sum(open_fixable), 0) \
     FROM company_agent_totals WHERE company_id = ?1";

/// Every company's counters (`company_agent_totals`) and its live agents last seen before ?1,
/// counted through `agents_seen` (the stale ones only, never every agent).
pub(super) const OVERVIEW_SQL: &str =
    "SELECT t.company_id, t.agents, t.apps, t.open_critical, t.open_high, t.open_medium, \
     t.open_low, t.open_unknown, t.open_kev, t.open_fixable, \
     (SELECT count(*) FROM agents a INDEXED BY agents_seen WHERE a.company_id = t.company_id \
      AND a.seen_at < ?1 AND a.decommissioned_at IS NULL) \
     FROM company_agent_totals t";

/// A trend point's SLA columns (see `common::reads::trend_sla_values`), of company ?1 and
/// day ?2.
const TREND_SLA_UPDATE: &str = "UPDATE company_daily SET overdue = ?3, suppressed = ?4, \
     overdue_critical = ?5, overdue_high = ?6, overdue_medium = ?7, overdue_low = ?8, \
     overdue_unknown = ?9 WHERE company_id = ?1 AND day = ?2";

/// The trend point of a company (?1) and day (?2), from its agents' counters
/// (`company_agent_totals`).
pub(super) const RECORD_TREND_SQL: &str = "INSERT INTO company_daily (company_id, day, critical, \
     high, medium, low, unknown, kev, fixable) \
     SELECT ?1, ?2, coalesce(sum(open_critical), 0), coalesce(sum(open_high), 0), \
     coalesce(sum(open_medium), 0), coalesce(sum(open_low), 0), coalesce(sum(open_unknown), 0), \
     coalesce(sum(open_kev), 0), coalesce(sum(open_fixable), 0) FROM company_agent_totals \
     WHERE company_id = ?1 \
     ON CONFLICT (company_id, day) DO UPDATE SET critical = excluded.critical, \
     high = excluded.high, medium = excluded.medium, low = excluded.low, \
     unknown = excluded.unknown, kev = excluded.kev, fixable = excluded.fixable";

#[cfg(test)]
mod tests {
    use super::*;

    /// The plan of a statement, one line per step.
    async fn plan(store: &SqliteStore, sql: &str, binds: usize) -> Vec<String> {
        let mut q = sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")));
        for _ in 0..binds {
            q = q.bind(vec![0u8; 16]);
        }
        q.fetch_all(store.pool())
            .await
            .unwrap()
            .iter()
            .map(|row| row.get::<String, _>(3))
            .collect()
    }

    const TABLES: [&str; 13] = [
        "agents",
        "company_vulns",
        "apps",
        "findings",
        "software",
        "software_vulns",
        "vulns",
        "company_software",
        "company_daily",
        "reports",
        "companies",
        "kb_advisories",
        "vuln_aliases",
    ];

    /// Steps that read a whole table (subquery results, VALUES and `json_each` are fine).
    fn table_scans(sql: &str, plan: &[String]) -> Vec<String> {
        plan.iter()
            .filter(|step| {
                let Some(rest) = step.strip_prefix("SCAN ") else {
                    return false;
                };
                let name = rest.split_whitespace().next().unwrap_or_default();
                // Walking the (few thousand) vulnerabilities in EPSS or CVSS order is the
                // intended outer loop of those orders: it stops at the page's end. A text
                // search matches their ids and aliases once per query, as a set.
                let ordered_walk = name == "v" && rest.contains("USING INDEX vulns_");
                let searched = name == "v" && sql.contains("FROM vulns v WHERE (v.vuln_id LIKE");
                !ordered_walk
                    && !searched
                    && (TABLES.contains(&name)
                        || ["f", "ag", "s", "sv", "v", "cs", "a", "o", "r"].contains(&name))
            })
            .cloned()
            .collect()
    }

    /// Every dashboard read seeks by the company (and its order's index) in every order and
    /// with every filter: none reads a table whole. Steps that must use a particular index
    /// are checked by name.
    #[tokio::test]
    async fn dashboard_reads_seek_and_never_scan_a_table() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("plan.db"))
            .await
            .unwrap();
        let company = CompanyId(uuid::Uuid::from_bytes([1; 16]));
        let cursor = |sql: &str| sql.to_string();
        let mut statements: Vec<(String, Vec<&str>)> = vec![
            (SUMMARY_SQL.into(), vec!["company_agent_totals"]),
            (RECORD_TREND_SQL.into(), vec!["company_agent_totals"]),
            (
                "SELECT day FROM company_daily WHERE company_id = ?1 AND day >= ?2".into(),
                vec![],
            ),
        ];
        let sorts = [
            AgentSort::Hostname,
            AgentSort::Risk,
            AgentSort::LastSeen,
            AgentSort::Os,
        ];
        let index = ["agents_hostname", "agents_risk", "agents_seen", "agents_os"];
        for (sort, index) in sorts.into_iter().zip(index) {
            for order in [None, Some(SortOrder::Asc)] {
                let filter = AgentFilter {
                    sort,
                    order,
                    query: Some("web".into()),
                    os: Some("debian".into()),
                    stale: Some(true),
                    stale_before: Some(chrono::Utc::now()),
                    tag: Some("dmz".into()),
                };
                // A page after a cursor: take the first page's cursor shape from the keyset.
                let keyset = views::agent_keyset(&filter);
                let after = keyset.encode(&sample_key(&keyset));
                let page = PageRequest {
                    limit: 50,
                    cursor: Some(after),
                };
                let (qb, _, _) = views::agents_query::<Sqlite>(company, &filter, &page).unwrap();
                statements.push((cursor(qb.sql().as_str()), vec![index]));
            }
        }
        for sort in [SoftwareSort::Hosts, SoftwareSort::Name, SoftwareSort::Risk] {
            let filter = SoftwareFilter {
                sort,
                query: Some("lib".into()),
                vulnerable: Some(true),
                order: None,
            };
            let keyset = views::software_keyset(&filter);
            let page = PageRequest {
                limit: 50,
                cursor: Some(keyset.encode(&sample_key(&keyset))),
            };
            let (qb, _, _) = views::software_query::<Sqlite>(company, &filter, &page).unwrap();
            statements.push((qb.sql().as_str().to_string(), vec![]));
        }
        for sort in [
            VulnSort::Severity,
            VulnSort::Hosts,
            VulnSort::Epss,
            VulnSort::Cvss,
        ] {
            let filter = VulnFilter {
                sort,
                severities: vec![zt_advisory::Severity::High],
                kev: Some(true),
                query: Some("openssl".into()),
                order: None,
            };
            let keyset = views::vuln_keyset(&filter);
            let page = PageRequest {
                limit: 50,
                cursor: Some(keyset.encode(&sample_key(&keyset))),
            };
            let (qb, _, _) = views::vulns_query::<Sqlite>(company, &filter, &page).unwrap();
            // The package-name search: the matches of the company's versions, by key.
            statements.push((
                qb.sql().as_str().to_string(),
                vec!["SEARCH sv USING PRIMARY KEY (software_key=?)"],
            ));
        }
        let ids = vec!["CVE-1".to_string(), "CVE-2".to_string()];
        // The matches of the vulnerabilities, then the company's versions by key: never its
        // findings.
        let qb = views::affected_packages_query::<Sqlite>(company, &ids);
        statements.push((
            qb.sql().as_str().to_string(),
            vec!["software_vulns_vuln", "SEARCH cs USING PRIMARY KEY"],
        ));
        // The findings search in the default order: the groups from the rollup, then the
        // findings of some groups by vulnerability, and those of the hosts named by key.
        let filter = FindingFilter {
            query: Some("openssl".into()),
            ..Default::default()
        };
        let cursor = Some((
            4i64,
            "CVE-1".to_string(),
            uuid::Uuid::nil(),
            zt_inventory::SoftwareKey([0; 16]),
        ));
        let qb = views::search_hosts_query::<Sqlite>(company, "openssl");
        statements.push((qb.sql().as_str().to_string(), vec![]));
        let qb = views::search_groups_query::<Sqlite>(company, &filter, cursor.as_ref());
        statements.push((qb.sql().as_str().to_string(), vec![]));
        let groups = [
            (4i64, "CVE-1".to_string(), 10i64),
            (3, "CVE-2".to_string(), 5),
        ];
        let qb = views::search_page_query::<Sqlite>(
            company,
            &filter,
            cursor.as_ref(),
            views::SearchArm::Groups(&groups),
            50,
        );
        statements.push((qb.sql().as_str().to_string(), vec!["findings_vuln"]));
        let qb = views::search_page_query::<Sqlite>(
            company,
            &filter,
            cursor.as_ref(),
            views::SearchArm::Hosts,
            50,
        );
        statements.push((
            qb.sql().as_str().to_string(),
            vec!["SEARCH f USING PRIMARY KEY (company_id=? AND agent_id=?)"],
        ));
        let qb = views::vuln_counts_query::<Sqlite>(company, "CVE-1");
        statements.push((qb.sql().as_str().to_string(), vec![]));
        let keyset = views::affected_keyset();
        let page = PageRequest {
            limit: 50,
            cursor: Some(keyset.encode(&sample_key(&keyset))),
        };
        let (qb, _, _) = views::affected_query::<Sqlite>(company, "CVE-1", &page).unwrap();
        statements.push((qb.sql().as_str().to_string(), vec!["findings_vuln"]));
        for query in [None, Some("openssl".to_string())] {
            let filter = FindingFilter {
                query,
                ..Default::default()
            };
            let page = PageRequest {
                limit: 50,
                cursor: Some(crate::common::reads::encode_cursor(&(
                    4i64,
                    "CVE-1".to_string(),
                    "00".repeat(16),
                    "00".repeat(16),
                ))),
            };
            let (qb, _) = severity_findings_query(company, &filter, &page).unwrap();
            statements.push((qb.sql().as_str().to_string(), vec!["findings_open"]));
        }
        let keyset = views::reports_keyset();
        let page = PageRequest {
            limit: 50,
            cursor: Some(keyset.encode(&sample_key(&keyset))),
        };
        let (qb, _, _) =
            views::reports_query::<Sqlite>(company, AgentId(company.0), &page).unwrap();
        statements.push((qb.sql().as_str().to_string(), vec!["reports_agent"]));
        for (sort, index) in [
            (FindingSort::FirstSeen, "findings_first_seen"),
            (FindingSort::Epss, "findings_vuln"),
            (FindingSort::Cvss, "findings_vuln"),
            (FindingSort::Hostname, "agents_hostname"),
        ] {
            let filter = FindingFilter {
                sort,
                ..Default::default()
            };
            let keyset = views::finding_keyset(&filter);
            let page = PageRequest {
                limit: 50,
                cursor: Some(keyset.encode(&sample_key(&keyset))),
            };
            let (qb, _, _) =
                views::findings_query::<Sqlite>(company, &filter, &page, None).unwrap();
            statements.push((qb.sql().as_str().to_string(), vec![index]));
        }
        // The first page by hostname too (no cursor to bound the hosts' range): the hosts
        // walked in name order, not read through another covering index and sorted.
        let filter = FindingFilter {
            sort: FindingSort::Hostname,
            ..Default::default()
        };
        let page = PageRequest {
            limit: 50,
            cursor: None,
        };
        let (qb, _, _) = views::findings_query::<Sqlite>(company, &filter, &page, None).unwrap();
        statements.push((qb.sql().as_str().to_string(), vec!["agents_hostname"]));
        // EPSS and CVSS orders of open findings: the company's vulnerabilities in order from
        // the rollup, then the findings of a prefix of them by vulnerability.
        for sort in [FindingSort::Epss, FindingSort::Cvss] {
            let filter = FindingFilter {
                sort,
                severities: vec![zt_advisory::Severity::High],
                ..Default::default()
            };
            let keyset = views::finding_keyset(&filter);
            let page = PageRequest {
                limit: 50,
                cursor: Some(keyset.encode(&sample_key(&keyset))),
            };
            let qb = views::ordered_vulns_query::<Sqlite>(company, &filter, &page).unwrap();
            statements.push((qb.sql().as_str().to_string(), vec![]));
            let ids = ["CVE-1".to_string(), "CVE-2".to_string()];
            let (qb, _, _) =
                views::findings_query::<Sqlite>(company, &filter, &page, Some(&ids)).unwrap();
            statements.push((qb.sql().as_str().to_string(), vec!["findings_vuln"]));
        }
        let mut bad = Vec::new();
        for (sql, indexes) in statements {
            let binds = sql.matches('?').count();
            let steps = plan(&store, &sql, binds).await;
            let scans = table_scans(&sql, &steps);
            let missing: Vec<&&str> = indexes
                .iter()
                .filter(|i| !steps.iter().any(|s| s.contains(*i)))
                .collect();
            if std::env::var_os("ZT_SHOW_PLANS").is_some() {
                eprintln!("{sql}\n{steps:#?}\n");
            }
            if !scans.is_empty() || !missing.is_empty() {
                bad.push(format!(
                    "{sql}\nscans {scans:?}, misses {missing:?}: {steps:#?}"
                ));
            }
        }
        assert!(bad.is_empty(), "{}", bad.join("\n\n"));
        // The operator's overview reads every company's totals (a table of one row per
        // company, read whole), and its stale agents through `agents_seen`: never the agents.
        let steps = plan(&store, OVERVIEW_SQL, 1).await;
        assert!(
            steps.iter().any(|s| s.contains("SCAN t"))
                && steps
                    .iter()
                    .any(|s| s
                        .contains("SEARCH a USING INDEX agents_seen (company_id=? AND seen_at<?)"))
                && !steps.iter().any(|s| s.contains("SCAN a")),
            "{steps:?}"
        );
    }

    /// A key of the right kinds for a keyset (its values do not matter to a plan).
    fn sample_key(keyset: &crate::common::keyset::Keyset) -> Vec<crate::common::keyset::KeyVal> {
        use crate::common::keyset::{KeyKind, KeyVal};
        keyset
            .columns
            .iter()
            .map(|(_, kind)| match kind {
                KeyKind::Int => KeyVal::Int(1),
                KeyKind::Float => KeyVal::Float(0.5),
                KeyKind::Text => KeyVal::Text("x".into()),
                KeyKind::Time => KeyVal::Time(chrono::Utc::now()),
                KeyKind::Uuid => KeyVal::Uuid(uuid::Uuid::from_bytes([2; 16])),
                KeyKind::Key => KeyVal::Key(zt_inventory::SoftwareKey([3; 16])),
            })
            .collect()
    }
}

//! Company-scoped reads: summary, agents, apps, findings, one vulnerability.

use std::collections::HashMap;

use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite};

use super::{hex_list, SqliteStore};
use crate::common::findings::push_finding_filters;
use crate::common::reads::{
    affected_host_from_row, agent_from_row, agent_key, app_from_row, decode_cursor,
    finding_from_row, hex_bytes, limit_of, page_of, unknown_vuln, vuln_from_row, Cols,
    FINDING_COLUMNS,
};
use crate::common::{agent_from, severity_from_rank};
use crate::model::*;
use crate::Result;

impl SqliteStore {
    pub(crate) async fn summary_impl(&self, company_id: CompanyId) -> Result<Summary> {
        let row = sqlx::query(
            "SELECT count(*), coalesce(sum(app_count), 0) FROM agents WHERE company_id = ?1",
        )
        .bind(company_id)
        .fetch_one(&self.pool)
        .await?;
        let mut summary = Summary {
            agents: u64::try_from(row.get::<i64, _>(0)).unwrap_or(0),
            apps: u64::try_from(row.get::<i64, _>(1)).unwrap_or(0),
            ..Summary::default()
        };
        let rows = sqlx::query(
            "SELECT severity, count(*), coalesce(sum(kev), 0), coalesce(sum(fixable), 0) FROM findings \
             WHERE company_id = ?1 AND resolved_at IS NULL GROUP BY severity",
        )
        .bind(company_id)
        .fetch_all(&self.pool)
        .await?;
        for row in rows {
            let n = |i: usize| u64::try_from(row.get::<i64, _>(i)).unwrap_or(0);
            summary
                .findings
                .add(severity_from_rank(row.get::<i64, _>(0)), n(1));
            summary.kev += n(2);
            summary.fixable += n(3);
        }
        Ok(summary)
    }

    pub(crate) async fn list_agents_impl(
        &self,
        company_id: CompanyId,
        page: &PageRequest,
    ) -> Result<Page<Agent>> {
        let (after_host, after_id) = match &page.cursor {
            Some(c) => {
                let (h, id): (String, String) = decode_cursor(c)?;
                (h, hex_bytes(&id)?)
            }
            None => (String::new(), Vec::new()),
        };
        let limit = limit_of(page);
        let rows = sqlx::query(
            "SELECT agent_id, hostname, os_id, os_version_id, os_name, arch, agent_version, enrolled_at, \
             last_seen_at, last_report_at, app_count FROM agents \
             WHERE company_id = ?1 AND (hostname, agent_id) > (?2, ?3) \
             ORDER BY hostname, agent_id LIMIT ?4",
        )
        .bind(company_id)
        .bind(&after_host)
        .bind(&after_id)
        .bind(limit + 1)
        .fetch_all(&self.pool)
        .await?;
        let mut page = page_of(&rows, limit, |row| {
            let agent = sqlite_agent(row)?;
            let key = agent_key(&agent);
            Ok((agent, key))
        })?;
        self.fill_agent_findings(company_id, &mut page.items)
            .await?;
        Ok(page)
    }

    pub(crate) async fn get_agent_impl(
        &self,
        company_id: CompanyId,
        agent_id: AgentId,
    ) -> Result<Option<Agent>> {
        let row = sqlx::query(
            "SELECT agent_id, hostname, os_id, os_version_id, os_name, arch, agent_version, enrolled_at, \
             last_seen_at, last_report_at, app_count FROM agents WHERE company_id = ?1 AND agent_id = ?2",
        )
        .bind(company_id)
        .bind(agent_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let mut agents = vec![sqlite_agent(&row)?];
        self.fill_agent_findings(company_id, &mut agents).await?;
        Ok(agents.pop())
    }

    async fn fill_agent_findings(&self, company_id: CompanyId, agents: &mut [Agent]) -> Result<()> {
        if agents.is_empty() {
            return Ok(());
        }
        let ids = hex_list(agents.iter().map(|a| &a.agent_id.as_bytes()[..]));
        let rows = sqlx::query(
            "SELECT f.agent_id, f.severity, count(*) FROM json_each(?2) j \
             JOIN findings f ON f.company_id = ?1 AND f.agent_id = unhex(j.value) \
             WHERE f.resolved_at IS NULL GROUP BY f.agent_id, f.severity",
        )
        .bind(company_id)
        .bind(ids)
        .fetch_all(&self.pool)
        .await?;
        let mut counts: HashMap<AgentId, SeverityCounts> = HashMap::new();
        for row in rows {
            let id = agent_from(row.get::<&[u8], _>(0))?;
            counts.entry(id).or_default().add(
                severity_from_rank(row.get(1)),
                u64::try_from(row.get::<i64, _>(2)).unwrap_or(0),
            );
        }
        for a in agents {
            a.findings = counts.remove(&a.agent_id).unwrap_or_default();
        }
        Ok(())
    }

    pub(crate) async fn list_apps_impl(
        &self,
        company_id: CompanyId,
        agent_id: AgentId,
        page: &PageRequest,
    ) -> Result<Option<Page<AppRow>>> {
        let exists: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM agents WHERE company_id = ?1 AND agent_id = ?2")
                .bind(company_id)
                .bind(agent_id)
                .fetch_optional(&self.pool)
                .await?;
        if exists.is_none() {
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
        let limit = limit_of(page);
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(FINDING_COLUMNS);
        push_finding_filters(&mut qb, company_id, filter);
        if let Some(c) = &page.cursor {
            let (sev, vuln, agent, key): (i64, String, String, String) = decode_cursor(c)?;
            qb.push(" AND (f.severity < ")
                .push_bind(sev)
                .push(" OR (f.severity = ")
                .push_bind(sev)
                .push(" AND (f.vuln_id, f.agent_id, f.software_key) > (")
                .push_bind(vuln)
                .push(", ")
                .push_bind(hex_bytes(&agent)?)
                .push(", ")
                .push_bind(hex_bytes(&key)?)
                .push(")))");
        }
        qb.push(" ORDER BY f.severity DESC, f.vuln_id, f.agent_id, f.software_key LIMIT ")
            .push_bind(limit + 1);
        let rows = qb.build().fetch_all(&self.pool).await?;
        page_of(&rows, limit, finding_from_row)
    }

    pub(crate) async fn vulnerability_impl(
        &self,
        company_id: CompanyId,
        id: &str,
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
        let rows = sqlx::query(
            "SELECT f.agent_id, ag.hostname, s.name, s.version, s.ecosystem, s.source, sv.fixed_versions, \
             f.first_seen, f.resolved_at \
             FROM findings f \
             JOIN agents ag ON ag.company_id = f.company_id AND ag.agent_id = f.agent_id \
             JOIN software s ON s.software_key = f.software_key \
             LEFT JOIN software_vulns sv ON sv.software_key = f.software_key AND sv.vuln_id = f.vuln_id \
             WHERE f.company_id = ?1 AND f.vuln_id = ?2 \
             ORDER BY f.resolved_at IS NOT NULL, ag.hostname, s.name, s.version LIMIT 10000",
        )
        .bind(company_id)
        .bind(&vuln_id)
        .fetch_all(&self.pool)
        .await?;
        let affected = rows
            .iter()
            .map(affected_host_from_row)
            .collect::<Result<_>>()?;
        Ok(Some(VulnDetail {
            vulnerability,
            affected,
        }))
    }
}

/// An agent row; its findings are counted separately (`fill_agent_findings`).
fn sqlite_agent(row: &SqliteRow) -> Result<Agent> {
    agent_from_row(row, row.count(10)?, SeverityCounts::default())
}

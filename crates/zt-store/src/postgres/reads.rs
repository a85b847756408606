//! Company-scoped reads: summary, agents, apps, findings, one vulnerability. Each runs in a
//! transaction scoped to the company (row-level security) besides its own `company_id = $1`.

use sqlx::postgres::PgRow;
use sqlx::{Postgres, QueryBuilder, Row};
use uuid::Uuid;
use zt_inventory::OsInfo;

use super::{severity_from_rank, severity_rank, to_u64, PgStore};
use crate::model::*;
use crate::sqlite::reads::{
    cvss_of, decode_cursor, encode_cursor, escape_like, hex_bytes, limit_of, unknown_vuln,
};
use crate::{Result, StoreError};

const AGENT_COLUMNS: &str = "SELECT agent_id, hostname, os_id, os_version_id, os_name, arch, \
     agent_version, enrolled_at, last_seen_at, last_report_at, app_count, open_critical, open_high, \
     open_medium, open_low, open_unknown FROM agents";

fn uuid_cursor(hex: &str) -> Result<Uuid> {
    Uuid::from_slice(&hex_bytes(hex)?).map_err(|e| StoreError::Invalid {
        field: "cursor",
        message: e.to_string(),
    })
}

impl PgStore {
    pub(crate) async fn summary_impl(&self, company_id: CompanyId) -> Result<Summary> {
        let mut tx = self.begin_for_company(company_id).await?;
        // The counters kept on each agent row, summed: a few hundred rows per company.
        let row = sqlx::query(
            "SELECT count(*), coalesce(sum(app_count), 0)::bigint, \
             coalesce(sum(open_critical), 0)::bigint, coalesce(sum(open_high), 0)::bigint, \
             coalesce(sum(open_medium), 0)::bigint, coalesce(sum(open_low), 0)::bigint, \
             coalesce(sum(open_unknown), 0)::bigint, coalesce(sum(open_kev), 0)::bigint, \
             coalesce(sum(open_fixable), 0)::bigint \
             FROM agents WHERE company_id = $1",
        )
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
        })
    }

    pub(crate) async fn list_agents_impl(
        &self,
        company_id: CompanyId,
        page: &PageRequest,
    ) -> Result<Page<Agent>> {
        let after: Option<(String, Uuid)> = match &page.cursor {
            Some(c) => {
                let (h, id): (String, String) = decode_cursor(c)?;
                Some((h, uuid_cursor(&id)?))
            }
            None => None,
        };
        let limit = limit_of(page);
        let mut tx = self.begin_for_company(company_id).await?;
        let sql = format!(
            "{AGENT_COLUMNS} WHERE company_id = $1 \
             AND ($2::text IS NULL OR (hostname, agent_id) > ($2, $3)) \
             ORDER BY hostname, agent_id LIMIT $4"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(company_id)
            .bind(after.as_ref().map(|a| a.0.as_str()))
            .bind(after.as_ref().map(|a| a.1))
            .bind(limit + 1)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        let mut agents: Vec<Agent> = rows.iter().map(agent_from_row).collect::<Result<_>>()?;
        let next_cursor = if agents.len() as i64 > limit {
            agents.truncate(limit as usize);
            agents
                .last()
                .map(|a| encode_cursor(&(&a.hostname, hex::encode(a.agent_id.as_bytes()))))
        } else {
            None
        };
        Ok(Page {
            items: agents,
            next_cursor,
        })
    }

    pub(crate) async fn get_agent_impl(
        &self,
        company_id: CompanyId,
        agent_id: AgentId,
    ) -> Result<Option<Agent>> {
        let mut tx = self.begin_for_company(company_id).await?;
        let sql = format!("{AGENT_COLUMNS} WHERE company_id = $1 AND agent_id = $2");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(company_id)
            .bind(agent_id)
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        row.as_ref().map(agent_from_row).transpose()
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
        let mut items = Vec::with_capacity(rows.len());
        let mut last_key = None;
        for row in rows.iter().take(limit as usize) {
            let arch: String = row.try_get(4)?;
            let key: Uuid = row.try_get(11)?;
            last_key = Some((
                row.try_get::<String, _>(0)?,
                row.try_get::<String, _>(1)?,
                hex::encode(key.as_bytes()),
                arch.clone(),
            ));
            items.push(AppRow {
                name: row.try_get(0)?,
                version: row.try_get(1)?,
                ecosystem: row.try_get(2)?,
                source: row.try_get(3)?,
                arch: (!arch.is_empty()).then_some(arch),
                vendor: row.try_get(5)?,
                source_name: row.try_get(6)?,
                source_version: row.try_get(7)?,
                purl: row.try_get(8)?,
                cpe: row.try_get(9)?,
                first_seen: row.try_get(10)?,
                findings: to_u64(row.try_get(12)?),
            });
        }
        let next_cursor = if rows.len() as i64 > limit {
            last_key.map(|k| encode_cursor(&k))
        } else {
            None
        };
        Ok(Some(Page { items, next_cursor }))
    }

    pub(crate) async fn list_findings_impl(
        &self,
        company_id: CompanyId,
        filter: &FindingFilter,
        page: &PageRequest,
    ) -> Result<Page<FindingRow>> {
        let limit = limit_of(page);
        let cursor: Option<(i16, String, Uuid, Uuid)> = match &page.cursor {
            Some(c) => {
                let (sev, vuln, agent, key): (i64, String, String, String) = decode_cursor(c)?;
                let sev = i16::try_from(sev).map_err(|e| StoreError::Invalid {
                    field: "cursor",
                    message: e.to_string(),
                })?;
                Some((sev, vuln, uuid_cursor(&agent)?, uuid_cursor(&key)?))
            }
            None => None,
        };
        let mut qb: QueryBuilder<Postgres> = QueryBuilder::new("");
        match &cursor {
            None => {
                qb.push(FINDING_COLUMNS);
                push_filters(&mut qb, company_id, filter);
                qb.push(" ORDER BY f.severity DESC, f.vuln_id, f.agent_id, f.software_key LIMIT ")
                    .push_bind(limit + 1);
            }
            Some((sev, vuln, agent, key)) => {
                // Two index ranges instead of one OR: the rest of the cursor's severity after
                // its position, then the lower severities from their start. Each arm reads
                // only the rows it returns, however deep the page.
                qb.push("SELECT * FROM ((");
                qb.push(FINDING_COLUMNS);
                push_filters(&mut qb, company_id, filter);
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
                qb.push(") UNION ALL (");
                qb.push(FINDING_COLUMNS);
                push_filters(&mut qb, company_id, filter);
                qb.push(" AND f.severity < ")
                    .push_bind(*sev)
                    .push(" ORDER BY f.severity DESC, f.vuln_id, f.agent_id, f.software_key LIMIT ")
                    .push_bind(limit + 1);
                qb.push(")) page ORDER BY 10 DESC, 7, 1, 25 LIMIT ")
                    .push_bind(limit + 1);
            }
        }
        let mut tx = self.begin_for_company(company_id).await?;
        let rows = qb.build().fetch_all(&mut *tx).await?;
        tx.commit().await?;
        let mut items = Vec::with_capacity(rows.len());
        let mut last = None;
        for row in rows.iter().take(limit as usize) {
            let (item, key) = finding_from_row(row)?;
            items.push(item);
            last = Some(key);
        }
        let next_cursor = if rows.len() as i64 > limit {
            last.map(|k| encode_cursor(&k))
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    pub(crate) async fn vulnerability_impl(
        &self,
        company_id: CompanyId,
        id: &str,
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
            Some(row) => VulnInfo {
                id: row.try_get(0)?,
                aliases: row.try_get(1)?,
                summary: row.try_get(2)?,
                severity: severity_from_rank(row.try_get(3)?),
                cvss: cvss_of(row.try_get(4)?, row.try_get(5)?, row.try_get(6)?),
                kev: row.try_get(7)?,
                kev_due_date: row.try_get(8)?,
                epss: row.try_get(9)?,
                epss_percentile: row.try_get(10)?,
                informational: row.try_get(11)?,
            },
            None => unknown_vuln(&vuln_id),
        };
        let rows = sqlx::query(
            "SELECT f.agent_id, ag.hostname, s.name, s.version, s.ecosystem, s.source, sv.fixed_versions, \
             f.first_seen, f.resolved_at \
             FROM findings f \
             JOIN agents ag ON ag.company_id = f.company_id AND ag.agent_id = f.agent_id \
             JOIN software s ON s.software_key = f.software_key \
             LEFT JOIN software_vulns sv ON sv.software_key = f.software_key AND sv.vuln_id = f.vuln_id \
             WHERE f.company_id = $1 AND f.vuln_id = $2 \
             ORDER BY f.resolved_at IS NOT NULL, ag.hostname, s.name, s.version LIMIT 10000",
        )
        .bind(company_id)
        .bind(&vuln_id)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let affected = rows
            .iter()
            .map(|row| {
                Ok(AffectedHost {
                    agent_id: row.try_get(0)?,
                    hostname: row.try_get(1)?,
                    package: PackageRef {
                        name: row.try_get(2)?,
                        version: row.try_get(3)?,
                        ecosystem: row.try_get(4)?,
                        source: row.try_get(5)?,
                    },
                    fixed_versions: row
                        .try_get::<Option<Vec<String>>, _>(6)?
                        .unwrap_or_default(),
                    first_seen: row.try_get(7)?,
                    resolved_at: row.try_get(8)?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Some(VulnDetail {
            vulnerability,
            affected,
        }))
    }
}

/// The findings list's columns; the cursor's sort key is columns 10 (severity), 7 (vuln_id),
/// 1 (agent_id) and 25 (software_key).
const FINDING_COLUMNS: &str = "SELECT f.agent_id, ag.hostname, s.name, s.version, s.ecosystem, s.source, \
     f.vuln_id, v.aliases, v.summary, f.severity, v.cvss_version, v.cvss_vector, v.cvss_score, f.kev, \
     v.kev_due_date, v.epss, v.epss_percentile, v.informational, sv.fixed_versions, sv.method, \
     sv.confidence, f.first_seen, f.resolved_at, f.resolution, f.software_key \
     FROM findings f \
     JOIN agents ag ON ag.company_id = f.company_id AND ag.agent_id = f.agent_id \
     JOIN software s ON s.software_key = f.software_key \
     LEFT JOIN vulns v ON v.vuln_id = f.vuln_id \
     LEFT JOIN software_vulns sv ON sv.software_key = f.software_key AND sv.vuln_id = f.vuln_id";

fn push_filters(qb: &mut QueryBuilder<Postgres>, company_id: CompanyId, filter: &FindingFilter) {
    qb.push(" WHERE f.company_id = ").push_bind(company_id);
    match filter.status {
        FindingStatus::Open => {
            qb.push(" AND f.resolved_at IS NULL");
        }
        FindingStatus::Resolved => {
            qb.push(" AND f.resolved_at IS NOT NULL");
        }
        FindingStatus::All => {}
    }
    if !filter.severities.is_empty() {
        let mut ranks: Vec<i16> = Vec::new();
        for s in &filter.severities {
            ranks.push(severity_rank(*s));
            // `none` and `unknown` are one bucket in the counts; filter them alike.
            if *s == zt_advisory::Severity::Unknown {
                ranks.push(severity_rank(zt_advisory::Severity::None));
            }
        }
        qb.push(" AND f.severity = ANY(").push_bind(ranks).push(")");
    }
    if let Some(kev) = filter.kev {
        qb.push(" AND f.kev = ").push_bind(kev);
    }
    if let Some(fixable) = filter.fixable {
        qb.push(" AND f.fixable = ").push_bind(fixable);
    }
    if let Some(agent) = filter.agent_id {
        qb.push(" AND f.agent_id = ").push_bind(agent);
    }
    if let Some(v) = &filter.vuln_id {
        qb.push(" AND f.vuln_id = ").push_bind(v.clone());
    }
    if let Some(q) = filter.query.as_deref().filter(|q| !q.is_empty()) {
        // ILIKE: SQLite's LIKE ignores ASCII case, and users expect that of a search box.
        let pattern = format!("%{}%", escape_like(q));
        qb.push(" AND (s.name ILIKE ")
            .push_bind(pattern.clone())
            .push(" OR f.vuln_id ILIKE ")
            .push_bind(pattern.clone())
            .push(" OR ag.hostname ILIKE ")
            .push_bind(pattern.clone())
            .push(" OR array_to_string(v.aliases, ' ') ILIKE ")
            .push_bind(pattern)
            .push(")");
    }
}

type FindingKey = (i64, String, String, String);

fn finding_from_row(row: &PgRow) -> Result<(FindingRow, FindingKey)> {
    let agent_id: Uuid = row.try_get(0)?;
    let vuln_id: String = row.try_get(6)?;
    let severity_rank: i16 = row.try_get(9)?;
    let key_id: Uuid = row.try_get(24)?;
    let key = (
        i64::from(severity_rank),
        vuln_id.clone(),
        hex::encode(agent_id.as_bytes()),
        hex::encode(key_id.as_bytes()),
    );
    let summary: Option<String> = row.try_get(8)?;
    let item = FindingRow {
        agent_id,
        hostname: row.try_get(1)?,
        package: PackageRef {
            name: row.try_get(2)?,
            version: row.try_get(3)?,
            ecosystem: row.try_get(4)?,
            source: row.try_get(5)?,
        },
        vulnerability: VulnInfo {
            id: vuln_id,
            aliases: row
                .try_get::<Option<Vec<String>>, _>(7)?
                .unwrap_or_default(),
            summary: summary.unwrap_or_default(),
            severity: severity_from_rank(severity_rank),
            cvss: cvss_of(row.try_get(10)?, row.try_get(11)?, row.try_get(12)?),
            kev: row.try_get(13)?,
            kev_due_date: row.try_get(14)?,
            epss: row.try_get(15)?,
            epss_percentile: row.try_get(16)?,
            informational: row.try_get::<Option<bool>, _>(17)?.unwrap_or(false),
        },
        fixed_versions: row
            .try_get::<Option<Vec<String>>, _>(18)?
            .unwrap_or_default(),
        match_info: MatchInfo {
            method: row.try_get::<Option<String>, _>(19)?.unwrap_or_default(),
            confidence: row.try_get::<Option<String>, _>(20)?.unwrap_or_default(),
        },
        first_seen: row.try_get(21)?,
        resolved_at: row.try_get(22)?,
        resolution: row.try_get(23)?,
    };
    Ok((item, key))
}

fn agent_from_row(row: &PgRow) -> Result<Agent> {
    let n = |i: usize| -> Result<u64> { Ok(u64::try_from(row.try_get::<i32, _>(i)?).unwrap_or(0)) };
    Ok(Agent {
        agent_id: row.try_get(0)?,
        hostname: row.try_get(1)?,
        os: OsInfo {
            id: row.try_get(2)?,
            version_id: row.try_get(3)?,
            name: row.try_get(4)?,
        },
        arch: row.try_get(5)?,
        agent_version: row.try_get(6)?,
        enrolled_at: row.try_get(7)?,
        last_seen_at: row.try_get(8)?,
        last_report_at: row.try_get(9)?,
        apps: n(10)?,
        findings: SeverityCounts {
            critical: n(11)?,
            high: n(12)?,
            medium: n(13)?,
            low: n(14)?,
            unknown: n(15)?,
        },
    })
}

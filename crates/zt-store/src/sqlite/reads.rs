//! Company-scoped reads: summary, agents, apps, findings, one vulnerability.

use std::collections::HashMap;

use base64::Engine;
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite};
use zt_advisory::{Cvss, CvssVersion};
use zt_inventory::OsInfo;

use super::{from_ms, hex_list, opt_ms, severity_from_rank, severity_rank, uuid_from, SqliteStore};
use crate::model::*;
use crate::{Result, StoreError};

pub(crate) const DEFAULT_LIMIT: u32 = 100;
pub(crate) const MAX_LIMIT: u32 = 1000;

pub(crate) fn limit_of(page: &PageRequest) -> i64 {
    let l = if page.limit == 0 {
        DEFAULT_LIMIT
    } else {
        page.limit.min(MAX_LIMIT)
    };
    i64::from(l)
}

/// Cursors are the sort key of the last row, as base64url JSON: opaque to clients.
pub(crate) fn encode_cursor<T: serde::Serialize>(key: &T) -> String {
    let json = serde_json::to_vec(key).unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
}

pub(crate) fn decode_cursor<T: serde::de::DeserializeOwned>(cursor: &str) -> Result<T> {
    let invalid = |m: String| StoreError::Invalid {
        field: "cursor",
        message: m,
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|e| invalid(e.to_string()))?;
    serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))
}

pub(crate) fn hex_bytes(s: &str) -> Result<Vec<u8>> {
    hex::decode(s).map_err(|e| StoreError::Invalid {
        field: "cursor",
        message: e.to_string(),
    })
}

pub(crate) fn cvss_of(
    version: Option<String>,
    vector: Option<String>,
    score: Option<f64>,
) -> Option<Cvss> {
    let version = match version.as_deref()? {
        "2.0" => CvssVersion::V2,
        "3.0" => CvssVersion::V30,
        "3.1" => CvssVersion::V31,
        "4.0" => CvssVersion::V40,
        _ => return None,
    };
    Some(Cvss {
        version,
        vector: vector?,
        score: score?,
    })
}

fn json_strings(text: Option<&str>) -> Vec<String> {
    text.and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or_default()
}

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
        let mut agents: Vec<Agent> = rows.iter().map(agent_from_row).collect::<Result<_>>()?;
        let next_cursor = if agents.len() as i64 > limit {
            agents.truncate(limit as usize);
            agents
                .last()
                .map(|a| encode_cursor(&(&a.hostname, hex::encode(a.agent_id.as_bytes()))))
        } else {
            None
        };
        self.fill_agent_findings(company_id, &mut agents).await?;
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
        let row = sqlx::query(
            "SELECT agent_id, hostname, os_id, os_version_id, os_name, arch, agent_version, enrolled_at, \
             last_seen_at, last_report_at, app_count FROM agents WHERE company_id = ?1 AND agent_id = ?2",
        )
        .bind(company_id)
        .bind(agent_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let mut agents = vec![agent_from_row(&row)?];
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
            let id = uuid_from(row.get::<&[u8], _>(0))?;
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
        let mut items = Vec::with_capacity(rows.len());
        let mut last_key = None;
        for row in rows.iter().take(limit as usize) {
            let arch: String = row.get(4);
            last_key = Some((
                row.get::<String, _>(0),
                row.get::<String, _>(1),
                hex::encode(row.get::<&[u8], _>(11)),
                arch.clone(),
            ));
            items.push(AppRow {
                name: row.get(0),
                version: row.get(1),
                ecosystem: row.get(2),
                source: row.get(3),
                arch: (!arch.is_empty()).then_some(arch),
                vendor: row.get(5),
                source_name: row.get(6),
                source_version: row.get(7),
                purl: row.get(8),
                cpe: row.get(9),
                first_seen: from_ms(row.get(10)),
                findings: u64::try_from(row.get::<i64, _>(12)).unwrap_or(0),
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
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(FINDING_COLUMNS);
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
            qb.push(" AND f.severity IN (");
            let mut sep = qb.separated(", ");
            for s in &filter.severities {
                sep.push_bind(severity_rank(*s));
                // `none` and `unknown` are one bucket in the counts; filter them alike.
                if *s == zt_advisory::Severity::Unknown {
                    sep.push_bind(severity_rank(zt_advisory::Severity::None));
                }
            }
            qb.push(")");
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
            let pattern = format!("%{}%", escape_like(q));
            qb.push(" AND (s.name LIKE ")
                .push_bind(pattern.clone())
                .push(" ESCAPE '\\' OR f.vuln_id LIKE ")
                .push_bind(pattern.clone())
                .push(" ESCAPE '\\' OR ag.hostname LIKE ")
                .push_bind(pattern.clone())
                .push(" ESCAPE '\\' OR v.aliases LIKE ")
                .push_bind(pattern)
                .push(" ESCAPE '\\')");
        }
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
            Some(row) => VulnInfo {
                id: row.get(0),
                aliases: json_strings(row.get::<Option<&str>, _>(1)),
                summary: row.get(2),
                severity: severity_from_rank(row.get(3)),
                cvss: cvss_of(row.get(4), row.get(5), row.get(6)),
                kev: row.get(7),
                kev_due_date: row.get(8),
                epss: row.get(9),
                epss_percentile: row.get(10),
                informational: row.get(11),
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
             WHERE f.company_id = ?1 AND f.vuln_id = ?2 \
             ORDER BY f.resolved_at IS NOT NULL, ag.hostname, s.name, s.version LIMIT 10000",
        )
        .bind(company_id)
        .bind(&vuln_id)
        .fetch_all(&self.pool)
        .await?;
        let affected = rows
            .iter()
            .map(|row| {
                Ok(AffectedHost {
                    agent_id: uuid_from(row.get::<&[u8], _>(0))?,
                    hostname: row.get(1),
                    package: PackageRef {
                        name: row.get(2),
                        version: row.get(3),
                        ecosystem: row.get(4),
                        source: row.get(5),
                    },
                    fixed_versions: json_strings(row.get::<Option<&str>, _>(6)),
                    first_seen: from_ms(row.get(7)),
                    resolved_at: opt_ms(row.get(8)),
                })
            })
            .collect::<Result<_>>()?;
        Ok(Some(VulnDetail {
            vulnerability,
            affected,
        }))
    }
}

const FINDING_COLUMNS: &str = "SELECT f.agent_id, ag.hostname, s.name, s.version, s.ecosystem, s.source, \
     f.vuln_id, v.aliases, v.summary, f.severity, v.cvss_version, v.cvss_vector, v.cvss_score, f.kev, \
     v.kev_due_date, v.epss, v.epss_percentile, v.informational, sv.fixed_versions, sv.method, \
     sv.confidence, f.first_seen, f.resolved_at, f.resolution, f.software_key \
     FROM findings f \
     JOIN agents ag ON ag.company_id = f.company_id AND ag.agent_id = f.agent_id \
     JOIN software s ON s.software_key = f.software_key \
     LEFT JOIN vulns v ON v.vuln_id = f.vuln_id \
     LEFT JOIN software_vulns sv ON sv.software_key = f.software_key AND sv.vuln_id = f.vuln_id";

type FindingKey = (i64, String, String, String);

fn finding_from_row(row: &SqliteRow) -> Result<(FindingRow, FindingKey)> {
    let agent_bytes: &[u8] = row.get(0);
    let vuln_id: String = row.get(6);
    let severity_rank: i64 = row.get(9);
    let key = (
        severity_rank,
        vuln_id.clone(),
        hex::encode(agent_bytes),
        hex::encode(row.get::<&[u8], _>(24)),
    );
    let summary: Option<String> = row.get(8);
    let item = FindingRow {
        agent_id: uuid_from(agent_bytes)?,
        hostname: row.get(1),
        package: PackageRef {
            name: row.get(2),
            version: row.get(3),
            ecosystem: row.get(4),
            source: row.get(5),
        },
        vulnerability: VulnInfo {
            id: vuln_id,
            aliases: json_strings(row.get::<Option<&str>, _>(7)),
            summary: summary.unwrap_or_default(),
            severity: severity_from_rank(severity_rank),
            cvss: cvss_of(row.get(10), row.get(11), row.get(12)),
            kev: row.get(13),
            kev_due_date: row.get(14),
            epss: row.get(15),
            epss_percentile: row.get(16),
            informational: row.get::<Option<bool>, _>(17).unwrap_or(false),
        },
        fixed_versions: json_strings(row.get::<Option<&str>, _>(18)),
        match_info: MatchInfo {
            method: row.get::<Option<String>, _>(19).unwrap_or_default(),
            confidence: row.get::<Option<String>, _>(20).unwrap_or_default(),
        },
        first_seen: from_ms(row.get(21)),
        resolved_at: opt_ms(row.get(22)),
        resolution: row.get(23),
    };
    Ok((item, key))
}

pub(crate) fn unknown_vuln(id: &str) -> VulnInfo {
    VulnInfo {
        id: id.to_string(),
        aliases: Vec::new(),
        summary: String::new(),
        severity: zt_advisory::Severity::Unknown,
        cvss: None,
        kev: false,
        kev_due_date: None,
        epss: None,
        epss_percentile: None,
        informational: false,
    }
}

pub(crate) fn escape_like(q: &str) -> String {
    let mut out = String::with_capacity(q.len());
    for c in q.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn agent_from_row(row: &SqliteRow) -> Result<Agent> {
    Ok(Agent {
        agent_id: uuid_from(row.get::<&[u8], _>(0))?,
        hostname: row.get(1),
        os: OsInfo {
            id: row.get(2),
            version_id: row.get(3),
            name: row.get(4),
        },
        arch: row.get(5),
        agent_version: row.get(6),
        enrolled_at: from_ms(row.get(7)),
        last_seen_at: opt_ms(row.get(8)),
        last_report_at: opt_ms(row.get(9)),
        apps: u64::try_from(row.get::<i64, _>(10)).unwrap_or(0),
        findings: SeverityCounts::default(),
    })
}

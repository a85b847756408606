//! Backend-neutral parts of the reads: page limits and cursors, and the mapping of result rows
//! to the model. The backends store some values differently (SQLite: epoch milliseconds, UUID
//! bytes, JSON text lists; PostgreSQL: `timestamptz`, `uuid`, `text[]`); [`Cols`] reads a
//! column of either as the model's type, so one mapper serves both.

use base64::Engine;
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;
use zt_advisory::{Cvss, CvssVersion, Severity};
use zt_inventory::{AppSource, OsInfo, Software, SoftwareKey};

use super::{severity_from_rank, severity_rank};
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
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(invalid_cursor)?;
    serde_json::from_slice(&bytes).map_err(invalid_cursor)
}

/// A malformed page cursor: the caller's error, not the store's.
pub(crate) fn invalid_cursor(e: impl std::fmt::Display) -> StoreError {
    StoreError::Invalid {
        field: "cursor",
        message: e.to_string(),
    }
}

pub(crate) fn hex_bytes(s: &str) -> Result<Vec<u8>> {
    hex::decode(s).map_err(invalid_cursor)
}

/// One page from rows fetched with `LIMIT limit + 1`: the first `limit` rows mapped by `item`
/// (to the item and its sort key), and the last key as the cursor when there is more.
pub(crate) fn page_of<R, T, K: Serialize>(
    rows: &[R],
    limit: i64,
    mut item: impl FnMut(&R) -> Result<(T, K)>,
) -> Result<Page<T>> {
    let mut items = Vec::with_capacity(rows.len());
    let mut last = None;
    for row in rows.iter().take(limit as usize) {
        let (t, key) = item(row)?;
        items.push(t);
        last = Some(key);
    }
    let next_cursor = if rows.len() as i64 > limit {
        last.map(|k| encode_cursor(&k))
    } else {
        None
    };
    Ok(Page { items, next_cursor })
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

/// The severity ranks a findings filter asks for (`none` and `unknown` are one bucket in the
/// counts; they are filtered alike).
pub(crate) fn severity_filter_ranks(severities: &[Severity]) -> Vec<i64> {
    let mut ranks = Vec::with_capacity(severities.len());
    for s in severities {
        ranks.push(severity_rank(*s));
        if *s == Severity::Unknown {
            ranks.push(severity_rank(Severity::None));
        }
    }
    ranks
}

/// The `LIKE` pattern of "contains `q`", its wildcards escaped with `\`.
pub(crate) fn contains_pattern(q: &str) -> String {
    format!("%{}%", escape_like(q))
}

/// Escapes `LIKE` wildcards (the statements say `ESCAPE '\'`, PostgreSQL's default).
fn escape_like(q: &str) -> String {
    let mut out = String::with_capacity(q.len());
    for c in q.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Reads column `i` of a result row as the model's type, whatever the backend stores.
pub(crate) trait Cols {
    fn text(&self, i: usize) -> Result<String>;
    fn opt_text(&self, i: usize) -> Result<Option<String>>;
    fn bool(&self, i: usize) -> Result<bool>;
    fn opt_bool(&self, i: usize) -> Result<Option<bool>>;
    fn opt_f64(&self, i: usize) -> Result<Option<f64>>;
    /// A `count(*)`-like `bigint`; negative reads as 0.
    fn count(&self, i: usize) -> Result<u64>;
    /// Any integer column, signed.
    fn int(&self, i: usize) -> Result<i64>;
    /// The stored severity rank (see `common::severity_rank`).
    fn rank(&self, i: usize) -> Result<i64>;
    fn time(&self, i: usize) -> Result<DateTime<Utc>>;
    fn opt_time(&self, i: usize) -> Result<Option<DateTime<Utc>>>;
    fn uuid(&self, i: usize) -> Result<Uuid>;
    fn opt_uuid(&self, i: usize) -> Result<Option<Uuid>>;
    fn company_id(&self, i: usize) -> Result<CompanyId> {
        self.uuid(i).map(CompanyId)
    }
    fn agent_id(&self, i: usize) -> Result<AgentId> {
        self.uuid(i).map(AgentId)
    }
    fn software_key(&self, i: usize) -> Result<SoftwareKey>;
    /// A list of strings (NULL: empty).
    fn strings(&self, i: usize) -> Result<Vec<String>>;
}

/// The [`Cols`] methods whose columns decode alike on every driver (text, flags, floats,
/// `bigint` counts), for a backend's `impl Cols for <its row>`.
macro_rules! plain_cols {
    () => {
        fn text(&self, i: usize) -> $crate::Result<String> {
            Ok(sqlx::Row::try_get(self, i)?)
        }
        fn opt_text(&self, i: usize) -> $crate::Result<Option<String>> {
            Ok(sqlx::Row::try_get(self, i)?)
        }
        fn bool(&self, i: usize) -> $crate::Result<bool> {
            Ok(sqlx::Row::try_get(self, i)?)
        }
        fn opt_bool(&self, i: usize) -> $crate::Result<Option<bool>> {
            Ok(sqlx::Row::try_get(self, i)?)
        }
        fn opt_f64(&self, i: usize) -> $crate::Result<Option<f64>> {
            Ok(sqlx::Row::try_get(self, i)?)
        }
        fn count(&self, i: usize) -> $crate::Result<u64> {
            Ok(u64::try_from(sqlx::Row::try_get::<i64, _>(self, i)?).unwrap_or(0))
        }
    };
}

pub(crate) fn company_from_row(c: &impl Cols) -> Result<Company> {
    Ok(Company {
        id: c.company_id(0)?,
        name: c.text(1)?,
        created_at: c.time(2)?,
    })
}

/// Columns `agent_id, hostname, os_id, os_version_id, os_name, arch, agent_version,
/// enrolled_at, last_seen_at, last_report_at` (0-9), with the counts the backend read.
pub(crate) fn agent_from_row(c: &impl Cols, apps: u64, findings: SeverityCounts) -> Result<Agent> {
    Ok(Agent {
        agent_id: c.agent_id(0)?,
        hostname: c.text(1)?,
        os: OsInfo {
            id: c.text(2)?,
            version_id: c.text(3)?,
            name: c.text(4)?,
        },
        arch: c.text(5)?,
        agent_version: c.text(6)?,
        enrolled_at: c.time(7)?,
        last_seen_at: c.opt_time(8)?,
        last_report_at: c.opt_time(9)?,
        apps,
        findings,
        kev: 0,
        fixable: 0,
        stale: false,
        decommissioned: false,
        decommissioned_at: None,
    })
}

/// A summary from columns `agents, apps, critical, high, medium, low, unknown, kev, fixable`
/// from `base` on (sums of the agents' counters).
pub(crate) fn summary_from_row(c: &impl Cols, base: usize) -> Result<Summary> {
    let n = |i: usize| -> Result<u64> { Ok(u64::try_from(c.int(base + i)?).unwrap_or(0)) };
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

/// The columns of a stored trend point after its day, as [`trend_point`] reads them.
pub(crate) const TREND_COLUMNS: &str = "critical, high, medium, low, unknown, kev, fixable, \
     overdue, suppressed, overdue_critical, overdue_high, overdue_medium, overdue_low, \
     overdue_unknown";

/// A trend point of `date` from the [`TREND_COLUMNS`] (1-14; column 0 is the day).
pub(crate) fn trend_point(c: &impl Cols, date: chrono::NaiveDate) -> Result<TrendPoint> {
    let n = |i: usize| -> Result<u64> { Ok(u64::try_from(c.int(i)?).unwrap_or(0)) };
    Ok(TrendPoint {
        date,
        critical: n(1)?,
        high: n(2)?,
        medium: n(3)?,
        low: n(4)?,
        unknown: n(5)?,
        kev: n(6)?,
        fixable: n(7)?,
        overdue: n(8)?,
        suppressed: n(9)?,
        overdue_by_severity: SeverityCounts {
            critical: n(10)?,
            high: n(11)?,
            medium: n(12)?,
            low: n(13)?,
            unknown: n(14)?,
        },
    })
}

/// The values of a trend point's SLA columns, in the order `overdue, suppressed,
/// overdue_critical, overdue_high, overdue_medium, overdue_low, overdue_unknown`.
pub(crate) fn trend_sla_values(sla: &super::findings::SlaCounts) -> [i64; 7] {
    let v = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    let o = &sla.overdue;
    [
        v(o.total()),
        v(sla.suppressed),
        v(o.critical),
        v(o.high),
        v(o.medium),
        v(o.low),
        v(o.unknown),
    ]
}

/// The cursor key of the apps list: name, version, software key (hex), arch.
pub(crate) type AppKey = (String, String, String, String);

/// Columns `s.name, s.version, s.ecosystem, s.source, a.arch, s.vendor, s.source_name,
/// s.source_version, s.purl, s.cpe, a.first_seen, a.software_key, open findings` (0-12).
pub(crate) fn app_from_row(c: &impl Cols) -> Result<(AppRow, AppKey)> {
    let arch = c.text(4)?;
    let key = (
        c.text(0)?,
        c.text(1)?,
        c.software_key(11)?.to_hex(),
        arch.clone(),
    );
    let item = AppRow {
        name: c.text(0)?,
        version: c.text(1)?,
        ecosystem: c.text(2)?,
        source: c.text(3)?,
        arch: (!arch.is_empty()).then_some(arch),
        vendor: c.opt_text(5)?,
        source_name: c.opt_text(6)?,
        source_version: c.opt_text(7)?,
        purl: c.opt_text(8)?,
        cpe: c.opt_text(9)?,
        first_seen: c.time(10)?,
        findings: c.count(12)?,
    };
    Ok((item, key))
}

/// Columns `name, version, ecosystem, source` from `base` on.
fn package_at(c: &impl Cols, base: usize) -> Result<PackageRef> {
    Ok(PackageRef {
        name: c.text(base)?,
        version: c.text(base + 1)?,
        ecosystem: c.text(base + 2)?,
        source: c.text(base + 3)?,
    })
}

/// Columns `vuln_id, aliases, summary, severity, cvss_version, cvss_vector, cvss_score, kev,
/// kev_due_date, epss, epss_percentile, informational` from `base` on (summary and
/// informational may be NULL: the vulnerability row is left-joined).
fn vuln_at(c: &impl Cols, base: usize) -> Result<VulnInfo> {
    Ok(VulnInfo {
        id: c.text(base)?,
        aliases: c.strings(base + 1)?,
        summary: c.opt_text(base + 2)?.unwrap_or_default(),
        severity: severity_from_rank(c.rank(base + 3)?),
        cvss: cvss_of(
            c.opt_text(base + 4)?,
            c.opt_text(base + 5)?,
            c.opt_f64(base + 6)?,
        ),
        kev: c.bool(base + 7)?,
        kev_due_date: c.opt_text(base + 8)?,
        epss: c.opt_f64(base + 9)?,
        epss_percentile: c.opt_f64(base + 10)?,
        informational: c.opt_bool(base + 11)?.unwrap_or(false),
    })
}

/// The columns of `SELECT vuln_id, aliases, … FROM vulns` (see `vuln_at`).
pub(crate) fn vuln_from_row(c: &impl Cols) -> Result<VulnInfo> {
    vuln_at(c, 0)
}

/// Columns `f.agent_id, ag.hostname, s.name, s.version, s.ecosystem, s.source,
/// sv.fixed_versions, f.first_seen, f.resolved_at` (0-8).
pub(crate) fn affected_host_from_row(c: &impl Cols) -> Result<AffectedHost> {
    Ok(AffectedHost {
        agent_id: c.agent_id(0)?,
        hostname: c.text(1)?,
        package: package_at(c, 2)?,
        fixed_versions: c.strings(6)?,
        first_seen: c.time(7)?,
        resolved_at: c.opt_time(8)?,
    })
}

/// The cursor key of the findings list: severity rank, vulnerability id, agent id (hex),
/// software key (hex).
pub(crate) type FindingKey = (i64, String, String, String);

/// The findings list's columns, the same in both dialects; the backends append their filters.
/// The cursor's sort key is columns 10 (severity), 7 (vuln_id), 1 (agent_id) and 25
/// (software_key), counted from 1.
pub(crate) const FINDING_COLUMNS: &str = "SELECT f.agent_id, ag.hostname, s.name, s.version, s.ecosystem, s.source, \
     f.vuln_id, v.aliases, v.summary, f.severity, v.cvss_version, v.cvss_vector, v.cvss_score, f.kev, \
     v.kev_due_date, v.epss, v.epss_percentile, v.informational, sv.fixed_versions, sv.method, \
     sv.confidence, f.first_seen, f.resolved_at, f.resolution, f.software_key, \
     f.analysis_id, an.state, an.justification, f.suppressed, an.expires_at \
     FROM findings f \
     JOIN agents ag ON ag.company_id = f.company_id AND ag.agent_id = f.agent_id \
     JOIN software s ON s.software_key = f.software_key \
     LEFT JOIN vulns v ON v.vuln_id = f.vuln_id \
     LEFT JOIN software_vulns sv ON sv.software_key = f.software_key AND sv.vuln_id = f.vuln_id \
     LEFT JOIN analyses an ON an.company_id = f.company_id AND an.analysis_id = f.analysis_id";

/// A row of [`FINDING_COLUMNS`] (0-29).
pub(crate) fn finding_from_row(c: &impl Cols) -> Result<(FindingRow, FindingKey)> {
    let agent_id = c.agent_id(0)?;
    let vulnerability = vuln_at(c, 6)?;
    let key = (
        c.rank(9)?,
        vulnerability.id.clone(),
        hex::encode(agent_id.as_bytes()),
        c.software_key(24)?.to_hex(),
    );
    let item = FindingRow {
        agent_id,
        hostname: c.text(1)?,
        package: package_at(c, 2)?,
        vulnerability,
        fixed_versions: c.strings(18)?,
        match_info: MatchInfo {
            method: c.opt_text(19)?.unwrap_or_default(),
            confidence: c.opt_text(20)?.unwrap_or_default(),
        },
        first_seen: c.time(21)?,
        resolved_at: c.opt_time(22)?,
        resolution: c.opt_text(23)?,
        analysis: super::analyses::finding_analysis_at(c, 25)?,
        due_at: None,
        overdue: false,
    };
    Ok((item, key))
}

/// Columns `software_key, ecosystem, name, version, source, source_name, source_version,
/// vendor, purl, cpe` (0-9).
pub(crate) fn software_from_row(c: &impl Cols) -> Result<(SoftwareKey, Software)> {
    let source = c.text(4)?;
    let software = Software {
        ecosystem: c.text(1)?,
        name: c.text(2)?,
        version: c.text(3)?,
        source: AppSource::parse(&source)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown app source {source}")))?,
        source_name: c.opt_text(5)?,
        source_version: c.opt_text(6)?,
        vendor: c.opt_text(7)?,
        purl: c.opt_text(8)?,
        cpe: c.opt_text(9)?,
    };
    Ok((c.software_key(0)?, software))
}

/// Columns `event_id, company_id, kind, created_at, data` (0-4) of the event log.
pub(crate) fn event_from_row(c: &impl Cols) -> Result<StoredEvent> {
    Ok(StoredEvent {
        id: c.count(0)?,
        company_id: c.opt_uuid(1)?.map(CompanyId),
        kind: super::events::stored_kind(&c.text(2)?)?,
        created_at: c.time(3)?,
        data: c.text(4)?,
    })
}

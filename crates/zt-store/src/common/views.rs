//! The dashboard's list reads (issue 12), once for both backends: the statements are built
//! here through [`Dialect`] (what differs: binding, case-insensitive LIKE, text lists, the
//! join that fixes the loop order) and their rows mapped to the model. The backends run them
//! (PostgreSQL inside a company-scoped transaction) and add the statements that differ too
//! much to share.
//!
//! Every list pages with [`Keyset`]: a sort is a list of columns ending in a unique key, so
//! a page deep in the list costs what the first one costs.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use sqlx::QueryBuilder;
use zt_inventory::SoftwareKey;

use super::findings::{
    push_finding_conditions, push_hosts_matching, push_software_matching, push_vulns_matching,
    search_of, FilterDialect,
};
use super::keyset::{KeyBinder, KeyKind, KeyVal, Keyset};
use super::reads::{
    contains_pattern, cvss_of, decode_cursor, finding_from_row, invalid_cursor, limit_of, page_of,
    severity_filter_ranks, Cols, FINDING_COLUMNS,
};
use super::severity_from_rank;
use crate::model::*;
use crate::Result;

/// What a backend's SQL says differently.
pub(crate) trait Dialect: KeyBinder {
    /// Case-insensitive `LIKE` (SQLite's `LIKE` ignores ASCII case; PostgreSQL's `ILIKE`).
    const LIKE: &'static str;
    /// A join that keeps its left side as the outer loop (SQLite `CROSS JOIN`; PostgreSQL
    /// plans joins by cost whatever the syntax).
    const OUTER_FIRST_JOIN: &'static str;
    /// A stored list of strings (aliases) as one searchable text.
    fn list_text(column: &str) -> String;
    /// Pins the index a table is read through where the planner, without statistics, may
    /// pick one that reads the whole company (SQLite `INDEXED BY`; PostgreSQL plans with
    /// statistics: nothing).
    fn indexed_by(index: &str) -> String;
    /// Put before an `ORDER BY`'s first term so that no index is walked for the order (SQLite
    /// `+`; PostgreSQL plans by cost: nothing).
    const UNINDEXED_ORDER: &'static str;
    /// Conditions added to a read of the open findings of a few vulnerabilities: PostgreSQL
    /// names every severity so that `findings_open`, which leads with the severity, is sought
    /// by vulnerability; SQLite names none (a severity would need the table: `findings_vuln`
    /// has none).
    const OPEN_BY_VULN_SEVERITIES: &'static str;
    /// Whether the findings page in EPSS or CVSS order reads the findings of its few
    /// vulnerabilities first, in a derived table the planner cannot merge into the joins
    /// (PostgreSQL, `OFFSET 0`): estimating the hosts' side badly under row-level security,
    /// it walked every host of the company and looked for the vulnerability among each
    /// host's findings (10 M app records: 1,000 primary-key ranges, 124 ms cold, instead of
    /// the vulnerability's 428 findings). SQLite pins `findings_vuln` instead.
    const FENCES_FINDINGS_OF_VULNS: bool;
    /// Whether the findings page newest first is picked from the findings alone (by
    /// `findings_first_seen`) in a derived table before the joins (PostgreSQL, `OFFSET 0`):
    /// estimating the hosts of the company at a few hundred under row-level security, it
    /// joined every open finding of the company (70,588 at 10 M app records) and sorted
    /// them, 168 ms a page (issue 12: p50 / p95 306 / 474 ms with four readers).
    const FENCES_NEWEST_FINDINGS: bool;
}

/// Every severity rank named, as a condition (`findings.severity IN (…)` lets a lookup by
/// vulnerability use the open-findings index, which leads with the severity).
pub(crate) const ALL_RANKS: &str = " AND f.severity IN (0, 1, 2, 3, 4, 5)";

/// Packages and fixed versions listed per vulnerability row at most.
pub(crate) const LIST_CAP: usize = 20;

fn direction(natural_desc: bool, order: Option<SortOrder>) -> bool {
    match order {
        None => natural_desc,
        Some(SortOrder::Desc) => true,
        Some(SortOrder::Asc) => false,
    }
}

fn push_like<DB: Dialect>(qb: &mut QueryBuilder<DB>, expr: &str, query: &str) {
    qb.push(format!(" {expr} {} ", DB::LIKE));
    DB::push_key(qb, &KeyVal::Text(contains_pattern(query)));
    qb.push(" ESCAPE '\\'");
}

fn push_uuid<DB: Dialect>(qb: &mut QueryBuilder<DB>, id: impl Into<uuid::Uuid>) {
    DB::push_key(qb, &KeyVal::Uuid(id.into()));
}

fn push_limit<DB: Dialect>(qb: &mut QueryBuilder<DB>, limit: i64) {
    qb.push(" LIMIT ");
    DB::push_key(qb, &KeyVal::Int(limit + 1));
}

/// One page from rows fetched with `LIMIT limit + 1` whose key columns start at `key_at`.
pub(crate) fn keyset_page<R: Cols, T>(
    rows: &[R],
    limit: i64,
    keyset: &Keyset,
    key_at: usize,
    mut item: impl FnMut(&R) -> Result<T>,
) -> Result<Page<T>> {
    let mut items = Vec::with_capacity(rows.len());
    for row in rows.iter().take(limit as usize) {
        items.push(item(row)?);
    }
    let next_cursor = match rows.get(limit as usize - 1) {
        Some(last) if rows.len() as i64 > limit => {
            Some(keyset.encode(&keyset.key_of(last, key_at)?))
        }
        _ => None,
    };
    Ok(Page { items, next_cursor })
}

fn after(keyset: &Keyset, page: &PageRequest) -> Result<Option<Vec<KeyVal>>> {
    page.cursor.as_deref().map(|c| keyset.decode(c)).transpose()
}

// --- agents ------------------------------------------------------------------------------------

/// Columns 0-17 of an agents row (see [`agent_from_counted_row`]).
pub(crate) const AGENT_SELECT: &str = "SELECT agent_id, hostname, os_id, os_version_id, os_name, \
     arch, agent_version, enrolled_at, last_seen_at, last_report_at, app_count, open_critical, \
     open_high, open_medium, open_low, open_unknown, open_kev, open_fixable, decommissioned_at";
const AGENT_KEY_AT: usize = 19;

pub(crate) fn agent_keyset(filter: &AgentFilter) -> Keyset {
    use KeyKind::*;
    match filter.sort {
        AgentSort::Hostname => Keyset::new(
            "hostname",
            &[("hostname", Text), ("agent_id", Uuid)],
            direction(false, filter.order),
        ),
        AgentSort::Risk => Keyset::new(
            "risk",
            &[("risk", Int), ("agent_id", Uuid)],
            direction(true, filter.order),
        ),
        AgentSort::LastSeen => Keyset::new(
            "last_seen",
            &[("seen_at", Time), ("agent_id", Uuid)],
            direction(true, filter.order),
        ),
        AgentSort::Os => Keyset::new(
            "os",
            &[("os_name", Text), ("hostname", Text), ("agent_id", Uuid)],
            direction(false, filter.order),
        ),
    }
}

/// The agents list (columns [`AGENT_SELECT`] then the key).
pub(crate) fn agents_query<DB: Dialect>(
    company_id: CompanyId,
    filter: &AgentFilter,
    page: &PageRequest,
) -> Result<(QueryBuilder<DB>, Keyset, i64)> {
    let keyset = agent_keyset(filter);
    let after = after(&keyset, page)?;
    let limit = limit_of(page);
    let mut qb = QueryBuilder::new(AGENT_SELECT);
    keyset.push_columns(&mut qb);
    qb.push(" FROM agents WHERE company_id = ");
    push_uuid(&mut qb, company_id);
    // Decommissioned hosts are gone from the list (their resolved findings stay).
    qb.push(" AND decommissioned_at IS NULL");
    if let Some(q) = filter.query.as_deref().filter(|q| !q.is_empty()) {
        qb.push(" AND");
        push_like(&mut qb, "hostname", q);
    }
    if let Some(os) = filter.os.as_deref().filter(|o| !o.is_empty()) {
        qb.push(" AND os_id = ");
        DB::push_key(&mut qb, &KeyVal::Text(os.to_string()));
    }
    if let Some(tag) = filter.tag.as_deref().filter(|t| !t.is_empty()) {
        qb.push(" AND agent_id IN (SELECT t.agent_id FROM agent_tags t WHERE t.company_id = ");
        push_uuid(&mut qb, company_id);
        qb.push(" AND t.tag = ");
        DB::push_key(&mut qb, &KeyVal::Text(tag.to_string()));
        qb.push(")");
    }
    if let (Some(stale), Some(before)) = (filter.stale, filter.stale_before) {
        qb.push(if stale {
            " AND seen_at < "
        } else {
            " AND seen_at >= "
        });
        DB::push_key(&mut qb, &KeyVal::Time(before));
    }
    if let Some(after) = &after {
        keyset.push_after(&mut qb, after);
    }
    keyset.push_order(&mut qb);
    push_limit(&mut qb, limit);
    Ok((qb, keyset, limit))
}

/// An agents row of [`AGENT_SELECT`]; `stale` is the server's to set.
pub(crate) fn agent_from_counted_row(c: &impl Cols) -> Result<Agent> {
    let n = |i: usize| -> Result<u64> { Ok(u64::try_from(c.int(i)?).unwrap_or(0)) };
    let mut agent = super::reads::agent_from_row(
        c,
        n(10)?,
        SeverityCounts {
            critical: n(11)?,
            high: n(12)?,
            medium: n(13)?,
            low: n(14)?,
            unknown: n(15)?,
        },
    )?;
    agent.kev = n(16)?;
    agent.fixable = n(17)?;
    agent.decommissioned_at = c.opt_time(18)?;
    agent.decommissioned = agent.decommissioned_at.is_some();
    Ok(agent)
}

pub(crate) fn agents_page<R: Cols>(rows: &[R], keyset: &Keyset, limit: i64) -> Result<Page<Agent>> {
    keyset_page(rows, limit, keyset, AGENT_KEY_AT, agent_from_counted_row)
}

// --- a host's reports --------------------------------------------------------------------------

pub(crate) fn reports_keyset() -> Keyset {
    Keyset::new(
        "reports",
        &[("accepted_at", KeyKind::Time), ("report_id", KeyKind::Uuid)],
        true,
    )
}

/// An agent's reports, newest first (columns 0-8, then the key).
pub(crate) fn reports_query<DB: Dialect>(
    company_id: CompanyId,
    agent_id: AgentId,
    page: &PageRequest,
) -> Result<(QueryBuilder<DB>, Keyset, i64)> {
    let keyset = reports_keyset();
    let after = after(&keyset, page)?;
    let limit = limit_of(page);
    let mut qb = QueryBuilder::new(
        "SELECT report_id, status, outcome, collected_at, accepted_at, processed_at, app_count, \
         attempts, error",
    );
    keyset.push_columns(&mut qb);
    qb.push(" FROM reports WHERE company_id = ");
    push_uuid(&mut qb, company_id);
    qb.push(" AND agent_id = ");
    push_uuid(&mut qb, agent_id);
    if let Some(after) = &after {
        keyset.push_after(&mut qb, after);
    }
    keyset.push_order(&mut qb);
    push_limit(&mut qb, limit);
    Ok((qb, keyset, limit))
}

pub(crate) fn reports_page<R: Cols>(
    rows: &[R],
    keyset: &Keyset,
    limit: i64,
) -> Result<Page<ReportRecord>> {
    keyset_page(rows, limit, keyset, 9, |c| {
        let status = c.text(1)?;
        Ok(ReportRecord {
            report_id: c.uuid(0)?,
            status: ReportState::parse(&status).unwrap_or(ReportState::Queued),
            outcome: c.opt_text(2)?,
            collected_at: c.time(3)?,
            accepted_at: c.time(4)?,
            processed_at: c.opt_time(5)?,
            apps: u64::try_from(c.int(6)?).unwrap_or(0),
            attempts: u32::try_from(c.int(7)?).unwrap_or(0),
            error: c.opt_text(8)?,
        })
    })
}

// --- software ----------------------------------------------------------------------------------

/// `x` clamped to 12 bits, in standard SQL (both backends).
fn clamp12(x: &str) -> String {
    format!("(CASE WHEN {x} > 4095 THEN 4095 ELSE {x} END)")
}

/// The lexicographic "risk" of KEV, critical, high, medium and low counts as one integer.
fn risk_expr(kev: &str, critical: &str, high: &str, medium: &str, low: &str) -> String {
    format!(
        "({} * 281474976710656 + {} * 68719476736 + {} * 16777216 + {} * 4096 + {})",
        clamp12(kev),
        clamp12(critical),
        clamp12(high),
        clamp12(medium),
        clamp12(low)
    )
}

pub(crate) fn software_keyset(filter: &SoftwareFilter) -> Keyset {
    use KeyKind::*;
    match filter.sort {
        SoftwareSort::Hosts => Keyset::new(
            "hosts",
            &[("t.hosts", Int), ("t.software_key", Key)],
            direction(true, filter.order),
        ),
        SoftwareSort::Name => Keyset::new(
            "name",
            &[
                ("t.name", Text),
                ("t.version", Text),
                ("t.software_key", Key),
            ],
            direction(false, filter.order),
        ),
        SoftwareSort::Risk => Keyset::new(
            "risk",
            &[("t.risk", Int), ("t.hosts", Int), ("t.software_key", Key)],
            direction(true, filter.order),
        ),
    }
}

/// The company's software versions with hosts and vulnerability counts (columns 0-12, then
/// the key). The counts come from the cached matches of each version, so the statement
/// reads the company's distinct versions (not its apps) once.
pub(crate) fn software_query<DB: Dialect>(
    company_id: CompanyId,
    filter: &SoftwareFilter,
    page: &PageRequest,
) -> Result<(QueryBuilder<DB>, Keyset, i64)> {
    let keyset = software_keyset(filter);
    let after = after(&keyset, page)?;
    let limit = limit_of(page);
    let count = |cond: &str| format!("count(CASE WHEN {cond} THEN 1 END)");
    let mut qb = QueryBuilder::new(
        "SELECT t.name, t.version, t.ecosystem, t.source, t.source_name, t.purl, t.hosts, \
         t.critical, t.high, t.medium, t.low, t.unknown, t.kev",
    );
    keyset.push_columns(&mut qb);
    qb.push(format!(
        " FROM (SELECT g.*, {risk} AS risk FROM (\
         SELECT cs.software_key, cs.hosts, s.name, s.version, s.ecosystem, s.source, \
         s.source_name, s.purl, {c} AS critical, {h} AS high, {m} AS medium, {l} AS low, \
         {u} AS unknown, {k} AS kev \
         FROM company_software cs JOIN software s ON s.software_key = cs.software_key \
         LEFT JOIN software_vulns sv ON sv.software_key = cs.software_key \
         WHERE cs.company_id = ",
        risk = risk_expr("g.kev", "g.critical", "g.high", "g.medium", "g.low"),
        c = count("sv.severity = 5"),
        h = count("sv.severity = 4"),
        m = count("sv.severity = 3"),
        l = count("sv.severity = 2"),
        u = count("sv.severity <= 1"),
        k = count("sv.kev"),
    ));
    push_uuid(&mut qb, company_id);
    if let Some(q) = filter.query.as_deref().filter(|q| !q.is_empty()) {
        qb.push(" AND");
        push_like(&mut qb, "s.name", q);
    }
    qb.push(
        " GROUP BY cs.software_key, cs.hosts, s.name, s.version, s.ecosystem, s.source, \
         s.source_name, s.purl) g) t WHERE true",
    );
    match filter.vulnerable {
        Some(true) => {
            qb.push(" AND t.critical + t.high + t.medium + t.low + t.unknown > 0");
        }
        Some(false) => {
            qb.push(" AND t.critical + t.high + t.medium + t.low + t.unknown = 0");
        }
        None => {}
    }
    if let Some(after) = &after {
        keyset.push_after(&mut qb, after);
    }
    keyset.push_order(&mut qb);
    push_limit(&mut qb, limit);
    Ok((qb, keyset, limit))
}

pub(crate) fn software_page<R: Cols>(
    rows: &[R],
    keyset: &Keyset,
    limit: i64,
) -> Result<Page<SoftwareRow>> {
    keyset_page(rows, limit, keyset, 13, |c| {
        let n = |i: usize| -> Result<u64> { Ok(u64::try_from(c.int(i)?).unwrap_or(0)) };
        Ok(SoftwareRow {
            name: c.text(0)?,
            version: c.text(1)?,
            ecosystem: c.text(2)?,
            source: c.text(3)?,
            source_name: c.opt_text(4)?,
            purl: c.opt_text(5)?,
            hosts: n(6)?,
            vulnerabilities: SeverityCounts {
                critical: n(7)?,
                high: n(8)?,
                medium: n(9)?,
                low: n(10)?,
                unknown: n(11)?,
            },
            kev: n(12)?,
        })
    })
}

// --- vulnerabilities ---------------------------------------------------------------------------

pub(crate) fn vuln_keyset(filter: &VulnFilter) -> Keyset {
    use KeyKind::*;
    let (tag, first) = match filter.sort {
        VulnSort::Severity => ("severity", ("t.severity", Int)),
        VulnSort::Hosts => ("hosts", ("t.hosts", Int)),
        VulnSort::Epss => ("epss", ("coalesce(t.epss, -1.0)", Float)),
        VulnSort::Cvss => ("cvss", ("coalesce(t.cvss_score, -1.0)", Float)),
    };
    Keyset::new(
        tag,
        &[first, ("t.vuln_id", Text)],
        direction(true, filter.order),
    )
}

/// The columns of a vulnerability row: `vuln_id, aliases, summary, severity, cvss_version,
/// cvss_vector, cvss_score, kev, kev_due_date, epss, epss_percentile, informational, hosts,
/// findings` (0-13).
const VULN_ROW_COLUMNS: &str = "SELECT t.vuln_id, t.aliases, t.summary, t.severity, \
     t.cvss_version, t.cvss_vector, t.cvss_score, t.kev, t.kev_due_date, t.epss, \
     t.epss_percentile, t.informational, t.hosts, t.findings";

/// The company's vulnerabilities with hosts and findings (columns of [`VULN_ROW_COLUMNS`],
/// then the key). The counts come from the company's vulnerability rollup (`company_vulns`,
/// a row per vulnerability and severity), not from its open findings.
pub(crate) fn vulns_query<DB: Dialect>(
    company_id: CompanyId,
    filter: &VulnFilter,
    page: &PageRequest,
) -> Result<(QueryBuilder<DB>, Keyset, i64)> {
    let keyset = vuln_keyset(filter);
    let after = after(&keyset, page)?;
    let limit = limit_of(page);
    let mut qb = QueryBuilder::new(VULN_ROW_COLUMNS);
    keyset.push_columns(&mut qb);
    qb.push(
        " FROM (SELECT g.vuln_id, v.aliases, v.summary, g.severity, v.cvss_version, \
         v.cvss_vector, v.cvss_score, \
         (CASE WHEN v.vuln_id IS NULL THEN g.kev WHEN v.kev THEN 1 ELSE 0 END) AS kev, \
         v.kev_due_date, v.epss, v.epss_percentile, v.informational, g.hosts, g.findings \
         FROM (SELECT o.vuln_id, max(o.severity) AS severity, \
         max(CASE WHEN o.kev > 0 THEN 1 ELSE 0 END) AS kev, \
         CAST(sum(o.hosts) AS BIGINT) AS hosts, CAST(sum(o.findings) AS BIGINT) AS findings \
         FROM company_vulns o WHERE o.company_id = ",
    );
    push_uuid(&mut qb, company_id);
    if !filter.severities.is_empty() {
        qb.push(" AND o.severity IN (");
        let mut sep = qb.separated(", ");
        for rank in severity_filter_ranks(&filter.severities) {
            sep.push(rank.to_string());
        }
        qb.push(")");
    }
    qb.push(
        " GROUP BY o.vuln_id) g \
         LEFT JOIN vulns v ON v.vuln_id = g.vuln_id) t WHERE true",
    );
    if let Some(kev) = filter.kev {
        qb.push(if kev {
            " AND t.kev = 1"
        } else {
            " AND t.kev = 0"
        });
    }
    if let Some(q) = filter.query.as_deref().filter(|q| !q.is_empty()) {
        qb.push(" AND (");
        push_like(&mut qb, "t.vuln_id", q);
        qb.push(" OR");
        push_like(&mut qb, &DB::list_text("t.aliases"), q);
        // Or an affected package's name: the vulnerabilities the knowledge base matches to the
        // company's versions of that name. A company's open findings are exactly its
        // installed versions (`company_software`) times their matches (`software_vulns`), so
        // this names the vulnerabilities of the open findings on such packages without
        // reading those findings (only between a knowledge change and its re-match can the
        // two differ, for that moment): at 10 M app records `openssl` has ~5,000 open findings
        // per company (36-61 ms on PostgreSQL) but a dozen matches (~1 ms).
        let j = DB::OUTER_FIRST_JOIN;
        qb.push(format!(
            " OR t.vuln_id IN (SELECT sv.vuln_id FROM company_software cs \
             {j} software s ON s.software_key = cs.software_key \
             {j} software_vulns sv ON sv.software_key = cs.software_key \
             WHERE cs.company_id = "
        ));
        push_uuid(&mut qb, company_id);
        qb.push(" AND");
        push_like(&mut qb, "s.name", q);
        qb.push("))");
    }
    if let Some(after) = &after {
        keyset.push_after(&mut qb, after);
    }
    keyset.push_order(&mut qb);
    push_limit(&mut qb, limit);
    Ok((qb, keyset, limit))
}

/// A vulnerability row of [`VULN_ROW_COLUMNS`], without its packages (see
/// [`affected_packages_query`]).
fn vuln_row(c: &impl Cols) -> Result<VulnRow> {
    let id = c.text(0)?;
    let vulnerability = VulnInfo {
        id,
        aliases: c.strings(1)?,
        summary: c.opt_text(2)?.unwrap_or_default(),
        severity: severity_from_rank(c.int(3)?),
        cvss: cvss_of(c.opt_text(4)?, c.opt_text(5)?, c.opt_f64(6)?),
        kev: c.int(7)? != 0,
        kev_due_date: c.opt_text(8)?,
        epss: c.opt_f64(9)?,
        epss_percentile: c.opt_f64(10)?,
        informational: c.opt_bool(11)?.unwrap_or(false),
    };
    Ok(VulnRow {
        vulnerability,
        hosts: u64::try_from(c.int(12)?).unwrap_or(0),
        findings: u64::try_from(c.int(13)?).unwrap_or(0),
        packages: Vec::new(),
        fixed_versions: Vec::new(),
    })
}

pub(crate) fn vulns_page<R: Cols>(
    rows: &[R],
    keyset: &Keyset,
    limit: i64,
) -> Result<Page<VulnRow>> {
    keyset_page(rows, limit, keyset, 14, vuln_row)
}

/// The company's open findings' packages of these vulnerabilities: `vuln_id, name,
/// ecosystem, version, fixed_versions` per (vulnerability, software version). A company's
/// open findings are its installed versions (`company_software`) times their matches
/// (`software_vulns`; only between a knowledge change and its re-match can the two differ, for
/// that moment), so the pairs are read from the matches of these vulnerabilities
/// (`software_vulns_vuln`) that the company has, never from its findings: at 10 M app records
/// the findings of 50 vulnerabilities were ~70,000 index entries per company (82-148 ms on
/// PostgreSQL) for 52 pairs (2-13 ms).
pub(crate) fn affected_packages_query<DB: Dialect>(
    company_id: CompanyId,
    vuln_ids: &[String],
) -> QueryBuilder<DB> {
    let j = DB::OUTER_FIRST_JOIN;
    let mut qb = QueryBuilder::new(format!(
        "SELECT sv.vuln_id, s.name, s.ecosystem, s.version, sv.fixed_versions \
         FROM software_vulns sv{} {j} company_software cs ON cs.company_id = ",
        DB::indexed_by("software_vulns_vuln")
    ));
    push_uuid(&mut qb, company_id);
    qb.push(format!(
        " AND cs.software_key = sv.software_key \
         {j} software s ON s.software_key = sv.software_key WHERE sv.vuln_id IN ("
    ));
    for (i, id) in vuln_ids.iter().enumerate() {
        if i > 0 {
            qb.push(", ");
        }
        DB::push_key(&mut qb, &KeyVal::Text(id.clone()));
    }
    qb.push(")");
    qb
}

/// The packages and fixed versions of each vulnerability, by id.
pub(crate) type AffectedPackages = HashMap<String, (Vec<VulnPackage>, Vec<String>)>;

/// Versions per package, and fixed versions, of one vulnerability while they are collected.
type PackagesSeen = (
    BTreeMap<(String, String), BTreeSet<String>>,
    BTreeSet<String>,
);

/// Packages and fixed versions per vulnerability, from rows of [`affected_packages_query`].
pub(crate) fn affected_packages<R: Cols>(rows: &[R]) -> Result<AffectedPackages> {
    let mut by_vuln: HashMap<String, PackagesSeen> = HashMap::new();
    for c in rows {
        let entry = by_vuln.entry(c.text(0)?).or_default();
        entry
            .0
            .entry((c.text(1)?, c.text(2)?))
            .or_default()
            .insert(c.text(3)?);
        entry.1.extend(c.strings(4)?);
    }
    Ok(by_vuln
        .into_iter()
        .map(|(id, (packages, fixed))| {
            let packages = packages
                .into_iter()
                .take(LIST_CAP)
                .map(|((name, ecosystem), versions)| VulnPackage {
                    name,
                    ecosystem,
                    versions: versions.into_iter().take(LIST_CAP).collect(),
                })
                .collect();
            (id, (packages, fixed.into_iter().take(LIST_CAP).collect()))
        })
        .collect())
}

/// Fills the packages and fixed versions of a page of vulnerability rows.
pub(crate) fn attach_packages(page: &mut Page<VulnRow>, mut packages: AffectedPackages) {
    for row in &mut page.items {
        if let Some((p, f)) = packages.remove(&row.vulnerability.id) {
            row.packages = p;
            row.fixed_versions = f;
        }
    }
}

/// Hosts and findings of one vulnerability (columns `hosts, findings`), from the rollup.
pub(crate) fn vuln_counts_query<DB: Dialect>(
    company_id: CompanyId,
    vuln_id: &str,
) -> QueryBuilder<DB> {
    let mut qb = QueryBuilder::new(
        "SELECT CAST(coalesce(sum(r.hosts), 0) AS BIGINT), \
         CAST(coalesce(sum(r.findings), 0) AS BIGINT) FROM company_vulns r WHERE r.company_id = ",
    );
    push_uuid(&mut qb, company_id);
    qb.push(" AND r.vuln_id = ");
    DB::push_key(&mut qb, &KeyVal::Text(vuln_id.to_string()));
    qb
}

pub(crate) fn affected_keyset() -> Keyset {
    use KeyKind::*;
    Keyset::new(
        "affected",
        &[
            ("(CASE WHEN f.resolved_at IS NULL THEN 0 ELSE 1 END)", Int),
            ("ag.hostname", Text),
            ("f.agent_id", Uuid),
            ("f.software_key", Key),
        ],
        false,
    )
}

/// One page of the hosts a vulnerability hits, open findings first, then by hostname
/// (columns of `affected_host_from_row`, then the key).
pub(crate) fn affected_query<DB: Dialect>(
    company_id: CompanyId,
    vuln_id: &str,
    page: &PageRequest,
) -> Result<(QueryBuilder<DB>, Keyset, i64)> {
    let keyset = affected_keyset();
    let after = after(&keyset, page)?;
    let limit = limit_of(page);
    let mut qb = QueryBuilder::new(
        "SELECT f.agent_id, ag.hostname, s.name, s.version, s.ecosystem, s.source, \
         sv.fixed_versions, f.first_seen, f.resolved_at",
    );
    keyset.push_columns(&mut qb);
    qb.push(" FROM findings f");
    qb.push(DB::indexed_by("findings_vuln"));
    qb.push(
        " JOIN agents ag ON ag.company_id = f.company_id AND ag.agent_id = f.agent_id \
         JOIN software s ON s.software_key = f.software_key \
         LEFT JOIN software_vulns sv ON sv.software_key = f.software_key AND sv.vuln_id = f.vuln_id \
         WHERE f.company_id = ",
    );
    push_uuid(&mut qb, company_id);
    qb.push(" AND f.vuln_id = ");
    DB::push_key(&mut qb, &KeyVal::Text(vuln_id.to_string()));
    if let Some(after) = &after {
        keyset.push_after(&mut qb, after);
    }
    keyset.push_order(&mut qb);
    push_limit(&mut qb, limit);
    Ok((qb, keyset, limit))
}

pub(crate) fn affected_page<R: Cols>(
    rows: &[R],
    keyset: &Keyset,
    limit: i64,
) -> Result<Page<AffectedHost>> {
    keyset_page(rows, limit, keyset, 9, super::reads::affected_host_from_row)
}

/// The `references` of the stored advisories (JSON records of `zt_advisory::Advisory`),
/// deduplicated in their order.
pub(crate) fn references_of(records: &[String]) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for record in records {
        let Ok(value) = serde_json::from_str::<serde_json::Value>(record) else {
            continue;
        };
        for r in value
            .get("references")
            .and_then(|r| r.as_array())
            .into_iter()
            .flatten()
        {
            if let Some(url) = r.as_str() {
                if seen.insert(url.to_string()) {
                    out.push(url.to_string());
                }
            }
        }
    }
    out
}

// --- findings in other orders than severity ------------------------------------------------------

/// The findings list's select list (columns of `finding_from_row`).
const FINDING_SELECT: &str = "SELECT f.agent_id, ag.hostname, s.name, s.version, s.ecosystem, \
     s.source, f.vuln_id, v.aliases, v.summary, f.severity, v.cvss_version, v.cvss_vector, \
     v.cvss_score, f.kev, v.kev_due_date, v.epss, v.epss_percentile, v.informational, \
     sv.fixed_versions, sv.method, sv.confidence, f.first_seen, f.resolved_at, f.resolution, \
     f.software_key, f.analysis_id, an.state, an.justification, f.suppressed, an.expires_at";

/// What a finding row `f` is joined with for its columns (host, package, vulnerability,
/// match), when the findings are read first.
const FINDING_JOINS: &str = " JOIN agents ag ON ag.company_id = f.company_id \
     AND ag.agent_id = f.agent_id \
     JOIN software s ON s.software_key = f.software_key \
     LEFT JOIN vulns v ON v.vuln_id = f.vuln_id \
     LEFT JOIN software_vulns sv ON sv.software_key = f.software_key AND sv.vuln_id = f.vuln_id";

/// The analysis covering each finding (columns 25-29 of `finding_from_row`).
const ANALYSIS_JOIN: &str =
    " LEFT JOIN analyses an ON an.company_id = f.company_id AND an.analysis_id = f.analysis_id";

pub(crate) fn finding_keyset(filter: &FindingFilter) -> Keyset {
    use KeyKind::*;
    let rest = [
        ("f.agent_id", Uuid),
        ("f.software_key", Key),
        ("f.vuln_id", Text),
    ];
    let with = |first: &[(&'static str, KeyKind)]| -> Vec<(&'static str, KeyKind)> {
        first.iter().chain(rest.iter()).copied().collect()
    };
    let (tag, columns, natural_desc) = match filter.sort {
        FindingSort::Severity => (
            "severity",
            vec![
                ("f.severity", Int),
                ("f.vuln_id", Text),
                ("f.agent_id", Uuid),
                ("f.software_key", Key),
            ],
            true,
        ),
        FindingSort::FirstSeen => ("first_seen", with(&[("f.first_seen", Time)]), true),
        FindingSort::Epss => (
            "epss",
            vec![
                ("coalesce(v.epss, -1.0)", Float),
                ("f.vuln_id", Text),
                ("f.agent_id", Uuid),
                ("f.software_key", Key),
            ],
            true,
        ),
        FindingSort::Cvss => (
            "cvss",
            vec![
                ("coalesce(v.cvss_score, -1.0)", Float),
                ("f.vuln_id", Text),
                ("f.agent_id", Uuid),
                ("f.software_key", Key),
            ],
            true,
        ),
        FindingSort::Hostname => ("hostname", with(&[("ag.hostname", Text)]), false),
    };
    Keyset {
        tag,
        columns,
        desc: direction(natural_desc, filter.order),
    }
}

/// Whether a findings list takes the severity path the backends keep (most severe first,
/// ids ascending within a severity).
pub(crate) fn default_finding_order(filter: &FindingFilter) -> bool {
    filter.sort == FindingSort::Severity && filter.order != Some(SortOrder::Asc)
}

/// Whether a findings page in EPSS or CVSS order walks the company's own vulnerabilities in
/// that order (from the rollup, see [`ordered_vulns_query`]) instead of every known
/// vulnerability: the open findings, on every host (one host's few findings are read whole
/// through the primary key).
pub(crate) fn walks_company_vulns(filter: &FindingFilter) -> bool {
    matches!(filter.sort, FindingSort::Epss | FindingSort::Cvss)
        && filter.status == FindingStatus::Open
        && filter.agent_id.is_none()
        && filter.vuln_id.is_none()
}

/// The company's vulnerabilities with open findings (in the severities filtered) in the
/// order's leading key — EPSS or CVSS, then id — from the cursor's vulnerability on, with
/// their open findings (columns `vuln_id, findings`). A few thousand rollup rows: the
/// findings page then reads the findings of a prefix of them ([`walk_prefix`]).
pub(crate) fn ordered_vulns_query<DB: Dialect>(
    company_id: CompanyId,
    filter: &FindingFilter,
    page: &PageRequest,
) -> Result<QueryBuilder<DB>> {
    let keyset = finding_keyset(filter);
    let after = after(&keyset, page)?;
    let first = keyset.columns[0].0;
    let mut qb = QueryBuilder::new(
        "SELECT g.vuln_id, g.findings FROM (SELECT o.vuln_id, \
         CAST(sum(o.findings) AS BIGINT) AS findings FROM company_vulns o WHERE o.company_id = ",
    );
    push_uuid(&mut qb, company_id);
    if !filter.severities.is_empty() {
        qb.push(" AND o.severity IN (");
        let mut sep = qb.separated(", ");
        for rank in severity_filter_ranks(&filter.severities) {
            sep.push(rank.to_string());
        }
        qb.push(")");
    }
    // Inner join: the findings list in these orders shows findings of known vulnerabilities.
    qb.push(" GROUP BY o.vuln_id) g JOIN vulns v ON v.vuln_id = g.vuln_id");
    if let Some(after) = &after {
        qb.push(format!(
            " WHERE ({first}, g.vuln_id) {} (",
            if keyset.desc { "<=" } else { ">=" }
        ));
        DB::push_key(&mut qb, &after[0]);
        qb.push(", ");
        DB::push_key(&mut qb, &after[1]);
        qb.push(")");
    }
    let dir = if keyset.desc { "DESC" } else { "ASC" };
    qb.push(format!(" ORDER BY {first} {dir}, g.vuln_id {dir}"));
    Ok(qb)
}

/// How many of the ordered vulnerabilities (with their open findings) a findings page reads
/// in attempt `round` (0, 1, …): enough for `need` findings by the rollup's counts, then 8
/// and 64 times that (filters may leave few of them), then all. A page that finds more than
/// its limit among a prefix has found the list's first rows: every finding of a later
/// vulnerability sorts after them.
pub(crate) fn walk_prefix(vulns: &[(String, i64)], need: i64, round: u32) -> usize {
    if round >= 3 {
        return vulns.len();
    }
    let target = need.saturating_mul(8i64.pow(round));
    let mut sum = 0i64;
    for (i, (_, n)) in vulns.iter().enumerate() {
        sum = sum.saturating_add(*n);
        if sum >= target {
            return i + 1;
        }
    }
    vulns.len()
}

/// The findings list in any order but the default (columns of `finding_from_row`, then the
/// key). The joins start from what the order walks: the vulnerabilities by EPSS or CVSS, the
/// hosts by name, else the findings (by `findings_first_seen` for first seen). `among`: only
/// findings of these vulnerabilities, read by vulnerability (see [`walks_company_vulns`]).
pub(crate) fn findings_query<DB>(
    company_id: CompanyId,
    filter: &FindingFilter,
    page: &PageRequest,
    among: Option<&[String]>,
) -> Result<(QueryBuilder<DB>, Keyset, i64)>
where
    DB: Dialect + FilterDialect,
    for<'t> uuid::Uuid: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    for<'t> bool: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    for<'t> String: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
{
    let keyset = finding_keyset(filter);
    let after = after(&keyset, page)?;
    let limit = limit_of(page);
    let mut qb = QueryBuilder::new(FINDING_SELECT);
    keyset.push_columns(&mut qb);
    let j = DB::OUTER_FIRST_JOIN;
    let fenced = match among {
        Some(ids)
            if DB::FENCES_FINDINGS_OF_VULNS
                && matches!(filter.sort, FindingSort::Epss | FindingSort::Cvss) =>
        {
            Some(ids)
        }
        _ => None,
    };
    if let Some(ids) = fenced {
        // The open findings of the vulnerabilities, read first (see
        // `Dialect::FENCES_FINDINGS_OF_VULNS`); every condition is applied again outside.
        qb.push(" FROM (SELECT * FROM findings fv WHERE fv.company_id = ");
        push_uuid(&mut qb, company_id);
        qb.push(" AND fv.resolved_at IS NULL");
        qb.push(DB::OPEN_BY_VULN_SEVERITIES.replace("f.", "fv."));
        push_vuln_ids(&mut qb, "fv.vuln_id", ids);
        qb.push(" OFFSET 0) f");
    }
    let newest_fenced = DB::FENCES_NEWEST_FINDINGS
        && filter.sort == FindingSort::FirstSeen
        && filter.agent_id.is_none()
        && among.is_none();
    if newest_fenced {
        // The page of findings first (see `Dialect::FENCES_NEWEST_FINDINGS`): every
        // condition is on findings alone; they are applied again outside.
        qb.push(" FROM (SELECT * FROM findings f WHERE f.company_id = ");
        push_uuid(&mut qb, company_id);
        push_finding_conditions(&mut qb, company_id, filter);
        if let Some(after) = &after {
            keyset.push_after(&mut qb, after);
        }
        keyset.push_order(&mut qb);
        push_limit(&mut qb, limit);
        qb.push(" OFFSET 0) f");
    }
    let from = match filter.sort {
        FindingSort::FirstSeen if newest_fenced => FINDING_JOINS.to_string(),
        FindingSort::Epss | FindingSort::Cvss if fenced.is_some() => {
            " JOIN vulns v ON v.vuln_id = f.vuln_id \
             JOIN agents ag ON ag.company_id = f.company_id AND ag.agent_id = f.agent_id \
             JOIN software s ON s.software_key = f.software_key \
             LEFT JOIN software_vulns sv ON sv.software_key = f.software_key AND sv.vuln_id = f.vuln_id"
                .to_string()
        }
        FindingSort::Epss | FindingSort::Cvss if among.is_some() => format!(
            " FROM findings f{hint} JOIN vulns v ON v.vuln_id = f.vuln_id \
             JOIN agents ag ON ag.company_id = f.company_id AND ag.agent_id = f.agent_id \
             JOIN software s ON s.software_key = f.software_key \
             LEFT JOIN software_vulns sv ON sv.software_key = f.software_key AND sv.vuln_id = f.vuln_id",
            hint = DB::indexed_by("findings_vuln")
        ),
        // One host's findings: read whole through the primary key and sorted.
        _ if filter.agent_id.is_some() => format!(" FROM findings f{FINDING_JOINS}"),
        FindingSort::Epss | FindingSort::Cvss => format!(
            " FROM vulns v {j} findings f{hint} ON f.vuln_id = v.vuln_id \
             JOIN agents ag ON ag.company_id = f.company_id AND ag.agent_id = f.agent_id \
             JOIN software s ON s.software_key = f.software_key \
             LEFT JOIN software_vulns sv ON sv.software_key = f.software_key AND sv.vuln_id = f.vuln_id",
            hint = DB::indexed_by("findings_vuln")
        ),
        // The hosts in name order, each host's findings through the primary key: the page is
        // the first hosts' findings. SQLite 3.51 otherwise reads the hosts through `agents_os`
        // (also covering: it holds the hostname) and sorts every open finding of the company
        // (10 M app records: 355 / 533 ms p50 / p95; pinned: < 1 ms).
        FindingSort::Hostname => format!(
            " FROM agents ag{hint} {j} findings f ON f.company_id = ag.company_id AND f.agent_id = ag.agent_id \
             JOIN software s ON s.software_key = f.software_key \
             LEFT JOIN vulns v ON v.vuln_id = f.vuln_id \
             LEFT JOIN software_vulns sv ON sv.software_key = f.software_key AND sv.vuln_id = f.vuln_id",
            hint = DB::indexed_by("agents_hostname")
        ),
        FindingSort::Severity | FindingSort::FirstSeen => format!(" FROM findings f{FINDING_JOINS}"),
    };
    qb.push(from);
    qb.push(ANALYSIS_JOIN);
    qb.push(" WHERE f.company_id = ");
    push_uuid(&mut qb, company_id);
    // The hosts named by the company in so many words where findings are not the only
    // table the company is read from (Citus routes a statement to one node only then).
    if filter.sort == FindingSort::Hostname || fenced.is_some() || newest_fenced {
        qb.push(" AND ag.company_id = ");
        push_uuid(&mut qb, company_id);
    }
    push_finding_conditions(&mut qb, company_id, filter);
    if let Some(ids) = among {
        push_vuln_ids(&mut qb, "f.vuln_id", ids);
    }
    if let Some(after) = &after {
        keyset.push_after(&mut qb, after);
    }
    if filter.agent_id.is_some() {
        // One host's findings by the primary key, sorted: never an ordered walk of the
        // company's findings looking for the host's.
        keyset.push_order_prefixed(&mut qb, DB::UNINDEXED_ORDER);
    } else {
        keyset.push_order(&mut qb);
    }
    push_limit(&mut qb, limit);
    Ok((qb, keyset, limit))
}

/// ` AND column IN (ids…)` (`IN (NULL)`: none).
fn push_vuln_ids<DB: Dialect>(qb: &mut QueryBuilder<DB>, column: &str, ids: &[String]) {
    qb.push(format_args!(" AND {column} IN ("));
    if ids.is_empty() {
        qb.push("NULL");
    }
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            qb.push(", ");
        }
        DB::push_key(qb, &KeyVal::Text(id.clone()));
    }
    qb.push(")");
}

pub(crate) fn findings_page<R: Cols>(
    rows: &[R],
    keyset: &Keyset,
    limit: i64,
) -> Result<Page<FindingRow>> {
    keyset_page(rows, limit, keyset, 30, |c| Ok(finding_from_row(c)?.0))
}

// --- the findings search in the default order ---------------------------------------------------

/// Whether a findings page is a text search (`q`) of open findings in the default order that
/// reads the findings through what the text matches ([`search_groups_query`] and
/// [`search_page_query`]) instead of walking the company's open findings in order and testing
/// each: the walk read every finding the text misses before the page (`q=openssl` whose
/// findings are of low severity: ~70,000 findings, each looked up in the table for its
/// `suppressed` flag, 0.9 s per page at 1,000 hosts × 100 apps).
pub(crate) fn walks_search(filter: &FindingFilter) -> bool {
    search_of(filter).is_some()
        && default_finding_order(filter)
        && filter.status == FindingStatus::Open
        && filter.agent_id.is_none()
        && filter.vuln_id.is_none()
}

/// How many of the company's agents the text names (their hostname contains it), and how many
/// agents it has: two `BIGINT` columns.
pub(crate) fn search_hosts_query<DB>(company_id: CompanyId, q: &str) -> QueryBuilder<DB>
where
    DB: Dialect + FilterDialect,
    for<'t> uuid::Uuid: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    for<'t> String: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
{
    let mut qb = QueryBuilder::new("SELECT (SELECT CAST(count(*) AS BIGINT) FROM (");
    push_hosts_matching(&mut qb, company_id, q);
    qb.push(") h), (SELECT CAST(count(*) AS BIGINT) FROM agents a WHERE a.company_id = ");
    push_uuid(&mut qb, company_id);
    qb.push(")");
    qb
}

/// Whether the hosts a text names hold so large a share of the company's findings (one agent
/// in 50 or more) that the ordered walk finds a page of them within a few thousand findings:
/// then the search walks (and reading every finding of those hosts would cost more).
pub(crate) fn search_hosts_dense(hosts: i64, agents: i64) -> bool {
    hosts > 0 && hosts.saturating_mul(50) > agents
}

/// The default order's cursor: severity rank, vulnerability, agent, software version.
pub(crate) type SeverityCursor = (i64, String, uuid::Uuid, SoftwareKey);

pub(crate) fn severity_cursor(page: &PageRequest) -> Result<Option<SeverityCursor>> {
    let Some(c) = page.cursor.as_deref() else {
        return Ok(None);
    };
    let (sev, vuln, agent, key): (i64, String, String, String) = decode_cursor(c)?;
    let agent = hex::decode(&agent)
        .ok()
        .and_then(|b| uuid::Uuid::from_slice(&b).ok())
        .ok_or_else(|| invalid_cursor("not a host id"))?;
    let key = SoftwareKey::from_hex(&key).ok_or_else(|| invalid_cursor("not a software key"))?;
    Ok(Some((sev, vuln, agent, key)))
}

/// The company's (severity, vulnerability) groups of open findings in the default order that
/// can hold findings the text matches through a package name or a vulnerability id or alias
/// (from the rollup `company_vulns`: a few thousand rows), from the cursor's group on, with
/// an estimate of their matching findings: all of the group's when the vulnerability matches,
/// else the hosts running the matching packages it affects (each such host has one finding of
/// it per package version). Columns: severity rank, vulnerability, estimate (`BIGINT`s).
/// Findings matched through a hostname only are read by [`search_page_query`] with `hosts`.
pub(crate) fn search_groups_query<DB>(
    company_id: CompanyId,
    filter: &FindingFilter,
    cursor: Option<&SeverityCursor>,
) -> QueryBuilder<DB>
where
    DB: Dialect + FilterDialect,
    for<'t> uuid::Uuid: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    for<'t> String: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
{
    let q = search_of(filter).unwrap_or_default();
    let mut qb = QueryBuilder::new(
        "WITH sw AS (SELECT x.vuln_id AS vuln_id, sum(m.hosts) AS hosts \
         FROM company_software m JOIN software_vulns x ON x.software_key = m.software_key \
         WHERE m.company_id = ",
    );
    push_uuid(&mut qb, company_id);
    qb.push(" AND m.software_key IN (");
    push_software_matching(&mut qb, company_id, q, true);
    qb.push(
        ") GROUP BY x.vuln_id) \
         SELECT CAST(g.severity AS BIGINT), g.vuln_id, CAST(CASE WHEN g.vuln_id IN (",
    );
    push_vulns_matching(&mut qb, company_id, q, true);
    qb.push(
        ") OR g.findings < coalesce(sw.hosts, 0) THEN g.findings ELSE coalesce(sw.hosts, 0) END \
         AS BIGINT) FROM company_vulns g LEFT JOIN sw ON sw.vuln_id = g.vuln_id \
         WHERE g.company_id = ",
    );
    push_uuid(&mut qb, company_id);
    qb.push(" AND (sw.vuln_id IS NOT NULL OR g.vuln_id IN (");
    push_vulns_matching(&mut qb, company_id, q, true);
    qb.push("))");
    if !filter.severities.is_empty() {
        let ranks: Vec<String> = severity_filter_ranks(&filter.severities)
            .into_iter()
            .map(|r| r.to_string())
            .collect();
        qb.push(format!(" AND g.severity IN ({})", ranks.join(", ")));
    }
    if let Some((sev, vuln, _, _)) = cursor {
        qb.push(" AND (g.severity < ");
        DB::push_key(&mut qb, &KeyVal::Int(*sev));
        qb.push(" OR (g.severity = ");
        DB::push_key(&mut qb, &KeyVal::Int(*sev));
        qb.push(" AND g.vuln_id >= ");
        DB::push_key(&mut qb, &KeyVal::Text(vuln.clone()));
        qb.push("))");
    }
    qb.push(" ORDER BY g.severity DESC, g.vuln_id");
    qb
}

/// How many of the groups (in order) a search page reads in round `round`: enough for `need`
/// findings by the estimates, eight times more each round, every group from the fourth.
pub(crate) fn search_prefix(groups: &[(i64, String, i64)], need: i64, round: u32) -> usize {
    let weights: Vec<(String, i64)> = groups.iter().map(|(_, v, n)| (v.clone(), *n)).collect();
    walk_prefix(&weights, need, round).max(1).min(groups.len())
}

/// What a search page reads: the findings of the first groups of [`search_groups_query`]
/// (by vulnerability, through `findings_vuln`, sorted; only up to the last group, which a
/// vulnerability of two severities could pass), or the findings of the hosts the text names
/// (through the primary key, sorted).
pub(crate) enum SearchArm<'a> {
    Groups(&'a [(i64, String, i64)]),
    Hosts,
}

/// One search page of `arm` in the default order after the cursor (columns of
/// `finding_from_row`; every condition of the filter, the text's included, so that a row is
/// one the walk would show).
pub(crate) fn search_page_query<DB>(
    company_id: CompanyId,
    filter: &FindingFilter,
    cursor: Option<&SeverityCursor>,
    arm: SearchArm<'_>,
    limit: i64,
) -> QueryBuilder<DB>
where
    DB: Dialect + FilterDialect,
    for<'t> uuid::Uuid: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    for<'t> bool: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    for<'t> String: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
{
    let from = match arm {
        SearchArm::Groups(_) => format!("FROM findings f{} ", DB::indexed_by("findings_vuln")),
        SearchArm::Hosts => "FROM findings f ".to_string(),
    };
    let mut qb = QueryBuilder::new(FINDING_COLUMNS.replacen("FROM findings f ", &from, 1));
    qb.push(" WHERE f.company_id = ");
    push_uuid(&mut qb, company_id);
    push_finding_conditions(&mut qb, company_id, filter);
    let mut order = "";
    match arm {
        SearchArm::Groups(groups) => {
            qb.push(" AND f.vuln_id IN (");
            let ids: BTreeSet<&str> = groups.iter().map(|(_, v, _)| v.as_str()).collect();
            for (i, id) in ids.into_iter().enumerate() {
                if i > 0 {
                    qb.push(", ");
                }
                DB::push_key(&mut qb, &KeyVal::Text(id.to_string()));
            }
            qb.push(")");
            if let Some((sev, vuln, _)) = groups.last() {
                qb.push(" AND (f.severity > ");
                DB::push_key(&mut qb, &KeyVal::Int(*sev));
                qb.push(" OR (f.severity = ");
                DB::push_key(&mut qb, &KeyVal::Int(*sev));
                qb.push(" AND f.vuln_id <= ");
                DB::push_key(&mut qb, &KeyVal::Text(vuln.clone()));
                qb.push("))");
            }
        }
        SearchArm::Hosts => {
            qb.push(" AND f.agent_id IN (");
            push_hosts_matching(&mut qb, company_id, search_of(filter).unwrap_or_default());
            qb.push(")");
            // A few hosts' findings through the primary key, sorted: never the ordered walk.
            order = DB::UNINDEXED_ORDER;
        }
    }
    if let Some((sev, vuln, agent, key)) = cursor {
        qb.push(" AND (f.severity < ");
        DB::push_key(&mut qb, &KeyVal::Int(*sev));
        qb.push(" OR (f.severity = ");
        DB::push_key(&mut qb, &KeyVal::Int(*sev));
        qb.push(" AND (f.vuln_id, f.agent_id, f.software_key) > (");
        DB::push_key(&mut qb, &KeyVal::Text(vuln.clone()));
        qb.push(", ");
        DB::push_key(&mut qb, &KeyVal::Uuid(*agent));
        qb.push(", ");
        DB::push_key(&mut qb, &KeyVal::Key(*key));
        qb.push(")))");
    }
    qb.push(format!(
        " ORDER BY {order}f.severity DESC, f.vuln_id, f.agent_id, f.software_key"
    ));
    push_limit(&mut qb, limit);
    qb
}

/// The search page from the rows of its two arms (each the first `limit + 1` of its own in the
/// default order): merged in that order, each finding once; the cursor as the walk writes it.
pub(crate) fn search_page<R: Cols>(
    groups: Vec<R>,
    hosts: Vec<R>,
    limit: i64,
) -> Result<Page<FindingRow>> {
    let mut keyed = Vec::with_capacity(groups.len() + hosts.len());
    for row in groups.into_iter().chain(hosts) {
        let (_, key) = finding_from_row(&row)?;
        keyed.push((key, row));
    }
    keyed.sort_by(|(a, _), (b, _)| {
        b.0.cmp(&a.0)
            .then_with(|| (&a.1, &a.2, &a.3).cmp(&(&b.1, &b.2, &b.3)))
    });
    keyed.dedup_by(|(a, _), (b, _)| a == b);
    keyed.truncate(usize::try_from(limit + 1).unwrap_or(usize::MAX));
    let rows: Vec<R> = keyed.into_iter().map(|(_, row)| row).collect();
    page_of(&rows, limit, finding_from_row)
}

// --- trends and the operator's overview ----------------------------------------------------------

/// The overview rows of `companies` (by name) with their counters and stale agents.
pub(crate) fn overview_rows(
    mut companies: Vec<Company>,
    mut counts: HashMap<CompanyId, (Summary, u64)>,
) -> Vec<CompanyOverview> {
    companies.sort_by(|a, b| (&a.name, a.id).cmp(&(&b.name, b.id)));
    companies
        .into_iter()
        .map(|c| {
            let (s, stale) = counts.remove(&c.id).unwrap_or_default();
            CompanyOverview {
                company_id: c.id,
                name: c.name,
                agents: s.agents,
                apps: s.apps,
                findings: s.findings,
                kev: s.kev,
                fixable: s.fixable,
                stale_agents: stale,
            }
        })
        .collect()
}

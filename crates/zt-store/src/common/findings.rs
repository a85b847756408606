//! The findings filter, once for both backends: the conditions a [`FindingFilter`] adds to a
//! query over `findings f` joined to `agents ag`, `software s` and `vulns v` (the joins of
//! `reads::FINDING_COLUMNS`). Only the few words the two SQL dialects spell differently come
//! from [`FilterDialect`]; which rows a filter keeps is decided here, so both backends keep
//! the same ones (the conformance suite checks it).
//!
//! The text search (`q`) is a case-insensitive substring match, ASCII case only (SQLite's
//! `LIKE`; PostgreSQL's `ILIKE` on the "C" collation), on the package name, the vulnerability
//! id, the hostname, or any one alias: an alias is matched on its own, so a search never
//! matches across two aliases or the list's punctuation.

use sqlx::{Database, Encode, QueryBuilder, Type};
use uuid::Uuid;

use super::reads::{contains_pattern, severity_filter_ranks};
use crate::model::*;

/// What the dialects spell differently in the findings filter.
pub(crate) trait FilterDialect: Database {
    /// The case-insensitive `LIKE` (ASCII case; every compared column is byte-collated).
    const CONTAINS: &'static str;
    /// A row source of `v.aliases`' elements, one column `value` (row alias `al`).
    const ALIAS_ELEMENTS: &'static str;
    /// Binds a time as the dialect stores it.
    fn push_time(qb: &mut QueryBuilder<Self>, t: chrono::DateTime<chrono::Utc>);
    /// `findings f` sought by vulnerability: SQLite, without statistics, would otherwise
    /// walk all of the company's findings by the primary key and test each against the
    /// list (its plan test checks this).
    const FINDINGS_BY_VULN: &'static str;
    /// Whether the index `findings_due` leads with `suppressed` after the company (SQLite:
    /// the SLA counts are then its range counts alone). PostgreSQL leaves `suppressed` out of
    /// every index: an analysis's rewrite of 100,000 findings stays a HOT update there.
    const SUPPRESSED_IN_DUE_INDEX: bool;
    /// `findings f` read through `findings_due`.
    const FINDINGS_BY_DUE: &'static str;
    /// Whether the findings of a list of vulnerabilities are sought with a `LATERAL` join
    /// (PostgreSQL: one index scan of `findings_vuln` per vulnerability, whatever the
    /// statistics say; without them, it read all of a company's open findings through
    /// `findings_due` and filtered them by the list — 0.8 s); else with `IN (…)`.
    const LATERAL: bool;
}

impl FilterDialect for sqlx::Sqlite {
    const CONTAINS: &'static str = "LIKE";
    const ALIAS_ELEMENTS: &'static str = "json_each(v.aliases) al";
    const FINDINGS_BY_VULN: &'static str = "findings f INDEXED BY findings_vuln";
    const SUPPRESSED_IN_DUE_INDEX: bool = true;
    const FINDINGS_BY_DUE: &'static str = "findings f INDEXED BY findings_due";
    const LATERAL: bool = false;
    fn push_time(qb: &mut QueryBuilder<Self>, t: chrono::DateTime<chrono::Utc>) {
        qb.push_bind(t.timestamp_millis());
    }
}

impl FilterDialect for sqlx::Postgres {
    const CONTAINS: &'static str = "ILIKE";
    // The elements of a text[] take the database's default collation: "C" keeps the
    // comparison to ASCII case, as on the other columns.
    const ALIAS_ELEMENTS: &'static str = "unnest(v.aliases COLLATE \"C\") al(value)";
    const FINDINGS_BY_VULN: &'static str = "findings f";
    const SUPPRESSED_IN_DUE_INDEX: bool = false;
    const FINDINGS_BY_DUE: &'static str = "findings f";
    const LATERAL: bool = true;
    fn push_time(qb: &mut QueryBuilder<Self>, t: chrono::DateTime<chrono::Utc>) {
        qb.push_bind(t);
    }
}

/// Appends ` AND …` for `filter` to a query already restricted to `company_id` (a list that
/// joins in another order adds its own company conditions first).
///
/// Every condition is on the findings' own columns: the text search is a membership test of
/// the finding's software version, vulnerability and agent in the sets the text picks (each
/// set read once, from a table far smaller than the findings), not a join and four `LIKE`s
/// per finding walked.
pub(crate) fn push_finding_conditions<DB>(
    qb: &mut QueryBuilder<DB>,
    company_id: CompanyId,
    filter: &FindingFilter,
) where
    DB: FilterDialect,
    for<'t> Uuid: Encode<'t, DB> + Type<DB>,
    for<'t> bool: Encode<'t, DB> + Type<DB>,
    for<'t> String: Encode<'t, DB> + Type<DB>,
{
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
        // Literal ranks (small integers of an enum, never outside text): the planner then
        // matches them against the open-findings index, which leads with the severity.
        let ranks: Vec<String> = severity_filter_ranks(&filter.severities)
            .into_iter()
            .map(|r| r.to_string())
            .collect();
        qb.push(format_args!(" AND f.severity IN ({})", ranks.join(", ")));
    }
    if let Some(kev) = filter.kev {
        qb.push(" AND f.kev = ").push_bind(kev);
    }
    if let Some(fixable) = filter.fixable {
        qb.push(" AND f.fixable = ").push_bind(fixable);
    }
    if let Some(agent) = filter.agent_id {
        qb.push(" AND f.agent_id = ").push_bind(agent.0);
    }
    if let Some(v) = &filter.vuln_id {
        qb.push(" AND f.vuln_id = ").push_bind(v.clone());
    }
    match filter.suppressed {
        crate::analysis::SuppressedFilter::Exclude => {
            qb.push(" AND f.suppressed = ").push_bind(false);
        }
        crate::analysis::SuppressedFilter::Only => {
            qb.push(" AND f.suppressed = ").push_bind(true);
        }
        crate::analysis::SuppressedFilter::Include => {}
    }
    if let Some(due) = &filter.due_by {
        qb.push(" AND ");
        push_due(qb, due);
    }
    if let Some(tag) = &filter.tag {
        qb.push(" AND f.agent_id IN (SELECT t.agent_id FROM agent_tags t WHERE t.company_id = ")
            .push_bind(company_id.0)
            .push(" AND t.tag = ")
            .push_bind(tag.clone())
            .push(")");
    }
    if let Some(q) = search_of(filter) {
        let open = filter.status == FindingStatus::Open;
        qb.push(" AND (f.software_key IN (");
        push_software_matching(qb, company_id, q, open);
        qb.push(") OR f.vuln_id IN (");
        push_vulns_matching(qb, company_id, q, open);
        qb.push(") OR f.agent_id IN (");
        push_hosts_matching(qb, company_id, q);
        qb.push("))");
    }
}

/// The software versions whose package name contains the text `q` (one column,
/// `software_key`). `open`: open findings are on software the company runs now (its few
/// thousand versions); resolved ones may be on software gone from it, looked up among all.
pub(crate) fn push_software_matching<DB>(
    qb: &mut QueryBuilder<DB>,
    company_id: CompanyId,
    q: &str,
    open: bool,
) where
    DB: FilterDialect,
    for<'t> Uuid: Encode<'t, DB> + Type<DB>,
    for<'t> String: Encode<'t, DB> + Type<DB>,
{
    if open {
        qb.push(
            "SELECT cs.software_key FROM company_software cs \
             JOIN software s ON s.software_key = cs.software_key WHERE cs.company_id = ",
        )
        .push_bind(company_id.0)
        .push(" AND");
    } else {
        qb.push("SELECT s.software_key FROM software s WHERE");
    }
    qb.push(format_args!(" s.name {} ", DB::CONTAINS))
        .push_bind(contains_pattern(q))
        .push(" ESCAPE '\\'");
}

/// The vulnerabilities whose id or one of whose aliases contains the text `q` (one column,
/// `vuln_id`). `open`: open findings are of the company's own vulnerabilities (its rollup, a
/// few thousand); resolved ones of any known.
pub(crate) fn push_vulns_matching<DB>(
    qb: &mut QueryBuilder<DB>,
    company_id: CompanyId,
    q: &str,
    open: bool,
) where
    DB: FilterDialect,
    for<'t> Uuid: Encode<'t, DB> + Type<DB>,
    for<'t> String: Encode<'t, DB> + Type<DB>,
{
    let pattern = contains_pattern(q);
    let like = DB::CONTAINS;
    if open {
        qb.push(
            "SELECT v.vuln_id FROM company_vulns cv JOIN vulns v ON v.vuln_id = cv.vuln_id \
             WHERE cv.company_id = ",
        )
        .push_bind(company_id.0)
        .push(" AND (v.vuln_id ");
    } else {
        qb.push("SELECT v.vuln_id FROM vulns v WHERE (v.vuln_id ");
    }
    qb.push(format_args!("{like} "))
        .push_bind(pattern.clone())
        .push(format_args!(
            " ESCAPE '\\' OR EXISTS (SELECT 1 FROM {} WHERE al.value {like} ",
            DB::ALIAS_ELEMENTS
        ))
        .push_bind(pattern)
        .push(" ESCAPE '\\'))");
}

/// The company's agents whose hostname contains the text `q` (one column, `agent_id`).
pub(crate) fn push_hosts_matching<DB>(qb: &mut QueryBuilder<DB>, company_id: CompanyId, q: &str)
where
    DB: FilterDialect,
    for<'t> Uuid: Encode<'t, DB> + Type<DB>,
    for<'t> String: Encode<'t, DB> + Type<DB>,
{
    qb.push("SELECT a.agent_id FROM agents a WHERE a.company_id = ")
        .push_bind(company_id.0)
        .push(format_args!(" AND a.hostname {} ", DB::CONTAINS))
        .push_bind(contains_pattern(q))
        .push(" ESCAPE '\\'");
}

/// The condition "due at or before the bound": first seen early enough for its severity, or
/// (KEV) CISA's due date reached.
fn push_due<DB>(qb: &mut QueryBuilder<DB>, due: &crate::sla::DueBy)
where
    DB: FilterDialect,
    for<'t> bool: Encode<'t, DB> + Type<DB>,
    for<'t> String: Encode<'t, DB> + Type<DB>,
{
    qb.push("(");
    for (i, (cond, bound)) in SLA_BUCKETS.iter().zip(due.first_seen_by.iter()).enumerate() {
        if i > 0 {
            qb.push(" OR ");
        }
        qb.push(format_args!("({cond} AND f.first_seen <= "));
        DB::push_time(qb, *bound);
        qb.push(")");
    }
    if let Some(date) = &due.kev_date {
        qb.push(" OR (f.kev = ")
            .push_bind(true)
            .push(" AND f.vuln_id IN (SELECT kv.vuln_id FROM vulns kv WHERE kv.kev_due_date <= ")
            .push_bind(date.clone())
            .push("))");
    }
    qb.push(")");
}

/// The severity conditions of the SLA's buckets (critical, high, medium, low, unknown), in
/// the order of [`crate::sla::DueBy::first_seen_by`]. The last names its two ranks (unknown 0,
/// none 1) rather than `severity <= 1`: with a range on the severity, the index
/// `findings_due` (…, severity, first_seen) cannot also seek by first_seen, and every open
/// finding of those ranks was read for each count (SQLite, 10 M app records: ~63,000 index
/// entries and 9 ms per count, two counts per summary and per trend; with `IN`, 0.1 ms).
const SLA_BUCKETS: [&str; 5] = [
    "f.severity = 5",
    "f.severity = 4",
    "f.severity = 3",
    "f.severity = 2",
    "f.severity IN (0, 1)",
];

/// "First seen early enough for its severity to be due by `due`" (the severity part of
/// [`push_due`], without CISA's dates).
fn push_first_seen_due<DB>(qb: &mut QueryBuilder<DB>, due: &crate::sla::DueBy)
where
    DB: FilterDialect,
{
    qb.push("(");
    for (i, (cond, bound)) in SLA_BUCKETS.iter().zip(due.first_seen_by.iter()).enumerate() {
        if i > 0 {
            qb.push(" OR ");
        }
        qb.push(format_args!("({cond} AND f.first_seen <= "));
        DB::push_time(qb, *bound);
        qb.push(")");
    }
    qb.push(")");
}

/// The summary's SLA and suppression counts: overdue (due by `overdue`) per severity —
/// critical, high, medium, low, unknown —, then due by `soon`, both without suppressed
/// findings, and suppressed. One row of seven integers (see [`SlaCounts::of_row`]).
///
/// Not one pass over the company's open findings (issue 13: 60 ms at 100,000 of them on
/// PostgreSQL, growing with the company), but three small parts, each read through an index:
/// - `t`: the open findings of each severity first seen by its bound, suppressed or not —
///   range counts of the index `findings_due` (company, severity, first_seen) of open
///   findings, which an index-only scan answers (and the due-soon counts only the range
///   between the two bounds);
/// - `s`: the suppressed open findings, counted by the same bounds (SQLite, whose
///   `findings_due` holds `suppressed`: `t` counts only unsuppressed findings and `s` only
///   their total, both from the index; PostgreSQL:) they are the findings
///   of the vulnerabilities (ids and the groups having them as an alias, as coverage
///   compares them) of the company's suppressing analyses — neither withdrawn nor brought
///   to an end by the expiry job, each of which uncovers the findings in the transaction
///   that marks the analysis (an analysis past its expiry the job has not reached yet still
///   suppresses, and is read) —, sought by `findings_vuln` —
///   `suppressed` itself is in no index, so that an analysis's rewrite of 100,000 findings
///   stays a HOT update on PostgreSQL (migration 0420);
/// - `k`: the open unsuppressed KEV findings not due by their severity's bound but by
///   CISA's date, sought through the company's vulnerabilities (`company_vulns`) whose
///   CISA date has passed (None: the policy ignores CISA's dates, and `k` counts nothing).
///
/// Overdue = `t` − `s` + `k`, per severity; the same rule as [`push_due`] with `suppressed =
/// false` (the conformance suite compares the summary with the findings filter).
pub(crate) fn sla_counts_query<DB>(
    company_id: CompanyId,
    overdue: &crate::sla::DueBy,
    soon: &crate::sla::DueBy,
) -> QueryBuilder<DB>
where
    DB: FilterDialect,
    for<'t> Uuid: Encode<'t, DB> + Type<DB>,
    for<'t> bool: Encode<'t, DB> + Type<DB>,
    for<'t> String: Encode<'t, DB> + Type<DB>,
    for<'t> Option<String>: Encode<'t, DB> + Type<DB>,
{
    // `t` is a materialized `WITH`: as a subquery in FROM the planner would inline it and
    // count each range twice (its columns are named twice: per severity, and in the sum).
    let mut qb = QueryBuilder::new("WITH t AS MATERIALIZED (SELECT ");
    // t: range counts of `findings_due`.
    let open = |qb: &mut QueryBuilder<DB>, range: &str| {
        qb.push(format_args!(
            "(SELECT count(*) FROM {} WHERE f.company_id = ",
            DB::FINDINGS_BY_DUE
        ))
        .push_bind(company_id.0);
        if DB::SUPPRESSED_IN_DUE_INDEX {
            qb.push(" AND f.suppressed = ").push_bind(false);
        }
        qb.push(format_args!(" AND f.resolved_at IS NULL AND {range}"));
    };
    for (i, range) in SLA_BUCKETS.iter().enumerate() {
        open(&mut qb, range);
        qb.push(" AND f.first_seen <= ");
        DB::push_time(&mut qb, overdue.first_seen_by[i]);
        qb.push(format_args!(") AS o{i}, "));
    }
    for (i, range) in SLA_BUCKETS.iter().enumerate() {
        open(&mut qb, range);
        qb.push(" AND f.first_seen > ");
        DB::push_time(&mut qb, overdue.first_seen_by[i]);
        qb.push(" AND f.first_seen <= ");
        DB::push_time(&mut qb, soon.first_seen_by[i]);
        qb.push(format_args!(") AS w{i}"));
        qb.push(if i < 4 {
            ", "
        } else {
            " FROM (VALUES (1)) AS one) SELECT "
        });
    }
    for i in 0..5 {
        qb.push(format_args!("t.o{i} - s.o{i} + k.o{i}, "));
    }
    qb.push(
        "t.o0 + t.o1 + t.o2 + t.o3 + t.o4 + t.w0 + t.w1 + t.w2 + t.w3 + t.w4 - s.w + k.w, s.n \
         FROM t, ",
    );
    if DB::SUPPRESSED_IN_DUE_INDEX {
        // `t` counted only unsuppressed findings; the suppressed ones are one range.
        qb.push(format_args!(
            "(SELECT 0 AS o0, 0 AS o1, 0 AS o2, 0 AS o3, 0 AS o4, 0 AS w, count(*) AS n \
             FROM {} WHERE f.company_id = ",
            DB::FINDINGS_BY_DUE
        ))
        .push_bind(company_id.0)
        .push(" AND f.suppressed = ")
        .push_bind(true)
        .push(" AND f.resolved_at IS NULL) s, (SELECT ");
    } else {
        push_suppressed_walk(&mut qb, company_id, overdue, soon);
    }
    push_kev_part(&mut qb, company_id, overdue, soon);
    qb
}

/// The `s` part of [`sla_counts_query`] where `suppressed` is in no index.
fn push_suppressed_walk<DB>(
    qb: &mut QueryBuilder<DB>,
    company_id: CompanyId,
    overdue: &crate::sla::DueBy,
    soon: &crate::sla::DueBy,
) where
    DB: FilterDialect,
    for<'t> Uuid: Encode<'t, DB> + Type<DB>,
    for<'t> bool: Encode<'t, DB> + Type<DB>,
{
    // s: the suppressed open findings, through the suppressing analyses' vulnerabilities.
    qb.push("(SELECT ");
    for (i, cond) in SLA_BUCKETS.iter().enumerate() {
        qb.push(format_args!(
            "coalesce(sum(CASE WHEN {cond} AND f.first_seen <= "
        ));
        DB::push_time(qb, overdue.first_seen_by[i]);
        qb.push(format_args!(" THEN 1 ELSE 0 END), 0) AS o{i}, "));
    }
    qb.push("coalesce(sum(CASE WHEN ");
    push_first_seen_due(qb, soon);
    qb.push(" THEN 1 ELSE 0 END), 0) AS w, count(*) AS n FROM ");
    // The vulnerabilities of the suppressing analyses, `sv.id` (and the findings' filter).
    let push_ids = |qb: &mut QueryBuilder<DB>| {
        qb.push("SELECT a.vuln_id AS id FROM analyses a WHERE a.company_id = ")
            .push_bind(company_id.0)
            .push(" AND a.withdrawn_at IS NULL AND a.expired_at IS NULL AND a.suppress = ")
            .push_bind(true)
            .push(
                " UNION SELECT va.vuln_id FROM analyses a JOIN vuln_aliases va \
                 ON va.alias = a.vuln_id WHERE a.company_id = ",
            )
            .push_bind(company_id.0)
            .push(" AND a.withdrawn_at IS NULL AND a.expired_at IS NULL AND a.suppress = ")
            .push_bind(true);
    };
    if DB::LATERAL {
        qb.push("(");
        push_ids(qb);
        qb.push(
            ") sv CROSS JOIN LATERAL (SELECT f.severity, f.first_seen FROM findings f \
             WHERE f.company_id = ",
        )
        .push_bind(company_id.0)
        .push(" AND f.vuln_id = sv.id AND f.resolved_at IS NULL AND f.suppressed = ")
        .push_bind(true)
        .push(") f) s, (SELECT ");
    } else {
        qb.push(format_args!(
            "{} WHERE f.company_id = ",
            DB::FINDINGS_BY_VULN
        ))
        .push_bind(company_id.0)
        .push(" AND f.resolved_at IS NULL AND f.suppressed = ")
        .push_bind(true)
        .push(" AND f.vuln_id IN (");
        push_ids(qb);
        qb.push(")) s, (SELECT ");
    }
}

/// The `k` part of [`sla_counts_query`], after `(SELECT `.
fn push_kev_part<DB>(
    qb: &mut QueryBuilder<DB>,
    company_id: CompanyId,
    overdue: &crate::sla::DueBy,
    soon: &crate::sla::DueBy,
) where
    DB: FilterDialect,
    for<'t> Uuid: Encode<'t, DB> + Type<DB>,
    for<'t> bool: Encode<'t, DB> + Type<DB>,
    for<'t> Option<String>: Encode<'t, DB> + Type<DB>,
{
    // k: unsuppressed KEV findings due by CISA's date before their severity's bound.
    for (i, cond) in SLA_BUCKETS.iter().enumerate() {
        qb.push(format_args!(
            "coalesce(sum(CASE WHEN {cond} AND f.first_seen > "
        ));
        DB::push_time(qb, overdue.first_seen_by[i]);
        qb.push(" AND v.kev_due_date <= ")
            .push_bind(overdue.kev_date.clone())
            .push(format_args!(" THEN 1 ELSE 0 END), 0) AS o{i}, "));
    }
    qb.push("coalesce(sum(CASE WHEN NOT ");
    push_first_seen_due(qb, soon);
    qb.push(" AND v.kev_due_date <= ")
        .push_bind(soon.kev_date.clone())
        .push(" THEN 1 ELSE 0 END), 0) AS w FROM ");
    if DB::LATERAL {
        // Distinct: `company_vulns` has a row per vulnerability and severity.
        qb.push(
            "(SELECT DISTINCT cv.vuln_id AS id, kv.kev_due_date FROM company_vulns cv \
             JOIN vulns kv ON kv.vuln_id = cv.vuln_id WHERE cv.company_id = ",
        )
        .push_bind(company_id.0)
        .push(" AND kv.kev_due_date <= ")
        .push_bind(soon.kev_date.clone())
        .push(
            ") v CROSS JOIN LATERAL (SELECT f.severity, f.first_seen FROM findings f \
             WHERE f.company_id = ",
        )
        .push_bind(company_id.0)
        .push(" AND f.vuln_id = v.id AND f.resolved_at IS NULL AND f.suppressed = ")
        .push_bind(false)
        .push(" AND f.kev = ")
        .push_bind(true)
        .push(") f) k");
    } else {
        qb.push(format_args!(
            "{} JOIN vulns v ON v.vuln_id = f.vuln_id WHERE f.company_id = ",
            DB::FINDINGS_BY_VULN
        ))
        .push_bind(company_id.0)
        .push(" AND f.resolved_at IS NULL AND f.suppressed = ")
        .push_bind(false)
        .push(" AND f.kev = ")
        .push_bind(true)
        .push(
            " AND f.vuln_id IN (SELECT cv.vuln_id FROM company_vulns cv \
             JOIN vulns kv ON kv.vuln_id = cv.vuln_id WHERE cv.company_id = ",
        )
        .push_bind(company_id.0)
        .push(" AND kv.kev_due_date <= ")
        .push_bind(soon.kev_date.clone())
        .push(")) k");
    }
}

/// The row of [`sla_counts_query`]: overdue per severity, due within the week (overdue ones
/// included), suppressed.
pub(crate) type SlaCountsRow = (i64, i64, i64, i64, i64, i64, i64);

/// A company's SLA and suppression counts of its open findings at one time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SlaCounts {
    /// Overdue (suppressed ones left out), per severity.
    pub overdue: SeverityCounts,
    /// Due within 7 days, overdue ones included (suppressed ones left out).
    pub due_week: u64,
    pub suppressed: u64,
}

impl SlaCounts {
    pub(crate) fn of_row(r: SlaCountsRow) -> SlaCounts {
        let n = |v: i64| u64::try_from(v).unwrap_or(0);
        SlaCounts {
            overdue: SeverityCounts {
                critical: n(r.0),
                high: n(r.1),
                medium: n(r.2),
                low: n(r.3),
                unknown: n(r.4),
            },
            due_week: n(r.5),
            suppressed: n(r.6),
        }
    }
}

/// The text search of a filter, if it has one (an empty `q` searches nothing).
pub(crate) fn search_of(filter: &FindingFilter) -> Option<&str> {
    filter.query.as_deref().filter(|q| !q.is_empty())
}

//! Analyses without the database: validation of a decision, the rule that picks the analysis
//! covering a finding (as SQL both backends run, written once with `?N` parameters; the
//! PostgreSQL backend spells them `$N` through [`pg`]), the mapping of rows, statuses, audit
//! entries and the `analysis.changed` event.
//!
//! Coverage rule: a finding is covered by the live analyses (not withdrawn, not expired at
//! `now`) of its vulnerability group whose scope holds for it — the finding's agent is listed
//! (or none are), its host carries one of the tags (or none are given), its package has the
//! name, version and ecosystem given. Of several, a suppressing one wins, then the newest.
//! The finding is suppressed when the winner suppresses.

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::reads::Cols;
use crate::analysis::*;
use crate::model::*;
use crate::{Result, StoreError};

/// Tags per agent and per scope, agents per scope, at most.
pub(crate) const MAX_TAGS: usize = zt_inventory::MAX_TAGS;
pub(crate) const MAX_SCOPE_AGENTS: usize = 1000;
const MAX_DETAILS_LEN: usize = 10_000;
const MAX_TEXT_LEN: usize = 512;

/// `?N` parameters as PostgreSQL spells them (`$N`). The statements here contain no other `?`.
pub(crate) fn pg(sql: &str) -> String {
    sql.replace('?', "$")
}

fn invalid(field: &'static str, message: impl Into<String>) -> StoreError {
    StoreError::Invalid {
        field,
        message: message.into(),
    }
}

/// Checks a tag: 1-64 ASCII letters, digits and `-_.:/=` (ASCII, so that the OpenAPI
/// document's pattern says exactly which tags are taken: a schema regex has no portable
/// notion of "any letter").
pub(crate) fn check_tag(field: &'static str, tag: &str) -> Result<()> {
    match zt_inventory::tag_problem(tag) {
        Some(problem) => Err(invalid(field, problem)),
        None => Ok(()),
    }
}

/// Tags as stored: checked, sorted, without repeats.
pub(crate) fn normalize_tags(field: &'static str, tags: &[String]) -> Result<Vec<String>> {
    if tags.len() > MAX_TAGS {
        return Err(invalid(field, format!("at most {MAX_TAGS} tags")));
    }
    for t in tags {
        check_tag(field, t)?;
    }
    let mut out = tags.to_vec();
    out.sort();
    out.dedup();
    Ok(out)
}

fn check_text(field: &'static str, value: &str, max: usize) -> Result<()> {
    if value.trim().is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if let Some(problem) = zt_inventory::text_problem(value, max) {
        return Err(invalid(field, problem));
    }
    Ok(())
}

/// Who set a host's tags: the API (`assigned`) or the agent with its report (`reported`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TagSource {
    Api,
    Agent,
}

/// The rows of `agent_tags` for an agent's tags: (tag, assigned, reported).
pub(crate) fn tag_rows(tags: &AgentTags) -> Vec<(String, bool, bool)> {
    tags.effective()
        .into_iter()
        .map(|t| {
            let assigned = tags.assigned.contains(&t);
            let reported = tags.reported.contains(&t);
            (t, assigned, reported)
        })
        .collect()
}

/// An agent's tags from its rows (tag, assigned, reported), in tag order.
pub(crate) fn tags_of_rows(rows: Vec<(String, bool, bool)>) -> AgentTags {
    let mut out = AgentTags::default();
    for (tag, assigned, reported) in rows {
        if assigned {
            out.assigned.push(tag.clone());
        }
        if reported {
            out.reported.push(tag);
        }
    }
    out
}

/// The audit entry of a change of the tags `source` sets, or None when they did not change.
pub(crate) fn tags_audit(
    agent_id: AgentId,
    source: TagSource,
    before: &AgentTags,
    after: &AgentTags,
) -> Option<NewAudit> {
    let (action, b, a) = match source {
        TagSource::Api => ("agent.tags_set", &before.assigned, &after.assigned),
        TagSource::Agent => ("agent.tags_reported", &before.reported, &after.reported),
    };
    (b != a).then(|| NewAudit {
        action: action.into(),
        object: format!("agent/{}", agent_id.0),
        before: Some(json!({ "tags": b })),
        after: Some(json!({ "tags": a })),
    })
}

/// Checks a decision and brings it into stored form (tags and agents sorted, without
/// repeats). `now`: an expiry must lie after it.
pub(crate) fn normalize_decision(
    mut d: AnalysisDecision,
    now: DateTime<Utc>,
) -> Result<AnalysisDecision> {
    d.scope.tags = normalize_tags("scope.tags", &d.scope.tags)?;
    if d.scope.agent_ids.len() > MAX_SCOPE_AGENTS {
        return Err(invalid(
            "scope.agent_ids",
            format!("at most {MAX_SCOPE_AGENTS} agents"),
        ));
    }
    d.scope.agent_ids.sort();
    d.scope.agent_ids.dedup();
    if let Some(p) = &d.scope.package {
        check_text("scope.package.name", &p.name, MAX_TEXT_LEN)?;
        if let Some(v) = &p.version {
            check_text("scope.package.version", v, MAX_TEXT_LEN)?;
        }
        if let Some(e) = &p.ecosystem {
            check_text("scope.package.ecosystem", e, MAX_TEXT_LEN)?;
        }
    }
    if let Some(details) = &d.details {
        if let Some(problem) = zt_inventory::text_problem(details, MAX_DETAILS_LEN) {
            return Err(invalid("details", problem));
        }
    }
    d.response.sort_by_key(|r| r.as_str());
    d.response.dedup();
    if let Some(at) = d.expires_at {
        if at <= now {
            return Err(invalid(
                "expires_at",
                format!("{} is not in the future", at.to_rfc3339()),
            ));
        }
    }
    Ok(d)
}

/// Where an analysis stands at `now`.
pub(crate) fn status_of(
    withdrawn_at: Option<DateTime<Utc>>,
    expires_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> AnalysisStatus {
    if withdrawn_at.is_some() {
        AnalysisStatus::Withdrawn
    } else if expires_at.is_some_and(|e| e <= now) {
        AnalysisStatus::Expired
    } else {
        AnalysisStatus::Active
    }
}

/// The columns of [`ANALYSIS_COLUMNS`] (0-17), with the scope's agents and tags read apart.
pub(crate) const ANALYSIS_COLUMNS: &str =
    "SELECT analysis_id, vuln_id, requested_id, any_agent, any_tag, pkg_name, pkg_version, \
     pkg_ecosystem, state, justification, response, details, suppress, expires_at, source, \
     created_at, updated_at, withdrawn_at FROM analyses";

pub(crate) fn analysis_from_row(
    c: &impl Cols,
    agent_ids: Vec<AgentId>,
    tags: Vec<String>,
    now: DateTime<Utc>,
) -> Result<Analysis> {
    let package = match c.opt_text(5)? {
        Some(name) => Some(PackageScope {
            name,
            version: c.opt_text(6)?,
            ecosystem: c.opt_text(7)?,
        }),
        None => None,
    };
    let state = c.text(8)?;
    let justification = c.opt_text(9)?;
    let response: Vec<String> = serde_json::from_str(&c.text(10)?)
        .map_err(|e| StoreError::Corrupt(format!("analysis response: {e}")))?;
    let expires_at = c.opt_time(13)?;
    let withdrawn_at = c.opt_time(17)?;
    Ok(Analysis {
        analysis_id: c.uuid(0)?,
        vuln_id: c.text(1)?,
        requested_id: c.text(2)?,
        scope: AnalysisScope {
            agent_ids,
            tags,
            package,
        },
        state: AnalysisState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("analysis state {state}")))?,
        justification: match justification {
            Some(j) => Some(
                Justification::parse(&j)
                    .ok_or_else(|| StoreError::Corrupt(format!("justification {j}")))?,
            ),
            None => None,
        },
        response: response
            .iter()
            .map(|r| {
                VexResponse::parse(r).ok_or_else(|| StoreError::Corrupt(format!("response {r}")))
            })
            .collect::<Result<_>>()?,
        details: c.opt_text(11)?,
        suppress: c.bool(12)?,
        expires_at,
        status: status_of(withdrawn_at, expires_at, now),
        source: c.opt_text(14)?,
        created_at: c.time(15)?,
        updated_at: c.time(16)?,
        withdrawn_at,
    })
}

/// The response list as stored (a JSON array of wire names).
pub(crate) fn response_json(response: &[VexResponse]) -> String {
    Value::Array(
        response
            .iter()
            .map(|r| Value::String(r.as_str().to_string()))
            .collect(),
    )
    .to_string()
}

/// The analysis a finding row names (columns `analysis_id, state, justification, suppressed,
/// expires_at` from `base` on; all NULL but `suppressed` when none covers it).
pub(crate) fn finding_analysis_at(c: &impl Cols, base: usize) -> Result<Option<FindingAnalysis>> {
    let Some(id) = c.opt_uuid(base)? else {
        return Ok(None);
    };
    let Some(state) = c.opt_text(base + 1)? else {
        return Ok(None);
    };
    Ok(Some(FindingAnalysis {
        analysis_id: id,
        state: AnalysisState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("analysis state {state}")))?,
        justification: c
            .opt_text(base + 2)?
            .as_deref()
            .and_then(Justification::parse),
        suppressed: c.bool(base + 3)?,
        expires_at: c.opt_time(base + 4)?,
    }))
}

/// An audit row: `audit_id, at, actor_kind, actor_token_id, actor_role, action, object,
/// before, after, comment` (0-9).
pub(crate) fn audit_from_row(c: &impl Cols) -> Result<AuditEntry> {
    let json_of = |i: usize| -> Result<Option<Value>> {
        match c.opt_text(i)? {
            Some(s) => serde_json::from_str(&s)
                .map(Some)
                .map_err(|e| StoreError::Corrupt(format!("audit JSON: {e}"))),
            None => Ok(None),
        }
    };
    Ok(AuditEntry {
        id: c.count(0)?,
        at: c.time(1)?,
        actor: Actor {
            kind: c.text(2)?,
            token_id: c.opt_text(3)?,
            role: c.opt_text(4)?,
        },
        action: c.text(5)?,
        object: c.text(6)?,
        before: json_of(7)?,
        after: json_of(8)?,
        comment: c.opt_text(9)?,
    })
}

/// The audit image of an analysis (what `before`/`after` show).
pub(crate) fn audit_image(a: &Analysis) -> Value {
    serde_json::to_value(a).unwrap_or(Value::Null)
}

/// The `analysis.changed` event of an analysis.
pub(crate) fn changed_event(company_id: CompanyId, a: &Analysis, change: &str) -> NewEvent {
    let mut data = Map::new();
    data.insert("analysis_id".into(), json!(a.analysis_id.to_string()));
    data.insert("vuln_id".into(), json!(a.vuln_id));
    data.insert("state".into(), json!(a.state.as_str()));
    data.insert("status".into(), json!(a.status.as_str()));
    data.insert("change".into(), json!(change));
    NewEvent {
        company_id: Some(company_id),
        kind: EventKind::AnalysisChanged,
        data,
    }
}

/// The cursor of the analyses list (newest first): created_at (µs, PostgreSQL's precision)
/// and id.
pub(crate) type AnalysisKey = (i64, String);

pub(crate) fn analysis_key(a: &Analysis) -> AnalysisKey {
    (a.created_at.timestamp_micros(), a.analysis_id.to_string())
}

pub(crate) fn decode_analysis_cursor(cursor: &str) -> Result<(DateTime<Utc>, Uuid)> {
    let (us, id): AnalysisKey = super::reads::decode_cursor(cursor)?;
    let at = DateTime::<Utc>::from_timestamp_micros(us)
        .ok_or_else(|| super::reads::invalid_cursor("time out of range"))?;
    let id = Uuid::parse_str(&id).map_err(super::reads::invalid_cursor)?;
    Ok((at, id))
}

/// The condition "the scope of analysis row `x` (a row of `live`) holds for the finding row
/// `findings`": its agent is listed (or none are), its host carries one of the tags (or none
/// are given), its package has the name, version and ecosystem given. Every distributed
/// table is pinned to the company `?1` (not only joined with a row that is): Citus routes a
/// statement to one node only when each of its tenant tables is restricted to one company
/// value, and PostgreSQL can then read the scope lists once into a hash instead of probing
/// them for each finding.
fn scope_holds(x: &str) -> String {
    format!(
        "({x}.any_agent = TRUE OR EXISTS (SELECT 1 FROM analysis_agents aa \
              WHERE aa.company_id = ?1 AND aa.analysis_id = {x}.analysis_id \
              AND aa.agent_id = findings.agent_id)) \
         AND ({x}.any_tag = TRUE OR EXISTS (SELECT 1 FROM analysis_tags t JOIN agent_tags g \
              ON g.company_id = t.company_id AND g.tag = t.tag \
              WHERE t.company_id = ?1 AND g.company_id = ?1 AND t.analysis_id = {x}.analysis_id \
              AND g.agent_id = findings.agent_id)) \
         AND ({x}.pkg_name IS NULL OR EXISTS (SELECT 1 FROM software s \
              WHERE s.software_key = findings.software_key AND s.name = {x}.pkg_name \
              AND ({x}.pkg_version IS NULL OR s.version = {x}.pkg_version) \
              AND ({x}.pkg_ecosystem IS NULL OR s.ecosystem = {x}.pkg_ecosystem)))"
    )
}

/// The statement that sets `analysis_id` and `suppressed` of findings of the company `?1` from the analysis
/// covering each at `now` (`?2`), as one set-based statement that writes only the findings
/// whose coverage changes (a second analysis of a vulnerability, or an expiry, rewrites
/// nothing else).
///
/// `ids`: a `SELECT` of one column `id` (its parameters from `?3`): the vulnerability ids
/// whose findings are brought up to date — a vulnerability group's ids, or those of some
/// agents' findings; `restriction`: a further condition on `findings` (the agents), if any.
/// From `ids`:
/// - `live`: the live analyses that may cover those findings (naming one of the ids or an
///   alias of one), read once;
/// - `lv`: each of those analyses once per vulnerability id it covers (its own, and the
///   groups having it as an alias), so that "covers this finding's vulnerability" is an
///   equality on `findings.vuln_id` — a hash join on PostgreSQL, an automatic index on
///   SQLite — rather than a subquery evaluated for each of (say) 100,000 findings;
/// - `w`: the rows a finding can take: those of `lv` for the ids, and per id a row of no
///   analysis.
///
/// Each finding joins exactly one row of `w`: the covering analysis no other covering one
/// beats (a suppressing one wins, then the newest, then the greater id: the `NOT EXISTS`,
/// an anti-join), or the row of no analysis when none covers it. Joining `findings` with
/// `w` — a handful of rows — rather than with a computed copy of the findings keeps it one
/// pass over the findings (the former copy-and-join-back cost more than the writes). Every
/// join is within the company `?1` and every tenant table pinned to it, so that Citus routes
/// the statement to the one node holding the company.
///
/// `target`: how the statement names the table it updates, `findings` or (SQLite) with an
/// index to seek by. ([`recover_vuln_counting_sql`]: the same statement moving the
/// counters of the agents whose findings it changes.)
fn recover_sql(target: &str, restriction: Option<&str>, ids: &str) -> String {
    recover_sql_with(target, restriction, ids, "", "")
}

/// [`recover_sql`] with `open` written before the `UPDATE` (after the `WITH` list's last
/// part) and `close` after it: a further part of the `WITH` list opening a
/// data-modifying part around the update, and what follows it.
fn recover_sql_with(
    target: &str,
    restriction: Option<&str>,
    ids: &str,
    open: &str,
    close: &str,
) -> String {
    let restriction = restriction.map(|r| format!("AND {r} ")).unwrap_or_default();
    format!(
        "WITH ids AS MATERIALIZED ({ids}), \
         live AS MATERIALIZED (SELECT a.company_id, a.analysis_id, a.vuln_id, a.any_agent, \
           a.any_tag, a.pkg_name, a.pkg_version, a.pkg_ecosystem, a.suppress, a.created_at \
           FROM analyses a WHERE a.company_id = ?1 \
           AND a.withdrawn_at IS NULL AND (a.expires_at IS NULL OR a.expires_at > ?2) \
           AND a.vuln_id IN (SELECT ids.id FROM ids UNION SELECT va.alias FROM vuln_aliases va \
                             WHERE va.vuln_id IN (SELECT ids.id FROM ids))), \
         lv AS MATERIALIZED (SELECT l.*, l.vuln_id AS fv FROM live l \
           UNION SELECT l.*, va.vuln_id AS fv FROM live l \
           CROSS JOIN vuln_aliases va WHERE va.alias = l.vuln_id), \
         w AS MATERIALIZED (SELECT lv.* FROM lv WHERE lv.fv IN (SELECT ids.id FROM ids) \
           UNION ALL SELECT ?1, NULL, NULL, NULL, NULL, NULL, NULL, NULL, FALSE, NULL, ids.id \
           FROM ids){open} \
         UPDATE {target} SET analysis_id = w.analysis_id, suppressed = w.suppress FROM w \
         WHERE findings.company_id = ?1 {restriction}\
         AND w.company_id = findings.company_id AND w.fv = findings.vuln_id \
         AND (w.analysis_id IS NULL OR ({scope_w})) \
         AND NOT EXISTS (SELECT 1 FROM lv b WHERE b.company_id = findings.company_id \
             AND b.fv = findings.vuln_id \
             AND (w.analysis_id IS NULL OR (b.suppress, b.created_at, b.analysis_id) > \
                  (w.suppress, w.created_at, w.analysis_id)) \
             AND {scope_b}) \
         AND ((findings.analysis_id IS NULL) <> (w.analysis_id IS NULL) \
              OR findings.analysis_id <> w.analysis_id OR findings.suppressed <> w.suppress){close}",
        scope_w = scope_holds("w"),
        scope_b = scope_holds("b"),
    )
}

/// The ids of the vulnerability group(s) an id names (`?{n}`): the id, and the groups having
/// it as an alias. (No arm of a UNION without a FROM clause: Citus refuses those in a query
/// on distributed tables. `(VALUES …)` is a FROM clause to it; both backends name its
/// column `column1`.)
pub(crate) fn vuln_group_ids(n: usize) -> String {
    format!(
        "SELECT column1 AS id FROM (VALUES (?{n})) AS the_id \
         UNION SELECT va.vuln_id FROM vuln_aliases va WHERE va.alias = ?{n}"
    )
}

/// The coverage statement of a vulnerability's findings (the id `?3`): no restriction
/// beyond the ids, which the join with `w` applies (seeking the findings by `findings_vuln`
/// when they are few among the company's). `target` as in [`recover_sql`]: SQLite, without
/// statistics, would otherwise walk all of the company's findings by the primary key once
/// per row of `w` rather than seek them by `findings_vuln`; `restriction` likewise (SQLite:
/// the ids spelt out as a restriction, so that it loops over them rather than over the
/// company's findings).
pub(crate) fn recover_vuln_sql(target: &str, restriction: Option<&str>) -> String {
    recover_sql(target, restriction, &vuln_group_ids(3))
}

/// The agents' open-finding counters (columns of `agents`) with the findings each counts
/// (a condition on a finding row `c`); suppressed findings count in none.
pub(crate) const COUNTERS: [(&str, &str); 7] = [
    ("open_critical", "c.severity = 5"),
    ("open_high", "c.severity = 4"),
    ("open_medium", "c.severity = 3"),
    ("open_low", "c.severity = 2"),
    ("open_unknown", "c.severity <= 1"),
    ("open_kev", "c.kev"),
    ("open_fixable", "c.fixable"),
];

/// [`recover_vuln_sql`] that also moves the counters of the agents whose findings it
/// suppresses or brings back, in the same statement (PostgreSQL: data-modifying `WITH`s),
/// by the difference the changed rows make — rather than recounting every finding of each
/// of those agents afterwards (issue 13: recounting 1,000 hosts after an analysis covering
/// 100,000 findings took 0.4-0.5 s of its 1.1-1.4 s).
///
/// An `UPDATE … RETURNING` gives a row's new values only: which changed rows were
/// suppressed before is read from `olds`, the open suppressed findings of the ids in the
/// statement's snapshot (taken before the update, as every part of one statement sees
/// it) — none when an analysis is created, its findings when it expires. A changed open
/// finding now suppressed that was not counts −1 in each of its counters; one back from
/// suppression +1; a change of covering analysis alone, nothing.
pub(crate) fn recover_vuln_counting_sql() -> String {
    let sums: Vec<String> = COUNTERS
        .iter()
        .enumerate()
        .map(|(i, (_, cond))| format!("sum(c.dv) FILTER (WHERE {cond}) AS d{i}"))
        .collect();
    let sets: Vec<String> = COUNTERS
        .iter()
        .enumerate()
        .map(|(i, (col, _))| format!("{col} = a.{col} + coalesce(d.d{i}, 0)"))
        .collect();
    let open = "\
        , olds AS MATERIALIZED (SELECT o.agent_id, o.software_key, o.vuln_id, o.severity, \
          o.kev, o.fixable FROM findings o \
          WHERE o.company_id = ?1 AND o.vuln_id IN (SELECT ids.id FROM ids) \
          AND o.suppressed = TRUE AND o.resolved_at IS NULL), changed AS (";
    // Each changed open finding's difference (`dv`), in one of three ways, whichever holds
    // (the others' conditions are one-time filters that keep them from running):
    // - nothing was suppressed before (an analysis created): each changed finding now
    //   suppressed leaves the counts;
    // - something was, and no analysis left suppresses (an expiry, a withdrawal): each
    //   formerly suppressed finding is back;
    // - else each changed finding and each formerly suppressed one meet by key in a
    //   grouping (`ch`: changed, `ns`: suppressed now, `os`: before), not a join: with
    //   stale statistics the planner took the two 100,000-row sets for a few rows each and
    //   joined them in a nested loop (minutes); a grouping stays linear whatever it guesses.
    let close = format!(
        " RETURNING findings.agent_id, findings.software_key, findings.vuln_id, \
         findings.severity, findings.kev, findings.fixable, findings.suppressed, \
         findings.resolved_at IS NULL AS open), \
         d AS (SELECT c.agent_id, {sums} FROM (\
           SELECT x.agent_id, x.severity, x.kev, x.fixable, -1 AS dv FROM changed x \
           WHERE x.open AND x.suppressed AND NOT EXISTS (SELECT 1 FROM olds) \
           UNION ALL SELECT o.agent_id, o.severity, o.kev, o.fixable, 1 FROM olds o \
           WHERE NOT EXISTS (SELECT 1 FROM w WHERE w.suppress) \
           UNION ALL SELECT g.agent_id, g.severity, g.kev, g.fixable, \
             CASE WHEN g.ns THEN -1 ELSE 1 END FROM (SELECT u.agent_id, \
             max(u.severity) AS severity, bool_or(u.kev) AS kev, bool_or(u.fixable) AS fixable, \
             bool_or(u.ch) AS ch, bool_or(u.ns) AS ns, bool_or(u.os) AS os \
             FROM (SELECT x.agent_id, x.software_key, x.vuln_id, x.severity, x.kev, \
                   x.fixable, TRUE AS ch, x.suppressed AS ns, FALSE AS os \
                   FROM changed x WHERE x.open \
                   UNION ALL SELECT o.agent_id, o.software_key, o.vuln_id, o.severity, o.kev, \
                   o.fixable, FALSE, FALSE, TRUE FROM olds o) u \
             WHERE EXISTS (SELECT 1 FROM olds) AND EXISTS (SELECT 1 FROM w WHERE w.suppress) \
             GROUP BY u.agent_id, u.software_key, u.vuln_id) g \
           WHERE g.ch AND g.ns <> g.os) c GROUP BY c.agent_id) \
         UPDATE agents a SET {sets} FROM d WHERE a.company_id = ?1 AND a.agent_id = d.agent_id",
        sums = sums.join(", "),
        sets = sets.join(", "),
    );
    recover_sql_with("findings", None, &vuln_group_ids(3), open, &close)
}

/// The coverage statement of some agents' findings (new findings, or tags changed): `agents`
/// gives the condition on `<table>.agent_id` (its parameters from `?3`).
pub(crate) fn recover_agents_sql(agents: impl Fn(&str) -> String) -> String {
    recover_sql(
        "findings",
        Some(&agents("findings")),
        &format!(
            "SELECT DISTINCT f.vuln_id AS id FROM findings f WHERE f.company_id = ?1 AND {}",
            agents("f")
        ),
    )
}

/// The vulnerability group an id or alias names (`?1`), among the vulnerabilities matched
/// here (the id itself first), or else the id itself when it is an advisory of the knowledge
/// base not matched yet: an analysis of it covers the findings of whichever group comes to
/// have that id or alias (coverage compares aliases too).
pub(crate) const RESOLVE_VULN: &str =
    "SELECT c.vuln_id FROM (SELECT v.vuln_id, 0 AS pref FROM vulns v WHERE v.vuln_id = ?1 \
     UNION SELECT al.vuln_id, 1 AS pref FROM vuln_aliases al WHERE al.alias = ?1 \
     UNION SELECT k.id, 2 AS pref FROM kb_advisories k WHERE k.id = ?1) c \
     ORDER BY c.pref, c.vuln_id LIMIT 1";

/// Checks the vulnerability id of a new analysis.
pub(crate) fn check_vuln_id(id: &str) -> Result<()> {
    check_text("vuln_id", id, MAX_TEXT_LEN)
}

pub(crate) fn unknown_vuln(id: &str) -> StoreError {
    invalid(
        "vuln_id",
        format!(
            "unknown vulnerability {id:?}: no advisory of the knowledge base matched by this \
             server has it as its id or an alias"
        ),
    )
}

pub(crate) fn unknown_agent(id: AgentId) -> StoreError {
    invalid(
        "scope.agent_ids",
        format!("no agent {} in this company", id.0),
    )
}

/// The actor of changes the store makes by itself (expiry).
pub(crate) fn system_actor() -> Actor {
    Actor {
        kind: "system".into(),
        token_id: None,
        role: None,
    }
}

/// An SLA policy from columns `critical_days, high_days, medium_days, low_days,
/// unknown_days, kev_uses_cisa_due_date` (0-5).
pub(crate) fn sla_from_row(c: &impl Cols) -> Result<crate::sla::SlaPolicy> {
    let d = |i: usize| -> Result<u32> {
        u32::try_from(c.int(i)?).map_err(|_| StoreError::Corrupt("SLA days".into()))
    };
    Ok(crate::sla::SlaPolicy {
        critical_days: d(0)?,
        high_days: d(1)?,
        medium_days: d(2)?,
        low_days: d(3)?,
        unknown_days: d(4)?,
        kev_uses_cisa_due_date: c.bool(5)?,
    })
}

pub(crate) fn check_sla(p: &crate::sla::SlaPolicy) -> Result<()> {
    match p.problem() {
        Some((field, message)) => Err(invalid(field, message)),
        None => Ok(()),
    }
}

pub(crate) fn sla_audit(before: &crate::sla::SlaPolicy, after: &crate::sla::SlaPolicy) -> NewAudit {
    NewAudit {
        action: "sla.updated".into(),
        object: "sla".into(),
        before: serde_json::to_value(before).ok(),
        after: serde_json::to_value(after).ok(),
    }
}

/// The bounds of the summary's SLA counts: overdue (due by `now`) and due within 7 days.
pub(crate) fn sla_bounds(
    policy: &crate::sla::SlaPolicy,
    now: DateTime<Utc>,
) -> (crate::sla::DueBy, crate::sla::DueBy) {
    (
        policy.due_by(now),
        policy.due_by(now + chrono::Duration::days(7)),
    )
}

/// An error of the `i`th analysis of an import, its field prefixed with its place.
pub(crate) fn in_item(i: usize, e: StoreError) -> StoreError {
    match e {
        StoreError::Invalid { field, message } => StoreError::Invalid {
            field: "statements",
            message: format!("statement {i}: {field}: {message}"),
        },
        other => other,
    }
}

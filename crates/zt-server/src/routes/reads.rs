//! Company-scoped reads. Every handler first turns the token and the path's company id into
//! a company it may read (404 for a foreign or unknown id, exactly alike).

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::IntoParams;
use zt_advisory::Severity;
use zt_store::model::{
    Agent, AgentFilter, AgentId, AgentSort, AppRow, CompanyId, FindingFilter, FindingRow,
    FindingSort, FindingStatus, Page, PageRequest, SortOrder, Summary, VulnDetail,
};

use super::ApiQuery;
use crate::auth::{authenticate, company_access};
use crate::error::{ApiError, ApiResult};
use crate::export::{csv_response, wants_csv, CsvRow};
use crate::openapi::{E400, E401, E403, E404, E429};
use crate::state::AppState;

pub(super) async fn scope(
    state: &AppState,
    headers: &HeaderMap,
    company_id: &str,
) -> ApiResult<CompanyId> {
    let principal = authenticate(state, headers).await?;
    let company_id = company_access(state, &principal, company_id).await?;
    state.limits.check(&principal).await?;
    Ok(company_id)
}

/// Paging of every list: `limit` items (default 100) after `cursor`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Items per page (default 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// The `next_cursor` of the previous page.
    #[param(value_type = Option<String>, max_length = 4096)]
    cursor: Option<String>,
}

impl PageQuery {
    pub(crate) fn page(&self) -> ApiResult<PageRequest> {
        let limit = match self.limit.as_deref() {
            None => 0,
            Some(s) => match s.parse::<u32>() {
                Ok(n) if (1..=1000).contains(&n) && s.bytes().all(|b| b.is_ascii_digit()) => n,
                _ => {
                    return Err(ApiError::invalid_request(
                        "limit",
                        "must be a number from 1 to 1000",
                    ))
                }
            },
        };
        let cursor = self.cursor.clone().filter(|c| !c.is_empty());
        if cursor.as_ref().is_some_and(|c| c.len() > 4096) {
            return Err(ApiError::invalid_request("cursor", "too long"));
        }
        Ok(PageRequest { limit, cursor })
    }
}

pub(crate) fn parse_bool(value: Option<&str>, name: &'static str) -> ApiResult<Option<bool>> {
    match value {
        None => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(_) => Err(ApiError::invalid_request(name, "must be true or false")),
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[allow(dead_code)] // the shape of `Page<Agent>`, for the document
pub struct AgentPage {
    items: Vec<Agent>,
    next_cursor: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct AppPage {
    items: Vec<AppRow>,
    next_cursor: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct FindingPage {
    items: Vec<FindingRow>,
    next_cursor: Option<String>,
}

/// Counts of the company's agents, apps and open findings.
#[utoipa::path(get, path = "/api/v1/companies/{company_id}/summary", tag = "reads",
    params(("company_id" = Uuid, Path, description = "The company")),
    responses((status = 200, description = "Summary", body = Summary), E401, E403, E404, E429),
    security(("operator" = []), ("company_admin" = []), ("company_viewer" = [])))]
pub async fn summary(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(company_id): Path<String>,
) -> ApiResult<Response> {
    let company_id = scope(&state, &headers, &company_id).await?;
    Ok(Json(state.store.summary(company_id).await?).into_response())
}

/// Filters and order of the hosts list; filters combine with AND.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AgentsQuery {
    /// Substring of the hostname (ASCII case ignored).
    #[param(value_type = Option<String>, max_length = 200)]
    q: Option<String>,
    /// `hostname` (default, A→Z), `risk` (most KEV, then critical, high, medium, low findings
    /// first), `last_seen` (most recently seen first) or `os` (by OS name, then hostname).
    #[param(value_type = Option<AgentSort>)]
    sort: Option<String>,
    /// Reverses the sort's natural direction with `asc` or `desc`.
    #[param(value_type = Option<SortOrder>)]
    order: Option<String>,
    /// Only stale hosts (true) or only fresh ones (false): not heard of (no report accepted,
    /// or since enrollment) for longer than the server's threshold (`--stale-after-hours`,
    /// default three report intervals).
    #[param(value_type = Option<bool>)]
    stale: Option<String>,
    /// Only hosts of this OS id (`debian`, `ubuntu`, `alpine`, `windows`, ...).
    #[param(value_type = Option<String>, max_length = 200)]
    os: Option<String>,
    /// Only hosts carrying this tag (set through the API or sent by the host's agent).
    #[param(value_type = Option<String>, max_length = 64)]
    tag: Option<String>,
    /// `csv` exports the hosts that match (every one, or `limit` of them from `cursor`).
    #[param(value_type = Option<ExportFormat>)]
    format: Option<String>,
}

/// A search text of at most 200 characters (empty: none).
pub(crate) fn search_text(value: Option<&str>, name: &str) -> ApiResult<Option<String>> {
    match value.filter(|q| !q.is_empty()) {
        None => Ok(None),
        Some(q) if q.chars().count() > 200 => {
            Err(ApiError::invalid_request(name, "at most 200 characters"))
        }
        Some(q) => Ok(Some(q.to_string())),
    }
}

/// `tag=`: one tag (empty: none).
pub(crate) fn tag_filter(value: Option<&str>) -> ApiResult<Option<String>> {
    match value.filter(|t| !t.is_empty()) {
        None => Ok(None),
        Some(t) if t.chars().count() > 64 => {
            Err(ApiError::invalid_request("tag", "at most 64 characters"))
        }
        Some(t) => Ok(Some(t.to_string())),
    }
}

/// `order=asc|desc`.
pub(crate) fn parse_order(value: Option<&str>) -> ApiResult<Option<SortOrder>> {
    match value {
        None => Ok(None),
        Some("asc") => Ok(Some(SortOrder::Asc)),
        Some("desc") => Ok(Some(SortOrder::Desc)),
        Some(_) => Err(ApiError::invalid_request("order", "asc or desc")),
    }
}

impl AgentsQuery {
    pub(crate) fn filter(&self, state: &AppState) -> ApiResult<AgentFilter> {
        Ok(AgentFilter {
            query: search_text(self.q.as_deref(), "q")?,
            os: search_text(self.os.as_deref(), "os")?,
            stale: parse_bool(self.stale.as_deref(), "stale")?,
            stale_before: Some(state.config.stale_before(chrono::Utc::now())),
            tag: tag_filter(self.tag.as_deref())?,
            sort: match self.sort.as_deref() {
                None | Some("hostname") => AgentSort::Hostname,
                Some("risk") => AgentSort::Risk,
                Some("last_seen") => AgentSort::LastSeen,
                Some("os") => AgentSort::Os,
                Some(_) => {
                    return Err(ApiError::invalid_request(
                        "sort",
                        "hostname, risk, last_seen or os",
                    ))
                }
            },
            order: parse_order(self.order.as_deref())?,
        })
    }
}

/// `severity=high,critical`: the severities asked for (`none` counts as `unknown`).
pub(crate) fn parse_severities(list: Option<&str>) -> ApiResult<Vec<Severity>> {
    let mut out = Vec::new();
    for part in list.into_iter().flat_map(|l| l.split(',')) {
        let severity = match part {
            "critical" => Severity::Critical,
            "high" => Severity::High,
            "medium" => Severity::Medium,
            "low" => Severity::Low,
            "unknown" | "none" => Severity::Unknown,
            _ => {
                return Err(ApiError::invalid_request(
                    "severity",
                    "comma-separated list of critical, high, medium, low, unknown",
                ))
            }
        };
        if !out.contains(&severity) {
            out.push(severity);
        }
    }
    Ok(out)
}

/// Marks the agent stale when it was last heard of before the threshold.
/// A decommissioned agent is not expected to report any more, so it is never stale.
pub(crate) fn mark_stale(agent: &mut Agent, stale_before: chrono::DateTime<chrono::Utc>) {
    agent.stale =
        !agent.decommissioned && agent.last_seen_at.unwrap_or(agent.enrolled_at) < stale_before;
}

/// The company's hosts: searched, filtered and sorted; `format=csv` exports them.
#[utoipa::path(get, path = "/api/v1/companies/{company_id}/agents", tag = "reads",
    params(("company_id" = Uuid, Path, description = "The company"), AgentsQuery, PageQuery),
    responses(
        (status = 200, description = "A page of hosts (JSON), or the hosts as CSV", content(
            (AgentPage = "application/json"),
            (String = "text/csv"),
        )),
        E400, E401, E403, E404, E429,
    ),
    security(("operator" = []), ("company_admin" = []), ("company_viewer" = [])))]
pub async fn agents(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(company_id): Path<String>,
    ApiQuery(query): ApiQuery<AgentsQuery>,
    ApiQuery(paging): ApiQuery<PageQuery>,
) -> ApiResult<Response> {
    let company_id = scope(&state, &headers, &company_id).await?;
    let filter = query.filter(&state)?;
    let page = paging.page()?;
    let stale_before = filter.stale_before.unwrap_or_else(chrono::Utc::now);
    let store = state.store.clone();
    let fetch = move |page: PageRequest| {
        let (store, filter) = (store.clone(), filter.clone());
        async move {
            let mut agents: Page<Agent> = store.list_agents(company_id, &filter, &page).await?;
            for a in &mut agents.items {
                mark_stale(a, stale_before);
            }
            Ok::<_, ApiError>(agents)
        }
    };
    if wants_csv(query.format.as_deref())? {
        return csv_response("hosts.csv", page, fetch).await;
    }
    Ok(Json(fetch(page).await?).into_response())
}

impl CsvRow for Agent {
    fn header() -> &'static [&'static str] {
        &[
            "agent_id",
            "hostname",
            "os_id",
            "os_version",
            "os_name",
            "arch",
            "agent_version",
            "enrolled_at",
            "last_seen_at",
            "last_report_at",
            "stale",
            "apps",
            "critical",
            "high",
            "medium",
            "low",
            "unknown",
            "kev",
            "fixable",
        ]
    }

    fn cells(&self) -> Vec<String> {
        let f = &self.findings;
        let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
            t.map(|t| t.to_rfc3339()).unwrap_or_default()
        };
        vec![
            self.agent_id.to_string(),
            self.hostname.clone(),
            self.os.id.clone(),
            self.os.version_id.clone(),
            self.os.name.clone(),
            self.arch.clone(),
            self.agent_version.clone(),
            self.enrolled_at.to_rfc3339(),
            time(self.last_seen_at),
            time(self.last_report_at),
            self.stale.to_string(),
            self.apps.to_string(),
            f.critical.to_string(),
            f.high.to_string(),
            f.medium.to_string(),
            f.low.to_string(),
            f.unknown.to_string(),
            self.kev.to_string(),
            self.fixable.to_string(),
        ]
    }
}

/// The apps installed on an agent, by name.
#[utoipa::path(get, path = "/api/v1/companies/{company_id}/agents/{agent_id}/apps", tag = "reads",
    params(
        ("company_id" = Uuid, Path, description = "The company"),
        ("agent_id" = Uuid, Path, description = "An agent of the company"),
        PageQuery,
    ),
    responses((status = 200, description = "A page of apps", body = AppPage), E400, E401, E403, E404, E429),
    security(("operator" = []), ("company_admin" = []), ("company_viewer" = [])))]
pub async fn apps(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((company_id, agent_id)): Path<(String, String)>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> ApiResult<Response> {
    let company_id = scope(&state, &headers, &company_id).await?;
    let agent_id: AgentId = agent_id.parse().map_err(|_| ApiError::not_found())?;
    let page = query.page()?;
    let apps = state
        .store
        .list_apps(company_id, agent_id, &page)
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(apps).into_response())
}

/// The filters of the findings list; all optional, combined with AND.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FindingsQuery {
    /// Any of these severities, comma-separated (`none` counts as `unknown`).
    #[param(value_type = Option<String>, pattern = r"^(critical|high|medium|low|unknown|none)(,(critical|high|medium|low|unknown|none))*$")]
    severity: Option<String>,
    /// Only findings whose vulnerability is (or is not) in CISA KEV.
    #[param(value_type = Option<bool>)]
    kev: Option<String>,
    /// Only findings with (or without) a known fixed version.
    #[param(value_type = Option<bool>)]
    fixable: Option<String>,
    /// Substring of the package name, the vulnerability id or an alias, or the hostname.
    #[param(value_type = Option<String>, max_length = 200)]
    q: Option<String>,
    /// Only this agent's findings.
    #[param(value_type = Option<Uuid>)]
    agent_id: Option<String>,
    /// Only findings of this vulnerability (exact id).
    #[param(value_type = Option<String>, max_length = 200)]
    vulnerability: Option<String>,
    /// Open (default), resolved or all findings.
    #[param(value_type = Option<FindingStatus>)]
    status: Option<String>,
    /// `severity` (default: most severe first), `first_seen` (newest first), `epss` or
    /// `cvss` (highest first, none last), `hostname` (A→Z).
    #[param(value_type = Option<FindingSort>)]
    sort: Option<String>,
    /// Reverses the sort's natural direction with `asc` or `desc`.
    #[param(value_type = Option<SortOrder>)]
    order: Option<String>,
    /// `csv` exports the findings that match (every one, or `limit` of them from `cursor`).
    #[param(value_type = Option<ExportFormat>)]
    format: Option<String>,
    /// Findings an analysis suppresses: `exclude` (default), `include` or `only`.
    #[param(value_type = Option<zt_store::analysis::SuppressedFilter>)]
    suppressed: Option<String>,
    /// Only findings on hosts carrying this tag.
    #[param(value_type = Option<String>, max_length = 64)]
    tag: Option<String>,
    /// Only findings past their SLA due date: `true` (the only value; leave it out for every
    /// finding).
    #[param(value_type = Option<String>, pattern = "^true$")]
    overdue: Option<String>,
    /// Only findings due within this many days (overdue ones included).
    #[param(value_type = Option<u32>, minimum = 0, maximum = 3650)]
    due_within_days: Option<String>,
}

impl FindingsQuery {
    /// The SLA filter the query asks for, under the company's policy.
    pub(crate) fn due_by(
        &self,
        policy: &zt_store::sla::SlaPolicy,
        now: chrono::DateTime<chrono::Utc>,
    ) -> ApiResult<Option<zt_store::sla::DueBy>> {
        let overdue = parse_bool(self.overdue.as_deref(), "overdue")?;
        let within = match self.due_within_days.as_deref() {
            None | Some("") => None,
            Some(s) => match s.parse::<u32>() {
                Ok(n) if n <= 3650 && s.bytes().all(|b| b.is_ascii_digit()) => Some(n),
                _ => {
                    return Err(ApiError::invalid_request(
                        "due_within_days",
                        "must be a number of days from 0 to 3650",
                    ))
                }
            },
        };
        if overdue == Some(false) {
            return Err(ApiError::invalid_request(
                "overdue",
                "only overdue=true filters (leave it out for every finding)",
            ));
        }
        Ok(match (overdue, within) {
            (Some(true), _) => Some(policy.due_by(now)),
            (_, Some(days)) => Some(policy.due_by(now + chrono::Duration::days(i64::from(days)))),
            _ => None,
        })
    }
}

#[derive(utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)] // documents the values of `format`
pub(crate) enum ExportFormat {
    Json,
    Csv,
}

impl FindingsQuery {
    pub(crate) fn filter(&self) -> ApiResult<FindingFilter> {
        let mut filter = FindingFilter {
            severities: parse_severities(self.severity.as_deref())?,
            ..Default::default()
        };
        filter.kev = parse_bool(self.kev.as_deref(), "kev")?;
        filter.fixable = parse_bool(self.fixable.as_deref(), "fixable")?;
        if let Some(q) = self.q.as_deref().filter(|q| !q.is_empty()) {
            if q.chars().count() > 200 {
                return Err(ApiError::invalid_request("q", "at most 200 characters"));
            }
            filter.query = Some(q.to_string());
        }
        if let Some(a) = self.agent_id.as_deref() {
            filter.agent_id = Some(
                a.parse::<AgentId>()
                    .map_err(|_| ApiError::invalid_request("agent_id", "must be a UUID"))?,
            );
        }
        if let Some(v) = self.vulnerability.as_deref().filter(|v| !v.is_empty()) {
            if v.chars().count() > 200 {
                return Err(ApiError::invalid_request(
                    "vulnerability",
                    "at most 200 characters",
                ));
            }
            filter.vuln_id = Some(v.to_string());
        }
        filter.suppressed = match self.suppressed.as_deref() {
            None | Some("") | Some("exclude") => zt_store::analysis::SuppressedFilter::Exclude,
            Some("include") => zt_store::analysis::SuppressedFilter::Include,
            Some("only") => zt_store::analysis::SuppressedFilter::Only,
            Some(_) => {
                return Err(ApiError::invalid_request(
                    "suppressed",
                    "exclude, include or only",
                ))
            }
        };
        if let Some(t) = self.tag.as_deref().filter(|t| !t.is_empty()) {
            if t.chars().count() > 64 {
                return Err(ApiError::invalid_request("tag", "at most 64 characters"));
            }
            filter.tag = Some(t.to_string());
        }
        filter.status = match self.status.as_deref() {
            None | Some("open") => FindingStatus::Open,
            Some("resolved") => FindingStatus::Resolved,
            Some("all") => FindingStatus::All,
            Some(_) => return Err(ApiError::invalid_request("status", "open, resolved or all")),
        };
        filter.sort = match self.sort.as_deref() {
            None | Some("severity") => FindingSort::Severity,
            Some("first_seen") => FindingSort::FirstSeen,
            Some("epss") => FindingSort::Epss,
            Some("cvss") => FindingSort::Cvss,
            Some("hostname") => FindingSort::Hostname,
            Some(_) => {
                return Err(ApiError::invalid_request(
                    "sort",
                    "severity, first_seen, epss, cvss or hostname",
                ))
            }
        };
        filter.order = parse_order(self.order.as_deref())?;
        Ok(filter)
    }
}

/// The company's findings, most severe first (or as `sort` says); `format=csv` exports them.
#[utoipa::path(get, path = "/api/v1/companies/{company_id}/findings", tag = "reads",
    params(("company_id" = Uuid, Path, description = "The company"), FindingsQuery, PageQuery),
    responses(
        (status = 200, description = "A page of findings (JSON), or the findings as CSV", content(
            (FindingPage = "application/json"),
            (String = "text/csv"),
        )),
        E400, E401, E403, E404, E429,
    ),
    security(("operator" = []), ("company_admin" = []), ("company_viewer" = [])))]
pub async fn findings(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(company_id): Path<String>,
    ApiQuery(query): ApiQuery<FindingsQuery>,
    ApiQuery(paging): ApiQuery<PageQuery>,
) -> ApiResult<Response> {
    let company_id = scope(&state, &headers, &company_id).await?;
    let mut filter = query.filter()?;
    let page = paging.page()?;
    let policy = state.store.sla_policy(company_id).await?;
    let now = chrono::Utc::now();
    filter.due_by = query.due_by(&policy, now)?;
    let store = state.store.clone();
    let fetch = move |page: PageRequest| {
        let (store, filter) = (store.clone(), filter.clone());
        async move {
            let mut rows = store.list_findings(company_id, &filter, &page).await?;
            policy.annotate(&mut rows.items, now);
            Ok::<_, ApiError>(rows)
        }
    };
    if wants_csv(query.format.as_deref())? {
        return csv_response("findings.csv", page, fetch).await;
    }
    Ok(Json(fetch(page).await?).into_response())
}

impl CsvRow for FindingRow {
    fn header() -> &'static [&'static str] {
        &[
            "agent_id",
            "hostname",
            "package",
            "version",
            "ecosystem",
            "source",
            "vulnerability",
            "aliases",
            "severity",
            "cvss_score",
            "cvss_vector",
            "fixed_versions",
            "kev",
            "epss",
            "first_seen",
            "resolved_at",
            "resolution",
        ]
    }

    fn cells(&self) -> Vec<String> {
        let v = &self.vulnerability;
        vec![
            self.agent_id.to_string(),
            self.hostname.clone(),
            self.package.name.clone(),
            self.package.version.clone(),
            self.package.ecosystem.clone(),
            self.package.source.clone(),
            v.id.clone(),
            v.aliases.join(" "),
            v.severity.as_str().to_string(),
            v.cvss
                .as_ref()
                .map(|c| c.score.to_string())
                .unwrap_or_default(),
            v.cvss
                .as_ref()
                .map(|c| c.vector.clone())
                .unwrap_or_default(),
            self.fixed_versions.join(" "),
            v.kev.to_string(),
            v.epss.map(|e| e.to_string()).unwrap_or_default(),
            self.first_seen.to_rfc3339(),
            self.resolved_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
            self.resolution.clone().unwrap_or_default(),
        ]
    }
}

/// A vulnerability (by id or alias) with its references, packages, fix and one page of the
/// company's hosts it hits (open findings first, then resolved ones, by hostname; the next
/// page with `cursor`); 404 unless the company has or had a finding of it.
#[utoipa::path(get, path = "/api/v1/companies/{company_id}/vulnerabilities/{vuln_id}", tag = "reads",
    params(
        ("company_id" = Uuid, Path, description = "The company"),
        ("vuln_id" = String, Path, description = "A vulnerability id or alias", min_length = 1, max_length = 200),
        PageQuery,
    ),
    responses((status = 200, description = "Vulnerability", body = VulnDetail), E400, E401, E403, E404, E429),
    security(("operator" = []), ("company_admin" = []), ("company_viewer" = [])))]
pub async fn vulnerability(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((company_id, vuln_id)): Path<(String, String)>,
    ApiQuery(paging): ApiQuery<PageQuery>,
) -> ApiResult<Response> {
    let company_id = scope(&state, &headers, &company_id).await?;
    if vuln_id.is_empty() || vuln_id.len() > 200 {
        return Err(ApiError::not_found());
    }
    let page = paging.page()?;
    let detail = state
        .store
        .vulnerability(company_id, &vuln_id, &page)
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(detail).into_response())
}

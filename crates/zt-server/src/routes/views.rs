//! The dashboard's reads (DESIGN.md "More reads"): a host's detail and report history, the
//! company's software and vulnerabilities, trends, and the operator's overview of every
//! company. Company-scoped like every read: a foreign or unknown id answers 404.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use utoipa::IntoParams;
use zt_store::model::{
    Agent, AgentId, CompanyOverview, PageRequest, ReportRecord, SoftwareFilter, SoftwareRow,
    SoftwareSort, SortOrder, TrendPoint, VulnFilter, VulnRow, VulnSort,
};

use super::reads::{
    mark_stale, parse_bool, parse_order, scope, search_text, ExportFormat, PageQuery,
};
use super::ApiQuery;
use crate::auth::authenticate;
use crate::error::{ApiError, ApiResult};
use crate::export::{csv_response, wants_csv, CsvRow};
use crate::openapi::{E400, E401, E403, E404, E429};
use crate::state::AppState;

/// Days a trend covers at most (the daily points are kept that long).
pub const TREND_DAYS_MAX: u32 = 400;

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[allow(dead_code)] // the shapes of `Page<…>`, for the document
pub struct ReportPage {
    items: Vec<ReportRecord>,
    next_cursor: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct SoftwarePage {
    items: Vec<SoftwareRow>,
    next_cursor: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct VulnPage {
    items: Vec<VulnRow>,
    next_cursor: Option<String>,
}

fn parse_agent_id(agent_id: &str) -> ApiResult<AgentId> {
    agent_id.parse().map_err(|_| ApiError::not_found())
}

/// One host: OS, when last seen and reported, its apps and open findings by severity, KEV
/// and fixable counts, and whether it is stale.
#[utoipa::path(get, path = "/api/v1/companies/{company_id}/agents/{agent_id}", tag = "reads",
    params(
        ("company_id" = Uuid, Path, description = "The company"),
        ("agent_id" = Uuid, Path, description = "An agent of the company"),
    ),
    responses((status = 200, description = "The host", body = Agent), E401, E403, E404, E429),
    security(("operator" = []), ("company_admin" = []), ("company_viewer" = [])))]
pub async fn agent(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((company_id, agent_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let company_id = scope(&state, &headers, &company_id).await?;
    let agent_id = parse_agent_id(&agent_id)?;
    let mut agent = state
        .store
        .get_agent(company_id, agent_id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    mark_stale(&mut agent, state.config.stale_before(Utc::now()));
    Ok(Json(agent).into_response())
}

/// A host's reports, newest first: when each was collected, accepted and processed, and
/// what came of it. Kept as long as the queue's retention (`--retention-hours`).
#[utoipa::path(get, path = "/api/v1/companies/{company_id}/agents/{agent_id}/reports", tag = "reads",
    params(
        ("company_id" = Uuid, Path, description = "The company"),
        ("agent_id" = Uuid, Path, description = "An agent of the company"),
        PageQuery,
    ),
    responses((status = 200, description = "A page of reports", body = ReportPage), E400, E401, E403, E404, E429),
    security(("operator" = []), ("company_admin" = []), ("company_viewer" = [])))]
pub async fn agent_reports(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((company_id, agent_id)): Path<(String, String)>,
    ApiQuery(paging): ApiQuery<PageQuery>,
) -> ApiResult<Response> {
    let company_id = scope(&state, &headers, &company_id).await?;
    let agent_id = parse_agent_id(&agent_id)?;
    let page = paging.page()?;
    let reports = state
        .store
        .list_reports(company_id, agent_id, &page)
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(reports).into_response())
}

/// Filters and order of the software list; filters combine with AND.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SoftwareQuery {
    /// Substring of the name (ASCII case ignored).
    #[param(value_type = Option<String>, max_length = 200)]
    q: Option<String>,
    /// Only versions with (true) or without (false) a known vulnerability.
    #[param(value_type = Option<bool>)]
    vulnerable: Option<String>,
    /// `hosts` (default: most hosts first), `name` (A→Z, then version) or `risk` (most KEV,
    /// then critical, high, medium, low vulnerabilities first).
    #[param(value_type = Option<SoftwareSort>)]
    sort: Option<String>,
    /// Reverses the sort's natural direction with `asc` or `desc`.
    #[param(value_type = Option<SortOrder>)]
    order: Option<String>,
    /// `csv` exports the versions that match (every one, or `limit` of them from `cursor`).
    #[param(value_type = Option<ExportFormat>)]
    format: Option<String>,
}

/// The distinct software versions on the company's hosts, with how many hosts run each and
/// their known vulnerabilities by severity; `format=csv` exports them.
#[utoipa::path(get, path = "/api/v1/companies/{company_id}/software", tag = "reads",
    params(("company_id" = Uuid, Path, description = "The company"), SoftwareQuery, PageQuery),
    responses(
        (status = 200, description = "A page of software versions (JSON), or them as CSV", content(
            (SoftwarePage = "application/json"),
            (String = "text/csv"),
        )),
        E400, E401, E403, E404, E429,
    ),
    security(("operator" = []), ("company_admin" = []), ("company_viewer" = [])))]
pub async fn software(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(company_id): Path<String>,
    ApiQuery(query): ApiQuery<SoftwareQuery>,
    ApiQuery(paging): ApiQuery<PageQuery>,
) -> ApiResult<Response> {
    let company_id = scope(&state, &headers, &company_id).await?;
    let filter = SoftwareFilter {
        query: search_text(query.q.as_deref(), "q")?,
        vulnerable: parse_bool(query.vulnerable.as_deref(), "vulnerable")?,
        sort: match query.sort.as_deref() {
            None | Some("hosts") => SoftwareSort::Hosts,
            Some("name") => SoftwareSort::Name,
            Some("risk") => SoftwareSort::Risk,
            Some(_) => return Err(ApiError::invalid_request("sort", "hosts, name or risk")),
        },
        order: parse_order(query.order.as_deref())?,
    };
    let page = paging.page()?;
    let store = state.store.clone();
    let fetch = move |page: PageRequest| {
        let (store, filter) = (store.clone(), filter.clone());
        async move { Ok::<_, ApiError>(store.list_software(company_id, &filter, &page).await?) }
    };
    if wants_csv(query.format.as_deref())? {
        return csv_response("software.csv", page, fetch).await;
    }
    Ok(Json(fetch(page).await?).into_response())
}

impl CsvRow for SoftwareRow {
    fn header() -> &'static [&'static str] {
        &[
            "name",
            "version",
            "ecosystem",
            "source",
            "source_name",
            "purl",
            "hosts",
            "critical",
            "high",
            "medium",
            "low",
            "unknown",
            "kev",
        ]
    }

    fn cells(&self) -> Vec<String> {
        let v = &self.vulnerabilities;
        vec![
            self.name.clone(),
            self.version.clone(),
            self.ecosystem.clone(),
            self.source.clone(),
            self.source_name.clone().unwrap_or_default(),
            self.purl.clone().unwrap_or_default(),
            self.hosts.to_string(),
            v.critical.to_string(),
            v.high.to_string(),
            v.medium.to_string(),
            v.low.to_string(),
            v.unknown.to_string(),
            self.kev.to_string(),
        ]
    }
}

/// Filters and order of the vulnerabilities list; filters combine with AND.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VulnsQuery {
    /// Any of these severities, comma-separated (`none` counts as `unknown`).
    #[param(value_type = Option<String>, pattern = r"^(critical|high|medium|low|unknown|none)(,(critical|high|medium|low|unknown|none))*$")]
    severity: Option<String>,
    /// Only vulnerabilities in (or not in) CISA KEV.
    #[param(value_type = Option<bool>)]
    kev: Option<String>,
    /// Substring of the id or an alias, or of an affected package's name.
    #[param(value_type = Option<String>, max_length = 200)]
    q: Option<String>,
    /// `severity` (default: most severe first, then newest id), `hosts` (most affected hosts
    /// first), `epss` or `cvss` (highest first, none last).
    #[param(value_type = Option<VulnSort>)]
    sort: Option<String>,
    /// Reverses the sort's natural direction with `asc` or `desc`.
    #[param(value_type = Option<SortOrder>)]
    order: Option<String>,
    /// `csv` exports the vulnerabilities that match (every one, or `limit` of them from
    /// `cursor`).
    #[param(value_type = Option<ExportFormat>)]
    format: Option<String>,
}

/// One row per vulnerability with open findings in the company: id, aliases, severity,
/// CVSS, EPSS, KEV, affected hosts and findings, packages and fixed versions;
/// `format=csv` exports them.
#[utoipa::path(get, path = "/api/v1/companies/{company_id}/vulnerabilities", tag = "reads",
    params(("company_id" = Uuid, Path, description = "The company"), VulnsQuery, PageQuery),
    responses(
        (status = 200, description = "A page of vulnerabilities (JSON), or them as CSV", content(
            (VulnPage = "application/json"),
            (String = "text/csv"),
        )),
        E400, E401, E403, E404, E429,
    ),
    security(("operator" = []), ("company_admin" = []), ("company_viewer" = [])))]
pub async fn vulnerabilities(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(company_id): Path<String>,
    ApiQuery(query): ApiQuery<VulnsQuery>,
    ApiQuery(paging): ApiQuery<PageQuery>,
) -> ApiResult<Response> {
    let company_id = scope(&state, &headers, &company_id).await?;
    let filter = VulnFilter {
        severities: super::reads::parse_severities(query.severity.as_deref())?,
        kev: parse_bool(query.kev.as_deref(), "kev")?,
        query: search_text(query.q.as_deref(), "q")?,
        sort: match query.sort.as_deref() {
            None | Some("severity") => VulnSort::Severity,
            Some("hosts") => VulnSort::Hosts,
            Some("epss") => VulnSort::Epss,
            Some("cvss") => VulnSort::Cvss,
            Some(_) => {
                return Err(ApiError::invalid_request(
                    "sort",
                    "severity, hosts, epss or cvss",
                ))
            }
        },
        order: parse_order(query.order.as_deref())?,
    };
    let page = paging.page()?;
    let store = state.store.clone();
    let fetch = move |page: PageRequest| {
        let (store, filter) = (store.clone(), filter.clone());
        async move {
            Ok::<_, ApiError>(
                store
                    .list_vulnerabilities(company_id, &filter, &page)
                    .await?,
            )
        }
    };
    if wants_csv(query.format.as_deref())? {
        return csv_response("vulnerabilities.csv", page, fetch).await;
    }
    Ok(Json(fetch(page).await?).into_response())
}

impl CsvRow for VulnRow {
    fn header() -> &'static [&'static str] {
        &[
            "vulnerability",
            "aliases",
            "severity",
            "cvss_score",
            "cvss_vector",
            "epss",
            "kev",
            "hosts",
            "findings",
            "packages",
            "fixed_versions",
            "summary",
        ]
    }

    fn cells(&self) -> Vec<String> {
        let v = &self.vulnerability;
        vec![
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
            v.epss.map(|e| e.to_string()).unwrap_or_default(),
            v.kev.to_string(),
            self.hosts.to_string(),
            self.findings.to_string(),
            self.packages
                .iter()
                .map(|p| format!("{}@{}", p.name, p.versions.join("|")))
                .collect::<Vec<_>>()
                .join(" "),
            self.fixed_versions.join(" "),
            v.summary.clone(),
        ]
    }
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TrendsQuery {
    /// Days back from today (UTC), today included (default 30).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 400)]
    days: Option<String>,
}

/// Daily points of the company's open findings, oldest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Trends {
    /// The days asked for.
    days: u32,
    /// One point per day with a snapshot (the janitor writes one a few times an hour; days
    /// the server did not run have none), the last one being now.
    points: Vec<TrendPoint>,
}

/// The company's open findings per day (by severity, KEV, fixable), those past their SLA due
/// date (`overdue`, and `overdue_by_severity`) and those suppressed, from daily snapshots
/// (the janitor's, counted at the time it took them): no pass over findings. Today's point
/// is the summary now.
#[utoipa::path(get, path = "/api/v1/companies/{company_id}/trends", tag = "reads",
    params(("company_id" = Uuid, Path, description = "The company"), TrendsQuery),
    responses((status = 200, description = "Daily points", body = Trends), E400, E401, E403, E404, E429),
    security(("operator" = []), ("company_admin" = []), ("company_viewer" = [])))]
pub async fn trends(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(company_id): Path<String>,
    ApiQuery(query): ApiQuery<TrendsQuery>,
) -> ApiResult<Response> {
    let company_id = scope(&state, &headers, &company_id).await?;
    let days = match query.days.as_deref() {
        None => 30,
        Some(s) => match s.parse::<u32>() {
            Ok(n) if (1..=TREND_DAYS_MAX).contains(&n) && s.bytes().all(|b| b.is_ascii_digit()) => {
                n
            }
            _ => {
                return Err(ApiError::invalid_request(
                    "days",
                    "must be a number from 1 to 400",
                ))
            }
        },
    };
    let today = Utc::now().date_naive();
    let since = today - chrono::Duration::days(i64::from(days) - 1);
    let stored = state.store.trends(company_id, since).await?;
    // Today's point is the summary now (the counters the snapshot copies), so a fresh
    // install shows a point and the last one never lags.
    let now = TrendPoint::of(today, &state.store.summary(company_id).await?);
    Ok(Json(Trends {
        days,
        points: with_today(stored, now),
    })
    .into_response())
}

/// The stored points with today's replaced (or added) by `now`.
fn with_today(mut points: Vec<TrendPoint>, now: TrendPoint) -> Vec<TrendPoint> {
    points.retain(|p| p.date < now.date);
    points.push(now);
    points
}

/// The janitor's daily snapshot: every company's point of today, and older ones pruned.
pub async fn record_trends(state: &AppState) -> zt_store::Result<u64> {
    let now = Utc::now();
    let keep_from = now.date_naive() - chrono::Duration::days(i64::from(TREND_DAYS_MAX));
    state.store.record_trends(now, keep_from).await
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Overview {
    /// Every company, by name.
    items: Vec<CompanyOverview>,
}

/// Every company with its counts (agents, apps, open findings by severity, KEV, fixable,
/// stale agents): the operator's view across companies.
#[utoipa::path(get, path = "/api/v1/overview", tag = "reads",
    responses((status = 200, description = "Every company's counts", body = Overview), E401, E403, E429),
    security(("operator" = [])))]
pub async fn overview(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    let principal = authenticate(&state, &headers).await?;
    if principal != zt_store::model::Principal::Operator {
        return Err(ApiError::forbidden("only the operator sees every company"));
    }
    state.limits.check(&principal).await?;
    let items = state
        .store
        .overview(state.config.stale_before(Utc::now()))
        .await?;
    Ok(Json(Overview { items }).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn point(date: &str, high: u64) -> TrendPoint {
        let mut p = TrendPoint::of(
            NaiveDate::parse_from_str(date, "%Y-%m-%d").unwrap(),
            &Default::default(),
        );
        p.high = high;
        p
    }

    #[test]
    fn todays_point_is_the_live_one() {
        let stored = vec![point("2026-11-30", 5), point("2026-12-01", 7)];
        let got = with_today(stored.clone(), point("2026-12-01", 9));
        assert_eq!(got, vec![point("2026-11-30", 5), point("2026-12-01", 9)]);
        let got = with_today(stored, point("2026-12-02", 1));
        assert_eq!(got.len(), 3);
        assert_eq!(with_today(Vec::new(), point("2026-12-02", 1)).len(), 1);
    }
}

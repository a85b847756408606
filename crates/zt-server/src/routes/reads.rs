//! Company-scoped reads. Every handler first turns the token and the path's company id into
//! a company it may read (404 for a foreign or unknown id, exactly alike).

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::IntoParams;
use zt_advisory::Severity;
use zt_store::model::{
    Agent, AgentId, AppRow, CompanyId, FindingFilter, FindingRow, FindingStatus, Page, PageRequest,
    Summary, VulnDetail,
};

use super::ApiQuery;
use crate::auth::{authenticate, company_access};
use crate::error::{ApiError, ApiResult};
use crate::openapi::{E400, E401, E403, E404, E429};
use crate::state::AppState;

async fn scope(state: &AppState, headers: &HeaderMap, company_id: &str) -> ApiResult<CompanyId> {
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
    fn page(&self) -> ApiResult<PageRequest> {
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

fn parse_bool(value: Option<&str>, name: &'static str) -> ApiResult<Option<bool>> {
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

/// The company's agents, by hostname.
#[utoipa::path(get, path = "/api/v1/companies/{company_id}/agents", tag = "reads",
    params(("company_id" = Uuid, Path, description = "The company"), PageQuery),
    responses((status = 200, description = "A page of agents", body = AgentPage), E400, E401, E403, E404, E429),
    security(("operator" = []), ("company_admin" = []), ("company_viewer" = [])))]
pub async fn agents(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(company_id): Path<String>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> ApiResult<Response> {
    let company_id = scope(&state, &headers, &company_id).await?;
    let page = query.page()?;
    let agents: Page<Agent> = state.store.list_agents(company_id, &page).await?;
    Ok(Json(agents).into_response())
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
    /// `csv` exports every finding that matches the filters (paging is ignored).
    #[param(value_type = Option<ExportFormat>)]
    format: Option<String>,
}

#[derive(utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)] // documents the values of `format`
enum ExportFormat {
    Json,
    Csv,
}

impl FindingsQuery {
    fn filter(&self) -> ApiResult<FindingFilter> {
        let mut filter = FindingFilter::default();
        if let Some(list) = self.severity.as_deref() {
            for part in list.split(',') {
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
                if !filter.severities.contains(&severity) {
                    filter.severities.push(severity);
                }
            }
        }
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
        filter.status = match self.status.as_deref() {
            None | Some("open") => FindingStatus::Open,
            Some("resolved") => FindingStatus::Resolved,
            Some("all") => FindingStatus::All,
            Some(_) => return Err(ApiError::invalid_request("status", "open, resolved or all")),
        };
        Ok(filter)
    }
}

/// The company's findings, most severe first; `format=csv` exports all that match.
#[utoipa::path(get, path = "/api/v1/companies/{company_id}/findings", tag = "reads",
    params(("company_id" = Uuid, Path, description = "The company"), FindingsQuery, PageQuery),
    responses(
        (status = 200, description = "A page of findings (JSON), or all of them (CSV)", content(
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
    let filter = query.filter()?;
    let mut page = paging.page()?;
    match query.format.as_deref() {
        None | Some("json") => Ok(Json(
            state
                .store
                .list_findings(company_id, &filter, &page)
                .await?,
        )
        .into_response()),
        Some("csv") => {
            // The export holds every finding that matches the filters, page after page.
            page.limit = 1000;
            page.cursor = None;
            let mut out = csv_writer();
            loop {
                let chunk = state
                    .store
                    .list_findings(company_id, &filter, &page)
                    .await?;
                for f in &chunk.items {
                    write_csv_row(&mut out, f)?;
                }
                match chunk.next_cursor {
                    Some(c) => page.cursor = Some(c),
                    None => break,
                }
            }
            let bytes = out.into_inner().map_err(ApiError::internal)?;
            Ok((
                StatusCode::OK,
                [
                    (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                    (
                        header::CONTENT_DISPOSITION,
                        "attachment; filename=\"findings.csv\"",
                    ),
                ],
                bytes,
            )
                .into_response())
        }
        Some(_) => Err(ApiError::invalid_request("format", "json or csv")),
    }
}

const CSV_HEADER: [&str; 17] = [
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
];

fn csv_writer() -> csv::Writer<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    // Writing to memory cannot fail.
    let _ = w.write_record(CSV_HEADER);
    w
}

fn write_csv_row(w: &mut csv::Writer<Vec<u8>>, f: &FindingRow) -> ApiResult<()> {
    let v = &f.vulnerability;
    w.write_record([
        f.agent_id.to_string(),
        f.hostname.clone(),
        f.package.name.clone(),
        f.package.version.clone(),
        f.package.ecosystem.clone(),
        f.package.source.clone(),
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
        f.fixed_versions.join(" "),
        v.kev.to_string(),
        v.epss.map(|e| e.to_string()).unwrap_or_default(),
        f.first_seen.to_rfc3339(),
        f.resolved_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
        f.resolution.clone().unwrap_or_default(),
    ])
    .map_err(ApiError::internal)
}

/// A vulnerability (by id or alias) with the company's hosts it hits; 404 unless the company
/// has or had a finding of it.
#[utoipa::path(get, path = "/api/v1/companies/{company_id}/vulnerabilities/{vuln_id}", tag = "reads",
    params(
        ("company_id" = Uuid, Path, description = "The company"),
        ("vuln_id" = String, Path, description = "A vulnerability id or alias", min_length = 1, max_length = 200),
    ),
    responses((status = 200, description = "Vulnerability", body = VulnDetail), E401, E403, E404, E429),
    security(("operator" = []), ("company_admin" = []), ("company_viewer" = [])))]
pub async fn vulnerability(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((company_id, vuln_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let company_id = scope(&state, &headers, &company_id).await?;
    if vuln_id.is_empty() || vuln_id.len() > 200 {
        return Err(ApiError::not_found());
    }
    let detail = state
        .store
        .vulnerability(company_id, &vuln_id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(detail).into_response())
}

//! Company-scoped reads. Every handler first turns the token and the path's company id into
//! a company it may read (404 for a foreign or unknown id, exactly alike).

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use zt_advisory::Severity;
use zt_store::model::{CompanyId, FindingFilter, FindingRow, FindingStatus, PageRequest};

use crate::auth::{authenticate, company_access};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

type Params = Query<HashMap<String, String>>;

async fn scope(state: &AppState, headers: &HeaderMap, company_id: &str) -> ApiResult<CompanyId> {
    let principal = authenticate(state, headers).await?;
    let company_id = company_access(state, &principal, company_id).await?;
    state.limits.check(&principal).await?;
    Ok(company_id)
}

fn page_of(params: &HashMap<String, String>) -> ApiResult<PageRequest> {
    let limit = match params.get("limit") {
        None => 0,
        Some(s) => match s.parse::<u32>() {
            Ok(n) if (1..=1000).contains(&n) => n,
            _ => {
                return Err(ApiError::invalid_request(
                    "limit",
                    "must be a number from 1 to 1000",
                ))
            }
        },
    };
    let cursor = params.get("cursor").filter(|c| !c.is_empty()).cloned();
    if cursor.as_ref().is_some_and(|c| c.len() > 4096) {
        return Err(ApiError::invalid_request("cursor", "too long"));
    }
    Ok(PageRequest { limit, cursor })
}

fn parse_bool(params: &HashMap<String, String>, name: &'static str) -> ApiResult<Option<bool>> {
    match params.get(name).map(String::as_str) {
        None | Some("") => Ok(None),
        Some("true" | "1" | "yes") => Ok(Some(true)),
        Some("false" | "0" | "no") => Ok(Some(false)),
        Some(_) => Err(ApiError::invalid_request(name, "must be true or false")),
    }
}

pub async fn summary(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(company_id): Path<String>,
) -> ApiResult<Response> {
    let company_id = scope(&state, &headers, &company_id).await?;
    Ok(Json(state.store.summary(company_id).await?).into_response())
}

pub async fn agents(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(company_id): Path<String>,
    Query(params): Params,
) -> ApiResult<Response> {
    let company_id = scope(&state, &headers, &company_id).await?;
    let page = page_of(&params)?;
    Ok(Json(state.store.list_agents(company_id, &page).await?).into_response())
}

pub async fn apps(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((company_id, agent_id)): Path<(String, String)>,
    Query(params): Params,
) -> ApiResult<Response> {
    let company_id = scope(&state, &headers, &company_id).await?;
    let agent_id = uuid::Uuid::parse_str(&agent_id).map_err(|_| ApiError::not_found())?;
    let page = page_of(&params)?;
    let apps = state
        .store
        .list_apps(company_id, agent_id, &page)
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(apps).into_response())
}

fn finding_filter(params: &HashMap<String, String>) -> ApiResult<FindingFilter> {
    let mut filter = FindingFilter::default();
    if let Some(list) = params.get("severity").filter(|s| !s.is_empty()) {
        for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let severity = match part.to_ascii_lowercase().as_str() {
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
    filter.kev = parse_bool(params, "kev")?;
    filter.fixable = parse_bool(params, "fixable")?;
    if let Some(q) = params.get("q").filter(|q| !q.is_empty()) {
        if q.len() > 200 {
            return Err(ApiError::invalid_request("q", "at most 200 bytes"));
        }
        filter.query = Some(q.clone());
    }
    if let Some(a) = params.get("agent_id").filter(|a| !a.is_empty()) {
        filter.agent_id = Some(
            uuid::Uuid::parse_str(a)
                .map_err(|_| ApiError::invalid_request("agent_id", "must be a UUID"))?,
        );
    }
    if let Some(v) = params.get("vulnerability").filter(|v| !v.is_empty()) {
        filter.vuln_id = Some(v.clone());
    }
    filter.status = match params.get("status").map(String::as_str) {
        None | Some("") | Some("open") => FindingStatus::Open,
        Some("resolved") => FindingStatus::Resolved,
        Some("all") => FindingStatus::All,
        Some(_) => return Err(ApiError::invalid_request("status", "open, resolved or all")),
    };
    Ok(filter)
}

pub async fn findings(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(company_id): Path<String>,
    Query(params): Params,
) -> ApiResult<Response> {
    let company_id = scope(&state, &headers, &company_id).await?;
    let filter = finding_filter(&params)?;
    let mut page = page_of(&params)?;
    match params.get("format").map(String::as_str) {
        None | Some("") | Some("json") => Ok(Json(
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

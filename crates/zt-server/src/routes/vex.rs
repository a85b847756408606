//! VEX exchange (DESIGN.md "VEX"): a company's analyses exported as CycloneDX 1.6 VEX or
//! OpenVEX 0.2.0, and VEX documents of either format imported as analyses (their source
//! recorded). A bad document is refused whole with the JSON path of the problem.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;
use zt_store::analysis::{
    Analysis, AnalysisDecision, AnalysisFilter, AnalysisScope, AnalysisState, AnalysisStatus,
    ImportOutcome, Justification, NewAnalysis, PackageScope, VexResponse,
};
use zt_store::model::PageRequest;
use zt_vex::{Product, VexDocument, VexStatement};

use super::analyses::caller;
use super::{read_body, ApiQuery};
use crate::error::{ApiError, ApiResult};
use crate::openapi::{E400, E401, E403, E404, E413, E429};
use crate::state::AppState;

/// VEX documents up to this size are read (a distribution's run to a few MB).
const VEX_BODY_LIMIT: usize = 32 * 1024 * 1024;

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VexQuery {
    /// `cyclonedx` (default; CycloneDX 1.6 VEX) or `openvex` (OpenVEX 0.2.0).
    #[param(value_type = Option<String>, pattern = "^(cyclonedx|openvex)$")]
    format: Option<String>,
}

/// The purl type of an ecosystem name (OSV spelling), `generic` when there is none.
fn purl_type(ecosystem: &str) -> &'static str {
    match ecosystem.to_ascii_lowercase().as_str() {
        "debian" | "ubuntu" => "deb",
        "alpine" | "wolfi" | "chainguard" => "apk",
        "red hat" | "rocky linux" | "almalinux" | "suse" => "rpm",
        "npm" => "npm",
        "pypi" => "pypi",
        "crates.io" => "cargo",
        "go" => "golang",
        "maven" => "maven",
        "nuget" => "nuget",
        "rubygems" => "gem",
        _ => "generic",
    }
}

fn statement_of(a: &Analysis) -> VexStatement {
    VexStatement {
        vuln_id: a.vuln_id.clone(),
        state: a.state.as_str().to_string(),
        justification: a.justification.map(|j| j.as_str().to_string()),
        response: a.response.iter().map(|r| r.as_str().to_string()).collect(),
        detail: a.details.clone(),
        products: a
            .scope
            .package
            .iter()
            .map(|p| Product {
                name: p.name.clone(),
                version: p.version.clone(),
                purl_type: Some(purl_type(p.ecosystem.as_deref().unwrap_or("")).to_string()),
                purl: None,
            })
            .collect(),
        suppress: Some(a.suppress),
        expires_at: a.expires_at,
        tags: a.scope.tags.clone(),
        updated_at: Some(a.updated_at),
    }
}

/// The company's active analyses as a VEX document. Analyses limited to named agents are
/// host decisions of this company and are left out (another company has other hosts).
/// Whether a decision hides its findings, its expiry and its tags are CycloneDX properties
/// (`zerotrace:suppress`, `zerotrace:expires_at`, `zerotrace:tag`); OpenVEX has no field for
/// them and its schema allows no fields of ours, so they are a line of `status_notes`
/// (`ZeroTrace: suppress=true; expires_at=…; tag=…`), read back on import. Other tools read
/// that line as text only: to them an expiring `not_affected` statement does not expire.
#[utoipa::path(get, path = "/api/v1/companies/{company_id}/vex", tag = "analyses",
    params(("company_id" = Uuid, Path, description = "The company"), VexQuery),
    responses(
        (status = 200, description = "A CycloneDX 1.6 VEX BOM (`application/vnd.cyclonedx+json`) or an OpenVEX 0.2.0 document (`application/json`)", content(
            (Object = "application/vnd.cyclonedx+json"),
            (Object = "application/json"),
        )),
        E400, E401, E403, E404, E429,
    ),
    security(("operator" = []), ("company_admin" = []), ("company_viewer" = [])))]
pub async fn export_vex(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(company_id): Path<String>,
    ApiQuery(q): ApiQuery<VexQuery>,
) -> ApiResult<Response> {
    let caller = caller(&state, &headers, &company_id).await?;
    let openvex = match q.format.as_deref() {
        None | Some("cyclonedx") => false,
        Some("openvex") => true,
        Some(_) => return Err(ApiError::invalid_request("format", "cyclonedx or openvex")),
    };
    let now = Utc::now();
    let filter = AnalysisFilter {
        status: Some(AnalysisStatus::Active),
        vuln_id: None,
    };
    let mut statements = Vec::new();
    let mut page = PageRequest {
        limit: 1000,
        cursor: None,
    };
    loop {
        let got = state
            .store
            .list_analyses(caller.company_id, &filter, &page, now)
            .await?;
        statements.extend(
            got.items
                .iter()
                .filter(|a| a.scope.agent_ids.is_empty())
                .map(statement_of),
        );
        match got.next_cursor {
            Some(c) => page.cursor = Some(c),
            None => break,
        }
    }
    statements.reverse(); // oldest first
    let doc = VexDocument {
        format: zt_vex::Format::CycloneDx,
        id: None,
        author: state
            .store
            .get_company(caller.company_id)
            .await?
            .map(|c| c.name),
        timestamp: Some(now),
        statements,
    };
    let serial = Uuid::new_v4();
    let (body, content_type) = if openvex {
        (
            zt_vex::write_openvex(&doc, &format!("urn:uuid:{serial}")),
            "application/json",
        )
    } else {
        (
            zt_vex::write_cyclonedx(&doc, &serial.to_string(), env!("CARGO_PKG_VERSION")),
            "application/vnd.cyclonedx+json",
        )
    };
    let mut resp = Json(body).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    Ok(resp)
}

/// The analyses a VEX document's statements make (one per product; none: every package).
fn analyses_of(doc: &VexDocument, source: &str) -> ApiResult<Vec<NewAnalysis>> {
    let mut out = Vec::new();
    for (i, s) in doc.statements.iter().enumerate() {
        let at = |what: &str| format!("statements[{i}].{what}");
        let state = AnalysisState::parse(&s.state)
            .ok_or_else(|| ApiError::invalid_request(at("state"), "unknown state"))?;
        let justification = match &s.justification {
            Some(j) => Some(
                Justification::parse(j)
                    .ok_or_else(|| ApiError::invalid_request(at("justification"), "unknown"))?,
            ),
            None => None,
        };
        let response = s
            .response
            .iter()
            .map(|r| {
                VexResponse::parse(r)
                    .ok_or_else(|| ApiError::invalid_request(at("response"), "unknown"))
            })
            .collect::<ApiResult<Vec<_>>>()?;
        let packages: Vec<Option<PackageScope>> = if s.products.is_empty() {
            vec![None]
        } else {
            let mut seen = std::collections::BTreeSet::new();
            s.products
                .iter()
                .filter(|p| seen.insert((p.name.clone(), p.version.clone())))
                .map(|p| {
                    Some(PackageScope {
                        name: p.name.clone(),
                        version: p.version.clone(),
                        ecosystem: None,
                    })
                })
                .collect()
        };
        for package in packages {
            out.push(NewAnalysis {
                analysis_id: Uuid::now_v7(),
                vuln_id: s.vuln_id.clone(),
                decision: AnalysisDecision {
                    scope: AnalysisScope {
                        agent_ids: Vec::new(),
                        tags: s.tags.clone(),
                        package,
                    },
                    state,
                    justification,
                    response: response.clone(),
                    details: s.detail.clone(),
                    suppress: s.suppresses(),
                    expires_at: s.expires_at,
                },
                source: Some(source.to_string()),
            });
        }
    }
    Ok(out)
}

/// Imports a CycloneDX VEX or OpenVEX document as analyses (a vendor's statements, such as a
/// distribution's OpenVEX): all or nothing; statements about vulnerabilities this server
/// knows no advisory of are skipped and named.
#[utoipa::path(post, path = "/api/v1/companies/{company_id}/vex", tag = "analyses",
    params(("company_id" = Uuid, Path, description = "The company")),
    request_body(content = Object, description = "A CycloneDX (1.4-1.7) VEX BOM or an OpenVEX 0.2.0 document",
        example = json!({"@context": "https://openvex.dev/ns/v0.2.0",
            "@id": "https://example.com/vex/1", "author": "Example vendor",
            "statements": [{"vulnerability": {"name": "CVE-2023-4863"},
                "products": [{"@id": "pkg:deb/debian/libwebp7@1.2.4-0.2"}],
                "status": "not_affected", "justification": "vulnerable_code_not_present"}]})),
    responses(
        (status = 200, description = "Imported", body = ImportOutcome),
        E400, E401, E403, E404, E413, E429,
    ),
    security(("operator" = []), ("company_admin" = [])))]
pub async fn import_vex(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(company_id): Path<String>,
    body: Body,
) -> ApiResult<Response> {
    let caller = caller(&state, &headers, &company_id).await?;
    if !caller.may_write() {
        return Err(ApiError::forbidden(
            "only company admins and the operator import VEX documents",
        ));
    }
    let bytes = read_body(body, VEX_BODY_LIMIT).await?;
    let doc = zt_vex::parse(&bytes).map_err(|e| ApiError::invalid_request(e.path, e.message))?;
    let source = format!(
        "{} VEX{}{}",
        doc.format.as_str(),
        doc.author
            .as_deref()
            .map(|a| format!(" by {a}"))
            .unwrap_or_default(),
        doc.id
            .as_deref()
            .map(|i| format!(" ({i})"))
            .unwrap_or_default(),
    );
    let list = analyses_of(&doc, &source)?;
    let outcome = state
        .store
        .import_analyses(
            caller.company_id,
            &list,
            &caller.context(Some(format!("imported from {source}"))),
        )
        .await?;
    Ok(Json(outcome).into_response())
}

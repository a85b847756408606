//! `/c/{company_id}/vulnerabilities`: one row per vulnerability the company has, and
//! `/c/{company_id}/vulnerabilities/{vuln_id}`: one of them — summary, references, the hosts
//! and packages it affects, and what fixes it.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::response::Response;
use maud::{html, Markup};
use zt_store::model::{PageRequest, VulnFilter, VulnInfo, VulnRow, VulnSort};

use super::layout::{self, check, n, pager, search, select, Filters, Sort, View};
use super::{
    api_query, company_ctx, param, query, segment, Ctx, PageError, PageResult, Params, Req,
};
use crate::routes::reads::{parse_bool, parse_severities, search_text, PageQuery};
use crate::state::AppState;

const KEYS: &[&str] = &["severity", "kev", "q", "sort", "order", "cursor"];
/// The sorts of the vulnerabilities (the API's), with their natural direction.
const SORTS: &[(&str, bool)] = &[
    ("severity", true),
    ("hosts", true),
    ("epss", true),
    ("cvss", true),
];
const PAGE_SIZE: u32 = 50;

/// The store's filter of the list's URL (the API's parameters).
fn filter(params: &HashMap<String, String>, sort: &Sort) -> PageResult<VulnFilter> {
    Ok(VulnFilter {
        severities: parse_severities(param(params, "severity"))?,
        kev: parse_bool(param(params, "kev"), "kev")?,
        query: search_text(param(params, "q"), "q")?,
        sort: match sort.key.as_str() {
            "hosts" => VulnSort::Hosts,
            "epss" => VulnSort::Epss,
            "cvss" => VulnSort::Cvss,
            "severity" => VulnSort::Severity,
            _ => return Err(PageError::Bad("sort".into())),
        },
        order: sort.order(),
    })
}

/// Vulnerabilities as a table; `sorting` makes the headers sort links (and shows every
/// column: without it, the overview's short form).
pub fn vulns_table(ctx: &Ctx, rows: &[VulnRow], sorting: Option<(&Filters, &Sort)>) -> Markup {
    let full = sorting.is_some();
    if rows.is_empty() {
        return layout::empty("No vulnerabilities match.");
    }
    let th = |label: &str, key: &str| match sorting {
        Some((f, s)) => s.th(f, SORTS, label, key),
        None => html! { th scope="col" { (label) } },
    };
    layout::table(
        "Vulnerabilities",
        html! {
            (th("Severity", "severity"))
            th scope="col" { "Vulnerability" }
            @if full {
                (th("CVSS", "cvss"))
                (th("EPSS", "epss"))
            }
            th scope="col" { "KEV" }
            (th("Hosts", "hosts"))
            th scope="col" { "Packages" }
            @if full { th scope="col" { "Fixed in" } }
        },
        html! {
            @for r in rows {
                @let v = &r.vulnerability;
                tr {
                    td data-label="Severity" { (layout::sev(v.severity)) }
                    td data-label="Vulnerability" {
                        a .vid href=(ctx.url(&format!("/vulnerabilities/{}", segment(&v.id)))) { (v.id) }
                        @if !v.aliases.is_empty() { div .alias { (v.aliases.join(", ")) } }
                    }
                    @if full {
                        td .num data-label="CVSS" { (layout::cvss(v.cvss.as_ref())) }
                        td .num data-label="EPSS" { (layout::epss(v.epss)) }
                    }
                    td data-label="KEV" { @if v.kev { span .kev { "KEV" } } }
                    td .num data-label="Hosts" { (n(r.hosts)) }
                    td data-label="Packages" {
                        @for p in &r.packages {
                            div { (p.name) " " span .version { (p.versions.join(", ")) } }
                        }
                    }
                    @if full { td data-label="Fixed in" { (r.fixed_versions.join(", ")) } }
                }
            }
        },
    )
}

async fn render_list(
    state: &AppState,
    req: &Req,
    company_id: &str,
    params: &HashMap<String, String>,
) -> PageResult<Response> {
    let ctx = company_ctx(state, req, company_id).await?;
    let sort = Sort::parse(params, SORTS)?;
    let filter = filter(params, &sort)?;
    let paging: PageQuery = api_query(req)?;
    let mut page = paging.page()?;
    if page.limit == 0 {
        page.limit = PAGE_SIZE;
    }
    let vulns = state
        .store
        .list_vulnerabilities(ctx.id(), &filter, &page)
        .await?;
    let filters = Filters {
        base: ctx.url("/vulnerabilities"),
        params,
        keys: KEYS,
    };
    let content = html! {
        div .view-head {
            h1 { "Vulnerabilities" }
            (layout::csv_link(&filters.api(&ctx.api("/vulnerabilities"), &[("format", "csv")])))
        }
        form .filters method="get" action=(ctx.url("/vulnerabilities")) role="search" aria-label="Filter vulnerabilities" {
            (select("severity", "Severity", &layout::SEVERITY_OPTIONS, param(params, "severity").unwrap_or("")))
            (check("kev", "in KEV", param(params, "kev") == Some("true")))
            (search("q", "Search", param(params, "q").unwrap_or(""), "CVE, GHSA or package"))
            @for k in ["sort", "order"] {
                @if let Some(v) = param(params, k) { input type="hidden" name=(k) value=(v); }
            }
            button type="submit" { "Filter" }
            @if ["severity", "kev", "q"].iter().any(|k| param(params, k).is_some()) {
                a href=(ctx.url("/vulnerabilities")) { "Clear filters" }
            }
        }
        (vulns_table(&ctx, &vulns.items, Some((&filters, &sort))))
        (pager(&filters, vulns.next_cursor.as_deref(), vulns.items.len()))
    };
    Ok(layout::page(
        &ctx,
        View::Vulnerabilities,
        "Vulnerabilities",
        content,
    ))
}

pub async fn list(
    State(state): State<AppState>,
    req: Req,
    Path(company_id): Path<String>,
    Query(params): Params,
) -> Response {
    render_list(&state, &req, &company_id, &params)
        .await
        .unwrap_or_else(|e| req.error(e))
}

/// Links to where the vulnerability is described (OSV for every id; NVD for CVEs; GitHub for
/// GHSAs).
pub fn references(v: &VulnInfo) -> Vec<(String, String)> {
    let mut refs = Vec::new();
    let mut ids: Vec<&str> = vec![v.id.as_str()];
    ids.extend(v.aliases.iter().map(String::as_str));
    for id in ids {
        let enc = segment(id);
        refs.push((
            format!("https://osv.dev/vulnerability/{enc}"),
            format!("OSV: {id}"),
        ));
        if id.starts_with("CVE-") {
            refs.push((
                format!("https://nvd.nist.gov/vuln/detail/{enc}"),
                format!("NVD: {id}"),
            ));
        }
        if id.starts_with("GHSA-") {
            refs.push((
                format!("https://github.com/advisories/{enc}"),
                format!("GitHub: {id}"),
            ));
        }
    }
    if v.kev {
        refs.push((
            "https://www.cisa.gov/known-exploited-vulnerabilities-catalog".into(),
            "CISA Known Exploited Vulnerabilities".into(),
        ));
    }
    refs
}

pub fn facts(v: &VulnInfo) -> Markup {
    html! {
        dl .facts {
            dt { "Severity" } dd { (layout::sev(v.severity)) }
            dt { "CVSS" } dd {
                @if let Some(c) = &v.cvss { (format!("{:.1}", c.score)) " " code .vector { (c.vector) } } @else { span .muted { "none" } }
            }
            dt { "EPSS" } dd {
                @if let Some(e) = v.epss {
                    (format!("{:.2}%", e * 100.0))
                    @if let Some(p) = v.epss_percentile { span .muted { " (percentile " (format!("{:.0}", p * 100.0)) ")" } }
                } @else { span .muted { "none" } }
            }
            dt { "Known exploited (KEV)" } dd {
                @if v.kev {
                    span .kev { "yes" }
                    @if let Some(d) = &v.kev_due_date { " · CISA due date " (d) }
                } @else { "no" }
            }
            @if !v.aliases.is_empty() {
                dt { "Aliases" } dd { (v.aliases.join(", ")) }
            }
        }
    }
}

async fn render_detail(
    state: &AppState,
    req: &Req,
    company_id: &str,
    vuln_id: &str,
    params: &HashMap<String, String>,
) -> PageResult<Response> {
    let ctx = company_ctx(state, req, company_id).await?;
    if vuln_id.is_empty() || vuln_id.len() > 200 {
        return Err(PageError::NotFound);
    }
    let page = PageRequest {
        limit: 50,
        cursor: param(params, "cursor").map(str::to_string),
    };
    let detail = state
        .store
        .vulnerability(ctx.id(), vuln_id, &page)
        .await?
        .ok_or(PageError::NotFound)?;
    let v = &detail.vulnerability;
    let decisions = state
        .store
        .list_analyses(
            ctx.id(),
            &zt_store::analysis::AnalysisFilter {
                status: Some(zt_store::analysis::AnalysisStatus::Active),
                vuln_id: Some(v.id.clone()),
            },
            &PageRequest {
                limit: 50,
                cursor: None,
            },
            chrono::Utc::now(),
        )
        .await?
        .items;
    let base = ctx.url(&format!("/vulnerabilities/{}", segment(vuln_id)));
    let mut refs: Vec<(String, String)> = detail
        .references
        .iter()
        .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
        .map(|u| (u.clone(), u.clone()))
        .collect();
    for r in references(v) {
        if !refs.iter().any(|(u, _)| *u == r.0) {
            refs.push(r);
        }
    }
    let content = html! {
        h1 { (v.id) }
        @if !v.summary.is_empty() { p .lead { (v.summary) } }
        (facts(v))
        section aria-labelledby="fix" {
            h2 #fix { "The fix" }
            @if detail.packages.is_empty() {
                p { "Nothing open: every affected host is fixed." }
            } @else {
                ul {
                    @for p in &detail.packages {
                        li {
                            strong { (p.name) } " (" (p.ecosystem) ") " (p.versions.join(", ")) ": "
                            @if detail.fixed_versions.is_empty() {
                                "no fixed version is known yet."
                            } @else {
                                "upgrade to " (detail.fixed_versions.join(" or ")) " or later."
                            }
                        }
                    }
                }
            }
        }
        section aria-labelledby="affected" {
            div .view-head {
                h2 #affected { "Affected hosts (" (n(detail.hosts)) " open, " (n(detail.findings)) " findings)" }
                (layout::csv_link(&format!("{}{}", ctx.api("/findings"), query([("vulnerability", v.id.as_str()), ("status", "all"), ("format", "csv")]))))
            }
            @if detail.affected.is_empty() {
                (layout::empty("No host is affected."))
            } @else {
                (layout::table("Affected hosts", html! {
                    th scope="col" { "Host" } th scope="col" { "Package" } th scope="col" { "Version" }
                    th scope="col" { "Fixed in" } th scope="col" { "First seen" } th scope="col" { "Resolved" }
                }, html! {
                    @for a in &detail.affected {
                        tr {
                            td data-label="Host" { a href=(ctx.url(&format!("/hosts/{}", a.agent_id))) { (a.hostname) } }
                            td data-label="Package" { (a.package.name) div .muted { (a.package.ecosystem) } }
                            td .version data-label="Version" { (a.package.version) }
                            td data-label="Fixed in" { (a.fixed_versions.join(", ")) }
                            td data-label="First seen" { (layout::time(a.first_seen)) }
                            td data-label="Resolved" { (layout::opt_time(a.resolved_at, "open")) }
                        }
                    }
                }))
                nav .pager aria-label="Pages of hosts" {
                    @if param(params, "cursor").is_some() { a href=(format!("{base}#affected")) { "« First page" } }
                    @if let Some(c) = &detail.next_cursor {
                        a href=(format!("{base}{}#affected", query([("cursor", c.as_str())]))) rel="next" { "Next page »" }
                    }
                }
            }
        }
        (decisions_section(&ctx, &v.id, &decisions, &detail.packages))
        section aria-labelledby="refs" {
            h2 #refs { "References" }
            ul .refs {
                @for (url, label) in &refs {
                    li { a href=(url) rel="noopener noreferrer" { (label) } }
                }
            }
        }
    };
    Ok(layout::page(&ctx, View::Vulnerabilities, &v.id, content))
}

pub async fn detail(
    State(state): State<AppState>,
    req: Req,
    Path((company_id, vuln_id)): Path<(String, String)>,
    Query(params): Params,
) -> Response {
    render_detail(&state, &req, &company_id, &vuln_id, &params)
        .await
        .unwrap_or_else(|e| req.error(e))
}

/// The decisions (analyses) in force about a vulnerability, and the form that records one
/// (sent by dashboard.js to the API with the session's CSRF token).
fn decisions_section(
    ctx: &Ctx,
    vuln_id: &str,
    decisions: &[zt_store::analysis::Analysis],
    packages: &[zt_store::model::VulnPackage],
) -> Markup {
    html! {
        section aria-labelledby="decisions" {
            h2 #decisions { "Decisions" }
            @if decisions.is_empty() {
                p .muted { "No analysis is in force." }
            } @else {
                (layout::table("Analyses", html! {
                    th scope="col" { "State" } th scope="col" { "Justification" }
                    th scope="col" { "Scope" } th scope="col" { "Suppressed" }
                    th scope="col" { "Until" } th scope="col" { "Details" }
                }, html! {
                    @for a in decisions {
                        tr {
                            td data-label="State" { (a.state.as_str()) }
                            td data-label="Justification" { (a.justification.map(|j| j.as_str()).unwrap_or("")) }
                            td data-label="Scope" {
                                @if let Some(p) = &a.scope.package {
                                    (p.name) @if let Some(v) = &p.version { " " span .version { (v) } }
                                } @else { "every package" }
                                @if !a.scope.tags.is_empty() { div .muted { "tags: " (a.scope.tags.join(", ")) } }
                                @if !a.scope.agent_ids.is_empty() { div .muted { (a.scope.agent_ids.len()) " hosts" } }
                            }
                            td data-label="Suppressed" { @if a.suppress { "yes" } @else { "no" } }
                            td data-label="Until" { (layout::opt_time(a.expires_at, "no expiry")) }
                            td data-label="Details" { (a.details.as_deref().unwrap_or("")) }
                        }
                    }
                }))
            }
            @if ctx.viewer.is_admin() {
                div .decide-open { (decision_dialog(ctx, vuln_id, DecisionTarget::Vulnerability(packages), "decide-vuln")) }
            }
        }
    }
}

/// What a decision form decides about: a vulnerability (every host; a package chosen from
/// those it affects) or one finding (its package version, on its host or on every host).
pub enum DecisionTarget<'a> {
    Vulnerability(&'a [zt_store::model::VulnPackage]),
    Finding(&'a zt_store::model::FindingRow),
}

/// The "Decide" button and the dialog it opens (a native modal `<dialog>`, in the top layer:
/// not squeezed into a table cell nor clipped by a table's scrolling frame, closed with
/// Escape or its buttons) with the decision form. `id` names the dialog, unique in the page.
pub fn decision_dialog(ctx: &Ctx, vuln_id: &str, target: DecisionTarget<'_>, id: &str) -> Markup {
    let title = format!("{id}-title");
    let about = match &target {
        DecisionTarget::Vulnerability(_) => "every affected host".to_string(),
        DecisionTarget::Finding(f) => {
            format!("{} {} on {}", f.package.name, f.package.version, f.hostname)
        }
    };
    html! {
        button type="button" .secondary.decide data-decide=(id) aria-haspopup="dialog" aria-controls=(id)
            aria-label=(format!("Decide about {vuln_id} ({about})")) { "Decide" }
        dialog .decide id=(id) aria-labelledby=(title) {
            div .dialog-head {
                h2 id=(title) { "Decide about " (vuln_id) }
                button type="button" .secondary data-close="" { "Close" }
            }
            p .dialog-about .muted { (about) }
            (decision_form(ctx, vuln_id, target))
        }
    }
}

/// The form that records a decision (an analysis): state, justification, response,
/// suppression, expiry and a comment. dashboard.js sends it to the API with the session's
/// CSRF token and reloads the view (an error shows in the form); inside [`decision_dialog`]
/// on the vulnerability and the findings views.
pub fn decision_form(ctx: &Ctx, vuln_id: &str, target: DecisionTarget<'_>) -> Markup {
    use zt_store::analysis::{AnalysisState, Justification, VexResponse};
    html! {
        form .analysis-form data-analysis="" data-api=(ctx.api("/analyses")) data-vuln=(vuln_id) aria-label=(format!("Record a decision about {vuln_id}")) {
            div .banner role="alert" data-form-error="" {}
            label { "State" select name="state" autofocus {
                @for s in AnalysisState::ALL { option value=(s.as_str()) { (s.as_str()) } }
            } }
            label { "Justification" select name="justification" {
                option value="" { "none" }
                @for j in Justification::ALL { option value=(j.as_str()) { (j.as_str()) } }
            } }
            label { "Response" select name="response" {
                option value="" { "none" }
                @for r in VexResponse::ALL { option value=(r.as_str()) { (r.as_str()) } }
            } }
            @match target {
                DecisionTarget::Vulnerability(packages) => {
                    label { "Package" select name="package" {
                        option value="" { "every package" }
                        @for p in packages { option value=(p.name) { (p.name) } }
                    } }
                }
                DecisionTarget::Finding(f) => {
                    input type="hidden" name="package" value=(f.package.name);
                    input type="hidden" name="package_version" value=(f.package.version);
                    label .check { input type="checkbox" name="agent_id" value=(f.agent_id) checked; " only on " (f.hostname) }
                }
            }
            label .check { input type="checkbox" name="suppress"; " hide the findings" }
            label { "Until" input type="date" name="expires_at"; }
            label .wide { "Comment" input type="text" name="comment" maxlength="2000"; }
            div .dialog-actions {
                button type="button" .secondary data-close="" { "Cancel" }
                button type="submit" { "Record" }
            }
        }
    }
}

//! `/c/{company_id}/findings`: the findings table with its filters (the API's own: severity,
//! status, KEV, fixable, search, host, vulnerability), sorting, paging and the CSV export of
//! what the filters select.

use axum::extract::{Path, Query, State};
use axum::response::Response;
use maud::{html, Markup};
use zt_store::model::{FindingRow, FindingStatus, PageRequest};

use super::layout::{self, check, csv_link, pager, search, select, Filters, Sort, View};
use super::{api_query, company_ctx, param, segment, Ctx, PageResult, Params, Req};
use crate::routes::reads::{FindingsQuery, PageQuery};
use crate::state::AppState;

/// The names of this view's URL.
const KEYS: &[&str] = &[
    "severity",
    "status",
    "kev",
    "fixable",
    "q",
    "agent_id",
    "vulnerability",
    "sort",
    "order",
    "suppressed",
    "overdue",
    "tag",
    "cursor",
];
/// The sorts of the findings (the API's), with their natural direction (true: descending).
pub const SORTS: &[(&str, bool)] = &[
    ("severity", true),
    ("first_seen", true),
    ("epss", true),
    ("cvss", true),
    ("hostname", false),
];
pub const PAGE_SIZE: u32 = 50;

async fn render(
    state: &AppState,
    req: &Req,
    company_id: &str,
    params: &std::collections::HashMap<String, String>,
) -> PageResult<Response> {
    let ctx = company_ctx(state, req, company_id).await?;
    let query: FindingsQuery = api_query(req)?;
    let paging: PageQuery = api_query(req)?;
    let mut filter = query.filter()?;
    let policy = state.store.sla_policy(ctx.id()).await?;
    let now = chrono::Utc::now();
    filter.due_by = query.due_by(&policy, now)?;
    let mut page_req: PageRequest = paging.page()?;
    if page_req.limit == 0 {
        page_req.limit = PAGE_SIZE;
    }
    let sort = Sort::parse(params, SORTS)?;
    let mut found = state
        .store
        .list_findings(ctx.id(), &filter, &page_req)
        .await?;
    policy.annotate(&mut found.items, now);
    let filters = Filters {
        base: ctx.url("/findings"),
        params,
        keys: KEYS,
    };
    let status = param(params, "status").unwrap_or("open");
    let content = html! {
        div .view-head {
            h1 { "Findings" }
            (csv_link(&filters.api(&ctx.api("/findings"), &[("format", "csv")])))
        }
        form .filters method="get" action=(ctx.url("/findings")) role="search" aria-label="Filter findings" {
            (select("severity", "Severity", &layout::SEVERITY_OPTIONS, param(params, "severity").unwrap_or("")))
            (select("status", "Status", &[("open", "open"), ("resolved", "resolved"), ("all", "all")], status))
            (check("kev", "in KEV", param(params, "kev") == Some("true")))
            (check("fixable", "fixable", param(params, "fixable") == Some("true")))
            (check("overdue", "overdue", param(params, "overdue") == Some("true")))
            (select("suppressed", "Suppressed", &[("exclude", "hidden"), ("include", "shown"), ("only", "only")], param(params, "suppressed").unwrap_or("exclude")))
            (search("q", "Search", param(params, "q").unwrap_or(""), "package, CVE or host"))
            @for k in ["agent_id", "vulnerability", "sort", "order", "tag"] {
                @if let Some(v) = param(params, k) {
                    input type="hidden" name=(k) value=(v);
                }
            }
            button type="submit" { "Filter" }
            @if KEYS.iter().any(|k| *k != "cursor" && *k != "sort" && *k != "order" && param(params, k).is_some()) {
                a href=(ctx.url("/findings")) { "Clear filters" }
            }
        }
        (findings_table(&ctx, &found.items, Some((&filters, &sort)), filter.status != FindingStatus::Open, true, ctx.viewer.is_admin()))
        (pager(&filters, found.next_cursor.as_deref(), found.items.len()))
    };
    Ok(layout::page(&ctx, View::Findings, "Findings", content))
}

pub async fn page(
    State(state): State<AppState>,
    req: Req,
    Path(company_id): Path<String>,
    Query(params): Params,
) -> Response {
    render(&state, &req, &company_id, &params)
        .await
        .unwrap_or_else(|e| req.error(e))
}

/// A table of findings (also on the host detail); `sorting` makes its headers sort links;
/// `decide`: each row has a "Decide" button opening the form that records a decision about it
/// (for those who may).
pub fn findings_table(
    ctx: &Ctx,
    rows: &[FindingRow],
    sorting: Option<(&Filters, &Sort)>,
    show_resolved: bool,
    show_host: bool,
    decide: bool,
) -> Markup {
    if rows.is_empty() {
        return layout::empty("No findings match.");
    }
    let th = |label: &str, key: &str| match sorting {
        Some((f, s)) => s.th(f, SORTS, label, key),
        None => html! { th scope="col" { (label) } },
    };
    let head = html! {
        (th("Severity", "severity"))
        (th("Vulnerability", "vulnerability"))
        (th("Package", "package"))
        @if show_host { (th("Host", "hostname")) }
        th scope="col" { "Fixed in" }
        (th("KEV", "kev"))
        (th("EPSS", "epss"))
        (th("CVSS", "cvss"))
        (th("First seen", "first_seen"))
        th scope="col" { "Due" }
        th scope="col" { "Analysis" }
        @if show_resolved { th scope="col" { "Resolved" } }
    };
    let body = html! {
        @for (i, f) in rows.iter().enumerate() {
            @let v = &f.vulnerability;
            tr {
                td data-label="Severity" { (layout::sev(v.severity)) }
                td data-label="Vulnerability" {
                    a .vid href=(ctx.url(&format!("/vulnerabilities/{}", segment(&v.id)))) { (v.id) }
                    @if !v.aliases.is_empty() {
                        div .alias { (v.aliases.join(", ")) }
                    }
                    // In the row's second cell, so that it shows near the top of the row's
                    // card at phone width too; the form is a dialog, not a cell.
                    @if decide {
                        div .decide-open {
                            (super::vulns::decision_dialog(ctx, &v.id, super::vulns::DecisionTarget::Finding(f), &format!("decide-{i}")))
                        }
                    }
                }
                td data-label="Package" { (f.package.name) " " span .version { (f.package.version) } div .muted { (f.package.ecosystem) } }
                @if show_host { td data-label="Host" { a href=(ctx.url(&format!("/hosts/{}", f.agent_id))) { (f.hostname) } } }
                td data-label="Fixed in" { (f.fixed_versions.join(", ")) }
                td data-label="KEV" { @if v.kev { span .kev { "KEV" } } }
                td .num data-label="EPSS" { (layout::epss(v.epss)) }
                td .num data-label="CVSS" { (layout::cvss(v.cvss.as_ref())) }
                td data-label="First seen" { (layout::time(f.first_seen)) }
                td data-label="Due" {
                    @if let Some(due) = f.due_at {
                        (layout::time(due))
                        @if f.overdue { " " span .kev { "overdue" } }
                    }
                }
                td data-label="Analysis" {
                    @if let Some(a) = &f.analysis {
                        (a.state.as_str())
                        @if let Some(j) = a.justification { div .muted { (j.as_str()) } }
                        @if a.suppressed { div .muted { "suppressed" } }
                        @if let Some(e) = a.expires_at { div .muted { "until " (layout::time(e)) } }
                    }
                }
                @if show_resolved { td data-label="Resolved" { (layout::opt_time(f.resolved_at, "open")) } }
            }
        }
    };
    layout::table("Findings", head, body)
}

//! `/c/{company_id}/hosts`: the company's hosts (search, OS, stale only; sorted by name, risk,
//! OS or last seen; stale hosts marked) and `/c/{company_id}/hosts/{agent_id}`: one host with
//! its open findings, its apps and the history of its reports.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::response::Response;
use chrono::Utc;
use maud::{html, Markup};
use zt_store::model::{Agent, AgentId, FindingFilter, PageRequest, SeverityCounts};

use super::findings::findings_table;
use super::layout::{self, check, n, pager, search, Filters, Sort, View};
use super::{api_query, company_ctx, param, query, Ctx, PageError, PageResult, Params, Req};
use crate::routes::reads::{mark_stale, AgentsQuery, PageQuery};
use crate::state::AppState;

const KEYS: &[&str] = &["q", "os", "tag", "stale", "sort", "order", "cursor"];
/// The sorts of the hosts (the API's), with their natural direction (true: descending).
const SORTS: &[(&str, bool)] = &[
    ("hostname", false),
    ("risk", true),
    ("os", false),
    ("last_seen", true),
];
const PAGE_SIZE: u32 = 50;

fn os_label(a: &Agent) -> String {
    if !a.os.name.is_empty() {
        a.os.name.clone()
    } else {
        format!("{} {}", a.os.id, a.os.version_id)
            .trim()
            .to_string()
    }
}

/// Open findings by severity (and KEV), most severe first, as compact badges.
pub fn risk(c: &SeverityCounts, kev: u64) -> Markup {
    html! {
        span .risk {
            @if kev > 0 { span .kev title=(format!("{kev} in CISA KEV")) { (n(kev)) " KEV" } }
            @for (s, _) in super::charts::SEVERITIES {
                @let v = super::charts::count(c, s);
                @if v > 0 {
                    span class={ "pill sev-" (s) } title=(format!("{v} {s}")) { (n(v)) " " (s) }
                }
            }
            @if c.total() == 0 { span .muted { "none" } }
        }
    }
}

pub fn stale_mark(a: &Agent) -> Markup {
    html! {
        @if let Some(at) = a.decommissioned_at {
            " " span .stale .decommissioned title=(format!("Decommissioned {}: its token is revoked and its findings resolved", at.format("%Y-%m-%d %H:%M UTC"))) { "decommissioned" }
        }
        @if a.stale {
            " " span .stale title="Not heard of for longer than the stale threshold" { "stale" }
        }
    }
}

/// The hosts as a table; `head` is its header row (sortable or not).
pub fn hosts_table(ctx: &Ctx, agents: &[Agent], head: Markup) -> Markup {
    if agents.is_empty() {
        return layout::empty("No hosts match.");
    }
    let rows = html! {
        @for a in agents {
            tr {
                td data-label="Host" { a .host href=(ctx.url(&format!("/hosts/{}", a.agent_id))) { (a.hostname) } (stale_mark(a)) }
                td data-label="Open findings" { (risk(&a.findings, a.kev)) }
                td data-label="OS" { (os_label(a)) div .muted { (a.arch) } }
                td .num data-label="Apps" { (n(a.apps)) }
                td data-label="Last seen" {
                    @match a.last_seen_at {
                        Some(t) => { (layout::time(t)) div .muted { (layout::ago(t)) } },
                        None => span .muted { "never" },
                    }
                }
            }
        }
    };
    layout::table("Hosts", head, rows)
}

/// The header of the hosts table, sortable when `sorting` is given.
pub fn hosts_head(sorting: Option<(&Filters, &Sort)>) -> Markup {
    let th = |label: &str, key: &str| match sorting {
        Some((f, s)) => s.th(f, SORTS, label, key),
        None => html! { th scope="col" { (label) } },
    };
    html! {
        (th("Host", "hostname"))
        (th("Open findings", "risk"))
        (th("OS", "os"))
        th scope="col" { "Apps" }
        (th("Last seen", "last_seen"))
    }
}

async fn render_list(
    state: &AppState,
    req: &Req,
    company_id: &str,
    params: &HashMap<String, String>,
) -> PageResult<Response> {
    let ctx = company_ctx(state, req, company_id).await?;
    let query: AgentsQuery = api_query(req)?;
    let filter = query.filter(state)?;
    let paging: PageQuery = api_query(req)?;
    let mut page = paging.page()?;
    if page.limit == 0 {
        page.limit = PAGE_SIZE;
    }
    let sort = Sort::parse(params, SORTS)?;
    let mut agents = state.store.list_agents(ctx.id(), &filter, &page).await?;
    let stale_before = state.config.stale_before(Utc::now());
    for a in &mut agents.items {
        mark_stale(a, stale_before);
    }
    let filters = Filters {
        base: ctx.url("/hosts"),
        params,
        keys: KEYS,
    };
    let content = html! {
        div .view-head {
            h1 { "Hosts" }
            (layout::csv_link(&filters.api(&ctx.api("/agents"), &[("format", "csv")])))
        }
        form .filters method="get" action=(ctx.url("/hosts")) role="search" aria-label="Filter hosts" {
            (search("q", "Host name", param(params, "q").unwrap_or(""), "web-1"))
            label for="f-os" { "OS" }
            input #f-os type="text" name="os" value=(param(params, "os").unwrap_or("")) placeholder="debian, ubuntu, windows…" maxlength="200" size="14";
            label for="f-tag" { "Tag" }
            input #f-tag type="text" name="tag" value=(param(params, "tag").unwrap_or("")) placeholder="env=prod" maxlength="64" size="12";
            (check("stale", "stale only", param(params, "stale") == Some("true")))
            @for k in ["sort", "order"] {
                @if let Some(v) = param(params, k) { input type="hidden" name=(k) value=(v); }
            }
            button type="submit" { "Filter" }
            @if ["q", "os", "tag", "stale"].iter().any(|k| param(params, k).is_some()) {
                a href=(ctx.url("/hosts")) { "Clear filters" }
            }
        }
        (hosts_table(&ctx, &agents.items, hosts_head(Some((&filters, &sort)))))
        (pager(&filters, agents.next_cursor.as_deref(), agents.items.len()))
    };
    Ok(layout::page(&ctx, View::Hosts, "Hosts", content))
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

async fn render_detail(
    state: &AppState,
    req: &Req,
    company_id: &str,
    agent_id: &str,
    params: &HashMap<String, String>,
) -> PageResult<Response> {
    let ctx = company_ctx(state, req, company_id).await?;
    let agent_id: AgentId = agent_id.parse().map_err(|_| PageError::NotFound)?;
    let mut agent = state
        .store
        .get_agent(ctx.id(), agent_id)
        .await?
        .ok_or(PageError::NotFound)?;
    mark_stale(&mut agent, state.config.stale_before(Utc::now()));
    let mut findings = state
        .store
        .list_findings(
            ctx.id(),
            &FindingFilter {
                agent_id: Some(agent_id),
                ..Default::default()
            },
            &PageRequest {
                limit: 50,
                cursor: None,
            },
        )
        .await?;
    state
        .store
        .sla_policy(ctx.id())
        .await?
        .annotate(&mut findings.items, Utc::now());
    let apps = state
        .store
        .list_apps(
            ctx.id(),
            agent_id,
            &PageRequest {
                limit: 100,
                cursor: param(params, "apps_cursor").map(str::to_string),
            },
        )
        .await?
        .ok_or(PageError::NotFound)?;
    let reports = state
        .store
        .list_reports(
            ctx.id(),
            agent_id,
            &PageRequest {
                limit: 20,
                cursor: param(params, "reports_cursor").map(str::to_string),
            },
        )
        .await?
        .ok_or(PageError::NotFound)?;
    let base = ctx.url(&format!("/hosts/{agent_id}"));
    let more = |name: &str, cursor: &str, anchor: &str| {
        format!("{base}{}#{anchor}", query([(name, cursor)]))
    };
    let content = html! {
        h1 { (agent.hostname) (stale_mark(&agent)) }
        dl .facts {
            dt { "OS" } dd { (os_label(&agent)) " (" (agent.arch) ")" }
            dt { "Agent" } dd { (agent.agent_version) }
            dt { "Enrolled" } dd { (layout::time(agent.enrolled_at)) }
            @if let Some(at) = agent.decommissioned_at {
                dt { "Decommissioned" } dd #decommissioned { (layout::time(at)) }
            }
            dt { "Last seen" } dd { (layout::opt_time(agent.last_seen_at, "never")) }
            dt { "Inventory processed" } dd { (layout::opt_time(agent.last_report_at, "not yet")) }
            dt { "Apps" } dd { (n(agent.apps)) }
            dt { "Open findings" } dd { (risk(&agent.findings, agent.kev)) }
            dt { "Fixable" } dd { (n(agent.fixable)) }
        }
        section aria-labelledby="host-findings" {
            div .view-head {
                h2 #host-findings { "Open findings" }
                a href=(ctx.url(&format!("/findings?agent_id={agent_id}"))) { "All findings of this host" }
                (layout::csv_link(&ctx.api(&format!("/findings?agent_id={agent_id}&format=csv"))))
            }
            (findings_table(&ctx, &findings.items, None, false, false, false))
            @if let Some(c) = &findings.next_cursor {
                p { a href=(format!("{}{}", ctx.url("/findings"), query([("agent_id", agent_id.to_string().as_str()), ("cursor", c.as_str())]))) { "More findings of this host »" } }
            }
        }
        section aria-labelledby="host-apps" {
            h2 #host-apps { "Apps (" (n(agent.apps)) ")" }
            @if apps.items.is_empty() {
                (layout::empty("No apps reported yet."))
            } @else {
                (layout::table("Apps", html! {
                    th scope="col" { "Name" } th scope="col" { "Version" } th scope="col" { "Ecosystem" }
                    th scope="col" { "Source package" } th scope="col" { "Open findings" } th scope="col" { "First seen" }
                }, html! {
                    @for a in &apps.items {
                        tr {
                            td data-label="Name" { (a.name) }
                            td .version data-label="Version" { (a.version) }
                            td data-label="Ecosystem" { (a.ecosystem) div .muted { (a.source) } }
                            td data-label="Source package" { @if let Some(s) = &a.source_name { (s) " " (a.source_version.as_deref().unwrap_or("")) } }
                            td .num data-label="Open findings" {
                                @if a.findings > 0 {
                                    a href=(format!("{}{}", ctx.url("/findings"), query([("agent_id", agent_id.to_string().as_str()), ("q", a.name.as_str())]))) { (n(a.findings)) }
                                } @else { "0" }
                            }
                            td data-label="First seen" { (layout::time(a.first_seen)) }
                        }
                    }
                }))
                nav .pager aria-label="Pages of apps" {
                    @if param(params, "apps_cursor").is_some() { a href=(format!("{base}#host-apps")) { "« First page" } }
                    @if let Some(c) = &apps.next_cursor { a href=(more("apps_cursor", c, "host-apps")) rel="next" { "Next page »" } }
                }
            }
        }
        section aria-labelledby="host-reports" {
            h2 #host-reports { "Reports" }
            @if reports.items.is_empty() {
                (layout::empty("No reports kept (reports are kept as long as the queue's retention)."))
            } @else {
                (layout::table("Reports", html! {
                    th scope="col" { "Collected" } th scope="col" { "Accepted" } th scope="col" { "Processed" }
                    th scope="col" { "Status" } th scope="col" { "Apps" } th scope="col" { "Report id" }
                }, html! {
                    @for r in &reports.items {
                        tr {
                            td data-label="Collected" { (layout::time(r.collected_at)) }
                            td data-label="Accepted" { (layout::time(r.accepted_at)) }
                            td data-label="Processed" { (layout::opt_time(r.processed_at, "not yet")) }
                            td data-label="Status" {
                                (r.status.as_str())
                                @if let Some(o) = &r.outcome { " · " (o) }
                                @if let Some(e) = &r.error { div .muted { (e) } }
                            }
                            td .num data-label="Apps" { (n(r.apps)) }
                            td data-label="Report id" { code { (r.report_id) } }
                        }
                    }
                }))
                nav .pager aria-label="Pages of reports" {
                    @if param(params, "reports_cursor").is_some() { a href=(format!("{base}#host-reports")) { "« Newest reports" } }
                    @if let Some(c) = &reports.next_cursor { a href=(more("reports_cursor", c, "host-reports")) rel="next" { "Older reports »" } }
                }
            }
        }
    };
    Ok(layout::page(&ctx, View::Hosts, &agent.hostname, content))
}

pub async fn detail(
    State(state): State<AppState>,
    req: Req,
    Path((company_id, agent_id)): Path<(String, String)>,
    Query(params): Params,
) -> Response {
    render_detail(&state, &req, &company_id, &agent_id, &params)
        .await
        .unwrap_or_else(|e| req.error(e))
}

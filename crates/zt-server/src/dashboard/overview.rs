//! `/c/{company_id}`: the company at a glance — summary cards, open findings by severity, the
//! KEV and fixable shares, the vulnerabilities on most hosts, the riskiest hosts, the trend
//! of open (or overdue) findings per severity over 30 or 90 days, and the time to remediate
//! per severity over the same period.

use axum::extract::{Path, Query, State};
use axum::response::Response;
use chrono::Utc;
use maud::{html, Markup};
use zt_store::model::{
    AgentFilter, AgentSort, PageRequest, Summary, TrendPoint, VulnFilter, VulnSort,
};

use super::charts;
use super::hosts::{hosts_head, hosts_table};
use super::layout::{self, n, View};
use super::vulns::vulns_table;
use super::{company_ctx, param, Ctx, PageError, PageResult, Params, Req};
use crate::routes::reads::mark_stale;
use crate::state::AppState;

/// A summary card; `key` names the count the live `summary` events update.
fn card(label: &str, key: &str, value: u64, href: Option<String>, class: &str) -> Markup {
    html! {
        div class={ "card " (class) } {
            div .n data-count=(key) { (n(value)) }
            div .l {
                @if let Some(h) = href { a href=(h) { (label) } } @else { (label) }
            }
        }
    }
}

pub fn cards(ctx: &Ctx, s: &Summary) -> Markup {
    let f = |q: &str| Some(ctx.url(&format!("/findings{q}")));
    html! {
        div .cards aria-label="Summary" {
            (card("hosts", "agents", s.agents, Some(ctx.url("/hosts")), ""))
            (card("apps", "apps", s.apps, Some(ctx.url("/software")), ""))
            (card("critical", "findings.critical", s.findings.critical, f("?severity=critical"), "c-critical"))
            (card("high", "findings.high", s.findings.high, f("?severity=high"), "c-high"))
            (card("medium", "findings.medium", s.findings.medium, f("?severity=medium"), "c-medium"))
            (card("low", "findings.low", s.findings.low, f("?severity=low"), "c-low"))
            (card("unknown", "findings.unknown", s.findings.unknown, f("?severity=unknown"), "c-unknown"))
            (card("in KEV", "kev", s.kev, f("?kev=true"), "c-kev"))
            (card("fixable", "fixable", s.fixable, f("?fixable=true"), ""))
            (card("overdue", "overdue", s.overdue, f("?overdue=true"), "c-overdue"))
        }
    }
}

async fn render(
    state: &AppState,
    req: &Req,
    company_id: &str,
    params: &std::collections::HashMap<String, String>,
) -> PageResult<Response> {
    let ctx = company_ctx(state, req, company_id).await?;
    let days: u32 = match param(params, "days") {
        None | Some("30") => 30,
        Some("90") => 90,
        Some(_) => return Err(PageError::Bad("days: 30 or 90".into())),
    };
    let series = match param(params, "series") {
        None | Some("open") => charts::Series::Open,
        Some("overdue") => charts::Series::Overdue,
        Some(_) => return Err(PageError::Bad("series: open or overdue".into())),
    };
    let summary = state.store.summary(ctx.id()).await?;
    let total = summary.findings.total();
    let top = state
        .store
        .list_vulnerabilities(
            ctx.id(),
            &VulnFilter {
                sort: VulnSort::Hosts,
                ..Default::default()
            },
            &PageRequest {
                limit: 10,
                cursor: None,
            },
        )
        .await?;
    let stale_before = state.config.stale_before(Utc::now());
    let mut risky = state
        .store
        .list_agents(
            ctx.id(),
            &AgentFilter {
                sort: AgentSort::Risk,
                stale_before: Some(stale_before),
                ..Default::default()
            },
            &PageRequest {
                limit: 10,
                cursor: None,
            },
        )
        .await?
        .items;
    risky.retain(|a| a.findings.total() > 0);
    for a in &mut risky {
        mark_stale(a, stale_before);
    }
    // The stored daily points, and today's from the counters now (as the API's trends).
    let today = Utc::now().date_naive();
    let since = today - chrono::Duration::days(i64::from(days) - 1);
    let mut trend = state.store.trends(ctx.id(), since).await?;
    trend.retain(|p| p.date < today);
    trend.push(TrendPoint::of(today, &summary));
    // Time to remediate over the same period (as `GET …/remediation?days=`).
    let remediated = state
        .store
        .remediation_rows(
            ctx.id(),
            Utc::now() - chrono::Duration::days(i64::from(days)),
        )
        .await?;
    let mttr = zt_store::sla::remediation_stats(&remediated);
    let content = html! {
        h1 { "Overview" }
        (cards(&ctx, &summary))
        div .grid {
            section .panel aria-labelledby="by-severity" {
                h2 #by-severity { "Open findings by severity" }
                (charts::severity_bars(&summary.findings, |s| ctx.url(&format!("/findings?severity={s}"))))
                (charts::share("In CISA KEV (known exploited)", "kev", summary.kev, total))
                (charts::share("Fixable (a fixed version exists)", "fixable", summary.fixable, total))
            }
            section .panel aria-labelledby="trend" {
                div .panel-head {
                    h2 #trend {
                        @if series == charts::Series::Overdue { "Trend of overdue findings" } @else { "Trend of open findings" }
                    }
                    nav .tabs aria-label="Findings shown" {
                        @for (sr, label) in [(charts::Series::Open, "open"), (charts::Series::Overdue, "overdue")] {
                            @let href = ctx.url(&format!("?days={days}&series={}", sr.key()));
                            @if sr == series {
                                a href=(href) aria-current="true" { (label) }
                            } @else {
                                a href=(href) { (label) }
                            }
                        }
                    }
                    nav .tabs aria-label="Period" {
                        @for d in [30u32, 90] {
                            @let href = ctx.url(&format!("?days={d}&series={}", series.key()));
                            @if d == days {
                                a href=(href) aria-current="true" { (d) " days" }
                            } @else {
                                a href=(href) { (d) " days" }
                            }
                        }
                    }
                }
                (charts::trend(&trend, days, series))
                p .muted { a href=(ctx.api(&format!("/trends?days={days}"))) { "The points as JSON" } }
            }
            section .panel aria-labelledby="mttr" {
                div .panel-head {
                    h2 #mttr { "Time to remediate" }
                    span .muted { "last " (days) " days" }
                }
                (remediation_table(&mttr))
                p .muted {
                    "From first seen to resolved by an upgrade or removal, in days. "
                    a href=(ctx.api(&format!("/remediation?days={days}"))) { "As JSON" }
                }
            }
            section .panel aria-labelledby="top-vulns" {
                div .panel-head {
                    h2 #top-vulns { "Vulnerabilities on most hosts" }
                    a href=(ctx.url("/vulnerabilities?sort=hosts")) { "All vulnerabilities" }
                }
                (vulns_table(&ctx, &top.items, None))
            }
            section .panel aria-labelledby="risky-hosts" {
                div .panel-head {
                    h2 #risky-hosts { "Riskiest hosts" }
                    a href=(ctx.url("/hosts?sort=risk")) { "All hosts" }
                }
                @if risky.is_empty() {
                    (layout::empty("No host has open findings."))
                } @else {
                    (hosts_table(&ctx, &risky, hosts_head(None)))
                }
            }
        }
        @if total == 0 && summary.agents == 0 {
            section .panel {
                h2 { "No hosts yet" }
                p {
                    "Nothing has reported to this company yet. "
                    @if ctx.viewer.is_admin() {
                        a href=(ctx.url("/add-hosts")) { "Add hosts" } " to see what they run and what is exposed."
                    } @else {
                        "An admin of the company can add hosts."
                    }
                }
            }
        }
    };
    Ok(layout::page(&ctx, View::Overview, "Overview", content))
}

/// Time to remediate per severity: findings remediated, median and p90 days.
fn remediation_table(stats: &[zt_store::sla::RemediationStats]) -> Markup {
    let days = |d: Option<f64>| match d {
        Some(d) => html! { (format!("{d:.1}")) },
        None => html! { span .muted { "–" } },
    };
    layout::table(
        "Time to remediate per severity",
        html! {
            th scope="col" { "Severity" }
            th scope="col" { "Remediated" }
            th scope="col" { "Median days" }
            th scope="col" { "p90 days" }
        },
        html! {
            @for s in stats {
                tr data-severity=(s.severity) {
                    td data-label="Severity" { span class={ "sev sev-" (s.severity) } { (s.severity) } }
                    td .num data-label="Remediated" { (n(s.remediated)) }
                    td .num data-label="Median days" { (days(s.median_days)) }
                    td .num data-label="p90 days" { (days(s.p90_days)) }
                }
            }
        },
    )
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

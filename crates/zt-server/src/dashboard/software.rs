//! `/c/{company_id}/software`: the distinct software versions of the company, with how many
//! hosts run each and their known vulnerabilities (search, vulnerable or not; sorted by hosts,
//! name or risk).

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::response::Response;
use maud::html;
use zt_store::model::{SoftwareFilter, SoftwareSort};

use super::hosts::risk;
use super::layout::{self, n, pager, search, select, Filters, Sort, View};
use super::{api_query, company_ctx, param, query, PageError, PageResult, Params, Req};
use crate::routes::reads::{parse_bool, search_text, PageQuery};
use crate::state::AppState;

const KEYS: &[&str] = &["q", "vulnerable", "sort", "order", "cursor"];
/// The sorts of the software list (the API's), with their natural direction.
const SORTS: &[(&str, bool)] = &[("hosts", true), ("name", false), ("risk", true)];
const PAGE_SIZE: u32 = 50;

async fn render(
    state: &AppState,
    req: &Req,
    company_id: &str,
    params: &HashMap<String, String>,
) -> PageResult<Response> {
    let ctx = company_ctx(state, req, company_id).await?;
    let sort = Sort::parse(params, SORTS)?;
    let filter = SoftwareFilter {
        query: search_text(param(params, "q"), "q")?,
        vulnerable: parse_bool(param(params, "vulnerable"), "vulnerable")?,
        sort: match sort.key.as_str() {
            "name" => SoftwareSort::Name,
            "risk" => SoftwareSort::Risk,
            "hosts" => SoftwareSort::Hosts,
            _ => return Err(PageError::Bad("sort".into())),
        },
        order: sort.order(),
    };
    let paging: PageQuery = api_query(req)?;
    let mut page = paging.page()?;
    if page.limit == 0 {
        page.limit = PAGE_SIZE;
    }
    let software = state.store.list_software(ctx.id(), &filter, &page).await?;
    let filters = Filters {
        base: ctx.url("/software"),
        params,
        keys: KEYS,
    };
    let th = |label: &str, key: &str| sort.th(&filters, SORTS, label, key);
    let content = html! {
        div .view-head {
            h1 { "Software" }
            (layout::csv_link(&filters.api(&ctx.api("/software"), &[("format", "csv")])))
        }
        form .filters method="get" action=(ctx.url("/software")) role="search" aria-label="Filter software" {
            (search("q", "Name", param(params, "q").unwrap_or(""), "openssl"))
            (select("vulnerable", "Vulnerable", &[("", "any"), ("true", "vulnerable"), ("false", "not vulnerable")], param(params, "vulnerable").unwrap_or("")))
            @for k in ["sort", "order"] {
                @if let Some(v) = param(params, k) { input type="hidden" name=(k) value=(v); }
            }
            button type="submit" { "Filter" }
            @if ["q", "vulnerable"].iter().any(|k| param(params, k).is_some()) {
                a href=(ctx.url("/software")) { "Clear filters" }
            }
        }
        @if software.items.is_empty() {
            (layout::empty("No software matches."))
        } @else {
            (layout::table("Software", html! {
                (th("Name", "name"))
                th scope="col" { "Version" }
                th scope="col" { "Ecosystem" }
                (th("Hosts", "hosts"))
                (th("Known vulnerabilities", "risk"))
            }, html! {
                @for s in &software.items {
                    tr {
                        td data-label="Name" { (s.name) @if let Some(src) = &s.source_name { @if *src != s.name { div .muted { "source " (src) } } } }
                        td .version data-label="Version" { (s.version) }
                        td data-label="Ecosystem" { (s.ecosystem) div .muted { (s.source) } }
                        td .num data-label="Hosts" { (n(s.hosts)) }
                        td data-label="Known vulnerabilities" {
                            @if s.vulnerabilities.total() > 0 {
                                a href=(format!("{}{}", ctx.url("/findings"), query([("q", s.name.as_str())]))) {
                                    (risk(&s.vulnerabilities, s.kev))
                                }
                            } @else {
                                span .muted { "none known" }
                            }
                        }
                    }
                }
            }))
        }
        (pager(&filters, software.next_cursor.as_deref(), software.items.len()))
    };
    Ok(layout::page(&ctx, View::Software, "Software", content))
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

//! `/operator`: every company with its counts (the MSP's view), each a way into that
//! company's dashboard.

use axum::extract::State;
use axum::response::Response;
use chrono::Utc;
use maud::html;

use super::hosts::risk;
use super::layout::{self, n};
use super::{viewer, PageError, PageResult, Req};
use crate::state::AppState;

async fn render(state: &AppState, req: &Req) -> PageResult<Response> {
    let viewer = viewer(state, req).await?;
    if !viewer.is_operator() {
        return Err(PageError::NotFound);
    }
    let rows = state
        .store
        .overview(state.config.stale_before(Utc::now()))
        .await?;
    let content = html! {
        div .view-head {
            h1 { "All companies" }
            a .button.secondary href="/api/v1/overview" { "As JSON" }
        }
        @if rows.is_empty() {
            (layout::empty("No companies yet. Create one with `zerotrace admin company create NAME` or POST /api/v1/companies."))
        } @else {
            (layout::table("Companies", html! {
                th scope="col" { "Company" } th scope="col" { "Hosts" } th scope="col" { "Stale hosts" }
                th scope="col" { "Apps" } th scope="col" { "Open findings" }
                th scope="col" { "KEV" } th scope="col" { "Fixable" }
            }, html! {
                @for c in &rows {
                    tr data-company=(c.company_id) {
                        td data-label="Company" { a href=(format!("/c/{}", c.company_id)) { (c.name) } }
                        td .num data-label="Hosts" data-count="agents" { (n(c.agents)) }
                        td .num data-label="Stale hosts" {
                            @if c.stale_agents > 0 {
                                a href=(format!("/c/{}/hosts?stale=true", c.company_id)) { (n(c.stale_agents)) }
                            } @else { "0" }
                        }
                        td .num data-label="Apps" data-count="apps" { (n(c.apps)) }
                        td data-label="Open findings" { (risk(&c.findings, 0)) }
                        td .num data-label="KEV" data-count="kev" { (n(c.kev)) }
                        td .num data-label="Fixable" data-count="fixable" { (n(c.fixable)) }
                    }
                }
            }))
        }
    };
    Ok(layout::operator_page(&viewer, req.fragment(), content))
}

pub async fn page(State(state): State<AppState>, req: Req) -> Response {
    render(&state, &req).await.unwrap_or_else(|e| req.error(e))
}

//! `/c/{company_id}/notifications`: the company's notification rules (events, filters, where
//! they go; never their secrets) and the latest delivery attempts, optionally of one rule
//! (`?rule_id=`), paged with `cursor`. Company admins and the operator create rules with
//! the page's form, send a rule's test message and delete a rule (the page's script calls
//! `…/notification-rules`, the API's own checks and errors).

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::response::Response;
use maud::html;

use super::layout::{self, pager, Filters, View};
use super::{company_ctx, param, PageError, PageResult, Params, Req};
use crate::routes::notifications::{delivery_params, list_deliveries, DeliveryQuery};
use crate::state::AppState;

const KEYS: &[&str] = &["rule_id", "cursor"];
const PAGE_SIZE: u32 = 50;

async fn render(
    state: &AppState,
    req: &Req,
    company_id: &str,
    params: &HashMap<String, String>,
) -> PageResult<Response> {
    let ctx = company_ctx(state, req, company_id).await?;
    let rules = state.store.notifications().list_rules(ctx.id()).await?;
    let q = DeliveryQuery::from_params(param(params, "rule_id"), param(params, "cursor"));
    let (rule_id, before, _) = delivery_params(&q).map_err(|_| PageError::Bad("rule_id".into()))?;
    let page = list_deliveries(state, ctx.id(), rule_id, before, PAGE_SIZE).await?;
    let names: HashMap<uuid::Uuid, &str> =
        rules.iter().map(|r| (r.rule_id, r.name.as_str())).collect();
    let filters = Filters {
        base: ctx.url("/notifications"),
        params,
        keys: KEYS,
    };
    let content = html! {
        div .view-head { h1 { "Notifications" } }
        section aria-labelledby="rules-h" {
            h2 #rules-h { "Rules" }
            @if rules.is_empty() {
                (layout::empty("No notification rules yet."))
            } @else {
                (layout::table("Notification rules", html! {
                    th scope="col" { "Name" }
                    th scope="col" { "Events" }
                    th scope="col" { "Filters" }
                    th scope="col" { "Destination" }
                    th scope="col" { "Digest" }
                    @if ctx.viewer.is_admin() { th scope="col" { "Actions" } }
                }, html! {
                    @for r in &rules {
                        tr data-rule=(r.rule_id) {
                            td data-label="Name" { a href=(format!("{}?rule_id={}", ctx.url("/notifications"), r.rule_id)) { (r.name) } }
                            td data-label="Events" { (r.events.join(", ")) }
                            td data-label="Filters" {
                                @if let Some(s) = r.min_severity { "severity ≥ " (s.as_str()) " " }
                                @if r.kev_only { "KEV only " }
                                @if !r.tags.is_empty() { "tags: " (r.tags.join(", ")) }
                                @if r.min_severity.is_none() && !r.kev_only && r.tags.is_empty() { span .muted { "none" } }
                            }
                            td data-label="Destination" {
                                (r.destination.kind) " "
                                span .muted {
                                    @if r.destination.kind == "email" { (r.destination.to.join(", ")) }
                                    @else if r.destination.kind == "webhook" { (r.destination.url.as_deref().unwrap_or("")) }
                                    @else { (r.destination.url.as_deref().and_then(|u| url::Url::parse(u).ok()).map(|u| u.origin().ascii_serialization()).unwrap_or_default()) "/…" }
                                }
                            }
                            td data-label="Digest" { @if r.digest_minutes == 0 { "at once" } @else { "every " (r.digest_minutes) " min" } }
                            @if ctx.viewer.is_admin() {
                                td data-label="Actions" {
                                    button type="button" .secondary data-rule-test=(ctx.api(&format!("/notification-rules/{}/test", r.rule_id))) { "Send test" }
                                    " "
                                    button type="button" .secondary data-rule-delete=(ctx.api(&format!("/notification-rules/{}", r.rule_id))) data-rule-name=(r.name) { "Delete" }
                                }
                            }
                        }
                    }
                }))
            }
            @if ctx.viewer.is_admin() {
                p #rule-status role="status" {}
                (rule_form(&ctx.api("/notification-rules")))
            }
        }
        section aria-labelledby="deliveries-h" {
            h2 #deliveries-h {
                "Deliveries"
                @if let Some(id) = rule_id { " of " (names.get(&id).copied().unwrap_or("a deleted rule")) " " a href=(ctx.url("/notifications")) { "(all rules)" } }
            }
            @if page.items.is_empty() {
                (layout::empty("No delivery attempts yet."))
            } @else {
                (layout::table("Delivery attempts", html! {
                    th scope="col" { "When" }
                    th scope="col" { "Rule" }
                    th scope="col" { "Event" }
                    th scope="col" { "Attempt" }
                    th scope="col" { "Outcome" }
                    th scope="col" { "Answer" }
                    th scope="col" { "Delivery id" }
                }, html! {
                    @for d in &page.items {
                        tr class=(format!("outcome-{}", d.outcome())) {
                            td data-label="When" { (layout::time(d.attempted_at())) }
                            td data-label="Rule" { (names.get(&d.rule_id()).copied().unwrap_or("(deleted)")) }
                            td data-label="Event" { (d.event()) }
                            td .num data-label="Attempt" { (d.attempt()) }
                            td data-label="Outcome" {
                                (d.outcome())
                                @if let Some(next) = d.next_attempt_at() { div .muted { "next " (layout::time(next)) } }
                            }
                            td data-label="Answer" {
                                @if let Some(s) = d.status() { (s) " " }
                                @if let Some(e) = d.error() { span .muted { (e) } }
                            }
                            td .version data-label="Delivery id" { (d.delivery_id()) }
                        }
                    }
                }))
            }
            (pager(&filters, page.next_cursor.as_deref(), page.items.len()))
        }
    };
    Ok(layout::page(
        &ctx,
        View::Notifications,
        "Notifications",
        content,
    ))
}

/// The events a rule can follow, as the API names them.
const EVENTS: &[&str] = &[
    "finding.opened",
    "finding.kev",
    "sla.due_soon",
    "sla.overdue",
    "analysis.expired",
    "agent.stale",
    "feed.stale",
    "report.failed",
];

/// The new-rule form. The script sends it as the API's JSON body; the API checks every field
/// and its error (naming the field) is shown in the form.
fn rule_form(api: &str) -> maud::Markup {
    html! {
        details #new-rule {
            summary { "New rule" }
            form #rule-form data-rule-form=(api) {
                label { "Name " input name="name" required maxlength="200" autocomplete="off"; }
                fieldset {
                    legend { "Events" }
                    @for e in EVENTS {
                        label { input type="checkbox" name="events" value=(e); " " (e) }
                        " "
                    }
                }
                label { "Minimum severity "
                    select name="min_severity" {
                        option value="" { "any" }
                        @for s in ["critical", "high", "medium", "low"] { option value=(s) { (s) } }
                    }
                }
                " "
                label { input type="checkbox" name="kev_only" value="true"; " KEV only" }
                " "
                label { "Host tags " input name="tags" placeholder="env=prod, team=web" autocomplete="off"; }
                " "
                label { "Digest (minutes, 0 = at once) " input type="number" name="digest_minutes" min="0" max="1440" value="0"; }
                fieldset {
                    legend { "Destination" }
                    label { "Kind "
                        select name="kind" {
                            option value="webhook" { "webhook" }
                            option value="slack" { "Slack" }
                            option value="teams" { "Microsoft Teams" }
                            option value="email" { "e-mail" }
                        }
                    }
                    " "
                    label { "URL " input type="url" name="url" placeholder="https://hooks.example.com/zerotrace" autocomplete="off"; }
                    " "
                    label { "Recipients (e-mail) " input name="to" placeholder="soc@example.com" autocomplete="off"; }
                    " "
                    label { "Signing secret (webhook) " input type="password" name="secret" autocomplete="new-password"; }
                }
                div .banner role="alert" data-form-error="" {}
                button type="submit" { "Create rule" }
            }
        }
    }
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

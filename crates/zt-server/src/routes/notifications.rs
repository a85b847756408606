//! Notification rules and their delivery log (DESIGN.md "Notifications"): company admins and
//! the operator write rules, every user of the company reads them. A destination secret is
//! sealed when stored and never shown again; Slack and Teams URLs (which are credentials
//! themselves) are shown with their path hidden.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;
use zt_advisory::Severity;
use zt_notify::{DestinationKind, EventType};
use zt_store::model::{CompanyId, Principal, Role};
use zt_store::notify::{AttemptRecord, DeliveryRecord, NotificationRule, RuleDestination};

use super::{check_text, created, parse_json, read_body, ApiQuery};
use crate::auth::{authenticate, company_access};
use crate::error::{ApiError, ApiResult};
use crate::openapi::{E400, E401, E403, E404, E413, E429};
use crate::state::AppState;

const RULE_BODY_LIMIT: usize = 64 * 1024;
const MAX_RECIPIENTS: usize = 20;

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DestinationIn {
    /// webhook | slack | teams | email
    #[schema(example = "webhook")]
    kind: String,
    /// The receiver's URL (webhook, slack, teams); http or https. Loopback, link-local and
    /// private addresses are refused unless the server allows them.
    #[schema(example = "https://hooks.example.com/zerotrace")]
    url: Option<String>,
    /// E-mail recipients (email).
    to: Option<Vec<String>>,
    /// Webhooks: the HMAC key of `ZeroTrace-Signature`. Stored sealed, never returned.
    #[schema(example = "whsec_change-me")]
    secret: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Critical to SOC", "events": ["finding.opened", "finding.kev"],
    "min_severity": "high", "digest_minutes": 0,
    "destination": {"kind": "webhook", "url": "https://hooks.example.com/zerotrace", "secret": "whsec_change-me"}}))]
pub struct CreateRule {
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*$"
    )]
    name: String,
    /// finding.opened | finding.kev | sla.due_soon | sla.overdue | analysis.expired |
    /// agent.stale | feed.stale | report.failed
    events: Vec<String>,
    /// critical | high | medium | low | unknown: vulnerability events below it are not sent.
    min_severity: Option<String>,
    /// Only vulnerabilities in CISA's KEV catalog.
    kev_only: Option<bool>,
    /// Only hosts carrying one of these tags.
    tags: Option<Vec<String>>,
    /// 0 (default): each message at once; N: one digest per event every N minutes (≤ 1440).
    #[schema(minimum = 0, maximum = 1440)]
    digest_minutes: Option<u32>,
    /// agent.stale: days without a report (default 7).
    #[schema(minimum = 1, maximum = 365)]
    stale_days: Option<u32>,
    destination: DestinationIn,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Critical and KEV to SOC", "kev_only": true}))]
pub struct PatchRule {
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*$"
    )]
    name: Option<String>,
    events: Option<Vec<String>>,
    /// A severity, or "any".
    min_severity: Option<String>,
    kev_only: Option<bool>,
    tags: Option<Vec<String>>,
    #[schema(minimum = 0, maximum = 1440)]
    digest_minutes: Option<u32>,
    #[schema(minimum = 1, maximum = 365)]
    stale_days: Option<u32>,
    /// Replaces the destination; its secret is kept unless given (an empty one removes it).
    destination: Option<DestinationIn>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DestinationOut {
    kind: String,
    /// Slack and Teams URLs are credentials: only their origin is shown.
    url: Option<String>,
    to: Vec<String>,
    /// Whether a secret is set (it is never shown).
    secret_set: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RuleOut {
    id: Uuid,
    name: String,
    events: Vec<String>,
    min_severity: Option<String>,
    kev_only: bool,
    tags: Vec<String>,
    digest_minutes: u32,
    stale_days: u32,
    destination: DestinationOut,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RuleList {
    items: Vec<RuleOut>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TestResult {
    /// The test message's delivery id.
    delivery_id: Uuid,
    ok: bool,
    status: Option<u16>,
    error: Option<String>,
    response_excerpt: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryOut {
    delivery_id: Uuid,
    rule_id: Uuid,
    /// The event, or `test`.
    event: String,
    attempt: u32,
    /// sent | retry | dead | test_sent | test_failed
    outcome: String,
    attempted_at: DateTime<Utc>,
    status: Option<u16>,
    /// At most 512 bytes of the receiver's answer.
    response_excerpt: Option<String>,
    error: Option<String>,
    next_attempt_at: Option<DateTime<Utc>>,
    duration_ms: u32,
}

impl DeliveryOut {
    pub(crate) fn outcome(&self) -> &str {
        &self.outcome
    }
    pub(crate) fn attempted_at(&self) -> DateTime<Utc> {
        self.attempted_at
    }
    pub(crate) fn rule_id(&self) -> Uuid {
        self.rule_id
    }
    pub(crate) fn event(&self) -> &str {
        &self.event
    }
    pub(crate) fn attempt(&self) -> u32 {
        self.attempt
    }
    pub(crate) fn next_attempt_at(&self) -> Option<DateTime<Utc>> {
        self.next_attempt_at
    }
    pub(crate) fn status(&self) -> Option<u16> {
        self.status
    }
    pub(crate) fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }
    pub(crate) fn delivery_id(&self) -> Uuid {
        self.delivery_id
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryPage {
    pub(crate) items: Vec<DeliveryOut>,
    pub(crate) next_cursor: Option<String>,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveryQuery {
    /// Only this rule's deliveries.
    #[param(value_type = Option<Uuid>)]
    rule_id: Option<String>,
    /// Items per page (default 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// The `next_cursor` of the previous page.
    #[param(value_type = Option<String>, max_length = 32)]
    cursor: Option<String>,
}

impl DeliveryQuery {
    pub(crate) fn from_params(rule_id: Option<&str>, cursor: Option<&str>) -> DeliveryQuery {
        DeliveryQuery {
            rule_id: rule_id.map(str::to_string),
            limit: None,
            cursor: cursor.map(str::to_string),
        }
    }
}

/// The company the caller may read, and whether they may write its rules.
async fn access(
    state: &AppState,
    headers: &HeaderMap,
    company: &str,
) -> ApiResult<(CompanyId, bool)> {
    let principal = authenticate(state, headers).await?;
    let company_id = company_access(state, &principal, company).await?;
    state.limits.check(&principal).await?;
    let writes = matches!(
        principal,
        Principal::Operator
            | Principal::User {
                role: Role::Admin,
                ..
            }
    );
    Ok((company_id, writes))
}

/// A caller who may change the company's rules, with who they are for the audit trail.
async fn writer(
    state: &AppState,
    headers: &HeaderMap,
    company: &str,
) -> ApiResult<super::analyses::Caller> {
    let caller = super::analyses::caller(state, headers, company).await?;
    if !caller.may_write() {
        return Err(ApiError::forbidden(
            "only company admins and the operator manage notification rules",
        ));
    }
    Ok(caller)
}

/// A rule change into the company's audit trail (issue 13: every rule change; the rule as
/// the API shows it, never its secret).
async fn audit_rule(
    state: &AppState,
    caller: &super::analyses::Caller,
    action: &str,
    rule_id: Uuid,
    before: Option<&NotificationRule>,
    after: Option<&NotificationRule>,
) -> ApiResult<()> {
    let image = |r: &NotificationRule| serde_json::to_value(rule_out(r)).ok();
    state
        .store
        .append_audit(
            caller.company_id,
            &zt_store::analysis::NewAudit {
                action: action.into(),
                object: format!("notification_rule/{rule_id}"),
                before: before.and_then(image),
                after: after.and_then(image),
            },
            &caller.context(None),
        )
        .await?;
    Ok(())
}

fn parse_rule_id(raw: &str) -> ApiResult<Uuid> {
    // A malformed id is a missing one.
    raw.parse::<Uuid>().map_err(|_| ApiError::not_found())
}

fn severity_of(field: &str, raw: &str) -> ApiResult<Option<Severity>> {
    Ok(Some(match raw {
        "critical" => Severity::Critical,
        "high" => Severity::High,
        "medium" => Severity::Medium,
        "low" => Severity::Low,
        "unknown" => Severity::Unknown,
        "any" => return Ok(None),
        _ => {
            return Err(ApiError::invalid_request(
                field,
                "must be one of critical, high, medium, low, unknown (or any)",
            ))
        }
    }))
}

fn check_events(events: &[String]) -> ApiResult<Vec<String>> {
    if events.is_empty() {
        return Err(ApiError::invalid_request(
            "events",
            "must name at least one event",
        ));
    }
    let mut out: Vec<String> = Vec::new();
    for (i, e) in events.iter().enumerate() {
        if EventType::parse(e).is_none() {
            let known: Vec<&str> = EventType::ALL.iter().map(|e| e.as_str()).collect();
            return Err(ApiError::invalid_request(
                format!("events[{i}]"),
                format!("unknown event {e:?}; one of {}", known.join(", ")),
            ));
        }
        if !out.contains(e) {
            out.push(e.clone());
        }
    }
    Ok(out)
}

fn check_tags(tags: &[String]) -> ApiResult<Vec<String>> {
    if tags.len() > 50 {
        return Err(ApiError::invalid_request("tags", "at most 50 tags"));
    }
    for (i, t) in tags.iter().enumerate() {
        check_text(&format!("tags[{i}]"), t, 1, 100)?;
    }
    Ok(tags.to_vec())
}

fn check_digest(n: u32) -> ApiResult<u32> {
    if n > 1440 {
        return Err(ApiError::invalid_request(
            "digest_minutes",
            "must be from 0 to 1440",
        ));
    }
    Ok(n)
}

fn check_stale_days(n: u32) -> ApiResult<u32> {
    if !(1..=365).contains(&n) {
        return Err(ApiError::invalid_request(
            "stale_days",
            "must be from 1 to 365",
        ));
    }
    Ok(n)
}

/// A checked destination and its secret (None: none given).
async fn check_destination(
    state: &AppState,
    d: &DestinationIn,
) -> ApiResult<(RuleDestination, Option<String>)> {
    let kind = DestinationKind::parse(&d.kind).ok_or_else(|| {
        ApiError::invalid_request(
            "destination.kind",
            "must be one of webhook, slack, teams, email",
        )
    })?;
    let mut out = RuleDestination {
        kind: kind.as_str().to_string(),
        url: None,
        to: Vec::new(),
    };
    match kind {
        DestinationKind::Email => {
            if d.url.is_some() {
                return Err(ApiError::invalid_request(
                    "destination.url",
                    "e-mail destinations take `to`, not a URL",
                ));
            }
            let to = d.to.clone().unwrap_or_default();
            if to.is_empty() || to.len() > MAX_RECIPIENTS {
                return Err(ApiError::invalid_request(
                    "destination.to",
                    format!("must list 1 to {MAX_RECIPIENTS} e-mail addresses"),
                ));
            }
            for (i, addr) in to.iter().enumerate() {
                if !zt_notify::send::is_email_address(addr) {
                    return Err(ApiError::invalid_request(
                        format!("destination.to[{i}]"),
                        format!("{addr:?} is not an e-mail address"),
                    ));
                }
            }
            out.to = to;
        }
        _ => {
            if d.to.is_some() {
                return Err(ApiError::invalid_request(
                    "destination.to",
                    "only e-mail destinations take recipients",
                ));
            }
            let url = d.url.as_deref().ok_or_else(|| {
                ApiError::invalid_request("destination.url", "is required for this kind")
            })?;
            if url.len() > 2048 {
                return Err(ApiError::invalid_request(
                    "destination.url",
                    "at most 2048 characters",
                ));
            }
            let checked = if state.notifier.config.allow_private {
                // Every address is allowed: the form is checked, the name may resolve later.
                zt_notify::guard::parse_url(url)
            } else {
                zt_notify::check_url(url, state.notifier.policy()).await
            };
            checked.map_err(|e| ApiError::invalid_request("destination.url", e.to_string()))?;
            out.url = Some(url.to_string());
        }
    }
    let secret = match &d.secret {
        None => None,
        Some(s) => {
            if kind != DestinationKind::Webhook {
                return Err(ApiError::invalid_request(
                    "destination.secret",
                    "only webhook destinations sign with a secret",
                ));
            }
            if !s.is_empty() {
                check_text("destination.secret", s, 8, 256)?;
            }
            Some(s.clone())
        }
    };
    Ok((out, secret))
}

fn shown_url(kind: &str, url: Option<&str>) -> Option<String> {
    let url = url?;
    if kind == "slack" || kind == "teams" {
        return Some(match url::Url::parse(url) {
            Ok(u) => format!("{}/…", u.origin().ascii_serialization()),
            Err(_) => "…".into(),
        });
    }
    Some(url.to_string())
}

fn rule_out(r: &NotificationRule) -> RuleOut {
    RuleOut {
        id: r.rule_id,
        name: r.name.clone(),
        events: r.events.clone(),
        min_severity: r.min_severity.map(|s| s.as_str().to_string()),
        kev_only: r.kev_only,
        tags: r.tags.clone(),
        digest_minutes: r.digest_minutes,
        stale_days: r.stale_days,
        destination: DestinationOut {
            kind: r.destination.kind.clone(),
            url: shown_url(&r.destination.kind, r.destination.url.as_deref()),
            to: r.destination.to.clone(),
            secret_set: r.secret_sealed.is_some(),
        },
        created_at: r.created_at,
        updated_at: r.updated_at,
    }
}

/// Creates a notification rule.
#[utoipa::path(post, path = "/api/v1/companies/{company_id}/notification-rules", tag = "notifications",
    params(("company_id" = Uuid, Path, description = "The company")),
    request_body = CreateRule,
    responses(
        (status = 201, description = "Created (the secret is never shown)", body = RuleOut),
        E400, E401, E403, E404, E413, E429,
    ),
    security(("operator" = []), ("company_admin" = [])))]
pub async fn create_rule(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(company_id): Path<String>,
    body: Body,
) -> ApiResult<Response> {
    let caller = writer(&state, &headers, &company_id).await?;
    let company_id = caller.company_id;
    let bytes = read_body(body, RULE_BODY_LIMIT).await?;
    let req: CreateRule = parse_json(&bytes)?;
    let name = req.name.trim().to_string();
    check_text("name", &name, 1, 200)?;
    let events = check_events(&req.events)?;
    let min_severity = match req.min_severity.as_deref() {
        Some(s) => severity_of("min_severity", s)?,
        None => None,
    };
    let tags = check_tags(req.tags.as_deref().unwrap_or_default())?;
    let digest_minutes = check_digest(req.digest_minutes.unwrap_or(0))?;
    let stale_days = check_stale_days(req.stale_days.unwrap_or(7))?;
    let (destination, secret) = check_destination(&state, &req.destination).await?;
    let rule_id = Uuid::now_v7();
    let now = Utc::now();
    let rule = NotificationRule {
        rule_id,
        company_id,
        name,
        events,
        min_severity,
        kev_only: req.kev_only.unwrap_or(false),
        tags,
        digest_minutes,
        stale_days,
        destination,
        secret_sealed: secret
            .filter(|s| !s.is_empty())
            .map(|s| state.notifier.key.seal(&s, rule_id.as_bytes())),
        created_at: now,
        updated_at: now,
    };
    if !state.store.notifications().create_rule(&rule).await? {
        return Err(ApiError::not_found());
    }
    audit_rule(
        &state,
        &caller,
        "notification_rule.created",
        rule_id,
        None,
        Some(&rule),
    )
    .await?;
    Ok(created(rule_out(&rule)))
}

/// The company's notification rules.
#[utoipa::path(get, path = "/api/v1/companies/{company_id}/notification-rules", tag = "notifications",
    params(("company_id" = Uuid, Path, description = "The company")),
    responses((status = 200, description = "Rules", body = RuleList), E401, E403, E404, E429),
    security(("operator" = []), ("company_admin" = []), ("company_viewer" = [])))]
pub async fn list_rules(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(company_id): Path<String>,
) -> ApiResult<Response> {
    let (company_id, _) = access(&state, &headers, &company_id).await?;
    let rules = state.store.notifications().list_rules(company_id).await?;
    Ok(Json(RuleList {
        items: rules.iter().map(rule_out).collect(),
    })
    .into_response())
}

/// One notification rule.
#[utoipa::path(get, path = "/api/v1/companies/{company_id}/notification-rules/{rule_id}", tag = "notifications",
    params(("company_id" = Uuid, Path, description = "The company"),
           ("rule_id" = Uuid, Path, description = "The rule")),
    responses((status = 200, description = "The rule", body = RuleOut), E401, E403, E404, E429),
    security(("operator" = []), ("company_admin" = []), ("company_viewer" = [])))]
pub async fn get_rule(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((company_id, rule_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let (company_id, _) = access(&state, &headers, &company_id).await?;
    let rule_id = parse_rule_id(&rule_id)?;
    let rule = state
        .store
        .notifications()
        .get_rule(company_id, rule_id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(rule_out(&rule)).into_response())
}

/// Changes a notification rule: the fields given replace the stored ones.
#[utoipa::path(patch, path = "/api/v1/companies/{company_id}/notification-rules/{rule_id}", tag = "notifications",
    params(("company_id" = Uuid, Path, description = "The company"),
           ("rule_id" = Uuid, Path, description = "The rule")),
    request_body = PatchRule,
    responses((status = 200, description = "The rule as changed", body = RuleOut),
        E400, E401, E403, E404, E413, E429),
    security(("operator" = []), ("company_admin" = [])))]
pub async fn patch_rule(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((company_id, rule_id)): Path<(String, String)>,
    body: Body,
) -> ApiResult<Response> {
    let caller = writer(&state, &headers, &company_id).await?;
    let company_id = caller.company_id;
    let rule_id = parse_rule_id(&rule_id)?;
    let bytes = read_body(body, RULE_BODY_LIMIT).await?;
    let req: PatchRule = parse_json(&bytes)?;
    let store = state.store.notifications();
    let mut rule = store
        .get_rule(company_id, rule_id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let before = rule.clone();
    if let Some(name) = req.name {
        let name = name.trim().to_string();
        check_text("name", &name, 1, 200)?;
        rule.name = name;
    }
    if let Some(events) = req.events {
        rule.events = check_events(&events)?;
    }
    if let Some(s) = req.min_severity {
        rule.min_severity = severity_of("min_severity", &s)?;
    }
    if let Some(k) = req.kev_only {
        rule.kev_only = k;
    }
    if let Some(tags) = req.tags {
        rule.tags = check_tags(&tags)?;
    }
    if let Some(d) = req.digest_minutes {
        rule.digest_minutes = check_digest(d)?;
    }
    if let Some(d) = req.stale_days {
        rule.stale_days = check_stale_days(d)?;
    }
    if let Some(d) = req.destination {
        let (dest, secret) = check_destination(&state, &d).await?;
        if dest.kind != "webhook" {
            rule.secret_sealed = None;
        }
        match secret {
            Some(s) if s.is_empty() => rule.secret_sealed = None,
            Some(s) => rule.secret_sealed = Some(state.notifier.key.seal(&s, rule_id.as_bytes())),
            None => {}
        }
        rule.destination = dest;
    }
    rule.updated_at = Utc::now();
    if !store.update_rule(&rule).await? {
        return Err(ApiError::not_found());
    }
    audit_rule(
        &state,
        &caller,
        "notification_rule.updated",
        rule_id,
        Some(&before),
        Some(&rule),
    )
    .await?;
    Ok(Json(rule_out(&rule)).into_response())
}

/// Deletes a notification rule and its unsent messages (its delivery log stays).
#[utoipa::path(delete, path = "/api/v1/companies/{company_id}/notification-rules/{rule_id}", tag = "notifications",
    params(("company_id" = Uuid, Path, description = "The company"),
           ("rule_id" = Uuid, Path, description = "The rule")),
    responses((status = 204, description = "Deleted"), E401, E403, E404, E429),
    security(("operator" = []), ("company_admin" = [])))]
pub async fn delete_rule(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((company_id, rule_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let caller = writer(&state, &headers, &company_id).await?;
    let company_id = caller.company_id;
    let rule_id = parse_rule_id(&rule_id)?;
    let before = state
        .store
        .notifications()
        .get_rule(company_id, rule_id)
        .await?;
    if !state
        .store
        .notifications()
        .delete_rule(company_id, rule_id)
        .await?
    {
        return Err(ApiError::not_found());
    }
    audit_rule(
        &state,
        &caller,
        "notification_rule.deleted",
        rule_id,
        before.as_ref(),
        None,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Sends a sample message of the rule's first event to its destination now, and logs the
/// attempt (outcome `test_sent` or `test_failed`). 200 whatever the receiver answered: the
/// answer says.
#[utoipa::path(post, path = "/api/v1/companies/{company_id}/notification-rules/{rule_id}/test", tag = "notifications",
    params(("company_id" = Uuid, Path, description = "The company"),
           ("rule_id" = Uuid, Path, description = "The rule")),
    responses((status = 200, description = "What the destination answered", body = TestResult),
        E401, E403, E404, E429),
    security(("operator" = []), ("company_admin" = [])))]
pub async fn test_rule(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((company_id, rule_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let company_id = writer(&state, &headers, &company_id).await?.company_id;
    let rule_id = parse_rule_id(&rule_id)?;
    let store = state.store.notifications();
    let rule = store
        .get_rule(company_id, rule_id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let event = rule
        .events
        .first()
        .and_then(|e| EventType::parse(e))
        .unwrap_or(EventType::FindingOpened);
    let data = sample_data(event);
    let delivery_id = Uuid::now_v7();
    let started = std::time::Instant::now();
    let attempted_at = Utc::now();
    let attempt = match state.notifier.destination(&rule) {
        Ok(dest) => {
            let m = state
                .notifier
                .message(delivery_id, event, company_id.0, attempted_at, data);
            state.notifier.sender.send(&m, &dest).await
        }
        Err(e) => zt_notify::Attempt {
            ok: false,
            status: None,
            excerpt: None,
            error: Some(e),
            retryable: false,
        },
    };
    let record = AttemptRecord {
        attempted_at,
        status: attempt.status,
        response_excerpt: attempt.excerpt.clone(),
        error: attempt.error.clone(),
        duration_ms: u32::try_from(started.elapsed().as_millis()).unwrap_or(u32::MAX),
    };
    store
        .record_test_delivery(&rule, delivery_id, &record, attempt.ok)
        .await?;
    Ok(Json(TestResult {
        delivery_id,
        ok: attempt.ok,
        status: attempt.status,
        error: attempt.error,
        response_excerpt: attempt.excerpt,
    })
    .into_response())
}

/// The data of a rule's sample message (marked `sample`).
fn sample_data(event: EventType) -> serde_json::Map<String, serde_json::Value> {
    let v = if event.is_about_vulnerability() {
        json!({"sample": true, "subject": "CVE-2024-3094", "vuln_id": "CVE-2024-3094",
            "severity": "critical", "kev": false, "host_count": 3,
            "packages": ["xz-utils 5.6.0-0.2"]})
    } else {
        match event {
            EventType::AgentStale => json!({"sample": true, "agent_id": Uuid::nil().to_string(),
                "hostname": "sample-host", "last_seen_at": "2026-01-01T00:00:00Z", "stale_days": 7}),
            EventType::ReportFailed => json!({"sample": true, "report_id": Uuid::nil().to_string(),
                "agent_id": Uuid::nil().to_string(), "hostname": "sample-host",
                "error": "sample error"}),
            _ => {
                json!({"sample": true, "source": "osv", "last_success_at": "2026-01-01T00:00:00Z"})
            }
        }
    };
    v.as_object().cloned().unwrap_or_default()
}

fn delivery_out(d: DeliveryRecord) -> DeliveryOut {
    DeliveryOut {
        delivery_id: d.delivery_id,
        rule_id: d.rule_id,
        event: d.event,
        attempt: d.attempt,
        outcome: d.outcome,
        attempted_at: d.attempt_record.attempted_at,
        status: d.attempt_record.status,
        response_excerpt: d.attempt_record.response_excerpt,
        error: d.attempt_record.error,
        next_attempt_at: d.next_attempt_at,
        duration_ms: d.attempt_record.duration_ms,
    }
}

/// Every delivery attempt of the company's notifications, newest first.
#[utoipa::path(get, path = "/api/v1/companies/{company_id}/notification-deliveries", tag = "notifications",
    params(("company_id" = Uuid, Path, description = "The company"), DeliveryQuery),
    responses((status = 200, description = "Attempts, newest first", body = DeliveryPage),
        E400, E401, E403, E404, E429),
    security(("operator" = []), ("company_admin" = []), ("company_viewer" = [])))]
pub async fn deliveries(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(company_id): Path<String>,
    ApiQuery(q): ApiQuery<DeliveryQuery>,
) -> ApiResult<Response> {
    let (company_id, _) = access(&state, &headers, &company_id).await?;
    let (rule_id, before, limit) = delivery_params(&q)?;
    let page = list_deliveries(&state, company_id, rule_id, before, limit).await?;
    Ok(Json(page).into_response())
}

pub(crate) fn delivery_params(q: &DeliveryQuery) -> ApiResult<(Option<Uuid>, Option<i64>, u32)> {
    // Empty is not "any rule": the document says a UUID (the dashboard leaves it out).
    let rule_id = match q.rule_id.as_deref() {
        Some(s) => Some(
            s.parse::<Uuid>()
                .map_err(|_| ApiError::invalid_request("rule_id", "must be a rule id (UUID)"))?,
        ),
        None => None,
    };
    let before = match q.cursor.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => Some(
            s.parse::<i64>()
                .ok()
                .filter(|n| *n > 0 && s.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| ApiError::invalid_request("cursor", "not a cursor of this list"))?,
        ),
        None => None,
    };
    let limit = match q.limit.as_deref() {
        None => 100,
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
    Ok((rule_id, before, limit))
}

pub(crate) async fn list_deliveries(
    state: &AppState,
    company_id: CompanyId,
    rule_id: Option<Uuid>,
    before: Option<i64>,
    limit: u32,
) -> ApiResult<DeliveryPage> {
    let mut rows = state
        .store
        .notifications()
        .list_deliveries(company_id, rule_id, before, limit + 1)
        .await?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next_cursor = if more {
        rows.last().map(|r| r.seq.to_string())
    } else {
        None
    };
    Ok(DeliveryPage {
        items: rows.into_iter().map(delivery_out).collect(),
        next_cursor,
    })
}

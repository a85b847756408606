//! Live events over Server-Sent Events (DESIGN.md "Live events"): a company's stream (its users
//! or the operator; a foreign company answers 404 like a missing one) and the operator's stream
//! of every company. `Last-Event-ID` resumes; a comment line keeps idle streams open through
//! proxies. The streams themselves are `live::Stream`s.

use std::convert::Infallible;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::sse::{KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use zt_store::model::Principal;

use crate::auth::{authenticate, company_access};
use crate::error::{ApiError, ApiResult};
use crate::live::{summary_json, Scope, Stream};
use crate::openapi::{E401, E403, E404, E429};
use crate::state::AppState;

/// The position a reconnecting client asks to resume after. An id this server never sent (not
/// a number) cannot be resumed: the stream answers with `resync`.
fn last_event_id(headers: &HeaderMap) -> Option<u64> {
    let value = headers.get("last-event-id")?;
    let text = value.to_str().ok().map(str::trim).unwrap_or("?");
    if text.is_empty() {
        return None;
    }
    Some(text.parse().unwrap_or(u64::MAX))
}

/// Live events of a company (Server-Sent Events).
/// One message of an event stream, as a client parses it.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // documents the messages the stream writes
pub struct SseMessage {
    /// The event log's id (a `summary` or `resync` repeats the stream's position).
    id: String,
    /// summary, report.processed, findings.changed, agent.enrolled, knowledge.updated, resync
    event: String,
    /// One JSON object.
    data: String,
}

#[utoipa::path(get, path = "/api/v1/companies/{company_id}/events", tag = "events",
    description = "text/event-stream. Each message has `id:` (the event log's id; a `summary` or `resync` \
repeats the stream's position), `event:` (summary, report.processed, findings.changed, \
agent.enrolled, knowledge.updated, resync) and `data:` (one JSON object, with company_id). A \
comment line is sent when the stream was idle for the heartbeat interval (15 s).",
    params(("company_id" = Uuid, Path, description = "The company"), ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event id (as sent by the stream); `resync` when the events after it are gone.")),
    responses(
        (status = 200, description = "The event stream", content_type = "text/event-stream", body = SseMessage),
        E401, E403, E404, E429,
    ),
    security(("operator" = []), ("company_admin" = []), ("company_viewer" = [])))]
pub async fn company_events(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(company_id): Path<String>,
) -> ApiResult<Response> {
    let principal = authenticate(&state, &headers).await?;
    let company_id = company_access(&state, &principal, &company_id).await?;
    state.limits.check(&principal).await?;
    let summary = state.store.summary(company_id).await?;
    let stream = Stream::open(
        &state.events,
        state.store.clone(),
        Scope::Company(company_id),
        last_event_id(&headers),
        vec![summary_json(company_id, &summary)],
    )
    .await?;
    Ok(sse(&state, stream))
}

/// Live events of every company (operator; Server-Sent Events).
#[utoipa::path(get, path = "/api/v1/events", tag = "events",
    description = "text/event-stream. Each message has `id:` (the event log's id; a `summary` or `resync` \
repeats the stream's position), `event:` (summary, report.processed, findings.changed, \
agent.enrolled, knowledge.updated, resync) and `data:` (one JSON object, with company_id). A \
comment line is sent when the stream was idle for the heartbeat interval (15 s).",
    params(("Last-Event-ID" = Option<String>, Header, description = "Resume after this event id (as sent by the stream); `resync` when the events after it are gone.")),
    responses(
        (status = 200, description = "The event stream", content_type = "text/event-stream", body = SseMessage),
        E401, E403, E429,
    ),
    security(("operator" = [])))]
pub async fn all_events(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    let principal = authenticate(&state, &headers).await?;
    if principal != Principal::Operator {
        return Err(ApiError::forbidden(
            "only the operator streams every company's events",
        ));
    }
    state.limits.check(&principal).await?;
    let mut initial = Vec::new();
    for company in state.store.list_companies().await? {
        let summary = state.store.summary(company.id).await?;
        initial.push(summary_json(company.id, &summary));
    }
    let stream = Stream::open(
        &state.events,
        state.store.clone(),
        Scope::All,
        last_event_id(&headers),
        initial,
    )
    .await?;
    Ok(sse(&state, stream))
}

fn sse(state: &AppState, stream: Stream) -> Response {
    let messages = futures::stream::unfold(stream, |mut s| async move {
        s.next().await.map(|e| (Ok::<_, Infallible>(e), s))
    });
    let mut response = Sse::new(messages)
        .keep_alive(
            KeepAlive::new()
                .interval(state.config.sse_heartbeat)
                .text("heartbeat"),
        )
        .into_response();
    // nginx and similar proxies pass the stream through instead of buffering it.
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

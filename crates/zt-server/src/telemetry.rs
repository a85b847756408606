//! Prometheus metrics (names fixed by DESIGN.md: the alert rules use them) and the HTTP
//! request counter middleware.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide recorder (installed on first use; several servers in one test process
/// share it).
pub fn prometheus() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let latency = [
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ];
            // A batch grows to 32 x --batch-apps apps while a backlog lasts: its time can
            // approach the lease (60 s by default), which the SlowProcessing alert watches.
            let batch = [
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
            ];
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("app_processing_duration_seconds".into()),
                    &batch,
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("http_request_duration_seconds".into()),
                        &latency,
                    )
                });
            let recorder = match builder {
                Ok(b) => b.build_recorder(),
                Err(_) => PrometheusBuilder::new().build_recorder(),
            };
            let handle = recorder.handle();
            // Fails only when another recorder was installed first (then ours stays unused).
            let _ = metrics::set_global_recorder(recorder);
            describe();
            handle
        })
        .clone()
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_gauge!(
        "app_queue_size",
        "Reports waiting in or held from the processing queue"
    );
    describe_gauge!(
        "app_queue_oldest_age_seconds",
        Unit::Seconds,
        "Age of the longest-waiting report still queued or in processing (0: none)"
    );
    describe_gauge!(
        "app_queue_dead",
        "Reports dead-lettered after their last processing attempt, kept for inspection"
    );
    describe_histogram!(
        "app_processing_duration_seconds",
        Unit::Seconds,
        "Time to process one claimed batch of reports"
    );
    describe_counter!("apps_processed_total", "App records processed by workers");
    describe_counter!(
        "app_processing_errors_total",
        "Reports whose processing attempt failed"
    );
    describe_counter!(
        "cve_enrichment_failures_total",
        "Software versions whose matching failed"
    );
    describe_counter!(
        "enrichment_cache_hits_total",
        "Software versions found in the match cache"
    );
    describe_counter!(
        "enrichment_cache_misses_total",
        "Software versions matched for the first time"
    );
    describe_counter!("http_requests_total", "HTTP requests by route and status");
    describe_histogram!(
        "http_request_duration_seconds",
        Unit::Seconds,
        "HTTP request latency by route"
    );
    describe_counter!(
        "rate_limited_total",
        "Requests refused by a rate limit, by scope"
    );
    describe_counter!(
        "reports_accepted_total",
        "Inventory reports by outcome at the door"
    );
    describe_counter!(
        "reports_processed_total",
        "Claimed reports by what processing made of them"
    );
    describe_counter!(
        "reports_clock_ahead_total",
        "Reports dated ahead of the server's clock (within the accepted skew): ordered as of their arrival"
    );
    describe_counter!(
        "redis_errors_total",
        "Failed calls to the shared Redis (limits fall back to this process)"
    );
    describe_gauge!(
        "findings_open",
        "Open findings of all companies, by severity (read every minute by worker processes)"
    );
    describe_gauge!(
        "findings_open_kev",
        "Open findings of all companies whose vulnerability is in CISA KEV"
    );
    describe_gauge!("agents_enrolled", "Agents enrolled, all companies together");
    describe_gauge!(
        "sse_streams",
        "Live event streams (SSE) open on this process"
    );
    describe_counter!(
        "notifications_sent_total",
        "Notification attempts a destination accepted, by destination kind"
    );
    describe_counter!(
        "notifications_failed_total",
        "Notification attempts that failed (retried or dead), by destination kind"
    );
    describe_gauge!(
        "notification_outbox_backlog",
        "Notifications written to the outbox and not yet sent nor dead"
    );
    describe_gauge!(
        "notification_outbox_oldest_age_seconds",
        Unit::Seconds,
        "Age of the oldest notification not yet sent nor dead (0: none)"
    );
    describe_gauge!(
        "zerotrace_build_info",
        "Always 1; the labels say which version and role this process runs"
    );
}

/// Outcomes of `reports_accepted_total`.
pub const ACCEPT_OUTCOMES: [&str; 5] =
    ["queued", "unchanged", "duplicate", "conflict", "queue_full"];
/// Outcomes of `reports_processed_total`.
pub const PROCESS_OUTCOMES: [&str; 3] = ["applied", "stale", "lease_lost"];
/// Scopes of `rate_limited_total`.
pub const RATE_LIMIT_SCOPES: [&str; 2] = ["agent", "company"];
/// Destination kinds of `notifications_sent_total` and `notifications_failed_total`.
pub const NOTIFICATION_KINDS: [&str; 4] = ["webhook", "slack", "teams", "email"];
/// Severities of `findings_open`.
pub const SEVERITIES: [&str; 5] = ["critical", "high", "medium", "low", "unknown"];

/// Makes every metric exist from the start — counters at 0 for each known label value,
/// histograms without observations — so that alert rules and dashboards see a series (and a
/// rate of 0) before the first event, not a gap. The store gauges are set by the janitor's
/// first reading, before the server listens (`janitor::record_gauges`).
pub fn register_all(role: &'static str) {
    for name in [
        "apps_processed_total",
        "app_processing_errors_total",
        "cve_enrichment_failures_total",
        "enrichment_cache_hits_total",
        "enrichment_cache_misses_total",
        "redis_errors_total",
        "reports_clock_ahead_total",
    ] {
        metrics::counter!(name).increment(0);
    }
    for outcome in ACCEPT_OUTCOMES {
        metrics::counter!("reports_accepted_total", "outcome" => outcome).increment(0);
    }
    for outcome in PROCESS_OUTCOMES {
        metrics::counter!("reports_processed_total", "outcome" => outcome).increment(0);
    }
    for scope in RATE_LIMIT_SCOPES {
        metrics::counter!("rate_limited_total", "scope" => scope).increment(0);
    }
    metrics::gauge!("sse_streams").increment(0.0);
    for kind in NOTIFICATION_KINDS {
        metrics::counter!("notifications_sent_total", "kind" => kind).increment(0);
        metrics::counter!("notifications_failed_total", "kind" => kind).increment(0);
    }
    metrics::gauge!("notification_outbox_backlog").increment(0.0);
    metrics::gauge!("notification_outbox_oldest_age_seconds").increment(0.0);
    // Registering a histogram renders its buckets, all 0.
    let _ = metrics::histogram!("app_processing_duration_seconds");
    metrics::gauge!(
        "zerotrace_build_info",
        "version" => env!("CARGO_PKG_VERSION"),
        "role" => role
    )
    .set(1.0);
}

/// Counts every request by its route template (never the raw path: ids would explode the
/// label set) and status.
pub async fn track_http(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let start = Instant::now();
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    metrics::counter!("http_requests_total", "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("http_request_duration_seconds", "route" => route)
        .record(start.elapsed().as_secs_f64());
    resp
}

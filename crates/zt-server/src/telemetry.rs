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
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("app_processing_duration_seconds".into()),
                    &latency,
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

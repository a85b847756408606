//! The dashboard's reads under measurement: every API call the views make (issue 12),
//! repeated against random companies of the server, several at a time, with the latency of
//! each printed as percentiles; and one company's findings exported as CSV, timed whole.
//!
//! It reads with the operator token (not rate limited), through the public API only, so it
//! measures what a browser would wait for. Nothing here asserts a target: it prints figures.

use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::Value;

use crate::client::{ApiClient, ClientError};
use crate::Recorder;

/// What to read, and how hard.
#[derive(Debug, Clone)]
pub struct ReadConfig {
    /// Requests per dashboard call.
    pub requests: usize,
    /// Requests in flight at once (dashboards open at once).
    pub concurrency: usize,
    /// Time one company's full CSV export of its findings.
    pub export: bool,
    pub seed: u64,
}

/// Percentiles of one call's latency, in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct CallFigures {
    /// The view the call belongs to and the call (its path with placeholders).
    pub call: String,
    pub requests: u64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// One company's findings exported as CSV.
#[derive(Debug, Clone, Serialize)]
pub struct ExportFigures {
    pub rows: u64,
    pub bytes: u64,
    pub seconds: f64,
    /// Time to the first byte of the body.
    pub first_byte_ms: f64,
}

/// Every host of one company, page after page (as a hosts view scrolled to the end).
#[derive(Debug, Clone, Serialize)]
pub struct PagingFigures {
    pub hosts: u64,
    pub pages: u64,
    pub seconds: f64,
    pub slowest_page_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReadReport {
    pub companies: usize,
    pub calls: Vec<CallFigures>,
    pub hosts_paged: Option<PagingFigures>,
    pub findings_csv: Option<ExportFigures>,
}

/// A company the reads pick from, with some ids to fill paths.
#[derive(Debug, Clone)]
struct Target {
    id: String,
    agents: Vec<String>,
    vulns: Vec<String>,
    agent_count: u64,
}

/// The calls of each view: (name, path template). `{c}` is a company id, `{a}` one of its
/// agents, `{v}` one of its vulnerabilities.
const CALLS: &[(&str, &str)] = &[
    ("overview: summary", "/api/v1/companies/{c}/summary"),
    (
        "overview: trends 30 d",
        "/api/v1/companies/{c}/trends?days=30",
    ),
    (
        "overview: trends 400 d",
        "/api/v1/companies/{c}/trends?days=400",
    ),
    (
        "overview: top vulnerabilities",
        "/api/v1/companies/{c}/vulnerabilities?sort=hosts&limit=10",
    ),
    (
        "overview: riskiest hosts",
        "/api/v1/companies/{c}/agents?sort=risk&limit=10",
    ),
    ("hosts: page of 50", "/api/v1/companies/{c}/agents?limit=50"),
    (
        "hosts: by risk",
        "/api/v1/companies/{c}/agents?sort=risk&limit=50",
    ),
    (
        "hosts: by last seen",
        "/api/v1/companies/{c}/agents?sort=last_seen&limit=50",
    ),
    (
        "hosts: by OS",
        "/api/v1/companies/{c}/agents?sort=os&limit=50",
    ),
    (
        "hosts: search",
        "/api/v1/companies/{c}/agents?q=host-1&limit=50",
    ),
    (
        "hosts: stale",
        "/api/v1/companies/{c}/agents?stale=true&limit=50",
    ),
    ("host: detail", "/api/v1/companies/{c}/agents/{a}"),
    (
        "host: apps",
        "/api/v1/companies/{c}/agents/{a}/apps?limit=50",
    ),
    (
        "host: findings",
        "/api/v1/companies/{c}/findings?agent_id={a}&limit=50",
    ),
    (
        "host: reports",
        "/api/v1/companies/{c}/agents/{a}/reports?limit=50",
    ),
    (
        "software: page of 50",
        "/api/v1/companies/{c}/software?limit=50",
    ),
    (
        "software: by risk",
        "/api/v1/companies/{c}/software?sort=risk&limit=50",
    ),
    (
        "software: search openssl",
        "/api/v1/companies/{c}/software?q=openssl&limit=50",
    ),
    (
        "software: vulnerable",
        "/api/v1/companies/{c}/software?vulnerable=true&limit=50",
    ),
    (
        "vulnerabilities: page of 50",
        "/api/v1/companies/{c}/vulnerabilities?limit=50",
    ),
    (
        "vulnerabilities: by hosts",
        "/api/v1/companies/{c}/vulnerabilities?sort=hosts&limit=50",
    ),
    (
        "vulnerabilities: by EPSS",
        "/api/v1/companies/{c}/vulnerabilities?sort=epss&limit=50",
    ),
    (
        "vulnerabilities: search openssl",
        "/api/v1/companies/{c}/vulnerabilities?q=openssl&limit=50",
    ),
    (
        "vulnerability: detail",
        "/api/v1/companies/{c}/vulnerabilities/{v}?limit=50",
    ),
    (
        "findings: page of 50",
        "/api/v1/companies/{c}/findings?limit=50",
    ),
    (
        "findings: critical",
        "/api/v1/companies/{c}/findings?severity=critical&limit=50",
    ),
    (
        "findings: search openssl",
        "/api/v1/companies/{c}/findings?q=openssl&limit=50",
    ),
    (
        "findings: by EPSS",
        "/api/v1/companies/{c}/findings?sort=epss&limit=50",
    ),
    (
        "findings: newest",
        "/api/v1/companies/{c}/findings?sort=first_seen&limit=50",
    ),
    (
        "findings: by host",
        "/api/v1/companies/{c}/findings?sort=hostname&limit=50",
    ),
    ("operator: overview", "/api/v1/overview"),
];

async fn get_json(client: &ApiClient, token: &str, path: &str) -> Result<Value, ClientError> {
    let (status, body) = client.get(token, path).await?;
    if !status.is_success() {
        return Err(ClientError::Status {
            url: path.to_string(),
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
        });
    }
    serde_json::from_slice(&body).map_err(|e| ClientError::Status {
        url: path.to_string(),
        status,
        body: format!("not JSON: {e}"),
    })
}

fn ids(v: &Value, field: &str) -> Vec<String> {
    v["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i[field].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The server's companies with a few agent and vulnerability ids each.
async fn targets(client: &ApiClient, token: &str) -> Result<Vec<Target>, ClientError> {
    let companies = get_json(client, token, "/api/v1/companies").await?;
    let mut out = Vec::new();
    for id in ids(&companies, "id") {
        let agents = get_json(
            client,
            token,
            &format!("/api/v1/companies/{id}/agents?limit=50"),
        )
        .await?;
        let vulns = get_json(
            client,
            token,
            &format!("/api/v1/companies/{id}/vulnerabilities?sort=hosts&limit=50"),
        )
        .await?;
        let summary = get_json(client, token, &format!("/api/v1/companies/{id}/summary")).await?;
        out.push(Target {
            agents: ids(&agents, "agent_id"),
            vulns: ids(&vulns, "id"),
            agent_count: summary["agents"].as_u64().unwrap_or(0),
            id,
        });
    }
    Ok(out)
}

fn fill(template: &str, t: &Target, rng: &mut SmallRng) -> Option<String> {
    let pick = |list: &[String], rng: &mut SmallRng| -> Option<String> {
        (!list.is_empty()).then(|| list[rng.random_range(0..list.len())].clone())
    };
    let mut path = template.replace("{c}", &t.id);
    if path.contains("{a}") {
        path = path.replace("{a}", &pick(&t.agents, rng)?);
    }
    if path.contains("{v}") {
        path = path.replace("{v}", &pick(&t.vulns, rng)?);
    }
    Some(path)
}

/// Runs the read phase: every call `config.requests` times, then the paging and export
/// measurements.
pub async fn run_reads(
    client: &ApiClient,
    token: &str,
    config: &ReadConfig,
) -> Result<ReadReport, ClientError> {
    let targets = targets(client, token).await?;
    let mut report = ReadReport {
        companies: targets.len(),
        calls: Vec::new(),
        hosts_paged: None,
        findings_csv: None,
    };
    if targets.is_empty() {
        return Ok(report);
    }
    let mut rng = SmallRng::seed_from_u64(config.seed);
    for (name, template) in CALLS {
        let paths: Vec<String> = (0..config.requests)
            .filter_map(|_| {
                let t = &targets[rng.random_range(0..targets.len())];
                fill(template, t, &mut rng)
            })
            .collect();
        let recorder = Recorder::new();
        let errors = std::sync::atomic::AtomicU64::new(0);
        stream::iter(paths.iter())
            .for_each_concurrent(config.concurrency.max(1), |path| {
                let (recorder, errors) = (&recorder, &errors);
                async move {
                    let started = Instant::now();
                    match client.get(token, path).await {
                        Ok((status, _)) if status.is_success() => {
                            recorder.record(started.elapsed())
                        }
                        _ => {
                            errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                }
            })
            .await;
        let q = recorder.quantiles_ms(&[0.50, 0.95, 0.99, 1.0]);
        report.calls.push(CallFigures {
            call: format!("{name}  {template}"),
            requests: paths.len() as u64,
            errors: errors.into_inner(),
            p50_ms: q[0],
            p95_ms: q[1],
            p99_ms: q[2],
            max_ms: q[3],
        });
    }
    // The company with most hosts, scrolled to its end 50 at a time.
    let biggest = targets
        .iter()
        .max_by_key(|t| t.agent_count)
        .cloned()
        .unwrap_or_else(|| targets[0].clone());
    let started = Instant::now();
    let mut cursor: Option<String> = None;
    let (mut hosts, mut pages, mut slowest) = (0u64, 0u64, Duration::ZERO);
    loop {
        let mut path = format!("/api/v1/companies/{}/agents?limit=50", biggest.id);
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let t = Instant::now();
        let page = get_json(client, token, &path).await?;
        slowest = slowest.max(t.elapsed());
        pages += 1;
        hosts += page["items"]
            .as_array()
            .map(|a| a.len() as u64)
            .unwrap_or(0);
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    report.hosts_paged = Some(PagingFigures {
        hosts,
        pages,
        seconds: started.elapsed().as_secs_f64(),
        slowest_page_ms: slowest.as_secs_f64() * 1000.0,
    });
    if config.export {
        let path = format!("/api/v1/companies/{}/findings?format=csv", biggest.id);
        let started = Instant::now();
        let (first_byte, bytes, rows) = client.download(token, &path).await?;
        report.findings_csv = Some(ExportFigures {
            rows: rows.saturating_sub(1),
            bytes,
            seconds: started.elapsed().as_secs_f64(),
            first_byte_ms: first_byte.as_secs_f64() * 1000.0,
        });
    }
    Ok(report)
}

/// The figures as a table.
pub fn print_text(r: &ReadReport) {
    println!(
        "dashboard reads over {} companies (latency in ms):",
        r.companies
    );
    println!(
        "{:<96} {:>6} {:>4} {:>8} {:>8} {:>8} {:>8}",
        "call", "n", "err", "p50", "p95", "p99", "max"
    );
    for c in &r.calls {
        println!(
            "{:<96} {:>6} {:>4} {:>8.1} {:>8.1} {:>8.1} {:>8.1}",
            c.call, c.requests, c.errors, c.p50_ms, c.p95_ms, c.p99_ms, c.max_ms
        );
    }
    if let Some(p) = &r.hosts_paged {
        println!(
            "hosts paged: {} hosts in {} pages of 50, {:.2} s, slowest page {:.1} ms",
            p.hosts, p.pages, p.seconds, p.slowest_page_ms
        );
    }
    if let Some(e) = &r.findings_csv {
        println!(
            "findings CSV export: {} rows, {} bytes in {:.2} s (first byte after {:.1} ms)",
            e.rows, e.bytes, e.seconds, e.first_byte_ms
        );
    }
}

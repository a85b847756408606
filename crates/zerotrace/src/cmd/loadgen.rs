//! `zerotrace loadgen`: simulated agents against a live server, with the figures at the end.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::ValueEnum;
use zt_loadgen::reads::ReadConfig;
use zt_loadgen::{Catalog, LoadConfig, LoadReport, Progress};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Base URL of the server.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    server: String,
    /// Operator token (creates the simulated companies).
    #[arg(long, env = "ZEROTRACE_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: String,
    #[arg(long, default_value_t = 10)]
    companies: usize,
    #[arg(long, default_value_t = 100)]
    agents_per_company: usize,
    #[arg(long, default_value_t = 100)]
    apps_per_agent: usize,
    /// Rounds of reports: every agent reports once per round.
    #[arg(long, default_value_t = 1, conflicts_with = "duration")]
    rounds: usize,
    /// Send rounds for this many seconds instead of a fixed number of rounds.
    #[arg(long, value_name = "SECONDS")]
    duration: Option<f64>,
    /// Share of agents whose inventory changes a few apps between rounds (0..1).
    #[arg(long, default_value_t = 0.1)]
    change_rate: f64,
    /// Rounds sent and processed first and left out of the figures (steady-state runs).
    #[arg(long, default_value_t = 0)]
    warmup_rounds: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Pace reports at this many per second (default: as fast as the server accepts them).
    #[arg(long, value_name = "REPORTS_PER_S")]
    rate: Option<f64>,
    /// Seconds to wait for accepted reports to be processed before counting them lost.
    #[arg(long, default_value_t = 600.0)]
    wait: f64,
    /// Do not wait for processing (no end-to-end figures, no lost count).
    #[arg(long)]
    no_wait: bool,
    /// Real package lists to draw inventories from (dpkg status files, CycloneDX/SPDX SBOMs,
    /// agent reports); the built-in catalog is always there.
    #[arg(long = "packages-from", value_name = "PATH")]
    packages_from: Vec<PathBuf>,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// After the load, measure the dashboard's reads: each API call the views make this
    /// many times against random companies (0: no read phase), then one company's hosts
    /// paged to the end and its findings exported as CSV.
    #[arg(long, default_value_t = 0)]
    read_requests: usize,
    /// Reads in flight at once during the read phase.
    #[arg(long, default_value_t = 4)]
    read_concurrency: usize,
    /// Only the read phase, against the data already on the server (no companies created,
    /// no reports sent).
    #[arg(long)]
    reads_only: bool,
    /// Hold this many Server-Sent Event streams open (the operator's token, spread over the
    /// run's companies) during the measured rounds and time each report's `report.processed`
    /// event from its acceptance to its arrival at every stream.
    #[arg(long, default_value_t = 0)]
    sse_clients: usize,
    /// The server's process id (same machine), to read its memory before and after the
    /// streams connect.
    #[arg(long, value_name = "PID", env = "ZEROTRACE_BENCH_SERVER_PID")]
    server_pid: Option<u32>,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    format: OutputFormat,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut catalog = Catalog::builtin();
    for path in &args.packages_from {
        let added = extend_catalog(&mut catalog, path)?;
        tracing::info!(path = %path.display(), added, "package list loaded");
    }
    let config = LoadConfig {
        server: args.server.clone(),
        admin_token: args.admin_token.clone(),
        companies: args.companies,
        agents_per_company: args.agents_per_company,
        apps_per_agent: args.apps_per_agent,
        rounds: args.rounds,
        duration: args.duration.map(Duration::from_secs_f64),
        change_rate: args.change_rate,
        warmup_rounds: args.warmup_rounds,
        concurrency: args.concurrency,
        rate: args.rate,
        wait: Duration::from_secs_f64(args.wait.max(0.0)),
        measure_processing: !args.no_wait,
        seed: args.seed,
        company_prefix: "loadgen".into(),
        reads: (args.read_requests > 0 || args.reads_only).then(|| ReadConfig {
            requests: args.read_requests.max(1),
            concurrency: args.read_concurrency.max(1),
            export: true,
            seed: args.seed,
        }),
        live: (args.sse_clients > 0).then_some(zt_loadgen::live::LiveConfig {
            clients: args.sse_clients,
            server_pid: args.server_pid,
        }),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    if args.reads_only {
        let reads = config.reads.clone().unwrap_or(ReadConfig {
            requests: 1,
            concurrency: 1,
            export: true,
            seed: args.seed,
        });
        let report = runtime.block_on(async {
            let client = zt_loadgen::ApiClient::new(&config.server, reads.concurrency)?;
            zt_loadgen::reads::run_reads(&client, &config.admin_token, &reads).await
        })?;
        match args.format {
            OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
            OutputFormat::Text => zt_loadgen::reads::print_text(&report),
        }
        let errors: u64 = report.calls.iter().map(|c| c.errors).sum();
        return Ok(if errors == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    let progress = Arc::new(Progress::default());
    let report = runtime.block_on(async {
        let printer = (args.format == OutputFormat::Text)
            .then(|| tokio::spawn(print_progress(progress.clone())));
        let result = zt_loadgen::run(&config, catalog, progress.clone()).await;
        progress.done.store(true, Ordering::Relaxed);
        if let Some(p) = printer {
            let _ = p.await;
        }
        result
    })?;
    match args.format {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        OutputFormat::Text => print_text(&report),
    }
    Ok(
        if report.lost == 0 && report.errors == 0 && report.failed == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        },
    )
}

async fn print_progress(progress: Arc<Progress>) {
    let started = Instant::now();
    let mut last_apps = 0;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    while !progress.done.load(Ordering::Relaxed) {
        tick.tick().await;
        let apps = progress.apps_accepted.load(Ordering::Relaxed);
        eprint!(
            "\r[{:>6.1}s] {:<22} sent {:>8} accepted {:>8} apps/s {:>8} processed {:>8} 429 {:>5} 503 {:>5} errors {:>4}",
            started.elapsed().as_secs_f64(),
            *progress.phase.lock(),
            progress.sent.load(Ordering::Relaxed),
            progress.accepted.load(Ordering::Relaxed),
            // The count starts again after warm-up rounds: never a negative rate (a panic
            // of this task in a debug build, a huge number in a release one).
            apps.saturating_sub(last_apps),
            progress.processed.load(Ordering::Relaxed),
            progress.throttled.load(Ordering::Relaxed),
            progress.overloaded.load(Ordering::Relaxed),
            progress.errors.load(Ordering::Relaxed),
        );
        let _ = std::io::stderr().flush();
        last_apps = apps;
    }
    eprintln!();
}

fn print_text(r: &LoadReport) {
    println!(
        "fleet:            {} companies x {} agents, {} round(s)",
        r.companies,
        r.agents / r.companies.max(1),
        r.rounds
    );
    println!(
        "reports:          {} sent, {} accepted ({:.0}/s)",
        r.reports_sent, r.reports_accepted, r.reports_per_second
    );
    println!(
        "app records:      {} accepted, {:.0}/s while sending, {:.0}/s until processed",
        r.apps_accepted, r.apps_per_second, r.processed_apps_per_second
    );
    println!(
        "ingest latency:   p50 {:.1} ms  p90 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
        r.ingest_latency_ms.p50,
        r.ingest_latency_ms.p90,
        r.ingest_latency_ms.p99,
        r.ingest_latency_ms.max
    );
    println!(
        "end to end:       p50 {:.2} s  p90 {:.2} s  p99 {:.2} s  max {:.2} s ({} reports)",
        r.end_to_end_s.p50,
        r.end_to_end_s.p90,
        r.end_to_end_s.p99,
        r.end_to_end_s.max,
        r.end_to_end_s.count
    );
    println!(
        "backpressure:     {} throttled (429), {} overloaded (503)",
        r.throttled, r.overloaded
    );
    println!(
        "problems:         {} errors, {} lost, {} failed{}",
        r.errors,
        r.lost,
        r.failed,
        r.first_error
            .as_deref()
            .map(|e| format!(" (first error: {e})"))
            .unwrap_or_default()
    );
    println!(
        "durations:        sending {:.1} s, total {:.1} s",
        r.send_duration_s, r.total_duration_s
    );
    if let Some(live) = &r.live {
        let memory = match (live.server_rss_before_mb, live.server_rss_connected_mb) {
            (Some(before), Some(after)) => format!(
                ", server memory {before:.0} MB -> {after:.0} MB (+{:.0} MB)",
                after - before
            ),
            _ => String::new(),
        };
        println!(
            "event streams:    {}/{} connected in {:.1} s{memory}",
            live.connected, live.clients, live.connect_s
        );
        println!(
            "accepted->event:  p50 {:.0} ms  p90 {:.0} ms  p99 {:.0} ms  max {:.0} ms ({}/{} deliveries, {} stream errors{})",
            live.accepted_to_event_ms.p50,
            live.accepted_to_event_ms.p90,
            live.accepted_to_event_ms.p99,
            live.accepted_to_event_ms.max,
            live.deliveries_received,
            live.deliveries_expected,
            live.stream_errors,
            live.first_error
                .as_deref()
                .map(|e| format!("; first: {e}"))
                .unwrap_or_default()
        );
    }
    if let Some(reads) = &r.reads {
        zt_loadgen::reads::print_text(reads);
    }
}

/// Adds the packages listed in `path` (any inventory `zerotrace scan` reads) to the catalog.
fn extend_catalog(catalog: &mut Catalog, path: &std::path::Path) -> anyhow::Result<usize> {
    let inventory = zt_sbom::read_path(path)?;
    Ok(catalog.extend_with(&inventory.apps, inventory.os.as_ref()))
}

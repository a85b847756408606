//! Simulated agents that load-test a ZeroTrace server through its public API, the way a real
//! fleet would: companies are created, agents enroll, every agent reports its inventory each
//! round (a fraction of them with a few changed apps), 429/503 answers are honoured, and the
//! server's own per-report timestamps give the delay from "accepted" to "findings stored".

pub mod catalog;
pub mod client;
pub mod fleet;
pub mod live;
pub mod reads;
mod stats;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

pub use catalog::Catalog;
pub use client::{ApiClient, ClientError};
pub use fleet::{Fleet, SimHost};
pub use stats::{LatencySummary, Recorder};

/// What to simulate.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub server: String,
    pub admin_token: String,
    pub companies: usize,
    pub agents_per_company: usize,
    pub apps_per_agent: usize,
    /// Rounds of reports (every agent reports once per round). Ignored when `duration` is set.
    pub rounds: usize,
    /// Keep sending rounds until this much time has passed.
    pub duration: Option<Duration>,
    /// Share of agents whose inventory changes between rounds.
    pub change_rate: f64,
    /// Rounds sent (as fast as the server takes them) and processed before the measured
    /// ones, and left out of every figure: steady-state runs start from stored inventories.
    pub warmup_rounds: usize,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Target reports per second (open-loop pacing); `None` sends as fast as the server takes.
    pub rate: Option<f64>,
    /// How long to wait for accepted reports to be processed before counting them lost.
    pub wait: Duration,
    /// Whether to wait for processing at all (end-to-end figures need it).
    pub measure_processing: bool,
    pub seed: u64,
    /// Name prefix of the companies this run creates (several runs can share a server).
    pub company_prefix: String,
    /// After the load (and its processing), measure the dashboard's reads.
    pub reads: Option<reads::ReadConfig>,
    /// Hold Server-Sent Event streams open during the measured rounds and time the events.
    pub live: Option<live::LiveConfig>,
}

impl Default for LoadConfig {
    fn default() -> Self {
        LoadConfig {
            server: "http://127.0.0.1:8080".into(),
            admin_token: String::new(),
            companies: 10,
            agents_per_company: 100,
            apps_per_agent: 100,
            rounds: 1,
            duration: None,
            change_rate: 0.1,
            warmup_rounds: 0,
            concurrency: 64,
            rate: None,
            wait: Duration::from_secs(300),
            measure_processing: true,
            seed: 42,
            company_prefix: "loadgen".into(),
            reads: None,
            live: None,
        }
    }
}

/// The figures of one run; `--format json` prints exactly this.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    pub companies: usize,
    pub agents: usize,
    pub rounds: usize,
    pub reports_sent: u64,
    pub reports_accepted: u64,
    pub apps_accepted: u64,
    /// App records accepted per second of the sending phase.
    pub apps_per_second: f64,
    /// Reports accepted per second of the sending phase.
    pub reports_per_second: f64,
    pub send_duration_s: f64,
    /// From the first report accepted to the last one processed (server clock; the sending
    /// phase when processing is not measured).
    pub total_duration_s: f64,
    /// App records processed (accepted and stored with findings) per second of the whole run.
    pub processed_apps_per_second: f64,
    pub ingest_latency_ms: LatencySummary,
    pub end_to_end_s: LatencySummary,
    pub throttled: u64,
    pub overloaded: u64,
    pub errors: u64,
    /// Accepted but not processed within the wait bound.
    pub lost: u64,
    /// Accepted reports whose processing failed (dead-lettered).
    pub failed: u64,
    pub first_error: Option<String>,
    /// The dashboard's reads after the load, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reads: Option<reads::ReadReport>,
    /// The connected streams' figures, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live: Option<live::LiveReport>,
}

/// Live counters a progress printer can read while the run goes on.
#[derive(Debug, Default)]
pub struct Progress {
    pub phase: parking_lot::Mutex<&'static str>,
    pub sent: AtomicU64,
    pub accepted: AtomicU64,
    pub apps_accepted: AtomicU64,
    pub throttled: AtomicU64,
    pub overloaded: AtomicU64,
    pub errors: AtomicU64,
    pub processed: AtomicU64,
    pub done: AtomicBool,
}

impl Progress {
    /// Zeroes the counters (after a warm-up, whose figures are not reported).
    fn reset_counts(&self) {
        for c in [
            &self.sent,
            &self.accepted,
            &self.apps_accepted,
            &self.throttled,
            &self.overloaded,
            &self.errors,
            &self.processed,
        ] {
            c.store(0, Ordering::Relaxed);
        }
    }
}

/// One accepted report whose processing we wait for.
struct Accepted {
    agent: usize,
    report_id: uuid::Uuid,
    apps: u64,
}

struct Agent {
    /// Index of its company in the run's companies.
    company: usize,
    host: SimHost,
    token: String,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("setting up the simulated fleet failed: {0}")]
    Setup(#[from] ClientError),
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// Runs the simulation against a live server.
pub async fn run(
    config: &LoadConfig,
    catalog: Catalog,
    progress: Arc<Progress>,
) -> Result<LoadReport, LoadError> {
    if config.companies == 0 || config.agents_per_company == 0 {
        return Err(LoadError::Config(
            "--companies and --agents-per-company must be at least 1".into(),
        ));
    }
    if !(0.0..=1.0).contains(&config.change_rate) {
        return Err(LoadError::Config(
            "--change-rate must be within 0..=1".into(),
        ));
    }
    let concurrency = config.concurrency.max(1);
    let client = ApiClient::new(&config.server, concurrency)?;
    let fleet = Fleet::new(catalog, config.apps_per_agent);

    *progress.phase.lock() = "enrolling";
    let (agents, company_ids) = enroll_fleet(config, &client, &fleet, concurrency).await?;

    let mut rng = SmallRng::seed_from_u64(config.seed);
    let mut agents = agents;
    if config.warmup_rounds > 0 {
        *progress.phase.lock() = "warming up";
        let mut warm: Vec<Accepted> = Vec::new();
        for round in 0..config.warmup_rounds {
            if round > 0 {
                drift_fleet(&fleet, &mut agents, config.change_rate, &mut rng);
            }
            let sent = send_round(
                &client,
                &fleet,
                &agents,
                concurrency,
                None,
                Instant::now(),
                0,
                None,
                &Recorder::new(),
                &progress,
                None,
            )
            .await;
            warm.extend(sent.accepted);
        }
        let processed =
            wait_for_processing(&client, &agents, &warm, config.wait, concurrency, &progress).await;
        if processed.lost > 0 {
            return Err(LoadError::Config(format!(
                "{} warm-up reports were not processed within the wait bound",
                processed.lost
            )));
        }
        progress.reset_counts();
        drift_fleet(&fleet, &mut agents, config.change_rate, &mut rng);
    }

    let live_watch = match &config.live {
        Some(live_config) => {
            *progress.phase.lock() = "connecting event streams";
            Some(
                live::LiveWatch::open(
                    &config.server,
                    &config.admin_token,
                    &company_ids,
                    live_config,
                    Duration::from_secs(60),
                )
                .await?,
            )
        }
        None => None,
    };

    *progress.phase.lock() = "sending";
    let recorder = Recorder::new();
    let mut accepted: Vec<Accepted> = Vec::new();
    let mut first_error: Option<String> = None;
    let started = Instant::now();
    let mut rounds_done = 0;
    let mut sent_total: u64 = 0;
    loop {
        let within_time = config.duration.map(|d| started.elapsed() < d);
        match within_time {
            Some(false) => break,
            None if rounds_done >= config.rounds.max(1) => break,
            _ => {}
        }
        if rounds_done > 0 {
            drift_fleet(&fleet, &mut agents, config.change_rate, &mut rng);
        }
        let deadline = config.duration.map(|d| started + d);
        let round = send_round(
            &client,
            &fleet,
            &agents,
            concurrency,
            config.rate,
            started,
            sent_total,
            deadline,
            &recorder,
            &progress,
            live_watch.as_deref(),
        )
        .await;
        sent_total += round.sent;
        accepted.extend(round.accepted);
        if first_error.is_none() {
            first_error = round.first_error;
        }
        rounds_done += 1;
    }
    let send_duration = started.elapsed();

    let processing = if config.measure_processing {
        *progress.phase.lock() = "waiting for processing";
        wait_for_processing(
            &client,
            &agents,
            &accepted,
            config.wait,
            concurrency,
            &progress,
        )
        .await
    } else {
        Processing::default()
    };
    let live_report = match &live_watch {
        Some(watch) => {
            let measured: Vec<String> = accepted
                .iter()
                .map(|a| company_ids[agents[a.agent].company].clone())
                .collect();
            Some(watch.finish(&measured, Duration::from_secs(10)).await)
        }
        None => None,
    };
    let read_report = match &config.reads {
        Some(read_config) => {
            *progress.phase.lock() = "measuring reads";
            Some(reads::run_reads(&client, &config.admin_token, read_config).await?)
        }
        None => None,
    };
    progress.done.store(true, Ordering::Relaxed);

    let apps_accepted = accepted.iter().map(|a| a.apps).sum::<u64>();
    let send_s = send_duration.as_secs_f64().max(1e-9);
    // The server's own clock: from the first report accepted to the last one processed.
    let total_s = match (processing.first_accepted, processing.last_processed) {
        (Some(a), Some(p)) if p > a => {
            ((p - a).num_microseconds().unwrap_or(0) as f64 / 1e6).max(send_s)
        }
        _ => send_s,
    };
    let errors = progress.errors.load(Ordering::Relaxed);
    Ok(LoadReport {
        companies: config.companies,
        agents: agents.len(),
        rounds: rounds_done,
        reports_sent: progress.sent.load(Ordering::Relaxed),
        reports_accepted: accepted.len() as u64,
        apps_accepted,
        apps_per_second: apps_accepted as f64 / send_s,
        reports_per_second: accepted.len() as f64 / send_s,
        send_duration_s: send_s,
        total_duration_s: total_s,
        processed_apps_per_second: if config.measure_processing {
            apps_accepted as f64 / total_s
        } else {
            0.0
        },
        ingest_latency_ms: recorder.summary_ms(),
        end_to_end_s: stats::summarize_seconds(&processing.delays),
        throttled: progress.throttled.load(Ordering::Relaxed),
        overloaded: progress.overloaded.load(Ordering::Relaxed),
        errors,
        lost: processing.lost,
        failed: processing.failed,
        first_error,
        reads: read_report,
        live: live_report,
    })
}

/// Changes a few apps of a `change_rate` share of the agents (between rounds).
fn drift_fleet(fleet: &Fleet, agents: &mut [Agent], change_rate: f64, rng: &mut SmallRng) {
    for agent in agents.iter_mut() {
        if rng.random_bool(change_rate) {
            fleet.drift(&mut agent.host, rng);
        }
    }
}

async fn enroll_fleet(
    config: &LoadConfig,
    client: &ApiClient,
    fleet: &Fleet,
    concurrency: usize,
) -> Result<(Vec<Agent>, Vec<String>), LoadError> {
    let run_tag = format!("{:08x}", rand::random::<u32>());
    let mut secrets = Vec::with_capacity(config.companies);
    for c in 0..config.companies {
        let name = format!("{}-{run_tag}-{c:03}", config.company_prefix);
        secrets.push(client.create_company(&config.admin_token, &name).await?);
    }
    let jobs = (0..config.companies)
        .flat_map(|c| (0..config.agents_per_company).map(move |i| (c, i)))
        .map(|(c, i)| {
            let host = fleet.host(config.seed, c, i);
            let secret = secrets[c].enroll_secret.clone();
            async move {
                let (os, arch) = fleet.os_of(&host);
                let enrolled = client.enroll(&secret, &host.hostname, os, arch).await?;
                Ok::<Agent, ClientError>(Agent {
                    company: c,
                    host,
                    token: enrolled.agent_token,
                })
            }
        });
    let results: Vec<Result<Agent, ClientError>> = stream::iter(jobs)
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let mut agents = Vec::with_capacity(results.len());
    for r in results {
        agents.push(r?);
    }
    Ok((agents, secrets.into_iter().map(|s| s.id).collect()))
}

struct RoundResult {
    sent: u64,
    accepted: Vec<Accepted>,
    first_error: Option<String>,
}

#[allow(clippy::too_many_arguments)]
async fn send_round(
    client: &ApiClient,
    fleet: &Fleet,
    agents: &[Agent],
    concurrency: usize,
    rate: Option<f64>,
    started: Instant,
    already_sent: u64,
    deadline: Option<Instant>,
    recorder: &Recorder,
    progress: &Progress,
    live_watch: Option<&live::LiveWatch>,
) -> RoundResult {
    let jobs = agents.iter().enumerate().map(|(i, agent)| async move {
        if let Some(rate) = rate {
            // Open-loop pacing: report n leaves at started + n / rate.
            let n = already_sent + i as u64;
            let due = started + Duration::from_secs_f64(n as f64 / rate.max(1e-6));
            tokio::time::sleep_until(due.into()).await;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return None;
        }
        let report = fleet.report(&agent.host);
        let apps = report.apps.len() as u64;
        progress.sent.fetch_add(1, Ordering::Relaxed);
        let outcome = client.send_report(&agent.token, &report).await;
        Some((i, report.report_id, apps, outcome))
    });
    let mut stream = stream::iter(jobs).buffer_unordered(concurrency);
    let mut result = RoundResult {
        sent: 0,
        accepted: Vec::new(),
        first_error: None,
    };
    while let Some(item) = stream.next().await {
        let Some((agent, report_id, apps, outcome)) = item else {
            continue;
        };
        result.sent += 1;
        match outcome {
            Ok(o) => {
                progress
                    .throttled
                    .fetch_add(o.throttled as u64, Ordering::Relaxed);
                progress
                    .overloaded
                    .fetch_add(o.overloaded as u64, Ordering::Relaxed);
                if o.accepted {
                    if let Some(watch) = live_watch {
                        watch.accepted(report_id);
                    }
                    recorder.record(o.latency);
                    progress.accepted.fetch_add(1, Ordering::Relaxed);
                    progress.apps_accepted.fetch_add(apps, Ordering::Relaxed);
                    result.accepted.push(Accepted {
                        agent,
                        report_id,
                        apps,
                    });
                }
            }
            Err(e) => {
                progress.errors.fetch_add(1, Ordering::Relaxed);
                if result.first_error.is_none() {
                    result.first_error = Some(e.to_string());
                }
            }
        }
    }
    result
}

/// What waiting for processing found.
#[derive(Debug, Default)]
struct Processing {
    /// End-to-end delays in seconds (server time from accepted to processed).
    delays: Vec<f64>,
    lost: u64,
    failed: u64,
    first_accepted: Option<chrono::DateTime<chrono::Utc>>,
    last_processed: Option<chrono::DateTime<chrono::Utc>>,
}

/// Polls every accepted report until it is processed or the wait bound passes.
///
/// The delays come from the server's clock (accepted_at, processed_at), so how often a report
/// is polled does not change its figure; polling only costs the server work that real agents
/// never ask for. Each pass therefore walks the pending reports newest first (the server
/// processes newest first) in chunks of `concurrency`, and ends at the first chunk in which
/// nothing was done yet.
async fn wait_for_processing(
    client: &ApiClient,
    agents: &[Agent],
    accepted: &[Accepted],
    wait: Duration,
    concurrency: usize,
    progress: &Progress,
) -> Processing {
    let deadline = Instant::now() + wait;
    let mut pending: Vec<usize> = (0..accepted.len()).rev().collect();
    let mut result = Processing::default();
    let chunk_size = concurrency.max(1);
    while !pending.is_empty() {
        let mut still = Vec::new();
        let mut polled = 0;
        for chunk in pending.chunks(chunk_size) {
            polled += chunk.len();
            let checks = chunk.iter().map(|&i| {
                let a = &accepted[i];
                let token = &agents[a.agent].token;
                async move { (i, client.report_status(token, a.report_id).await) }
            });
            let answers: Vec<_> = stream::iter(checks)
                .buffer_unordered(concurrency)
                .collect()
                .await;
            let mut done_here = 0;
            for (i, answer) in answers {
                match answer {
                    Ok(s) if s.status == "done" => {
                        done_here += 1;
                        if let (Some(a), Some(p)) = (s.accepted_at, s.processed_at) {
                            result
                                .delays
                                .push((p - a).num_microseconds().unwrap_or(0) as f64 / 1e6);
                            result.first_accepted =
                                Some(result.first_accepted.map_or(a, |x| x.min(a)));
                            result.last_processed =
                                Some(result.last_processed.map_or(p, |x| x.max(p)));
                        }
                        progress.processed.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(s) if s.status == "failed" || s.status == "dead" => result.failed += 1,
                    _ => still.push(i),
                }
            }
            if done_here == 0 {
                break;
            }
        }
        still.extend_from_slice(&pending[polled..]);
        // Keep newest first for the next pass.
        still.sort_unstable_by(|a, b| b.cmp(a));
        pending = still;
        if pending.is_empty() || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    result.lost = pending.len() as u64;
    result
}

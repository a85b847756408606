//! Sustained ingest from HTTP to stored findings on SQLite or PostgreSQL: prints figures,
//! asserts nothing.
//!
//! `cargo bench -p zt-server --bench ingest` (release). The server runs in this process on
//! 127.0.0.1 with a temporary SQLite file — or, with `ZT_BENCH_DATABASE_URL=postgres://…`, on
//! that (empty or scratch) PostgreSQL database — and the real advisories of ../shared/data/osv;
//! 200 concurrent clients act as agents with real inventories (../shared/data inventories and
//! SBOMs, versions varied per agent). Phases:
//! 1. first-time inventories of every agent (gzip): apps/s from first request to last stored
//!    finding, ingest latency, report-to-findings latency;
//! 2. unchanged re-reports (gzip): reports/s and ingest latency;
//! 3. changed re-reports (a few apps upgraded per agent, gzip): ingest and report-to-findings
//!    latency.
//!
//! Knobs (environment): ZT_BENCH_AGENTS (2000), ZT_BENCH_CONCURRENCY (200),
//! ZT_BENCH_REREPORTS (20000), ZT_BENCH_WORKERS (10), ZT_BENCH_BATCH_APPS (100),
//! ZT_BENCH_DATABASE_URL (unset: SQLite).

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use parking_lot::Mutex;
use serde_json::{json, Value};
use zt_inventory::{App, Host, InventoryReport, OsInfo};
use zt_server::{ServerConfig, ServerRole};
use zt_store::model::{AgentId, CompanyId};
use zt_store::{AnyStore, PgOptions, Storage};
use zt_testkit::shared_path;

const ADMIN: &str = "zto_bench-operator-token-0123456789abcdefghij";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run())
}

struct Agent {
    company_id: CompanyId,
    agent_id: AgentId,
    token: String,
    report: InventoryReport,
}

/// Real inventories a fleet is made of, each with the share of agents that run it.
fn templates() -> Vec<(InventoryReport, usize)> {
    let read = |rel: &str, host: &str, os: Option<OsInfo>| {
        let inv = zt_sbom::read_path(&shared_path(rel)).expect("shared inventory");
        InventoryReport {
            report_id: uuid::Uuid::nil(),
            collected_at: chrono::Utc::now(),
            host: Host {
                hostname: host.into(),
                os: os.or(inv.os).unwrap_or(OsInfo {
                    id: "linux".into(),
                    version_id: String::new(),
                    name: String::new(),
                }),
                arch: "x86_64".into(),
            },
            apps: inv.apps,
            tags: None,
        }
    };
    vec![
        (
            read("inventories/dpkg/debian-12.11-host.status", "deb", None),
            4,
        ),
        (
            read("sboms/cdxgen-npm-cdxgen-project.cdx.json", "node", None),
            2,
        ),
        (
            read("sboms/cyclonedx-py-pyenv-3.11.7.cdx.json", "py", None),
            2,
        ),
        (
            read("inventories/dpkg/trivy-ubuntu18.04.status", "ubu", None),
            1,
        ),
        (read("inventories/apk/trivy-apk.installed", "alp", None), 1),
    ]
}

/// A per-agent copy: a few packages run another (older) patch version, as fleets do.
fn vary(template: &InventoryReport, agent: usize) -> InventoryReport {
    let mut r = template.clone();
    r.report_id = uuid::Uuid::new_v4();
    r.host.hostname = format!("{}-{agent:05}", template.host.hostname);
    let variant = agent % 5;
    let n = r.apps.len().max(1);
    for k in 0..3 {
        let i = (agent * 7 + k * 131) % n;
        if variant > 0 {
            r.apps[i].version = format!("{}~v{variant}", r.apps[i].version);
        }
    }
    r
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).expect("memory");
    enc.finish().expect("memory")
}

async fn import_knowledge(store: &AnyStore) -> anyhow::Result<()> {
    let paths: Vec<PathBuf> = [
        "osv/pypa/vulns",
        "osv/rustsec/osv-json",
        "osv/golang-vulndb",
        "osv/ghsa-sample",
        "osv/ubuntu",
        "osv/alpine-secdb/json-2020",
        "osv/debian-security-tracker/osv-like",
    ]
    .iter()
    .map(|p| shared_path(p))
    .collect();
    let read = zt_feeds::read_paths(&paths)?;
    let mut batch = zt_store::knowledge::KnowledgeImport {
        origin: "bench".into(),
        ..Default::default()
    };
    for r in read.records {
        match r {
            zt_feeds::FeedRecord::Advisory(a) => batch.advisories.push(*a),
            zt_feeds::FeedRecord::Kev(k) => batch.kev.push(k),
            zt_feeds::FeedRecord::Epss(e) => batch.epss.push(e),
        }
    }
    let n = batch.advisories.len();
    let summary = store.import_knowledge(batch).await?;
    println!("knowledge: {n} advisories, revision {}", summary.revision);
    Ok(())
}

fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("histogram bounds")
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

/// Posts `bodies` with `concurrency` clients; returns (ingest latency µs, elapsed, statuses).
async fn blast(
    client: &reqwest::Client,
    url: &str,
    bodies: Vec<(String, Vec<u8>, bool)>,
    concurrency: usize,
) -> (Histogram<u64>, Duration, Vec<u16>) {
    let bodies = Arc::new(bodies);
    let next = Arc::new(AtomicUsize::new(0));
    let hist = Arc::new(Mutex::new(new_hist()));
    let statuses = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (bodies, next, hist, statuses) =
            (bodies.clone(), next.clone(), hist.clone(), statuses.clone());
        let client = client.clone();
        let endpoint = format!("{url}/api/v1/inventory");
        tasks.push(tokio::spawn(async move {
            let mut local = new_hist();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((token, body, gz)) = bodies.get(i) else {
                    break;
                };
                let mut req = client
                    .post(&endpoint)
                    .bearer_auth(token)
                    .header("content-type", "application/json")
                    .body(body.clone());
                if *gz {
                    req = req.header("content-encoding", "gzip");
                }
                let t = Instant::now();
                let status = match req.send().await {
                    Ok(r) => {
                        let s = r.status().as_u16();
                        let _ = r.bytes().await;
                        s
                    }
                    Err(_) => 0,
                };
                let _ = local.record(t.elapsed().as_micros() as u64);
                statuses.lock().push(status);
            }
            hist.lock().add(&local).expect("same bounds");
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = started.elapsed();
    let h = hist.lock().clone();
    let s = statuses.lock().clone();
    (h, elapsed, s)
}

async fn wait_queue_empty(store: &dyn Storage) -> anyhow::Result<()> {
    loop {
        let s = store.queue_stats().await?;
        if s.pending() == 0 {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Report-to-findings latency (processed_at − accepted_at) of these reports. A report found
/// stale (a newer inventory of its agent was applied first, newest-first claiming) counts with
/// the time it was settled; the count of those is returned beside the histogram.
async fn processing_latency(
    store: &dyn Storage,
    reports: &[(CompanyId, AgentId, uuid::Uuid)],
) -> anyhow::Result<(Histogram<u64>, String)> {
    let mut h = new_hist();
    let (mut stale, mut failed) = (0, 0);
    for (c, a, r) in reports {
        match store.report_status(*c, *a, *r).await? {
            Some(s)
                if s.processed_at.is_some() && s.status == zt_store::model::ReportState::Done =>
            {
                if s.outcome.as_deref() == Some("stale") {
                    stale += 1;
                }
                let d = s.processed_at.unwrap_or(s.accepted_at) - s.accepted_at;
                let _ = h.record(d.num_microseconds().unwrap_or(0).max(1) as u64);
            }
            _ => failed += 1,
        }
    }
    Ok((h, format!("superseded: {stale}, not done: {failed}")))
}

fn count_status(s: &[u16]) -> String {
    let mut m = std::collections::BTreeMap::new();
    for x in s {
        *m.entry(*x).or_insert(0) += 1;
    }
    format!("{m:?}")
}

async fn run() -> anyhow::Result<()> {
    let agents_n = env_usize("ZT_BENCH_AGENTS", 2000);
    let concurrency = env_usize("ZT_BENCH_CONCURRENCY", 200);
    let rereports = env_usize("ZT_BENCH_REREPORTS", 20_000);
    let dir = tempfile::tempdir()?;
    let workers = env_usize("ZT_BENCH_WORKERS", 10);
    let any = match std::env::var("ZT_BENCH_DATABASE_URL") {
        Ok(url) if !url.is_empty() => {
            let options = PgOptions {
                partitions: 16,
                max_connections: workers as u32 + 16,
            };
            AnyStore::open_postgres(&url, &options).await?
        }
        _ => AnyStore::open_sqlite(&dir.path().join("zerotrace.db")).await?,
    };
    let store: Arc<dyn Storage> = any.storage();
    let store = &*store;
    println!("database: {}", store.backend());
    let t = Instant::now();
    import_knowledge(&any).await?;
    println!("import took {:.1} s", t.elapsed().as_secs_f64());

    let config = ServerConfig {
        role: ServerRole::All,
        workers,
        batch_apps: env_usize("ZT_BENCH_BATCH_APPS", 100) as u32,
        queue_bound: 10_000_000,
        rate_company_per_min: 1_000_000_000,
        rate_agent_per_min: 1_000_000_000,
        rate_enroll_per_min: 0,
        admin_token_env: Some(zt_server::auth::hash_token(ADMIN)),
        ..ServerConfig::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let shared: Arc<dyn Storage> = any.storage();
    let server = tokio::spawn(zt_server::serve(shared, config, listener, async move {
        let _ = stop_rx.await;
    }));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .timeout(Duration::from_secs(120))
        .build()?;
    let t = Instant::now();
    loop {
        if let Ok(r) = client.get(format!("{url}/readyz")).send().await {
            if r.status().is_success() {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "server ready in {:.1} s (match index built)",
        t.elapsed().as_secs_f64()
    );

    // Companies and agents.
    let mut companies = Vec::new();
    for i in 0..4 {
        let v: Value = client
            .post(format!("{url}/api/v1/companies"))
            .bearer_auth(ADMIN)
            .json(&json!({ "name": format!("company-{i}") }))
            .send()
            .await?
            .json()
            .await?;
        companies.push((
            v["id"].as_str().unwrap_or_default().parse::<CompanyId>()?,
            v["enroll_secret"].as_str().unwrap_or_default().to_string(),
        ));
    }
    let templates = templates();
    let weights: usize = templates.iter().map(|(_, w)| w).sum();
    let mut plan = Vec::with_capacity(agents_n);
    for i in 0..agents_n {
        let mut k = i % weights;
        let mut t = 0;
        while k >= templates[t].1 {
            k -= templates[t].1;
            t += 1;
        }
        plan.push(vary(&templates[t].0, i));
    }
    let t = Instant::now();
    let mut agents: Vec<Agent> = Vec::with_capacity(agents_n);
    let mut enrolls = futures::stream::FuturesOrdered::new();
    for (i, report) in plan.into_iter().enumerate() {
        let (company_id, secret) = companies[i % companies.len()].clone();
        let client = client.clone();
        let url = url.clone();
        enrolls.push_back(async move {
            let v: Value = client
                .post(format!("{url}/api/v1/enroll"))
                .json(&json!({"enroll_secret": secret, "hostname": report.host.hostname, "os": report.host.os, "arch": "x86_64"}))
                .send()
                .await?
                .json()
                .await?;
            anyhow::Ok(Agent {
                company_id,
                agent_id: v["agent_id"].as_str().unwrap_or_default().parse()?,
                token: v["agent_token"].as_str().unwrap_or_default().to_string(),
                report,
            })
        });
    }
    use futures::StreamExt;
    while let Some(a) = enrolls.next().await {
        agents.push(a?);
    }
    let total_apps: usize = agents.iter().map(|a| a.report.apps.len()).sum();
    println!(
        "enrolled {} agents in 4 companies in {:.1} s; {} apps in their first inventories ({:.0} per agent)",
        agents.len(),
        t.elapsed().as_secs_f64(),
        total_apps,
        total_apps as f64 / agents.len() as f64
    );

    // Phase 1: first-time inventories.
    let bodies: Vec<(String, Vec<u8>, bool)> = agents
        .iter()
        .map(|a| {
            (
                a.token.clone(),
                gzip(&serde_json::to_vec(&a.report).expect("json")),
                true,
            )
        })
        .collect();
    let compressed: usize = bodies.iter().map(|b| b.1.len()).sum();
    let started = Instant::now();
    let (lat, posted, statuses) = blast(&client, &url, bodies, concurrency).await;
    wait_queue_empty(store).await?;
    let stored = started.elapsed();
    let ids: Vec<_> = agents
        .iter()
        .map(|a| (a.company_id, a.agent_id, a.report.report_id))
        .collect();
    let (proc, failed) = processing_latency(store, &ids).await?;
    println!(
        "\n== first-time inventories ({} reports, {:.1} MiB gzip) ==",
        agents.len(),
        compressed as f64 / 1048576.0
    );
    println!("statuses: {}", count_status(&statuses));
    println!(
        "posted in {:.2} s; all stored with findings after {:.2} s",
        posted.as_secs_f64(),
        stored.as_secs_f64()
    );
    println!(
        "throughput: {:.0} app records/s ({:.0} reports/s)",
        total_apps as f64 / stored.as_secs_f64(),
        agents.len() as f64 / stored.as_secs_f64()
    );
    println!(
        "ingest latency ms: p50 {:.1}  p99 {:.1}  max {:.1}",
        ms(&lat, 0.5),
        ms(&lat, 0.99),
        lat.max() as f64 / 1000.0
    );
    println!(
        "report-to-findings ms: p50 {:.1}  p99 {:.1}  max {:.1}  ({failed})",
        ms(&proc, 0.5),
        ms(&proc, 0.99),
        proc.max() as f64 / 1000.0
    );

    // Phase 2: unchanged re-reports (gzip; the report id is patched into a template).
    let placeholder = uuid::Uuid::nil().to_string();
    let templates: Vec<(String, Vec<u8>, usize)> = agents
        .iter()
        .map(|a| {
            let mut r = a.report.clone();
            r.report_id = uuid::Uuid::nil();
            let body = serde_json::to_vec(&r).expect("json");
            let at = body
                .windows(placeholder.len())
                .position(|w| w == placeholder.as_bytes())
                .expect("report id in body");
            (a.token.clone(), body, at)
        })
        .collect();
    let re_apps: usize = (0..rereports)
        .map(|i| agents[i % agents.len()].report.apps.len())
        .sum();
    // Compressed up front on two threads: the agents' CPU is not the server's.
    let make = |i: usize| {
        let (token, body, at) = &templates[i % templates.len()];
        let mut b = body.clone();
        b[*at..*at + 36].copy_from_slice(uuid::Uuid::new_v4().to_string().as_bytes());
        (token.clone(), gzip(&b), true)
    };
    let half = rereports / 2;
    let make = &make;
    let bodies: Vec<(String, Vec<u8>, bool)> = std::thread::scope(|scope| {
        let first = scope.spawn(move || (0..half).map(make).collect::<Vec<_>>());
        let mut second: Vec<_> = (half..rereports).map(make).collect();
        let mut all = first.join().expect("compression thread");
        all.append(&mut second);
        all
    });
    let (lat, elapsed, statuses) = blast(&client, &url, bodies, concurrency).await;
    println!(
        "\n== unchanged re-reports ({rereports}, {:.0} apps each on average, gzip) ==",
        re_apps as f64 / rereports as f64
    );
    println!("statuses: {}", count_status(&statuses));
    println!(
        "throughput: {:.0} reports/s ({:.0} app records/s checked)",
        rereports as f64 / elapsed.as_secs_f64(),
        re_apps as f64 / elapsed.as_secs_f64()
    );
    println!(
        "ingest latency ms: p50 {:.1}  p99 {:.1}  max {:.1}",
        ms(&lat, 0.5),
        ms(&lat, 0.99),
        lat.max() as f64 / 1000.0
    );

    // Phase 3: changed re-reports: three packages upgraded on every agent.
    let mut ids = Vec::with_capacity(agents.len());
    let bodies: Vec<(String, Vec<u8>, bool)> = agents
        .iter()
        .map(|a| {
            let mut r = a.report.clone();
            r.report_id = uuid::Uuid::new_v4();
            r.collected_at = chrono::Utc::now();
            let n = r.apps.len();
            for k in 0..3.min(n) {
                let app: &mut App = &mut r.apps[(k * 17) % n];
                app.version = format!("{}+upgraded", app.version);
            }
            ids.push((a.company_id, a.agent_id, r.report_id));
            (
                a.token.clone(),
                gzip(&serde_json::to_vec(&r).expect("json")),
                true,
            )
        })
        .collect();
    let started = Instant::now();
    let (lat, _posted, statuses) = blast(&client, &url, bodies, concurrency).await;
    wait_queue_empty(store).await?;
    let stored = started.elapsed();
    let (proc, failed) = processing_latency(store, &ids).await?;
    println!(
        "\n== changed re-reports ({} reports, 3 apps changed each, gzip) ==",
        ids.len()
    );
    println!("statuses: {}", count_status(&statuses));
    println!(
        "all stored after {:.2} s ({:.0} reports/s)",
        stored.as_secs_f64(),
        ids.len() as f64 / stored.as_secs_f64()
    );
    println!(
        "ingest latency ms: p50 {:.1}  p99 {:.1}  max {:.1}",
        ms(&lat, 0.5),
        ms(&lat, 0.99),
        lat.max() as f64 / 1000.0
    );
    println!(
        "report-to-findings ms: p50 {:.1}  p99 {:.1}  max {:.1}  ({failed})",
        ms(&proc, 0.5),
        ms(&proc, 0.99),
        proc.max() as f64 / 1000.0
    );

    // Phase 4: steady load. 200 agents each report at a fixed pace (alternately an unchanged
    // inventory and one with three upgraded apps, gzip); latency is measured below saturation.
    let rate = env_usize("ZT_BENCH_STEADY_RATE", 400) as f64;
    let secs = env_usize("ZT_BENCH_STEADY_SECS", 15) as f64;
    let steady_agents = concurrency.min(agents.len());
    let per_agent = ((rate / steady_agents as f64) * secs).ceil() as usize;
    let interval = Duration::from_secs_f64(steady_agents as f64 / rate);
    let mut scripts: Vec<Vec<(Vec<u8>, Option<uuid::Uuid>)>> = Vec::with_capacity(steady_agents);
    for (n, a) in agents.iter().take(steady_agents).enumerate() {
        let mut script = Vec::with_capacity(per_agent);
        let mut current = a.report.clone();
        for k in 0..per_agent {
            let mut r = current.clone();
            r.report_id = uuid::Uuid::new_v4();
            r.collected_at = chrono::Utc::now() + chrono::Duration::milliseconds(k as i64 + 1);
            let changed = k % 2 == 1;
            if changed {
                let len = r.apps.len();
                for j in 0..3.min(len) {
                    let app = &mut r.apps[(n + k * 5 + j * 31) % len];
                    app.version = format!("{}.{k}", app.version);
                }
                current = r.clone();
            }
            let id = changed.then_some(r.report_id);
            script.push((gzip(&serde_json::to_vec(&r).expect("json")), id));
        }
        scripts.push(script);
    }
    let changed_ids: Vec<(CompanyId, AgentId, uuid::Uuid)> = scripts
        .iter()
        .enumerate()
        .flat_map(|(n, script)| {
            let a = &agents[n];
            script
                .iter()
                .filter_map(move |(_, id)| id.map(|id| (a.company_id, a.agent_id, id)))
        })
        .collect();
    let lat = Arc::new(Mutex::new(new_hist()));
    let statuses = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (n, script) in scripts.into_iter().enumerate() {
        let (lat, statuses, client) = (lat.clone(), statuses.clone(), client.clone());
        let endpoint = format!("{url}/api/v1/inventory");
        let token = agents[n].token.clone();
        // Agents start spread over one interval, as independent hosts do.
        let offset = interval.mul_f64(n as f64 / steady_agents as f64);
        tasks.push(tokio::spawn(async move {
            let mut local = new_hist();
            let mut next = tokio::time::Instant::now() + offset;
            for (body, _) in script {
                tokio::time::sleep_until(next).await;
                next += interval;
                let t = Instant::now();
                let status = match client
                    .post(&endpoint)
                    .bearer_auth(&token)
                    .header("content-type", "application/json")
                    .header("content-encoding", "gzip")
                    .body(body)
                    .send()
                    .await
                {
                    Ok(r) => {
                        let s = r.status().as_u16();
                        let _ = r.bytes().await;
                        s
                    }
                    Err(_) => 0,
                };
                let _ = local.record(t.elapsed().as_micros() as u64);
                statuses.lock().push(status);
            }
            lat.lock().add(&local).expect("same bounds");
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = started.elapsed();
    wait_queue_empty(store).await?;
    let lat = lat.lock().clone();
    let statuses = statuses.lock().clone();
    println!(
        "\n== steady load: {steady_agents} agents, {:.0} reports/s offered for {:.0} s (half changed, gzip) ==",
        rate, secs
    );
    println!(
        "statuses: {}  achieved {:.0} reports/s",
        count_status(&statuses),
        statuses.len() as f64 / elapsed.as_secs_f64()
    );
    println!(
        "ingest latency ms: p50 {:.1}  p99 {:.1}  max {:.1}",
        ms(&lat, 0.5),
        ms(&lat, 0.99),
        lat.max() as f64 / 1000.0
    );
    let (proc, failed) = processing_latency(store, &changed_ids).await?;
    println!(
        "report-to-findings ms (changed reports): p50 {:.1}  p99 {:.1}  max {:.1}  ({failed})",
        ms(&proc, 0.5),
        ms(&proc, 0.99),
        proc.max() as f64 / 1000.0
    );

    let mut findings = 0u64;
    for (c, _) in &companies {
        let s = store.summary(*c).await?;
        findings += s.findings.total();
    }
    println!("\nopen findings stored: {findings}");
    let _ = stop_tx.send(());
    let _ = server.await;
    Ok(())
}

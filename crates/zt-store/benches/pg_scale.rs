//! PostgreSQL at scale: fills a database with 10 million app rows across 100 companies (COPY),
//! then measures the dashboard's reads through the store — row-level security on, the
//! application role, a random company per sample — and prints p50/p95/p99 per query. It also
//! measures the two ways of keeping the summary current: per-agent counters maintained in the
//! ingest transaction (what the store does) and a materialized view refreshed concurrently.
//!
//! ```text
//! cargo bench -p zt-store --bench pg_scale
//! ```
//! Environment:
//! - `ZT_BENCH_PG_URL`: the database to fill (default
//!   `postgres://postgres@127.0.0.1:5432/zerotrace_bench`, created when missing). The filler
//!   connects as that URL's user, which must own the schema or be a superuser (COPY bypasses
//!   the store; the measured reads do not).
//! - `ZT_BENCH_COMPANIES` (100), `ZT_BENCH_AGENTS` (500 per company), `ZT_BENCH_APPS` (200 per
//!   agent), `ZT_BENCH_SAMPLES` (200 per query).
//! - `ZT_BENCH_REFILL=1` drops and refills; otherwise a fill of the same size is reused.
//!
//! The fill: 50,000 distinct software versions (packages with five versions each); every
//! twentieth version is vulnerable to one to three of 1,500 vulnerabilities; each agent has
//! `ZT_BENCH_APPS` distinct versions; every app of a vulnerable version has its findings, one in
//! ten of them resolved.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use sqlx::{Connection, Executor, PgConnection};
use uuid::Uuid;
use zt_store::model::{AgentFilter, AgentId, CompanyId, FindingFilter, PageRequest};
use zt_store::{PgOptions, PgStore, Storage};

const SOFTWARE: usize = 50_000;
const VULNS: usize = 1_500;
const ECOSYSTEMS: [&str; 5] = ["Debian:12", "PyPI", "npm", "Maven", "Go"];

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A small deterministic generator (splitmix64): the same fill every run, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn uuid(&mut self) -> Uuid {
        let bytes = (u128::from(self.next()) << 64) | u128::from(self.next());
        uuid::Builder::from_random_bytes(bytes.to_be_bytes()).into_uuid()
    }
}

struct Shape {
    companies: usize,
    agents: usize,
    apps: usize,
}

impl Shape {
    fn label(&self) -> String {
        format!("{}x{}x{}", self.companies, self.agents, self.apps)
    }
}

/// The vulnerabilities of software `i` (empty for most).
fn vulns_of(i: usize) -> Vec<usize> {
    if i % 20 != 0 {
        return Vec::new();
    }
    let n = 1 + (i / 20) % 3;
    (0..n).map(|k| (i * 7 + k * 389) % VULNS).collect()
}

fn severity_of(v: usize) -> i16 {
    [5, 4, 4, 3, 3, 3, 2, 0][v % 8]
}

/// Sends `rows` (text COPY lines) to `COPY … FROM STDIN` in chunks.
async fn copy(
    conn: &mut PgConnection,
    statement: &str,
    mut rows: impl FnMut(&mut String) -> bool,
) -> anyhow::Result<u64> {
    let mut copy = conn.copy_in_raw(statement).await?;
    let mut buf = String::with_capacity(8 << 20);
    loop {
        let more = rows(&mut buf);
        if buf.len() >= (4 << 20) || !more {
            copy.send(buf.as_bytes()).await?;
            buf.clear();
        }
        if !more {
            break;
        }
    }
    Ok(copy.finish().await?)
}

async fn fill(url: &str, shape: &Shape) -> anyhow::Result<()> {
    let mut conn = PgConnection::connect(url).await?;
    conn.execute("SET synchronous_commit = off").await?;
    let mut rng = Rng(42);
    let t0 = Instant::now();

    // Companies and their agents.
    let companies: Vec<Uuid> = (0..shape.companies).map(|_| rng.uuid()).collect();
    let mut agents: Vec<Vec<Uuid>> = Vec::with_capacity(shape.companies);
    let mut buf = String::new();
    for (c, id) in companies.iter().enumerate() {
        writeln!(buf, "{id}\tcompany-{c:03}\t2026-01-01 00:00:00+00")?;
    }
    let mut sent = false;
    copy(
        &mut conn,
        "COPY companies (company_id, name, created_at) FROM STDIN",
        |out| {
            if !sent {
                out.push_str(&buf);
                sent = true;
            }
            false
        },
    )
    .await?;
    for _ in 0..shape.companies {
        agents.push((0..shape.agents).map(|_| rng.uuid()).collect());
    }
    let (mut c, mut a) = (0usize, 0usize);
    copy(
        &mut conn,
        "COPY agents (company_id, agent_id, hostname, os_id, os_version_id, os_name, arch, \
         agent_version, enrolled_at, last_seen_at, last_report_at, inventory_collected_at, app_count) \
         FROM STDIN",
        |buf| {
            if c == shape.companies {
                return false;
            }
            let _ = writeln!(
                buf,
                "{}\t{}\thost-{c:03}-{a:05}\tdebian\t12\tDebian GNU/Linux\tx86_64\t1.0\t\
                 2026-01-01 00:00:00+00\t2026-11-01 00:00:00+00\t2026-11-01 00:00:00+00\t\
                 2026-11-01 00:00:00+00\t{}",
                companies[c], agents[c][a], shape.apps
            );
            a += 1;
            if a == shape.agents {
                a = 0;
                c += 1;
            }
            true
        },
    )
    .await?;

    // Software, vulnerabilities, the match cache.
    let software: Vec<Uuid> = (0..SOFTWARE).map(|_| rng.uuid()).collect();
    let mut i = 0usize;
    copy(
        &mut conn,
        "COPY software (software_key, ecosystem, name, version, source, matched_revision, created_at) \
         FROM STDIN",
        |buf| {
            if i == SOFTWARE {
                return false;
            }
            let _ = writeln!(
                buf,
                "{}\t{}\tpkg-{:05}\t1.{}.0\tdpkg\t1\t2026-01-01 00:00:00+00",
                software[i],
                ECOSYSTEMS[(i / 5) % ECOSYSTEMS.len()],
                i / 5,
                i % 5
            );
            i += 1;
            true
        },
    )
    .await?;
    let mut v = 0usize;
    copy(
        &mut conn,
        "COPY vulns (vuln_id, aliases, summary, severity, cvss_version, cvss_vector, cvss_score, \
         kev, epss, informational, revision) FROM STDIN",
        |buf| {
            if v == VULNS {
                return false;
            }
            let _ = writeln!(
                buf,
                "CVE-2024-{:05}\t{{GHSA-{v:04}-xxxx-yyyy}}\tA vulnerability in pkg {v}\t{}\t3.1\t\
                 CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H\t9.8\t{}\t0.{:02}\tf\t1",
                10_000 + v,
                severity_of(v),
                if v % 20 == 0 { "t" } else { "f" },
                v % 100
            );
            v += 1;
            true
        },
    )
    .await?;
    let mut i = 0usize;
    copy(
        &mut conn,
        "COPY software_vulns (software_key, vuln_id, fixed_versions, severity, kev, fixable, method, \
         confidence) FROM STDIN",
        |buf| {
            while i < SOFTWARE {
                let vulns = vulns_of(i);
                let key = software[i];
                i += 1;
                if vulns.is_empty() {
                    continue;
                }
                for v in vulns {
                    let fixable = v % 5 != 0;
                    let _ = writeln!(
                        buf,
                        "{key}\tCVE-2024-{:05}\t{}\t{}\t{}\t{}\tosv-range\thigh",
                        10_000 + v,
                        if fixable { "{1.9.0}" } else { "{}" },
                        severity_of(v),
                        if v % 20 == 0 { "t" } else { "f" },
                        if fixable { "t" } else { "f" },
                    );
                }
                return true;
            }
            false
        },
    )
    .await?;
    println!(
        "fill: directory and software in {:.1} s",
        t0.elapsed().as_secs_f64()
    );

    // Each agent's apps: distinct versions along a stride through the software pool.
    let picks = |c: usize, a: usize| -> (usize, usize) {
        let start = (c * 7919 + a * 104_729) % SOFTWARE;
        // Odd and not a multiple of 5: coprime with 50,000, so the picks are distinct.
        let mut stride = 1 + 2 * ((c * 31 + a * 17) % 2000);
        if stride % 5 == 0 {
            stride += 2;
        }
        (start, stride)
    };
    let t = Instant::now();
    let (mut c, mut a) = (0usize, 0usize);
    let rows = copy(
        &mut conn,
        "COPY apps (company_id, agent_id, software_key, arch, first_seen) FROM STDIN",
        |buf| {
            if c == shape.companies {
                return false;
            }
            let (start, stride) = picks(c, a);
            for k in 0..shape.apps {
                let s = (start + k * stride) % SOFTWARE;
                let _ = writeln!(
                    buf,
                    "{}\t{}\t{}\tamd64\t2026-11-01 00:00:00+00",
                    companies[c], agents[c][a], software[s]
                );
            }
            a += 1;
            if a == shape.agents {
                a = 0;
                c += 1;
            }
            true
        },
    )
    .await?;
    println!(
        "fill: {rows} app rows in {:.1} s ({:.0} rows/s)",
        t.elapsed().as_secs_f64(),
        rows as f64 / t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    let (mut c, mut a, mut n) = (0usize, 0usize, 0u64);
    let rows = copy(
        &mut conn,
        "COPY findings (company_id, agent_id, software_key, vuln_id, severity, kev, fixable, \
         first_seen, resolved_at, resolution) FROM STDIN",
        |buf| {
            if c == shape.companies {
                return false;
            }
            let (start, stride) = picks(c, a);
            for k in 0..shape.apps {
                let s = (start + k * stride) % SOFTWARE;
                for v in vulns_of(s) {
                    n += 1;
                    let resolved = n % 10 == 0;
                    let _ =
                        writeln!(
                        buf,
                        "{}\t{}\t{}\tCVE-2024-{:05}\t{}\t{}\t{}\t2026-11-01 00:00:00+00\t{}\t{}",
                        companies[c],
                        agents[c][a],
                        software[s],
                        10_000 + v,
                        severity_of(v),
                        if v % 20 == 0 { "t" } else { "f" },
                        if v % 5 != 0 { "t" } else { "f" },
                        if resolved { "2026-11-02 00:00:00+00" } else { "\\N" },
                        if resolved { "not_affected" } else { "\\N" },
                    );
                }
            }
            a += 1;
            if a == shape.agents {
                a = 0;
                c += 1;
            }
            true
        },
    )
    .await?;
    println!(
        "fill: {rows} finding rows in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    conn.execute(
        "UPDATE agents a SET (open_critical, open_high, open_medium, open_low, open_unknown, \
         open_kev, open_fixable) = (SELECT count(*) FILTER (WHERE f.severity = 5), \
         count(*) FILTER (WHERE f.severity = 4), count(*) FILTER (WHERE f.severity = 3), \
         count(*) FILTER (WHERE f.severity = 2), count(*) FILTER (WHERE f.severity <= 1), \
         count(*) FILTER (WHERE f.kev), count(*) FILTER (WHERE f.fixable) FROM findings f \
         WHERE f.company_id = a.company_id AND f.agent_id = a.agent_id AND f.resolved_at IS NULL)",
    )
    .await?;
    conn.execute("VACUUM ANALYZE").await?;
    println!(
        "fill: counters, vacuum and analyze in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    sqlx::query("INSERT INTO zt_meta (key, value) VALUES ('bench_fill', $1)")
        .bind(shape.label())
        .execute(&mut conn)
        .await?;
    println!("fill: done in {:.1} s", t0.elapsed().as_secs_f64());
    conn.close().await?;
    Ok(())
}

/// Ensures the database exists (created through the server's `postgres` database).
async fn ensure_database(url: &str) -> anyhow::Result<()> {
    let (base, name) = url
        .rsplit_once('/')
        .ok_or_else(|| anyhow::anyhow!("no database name in {url}"))?;
    let name = name.split('?').next().unwrap_or(name);
    let mut admin = PgConnection::connect(&format!("{base}/postgres")).await?;
    let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(name)
        .fetch_optional(&mut admin)
        .await?;
    if exists.is_none() {
        admin
            .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .await?;
    }
    admin.close().await?;
    Ok(())
}

struct Timings {
    rows: Vec<(String, Vec<Duration>)>,
}

impl Timings {
    fn add(&mut self, name: &str, d: Duration) {
        match self.rows.iter_mut().find(|(n, _)| n == name) {
            Some((_, v)) => v.push(d),
            None => self.rows.push((name.to_string(), vec![d])),
        }
    }

    fn print(&mut self) {
        println!(
            "{:<44} {:>7} {:>9} {:>9} {:>9} {:>9}",
            "query", "samples", "p50 ms", "p95 ms", "p99 ms", "max ms"
        );
        for (name, v) in &mut self.rows {
            v.sort();
            let at = |q: f64| {
                let i = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1;
                v[i].as_secs_f64() * 1000.0
            };
            println!(
                "{name:<44} {:>7} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
                v.len(),
                at(0.50),
                at(0.95),
                at(0.99),
                at(1.0)
            );
        }
    }
}

macro_rules! timed {
    ($t:expr, $name:expr, $e:expr) => {{
        let started = Instant::now();
        let out = $e;
        $t.add($name, started.elapsed());
        out
    }};
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("ZT_BENCH_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/zerotrace_bench".into());
    let shape = Shape {
        companies: env_usize("ZT_BENCH_COMPANIES", 100),
        agents: env_usize("ZT_BENCH_AGENTS", 500),
        apps: env_usize("ZT_BENCH_APPS", 200),
    };
    let samples = env_usize("ZT_BENCH_SAMPLES", 200);
    ensure_database(&url).await?;
    let refill = std::env::var("ZT_BENCH_REFILL").is_ok_and(|v| v == "1");
    {
        let mut conn = PgConnection::connect(&url).await?;
        let filled: Option<String> = sqlx::query_scalar(
            "SELECT value FROM zt_meta WHERE key = 'bench_fill' \
             AND to_regclass('zt_meta') IS NOT NULL",
        )
        .fetch_optional(&mut conn)
        .await
        .unwrap_or(None);
        if refill || filled.as_deref() != Some(shape.label().as_str()) {
            println!("fill: {} (companies x agents x apps)", shape.label());
            conn.execute(
                "DROP SCHEMA public CASCADE; CREATE SCHEMA public; GRANT ALL ON SCHEMA public TO public",
            )
            .await?;
        } else {
            println!("reusing the fill {}", shape.label());
        }
        conn.close().await?;
    }
    let store = PgStore::connect(
        &url,
        &PgOptions {
            partitions: 16,
            max_connections: 8,
        },
    )
    .await?;
    {
        let mut conn = PgConnection::connect(&url).await?;
        let filled: Option<String> =
            sqlx::query_scalar("SELECT value FROM zt_meta WHERE key = 'bench_fill'")
                .fetch_optional(&mut conn)
                .await?;
        conn.close().await?;
        if filled.is_none() {
            fill(&url, &shape).await?;
        }
    }
    let companies: Vec<CompanyId> = store.list_companies().await?.iter().map(|c| c.id).collect();
    let mut rng = Rng(7);
    let mut t = Timings { rows: Vec::new() };

    // Warm-up pass (first touches of the partitions), not counted.
    for c in &companies {
        store.summary(*c).await?;
        store
            .list_findings(*c, &FindingFilter::default(), &PageRequest::default())
            .await?;
    }
    let page = PageRequest {
        limit: 100,
        cursor: None,
    };
    for _ in 0..samples {
        let c = companies[rng.below(companies.len())];
        timed!(t, "summary (per-agent counters)", store.summary(c).await?);
        timed!(
            t,
            "summary (aggregate over findings)",
            store.summary_from_findings(c).await?
        );
        let first = timed!(
            t,
            "findings: first page (100)",
            store
                .list_findings(c, &FindingFilter::default(), &page)
                .await?
        );
        let next = PageRequest {
            limit: 100,
            cursor: first.next_cursor.clone(),
        };
        timed!(
            t,
            "findings: next page (cursor)",
            store
                .list_findings(c, &FindingFilter::default(), &next)
                .await?
        );
        let high = FindingFilter {
            severities: vec![zt_advisory::Severity::Critical, zt_advisory::Severity::High],
            ..Default::default()
        };
        timed!(
            t,
            "findings: severity=critical,high",
            store.list_findings(c, &high, &page).await?
        );
        let kev = FindingFilter {
            kev: Some(true),
            ..Default::default()
        };
        timed!(
            t,
            "findings: kev=true",
            store.list_findings(c, &kev, &page).await?
        );
        let fixable = FindingFilter {
            fixable: Some(false),
            ..Default::default()
        };
        timed!(
            t,
            "findings: fixable=false",
            store.list_findings(c, &fixable, &page).await?
        );
        let q = FindingFilter {
            query: Some(format!("pkg-{:05}", rng.below(SOFTWARE / 5))),
            ..Default::default()
        };
        timed!(
            t,
            "findings: q=<package name>",
            store.list_findings(c, &q, &page).await?
        );
        let agents = timed!(
            t,
            "agents: first page",
            store.list_agents(c, &AgentFilter::default(), &page).await?
        );
        if let Some(agent) = agents.items.get(rng.below(agents.items.len().max(1))) {
            let by_agent = FindingFilter {
                agent_id: Some(agent.agent_id),
                ..Default::default()
            };
            timed!(
                t,
                "findings: agent_id=<one host>",
                store.list_findings(c, &by_agent, &page).await?
            );
            timed!(
                t,
                "apps of one agent: first page",
                store.list_apps(c, agent.agent_id, &page).await?
            );
        }
        let vuln = format!("CVE-2024-{:05}", 10_000 + rng.below(VULNS));
        timed!(
            t,
            "vulnerability with affected hosts",
            store
                .vulnerability(c, &vuln, &PageRequest::default())
                .await?
        );
    }
    println!();
    t.print();

    // The alternative to counters: a materialized view over the findings, refreshed
    // concurrently (its reads are fast; a refresh recomputes every company).
    println!();
    let mut conn = PgConnection::connect(&url).await?;
    conn.execute("DROP MATERIALIZED VIEW IF EXISTS bench_company_summary")
        .await?;
    let started = Instant::now();
    conn.execute(
        "CREATE MATERIALIZED VIEW bench_company_summary AS \
         SELECT company_id, count(*) FILTER (WHERE severity = 5) AS critical, \
         count(*) FILTER (WHERE severity = 4) AS high, count(*) FILTER (WHERE severity = 3) AS medium, \
         count(*) FILTER (WHERE severity = 2) AS low, count(*) FILTER (WHERE severity <= 1) AS unknown, \
         count(*) FILTER (WHERE kev) AS kev, count(*) FILTER (WHERE fixable) AS fixable \
         FROM findings WHERE resolved_at IS NULL GROUP BY company_id",
    )
    .await?;
    conn.execute("CREATE UNIQUE INDEX ON bench_company_summary (company_id)")
        .await?;
    println!(
        "materialized view: created in {:.0} ms",
        started.elapsed().as_secs_f64() * 1000.0
    );
    let mut refresh = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        conn.execute("REFRESH MATERIALIZED VIEW CONCURRENTLY bench_company_summary")
            .await?;
        refresh.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    println!("materialized view: REFRESH CONCURRENTLY took {refresh:.0?} ms (3 runs)");
    let mut mv = Timings { rows: Vec::new() };
    for _ in 0..samples {
        let c = companies[rng.below(companies.len())];
        timed!(
            mv,
            "summary (materialized view row)",
            sqlx::query("SELECT * FROM bench_company_summary WHERE company_id = $1")
                .bind(c)
                .fetch_optional(&mut conn)
                .await?
        );
    }
    mv.print();
    conn.execute("DROP MATERIALIZED VIEW bench_company_summary")
        .await?;

    // What the counters cost the ingest path: the per-agent recomputation the worker runs in
    // the transaction that changed an agent's findings.
    let mut cost = Timings { rows: Vec::new() };
    for _ in 0..samples {
        let c = companies[rng.below(companies.len())];
        let mut tx = store.begin_for_company(c).await?;
        let agent: AgentId = sqlx::query_scalar(
            "SELECT agent_id FROM agents WHERE company_id = $1 LIMIT 1 OFFSET $2",
        )
        .bind(c)
        .bind((rng.below(shape.agents)) as i64)
        .fetch_one(&mut *tx)
        .await?;
        timed!(
            cost,
            "counter upkeep per report (one agent)",
            sqlx::query(
                "UPDATE agents a SET (open_critical, open_high, open_medium, open_low, open_unknown, \
                 open_kev, open_fixable) = (SELECT count(*) FILTER (WHERE f.severity = 5), \
                 count(*) FILTER (WHERE f.severity = 4), count(*) FILTER (WHERE f.severity = 3), \
                 count(*) FILTER (WHERE f.severity = 2), count(*) FILTER (WHERE f.severity <= 1), \
                 count(*) FILTER (WHERE f.kev), count(*) FILTER (WHERE f.fixable) FROM findings f \
                 WHERE f.company_id = a.company_id AND f.agent_id = a.agent_id \
                 AND f.resolved_at IS NULL) WHERE a.company_id = $1 AND a.agent_id = $2",
            )
            .bind(c)
            .bind(agent)
            .execute(&mut *tx)
            .await?
        );
        tx.rollback().await?;
    }
    cost.print();
    let size: String =
        sqlx::query_scalar("SELECT pg_size_pretty(pg_database_size(current_database()))")
            .fetch_one(&mut conn)
            .await?;
    println!("\ndatabase size: {size}");
    conn.close().await?;
    store.pool().close().await;
    Ok(())
}

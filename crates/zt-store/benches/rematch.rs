//! Re-match of a large estate after a feed update (issue 15): seeds N hosts (default 300,000)
//! through the store — enrolment, accepted reports, claims and processed batches as the workers
//! write them — with a catalogue of tens of thousands of distinct software versions (every
//! version the PyPA, RustSec and Go advisories of ../shared/data list, and unrelated packages),
//! then imports a feed update that changes 1,000 advisories (500 new, 250 whose ranges now
//! cover every version, 250 with a new summary) and times, from the import's commit, the
//! index rebuild, the targeted re-match and the reconciliation of every finding; then the same
//! for an update that changes every advisory (the full re-match figure).
//!
//! ```text
//! cargo bench -p zt-store --bench rematch                      # SQLite (temporary file)
//! ZT_BENCH_PG=1 cargo bench -p zt-store --bench rematch        # PostgreSQL (throwaway database)
//! ```
//! Environment: `ZT_BENCH_HOSTS` (300000), `ZT_BENCH_COMPANIES` (30), `ZT_BENCH_APPS` (20 per
//! host), `ZT_BENCH_VERSIONS` (40000 distinct versions at least), `ZT_BENCH_CHANGED` (1000).
//! PostgreSQL: the server `zt_testkit` finds (ZEROTRACE_TEST_PG_URL, else 127.0.0.1:5432).
//!
//! On PostgreSQL the estate is seeded faster (through the store, a 300,000-host estate takes
//! over an hour): the first company's hosts (one in `ZT_BENCH_COMPANIES`) go through the
//! store as above, then every other company is a copy of it made in SQL — its agents, apps,
//! findings, reports and maintained counts (company software, the vulnerability rollup) with
//! the company id replaced, as `bench/clone_fleet.py` does (as the superuser the test
//! database is reached as) — so every company holds what the pipeline wrote for the first.
//! `ZT_BENCH_SEED=store` seeds every host through the store instead. After the measurements the bench checks that a copy and the original agree
//! (summary, counters against findings): the reconciliation treated them alike.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{TimeZone, Utc};
use futures::StreamExt;
use zt_advisory::{Advisory, KevEntry, KnowledgeBase, RangeEvent};
use zt_feeds::{FeedItem, FeedRecord};
use zt_inventory::{App, AppSource, OsInfo, Software, SoftwareKey};
use zt_match::{ChangeScope, MatchIndex};
use zt_store::knowledge::KnowledgeImport;
use zt_store::model::*;
use zt_store::rematch::{rematch, Rematcher, ScopeFn};
use zt_store::{PgOptions, PgStore, SqliteStore, Storage};
use zt_testkit::shared_path;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// splitmix64: the same estate every run.
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
        (self.next() % n.max(1) as u64) as usize
    }
}

struct IndexMatcher {
    kb: Arc<KnowledgeBase>,
    index: MatchIndex,
}

fn stored(m: &zt_match::VulnMatch) -> StoredMatch {
    StoredMatch {
        vulnerability: VulnInfo {
            id: m.id.clone(),
            aliases: m.aliases.clone(),
            summary: m.summary.clone(),
            severity: m.severity,
            cvss: m.cvss.clone(),
            kev: m.kev,
            kev_due_date: m.kev_due_date.clone(),
            epss: m.epss,
            epss_percentile: m.epss_percentile,
            informational: m.informational,
        },
        fixed_versions: m.fixed_versions.clone(),
        method: m.method.as_str().to_string(),
        confidence: m.confidence.as_str().to_string(),
    }
}

#[async_trait]
impl Rematcher for IndexMatcher {
    fn revision(&self) -> u64 {
        self.kb.revision
    }
    fn match_page(&self, page: Vec<(SoftwareKey, Software)>) -> Vec<MatchedSoftware> {
        page.into_iter()
            .map(|(key, software)| MatchedSoftware {
                key,
                matches: self
                    .index
                    .match_software(&software)
                    .iter()
                    .map(stored)
                    .collect(),
                software,
            })
            .collect()
    }
    async fn scope(&self, changed: &[String]) -> Option<ScopeFn> {
        let scope = ChangeScope::of(&self.kb, changed);
        println!(
            "  scope: {} advisories, {} packages",
            scope.advisories(),
            scope.packages()
        );
        Some(Box::new(move |sw: &Software| scope.covers(sw)))
    }
    fn enrichment(&self, vuln_id: &str) -> Option<VulnEnrichment> {
        self.index.enrichment(vuln_id).map(|e| VulnEnrichment {
            vuln_id: vuln_id.to_string(),
            kev: e.kev,
            kev_due_date: e.kev_due_date,
            epss: e.epss,
            epss_percentile: e.epss_percentile,
        })
    }
}

async fn matcher(store: &dyn Storage) -> IndexMatcher {
    let kb = Arc::new(store.load_knowledge().await.unwrap());
    let for_index = kb.clone();
    let index = tokio::task::spawn_blocking(move || MatchIndex::build(&for_index))
        .await
        .unwrap();
    IndexMatcher { kb, index }
}

fn read(paths: &[PathBuf]) -> (Vec<Advisory>, Vec<KevEntry>) {
    let (mut a, mut k) = (Vec::new(), Vec::new());
    for p in zt_feeds::list_inputs(paths).unwrap() {
        zt_feeds::read_file(&p, &mut |item| match item {
            FeedItem::Record(FeedRecord::Advisory(x)) => a.push(*x),
            FeedItem::Record(FeedRecord::Kev(x)) => k.push(x),
            _ => {}
        });
    }
    (a, k)
}

fn os() -> OsInfo {
    OsInfo {
        id: "debian".into(),
        version_id: "12".into(),
        name: String::new(),
    }
}

/// Distinct versions: every version the advisories list (with fixed versions), per package at
/// most 12, then unrelated npm packages up to `at_least`.
fn catalogue(advisories: &[Advisory], at_least: usize) -> Vec<App> {
    let mut per: HashMap<(String, String), BTreeSet<String>> = HashMap::new();
    for a in advisories {
        for p in &a.affected {
            let set = per
                .entry((p.ecosystem.clone(), p.name.clone()))
                .or_default();
            set.extend(p.versions.iter().take(12).cloned());
            for r in &p.ranges {
                for e in &r.events {
                    if let RangeEvent::Fixed(v) | RangeEvent::Introduced(v) = e {
                        if v != "0" {
                            set.insert(v.clone());
                        }
                    }
                }
            }
        }
    }
    let mut keys: Vec<_> = per.into_iter().collect();
    keys.sort();
    let mut out = Vec::new();
    for ((eco, name), versions) in keys {
        let source = match eco.as_str() {
            "PyPI" => AppSource::Pypi,
            "crates.io" => AppSource::Cargo,
            "Go" => AppSource::Go,
            _ => continue,
        };
        for v in versions.into_iter().take(12) {
            out.push(App::new(&name, &v, source));
        }
    }
    let mut i = 0;
    while out.len() < at_least {
        out.push(App::new(
            format!("internal-lib-{}", i / 8),
            format!("1.{}.0", i % 8),
            AppSource::Npm,
        ));
        i += 1;
    }
    out
}

struct Estate {
    companies: Vec<CompanyId>,
    agents: Vec<(CompanyId, AgentId)>,
    catalogue: Vec<App>,
    apps: usize,
}

impl Estate {
    /// Host `i`'s apps: popular versions more often (a square skew), distinct.
    fn apps_of(&self, i: usize) -> Vec<App> {
        let mut rng = Rng(i as u64 * 7919 + 1);
        let n = self.catalogue.len();
        let mut seen = HashSet::new();
        let mut out = Vec::with_capacity(self.apps);
        while out.len() < self.apps {
            let r = rng.below(1 << 20) as f64 / (1 << 20) as f64;
            let j = ((r * r) * n as f64) as usize % n;
            let j = (j * 2_654_435_761) % n; // popular ones spread over the catalogue
            if seen.insert(j) {
                out.push(self.catalogue[j].clone());
            }
        }
        out
    }
}

async fn seed(store: &dyn Storage, estate: &Estate, m: &IndexMatcher) {
    let started = Instant::now();
    let o = os();
    let mut matched: HashSet<SoftwareKey> = HashSet::new();
    let chunk = 1_000;
    for (c, part) in estate.agents.chunks(chunk).enumerate() {
        let t = Utc::now();
        let base = c * chunk;
        let apps: Vec<Vec<App>> = (0..part.len()).map(|i| estate.apps_of(base + i)).collect();
        let reports: Vec<IncomingReport> = part
            .iter()
            .zip(&apps)
            .map(|((company, agent), apps)| IncomingReport {
                company_id: *company,
                agent_id: *agent,
                report_id: uuid::Uuid::now_v7(),
                collected_at: t,
                accepted_at: t,
                digest: zt_inventory::inventory_digest(apps),
                app_count: apps.len() as u32,
                body: b"{}".to_vec(),
            })
            .collect();
        store.accept_reports(&reports, 10_000_000).await.unwrap();
        let mut by_agent: HashMap<AgentId, &Vec<App>> = HashMap::new();
        for ((_, a), apps) in part.iter().zip(&apps) {
            by_agent.insert(*a, apps);
        }
        let mut left = part.len();
        while left > 0 {
            let claimed = store
                .claim_batch(&ClaimRequest {
                    owner: "bench".into(),
                    max_apps: 1_000_000,
                    lease: Duration::from_secs(600),
                    max_attempts: 3,
                    overdue_after: Duration::from_secs(3600),
                    now: Utc::now(),
                })
                .await
                .unwrap();
            assert!(!claimed.is_empty(), "reports to claim");
            left -= claimed.len();
            let mut software: HashMap<SoftwareKey, Software> = HashMap::new();
            let mut processed = Vec::with_capacity(claimed.len());
            for c in &claimed {
                let apps = by_agent[&c.agent_id];
                let sw: Vec<Software> = apps.iter().map(|a| Software::from_app(a, &o)).collect();
                processed.push(ProcessedReport {
                    lease: LeaseRef {
                        queue_id: c.queue_id,
                        owner: "bench".into(),
                        attempts: c.attempts,
                    },
                    company_id: c.company_id,
                    agent_id: c.agent_id,
                    report_id: c.report_id,
                    collected_at: t,
                    digest: zt_inventory::inventory_digest(apps),
                    hostname: format!("host-{}", c.agent_id),
                    os: o.clone(),
                    arch: "x86_64".into(),
                    apps: sw
                        .iter()
                        .map(|s| StoredApp {
                            software_key: s.key(),
                            arch: String::new(),
                        })
                        .collect(),
                    names: sw
                        .iter()
                        .map(|s| (s.key(), format!("{}\u{0}{}", s.ecosystem, s.name)))
                        .collect(),
                });
                for s in sw {
                    if !matched.contains(&s.key()) {
                        software.insert(s.key(), s);
                    }
                }
            }
            let page: Vec<(SoftwareKey, Software)> = software.into_iter().collect();
            matched.extend(page.iter().map(|(k, _)| *k));
            store
                .finish_batch(&ProcessedBatch {
                    revision: m.revision(),
                    software: m.match_page(page),
                    reports: processed,
                    now: Utc::now(),
                })
                .await
                .unwrap();
        }
        if (c + 1) % 20 == 0 {
            println!(
                "  seeded {} hosts in {:.0} s",
                (c + 1) * chunk,
                started.elapsed().as_secs_f64()
            );
        }
    }
    println!(
        "seeded {} hosts x {} apps ({} distinct versions) in {:.0} s",
        estate.agents.len(),
        estate.apps,
        matched.len(),
        started.elapsed().as_secs_f64()
    );
}

async fn measure(label: &str, store: &dyn Storage, batch: KnowledgeImport) {
    let import = Instant::now();
    let summary = store.import_knowledge(batch).await.unwrap();
    println!(
        "{label}: import {:.1} s (advisories new {}, updated {}), revision {}",
        import.elapsed().as_secs_f64(),
        summary.advisories.new,
        summary.advisories.updated,
        summary.revision
    );
    let started = Instant::now();
    let m = matcher(store).await;
    let index = started.elapsed();
    let never = || false;
    let report = rematch(store, &m, &never).await.unwrap();
    let total = started.elapsed();
    println!(
        "{label}: from the import's commit to every finding reconciled {:.1} s \
         (index {:.1} s, re-match {:.1} s, reconcile {:.1} s); changed advisories {}, \
         versions matched again {}, confirmed {}, pairs changed {}, versions reconciled {}, \
         agents whose findings changed {}",
        total.as_secs_f64(),
        index.as_secs_f64(),
        report.match_time.as_secs_f64(),
        report.reconcile_time.as_secs_f64(),
        report.changed_advisories,
        report.software_matched,
        report.software_confirmed,
        report.pairs_changed,
        report.software_reconciled,
        report.agents_reconciled
    );
}

/// Tenant tables a copied company takes (every stored column; company_id replaced).
const COPIED_TABLES: [&str; 7] = [
    "agents",
    "apps",
    "findings",
    "reports",
    "company_software",
    "company_vulns",
    "company_daily",
];

/// Copies the rows `template` has in [`COPIED_TABLES`] into each of `copies` (companies that
/// exist and have none), then analyzes the tables.
async fn clone_companies(pg: &PgStore, template: CompanyId, copies: &[CompanyId]) {
    let started = Instant::now();
    let pool = pg.pool();
    let mut tables = Vec::new();
    for t in COPIED_TABLES {
        let cols: Vec<String> = sqlx::query_scalar(
            "SELECT column_name::text FROM information_schema.columns              WHERE table_schema = 'public' AND table_name = $1 AND is_generated = 'NEVER'              ORDER BY ordinal_position",
        )
        .bind(t)
        .fetch_all(pool)
        .await
        .unwrap();
        if cols.is_empty() {
            continue;
        }
        let select: Vec<&str> = cols
            .iter()
            .map(|c| if c == "company_id" { "$1" } else { c.as_str() })
            .collect();
        tables.push(format!(
            "INSERT INTO {t} ({}) SELECT {} FROM {t} WHERE company_id = $2",
            cols.join(", "),
            select.join(", ")
        ));
    }
    for (n, copy) in copies.iter().enumerate() {
        let mut tx = pool.begin().await.unwrap();
        // Row-level security shows the store's role one company at a time: the copy runs as
        // the session's user (the superuser `zt_testkit` connects as), which it binds not.
        sqlx::query("SET LOCAL ROLE NONE")
            .execute(&mut *tx)
            .await
            .unwrap();
        for sql in &tables {
            sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .bind(copy)
                .bind(template)
                .execute(&mut *tx)
                .await
                .unwrap();
        }
        tx.commit().await.unwrap();
        if (n + 1) % 5 == 0 {
            println!(
                "  copied {} companies in {:.0} s",
                n + 1,
                started.elapsed().as_secs_f64()
            );
        }
    }
    // As the superuser too: the store's role may analyze none of the tables.
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("SET LOCAL ROLE NONE")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query("ANALYZE").execute(&mut *tx).await.unwrap();
    tx.commit().await.unwrap();
    println!(
        "copied the first company into {} others in {:.0} s (analyzed)",
        copies.len(),
        started.elapsed().as_secs_f64()
    );
}

/// A copied company and its original after the measurements: the same summary, and each
/// one's counters agree with its findings.
async fn check_copies(pg: &PgStore, template: CompanyId, copy: CompanyId) {
    let a = pg.summary(template).await.unwrap();
    let b = pg.summary(copy).await.unwrap();
    assert_eq!(
        (a.agents, a.apps, &a.findings, a.kev, a.fixable),
        (b.agents, b.apps, &b.findings, b.kev, b.fixable),
        "a copied company reconciled as its original"
    );
    for c in [template, copy] {
        let s = pg.summary(c).await.unwrap();
        let f = pg.summary_from_findings(c).await.unwrap();
        assert_eq!(
            (s.agents, s.apps, &s.findings, s.kev, s.fixable),
            (f.agents, f.apps, &f.findings, f.kev, f.fixable),
            "counters agree with the findings"
        );
    }
    println!(
        "check: a copy and the original agree after both updates ({} open findings each), \
         counters agree with the findings",
        a.findings.total()
    );
}

async fn run(store: &dyn Storage, backend: &str, pg: Option<&PgStore>) {
    let hosts = env_usize("ZT_BENCH_HOSTS", 300_000);
    let companies = env_usize("ZT_BENCH_COMPANIES", 30);
    let apps = env_usize("ZT_BENCH_APPS", 20);
    let versions = env_usize("ZT_BENCH_VERSIONS", 40_000);
    let changed = env_usize("ZT_BENCH_CHANGED", 1_000);
    println!("backend {backend}: {hosts} hosts in {companies} companies, {apps} apps each");

    let (mut advisories, _) = read(&[
        shared_path("osv/pypa/vulns"),
        shared_path("osv/rustsec/osv-json"),
        shared_path("osv/golang-vulndb/data/osv"),
    ]);
    advisories.sort_by(|a, b| a.id.cmp(&b.id));
    advisories.dedup_by(|a, b| a.id == b.id);
    let (_, kev) = read(&[shared_path("kev/known_exploited_vulnerabilities.json")]);
    // The update: every k-th advisory; half of them new, the others changed.
    let step = (advisories.len() / changed.max(1)).max(1);
    let picked: Vec<usize> = (0..advisories.len()).step_by(step).take(changed).collect();
    let held: HashSet<usize> = picked.iter().copied().step_by(2).collect();
    let first: Vec<Advisory> = advisories
        .iter()
        .enumerate()
        .filter(|(i, _)| !held.contains(i))
        .map(|(_, a)| a.clone())
        .collect();
    let later = Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap();
    let mut update: Vec<Advisory> = Vec::with_capacity(changed);
    for (n, i) in picked.iter().enumerate() {
        let mut a = advisories[*i].clone();
        if !held.contains(i) {
            a.modified = Some(later);
            if n % 4 == 1 {
                for p in &mut a.affected {
                    p.versions.clear();
                    for r in &mut p.ranges {
                        r.events = vec![RangeEvent::Introduced("0".into())];
                    }
                }
            } else {
                a.summary = format!("{} (revised)", a.summary);
            }
        }
        update.push(a);
    }
    let setup = Instant::now();
    store
        .import_knowledge(KnowledgeImport {
            advisories: first,
            kev,
            origin: "bench".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let m0 = matcher(store).await;
    println!(
        "knowledge: {} advisories ({} in the update) in {:.1} s",
        advisories.len(),
        update.len(),
        setup.elapsed().as_secs_f64()
    );

    let mut estate = Estate {
        companies: Vec::new(),
        agents: Vec::with_capacity(hosts),
        catalogue: catalogue(&advisories, versions),
        apps,
    };
    let enrolled = Instant::now();
    for c in 0..companies {
        let company = Company {
            id: CompanyId::now_v7(),
            name: format!("Company {c}"),
            created_at: Utc::now(),
        };
        store
            .create_company(&company, TokenHash([c as u8; 32]))
            .await
            .unwrap();
        estate.companies.push(company.id);
    }
    // PostgreSQL: the first company through the store, the others copied from it.
    let copy = pg.filter(|_| std::env::var("ZT_BENCH_SEED").map_or(true, |v| v != "store"));
    let agents: Vec<NewAgent> = (0..hosts)
        .filter(|i| copy.is_none() || i % companies == 0)
        .map(|i| {
            let mut token = [0u8; 32];
            token[..8].copy_from_slice(&(i as u64).to_le_bytes());
            token[31] = 0xbe;
            NewAgent {
                company_id: estate.companies[i % companies],
                agent_id: AgentId::now_v7(),
                hostname: format!("host-{i}"),
                os: os(),
                arch: "x86_64".into(),
                agent_version: "bench".into(),
                token_hash: TokenHash(token),
                enrolled_at: Utc::now(),
            }
        })
        .collect();
    futures::stream::iter(agents.iter())
        .for_each_concurrent(16, |a| async move {
            assert!(store.enroll_agent(a).await.unwrap());
        })
        .await;
    // Agents of a company in id order, as the workers see them.
    estate.agents = agents.iter().map(|a| (a.company_id, a.agent_id)).collect();
    println!(
        "enrolled {} agents in {:.0} s; catalogue {} versions",
        agents.len(),
        enrolled.elapsed().as_secs_f64(),
        estate.catalogue.len()
    );
    seed(store, &estate, &m0).await;
    if let Some(pg) = copy {
        clone_companies(pg, estate.companies[0], &estate.companies[1..]).await;
        let s = pg.summary(estate.companies[1]).await.unwrap();
        println!(
            "estate: {} companies x {} hosts = {} hosts, {} apps per company",
            companies,
            s.agents,
            s.agents * companies as u64,
            s.apps
        );
    }
    let never = || false;
    let base = rematch(store, &m0, &never).await.unwrap();
    assert_eq!(base.software_matched, 0);

    measure(
        &format!("{backend}, {} changed advisories", update.len()),
        store,
        KnowledgeImport {
            advisories: update,
            origin: "bench".into(),
            ..Default::default()
        },
    )
    .await;
    let every: Vec<Advisory> = advisories
        .into_iter()
        .map(|mut a| {
            a.modified = Some(later + chrono::Days::new(1));
            a.summary = format!("{} (all revised)", a.summary);
            a
        })
        .collect();
    measure(
        &format!("{backend}, every advisory changed ({})", every.len()),
        store,
        KnowledgeImport {
            advisories: every,
            origin: "bench".into(),
            ..Default::default()
        },
    )
    .await;
    if let (Some(pg), Some(last)) = (copy, estate.companies.last()) {
        if *last != estate.companies[0] {
            check_copies(pg, estate.companies[0], *last).await;
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::var("ZT_BENCH_PG").is_ok_and(|v| v == "1") {
        let db = zt_testkit::TestDatabase::create();
        let store = PgStore::connect(&db.url, &PgOptions::default())
            .await
            .unwrap();
        run(&store, "PostgreSQL", Some(&store)).await;
        store.pool().close().await;
    } else {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("zerotrace.db"))
            .await
            .unwrap();
        run(&store, "SQLite", None).await;
    }
}

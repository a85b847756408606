//! Applying an analysis that covers 100,000 findings (issue 13): the time to create it (its
//! findings suppressed and every affected host's counters recounted in the same transaction)
//! and to expire it (the findings back), with the summary read right after each to show the
//! counts are right at once.
//!
//! `cargo bench -p zt-store --bench analyses` (SQLite in a temporary directory), or with
//! `ZT_BENCH_PG_URL=postgres://…` on a PostgreSQL database of its own (the schema is
//! created there). `ZT_BENCH_AGENTS` × `ZT_BENCH_APPS` findings (default 1,000 × 100), all
//! of one vulnerability.
//!
//! Then reads with `ZT_BENCH_ANALYSES` (10,000) analyses in force: one more host with that
//! many vulnerable packages, one analysis each (half suppressing), created in one import
//! (`ZT_BENCH_CREATE=each`: one by one); the summary's and the first findings page's p50/p95
//! over `ZT_BENCH_ROUNDS` (200) rounds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use uuid::Uuid;
use zt_advisory::Severity;
use zt_inventory::{App, AppSource, OsInfo, Software, SoftwareKey};
use zt_store::analysis::*;
use zt_store::model::*;
use zt_store::{PgOptions, PgStore, SqliteStore, Storage};

fn env_n(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn vuln() -> StoredMatch {
    StoredMatch {
        vulnerability: VulnInfo {
            id: "CVE-2099-0001".into(),
            aliases: vec!["GHSA-bench-0001".into()],
            summary: "benchmark".into(),
            severity: Severity::High,
            cvss: None,
            kev: false,
            kev_due_date: None,
            epss: None,
            epss_percentile: None,
            informational: false,
        },
        fixed_versions: vec!["2.0.0".into()],
        method: "osv-range".into(),
        confidence: "high".into(),
    }
}

fn main() -> anyhow::Result<()> {
    let agents = env_n("ZT_BENCH_AGENTS", 1000);
    let apps_per = env_n("ZT_BENCH_APPS", 100);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let dir = tempfile::tempdir()?;
        let pg_url = std::env::var("ZT_BENCH_PG_URL").ok();
        let store: Arc<dyn Storage> = if let Some(url) = &pg_url {
            Arc::new(PgStore::connect(url, &PgOptions::default()).await?)
        } else {
            Arc::new(SqliteStore::open(&dir.path().join("zerotrace.db")).await?)
        };
        let company = Company {
            id: CompanyId::now_v7(),
            name: "bench".into(),
            created_at: Utc::now(),
        };
        let mut secret = [0u8; 32];
        secret[..16].copy_from_slice(Uuid::new_v4().as_bytes());
        store.create_company(&company, TokenHash(secret)).await?;
        let os = OsInfo {
            id: "debian".into(),
            version_id: "12".into(),
            name: String::new(),
        };
        let apps: Vec<App> = (0..apps_per)
            .map(|i| App::new(format!("bench-pkg-{i}"), "1.0.0", AppSource::Npm))
            .collect();
        let software: Vec<(SoftwareKey, Software)> = apps
            .iter()
            .map(|a| {
                let s = Software::from_app(a, &os);
                (s.key(), s)
            })
            .collect();
        let t = Instant::now();
        let mut first = true;
        // Each batch's findings are first seen on a day of its own over the last 400 days
        // (as a fleet's findings accumulate), so that the SLA counts of the summary have
        // overdue, due-soon and not-yet-due findings to count, as in a company running for
        // a while; all of one batch share a timestamp, as findings written together do.
        let mut batch_no: i64 = 0;
        for chunk in (0..agents).collect::<Vec<_>>().chunks(100) {
            let mut incoming = Vec::new();
            for _ in chunk {
                let agent_id = AgentId::now_v7();
                let mut token = [0u8; 32];
                token[..16].copy_from_slice(Uuid::new_v4().as_bytes());
                store
                    .enroll_agent(&NewAgent {
                        company_id: company.id,
                        agent_id,
                        hostname: format!("host-{agent_id}"),
                        os: os.clone(),
                        arch: "x86_64".into(),
                        agent_version: "bench".into(),
                        token_hash: TokenHash(token),
                        enrolled_at: Utc::now(),
                    })
                    .await?;
                incoming.push(IncomingReport {
                    company_id: company.id,
                    agent_id,
                    report_id: Uuid::new_v4(),
                    collected_at: Utc::now(),
                    accepted_at: Utc::now(),
                    digest: zt_inventory::inventory_digest(&apps),
                    app_count: apps.len() as u32,
                    body: b"bench".to_vec(),
                });
            }
            store.accept_reports(&incoming, 1_000_000).await?;
            // Claims may come back smaller than asked (a claim budget): until all are done.
            loop {
            let claimed = store
                .claim_batch(&ClaimRequest {
                    owner: "bench".into(),
                    max_apps: 10_000_000,
                    lease: Duration::from_secs(600),
                    max_attempts: 3,
                    overdue_after: Duration::from_secs(3600),
                    now: Utc::now(),
                })
                .await?;
            let reports = claimed
                .iter()
                .map(|c| ProcessedReport {
                    lease: LeaseRef {
                        queue_id: c.queue_id,
                        owner: "bench".into(),
                        attempts: c.attempts,
                    },
                    company_id: c.company_id,
                    agent_id: c.agent_id,
                    report_id: c.report_id,
                    collected_at: c.collected_at,
                    digest: zt_inventory::inventory_digest(&apps),
                    hostname: format!("host-{}", c.agent_id),
                    os: os.clone(),
                    arch: "x86_64".into(),
                    apps: software
                        .iter()
                        .map(|(k, _)| StoredApp {
                            software_key: *k,
                            arch: String::new(),
                        })
                        .collect(),
                    names: software
                        .iter()
                        .map(|(k, s)| (*k, format!("{}\u{0}{}", s.ecosystem, s.name)))
                        .collect(),
                })
                .collect();
            let matched = if first {
                first = false;
                let mut m: Vec<MatchedSoftware> = software
                    .iter()
                    .map(|(k, s)| MatchedSoftware {
                        key: *k,
                        software: s.clone(),
                        matches: vec![vuln()],
                    })
                    .collect();
                m.sort_by_key(|m| m.key);
                m
            } else {
                Vec::new()
            };
            if claimed.is_empty() {
                break;
            }
            batch_no += 1;
            store
                .finish_batch(&ProcessedBatch {
                    revision: 1,
                    software: matched,
                    reports,
                    now: Utc::now() - chrono::Duration::days((batch_no * 37) % 400),
                })
                .await?;
            }
        }
        // A deployment's tables have statistics (autovacuum analyzes them after large
        // writes); a database filled a moment ago has none, and the planner's guesses for
        // the analyses' statements and the SLA counts then measure something no site runs.
        // Analyzed as the login role (the bench connects as a superuser or the owner).
        if let Some(url) = &pg_url {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(url).await?;
            let t = Instant::now();
            sqlx::query("ANALYZE").execute(&mut conn).await?;
            println!("analyzed the tables in {:.1} s", t.elapsed().as_secs_f64());
            conn.close().await?;
        }
        let before = store.summary(company.id).await?;
        println!(
            "{} store: {} hosts x {} packages = {} open high findings of one vulnerability, {} overdue, {} due within 7 days (loaded in {:.1} s)",
            store.backend(),
            agents,
            apps_per,
            before.findings.high,
            before.overdue,
            before.due_soon,
            t.elapsed().as_secs_f64()
        );
        let ctx = |at| ChangeContext {
            actor: Actor {
                kind: "operator".into(),
                token_id: None,
                role: None,
            },
            at,
            comment: Some("benchmark".into()),
        };
        let now = Utc::now();
        let t = Instant::now();
        store
            .create_analysis(
                company.id,
                &NewAnalysis {
                    analysis_id: Uuid::now_v7(),
                    vuln_id: "GHSA-bench-0001".into(),
                    decision: AnalysisDecision {
                        scope: AnalysisScope::default(),
                        state: AnalysisState::Exploitable,
                        justification: None,
                        response: vec![VexResponse::WillNotFix],
                        details: None,
                        suppress: true,
                        expires_at: Some(now + chrono::Duration::hours(1)),
                    },
                    source: None,
                },
                &ctx(now),
            )
            .await?;
        let create = t.elapsed();
        let t = Instant::now();
        let after = store.summary(company.id).await?;
        let summary_ms = t.elapsed().as_secs_f64() * 1000.0;
        println!(
            "create (risk acceptance of all {} findings): {:.0} ms; summary right after: high {}, suppressed {}, overdue {} ({summary_ms:.1} ms)",
            before.findings.high,
            create.as_secs_f64() * 1000.0,
            after.findings.high,
            after.suppressed,
            after.overdue
        );
        let t = Instant::now();
        let expired = store
            .expire_analyses(now + chrono::Duration::hours(2))
            .await?;
        let expire = t.elapsed();
        let t = Instant::now();
        let back = store.summary(company.id).await?;
        let summary_ms = t.elapsed().as_secs_f64() * 1000.0;
        println!(
            "expire ({} analysis): {:.0} ms; summary right after: high {}, suppressed {}, overdue {} ({summary_ms:.1} ms)",
            expired,
            expire.as_secs_f64() * 1000.0,
            back.findings.high,
            back.suppressed,
            back.overdue
        );
        anyhow::ensure!(after.findings.high == 0 && after.suppressed == before.findings.high);
        anyhow::ensure!(after.overdue == 0 && after.due_soon == 0);
        anyhow::ensure!(back.findings.high == before.findings.high && back.suppressed == 0);
        anyhow::ensure!(back.overdue == before.overdue && back.due_soon == before.due_soon);

        // Reads with many analyses in force: one more host runs `n` packages, each with a
        // vulnerability of its own, and each of those vulnerabilities gets an analysis (half
        // of them suppressing); then the summary and the first findings page, timed.
        let n = env_n("ZT_BENCH_ANALYSES", 10_000);
        let many: Vec<(SoftwareKey, Software)> = (0..n)
            .map(|i| {
                let s = Software::from_app(
                    &App::new(format!("many-pkg-{i}"), "1.0.0", AppSource::Npm),
                    &os,
                );
                (s.key(), s)
            })
            .collect();
        let agent_id = AgentId::now_v7();
        let mut token = [0u8; 32];
        token[..16].copy_from_slice(Uuid::new_v4().as_bytes());
        store
            .enroll_agent(&NewAgent {
                company_id: company.id,
                agent_id,
                hostname: "many-1".into(),
                os: os.clone(),
                arch: "x86_64".into(),
                agent_version: "bench".into(),
                token_hash: TokenHash(token),
                enrolled_at: Utc::now(),
            })
            .await?;
        let many_apps: Vec<App> = many
            .iter()
            .map(|(_, s)| App::new(s.name.clone(), "1.0.0", AppSource::Npm))
            .collect();
        store
            .accept_reports(
                &[IncomingReport {
                    company_id: company.id,
                    agent_id,
                    report_id: Uuid::new_v4(),
                    collected_at: Utc::now(),
                    accepted_at: Utc::now(),
                    digest: zt_inventory::inventory_digest(&many_apps),
                    app_count: n as u32,
                    body: b"bench".to_vec(),
                }],
                1_000_000,
            )
            .await?;
        let claimed = store
            .claim_batch(&ClaimRequest {
                owner: "bench".into(),
                max_apps: 10_000_000,
                lease: Duration::from_secs(600),
                max_attempts: 3,
                overdue_after: Duration::from_secs(3600),
                now: Utc::now(),
            })
            .await?;
        let mut matched: Vec<MatchedSoftware> = many
            .iter()
            .enumerate()
            .map(|(i, (k, s))| {
                let mut m = vuln();
                m.vulnerability.id = format!("CVE-2098-{i:05}");
                m.vulnerability.aliases = Vec::new();
                MatchedSoftware {
                    key: *k,
                    software: s.clone(),
                    matches: vec![m],
                }
            })
            .collect();
        matched.sort_by_key(|m| m.key);
        let reports = claimed
            .iter()
            .map(|c| ProcessedReport {
                lease: LeaseRef {
                    queue_id: c.queue_id,
                    owner: "bench".into(),
                    attempts: c.attempts,
                },
                company_id: c.company_id,
                agent_id: c.agent_id,
                report_id: c.report_id,
                collected_at: c.collected_at,
                digest: zt_inventory::inventory_digest(&many_apps),
                hostname: "many-1".into(),
                os: os.clone(),
                arch: "x86_64".into(),
                apps: many
                    .iter()
                    .map(|(k, _)| StoredApp {
                        software_key: *k,
                        arch: String::new(),
                    })
                    .collect(),
                names: many
                    .iter()
                    .map(|(k, s)| (*k, format!("{}\u{0}{}", s.ecosystem, s.name)))
                    .collect(),
            })
            .collect();
        store
            .finish_batch(&ProcessedBatch {
                revision: 1,
                software: matched,
                reports,
                now: Utc::now(),
            })
            .await?;
        let analysis = |i: usize| NewAnalysis {
            analysis_id: Uuid::now_v7(),
            vuln_id: format!("CVE-2098-{i:05}"),
            decision: AnalysisDecision {
                scope: AnalysisScope::default(),
                state: AnalysisState::NotAffected,
                justification: Some(Justification::CodeNotPresent),
                response: Vec::new(),
                details: None,
                suppress: i % 2 == 0,
                expires_at: None,
            },
            source: None,
        };
        // `ZT_BENCH_CREATE=each`: one API call per analysis (slow: each applies its own
        // coverage and recount); by default one import (a VEX document's path: one
        // transaction, each vulnerability's findings covered once).
        let each = std::env::var("ZT_BENCH_CREATE").as_deref() == Ok("each");
        let t = Instant::now();
        if each {
            for i in 0..n {
                store
                    .create_analysis(company.id, &analysis(i), &ctx(Utc::now()))
                    .await?;
            }
        } else {
            let list: Vec<NewAnalysis> = (0..n).map(analysis).collect();
            let outcome = store
                .import_analyses(company.id, &list, &ctx(Utc::now()))
                .await?;
            anyhow::ensure!(
                outcome.created == n as u64,
                "imported {} of {n} (unknown: {})",
                outcome.created,
                outcome.unknown.len()
            );
        }
        let created = t.elapsed();
        let summary = store.summary(company.id).await?;
        println!(
            "{n} analyses created {} in {:.1} s ({:.2} ms each); summary: high {}, suppressed {}, overdue {}, due within 7 days {}",
            if each { "one by one" } else { "in one import" },
            created.as_secs_f64(),
            created.as_secs_f64() * 1000.0 / n as f64,
            summary.findings.high,
            summary.suppressed,
            summary.overdue,
            summary.due_soon
        );
        anyhow::ensure!(summary.suppressed == n.div_ceil(2) as u64);
        // As after the fill: the reads are measured on tables with statistics.
        if let Some(url) = &pg_url {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(url).await?;
            sqlx::query("ANALYZE").execute(&mut conn).await?;
            conn.close().await?;
        }
        let rounds = env_n("ZT_BENCH_ROUNDS", 200);
        let mut summary_ms = Vec::with_capacity(rounds);
        let mut findings_ms = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            let t = Instant::now();
            store.summary(company.id).await?;
            summary_ms.push(t.elapsed().as_secs_f64() * 1000.0);
            let t = Instant::now();
            let page = store
                .list_findings(
                    company.id,
                    &FindingFilter::default(),
                    &PageRequest {
                        limit: 50,
                        cursor: None,
                    },
                )
                .await?;
            findings_ms.push(t.elapsed().as_secs_f64() * 1000.0);
            anyhow::ensure!(page.items.len() == 50);
        }
        let pct = |v: &mut Vec<f64>, p: f64| {
            v.sort_by(|a, b| a.total_cmp(b));
            v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1]
        };
        println!(
            "with {n} analyses in force, {} open findings: summary p50 {:.1} ms p95 {:.1} ms; findings page (50) p50 {:.1} ms p95 {:.1} ms ({rounds} rounds)",
            summary.findings.high,
            pct(&mut summary_ms, 0.5),
            pct(&mut summary_ms, 0.95),
            pct(&mut findings_ms, 0.5),
            pct(&mut findings_ms, 0.95),
        );
        Ok(())
    })
}

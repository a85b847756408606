//! What only the PostgreSQL backend promises: row-level security between companies, hash
//! partitions, concurrent workers sharing the queue, retention, counters that agree with the
//! findings they count.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use sqlx::{Connection, Row};
use uuid::Uuid;
use zt_advisory::Severity;
use zt_inventory::{App, Software};
use zt_store::model::*;
use zt_store::postgres::RlsMode;
use zt_store::{PgOptions, PgStore, Storage};

mod common;
use common::{agent_with, company_with, fresh_pg as fresh, incoming, npm, process};

fn random_hash() -> TokenHash {
    let mut h = [0u8; 32];
    h[..16].copy_from_slice(Uuid::new_v4().as_bytes());
    TokenHash(h)
}

async fn company(store: &PgStore, name: &str) -> CompanyId {
    company_with(store, name, random_hash()).await
}

async fn agent(store: &PgStore, company_id: CompanyId, hostname: &str) -> AgentId {
    agent_with(store, company_id, hostname, random_hash()).await
}

fn matcher(s: &Software) -> Vec<StoredMatch> {
    if s.name.starts_with("vuln") {
        vec![StoredMatch {
            vulnerability: VulnInfo {
                id: format!("CVE-2024-{}", s.name.len()),
                aliases: vec![],
                summary: "test".into(),
                severity: Severity::High,
                cvss: None,
                kev: true,
                kev_due_date: None,
                epss: None,
                epss_percentile: None,
                informational: false,
            },
            fixed_versions: vec!["9".into()],
            method: "osv-range".into(),
            confidence: "high".into(),
        }]
    } else {
        Vec::new()
    }
}

/// Accepts, claims and processes one report of `apps` for the agent; returns its outcome.
async fn report(store: &PgStore, c: CompanyId, a: AgentId, apps: &[App]) -> ReportOutcome {
    let collected_at = Utc::now();
    let incoming = incoming(c, a, apps, collected_at, b"{}".to_vec());
    assert_eq!(
        store
            .accept_reports(std::slice::from_ref(&incoming), 1000)
            .await
            .unwrap(),
        [AcceptOutcome::Queued]
    );
    let owner = format!("w-{}", Uuid::new_v4());
    let claimed = store
        .claim_batch(&ClaimRequest {
            owner: owner.clone(),
            max_apps: 100_000,
            lease: Duration::from_secs(60),
            max_attempts: 3,
            overdue_after: Duration::from_secs(3600),
            now: Utc::now(),
        })
        .await
        .unwrap();
    let c0 = claimed
        .iter()
        .find(|x| x.report_id == incoming.report_id)
        .expect("claimed");
    process(store, c0, &owner, apps, collected_at, &matcher).await
}

#[tokio::test]
async fn row_level_security_hides_other_companies_even_without_a_where_clause() {
    let (_db, store) = fresh(4).await;
    assert_eq!(
        store.rls_mode(),
        RlsMode::AppRole,
        "the test server allows the app role"
    );
    let a = company(&store, "Acme").await;
    let b = company(&store, "Beta").await;
    let a1 = agent(&store, a, "a-1").await;
    let b1 = agent(&store, b, "b-1").await;
    let b2 = agent(&store, b, "b-2").await;
    let apps = [npm("vulnerable-lib", "1.0"), npm("left-pad", "1.0")];
    for (c, ag) in [(a, a1), (b, b1), (b, b2)] {
        assert!(matches!(
            report(&store, c, ag, &apps).await,
            ReportOutcome::Applied { added: 2, .. }
        ));
    }

    // The connection runs as a role that is neither superuser nor the tables' owner.
    let row = sqlx::query(
        "SELECT current_user::text, r.rolsuper, r.rolbypassrls, \
         (SELECT tableowner::text FROM pg_tables WHERE tablename = 'findings') \
         FROM pg_roles r WHERE r.rolname = current_user",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    let (user, superuser, bypass, owner): (String, bool, bool, String) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    assert_eq!(user, "zerotrace_app");
    assert!(!superuser && !bypass);
    assert_ne!(owner, user);

    // Queries with no WHERE clause at all, in a transaction working for A: only A's rows.
    let mut tx = store.begin_for_company(a).await.unwrap();
    for table in ["agents", "reports", "apps", "findings"] {
        let companies: Vec<Uuid> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT DISTINCT company_id FROM {table}"
        )))
        .fetch_all(&mut *tx)
        .await
        .unwrap();
        assert_eq!(
            companies,
            [a.as_uuid()],
            "{table} leaked another company's rows"
        );
    }
    let findings: i64 = sqlx::query_scalar("SELECT count(*) FROM findings")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(findings, 1);
    // A bulk change without a WHERE clause changes A's rows only.
    let changed = sqlx::query("UPDATE findings SET resolution = 'bug'")
        .execute(&mut *tx)
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(changed, 1);
    // Writing B's rows is refused.
    let err = sqlx::query(
        "INSERT INTO apps (company_id, agent_id, software_key, arch, first_seen) \
         VALUES ($1, $2, gen_random_uuid(), '', now())",
    )
    .bind(b)
    .bind(b1)
    .execute(&mut *tx)
    .await
    .unwrap_err();
    assert!(err.to_string().contains("row-level security"), "{err}");
    drop(tx);

    // B's rows are there (B's transaction sees them) and untouched.
    let mut tx = store.begin_for_company(b).await.unwrap();
    let rows: Vec<(Uuid, Option<String>)> =
        sqlx::query_as("SELECT company_id, resolution FROM findings")
            .fetch_all(&mut *tx)
            .await
            .unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|(c, r)| *c == b.as_uuid() && r.is_none()));
    tx.commit().await.unwrap();

    // No company set: tenant tables are empty; the partitions are out of reach.
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM apps")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(n, 0);
    let err = sqlx::query("SELECT count(*) FROM apps_p0")
        .fetch_one(store.pool())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("permission denied"), "{err}");

    // A transaction marked operator-wide (the operator's overview) reads every company's
    // agents, and nothing else of theirs; it still cannot change an agent of any company.
    let mut tx = store.pool().begin().await.unwrap();
    sqlx::query("SET LOCAL zerotrace.all_companies = 'on'")
        .execute(&mut *tx)
        .await
        .unwrap();
    let agents: HashSet<Uuid> = sqlx::query_scalar("SELECT agent_id FROM agents")
        .fetch_all(&mut *tx)
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(
        agents,
        HashSet::from([a1.as_uuid(), b1.as_uuid(), b2.as_uuid()])
    );
    for table in ["reports", "apps", "findings"] {
        let n: i64 =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
                .fetch_one(&mut *tx)
                .await
                .unwrap();
        assert_eq!(n, 0, "{table} is readable operator-wide");
    }
    let changed = sqlx::query("UPDATE agents SET open_high = 99")
        .execute(&mut *tx)
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(changed, 0, "an operator-wide transaction changed agents");
    let deleted = sqlx::query("DELETE FROM agents")
        .execute(&mut *tx)
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(deleted, 0, "an operator-wide transaction deleted agents");
    drop(tx);
    let overview = store.overview(Utc::now()).await.unwrap();
    let highs: Vec<(String, u64, u64)> = overview
        .iter()
        .map(|c| (c.name.clone(), c.agents, c.findings.high))
        .collect();
    assert_eq!(
        highs,
        [("Acme".to_string(), 1, 1), ("Beta".to_string(), 2, 2)]
    );

    // The API answers per company as before.
    assert_eq!(store.summary(a).await.unwrap().findings.high, 1);
    assert_eq!(store.summary(b).await.unwrap().findings.high, 2);
    assert!(store.get_agent(a, b1).await.unwrap().is_none());
}

#[tokio::test]
async fn tenant_tables_have_the_configured_partitions_for_good() {
    let (db, store) = fresh(8).await;
    assert_eq!(store.partitions(), 8);
    for table in ["agents", "reports", "apps", "findings"] {
        let n: i64 =
            sqlx::query_scalar("SELECT count(*) FROM pg_inherits WHERE inhparent = $1::regclass")
                .bind(table)
                .fetch_one(store.pool())
                .await
                .unwrap();
        assert_eq!(n, 8, "{table}");
    }
    // Rows spread over the partitions by company.
    for i in 0..16 {
        company(&store, &format!("c{i}")).await;
    }
    store.pool().close().await;
    // Opening again with another count keeps the schema as created.
    let again = PgStore::connect(
        &db.url,
        &PgOptions {
            partitions: 3,
            ..PgOptions::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(again.partitions(), 8);
    again.pool().close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_workers_claim_every_report_exactly_once() {
    let (_db, store) = fresh(4).await;
    let store = Arc::new(store);
    let c = company(&store, "Acme").await;
    let mut expected = HashSet::new();
    for i in 0..60 {
        let a = agent(&store, c, &format!("h{i:02}")).await;
        let apps: Vec<App> = (0..5)
            .map(|n| npm(&format!("p{n}"), &format!("{}.0", i % 7)))
            .collect();
        let versions: Vec<&String> = apps.iter().map(|a| &a.version).collect();
        let r = incoming(
            c,
            a,
            &apps,
            Utc::now(),
            serde_json::to_vec(&versions).unwrap(),
        );
        expected.insert(r.report_id);
        store.accept_reports(&[r], 1000).await.unwrap();
    }
    let mut workers = Vec::new();
    for w in 0..6 {
        let store = store.clone();
        workers.push(tokio::spawn(async move {
            let owner = format!("worker-{w}");
            let mut mine = Vec::new();
            loop {
                let claimed = store
                    .claim_batch(&ClaimRequest {
                        owner: owner.clone(),
                        max_apps: 10,
                        lease: Duration::from_secs(60),
                        max_attempts: 3,
                        overdue_after: Duration::from_secs(3600),
                        now: Utc::now(),
                    })
                    .await
                    .unwrap();
                if claimed.is_empty() {
                    return mine;
                }
                for c in &claimed {
                    let versions: Vec<String> = serde_json::from_slice(&c.body).unwrap();
                    let apps: Vec<App> = versions
                        .iter()
                        .enumerate()
                        .map(|(n, v)| npm(&format!("p{n}"), v))
                        .collect();
                    let out = process(&*store, c, &owner, &apps, Utc::now(), &matcher).await;
                    assert!(matches!(out, ReportOutcome::Applied { .. }), "{out:?}");
                    mine.push(c.report_id);
                }
            }
        }));
    }
    let mut seen = Vec::new();
    for w in workers {
        seen.extend(w.await.unwrap());
    }
    let distinct: HashSet<ReportId> = seen.iter().copied().collect();
    assert_eq!(distinct.len(), seen.len(), "a report was processed twice");
    assert_eq!(distinct, expected);
    let stats = store.queue_stats().await.unwrap();
    assert_eq!((stats.pending(), stats.done, stats.dead), (0, 60, 0));
    let s = store.summary(c).await.unwrap();
    assert_eq!((s.agents, s.apps), (60, 300));
}

#[tokio::test]
async fn retention_purges_old_history_and_keeps_the_present() {
    let (_db, store) = fresh(4).await;
    let c = company(&store, "Acme").await;
    let a = agent(&store, c, "h").await;
    report(&store, c, a, &[npm("vulnerable-a", "1"), npm("x", "1")]).await;
    // vulnerable-a leaves: its app row is kept as removed, its finding resolved.
    report(&store, c, a, &[npm("vulnerable-bb", "1"), npm("x", "1")]).await;
    let count = |sql: &'static str| {
        let store = store.clone();
        async move {
            let mut tx = store.begin_for_company(c).await.unwrap();
            let n: i64 = sqlx::query_scalar(sql).fetch_one(&mut *tx).await.unwrap();
            n
        }
    };
    assert_eq!(
        count("SELECT count(*) FROM apps WHERE removed_at IS NOT NULL").await,
        1
    );
    assert_eq!(
        count("SELECT count(*) FROM findings WHERE resolved_at IS NOT NULL").await,
        1
    );
    let listed = store
        .list_apps(c, a, &PageRequest::default())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(listed.items.len(), 2, "removed apps are not listed");

    assert_eq!(
        store
            .purge_history(Utc::now() - chrono::Duration::days(90))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .purge_history(Utc::now() + chrono::Duration::seconds(1))
            .await
            .unwrap(),
        2
    );
    assert_eq!(count("SELECT count(*) FROM apps").await, 2);
    assert_eq!(count("SELECT count(*) FROM findings").await, 1);
    assert_eq!(store.summary(c).await.unwrap().findings.high, 1);

    // An app that comes back after removal is live again, seen anew.
    report(&store, c, a, &[npm("vulnerable-bb", "1")]).await;
    report(&store, c, a, &[npm("vulnerable-bb", "1"), npm("x", "1")]).await;
    assert_eq!(
        count("SELECT count(*) FROM apps WHERE removed_at IS NULL").await,
        2
    );
}

#[tokio::test]
async fn per_agent_counters_agree_with_the_findings() {
    let (_db, store) = fresh(4).await;
    let c = company(&store, "Acme").await;
    let agents = [agent(&store, c, "a").await, agent(&store, c, "b").await];
    let inventories = [
        vec![
            npm("vuln-one", "1"),
            npm("vulnerable-two", "1"),
            npm("ok", "1"),
        ],
        vec![npm("vuln-one", "2"), npm("ok", "1")],
        vec![npm("ok", "2")],
    ];
    for inv in &inventories {
        for a in agents {
            report(&store, c, a, inv).await;
            assert_eq!(
                store.summary(c).await.unwrap(),
                store.summary_from_findings(c).await.unwrap()
            );
        }
    }
    let s = store.summary(c).await.unwrap();
    assert_eq!((s.agents, s.apps, s.findings.total()), (2, 2, 0));
}

/// The company sums the summary and the operator's overview read (delta rows written by a
/// trigger on `agents`, folded by the upkeep; migration 0960) agree with the findings after
/// every kind of write, across companies, and after folding.
#[tokio::test]
async fn company_totals_follow_every_write_and_survive_folding() {
    let (db, store) = fresh(4).await;
    let companies = [company(&store, "Acme").await, company(&store, "Beta").await];
    let mut agents = Vec::new();
    for (i, &c) in companies.iter().enumerate() {
        for h in 0..5 {
            agents.push((c, agent(&store, c, &format!("host-{i}-{h}")).await));
        }
    }
    let inventories = [
        vec![
            npm("vuln-one", "1"),
            npm("vulnerable-two", "1"),
            npm("ok", "1"),
        ],
        vec![npm("vuln-one", "2"), npm("ok", "1")],
        vec![npm("ok", "2"), npm("vulnerable-three", "1")],
    ];
    let check = |live: [u64; 2]| {
        let store = &store;
        async move {
            let overview = store.overview(Utc::now()).await.unwrap();
            for (i, &c) in companies.iter().enumerate() {
                let mut expected = store.summary_from_findings(c).await.unwrap();
                // Counted from the findings, except the agents: only live ones count.
                expected.agents = live[i];
                let summary = store.summary(c).await.unwrap();
                assert_eq!(
                    (summary.agents, summary.apps, &summary.findings, summary.kev),
                    (
                        expected.agents,
                        expected.apps,
                        &expected.findings,
                        expected.kev
                    )
                );
                let row = overview.iter().find(|o| o.company_id == c).unwrap();
                assert_eq!(
                    (row.agents, row.apps, &row.findings, row.kev, row.fixable),
                    (
                        summary.agents,
                        summary.apps,
                        &summary.findings,
                        summary.kev,
                        summary.fixable
                    )
                );
            }
        }
    };
    for round in 0..8 {
        for (i, &(c, a)) in agents.iter().enumerate() {
            report(&store, c, a, &inventories[(round + i) % 3]).await;
        }
        check([5, 5]).await;
    }
    let (c, a) = agents[0];
    store
        .decommission_agent(c, a, Utc::now())
        .await
        .unwrap()
        .unwrap();
    check([4, 5]).await;

    // Acme wrote more delta rows than are kept unfolded; the upkeep folds them into one.
    let mut admin = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let rows_of = |c: CompanyId| {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM company_agent_totals WHERE company_id = $1",
        )
        .bind(c.0)
    };
    assert!(rows_of(c).fetch_one(&mut admin).await.unwrap() > 32);
    store.housekeeping().await.unwrap();
    assert_eq!(rows_of(c).fetch_one(&mut admin).await.unwrap(), 1);
    check([4, 5]).await;
    // Writes after the fold add to the folded sum.
    report(&store, c, agents[1].1, &inventories[0]).await;
    check([4, 5]).await;
}

#[tokio::test]
async fn a_retried_report_yields_to_fresh_work() {
    let (_db, store) = fresh(2).await;
    let c = company(&store, "Acme").await;
    let mut ids = Vec::new();
    for host in ["older", "newer"] {
        let a = agent(&store, c, host).await;
        let apps = [npm(host, "1")];
        let r = incoming(c, a, &apps, Utc::now(), b"{}".to_vec());
        ids.push(r.report_id);
        store.accept_reports(&[r], 100).await.unwrap();
    }
    let claim = |now| ClaimRequest {
        owner: "w".into(),
        max_apps: 1,
        lease: Duration::from_secs(60),
        max_attempts: 5,
        overdue_after: Duration::from_secs(3600),
        now,
    };
    // Newest first...
    let got = store.claim_batch(&claim(Utc::now())).await.unwrap();
    assert_eq!(got[0].report_id, ids[1]);
    // ...but once it failed, it waits behind work that has not failed.
    let now = Utc::now();
    store
        .fail(
            &[Failure {
                lease: LeaseRef {
                    queue_id: got[0].queue_id,
                    owner: "w".into(),
                    attempts: got[0].attempts,
                },
                error: "boom".into(),
                retry_at: Some(now),
            }],
            now,
        )
        .await
        .unwrap();
    let next = store.claim_batch(&claim(Utc::now())).await.unwrap();
    assert_eq!(next[0].report_id, ids[0]);
    let last = store.claim_batch(&claim(Utc::now())).await.unwrap();
    assert_eq!((last[0].report_id, last[0].attempts), (ids[1], 2));
}

/// With autovacuum off (as on the CI machine's server), housekeeping analyzes the tables that
/// changed enough, so that the planner sees real row counts; with it on, it leaves them alone.
#[tokio::test]
async fn housekeeping_analyzes_changed_tables_when_autovacuum_is_off() {
    let (db, store) = fresh(2).await;
    let c = company(&store, "Acme").await;
    for i in 0..120 {
        agent(&store, c, &format!("host-{i}")).await;
    }
    // Backends hand their table statistics over when they exit.
    store.pool().close().await;
    let store = PgStore::connect(&db.url, &PgOptions::default())
        .await
        .unwrap();
    let autovacuum: bool = sqlx::query_scalar("SELECT current_setting('autovacuum')::boolean")
        .fetch_one(store.pool())
        .await
        .unwrap();
    let analyzed = || async {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_user_tables \
             WHERE relname LIKE 'agents_p%' AND last_analyze IS NOT NULL",
        )
        .fetch_one(store.pool())
        .await
        .unwrap();
        n
    };
    let mut n = 0;
    for _ in 0..75 {
        store.housekeeping().await.unwrap();
        n = analyzed().await;
        if n > 0 || autovacuum {
            break;
        }
        // The exited backends' statistics may take a moment to show; housekeeping looks
        // again after its 10 s interval.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if autovacuum {
        eprintln!("autovacuum is on: housekeeping leaves the statistics to it (analyzed: {n})");
    } else {
        assert!(
            n > 0,
            "the agents partition holding 120 new rows was analyzed"
        );
    }
    store.pool().close().await;
}

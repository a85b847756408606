//! What only Citus mode promises (issue 18): where each table lives, row-level security that
//! holds on the worker nodes, the app's connections as a login role that owns nothing, and a
//! TLS failure against Citus's generated certificate that names its cause and fix. Skipped,
//! loudly, without Citus on the machine (see zt_testkit::citus).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::Utc;
use sqlx::{Connection, Row};
use uuid::Uuid;
use zt_inventory::{App, Software};
use zt_store::model::*;
use zt_store::{PgOptions, PgStore, Storage};

mod common;
use common::{agent_with, company_with, fresh_citus, incoming, npm, process};

fn random_hash() -> TokenHash {
    let mut h = [0u8; 32];
    h[..16].copy_from_slice(Uuid::new_v4().as_bytes());
    TokenHash(h)
}

fn matcher(s: &Software) -> Vec<StoredMatch> {
    if s.name.starts_with("vuln") {
        vec![StoredMatch {
            vulnerability: VulnInfo {
                id: "CVE-2024-0001".into(),
                aliases: vec![],
                summary: "test".into(),
                severity: zt_advisory::Severity::High,
                cvss: None,
                kev: false,
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
async fn tables_are_placed_by_company_and_reference_and_stay_colocated() {
    let Some((db, store)) = fresh_citus("citus_backend::placement").await else {
        return;
    };
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let rows = sqlx::query(
        "SELECT table_name::text, citus_table_type, distribution_column, colocation_id \
         FROM citus_tables",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let placed: BTreeMap<String, (String, String, i32)> = rows
        .iter()
        .map(|r| {
            (
                r.get::<String, _>(0),
                (r.get(1), r.get(2), r.get::<i32, _>(3)),
            )
        })
        .collect();
    // The tenant tables of issue 18 and those the dashboard, analyses and notification rules
    // added: distributed by company_id, all in one co-location group.
    let tenant = [
        "companies",
        "agents",
        "reports",
        "apps",
        "findings",
        "company_software",
        "company_daily",
        "analyses",
        "analysis_agents",
        "analysis_tags",
        "agent_tags",
        "sla_policies",
        "notification_rules",
    ];
    let mut groups = BTreeSet::new();
    for t in tenant {
        let (kind, column, group) = placed
            .get(t)
            .unwrap_or_else(|| panic!("{t} is not a Citus table: {placed:?}"));
        assert_eq!(kind, "distributed", "{t}");
        assert_eq!(column, "company_id", "{t}");
        groups.insert(*group);
    }
    assert_eq!(groups.len(), 1, "tenant tables not co-located: {placed:?}");
    for t in ["software", "software_vulns", "vulns", "vuln_aliases"] {
        assert_eq!(
            placed.get(t).map(|p| p.0.as_str()),
            Some("reference"),
            "{t}"
        );
    }
    // The queue (claimed across companies), the event log and the credentials stay plain
    // tables on the coordinator.
    for t in [
        "queue",
        "events",
        "credentials",
        "notification_outbox",
        "audit",
    ] {
        assert!(
            !placed.contains_key(t),
            "{t} should stay on the coordinator"
        );
    }
    // The shards are on the workers, each with the isolation policy, forced.
    for w in 0..2 {
        let mut worker = sqlx::PgConnection::connect(&db.worker_url(w))
            .await
            .unwrap();
        // Citus hides shards from client sessions unless told otherwise.
        sqlx::query("SET citus.override_table_visibility TO off")
            .execute(&mut worker)
            .await
            .unwrap();
        let (shards, forced, policies): (i64, i64, i64) = sqlx::query_as(
            "SELECT count(*), count(*) FILTER (WHERE c.relforcerowsecurity), \
                    count(*) FILTER (WHERE EXISTS (SELECT 1 FROM pg_policy p \
                                                   WHERE p.polrelid = c.oid)) \
             FROM pg_class c WHERE c.relname ~ '^findings_[0-9]+$' AND c.relkind = 'p'",
        )
        .fetch_one(&mut worker)
        .await
        .unwrap();
        assert!(shards > 0, "worker {w} holds no findings shard");
        assert_eq!(
            forced, shards,
            "worker {w}: a findings shard without FORCE RLS"
        );
        assert_eq!(
            policies, shards,
            "worker {w}: a findings shard without its policy"
        );
        worker.close().await.unwrap();
    }
    conn.close().await.unwrap();
    store.pool().close().await;
}

#[tokio::test]
async fn row_level_security_holds_on_the_workers() {
    let Some((db, store)) = fresh_citus("citus_backend::rls").await else {
        return;
    };
    let a = company_with(&store, "A", random_hash()).await;
    let b = company_with(&store, "B", random_hash()).await;
    let a1 = agent_with(&store, a, "a-1", random_hash()).await;
    let b1 = agent_with(&store, b, "b-1", random_hash()).await;
    let b2 = agent_with(&store, b, "b-2", random_hash()).await;
    let apps = [npm("vulnerable-lib", "1.0"), npm("left-pad", "1.0")];
    for (c, ag) in [(a, a1), (b, b1), (b, b2)] {
        assert!(matches!(
            report(&store, c, ag, &apps).await,
            ReportOutcome::Applied { added: 2, .. }
        ));
    }

    // The pool runs as a login role that is neither superuser nor owner; Citus opens the
    // workers' connections as it.
    let row = sqlx::query(
        "SELECT current_user::text, r.rolsuper, r.rolbypassrls, r.rolcanlogin, \
         (SELECT tableowner::text FROM pg_tables WHERE tablename = 'findings') \
         FROM pg_roles r WHERE r.rolname = current_user",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    let (user, superuser, bypass, login, owner): (String, bool, bool, bool, String) =
        (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
    assert_eq!(user, "zerotrace_app");
    assert!(!superuser && !bypass && login);
    assert_ne!(owner, user);

    // No WHERE clause: Citus sends the query to every shard on both workers; the policy there
    // lets A's rows through only.
    let mut tx = store.begin_for_company(a).await.unwrap();
    for table in ["agents", "reports", "apps", "findings", "company_software"] {
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
    let changed = sqlx::query("UPDATE findings SET resolution = 'bug'")
        .execute(&mut *tx)
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(changed, 1);
    // Writing B's rows (routed to B's shard, on whichever worker) is refused there.
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

    // A transaction that moves from A to B (a worker batch spanning companies) sees B only
    // after the switch, on the workers too.
    let mut tx = store.begin_for_company(a).await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM agents")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(n, 1);
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SET LOCAL zerotrace.company_id = '{}'",
        b.as_uuid()
    )))
    .execute(&mut *tx)
    .await
    .unwrap();
    let seen: Vec<Uuid> = sqlx::query_scalar("SELECT DISTINCT company_id FROM agents")
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    assert_eq!(seen, [b.as_uuid()]);
    drop(tx);

    // No company: nothing.
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM findings")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(n, 0);

    // B untouched; the API answers per company.
    assert_eq!(store.summary(a).await.unwrap().findings.high, 1);
    assert_eq!(store.summary(b).await.unwrap().findings.high, 2);
    assert!(store.get_agent(a, b1).await.unwrap().is_none());
    let mut tx = store.begin_for_company(b).await.unwrap();
    let rows: Vec<Option<String>> = sqlx::query_scalar("SELECT resolution FROM findings")
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    assert_eq!(rows, [None, None]);
    drop(tx);
    store.pool().close().await;
    drop(db);
}

/// A certificate PostgreSQL accepts and rustls can use: X.509 v3, self-signed.
fn v3_certificate() -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

#[tokio::test]
async fn tls_against_citus_names_the_certificate_then_works_with_a_v3_one() {
    let Some(db) = zt_testkit::citus::CitusDatabase::try_create("citus_backend::tls") else {
        return;
    };
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let require = db.url.replace("sslmode=disable", "sslmode=require");
    let options = PgOptions {
        partitions: 1,
        ..PgOptions::default()
    };
    let Some(data) = db.cluster.coordinator_data_dir() else {
        eprintln!("ZT_TEST_CITUS_URL cluster: its certificate is left alone; TLS not checked");
        return;
    };
    // Citus turned TLS on with a certificate of its own making, X.509 version 1.
    let err = PgStore::connect(&require, &options).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("version 1"), "{text}");
    assert!(text.contains("sslmode=disable"), "{text}");
    assert!(text.contains("ssl_cert_file"), "{text}");

    // The fix the message gives: a version 3 certificate in its place, configuration reloaded.
    let (cert, key) = v3_certificate();
    let owner = std::fs::metadata(&data).unwrap();
    for (file, pem) in [("server.crt", cert), ("server.key", key)] {
        let path = data.join(file);
        std::fs::write(&path, pem).unwrap();
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        std::os::unix::fs::chown(&path, Some(owner.uid()), Some(owner.gid())).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let mut admin = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::query("SELECT pg_reload_conf()")
        .execute(&mut admin)
        .await
        .unwrap();
    admin.close().await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let store = PgStore::connect(&require, &options).await.unwrap();
    let c = company_with(&store, "over TLS", random_hash()).await;
    assert!(store.get_company(c).await.unwrap().is_some());
    // The store's sessions, as the server lists them: every one encrypted.
    let mut admin = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let (sessions, encrypted): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE s.ssl) FROM pg_stat_activity a \
         JOIN pg_stat_ssl s USING (pid) \
         WHERE a.application_name = 'zerotrace' AND a.datname = current_database()",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert!(sessions > 0);
    assert_eq!(encrypted, sessions);
    admin.close().await.unwrap();
    store.pool().close().await;
}

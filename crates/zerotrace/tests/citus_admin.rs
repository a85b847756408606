//! Converting a running PostgreSQL deployment to Citus with the real binary (issue 18): a
//! server fills a database that has no Citus yet (two companies, real PyPA advisories), the
//! operator adds the citus extension and runs `zerotrace admin citus distribute`, which prints
//! its plan first and then moves the tables; a server on the converted database shows every
//! company exactly what it showed before, keeps companies apart, and goes on processing
//! reports. Skipped, loudly, without Citus on the machine (see zt_testkit::citus).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use sqlx::Connection;
use zt_inventory::{App, AppSource, InventoryReport};
use zt_testkit::citus::CitusDatabase;
use zt_testkit::{shared_path, ServerProcess};

mod common;
use common::{bin, create_company, debian_report, enroll, get_json, post_inventory};

const ADMIN: &str = "zto_citus-admin-operator-token-0123456789abcdef";
const APPS_PER_HOST: u64 = 20;

fn zerotrace(url: &str, dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(bin())
        .args(["--data-dir", dir.to_str().unwrap(), "--database-url", url])
        .args(["--partitions", "2"])
        .args(args)
        .output()
        .unwrap()
}

fn start(url: &str, dir: &Path, name: &str) -> ServerProcess {
    ServerProcess::start(
        bin(),
        &[
            "--data-dir",
            dir.to_str().unwrap(),
            "--database-url",
            url,
            "--partitions",
            "2",
            "server",
            "--listen",
            "127.0.0.1:0",
            "--rate-agent",
            "0",
            "--rate-company",
            "0",
        ],
        &[("ZEROTRACE_ADMIN_TOKEN", ADMIN)],
        dir,
        name,
    )
    .expect("server starts")
}

/// A host's inventory: PyPI packages, three of them with advisories in the PyPA data.
fn report(hostname: &str, round: usize) -> InventoryReport {
    let mut apps: Vec<App> = (0..APPS_PER_HOST as usize - 3)
        .map(|n| {
            App::new(
                format!("pkg-{n}"),
                format!("1.{round}.{n}"),
                AppSource::Pypi,
            )
        })
        .collect();
    apps.push(App::new("django", format!("1.11.{round}"), AppSource::Pypi));
    apps.push(App::new("requests", "2.19.0", AppSource::Pypi));
    apps.push(App::new("pyyaml", "5.3", AppSource::Pypi));
    debian_report(hostname, "", apps)
}

/// Waits until the company's summary counts `apps` app records (every report processed).
async fn settled(http: &reqwest::Client, api: &str, cid: &str, apps: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let s = get_json(
            http,
            &format!("{api}/api/v1/companies/{cid}/summary"),
            ADMIN,
        )
        .await;
        if s["apps"].as_u64() == Some(apps) {
            return s;
        }
        assert!(Instant::now() < deadline, "reports not processed: {s}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn findings(http: &reqwest::Client, api: &str, cid: &str) -> Vec<(String, String)> {
    let page = get_json(
        http,
        &format!("{api}/api/v1/companies/{cid}/findings?limit=500"),
        ADMIN,
    )
    .await;
    let mut out: Vec<(String, String)> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["hostname"].as_str().unwrap().to_string(),
                f["vulnerability"]["id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_citus_distribute_converts_a_populated_deployment() {
    let Some(db) = CitusDatabase::try_create_plain("citus_admin") else {
        return;
    };
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let pypa = shared_path("osv/pypa/vulns");
    let out = zerotrace(
        &db.url,
        dir.path(),
        &["feeds", "import", pypa.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Plain PostgreSQL: two companies report.
    let mut server = start(&db.url, dir.path(), "before");
    let api = server.url.clone();
    let a = create_company(&http, &api, ADMIN, "Acme").await;
    let b = create_company(&http, &api, ADMIN, "Globex").await;
    let (a_id, b_id) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());
    let mut tokens = Vec::new();
    for (company, hosts) in [(&a, 2), (&b, 3)] {
        for h in 0..hosts {
            let name = format!("{}-{h}", company["name"].as_str().unwrap());
            let token = enroll(
                &http,
                &api,
                company["enroll_secret"].as_str().unwrap(),
                &name,
            )
            .await;
            assert_eq!(
                post_inventory(&http, &api, &token, &report(&name, 0)).await,
                StatusCode::ACCEPTED
            );
            tokens.push((company["id"].as_str().unwrap().to_string(), name, token));
        }
    }
    let before_a = settled(&http, &api, a_id, 2 * APPS_PER_HOST).await;
    let before_b = settled(&http, &api, b_id, 3 * APPS_PER_HOST).await;
    let open: u64 = ["critical", "high", "medium", "low", "unknown"]
        .iter()
        .map(|k| before_a["findings"][k].as_u64().unwrap_or(0))
        .sum();
    assert!(open > 0, "{before_a}");
    let findings_a = findings(&http, &api, a_id).await;
    let findings_b = findings(&http, &api, b_id).await;
    assert!(!findings_a.is_empty());
    let agents_b = get_json(
        &http,
        &format!("{api}/api/v1/companies/{b_id}/agents"),
        ADMIN,
    )
    .await;
    let b_agent = agents_b["items"][0]["agent_id"]
        .as_str()
        .unwrap()
        .to_string();
    server.terminate(Duration::from_secs(20));

    // The operator installs Citus in the database (workers added), then looks at the plan.
    db.add_citus().unwrap();
    let out = zerotrace(&db.url, dir.path(), &["admin", "citus", "plan"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan = String::from_utf8_lossy(&out.stdout).to_string();
    let line = |table: &str| -> String {
        plan.lines()
            .find(|l| l.split_whitespace().next() == Some(table))
            .unwrap_or_else(|| panic!("no line for {table} in:\n{plan}"))
            .to_string()
    };
    assert!(
        line("findings").contains("distributed by company_id"),
        "{plan}"
    );
    assert!(
        line("findings").contains("create_distributed_table"),
        "{plan}"
    );
    assert!(line("software").contains("reference table"), "{plan}");
    assert!(line("queue").contains("stays on the coordinator"), "{plan}");

    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let placed: i64 = sqlx::query_scalar("SELECT count(*) FROM citus_tables")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(placed, 0, "the plan moved something");

    // The conversion: the plan first, then each table moved with its row count checked.
    let out = zerotrace(&db.url, dir.path(), &["admin", "citus", "distribute"]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan_at = stdout
        .find("create_distributed_table")
        .expect("plan printed");
    let moved_at = stdout.find("moved findings").expect("findings moved");
    assert!(plan_at < moved_at, "{stdout}");
    let (kind, column): (String, String) = sqlx::query_as(
        "SELECT citus_table_type, distribution_column FROM citus_tables \
         WHERE table_name = 'findings'::regclass",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        (kind.as_str(), column.as_str()),
        ("distributed", "company_id")
    );
    // Run again: nothing left to move.
    let out = zerotrace(&db.url, dir.path(), &["admin", "citus", "distribute"]);
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("nothing to do"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    conn.close().await.unwrap();

    // A server on the distributed schema: every company sees what it saw.
    let server = start(&db.url, dir.path(), "after");
    let api = server.url.clone();
    let after_a = get_json(
        &http,
        &format!("{api}/api/v1/companies/{a_id}/summary"),
        ADMIN,
    )
    .await;
    let after_b = get_json(
        &http,
        &format!("{api}/api/v1/companies/{b_id}/summary"),
        ADMIN,
    )
    .await;
    assert_eq!(after_a, before_a);
    assert_eq!(after_b, before_b);
    assert_eq!(findings(&http, &api, a_id).await, findings_a);
    assert_eq!(findings(&http, &api, b_id).await, findings_b);
    // B's host asked for under A: not found, as a missing one.
    let r = http
        .get(format!(
            "{api}/api/v1/companies/{a_id}/agents/{b_agent}/apps"
        ))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // Reports go on being processed: A's hosts report a new round.
    let posted_at = chrono::Utc::now() - chrono::Duration::seconds(1);
    for (_, name, token) in tokens.iter().filter(|t| t.0 == a_id) {
        assert_eq!(
            post_inventory(&http, &api, token, &report(name, 1)).await,
            StatusCode::ACCEPTED
        );
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let hosts = get_json(
            &http,
            &format!("{api}/api/v1/companies/{a_id}/agents"),
            ADMIN,
        )
        .await;
        let items = hosts["items"].as_array().unwrap();
        let done = items.len() == 2
            && items.iter().all(|h| {
                h["last_report_at"].as_str().is_some_and(|t| {
                    chrono::DateTime::parse_from_rfc3339(t).is_ok_and(|t| t > posted_at)
                }) && h["apps"].as_u64() == Some(APPS_PER_HOST)
            });
        if done {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "new reports not processed: {hosts}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(
        get_json(
            &http,
            &format!("{api}/api/v1/companies/{b_id}/summary"),
            ADMIN
        )
        .await,
        before_b
    );
    assert_eq!(findings(&http, &api, b_id).await, findings_b);
}

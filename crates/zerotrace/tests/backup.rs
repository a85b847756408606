//! Backups of the embedded database with the real binary: `zerotrace admin backup` while a
//! server ingests reports, `zerotrace admin restore` into a new data directory, a server on
//! the restored copy, and what the API shows there compared with the original at the backup
//! point: the companies, a company that did not change since (agents, apps, findings, summary
//! identical), and a company whose agents kept reporting during the backup (every report
//! accepted before the backup began is there, none accepted after it ended, and each host's
//! inventory is exactly one of the reports it sent: a snapshot, never half a report).
//! Restores refuse damaged files, files that are no database, and a database in use.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use zt_inventory::{App, AppSource, InventoryReport};
use zt_testkit::{shared_path, ServerProcess};

mod common;
use common::{bin, create_company, debian_report, enroll, get_json, post_inventory};

const ADMIN: &str = "zto_backup-operator-token-0123456789abcdef";

fn zerotrace(data: &Path, args: &[&str]) -> std::process::Output {
    Command::new(bin())
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .output()
        .unwrap()
}

fn start(data: &Path, logs: &Path, name: &str) -> ServerProcess {
    ServerProcess::start(
        bin(),
        &[
            "--data-dir",
            data.to_str().unwrap(),
            "server",
            "--listen",
            "127.0.0.1:0",
            "--rate-agent",
            "0",
            "--rate-company",
            "0",
            "--workers",
            "2",
        ],
        &[("ZEROTRACE_ADMIN_TOKEN", ADMIN)],
        logs,
        name,
    )
    .expect("server starts")
}

/// A host's inventory in round `round`: PyPI packages, some with known advisories.
fn report(hostname: &str, round: usize) -> InventoryReport {
    let mut apps: Vec<App> = (0..40)
        .map(|n| {
            App::new(
                format!("pkg-{n}"),
                format!("1.{}.{}", n % 4, round),
                AppSource::Pypi,
            )
        })
        .collect();
    apps.push(App::new(
        "django",
        format!("1.11.{}", round % 20),
        AppSource::Pypi,
    ));
    apps.push(App::new("requests", "2.19.0", AppSource::Pypi));
    apps.push(App::new("pyyaml", "5.3", AppSource::Pypi));
    debian_report(hostname, "", apps)
}

fn app_set(apps: &[App]) -> BTreeSet<(String, String)> {
    apps.iter()
        .map(|a| (a.name.clone(), a.version.clone()))
        .collect()
}

/// Every item of a paged list.
async fn all_items(http: &reqwest::Client, url: &str, token: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut page_url = format!("{url}?limit=1000");
        if let Some(c) = &cursor {
            page_url.push_str(&format!("&cursor={c}"));
        }
        let page = get_json(http, &page_url, token).await;
        items.extend(page["items"].as_array().expect("a list").iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return items,
        }
    }
}

/// Waits until every report in `ids` (sent with `token`) is processed at `url`.
async fn wait_done(http: &reqwest::Client, url: &str, token: &str, ids: &[uuid::Uuid]) {
    let deadline = Instant::now() + Duration::from_secs(120);
    for id in ids {
        loop {
            let v = get_json(http, &format!("{url}/api/v1/reports/{id}"), token).await;
            if v["status"] == "done" {
                break;
            }
            assert!(Instant::now() < deadline, "report {id} not processed: {v}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// What the API shows of a company: its summary, agents (with their apps) and findings.
async fn company_view(http: &reqwest::Client, url: &str, cid: &str) -> Value {
    let base = format!("{url}/api/v1/companies/{cid}");
    let summary = get_json(http, &format!("{base}/summary"), ADMIN).await;
    let mut agents = all_items(http, &format!("{base}/agents"), ADMIN).await;
    agents.sort_by_key(|a| a["agent_id"].as_str().unwrap().to_string());
    let mut apps = serde_json::Map::new();
    for a in &agents {
        let aid = a["agent_id"].as_str().unwrap();
        let list = all_items(http, &format!("{base}/agents/{aid}/apps"), ADMIN).await;
        apps.insert(aid.to_string(), Value::Array(list));
    }
    let mut findings = all_items(http, &format!("{base}/findings"), ADMIN).await;
    findings.sort_by_key(|f| f.to_string());
    serde_json::json!({"summary": summary, "agents": agents, "apps": apps, "findings": findings})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backup_under_load_restores_to_what_the_api_showed() {
    let dir = tempfile::tempdir().unwrap();
    let original = dir.path().join("original");
    let pypa = shared_path("osv/pypa/vulns");
    let out = zerotrace(&original, &["feeds", "import", pypa.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let server = start(&original, dir.path(), "original");
    let url = server.url.clone();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();

    // A company whose hosts reported before the backup, and then not again.
    let stable = create_company(&http, &url, ADMIN, "Stable").await;
    let stable_id = stable["id"].as_str().unwrap().to_string();
    for i in 0..4 {
        let host = format!("stable-{i}");
        let token = enroll(
            &http,
            &url,
            stable["enroll_secret"].as_str().unwrap(),
            &host,
        )
        .await;
        let r = report(&host, i);
        assert_eq!(
            post_inventory(&http, &url, &token, &r).await,
            StatusCode::ACCEPTED
        );
        wait_done(&http, &url, &token, &[r.report_id]).await;
    }
    let stable_before = company_view(&http, &url, &stable_id).await;
    assert!(
        stable_before["findings"].as_array().unwrap().len() > 4,
        "the stable company has findings to compare: {}",
        stable_before["summary"]
    );

    // A company whose hosts keep reporting while the backup runs.
    let busy = create_company(&http, &url, ADMIN, "Busy").await;
    let busy_id = busy["id"].as_str().unwrap().to_string();
    let busy_secret = busy["enroll_secret"].as_str().unwrap().to_string();
    let stop = Arc::new(AtomicBool::new(false));
    // Per host: its token, and its reports in order with when each was sent and accepted.
    type Sent = Vec<(InventoryReport, Instant, Instant)>;
    let sent: Arc<Mutex<HashMap<String, (String, Sent)>>> = Arc::default();
    let mut load = Vec::new();
    for i in 0..4 {
        let (http, url, secret) = (http.clone(), url.clone(), busy_secret.clone());
        let (stop, sent) = (stop.clone(), sent.clone());
        load.push(tokio::spawn(async move {
            let host = format!("busy-{i}");
            let token = enroll(&http, &url, &secret, &host).await;
            sent.lock()
                .unwrap()
                .insert(host.clone(), (token.clone(), Vec::new()));
            let mut round = 0;
            while !stop.load(Ordering::Relaxed) {
                let r = report(&host, round);
                let sent_at = Instant::now();
                let status = post_inventory(&http, &url, &token, &r).await;
                assert_eq!(status, StatusCode::ACCEPTED);
                let accepted_at = Instant::now();
                if let Some((_, reports)) = sent.lock().unwrap().get_mut(&host) {
                    reports.push((r, sent_at, accepted_at));
                }
                round += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    let backup_file = dir.path().join("zerotrace-backup.db");
    let began = Instant::now();
    let out = {
        let (original, backup_file) = (original.clone(), backup_file.clone());
        tokio::task::spawn_blocking(move || {
            zerotrace(
                &original,
                &["admin", "backup", backup_file.to_str().unwrap()],
            )
        })
        .await
        .unwrap()
    };
    let ended = Instant::now();
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(printed.contains("integrity_check: ok"), "{printed}");
    assert!(printed.contains("companies: 2"), "{printed}");
    // The load goes on a little after the backup, then stops.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    let sent = sent.lock().unwrap().clone();
    let accepted_before: usize = sent
        .values()
        .map(|(_, s)| {
            s.iter()
                .filter(|(_, _, accepted)| *accepted < began)
                .count()
        })
        .sum();
    let accepted_after: usize = sent
        .values()
        .map(|(_, s)| s.iter().filter(|(_, sent, _)| *sent > ended).count())
        .sum();
    assert!(
        accepted_before >= 8 && accepted_after >= 4,
        "the backup ran under load: {accepted_before} reports before it, {accepted_after} after"
    );

    // Restore into a new data directory and serve it.
    let restored = dir.path().join("restored");
    let out = zerotrace(
        &restored,
        &["admin", "restore", backup_file.to_str().unwrap(), "--json"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["integrity"], "ok", "{answer}");
    assert_eq!(answer["companies"], 2, "{answer}");
    let copy = start(&restored, dir.path(), "restored");
    let copy_url = copy.url.clone();

    // The companies.
    let names = |v: Value| -> BTreeSet<(String, String)> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["id"].to_string(), c["name"].to_string()))
            .collect()
    };
    assert_eq!(
        names(get_json(&http, &format!("{copy_url}/api/v1/companies"), ADMIN).await),
        names(get_json(&http, &format!("{url}/api/v1/companies"), ADMIN).await),
    );

    // The company that did not change: identical, finding by finding.
    let stable_after = company_view(&http, &copy_url, &stable_id).await;
    assert_eq!(stable_after, stable_before);

    // The busy company: a snapshot between the backup's start and end.
    let mut known_on_copy = 0;
    for (host, (token, reports)) in &sent {
        let mut present = Vec::new();
        for (r, sent_at, accepted_at) in reports {
            let status = http
                .get(format!("{copy_url}/api/v1/reports/{}", r.report_id))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status();
            if *accepted_at < began {
                assert_eq!(status, StatusCode::OK, "{host}: accepted before the backup");
            } else if *sent_at > ended {
                assert_eq!(
                    status,
                    StatusCode::NOT_FOUND,
                    "{host}: sent after the backup"
                );
            }
            if status == StatusCode::OK {
                present.push(r);
            }
        }
        // What was in the snapshot is a prefix of what the host sent.
        let ids: Vec<_> = reports.iter().map(|(r, _, _)| r.report_id).collect();
        let got: Vec<_> = present.iter().map(|r| r.report_id).collect();
        assert_eq!(got, ids[..got.len()], "{host}: not a prefix");
        known_on_copy += got.len();
        // Queued at the snapshot, processed now: the host's inventory is its last report
        // in the snapshot, whole.
        let ids: Vec<_> = present.iter().map(|r| r.report_id).collect();
        wait_done(&http, &copy_url, token, &ids).await;
        let last = present
            .last()
            .expect("each busy host reported before the backup");
        let agents = all_items(
            &http,
            &format!("{copy_url}/api/v1/companies/{busy_id}/agents"),
            ADMIN,
        )
        .await;
        let agent = agents
            .iter()
            .find(|a| a["hostname"] == host.as_str())
            .unwrap_or_else(|| panic!("{host} missing on the copy"));
        let aid = agent["agent_id"].as_str().unwrap();
        let apps = all_items(
            &http,
            &format!("{copy_url}/api/v1/companies/{busy_id}/agents/{aid}/apps"),
            ADMIN,
        )
        .await;
        let shown: BTreeSet<(String, String)> = apps
            .iter()
            .map(|a| {
                (
                    a["name"].as_str().unwrap().to_string(),
                    a["version"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(shown, app_set(&last.apps), "{host}");
    }
    assert!(known_on_copy >= accepted_before);

    // The restored server takes the agents' next reports with the tokens they hold.
    let (token, _) = &sent["busy-0"];
    let next = report("busy-0", 999);
    assert_eq!(
        post_inventory(&http, &copy_url, token, &next).await,
        StatusCode::ACCEPTED
    );
    wait_done(&http, &copy_url, token, &[next.report_id]).await;
}

#[test]
fn restore_refuses_damaged_files_and_a_database_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = zerotrace(&data, &["admin", "company", "create", "Acme"]);
    assert!(out.status.success());
    let good = dir.path().join("good.db");
    let out = zerotrace(&data, &["admin", "backup", good.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = |out: std::process::Output| {
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };

    // A backup never overwrites a file.
    let err = stderr(zerotrace(
        &data,
        &["admin", "backup", good.to_str().unwrap()],
    ));
    assert!(err.contains("good.db exists already"), "{err}");
    // Not a database; a truncated one.
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, "this is not SQLite\n").unwrap();
    let fresh = dir.path().join("fresh");
    let err = stderr(zerotrace(
        &fresh,
        &["admin", "restore", junk.to_str().unwrap()],
    ));
    assert!(err.contains("junk.db is not a ZeroTrace database"), "{err}");
    let truncated = dir.path().join("truncated.db");
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let err = stderr(zerotrace(
        &fresh,
        &["admin", "restore", truncated.to_str().unwrap()],
    ));
    assert!(err.contains("truncated.db"), "{err}");
    assert!(
        !fresh.join("zerotrace.db").exists(),
        "a refused restore leaves no database behind"
    );

    // A data directory with a database: only with --force, and never under a running server.
    let err = stderr(zerotrace(
        &data,
        &["admin", "restore", good.to_str().unwrap()],
    ));
    assert!(err.contains("--force"), "{err}");
    let server = ServerProcess::start(
        bin(),
        &[
            "--data-dir",
            data.to_str().unwrap(),
            "server",
            "--listen",
            "127.0.0.1:0",
        ],
        &[("ZEROTRACE_ADMIN_TOKEN", ADMIN)],
        dir.path(),
        "in-use",
    )
    .unwrap();
    let err = stderr(zerotrace(
        &data,
        &["admin", "restore", good.to_str().unwrap(), "--force"],
    ));
    assert!(err.contains("in use"), "{err}");
    drop(server);
    let out = zerotrace(
        &data,
        &["admin", "restore", good.to_str().unwrap(), "--force"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("kept as"));
    let kept: HashSet<String> = std::fs::read_dir(&data)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("zerotrace.db.replaced-"))
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");

    // PostgreSQL has its own tools.
    let out = Command::new(bin())
        .args(["--database-url", "postgres://zerotrace@127.0.0.1/none"])
        .args(["admin", "backup", "x.db"])
        .output()
        .unwrap();
    let err = stderr(out);
    assert!(err.contains("pg_dump"), "{err}");
}

/// The PostgreSQL path the README documents: `pg_dump --format=custom` while the server runs,
/// `pg_restore` into a new database, a server on it showing what the original showed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_pg_dump_and_pg_restore_bring_back_what_the_api_showed() {
    let dir = tempfile::tempdir().unwrap();
    let (original, copy) = (
        zt_testkit::TestDatabase::create(),
        zt_testkit::TestDatabase::create(),
    );
    let on = |db: &zt_testkit::TestDatabase, args: &[&str]| -> Vec<String> {
        let mut all = vec![
            "--data-dir".to_string(),
            dir.path().display().to_string(),
            "--database-url".into(),
            db.url.clone(),
            "--partitions".into(),
            "4".into(),
        ];
        all.extend(args.iter().map(|a| a.to_string()));
        all
    };
    let pypa = shared_path("osv/pypa/vulns");
    let out = Command::new(bin())
        .args(on(&original, &["feeds", "import", pypa.to_str().unwrap()]))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let serve = |db: &zt_testkit::TestDatabase, name: &str| {
        let args = on(
            db,
            &["server", "--listen", "127.0.0.1:0", "--rate-agent", "0"],
        );
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ServerProcess::start(
            bin(),
            &args,
            &[("ZEROTRACE_ADMIN_TOKEN", ADMIN)],
            dir.path(),
            name,
        )
        .expect("server starts")
    };
    let server = serve(&original, "pg-original");
    let http = reqwest::Client::new();
    let company = create_company(&http, &server.url, ADMIN, "Acme").await;
    let cid = company["id"].as_str().unwrap().to_string();
    let mut tokens = Vec::new();
    for i in 0..3 {
        let host = format!("pg-{i}");
        let token = enroll(
            &http,
            &server.url,
            company["enroll_secret"].as_str().unwrap(),
            &host,
        )
        .await;
        let r = report(&host, i);
        assert_eq!(
            post_inventory(&http, &server.url, &token, &r).await,
            StatusCode::ACCEPTED
        );
        wait_done(&http, &server.url, &token, &[r.report_id]).await;
        tokens.push(token);
    }
    let before = company_view(&http, &server.url, &cid).await;
    assert!(
        before["findings"].as_array().unwrap().len() > 3,
        "{}",
        before["summary"]
    );

    // The backup, taken while the server runs.
    let dump = dir.path().join("zerotrace.dump");
    let out = Command::new("pg_dump")
        .arg("--format=custom")
        .arg(format!("--file={}", dump.display()))
        .arg(format!("--dbname={}", original.url))
        .output()
        .expect("pg_dump (Debian's postgresql-client)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(server);

    let out = Command::new("pg_restore")
        .args(["--exit-on-error", "--single-transaction"])
        .arg(format!("--dbname={}", copy.url))
        .arg(&dump)
        .output()
        .expect("pg_restore");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let restored = serve(&copy, "pg-restored");
    assert_eq!(company_view(&http, &restored.url, &cid).await, before);
    // The agents go on with the tokens they hold.
    let next = report("pg-0", 99);
    assert_eq!(
        post_inventory(&http, &restored.url, &tokens[0], &next).await,
        StatusCode::ACCEPTED
    );
    wait_done(&http, &restored.url, &tokens[0], &[next.report_id]).await;
}

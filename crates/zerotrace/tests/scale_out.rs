//! Scale-out on PostgreSQL with the real binary: two `--role api` and two `--role worker`
//! processes share one database under concurrent agents. One worker is killed with SIGKILL in
//! the middle of a batch; its lease expires and the other worker finishes the batch. In the
//! end every accepted report was processed exactly once and the counts reconcile.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use zt_inventory::{App, AppSource, InventoryReport};
use zt_testkit::{shared_path, ServerProcess, TestDatabase};

mod common;
use common::{bin, create_company, debian_report, enroll, get_json, post_inventory};

const ADMIN: &str = "zto_scale-out-operator-token-0123456789abcdef";
const AGENTS: usize = 24;
const ROUNDS: usize = 4;

struct Cluster<'a> {
    db: &'a TestDatabase,
    dir: &'a Path,
}

impl Cluster<'_> {
    fn args<'b>(&'b self, rest: &[&'b str]) -> Vec<&'b str> {
        let mut args = vec![
            "--data-dir",
            self.dir.to_str().unwrap(),
            "--database-url",
            self.db.url.as_str(),
            "--partitions",
            "8",
        ];
        args.extend_from_slice(rest);
        args
    }

    fn start(&self, name: &str, extra: &[&str]) -> ServerProcess {
        let mut rest = vec![
            "server",
            "--listen",
            "127.0.0.1:0",
            "--knowledge-poll-secs",
            "0.5",
        ];
        rest.extend_from_slice(extra);
        ServerProcess::start(
            bin(),
            &self.args(&rest),
            &[("ZEROTRACE_ADMIN_TOKEN", ADMIN), ("ZEROTRACE_LOG", "info")],
            self.dir,
            name,
        )
        .expect("server starts")
    }
}

/// One simulated host's inventory in round `round`: PyPI packages (some with known advisories)
/// whose versions move on between rounds.
fn report(hostname: &str, agent: usize, round: usize) -> InventoryReport {
    let mut apps: Vec<App> = (0..120)
        .map(|n| {
            App::new(
                format!("pkg-{n}"),
                format!("1.{}.{}", (n + agent) % 5, round * (n % 3)),
                AppSource::Pypi,
            )
        })
        .collect();
    // Real packages with real advisories in the PyPA data.
    apps.push(App::new(
        "django",
        format!("1.11.{}", round),
        AppSource::Pypi,
    ));
    apps.push(App::new("requests", "2.19.0", AppSource::Pypi));
    apps.push(App::new("pyyaml", "5.3", AppSource::Pypi));
    debian_report(hostname, "", apps)
}

async fn metric(http: &reqwest::Client, url: &str, name: &str) -> u64 {
    let text = http
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_apis_and_two_workers_process_every_report_exactly_once() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let db = TestDatabase::create();
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster {
        db: &db,
        dir: dir.path(),
    };
    let pypa = shared_path("osv/pypa/vulns");
    let out = Command::new(bin())
        .args(cluster.args(&["feeds", "import", pypa.to_str().unwrap()]))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let apis = [
        cluster.start("api-1", &["--role", "api"]),
        cluster.start("api-2", &["--role", "api"]),
    ];
    // Worker B claims a batch and stalls in the middle of it (until it is killed).
    let mut worker_b = cluster.start(
        "worker-b",
        &[
            "--role",
            "worker",
            "--workers",
            "1",
            "--lease-secs",
            "3",
            "--hold-after-claim-ms",
            "600000",
        ],
    );
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let company = create_company(&http, &apis[0].url, ADMIN, "Acme").await;
    let company_id = company["id"].as_str().unwrap().to_string();
    let secret = company["enroll_secret"].as_str().unwrap().to_string();

    // The first report arrives while worker B is the only worker: B claims it and stalls.
    let urls: Vec<String> = apis.iter().map(|a| a.url.clone()).collect();
    let held_token = enroll(&http, &urls[0], &secret, "held").await;
    let held = report("held", 99, 0);
    assert_eq!(
        post_inventory(&http, &urls[1], &held_token, &held).await,
        StatusCode::ACCEPTED
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while !worker_b.stderr().contains("holding a claimed batch") {
        assert!(Instant::now() < deadline, "worker B never claimed a batch");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let worker_a = cluster.start("worker-a", &["--role", "worker", "--workers", "4"]);

    // Concurrent agents, each talking to both API processes in turn.
    let mut agents = Vec::new();
    for i in 0..AGENTS {
        let (http, urls, secret) = (http.clone(), urls.clone(), secret.clone());
        agents.push(tokio::spawn(async move {
            let hostname = format!("host-{i:02}");
            let token = enroll(&http, &urls[i % 2], &secret, &hostname).await;
            let mut accepted = Vec::new();
            let mut last = None;
            for round in 0..ROUNDS {
                let r = report(&hostname, i, round);
                let status = post_inventory(&http, &urls[(i + round) % 2], &token, &r).await;
                assert_eq!(status, StatusCode::ACCEPTED);
                // The same report again, through the other API: answered, stored once.
                if round == 1 {
                    let other = &urls[(i + round + 1) % 2];
                    let again = post_inventory(&http, other, &token, &r).await;
                    assert!(again.is_success(), "{again}");
                }
                accepted.push(r.report_id);
                last = Some(r);
            }
            (token, accepted, last.unwrap())
        }));
    }
    // While the agents report, worker B (stuck inside its batch) is killed without a chance
    // to clean up, and a replacement joins, so that two workers run again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    worker_b.kill();
    let worker_c = cluster.start("worker-c", &["--role", "worker", "--workers", "4"]);
    let mut fleet = Vec::new();
    for a in agents {
        fleet.push(a.await.unwrap());
    }

    // Every accepted report is processed.
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut statuses: HashMap<uuid::Uuid, Value> = HashMap::new();
    for (token, accepted, _) in &fleet {
        for id in accepted {
            loop {
                let v = get_json(&http, &format!("{}/api/v1/reports/{id}", urls[0]), token).await;
                if v["status"] == "done" || v["status"] == "failed" {
                    statuses.insert(*id, v);
                    break;
                }
                assert!(Instant::now() < deadline, "report {id} not processed: {v}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    assert_eq!(statuses.len(), AGENTS * ROUNDS);
    assert!(
        statuses.values().all(|s| s["status"] == "done"),
        "{:?}",
        statuses.values().find(|s| s["status"] != "done")
    );
    // The batch worker B held was taken over after its lease expired: a second attempt.
    let taken_over: Value = loop {
        let url = format!("{}/api/v1/reports/{}", urls[0], held.report_id);
        let v = get_json(&http, &url, &held_token).await;
        if v["status"] == "done" {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "the held report was never finished: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        (
            taken_over["outcome"].clone(),
            taken_over["attempts"].clone()
        ),
        (json!("applied"), json!(2)),
        "{taken_over}"
    );
    statuses.insert(held.report_id, taken_over);
    fleet.push((held_token.clone(), vec![held.report_id], held.clone()));

    // Exactly once: every report the store says was applied was applied by exactly one
    // finished batch of the surviving workers (a second application would count twice), and
    // no batch lost its lease to another worker.
    let applied = statuses
        .values()
        .filter(|s| s["outcome"] == "applied")
        .count() as u64;
    let stale = statuses
        .values()
        .filter(|s| s["outcome"] == "stale")
        .count() as u64;
    let total = AGENTS * ROUNDS + 1;
    assert_eq!(applied + stale, total as u64);
    let count = |outcome: &'static str| {
        let (http, a, c) = (http.clone(), worker_a.url.clone(), worker_c.url.clone());
        async move {
            let name = format!("reports_processed_total{{outcome=\"{outcome}\"}}");
            metric(&http, &a, &name).await + metric(&http, &c, &name).await
        }
    };
    assert_eq!(count("applied").await, applied);
    // Stale reports are settled either by a finishing worker or already when claimed.
    assert!(count("stale").await <= stale);
    assert_eq!(count("lease_lost").await, 0);

    // Counts reconcile: every agent holds its newest inventory, the summary adds them up.
    let summary_at = |url: &str| format!("{url}/api/v1/companies/{company_id}/summary");
    let summary = get_json(&http, &summary_at(&urls[1]), ADMIN).await;
    let expected_apps: usize = fleet
        .iter()
        .map(|(_, _, last)| {
            last.apps
                .iter()
                .map(|a| (a.name.clone(), a.version.clone()))
                .collect::<HashSet<_>>()
                .len()
        })
        .sum();
    assert_eq!(summary["agents"], AGENTS + 1, "{summary}");
    assert_eq!(summary["apps"], expected_apps, "{summary}");
    let open: u64 = ["critical", "high", "medium", "low", "unknown"]
        .iter()
        .map(|k| summary["findings"][k].as_u64().unwrap())
        .sum();
    assert!(open > 0, "no findings: {summary}");
    let mut listed = 0u64;
    let mut cursor = String::new();
    loop {
        let url = format!(
            "{}/api/v1/companies/{company_id}/findings?limit=500{cursor}",
            urls[0]
        );
        let page = get_json(&http, &url, ADMIN).await;
        listed += page["items"].as_array().unwrap().len() as u64;
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(listed, open);
    // Both APIs answer the same.
    let other = get_json(&http, &summary_at(&urls[0]), ADMIN).await;
    assert_eq!(other, summary);
}

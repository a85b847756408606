//! The scheduled feed sync inside `zerotrace server`, against the local replay server of
//! recorded responses built from ../shared/data (`zt_testkit::feed_replay`): the status per
//! source (`GET /api/v1/feeds`, `feed_last_success_timestamp_seconds`), a failing source that
//! leaves the others syncing and its gauge where it was, an interrupted first NVD download
//! resumed where it stopped, KEV and EPSS at most daily, and two server processes on
//! PostgreSQL of which only one syncs.

use std::time::{Duration, Instant};

use serde_json::Value;
use zt_testkit::feed_replay::{
    epss_gz, kev_json, nvd_records, osv_zip_from_rustsec, Replay, ReplayServer,
};
use zt_testkit::ServerProcess;

mod common;
use common::{bin, get_json, Env};

const ADMIN: &str = "zto_feeds-schedule-operator-token-0123456789";

fn start(env: &Env, replay: &ReplayServer, name: &str, extra: &[&str]) -> ServerProcess {
    let (nvd, osv, kev, epss) = (
        replay.nvd_url(),
        replay.osv_url(),
        replay.kev_url(),
        replay.epss_url(),
    );
    let mut args = env.store_args();
    args.extend([
        "server",
        "--listen",
        "127.0.0.1:0",
        "--nvd-url",
        &nvd,
        "--osv-url",
        &osv,
        "--kev-url",
        &kev,
        "--epss-url",
        &epss,
        "--ecosystem",
        "crates.io",
        // 50 requests per 30 s instead of 5.
        "--nvd-api-key",
        "replay-key",
        "--retries",
        "0",
        "--cache-ttl",
        "0",
    ]);
    args.extend_from_slice(extra);
    ServerProcess::start(
        bin(),
        &args,
        &[
            ("ZEROTRACE_ADMIN_TOKEN", ADMIN),
            ("ZEROTRACE_OFFLINE", "false"),
            ("ZEROTRACE_LOG", "info"),
        ],
        env.path(),
        name,
    )
    .expect("server starts")
}

async fn feeds(http: &reqwest::Client, url: &str) -> Vec<Value> {
    let v = get_json(http, &format!("{url}/api/v1/feeds"), ADMIN).await;
    v.as_array().cloned().unwrap_or_default()
}

fn source<'a>(feeds: &'a [Value], name: &str) -> Option<&'a Value> {
    feeds.iter().find(|f| f["source"] == name)
}

/// Polls the feeds until `check` holds (60 s at most).
async fn wait_for(
    http: &reqwest::Client,
    url: &str,
    what: &str,
    check: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let f = feeds(http, url).await;
        if check(&f) {
            return f;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {f:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The value of `feed_last_success_timestamp_seconds{source="…"}` in /metrics, if any.
async fn success_gauge(http: &reqwest::Client, url: &str, source: &str) -> (bool, Option<f64>) {
    let text = http
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let help = text
        .lines()
        .any(|l| l.starts_with("# HELP feed_last_success_timestamp_seconds "));
    let prefix = format!("feed_last_success_timestamp_seconds{{source=\"{source}\"}} ");
    let value = text
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.trim().parse().unwrap());
    (help, value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_sync_status_failing_source_and_resumed_nvd() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let (zip, zipped) = osv_zip_from_rustsec(30, false);
    let replay = ReplayServer::start(Replay {
        nvd: nvd_records(),
        osv_zip: zip,
        kev: kev_json(),
        epss_gz: epss_gz(200),
        ..Default::default()
    })
    .await;
    // The first NVD download breaks at its second page (startIndex 20).
    *replay.replay.nvd_fail_from.lock().unwrap() = Some(20);
    let env = Env::sqlite();
    let server = start(
        &env,
        &replay,
        "server",
        &[
            "--feeds-sync-interval",
            "2s",
            "--nvd-results-per-page",
            "20",
            "--nvd-pages-per-import",
            "1",
        ],
    );
    let http = reqwest::Client::new();
    let url = server.url.clone();

    // Round 1: OSV, KEV and EPSS succeed; NVD fails after its first page.
    let first = wait_for(&http, &url, "the first round", |f| {
        ["osv:crates.io", "kev", "epss"]
            .iter()
            .all(|s| source(f, s).is_some_and(|x| !x["last_success_at"].is_null()))
            && source(f, "nvd").is_some_and(|x| !x["error"].is_null())
    })
    .await;
    let nvd = source(&first, "nvd").unwrap();
    assert!(nvd["last_success_at"].is_null(), "{nvd}");
    assert!(nvd["error"].as_str().unwrap().contains("503"), "{nvd}");
    let osv = source(&first, "osv:crates.io").unwrap().clone();
    assert_eq!(osv["records"], zipped as u64);
    assert!(osv["error"].is_null());
    assert_eq!(source(&first, "kev").unwrap()["records"], 1404);
    assert_eq!(source(&first, "epss").unwrap()["records"], 200);
    let (help, osv_gauge) = success_gauge(&http, &url, "osv:crates.io").await;
    assert!(help, "the gauge has its # HELP line");
    let osv_success =
        chrono::DateTime::parse_from_rfc3339(osv["last_success_at"].as_str().unwrap()).unwrap();
    let osv_gauge = osv_gauge.expect("a gauge for osv:crates.io");
    assert!((osv_gauge - osv_success.timestamp_millis() as f64 / 1000.0).abs() < 0.01);
    assert_eq!(success_gauge(&http, &url, "nvd").await.1, None);

    // NVD comes back, OSV goes down: the next rounds finish NVD where it stopped and record
    // OSV's error, and OSV's last success (and its gauge) stay where they were.
    replay.replay.set_down("osv", true);
    *replay.replay.nvd_fail_from.lock().unwrap() = None;
    let later = wait_for(&http, &url, "NVD to finish and OSV to fail", |f| {
        source(f, "nvd").is_some_and(|x| !x["last_success_at"].is_null())
            && source(f, "osv:crates.io").is_some_and(|x| !x["error"].is_null())
    })
    .await;
    let nvd = source(&later, "nvd").unwrap();
    assert_eq!(nvd["records"], 51, "{nvd}");
    assert!(nvd["error"].is_null(), "{nvd}");
    let starts: Vec<String> = replay
        .replay
        .seen("/nvd")
        .iter()
        .filter(|s| !s.query.contains_key("lastModStartDate"))
        .map(|s| s.query["startIndex"].clone())
        .collect();
    // 0 once; 20 refused once, then 20 and 40 on the resumed round.
    assert_eq!(starts, ["0", "20", "20", "40"]);
    let osv_now = source(&later, "osv:crates.io").unwrap();
    assert!(
        osv_now["error"].as_str().unwrap().contains("503"),
        "{osv_now}"
    );
    assert_eq!(osv_now["last_success_at"], osv["last_success_at"]);
    assert_eq!(
        success_gauge(&http, &url, "osv:crates.io").await.1,
        Some(osv_gauge)
    );
    assert!(success_gauge(&http, &url, "nvd").await.1.is_some());

    // A few more rounds: NVD goes incremental; KEV and EPSS were fetched once (daily).
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(replay
        .replay
        .seen("/nvd")
        .iter()
        .any(|s| s.query.contains_key("lastModStartDate")));
    assert_eq!(replay.replay.seen("/kev").len(), 1);
    assert_eq!(replay.replay.seen("/epss").len(), 1);

    // The knowledge is there: what `feeds status` shows from the same store.
    let out = std::process::Command::new(bin())
        .args(env.store_args())
        .args(["feeds", "status", "--format", "json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["kev"], 1404);
    let by_source: Vec<(String, u64)> =
        serde_json::from_value(status["advisories_by_source"].clone()).unwrap();
    assert!(
        by_source.contains(&("nvd".to_string(), 51)),
        "{by_source:?}"
    );
    assert!(
        by_source.contains(&("osv".to_string(), zipped as u64)),
        "{by_source:?}"
    );
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_postgresql_one_syncs() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let replay = ReplayServer::start(Replay {
        nvd: nvd_records(),
        kev: kev_json(),
        ..Default::default()
    })
    .await;
    // Six pages of 10, 700 ms each: the first server's sync runs for about four seconds.
    replay
        .replay
        .nvd_delay_ms
        .store(700, std::sync::atomic::Ordering::Relaxed);
    let env = Env::postgres();
    let extra = [
        "--feeds-sync-interval",
        "1h",
        "--source",
        "nvd",
        "--source",
        "kev",
        "--nvd-results-per-page",
        "10",
    ];
    let a = start(&env, &replay, "a", &extra);
    let deadline = Instant::now() + Duration::from_secs(30);
    while replay.replay.seen("/nvd").is_empty() {
        assert!(Instant::now() < deadline, "the first server never synced");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The second server starts while the first one syncs.
    let b = start(&env, &replay, "b", &extra);
    let http = reqwest::Client::new();
    let done = wait_for(&http, &b.url, "the sync to finish", |f| {
        ["nvd", "kev"]
            .iter()
            .all(|s| source(f, s).is_some_and(|x| !x["last_success_at"].is_null()))
    })
    .await;
    assert_eq!(source(&done, "nvd").unwrap()["records"], 51);
    // Every page was fetched once, by one process; KEV once.
    let starts: Vec<String> = replay
        .replay
        .seen("/nvd")
        .iter()
        .map(|s| s.query["startIndex"].clone())
        .collect();
    assert_eq!(starts, ["0", "10", "20", "30", "40", "50"]);
    assert_eq!(replay.replay.seen("/kev").len(), 1);
    let log_b = b.stderr();
    assert!(
        log_b.contains("another process is syncing the feeds"),
        "{log_b}"
    );
    assert!(!log_b.contains("scheduled feed sync started"), "{log_b}");
    assert!(a.stderr().contains("scheduled feed sync finished"));
}

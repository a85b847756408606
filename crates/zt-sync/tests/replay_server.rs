//! zt-sync against a local HTTP server (127.0.0.1:0) that replays responses built from the
//! real records in ../shared/data: NVD pages cut from real NVD records, an OSV zip built from
//! real RustSec files, the real KEV catalog, an EPSS gzip cut from the real snapshot.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use zt_store::SqliteStore;
use zt_sync::{sync, RetryPolicy, Source, SyncClient, SyncConfig};
use zt_testkit::shared_path;

#[derive(Debug, Clone)]
struct Seen {
    path: String,
    query: HashMap<String, String>,
    headers: HeaderMap,
    at: Instant,
}

#[derive(Default)]
struct Replay {
    /// Real NVD `cve` objects, in a stable order.
    nvd: Vec<Value>,
    osv_zip: Vec<u8>,
    kev: Vec<u8>,
    epss_gz: Vec<u8>,
    /// Status codes to answer before serving normally, per route ("nvd", "kev", ...).
    failures: Mutex<HashMap<&'static str, Vec<StatusCode>>>,
    seen: Mutex<Vec<Seen>>,
}

const OSV_ETAG: &str = "\"osv-v1\"";
const KEV_LAST_MODIFIED: &str = "Mon, 25 Aug 2025 17:04:19 GMT";

impl Replay {
    fn record(&self, path: &str, query: HashMap<String, String>, headers: &HeaderMap) {
        self.seen.lock().unwrap().push(Seen {
            path: path.to_string(),
            query,
            headers: headers.clone(),
            at: Instant::now(),
        });
    }

    fn injected_failure(&self, route: &'static str) -> Option<Response> {
        let mut f = self.failures.lock().unwrap();
        let list = f.get_mut(route)?;
        if list.is_empty() {
            return None;
        }
        let status = list.remove(0);
        Some((status, [("Retry-After", "0")], "try again").into_response())
    }

    fn seen(&self, prefix: &str) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.path.starts_with(prefix))
            .cloned()
            .collect()
    }
}

async fn nvd(
    State(r): State<Arc<Replay>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    r.record("/nvd", q.clone(), &headers);
    if let Some(resp) = r.injected_failure("nvd") {
        return resp;
    }
    let per_page: usize = q
        .get("resultsPerPage")
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let start: usize = q
        .get("startIndex")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // lastMod window: NVD's timestamps compare as strings once the offset is cut off.
    let window = match (q.get("lastModStartDate"), q.get("lastModEndDate")) {
        (Some(a), Some(b)) => Some((a[..19].to_string(), b[..19].to_string())),
        _ => None,
    };
    let matching: Vec<&Value> = r
        .nvd
        .iter()
        .filter(|c| match &window {
            None => true,
            Some((a, b)) => {
                let m = c["lastModified"].as_str().unwrap_or("");
                m >= a.as_str() && m <= b.as_str()
            }
        })
        .collect();
    let page: Vec<Value> = matching
        .iter()
        .skip(start)
        .take(per_page)
        .map(|c| json!({ "cve": c }))
        .collect();
    let body = json!({
        "resultsPerPage": page.len(),
        "startIndex": start,
        "totalResults": matching.len(),
        "format": "NVD_CVE",
        "version": "2.0",
        "timestamp": "2026-08-21T00:00:00.000",
        "vulnerabilities": page,
    });
    axum::Json(body).into_response()
}

async fn osv_zip(
    State(r): State<Arc<Replay>>,
    Path(eco): Path<String>,
    headers: HeaderMap,
) -> Response {
    r.record(&format!("/osv/{eco}"), HashMap::new(), &headers);
    if let Some(resp) = r.injected_failure("osv") {
        return resp;
    }
    if headers.get("if-none-match").and_then(|v| v.to_str().ok()) == Some(OSV_ETAG) {
        return StatusCode::NOT_MODIFIED.into_response();
    }
    (
        [("ETag", OSV_ETAG), ("Content-Type", "application/zip")],
        r.osv_zip.clone(),
    )
        .into_response()
}

async fn kev(State(r): State<Arc<Replay>>, headers: HeaderMap) -> Response {
    r.record("/kev", HashMap::new(), &headers);
    if let Some(resp) = r.injected_failure("kev") {
        return resp;
    }
    if headers
        .get("if-modified-since")
        .and_then(|v| v.to_str().ok())
        == Some(KEV_LAST_MODIFIED)
    {
        return StatusCode::NOT_MODIFIED.into_response();
    }
    (
        [
            ("Last-Modified", KEV_LAST_MODIFIED),
            ("Content-Type", "application/json"),
        ],
        r.kev.clone(),
    )
        .into_response()
}

async fn epss(State(r): State<Arc<Replay>>, headers: HeaderMap) -> Response {
    r.record("/epss", HashMap::new(), &headers);
    ([("ETag", "\"epss-1\"")], r.epss_gz.clone()).into_response()
}

fn nvd_records() -> Vec<Value> {
    let mut out = Vec::new();
    for f in [
        "nvd/vunnel-fixtures/full-page.json",
        "nvd/osv.dev-fixtures/conversion-nvd-testdata-test.json",
    ] {
        let v: Value = serde_json::from_slice(&std::fs::read(shared_path(f)).unwrap()).unwrap();
        for item in v["vulnerabilities"].as_array().unwrap() {
            out.push(item["cve"].clone());
        }
    }
    out
}

fn osv_zip_from_rustsec(count: usize, garbage_entry: bool) -> (Vec<u8>, usize) {
    let dir = shared_path("osv/rustsec/osv-json/crates");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut buf = std::io::Cursor::new(Vec::new());
    let mut zip = zip::ZipWriter::new(&mut buf);
    let opts = zip::write::SimpleFileOptions::default();
    for f in files.iter().take(count) {
        zip.start_file(f.file_name().unwrap().to_str().unwrap(), opts)
            .unwrap();
        zip.write_all(&std::fs::read(f).unwrap()).unwrap();
    }
    if garbage_entry {
        zip.start_file("RUSTSEC-9999-0001.json", opts).unwrap();
        zip.write_all(br#"{"id": "RUSTSEC-9999-0001", "modified": "2024-01-0"#)
            .unwrap();
    }
    zip.finish().unwrap();
    (buf.into_inner(), count.min(files.len()))
}

fn epss_gz(rows: usize) -> Vec<u8> {
    let gz = std::fs::read(shared_path("epss/epss-snapshot-2026-08-16.csv.gz")).unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut text).unwrap();
    let head: Vec<&str> = text.lines().take(rows + 2).collect();
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(head.join("\n").as_bytes()).unwrap();
    enc.finish().unwrap()
}

struct Harness {
    replay: Arc<Replay>,
    base: String,
    _server: tokio::task::JoinHandle<()>,
    dir: tempfile::TempDir,
    store: SqliteStore,
}

async fn harness(replay: Replay) -> Harness {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let replay = Arc::new(replay);
    let app = Router::new()
        .route("/nvd", get(nvd))
        .route("/osv/{eco}/all.zip", get(osv_zip))
        .route("/kev.json", get(kev))
        .route("/epss.csv.gz", get(epss))
        .with_state(replay.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("zerotrace.db"))
        .await
        .unwrap();
    Harness {
        replay,
        base: format!("http://{addr}"),
        _server: server,
        dir,
        store,
    }
}

impl Harness {
    fn config(&self) -> SyncConfig {
        SyncConfig {
            nvd_url: format!("{}/nvd", self.base),
            osv_url: format!("{}/osv", self.base),
            kev_url: format!("{}/kev.json", self.base),
            epss_url: format!("{}/epss.csv.gz", self.base),
            nvd_api_key: None,
            nvd_rate: Some((1000, Duration::from_secs(1))),
            nvd_results_per_page: 10,
            cache_dir: Some(self.dir.path().join("cache")),
            cache_ttl: Duration::ZERO,
            retry: RetryPolicy {
                max_retries: 3,
                initial_backoff: Duration::from_millis(10),
                max_backoff: Duration::from_millis(50),
            },
            timeout: Duration::from_secs(30),
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self._server.abort();
    }
}

#[tokio::test]
async fn nvd_sync_pages_retries_sends_the_api_key_and_then_goes_incremental() {
    let records = nvd_records();
    let total = records.len();
    assert_eq!(total, 38 + 13);
    let replay = Replay {
        nvd: records,
        ..Default::default()
    };
    replay.failures.lock().unwrap().insert(
        "nvd",
        vec![
            StatusCode::SERVICE_UNAVAILABLE,
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::FORBIDDEN,
        ],
    );
    let h = harness(replay).await;
    let mut config = h.config();
    config.nvd_api_key = Some("test-key-123".into());
    let client = SyncClient::new(config).unwrap();

    let reports = sync(&h.store, &client, &[Source::Nvd], &|_| {}).await;
    let r = &reports[0];
    assert!(!r.failed, "{}", r.status);
    assert_eq!(r.records_read as usize, total);
    assert_eq!(r.summary.advisories.new as usize, total);

    let seen = h.replay.seen("/nvd");
    // 3 refused attempts, then 6 pages of 10 (51 records).
    assert_eq!(seen.len(), 3 + 6);
    assert!(seen
        .iter()
        .all(|s| s.headers.get("apikey").map(|v| v.to_str().unwrap()) == Some("test-key-123")));
    let starts: Vec<&str> = seen[3..]
        .iter()
        .map(|s| s.query["startIndex"].as_str())
        .collect();
    assert_eq!(starts, ["0", "10", "20", "30", "40", "50"]);
    assert!(seen
        .iter()
        .all(|s| !s.query.contains_key("lastModStartDate")));

    let state = h.store.feed_state("nvd").await.unwrap().unwrap();
    assert_eq!(state.last_status.as_deref(), Some("ok"));
    assert!(state.cursor.is_some());

    // Second run: incremental by lastModified window, nothing new in it.
    let reports = sync(&h.store, &client, &[Source::Nvd], &|_| {}).await;
    assert!(!reports[0].failed, "{}", reports[0].status);
    assert_eq!(reports[0].summary.advisories.new, 0);
    let seen = h.replay.seen("/nvd");
    let last = seen.last().unwrap();
    let start = chrono::DateTime::parse_from_rfc3339(&last.query["lastModStartDate"]).unwrap();
    let end = chrono::DateTime::parse_from_rfc3339(&last.query["lastModEndDate"]).unwrap();
    assert!(end >= start && end - start <= chrono::Duration::days(120));
}

#[tokio::test]
async fn incremental_nvd_windows_never_exceed_120_days() {
    let h = harness(Replay {
        nvd: nvd_records(),
        ..Default::default()
    })
    .await;
    // A watermark a year back: the sync must split it into windows of at most 120 days.
    let mut state = zt_store::knowledge::FeedState {
        feed: "nvd".into(),
        cursor: Some((chrono::Utc::now() - chrono::Duration::days(365)).to_rfc3339()),
        ..Default::default()
    };
    state.last_status = Some("ok".into());
    h.store.save_feed_state(&state).await.unwrap();
    let client = SyncClient::new(h.config()).unwrap();
    let reports = sync(&h.store, &client, &[Source::Nvd], &|_| {}).await;
    assert!(!reports[0].failed, "{}", reports[0].status);
    let seen = h.replay.seen("/nvd");
    assert_eq!(seen.len(), 4, "365 days = 4 windows, one (empty) page each");
    for pair in seen.windows(2) {
        assert_eq!(
            pair[0].query["lastModEndDate"],
            pair[1].query["lastModStartDate"]
        );
    }
    for s in &seen {
        assert!(s.headers.get("apikey").is_none());
        let a = chrono::DateTime::parse_from_rfc3339(&s.query["lastModStartDate"]).unwrap();
        let b = chrono::DateTime::parse_from_rfc3339(&s.query["lastModEndDate"]).unwrap();
        assert!(b - a <= chrono::Duration::days(120));
    }
}

#[tokio::test]
async fn rate_limiter_spaces_nvd_requests() {
    let h = harness(Replay {
        nvd: nvd_records(),
        ..Default::default()
    })
    .await;
    let mut config = h.config();
    // One request per 150 ms, no burst: 6 pages need at least 5 gaps of 150 ms.
    config.nvd_rate = Some((1, Duration::from_millis(150)));
    let client = SyncClient::new(config).unwrap();
    let reports = sync(&h.store, &client, &[Source::Nvd], &|_| {}).await;
    assert!(!reports[0].failed);
    let seen = h.replay.seen("/nvd");
    assert_eq!(seen.len(), 6);
    for pair in seen.windows(2) {
        // A lower bound only: the limiter can make requests later, never earlier.
        let gap = pair[1].at - pair[0].at;
        assert!(gap >= Duration::from_millis(140), "{gap:?}");
    }
}

#[tokio::test]
async fn bulk_sources_use_conditional_requests_and_the_cache() {
    let (zip, zipped) = osv_zip_from_rustsec(40, false);
    let kev_bytes = std::fs::read(shared_path("kev/known_exploited_vulnerabilities.json")).unwrap();
    let h = harness(Replay {
        osv_zip: zip,
        kev: kev_bytes,
        epss_gz: epss_gz(500),
        ..Default::default()
    })
    .await;
    h.replay
        .failures
        .lock()
        .unwrap()
        .insert("kev", vec![StatusCode::BAD_GATEWAY]);
    let client = SyncClient::new(h.config()).unwrap();
    let sources = [Source::Osv("crates.io".into()), Source::Kev, Source::Epss];

    let first = sync(&h.store, &client, &sources, &|_| {}).await;
    for r in &first {
        assert!(!r.failed, "{}: {}", r.feed, r.status);
        assert_eq!(r.status, "ok");
    }
    assert_eq!(first[0].summary.advisories.new as usize, zipped);
    assert_eq!(first[1].summary.kev.new, 1404);
    assert_eq!(first[2].summary.epss.new, 500);
    assert_eq!(h.replay.seen("/kev").len(), 2, "one 502, one retry");

    // TTL 0: conditional requests; the server says 304 for OSV and KEV.
    let second = sync(&h.store, &client, &sources, &|_| {}).await;
    assert_eq!(second[0].status, "not-modified");
    assert_eq!(second[1].status, "not-modified");
    assert_eq!(
        second[0].summary.advisories.new + second[0].summary.advisories.updated,
        0
    );
    let osv_seen = h.replay.seen("/osv/crates.io");
    assert_eq!(osv_seen.last().unwrap().headers["if-none-match"], OSV_ETAG);
    assert_eq!(
        h.replay.seen("/kev").last().unwrap().headers["if-modified-since"],
        KEV_LAST_MODIFIED
    );
    let revision = h.store.knowledge_status().await.unwrap().revision;

    // A long TTL: served from the cache without any request.
    let mut config = h.config();
    config.cache_ttl = Duration::from_secs(3600);
    let cached = SyncClient::new(config).unwrap();
    let before = h.replay.seen("/").len();
    let third = sync(&h.store, &cached, &sources, &|_| {}).await;
    assert!(third.iter().all(|r| r.status == "from-cache"), "{third:?}");
    assert_eq!(h.replay.seen("/").len(), before);
    assert_eq!(h.store.knowledge_status().await.unwrap().revision, revision);

    let status = h.store.knowledge_status().await.unwrap();
    let osv_state = status
        .feeds
        .iter()
        .find(|f| f.feed == "osv:crates.io")
        .unwrap();
    assert_eq!(osv_state.etag.as_deref(), Some(OSV_ETAG));
}

#[tokio::test]
async fn a_bad_zip_entry_is_reported_and_the_rest_imports() {
    let (zip, zipped) = osv_zip_from_rustsec(10, true);
    let h = harness(Replay {
        osv_zip: zip,
        ..Default::default()
    })
    .await;
    let client = SyncClient::new(h.config()).unwrap();
    let r = &sync(
        &h.store,
        &client,
        &[Source::Osv("crates.io".into())],
        &|_| {},
    )
    .await[0];
    assert!(!r.failed);
    assert_eq!(r.summary.advisories.new as usize, zipped);
    assert_eq!(r.errors.len(), 1);
    assert!(
        r.errors[0].file.ends_with("all.zip!RUSTSEC-9999-0001.json"),
        "{}",
        r.errors[0].file
    );
    assert_eq!(r.errors[0].record_id.as_deref(), Some("RUSTSEC-9999-0001"));
}

#[tokio::test]
async fn a_source_that_keeps_failing_is_reported_and_changes_nothing() {
    let h = harness(Replay {
        kev: std::fs::read(shared_path("kev/known_exploited_vulnerabilities.json")).unwrap(),
        ..Default::default()
    })
    .await;
    h.replay
        .failures
        .lock()
        .unwrap()
        .insert("nvd", vec![StatusCode::SERVICE_UNAVAILABLE; 10]);
    let client = SyncClient::new(h.config()).unwrap();
    let reports = sync(&h.store, &client, &[Source::Nvd, Source::Kev], &|_| {}).await;
    assert!(reports[0].failed);
    assert!(reports[0].status.contains("503"), "{}", reports[0].status);
    assert_eq!(h.replay.seen("/nvd").len(), 4, "first try + 3 retries");
    // The other source still ran.
    assert!(!reports[1].failed);
    assert_eq!(reports[1].summary.kev.new, 1404);
    let nvd_state = h.store.feed_state("nvd").await.unwrap().unwrap();
    assert!(nvd_state.last_status.unwrap().starts_with("error"));
    assert!(nvd_state.cursor.is_none());
    assert_eq!(
        h.store
            .knowledge_status()
            .await
            .unwrap()
            .advisories_by_source,
        vec![]
    );
}

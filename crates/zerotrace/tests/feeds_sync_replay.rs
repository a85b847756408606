//! zt-sync against a local HTTP server (127.0.0.1:0) that replays responses built from the
//! real records in ../shared/data: NVD pages cut from real NVD records, an OSV zip built from
//! real RustSec files, the real KEV catalog, an EPSS gzip cut from the real snapshot.
//!
//! It lives here, in the binary's crate, because it writes into a real store: zt-sync itself
//! may not know `zt-store` (ARCHITECTURE.md's code map), not even in its tests.

use std::time::Duration;

use axum::http::StatusCode;
use zt_store::knowledge::{FeedState, ImportSummary, KnowledgeImport};
use zt_store::SqliteStore;
use zt_sync::{sync, KnowledgeTarget, RetryPolicy, Source, SyncClient, SyncConfig, SyncError};
use zt_testkit::feed_replay::{
    epss_gz, nvd_records, osv_zip_from_rustsec, Replay, ReplayServer, KEV_LAST_MODIFIED, OSV_ETAG,
};
use zt_testkit::shared_path;

/// The SQLite store as the sync's target (zt-sync itself knows no store).
struct Target<'a>(&'a SqliteStore);

impl KnowledgeTarget for Target<'_> {
    async fn import(&self, batch: KnowledgeImport) -> Result<ImportSummary, SyncError> {
        self.0
            .import_knowledge(batch)
            .await
            .map_err(|e| SyncError::Store(e.to_string()))
    }

    async fn load_state(&self, feed: &str) -> Result<Option<FeedState>, SyncError> {
        self.0
            .feed_state(feed)
            .await
            .map_err(|e| SyncError::Store(e.to_string()))
    }

    async fn save_state(&self, state: &FeedState) -> Result<(), SyncError> {
        self.0
            .save_feed_state(state)
            .await
            .map_err(|e| SyncError::Store(e.to_string()))
    }
}

struct Harness {
    _server: ReplayServer,
    replay: std::sync::Arc<Replay>,
    base: String,
    dir: tempfile::TempDir,
    store: SqliteStore,
}

async fn harness(replay: Replay) -> Harness {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let server = ReplayServer::start(replay).await;
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("zerotrace.db"))
        .await
        .unwrap();
    Harness {
        replay: server.replay.clone(),
        base: server.base.clone(),
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
            nvd_pages_per_import: 10,
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

    let reports = sync(&Target(&h.store), &client, &[Source::Nvd], &|_| {}).await;
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
    let reports = sync(&Target(&h.store), &client, &[Source::Nvd], &|_| {}).await;
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
    let mut state = FeedState {
        feed: "nvd".into(),
        cursor: Some((chrono::Utc::now() - chrono::Duration::days(365)).to_rfc3339()),
        ..Default::default()
    };
    state.last_status = Some("ok".into());
    h.store.save_feed_state(&state).await.unwrap();
    let client = SyncClient::new(h.config()).unwrap();
    let reports = sync(&Target(&h.store), &client, &[Source::Nvd], &|_| {}).await;
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
    let reports = sync(&Target(&h.store), &client, &[Source::Nvd], &|_| {}).await;
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

    let first = sync(&Target(&h.store), &client, &sources, &|_| {}).await;
    for r in &first {
        assert!(!r.failed, "{}: {}", r.feed, r.status);
        assert_eq!(r.status, "ok");
    }
    assert_eq!(first[0].summary.advisories.new as usize, zipped);
    assert_eq!(first[1].summary.kev.new, 1404);
    assert_eq!(first[2].summary.epss.new, 500);
    assert_eq!(h.replay.seen("/kev").len(), 2, "one 502, one retry");

    // TTL 0: conditional requests; the server says 304 for OSV and KEV.
    let second = sync(&Target(&h.store), &client, &sources, &|_| {}).await;
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
    let third = sync(&Target(&h.store), &cached, &sources, &|_| {}).await;
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
        &Target(&h.store),
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
    let reports = sync(
        &Target(&h.store),
        &client,
        &[Source::Nvd, Source::Kev],
        &|_| {},
    )
    .await;
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

#[tokio::test]
async fn an_interrupted_first_nvd_sync_resumes_after_the_last_imported_page() {
    let records = nvd_records();
    let total = records.len();
    let h = harness(Replay {
        nvd: records,
        ..Default::default()
    })
    .await;
    // The connection breaks down at the third page (startIndex 20) and stays down.
    *h.replay.nvd_fail_from.lock().unwrap() = Some(20);
    let mut config = h.config();
    config.nvd_pages_per_import = 1;
    config.retry.max_retries = 1;
    let client = SyncClient::new(config).unwrap();

    let first = sync(&Target(&h.store), &client, &[Source::Nvd], &|_| {}).await;
    assert!(first[0].failed, "{}", first[0].status);
    // The two pages read before the break are stored, and where to go on is remembered.
    let status = h.store.knowledge_status().await.unwrap();
    assert_eq!(status.advisories_by_source, vec![("nvd".to_string(), 20)]);
    let state = h.store.feed_state("nvd").await.unwrap().unwrap();
    let cursor = state.cursor.clone().unwrap();
    assert!(cursor.starts_with("full:20@"), "{cursor}");
    assert!(state.last_status.unwrap().starts_with("error"));
    assert!(state.last_success_at.is_none());

    // The next run starts at page 3, not at the beginning.
    *h.replay.nvd_fail_from.lock().unwrap() = None;
    let before = h.replay.seen("/nvd").len();
    let second = sync(&Target(&h.store), &client, &[Source::Nvd], &|_| {}).await;
    assert!(!second[0].failed, "{}", second[0].status);
    let starts: Vec<String> = h.replay.seen("/nvd")[before..]
        .iter()
        .map(|s| s.query["startIndex"].clone())
        .collect();
    assert_eq!(starts, ["20", "30", "40", "50"]);
    assert!(h.replay.seen("/nvd")[before..]
        .iter()
        .all(|s| !s.query.contains_key("lastModStartDate")));
    let status = h.store.knowledge_status().await.unwrap();
    assert_eq!(
        status.advisories_by_source,
        vec![("nvd".to_string(), total as u64)]
    );
    // Done: the watermark is when the first download began, so changes made while it ran are
    // fetched by the next incremental sync.
    let state = h.store.feed_state("nvd").await.unwrap().unwrap();
    let watermark = chrono::DateTime::parse_from_rfc3339(state.cursor.as_deref().unwrap())
        .expect("an RFC 3339 watermark");
    assert!(watermark < state.last_success_at.unwrap());
    assert!(watermark <= state.last_attempt_at.unwrap());
    assert_eq!(state.last_status.as_deref(), Some("ok"));
}

//! Online feed synchronisation: NVD API 2.0, OSV bulk downloads, CISA KEV, FIRST EPSS.
//!
//! - [`SyncClient`] downloads: conditional requests (ETag / If-Modified-Since, 304), a local
//!   cache with TTL for bulk files, retries with exponential backoff + jitter honouring
//!   `Retry-After`, and NVD's published rate limits (5 requests / 30 s without an API key,
//!   50 / 30 s with one, enforced with `governor`).
//! - [`sync`] runs the sources against a [`KnowledgeTarget`] (the store, behind a trait: this
//!   crate does not depend on `zt-store`): each source is parsed
//!   with `zt-feeds` and imported in its own transaction; the feed state (validators, NVD
//!   watermark) is saved only after a successful import, so an interrupted sync resumes safely.
//!
//! Every base URL is configurable ([`SyncConfig`]) so tests run against a local server.

mod http;
mod nvd;

use std::future::Future;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use zt_advisory::import::{FeedState, ImportSummary, KnowledgeImport};
use zt_feeds::{FeedItem, FeedRecord, RecordError};

pub use http::{
    parse_retry_after, Cache, FetchStatus, Fetched, Fetcher, RequestOptions, RetryPolicy,
};
pub use nvd::{nvd_windows, NVD_MAX_WINDOW_DAYS};

pub const DEFAULT_NVD_URL: &str = "https://services.nvd.nist.gov/rest/json/cves/2.0";
pub const DEFAULT_OSV_URL: &str = "https://osv-vulnerabilities.storage.googleapis.com";
pub const DEFAULT_KEV_URL: &str =
    "https://www.cisa.gov/sites/default/files/feeds/known_exploited_vulnerabilities.json";
pub const DEFAULT_EPSS_URL: &str = "https://epss.empiricalsecurity.com/epss_scores-current.csv.gz";

/// Errors of the online sync.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("HTTP request failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("{url}: HTTP {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("cache {0}: {1}")]
    Cache(PathBuf, std::io::Error),
    #[error("unexpected response: {0}")]
    Protocol(String),
    #[error("store: {0}")]
    Store(String),
}

/// NVD's published limits: 5 requests in a rolling 30 s window without an API key, 50 with one.
pub fn nvd_quota(with_api_key: bool) -> (u32, Duration) {
    if with_api_key {
        (50, Duration::from_secs(30))
    } else {
        (5, Duration::from_secs(30))
    }
}

/// Where and how to sync.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    pub nvd_url: String,
    pub osv_url: String,
    pub kev_url: String,
    pub epss_url: String,
    pub nvd_api_key: Option<String>,
    /// Overrides [`nvd_quota`] (tests use a short period).
    pub nvd_rate: Option<(u32, Duration)>,
    pub nvd_results_per_page: u32,
    /// NVD pages imported per transaction (bounds memory; an interrupted first download
    /// resumes after the last imported page).
    pub nvd_pages_per_import: usize,
    /// Download cache for bulk files (OSV zips, KEV, EPSS); `None` disables it.
    pub cache_dir: Option<PathBuf>,
    pub cache_ttl: Duration,
    pub retry: RetryPolicy,
    pub timeout: Duration,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            nvd_url: DEFAULT_NVD_URL.into(),
            osv_url: DEFAULT_OSV_URL.into(),
            kev_url: DEFAULT_KEV_URL.into(),
            epss_url: DEFAULT_EPSS_URL.into(),
            nvd_api_key: None,
            nvd_rate: None,
            nvd_results_per_page: 2000,
            nvd_pages_per_import: 10,
            cache_dir: None,
            cache_ttl: Duration::from_secs(3600),
            retry: RetryPolicy::default(),
            timeout: Duration::from_secs(600),
        }
    }
}

/// The downloading half of a sync.
#[derive(Clone)]
pub struct SyncClient {
    pub(crate) config: SyncConfig,
    pub(crate) fetcher: Fetcher,
    pub(crate) nvd_limiter: Arc<DefaultDirectRateLimiter>,
}

impl std::fmt::Debug for SyncClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncClient")
            .field("config", &self.config)
            .finish()
    }
}

impl SyncClient {
    pub fn new(config: SyncConfig) -> Result<SyncClient, SyncError> {
        let cache = config
            .cache_dir
            .clone()
            .map(|d| Cache::new(d, config.cache_ttl));
        let fetcher = Fetcher::new(
            concat!("zerotrace/", env!("CARGO_PKG_VERSION")),
            config.timeout,
            config.retry,
            cache,
        )?;
        let (burst, period) = config
            .nvd_rate
            .unwrap_or_else(|| nvd_quota(config.nvd_api_key.is_some()));
        let burst = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
        // `burst` requests per `period`, replenished evenly.
        let per_request = period / burst.get();
        let quota = Quota::with_period(per_request.max(Duration::from_millis(1)))
            .ok_or_else(|| SyncError::Protocol("invalid NVD rate".into()))?
            .allow_burst(burst);
        Ok(SyncClient {
            nvd_limiter: Arc::new(RateLimiter::direct(quota)),
            config,
            fetcher,
        })
    }

    pub fn config(&self) -> &SyncConfig {
        &self.config
    }

    /// The OSV bulk download of one ecosystem (`<base>/<ecosystem>/all.zip`).
    pub fn osv_url(&self, ecosystem: &str) -> String {
        format!(
            "{}/{}/all.zip",
            self.config.osv_url.trim_end_matches('/'),
            encode_path_segment(ecosystem)
        )
    }

    /// A bulk download with cache and conditional request.
    pub async fn fetch_bulk(
        &self,
        url: &str,
        state: Option<&FeedState>,
    ) -> Result<Fetched, SyncError> {
        let opts = RequestOptions {
            use_cache: true,
            etag: state.and_then(|s| s.etag.clone()),
            last_modified: state.and_then(|s| s.last_modified.clone()),
            ..Default::default()
        };
        self.fetcher.get(url, &opts).await
    }

    /// A bulk download streamed to a file: into the cache when there is one, else to `dest`
    /// (`Fetched::file`; `None` on a 304 without a cached copy).
    pub async fn fetch_bulk_to_file(
        &self,
        url: &str,
        state: Option<&FeedState>,
        dest: &std::path::Path,
    ) -> Result<Fetched, SyncError> {
        let opts = RequestOptions {
            use_cache: true,
            etag: state.and_then(|s| s.etag.clone()),
            last_modified: state.and_then(|s| s.last_modified.clone()),
            to_file: Some(dest.to_path_buf()),
            ..Default::default()
        };
        self.fetcher.get(url, &opts).await
    }
}

/// The last path segment of a URL (`all.zip`, `kev.json`), for the downloaded file's name.
fn download_name(url: &str) -> String {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let last = path.rsplit('/').next().unwrap_or("");
    let clean: String = last
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "-._".contains(*c))
        .collect();
    if clean.is_empty() {
        "download".into()
    } else {
        clean
    }
}

/// Percent-encodes one URL path segment (OSV ecosystems contain ':' and ' ').
fn encode_path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Where sync results go: the store, which this crate knows only through this trait (the
/// server implements it over its `Storage`).
pub trait KnowledgeTarget: Sync {
    fn import(
        &self,
        batch: KnowledgeImport,
    ) -> impl Future<Output = Result<ImportSummary, SyncError>> + Send;
    fn load_state(
        &self,
        feed: &str,
    ) -> impl Future<Output = Result<Option<FeedState>, SyncError>> + Send;
    fn save_state(&self, state: &FeedState) -> impl Future<Output = Result<(), SyncError>> + Send;
}

/// One online source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Nvd,
    /// The OSV bulk download of one ecosystem ("PyPI", "crates.io", "Debian", ...).
    Osv(String),
    Kev,
    Epss,
}

impl Source {
    /// The feed-state key: "nvd", "osv:PyPI", "kev", "epss".
    pub fn feed_name(&self) -> String {
        match self {
            Source::Nvd => "nvd".into(),
            Source::Osv(e) => format!("osv:{e}"),
            Source::Kev => "kev".into(),
            Source::Epss => "epss".into(),
        }
    }
}

/// Progress of a sync, for a progress display.
#[derive(Debug, Clone)]
pub enum SyncEvent {
    Started {
        feed: String,
    },
    Fetched {
        feed: String,
        url: String,
        status: FetchStatus,
        bytes: usize,
    },
    NvdPage {
        start_index: u32,
        total: u32,
    },
}

/// The outcome of one source.
#[derive(Debug, Clone)]
pub struct SourceReport {
    pub feed: String,
    /// "ok", "not-modified", "from-cache", or the error.
    pub status: String,
    pub records_read: u64,
    pub errors: Vec<RecordError>,
    pub summary: ImportSummary,
    pub failed: bool,
}

/// Collects parsed items into an import batch and its read errors.
#[derive(Default)]
pub(crate) struct Collected {
    pub(crate) batch: KnowledgeImport,
    pub(crate) errors: Vec<RecordError>,
    pub(crate) read: u64,
}

impl Collected {
    pub(crate) fn add_document(&mut self, name: &str, body: &[u8]) {
        zt_feeds::read_bytes(name, body, &mut |item| match item {
            FeedItem::Record(r) => {
                self.read += 1;
                match r {
                    FeedRecord::Advisory(a) => self.batch.advisories.push(*a),
                    FeedRecord::Kev(k) => self.batch.kev.push(k),
                    FeedRecord::Epss(e) => self.batch.epss.push(e),
                }
            }
            FeedItem::Error(e) => self.errors.push(e),
            FeedItem::SkippedFile { .. } => {}
        });
    }

    pub(crate) fn add_file(&mut self, path: &std::path::Path, name: &str) {
        zt_feeds::read_file_named(path, name, &mut |item| self.add_item(item));
    }

    fn add_item(&mut self, item: FeedItem) {
        match item {
            FeedItem::Record(r) => {
                self.read += 1;
                match r {
                    FeedRecord::Advisory(a) => self.batch.advisories.push(*a),
                    FeedRecord::Kev(k) => self.batch.kev.push(k),
                    FeedRecord::Epss(e) => self.batch.epss.push(e),
                }
            }
            FeedItem::Error(e) => self.errors.push(e),
            FeedItem::SkippedFile { .. } => {}
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.batch.advisories.is_empty() && self.batch.kev.is_empty() && self.batch.epss.is_empty()
    }
}

/// Syncs `sources` into `target`. A failing source is reported and the others still run.
pub async fn sync<T: KnowledgeTarget>(
    target: &T,
    client: &SyncClient,
    sources: &[Source],
    on_event: &(dyn Fn(SyncEvent) + Sync),
) -> Vec<SourceReport> {
    let mut reports = Vec::new();
    for source in sources {
        let feed = source.feed_name();
        on_event(SyncEvent::Started { feed: feed.clone() });
        let report = match source {
            Source::Nvd => nvd::sync_nvd(target, client, on_event).await,
            Source::Osv(eco) => {
                let url = client.osv_url(eco);
                sync_bulk(target, client, &feed, &url, on_event).await
            }
            Source::Kev => {
                let url = client.config.kev_url.clone();
                sync_bulk(target, client, &feed, &url, on_event).await
            }
            Source::Epss => {
                let url = client.config.epss_url.clone();
                sync_bulk(target, client, &feed, &url, on_event).await
            }
        };
        let report = match report {
            Ok(r) => r,
            Err(e) => {
                // Remember the failure for `feeds status` (best effort: the store may be the
                // thing that failed).
                let mut state =
                    target
                        .load_state(&feed)
                        .await
                        .ok()
                        .flatten()
                        .unwrap_or(FeedState {
                            feed: feed.clone(),
                            ..Default::default()
                        });
                state.last_attempt_at = Some(Utc::now());
                state.last_status = Some(format!("error: {e}"));
                let _ = target.save_state(&state).await;
                SourceReport {
                    feed,
                    status: format!("error: {e}"),
                    records_read: 0,
                    errors: Vec::new(),
                    summary: ImportSummary::default(),
                    failed: true,
                }
            }
        };
        reports.push(report);
    }
    reports
}

async fn sync_bulk<T: KnowledgeTarget>(
    target: &T,
    client: &SyncClient,
    feed: &str,
    url: &str,
    on_event: &(dyn Fn(SyncEvent) + Sync),
) -> Result<SourceReport, SyncError> {
    let previous = target.load_state(feed).await?;
    let started = Utc::now();
    // Streamed to a file and read from it (a zip entry by entry): a bulk download is never
    // held in memory whole.
    let scratch = tempfile::tempdir().map_err(|e| SyncError::Cache(std::env::temp_dir(), e))?;
    let dest = scratch.path().join(download_name(url));
    let fetched = client
        .fetch_bulk_to_file(url, previous.as_ref(), &dest)
        .await?;
    let bytes = fetched
        .file
        .as_ref()
        .and_then(|f| std::fs::metadata(f).ok())
        .map(|m| m.len() as usize)
        .unwrap_or(0);
    on_event(SyncEvent::Fetched {
        feed: feed.to_string(),
        url: url.to_string(),
        status: fetched.status,
        bytes,
    });
    let mut collected = Collected::default();
    collected.batch.origin = format!("sync {feed}");
    if let Some(file) = &fetched.file {
        collected.add_file(file, url);
        if collected.is_empty() && !collected.errors.is_empty() {
            return Err(SyncError::Protocol(format!(
                "{url}: nothing readable: {}",
                collected.errors[0]
            )));
        }
    }
    let summary = if collected.is_empty() {
        ImportSummary::default()
    } else {
        target.import(std::mem::take(&mut collected.batch)).await?
    };
    let status = match fetched.status {
        FetchStatus::Downloaded => "ok",
        FetchStatus::NotModified => "not-modified",
        FetchStatus::FromCache => "from-cache",
    };
    let records = if fetched.file.is_none() {
        previous.as_ref().map(|p| p.records).unwrap_or(0)
    } else {
        collected.read
    };
    target
        .save_state(&FeedState {
            feed: feed.to_string(),
            url: Some(url.to_string()),
            etag: fetched.etag.clone(),
            last_modified: fetched.last_modified.clone(),
            cursor: previous.as_ref().and_then(|p| p.cursor.clone()),
            last_attempt_at: Some(started),
            last_success_at: Some(Utc::now()),
            last_status: Some(status.to_string()),
            records,
        })
        .await?;
    Ok(SourceReport {
        feed: feed.to_string(),
        status: status.to_string(),
        records_read: collected.read,
        errors: collected.errors,
        summary,
        failed: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nvd_quota_is_the_published_one() {
        assert_eq!(nvd_quota(false), (5, Duration::from_secs(30)));
        assert_eq!(nvd_quota(true), (50, Duration::from_secs(30)));
    }

    #[test]
    fn osv_urls_encode_the_ecosystem() {
        let c = SyncClient::new(SyncConfig {
            osv_url: "http://127.0.0.1:1/".into(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            c.osv_url("crates.io"),
            "http://127.0.0.1:1/crates.io/all.zip"
        );
        assert_eq!(
            c.osv_url("Ubuntu:22.04:LTS"),
            "http://127.0.0.1:1/Ubuntu:22.04:LTS/all.zip"
        );
        assert_eq!(c.osv_url("Red Hat"), "http://127.0.0.1:1/Red%20Hat/all.zip");
    }
}

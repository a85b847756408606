//! HTTP fetching for the feeds: conditional requests, a local cache with TTL, retries with
//! exponential backoff and jitter that honour `Retry-After`.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use rand::Rng;
use reqwest::header::{
    HeaderMap, ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED, RETRY_AFTER,
};
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::SyncError;

/// How a document was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchStatus {
    /// Downloaded now (200).
    Downloaded,
    /// The server answered 304: the cached copy is current.
    NotModified,
    /// The cached copy is younger than the TTL: no request was made.
    FromCache,
}

/// A fetched document.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub url: String,
    pub status: FetchStatus,
    /// The body, unless it went to a file (`RequestOptions::to_file`).
    pub body: Vec<u8>,
    /// Where the body is when it was streamed to a file (the cache's copy, or `to_file`);
    /// `None` on a 304 without a cached copy.
    pub file: Option<PathBuf>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

/// Retry policy: attempts after the first, and the first backoff (doubled each time, with up
/// to 50 % random jitter added; `Retry-After` from the server wins when it is longer).
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_retries: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 5,
            initial_backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `attempt` (0-based).
    pub fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let base = self
            .initial_backoff
            .saturating_mul(2u32.saturating_pow(attempt.min(16)));
        let jitter_ms = (base.as_millis() as u64) / 2;
        let jitter = if jitter_ms > 0 {
            Duration::from_millis(rand::rng().random_range(0..=jitter_ms))
        } else {
            Duration::ZERO
        };
        let wait = (base + jitter).min(self.max_backoff);
        match retry_after {
            Some(ra) if ra > wait => ra.min(self.max_backoff.max(ra.min(Duration::from_secs(600)))),
            _ => wait,
        }
    }
}

/// `Retry-After` as seconds or an HTTP date.
pub fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

fn is_retryable(status: StatusCode, forbidden_is_rate_limit: bool) -> bool {
    matches!(status.as_u16(), 408 | 429 | 500 | 502 | 503 | 504)
        || (forbidden_is_rate_limit && status == StatusCode::FORBIDDEN)
}

/// The metadata kept beside a cached body.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CacheMeta {
    url: String,
    etag: Option<String>,
    last_modified: Option<String>,
    fetched_at: DateTime<Utc>,
}

/// A directory of cached downloads, one body + one metadata file per URL.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
    ttl: Duration,
}

impl Cache {
    pub fn new(dir: impl Into<PathBuf>, ttl: Duration) -> Cache {
        Cache {
            dir: dir.into(),
            ttl,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn paths(&self, url: &str) -> (PathBuf, PathBuf) {
        let key = hex::encode(&Sha256::digest(url.as_bytes())[..16]);
        (
            self.dir.join(format!("{key}.body")),
            self.dir.join(format!("{key}.meta.json")),
        )
    }

    fn load(&self, url: &str) -> Option<(CacheMeta, PathBuf)> {
        let (body, meta) = self.paths(url);
        let meta: CacheMeta = serde_json::from_slice(&std::fs::read(meta).ok()?).ok()?;
        if meta.url != url || !body.is_file() {
            return None;
        }
        Some((meta, body))
    }

    fn store(
        &self,
        url: &str,
        body: &[u8],
        etag: Option<String>,
        last_modified: Option<String>,
    ) -> Result<(), SyncError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| SyncError::Cache(self.dir.clone(), e))?;
        let (body_path, meta_path) = self.paths(url);
        // Write to a temporary name and rename, so a crash never leaves a torn body behind a
        // valid metadata file.
        let tmp = body_path.with_extension("body.tmp");
        std::fs::write(&tmp, body).map_err(|e| SyncError::Cache(tmp.clone(), e))?;
        std::fs::rename(&tmp, &body_path).map_err(|e| SyncError::Cache(body_path.clone(), e))?;
        self.touch(url, etag, last_modified, &meta_path)
    }

    /// Moves a body streamed to `tmp` into the cache; returns where it is now.
    fn adopt(
        &self,
        url: &str,
        tmp: &Path,
        etag: Option<String>,
        last_modified: Option<String>,
    ) -> Result<PathBuf, SyncError> {
        let (body_path, meta_path) = self.paths(url);
        std::fs::rename(tmp, &body_path).map_err(|e| SyncError::Cache(body_path.clone(), e))?;
        self.touch(url, etag, last_modified, &meta_path)?;
        Ok(body_path)
    }

    fn touch(
        &self,
        url: &str,
        etag: Option<String>,
        last_modified: Option<String>,
        meta_path: &Path,
    ) -> Result<(), SyncError> {
        let meta = CacheMeta {
            url: url.to_string(),
            etag,
            last_modified,
            fetched_at: Utc::now(),
        };
        let json = serde_json::to_vec(&meta).map_err(|e| SyncError::Protocol(e.to_string()))?;
        std::fs::write(meta_path, json).map_err(|e| SyncError::Cache(meta_path.to_path_buf(), e))
    }
}

/// The HTTP side of syncing: one reqwest client, a retry policy and an optional cache.
#[derive(Debug, Clone)]
pub struct Fetcher {
    pub(crate) client: reqwest::Client,
    pub(crate) retry: RetryPolicy,
    pub(crate) cache: Option<Cache>,
}

/// Extra request options.
#[derive(Debug, Default, Clone)]
pub struct RequestOptions<'a> {
    pub headers: Vec<(&'static str, String)>,
    pub query: Vec<(&'a str, String)>,
    /// Use (and fill) the download cache; off for API queries whose URL changes every time.
    pub use_cache: bool,
    /// NVD answers 403 when a client goes over its rate limit: retry those too.
    pub forbidden_is_rate_limit: bool,
    /// Validators from the store when the cache has nothing (first run on a new cache dir).
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// Streams the body to this file (or into the cache when it is used) instead of memory.
    pub to_file: Option<PathBuf>,
}

impl Fetcher {
    pub fn new(
        user_agent: &str,
        timeout: Duration,
        retry: RetryPolicy,
        cache: Option<Cache>,
    ) -> Result<Fetcher, SyncError> {
        let client = reqwest::Client::builder()
            .user_agent(user_agent)
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(30))
            .build()
            .map_err(SyncError::Http)?;
        Ok(Fetcher {
            client,
            retry,
            cache,
        })
    }

    /// GET `url` with conditional headers, cache and retries.
    pub async fn get(&self, url: &str, opts: &RequestOptions<'_>) -> Result<Fetched, SyncError> {
        let cached = if opts.use_cache {
            self.cache.as_ref().and_then(|c| c.load(url))
        } else {
            None
        };
        if let (Some(cache), Some((meta, body_path))) = (&self.cache, &cached) {
            let age = Utc::now().signed_duration_since(meta.fetched_at);
            if age.to_std().is_ok_and(|a| a < cache.ttl) {
                let (body, file) = cached_body(body_path, opts)?;
                return Ok(Fetched {
                    url: url.to_string(),
                    status: FetchStatus::FromCache,
                    body,
                    file,
                    etag: meta.etag.clone(),
                    last_modified: meta.last_modified.clone(),
                });
            }
        }
        // Validators: the cached copy's; without one, the store's (a 304 then means the store
        // already holds this version and there is nothing to import).
        let (etag, last_modified) = match &cached {
            Some((m, _)) => (m.etag.clone(), m.last_modified.clone()),
            None => (opts.etag.clone(), opts.last_modified.clone()),
        };

        let mut full_url = reqwest::Url::parse(url)
            .map_err(|e| SyncError::Protocol(format!("invalid URL {url:?}: {e}")))?;
        if !opts.query.is_empty() {
            let mut pairs = full_url.query_pairs_mut();
            for (k, v) in &opts.query {
                pairs.append_pair(k, v);
            }
        }
        let mut attempt = 0;
        loop {
            let mut req = self.client.get(full_url.clone());
            for (k, v) in &opts.headers {
                req = req.header(*k, v);
            }
            if let Some(e) = &etag {
                req = req.header(IF_NONE_MATCH, e);
            }
            if let Some(lm) = &last_modified {
                req = req.header(IF_MODIFIED_SINCE, lm);
            }
            let outcome = req.send().await;
            let retry_after = match outcome {
                Ok(resp) => {
                    let status = resp.status();
                    if status == StatusCode::NOT_MODIFIED {
                        let Some((meta, body_path)) = &cached else {
                            // 304 without a cached body: the store's validators matched, the
                            // data is already imported.
                            return Ok(Fetched {
                                url: url.to_string(),
                                status: FetchStatus::NotModified,
                                body: Vec::new(),
                                file: None,
                                etag,
                                last_modified,
                            });
                        };
                        let (body, file) = cached_body(body_path, opts)?;
                        if let Some(cache) = &self.cache {
                            let (_, meta_path) = cache.paths(url);
                            cache.touch(
                                url,
                                meta.etag.clone(),
                                meta.last_modified.clone(),
                                &meta_path,
                            )?;
                        }
                        return Ok(Fetched {
                            url: url.to_string(),
                            status: FetchStatus::NotModified,
                            body,
                            file,
                            etag: meta.etag.clone(),
                            last_modified: meta.last_modified.clone(),
                        });
                    }
                    if status.is_success() {
                        let headers = resp.headers().clone();
                        let header = |h| {
                            headers
                                .get(h)
                                .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
                                .map(str::to_string)
                        };
                        let new_etag = header(ETAG);
                        let new_lm = header(LAST_MODIFIED);
                        if let Some(dest) = &opts.to_file {
                            let cache = self.cache.as_ref().filter(|_| opts.use_cache);
                            let target = match cache {
                                Some(c) => {
                                    std::fs::create_dir_all(&c.dir)
                                        .map_err(|e| SyncError::Cache(c.dir.clone(), e))?;
                                    c.paths(url).0.with_extension("body.tmp")
                                }
                                None => dest.clone(),
                            };
                            match stream_to_file(resp, &target).await {
                                Ok(()) => {
                                    let file = match cache {
                                        Some(c) => {
                                            c.adopt(url, &target, new_etag.clone(), new_lm.clone())?
                                        }
                                        None => target,
                                    };
                                    return Ok(Fetched {
                                        url: url.to_string(),
                                        status: FetchStatus::Downloaded,
                                        body: Vec::new(),
                                        file: Some(file),
                                        etag: new_etag,
                                        last_modified: new_lm,
                                    });
                                }
                                Err(StreamError::Io(e)) => return Err(SyncError::Cache(target, e)),
                                Err(StreamError::Http(e)) if attempt < self.retry.max_retries => {
                                    tracing::warn!(url, error = %e, "download interrupted; retrying");
                                    attempt += 1;
                                    tokio::time::sleep(self.retry.backoff(attempt - 1, None)).await;
                                    continue;
                                }
                                Err(StreamError::Http(e)) => return Err(SyncError::Http(e)),
                            }
                        }
                        match resp.bytes().await {
                            Ok(body) => {
                                let body = body.to_vec();
                                if opts.use_cache {
                                    if let Some(cache) = &self.cache {
                                        cache.store(
                                            url,
                                            &body,
                                            new_etag.clone(),
                                            new_lm.clone(),
                                        )?;
                                    }
                                }
                                return Ok(Fetched {
                                    url: url.to_string(),
                                    status: FetchStatus::Downloaded,
                                    body,
                                    file: None,
                                    etag: new_etag,
                                    last_modified: new_lm,
                                });
                            }
                            Err(e) if attempt < self.retry.max_retries => {
                                tracing::warn!(url, error = %e, "download interrupted; retrying");
                                None
                            }
                            Err(e) => return Err(SyncError::Http(e)),
                        }
                    } else if is_retryable(status, opts.forbidden_is_rate_limit)
                        && attempt < self.retry.max_retries
                    {
                        let ra = parse_retry_after(resp.headers());
                        tracing::warn!(url, %status, "server asked to retry");
                        ra
                    } else {
                        let body = resp.text().await.unwrap_or_default();
                        return Err(SyncError::Status {
                            url: url.to_string(),
                            status: status.as_u16(),
                            body: body.chars().take(300).collect(),
                        });
                    }
                }
                Err(e)
                    if attempt < self.retry.max_retries
                        && (e.is_connect() || e.is_timeout() || e.is_request()) =>
                {
                    tracing::warn!(url, error = %e, "request failed; retrying");
                    None
                }
                Err(e) => return Err(SyncError::Http(e)),
            };
            let wait = self.retry.backoff(attempt, retry_after);
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }
}

/// A cached body: its path when the caller streams to files, else its bytes.
fn cached_body(
    body_path: &Path,
    opts: &RequestOptions<'_>,
) -> Result<(Vec<u8>, Option<PathBuf>), SyncError> {
    if opts.to_file.is_some() {
        return Ok((Vec::new(), Some(body_path.to_path_buf())));
    }
    let body =
        std::fs::read(body_path).map_err(|e| SyncError::Cache(body_path.to_path_buf(), e))?;
    Ok((body, None))
}

enum StreamError {
    Http(reqwest::Error),
    Io(std::io::Error),
}

/// Writes a response body to `path` chunk by chunk (never the whole body in memory).
async fn stream_to_file(mut resp: reqwest::Response, path: &Path) -> Result<(), StreamError> {
    use tokio::io::AsyncWriteExt;
    let mut file = tokio::fs::File::create(path)
        .await
        .map_err(StreamError::Io)?;
    while let Some(chunk) = resp.chunk().await.map_err(StreamError::Http)? {
        file.write_all(&chunk).await.map_err(StreamError::Io)?;
    }
    file.flush().await.map_err(StreamError::Io)?;
    file.sync_all().await.map_err(StreamError::Io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_honours_retry_after() {
        let p = RetryPolicy {
            max_retries: 3,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
        };
        let b0 = p.backoff(0, None);
        let b3 = p.backoff(3, None);
        assert!(
            b0 >= Duration::from_millis(100) && b0 <= Duration::from_millis(150),
            "{b0:?}"
        );
        assert!(
            b3 >= Duration::from_millis(800) && b3 <= Duration::from_millis(1200),
            "{b3:?}"
        );
        assert_eq!(
            p.backoff(0, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        assert!(p.backoff(30, None) <= Duration::from_secs(10));
    }

    #[test]
    fn retry_after_forms() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, "12".parse().unwrap());
        assert_eq!(parse_retry_after(&h), Some(Duration::from_secs(12)));
        let future = SystemTime::now() + Duration::from_secs(60);
        h.insert(
            RETRY_AFTER,
            httpdate::fmt_http_date(future).parse().unwrap(),
        );
        let d = parse_retry_after(&h).unwrap();
        assert!(
            d <= Duration::from_secs(60) && d >= Duration::from_secs(58),
            "{d:?}"
        );
        h.insert(RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(parse_retry_after(&h), None);
    }
}

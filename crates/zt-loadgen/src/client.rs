//! The public HTTP API as a simulated agent and an operator use it, with the retry behaviour of a
//! real agent: on 429 and 503 it waits as long as `Retry-After` says and sends the same report
//! again (same report id, so the server never stores it twice).

use std::io::Write;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use reqwest::header::{HeaderMap, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::json;
use zt_inventory::{InventoryReport, OsInfo};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("HTTP request to {url} failed: {source}")]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url} answered {status}: {body}")]
    Status {
        url: String,
        status: StatusCode,
        body: String,
    },
    #[error("gave up on {url} after {attempts} attempts (last status {status})")]
    GaveUp {
        url: String,
        attempts: u32,
        status: StatusCode,
    },
}

#[derive(Debug, Clone, Deserialize)]
pub struct CreatedCompany {
    pub id: String,
    pub enroll_secret: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Enrolled {
    pub agent_id: String,
    pub agent_token: String,
}

/// What happened to one report.
#[derive(Debug, Clone, Default)]
pub struct SendOutcome {
    pub accepted: bool,
    /// Latency of the attempt that was accepted.
    pub latency: Duration,
    pub throttled: u32,
    pub overloaded: u32,
}

/// A report's processing state as the server tells it.
#[derive(Debug, Clone, Deserialize)]
pub struct ReportStatus {
    pub status: String,
    pub accepted_at: Option<DateTime<Utc>>,
    pub processed_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    base: String,
    /// Give up on a report after this many throttled/overloaded answers.
    pub max_retries: u32,
}

impl ApiClient {
    pub fn new(base: &str, concurrency: usize) -> Result<ApiClient, ClientError> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(concurrency.max(1))
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|source| ClientError::Transport {
                url: base.to_string(),
                source,
            })?;
        Ok(ApiClient {
            http,
            base: base.trim_end_matches('/').to_string(),
            max_retries: 1000,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn create_company(
        &self,
        admin_token: &str,
        name: &str,
    ) -> Result<CreatedCompany, ClientError> {
        let url = self.url("/api/v1/companies");
        let body = json!({ "name": name });
        self.post_json(&url, admin_token, &body, StatusCode::CREATED)
            .await
    }

    pub async fn enroll(
        &self,
        enroll_secret: &str,
        hostname: &str,
        os: &OsInfo,
        arch: &str,
    ) -> Result<Enrolled, ClientError> {
        let url = self.url("/api/v1/enroll");
        let body = json!({
            "enroll_secret": enroll_secret,
            "hostname": hostname,
            "os": os,
            "arch": arch,
            "agent_version": concat!("zerotrace-loadgen/", env!("CARGO_PKG_VERSION")),
        });
        self.post_json(&url, "", &body, StatusCode::CREATED).await
    }

    async fn post_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        token: &str,
        body: &serde_json::Value,
        expect: StatusCode,
    ) -> Result<T, ClientError> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let mut req = self.http.post(url).json(body);
            if !token.is_empty() {
                req = req.bearer_auth(token);
            }
            let resp = req.send().await.map_err(|source| ClientError::Transport {
                url: url.to_string(),
                source,
            })?;
            let status = resp.status();
            if status == expect || status.is_success() {
                return resp.json().await.map_err(|source| ClientError::Transport {
                    url: url.to_string(),
                    source,
                });
            }
            if is_backpressure(status) && attempts < self.max_retries {
                tokio::time::sleep(retry_after(resp.headers())).await;
                continue;
            }
            let body = resp.text().await.unwrap_or_default();
            return Err(ClientError::Status {
                url: url.to_string(),
                status,
                body,
            });
        }
    }

    /// Sends one report (gzip JSON), retrying on 429/503 as a real agent would.
    pub async fn send_report(
        &self,
        agent_token: &str,
        report: &InventoryReport,
    ) -> Result<SendOutcome, ClientError> {
        let url = self.url("/api/v1/inventory");
        let body = gzip_json(report);
        let mut outcome = SendOutcome::default();
        let mut attempts = 0;
        loop {
            attempts += 1;
            let started = Instant::now();
            let resp = self
                .http
                .post(&url)
                .header(AUTHORIZATION, format!("Bearer {agent_token}"))
                .header(CONTENT_TYPE, "application/json")
                .header(CONTENT_ENCODING, "gzip")
                .body(body.clone())
                .send()
                .await
                .map_err(|source| ClientError::Transport {
                    url: url.clone(),
                    source,
                })?;
            let status = resp.status();
            if status.is_success() {
                outcome.accepted = true;
                outcome.latency = started.elapsed();
                return Ok(outcome);
            }
            match status {
                StatusCode::TOO_MANY_REQUESTS => outcome.throttled += 1,
                StatusCode::SERVICE_UNAVAILABLE => outcome.overloaded += 1,
                _ => {
                    let body = resp.text().await.unwrap_or_default();
                    return Err(ClientError::Status { url, status, body });
                }
            }
            if attempts >= self.max_retries {
                return Err(ClientError::GaveUp {
                    url,
                    attempts,
                    status,
                });
            }
            tokio::time::sleep(retry_after(resp.headers())).await;
        }
    }

    /// A GET with a bearer token: the status and the body (429/503 waited out and retried).
    pub async fn get(&self, token: &str, path: &str) -> Result<(StatusCode, Vec<u8>), ClientError> {
        let url = self.url(path);
        loop {
            let resp = self
                .http
                .get(&url)
                .bearer_auth(token)
                .send()
                .await
                .map_err(|source| ClientError::Transport {
                    url: url.clone(),
                    source,
                })?;
            let status = resp.status();
            if is_backpressure(status) {
                tokio::time::sleep(retry_after(resp.headers())).await;
                continue;
            }
            let body = resp
                .bytes()
                .await
                .map_err(|source| ClientError::Transport {
                    url: url.clone(),
                    source,
                })?;
            return Ok((status, body.to_vec()));
        }
    }

    /// Downloads a (streamed) body without keeping it: the time to its first byte, its size
    /// and its line count.
    pub async fn download(
        &self,
        token: &str,
        path: &str,
    ) -> Result<(Duration, u64, u64), ClientError> {
        let url = self.url(path);
        let started = Instant::now();
        let transport = |source| ClientError::Transport {
            url: url.clone(),
            source,
        };
        let mut resp = self
            .http
            .get(&url)
            .bearer_auth(token)
            .timeout(Duration::from_secs(3600))
            .send()
            .await
            .map_err(transport)?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            return Err(ClientError::Status { url, status, body });
        }
        let (mut first, mut bytes, mut lines) = (None, 0u64, 0u64);
        while let Some(chunk) = resp.chunk().await.map_err(transport)? {
            first.get_or_insert_with(|| started.elapsed());
            bytes += chunk.len() as u64;
            lines += chunk.iter().filter(|b| **b == b'\n').count() as u64;
        }
        Ok((first.unwrap_or_default(), bytes, lines))
    }

    /// The server's processing state of one report (agent-scoped).
    pub async fn report_status(
        &self,
        agent_token: &str,
        report_id: uuid::Uuid,
    ) -> Result<ReportStatus, ClientError> {
        let url = self.url(&format!("/api/v1/reports/{report_id}"));
        loop {
            let resp = self
                .http
                .get(&url)
                .bearer_auth(agent_token)
                .send()
                .await
                .map_err(|source| ClientError::Transport {
                    url: url.clone(),
                    source,
                })?;
            let status = resp.status();
            if status.is_success() {
                return resp.json().await.map_err(|source| ClientError::Transport {
                    url: url.clone(),
                    source,
                });
            }
            if is_backpressure(status) {
                tokio::time::sleep(retry_after(resp.headers())).await;
                continue;
            }
            let body = resp.text().await.unwrap_or_default();
            return Err(ClientError::Status { url, status, body });
        }
    }
}

fn is_backpressure(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE
}

/// `Retry-After` in seconds (the HTTP-date form is not used by our server); 1 s when absent.
/// Capped so that a misconfigured server cannot stall the run for long.
pub fn retry_after(headers: &HeaderMap) -> Duration {
    let secs = headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .unwrap_or(1.0);
    Duration::from_secs_f64(secs.min(60.0))
}

/// Serializes and gzips a report the way the agent does (fast compression level: the loadgen
/// shares the machine with the server it measures).
pub fn gzip_json(report: &InventoryReport) -> Vec<u8> {
    let json = serde_json::to_vec(report).unwrap_or_default();
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(json.len() / 4),
        flate2::Compression::fast(),
    );
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(&json);
    enc.finish().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn retry_after_parses_seconds_and_defaults() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), Duration::from_secs(1));
        h.insert(RETRY_AFTER, HeaderValue::from_static("3"));
        assert_eq!(retry_after(&h), Duration::from_secs(3));
        h.insert(RETRY_AFTER, HeaderValue::from_static("garbage"));
        assert_eq!(retry_after(&h), Duration::from_secs(1));
        h.insert(RETRY_AFTER, HeaderValue::from_static("100000"));
        assert_eq!(retry_after(&h), Duration::from_secs(60));
    }
}

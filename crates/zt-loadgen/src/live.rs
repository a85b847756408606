//! Connected dashboards under measurement (issue 12): many Server-Sent Event streams held open
//! on the companies' event endpoints while the load runs, with the delay from a report being
//! accepted (its 202 reaching the load generator) to its `report.processed` event reaching
//! each connected client, and what the held streams cost the server in memory.
//!
//! The SSE framing is parsed here by hand: it is a few lines of text protocol (WHATWG HTML
//! "Server-sent events": fields `id:`, `event:`, `data:`, a blank line ends a message), and
//! the crates that parse it would bring their own HTTP client beside the one used here.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use parking_lot::Mutex;
use serde::Serialize;
use uuid::Uuid;

use crate::client::ClientError;
use crate::stats::{LatencySummary, Recorder};

/// How many streams to hold, and whose memory to watch.
#[derive(Debug, Clone)]
pub struct LiveConfig {
    /// Streams held open, spread over the run's companies.
    pub clients: usize,
    /// The server's process id (same machine): its resident memory is read from /proc before
    /// and after the streams connect.
    pub server_pid: Option<u32>,
}

/// The figures of the live phase; part of `--format json` as `live`.
#[derive(Debug, Clone, Serialize)]
pub struct LiveReport {
    pub clients: usize,
    /// Streams that received their first message (the `summary` sent on connect).
    pub connected: usize,
    /// Seconds until every stream had its first message.
    pub connect_s: f64,
    /// `report.processed` deliveries expected (each measured report × the streams on its
    /// company) and received.
    pub deliveries_expected: u64,
    pub deliveries_received: u64,
    /// Report accepted → its event at a client, milliseconds, over every delivery.
    pub accepted_to_event_ms: LatencySummary,
    /// The server's resident memory before the streams opened and once all had connected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_rss_before_mb: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_rss_connected_mb: Option<f64>,
    pub stream_errors: u64,
    pub first_error: Option<String>,
}

/// The streams and what they saw; lives for the measured part of the run.
pub struct LiveWatch {
    accepted: Mutex<HashMap<Uuid, Instant>>,
    /// Events that arrived before their report's 202 was seen (told apart, not lost).
    early: Mutex<HashMap<Uuid, Vec<Instant>>>,
    delays: Recorder,
    received: AtomicU64,
    connected: AtomicUsize,
    errors: AtomicU64,
    first_error: Mutex<Option<String>>,
    /// Streams per company id.
    streams_per_company: HashMap<String, u64>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    connect_s: Mutex<f64>,
    rss_before_mb: Option<f64>,
    rss_connected_mb: Mutex<Option<f64>>,
    clients: usize,
}

impl LiveWatch {
    /// Opens `config.clients` streams round-robin over `company_ids` with the operator's
    /// token and waits (up to `connect_wait`) until each has its first message.
    pub async fn open(
        server: &str,
        token: &str,
        company_ids: &[String],
        config: &LiveConfig,
        connect_wait: Duration,
    ) -> Result<Arc<LiveWatch>, ClientError> {
        let base = server.trim_end_matches('/').to_string();
        // No overall timeout: the streams are meant to stay open.
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(0)
            .build()
            .map_err(|source| ClientError::Transport {
                url: base.clone(),
                source,
            })?;
        let mut streams_per_company: HashMap<String, u64> = HashMap::new();
        let targets: Vec<String> = (0..config.clients)
            .filter_map(|i| company_ids.get(i % company_ids.len().max(1)).cloned())
            .collect();
        for c in &targets {
            *streams_per_company.entry(c.clone()).or_default() += 1;
        }
        let watch = Arc::new(LiveWatch {
            accepted: Mutex::new(HashMap::new()),
            early: Mutex::new(HashMap::new()),
            delays: Recorder::new(),
            received: AtomicU64::new(0),
            connected: AtomicUsize::new(0),
            errors: AtomicU64::new(0),
            first_error: Mutex::new(None),
            streams_per_company,
            tasks: Mutex::new(Vec::new()),
            connect_s: Mutex::new(0.0),
            rss_before_mb: config.server_pid.and_then(resident_mb),
            rss_connected_mb: Mutex::new(None),
            clients: targets.len(),
        });
        let started = Instant::now();
        for company in targets {
            let url = format!("{base}/api/v1/companies/{company}/events");
            let task = tokio::spawn(hold_stream(
                http.clone(),
                url,
                token.to_string(),
                Arc::clone(&watch),
            ));
            watch.tasks.lock().push(task);
        }
        let deadline = started + connect_wait;
        while watch.connected.load(Ordering::Relaxed) < watch.clients
            && Instant::now() < deadline
            && (watch.connected.load(Ordering::Relaxed) as u64
                + watch.errors.load(Ordering::Relaxed))
                < watch.clients as u64
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        *watch.connect_s.lock() = started.elapsed().as_secs_f64();
        // Let the server settle its per-stream state before reading its memory.
        tokio::time::sleep(Duration::from_millis(500)).await;
        *watch.rss_connected_mb.lock() = config.server_pid.and_then(resident_mb);
        Ok(watch)
    }

    /// A measured report was accepted now.
    pub fn accepted(&self, report_id: Uuid) {
        let now = Instant::now();
        if let Some(arrivals) = self.early.lock().remove(&report_id) {
            // Processed and pushed before the 202 reached us: the delay is (at most) zero.
            for _ in arrivals {
                self.received.fetch_add(1, Ordering::Relaxed);
                self.delays.record(Duration::ZERO);
            }
        }
        self.accepted.lock().insert(report_id, now);
    }

    fn delivered(&self, report_id: Uuid) {
        let now = Instant::now();
        let at = self.accepted.lock().get(&report_id).copied();
        match at {
            Some(at) => {
                self.received.fetch_add(1, Ordering::Relaxed);
                self.delays.record(now.saturating_duration_since(at));
            }
            None => {
                // A warm-up report, or one whose 202 is still on its way.
                self.early.lock().entry(report_id).or_default().push(now);
            }
        }
    }

    fn failed(&self, message: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_error.lock();
        if first.is_none() {
            *first = Some(message);
        }
    }

    /// Waits up to `grace` for the outstanding deliveries, closes the streams and sums up.
    /// `measured` lists the company of every measured accepted report.
    pub async fn finish(&self, measured: &[String], grace: Duration) -> LiveReport {
        let expected: u64 = measured
            .iter()
            .map(|c| self.streams_per_company.get(c).copied().unwrap_or(0))
            .sum();
        let deadline = Instant::now() + grace;
        while self.received.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for task in self.tasks.lock().drain(..) {
            task.abort();
        }
        LiveReport {
            clients: self.clients,
            connected: self.connected.load(Ordering::Relaxed),
            connect_s: *self.connect_s.lock(),
            deliveries_expected: expected,
            deliveries_received: self.received.load(Ordering::Relaxed),
            accepted_to_event_ms: self.delays.summary_ms(),
            server_rss_before_mb: self.rss_before_mb,
            server_rss_connected_mb: *self.rss_connected_mb.lock(),
            stream_errors: self.errors.load(Ordering::Relaxed),
            first_error: self.first_error.lock().clone(),
        }
    }
}

/// One client: reads the stream until it ends or the task is aborted.
async fn hold_stream(http: reqwest::Client, url: String, token: String, watch: Arc<LiveWatch>) {
    let response = match http
        .get(&url)
        .bearer_auth(&token)
        .header("Accept", "text/event-stream")
        .send()
        .await
    {
        Ok(r) if r.status().is_success() => r,
        Ok(r) => return watch.failed(format!("GET {url}: {}", r.status())),
        Err(e) => return watch.failed(format!("GET {url}: {e}")),
    };
    let mut body = response.bytes_stream();
    let mut parser = SseParser::default();
    let mut first = true;
    while let Some(chunk) = body.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => return watch.failed(format!("reading {url}: {e}")),
        };
        for message in parser.feed(&chunk) {
            if first {
                first = false;
                watch.connected.fetch_add(1, Ordering::Relaxed);
            }
            if message.event == "report.processed" {
                let id = serde_json::from_str::<serde_json::Value>(&message.data)
                    .ok()
                    .and_then(|v| v.get("report_id")?.as_str()?.parse::<Uuid>().ok());
                if let Some(id) = id {
                    watch.delivered(id);
                }
            }
        }
    }
}

/// One Server-Sent Events message.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SseMessage {
    pub event: String,
    pub data: String,
    pub id: Option<String>,
}

/// Incremental parser of an event stream (comments and unknown fields skipped).
#[derive(Debug, Default)]
pub struct SseParser {
    buffer: Vec<u8>,
    current: SseMessage,
    has_data: bool,
}

impl SseParser {
    /// Feeds bytes; returns the messages they completed.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<SseMessage> {
        self.buffer.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(end) = self.buffer.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.buffer.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if self.has_data || !self.current.event.is_empty() {
                    let mut message = std::mem::take(&mut self.current);
                    if message.event.is_empty() {
                        message.event = "message".into();
                    }
                    out.push(message);
                }
                self.has_data = false;
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line, ""),
            };
            match field {
                "event" => self.current.event = value.to_string(),
                "id" => self.current.id = Some(value.to_string()),
                "data" => {
                    if self.has_data {
                        self.current.data.push('\n');
                    }
                    self.current.data.push_str(value);
                    self.has_data = true;
                }
                _ => {}
            }
        }
        out
    }
}

/// Resident memory of a process in MiB (Linux /proc), if readable.
fn resident_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_split_across_chunks_and_comments_skipped() {
        let mut p = SseParser::default();
        assert!(p
            .feed(b": heartbeat\n\nid: 7\nevent: report.pro")
            .is_empty());
        let got = p.feed(
            b"cessed\ndata: {\"report_id\":\"x\"}\r\n\r\nevent: summary\ndata: a\ndata: b\n\n",
        );
        assert_eq!(
            got,
            vec![
                SseMessage {
                    event: "report.processed".into(),
                    data: "{\"report_id\":\"x\"}".into(),
                    id: Some("7".into()),
                },
                SseMessage {
                    event: "summary".into(),
                    data: "a\nb".into(),
                    id: None,
                },
            ]
        );
    }

    #[test]
    fn a_message_without_event_field_is_a_message() {
        let mut p = SseParser::default();
        let got = p.feed(b"data:x\n\n");
        assert_eq!(got[0].event, "message");
        assert_eq!(got[0].data, "x");
    }
}

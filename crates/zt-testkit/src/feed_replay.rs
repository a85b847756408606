//! A local HTTP server (127.0.0.1:0) that replays feed responses built from the real records
//! in ../shared/data: NVD CVE API 2.0 pages cut from real NVD records, an OSV `all.zip` built
//! from real RustSec files, the real KEV catalog, an EPSS gzip cut from the real snapshot.
//! Used by zt-sync's tests and by the scheduled-sync tests of the `zerotrace` binary.
//!
//! Routes: `/nvd`, `/osv/{ecosystem}/all.zip`, `/kev.json`, `/epss.csv.gz`. Faults are set
//! on the [`Replay`] while it runs: status codes to answer first per route (`failures`), NVD
//! pages from a start index on refused (`nvd_fail_from`), a route down (`down`), a delay per
//! NVD page (`nvd_delay_ms`).

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

use crate::shared_path;

/// One request the replay server answered.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub query: HashMap<String, String>,
    pub headers: HeaderMap,
    pub at: Instant,
}

#[derive(Default)]
pub struct Replay {
    /// Real NVD `cve` objects, in a stable order.
    pub nvd: Vec<Value>,
    pub osv_zip: Vec<u8>,
    pub kev: Vec<u8>,
    pub epss_gz: Vec<u8>,
    /// Status codes to answer before serving normally, per route ("nvd", "osv", "kev").
    pub failures: Mutex<HashMap<&'static str, Vec<StatusCode>>>,
    /// NVD pages at or after this start index answer 503 while set.
    pub nvd_fail_from: Mutex<Option<usize>>,
    /// Routes answering 503 while listed ("nvd", "osv", "kev", "epss").
    pub down: Mutex<HashSet<&'static str>>,
    /// Milliseconds each NVD page takes.
    pub nvd_delay_ms: AtomicU64,
    /// Every request answered (read it with [`Replay::seen`]).
    pub log: Mutex<Vec<Seen>>,
}

pub const OSV_ETAG: &str = "\"osv-v1\"";
pub const KEV_LAST_MODIFIED: &str = "Mon, 25 Aug 2025 17:04:19 GMT";

impl Replay {
    fn record(&self, path: &str, query: HashMap<String, String>, headers: &HeaderMap) {
        self.log.lock().unwrap().push(Seen {
            path: path.to_string(),
            query,
            headers: headers.clone(),
            at: Instant::now(),
        });
    }

    fn injected_failure(&self, route: &'static str) -> Option<Response> {
        if self.down.lock().unwrap().contains(route) {
            return Some(
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [("Retry-After", "0")],
                    "down",
                )
                    .into_response(),
            );
        }
        let mut f = self.failures.lock().unwrap();
        let list = f.get_mut(route)?;
        if list.is_empty() {
            return None;
        }
        let status = list.remove(0);
        Some((status, [("Retry-After", "0")], "try again").into_response())
    }

    /// The requests answered so far whose path starts with `prefix`.
    pub fn seen(&self, prefix: &str) -> Vec<Seen> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.path.starts_with(prefix))
            .cloned()
            .collect()
    }

    pub fn set_down(&self, route: &'static str, down: bool) {
        let mut d = self.down.lock().unwrap();
        if down {
            d.insert(route);
        } else {
            d.remove(route);
        }
    }
}

async fn nvd(
    State(r): State<Arc<Replay>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    r.record("/nvd", q.clone(), &headers);
    let delay = r.nvd_delay_ms.load(Ordering::Relaxed);
    if delay > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
    }
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
    if r.nvd_fail_from
        .lock()
        .unwrap()
        .is_some_and(|from| start >= from)
    {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [("Retry-After", "0")],
            "interrupted",
        )
            .into_response();
    }
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
    if let Some(resp) = r.injected_failure("epss") {
        return resp;
    }
    ([("ETag", "\"epss-1\"")], r.epss_gz.clone()).into_response()
}

/// The real NVD records of two recorded pages (38 + 13).
pub fn nvd_records() -> Vec<Value> {
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

/// An OSV `all.zip` of the first `count` RustSec records (and a broken entry when asked);
/// returns the zip and how many records it holds.
pub fn osv_zip_from_rustsec(count: usize, garbage_entry: bool) -> (Vec<u8>, usize) {
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

/// The first `rows` rows of the real EPSS snapshot, gzipped.
pub fn epss_gz(rows: usize) -> Vec<u8> {
    let gz = std::fs::read(shared_path("epss/epss-snapshot-2026-08-16.csv.gz")).unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut text).unwrap();
    let head: Vec<&str> = text.lines().take(rows + 2).collect();
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(head.join("\n").as_bytes()).unwrap();
    enc.finish().unwrap()
}

/// The real KEV catalog (JSON).
pub fn kev_json() -> Vec<u8> {
    std::fs::read(shared_path("kev/known_exploited_vulnerabilities.json")).unwrap()
}

/// A running replay server; stops when dropped.
pub struct ReplayServer {
    pub replay: Arc<Replay>,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    task: tokio::task::JoinHandle<()>,
}

impl ReplayServer {
    /// Serves `replay` on the current tokio runtime.
    pub async fn start(replay: Replay) -> ReplayServer {
        let replay = Arc::new(replay);
        let app = Router::new()
            .route("/nvd", get(nvd))
            .route("/osv/{eco}/all.zip", get(osv_zip))
            .route("/kev.json", get(kev))
            .route("/epss.csv.gz", get(epss))
            .with_state(replay.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        ReplayServer {
            replay,
            base: format!("http://{addr}"),
            task,
        }
    }

    pub fn nvd_url(&self) -> String {
        format!("{}/nvd", self.base)
    }
    pub fn osv_url(&self) -> String {
        format!("{}/osv", self.base)
    }
    pub fn kev_url(&self) -> String {
        format!("{}/kev.json", self.base)
    }
    pub fn epss_url(&self) -> String {
        format!("{}/epss.csv.gz", self.base)
    }
}

impl Drop for ReplayServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

//! Live events over Server-Sent Events with the real binary, real HTTP and a real streaming
//! client (reqwest): event order, resume with `Last-Event-ID`, `resync` when the gap is gone,
//! heartbeats, who may listen (a foreign company answers 404); on PostgreSQL, a worker
//! process's events reaching the streams of two API processes, and a stream resumed on the
//! other replica. Real advisories (the PyPA OSV data) make real findings.

use std::path::Path;
use std::pin::Pin;
use std::process::Command;
use std::time::{Duration, Instant};

use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{json, Value};
use zt_inventory::{App, AppSource, InventoryReport};
use zt_testkit::{shared_path, ServerProcess, TestDatabase};

mod common;
use common::{bin, create_company, debian_report, post_inventory, post_json};

const ADMIN: &str = "zto_live-events-operator-token-0123456789";

/// One message of an event stream (a comment line has only `comment`).
#[derive(Debug, Clone, Default)]
struct Msg {
    id: Option<String>,
    event: String,
    data: String,
    comment: Option<String>,
}

impl Msg {
    fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }

    fn id(&self) -> u64 {
        self.id.as_deref().unwrap().parse().unwrap()
    }
}

type Bytes = Pin<Box<dyn futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>;

/// A client reading an event stream as it arrives.
struct Sse {
    body: Bytes,
    buf: String,
    /// Everything received so far, comments included, in order.
    seen: Vec<Msg>,
}

/// Opens a stream; the status when it is not one.
async fn connect(
    http: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    last_event_id: Option<&str>,
) -> Result<Sse, (StatusCode, String)> {
    let mut req = http.get(url).header("accept", "text/event-stream");
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(id) = last_event_id {
        req = req.header("last-event-id", id);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    if status != StatusCode::OK {
        return Err((status, resp.text().await.unwrap_or_default()));
    }
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    Ok(Sse {
        body: Box::pin(resp.bytes_stream()),
        buf: String::new(),
        seen: Vec::new(),
    })
}

impl Sse {
    /// The next message or comment, within `timeout`.
    async fn next(&mut self, timeout: Duration) -> Option<Msg> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut msg = Msg::default();
                for line in block.lines().filter(|l| !l.is_empty()) {
                    let (field, value) = line.split_once(':').unwrap_or((line, ""));
                    let value = value.strip_prefix(' ').unwrap_or(value);
                    match field {
                        "" => msg.comment = Some(value.to_string()),
                        "id" => msg.id = Some(value.to_string()),
                        "event" => msg.event = value.to_string(),
                        "data" => msg.data.push_str(value),
                        _ => {}
                    }
                }
                self.seen.push(msg.clone());
                return Some(msg);
            }
            let chunk = tokio::time::timeout_at(deadline, self.body.next())
                .await
                .ok()??
                .expect("stream reads");
            self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// The next message that is not a comment.
    async fn event(&mut self, timeout: Duration) -> Msg {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let msg = self
                .next(left)
                .await
                .unwrap_or_else(|| panic!("no event within {timeout:?}; seen {:?}", self.seen));
            if msg.comment.is_none() {
                return msg;
            }
        }
    }

    /// Messages up to and including the first of `kind` whose data satisfies `pred`.
    async fn until(&mut self, kind: &str, pred: impl Fn(&Value) -> bool) -> Vec<Msg> {
        let mut got = Vec::new();
        loop {
            let m = self.event(Duration::from_secs(30)).await;
            let done = m.event == kind && pred(&m.json());
            got.push(m);
            if done {
                return got;
            }
        }
    }
}

fn zerotrace(store: &[&str], args: &[&str]) {
    let out = Command::new(bin())
        .args(store)
        .args(args)
        .env_remove("ZEROTRACE_DATABASE_URL")
        .output()
        .expect("run zerotrace");
    assert!(
        out.status.success(),
        "zerotrace {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn start(store: &[&str], dir: &Path, name: &str, extra: &[&str]) -> ServerProcess {
    let mut args = store.to_vec();
    args.extend([
        "server",
        "--listen",
        "127.0.0.1:0",
        "--knowledge-poll-secs",
        "0.2",
    ]);
    args.extend_from_slice(extra);
    ServerProcess::start(
        bin(),
        &args,
        &[("ZEROTRACE_ADMIN_TOKEN", ADMIN), ("ZEROTRACE_LOG", "info")],
        dir,
        name,
    )
    .expect("server starts")
}

/// A host with Python packages that have advisories in the PyPA data.
fn report(hostname: &str, django: &str) -> InventoryReport {
    debian_report(
        hostname,
        "",
        vec![
            App::new("django", django, AppSource::Pypi),
            App::new("requests", "2.19.0", AppSource::Pypi),
            App::new("left-pad-py", "1.0.0", AppSource::Pypi),
        ],
    )
}

/// Enrolls a host; returns (agent_id, agent_token).
async fn enroll(http: &reqwest::Client, api: &str, secret: &str, host: &str) -> (String, String) {
    let v = post_json(
        http,
        &format!("{api}/api/v1/enroll"),
        None,
        &json!({"enroll_secret": secret, "hostname": host,
            "os": {"id": "debian", "version_id": "12", "name": ""},
            "arch": "x86_64", "agent_version": "test"}),
    )
    .await;
    (
        v["agent_id"].as_str().unwrap().to_string(),
        v["agent_token"].as_str().unwrap().to_string(),
    )
}

async fn user_token(http: &reqwest::Client, api: &str, company: &str) -> String {
    post_json(
        http,
        &format!("{api}/api/v1/companies/{company}/tokens"),
        Some(ADMIN),
        &json!({"role": "viewer"}),
    )
    .await["token"]
        .as_str()
        .unwrap()
        .to_string()
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
}

/// Ids of log events increase; a summary repeats the position it was sent at.
fn assert_ordered(msgs: &[Msg]) {
    let mut last = 0u64;
    for m in msgs.iter().filter(|m| m.comment.is_none()) {
        let id = m.id();
        if m.event == "summary" || m.event == "resync" {
            assert!(id >= last, "{m:?} after {last}");
        } else {
            assert!(id > last, "{m:?} after {last}");
        }
        last = id;
    }
}

async fn stream_order_resume_resync_heartbeat(store: &[&str], dir: &Path) {
    zerotrace(
        store,
        &[
            "feeds",
            "import",
            shared_path("osv/pypa/vulns").to_str().unwrap(),
        ],
    );
    let server = start(
        store,
        dir,
        "server",
        &[
            "--sse-heartbeat-secs",
            "0.3",
            "--event-retention-hours",
            "0.002",
        ],
    );
    let api = server.url.as_str();
    let http = http();
    let acme = create_company(&http, api, ADMIN, "Acme").await;
    let beta = create_company(&http, api, ADMIN, "Beta").await;
    let (acme_id, beta_id) = (acme["id"].as_str().unwrap(), beta["id"].as_str().unwrap());
    let viewer = user_token(&http, api, acme_id).await;
    let events_of = |c: &str| format!("{api}/api/v1/companies/{c}/events");

    // Who may listen: the company's users and the operator; a foreign or unknown company is
    // 404 alike; agents and anonymous callers are refused.
    let status = |r: Result<Sse, (StatusCode, String)>| r.err().map(|e| e.0);
    assert_eq!(
        status(connect(&http, &events_of(beta_id), Some(&viewer), None).await),
        Some(StatusCode::NOT_FOUND)
    );
    let unknown = uuid::Uuid::new_v4().to_string();
    assert_eq!(
        status(connect(&http, &events_of(&unknown), Some(&viewer), None).await),
        Some(StatusCode::NOT_FOUND)
    );
    assert_eq!(
        status(connect(&http, &events_of(&unknown), Some(ADMIN), None).await),
        Some(StatusCode::NOT_FOUND)
    );
    assert_eq!(
        status(connect(&http, &events_of(acme_id), None, None).await),
        Some(StatusCode::UNAUTHORIZED)
    );
    assert_eq!(
        status(connect(&http, &format!("{api}/api/v1/events"), Some(&viewer), None).await),
        Some(StatusCode::FORBIDDEN)
    );

    let mut live = connect(&http, &events_of(acme_id), Some(&viewer), None)
        .await
        .unwrap();
    let mut operator = connect(&http, &format!("{api}/api/v1/events"), Some(ADMIN), None)
        .await
        .unwrap();
    let first = live.event(Duration::from_secs(10)).await;
    assert_eq!(first.event, "summary");
    assert_eq!(first.json()["agents"], 0);
    assert_eq!(first.json()["company_id"], acme_id);
    // The operator's stream starts with every company's summary.
    let mut companies = vec![
        operator.event(Duration::from_secs(10)).await.json()["company_id"].clone(),
        operator.event(Duration::from_secs(10)).await.json()["company_id"].clone(),
    ];
    companies.sort_by_key(|c| c.as_str().unwrap().to_string());
    let mut expected = vec![json!(acme_id), json!(beta_id)];
    expected.sort_by_key(|c| c.as_str().unwrap().to_string());
    assert_eq!(companies, expected);

    // Heartbeats while nothing happens.
    let comment = live
        .next(Duration::from_secs(5))
        .await
        .expect("a heartbeat");
    assert_eq!(comment.comment.as_deref(), Some("heartbeat"), "{comment:?}");

    // An enrollment and a processed report, in order, then the new counts.
    let (agent_id, agent_token) =
        enroll(&http, api, acme["enroll_secret"].as_str().unwrap(), "web-1").await;
    let enrolled = live.event(Duration::from_secs(10)).await;
    assert_eq!(enrolled.event, "agent.enrolled");
    assert_eq!(enrolled.json()["agent_id"], agent_id.as_str());
    assert_eq!(enrolled.json()["hostname"], "web-1");
    let r1 = report("web-1", "1.11.0");
    assert_eq!(
        post_inventory(&http, api, &agent_token, &r1).await,
        StatusCode::ACCEPTED
    );
    let open_findings = |s: &Value| -> u64 {
        ["critical", "high", "medium", "low", "unknown"]
            .iter()
            .map(|k| s["findings"][k].as_u64().unwrap())
            .sum()
    };
    let msgs = live.until("summary", |s| open_findings(s) > 0).await;
    let processed = msgs
        .iter()
        .find(|m| m.event == "report.processed")
        .expect("report.processed");
    let p = processed.json();
    assert_eq!(p["report_id"], r1.report_id.to_string());
    assert_eq!(p["agent_id"], agent_id.as_str());
    assert_eq!(p["hostname"], "web-1");
    assert_eq!(p["outcome"], "applied");
    let opened = p["opened"].as_u64().unwrap();
    assert!(opened > 5, "django 1.11.0 has many advisories: {p}");
    let changed = msgs
        .iter()
        .find(|m| m.event == "findings.changed")
        .expect("findings.changed")
        .json();
    assert_eq!(changed["opened_total"].as_u64(), Some(opened));
    let items = changed["opened"].as_array().unwrap();
    assert_eq!(items.len() as u64, opened.min(50));
    assert!(items
        .iter()
        .any(|i| i["package"]["name"] == "requests" && i["package"]["version"] == "2.19.0"));
    assert!(items
        .iter()
        .all(|i| i["vuln_id"].is_string() && i["severity"].is_string()));
    let summary = msgs.last().unwrap().json();
    assert_eq!(open_findings(&summary), opened, "{summary}");
    assert_eq!(summary["agents"], 1);
    assert_ordered(&live.seen);
    // The operator saw the same events, tagged with their company.
    let op = operator.until("report.processed", |_| true).await;
    let op_processed = op.last().unwrap();
    assert_eq!(op_processed.id, processed.id);
    assert_eq!(op_processed.json()["company_id"], acme_id);
    assert!(op.iter().any(|m| m.event == "agent.enrolled"));

    // Resume: what happened while the client was away comes exactly once, in order.
    let position = processed.id.clone().unwrap();
    let changed_id = msgs
        .iter()
        .find(|m| m.event == "findings.changed")
        .unwrap()
        .id();
    drop(live);
    let r2 = report("web-1", "1.11.29");
    assert_eq!(
        post_inventory(&http, api, &agent_token, &r2).await,
        StatusCode::ACCEPTED
    );
    let mut op_tail = operator
        .until("report.processed", |p| {
            p["report_id"] == r2.report_id.to_string()
        })
        .await;
    let r2_id = op_tail.pop().unwrap().id();
    let mut resumed = connect(&http, &events_of(acme_id), Some(&viewer), Some(&position))
        .await
        .unwrap();
    let s = resumed.event(Duration::from_secs(10)).await;
    assert_eq!(
        (s.event.as_str(), s.id.as_deref()),
        ("summary", Some(position.as_str()))
    );
    let replay = resumed
        .until("report.processed", |p| {
            p["report_id"] == r2.report_id.to_string()
        })
        .await;
    let ids: Vec<u64> = replay.iter().map(Msg::id).collect();
    assert_eq!(ids.first(), Some(&changed_id), "{replay:?}");
    assert_eq!(ids.last(), Some(&r2_id));
    assert_ordered(&resumed.seen);
    let kinds: Vec<&str> = replay.iter().map(|m| m.event.as_str()).collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "report.processed").count(),
        1
    );

    // An id the log never had: resync, then the stream goes on from now.
    let mut lost = connect(&http, &events_of(acme_id), Some(&viewer), Some("99999999"))
        .await
        .unwrap();
    let m = lost.event(Duration::from_secs(10)).await;
    assert_eq!(m.event, "resync", "{m:?}");
    assert!(m.id() <= r2_id + 10);
    // Events past their retention (here ~7 s) are pruned: resuming before them is a resync.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut old = connect(&http, &events_of(acme_id), Some(&viewer), Some("1"))
            .await
            .unwrap();
        let m = old.event(Duration::from_secs(10)).await;
        if m.event == "resync" {
            break;
        }
        assert!(Instant::now() < deadline, "the log was never pruned: {m:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_stream_order_resume_resync_heartbeat() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let store = ["--data-dir", dir.path().to_str().unwrap()];
    stream_order_resume_resync_heartbeat(&store, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stream_order_resume_resync_heartbeat() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let db = TestDatabase::create();
    let store = [
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--database-url",
        db.url.as_str(),
        "--partitions",
        "4",
    ];
    stream_order_resume_resync_heartbeat(&store, dir.path()).await;
}

/// Two API processes and a worker process share one PostgreSQL: the worker's events reach
/// the streams of both API processes, and a stream resumes on the other replica from the id
/// the first one gave.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_worker_events_reach_every_api_process() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let db = TestDatabase::create();
    let store = [
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--database-url",
        db.url.as_str(),
        "--partitions",
        "4",
    ];
    zerotrace(
        &store,
        &[
            "feeds",
            "import",
            shared_path("osv/pypa/vulns").to_str().unwrap(),
        ],
    );
    let api1 = start(&store, dir.path(), "api-1", &["--role", "api"]);
    let api2 = start(&store, dir.path(), "api-2", &["--role", "api"]);
    let _worker = start(
        &store,
        dir.path(),
        "worker",
        &["--role", "worker", "--workers", "2"],
    );
    let http = http();
    let acme = create_company(&http, &api1.url, ADMIN, "Acme").await;
    let acme_id = acme["id"].as_str().unwrap();
    let viewer = user_token(&http, &api1.url, acme_id).await;
    let mut on1 = connect(
        &http,
        &format!("{}/api/v1/companies/{acme_id}/events", api1.url),
        Some(&viewer),
        None,
    )
    .await
    .unwrap();
    let mut on2 = connect(
        &http,
        &format!("{}/api/v1/events", api2.url),
        Some(ADMIN),
        None,
    )
    .await
    .unwrap();
    assert_eq!(on1.event(Duration::from_secs(10)).await.event, "summary");
    assert_eq!(on2.event(Duration::from_secs(10)).await.event, "summary");

    let (_, token) = enroll(
        &http,
        &api1.url,
        acme["enroll_secret"].as_str().unwrap(),
        "web-1",
    )
    .await;
    let r1 = report("web-1", "1.11.0");
    let sent = Instant::now();
    assert_eq!(
        post_inventory(&http, &api2.url, &token, &r1).await,
        StatusCode::ACCEPTED
    );
    let is_r1 = |p: &Value| p["report_id"] == r1.report_id.to_string();
    let a = on1.until("report.processed", is_r1).await;
    let b = on2.until("report.processed", is_r1).await;
    let waited = sent.elapsed();
    assert_eq!(a.last().unwrap().id, b.last().unwrap().id);
    assert!(a.iter().any(|m| m.event == "agent.enrolled"));
    assert!(b.iter().any(|m| m.event == "agent.enrolled"));
    eprintln!("report accepted → event on both API processes: {waited:?}");

    // Resumed on the other replica after the first one's last id: the next events only.
    let position = a.last().unwrap().id.clone().unwrap();
    drop(on1);
    let r2 = report("web-1", "1.11.29");
    assert_eq!(
        post_inventory(&http, &api1.url, &token, &r2).await,
        StatusCode::ACCEPTED
    );
    let mut resumed = connect(
        &http,
        &format!("{}/api/v1/companies/{acme_id}/events", api2.url),
        Some(&viewer),
        Some(&position),
    )
    .await
    .unwrap();
    let got = resumed
        .until("report.processed", |p| {
            p["report_id"] == r2.report_id.to_string()
        })
        .await;
    assert_ordered(&resumed.seen);
    let first_event = got.iter().find(|m| m.event != "summary").unwrap();
    assert!(first_event.id() > position.parse::<u64>().unwrap());
    assert!(got
        .iter()
        .filter(|m| m.event == "report.processed")
        .all(|m| m.json()["report_id"] == r2.report_id.to_string()));
}

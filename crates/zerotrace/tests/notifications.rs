//! Notifications end to end, with real peers: the real server binary, a real HTTP receiver
//! (an axum server in this test) and a real SMTP server (Python's aiosmtpd). What a receiver
//! checks: the signature (computed here with the hmac crate, not the product's code), the
//! payload, retries after 500s and timeouts with the same delivery id, one message per
//! vulnerability however many hosts, digests, nothing lost or duplicated across a SIGKILL
//! of the server between the commit and the delivery, Slack and Teams payload shapes, refused
//! private destinations, field-naming validation errors and foreign-company 404s.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use std::sync::Mutex;
use zt_inventory::{App, AppSource, InventoryReport};
use zt_testkit::{shared_path, ServerProcess};

mod common;
use common::{bin, create_company, debian_report, enroll, post_inventory, Env};

const ADMIN: &str = "zto_notifications-operator-token-0123456789";
const SECRET: &str = "whsec_test-secret-0123456789";

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Got {
    path: String,
    headers: HeaderMap,
    body: Bytes,
    at: Instant,
}

impl Got {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }
}

/// How the receiver answers a request: by the path and how often this delivery id was seen.
type Behavior = Arc<dyn Fn(&str, usize) -> Answer + Send + Sync>;

#[derive(Clone, Copy)]
enum Answer {
    Ok,
    Fail,
    /// Answers after this long (past the server's deadline).
    Hang(Duration),
}

#[derive(Clone)]
struct Receiver {
    got: Arc<Mutex<Vec<Got>>>,
    behavior: Arc<Mutex<Behavior>>,
    addr: SocketAddr,
}

impl Receiver {
    async fn start(behavior: Behavior) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let r = Receiver {
            got: Arc::default(),
            behavior: Arc::new(Mutex::new(behavior)),
            addr: listener.local_addr().unwrap(),
        };
        let app = axum::Router::new()
            .route("/{*path}", post(receive))
            .with_state(r.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        r
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}/{path}", self.addr)
    }

    fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    fn on(&self, path: &str) -> Vec<Got> {
        self.got().into_iter().filter(|g| g.path == path).collect()
    }

    /// Waits until `done` holds for what was received.
    async fn wait(&self, what: &str, timeout: Duration, done: impl Fn(&[Got]) -> bool) -> Vec<Got> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.got();
            if done(&got) {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not within {timeout:?}; got {:#?}",
                got.iter()
                    .map(|g| (
                        &g.path,
                        g.header("zerotrace-delivery"),
                        String::from_utf8_lossy(&g.body)
                            .chars()
                            .take(300)
                            .collect::<String>()
                    ))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn receive(
    State(r): State<Receiver>,
    axum::extract::Path(path): axum::extract::Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let delivery = headers
        .get("zerotrace-delivery")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let seen = {
        let mut got = r.got.lock().unwrap();
        got.push(Got {
            path: path.clone(),
            headers,
            body,
            at: Instant::now(),
        });
        got.iter()
            .filter(|g| {
                g.path == path && !delivery.is_empty() && g.header("zerotrace-delivery") == delivery
            })
            .count()
    };
    let answer = (r.behavior.lock().unwrap())(&path, seen);
    match answer {
        Answer::Ok => (StatusCode::OK, "ok".into()),
        Answer::Fail => (StatusCode::INTERNAL_SERVER_ERROR, "x".repeat(2000)),
        Answer::Hang(d) => {
            tokio::time::sleep(d).await;
            (StatusCode::OK, "late".into())
        }
    }
}

/// Checks `ZeroTrace-Signature: t=…,v1=…` over the body with the shared secret, independently
/// of the product's code.
fn signature_ok(g: &Got, secret: &str) -> bool {
    let header = g.header("zerotrace-signature");
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", x)) => t = Some(x.to_string()),
            Some(("v1", x)) => v1 = Some(x.to_string()),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    let Ok(ts) = t.parse::<i64>() else {
        return false;
    };
    if (chrono::Utc::now().timestamp() - ts).abs() > 300 {
        return false;
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(&g.body);
    hex::encode(mac.finalize().into_bytes()) == v1
}

fn zerotrace(store: &[&str], args: &[&str]) {
    let mut all = store.to_vec();
    all.extend_from_slice(args);
    let out = Command::new(bin()).args(&all).output().unwrap();
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

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Python packages with advisories in the PyPA data.
fn report(hostname: &str) -> InventoryReport {
    debian_report(
        hostname,
        "",
        vec![
            App::new("django", "3.2.0", AppSource::Pypi),
            App::new("requests", "2.19.0", AppSource::Pypi),
        ],
    )
}

async fn send(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    token: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = http.request(method, url).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn create_rule(http: &reqwest::Client, api: &str, cid: &str, body: Value) -> Value {
    let (status, v) = send(
        http,
        reqwest::Method::POST,
        &format!("{api}/api/v1/companies/{cid}/notification-rules"),
        ADMIN,
        Some(body),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    v
}

/// The company's open vulnerabilities as the findings API lists them.
async fn open_vulns(http: &reqwest::Client, api: &str, cid: &str) -> BTreeSet<String> {
    let (status, v) = send(
        http,
        reqwest::Method::GET,
        &format!("{api}/api/v1/companies/{cid}/findings?limit=1000"),
        ADMIN,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["vulnerability"]["id"].as_str().unwrap().to_string())
        .collect()
}

async fn wait_processed(http: &reqwest::Client, api: &str, cid: &str, hosts: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, v) = send(
            http,
            reqwest::Method::GET,
            &format!("{api}/api/v1/companies/{cid}/agents"),
            ADMIN,
            None,
        )
        .await;
        let done = v["items"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|x| {
                        x["last_seen_at"].is_string() && x["apps"].as_u64().unwrap_or(1) > 0
                    })
                    .count()
            })
            .unwrap_or(0);
        let (_, s) = send(
            http,
            reqwest::Method::GET,
            &format!("{api}/api/v1/companies/{cid}/summary"),
            ADMIN,
            None,
        )
        .await;
        if done >= hosts && s["apps"].as_u64().unwrap_or(0) >= 2 * hosts as u64 {
            return;
        }
        assert!(Instant::now() < deadline, "reports not processed: {v} {s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Delivery ids of the webhook messages per vulnerability (a digest's items each count).
fn by_vuln(got: &[Got]) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for g in got {
        let v = g.json();
        let items: Vec<Value> = match v["data"]["items"].as_array() {
            Some(items) => items.clone(),
            None => vec![v["data"].clone()],
        };
        for i in items {
            if let Some(id) = i["vuln_id"].as_str() {
                out.entry(id.to_string())
                    .or_default()
                    .insert(v["id"].as_str().unwrap().to_string());
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn webhooks_slack_teams_and_email_on_sqlite() {
    let env = Env::sqlite();
    let store = env.store_args();
    zerotrace(
        &store,
        &[
            "feeds",
            "import",
            shared_path("osv/pypa/vulns").to_str().unwrap(),
        ],
    );

    // The receiver: the webhook's first attempt of each message gets a 500, the second one
    // hangs past the server's 1 s deadline, the third succeeds.
    let receiver = Receiver::start(Arc::new(|path: &str, seen: usize| match (path, seen) {
        ("hook", 1) => Answer::Fail,
        ("hook", 2) => Answer::Hang(Duration::from_secs(3)),
        _ => Answer::Ok,
    }))
    .await;
    // A real SMTP server.
    let smtp_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let maildir = env.path().join("maildir");
    let smtpd = Command::new("python3")
        .args([
            "-m",
            "aiosmtpd",
            "-n",
            "-l",
            &format!("127.0.0.1:{smtp_port}"),
            "-c",
            "aiosmtpd.handlers.Mailbox",
        ])
        .arg(&maildir)
        .spawn()
        .expect("python3 -m aiosmtpd (pip install aiosmtpd)");
    let _smtpd = KillOnDrop(smtpd);
    let server = start(
        &store,
        env.path(),
        "server",
        &[
            "--allow-private-webhooks",
            "--notify-timeout-secs",
            "1",
            "--notify-retry-base-secs",
            "0.2",
            "--notify-max-attempts",
            "5",
            "--smtp-url",
            &format!("smtp://127.0.0.1:{smtp_port}"),
            "--smtp-from",
            "ZeroTrace <zt@example.org>",
            "--public-url",
            "https://zt.example.org",
        ],
    );
    let api = server.url.clone();
    let http = http();
    let company = create_company(&http, &api, ADMIN, "Acme").await;
    let cid = company["id"].as_str().unwrap().to_string();
    let secret = company["enroll_secret"].as_str().unwrap().to_string();

    let hook = create_rule(
        &http,
        &api,
        &cid,
        json!({
        "name": "SOC webhook", "events": ["finding.opened"],
        "destination": {"kind": "webhook", "url": receiver.url("hook"), "secret": SECRET}}),
    )
    .await;
    // The secret is never shown again.
    assert_eq!(hook["destination"]["secret_set"], true);
    assert!(!hook.to_string().contains(SECRET), "{hook}");
    let digest = create_rule(
        &http,
        &api,
        &cid,
        json!({
        "name": "Hourly-ish digest", "events": ["finding.opened"], "digest_minutes": 1,
        "destination": {"kind": "webhook", "url": receiver.url("digest")}}),
    )
    .await;
    let slack = create_rule(
        &http,
        &api,
        &cid,
        json!({
        "name": "Slack", "events": ["finding.opened"], "min_severity": "critical",
        "destination": {"kind": "slack", "url": receiver.url("slack/T000/B000/XXXX")}}),
    )
    .await;
    assert_eq!(
        slack["destination"]["url"],
        format!("http://{}/…", receiver.addr),
        "Slack URLs are credentials"
    );
    let teams = create_rule(
        &http,
        &api,
        &cid,
        json!({
        "name": "Teams", "events": ["agent.stale", "report.failed"],
        "destination": {"kind": "teams", "url": receiver.url("teams")}}),
    )
    .await;
    let mail = create_rule(
        &http,
        &api,
        &cid,
        json!({
        "name": "Mail", "events": ["finding.opened"], "digest_minutes": 0, "min_severity": "high",
        "destination": {"kind": "email", "to": ["secops@example.org", "Ops <ops@example.org>"]}}),
    )
    .await;

    // Three hosts with the same vulnerable packages.
    let t0 = Instant::now();
    for h in ["web-1", "web-2", "web-3"] {
        let token = enroll(&http, &api, &secret, h).await;
        assert_eq!(
            post_inventory(&http, &api, &token, &report(h)).await,
            reqwest::StatusCode::ACCEPTED
        );
    }
    wait_processed(&http, &api, &cid, 3).await;
    let vulns = open_vulns(&http, &api, &cid).await;
    assert!(
        vulns.len() >= 2,
        "the PyPA data has advisories for django 3.2.0: {vulns:?}"
    );

    // Every vulnerability reaches the webhook: one delivery id per vulnerability, each
    // tried three times (500, timeout, 200) with the same id and body, signed.
    let got = receiver
        .wait("webhook deliveries", Duration::from_secs(60), |got| {
            let hook: Vec<Got> = got.iter().filter(|g| g.path == "hook").cloned().collect();
            let per = by_vuln(&hook);
            per.len() == vulns.len()
                && hook.len() >= 3 * per.values().map(|d| d.len()).sum::<usize>()
        })
        .await;
    let hook_got: Vec<Got> = got.iter().filter(|g| g.path == "hook").cloned().collect();
    let per = by_vuln(&hook_got);
    assert_eq!(
        per.keys().cloned().collect::<BTreeSet<_>>(),
        vulns,
        "one message per vulnerability"
    );
    for (vuln, ids) in &per {
        assert_eq!(
            ids.len(),
            1,
            "{vuln}: one message however many hosts, got {ids:?}"
        );
    }
    let mut attempts: HashMap<String, Vec<&Got>> = HashMap::new();
    for g in &hook_got {
        assert!(signature_ok(g, SECRET), "bad signature: {:?}", g.headers);
        assert_eq!(g.header("zerotrace-event"), "finding.opened");
        attempts
            .entry(g.header("zerotrace-delivery").to_string())
            .or_default()
            .push(g);
    }
    for (id, tries) in &attempts {
        assert_eq!(tries.len(), 3, "{id}: 500, timeout, then 200");
        assert!(
            tries.windows(2).all(|w| w[0].body == w[1].body),
            "a retry sends the same body"
        );
        // Backoff: the retries wait (0.2 s base, doubled, ±25%) beyond the 1 s deadline.
        assert!(tries[1].at - tries[0].at >= Duration::from_millis(140));
        let body = tries[0].json();
        assert_eq!(body["id"], id.as_str());
        assert_eq!(body["type"], "finding.opened");
        assert_eq!(body["company_id"], cid.as_str());
        assert!(
            chrono::DateTime::parse_from_rfc3339(body["occurred_at"].as_str().unwrap()).is_ok()
        );
        let hosts = body["data"]["host_count"].as_u64().unwrap();
        assert!((1..=3).contains(&hosts), "{body}");
        let vuln = body["data"]["vuln_id"].as_str().unwrap();
        assert_eq!(
            body["data"]["link"],
            format!("https://zt.example.org/c/{cid}/vulnerabilities/{vuln}")
        );
        assert!(["critical", "high", "medium", "low", "unknown"]
            .contains(&body["data"]["severity"].as_str().unwrap()));
    }
    eprintln!(
        "webhook: {} messages delivered (with 2 failed attempts each) {:?} after the reports",
        attempts.len(),
        t0.elapsed()
    );

    // The delivery log has every attempt: retry, retry, sent per message; the receiver's
    // answer cut to 512 bytes.
    let (status, log) = send(
        &http,
        reqwest::Method::GET,
        &format!(
            "{api}/api/v1/companies/{cid}/notification-deliveries?rule_id={}&limit=1000",
            hook["id"].as_str().unwrap()
        ),
        ADMIN,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let items = log["items"].as_array().unwrap();
    for id in attempts.keys() {
        let mut outcomes: Vec<(u64, &str)> = items
            .iter()
            .filter(|d| d["delivery_id"] == id.as_str())
            .map(|d| {
                (
                    d["attempt"].as_u64().unwrap(),
                    d["outcome"].as_str().unwrap(),
                )
            })
            .collect();
        outcomes.sort();
        assert_eq!(
            outcomes,
            vec![(1, "retry"), (2, "retry"), (3, "sent")],
            "{id}: {log}"
        );
    }
    let first = items.iter().find(|d| d["attempt"] == 1).unwrap();
    assert_eq!(first["status"], 500);
    assert_eq!(first["response_excerpt"].as_str().unwrap().len(), 512);
    assert!(
        items
            .iter()
            .any(|d| d["attempt"] == 2 && d["status"].is_null() && d["error"].is_string()),
        "the timeout is logged: {:?}",
        items
            .iter()
            .filter(|d| d["attempt"] == 2)
            .take(2)
            .collect::<Vec<_>>()
    );

    // Slack: only critical ones; Block Kit shape (text + blocks of known types).
    let critical: usize = {
        let (_, v) = send(
            &http,
            reqwest::Method::GET,
            &format!("{api}/api/v1/companies/{cid}/vulnerabilities?severity=critical&limit=1000"),
            ADMIN,
            None,
        )
        .await;
        v["items"].as_array().map(|a| a.len()).unwrap_or(0)
    };
    let (status, tested) = send(
        &http,
        reqwest::Method::POST,
        &format!(
            "{api}/api/v1/companies/{cid}/notification-rules/{}/test",
            slack["id"].as_str().unwrap()
        ),
        ADMIN,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{tested}");
    assert_eq!(tested["ok"], true, "{tested}");
    let slack_got = receiver
        .wait("slack", Duration::from_secs(30), |g| {
            g.iter().filter(|g| g.path.starts_with("slack/")).count() > critical
        })
        .await;
    for g in slack_got.iter().filter(|g| g.path.starts_with("slack/")) {
        let v = g.json();
        assert!(!v["text"].as_str().unwrap().is_empty());
        let blocks = v["blocks"].as_array().unwrap();
        assert_eq!(blocks[0]["type"], "header");
        assert_eq!(blocks[0]["text"]["type"], "plain_text");
        assert!(blocks[0]["text"]["text"].as_str().unwrap().chars().count() <= 150);
        for b in blocks {
            match b["type"].as_str().unwrap() {
                "header" => {}
                "section" => {
                    assert_eq!(b["text"]["type"], "mrkdwn");
                    assert!(b["text"]["text"].as_str().unwrap().len() <= 3000);
                }
                "context" => assert!(b["elements"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|e| e["type"] == "mrkdwn")),
                other => panic!("unexpected block type {other}"),
            }
        }
        assert!(g.headers.get("zerotrace-signature").is_none());
    }
    assert!(slack_got.iter().any(|g| g.path.starts_with("slack/")
        && g.json()["text"]
            .as_str()
            .unwrap()
            .contains("(test message)")));

    // Teams: the sample of its first event as an Adaptive Card in the message envelope.
    let (status, tested) = send(
        &http,
        reqwest::Method::POST,
        &format!(
            "{api}/api/v1/companies/{cid}/notification-rules/{}/test",
            teams["id"].as_str().unwrap()
        ),
        ADMIN,
        None,
    )
    .await;
    assert_eq!(
        (status, tested["ok"].clone()),
        (StatusCode::OK, json!(true)),
        "{tested}"
    );
    let teams_got = receiver.on("teams");
    assert_eq!(teams_got.len(), 1);
    let v = teams_got[0].json();
    assert_eq!(v["type"], "message");
    let att = &v["attachments"][0];
    assert_eq!(
        att["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    assert_eq!(att["content"]["type"], "AdaptiveCard");
    assert_eq!(
        att["content"]["$schema"],
        "http://adaptivecards.io/schemas/adaptive-card.json"
    );
    assert!(att["content"]["version"]
        .as_str()
        .unwrap()
        .starts_with("1."));
    let body = att["content"]["body"].as_array().unwrap();
    assert!(
        body[0]["text"]
            .as_str()
            .unwrap()
            .starts_with("Host stopped reporting"),
        "{v}"
    );
    assert!(body
        .iter()
        .all(|e| ["TextBlock", "FactSet"].contains(&e["type"].as_str().unwrap())));
    assert_eq!(att["content"]["actions"][0]["type"], "Action.OpenUrl");

    // E-mail: one message per high or critical vulnerability, in the real SMTP server's
    // mailbox, to both recipients.
    let high: BTreeSet<String> = {
        let (_, v) = send(
            &http,
            reqwest::Method::GET,
            &format!("{api}/api/v1/companies/{cid}/vulnerabilities?limit=1000"),
            ADMIN,
            None,
        )
        .await;
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|x| ["critical", "high"].contains(&x["severity"].as_str().unwrap_or("")))
            .map(|x| x["id"].as_str().unwrap().to_string())
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let mails = loop {
        let mails: Vec<String> = std::fs::read_dir(maildir.join("new"))
            .map(|d| {
                d.filter_map(|e| std::fs::read_to_string(e.unwrap().path()).ok())
                    .collect()
            })
            .unwrap_or_default();
        if mails.len() >= high.len() || Instant::now() > deadline {
            break mails;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        mails.len(),
        high.len(),
        "one e-mail per high/critical vulnerability"
    );
    for m in &mails {
        assert!(
            m.contains("To: secops@example.org, Ops <ops@example.org>")
                || m.contains("To: secops@example.org,"),
            "{m}"
        );
        assert!(m.contains("From: ZeroTrace <zt@example.org>"), "{m}");
        assert!(m.contains("Subject: [ZeroTrace] New vulnerability:"), "{m}");
        assert!(high.iter().any(|v| m.contains(v.as_str())), "{m}");
    }
    let (_, log) = send(
        &http,
        reqwest::Method::GET,
        &format!(
            "{api}/api/v1/companies/{cid}/notification-deliveries?rule_id={}",
            mail["id"].as_str().unwrap()
        ),
        ADMIN,
        None,
    )
    .await;
    assert!(
        log["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["outcome"] == "sent" && d["status"] == 250),
        "{log}"
    );

    // The digest: after its minute, one message with every vulnerability and all three hosts.
    let digest_got = receiver
        .wait("digest", Duration::from_secs(120), |g| {
            g.iter().any(|g| g.path == "digest")
        })
        .await;
    let digests: Vec<&Got> = digest_got.iter().filter(|g| g.path == "digest").collect();
    assert_eq!(digests.len(), 1, "one digest");
    let d = digests[0].json();
    let items = d["data"]["items"].as_array().unwrap();
    assert_eq!(
        items
            .iter()
            .map(|i| i["vuln_id"].as_str().unwrap().to_string())
            .collect::<BTreeSet<_>>(),
        vulns
    );
    assert!(items.iter().all(|i| i["host_count"] == 3), "{d}");
    assert!(
        digests[0].at - t0 >= Duration::from_secs(55),
        "a digest waits its interval"
    );
    assert!(
        digests[0].headers.get("zerotrace-signature").is_none(),
        "no secret, no signature"
    );
    let _ = digest;

    // Metrics.
    let metrics = http
        .get(format!("{api}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "notifications_sent_total",
        "notifications_failed_total",
        "notification_outbox_backlog",
        "notification_outbox_oldest_age_seconds",
    ] {
        assert!(
            metrics.contains(&format!("# HELP {name} ")),
            "{name} documented"
        );
    }
    let sent_webhook: f64 = metrics
        .lines()
        .find(|l| l.starts_with("notifications_sent_total{kind=\"webhook\"}"))
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(sent_webhook >= attempts.len() as f64 + 1.0);
}

/// Stops a helper process however the test ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_are_validated_private_destinations_refused_and_foreign_ids_404() {
    let env = Env::sqlite();
    let store = env.store_args();
    // No --allow-private-webhooks here.
    let server = start(&store, env.path(), "server", &[]);
    let api = server.url.clone();
    let http = http();
    let a = create_company(&http, &api, ADMIN, "A").await;
    let b = create_company(&http, &api, ADMIN, "B").await;
    let (ca, cb) = (
        a["id"].as_str().unwrap().to_string(),
        b["id"].as_str().unwrap().to_string(),
    );
    let rules = |c: &str| format!("{api}/api/v1/companies/{c}/notification-rules");
    let token = |c: &str, role: &str| {
        let http = http.clone();
        let url = format!("{api}/api/v1/companies/{c}/tokens");
        let role = role.to_string();
        async move {
            let (s, v) = send(
                &http,
                reqwest::Method::POST,
                &url,
                ADMIN,
                Some(json!({"role": role})),
            )
            .await;
            assert_eq!(s, StatusCode::CREATED);
            v["token"].as_str().unwrap().to_string()
        }
    };
    let (admin_a, viewer_a, admin_b) = (
        token(&ca, "admin").await,
        token(&ca, "viewer").await,
        token(&cb, "admin").await,
    );
    let post = |c: &str, tok: &str, body: Value| {
        let (http, url, tok) = (http.clone(), rules(c), tok.to_string());
        async move { send(&http, reqwest::Method::POST, &url, &tok, Some(body)).await }
    };
    let field = |v: &Value| v["error"]["field"].as_str().unwrap_or("").to_string();

    // Private, loopback and link-local destinations are refused, by address and by name.
    for url in [
        "http://127.0.0.1:9/hook",
        "http://localhost:9/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.5/",
        "http://192.168.1.10/",
        "http://[::1]/",
        "http://[fd00::1]/",
    ] {
        let (s, v) = post(&ca, &admin_a, json!({"name": "x", "events": ["finding.opened"], "destination": {"kind": "webhook", "url": url}})).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{url}: {v}");
        assert_eq!(field(&v), "destination.url", "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("--allow-private-webhooks"),
            "{v}"
        );
    }
    // Malformed input names the field.
    for (body, f) in [
        (
            json!({"name": "x", "events": ["finding.opened", "finding.nope"], "destination": {"kind": "webhook", "url": "https://203.0.113.7/h"}}),
            "events[1]",
        ),
        (
            json!({"name": "x", "events": [], "destination": {"kind": "webhook", "url": "https://203.0.113.7/h"}}),
            "events",
        ),
        (
            json!({"name": "", "events": ["finding.opened"], "destination": {"kind": "webhook", "url": "https://203.0.113.7/h"}}),
            "name",
        ),
        (
            json!({"name": "x", "events": ["finding.opened"], "min_severity": "severe", "destination": {"kind": "webhook", "url": "https://203.0.113.7/h"}}),
            "min_severity",
        ),
        (
            json!({"name": "x", "events": ["finding.opened"], "digest_minutes": 5000, "destination": {"kind": "webhook", "url": "https://203.0.113.7/h"}}),
            "digest_minutes",
        ),
        (
            json!({"name": "x", "events": ["finding.opened"], "destination": {"kind": "pager", "url": "https://203.0.113.7/h"}}),
            "destination.kind",
        ),
        (
            json!({"name": "x", "events": ["finding.opened"], "destination": {"kind": "webhook"}}),
            "destination.url",
        ),
        (
            json!({"name": "x", "events": ["finding.opened"], "destination": {"kind": "webhook", "url": "ftp://203.0.113.7/h"}}),
            "destination.url",
        ),
        (
            json!({"name": "x", "events": ["finding.opened"], "destination": {"kind": "email", "to": ["not-an-address"]}}),
            "destination.to[0]",
        ),
        (
            json!({"name": "x", "events": ["finding.opened"], "destination": {"kind": "slack", "url": "https://203.0.113.7/h", "secret": "abcdefgh1"}}),
            "destination.secret",
        ),
        (
            json!({"name": "x", "events": ["finding.opened"], "kev_only": "yes", "destination": {"kind": "webhook", "url": "https://203.0.113.7/h"}}),
            "kev_only",
        ),
    ] {
        let (s, v) = post(&ca, &admin_a, body.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert_eq!(field(&v), f, "{body}: {v}");
    }
    let (s, v) = send(&http, reqwest::Method::POST, &rules(&ca), &admin_a, None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    // Nothing of that was stored.
    let (_, list) = send(&http, reqwest::Method::GET, &rules(&ca), &admin_a, None).await;
    assert_eq!(list["items"], json!([]));

    // A public destination is accepted (an address literal: no DNS needed).
    let (s, rule) = post(&ca, &admin_a, json!({"name": "public", "events": ["finding.kev"], "kev_only": true,
        "destination": {"kind": "webhook", "url": "https://203.0.113.7/hook", "secret": "whsec_0123456789"}})).await;
    assert_eq!(s, StatusCode::CREATED, "{rule}");
    let rid = rule["id"].as_str().unwrap().to_string();
    let one = |c: &str, r: &str| format!("{api}/api/v1/companies/{c}/notification-rules/{r}");
    // A viewer reads but does not write.
    let (s, _) = send(
        &http,
        reqwest::Method::GET,
        &one(&ca, &rid),
        &viewer_a,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = post(&ca, &viewer_a, json!({"name": "v", "events": ["finding.kev"], "destination": {"kind": "webhook", "url": "https://203.0.113.7/h"}})).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = send(
        &http,
        reqwest::Method::DELETE,
        &one(&ca, &rid),
        &viewer_a,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // PATCH keeps the secret unless given, and validates like POST.
    let (s, v) = send(
        &http,
        reqwest::Method::PATCH,
        &one(&ca, &rid),
        &admin_a,
        Some(json!({"name": "renamed", "min_severity": "high"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (
            v["name"].clone(),
            v["min_severity"].clone(),
            v["destination"]["secret_set"].clone()
        ),
        (json!("renamed"), json!("high"), json!(true))
    );
    let (s, v) = send(
        &http,
        reqwest::Method::PATCH,
        &one(&ca, &rid),
        &admin_a,
        Some(json!({"events": ["nope"]})),
    )
    .await;
    assert_eq!(
        (s, field(&v)),
        (StatusCode::BAD_REQUEST, "events[0]".to_string())
    );
    let (_, v) = send(&http, reqwest::Method::GET, &one(&ca, &rid), &admin_a, None).await;
    assert_eq!(
        v["events"],
        json!(["finding.kev"]),
        "a refused PATCH changes nothing"
    );

    // Company B's admin: every route with A's rule answers 404, under A's id and under B's.
    for c in [&ca, &cb] {
        for (m, path, body) in [
            (reqwest::Method::GET, one(c, &rid), None),
            (
                reqwest::Method::PATCH,
                one(c, &rid),
                Some(json!({"name": "stolen"})),
            ),
            (reqwest::Method::DELETE, one(c, &rid), None),
            (
                reqwest::Method::POST,
                format!("{}/test", one(c, &rid)),
                None,
            ),
        ] {
            let (s, v) = send(&http, m.clone(), &path, &admin_b, body).await;
            assert_eq!(s, StatusCode::NOT_FOUND, "{m} {path}: {v}");
        }
    }
    let (s, _) = send(&http, reqwest::Method::GET, &rules(&ca), &admin_b, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = send(
        &http,
        reqwest::Method::GET,
        &format!("{api}/api/v1/companies/{ca}/notification-deliveries"),
        &admin_b,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, v) = send(
        &http,
        reqwest::Method::GET,
        &format!("{api}/api/v1/companies/{cb}/notification-deliveries?rule_id={rid}"),
        &admin_b,
        None,
    )
    .await;
    assert_eq!((s, v["items"].clone()), (StatusCode::OK, json!([])));
    let (s, v) = send(
        &http,
        reqwest::Method::GET,
        &format!("{api}/api/v1/companies/{ca}/notification-deliveries?cursor=abc"),
        &admin_a,
        None,
    )
    .await;
    assert_eq!(
        (s, field(&v)),
        (StatusCode::BAD_REQUEST, "cursor".to_string())
    );
    // A random rule id is as missing as a foreign one.
    let (s, _) = send(
        &http,
        reqwest::Method::GET,
        &one(&ca, &uuid::Uuid::new_v4().to_string()),
        &admin_a,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // The dashboard page lists the rule (never its secret) for A's viewer, and is 404 for B.
    let page = |tok: String| {
        let (http, api, ca) = (http.clone(), api.clone(), ca.clone());
        async move {
            let signed = http
                .post(format!("{api}/api/v1/session"))
                .json(&json!({"token": tok}))
                .send()
                .await
                .unwrap();
            assert_eq!(signed.status().as_u16(), 200);
            let cookie = signed.headers()["set-cookie"]
                .to_str()
                .unwrap()
                .split(';')
                .next()
                .unwrap()
                .to_string();
            let resp = http
                .get(format!("{api}/c/{ca}/notifications"))
                .header("cookie", cookie)
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        }
    };
    let (s, html) = page(viewer_a.clone()).await;
    assert_eq!(s, 200, "{html}");
    assert!(
        html.contains("renamed") && html.contains("https://203.0.113.7/hook"),
        "{html}"
    );
    assert!(!html.contains("whsec_0123456789"));
    assert_eq!(page(admin_b.clone()).await.0, 404);
    let (s, _) = send(
        &http,
        reqwest::Method::DELETE,
        &one(&ca, &rid),
        &admin_a,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = send(&http, reqwest::Method::GET, &one(&ca, &rid), &admin_a, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

/// The server is killed (SIGKILL) while the receiver holds its requests (the messages are
/// committed and leased, their delivery not recorded), then started again: every message
/// arrives, with the delivery id it had, and none under a second id.
async fn sigkill_between_commit_and_delivery(env: &Env, servers: usize) {
    let store = env.store_args();
    zerotrace(
        &store,
        &[
            "feeds",
            "import",
            shared_path("osv/pypa/vulns").to_str().unwrap(),
        ],
    );
    let hold = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let h = hold.clone();
    let receiver = Receiver::start(Arc::new(move |_: &str, _| {
        if h.load(std::sync::atomic::Ordering::SeqCst) {
            Answer::Hang(Duration::from_secs(30))
        } else {
            Answer::Ok
        }
    }))
    .await;
    let args = [
        "--allow-private-webhooks",
        "--notify-timeout-secs",
        "2",
        "--notify-retry-base-secs",
        "0.2",
    ];
    let mut first: Vec<ServerProcess> = (0..servers)
        .map(|i| start(&store, env.path(), &format!("first-{i}"), &args))
        .collect();
    let api = first[0].url.clone();
    let http = http();
    let company = create_company(&http, &api, ADMIN, "Killed").await;
    let cid = company["id"].as_str().unwrap().to_string();
    let secret = company["enroll_secret"].as_str().unwrap().to_string();
    create_rule(
        &http,
        &api,
        &cid,
        json!({"name": "hook", "events": ["finding.opened"],
        "destination": {"kind": "webhook", "url": receiver.url("hook"), "secret": SECRET}}),
    )
    .await;
    for h in ["db-1", "db-2"] {
        let token = enroll(&http, &api, &secret, h).await;
        assert_eq!(
            post_inventory(&http, &api, &token, &report(h)).await,
            reqwest::StatusCode::ACCEPTED
        );
    }
    wait_processed(&http, &api, &cid, 2).await;
    let vulns = open_vulns(&http, &api, &cid).await;
    // Some deliveries are in flight (held by the receiver): kill every server now.
    receiver
        .wait("first attempts", Duration::from_secs(30), |g| !g.is_empty())
        .await;
    for s in &mut first {
        s.kill();
    }
    let before: BTreeMap<String, BTreeSet<String>> = by_vuln(&receiver.got());
    hold.store(false, std::sync::atomic::Ordering::SeqCst);
    let second: Vec<ServerProcess> = (0..servers)
        .map(|i| start(&store, env.path(), &format!("second-{i}"), &args))
        .collect();
    let api = second[0].url.clone();
    // After the killed leases expire (2 × 2 s + 5 s), every vulnerability arrives.
    let got = receiver
        .wait(
            "every vulnerability after the restart",
            Duration::from_secs(90),
            |g| {
                let ok: Vec<Got> = g
                    .iter()
                    .filter(|x| x.at.elapsed() < Duration::from_secs(3600))
                    .cloned()
                    .collect();
                by_vuln(&ok).len() == vulns.len()
            },
        )
        .await;
    let after = by_vuln(&got);
    assert_eq!(
        after.keys().cloned().collect::<BTreeSet<_>>(),
        vulns,
        "nothing lost"
    );
    for (vuln, ids) in &after {
        assert_eq!(
            ids.len(),
            1,
            "{vuln} under one delivery id, never a second message: {ids:?}"
        );
        if let Some(earlier) = before.get(vuln) {
            assert_eq!(earlier, ids, "{vuln}: redelivered with the id it had");
        }
    }
    // The log ends each message as sent, exactly once.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, log) = send(
            &http,
            reqwest::Method::GET,
            &format!("{api}/api/v1/companies/{cid}/notification-deliveries?limit=1000"),
            ADMIN,
            None,
        )
        .await;
        let sent: Vec<&Value> = log["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["outcome"] == "sent")
            .collect();
        let ids: BTreeSet<&str> = sent
            .iter()
            .map(|d| d["delivery_id"].as_str().unwrap())
            .collect();
        if sent.len() == vulns.len() {
            assert_eq!(ids.len(), vulns.len(), "each message sent once: {log}");
            break;
        }
        assert!(
            Instant::now() < deadline && sent.len() < vulns.len(),
            "sent {} of {}: {log}",
            sent.len(),
            vulns.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The backlog gauge drains to 0.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let metrics = http
            .get(format!("{api}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if metrics
            .lines()
            .any(|l| l == "notification_outbox_backlog 0")
        {
            break;
        }
        assert!(Instant::now() < deadline, "{metrics}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_between_commit_and_delivery_on_sqlite() {
    sigkill_between_commit_and_delivery(&Env::sqlite(), 1).await;
}

/// Two server processes share the database: each message is delivered by one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_between_commit_and_delivery_on_postgres_with_two_servers() {
    sigkill_between_commit_and_delivery(&Env::postgres(), 2).await;
}

/// The webhook messages of one rule (its receiver path), as (event, subject) → host counts of
/// each message about it, in arrival order.
fn events_on(receiver: &Receiver, path: &str) -> BTreeMap<(String, String), Vec<u64>> {
    let mut out: BTreeMap<(String, String), Vec<u64>> = BTreeMap::new();
    for g in receiver.on(path) {
        assert!(signature_ok(&g, SECRET), "signed: {g:?}");
        let v = g.json();
        let data = &v["data"];
        let subject = data["vuln_id"]
            .as_str()
            .or(data["source"].as_str())
            .unwrap_or("?")
            .to_string();
        out.entry((v["type"].as_str().unwrap().to_string(), subject))
            .or_default()
            .push(data["host_count"].as_u64().unwrap_or(0));
    }
    out
}

async fn agent_ids(http: &reqwest::Client, api: &str, cid: &str) -> BTreeMap<String, String> {
    let (_, v) = send(
        http,
        reqwest::Method::GET,
        &format!("{api}/api/v1/companies/{cid}/agents?limit=100"),
        ADMIN,
        None,
    )
    .await;
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["hostname"].as_str().unwrap().to_string(),
                a["agent_id"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Events of time and decisions, to a real receiver: SLA crossings (each finding told once,
/// per vulnerability), an analysis expiring, suppressed findings never notifying, and a rule
/// with host tags hearing of its hosts only.
async fn sla_expiry_suppression_and_tags(env: &Env) {
    let store = env.store_args();
    zerotrace(
        &store,
        &[
            "feeds",
            "import",
            shared_path("osv/pypa/vulns").to_str().unwrap(),
        ],
    );
    let receiver = Receiver::start(Arc::new(|_: &str, _| Answer::Ok)).await;
    let server = start(
        &store,
        env.path(),
        "events",
        &["--allow-private-webhooks", "--notify-scan-secs", "0.5"],
    );
    let api = server.url.clone();
    let http = http();
    let company = create_company(&http, &api, ADMIN, "Timely").await;
    let cid = company["id"].as_str().unwrap().to_string();
    let secret = company["enroll_secret"].as_str().unwrap().to_string();
    let web = enroll(&http, &api, &secret, "web-1").await;
    let db = enroll(&http, &api, &secret, "db-2").await;
    // web-1 reports before any rule: its findings are no news to anyone.
    assert_eq!(
        post_inventory(&http, &api, &web, &report("web-1")).await,
        reqwest::StatusCode::ACCEPTED
    );
    wait_processed(&http, &api, &cid, 1).await;
    let vulns: Vec<String> = open_vulns(&http, &api, &cid).await.into_iter().collect();
    assert!(vulns.len() >= 4, "{vulns:?}");
    let (hidden, expiring) = (vulns[0].clone(), vulns[1].clone());
    let company_url = |p: &str| format!("{api}/api/v1/companies/{cid}/{p}");
    for (vuln, expires_at) in [
        (&hidden, None),
        (
            &expiring,
            Some((chrono::Utc::now() + chrono::Duration::seconds(8)).to_rfc3339()),
        ),
    ] {
        let (s, v) = send(
            &http,
            reqwest::Method::POST,
            &company_url("analyses"),
            ADMIN,
            Some(json!({"vuln_id": vuln, "state": "not_affected",
                "justification": "code_not_present", "suppress": true, "expires_at": expires_at})),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }
    // Every finding is due within 7 days under this policy: "due soon" at once.
    let (s, v) = send(
        &http,
        reqwest::Method::PUT,
        &company_url("sla"),
        ADMIN,
        Some(
            json!({"critical_days": 7, "high_days": 7, "medium_days": 7, "low_days": 7,
            "unknown_days": 7, "kev_uses_cisa_due_date": true}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let ids = agent_ids(&http, &api, &cid).await;
    let (s, v) = send(
        &http,
        reqwest::Method::PUT,
        &company_url(&format!("agents/{}/tags", ids["db-2"])),
        ADMIN,
        Some(json!({"tags": ["prod"]})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    create_rule(
        &http,
        &api,
        &cid,
        json!({"name": "all", "events": ["finding.opened", "sla.due_soon", "analysis.expired"],
        "destination": {"kind": "webhook", "url": receiver.url("all"), "secret": SECRET}}),
    )
    .await;
    create_rule(
        &http,
        &api,
        &cid,
        json!({"name": "prod", "events": ["finding.opened"], "tags": ["prod"],
        "destination": {"kind": "webhook", "url": receiver.url("prod"), "secret": SECRET}}),
    )
    .await;
    assert_eq!(
        post_inventory(&http, &api, &db, &report("db-2")).await,
        reqwest::StatusCode::ACCEPTED
    );
    wait_processed(&http, &api, &cid, 2).await;
    let shown: Vec<&String> = vulns
        .iter()
        .filter(|v| **v != hidden && **v != expiring)
        .collect();
    // Until: the expiry told, and each vulnerability's findings on both hosts told "due soon"
    // (the expired one's too, once its findings are back).
    let done = |got: &[Got]| {
        let mine: Vec<Got> = got.iter().filter(|g| g.path == "all").cloned().collect();
        let by: BTreeMap<(String, String), u64> = mine
            .iter()
            .map(|g| g.json())
            .filter(|v| v["type"] == "sla.due_soon" || v["type"] == "analysis.expired")
            .fold(BTreeMap::new(), |mut m, v| {
                *m.entry((
                    v["type"].as_str().unwrap().to_string(),
                    v["data"]["vuln_id"].as_str().unwrap().to_string(),
                ))
                .or_default() += v["data"]["host_count"].as_u64().unwrap_or(0);
                m
            });
        by.contains_key(&("analysis.expired".into(), expiring.clone()))
            && shown
                .iter()
                .chain([&&expiring])
                .all(|v| by.get(&("sla.due_soon".into(), (*v).clone())) == Some(&2))
    };
    receiver
        .wait(
            "SLA crossings and the expiry",
            Duration::from_secs(60),
            done,
        )
        .await;
    // A few more scans: nothing is told twice.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let all = events_on(&receiver, "all");
    for v in &shown {
        assert_eq!(
            all.get(&("finding.opened".into(), (*v).clone())),
            Some(&vec![2]),
            "{v}: one message, both hosts: {all:?}"
        );
    }
    for v in shown.iter().copied().chain([&expiring]) {
        let told: u64 = all[&("sla.due_soon".to_string(), v.clone())].iter().sum();
        assert_eq!(told, 2, "{v}: each finding told once: {all:?}");
    }
    assert_eq!(
        all.get(&("analysis.expired".into(), expiring.clone())),
        Some(&vec![2]),
        "{all:?}"
    );
    assert!(
        all.keys().all(|(_, v)| *v != hidden),
        "a suppressed vulnerability never notifies: {all:?}"
    );
    assert!(
        !all.contains_key(&("finding.opened".into(), expiring.clone())),
        "suppressed when its findings opened: {all:?}"
    );
    let prod = events_on(&receiver, "prod");
    let expected: BTreeMap<(String, String), Vec<u64>> = shown
        .iter()
        .map(|v| (("finding.opened".to_string(), (*v).clone()), vec![1]))
        .collect();
    assert_eq!(prod, expected, "the tagged host only");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sla_expiry_suppression_and_tags_on_sqlite() {
    sla_expiry_suppression_and_tags(&Env::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sla_expiry_suppression_and_tags_on_postgres() {
    sla_expiry_suppression_and_tags(&Env::postgres()).await;
}

/// A knowledge source synced once and then silent past `--feeds-stale-after-hours`: one
/// `feed.stale` message per silence, whatever the number of scans and processes.
async fn stale_feed(env: &Env, servers: usize) {
    use zt_testkit::feed_replay::{kev_json, Replay, ReplayServer};
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let replay = ReplayServer::start(Replay {
        kev: kev_json(),
        ..Default::default()
    })
    .await;
    let receiver = Receiver::start(Arc::new(|_: &str, _| Answer::Ok)).await;
    let store = env.store_args();
    let kev = replay.kev_url();
    let args = [
        "--allow-private-webhooks",
        "--notify-scan-secs",
        "0.3",
        // Stale two seconds after the last success.
        "--feeds-stale-after-hours",
        "0.00056",
        "--feeds-sync-interval",
        "1h",
        "--source",
        "kev",
        "--kev-url",
        &kev,
        "--retries",
        "0",
    ];
    let mut all = Vec::new();
    for i in 0..servers {
        let mut a = store.clone();
        a.extend(["server", "--listen", "127.0.0.1:0"]);
        a.extend_from_slice(&args);
        all.push(
            ServerProcess::start(
                bin(),
                &a,
                &[
                    ("ZEROTRACE_ADMIN_TOKEN", ADMIN),
                    ("ZEROTRACE_OFFLINE", "false"),
                    ("ZEROTRACE_LOG", "info"),
                ],
                env.path(),
                &format!("feeds-{i}"),
            )
            .expect("server starts"),
        );
    }
    let api = all[0].url.clone();
    let http = http();
    let company = create_company(&http, &api, ADMIN, "Watchful").await;
    let cid = company["id"].as_str().unwrap().to_string();
    create_rule(
        &http,
        &api,
        &cid,
        json!({"name": "feeds", "events": ["feed.stale"],
        "destination": {"kind": "webhook", "url": receiver.url("feeds"), "secret": SECRET}}),
    )
    .await;
    let got = receiver
        .wait("feed.stale", Duration::from_secs(60), |g| !g.is_empty())
        .await;
    let v = got[0].json();
    assert_eq!(v["type"], "feed.stale");
    assert_eq!(v["company_id"], cid.as_str());
    assert_eq!(v["data"]["source"], "kev");
    assert!(v["data"]["last_success_at"].is_string(), "{v}");
    assert!(signature_ok(&got[0], SECRET));
    // Many scans later, by every process: still one.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        events_on(&receiver, "feeds"),
        BTreeMap::from([(("feed.stale".to_string(), "kev".to_string()), vec![0])])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_feed_is_told_once_on_sqlite() {
    stale_feed(&Env::sqlite(), 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_feed_is_told_once_on_postgres_with_two_servers() {
    stale_feed(&Env::postgres(), 2).await;
}

/// Replaces the stored body of every report still queued with bytes that do not parse, as
/// a damaged disk or a bad restore would leave them (the server checks a report when it
/// accepts it, so a body that fails later is damaged in storage). Run while no server works
/// the queue.
async fn damage_queued_reports(env: &Env) -> u64 {
    use sqlx::Connection;
    const DAMAGED: &[u8] = b"{\"report_id\": damaged";
    match &env.db {
        Some(db) => {
            let mut c = sqlx::PgConnection::connect(&db.url).await.unwrap();
            sqlx::query("UPDATE reports SET body = $1 WHERE status = 'queued'")
                .bind(DAMAGED)
                .execute(&mut c)
                .await
                .unwrap()
                .rows_affected()
        }
        None => {
            let url = format!("sqlite://{}", env.path().join("zerotrace.db").display());
            let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
            sqlx::query("UPDATE reports SET body = ?1 WHERE status = 'queued'")
                .bind(DAMAGED)
                .execute(&mut c)
                .await
                .unwrap()
                .rows_affected()
        }
    }
}

/// Three events end to end, to a real receiver: a report that fails processing is one
/// `report.failed` message naming it; a rule filtered by host tags hears of tagged hosts
/// only (an untagged host's vulnerabilities are no message to it, a tagged host's are, with
/// the tagged hosts counted); an analysis that expires (the server's expiry job, on the real
/// clock a few seconds on) is one `analysis.expired` message with the hosts it uncovers.
async fn failed_report_host_tags_and_expiry(env: &Env) {
    let store = env.store_args();
    zerotrace(
        &store,
        &[
            "feeds",
            "import",
            shared_path("osv/pypa/vulns").to_str().unwrap(),
        ],
    );
    let receiver = Receiver::start(Arc::new(|_: &str, _| Answer::Ok)).await;
    let flags = ["--allow-private-webhooks", "--notify-scan-secs", "0.5"];
    // First an API process alone: the doomed report is accepted and waits in the queue.
    let mut api_only = start(
        &store,
        env.path(),
        "api-only",
        &[&flags[..], &["--role", "api"][..]].concat(),
    );
    let api = api_only.url.clone();
    let http = http();
    let company = create_company(&http, &api, ADMIN, "Tagged").await;
    let cid = company["id"].as_str().unwrap().to_string();
    let secret = company["enroll_secret"].as_str().unwrap().to_string();
    let web = enroll(&http, &api, &secret, "web-1").await;
    let db = enroll(&http, &api, &secret, "db-2").await;
    let broken = enroll(&http, &api, &secret, "broken-3").await;
    let ids = agent_ids(&http, &api, &cid).await;
    let company_url = |api: &str, p: &str| format!("{api}/api/v1/companies/{cid}/{p}");
    let (s, v) = send(
        &http,
        reqwest::Method::PUT,
        &company_url(&api, &format!("agents/{}/tags", ids["db-2"])),
        ADMIN,
        Some(json!({"tags": ["prod"]})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    for (name, events, tags) in [
        ("ops", json!(["report.failed"]), json!([])),
        ("prod", json!(["finding.opened"]), json!(["prod"])),
        (
            "all",
            json!(["finding.opened", "analysis.expired"]),
            json!([]),
        ),
    ] {
        create_rule(
            &http,
            &api,
            &cid,
            json!({"name": name, "events": events, "tags": tags,
            "destination": {"kind": "webhook", "url": receiver.url(name), "secret": SECRET}}),
        )
        .await;
    }
    let doomed = report("broken-3");
    assert_eq!(
        post_inventory(&http, &api, &broken, &doomed).await,
        reqwest::StatusCode::ACCEPTED
    );
    api_only.kill();
    assert_eq!(damage_queued_reports(env).await, 1);

    let server = start(&store, env.path(), "all", &flags);
    let api = server.url.clone();
    // The damaged report: dead at its first attempt, one message naming it.
    let got = receiver
        .wait("report.failed", Duration::from_secs(60), |g| {
            g.iter().any(|g| g.path == "ops")
        })
        .await;
    let failed: Vec<&Got> = got.iter().filter(|g| g.path == "ops").collect();
    assert!(signature_ok(failed[0], SECRET));
    let v = failed[0].json();
    assert_eq!(v["type"], "report.failed", "{v}");
    assert_eq!(failed[0].header("zerotrace-event"), "report.failed");
    assert_eq!(v["company_id"], cid.as_str());
    assert_eq!(v["data"]["report_id"], doomed.report_id.to_string(), "{v}");
    assert_eq!(v["data"]["agent_id"], ids["broken-3"].as_str(), "{v}");
    assert_eq!(v["data"]["hostname"], "broken-3");
    assert!(
        v["data"]["error"]
            .as_str()
            .unwrap()
            .contains("does not parse"),
        "{v}"
    );

    // web-1 carries no tag: "all" hears of its vulnerabilities, "prod" does not.
    assert_eq!(
        post_inventory(&http, &api, &web, &report("web-1")).await,
        reqwest::StatusCode::ACCEPTED
    );
    wait_processed(&http, &api, &cid, 1).await;
    let vulns: Vec<String> = open_vulns(&http, &api, &cid).await.into_iter().collect();
    assert!(vulns.len() >= 3, "{vulns:?}");
    receiver
        .wait("web-1's news", Duration::from_secs(60), |got| {
            by_vuln(
                &got.iter()
                    .filter(|g| g.path == "all")
                    .cloned()
                    .collect::<Vec<_>>(),
            )
            .len()
                == vulns.len()
        })
        .await;
    // An analysis suppressing one of them, expiring in a few seconds.
    let expiring = vulns[0].clone();
    let expires_at = chrono::Utc::now() + chrono::Duration::seconds(10);
    let (s, analysis) = send(
        &http,
        reqwest::Method::POST,
        &company_url(&api, "analyses"),
        ADMIN,
        Some(json!({"vuln_id": expiring, "state": "not_affected",
            "justification": "code_not_present", "suppress": true,
            "expires_at": expires_at.to_rfc3339()})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{analysis}");
    // db-2 carries the tag: "prod" hears of its vulnerabilities (the suppressed one aside),
    // counting the tagged host only; "all" was told of them already.
    assert_eq!(
        post_inventory(&http, &api, &db, &report("db-2")).await,
        reqwest::StatusCode::ACCEPTED
    );
    wait_processed(&http, &api, &cid, 2).await;
    receiver
        .wait(
            "db-2's news and the expiry",
            Duration::from_secs(60),
            |got| {
                let prod: Vec<Got> = got.iter().filter(|g| g.path == "prod").cloned().collect();
                by_vuln(&prod).len() == vulns.len() - 1
                    && got.iter().any(|g| {
                        g.path == "all" && g.header("zerotrace-event") == "analysis.expired"
                    })
            },
        )
        .await;
    assert!(
        chrono::Utc::now() >= expires_at,
        "expired by the job, not before its time"
    );
    // A few more expiry and scan rounds: nothing more arrives.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        receiver.on("ops").len(),
        1,
        "one message for the failed report"
    );
    let prod = events_on(&receiver, "prod");
    let expected: BTreeMap<(String, String), Vec<u64>> = vulns[1..]
        .iter()
        .map(|v| (("finding.opened".to_string(), v.clone()), vec![1]))
        .collect();
    assert_eq!(prod, expected, "db-2's vulnerabilities, db-2 counted");
    let all = events_on(&receiver, "all");
    let mut expected: BTreeMap<(String, String), Vec<u64>> = vulns
        .iter()
        .map(|v| (("finding.opened".to_string(), v.clone()), vec![1]))
        .collect();
    expected.insert(("analysis.expired".to_string(), expiring.clone()), vec![2]);
    assert_eq!(all, expected, "each once; the expiry uncovers both hosts");
    let expired = receiver
        .on("all")
        .into_iter()
        .map(|g| g.json())
        .find(|v| v["type"] == "analysis.expired")
        .unwrap();
    assert_eq!(
        expired["data"]["analysis_id"], analysis["analysis_id"],
        "{expired} {analysis}"
    );
    assert_eq!(expired["data"]["suppress"], true, "{expired}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_report_host_tags_and_expiry_on_sqlite() {
    failed_report_host_tags_and_expiry(&Env::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_report_host_tags_and_expiry_on_postgres() {
    failed_report_host_tags_and_expiry(&Env::postgres()).await;
}

//! Abuse bounds (issue 17) on a real server: limits per client address before
//! authentication (failed credentials, enroll attempts; addresses through a trusted proxy),
//! separate buckets for a company's agents and its users, and time limits on headers and
//! bodies so that a slow client cannot hold a connection.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use zt_testkit::ServerProcess;

mod common;
use common::{bin, create_company, enroll};

const ADMIN: &str = "zto_abuse-test-operator-token-0123456789abcdef";

fn start(dir: &std::path::Path, name: &str, extra: &[&str]) -> ServerProcess {
    let mut args = vec![
        "--data-dir",
        dir.to_str().unwrap(),
        "server",
        "--listen",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    ServerProcess::start(bin(), &args, &[("ZEROTRACE_ADMIN_TOKEN", ADMIN)], dir, name)
        .expect("server starts")
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// A GET of `path` from the client `from` (through the trusted proxy), with `token`.
async fn get_from(
    http: &reqwest::Client,
    url: &str,
    from: &str,
    token: Option<&str>,
) -> reqwest::Response {
    let mut req = http.get(url).header("x-forwarded-for", from);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_credentials_and_enrolls_are_limited_per_address_before_authentication() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        dir.path(),
        "preauth",
        &[
            "--rate-auth-failures",
            "5",
            "--rate-enroll",
            "3",
            "--trusted-proxies",
            "127.0.0.1",
        ],
    );
    let http = http();
    let url = format!("{}/api/v1/companies", server.url);
    // Requests without any credential are refused but not counted: nothing was guessed.
    for _ in 0..10 {
        let r = get_from(&http, &url, "203.0.113.5", None).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    // Wrong tokens from one address are answered 401 until one too many (the sixth in a
    // minute); from then on the address is refused before its credential is looked at,
    // even the operator's own token.
    for i in 0..6 {
        let r = get_from(&http, &url, "203.0.113.5", Some(&format!("ztu_guess{i}"))).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "guess {i}");
    }
    let r = get_from(&http, &url, "203.0.113.5", Some("ztu_guess6")).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    let r = get_from(&http, &url, "203.0.113.5", Some(ADMIN)).await;
    assert_eq!(
        r.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "blocked before authentication"
    );
    // Another client (another address named by the trusted proxy) is served.
    let r = get_from(&http, &url, "203.0.113.6", Some(ADMIN)).await;
    assert_eq!(r.status(), StatusCode::OK);
    // A wrong enroll secret is a failed credential too; enroll attempts have their own bucket.
    let company = create_company(&http, &server.url, ADMIN, "Abuse Corp").await;
    let secret = company["enroll_secret"].as_str().unwrap();
    let enroll_from = |from: &'static str, secret: String| {
        let http = http.clone();
        let url = format!("{}/api/v1/enroll", server.url);
        async move {
            http.post(url)
                .header("x-forwarded-for", from)
                .json(&json!({"enroll_secret": secret, "hostname": "h",
                    "os": {"id": "debian", "version_id": "12"}, "arch": "x86_64"}))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    for i in 0..3 {
        assert_eq!(
            enroll_from("198.51.100.1", secret.to_string()).await,
            StatusCode::CREATED,
            "enroll {i}"
        );
    }
    assert_eq!(
        enroll_from("198.51.100.1", secret.to_string()).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        enroll_from("198.51.100.2", secret.to_string()).await,
        StatusCode::CREATED
    );
    // Without a trusted proxy, X-Forwarded-For names nobody: every request is the peer's.
    let plain = start(dir.path(), "preauth-plain", &["--rate-auth-failures", "2"]);
    let url = format!("{}/api/v1/companies", plain.url);
    for (i, from) in ["192.0.2.1", "192.0.2.2", "192.0.2.3"].iter().enumerate() {
        let r = get_from(&http, &url, from, Some(&format!("ztu_guess{i}"))).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let r = get_from(&http, &url, "192.0.2.4", Some(ADMIN)).await;
    assert_eq!(
        r.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "a spoofed header changes nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_companys_agents_and_users_have_buckets_of_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        dir.path(),
        "buckets",
        &[
            "--rate-company",
            "4",
            "--rate-company-users",
            "3",
            "--rate-agent",
            "1000",
        ],
    );
    let http = http();
    let company = create_company(&http, &server.url, ADMIN, "Bucket Corp").await;
    let cid = company["id"].as_str().unwrap();
    let secret = company["enroll_secret"].as_str().unwrap();
    let agent = enroll(&http, &server.url, secret, "web-1").await;
    let viewer: serde_json::Value = http
        .post(format!("{}/api/v1/companies/{cid}/tokens", server.url))
        .bearer_auth(ADMIN)
        .json(&json!({"role": "viewer"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let viewer = viewer["token"].as_str().unwrap().to_string();
    let summary = format!("{}/api/v1/companies/{cid}/summary", server.url);
    let report = format!("{}/api/v1/reports/{}", server.url, uuid::Uuid::new_v4());
    let status = |url: String, token: String| {
        let http = http.clone();
        async move {
            http.get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    // A script looping with a user token exhausts the users' bucket...
    for _ in 0..3 {
        assert_eq!(
            status(summary.clone(), viewer.clone()).await,
            StatusCode::OK
        );
    }
    assert_eq!(
        status(summary.clone(), viewer.clone()).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // ...and the fleet still reports; then the fleet's bucket (4 a minute, the enrollment
    // counted) runs out on its own.
    for _ in 0..3 {
        assert_eq!(
            status(report.clone(), agent.clone()).await,
            StatusCode::NOT_FOUND
        );
    }
    assert_eq!(
        status(report.clone(), agent.clone()).await,
        StatusCode::TOO_MANY_REQUESTS
    );
}

/// Sends `head` then one more header byte every 200 ms; how long until the server closed the
/// connection (None: still open after 10 s).
fn trickle(addr: &str, head: &[u8]) -> Option<Duration> {
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let started = Instant::now();
    conn.write_all(head).unwrap();
    let mut buf = [0u8; 4096];
    while started.elapsed() < Duration::from_secs(10) {
        match conn.read(&mut buf) {
            Ok(0) => return Some(started.elapsed()),
            Ok(_) => return Some(started.elapsed()),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return Some(started.elapsed()),
        }
        if conn.write_all(b"a").is_err() {
            return Some(started.elapsed());
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_and_slow_bodies_are_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        dir.path(),
        "timeouts",
        &["--header-timeout-secs", "1", "--body-timeout-secs", "1"],
    );
    let addr = server.url.trim_start_matches("http://").to_string();
    // Headers trickling in forever: the connection is closed after about a second.
    let head = b"GET /healthz HTTP/1.1\r\nHost: zerotrace\r\nX-Slow: ".to_vec();
    let a = addr.clone();
    let closed = tokio::task::spawn_blocking(move || trickle(&a, &head))
        .await
        .unwrap();
    let closed = closed.expect("a slow client's headers do not hold the connection");
    eprintln!("slow headers: connection closed after {closed:?}");
    assert!(
        closed >= Duration::from_millis(800) && closed < Duration::from_secs(5),
        "{closed:?}"
    );

    // A body that does not arrive in time: 408, and nothing stored.
    let a = addr.clone();
    let (status, took) = tokio::task::spawn_blocking(move || {
        let mut conn = TcpStream::connect(&a).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let started = Instant::now();
        conn.write_all(
            b"POST /api/v1/companies HTTP/1.1\r\nHost: zerotrace\r\nContent-Type: application/json\r\n\
              Authorization: Bearer zto_abuse-test-operator-token-0123456789abcdef\r\n\
              Content-Length: 100\r\n\r\n{\"name\": \"sl",
        )
        .unwrap();
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        // One byte every 300 ms: never idle, but never done.
        loop {
            conn.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
            match conn.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    answer.extend_from_slice(&buf[..n]);
                    if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                Err(_) => {
                    if started.elapsed() > Duration::from_secs(10) || conn.write_all(b"o").is_err() {
                        break;
                    }
                }
            }
        }
        let text = String::from_utf8_lossy(&answer).to_string();
        (text.lines().next().unwrap_or_default().to_string(), started.elapsed())
    })
    .await
    .unwrap();
    eprintln!("slow body: answered {status:?} after {took:?}");
    assert!(status.contains(" 408"), "{status}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    let companies: serde_json::Value = http()
        .get(format!("{}/api/v1/companies", server.url))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(companies["items"], json!([]), "nothing stored");
}

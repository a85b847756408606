//! The life of credentials across API processes (issue 17): two `--role api` servers on one
//! PostgreSQL database sharing a real Redis. A token revoked, an agent token rotated, an agent
//! decommissioned or a company deleted through one process stops working on the other at
//! once (the credentials revision), although the other had the credential cached (locally and
//! in Redis); a session opened with a revoked token ends with it; an entry written into Redis
//! by someone without the deployment's key grants nothing; `last_used_at` is recorded in a
//! batch (at the latest when the server stops); `zerotrace admin` has the same verbs.

use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::Digest;
use zt_testkit::{ServerProcess, TestDatabase};

mod common;
use common::{bin, create_company, enroll};

const ADMIN: &str = "zto_lifecycle-test-operator-token-0123456789ab";

fn start(
    db: &TestDatabase,
    dir: &Path,
    name: &str,
    redis_url: &str,
    prefix: &str,
) -> ServerProcess {
    start_with(db, dir, name, redis_url, prefix, &[])
}

fn start_with(
    db: &TestDatabase,
    dir: &Path,
    name: &str,
    redis_url: &str,
    prefix: &str,
    extra: &[&str],
) -> ServerProcess {
    let mut args = vec![
        "--data-dir",
        dir.to_str().unwrap(),
        "--database-url",
        &db.url,
        "--partitions",
        "2",
        "server",
        "--role",
        "api",
        "--listen",
        "127.0.0.1:0",
        "--redis-url",
        redis_url,
        "--redis-prefix",
        prefix,
    ];
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

/// Removes this test's Redis keys whatever happens to the test.
struct Keys(String);

impl Drop for Keys {
    fn drop(&mut self) {
        let Ok(client) = redis::Client::open(zt_testkit::redis::redis_url()) else {
            return;
        };
        let Ok(mut conn) = client.get_connection() else {
            return;
        };
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", self.0))
            .query(&mut conn)
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query(&mut conn);
        }
    }
}

async fn call(
    http: &reqwest::Client,
    method: Method,
    url: &str,
    token: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = http.request(method, url).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// How long until `url` answers 401 to `token` (polling); panics after 5 s.
async fn until_refused(http: &reqwest::Client, url: &str, token: &str) -> Duration {
    let started = Instant::now();
    loop {
        let (status, _) = call(http, Method::GET, url, token, None).await;
        if status == StatusCode::UNAUTHORIZED {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{url} still answers {status} to a revoked credential"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Signs in to the dashboard with `token`; the `zt_session=…` pair for a Cookie header.
async fn session_cookie_of(http: &reqwest::Client, base: &str, token: &str) -> String {
    let resp = http
        .post(format!("{base}/api/v1/session"))
        .json(&json!({ "token": token }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let cookie = resp
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .expect("a session cookie");
    cookie.split(';').next().unwrap_or_default().to_string()
}

fn redis_key(prefix: &str, token: &str) -> String {
    format!(
        "{prefix}tok:{}",
        hex::encode(sha2::Sha256::digest(token.as_bytes()))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_on_one_process_holds_on_another_at_once() {
    let db = TestDatabase::create();
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("zt-test-{}:", uuid::Uuid::new_v4().simple());
    let _cleanup = Keys(prefix.clone());
    let redis_url = zt_testkit::redis::redis_url();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let a = start(&db, dir.path(), "api-a", &redis_url, &prefix);
    let mut b = start(&db, dir.path(), "api-b", &redis_url, &prefix);

    let company = create_company(&http, &a.url, ADMIN, "Lifecycle Corp").await;
    let cid = company["id"].as_str().unwrap().to_string();
    let secret = company["enroll_secret"].as_str().unwrap().to_string();
    let (status, admin) = call(
        &http,
        Method::POST,
        &format!("{}/api/v1/companies/{cid}/tokens", a.url),
        ADMIN,
        Some(json!({"role": "admin", "name": "ops"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{admin}");
    let admin = admin["token"].as_str().unwrap().to_string();
    let (status, viewer) = call(
        &http,
        Method::POST,
        &format!("{}/api/v1/companies/{cid}/tokens", a.url),
        &admin,
        Some(json!({"role": "viewer", "name": "dashboard", "expires_in_days": 30})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{viewer}");
    assert_eq!(viewer["name"], "dashboard");
    let expires: chrono::DateTime<chrono::Utc> =
        viewer["expires_at"].as_str().unwrap().parse().unwrap();
    let days = (expires - chrono::Utc::now()).num_hours();
    assert!((29 * 24..=30 * 24).contains(&days), "{days} hours");
    let viewer_id = viewer["token_id"].as_str().unwrap().to_string();
    let viewer = viewer["token"].as_str().unwrap().to_string();
    // Bad input names its field and stores nothing.
    for (body, field) in [
        (
            json!({"role": "viewer", "expires_in_days": 0}),
            "expires_in_days",
        ),
        (json!({"role": "viewer", "name": " "}), "name"),
        (json!({"role": "root"}), "role"),
    ] {
        let (status, err) = call(
            &http,
            Method::POST,
            &format!("{}/api/v1/companies/{cid}/tokens", a.url),
            &admin,
            Some(body),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
        assert_eq!(err["error"]["field"], field, "{err}");
    }

    // B knows the viewer (cached) and a session opened with it.
    let summary_b = format!("{}/api/v1/companies/{cid}/summary", b.url);
    assert_eq!(
        call(&http, Method::GET, &summary_b, &viewer, None).await.0,
        StatusCode::OK
    );
    let signed_in = http
        .post(format!("{}/api/v1/session", b.url))
        .json(&json!({ "token": viewer }))
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), StatusCode::OK);
    let cookie = signed_in.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let with_cookie = |url: &str| http.get(url).header("cookie", cookie.clone());
    assert_eq!(
        with_cookie(&summary_b).send().await.unwrap().status(),
        StatusCode::OK
    );
    {
        let client = redis::Client::open(redis_url.as_str()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}*"))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(
            keys.contains(&redis_key(&prefix, &viewer)),
            "the viewer is shared through Redis: {keys:?}\n{}",
            b.stderr()
        );
    }

    // The list shows the tokens, never their secrets; a viewer may not list them.
    let tokens_url = format!("{}/api/v1/companies/{cid}/tokens", a.url);
    let (status, list) = call(&http, Method::GET, &tokens_url, &admin, None).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ops", "dashboard"]);
    assert!(!list.to_string().contains(&viewer) && !list.to_string().contains("ztu_"));
    assert_eq!(
        call(&http, Method::GET, &tokens_url, &viewer, None).await.0,
        StatusCode::FORBIDDEN
    );

    // Revoked through A: refused by B at once, its session ended.
    let (status, _) = call(
        &http,
        Method::DELETE,
        &format!("{}/api/v1/companies/{cid}/tokens/{viewer_id}", a.url),
        &admin,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let took = until_refused(&http, &summary_b, &viewer).await;
    eprintln!("a revoked user token was refused by the other process after {took:?}");
    assert_eq!(
        with_cookie(&summary_b).send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let (_, list) = call(&http, Method::GET, &tokens_url, &admin, None).await;
    assert!(list["items"][1]["revoked_at"].is_string(), "{list}");

    // An agent token rotated through A: the old one refused by B, the new one works there.
    let agent_token = enroll(&http, &a.url, &secret, "web-1").await;
    let report_b = format!("{}/api/v1/reports/{}", b.url, uuid::Uuid::new_v4());
    assert_eq!(
        call(&http, Method::GET, &report_b, &agent_token, None)
            .await
            .0,
        StatusCode::NOT_FOUND,
        "authenticated: no such report"
    );
    let (_, agents) = call(
        &http,
        Method::GET,
        &format!("{}/api/v1/companies/{cid}/agents", a.url),
        &admin,
        None,
    )
    .await;
    let aid = agents["items"][0]["agent_id"].as_str().unwrap().to_string();
    let (status, rotated) = call(
        &http,
        Method::POST,
        &format!("{}/api/v1/companies/{cid}/agents/{aid}/token", a.url),
        &admin,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{rotated}");
    let new_token = rotated["agent_token"].as_str().unwrap().to_string();
    let took = until_refused(&http, &report_b, &agent_token).await;
    eprintln!("a rotated agent token was refused by the other process after {took:?}");
    assert_eq!(
        call(&http, Method::GET, &report_b, &new_token, None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );

    // Redis cannot grant authority: an entry someone wrote there without the deployment's
    // key (the old unsigned shape, and a signed-looking one) is ignored.
    let forged = "ztu_forged-token-not-in-the-database-0123456789abc";
    let client = redis::Client::open(redis_url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    for value in [
        format!("user:{cid}:admin"),
        format!("user:{cid}:admin|999999|{}", "ab".repeat(32)),
    ] {
        let _: () = redis::cmd("SET")
            .arg(redis_key(&prefix, forged))
            .arg(&value)
            .arg("PX")
            .arg(30_000)
            .query_async(&mut conn)
            .await
            .unwrap();
        for server in [&a, &b] {
            let (status, _) = call(
                &http,
                Method::GET,
                &format!("{}/api/v1/companies/{cid}/summary", server.url),
                forged,
                None,
            )
            .await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{value}");
        }
    }

    // Decommissioned through B: the agent's token is refused by A; it leaves the summary.
    let (status, done) = call(
        &http,
        Method::DELETE,
        &format!("{}/api/v1/companies/{cid}/agents/{aid}", b.url),
        &admin,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    let decommissioned_by = chrono::Utc::now();
    let report_a = format!("{}/api/v1/reports/{}", a.url, uuid::Uuid::new_v4());
    until_refused(&http, &report_a, &new_token).await;
    let (_, summary) = call(
        &http,
        Method::GET,
        &format!("{}/api/v1/companies/{cid}/summary", a.url),
        &admin,
        None,
    )
    .await;
    assert_eq!(summary["agents"], 0, "{summary}");
    assert_eq!(
        call(
            &http,
            Method::DELETE,
            &format!("{}/api/v1/companies/{cid}/agents/{aid}", b.url),
            &admin,
            None
        )
        .await
        .0,
        StatusCode::NOT_FOUND,
        "decommissioned once"
    );
    // Its detail stays readable and says that it is decommissioned, and since when: the API
    // (through the other process) and the dashboard's host view.
    let (status, detail) = call(
        &http,
        Method::GET,
        &format!("{}/api/v1/companies/{cid}/agents/{aid}", a.url),
        &admin,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{detail}");
    assert_eq!(detail["decommissioned"], true, "{detail}");
    assert_eq!(
        detail["stale"], false,
        "a decommissioned host is not stale: {detail}"
    );
    let at: chrono::DateTime<chrono::Utc> = detail["decommissioned_at"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("decommissioned_at: {detail}"));
    assert!(
        at <= decommissioned_by && decommissioned_by - at < chrono::Duration::seconds(60),
        "decommissioned at {at}, the request returned at {decommissioned_by}"
    );
    let page = http
        .get(format!("{}/c/{cid}/hosts/{aid}", a.url))
        .header("cookie", session_cookie_of(&http, &a.url, &admin).await)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let page = page.text().await.unwrap();
    assert!(
        page.contains(">decommissioned<") && page.contains("id=\"decommissioned\""),
        "the host view does not say decommissioned"
    );

    // The enroll secret rotated: the old one no longer enrolls (on either process).
    let (status, rotated) = call(
        &http,
        Method::POST,
        &format!("{}/api/v1/companies/{cid}/enroll-secret", a.url),
        &admin,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{rotated}");
    let enroll_url = format!("{}/api/v1/enroll", b.url);
    let body = |s: &str| {
        json!({"enroll_secret": s, "hostname": "web-2",
            "os": {"id": "debian", "version_id": "12", "name": ""}, "arch": "x86_64"})
    };
    let status = http
        .post(&enroll_url)
        .json(&body(&secret))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let new_secret = rotated["enroll_secret"].as_str().unwrap();
    let status = http
        .post(&enroll_url)
        .json(&body(new_secret))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::CREATED);

    // last_used_at: written in a batch, at the latest when the process stops.
    b.terminate(Duration::from_secs(20));
    let (_, list) = call(&http, Method::GET, &tokens_url, &admin, None).await;
    assert!(list["items"][1]["last_used_at"].is_string(), "{list}");

    // Deleting the company: only the operator, only with the confirmation.
    let company_url = format!("{}/api/v1/companies/{cid}", a.url);
    assert_eq!(
        call(
            &http,
            Method::DELETE,
            &format!("{company_url}?confirm={cid}"),
            &admin,
            None
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    for (confirm, want) in [
        ("", StatusCode::BAD_REQUEST),
        ("?confirm=", StatusCode::BAD_REQUEST),
        ("?confirm=Lifecycle%20Cor", StatusCode::CONFLICT),
        (
            &*format!("?confirm={}", uuid::Uuid::new_v4()),
            StatusCode::CONFLICT,
        ),
    ] {
        let (status, err) = call(
            &http,
            Method::DELETE,
            &format!("{company_url}{confirm}"),
            ADMIN,
            None,
        )
        .await;
        assert_eq!(status, want, "{confirm}: {err}");
        assert_eq!(err["error"]["field"], "confirm", "{err}");
    }
    assert_eq!(
        call(
            &http,
            Method::GET,
            &summary_b.replace(&b.url, &a.url),
            &admin,
            None
        )
        .await
        .0,
        StatusCode::OK
    );
    let (status, deleted) = call(
        &http,
        Method::DELETE,
        &format!("{company_url}?confirm=Lifecycle%20Corp"),
        ADMIN,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{deleted}");
    assert_eq!(deleted["deleted"]["companies"], 1, "{deleted}");
    until_refused(&http, &format!("{}/api/v1/companies", a.url), &admin).await;
    assert_eq!(
        call(
            &http,
            Method::GET,
            &format!("{}/api/v1/companies/{cid}/summary", a.url),
            ADMIN,
            None
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );
}

/// `zerotrace admin` has the same verbs, on the store directly.
#[test]
fn admin_cli_lists_revokes_rotates_decommissions_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(bin())
            .arg("--data-dir")
            .arg(dir.path())
            .arg("admin")
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let json = |s: &str| -> Value { serde_json::from_str(s).unwrap() };
    let (ok, out, err) = run(&["company", "create", "CLI Corp", "--json"]);
    assert!(ok, "{err}");
    let company = json(&out);
    let cid = company["id"].as_str().unwrap().to_string();
    let (ok, out, err) = run(&[
        "token",
        "create",
        "--company",
        &cid,
        "--role",
        "viewer",
        "--name",
        "nightly",
        "--expires-in-days",
        "7",
        "--json",
    ]);
    assert!(ok, "{err}");
    let token = json(&out);
    let token_id = token["token_id"].as_str().unwrap().to_string();
    let (ok, _, err) = run(&[
        "token",
        "create",
        "--company",
        &cid,
        "--role",
        "viewer",
        "--expires-in-days",
        "0",
    ]);
    assert!(!ok && err.contains("expires-in-days"), "{err}");
    let (ok, out, err) = run(&["token", "list", "--company", &cid, "--json"]);
    assert!(ok, "{err}");
    let list = json(&out);
    assert_eq!(list["items"][0]["name"], "nightly");
    assert!(list["items"][0]["revoked_at"].is_null());
    let (ok, _, err) = run(&["token", "revoke", "--company", &cid, &token_id]);
    assert!(ok, "{err}");
    let (_, out, _) = run(&["token", "list", "--company", &cid, "--json"]);
    assert!(json(&out)["items"][0]["revoked_at"].is_string());
    let (ok, _, err) = run(&[
        "token",
        "revoke",
        "--company",
        &cid,
        &uuid::Uuid::new_v4().to_string(),
    ]);
    assert!(!ok && err.contains("has no token"), "{err}");
    let (ok, out, err) = run(&["company", "rotate-enroll-secret", &cid, "--json"]);
    assert!(ok, "{err}");
    let secret = json(&out)["enroll_secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("zte_") && secret != company["enroll_secret"]);
    let (ok, _, err) = run(&[
        "agent",
        "decommission",
        "--company",
        &cid,
        &uuid::Uuid::new_v4().to_string(),
    ]);
    assert!(!ok && err.contains("no live agent"), "{err}");
    let (ok, _, err) = run(&["company", "delete", &cid, "--confirm", "CLI"]);
    assert!(!ok && err.contains("--confirm"), "{err}");
    let (ok, out, err) = run(&["company", "delete", &cid, "--confirm", "CLI Corp", "--json"]);
    assert!(ok, "{err}");
    assert_eq!(json(&out)["deleted"]["companies"], 1);
    let (_, out, _) = run(&["company", "list", "--json"]);
    assert_eq!(json(&out)["items"], json!([]));
}

/// The per-address limit before authentication is shared by the replicas through Redis: bad
/// credentials sent to one replica count on the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_credentials_count_across_replicas_through_redis() {
    let db = TestDatabase::create();
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("zt-test-{}:", uuid::Uuid::new_v4().simple());
    let _cleanup = Keys(prefix.clone());
    let redis_url = zt_testkit::redis::redis_url();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let limit = ["--rate-auth-failures", "3"];
    let a = start_with(&db, dir.path(), "api-a", &redis_url, &prefix, &limit);
    let b = start_with(&db, dir.path(), "api-b", &redis_url, &prefix, &limit);
    let status = |url: String, token: &'static str| {
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
    let on = |s: &ServerProcess| format!("{}/api/v1/companies", s.url);
    // Three failures in a minute are allowed for the address, wherever they land...
    assert_eq!(
        status(on(&a), "ztu_guess-1").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status(on(&a), "ztu_guess-2").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status(on(&b), "ztu_guess-3").await,
        StatusCode::UNAUTHORIZED
    );
    // ...the fourth (on B) is one too many: B refuses the address from then on.
    assert_eq!(
        status(on(&b), "ztu_guess-4").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(status(on(&b), ADMIN).await, StatusCode::TOO_MANY_REQUESTS);
    // A had seen two failures only, yet its next one is over the shared bucket: A refuses the
    // address too (with local buckets it would still have had one to spare).
    assert_eq!(
        status(on(&a), "ztu_guess-5").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(status(on(&a), ADMIN).await, StatusCode::TOO_MANY_REQUESTS);
}

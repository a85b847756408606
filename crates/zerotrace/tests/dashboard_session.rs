//! Dashboard sign-in over real HTTP with the real binary (DESIGN.md "Dashboard sign-in"): the
//! cookie's flags, what a session may do (exactly what its token may: a foreign company is
//! 404, a viewer cannot write), the CSRF header on writes made with the cookie, sign-out ending
//! the session on the server, a session ending with its token, and the pages' answers. On
//! PostgreSQL a session opened on one API process works on another, and a sign-out on one ends
//! it on both.

use std::time::Duration;

use reqwest::header::{HeaderMap, COOKIE, SET_COOKIE};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use zt_testkit::ServerProcess;

mod common;
use common::{bin, create_company, enroll, post_json, Env};

const ADMIN: &str = "zto_session-operator-token-0123456789abc";
const CSRF: &str = "x-zerotrace-csrf";

fn start(env: &Env, name: &str, admin: &str, extra: &[&str]) -> ServerProcess {
    let mut args = env.store_args();
    args.extend(["server", "--listen", "127.0.0.1:0"]);
    args.extend_from_slice(extra);
    ServerProcess::start(
        bin(),
        &args,
        &[("ZEROTRACE_ADMIN_TOKEN", admin), ("ZEROTRACE_LOG", "info")],
        env.path(),
        name,
    )
    .expect("server starts")
}

fn http() -> reqwest::Client {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        // The pages' redirects are part of what is tested.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A signed-in browser, as far as HTTP goes: the cookie and the CSRF token.
#[derive(Debug, Clone)]
struct Session {
    id: String,
    csrf: String,
    set_cookie: String,
    body: Value,
}

async fn sign_in(http: &reqwest::Client, api: &str, token: &str) -> Session {
    let resp = http
        .post(format!("{api}/api/v1/session"))
        .json(&json!({ "token": token }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let set_cookie = resp.headers()[SET_COOKIE].to_str().unwrap().to_string();
    let id = set_cookie
        .split(';')
        .next()
        .and_then(|kv| kv.strip_prefix("zt_session="))
        .unwrap_or_else(|| panic!("{set_cookie}"))
        .to_string();
    let body: Value = resp.json().await.unwrap();
    Session {
        id,
        csrf: body["csrf"].as_str().unwrap().to_string(),
        set_cookie,
        body,
    }
}

/// A request with the session cookie (and the CSRF header when given).
async fn with_cookie(
    http: &reqwest::Client,
    method: Method,
    url: &str,
    session: &Session,
    csrf: Option<&str>,
    body: Option<&Value>,
) -> (StatusCode, HeaderMap, String) {
    let mut req = http
        .request(method, url)
        .header(COOKIE, format!("zt_session={}", session.id));
    if let Some(c) = csrf {
        req = req.header(CSRF, c);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let streaming = headers
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    let text = if streaming {
        String::new()
    } else {
        resp.text().await.unwrap_or_default()
    };
    (status, headers, text)
}

fn code(text: &str) -> String {
    serde_json::from_str::<Value>(text).unwrap_or(Value::Null)["error"]["code"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// `api` and `other` are two API processes of one store (the same one on SQLite).
async fn sessions(api: &str, other: &str, secure_other: bool) {
    let http = http();
    let acme = create_company(&http, api, ADMIN, "Acme").await;
    let beta = create_company(&http, api, ADMIN, "Beta").await;
    let (acme_id, beta_id) = (acme["id"].as_str().unwrap(), beta["id"].as_str().unwrap());
    let token = |company: &str, role: &str| {
        let http = http.clone();
        let url = format!("{api}/api/v1/companies/{company}/tokens");
        let role = role.to_string();
        async move {
            post_json(&http, &url, Some(ADMIN), &json!({ "role": role })).await["token"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    let acme_admin = token(acme_id, "admin").await;
    let acme_viewer = token(acme_id, "viewer").await;
    let agent = enroll(&http, api, acme["enroll_secret"].as_str().unwrap(), "web-1").await;

    // The cookie: HttpOnly, SameSite=Strict, Path=/, a lifetime; Secure only when configured.
    let viewer = sign_in(&http, api, &acme_viewer).await;
    let flags: Vec<&str> = viewer.set_cookie.split(';').map(str::trim).collect();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(
            flags.contains(&flag),
            "{flag} missing: {}",
            viewer.set_cookie
        );
    }
    assert!(flags.iter().any(|f| f.starts_with("Max-Age=")), "{flags:?}");
    assert!(!flags.contains(&"Secure"), "{}", viewer.set_cookie);
    assert!(viewer.id.starts_with("zts_"), "{}", viewer.id);
    assert_eq!(
        viewer.body["principal"],
        json!({"kind": "user", "company_id": acme_id, "role": "viewer"})
    );
    assert!(!viewer.csrf.is_empty() && !viewer.id.contains(&viewer.csrf));
    let secure = sign_in(&http, other, &acme_viewer).await;
    assert_eq!(
        secure.set_cookie.split(';').any(|f| f.trim() == "Secure"),
        secure_other,
        "{}",
        secure.set_cookie
    );
    let operator = sign_in(&http, api, ADMIN).await;
    assert_eq!(operator.body["principal"], json!({"kind": "operator"}));

    // Refused sign-ins: the status says why, and no cookie is set.
    for (body, want) in [
        (json!({ "token": agent }), StatusCode::FORBIDDEN),
        (
            json!({ "token": acme["enroll_secret"] }),
            StatusCode::FORBIDDEN,
        ),
        (
            json!({ "token": "ztu_unknownunknownunknownunknownunknown0123" }),
            StatusCode::UNAUTHORIZED,
        ),
        (json!({}), StatusCode::BAD_REQUEST),
        (json!({ "token": "" }), StatusCode::BAD_REQUEST),
    ] {
        let resp = http
            .post(format!("{api}/api/v1/session"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), want, "{body}");
        assert!(resp.headers().get(SET_COOKIE).is_none(), "{body}");
    }
    // A form post from another site cannot sign anyone in (JSON only).
    let form = http
        .post(format!("{api}/api/v1/session"))
        .header("content-type", "text/plain")
        .body(format!("{{\"token\":\"{acme_viewer}\"}}"))
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // The cookie reads what the token reads, on either process; a foreign or unknown company
    // is 404 exactly like with the token.
    let summary = |c: &str| format!("{api}/api/v1/companies/{c}/summary");
    for url in [summary(acme_id), summary(acme_id).replace(api, other)] {
        let (status, _, text) = with_cookie(&http, Method::GET, &url, &viewer, None, None).await;
        assert_eq!(status, StatusCode::OK, "{url}: {text}");
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["agents"], 1);
    }
    let unknown = uuid::Uuid::new_v4().to_string();
    for c in [beta_id, unknown.as_str()] {
        let (status, _, text) =
            with_cookie(&http, Method::GET, &summary(c), &viewer, None, None).await;
        assert_eq!(
            (status, code(&text)),
            (StatusCode::NOT_FOUND, "not_found".into())
        );
    }
    let (status, _, _) = with_cookie(
        &http,
        Method::GET,
        &format!("{api}/api/v1/companies/{beta_id}/summary"),
        &operator,
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // The live stream takes the cookie (EventSource sends it); the operator's stream is the
    // operator's only.
    let (status, headers, _) = with_cookie(
        &http,
        Method::GET,
        &format!("{api}/api/v1/companies/{acme_id}/events"),
        &viewer,
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "text/event-stream");
    let (status, _, _) = with_cookie(
        &http,
        Method::GET,
        &format!("{api}/api/v1/companies/{beta_id}/events"),
        &viewer,
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = with_cookie(
        &http,
        Method::GET,
        &format!("{api}/api/v1/events"),
        &viewer,
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Writes with the cookie need the session's CSRF token; with it, the token's rights hold.
    let admin = sign_in(&http, api, &acme_admin).await;
    let tokens = format!("{api}/api/v1/companies/{acme_id}/tokens");
    let body = json!({"role": "viewer"});
    for csrf in [None, Some("wrong"), Some(viewer.csrf.as_str())] {
        let (status, _, text) =
            with_cookie(&http, Method::POST, &tokens, &admin, csrf, Some(&body)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{csrf:?}: {text}");
        assert!(text.contains("X-ZeroTrace-CSRF"), "{text}");
    }
    let (status, _, text) = with_cookie(
        &http,
        Method::POST,
        &tokens,
        &admin,
        Some(&admin.csrf),
        Some(&body),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{text}");
    let (status, _, text) = with_cookie(
        &http,
        Method::POST,
        &tokens,
        &viewer,
        Some(&viewer.csrf),
        Some(&body),
    )
    .await;
    assert_eq!(
        (status, code(&text)),
        (StatusCode::FORBIDDEN, "forbidden".into()),
        "a viewer's session writes no more than its token"
    );
    let (status, _, _) = with_cookie(
        &http,
        Method::POST,
        &format!("{api}/api/v1/companies/{beta_id}/tokens"),
        &admin,
        Some(&admin.csrf),
        Some(&body),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Bearer requests need no CSRF header, cookie or not.
    let resp = http
        .post(&tokens)
        .bearer_auth(&acme_admin)
        .header(COOKIE, format!("zt_session={}", viewer.id))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);

    // The pages: signed in they show the company; a foreign company is 404; without a
    // session they send the browser to sign in and back.
    let (status, headers, html) = with_cookie(
        &http,
        Method::GET,
        &format!("{api}/c/{acme_id}/findings?severity=high"),
        &viewer,
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("Acme") && html.contains(&viewer.csrf));
    assert!(!html.contains(&acme_viewer) && !html.contains(&viewer.id));
    assert_eq!(headers["cache-control"], "no-store");
    assert!(headers["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("script-src 'self'"));
    let (status, _, html) = with_cookie(
        &http,
        Method::GET,
        &format!("{api}/c/{beta_id}"),
        &viewer,
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(!html.contains("Beta"));
    // A bad filter in the URL: 400, the banner names it, and a way back to the page.
    let (status, _, html) = with_cookie(
        &http,
        Method::GET,
        &format!("{api}/c/{acme_id}/hosts?sort=bogus"),
        &viewer,
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        html.contains("role=\"alert\"") && html.contains("sort"),
        "{html}"
    );
    assert!(
        html.contains(&format!("href=\"/c/{acme_id}/hosts\"")),
        "{html}"
    );
    // What a viewer may not see: how to add hosts (admins), every company (the operator).
    for (page, want) in [
        (
            format!("{api}/c/{acme_id}/add-hosts"),
            StatusCode::FORBIDDEN,
        ),
        (format!("{api}/operator"), StatusCode::NOT_FOUND),
    ] {
        let (status, _, _) = with_cookie(&http, Method::GET, &page, &viewer, None, None).await;
        assert_eq!(status, want, "{page}");
    }
    let (status, _, html) = with_cookie(
        &http,
        Method::GET,
        &format!("{api}/c/{acme_id}/add-hosts"),
        &admin,
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("zerotrace-agent --server") && html.contains("enroll secret"));
    assert!(!html.contains(acme["enroll_secret"].as_str().unwrap()));
    let resp = http
        .get(format!("{api}/c/{acme_id}/hosts?q=web"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        resp.headers()["location"],
        format!("/signin?next=%2Fc%2F{acme_id}%2Fhosts%3Fq%3Dweb").as_str()
    );
    let (status, headers, _) =
        with_cookie(&http, Method::GET, &format!("{api}/"), &viewer, None, None).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers["location"], format!("/c/{acme_id}").as_str());
    let (_, headers, _) = with_cookie(
        &http,
        Method::GET,
        &format!("{api}/"),
        &operator,
        None,
        None,
    )
    .await;
    assert_eq!(headers["location"], "/operator");

    // Sign-out needs the CSRF token too, ends the session on the server (for every process)
    // and clears the cookie; the other sessions of the token live on.
    let sign_out = format!("{other}/api/v1/session");
    let (status, _, _) = with_cookie(&http, Method::DELETE, &sign_out, &viewer, None, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, headers, _) = with_cookie(
        &http,
        Method::DELETE,
        &sign_out,
        &viewer,
        Some(&viewer.csrf),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let cleared = headers[SET_COOKIE].to_str().unwrap();
    assert!(
        cleared.starts_with("zt_session=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
    for base in [api, other] {
        let (status, _, text) = with_cookie(
            &http,
            Method::GET,
            &format!("{base}/api/v1/companies/{acme_id}/summary"),
            &viewer,
            None,
            None,
        )
        .await;
        assert_eq!(
            (status, code(&text)),
            (StatusCode::UNAUTHORIZED, "unauthorized".into()),
            "{base}"
        );
        let (status, _, _) = with_cookie(
            &http,
            Method::GET,
            &format!("{base}/api/v1/companies/{acme_id}/events"),
            &viewer,
            None,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, headers, _) = with_cookie(
            &http,
            Method::GET,
            &format!("{base}/c/{acme_id}"),
            &viewer,
            None,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert!(headers["location"]
            .to_str()
            .unwrap()
            .starts_with("/signin?next="));
    }
    let (status, _, _) = with_cookie(
        &http,
        Method::DELETE,
        &sign_out,
        &viewer,
        Some(&viewer.csrf),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "ended once");
    let (status, _, _) =
        with_cookie(&http, Method::GET, &summary(acme_id), &secure, None, None).await;
    assert_eq!(status, StatusCode::OK, "the token's other session lives on");
    // Signing in again from the same browser ends the session it had.
    let again = http
        .post(format!("{api}/api/v1/session"))
        .header(COOKIE, format!("zt_session={}", secure.id))
        .json(&json!({ "token": acme_viewer }))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    let (status, _, _) =
        with_cookie(&http, Method::GET, &summary(acme_id), &secure, None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the replaced session");
    // A token is not a session.
    let resp = http
        .delete(format!("{api}/api/v1/session"))
        .bearer_auth(&acme_viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let resp = http
        .delete(format!("{api}/api/v1/session"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

/// A session dies with its token: an operator session ends when the operator token is
/// replaced (`ZEROTRACE_ADMIN_TOKEN` changed).
async fn session_ends_with_its_token(env: &Env) {
    let http = http();
    let first = start(env, "first", ADMIN, &[]);
    let operator = sign_in(&http, &first.url, ADMIN).await;
    let companies = format!("{}/api/v1/companies", first.url);
    let (status, _, _) = with_cookie(&http, Method::GET, &companies, &operator, None, None).await;
    assert_eq!(status, StatusCode::OK);
    drop(first);
    let second = start(
        env,
        "second",
        "zto_another-operator-token-0123456789abcdef",
        &[],
    );
    let companies = format!("{}/api/v1/companies", second.url);
    let (status, _, _) = with_cookie(&http, Method::GET, &companies, &operator, None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_sessions() {
    let env = Env::sqlite();
    let server = start(&env, "server", ADMIN, &[]);
    let logs = LogsOnPanic(vec![&server]);
    sessions(&server.url, &server.url, false).await;
    drop(logs);
    drop(server);
    session_ends_with_its_token(&env).await;
}

/// Two API processes (one of them with `--secure-cookies`) on one database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_sessions_across_processes() {
    let env = Env::postgres();
    let a = start(&env, "api-a", ADMIN, &["--role", "api"]);
    let b = start(&env, "api-b", ADMIN, &["--role", "api", "--secure-cookies"]);
    let _logs = LogsOnPanic(vec![&a, &b]);
    sessions(&a.url, &b.url, true).await;
}

/// The servers' logs, printed when the test fails.
struct LogsOnPanic<'a>(Vec<&'a ServerProcess>);

impl Drop for LogsOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for s in &self.0 {
                eprintln!("--- {} ---\n{}", s.url, s.stderr());
            }
        }
    }
}

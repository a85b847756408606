//! Dashboard sign-in through a real OpenID Connect provider: `oidc-provider-mock` (PyPI, as
//! `.ci/run` installs it) run locally, with people whose ID tokens carry `groups`. A real HTTP
//! client with a cookie jar walks the browser's way: the sign-in page's "Sign in with SSO",
//! the redirect to the provider (authorization code + PKCE S256, state, nonce), the
//! provider's form, its redirect back, the callback. Then it checks what a person would:
//! the signed-in admin sees its company's data and not another's, and may write; a viewer
//! reads but cannot write; a person with no mapped group is refused without a session; an
//! answer for another browser's sign-in (state), an ID token of another request (nonce), a
//! callback without a sign-in in progress, and a callback replayed are refused.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::cookie::Jar;
use reqwest::{StatusCode, Url};
use serde_json::{json, Value};
use zt_testkit::ServerProcess;

mod common;
use common::{bin, Env};

const OPERATOR: &str = "zto_oidc-test-operator-token-0123456789abcdef";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The provider, stopped when dropped.
struct Provider {
    child: Child,
    url: String,
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_provider(dir: &Path, users: &[Value]) -> Provider {
    let port = free_port();
    let log = std::fs::File::create(dir.join("oidc-provider.log")).unwrap();
    let mut cmd = Command::new("oidc-provider-mock");
    cmd.args(["--port", &port.to_string(), "--require-nonce", "true"]);
    for u in users {
        cmd.args(["--user-claims", &u.to_string()]);
    }
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("oidc-provider-mock runs (pip install oidc-provider-mock, see .ci/run)");
    let provider = Provider {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let discovery = format!("{}/.well-known/openid-configuration", provider.url);
    let started = Instant::now();
    let http = reqwest::Client::new();
    loop {
        if let Ok(r) = http.get(&discovery).send().await {
            if r.status().is_success() {
                return provider;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the OIDC provider did not start: {}",
            std::fs::read_to_string(dir.join("oidc-provider.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn admin_cli(env: &Env, args: &[&str]) -> Value {
    let out = Command::new(bin())
        .args(env.store_args())
        .arg("admin")
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// One browser: a cookie jar, redirects looked at one by one.
struct Browser {
    jar: Arc<Jar>,
    http: reqwest::Client,
}

impl Browser {
    fn new() -> Browser {
        let jar = Arc::new(Jar::default());
        let http = reqwest::Client::builder()
            .cookie_provider(jar.clone())
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        Browser { jar, http }
    }

    /// The cookies this browser would send to `url`.
    fn cookies(&self, url: &str) -> String {
        use reqwest::cookie::CookieStore;
        self.jar
            .cookies(&Url::parse(url).unwrap())
            .and_then(|v| v.to_str().ok().map(str::to_string))
            .unwrap_or_default()
    }

    /// Starts a sign-in at the server: the provider's authorization URL it redirects to.
    async fn start(&self, server: &str) -> Url {
        let resp = self
            .http
            .get(format!("{server}/signin/sso"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::SEE_OTHER);
        let flow_cookie = resp.headers()["set-cookie"].to_str().unwrap().to_string();
        assert!(
            flow_cookie.starts_with("zt_oidc=") && flow_cookie.contains("HttpOnly"),
            "{flow_cookie}"
        );
        Url::parse(resp.headers()["location"].to_str().unwrap()).unwrap()
    }

    /// At the provider: opens its sign-in form, then signs in as `sub`; returns the callback
    /// URL the provider sends the browser back to.
    async fn at_provider(&self, authorize: &Url, sub: &str) -> Url {
        let form = self.http.get(authorize.clone()).send().await.unwrap();
        assert_eq!(
            form.status(),
            StatusCode::OK,
            "{}",
            form.text().await.unwrap()
        );
        let back = self
            .http
            .post(authorize.clone())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(
                url::form_urlencoded::Serializer::new(String::new())
                    .append_pair("sub", sub)
                    .finish(),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(
            back.status(),
            StatusCode::FOUND,
            "{}",
            back.text().await.unwrap()
        );
        Url::parse(back.headers()["location"].to_str().unwrap()).unwrap()
    }

    /// The callback: its status, the session cookie it set (if any) and the page.
    async fn callback(&self, url: &Url) -> (StatusCode, Option<String>, String) {
        let resp = self.http.get(url.clone()).send().await.unwrap();
        let status = resp.status();
        let session = resp
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|c| c.starts_with("zt_session=") && !c.starts_with("zt_session=;"))
            .map(str::to_string);
        (status, session, resp.text().await.unwrap())
    }

    async fn get(&self, url: &str) -> (StatusCode, String) {
        let resp = self.http.get(url).send().await.unwrap();
        (resp.status(), resp.text().await.unwrap())
    }

    /// A write with the session cookie and the CSRF token of the page it came from.
    async fn post(&self, url: &str, csrf: &str, body: &Value) -> (StatusCode, String) {
        let resp = self
            .http
            .post(url)
            .header("x-zerotrace-csrf", csrf)
            .json(body)
            .send()
            .await
            .unwrap();
        (resp.status(), resp.text().await.unwrap())
    }
}

/// The CSRF token a dashboard page carries for its scripts.
fn csrf_of(page: &str) -> String {
    let at = page
        .find(r#"name="zt-csrf" content=""#)
        .expect("the page carries a CSRF token");
    let rest = &page[at + r#"name="zt-csrf" content=""#.len()..];
    rest[..rest.find('"').unwrap()].to_string()
}

fn query(url: &Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn with_query(url: &Url, name: &str, value: &str) -> Url {
    let mut out = url.clone();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == name {
                value.to_string()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    out.query_pairs_mut().clear().extend_pairs(pairs);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_sign_in_through_a_real_oidc_provider_with_their_group_s_role() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let env = Env::sqlite();
    let acme = admin_cli(&env, &["company", "create", "Acme OIDC", "--json"]);
    let globex = admin_cli(&env, &["company", "create", "Globex OIDC", "--json"]);
    let (a, b) = (
        acme["id"].as_str().unwrap().to_string(),
        globex["id"].as_str().unwrap().to_string(),
    );
    let provider = start_provider(
        env.path(),
        &[
            json!({"sub": "alice", "email": "alice@acme.example", "groups": ["staff", "acme-admins"]}),
            json!({"sub": "bob", "email": "bob@acme.example", "groups": ["acme-readers"]}),
            json!({"sub": "carol", "email": "carol@acme.example", "groups": ["contractors"]}),
            // One group as a plain string, mapped through the file.
            json!({"sub": "dave", "email": "dave@globex.example", "groups": "globex-admins"}),
        ],
    )
    .await;
    let map_file = env.path().join("oidc-groups");
    std::fs::write(
        &map_file,
        format!("# Globex's people\nglobex-admins={b}:admin\n"),
    )
    .unwrap();
    let port = free_port().to_string();
    let server_url = format!("http://127.0.0.1:{port}");
    let listen = format!("127.0.0.1:{port}");
    let admins = format!("acme-admins={a}:admin");
    let readers = format!("acme-readers={a}:viewer");
    let mut args = env.store_args();
    args.extend([
        "server",
        "--listen",
        &listen,
        "--public-url",
        &server_url,
        "--oidc-issuer",
        &provider.url,
        "--oidc-client-id",
        "zerotrace-test",
        "--oidc-client-secret",
        "zerotrace-test-secret",
        "--oidc-map",
        &admins,
        "--oidc-map",
        &readers,
        "--oidc-map-file",
        map_file.to_str().unwrap(),
    ]);
    let server = ServerProcess::start(
        bin(),
        &args,
        &[("ZEROTRACE_ADMIN_TOKEN", OPERATOR)],
        env.path(),
        "oidc-server",
    )
    .expect("server starts");
    let url = server.url.clone();
    assert_eq!(url, server_url);

    // The sign-in page offers SSO.
    let browser = Browser::new();
    let (status, page) = browser.get(&format!("{url}/signin")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains(r#"href="/signin/sso""#) && page.contains("Sign in with SSO"),
        "{page}"
    );

    // Alice (acme-admins): the request to the provider is a code flow with PKCE.
    let authorize = browser.start(&url).await;
    assert!(authorize.as_str().starts_with(&provider.url), "{authorize}");
    assert_eq!(query(&authorize, "response_type").as_deref(), Some("code"));
    assert_eq!(
        query(&authorize, "client_id").as_deref(),
        Some("zerotrace-test")
    );
    assert_eq!(
        query(&authorize, "redirect_uri").as_deref(),
        Some(format!("{url}/signin/sso/callback").as_str())
    );
    assert_eq!(
        query(&authorize, "code_challenge_method").as_deref(),
        Some("S256")
    );
    assert_eq!(
        query(&authorize, "code_challenge").map(|c| c.len()),
        Some(43),
        "a base64url SHA-256: {authorize}"
    );
    assert!(query(&authorize, "state").is_some_and(|s| s.len() >= 32));
    assert!(query(&authorize, "nonce").is_some_and(|s| s.len() >= 32));
    assert!(query(&authorize, "scope").is_some_and(|s| s.split(' ').any(|s| s == "openid")));
    let back = browser.at_provider(&authorize, "alice").await;
    assert!(
        back.as_str()
            .starts_with(&format!("{url}/signin/sso/callback")),
        "{back}"
    );
    let (status, session, page) = browser.callback(&back).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let session = session.expect("a session cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(session.contains(attribute), "{session}");
    }
    assert!(page.contains(&format!("url=/c/{a}")), "{page}");
    // The company's pages and data; another company's are missing, exactly like unknown ones.
    let (status, page) = browser.get(&format!("{url}/c/{a}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Acme OIDC"));
    assert!(!page.contains("Globex"));
    let csrf = csrf_of(&page);
    let (status, summary) = browser
        .get(&format!("{url}/api/v1/companies/{a}/summary"))
        .await;
    assert_eq!(status, StatusCode::OK, "{summary}");
    let (status, _) = browser
        .get(&format!("{url}/api/v1/companies/{b}/summary"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        browser.get(&format!("{url}/c/{b}")).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        browser.get(&format!("{url}/operator")).await.0,
        StatusCode::NOT_FOUND
    );
    // An admin writes (with the page's CSRF token): a token for a colleague.
    let (status, body) = browser
        .post(
            &format!("{url}/api/v1/companies/{a}/tokens"),
            &csrf,
            &json!({"role": "viewer", "name": "by alice"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // Her sign-in is a token of the company, named after her, expiring with the session, and
    // the audit trail says who signed in through which group.
    let http = reqwest::Client::new();
    let tokens: Value = http
        .get(format!("{url}/api/v1/companies/{a}/tokens"))
        .bearer_auth(OPERATOR)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sso = tokens["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "sso: alice@acme.example")
        .unwrap_or_else(|| panic!("{tokens}"));
    assert_eq!(sso["role"], "admin");
    assert!(sso["expires_at"].is_string(), "{sso}");
    let audit: Value = http
        .get(format!("{url}/api/v1/companies/{a}/audit"))
        .bearer_auth(OPERATOR)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        audit["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "session.sso_signed_in"
                && e["after"]["subject"] == "alice"
                && e["after"]["group"] == "acme-admins"),
        "{audit}"
    );
    // The same callback again (replayed): the sign-in it belonged to is over.
    let (status, session, _) = browser.callback(&back).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(session.is_none());

    // Bob (acme-readers): reads, but cannot write.
    let bob = Browser::new();
    let authorize = bob.start(&url).await;
    let back = bob.at_provider(&authorize, "bob").await;
    let (status, session, page) = bob.callback(&back).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(session.is_some());
    let (status, page) = bob.get(&format!("{url}/c/{a}/hosts")).await;
    assert_eq!(status, StatusCode::OK);
    let csrf = csrf_of(&page);
    assert_eq!(
        bob.get(&format!("{url}/api/v1/companies/{a}/findings"))
            .await
            .0,
        StatusCode::OK
    );
    let (status, body) = bob
        .post(
            &format!("{url}/api/v1/companies/{a}/tokens"),
            &csrf,
            &json!({"role": "admin"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

    // Dave (a group given as one string, mapped in the file): Globex's admin, not Acme's.
    let dave = Browser::new();
    let authorize = dave.start(&url).await;
    let back = dave.at_provider(&authorize, "dave").await;
    let (status, _, page) = dave.callback(&back).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(
        dave.get(&format!("{url}/api/v1/companies/{b}/summary"))
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        dave.get(&format!("{url}/api/v1/companies/{a}/summary"))
            .await
            .0,
        StatusCode::NOT_FOUND
    );

    // Carol: signed in at the provider, but no group of hers is mapped: no session.
    let carol = Browser::new();
    let authorize = carol.start(&url).await;
    let back = carol.at_provider(&authorize, "carol").await;
    let (status, session, page) = carol.callback(&back).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{page}");
    assert!(page.contains("none of your groups"), "{page}");
    assert!(session.is_none());
    assert!(!carol.cookies(&url).contains("zt_session="));
    assert_eq!(
        carol
            .get(&format!("{url}/api/v1/companies/{a}/summary"))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );

    // State: the provider's answer to one browser's sign-in, delivered to another browser
    // that started its own (login CSRF), is refused; its own browser still completes it.
    let victim = Browser::new();
    let attacker = Browser::new();
    let _victim_authorize = victim.start(&url).await;
    let attacker_authorize = attacker.start(&url).await;
    let attacker_back = attacker.at_provider(&attacker_authorize, "alice").await;
    let (status, session, page) = victim.callback(&attacker_back).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{page}");
    assert!(page.contains("state"), "{page}");
    assert!(session.is_none());
    assert_eq!(
        victim
            .get(&format!("{url}/api/v1/companies/{a}/summary"))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    let (status, session, _) = attacker.callback(&attacker_back).await;
    assert_eq!(status, StatusCode::OK);
    assert!(session.is_some());

    // Nonce: an ID token issued for another authorization request (another nonce) is refused
    // although the state matches.
    let eve = Browser::new();
    let authorize = eve.start(&url).await;
    let other_nonce = with_query(&authorize, "nonce", "a-nonce-of-another-request-0123456789");
    let back = eve.at_provider(&other_nonce, "alice").await;
    assert_eq!(query(&back, "state"), query(&authorize, "state"));
    let (status, session, page) = eve.callback(&back).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{page}");
    assert!(page.contains("nonce"), "{page}");
    assert!(session.is_none());

    // A callback in a browser that started no sign-in at all.
    let stranger = Browser::new();
    let (status, session, _) = stranger
        .callback(&Url::parse(&format!("{url}/signin/sso/callback?code=abc&state=def")).unwrap())
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(session.is_none());

    // Alice signs out: her session ends on the server.
    let (_, page) = browser.get(&format!("{url}/c/{a}")).await;
    let csrf = csrf_of(&page);
    let resp = browser
        .http
        .delete(format!("{url}/api/v1/session"))
        .header("x-zerotrace-csrf", csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        browser
            .get(&format!("{url}/api/v1/companies/{a}/summary"))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    drop(server);
}

#[test]
fn oidc_options_are_checked_at_start() {
    let env = Env::sqlite();
    let run = |extra: &[&str]| {
        let mut args = env.store_args();
        args.extend(["server", "--listen", "127.0.0.1:0"]);
        args.extend_from_slice(extra);
        let out = Command::new(bin())
            .args(&args)
            .env("ZEROTRACE_OFFLINE", "true")
            .env("ZEROTRACE_ADMIN_TOKEN", OPERATOR)
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let id = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
    let map = format!("admins={id}:admin");
    let e = run(&[
        "--oidc-issuer",
        "http://127.0.0.1:9",
        "--oidc-client-id",
        "zt",
        "--oidc-map",
        &map,
    ]);
    assert!(e.contains("--public-url"), "{e}");
    let e = run(&[
        "--oidc-issuer",
        "http://127.0.0.1:9",
        "--oidc-client-id",
        "zt",
        "--public-url",
        "http://127.0.0.1:8080",
    ]);
    assert!(e.contains("nobody could sign in"), "{e}");
    let e = run(&[
        "--oidc-issuer",
        "http://127.0.0.1:9",
        "--oidc-client-id",
        "zt",
        "--public-url",
        "http://127.0.0.1:8080",
        "--oidc-map",
        "admins=acme:owner",
    ]);
    assert!(
        e.contains("--oidc-map") && e.contains("not a company id"),
        "{e}"
    );
    let file = env.path().join("groups");
    std::fs::write(&file, format!("{map}\n\nbroken\n")).unwrap();
    let e = run(&[
        "--oidc-issuer",
        "http://127.0.0.1:9",
        "--oidc-client-id",
        "zt",
        "--public-url",
        "http://127.0.0.1:8080",
        "--oidc-map-file",
        file.to_str().unwrap(),
    ]);
    assert!(e.contains(&format!("{}:3:", file.display())), "{e}");
}

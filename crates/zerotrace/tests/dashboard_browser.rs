//! The dashboard in a real browser: Debian's headless Chromium driven over WebDriver
//! (chromedriver, `fantoccini`) against the real `zerotrace server` with real advisories (the
//! PyPA OSV data) and real reports. It signs in through the page, opens every view, sees a new
//! finding appear on the open overview and findings views without a reload within 2 s of the
//! report, follows a deep link, uses the back button and the keyboard, switches companies as
//! the operator, signs out (after which the old cookie opens nothing), and fails on any error
//! in the browser's console. A screenshot of every view at 1280 px and at phone width
//! (390 px) is saved outside the repository (the path is printed) for people to look at.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::key::Key;
use fantoccini::wd::{Capabilities, WebDriverCompatibleCommand};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use zt_inventory::{App, AppSource, InventoryReport};
use zt_testkit::{shared_path, ServerProcess};

mod common;
use common::{bin, create_company, debian_report, post_inventory, post_json, Env};

const ADMIN: &str = "zto_browser-operator-token-0123456789abcdef";
const DESKTOP: (u32, u32) = (1280, 900);
const PHONE: (u32, u32) = (390, 844);

/// A chromedriver process of this test, on a port of its own.
struct Driver {
    child: Child,
    url: String,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find_program(names: &[&str]) -> PathBuf {
    for name in names {
        for dir in ["/usr/bin", "/usr/local/bin", "/usr/lib/chromium"] {
            let p = Path::new(dir).join(name);
            if p.exists() {
                return p;
            }
        }
    }
    panic!(
        "none of {names:?} is installed: `.ci/run` installs Debian's chromium and chromium-driver"
    )
}

async fn start_driver() -> Driver {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(find_program(&["chromedriver"]))
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
        _profile: tempfile::tempdir().unwrap(),
    };
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = http.get(format!("{}/status", driver.url)).send().await {
            if r.json::<Value>().await.unwrap_or_default()["value"]["ready"] == true {
                return driver;
            }
        }
        assert!(Instant::now() < deadline, "chromedriver did not get ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn browser(driver: &Driver) -> Client {
    let mut caps = Capabilities::new();
    caps.insert("browserName".into(), json!("chrome"));
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": find_program(&["chromium", "chromium-browser"]),
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--hide-scrollbars",
                format!("--user-data-dir={}", driver._profile.path().display()),
            ],
        }),
    );
    // The console, for `console_errors`.
    caps.insert("goog:loggingPrefs".into(), json!({ "browser": "ALL" }));
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a browser session")
}

/// chromedriver's log endpoint: the console messages since the last call.
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!("session/{}/se/log", session_id.unwrap_or("")))
    }

    fn method_and_body(&self, _: &url::Url) -> (reqwest::Method, Option<String>) {
        (reqwest::Method::POST, Some(r#"{"type":"browser"}"#.into()))
    }
}

/// The console errors since the last call (each "message"), emptying the log.
async fn console_errors(c: &Client) -> Vec<String> {
    let log = c.issue_cmd(BrowserLog).await.expect("the browser log");
    log.as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["level"] == "SEVERE")
        .map(|e| e["message"].as_str().unwrap_or("").to_string())
        .collect()
}

async fn assert_clean_console(c: &Client, step: &str) {
    let errors = console_errors(c).await;
    assert!(errors.is_empty(), "{step}: console errors: {errors:#?}");
}

/// Evaluates `script` (a function body returning a value) in the page.
async fn js(c: &Client, script: &str) -> Value {
    c.execute(script, vec![]).await.expect(script)
}

/// Waits until `script` returns true; panics naming `what` after `timeout`.
async fn wait_js(c: &Client, script: &str, timeout: Duration, what: &str) -> Duration {
    let start = Instant::now();
    loop {
        if js(c, script).await == json!(true) {
            return start.elapsed();
        }
        assert!(start.elapsed() < timeout, "{what}: not within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn text(c: &Client, css: &str) -> String {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .text()
        .await
        .unwrap()
}

async fn path(c: &Client) -> String {
    let url = c.current_url().await.unwrap();
    match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    }
}

/// Where the screenshots go: `ZEROTRACE_SCREENSHOTS`, or beside cargo's target directory
/// (outside the repository in CI: `.ci/run` keeps the target dir in /var/tmp).
fn screenshot_dir() -> PathBuf {
    let dir = std::env::var_os("ZEROTRACE_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("zerotrace-screenshots"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Screenshots of the page as it is, at 1280 px and at phone width, each as tall as the page
/// (up to 4000 px); then back to the desktop window.
async fn shoot(c: &Client, dir: &Path, name: &str) {
    for (w, h) in [DESKTOP, PHONE] {
        c.set_window_size(w, h).await.unwrap();
        let width = js(c, "return window.innerWidth").await;
        assert_eq!(width, json!(w), "{name}: the window is {width} px wide");
        // Nothing may stick out sideways: wide tables scroll inside their own frame.
        let overflow = js(
            c,
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
        )
        .await;
        assert_eq!(
            overflow,
            json!(0),
            "{name} at {w} px: the page is wider than the window"
        );
        if w == PHONE.0 {
            // On a phone every table's content is on the screen, not beyond its right edge
            // in a frame to scroll sideways (each row is a card), and every value shown says
            // which column it is (its label).
            let off_screen = js(
                c,
                "const w = window.innerWidth; \
                 return [...document.querySelectorAll('table td, table td *')] \
                   .filter(el => !el.closest('dialog')) \
                   .map(el => [el, el.getBoundingClientRect()]) \
                   .filter(([_, r]) => r.width > 0 && (r.left < 0 || r.right > w + 0.5)) \
                   .map(([el, r]) => `${el.closest('td').dataset.label}: ${el.tagName} \
                     ${Math.round(r.left)}..${Math.round(r.right)}`)",
            )
            .await;
            assert_eq!(
                off_screen,
                json!([]),
                "{name} at {w} px: table content beyond the window's {w} px"
            );
            let unlabelled = js(
                c,
                "return [...document.querySelectorAll('table td')] \
                   .filter(td => td.getBoundingClientRect().width > 0 && !td.dataset.label) \
                   .map(td => td.textContent.trim().slice(0, 40))",
            )
            .await;
            assert_eq!(
                unlabelled,
                json!([]),
                "{name} at {w} px: table cells shown without their column's name"
            );
        }
        let height = js(
            c,
            "return Math.min(document.documentElement.scrollHeight, 4000)",
        )
        .await
        .as_u64()
        .unwrap_or(u64::from(h)) as u32;
        if w == PHONE.0 {
            // What a phone shows first, at its real size.
            let png = c.screenshot().await.unwrap();
            std::fs::write(dir.join(format!("{name}-{w}-top.png")), png).unwrap();
        }
        c.set_window_size(w, height.max(h)).await.unwrap();
        let png = c.screenshot().await.unwrap();
        std::fs::write(dir.join(format!("{name}-{w}.png")), png).unwrap();
    }
    c.set_window_size(DESKTOP.0, DESKTOP.1).await.unwrap();
}

/// Opens `url` and checks it is the view `h1` says, with a clean console.
async fn open(c: &Client, url: &str, h1: &str) {
    c.goto(url).await.unwrap();
    let got = text(c, "h1").await;
    assert!(got.contains(h1), "{url}: h1 is {got:?}, want {h1:?}");
    assert_clean_console(c, url).await;
}

fn zerotrace(env: &Env, args: &[&str]) {
    let out = Command::new(bin())
        .args(env.store_args())
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {out:?}");
}

async fn enroll(http: &reqwest::Client, api: &str, secret: &str, host: &str) -> (String, String) {
    let v = post_json(
        http,
        &format!("{api}/api/v1/enroll"),
        None,
        &json!({"enroll_secret": secret, "hostname": host,
            "os": {"id": "debian", "version_id": "12", "name": "Debian GNU/Linux 12 (bookworm)"},
            "arch": "x86_64", "agent_version": "0.1.0"}),
    )
    .await;
    (
        v["agent_id"].as_str().unwrap().to_string(),
        v["agent_token"].as_str().unwrap().to_string(),
    )
}

fn pypi(apps: &[(&str, &str)]) -> Vec<App> {
    apps.iter()
        .map(|(n, v)| App::new(*n, *v, AppSource::Pypi))
        .collect()
}

fn report(host: &str, apps: &[(&str, &str)]) -> InventoryReport {
    debian_report(host, "Debian GNU/Linux 12 (bookworm)", pypi(apps))
}

/// Posts a report and waits until it is processed.
async fn report_processed(
    http: &reqwest::Client,
    api: &str,
    token: &str,
    report: &InventoryReport,
) {
    assert_eq!(
        post_inventory(http, api, token, report).await,
        reqwest::StatusCode::ACCEPTED
    );
    let url = format!("{api}/api/v1/reports/{}", report.report_id);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v: Value = http
            .get(&url)
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap_or_default();
        if v["status"] == "done" {
            return;
        }
        assert!(Instant::now() < deadline, "report not processed: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_in_a_real_browser() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let env = Env::sqlite();
    zerotrace(
        &env,
        &[
            "feeds",
            "import",
            shared_path("osv/pypa/vulns").to_str().unwrap(),
        ],
    );
    let mut args = env.store_args();
    args.extend([
        "server",
        "--listen",
        "127.0.0.1:0",
        "--knowledge-poll-secs",
        "0.2",
        // The notification rule made on the page sends its test to this server itself.
        "--allow-private-webhooks",
    ]);
    let server = ServerProcess::start(
        bin(),
        &args,
        &[("ZEROTRACE_ADMIN_TOKEN", ADMIN), ("ZEROTRACE_LOG", "info")],
        env.path(),
        "server",
    )
    .expect("server starts");
    let api = server.url.as_str();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();

    // Two companies with hosts that run vulnerable Python packages.
    let acme = create_company(&http, api, ADMIN, "Acme Corp").await;
    let beta = create_company(&http, api, ADMIN, "Beta Bank").await;
    let (a, b) = (
        acme["id"].as_str().unwrap().to_string(),
        beta["id"].as_str().unwrap().to_string(),
    );
    let acme_admin = post_json(
        &http,
        &format!("{api}/api/v1/companies/{a}/tokens"),
        Some(ADMIN),
        &json!({"role": "admin"}),
    )
    .await["token"]
        .as_str()
        .unwrap()
        .to_string();
    let secret = acme["enroll_secret"].as_str().unwrap();
    let (web_id, web) = enroll(&http, api, secret, "web-1").await;
    let (_, db) = enroll(&http, api, secret, "db-1").await;
    let (_, build) = enroll(&http, api, secret, "build-1").await;
    let (_, ops) = enroll(&http, api, beta["enroll_secret"].as_str().unwrap(), "ops-1").await;
    let web_apps = [
        ("django", "3.2.0"),
        ("requests", "2.19.0"),
        ("jinja2", "2.10"),
    ];
    report_processed(&http, api, &web, &report("web-1", &web_apps)).await;
    let db_apps = [("pyyaml", "5.1"), ("urllib3", "1.24.1")];
    report_processed(&http, api, &db, &report("db-1", &db_apps)).await;
    report_processed(&http, api, &build, &report("build-1", &[("six", "1.16.0")])).await;
    report_processed(&http, api, &ops, &report("ops-1", &[("flask", "0.12")])).await;
    let findings: Value = http
        .get(format!(
            "{api}/api/v1/companies/{a}/findings?agent_id={web_id}"
        ))
        .bearer_auth(&acme_admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let vuln_id = findings["items"][0]["vulnerability"]["id"]
        .as_str()
        .expect("web-1 has findings")
        .to_string();

    let driver = start_driver().await;
    let c = browser(&driver).await;
    c.set_window_size(DESKTOP.0, DESKTOP.1).await.unwrap();
    let shots = screenshot_dir();
    println!("screenshots: {}", shots.display());

    // A deep link while signed out leads to the sign-in page, and after it back to the link.
    let deep = format!("/c/{a}/findings?severity=high&q=django");
    c.goto(&format!("{api}{deep}")).await.unwrap();
    assert!(
        path(&c).await.starts_with("/signin?next="),
        "{}",
        path(&c).await
    );
    assert_eq!(text(&c, "h1").await, "Sign in");
    assert_clean_console(&c, "sign-in page").await;
    shoot(&c, &shots, "01-signin").await;
    // A wrong token: the error is shown where the user looks (the banner above the field).
    c.find(Locator::Id("token"))
        .await
        .unwrap()
        .send_keys("ztu_not-a-token")
        .await
        .unwrap();
    c.find(Locator::Css("#signin-form button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_js(
        &c,
        "return document.getElementById('error').textContent.includes('Signing in failed')",
        Duration::from_secs(5),
        "the sign-in error",
    )
    .await;
    let errors = console_errors(&c).await;
    assert!(
        errors
            .iter()
            .all(|e| e.contains("/api/v1/session") && e.contains("401")),
        "only the refused sign-in may log: {errors:#?}"
    );
    shoot(&c, &shots, "02-signin-error").await;
    let token_field = c.find(Locator::Id("token")).await.unwrap();
    token_field.clear().await.unwrap();
    token_field.send_keys(&acme_admin).await.unwrap();
    token_field.send_keys(&Key::Enter).await.unwrap();
    wait_js(
        &c,
        "return location.pathname.endsWith('/findings')",
        Duration::from_secs(10),
        "landing on the deep link",
    )
    .await;
    assert_eq!(path(&c).await, deep);
    assert_eq!(
        c.find(Locator::Id("f-severity"))
            .await
            .unwrap()
            .prop("value")
            .await
            .unwrap()
            .as_deref(),
        Some("high")
    );
    // The token is nowhere the page's scripts can reach it.
    let stored = js(
        &c,
        "return JSON.stringify([document.cookie, Object.keys(localStorage), Object.keys(sessionStorage), location.href])",
    )
    .await;
    assert!(
        !stored.as_str().unwrap().contains(&acme_admin)
            && !stored.as_str().unwrap().contains("zt_session"),
        "{stored}"
    );
    assert_clean_console(&c, "after sign-in").await;

    // Every view of the company, each at its own URL.
    let views = [
        ("03-overview", format!("/c/{a}"), "Overview".to_string()),
        ("04-hosts", format!("/c/{a}/hosts"), "Hosts".into()),
        ("05-host", format!("/c/{a}/hosts/{web_id}"), "web-1".into()),
        ("06-software", format!("/c/{a}/software"), "Software".into()),
        (
            "07-vulnerabilities",
            format!("/c/{a}/vulnerabilities"),
            "Vulnerabilities".into(),
        ),
        (
            "08-vulnerability",
            format!("/c/{a}/vulnerabilities/{vuln_id}"),
            vuln_id.clone(),
        ),
        ("09-findings", format!("/c/{a}/findings"), "Findings".into()),
        (
            "10-add-hosts",
            format!("/c/{a}/add-hosts"),
            "Add hosts".into(),
        ),
    ];
    for (name, url, h1) in &views {
        open(&c, &format!("{api}{url}"), h1).await;
        shoot(&c, &shots, name).await;
        assert_clean_console(&c, name).await;
    }
    // The overview: three hosts; the riskiest first; the vulnerabilities on most hosts.
    open(&c, &format!("{api}/c/{a}"), "Overview").await;
    assert_eq!(text(&c, "[data-count='agents']").await, "3");
    let risky = text(&c, "section[aria-labelledby='risky-hosts'] tbody").await;
    // db-1's high and medium findings outrank web-1's many of unknown severity.
    assert!(
        risky.starts_with("db-1") && risky.contains("web-1") && !risky.contains("build-1"),
        "{risky}"
    );
    assert!(!text(&c, "section[aria-labelledby='top-vulns'] tbody")
        .await
        .is_empty());
    assert_eq!(
        js(&c, "return document.querySelectorAll('figure.trend svg circle, figure.trend svg path').length").await,
        json!(5),
        "one point per severity today"
    );
    // Time to remediate: one row per severity (none remediated yet: no median).
    assert_eq!(
        js(
            &c,
            "return document.querySelectorAll(\"section[aria-labelledby='mttr'] tbody tr\").length"
        )
        .await,
        json!(5)
    );
    // The overdue series: the toggle's link, the same chart of the overdue counts.
    c.find(Locator::Css("nav.tabs a[href*='series=overdue']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_js(
        &c,
        "return location.search.includes('series=overdue') \
         && !!document.querySelector(\"figure.trend[data-series='overdue']\")",
        Duration::from_secs(5),
        "the overdue trend",
    )
    .await;
    let label = js(
        &c,
        "return document.querySelector('figure.trend svg').getAttribute('aria-label')",
    )
    .await;
    assert!(
        label.as_str().unwrap().starts_with("Overdue findings")
            && label.as_str().unwrap().contains(": 0 critical, 0 high"),
        "{label}"
    );
    shoot(&c, &shots, "03b-overview-overdue").await;
    assert_clean_console(&c, "overdue trend").await;

    // Links and the back button: hosts → a host → back → back.
    open(&c, &format!("{api}/c/{a}/hosts"), "Hosts").await;
    c.find(Locator::LinkText("db-1"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_js(
        &c,
        "return document.querySelector('h1').textContent.includes('db-1')",
        Duration::from_secs(5),
        "the host page",
    )
    .await;
    c.back().await.unwrap();
    wait_js(
        &c,
        "return location.pathname.endsWith('/hosts')",
        Duration::from_secs(5),
        "back to the hosts",
    )
    .await;
    assert_eq!(text(&c, "h1").await, "Hosts");
    c.back().await.unwrap();
    wait_js(
        &c,
        &format!("return location.pathname === '/c/{a}'"),
        Duration::from_secs(5),
        "back to the overview",
    )
    .await;
    assert_clean_console(&c, "back button").await;

    // The keyboard: the first Tab reaches the skip link, which moves the focus to the content.
    open(&c, &format!("{api}/c/{a}/findings"), "Findings").await;
    c.find(Locator::Css("body"))
        .await
        .unwrap()
        .send_keys(&Key::Tab)
        .await
        .unwrap();
    assert_eq!(
        js(&c, "return document.activeElement.textContent").await,
        json!("Skip to content")
    );
    c.active_element()
        .await
        .unwrap()
        .send_keys(&Key::Enter)
        .await
        .unwrap();
    assert_eq!(js(&c, "return location.hash").await, json!("#main"));
    // Sortable headers are links: from the keyboard, "Open findings" sorts the hosts by risk.
    open(&c, &format!("{api}/c/{a}/hosts"), "Hosts").await;
    let header = c
        .find(Locator::Css("th a.sort[href*='sort=risk']"))
        .await
        .unwrap();
    js(
        &c,
        "document.querySelector(\"th a.sort[href*='sort=risk']\").focus(); return true",
    )
    .await;
    c.active_element()
        .await
        .unwrap()
        .send_keys(&Key::Enter)
        .await
        .unwrap();
    drop(header);
    wait_js(
        &c,
        "return location.search.includes('sort=risk')",
        Duration::from_secs(5),
        "sorted by risk",
    )
    .await;
    assert_eq!(
        text(&c, "th[aria-sort='descending']")
            .await
            .trim_end_matches(" ▼"),
        "Open findings"
    );
    assert_eq!(
        text(&c, "#view tbody tr:first-child td:first-child a").await,
        "db-1"
    );
    open(&c, &format!("{api}/c/{a}/findings"), "Findings").await;
    // A filter form submitted from the keyboard puts the filter into the URL.
    let search = c.find(Locator::Id("f-q")).await.unwrap();
    search.send_keys("django").await.unwrap();
    search.send_keys(&Key::Enter).await.unwrap();
    wait_js(
        &c,
        "return location.search.includes('q=django')",
        Duration::from_secs(5),
        "the search in the URL",
    )
    .await;
    assert_clean_console(&c, "keyboard").await;

    // Live: a report processed while the overview is open changes its counts, without a
    // reload, within 2 s of the report being accepted.
    open(&c, &format!("{api}/c/{a}"), "Overview").await;
    wait_js(
        &c,
        "return document.getElementById('live').dataset.state === 'on'",
        Duration::from_secs(5),
        "the live stream",
    )
    .await;
    let total_before = text(&c, "[data-count='findings.total']").await;
    js(&c, "window.__notReloaded = true; return true").await;
    let mut more = web_apps.to_vec();
    more.push(("pillow", "8.0.0"));
    let posted = Instant::now();
    assert_eq!(
        post_inventory(&http, api, &web, &report("web-1", &more)).await,
        reqwest::StatusCode::ACCEPTED
    );
    wait_js(
        &c,
        &format!(
            "return document.querySelector(\"[data-count='findings.total']\").textContent !== {total_before:?}"
        ),
        Duration::from_secs(2).saturating_sub(posted.elapsed()),
        "the overview's new count",
    )
    .await;
    println!("overview updated {:?} after the report", posted.elapsed());
    assert_eq!(
        js(&c, "return window.__notReloaded === true").await,
        json!(true)
    );
    assert_clean_console(&c, "live overview").await;
    shoot(&c, &shots, "11-overview-live").await;

    // The same on the findings view: the new finding's row appears.
    open(&c, &format!("{api}/c/{a}/findings?q=paramiko"), "Findings").await;
    wait_js(
        &c,
        "return document.getElementById('live').dataset.state === 'on'",
        Duration::from_secs(5),
        "the live stream",
    )
    .await;
    assert!(!text(&c, "#view").await.contains("paramiko 2.0.0"));
    js(&c, "window.__notReloaded = true; return true").await;
    let mut more = db_apps.to_vec();
    more.push(("paramiko", "2.0.0"));
    let posted = Instant::now();
    assert_eq!(
        post_inventory(&http, api, &db, &report("db-1", &more)).await,
        reqwest::StatusCode::ACCEPTED
    );
    wait_js(
        &c,
        "return [...document.querySelectorAll('#view tbody tr')].some(r => r.textContent.includes('paramiko') && r.textContent.includes('db-1'))",
        Duration::from_secs(2).saturating_sub(posted.elapsed()),
        "the new finding's row",
    )
    .await;
    println!("findings updated {:?} after the report", posted.elapsed());
    assert_eq!(
        js(&c, "return window.__notReloaded === true").await,
        json!(true)
    );
    assert_clean_console(&c, "live findings").await;

    // The decision dialog, at 1280 px and at phone width: the row's "Decide" button is on
    // screen and reached from the keyboard, the dialog it opens has every control inside the
    // window, Escape closes it and gives the focus back to the button; a decision recorded
    // from it at phone width lands (the finding shows its analysis).
    let findings_url = format!("{api}/c/{a}/findings?agent_id={web_id}");
    for (w, h) in [DESKTOP, PHONE] {
        c.set_window_size(w, h).await.unwrap();
        open(&c, &findings_url, "Findings").await;
        let button = "#view tbody tr:first-child button[data-decide]";
        let on_screen = js(
            &c,
            &format!(
                "const r = document.querySelector(\"{button}\").getBoundingClientRect(); \
                 return r.left >= 0 && r.right <= window.innerWidth && r.width > 0"
            ),
        )
        .await;
        assert_eq!(on_screen, json!(true), "the Decide button at {w} px");
        js(
            &c,
            &format!("document.querySelector(\"{button}\").focus(); return true"),
        )
        .await;
        c.active_element()
            .await
            .unwrap()
            .send_keys(&Key::Enter)
            .await
            .unwrap();
        wait_js(
            &c,
            "return !!document.querySelector('#decide-0[open]')",
            Duration::from_secs(5),
            "the decision dialog",
        )
        .await;
        let outside = js(
            &c,
            "const d = document.querySelector('#decide-0'); \
             return [...d.querySelectorAll('select, input:not([type=hidden]), button, label')] \
               .map(el => [el.name || el.textContent.trim().slice(0, 30), el.getBoundingClientRect()]) \
               .filter(([_, r]) => r.width === 0 || r.left < 0 || r.top < 0 \
                 || r.right > window.innerWidth || r.bottom > window.innerHeight) \
               .map(([n, r]) => `${n}: ${r.left},${r.top}-${r.right},${r.bottom}`)",
        )
        .await;
        assert_eq!(
            outside,
            json!([]),
            "controls of the dialog outside the {w}x{h} window"
        );
        // The form's own width: nothing in it sticks out sideways (the justification select
        // did, in a table cell).
        let overflow = js(
            &c,
            "const f = document.querySelector('#decide-0 form'); return f.scrollWidth - f.clientWidth",
        )
        .await;
        assert_eq!(overflow, json!(0), "the form at {w} px");
        assert_eq!(
            js(&c, "return document.activeElement.name").await,
            json!("state"),
            "the focus starts on the first field"
        );
        let png = c.screenshot().await.unwrap();
        std::fs::write(shots.join(format!("11a-decide-dialog-{w}.png")), png).unwrap();
        c.active_element()
            .await
            .unwrap()
            .send_keys(&Key::Escape)
            .await
            .unwrap();
        wait_js(
            &c,
            "return !document.querySelector('#decide-0').open \
             && document.activeElement && document.activeElement.matches('button[data-decide]')",
            Duration::from_secs(5),
            "Escape to close the dialog and focus the button",
        )
        .await;
        assert_clean_console(&c, &format!("decision dialog at {w} px")).await;
    }
    // At phone width: an "in triage" decision (not hiding anything) about the second row.
    let row2 = "#view tbody tr:nth-child(2)";
    let triaged = text(&c, &format!("{row2} a.vid")).await;
    c.find(Locator::Css(&format!("{row2} button[data-decide]")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let form2 = "#decide-1 form.analysis-form";
    for (name, value) in [
        ("state", "in_triage"),
        ("justification", "protected_by_mitigating_control"),
    ] {
        c.find(Locator::Css(&format!("{form2} select[name='{name}']")))
            .await
            .unwrap()
            .select_by_value(value)
            .await
            .unwrap();
    }
    js(&c, "window.__beforeTriage = true; return true").await;
    c.find(Locator::Css(&format!("{form2} button[type='submit']")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_js(
        &c,
        &format!(
            "return window.__beforeTriage === undefined && document.readyState === 'complete' \
             && !document.getElementById('error').textContent \
             && [...document.querySelectorAll('#view tbody tr')].some(r => \
                  r.querySelector('a.vid') && r.querySelector('a.vid').textContent === {triaged:?} \
                  && r.textContent.includes('in_triage') \
                  && r.textContent.includes('protected_by_mitigating_control'))"
        ),
        Duration::from_secs(10),
        "the triaged finding to show its analysis",
    )
    .await;
    assert_clean_console(&c, "triage decision at phone width").await;
    let triaged_rows: Value = http
        .get(format!(
            "{api}/api/v1/companies/{a}/findings?agent_id={web_id}&q={triaged}"
        ))
        .bearer_auth(&acme_admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        triaged_rows["items"].as_array().unwrap().iter().any(|f| {
            f["vulnerability"]["id"] == triaged.as_str()
                && f["analysis"]["state"] == "in_triage"
                && f["analysis"]["suppressed"] == false
        }),
        "{triaged_rows}"
    );
    c.set_window_size(DESKTOP.0, DESKTOP.1).await.unwrap();

    // A decision from the findings view: the row's form records a risk acceptance of that
    // finding (its package version on its host) with the session cookie and CSRF header,
    // and the hidden finding leaves the list.
    open(&c, &findings_url, "Findings").await;
    let row = "#view tbody tr:first-child";
    let decided = text(&c, &format!("{row} a.vid")).await;
    let package = text(&c, &format!("{row} td:nth-child(3)")).await;
    c.find(Locator::Css(&format!("{row} button[data-decide]")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let form = "#decide-0 form.analysis-form".to_string();
    for (name, value) in [("state", "exploitable"), ("response", "will_not_fix")] {
        c.find(Locator::Css(&format!("{form} select[name='{name}']")))
            .await
            .unwrap()
            .select_by_value(value)
            .await
            .unwrap();
    }
    c.find(Locator::Css(&format!("{form} input[name='suppress']")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // A date input's typed format follows the browser's locale; its value does not.
    js(
        &c,
        &format!(
            "document.querySelector(\"{form} input[name='expires_at']\").value = '2099-12-31'; return true"
        ),
    )
    .await;
    c.find(Locator::Css(&format!("{form} input[name='comment']")))
        .await
        .unwrap()
        .send_keys("accepted until the migration")
        .await
        .unwrap();
    shoot(&c, &shots, "11b-finding-decision").await;
    js(&c, "window.__beforeDecision = true; return true").await;
    c.find(Locator::Css(&format!("{form} button[type='submit']")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_js(
        &c,
        &format!(
            "return window.__beforeDecision === undefined && document.readyState === 'complete' \
             && document.querySelector('h1') && !document.getElementById('error').textContent \
             && ![...document.querySelectorAll('#view tbody tr a.vid')].some(a => a.textContent === {decided:?})"
        ),
        Duration::from_secs(10),
        "the decided finding to leave the list",
    )
    .await;
    assert_clean_console(&c, "finding decision").await;
    // What was recorded, as the API tells it.
    let hidden: Value = http
        .get(format!(
            "{api}/api/v1/companies/{a}/findings?agent_id={web_id}&suppressed=only"
        ))
        .bearer_auth(&acme_admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let covered: Vec<&Value> = hidden["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["vulnerability"]["id"] == decided.as_str())
        .collect();
    assert_eq!(covered.len(), 1, "{hidden}");
    let analysis = &covered[0]["analysis"];
    assert_eq!(analysis["state"], "exploitable", "{analysis}");
    assert_eq!(analysis["suppressed"], true, "{analysis}");
    assert!(
        analysis["expires_at"]
            .as_str()
            .is_some_and(|e| e.starts_with("2099-12-31T23:59:59")),
        "{analysis}"
    );
    assert!(package.starts_with(covered[0]["package"]["name"].as_str().unwrap()));
    let full: Value = http
        .get(format!(
            "{api}/api/v1/companies/{a}/analyses/{}",
            analysis["analysis_id"].as_str().unwrap()
        ))
        .bearer_auth(&acme_admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(full["response"], json!(["will_not_fix"]), "{full}");
    assert_eq!(full["scope"]["agent_ids"], json!([web_id]), "{full}");
    let audit: Value = http
        .get(format!("{api}/api/v1/companies/{a}/audit"))
        .bearer_auth(&acme_admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        audit["items"][0]["comment"], "accepted until the migration",
        "{audit}"
    );

    // The notifications page of the company.
    open(&c, &format!("{api}/c/{a}/notifications"), "Notifications").await;
    shoot(&c, &shots, "11c-notifications").await;
    assert_clean_console(&c, "notifications").await;

    // A rule made with the page's form: refused first (no event chosen: the API names the
    // field, shown in the form), then created; its test message goes to a real receiver (this
    // server, which answers a POST to its document with 405: a failed delivery, logged with
    // its id); then it is deleted.
    c.find(Locator::Css("#new-rule > summary"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let form = c.find(Locator::Id("rule-form")).await.unwrap();
    form.find(Locator::Css("input[name=name]"))
        .await
        .unwrap()
        .send_keys("SOC webhook")
        .await
        .unwrap();
    form.find(Locator::Css("input[name=url]"))
        .await
        .unwrap()
        .send_keys(&format!("{api}/api/openapi.json"))
        .await
        .unwrap();
    form.find(Locator::Css("button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_js(
        &c,
        "const e = document.querySelector('#rule-form [data-form-error]'); \
         return !!e && e.textContent.includes('events')",
        Duration::from_secs(5),
        "the form's error naming the events",
    )
    .await;
    shoot(&c, &shots, "11d-notification-rule-error").await;
    let errors = console_errors(&c).await;
    assert!(
        errors
            .iter()
            .all(|e| e.contains("/notification-rules") && e.contains("400")),
        "only the refused rule may log: {errors:#?}"
    );
    form.find(Locator::Css("input[name=events][value='finding.opened']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    form.find(Locator::Css("button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_js(
        &c,
        "return [...document.querySelectorAll('tr[data-rule]')].some(r => r.textContent.includes('SOC webhook'))",
        Duration::from_secs(5),
        "the new rule in the rules table",
    )
    .await;
    assert!(text(&c, "tr[data-rule]").await.contains("finding.opened"));
    c.find(Locator::Css("button[data-rule-test]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_js(
        &c,
        "return document.getElementById('rule-status').textContent.startsWith('Test message failed: 405')",
        Duration::from_secs(10),
        "the test message's outcome",
    )
    .await;
    c.refresh().await.unwrap();
    wait_js(
        &c,
        "return [...document.querySelectorAll('tr.outcome-test_failed')].some(r => r.textContent.includes('SOC webhook'))",
        Duration::from_secs(5),
        "the test attempt among the deliveries",
    )
    .await;
    shoot(&c, &shots, "11e-notification-rule").await;
    js(&c, "window.confirm = () => true; return true").await;
    c.find(Locator::Css("button[data-rule-delete]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_js(
        &c,
        "return document.readyState === 'complete' && !document.querySelector('tr[data-rule]')",
        Duration::from_secs(5),
        "the rule gone after Delete",
    )
    .await;
    assert_clean_console(&c, "notification rules").await;

    // Signing out ends the session on the server: the old cookie opens nothing.
    let cookie = c.get_named_cookie("zt_session").await.unwrap();
    let old = cookie.value().to_string();
    assert_eq!(cookie.http_only(), Some(true));
    c.find(Locator::Id("signout"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_js(
        &c,
        "return location.pathname === '/signin'",
        Duration::from_secs(5),
        "the sign-in page after sign-out",
    )
    .await;
    let resp = http
        .get(format!("{api}/api/v1/companies/{a}/summary"))
        .header("cookie", format!("zt_session={old}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), reqwest::StatusCode::UNAUTHORIZED);
    c.goto(&format!("{api}/c/{a}")).await.unwrap();
    assert!(path(&c).await.starts_with("/signin"), "{}", path(&c).await);
    assert_clean_console(&c, "sign-out").await;

    // The operator: every company, and into one of them.
    let token_field = c.find(Locator::Id("token")).await.unwrap();
    token_field.send_keys(ADMIN).await.unwrap();
    token_field.send_keys(&Key::Enter).await.unwrap();
    wait_js(
        &c,
        &format!("return location.pathname === '/c/{a}'"),
        Duration::from_secs(10),
        "back to where the operator was headed",
    )
    .await;
    open(&c, &format!("{api}/"), "All companies").await;
    assert_eq!(path(&c).await, "/operator");
    let rows = text(&c, "#view tbody").await;
    assert!(
        rows.contains("Acme Corp") && rows.contains("Beta Bank"),
        "{rows}"
    );
    shoot(&c, &shots, "12-operator").await;
    c.find(Locator::LinkText("Beta Bank"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_js(
        &c,
        &format!("return location.pathname === '/c/{b}'"),
        Duration::from_secs(5),
        "Beta's overview",
    )
    .await;
    assert_eq!(text(&c, "[data-count='agents']").await, "1");
    // The switcher goes to the same view of another company.
    open(&c, &format!("{api}/c/{b}/hosts"), "Hosts").await;
    c.find(Locator::Id("switch-company"))
        .await
        .unwrap()
        .select_by_value(&a)
        .await
        .unwrap();
    c.find(Locator::Css("form.switch button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_js(
        &c,
        &format!("return location.pathname === '/c/{a}/hosts'"),
        Duration::from_secs(5),
        "Acme's hosts",
    )
    .await;
    shoot(&c, &shots, "13-operator-in-company").await;
    assert_clean_console(&c, "operator").await;
    c.close().await.unwrap();
    println!("screenshots: {}", shots.display());
}

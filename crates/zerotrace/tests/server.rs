//! `zerotrace server` end to end: the real binary, real HTTP, real inventories (from
//! ../shared/data inventories and SBOMs) and real advisories (OSV). Every test body runs twice:
//! on a temporary SQLite file (`sqlite::…`) and on a PostgreSQL database of its own
//! (`postgres::…`, see zt_testkit::postgres for which server).

use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use zt_inventory::{Host, InventoryReport, OsInfo};
use zt_testkit::{shared_path, ServerProcess};

const ADMIN: &str = "zto_test-operator-token-0123456789abcdef";

mod common;
use common::{bin, Env};

/// Runs a one-shot `zerotrace` command on the test's store; returns stdout (panics on failure).
fn zerotrace(env: &Env, args: &[&str]) -> String {
    let out = Command::new(bin())
        .args(env.store_args())
        .args(args)
        .env_remove("ZEROTRACE_DATABASE_URL")
        .output()
        .expect("run zerotrace");
    assert!(
        out.status.success(),
        "zerotrace {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn start(env: &Env, name: &str, extra: &[&str]) -> ServerProcess {
    let mut args = env.store_args();
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
        env.path(),
        name,
    )
    .expect("server starts")
}

/// A report of a real inventory or SBOM from the shared data.
fn report_from(rel: &str, hostname: &str) -> InventoryReport {
    let inv = zt_sbom::read_path(&shared_path(rel)).expect("shared inventory reads");
    let os = inv.os.clone().unwrap_or(OsInfo {
        id: "linux".into(),
        version_id: String::new(),
        name: String::new(),
    });
    assert!(!inv.apps.is_empty(), "{rel} lists no apps");
    InventoryReport {
        report_id: uuid::Uuid::new_v4(),
        collected_at: chrono::Utc::now(),
        host: Host {
            hostname: hostname.into(),
            os,
            arch: "x86_64".into(),
        },
        apps: inv.apps,
        tags: None,
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

struct Api {
    http: reqwest::Client,
    url: String,
}

struct Resp {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    text: String,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    fn error_code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }
}

impl Api {
    fn new(url: &str) -> Api {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        Api {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
            url: url.to_string(),
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Resp {
        let r = req.send().await.expect("request");
        Resp {
            status: r.status(),
            headers: r.headers().clone(),
            text: r.text().await.unwrap_or_default(),
        }
    }

    async fn get(&self, path: &str, token: &str) -> Resp {
        self.send(
            self.http
                .get(format!("{}{path}", self.url))
                .bearer_auth(token),
        )
        .await
    }

    async fn post_json(&self, path: &str, token: Option<&str>, body: &Value) -> Resp {
        let mut req = self.http.post(format!("{}{path}", self.url)).json(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        self.send(req).await
    }

    async fn post_raw(&self, path: &str, token: &str, body: Vec<u8>, gzipped: bool) -> Resp {
        let mut req = self
            .http
            .post(format!("{}{path}", self.url))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body);
        if gzipped {
            req = req.header("content-encoding", "gzip");
        }
        self.send(req).await
    }

    async fn create_company(&self, name: &str) -> (String, String) {
        let r = self
            .post_json("/api/v1/companies", Some(ADMIN), &json!({ "name": name }))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        let v = r.json();
        (
            v["id"].as_str().unwrap().to_string(),
            v["enroll_secret"].as_str().unwrap().to_string(),
        )
    }

    async fn user_token(&self, company: &str, role: &str) -> String {
        let r = self
            .post_json(
                &format!("/api/v1/companies/{company}/tokens"),
                Some(ADMIN),
                &json!({ "role": role }),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        r.json()["token"].as_str().unwrap().to_string()
    }

    /// Enrolls an agent; returns (agent_id, agent_token).
    async fn enroll(&self, secret: &str, report: &InventoryReport) -> (String, String) {
        let r = self
            .post_json(
                "/api/v1/enroll",
                None,
                &json!({
                    "enroll_secret": secret,
                    "hostname": report.host.hostname,
                    "os": report.host.os,
                    "arch": report.host.arch,
                    "agent_version": "test",
                }),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        let v = r.json();
        (
            v["agent_id"].as_str().unwrap().to_string(),
            v["agent_token"].as_str().unwrap().to_string(),
        )
    }

    async fn post_report(&self, token: &str, report: &InventoryReport, gzipped: bool) -> Resp {
        let body = serde_json::to_vec(report).unwrap();
        let body = if gzipped { gzip(&body) } else { body };
        self.post_raw("/api/v1/inventory", token, body, gzipped)
            .await
    }

    /// Waits until the report is processed; returns its status document.
    async fn wait_done(&self, token: &str, report_id: uuid::Uuid) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let r = self
                .get(&format!("/api/v1/reports/{report_id}"), token)
                .await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
            let v = r.json();
            if v["status"] == "done" || v["status"] == "failed" {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "report not processed in time: {v}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every open finding of a company, through all pages of `limit`.
    async fn all_findings(
        &self,
        company: &str,
        token: &str,
        query: &str,
        limit: u32,
    ) -> Vec<Value> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/api/v1/companies/{company}/findings?limit={limit}&{query}");
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let r = self.get(&path, token).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
            let v = r.json();
            items.extend(v["items"].as_array().unwrap().iter().cloned());
            match v["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => return items,
            }
        }
    }

    /// Every item of a paged list at `path` (with `query`), through all pages of `limit`.
    async fn all_pages(&self, path: &str, token: &str, query: &str, limit: u32) -> Vec<Value> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut url = format!("{path}?limit={limit}&{query}");
            if let Some(c) = &cursor {
                url.push_str(&format!("&cursor={c}"));
            }
            let r = self.get(&url, token).await;
            assert_eq!(r.status, StatusCode::OK, "{url}: {}", r.text);
            let v = r.json();
            items.extend(v["items"].as_array().unwrap().iter().cloned());
            match v["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => return items,
            }
        }
    }

    /// Polls until `check` holds for the company's summary (knowledge changes apply in the
    /// background).
    async fn wait_summary(
        &self,
        company: &str,
        token: &str,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let r = self
                .get(&format!("/api/v1/companies/{company}/summary"), token)
                .await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
            let v = r.json();
            if check(&v) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "summary never satisfied the check: {v}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The hosts, host detail and history, vulnerabilities, trends and findings orders of a
/// company whose open findings are `findings`, as the dashboard reads them.
async fn dashboard_views(
    api: &Api,
    company: &str,
    token: &str,
    findings: &[Value],
    (deb_agent, debian): (&str, &InventoryReport),
    summary: &Value,
) {
    let base = format!("/api/v1/companies/{company}");
    // A host: its counts are its open findings.
    let host = api.get(&format!("{base}/agents/{deb_agent}"), token).await;
    assert_eq!(host.status, StatusCode::OK, "{}", host.text);
    let host = host.json();
    assert_eq!(
        (&host["hostname"], &host["stale"]),
        (&json!("deb-1"), &json!(false))
    );
    let of_host = findings
        .iter()
        .filter(|f| f["agent_id"] == json!(deb_agent));
    assert_eq!(
        open_findings(&host),
        of_host.clone().count() as u64,
        "{host}"
    );
    assert_eq!(
        host["kev"].as_u64().unwrap(),
        of_host
            .filter(|f| f["vulnerability"]["kev"] == true)
            .count() as u64
    );
    let history = api
        .get(&format!("{base}/agents/{deb_agent}/reports"), token)
        .await
        .json();
    assert_eq!(
        history["items"][0]["report_id"],
        json!(debian.report_id),
        "{history}"
    );
    assert_eq!(history["items"][0]["outcome"], "applied");
    // Hosts: riskiest first, searched, exported.
    let by_risk = api
        .all_pages(&format!("{base}/agents"), token, "sort=risk", 1)
        .await;
    let risk = |a: &Value| {
        let f = &a["findings"];
        ["critical", "high", "medium", "low"].iter().fold(
            vec![a["kev"].as_u64().unwrap()],
            |mut v, k| {
                v.push(f[k].as_u64().unwrap());
                v
            },
        )
    };
    assert_eq!(by_risk.len(), 3);
    assert!(
        by_risk.windows(2).all(|w| risk(&w[0]) >= risk(&w[1])),
        "{by_risk:?}"
    );
    let found = api
        .all_pages(&format!("{base}/agents"), token, "q=PY-", 10)
        .await;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["hostname"], "py-1");
    let csv = api.get(&format!("{base}/agents?format=csv"), token).await;
    assert_eq!(csv.status, StatusCode::OK);
    assert!(
        csv.text.starts_with("agent_id,hostname,os_id"),
        "{}",
        csv.text
    );
    assert_eq!(csv.text.lines().count(), 4);
    // Vulnerabilities: one row per vulnerability, their findings add up to the open ones.
    let vulns = api
        .all_pages(&format!("{base}/vulnerabilities"), token, "", 50)
        .await;
    assert_eq!(
        vulns
            .iter()
            .map(|v| v["findings"].as_u64().unwrap())
            .sum::<u64>(),
        findings.len() as u64
    );
    let ids: std::collections::BTreeSet<&str> =
        vulns.iter().map(|v| v["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), vulns.len());
    for sort in ["hosts", "epss", "cvss"] {
        let other = api
            .all_pages(
                &format!("{base}/vulnerabilities"),
                token,
                &format!("sort={sort}"),
                50,
            )
            .await;
        let other: std::collections::BTreeSet<&str> = other
            .iter()
            .map(|v| v["id"].as_str().unwrap())
            .collect::<Vec<_>>()
            .into_iter()
            .collect();
        assert_eq!(other, ids, "sort={sort}");
    }
    let csv = api
        .get(&format!("{base}/vulnerabilities?format=csv"), token)
        .await;
    assert_eq!(csv.text.lines().count(), vulns.len() + 1);
    // A vulnerability's hosts one page at a time, with its references.
    let widest = vulns
        .iter()
        .max_by_key(|v| v["hosts"].as_u64().unwrap())
        .unwrap();
    let d = api
        .get(
            &format!(
                "{base}/vulnerabilities/{}?limit=1",
                widest["id"].as_str().unwrap()
            ),
            token,
        )
        .await;
    assert_eq!(d.status, StatusCode::OK, "{}", d.text);
    let d = d.json();
    assert_eq!(d["hosts"], widest["hosts"]);
    assert_eq!(d["affected"].as_array().unwrap().len(), 1);
    assert!(d["references"].is_array());
    assert_eq!(
        d["next_cursor"].is_string(),
        widest["findings"].as_u64().unwrap() > 1,
        "{d}"
    );
    // Trends: today's point is now.
    let t = api
        .get(&format!("{base}/trends?days=7"), token)
        .await
        .json();
    let last = t["points"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        last["date"],
        json!(chrono::Utc::now().date_naive().to_string())
    );
    for k in ["critical", "high", "medium", "low", "unknown"] {
        assert_eq!(last[k], summary["findings"][k], "{k}");
    }
    assert_eq!(last["kev"], summary["kev"]);
    // Overdue per severity (issue 13): the summary's, adding up to the overdue total.
    assert_eq!(last["overdue"], summary["overdue"]);
    assert_eq!(last["overdue_by_severity"], summary["overdue_by_severity"]);
    assert_eq!(
        ["critical", "high", "medium", "low", "unknown"]
            .iter()
            .map(|k| last["overdue_by_severity"][k].as_u64().unwrap())
            .sum::<u64>(),
        last["overdue"].as_u64().unwrap(),
        "{last}"
    );
    // Time to remediate: one entry per severity, nothing remediated yet in a fresh company.
    for days in [30, 90] {
        let r = api
            .get(&format!("{base}/remediation?days={days}"), token)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let r = r.json();
        assert_eq!(r["days"], json!(days));
        let names: Vec<&str> = r["severities"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["severity"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            ["critical", "high", "medium", "low", "unknown"],
            "{r}"
        );
    }
    // Findings in other orders: the same findings.
    for sort in ["first_seen", "epss", "cvss", "hostname"] {
        let got = api
            .all_findings(company, token, &format!("sort={sort}"), 500)
            .await;
        assert_eq!(got.len(), findings.len(), "sort={sort}");
    }
    // Bad parameters name themselves.
    for (path, field) in [
        (format!("{base}/trends?days=0"), "days"),
        (format!("{base}/trends?days=401"), "days"),
        (format!("{base}/remediation?days=0"), "days"),
        (format!("{base}/remediation?days=x"), "days"),
        (format!("{base}/findings?sort=bogus"), "sort"),
        (format!("{base}/agents?order=up"), "order"),
        (format!("{base}/software?vulnerable=maybe"), "vulnerable"),
        (format!("{base}/vulnerabilities?format=xml"), "format"),
        (
            format!("{base}/agents?sort=risk&cursor=bm90LWEtY3Vyc29y"),
            "cursor",
        ),
    ] {
        let r = api.get(&path, token).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path}: {}", r.text);
        assert!(r.text.contains(field), "{path}: {}", r.text);
    }
}

fn open_findings(summary: &Value) -> u64 {
    ["critical", "high", "medium", "low", "unknown"]
        .iter()
        .map(|k| summary["findings"][k].as_u64().unwrap())
        .sum()
}

async fn inventories_become_company_scoped_findings(env: &Env) {
    let osv = |p: &str| {
        shared_path(&format!("osv/{p}"))
            .to_str()
            .unwrap()
            .to_string()
    };
    // PyPI advisories are known before the first report; RustSec and Go ones arrive while the
    // server runs (the re-match path).
    zerotrace(
        env,
        &["feeds", "import", &osv("pypa/vulns"), &osv("ghsa-sample")],
    );
    let mut server = start(env, "server", &[]);
    let api = Api::new(&server.url);

    let (a_id, a_secret) = api.create_company("Acme").await;
    let (b_id, b_secret) = api.create_company("Globex").await;
    let a_viewer = api.user_token(&a_id, "viewer").await;
    let b_admin = api.user_token(&b_id, "admin").await;

    // Company A: a Debian 12 host (real dpkg status) and a Python environment (real SBOM).
    let debian = report_from("inventories/dpkg/debian-12.11-host.status", "deb-1");
    let python = report_from("sboms/cyclonedx-py-pyenv-3.11.7.cdx.json", "py-1");
    // Company B: the same Python environment on its own host, and an Alpine host.
    let b_python = report_from("sboms/cyclonedx-py-pyenv-3.11.7.cdx.json", "b-py-1");
    let alpine = report_from("inventories/apk/syft-multiple-2.installed", "alp-1");
    // Company A's third host: a root file system with Go and Rust binaries (real SBOM).
    let rootfs = report_from("sboms/trivy-legacy-rootfs.cdx.json", "rootfs-1");

    let (deb_agent, deb_token) = api.enroll(&a_secret, &debian).await;
    let (py_agent, py_token) = api.enroll(&a_secret, &python).await;
    let (rootfs_agent, rootfs_token) = api.enroll(&a_secret, &rootfs).await;
    let (b_py_agent, b_py_token) = api.enroll(&b_secret, &b_python).await;
    let (_alp_agent, alp_token) = api.enroll(&b_secret, &alpine).await;

    for (token, report, gz) in [
        (&deb_token, &debian, true),
        (&py_token, &python, false),
        (&rootfs_token, &rootfs, true),
        (&b_py_token, &b_python, true),
        (&alp_token, &alpine, false),
    ] {
        let r = api.post_report(token, report, gz).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
        assert_eq!(r.json()["report_id"], json!(report.report_id));
    }
    for (token, report) in [
        (&deb_token, &debian),
        (&py_token, &python),
        (&rootfs_token, &rootfs),
        (&b_py_token, &b_python),
        (&alp_token, &alpine),
    ] {
        let status = api.wait_done(token, report.report_id).await;
        assert_eq!(status["status"], "done", "{status}");
        assert_eq!(status["outcome"], "applied", "{status}");
        assert!(status["processed_at"].is_string());
    }

    // Summary and agents of A.
    let summary = api
        .wait_summary(&a_id, &a_viewer, |s| open_findings(s) > 0)
        .await;
    assert_eq!(summary["agents"], 3, "{summary}");
    let distinct = |r: &InventoryReport| {
        r.apps
            .iter()
            .map(|a| {
                (
                    zt_inventory::Software::from_app(a, &r.host.os).key(),
                    a.arch.clone(),
                )
            })
            .collect::<std::collections::HashSet<_>>()
            .len() as u64
    };
    assert_eq!(
        summary["apps"].as_u64().unwrap(),
        distinct(&debian) + distinct(&python) + distinct(&rootfs),
        "{summary}"
    );
    let agents = api
        .get(&format!("/api/v1/companies/{a_id}/agents"), &a_viewer)
        .await;
    assert_eq!(agents.status, StatusCode::OK);
    let hosts: Vec<String> = agents.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["hostname"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(hosts, vec!["deb-1", "py-1", "rootfs-1"]);

    // PyPI findings of A's Python host, with the advisory's data.
    let a_findings = api.all_findings(&a_id, &a_viewer, "", 1000).await;
    assert!(!a_findings.is_empty());
    let pypi: Vec<&Value> = a_findings
        .iter()
        .filter(|f| f["package"]["ecosystem"] == "PyPI" && f["hostname"] == "py-1")
        .collect();
    assert!(!pypi.is_empty(), "no PyPI findings: {a_findings:?}");
    for f in &pypi {
        assert_eq!(f["agent_id"], json!(py_agent));
        assert_eq!(f["hostname"], "py-1");
        assert!(f["vulnerability"]["id"].as_str().unwrap().len() > 3);
        assert!(f["first_seen"].is_string() && f["resolved_at"].is_null());
    }

    // Paging with a small limit yields exactly the same findings, most severe first.
    let paged = api.all_findings(&a_id, &a_viewer, "", 7).await;
    assert_eq!(paged, a_findings);
    let rank = |f: &Value| match f["vulnerability"]["severity"].as_str().unwrap() {
        "critical" => 5,
        "high" => 4,
        "medium" => 3,
        "low" => 2,
        "none" => 1,
        _ => 0,
    };
    assert!(a_findings.windows(2).all(|w| rank(&w[0]) >= rank(&w[1])));

    // Filters.
    let high = api
        .all_findings(&a_id, &a_viewer, "severity=high,critical", 1000)
        .await;
    assert!(high.iter().all(|f| rank(f) >= 4));
    assert_eq!(
        high.len(),
        a_findings.iter().filter(|f| rank(f) >= 4).count()
    );
    let sample = &pypi[0];
    let pkg = sample["package"]["name"].as_str().unwrap();
    let by_q = api
        .all_findings(&a_id, &a_viewer, &format!("q={pkg}"), 1000)
        .await;
    assert!(by_q.iter().any(|f| f["package"]["name"] == pkg));
    let by_agent = api
        .all_findings(&a_id, &a_viewer, &format!("agent_id={deb_agent}"), 1000)
        .await;
    assert!(by_agent.iter().all(|f| f["agent_id"] == json!(deb_agent)));
    let fixable = api
        .all_findings(&a_id, &a_viewer, "fixable=true", 1000)
        .await;
    assert!(fixable
        .iter()
        .all(|f| !f["fixed_versions"].as_array().unwrap().is_empty()));
    assert_eq!(summary["fixable"].as_u64().unwrap(), {
        let s = api
            .get(&format!("/api/v1/companies/{a_id}/summary"), &a_viewer)
            .await
            .json();
        s["fixable"].as_u64().unwrap()
    });

    // CSV export: a header and one line per finding.
    let csv = api
        .get(
            &format!("/api/v1/companies/{a_id}/findings?format=csv"),
            &a_viewer,
        )
        .await;
    assert_eq!(csv.status, StatusCode::OK);
    assert!(csv.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    assert!(csv
        .text
        .starts_with("agent_id,hostname,package,version,ecosystem"));
    assert_eq!(
        csv.text.lines().count(),
        a_findings.len() + 1,
        "{}",
        csv.text
    );

    // The dashboard's reads of the same data.
    dashboard_views(
        &api,
        &a_id,
        &a_viewer,
        &a_findings,
        (&deb_agent, &debian),
        &summary,
    )
    .await;
    let keys = |r: &InventoryReport| {
        r.apps
            .iter()
            .map(|a| zt_inventory::Software::from_app(a, &r.host.os).key())
            .collect::<std::collections::HashSet<_>>()
            .len() as u64
    };
    let software = api
        .all_pages(
            &format!("/api/v1/companies/{a_id}/software"),
            &a_viewer,
            "",
            100,
        )
        .await;
    assert_eq!(
        software
            .iter()
            .map(|s| s["hosts"].as_u64().unwrap())
            .sum::<u64>(),
        keys(&debian) + keys(&python) + keys(&rootfs),
        "each host counts once per version it runs"
    );
    let overview = api.get("/api/v1/overview", ADMIN).await;
    assert_eq!(overview.status, StatusCode::OK, "{}", overview.text);
    let rows = overview.json()["items"].as_array().unwrap().clone();
    let acme = rows
        .iter()
        .find(|r| r["company_id"] == json!(a_id))
        .unwrap();
    assert_eq!(acme["name"], "Acme");
    let now = api
        .get(&format!("/api/v1/companies/{a_id}/summary"), &a_viewer)
        .await
        .json();
    assert_eq!(
        (&acme["findings"], &acme["agents"]),
        (&now["findings"], &now["agents"])
    );
    assert!(rows.iter().any(|r| r["company_id"] == json!(b_id)));
    assert_eq!(
        api.get("/api/v1/overview", &a_viewer).await.status,
        StatusCode::FORBIDDEN
    );

    // One vulnerability with the hosts it hits.
    let vuln_id = sample["vulnerability"]["id"].as_str().unwrap();
    let detail = api
        .get(
            &format!("/api/v1/companies/{a_id}/vulnerabilities/{vuln_id}"),
            &a_viewer,
        )
        .await;
    assert_eq!(detail.status, StatusCode::OK, "{}", detail.text);
    let detail = detail.json();
    assert_eq!(detail["vulnerability"]["id"], vuln_id);
    let affected = detail["affected"].as_array().unwrap();
    assert!(affected.iter().any(|h| h["hostname"] == "py-1"));
    assert!(
        affected.iter().all(|h| h["hostname"] != "b-py-1"),
        "B's host leaked into A: {detail}"
    );
    // Also by alias.
    if let Some(alias) = sample["vulnerability"]["aliases"]
        .as_array()
        .and_then(|a| a.first())
    {
        let by_alias = api
            .get(
                &format!(
                    "/api/v1/companies/{a_id}/vulnerabilities/{}",
                    alias.as_str().unwrap()
                ),
                &a_viewer,
            )
            .await;
        assert_eq!(by_alias.status, StatusCode::OK);
        assert_eq!(by_alias.json()["vulnerability"]["id"], vuln_id);
    }

    // Apps of an agent.
    let apps = api
        .get(
            &format!("/api/v1/companies/{a_id}/agents/{py_agent}/apps?limit=1000"),
            &a_viewer,
        )
        .await;
    assert_eq!(apps.status, StatusCode::OK);
    assert_eq!(
        apps.json()["items"].as_array().unwrap().len() as u64,
        distinct(&python)
    );

    // Isolation: A's token on B's data answers exactly like a missing id.
    let missing = uuid::Uuid::new_v4().to_string();
    let not_found = api
        .get(&format!("/api/v1/companies/{missing}/summary"), &a_viewer)
        .await;
    assert_eq!(not_found.status, StatusCode::NOT_FOUND);
    for path in [
        format!("/api/v1/companies/{b_id}/summary"),
        format!("/api/v1/companies/{b_id}/agents"),
        format!("/api/v1/companies/{b_id}/findings"),
        format!("/api/v1/companies/{b_id}/findings?format=csv"),
        format!("/api/v1/companies/{b_id}/agents/{b_py_agent}/apps"),
        format!("/api/v1/companies/{b_id}/vulnerabilities/{vuln_id}"),
        format!("/api/v1/companies/{a_id}/agents/{b_py_agent}/apps"),
    ] {
        let r = api.get(&path, &a_viewer).await;
        assert_eq!(
            (r.status, &r.text),
            (not_found.status, &not_found.text),
            "{path}"
        );
    }
    let r = api
        .post_json(
            &format!("/api/v1/companies/{b_id}/tokens"),
            Some(&a_viewer),
            &json!({"role": "admin"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // B's findings hold B's Python host only, never A's.
    let b_findings = api.all_findings(&b_id, &b_admin, "", 1000).await;
    assert!(!b_findings.is_empty());
    assert!(b_findings
        .iter()
        .all(|f| f["hostname"] != "py-1" && f["hostname"] != "deb-1"));
    // Agent tokens read nothing; the operator reads everything.
    let r = api
        .get(&format!("/api/v1/companies/{a_id}/summary"), &deb_token)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = api
        .get(&format!("/api/v1/companies/{b_id}/summary"), ADMIN)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = api.get("/api/v1/companies", ADMIN).await;
    assert_eq!(r.json()["items"].as_array().unwrap().len(), 2);
    let r = api.get("/api/v1/companies", &a_viewer).await;
    assert_eq!(
        r.json()["items"],
        json!([{"id": a_id, "name": "Acme", "created_at": r.json()["items"][0]["created_at"]}])
    );
    // A viewer cannot create tokens; another agent's report is not visible.
    let r = api
        .post_json(
            &format!("/api/v1/companies/{a_id}/tokens"),
            Some(&a_viewer),
            &json!({"role": "admin"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = api
        .get(&format!("/api/v1/reports/{}", python.report_id), &deb_token)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // RustSec and Go advisories arrive while the server runs: the known software is matched
    // again and findings appear on the host with Rust and Go packages, exactly those the
    // offline scanner finds in the same SBOM with the same knowledge.
    let before = open_findings(&summary);
    zerotrace(
        env,
        &[
            "feeds",
            "import",
            &osv("rustsec/osv-json"),
            &osv("golang-vulndb"),
        ],
    );
    let after = api
        .wait_summary(&a_id, &a_viewer, |s| open_findings(s) > before)
        .await;
    // The re-match runs in pages; wait until the count settles.
    let mut last = open_findings(&after);
    loop {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let s = api
            .get(&format!("/api/v1/companies/{a_id}/summary"), &a_viewer)
            .await
            .json();
        if open_findings(&s) == last {
            break;
        }
        last = open_findings(&s);
    }
    let rootfs_findings = api
        .all_findings(&a_id, &a_viewer, &format!("agent_id={rootfs_agent}"), 1000)
        .await;
    let served: std::collections::BTreeSet<(String, String, String)> = rootfs_findings
        .iter()
        .filter(|f| f["package"]["ecosystem"] == "crates.io" || f["package"]["ecosystem"] == "Go")
        .map(|f| {
            (
                f["package"]["name"].as_str().unwrap().to_string(),
                f["package"]["version"].as_str().unwrap().to_string(),
                f["vulnerability"]["id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let sbom = shared_path("sboms/trivy-legacy-rootfs.cdx.json");
    let scan: Value = serde_json::from_str(&zerotrace(
        env,
        &["scan", sbom.to_str().unwrap(), "--format", "json"],
    ))
    .unwrap();
    let scanned: std::collections::BTreeSet<(String, String, String)> = scan["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["package"]["ecosystem"] == "crates.io" || f["package"]["ecosystem"] == "Go")
        .map(|f| {
            (
                f["package"]["name"].as_str().unwrap().to_string(),
                f["package"]["version"].as_str().unwrap().to_string(),
                f["vulnerability"]["id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        !served.is_empty(),
        "no Rust/Go findings after the import: {after}"
    );
    assert_eq!(served, scanned, "the server and the scanner disagree");

    // Same report again: same answer, stored once. Unchanged inventory: accepted, no work.
    let again = api.post_report(&py_token, &python, false).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    assert_eq!(again.json()["report_id"], json!(python.report_id));
    let mut unchanged = python.clone();
    unchanged.report_id = uuid::Uuid::new_v4();
    unchanged.collected_at = chrono::Utc::now();
    let r = api.post_report(&py_token, &unchanged, true).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let s = api.wait_done(&py_token, unchanged.report_id).await;
    assert_eq!(s["outcome"], "unchanged");

    // The vulnerable package leaves the host: its findings are resolved, not deleted.
    let mut removed = python.clone();
    removed.report_id = uuid::Uuid::new_v4();
    removed.collected_at = chrono::Utc::now();
    removed.apps.retain(|a| a.name != pkg);
    let r = api.post_report(&py_token, &removed, false).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(
        api.wait_done(&py_token, removed.report_id).await["outcome"],
        "applied"
    );
    let open_pkg = api
        .all_findings(&a_id, &a_viewer, &format!("agent_id={py_agent}"), 1000)
        .await;
    assert!(open_pkg.iter().all(|f| f["package"]["name"] != pkg));
    let resolved = api
        .all_findings(
            &a_id,
            &a_viewer,
            &format!("agent_id={py_agent}&status=resolved"),
            1000,
        )
        .await;
    assert!(resolved.iter().any(|f| f["package"]["name"] == pkg
        && f["resolved_at"].is_string()
        && f["resolution"] == "removed"));

    // The admin CLI works on the same data directory while the server runs.
    let out = zerotrace(env, &["admin", "company", "create", "Initech", "--json"]);
    let created: Value = serde_json::from_str(out.trim()).unwrap();
    let (_, _tok) = api
        .enroll(created["enroll_secret"].as_str().unwrap(), &alpine)
        .await;
    let list = zerotrace(env, &["admin", "company", "list"]);
    assert!(list.contains("Initech") && list.contains("Acme"), "{list}");
    let token = zerotrace(
        env,
        &[
            "admin",
            "token",
            "create",
            "--company",
            created["id"].as_str().unwrap(),
            "--role",
            "viewer",
        ],
    );
    let r = api
        .get(
            &format!(
                "/api/v1/companies/{}/agents",
                created["id"].as_str().unwrap()
            ),
            token.trim(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["items"].as_array().unwrap().len(), 1);

    // Metrics carry the names the alert rules use.
    let metrics = api.get("/metrics", "").await.text;
    for name in [
        "app_queue_size",
        "app_processing_duration_seconds_bucket",
        "apps_processed_total",
        "enrichment_cache_hits_total",
        "enrichment_cache_misses_total",
        "http_requests_total{route=\"/api/v1/inventory\",status=\"202\"}",
    ] {
        assert!(
            metrics.contains(name),
            "{name} missing from /metrics:\n{metrics}"
        );
    }
    let status = server.terminate(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "graceful stop failed:\n{}",
        server.stderr()
    );
}

/// A small valid report body with `n` apps, as JSON.
fn small_report(hostname: &str, n: usize) -> InventoryReport {
    let apps = (0..n)
        .map(|i| {
            zt_inventory::App::new(
                format!("package-{i}"),
                format!("1.{i}.0"),
                zt_inventory::AppSource::Pypi,
            )
        })
        .collect();
    common::debian_report(hostname, "Debian GNU/Linux 12 (bookworm)", apps)
}

async fn bad_requests_get_the_right_status_and_change_nothing(env: &Env) {
    let _server_guard;
    let api = {
        let server = start(
            env,
            "server",
            &["--body-limit", "65536", "--rate-agent", "40"],
        );
        let api = Api::new(&server.url);
        _server_guard = server;
        api
    };
    let (a_id, a_secret) = api.create_company("Acme").await;
    let (b_id, b_secret) = api.create_company("Globex").await;
    let a_user = api.user_token(&a_id, "admin").await;
    let b_user = api.user_token(&b_id, "admin").await;
    let first = small_report("web-1", 3);
    let (_agent, token) = api.enroll(&a_secret, &first).await;
    let (_b_agent, b_token) = api.enroll(&b_secret, &first).await;
    let r = api.post_report(&token, &first, false).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    api.wait_done(&token, first.report_id).await;
    let summary_path = format!("/api/v1/companies/{a_id}/summary");
    let stored = api.get(&summary_path, &a_user).await.text;
    let agents_path = format!("/api/v1/companies/{a_id}/agents");
    let agents = api.get(&agents_path, &a_user).await.json();

    let valid = serde_json::to_value(small_report("web-1", 2)).unwrap();
    let with = |f: &dyn Fn(&mut Value)| {
        let mut v = valid.clone();
        v["report_id"] = json!(uuid::Uuid::new_v4());
        f(&mut v);
        v
    };
    // (body, expected status, expected error code, expected field)
    let cases: Vec<(Vec<u8>, StatusCode, &str, Option<&str>)> = vec![
        (
            b"{\"report_id\":".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_report",
            None,
        ),
        (
            b"not json at all".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_report",
            None,
        ),
        (
            b"[]".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_report",
            None,
        ),
        (
            serde_json::to_vec(&with(&|v| {
                v.as_object_mut().unwrap().remove("host");
            }))
            .unwrap(),
            StatusCode::BAD_REQUEST,
            "invalid_report",
            None,
        ),
        (
            serde_json::to_vec(&with(&|v| v["apps"][0]["version"] = json!(12))).unwrap(),
            StatusCode::BAD_REQUEST,
            "invalid_report",
            Some("apps[0].version"),
        ),
        (
            serde_json::to_vec(&with(&|v| v["apps"][1]["source"] = json!("floppy"))).unwrap(),
            StatusCode::BAD_REQUEST,
            "invalid_report",
            Some("apps[1].source"),
        ),
        (
            serde_json::to_vec(&with(&|v| v["host"]["hostname"] = json!(""))).unwrap(),
            StatusCode::BAD_REQUEST,
            "invalid_report",
            Some("host.hostname"),
        ),
        (
            serde_json::to_vec(&with(&|v| v["report_id"] = json!("not-a-uuid"))).unwrap(),
            StatusCode::BAD_REQUEST,
            "invalid_report",
            Some("report_id"),
        ),
        (
            serde_json::to_vec(&with(&|v| v["collected_at"] = json!(17))).unwrap(),
            StatusCode::BAD_REQUEST,
            "invalid_report",
            Some("collected_at"),
        ),
        // A host clock more than a day off either way.
        (
            serde_json::to_vec(&with(&|v| {
                v["collected_at"] = json!(chrono::Utc::now() + chrono::Duration::hours(26))
            }))
            .unwrap(),
            StatusCode::BAD_REQUEST,
            "invalid_report",
            Some("collected_at"),
        ),
        (
            serde_json::to_vec(&with(&|v| {
                v["collected_at"] = json!("1970-01-01T00:00:00Z")
            }))
            .unwrap(),
            StatusCode::BAD_REQUEST,
            "invalid_report",
            Some("collected_at"),
        ),
        (
            serde_json::to_vec(&small_report("web-1", 2000)).unwrap(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            None,
        ),
    ];
    for (body, status, code, field) in cases {
        let r = api
            .post_raw("/api/v1/inventory", &token, body.clone(), false)
            .await;
        assert_eq!(r.status, status, "{}", r.text);
        assert_eq!(r.error_code(), code, "{}", r.text);
        if let Some(field) = field {
            assert_eq!(r.json()["error"]["field"], field, "{}", r.text);
        }
        // The same through gzip.
        let r = api
            .post_raw("/api/v1/inventory", &token, gzip(&body), true)
            .await;
        assert_eq!(r.status, status, "gzip: {}", r.text);
    }
    // A missing nested field is named by its parent and the message names it.
    let r = api
        .post_raw(
            "/api/v1/inventory",
            &token,
            serde_json::to_vec(&with(&|v| {
                v["host"].as_object_mut().unwrap().remove("hostname");
            }))
            .unwrap(),
            false,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["error"]["field"], "host");
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("hostname"));
    // A small gzip body that inflates past the limit, and a broken gzip stream.
    let bomb = gzip(&vec![b' '; 10 * 1024 * 1024]);
    assert!(bomb.len() < 65536);
    let r = api.post_raw("/api/v1/inventory", &token, bomb, true).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text);
    let mut broken = gzip(&serde_json::to_vec(&valid).unwrap());
    broken.truncate(broken.len() / 2);
    let r = api
        .post_raw("/api/v1/inventory", &token, broken, true)
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);

    // Tokens: none, unknown, malformed, of the wrong kind, of another company.
    let body = serde_json::to_vec(&with(&|_| {})).unwrap();
    let rejected_id = serde_json::from_slice::<Value>(&body).unwrap()["report_id"].clone();
    let r = api
        .send(
            api.http
                .post(format!("{}/api/v1/inventory", api.url))
                .body(body.clone()),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    for bad in ["zta_unknown", "", "Basic x"] {
        let r = api
            .post_raw("/api/v1/inventory", bad, body.clone(), false)
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{bad}: {}", r.text);
        assert_eq!(r.error_code(), "unauthorized");
    }
    for wrong_kind in [a_user.as_str(), a_secret.as_str(), ADMIN] {
        let r = api
            .post_raw("/api/v1/inventory", wrong_kind, body.clone(), false)
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    }
    let r = api
        .get(&format!("/api/v1/reports/{}", first.report_id), &b_token)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = api.get(&summary_path, &b_user).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = api
        .get(&format!("/api/v1/companies/{b_id}/summary"), &token)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // Enrollment and company creation validate too.
    let r = api
        .post_json(
            "/api/v1/enroll",
            None,
            &json!({"enroll_secret": "zte_wrong", "hostname": "h", "os": {"id": "debian"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = api
        .post_json(
            "/api/v1/enroll",
            None,
            &json!({"enroll_secret": a_secret, "os": {"id": "debian"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = api
        .post_json(
            "/api/v1/enroll",
            None,
            &json!({"enroll_secret": a_secret, "hostname": "h", "os": {"id": 7}}),
        )
        .await;
    assert_eq!(
        (r.status, r.json()["error"]["field"].clone()),
        (StatusCode::BAD_REQUEST, json!("os.id"))
    );
    let r = api
        .post_json(
            "/api/v1/enroll",
            None,
            &json!({"enroll_secret": a_secret, "hostname": "", "os": {"id": "debian"}}),
        )
        .await;
    assert_eq!(
        (r.status, r.json()["error"]["field"].clone()),
        (StatusCode::BAD_REQUEST, json!("hostname"))
    );
    let r = api
        .post_json("/api/v1/companies", Some(&a_user), &json!({"name": "X"}))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = api
        .post_json("/api/v1/companies", None, &json!({"name": "X"}))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = api
        .post_json("/api/v1/companies", Some(ADMIN), &json!({"name": 5}))
        .await;
    assert_eq!(
        (r.status, r.json()["error"]["field"].clone()),
        (StatusCode::BAD_REQUEST, json!("name"))
    );
    let r = api
        .post_json("/api/v1/companies", Some(ADMIN), &json!({"name": "  "}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = api
        .post_json(
            &format!("/api/v1/companies/{a_id}/tokens"),
            Some(ADMIN),
            &json!({"role": "root"}),
        )
        .await;
    assert_eq!(
        (r.status, r.json()["error"]["field"].clone()),
        (StatusCode::BAD_REQUEST, json!("role"))
    );
    let r = api
        .get(
            &format!("/api/v1/companies/{a_id}/findings?severity=urgent"),
            &a_user,
        )
        .await;
    assert_eq!(
        (r.status, r.json()["error"]["field"].clone()),
        (StatusCode::BAD_REQUEST, json!("severity"))
    );
    let r = api
        .get(
            &format!("/api/v1/companies/{a_id}/findings?cursor=%%%"),
            &a_user,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = api
        .get(
            &format!("/api/v1/companies/{a_id}/findings?limit=0"),
            &a_user,
        )
        .await;
    assert_eq!(
        (r.status, r.json()["error"]["field"].clone()),
        (StatusCode::BAD_REQUEST, json!("limit"))
    );

    // Nothing of all that was stored.
    assert_eq!(api.get(&summary_path, &a_user).await.text, stored);
    let now = api.get(&agents_path, &a_user).await.json();
    assert_eq!(
        now["items"].as_array().unwrap().len(),
        agents["items"].as_array().unwrap().len()
    );
    let r = api
        .get(
            &format!("/api/v1/reports/{}", rejected_id.as_str().unwrap()),
            &token,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let metrics = api.get("/metrics", "").await.text;
    assert!(metrics.contains("http_requests_total{route=\"/api/v1/inventory\",status=\"400\"}"));

    // Per-agent rate limit: 429 with Retry-After, and only for that agent.
    let (_c, c_token) = api.enroll(&a_secret, &first).await;
    let mut limited = None;
    for i in 0..60 {
        let r = api
            .get(
                &format!("/api/v1/reports/{}", uuid::Uuid::new_v4()),
                &c_token,
            )
            .await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some((i, r));
            break;
        }
        assert_eq!(r.status, StatusCode::NOT_FOUND);
    }
    let (i, r) = limited.expect("the agent limit never answered 429");
    assert_eq!(i, 40, "the limit is 40 per minute");
    assert_eq!(r.error_code(), "rate_limited");
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let r = api
        .get(&format!("/api/v1/reports/{}", first.report_id), &token)
        .await;
    assert_eq!(r.status, StatusCode::OK, "another agent is not limited");
    assert!(api
        .get("/metrics", "")
        .await
        .text
        .contains("rate_limited_total{scope=\"agent\"}"));
}

async fn full_queue_answers_503_and_stores_nothing(env: &Env) {
    // An API without workers: nothing leaves the queue.
    let server = start(env, "api", &["--role", "api", "--queue-bound", "2"]);
    let api = Api::new(&server.url);
    let (a_id, secret) = api.create_company("Acme").await;
    let user = api.user_token(&a_id, "viewer").await;
    let report = small_report("h", 1);
    let (_a1, t1) = api.enroll(&secret, &report).await;
    let (_a2, t2) = api.enroll(&secret, &report).await;
    let (_a3, t3) = api.enroll(&secret, &report).await;
    assert_eq!(
        api.post_report(&t1, &small_report("h1", 1), false)
            .await
            .status,
        StatusCode::ACCEPTED
    );
    let queued = small_report("h2", 2);
    assert_eq!(
        api.post_report(&t2, &queued, false).await.status,
        StatusCode::ACCEPTED
    );
    let over = small_report("h3", 3);
    let r = api.post_report(&t3, &over, false).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
    assert_eq!(r.error_code(), "queue_full");
    assert!(r.headers.contains_key("retry-after"));
    let r = api
        .get(&format!("/api/v1/reports/{}", over.report_id), &t3)
        .await;
    assert_eq!(
        r.status,
        StatusCode::NOT_FOUND,
        "a refused report must leave nothing behind"
    );
    let r = api
        .get(&format!("/api/v1/reports/{}", queued.report_id), &t2)
        .await;
    assert_eq!(r.json()["status"], "queued");
    // An unchanged inventory needs no queue entry: still accepted.
    let mut same = queued.clone();
    same.report_id = uuid::Uuid::new_v4();
    assert_eq!(
        api.post_report(&t2, &same, false).await.status,
        StatusCode::ACCEPTED
    );
    let r = api
        .get(&format!("/api/v1/reports/{}", same.report_id), &t2)
        .await;
    assert_eq!(r.json()["outcome"], "unchanged");
    let s = api
        .get(&format!("/api/v1/companies/{a_id}/summary"), &user)
        .await
        .json();
    assert_eq!(s["apps"], 0, "nothing is processed without workers: {s}");
    // The API role serves no worker, and /readyz is ready without a match index.
    assert_eq!(api.get("/readyz", "").await.status, StatusCode::OK);
}

/// Starts `--role api` on the test's store with PyPI advisories.
async fn api_and_report(env: &Env) -> (ServerProcess, Api, String, InventoryReport, String) {
    let pypa = shared_path("osv/pypa/vulns");
    zerotrace(env, &["feeds", "import", pypa.to_str().unwrap()]);
    let server = start(env, "api", &["--role", "api"]);
    let api = Api::new(&server.url);
    let (company, secret) = api.create_company("Acme").await;
    let report = report_from("sboms/cyclonedx-py-pyenv-3.11.7.cdx.json", "py-1");
    let (_agent, token) = api.enroll(&secret, &report).await;
    (server, api, token, report, company)
}

async fn wait_status(api: &Api, token: &str, report_id: uuid::Uuid, want: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = api
            .get(&format!("/api/v1/reports/{report_id}"), token)
            .await
            .json();
        if v["status"] == want {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "report never reached {want}: {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn a_killed_workers_batch_is_finished_by_another(env: &Env) {
    let (_api_server, api, token, report, company) = api_and_report(env).await;
    // This worker claims the report and then hangs holding the lease, until it is killed.
    let mut doomed = start(
        env,
        "worker-a",
        &[
            "--role",
            "worker",
            "--lease-secs",
            "2",
            "--hold-after-claim-ms",
            "600000",
        ],
    );
    assert_eq!(
        api.post_report(&token, &report, true).await.status,
        StatusCode::ACCEPTED
    );
    let held = wait_status(&api, &token, report.report_id, "processing").await;
    assert_eq!(held["attempts"], 1);
    doomed.kill();

    let _rescuer = start(env, "worker-b", &["--role", "worker", "--lease-secs", "2"]);
    let done = api.wait_done(&token, report.report_id).await;
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(done["outcome"], "applied");
    assert_eq!(
        done["attempts"], 2,
        "the second worker took over the expired lease: {done}"
    );
    let findings = api.all_findings(&company, ADMIN, "", 1000).await;
    assert!(!findings.is_empty());
}

async fn graceful_shutdown_releases_an_unfinished_batch(env: &Env) {
    let (_api_server, api, token, report, company) = api_and_report(env).await;
    let mut stopping = start(
        env,
        "worker-a",
        &[
            "--role",
            "worker",
            "--hold-after-claim-ms",
            "600000",
            "--shutdown-grace-secs",
            "1",
        ],
    );
    assert_eq!(
        api.post_report(&token, &report, false).await.status,
        StatusCode::ACCEPTED
    );
    wait_status(&api, &token, report.report_id, "processing").await;
    let status = stopping.terminate(Duration::from_secs(20));
    assert!(
        status.is_some_and(|s| s.success()),
        "SIGTERM did not stop the worker:\n{}",
        stopping.stderr()
    );
    assert!(
        stopping.stderr().contains("releasing an unfinished batch"),
        "{}",
        stopping.stderr()
    );
    // Released, not failed: back in the queue without a counted attempt.
    let v = api
        .get(&format!("/api/v1/reports/{}", report.report_id), &token)
        .await
        .json();
    assert_eq!(
        (v["status"].clone(), v["attempts"].clone()),
        (json!("queued"), json!(0)),
        "{v}"
    );
    // The long lease (60 s) would still hold it had it not been released.
    let _next = start(env, "worker-b", &["--role", "worker"]);
    let done = api.wait_done(&token, report.report_id).await;
    assert_eq!(
        (done["outcome"].clone(), done["attempts"].clone()),
        (json!("applied"), json!(1))
    );
    assert!(!api.all_findings(&company, ADMIN, "", 1000).await.is_empty());
}

async fn dashboard_health_and_openapi_are_served(env: &Env) {
    // Without ZEROTRACE_ADMIN_TOKEN the first start generates and prints an operator token.
    let mut args = env.store_args();
    args.extend(["server", "--listen", "127.0.0.1:0", "--log-format", "json"]);
    let server = ServerProcess::start(
        bin(),
        &args,
        &[("ZEROTRACE_LOG", "info")],
        env.path(),
        "server",
    )
    .unwrap();
    // stdout is not a terminal here (a service's journal): the token goes to a file only
    // this user can read, and only its path is shown.
    let path = server
        .stdout_value("operator token: written to")
        .expect("first start says where the operator token is");
    let path = std::path::PathBuf::from(path.split(" (").next().unwrap());
    assert!(path.starts_with(env.path()), "{path:?}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{path:?}");
    }
    let token = std::fs::read_to_string(&path).unwrap().trim().to_string();
    assert!(token.starts_with("zto_"));
    assert!(
        !server.stdout.iter().any(|l| l.contains(&token)) && !server.stderr().contains(&token),
        "the token itself is written nowhere else"
    );
    assert!(server
        .stdout
        .iter()
        .any(|l| l.starts_with("dashboard: http://127.0.0.1:")));
    let api = Api::new(&server.url);
    assert_eq!(
        api.get("/api/v1/companies", &token).await.status,
        StatusCode::OK
    );
    let page = api.get("/", "").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(page.text.contains("id=\"signin-form\"") && page.text.contains("/assets/dashboard.js"));
    for asset in ["/assets/dashboard.js", "/assets/dashboard.css"] {
        assert_eq!(api.get(asset, "").await.status, StatusCode::OK, "{asset}");
    }
    assert_eq!(api.get("/healthz", "").await.json()["status"], "ok");
    assert_eq!(api.get("/readyz", "").await.json()["status"], "ready");
    let doc = api.get("/api/openapi.json", "").await.json();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/api/v1/inventory"]["post"].is_object());
    let missing = api.get("/api/v1/nothing", "").await;
    assert_eq!(
        (missing.status, missing.error_code()),
        (StatusCode::NOT_FOUND, "not_found".into())
    );
    // JSON logs on stderr.
    let log = server.stderr();
    let first = log.lines().next().expect("some log lines");
    assert!(serde_json::from_str::<Value>(first).is_ok(), "{first}");
    drop(server);
    // A second start on the same store does not print a token again.
    let mut args = env.store_args();
    args.extend(["server", "--listen", "127.0.0.1:0"]);
    let again = ServerProcess::start(bin(), &args, &[], env.path(), "server2").unwrap();
    assert!(
        again.stdout_value("operator token").is_none(),
        "{:?}",
        again.stdout
    );
    let api = Api::new(&again.url);
    assert_eq!(
        api.get("/api/v1/companies", &token).await.status,
        StatusCode::OK
    );
}

/// CSV exports: a cell an agent controls that a spreadsheet would run as a formula is
/// quoted (OWASP), and `limit` cuts an export to one page.
async fn csv_exports_neutralize_formulas(env: &Env) {
    let server = start(env, "server", &[]);
    let api = Api::new(&server.url);
    let (company, secret) = api.create_company("Acme").await;
    let viewer = api.user_token(&company, "viewer").await;
    let mut report = small_report("=cmd|' /C calc'!A0", 3);
    report.apps.push(zt_inventory::App::new(
        "@babel/core",
        "7.0.0",
        zt_inventory::AppSource::Npm,
    ));
    let (_, token) = api.enroll(&secret, &report).await;
    let r = api.post_report(&token, &report, false).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    assert_eq!(
        api.wait_done(&token, report.report_id).await["status"],
        "done"
    );
    let hosts = api
        .get(
            &format!("/api/v1/companies/{company}/agents?format=csv"),
            &viewer,
        )
        .await;
    assert_eq!(hosts.status, StatusCode::OK);
    let row = hosts.text.lines().nth(1).unwrap();
    assert!(row.contains(",'=cmd|' /C calc'!A0,"), "{row}");
    let software = api
        .get(
            &format!("/api/v1/companies/{company}/software?format=csv&sort=name"),
            &viewer,
        )
        .await;
    assert_eq!(software.status, StatusCode::OK);
    assert!(software.headers["content-disposition"]
        .to_str()
        .unwrap()
        .contains("software.csv"));
    assert_eq!(software.text.lines().count(), 5, "{}", software.text);
    assert!(
        software
            .text
            .lines()
            .nth(1)
            .unwrap()
            .starts_with("'@babel/core,7.0.0,npm,"),
        "{}",
        software.text
    );
    let one = api
        .get(
            &format!("/api/v1/companies/{company}/software?format=csv&limit=1"),
            &viewer,
        )
        .await;
    assert_eq!(one.text.lines().count(), 2, "{}", one.text);
}

/// The test bodies above, once per backend.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(&super::Env::sqlite()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(&super::Env::postgres()).await;
                }
            )*
        }
    };
}

on_both_backends!(
    inventories_become_company_scoped_findings,
    bad_requests_get_the_right_status_and_change_nothing,
    full_queue_answers_503_and_stores_nothing,
    a_killed_workers_batch_is_finished_by_another,
    graceful_shutdown_releases_an_unfinished_batch,
    dashboard_health_and_openapi_are_served,
    csv_exports_neutralize_formulas,
);

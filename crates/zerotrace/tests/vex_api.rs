//! VEX through the real server (issue 13): the CycloneDX export validated against the
//! CycloneDX 1.6 JSON schema by CycloneDX's own validator (PyPI cyclonedx-python-lib,
//! installed by .ci/run), a round trip (export from one company, import into another: the
//! same findings suppressed), OpenVEX both ways, a real distribution OpenVEX
//! (../shared/data/osv/ubuntu-vex), and malformed documents refused whole with the JSON path
//! of the problem, nothing applied.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use zt_inventory::{App, AppSource};
use zt_testkit::{shared_path, ServerProcess};

mod common;
use common::{bin, debian_report, enroll, post_inventory, Env};

const OPERATOR: &str = "zto_vex-operator-token-0123456789abcdef012";

struct Api {
    http: reqwest::Client,
    url: String,
}

impl Api {
    async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(OPERATOR);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn post_raw(&self, path: &str, body: &[u8]) -> (StatusCode, Value) {
        let resp = self
            .http
            .post(format!("{}{path}", self.url))
            .bearer_auth(OPERATOR)
            .header("content-type", "application/json")
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }
}

/// A company with one Debian host running requests 2.25.0 (GHSA-j8r2-6x86-q33q in the GHSA
/// sample), its finding processed; returns the company id.
async fn company_with_finding(api: &Api, name: &str) -> String {
    let (status, company) = api
        .call(
            Method::POST,
            "/api/v1/companies",
            Some(&json!({ "name": name })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let cid = company["id"].as_str().unwrap().to_string();
    let secret = company["enroll_secret"].as_str().unwrap();
    let host = format!("{name}-web");
    let token = enroll(&api.http, &api.url, secret, &host).await;
    let report = debian_report(
        &host,
        "Debian GNU/Linux 12 (bookworm)",
        vec![App::new("requests", "2.25.0", AppSource::Pypi)],
    );
    assert_eq!(
        post_inventory(&api.http, &api.url, &token, &report).await,
        StatusCode::ACCEPTED
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while open_findings(api, &cid, "suppressed=include").await == 0 {
        assert!(Instant::now() < deadline, "no finding for {name}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    cid
}

async fn open_findings(api: &Api, cid: &str, query: &str) -> usize {
    let (status, v) = api
        .call(
            Method::GET,
            &format!("/api/v1/companies/{cid}/findings?{query}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v["items"].as_array().unwrap().len()
}

async fn analyses_count(api: &Api, cid: &str) -> usize {
    let (_, v) = api
        .call(
            Method::GET,
            &format!("/api/v1/companies/{cid}/analyses"),
            None,
        )
        .await;
    v["items"].as_array().unwrap().len()
}

/// Validates a CycloneDX 1.6 document with cyclonedx-python-lib's JSON validator.
fn validate_cyclonedx_16(doc: &Value) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vex.cdx.json");
    std::fs::write(&path, serde_json::to_vec_pretty(doc).unwrap()).unwrap();
    let script = "import sys\n\
        from cyclonedx.schema import SchemaVersion\n\
        from cyclonedx.validation.json import JsonStrictValidator\n\
        errors = JsonStrictValidator(SchemaVersion.V1_6).validate_str(open(sys.argv[1]).read())\n\
        print(errors if errors else 'valid')\n\
        sys.exit(1 if errors else 0)\n";
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(&path)
        .output()
        .expect("python3 runs (cyclonedx-python-lib is installed by .ci/run)");
    assert!(
        out.status.success(),
        "CycloneDX 1.6 schema validation failed: {}{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        serde_json::to_string_pretty(doc).unwrap()
    );
}

async fn run(env: Env) {
    let import = std::process::Command::new(bin())
        .args(env.store_args())
        .args(["feeds", "import"])
        .arg(shared_path("osv/ghsa-sample"))
        .arg(shared_path("osv/ubuntu"))
        .output()
        .unwrap();
    assert!(import.status.success(), "{import:?}");
    let mut args = env.store_args();
    args.extend(["server", "--listen", "127.0.0.1:0"]);
    let server = ServerProcess::start(
        bin(),
        &args,
        &[("ZEROTRACE_ADMIN_TOKEN", OPERATOR)],
        env.path(),
        "vex",
    )
    .expect("server starts");
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let api = Api {
        http: reqwest::Client::new(),
        url: server.url.clone(),
    };

    // Company A decides: not affected in requests 2.25.0, suppressed, until 2030.
    let a = company_with_finding(&api, "vex-a").await;
    let (_, list) = api
        .call(
            Method::GET,
            &format!("/api/v1/companies/{a}/findings"),
            None,
        )
        .await;
    let vuln_id = list["items"][0]["vulnerability"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, created) = api
        .call(
            Method::POST,
            &format!("/api/v1/companies/{a}/analyses"),
            Some(&json!({"vuln_id": vuln_id, "state": "not_affected",
                "justification": "code_not_reachable", "response": ["will_not_fix"],
                "details": "proxies are never configured", "suppress": true,
                "expires_at": "2030-01-01T00:00:00Z",
                "scope": {"package": {"name": "requests", "version": "2.25.0"}}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(open_findings(&api, &a, "").await, 0);

    // The CycloneDX export is valid CycloneDX 1.6 and says what was decided.
    let (status, cdx) = api
        .call(Method::GET, &format!("/api/v1/companies/{a}/vex"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    validate_cyclonedx_16(&cdx);
    assert_eq!(cdx["specVersion"], "1.6");
    let v = &cdx["vulnerabilities"][0];
    assert_eq!(v["id"], vuln_id.as_str());
    assert_eq!(v["analysis"]["state"], "not_affected");
    assert_eq!(v["analysis"]["justification"], "code_not_reachable");
    assert_eq!(v["analysis"]["response"], json!(["will_not_fix"]));
    let affected = v["affects"][0]["ref"].as_str().unwrap();
    let component = cdx["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["bom-ref"] == affected)
        .expect("the affected component is in the BOM");
    assert_eq!(component["name"], "requests");
    assert_eq!(component["version"], "2.25.0");
    let (status, v) = api
        .call(
            Method::GET,
            &format!("/api/v1/companies/{a}/vex?format=spdx"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(v["error"]["field"], "format");

    // Round trip: imported into company B, the same finding is suppressed there.
    let b = company_with_finding(&api, "vex-b").await;
    assert_eq!(open_findings(&api, &b, "").await, 1);
    let (status, outcome) = api
        .post_raw(
            &format!("/api/v1/companies/{b}/vex"),
            &serde_json::to_vec(&cdx).unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{outcome}");
    assert_eq!(outcome["created"], 1);
    assert_eq!(open_findings(&api, &b, "").await, 0);
    let (_, only) = api
        .call(
            Method::GET,
            &format!("/api/v1/companies/{b}/findings?suppressed=only"),
            None,
        )
        .await;
    let covered = &only["items"][0]["analysis"];
    assert_eq!(covered["state"], "not_affected");
    assert_eq!(covered["justification"], "code_not_reachable");
    assert_eq!(covered["expires_at"], "2030-01-01T00:00:00Z");
    let (_, analyses) = api
        .call(
            Method::GET,
            &format!("/api/v1/companies/{b}/analyses"),
            None,
        )
        .await;
    assert!(analyses["items"][0]["source"]
        .as_str()
        .unwrap()
        .starts_with("cyclonedx VEX by vex-a"));

    // OpenVEX both ways: exported from A, imported into C.
    let (status, ovx) = api
        .call(
            Method::GET,
            &format!("/api/v1/companies/{a}/vex?format=openvex"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ovx["@context"], "https://openvex.dev/ns/v0.2.0");
    let st = &ovx["statements"][0];
    assert_eq!(st["vulnerability"]["name"], vuln_id.as_str());
    assert_eq!(st["status"], "not_affected");
    assert_eq!(st["justification"], "vulnerable_code_not_in_execute_path");
    let c = company_with_finding(&api, "vex-c").await;
    let (status, outcome) = api
        .post_raw(
            &format!("/api/v1/companies/{c}/vex"),
            &serde_json::to_vec(&ovx).unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{outcome}");
    assert_eq!(outcome["created"], 1);
    assert_eq!(open_findings(&api, &c, "").await, 0);
    // OpenVEX has no expiry field: it travels in status_notes and comes back.
    assert!(
        st["status_notes"].as_str().is_some_and(
            |n| n.contains("ZeroTrace: suppress=true; expires_at=2030-01-01T00:00:00+00:00")
        ),
        "{st}"
    );
    let (_, only) = api
        .call(
            Method::GET,
            &format!("/api/v1/companies/{c}/findings?suppressed=only"),
            None,
        )
        .await;
    assert_eq!(
        only["items"][0]["analysis"]["expires_at"], "2030-01-01T00:00:00Z",
        "{only}"
    );

    // Malformed documents: refused whole, naming where; nothing applied.
    let d = company_with_finding(&api, "vex-d").await;
    let mut bad_state = cdx.clone();
    bad_state["vulnerabilities"][0]["analysis"]["state"] = json!("probably_fine");
    let mut second_bad = ovx.clone();
    let mut extra = second_bad["statements"][0].clone();
    extra["status"] = json!("not_affected");
    extra["justification"] = json!("trust_me");
    second_bad["statements"].as_array_mut().unwrap().push(extra);
    let mut bad_product = ovx.clone();
    bad_product["statements"][0]["products"] = json!([{"@id": "requests 2.25.0"}]);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            serde_json::to_vec(&bad_state).unwrap(),
            "vulnerabilities[0].analysis.state",
        ),
        (
            serde_json::to_vec(&second_bad).unwrap(),
            "statements[1].justification",
        ),
        (
            serde_json::to_vec(&bad_product).unwrap(),
            "statements[0].products[0].@id",
        ),
        (b"{\"bomFormat\": \"CycloneDX\", \"specVersion\": \"1.6\", \"vulnerabilities\": [{\"id\": 7}]}".to_vec(), "vulnerabilities[0].id"),
        (b"{\"hello\": \"world\"}".to_vec(), "$"),
        (b"{\"@context\": \"https://openvex.dev/ns/v0.2.0\", \"statements\": [".to_vec(), "$"),
    ];
    for (body, path) in cases {
        let (status, v) = api
            .post_raw(&format!("/api/v1/companies/{d}/vex"), &body)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
        assert_eq!(v["error"]["field"], path, "{v}");
    }
    assert_eq!(analyses_count(&api, &d).await, 0, "nothing applied");
    assert_eq!(open_findings(&api, &d, "").await, 1);

    // A real distribution OpenVEX (Canonical's, for CVE-2016-20013): read whole; one analysis
    // per distinct package version it names about a vulnerability this server knows.
    let ubuntu = std::fs::read(shared_path("osv/ubuntu-vex/CVE-2016-20013.json")).unwrap();
    let doc: Value = serde_json::from_slice(&ubuntu).unwrap();
    let (status, outcome) = api
        .post_raw(&format!("/api/v1/companies/{d}/vex"), &ubuntu)
        .await;
    assert_eq!(status, StatusCode::OK, "{outcome}");
    let mut distinct = std::collections::BTreeSet::new();
    for (i, s) in doc["statements"].as_array().unwrap().iter().enumerate() {
        for p in s["products"].as_array().unwrap() {
            // pkg:deb/ubuntu/NAME@VERSION?qualifiers
            let id = p["@id"].as_str().unwrap();
            let rest = id.strip_prefix("pkg:deb/ubuntu/").unwrap();
            let (name, version) = rest.split_once('@').unwrap();
            let version = version.split('?').next().unwrap();
            distinct.insert((i, name.to_string(), version.replace("%3A", ":")));
        }
    }
    let created = outcome["created"].as_u64().unwrap() as usize;
    let unknown = outcome["unknown"].as_array().unwrap();
    assert_eq!(
        created + unknown.len(),
        distinct.len(),
        "every product statement either applied or named as unknown: {outcome}"
    );
    if created > 0 {
        let (_, list) = api
            .call(
                Method::GET,
                &format!("/api/v1/companies/{d}/analyses?limit=5"),
                None,
            )
            .await;
        assert!(list["items"][0]["source"]
            .as_str()
            .unwrap()
            .contains("Canonical Ltd."));
    }
    drop(server);
}

#[tokio::test]
async fn vex_export_import_and_refusals_on_sqlite() {
    run(Env::sqlite()).await;
}

#[tokio::test]
async fn vex_export_import_and_refusals_on_postgres() {
    run(Env::postgres()).await;
}

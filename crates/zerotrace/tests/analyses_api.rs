//! Analyses through the real server (issue 13): roles, malformed input named by field,
//! suppression of present and future findings in the summary and lists, tag scopes, expiry
//! by the server's own clock (findings return by themselves, with an `analysis.changed`
//! event), withdrawal and the audit trail. Real data: ../shared/data/osv/ghsa-sample
//! (requests 2.25.0 has GHSA-j8r2-6x86-q33q).

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use zt_inventory::{App, AppSource};
use zt_testkit::{shared_path, ServerProcess};

mod common;
use common::{bin, debian_report, enroll, post_inventory, Env};

const OPERATOR: &str = "zto_analyses-operator-token-0123456789abcdef";

struct Api {
    http: reqwest::Client,
    url: String,
}

impl Api {
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn raw(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: &str,
    ) -> (StatusCode, Value) {
        let resp = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }
}

fn error_field(v: &Value) -> &str {
    v["error"]["field"].as_str().unwrap_or("")
}

/// (hostname, vulnerability id) of every finding a list shows.
async fn finding_hosts(api: &Api, cid: &str, token: &str, query: &str) -> Vec<(String, String)> {
    let (status, v) = api
        .call(
            Method::GET,
            &format!("/api/v1/companies/{cid}/findings?{query}"),
            token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let mut out: Vec<(String, String)> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["hostname"].as_str().unwrap().to_string(),
                f["vulnerability"]["id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

async fn summary_total(api: &Api, cid: &str, token: &str) -> u64 {
    let (_, s) = api
        .call(
            Method::GET,
            &format!("/api/v1/companies/{cid}/summary"),
            token,
            None,
        )
        .await;
    ["critical", "high", "medium", "low", "unknown"]
        .iter()
        .map(|k| s["findings"][k].as_u64().unwrap())
        .sum()
}

async fn wait_until<F, Fut>(what: &str, secs: u64, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn run(env: Env) {
    let import = std::process::Command::new(bin())
        .args(env.store_args())
        .args(["feeds", "import"])
        .arg(shared_path("osv/ghsa-sample"))
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
        "analyses",
    )
    .expect("server starts");
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let api = Api {
        http: reqwest::Client::new(),
        url: server.url.clone(),
    };
    let (status, company) = api
        .call(
            Method::POST,
            "/api/v1/companies",
            OPERATOR,
            Some(json!({"name": "Acme"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let cid = company["id"].as_str().unwrap().to_string();
    let secret = company["enroll_secret"].as_str().unwrap().to_string();
    let mut tokens = Vec::new();
    for role in ["admin", "viewer"] {
        let (status, t) = api
            .call(
                Method::POST,
                &format!("/api/v1/companies/{cid}/tokens"),
                OPERATOR,
                Some(json!({ "role": role })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
        tokens.push(t["token"].as_str().unwrap().to_string());
    }
    let (admin, viewer) = (tokens[0].clone(), tokens[1].clone());
    let web_token = enroll(&api.http, &api.url, &secret, "web-1").await;
    let db_token = enroll(&api.http, &api.url, &secret, "db-2").await;
    let requests = || vec![App::new("requests", "2.25.0", AppSource::Pypi)];
    let report = debian_report("web-1", "Debian GNU/Linux 12 (bookworm)", requests());
    assert_eq!(
        post_inventory(&api.http, &api.url, &web_token, &report).await,
        StatusCode::ACCEPTED
    );
    wait_until("web-1's finding", 60, || async {
        !finding_hosts(&api, &cid, &viewer, "").await.is_empty()
    })
    .await;
    let (_, list) = api
        .call(
            Method::GET,
            &format!("/api/v1/companies/{cid}/findings"),
            &viewer,
            None,
        )
        .await;
    let finding = &list["items"][0];
    let vuln_id = finding["vulnerability"]["id"].as_str().unwrap().to_string();
    assert_eq!(finding["analysis"], Value::Null);
    let web_id = finding["agent_id"].as_str().unwrap().to_string();
    let alias = finding["vulnerability"]["aliases"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .find(|a| *a != vuln_id)
        .expect("the advisory has an alias")
        .to_string();
    let before = summary_total(&api, &cid, &viewer).await;
    assert!(before >= 1);
    let analyses = format!("/api/v1/companies/{cid}/analyses");

    // Roles: a viewer reads but does not write; an agent does neither.
    let accept = json!({"vuln_id": alias, "state": "exploitable", "response": ["will_not_fix"],
        "suppress": true, "comment": "accepted risk"});
    let (status, v) = api
        .call(Method::POST, &analyses, &viewer, Some(accept.clone()))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    let (status, _) = api.call(Method::GET, &analyses, &web_token, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, v) = api.call(Method::GET, &analyses, &viewer, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["items"], json!([]));

    // Malformed input: refused, naming the field; nothing stored.
    for (body, field) in [
        (json!({"vuln_id": vuln_id, "state": "maybe"}), "state"),
        (json!({"vuln_id": vuln_id}), ""),
        (
            json!({"vuln_id": vuln_id, "state": "in_triage", "justification": "because"}),
            "justification",
        ),
        (
            json!({"vuln_id": vuln_id, "state": "in_triage", "response": ["later"]}),
            "response[0]",
        ),
        (
            json!({"vuln_id": vuln_id, "state": "in_triage", "supress": true}),
            "",
        ),
        (
            json!({"vuln_id": vuln_id, "state": "in_triage", "expires_at": "next week"}),
            "expires_at",
        ),
        (
            json!({"vuln_id": vuln_id, "state": "in_triage", "expires_at": "2020-01-01T00:00:00Z"}),
            "expires_at",
        ),
        (
            json!({"vuln_id": "CVE-1900-0001", "state": "in_triage"}),
            "vuln_id",
        ),
        (
            json!({"vuln_id": vuln_id, "state": "in_triage", "scope": {"agent_ids": ["nope"]}}),
            "scope.agent_ids[0]",
        ),
        (
            json!({"vuln_id": vuln_id, "state": "in_triage", "scope": {"tags": ["a b"]}}),
            "scope.tags",
        ),
    ] {
        let (status, v) = api
            .call(Method::POST, &analyses, &admin, Some(body.clone()))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert_eq!(v["error"]["code"], "invalid_request", "{v}");
        if !field.is_empty() {
            assert_eq!(error_field(&v), field, "{body}: {v}");
        }
    }
    let (status, v) = api
        .raw(Method::POST, &analyses, &admin, "{\"vuln_id\": ")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    let (_, v) = api.call(Method::GET, &analyses, &viewer, None).await;
    assert_eq!(v["items"], json!([]), "nothing of the refused ones stored");

    // Risk acceptance by the alias: the finding leaves the counts and the list at once.
    let (status, a) = api
        .call(Method::POST, &analyses, &admin, Some(accept))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{a}");
    assert_eq!(a["vuln_id"], vuln_id.as_str());
    assert_eq!(a["status"], "active");
    let aid = a["analysis_id"].as_str().unwrap().to_string();
    assert_eq!(summary_total(&api, &cid, &viewer).await, before - 1);
    assert!(!finding_hosts(&api, &cid, &viewer, "")
        .await
        .iter()
        .any(|(_, v)| *v == vuln_id));
    let (_, only) = api
        .call(
            Method::GET,
            &format!("/api/v1/companies/{cid}/findings?suppressed=only"),
            &viewer,
            None,
        )
        .await;
    assert_eq!(only["items"].as_array().unwrap().len(), 1);
    let covered = &only["items"][0]["analysis"];
    assert_eq!(covered["analysis_id"], aid.as_str());
    assert_eq!(covered["state"], "exploitable");
    assert_eq!(covered["suppressed"], true);
    let (status, v) = api
        .call(
            Method::GET,
            &format!("/api/v1/companies/{cid}/findings?suppressed=maybe"),
            &viewer,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_field(&v), "suppressed");

    // A host that installs the package later: its finding arrives suppressed.
    let report = debian_report("db-2", "Debian GNU/Linux 12 (bookworm)", requests());
    assert_eq!(
        post_inventory(&api.http, &api.url, &db_token, &report).await,
        StatusCode::ACCEPTED
    );
    wait_until("db-2's suppressed finding", 60, || async {
        finding_hosts(&api, &cid, &viewer, "suppressed=only")
            .await
            .len()
            == 2
    })
    .await;
    assert_eq!(
        summary_total(&api, &cid, &viewer).await,
        2 * (before - 1),
        "db-2 counts what web-1 counts"
    );

    // Tags: web-1 in the DMZ; the analysis narrowed to it.
    let tags_path = format!("/api/v1/companies/{cid}/agents/{web_id}/tags");
    let (status, _) = api
        .call(
            Method::PUT,
            &tags_path,
            &viewer,
            Some(json!({"tags": ["dmz"]})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, v) = api
        .call(
            Method::PUT,
            &tags_path,
            &admin,
            Some(json!({"tags": ["dmz", "bad tag"]})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_field(&v), "tags");
    let (status, v) = api
        .call(
            Method::PUT,
            &tags_path,
            &admin,
            Some(json!({"tags": ["dmz"], "comment": "edge"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["tags"], json!(["dmz"]));
    let (_, v) = api.call(Method::GET, &tags_path, &viewer, None).await;
    assert_eq!(v["tags"], json!(["dmz"]));
    let one = format!("{analyses}/{aid}");
    let (status, v) = api
        .call(
            Method::PATCH,
            &one,
            &admin,
            Some(json!({"scope": {"tags": ["dmz"]}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(
        finding_hosts(&api, &cid, &viewer, "suppressed=only").await,
        [("web-1".to_string(), vuln_id.clone())]
    );
    assert_eq!(
        finding_hosts(&api, &cid, &viewer, "suppressed=include&tag=dmz").await,
        [("web-1".to_string(), vuln_id.clone())]
    );
    let (status, v) = api
        .call(
            Method::PATCH,
            &one,
            &admin,
            Some(json!({"state": "sometimes"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_field(&v), "state");

    // Expiry, by the server's clock: the finding comes back by itself, with an event.
    let expires = chrono::Utc::now() + chrono::Duration::seconds(2);
    let (status, v) = api
        .call(
            Method::PATCH,
            &one,
            &admin,
            Some(json!({"expires_at": expires})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    wait_until("the expiry", 30, || async {
        finding_hosts(&api, &cid, &viewer, "suppressed=only")
            .await
            .is_empty()
    })
    .await;
    assert_eq!(summary_total(&api, &cid, &viewer).await, 2 * before);
    let (_, v) = api.call(Method::GET, &one, &viewer, None).await;
    assert_eq!(v["status"], "expired");
    let (status, v) = api
        .call(
            Method::PATCH,
            &one,
            &admin,
            Some(json!({"state": "in_triage"})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "an expired one needs a new expiry"
    );
    assert_eq!(error_field(&v), "expires_at");

    // Withdrawal keeps the analysis and its history.
    let (status, _) = api.call(Method::DELETE, &one, &viewer, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, v) = api
        .call(
            Method::DELETE,
            &format!("{one}?comment=superseded"),
            &admin,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "withdrawn");
    let (status, _) = api.call(Method::DELETE, &one, &admin, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = api
        .call(
            Method::GET,
            &format!("{analyses}/{}", uuid::Uuid::new_v4()),
            &viewer,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Notification rule changes are in the trail too (created, changed, deleted).
    let rules = format!("/api/v1/companies/{cid}/notification-rules");
    let (status, rule) = api
        .call(
            Method::POST,
            &rules,
            &admin,
            Some(json!({"name": "security team", "events": ["finding.kev"],
                "destination": {"kind": "email", "to": ["sec@example.com"]}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{rule}");
    let rule_url = format!("{rules}/{}", rule["id"].as_str().unwrap());
    let (status, _) = api
        .call(
            Method::PATCH,
            &rule_url,
            &admin,
            Some(json!({"name": "sec team"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = api.call(Method::DELETE, &rule_url, &admin, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    // The audit trail names who did what, newest first.
    let (status, audit) = api
        .call(
            Method::GET,
            &format!("/api/v1/companies/{cid}/audit"),
            &viewer,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let entries = audit["items"].as_array().unwrap();
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions[..3],
        [
            "notification_rule.deleted",
            "notification_rule.updated",
            "notification_rule.created",
        ]
    );
    assert_eq!(entries[1]["before"]["name"], "security team");
    assert_eq!(entries[1]["after"]["name"], "sec team");
    assert_eq!(entries[0]["after"], Value::Null);
    assert_eq!(entries[0]["actor"]["role"], "admin");
    let entries = &entries[3..];
    let actions = &actions[3..];
    assert_eq!(
        actions,
        [
            "analysis.withdrawn",
            "analysis.expired",
            "analysis.updated",
            "analysis.updated",
            "agent.tags_set",
            "analysis.created",
            "token.created",
            "token.created",
        ]
    );
    assert_eq!(entries[0]["comment"], "superseded");
    assert_eq!(entries[0]["actor"]["kind"], "user");
    assert_eq!(entries[0]["actor"]["role"], "admin");
    assert_eq!(entries[0]["actor"]["token_id"].as_str().unwrap().len(), 16);
    assert_eq!(entries[1]["actor"]["kind"], "system");
    assert_eq!(entries[5]["comment"], "accepted risk");
    assert_eq!(entries[7]["actor"]["kind"], "operator");
    assert_eq!(entries[7]["after"]["role"], "admin");
    // The audit trail names no secret.
    assert!(!audit.to_string().contains(&admin));
    drop(server);
}

#[tokio::test]
async fn analyses_through_the_api_on_sqlite() {
    run(Env::sqlite()).await;
}

#[tokio::test]
async fn analyses_through_the_api_on_postgres() {
    run(Env::postgres()).await;
}

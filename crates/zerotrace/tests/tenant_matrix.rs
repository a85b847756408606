//! The cross-tenant matrix: every operation of the OpenAPI document the real server serves ×
//! every kind of credential, with the status each must get, and no body of one company's
//! credential showing another company's data (ids, hostnames, names).
//!
//! Nothing here lists routes: they come from `/api/openapi.json`, so a route someone adds is
//! walked as soon as it is documented (and served: the router and the document are one
//! registration, see zt-server `routes::api_router_parts`). What the test needs to know of a
//! route, it reads from the document:
//! - who may call it: the operation's `security` requirements (schemes `operator`,
//!   `company_admin`, `company_viewer`, `agent`, `session`; none = public). An unknown scheme
//!   fails.
//! - the credential in the body instead of a header: `x-zerotrace-body-credential: <field>`,
//!   and the kinds of token it takes, `x-zerotrace-body-credential-schemes` (without it: the
//!   enroll secret).
//! - a request body: the example of the body's schema (or of the media type). None fails.
//! - path parameters: filled from the fixtures in [`World::path_value`], all of company A.
//!   An unknown parameter fails with a message saying where to add a fixture.
//!
//! The credentials: the operator; company A's admin and viewer (A's ids fill every path) and
//! company B's; each company's agent and enroll secret; a bogus token, A's admin token revoked,
//! A's admin token expired, and none. Each operator and user token also as a session.
//!
//! Expected statuses, for a credential C on an operation with requirements S:
//! public → a documented 2xx whatever C is; C bogus, missing, revoked or expired → 401; C a
//! user of company B on a path with ids of A, when S admits users → 404 (a foreign id is a
//! missing one), and likewise the agent of B where S admits agents; C's kind not in S → 403;
//! otherwise a documented 2xx. DELETE operations run last (longest path first), each with
//! the denied credentials and then one admitted credential (the first of `ADMITTED_ORDER`).
//!
//! Every operator and user token also signs in (`POST /api/v1/session`), and its session
//! cookie (with the CSRF header on writes) is walked over every route beside it: it must get
//! exactly what its token gets. Only an operation whose sole requirement is `session`
//! (sign-out) admits a session where its token is refused; a body credential is a token in
//! the body, so there the cookie is not walked.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use zt_inventory::{App, AppSource};
use zt_testkit::{shared_path, ServerProcess};

mod common;
use common::{bin, debian_report, Env};

const OPERATOR: &str = "zto_matrix-operator-token-0123456789abcdef";

/// The kinds of credential the document's security schemes name.
const SCHEMES: [&str; 5] = [
    "operator",
    "company_admin",
    "company_viewer",
    "agent",
    "session",
];

/// Which admitted credential performs a destructive operation (the least powerful first).
const ADMITTED_ORDER: [&str; 8] = [
    "own_viewer",
    "own_admin",
    "own_agent",
    "own_enroll",
    "operator",
    "operator_session",
    "own_viewer_session",
    "own_admin_session",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Operator,
    Admin,
    Viewer,
    Agent,
    Enroll,
    /// Not a credential the server knows (bogus, missing, revoked, expired).
    Invalid,
}

impl Kind {
    fn scheme(self) -> Option<&'static str> {
        match self {
            Kind::Operator => Some("operator"),
            Kind::Admin => Some("company_admin"),
            Kind::Viewer => Some("company_viewer"),
            Kind::Agent => Some("agent"),
            Kind::Enroll | Kind::Invalid => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Company {
    /// Company A, whose ids fill every path.
    Own,
    Foreign,
    None,
}

struct Credential {
    name: String,
    token: Option<String>,
    kind: Kind,
    company: Company,
    /// A dashboard session opened with the token: (session id, CSRF token). The request then
    /// carries the cookie instead of the token.
    session: Option<(String, String)>,
}

/// One company of the test world and what identifies its data.
struct Tenant {
    id: String,
    name: String,
    secret: String,
    admin: String,
    viewer: String,
    agent_id: String,
    agent_token: String,
    hostname: String,
    report_id: String,
}

impl Tenant {
    /// Strings that only this company's data contains.
    fn markers(&self) -> Vec<&str> {
        vec![
            &self.id,
            &self.name,
            &self.agent_id,
            &self.hostname,
            &self.report_id,
        ]
    }
}

struct World {
    _server: ServerProcess,
    url: String,
    http: reqwest::Client,
    a: Tenant,
    b: Tenant,
    vuln_id: String,
    /// An analysis of company A (of `vuln_id`).
    analysis_id: String,
    /// A notification rule of company A (its destination a closed local port).
    rule_id: String,
    /// Sessions by the name of the token's credential.
    sessions: BTreeMap<String, (String, String)>,
    /// Company A's second agent, which the operations that take an agent's credentials away
    /// (rotate, revoke, decommission) work on, so that A's own agent stays a credential.
    spare_agent_id: String,
    /// A user token of company A no credential of the walk uses (revoked by the walk).
    spare_token_id: String,
    /// A third company, deleted by the walk (deleting A would void A's credentials).
    doomed_company_id: String,
    /// An admin token of company A, revoked before the walk.
    revoked_admin: String,
    /// An admin token of company A whose expiry has passed.
    expired_admin: String,
}

impl World {
    /// The value of a path parameter: an id of company A (the company deleted is a third
    /// one; the agent whose credentials are taken away is A's second one).
    fn path_value(&self, method: &Method, route: &str, name: &str) -> String {
        let takes_agent_away = route.ends_with("/agents/{agent_id}/token")
            || (*method == Method::DELETE && route.ends_with("/agents/{agent_id}"));
        match name {
            "company_id"
                if *method == Method::DELETE && route == "/api/v1/companies/{company_id}" =>
            {
                self.doomed_company_id.clone()
            }
            "company_id" => self.a.id.clone(),
            "agent_id" if takes_agent_away => self.spare_agent_id.clone(),
            "agent_id" => self.a.agent_id.clone(),
            "token_id" => self.spare_token_id.clone(),
            "report_id" => self.a.report_id.clone(),
            "vuln_id" => self.vuln_id.clone(),
            "analysis_id" => self.analysis_id.clone(),
            "rule_id" => self.rule_id.clone(),
            other => panic!(
                "{route}: no fixture for the path parameter {{{other}}}; add one of company A \
                 to World::path_value in crates/zerotrace/tests/tenant_matrix.rs"
            ),
        }
    }

    fn credentials(&self) -> Vec<Credential> {
        let c = |name: &str, token: &str, kind, company| Credential {
            name: name.to_string(),
            token: Some(token.to_string()),
            kind,
            company,
            session: None,
        };
        let mut all = vec![
            c("operator", OPERATOR, Kind::Operator, Company::None),
            c("own_admin", &self.a.admin, Kind::Admin, Company::Own),
            c("own_viewer", &self.a.viewer, Kind::Viewer, Company::Own),
            c(
                "foreign_admin",
                &self.b.admin,
                Kind::Admin,
                Company::Foreign,
            ),
            c(
                "foreign_viewer",
                &self.b.viewer,
                Kind::Viewer,
                Company::Foreign,
            ),
            c("own_agent", &self.a.agent_token, Kind::Agent, Company::Own),
            c(
                "foreign_agent",
                &self.b.agent_token,
                Kind::Agent,
                Company::Foreign,
            ),
            c("own_enroll", &self.a.secret, Kind::Enroll, Company::Own),
            c(
                "foreign_enroll",
                &self.b.secret,
                Kind::Enroll,
                Company::Foreign,
            ),
            c(
                "bogus",
                "ztu_bogusbogusbogusbogusbogusbogusbogusbogus1",
                Kind::Invalid,
                Company::None,
            ),
            c("revoked", &self.revoked_admin, Kind::Invalid, Company::None),
            c("expired", &self.expired_admin, Kind::Invalid, Company::None),
            Credential {
                name: "none".into(),
                token: None,
                kind: Kind::Invalid,
                company: Company::None,
                session: None,
            },
        ];
        let twins: Vec<Credential> = all
            .iter()
            .filter_map(|c| {
                let session = self.sessions.get(&c.name)?.clone();
                Some(Credential {
                    name: format!("{}_session", c.name),
                    token: c.token.clone(),
                    kind: c.kind,
                    company: c.company,
                    session: Some(session),
                })
            })
            .collect();
        all.extend(twins);
        all
    }
}

async fn send(
    http: &reqwest::Client,
    method: Method,
    url: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (StatusCode, String) {
    send_as(http, method, url, token, None, body).await
}

/// A request with a bearer token, or with a session cookie (and its CSRF header on writes).
async fn send_as(
    http: &reqwest::Client,
    method: Method,
    url: &str,
    token: Option<&str>,
    session: Option<&(String, String)>,
    body: Option<&Value>,
) -> (StatusCode, String) {
    let write = !matches!(method, Method::GET | Method::HEAD);
    let mut req = http.request(method, url);
    if let Some((id, csrf)) = session {
        req = req.header("cookie", format!("zt_session={id}"));
        if write {
            req = req.header("x-zerotrace-csrf", csrf);
        }
    } else if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    let mut resp = req.send().await.expect("request");
    let status = resp.status();
    let streaming = resp
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if !streaming {
        return (status, resp.text().await.unwrap_or_default());
    }
    // An event stream never ends: what it sends at once (the summary) is its body here.
    let mut text = String::new();
    let until = tokio::time::Instant::now() + Duration::from_millis(500);
    while let Ok(Ok(Some(chunk))) = tokio::time::timeout_at(until, resp.chunk()).await {
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    (status, text)
}

async fn tenant(http: &reqwest::Client, url: &str, label: &str) -> Tenant {
    let tag = uuid::Uuid::new_v4().simple().to_string()[..10].to_string();
    let name = format!("matrix-{label}-{tag}");
    let (status, body) = send(
        http,
        Method::POST,
        &format!("{url}/api/v1/companies"),
        Some(OPERATOR),
        Some(&json!({ "name": name })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let company: Value = serde_json::from_str(&body).unwrap();
    let id = company["id"].as_str().unwrap().to_string();
    let secret = company["enroll_secret"].as_str().unwrap().to_string();
    let mut tokens = Vec::new();
    for role in ["admin", "viewer"] {
        let (status, body) = send(
            http,
            Method::POST,
            &format!("{url}/api/v1/companies/{id}/tokens"),
            Some(OPERATOR),
            Some(&json!({ "role": role })),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        tokens.push(v["token"].as_str().unwrap().to_string());
    }
    let hostname = format!("host-{label}-{tag}");
    let (status, body) = send(
        http,
        Method::POST,
        &format!("{url}/api/v1/enroll"),
        None,
        Some(&json!({"enroll_secret": secret, "hostname": hostname,
            "os": {"id": "debian", "version_id": "12"}, "arch": "x86_64"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let enrolled: Value = serde_json::from_str(&body).unwrap();
    let agent_token = enrolled["agent_token"].as_str().unwrap().to_string();
    // requests 2.25.0 has GHSA-j8r2-6x86-q33q (../shared/data/osv/ghsa-sample).
    let report = debian_report(
        &hostname,
        "Debian GNU/Linux 12 (bookworm)",
        vec![
            App::new("requests", "2.25.0", AppSource::Pypi),
            App::new("semver", "7.0.0", AppSource::Npm),
        ],
    );
    let (status, body) = send(
        http,
        Method::POST,
        &format!("{url}/api/v1/inventory"),
        Some(&agent_token),
        Some(&serde_json::to_value(&report).unwrap()),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    Tenant {
        id,
        name,
        secret,
        admin: tokens[0].clone(),
        viewer: tokens[1].clone(),
        agent_id: enrolled["agent_id"].as_str().unwrap().to_string(),
        agent_token,
        hostname,
        report_id: report.report_id.to_string(),
    }
}

/// Waits until the company's report was processed into findings; returns a vulnerability id.
async fn wait_findings(http: &reqwest::Client, url: &str, t: &Tenant) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, body) = send(
            http,
            Method::GET,
            &format!("{url}/api/v1/companies/{}/findings", t.id),
            Some(&t.viewer),
            None,
        )
        .await;
        let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        if let Some(id) = v["items"][0]["vulnerability"]["id"].as_str() {
            return id.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no findings for {}: {body}",
            t.name
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn world(env: &Env) -> World {
    let import = std::process::Command::new(bin())
        .args(env.store_args())
        .args(["feeds", "import"])
        .arg(shared_path("osv/ghsa-sample"))
        .output()
        .unwrap();
    assert!(import.status.success(), "{import:?}");
    let mut args = env.store_args();
    args.extend([
        "server",
        "--listen",
        "127.0.0.1:0",
        "--knowledge-poll-secs",
        "0.2",
        // The walk presents bad credentials on every route on purpose: the per-address
        // limit before authentication (abuse_bounds.rs tests it) would cut it short.
        "--rate-auth-failures",
        "0",
        // Notification rules: the documented example's destination is accepted without DNS,
        // the fixture rule's is a closed local port (its test message fails at once).
        "--allow-private-webhooks",
    ]);
    let server = ServerProcess::start(
        bin(),
        &args,
        &[("ZEROTRACE_ADMIN_TOKEN", OPERATOR)],
        env.path(),
        "matrix",
    )
    .expect("server starts");
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let url = server.url.clone();
    let a = tenant(&http, &url, "a").await;
    let b = tenant(&http, &url, "b").await;
    let vuln_id = wait_findings(&http, &url, &a).await;
    wait_findings(&http, &url, &b).await;
    let (status, body) = send(
        &http,
        Method::POST,
        &format!("{url}/api/v1/companies/{}/analyses", a.id),
        Some(a.admin.as_str()),
        Some(&json!({"vuln_id": vuln_id, "state": "in_triage"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let analysis_id = serde_json::from_str::<Value>(&body).unwrap()["analysis_id"]
        .as_str()
        .unwrap()
        .to_string();
    let rule = http
        .post(format!(
            "{url}/api/v1/companies/{}/notification-rules",
            a.id
        ))
        .bearer_auth(OPERATOR)
        .json(&json!({"name": "matrix rule", "events": ["finding.opened"],
            "destination": {"kind": "webhook", "url": "http://127.0.0.1:9/matrix"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(rule.status(), StatusCode::CREATED);
    let rule_id = rule.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut sessions = BTreeMap::new();
    for (name, token) in [
        ("operator", OPERATOR),
        ("own_admin", a.admin.as_str()),
        ("own_viewer", a.viewer.as_str()),
        ("foreign_admin", b.admin.as_str()),
        ("foreign_viewer", b.viewer.as_str()),
    ] {
        let resp = http
            .post(format!("{url}/api/v1/session"))
            .json(&json!({ "token": token }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "sign-in as {name}");
        let cookie = resp.headers()["set-cookie"].to_str().unwrap().to_string();
        let id = cookie
            .split(';')
            .next()
            .and_then(|kv| kv.strip_prefix("zt_session="))
            .unwrap()
            .to_string();
        let body: Value = resp.json().await.unwrap();
        sessions.insert(
            name.to_string(),
            (id, body["csrf"].as_str().unwrap().to_string()),
        );
    }
    // Company A's second host, a spare token of A, and a company to delete.
    let (status, body) = send(
        &http,
        Method::POST,
        &format!("{url}/api/v1/enroll"),
        None,
        Some(
            &json!({"enroll_secret": a.secret, "hostname": format!("{}-spare", a.hostname),
            "os": {"id": "debian", "version_id": "12"}, "arch": "x86_64"}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let spare_agent_id = serde_json::from_str::<Value>(&body).unwrap()["agent_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, body) = send(
        &http,
        Method::POST,
        &format!("{url}/api/v1/companies/{}/tokens", a.id),
        Some(OPERATOR),
        Some(&json!({ "role": "viewer", "name": "spare" })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let spare_token_id = serde_json::from_str::<Value>(&body).unwrap()["token_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, body) = send(
        &http,
        Method::POST,
        &format!("{url}/api/v1/companies"),
        Some(OPERATOR),
        Some(&json!({ "name": format!("matrix-doomed-{}", uuid::Uuid::new_v4().simple()) })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let doomed_company_id = serde_json::from_str::<Value>(&body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    // A revoked admin of A: refused everywhere, like a token never issued.
    let (status, body) = send(
        &http,
        Method::POST,
        &format!("{url}/api/v1/companies/{}/tokens", a.id),
        Some(OPERATOR),
        Some(&json!({ "role": "admin", "name": "revoked" })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let revoked: Value = serde_json::from_str(&body).unwrap();
    let (status, body) = send(
        &http,
        Method::DELETE,
        &format!(
            "{url}/api/v1/companies/{}/tokens/{}",
            a.id,
            revoked["token_id"].as_str().unwrap()
        ),
        Some(OPERATOR),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let expired_admin = expired_token(env, &a.id).await;
    World {
        _server: server,
        url,
        http,
        a,
        b,
        vuln_id,
        analysis_id,
        rule_id,
        sessions,
        spare_agent_id,
        spare_token_id,
        doomed_company_id,
        revoked_admin: revoked["token"].as_str().unwrap().to_string(),
        expired_admin,
    }
}

/// An admin token of `company` that expired yesterday. The API only makes tokens that expire
/// in a day or more, so it is written into the store the server runs on, as the server's own
/// code would have written it a few days ago.
async fn expired_token(env: &Env, company: &str) -> String {
    let store = match &env.db {
        Some(db) => zt_store::AnyStore::open_postgres(
            &db.url,
            &zt_store::PgOptions {
                partitions: 4,
                max_connections: 2,
            },
        )
        .await
        .unwrap(),
        None => zt_store::AnyStore::open_sqlite(&env.path().join("zerotrace.db"))
            .await
            .unwrap(),
    };
    let token = format!("ztu_expired{}", uuid::Uuid::new_v4().simple());
    let now = chrono::Utc::now();
    let created = store
        .storage()
        .create_token(&zt_store::model::NewUserToken {
            company_id: company.parse().unwrap(),
            token_id: uuid::Uuid::now_v7(),
            role: zt_store::model::Role::Admin,
            name: Some("expired".into()),
            hash: zt_server::auth::hash_token(&token),
            created_at: now - chrono::Duration::days(3),
            expires_at: Some(now - chrono::Duration::days(1)),
        })
        .await
        .unwrap();
    assert!(created);
    token
}

/// One operation of the document.
struct Operation {
    method: Method,
    path: String,
    /// None: public.
    security: Option<BTreeSet<String>>,
    body_credential: Option<String>,
    /// The kinds of token the body credential may be (None: an enroll secret).
    body_schemes: Option<BTreeSet<String>>,
    example: Option<Value>,
    success: BTreeSet<u16>,
    documented: BTreeSet<u16>,
    path_params: Vec<String>,
    /// Required query parameters (filled by [`query_value`]).
    required_query: Vec<String>,
}

/// The value of a required query parameter of an operation on `path` (ids filled in).
fn query_value(route: &str, path: &str, name: &str) -> String {
    match name {
        // A deletion's confirmation repeats the id of the company in the path.
        "confirm" => path.rsplit('/').next().unwrap_or_default().to_string(),
        other => panic!(
            "{route}: no fixture for the required query parameter {other}; add one to \
             query_value in crates/zerotrace/tests/tenant_matrix.rs"
        ),
    }
}

fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v["$ref"].as_str() {
        Some(r) => {
            let mut at = doc;
            for part in r.trim_start_matches("#/").split('/') {
                at = &at[part];
            }
            at
        }
        None => v,
    }
}

fn operations(doc: &Value) -> Vec<Operation> {
    let schemes: BTreeSet<&str> = doc["components"]["securitySchemes"]
        .as_object()
        .map(|m| m.keys().map(String::as_str).collect())
        .unwrap_or_default();
    assert_eq!(
        schemes,
        SCHEMES.into_iter().collect(),
        "the document's security schemes changed: teach this test the new kind of credential"
    );
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().unwrap() {
            let Ok(m) = Method::from_bytes(method.to_ascii_uppercase().as_bytes()) else {
                continue;
            };
            let route = format!("{method} {path}");
            let security = op["security"].as_array().and_then(|reqs| {
                let names: BTreeSet<String> = reqs
                    .iter()
                    .flat_map(|r| r.as_object().unwrap().keys().cloned())
                    .collect();
                (!names.is_empty()).then_some(names)
            });
            for name in security.iter().flatten() {
                assert!(
                    SCHEMES.contains(&name.as_str()),
                    "{route}: unknown security scheme {name}"
                );
            }
            let documented: BTreeSet<u16> = op["responses"]
                .as_object()
                .unwrap()
                .keys()
                .map(|k| k.parse().expect("numeric status"))
                .collect();
            let success: BTreeSet<u16> = documented
                .iter()
                .copied()
                .filter(|s| (200..300).contains(s))
                .collect();
            assert!(!success.is_empty(), "{route}: no success status documented");
            let example = op["requestBody"]["content"]["application/json"]
                .as_object()
                .map(|media| {
                    media
                        .get("example")
                        .cloned()
                        .or_else(|| resolve(doc, &media["schema"]).get("example").cloned())
                        .unwrap_or_else(|| {
                            panic!("{route}: the request body needs an example (schema example)")
                        })
                });
            let path_params = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "path")
                .map(|p| p["name"].as_str().unwrap().to_string())
                .collect();
            let required_query = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "query" && p["required"] == true)
                .map(|p| p["name"].as_str().unwrap().to_string())
                .collect();
            ops.push(Operation {
                method: m,
                path: path.clone(),
                security,
                body_credential: op["x-zerotrace-body-credential"]
                    .as_str()
                    .map(str::to_string),
                body_schemes: op["x-zerotrace-body-credential-schemes"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|s| s.as_str().expect("scheme names").to_string())
                            .collect()
                    }),
                example,
                success,
                documented,
                path_params,
                required_query,
            });
        }
    }
    // Destructive operations last, the most specific first.
    ops.sort_by_key(|o| {
        let delete = o.method == Method::DELETE;
        (delete, delete.then(|| usize::MAX - o.path.len()))
    });
    ops
}

/// What the credential must get: Ok(()) = a documented 2xx, Err(status) = that status.
fn expected(op: &Operation, c: &Credential) -> Result<(), u16> {
    if op.body_credential.is_some() {
        return match (&op.body_schemes, c.kind, &c.token) {
            (_, _, None) => Err(400),
            (None, Kind::Enroll, _) => Ok(()),
            (None, _, _) | (Some(_), Kind::Invalid, _) => Err(401),
            (Some(schemes), kind, _) => {
                if kind.scheme().is_some_and(|s| schemes.contains(s)) {
                    Ok(())
                } else {
                    Err(403)
                }
            }
        };
    }
    let Some(security) = &op.security else {
        return Ok(());
    };
    if c.kind == Kind::Invalid {
        return Err(401);
    }
    // An operation for sessions alone (sign-out) admits any session, and no token.
    if security.len() == 1 && security.contains("session") {
        return if c.session.is_some() {
            Ok(())
        } else {
            Err(403)
        };
    }
    let admits = |k: Kind| k.scheme().is_some_and(|s| security.contains(s));
    let scoped = !op.path_params.is_empty();
    let is_user = matches!(c.kind, Kind::Admin | Kind::Viewer);
    if scoped && c.company == Company::Foreign {
        if is_user && (admits(Kind::Admin) || admits(Kind::Viewer)) {
            return Err(404);
        }
        if c.kind == Kind::Agent && admits(Kind::Agent) {
            return Err(404);
        }
    }
    if !admits(c.kind) {
        return Err(403);
    }
    Ok(())
}

async fn matrix(env: &Env) {
    let w = world(env).await;
    let (status, doc) = send(
        &w.http,
        Method::GET,
        &format!("{}/api/openapi.json", w.url),
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let doc: Value = serde_json::from_str(&doc).unwrap();
    let ops = operations(&doc);
    assert!(ops.len() >= 14, "only {} operations documented", ops.len());
    let mut credentials = w.credentials();
    let mut failures = Vec::new();
    let mut table: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for op in &ops {
        let mut path = op.path.clone();
        for p in &op.path_params {
            path = path.replace(&format!("{{{p}}}"), &w.path_value(&op.method, &op.path, p));
        }
        let route = format!("{} {}", op.method, op.path);
        let query: Vec<String> = op
            .required_query
            .iter()
            .map(|q| format!("{q}={}", query_value(&route, &path, q)))
            .collect();
        if !query.is_empty() {
            path = format!("{path}?{}", query.join("&"));
        }
        // An operation that replaces A's enroll secret hands back the new one: the walk goes
        // on with it.
        let mut new_enroll_secret = None;
        // Denied credentials first, so that a destructive operation still has its target.
        // A body credential is a token in the body: the cookie is not walked there.
        let mut order: Vec<&Credential> = credentials
            .iter()
            .filter(|c| op.body_credential.is_none() || c.session.is_none())
            .collect();
        order.sort_by_key(|c| expected(op, c).is_ok());
        let mut performed = false;
        let admitted_rank = |c: &Credential| {
            ADMITTED_ORDER
                .iter()
                .position(|n| *n == c.name.as_str())
                .unwrap_or(usize::MAX)
        };
        if op.method == Method::DELETE {
            order.sort_by_key(|c| (expected(op, c).is_ok(), admitted_rank(c)));
        }
        for c in order {
            let want = expected(op, c);
            if want.is_ok() && op.method == Method::DELETE {
                if performed {
                    continue;
                }
                performed = true;
            }
            let (token, body) = match &op.body_credential {
                Some(field) => {
                    let mut body = op.example.clone().unwrap_or_else(|| json!({}));
                    match &c.token {
                        Some(t) => body[field] = json!(t),
                        None => {
                            body.as_object_mut().map(|o| o.remove(field));
                        }
                    }
                    (None, Some(body))
                }
                None => (c.token.as_deref(), op.example.clone()),
            };
            // Examples are written once; a report's time must be near the server's clock.
            let body = body.map(|mut b| {
                if b.get("collected_at").is_some() {
                    b["collected_at"] = json!(chrono::Utc::now());
                }
                // An analysis names a vulnerability company A has.
                if b.get("vuln_id").is_some() {
                    b["vuln_id"] = json!(w.vuln_id);
                }
                b
            });
            let (status, text) = send_as(
                &w.http,
                op.method.clone(),
                &format!("{}{path}", w.url),
                token,
                c.session.as_ref(),
                body.as_ref(),
            )
            .await;
            let code = status.as_u16();
            if (200..300).contains(&code) && path.contains(&w.a.id) {
                if let Some(secret) = serde_json::from_str::<Value>(&text)
                    .ok()
                    .and_then(|v| v["enroll_secret"].as_str().map(str::to_string))
                {
                    new_enroll_secret = Some(secret);
                }
            }
            table
                .entry(route.clone())
                .or_default()
                .push(format!("{}={code}", c.name));
            let ok = match want {
                Ok(()) => op.success.contains(&code),
                Err(s) => s == code,
            };
            if !ok {
                failures.push(format!(
                    "{route} as {}: got {code}, want {}: {}",
                    c.name,
                    match want {
                        Ok(()) => format!("one of {:?}", op.success),
                        Err(s) => s.to_string(),
                    },
                    text.chars().take(300).collect::<String>()
                ));
            }
            if !op.documented.contains(&code) {
                failures.push(format!(
                    "{route} as {}: status {code} is not documented ({:?})",
                    c.name, op.documented
                ));
            }
            let other = match c.company {
                Company::Own => Some(&w.b),
                Company::Foreign => Some(&w.a),
                Company::None => None,
            };
            for marker in other.map(Tenant::markers).unwrap_or_default() {
                if text.contains(marker) {
                    failures.push(format!(
                        "{route} as {}: the body shows another company's {marker:?}: {}",
                        c.name,
                        text.chars().take(300).collect::<String>()
                    ));
                }
            }
        }
        if let Some(secret) = new_enroll_secret {
            for c in credentials.iter_mut().filter(|c| c.name == "own_enroll") {
                c.token = Some(secret.clone());
            }
        }
    }
    for (route, row) in &table {
        eprintln!("{route}: {}", row.join(" "));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_every_route_by_every_credential() {
    matrix(&Env::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_every_route_by_every_credential() {
    matrix(&Env::postgres()).await;
}

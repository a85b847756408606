//! Helpers the end-to-end test files share: the binary under test, JSON requests to a running
//! server, companies and enrolled agents, report bodies. Each test file uses some of them.
#![allow(dead_code)]

use std::path::Path;

use serde_json::{json, Value};
use zt_inventory::{App, Host, InventoryReport, OsInfo};

/// Where a test's servers keep their data: a temporary data dir (logs, and the SQLite file),
/// and on PostgreSQL a database of its own, dropped at the end.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub db: Option<zt_testkit::TestDatabase>,
}

impl Env {
    pub fn sqlite() -> Env {
        Env {
            dir: tempfile::tempdir().unwrap(),
            db: None,
        }
    }

    pub fn postgres() -> Env {
        Env {
            dir: tempfile::tempdir().unwrap(),
            db: Some(zt_testkit::TestDatabase::create()),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The global options naming the store.
    pub fn store_args(&self) -> Vec<&str> {
        let mut args = vec!["--data-dir", self.dir.path().to_str().unwrap()];
        if let Some(db) = &self.db {
            args.extend(["--database-url", db.url.as_str(), "--partitions", "4"]);
        }
        args
    }
}

/// The `zerotrace` binary cargo built for these tests.
pub fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_zerotrace"))
}

/// The JSON answer to a GET with a bearer token.
pub async fn get_json(http: &reqwest::Client, url: &str, token: &str) -> Value {
    http.get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The JSON answer to a POST of `body`, with a bearer token when given.
pub async fn post_json(
    http: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    body: &Value,
) -> Value {
    let mut request = http.post(url).json(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap().json().await.unwrap()
}

/// Creates a company through the API at `api`; the answer carries `id` and `enroll_secret`.
pub async fn create_company(http: &reqwest::Client, api: &str, admin: &str, name: &str) -> Value {
    post_json(
        http,
        &format!("{api}/api/v1/companies"),
        Some(admin),
        &json!({ "name": name }),
    )
    .await
}

/// Enrolls a Debian 12 x86_64 agent named `hostname`; returns its agent token.
pub async fn enroll(http: &reqwest::Client, api: &str, secret: &str, hostname: &str) -> String {
    let enrolled = post_json(
        http,
        &format!("{api}/api/v1/enroll"),
        None,
        &json!({"enroll_secret": secret, "hostname": hostname,
            "os": {"id": "debian", "version_id": "12", "name": ""},
            "arch": "x86_64", "agent_version": "test"}),
    )
    .await;
    enrolled["agent_token"].as_str().unwrap().to_string()
}

/// A report collected now from a Debian 12 x86_64 host (`os_name` as its os-release says).
pub fn debian_report(hostname: &str, os_name: &str, apps: Vec<App>) -> InventoryReport {
    InventoryReport {
        report_id: uuid::Uuid::new_v4(),
        collected_at: chrono::Utc::now(),
        host: Host {
            hostname: hostname.into(),
            os: OsInfo {
                id: "debian".into(),
                version_id: "12".into(),
                name: os_name.into(),
            },
            arch: "x86_64".into(),
        },
        apps,
        tags: None,
    }
}

/// Posts an agent's report to the API at `api`; returns the answer's status.
pub async fn post_inventory(
    http: &reqwest::Client,
    api: &str,
    token: &str,
    report: &InventoryReport,
) -> reqwest::StatusCode {
    http.post(format!("{api}/api/v1/inventory"))
        .bearer_auth(token)
        .json(report)
        .send()
        .await
        .unwrap()
        .status()
}

/// The `zerotrace-agent` binary of the same build (built when missing).
pub fn agent_bin() -> std::path::PathBuf {
    zt_testkit::workspace_binary("zerotrace-agent", "zerotrace-agent")
}

/// A small Debian 12 host for the agent to collect from (`--root`): os-release and a real
/// dpkg status from the shared data.
pub fn agent_host_root(dir: &Path) -> std::path::PathBuf {
    let root = dir.join("host-root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(
        root.join("etc/os-release"),
        "ID=debian\nVERSION_ID=\"12\"\n",
    )
    .unwrap();
    std::fs::create_dir_all(root.join("var/lib/dpkg")).unwrap();
    std::fs::copy(
        zt_testkit::shared_path("inventories/dpkg/osv-scalibr-valid.status"),
        root.join("var/lib/dpkg/status"),
    )
    .unwrap();
    root
}

//! The API against its own OpenAPI document: schemathesis (PyPI, the version `.ci/run`
//! installs) runs every check it has (`--checks all`) on every operation of
//! `/api/openapi.json` served by a real server, and must find nothing. The document is
//! generated from the handlers (utoipa), so a disagreement is a bug in one of the two.
//!
//! The server runs on a fresh SQLite store with one company, an enrolled agent and a
//! processed report, and the per-address limits off (schemathesis sends bad credentials on
//! purpose). Requests carry the operator token. The examples per operation are bounded
//! (`ZT_SCHEMATHESIS_EXAMPLES`, default 5) and the seed fixed (`ZT_SCHEMATHESIS_SEED`) so that
//! a run is repeatable and short; `bench/schemathesis.sh` runs longer campaigns.
//!
//! `tests/schemathesis/schemathesis.toml` is the configuration: the hooks teaching schemathesis
//! the cursor format (`zt_hooks.py`), the few operations that may refuse schema-valid data,
//! each with its reason, and the live event streams left out (a stream never ends, so each
//! request there would last its whole timeout; tests/live_events.rs covers them).

use std::process::Command;
use std::time::Instant;

use serde_json::{json, Value};
use zt_inventory::{App, AppSource};
use zt_testkit::ServerProcess;

mod common;
use common::{bin, debian_report, Env};

const OPERATOR: &str = "zto_schemathesis-operator-token-0123456789ab";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_disagreement_between_the_api_and_its_document() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let env = Env::sqlite();
    let mut args = env.store_args();
    args.extend([
        "server",
        "--listen",
        "127.0.0.1:0",
        "--workers",
        "2",
        "--rate-auth-failures",
        "0",
        "--rate-enroll",
        "0",
        "--rate-company",
        "0",
        "--rate-agent",
        "0",
        "--rate-company-users",
        "0",
    ]);
    let server = ServerProcess::start(
        bin(),
        &args,
        &[("ZEROTRACE_ADMIN_TOKEN", OPERATOR)],
        env.path(),
        "schemathesis-server",
    )
    .expect("server starts");
    let url = server.url.clone();
    let http = reqwest::Client::new();

    // One company with a host whose report was processed, so that lists have rows.
    let company: Value = http
        .post(format!("{url}/api/v1/companies"))
        .bearer_auth(OPERATOR)
        .json(&json!({"name": "Schemathesis Corp"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let secret = company["enroll_secret"].as_str().unwrap();
    let enrolled: Value = http
        .post(format!("{url}/api/v1/enroll"))
        .json(&json!({"enroll_secret": secret, "hostname": "web-1",
            "os": {"id": "debian", "version_id": "12"}, "arch": "x86_64"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let report = debian_report(
        "web-1",
        "Debian GNU/Linux 12 (bookworm)",
        vec![App::new("openssl", "3.0.11-1~deb12u1", AppSource::Dpkg)],
    );
    let status = http
        .post(format!("{url}/api/v1/inventory"))
        .bearer_auth(enrolled["agent_token"].as_str().unwrap())
        .json(&report)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, reqwest::StatusCode::ACCEPTED);

    let examples = std::env::var("ZT_SCHEMATHESIS_EXAMPLES").unwrap_or_else(|_| "5".into());
    let seed = std::env::var("ZT_SCHEMATHESIS_SEED").unwrap_or_else(|_| "17".into());
    let started = Instant::now();
    let out = tokio::task::spawn_blocking({
        let url = url.clone();
        let dir = env.path().to_path_buf();
        let config_dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/schemathesis");
        move || {
            Command::new("schemathesis")
                .current_dir(&dir)
                .arg("--config-file")
                .arg(config_dir.join("schemathesis.toml"))
                .args([
                    "run",
                    &format!("{url}/api/openapi.json"),
                    "--checks",
                    "all",
                    "--header",
                    &format!("Authorization: Bearer {OPERATOR}"),
                    "--max-examples",
                    &examples,
                    "--seed",
                    &seed,
                    "--phases",
                    "examples,coverage,fuzzing",
                    "--workers",
                    "2",
                    "--request-timeout",
                    "30",
                    "--no-color",
                ])
                .env("NO_COLOR", "1")
                // The hooks module the configuration names (zt_hooks.py).
                .env("PYTHONPATH", &config_dir)
                .output()
                .expect("schemathesis runs (pip install schemathesis, see .ci/run)")
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!(
        "schemathesis took {:.0?}:\n{stdout}\n{stderr}",
        started.elapsed()
    );
    assert!(
        out.status.success(),
        "schemathesis found problems (above); reproduce with bench/schemathesis.sh"
    );
    drop(server);
}

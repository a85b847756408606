//! After a knowledge change, one process re-matches for the whole deployment and then
//! announces it: two `zerotrace server` processes on one PostgreSQL database, a real RustSec
//! advisory changed by a newer copy imported with `feeds import`; the operator's event stream
//! gets `knowledge.updated` {revision} once, and exactly one process reports having re-matched
//! that revision (`knowledge_rematched_revision` on its /metrics).

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::Value;
use zt_inventory::{App, AppSource};
use zt_testkit::{shared_path, ServerProcess};

mod common;
use common::{bin, create_company, debian_report, enroll, get_json, post_inventory, Env};

const ADMIN: &str = "zto_knowledge-rematch-operator-token-01234";

fn zerotrace(env: &Env, args: &[&str]) {
    let out = std::process::Command::new(bin())
        .args(env.store_args())
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn start(env: &Env, name: &str) -> ServerProcess {
    let mut args = env.store_args();
    args.extend([
        "server",
        "--listen",
        "127.0.0.1:0",
        "--knowledge-poll-secs",
        "0.3",
        "--offline",
    ]);
    ServerProcess::start(
        bin(),
        &args,
        &[("ZEROTRACE_ADMIN_TOKEN", ADMIN), ("ZEROTRACE_LOG", "info")],
        env.path(),
        name,
    )
    .expect("server starts")
}

async fn rematched_revision(http: &reqwest::Client, url: &str) -> Option<u64> {
    let text = http
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("knowledge_rematched_revision "))
        .map(|v| v.trim().parse::<f64>().unwrap() as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_process_rematches_and_announces_the_revision() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let env = Env::postgres();
    let advisory = shared_path("osv/rustsec/osv-json/crates/RUSTSEC-2016-0001.json");
    zerotrace(&env, &["feeds", "import", advisory.to_str().unwrap()]);
    let a = start(&env, "a");
    let b = start(&env, "b");
    let http = reqwest::Client::new();

    // A host with openssl 0.8.3 (affected: fixed in 0.9.0) gets its finding.
    let company = create_company(&http, &a.url, ADMIN, "Rematch Co").await;
    let cid = company["id"].as_str().unwrap().to_string();
    let token = enroll(
        &http,
        &a.url,
        company["enroll_secret"].as_str().unwrap(),
        "host-1",
    )
    .await;
    let report = debian_report(
        "host-1",
        "Debian GNU/Linux 12 (bookworm)",
        vec![App::new("openssl", "0.8.3", AppSource::Cargo)],
    );
    assert!(post_inventory(&http, &a.url, &token, &report)
        .await
        .is_success());
    let findings_url = format!("{}/api/v1/companies/{cid}/findings", a.url);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let f = get_json(&http, &findings_url, ADMIN).await;
        if f["items"].as_array().is_some_and(|i| !i.is_empty()) {
            // One finding per advisory group, shown by its CVE id.
            assert_eq!(f["items"][0]["vulnerability"]["id"], "CVE-2016-10931");
            break;
        }
        assert!(Instant::now() < deadline, "no finding: {f}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The operator listens; then the advisory changes upstream (a newer copy).
    let mut stream = http
        .get(format!("{}/api/v1/events", b.url))
        .bearer_auth(ADMIN)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap()
        .bytes_stream();
    let mut record: Value = serde_json::from_slice(&std::fs::read(&advisory).unwrap()).unwrap();
    record["modified"] = "2026-12-01T00:00:00Z".into();
    record["summary"] =
        "openssl: SSL/TLS MitM vulnerability due to insecure defaults (updated)".into();
    let dir = tempfile::tempdir().unwrap();
    let changed = dir.path().join("RUSTSEC-2016-0001.json");
    std::fs::write(&changed, serde_json::to_vec(&record).unwrap()).unwrap();
    zerotrace(&env, &["feeds", "import", changed.to_str().unwrap()]);

    let mut text = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !text.contains("event: knowledge.updated") {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.next()).await {
            Ok(Some(chunk)) => text.push_str(&String::from_utf8_lossy(&chunk.unwrap())),
            _ => panic!("no knowledge.updated event; stream so far:\n{text}"),
        }
    }
    let at = text.find("event: knowledge.updated").unwrap();
    let data = text[at..]
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .unwrap();
    let data: Value = serde_json::from_str(data).unwrap();
    assert_eq!(data["revision"], 2, "{data}");

    // Exactly one process did it (the other only rebuilt its index).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let done: Vec<Option<u64>> = vec![
        rematched_revision(&http, &a.url).await,
        rematched_revision(&http, &b.url).await,
    ];
    assert_eq!(
        done.iter().filter(|r| **r == Some(2)).count(),
        1,
        "{done:?}"
    );
    assert_eq!(
        text.matches("event: knowledge.updated").count(),
        1,
        "{text}"
    );
    // The finding shows the changed advisory.
    let f = get_json(&http, &findings_url, ADMIN).await;
    assert_eq!(f["items"].as_array().unwrap().len(), 1, "{f}");
}

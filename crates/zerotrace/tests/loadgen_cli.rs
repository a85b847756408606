//! `zerotrace loadgen` against a real `zerotrace server` process: the simulated fleet enrolls,
//! reports twice (with changes), and every accepted report is processed (lost = 0).

use std::process::Command;

use zt_testkit::ServerProcess;

const ADMIN: &str = "zto_loadgen_test_operator_token_0123456789abcdef";

fn bin() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_BIN_EXE_zerotrace"))
}

#[test]
fn loadgen_reports_every_figure_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let server = ServerProcess::start(
        bin(),
        &["--data-dir", data, "server", "--listen", "127.0.0.1:0"],
        &[("ZEROTRACE_ADMIN_TOKEN", ADMIN)],
        dir.path(),
        "server",
    )
    .expect("server starts");

    let out = Command::new(bin())
        .args([
            "loadgen",
            "--server",
            &server.url,
            "--admin-token",
            ADMIN,
            "--companies",
            "2",
            "--agents-per-company",
            "15",
            "--apps-per-agent",
            "120",
            "--warmup-rounds",
            "1",
            "--rounds",
            "2",
            "--change-rate",
            "0.5",
            "--concurrency",
            "8",
            "--wait",
            "120",
            "--format",
            "json",
        ])
        .output()
        .expect("loadgen runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "loadgen failed: {stdout}\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.stderr()
    );
    let r: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON object");
    assert_eq!(r["reports_sent"], 60);
    assert_eq!(r["reports_accepted"], 60);
    assert_eq!(r["apps_accepted"], 60 * 120);
    assert_eq!(r["lost"], 0);
    assert_eq!(r["errors"], 0);
    assert!(r["apps_per_second"].as_f64().unwrap() > 0.0);
    for key in ["ingest_latency_ms", "end_to_end_s"] {
        for p in ["p50", "p99"] {
            assert!(r[key][p].as_f64().is_some(), "{key}.{p} missing: {r}");
        }
    }
    assert_eq!(r["end_to_end_s"]["count"], 60);
    for key in ["throttled", "overloaded"] {
        assert!(r[key].as_u64().is_some(), "{key} missing");
    }

    // The warm-up round was sent and processed too, but is in none of the figures above.
    let client = reqwest::blocking::Client::new();
    let metrics = client
        .get(format!("{}/metrics", server.url))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let accepted: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("reports_accepted_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(accepted, 90.0, "{metrics}");

    // The fleet is really stored: each company sees its 15 agents.
    let companies: serde_json::Value = client
        .get(format!("{}/api/v1/companies", server.url))
        .bearer_auth(ADMIN)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let items = companies["items"]
        .as_array()
        .or(companies.as_array())
        .unwrap();
    assert_eq!(items.len(), 2, "{companies}");
    for c in items {
        let id = c["id"].as_str().unwrap();
        let summary: serde_json::Value = client
            .get(format!("{}/api/v1/companies/{id}/summary", server.url))
            .bearer_auth(ADMIN)
            .send()
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(summary["agents"], 15, "{summary}");
    }
}

#[test]
fn loadgen_names_an_unreachable_server() {
    let out = Command::new(bin())
        .args([
            "loadgen",
            "--server",
            "http://127.0.0.1:9",
            "--admin-token",
            ADMIN,
            "--companies",
            "1",
            "--agents-per-company",
            "1",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("127.0.0.1:9"), "{err}");
}

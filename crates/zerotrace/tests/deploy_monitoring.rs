//! The monitoring files in deploy/ checked by the real tools and against the real server:
//! `promtool check rules` and `promtool test rules` on the alert rules, `amtool check-config`
//! on the Alertmanager example, `promtool check config` on the Prometheus configuration, every
//! Grafana panel's query parsed by promtool, and every metric a rule or a panel names present
//! (with `# HELP`) on the /metrics of a freshly started `zerotrace server`.
//!
//! promtool and amtool come from Debian's `prometheus` and `prometheus-alertmanager` packages,
//! which `.ci/run` installs; these tests fail (they do not skip) when the tools are missing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use zt_testkit::ServerProcess;

mod common;
use common::{bin, create_company, debian_report, enroll, get_json, post_inventory};

const ADMIN: &str = "zto_monitoring-operator-token-0123456789abcdef";

fn deploy(rel: &str) -> PathBuf {
    zt_testkit::workspace_root().join("deploy").join(rel)
}

/// Runs a tool of the monitoring stack; panics with its output when it fails or is missing.
fn run_tool(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
            "cannot run {program} ({e}): install Debian's prometheus and prometheus-alertmanager \
             packages (.ci/run does)"
        )
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{program} {args:?} failed:\n{text}");
    text
}

fn yaml(path: &Path) -> serde_yaml_ng::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// (alert name, expression) of every rule in alerts.yml.
fn alert_rules() -> Vec<(String, String)> {
    let doc = yaml(&deploy("prometheus/alerts.yml"));
    let mut rules = Vec::new();
    for group in doc["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            let name = rule["alert"].as_str().expect("every rule is an alert");
            let expr = rule["expr"].as_str().expect("expr");
            rules.push((name.to_string(), expr.to_string()));
        }
    }
    rules
}

/// The dashboard's queries, with Grafana's interval variable replaced as Grafana would.
fn dashboard_queries() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(deploy("grafana/zerotrace.json")).unwrap();
    let dash: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let mut queries = Vec::new();
    for panel in dash["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("every target has an expr");
            queries.push((
                format!("{} / {}", panel["title"], target["refId"]),
                expr.replace("$__rate_interval", "5m"),
            ));
        }
    }
    queries
}

/// The metric names an expression selects (PromQL parsed by promql-parser).
fn metric_names(expr: &str) -> BTreeSet<String> {
    use promql_parser::parser::{self, Expr};
    fn walk(e: &Expr, out: &mut BTreeSet<String>) {
        match e {
            Expr::Aggregate(a) => walk(&a.expr, out),
            Expr::Unary(u) => walk(&u.expr, out),
            Expr::Binary(b) => {
                walk(&b.lhs, out);
                walk(&b.rhs, out);
            }
            Expr::Paren(p) => walk(&p.expr, out),
            Expr::Subquery(s) => walk(&s.expr, out),
            Expr::VectorSelector(v) => out.extend(v.name.clone()),
            Expr::MatrixSelector(m) => out.extend(m.vs.name.clone()),
            Expr::Call(c) => c.args.args.iter().for_each(|a| walk(a, out)),
            Expr::Extension(_) | Expr::NumberLiteral(_) | Expr::StringLiteral(_) => {}
        }
    }
    let parsed = parser::parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
    let mut out = BTreeSet::new();
    walk(&parsed, &mut out);
    out
}

#[test]
fn alert_rules_pass_promtool_and_every_rule_has_a_unit_test() {
    let rules = deploy("prometheus/alerts.yml");
    let out = run_tool("promtool", &["check", "rules", rules.to_str().unwrap()]);
    assert!(out.contains("SUCCESS"), "{out}");
    let tests = deploy("prometheus/alerts.test.yml");
    run_tool("promtool", &["test", "rules", tests.to_str().unwrap()]);

    // promtool passes a rule nobody tests: every alert must be seen firing in some test.
    let doc = yaml(&tests);
    let mut fired = BTreeSet::new();
    for case in doc["tests"].as_sequence().expect("tests") {
        for t in case["alert_rule_test"].as_sequence().into_iter().flatten() {
            let expected = t["exp_alerts"].as_sequence().map_or(0, |a| a.len());
            if expected > 0 {
                fired.insert(t["alertname"].as_str().unwrap().to_string());
            }
        }
    }
    let names: BTreeSet<String> = alert_rules().into_iter().map(|(n, _)| n).collect();
    let untested: Vec<&String> = names.difference(&fired).collect();
    assert!(
        untested.is_empty(),
        "rules without a firing unit test: {untested:?}"
    );
    for seed in ["HighQueueSize", "SlowProcessing", "CVEEnrichmentFailures"] {
        assert!(
            names.contains(seed),
            "the original design's {seed} rule is missing"
        );
    }
}

#[test]
fn alertmanager_example_passes_amtool() {
    let config = deploy("alertmanager/alertmanager.yml");
    let out = run_tool("amtool", &["check-config", config.to_str().unwrap()]);
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn prometheus_configuration_passes_promtool() {
    let config = deploy("prometheus/prometheus.yml");
    let out = run_tool(
        "promtool",
        &["check", "config", "--syntax-only", config.to_str().unwrap()],
    );
    assert!(out.contains("SUCCESS"), "{out}");
    // It loads the rules checked above and scrapes both server roles.
    let doc = yaml(&config);
    let rule_files: Vec<&str> = doc["rule_files"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(rule_files, ["alerts.yml"]);
    let jobs: BTreeSet<&str> = doc["scrape_configs"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|j| j["job_name"].as_str())
        .collect();
    assert!(
        jobs.contains("zerotrace-api") && jobs.contains("zerotrace-worker"),
        "{jobs:?}"
    );
}

#[test]
fn dashboard_is_well_formed_and_its_queries_parse() {
    let text = std::fs::read_to_string(deploy("grafana/zerotrace.json")).unwrap();
    let dash: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(dash["uid"], "zerotrace");
    let panels = dash["panels"].as_array().unwrap();
    let mut ids = BTreeSet::new();
    for p in panels {
        assert!(
            ids.insert(p["id"].as_u64().unwrap()),
            "duplicate panel id in {p}"
        );
        let g = &p["gridPos"];
        let (x, w) = (g["x"].as_u64().unwrap(), g["w"].as_u64().unwrap());
        assert!(x + w <= 24, "panel {} is wider than the grid", p["title"]);
        if p["type"] != "row" {
            assert_eq!(
                p["datasource"]["uid"], "${datasource}",
                "panel {} must use the dashboard's data source variable",
                p["title"]
            );
            assert!(
                !p["description"].as_str().unwrap_or("").is_empty(),
                "panel {} says what it shows",
                p["title"]
            );
        }
    }
    let titles: Vec<&str> = panels.iter().filter_map(|p| p["title"].as_str()).collect();
    for wanted in [
        "Ingest rate",
        "Queue size",
        "Queue age",
        "Batch processing latency",
        "Errors",
        "Rate limiting",
        "Open findings by severity",
    ] {
        assert!(titles.contains(&wanted), "no {wanted} panel: {titles:?}");
    }

    // Prometheus' own parser, through promtool: every query as a recording rule.
    let dir = tempfile::tempdir().unwrap();
    let rules: Vec<Value> = dashboard_queries()
        .iter()
        .enumerate()
        .map(|(i, (_, expr))| json!({"record": format!("dashboard:query_{i}"), "expr": expr}))
        .collect();
    let file = dir.path().join("dashboard-queries.yml");
    let doc = json!({"groups": [{"name": "dashboard", "rules": rules}]});
    // JSON is YAML: promtool reads it as it is.
    std::fs::write(&file, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    run_tool("promtool", &["check", "rules", file.to_str().unwrap()]);
}

/// /metrics text → metric family → (has # HELP, sample names).
fn families(text: &str) -> BTreeMap<String, (bool, BTreeSet<String>)> {
    let mut out: BTreeMap<String, (bool, BTreeSet<String>)> = BTreeMap::new();
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some("#"), Some("HELP"), Some(name)) => out.entry(name.into()).or_default().0 = true,
            (Some("#"), Some("TYPE"), Some(name)) => {
                types.insert(name.into(), words.next().unwrap_or("").into());
            }
            (Some(first), _, _) if !first.starts_with('#') => {
                let sample = first.split('{').next().unwrap().to_string();
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|suffix| {
                        let base = sample.strip_suffix(suffix)?;
                        matches!(
                            types.get(base).map(String::as_str),
                            Some("histogram" | "summary")
                        )
                        .then(|| base.to_string())
                    })
                    .unwrap_or_else(|| sample.clone());
                out.entry(family).or_default().1.insert(sample);
            }
            _ => {}
        }
    }
    out
}

fn scrape(url: &str) -> String {
    let out = reqwest::blocking::get(format!("{url}/metrics")).expect("scrape");
    assert!(out.status().is_success());
    out.text().unwrap()
}

fn start(dir: &Path, name: &str, extra: &[&str]) -> ServerProcess {
    let mut args = vec![
        "--data-dir",
        dir.to_str().unwrap(),
        "server",
        "--listen",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    ServerProcess::start(
        bin(),
        &args,
        &[("ZEROTRACE_ADMIN_TOKEN", ADMIN), ("ZEROTRACE_LOG", "info")],
        dir,
        name,
    )
    .expect("server starts")
}

/// The value of one sample line (`name{labels} value`), by its exact series text.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

#[test]
fn a_fresh_server_exports_every_metric_the_rules_and_the_dashboard_use() {
    let dir = tempfile::tempdir().unwrap();
    // A server that knows something: one import of CISA's KEV catalog, so that the feeds'
    // freshness (feed_last_success_timestamp_seconds{source}) has a series to watch.
    let kev = zt_testkit::shared_path("kev/known_exploited_vulnerabilities.json");
    let import = Command::new(bin())
        .args([
            "--data-dir",
            dir.path().to_str().unwrap(),
            "feeds",
            "import",
        ])
        .arg(&kev)
        .output()
        .expect("feeds import runs");
    assert!(
        import.status.success(),
        "feeds import {}: {}",
        kev.display(),
        String::from_utf8_lossy(&import.stderr)
    );
    let server = start(dir.path(), "fresh", &[]);
    // Prometheus' first scrape is itself a request: the second one shows the request counters.
    scrape(&server.url);
    let text = scrape(&server.url);
    let found = families(&text);

    let mut used: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (what, expr) in alert_rules()
        .into_iter()
        .map(|(n, e)| (format!("rule {n}"), e))
        .chain(
            dashboard_queries()
                .into_iter()
                .map(|(p, e)| (format!("panel {p}"), e)),
        )
    {
        for name in metric_names(&expr) {
            used.entry(name).or_default().push(what.clone());
        }
    }
    let samples: BTreeSet<&String> = found.values().flat_map(|(_, s)| s).collect();
    let missing: Vec<String> = used
        .iter()
        // `up` is Prometheus' own, per scrape target.
        .filter(|(name, _)| name.as_str() != "up" && !samples.contains(name))
        .map(|(name, users)| format!("{name} (used by {})", users.join(", ")))
        .collect();
    assert!(
        missing.is_empty(),
        "metrics missing from a fresh server's /metrics:\n{}\n\n{text}",
        missing.join("\n")
    );
    let undocumented: Vec<&String> = found
        .iter()
        .filter(|(_, (help, _))| !help)
        .map(|(n, _)| n)
        .collect();
    assert!(
        undocumented.is_empty(),
        "metrics without # HELP: {undocumented:?}\n\n{text}"
    );

    // Prometheus' own lint of the exposition (naming, help, types).
    let mut lint = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool runs");
    use std::io::Write;
    lint.stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = lint.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // A fresh, empty store: nothing queued, nothing dead, no findings; this process says
    // what it runs.
    assert_eq!(sample(&text, "app_queue_size"), Some(0.0));
    assert_eq!(sample(&text, "app_queue_oldest_age_seconds"), Some(0.0));
    assert_eq!(
        sample(&text, "findings_open{severity=\"critical\"}"),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &text,
            &format!(
                "zerotrace_build_info{{version=\"{}\",role=\"all\"}}",
                env!("CARGO_PKG_VERSION")
            )
        ),
        Some(1.0),
        "{text}"
    );
}

/// The store gauges carry real values: a report waiting with no worker to take it ages in
/// `app_queue_oldest_age_seconds`, and a restarted server reads the fleet's open findings at
/// once.
#[test]
fn queue_age_and_fleet_gauges_follow_the_store() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let http = reqwest::Client::new();

    // An API process alone: reports are accepted and wait.
    let api = start(dir.path(), "api-only", &["--role", "api"]);
    let (company, token) = rt.block_on(async {
        let company = create_company(&http, &api.url, ADMIN, "Gauges").await;
        let secret = company["enroll_secret"].as_str().unwrap().to_string();
        let token = enroll(&http, &api.url, &secret, "web-1").await;
        let report = debian_report(
            "web-1",
            "Debian GNU/Linux 12 (bookworm)",
            vec![zt_inventory::App::new(
                "requests",
                "2.19.0",
                zt_inventory::AppSource::Pypi,
            )],
        );
        let status = post_inventory(&http, &api.url, &token, &report).await;
        assert_eq!(status, reqwest::StatusCode::ACCEPTED);
        (company["id"].as_str().unwrap().to_string(), token)
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = scrape(&api.url);
        let age = sample(&text, "app_queue_oldest_age_seconds").unwrap_or(0.0);
        if sample(&text, "app_queue_size") == Some(1.0) && age >= 2.0 {
            assert!(age < 60.0, "{age}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the queue gauges never showed the report:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    drop(api);

    // A whole server works the queue off; the age falls back to 0.
    let knowledge = zt_testkit::shared_path("osv/pypa/vulns/requests");
    let out = Command::new(bin())
        .args([
            "--data-dir",
            dir.path().to_str().unwrap(),
            "feeds",
            "import",
        ])
        .arg(&knowledge)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let server = start(dir.path(), "all", &["--knowledge-poll-secs", "0.2"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let summary = loop {
        let summary = rt.block_on(get_json(
            &http,
            &format!("{}/api/v1/companies/{company}/summary", server.url),
            ADMIN,
        ));
        let text = scrape(&server.url);
        let findings = summary["findings"]
            .as_object()
            .map_or(0, |f| f.values().filter_map(Value::as_u64).sum::<u64>());
        if findings > 0
            && sample(&text, "app_queue_size") == Some(0.0)
            && sample(&text, "app_queue_oldest_age_seconds") == Some(0.0)
        {
            break summary;
        }
        assert!(
            Instant::now() < deadline,
            "the report was not processed: {summary}\n{text}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    drop(server);
    let _ = token;

    // Restarted, the server exports the fleet's open findings before its first request.
    let server = start(dir.path(), "restarted", &[]);
    let text = scrape(&server.url);
    for severity in ["critical", "high", "medium", "low", "unknown"] {
        let want = summary["findings"][severity].as_u64().unwrap() as f64;
        let series = format!("findings_open{{severity=\"{severity}\"}}");
        assert_eq!(sample(&text, &series), Some(want), "{series}\n{text}");
    }
    assert_eq!(sample(&text, "agents_enrolled"), Some(1.0), "{text}");
    assert_eq!(
        sample(&text, "findings_open_kev"),
        Some(summary["kev"].as_u64().unwrap() as f64)
    );
}

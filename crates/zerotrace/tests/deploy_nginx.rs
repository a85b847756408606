//! deploy/nginx/ checked by Debian's real nginx: `nginx -t` on the shipped files as they are,
//! then nginx (the shipped site with test ports, in a scratch prefix, not as a daemon) in front
//! of three `zerotrace server --role api` processes and a worker on one PostgreSQL database:
//! requests spread over the replicas, the client address reaches the servers through
//! X-Forwarded-For (and a client cannot forge it), live events stream through the proxy
//! unbuffered, the body limit answers in the API's JSON shape, and one replica SIGKILLed under
//! load loses no accepted report while clients — the real agent among them — retry into the
//! others.

use std::collections::{BTreeMap, HashSet};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::Value;
use zt_inventory::{App, AppSource};
use zt_testkit::{ServerProcess, TestDatabase};

mod common;
use common::{agent_bin, agent_host_root, bin, create_company, debian_report, enroll, get_json};

const ADMIN: &str = "zto_nginx-operator-token-0123456789abcdef";

fn deploy(rel: &str) -> PathBuf {
    zt_testkit::workspace_root().join("deploy").join(rel)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A scratch nginx prefix: the main configuration (pid, logs and temp files inside the prefix)
/// including `site`, and the shipped snippet where `include snippets/…` finds it.
fn prefix_with(site: &Path) -> tempfile::TempDir {
    let prefix = tempfile::tempdir().unwrap();
    let p = prefix.path();
    // nginx started as root runs its workers as nobody: they must reach the temp files.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir_all(p.join("snippets")).unwrap();
    std::fs::copy(
        deploy("nginx/snippets/zerotrace-proxy.conf"),
        p.join("snippets/zerotrace-proxy.conf"),
    )
    .unwrap();
    let d = p.display();
    let main = format!(
        "pid {d}/nginx.pid;\n\
         error_log {d}/error.log info;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n\
         \x20   access_log {d}/access.log;\n\
         \x20   client_body_temp_path {d}/body;\n\
         \x20   proxy_temp_path {d}/proxy;\n\
         \x20   fastcgi_temp_path {d}/fastcgi;\n\
         \x20   uwsgi_temp_path {d}/uwsgi;\n\
         \x20   scgi_temp_path {d}/scgi;\n\
         \x20   include {};\n\
         }}\n",
        site.display()
    );
    std::fs::write(p.join("nginx.conf"), main).unwrap();
    prefix
}

/// `nginx -t` in `prefix`: panics with nginx's words unless the configuration is valid.
fn nginx_t(prefix: &Path) {
    let out = Command::new("nginx")
        .arg("-t")
        .arg("-p")
        .arg(prefix)
        .arg("-c")
        .arg(prefix.join("nginx.conf"))
        .output()
        .expect("cannot run nginx: install Debian's nginx-light (.ci/run does)");
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && text.contains("test is successful"),
        "nginx -t failed:\n{text}"
    );
}

/// The shipped site with the API replicas at `ports` and nginx listening on `listen`.
fn render_site(ports: &[u16], listen: u16) -> String {
    let shipped = std::fs::read_to_string(deploy("nginx/zerotrace.conf")).unwrap();
    let mut out = String::new();
    let (mut servers, mut listens) = (0, 0);
    for line in shipped.lines() {
        let t = line.trim();
        if t.starts_with("server 127.0.0.1:") {
            assert!(
                t.ends_with(" max_fails=3 fail_timeout=30s;"),
                "every replica is taken out after 3 failures for 30 s: {t}"
            );
            servers += 1;
            if servers == 1 {
                for port in ports {
                    out.push_str(&format!(
                        "    server 127.0.0.1:{port} max_fails=3 fail_timeout=30s;\n"
                    ));
                }
            }
            continue;
        }
        if t == "listen 80;" {
            listens += 1;
            out.push_str(&format!("    listen 127.0.0.1:{listen};\n"));
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    assert_eq!(servers, 5, "the shipped upstream lists the five replicas");
    assert_eq!(listens, 1);
    assert!(shipped.contains("least_conn;"));
    out
}

/// A running nginx; stopped (SIGKILL, then its workers exit with it) on drop.
struct Nginx {
    child: Child,
    prefix: tempfile::TempDir,
    url: String,
}

impl Nginx {
    fn start(api_ports: &[u16]) -> Nginx {
        let site_dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let site = site_dir.path().join("zerotrace.conf");
        std::fs::write(&site, render_site(api_ports, port)).unwrap();
        let prefix = prefix_with(&site);
        // The site's text is included at start; the file may go with site_dir.
        nginx_t(prefix.path());
        let child = Command::new("nginx")
            .arg("-p")
            .arg(prefix.path())
            .arg("-c")
            .arg(prefix.path().join("nginx.conf"))
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nginx did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Nginx {
            child,
            prefix,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.prefix.path().join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // QUIT: the master stops its workers and removes its pid file.
        let _ = Command::new("kill")
            .args(["-QUIT", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn shipped_nginx_files_pass_nginx_t_as_they_are() {
    let prefix = prefix_with(&deploy("nginx/zerotrace.conf"));
    nginx_t(prefix.path());
    // The check fails on a broken file (a misspelt directive).
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("zerotrace.conf");
    let text = std::fs::read_to_string(deploy("nginx/zerotrace.conf"))
        .unwrap()
        .replace("least_conn;", "least_connections;");
    std::fs::write(&broken, text).unwrap();
    let prefix = prefix_with(&broken);
    let out = Command::new("nginx")
        .arg("-t")
        .arg("-p")
        .arg(prefix.path())
        .arg("-c")
        .arg(prefix.path().join("nginx.conf"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("least_connections"));
}

#[test]
fn proxy_body_limit_is_the_servers_body_limit() {
    let snippet = std::fs::read_to_string(deploy("nginx/snippets/zerotrace-proxy.conf")).unwrap();
    let size = snippet
        .lines()
        .find_map(|l| l.trim().strip_prefix("client_max_body_size "))
        .expect("client_max_body_size")
        .trim_end_matches(';');
    let bytes: u64 = match size.strip_suffix('m') {
        Some(mib) => mib.parse::<u64>().unwrap() * 1024 * 1024,
        None => size.parse().unwrap(),
    };
    let help = Command::new(bin())
        .args(["server", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    let after = help
        .split("--body-limit")
        .nth(1)
        .expect("--body-limit in the help");
    let default: u64 = after
        .split("[default: ")
        .nth(1)
        .and_then(|s| s.split(']').next())
        .and_then(|s| s.parse().ok())
        .expect("the default of --body-limit");
    assert_eq!(
        bytes, default,
        "client_max_body_size {size} vs --body-limit {default}"
    );
}

/// One JSON log line per event: (message, fields) of every line of a server's stderr.
fn log_events(text: &str) -> Vec<(String, Value)> {
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| {
            let fields = v["fields"].clone();
            (fields["message"].as_str().unwrap_or("").to_string(), fields)
        })
        .collect()
}

/// The inventory requests a replica answered, from its own /metrics.
async fn inventory_requests(http: &reqwest::Client, api: &str) -> u64 {
    let text = http
        .get(format!("{api}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with("http_requests_total{") && l.contains("/api/v1/inventory"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

fn pypi_report(host: &str, apps: usize, round: usize) -> zt_inventory::InventoryReport {
    let apps = (0..apps)
        .map(|n| {
            App::new(
                format!("pkg-{n}"),
                format!("2.{}.{}", n % 7, round),
                AppSource::Pypi,
            )
        })
        .collect();
    debian_report(host, "", apps)
}

/// Posts `report` until it is accepted, as an agent would (the same report id every time).
/// Returns the refusals seen on the way.
async fn deliver(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    report: &zt_inventory::InventoryReport,
) -> Vec<String> {
    let mut refusals = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answer = http
            .post(format!("{url}/api/v1/inventory"))
            .bearer_auth(token)
            .json(report)
            .send()
            .await;
        match answer {
            Ok(r) if r.status() == StatusCode::ACCEPTED || r.status() == StatusCode::OK => {
                return refusals
            }
            Ok(r) => {
                let status = r.status();
                let retry_after = r
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let body = r.text().await.unwrap_or_default();
                assert!(
                    status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::BAD_GATEWAY,
                    "{status}: {body}"
                );
                refusals.push(format!("{status} retry-after={retry_after:?} {body}"));
            }
            Err(e) => refusals.push(format!("transport: {e}")),
        }
        assert!(Instant::now() < deadline, "never accepted: {refusals:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Enrolls like an agent: again after a refusal (503 from nginx while a replica dies).
async fn enroll_retrying(http: &reqwest::Client, url: &str, secret: &str, host: &str) -> String {
    let body = serde_json::json!({"enroll_secret": secret, "hostname": host,
        "os": {"id": "debian", "version_id": "12", "name": ""},
        "arch": "x86_64", "agent_version": "test"});
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = http
            .post(format!("{url}/api/v1/enroll"))
            .json(&body)
            .send()
            .await
        {
            if r.status() == StatusCode::CREATED {
                let v: Value = r.json().await.unwrap();
                return v["agent_token"].as_str().unwrap().to_string();
            }
            assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        }
        assert!(Instant::now() < deadline, "{host} never enrolled");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nginx_spreads_over_three_replicas_and_loses_nothing_when_one_dies() {
    let db = TestDatabase::create();
    let dir = tempfile::tempdir().unwrap();
    let store = [
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--database-url",
        db.url.as_str(),
        "--partitions",
        "4",
    ];
    let start = |name: &str, extra: &[&str]| {
        let mut args = store.to_vec();
        args.extend(["server", "--listen", "127.0.0.1:0", "--rate-agent", "0"]);
        args.extend(extra);
        ServerProcess::start(
            bin(),
            &args,
            &[
                ("ZEROTRACE_ADMIN_TOKEN", ADMIN),
                ("ZEROTRACE_LOG_FORMAT", "json"),
                ("ZEROTRACE_LOG", "info"),
            ],
            dir.path(),
            name,
        )
        .expect("server starts")
    };
    // nginx connects to the replicas from 127.0.0.1: the only address they trust.
    let api_args = [
        "--role",
        "api",
        "--trusted-proxies",
        "127.0.0.1/32",
        "--sse-heartbeat-secs",
        "0.5",
    ];
    let mut apis: Vec<ServerProcess> = (0..3)
        .map(|i| start(&format!("api-{i}"), &api_args))
        .collect();
    let _worker = start("worker", &["--role", "worker", "--workers", "4"]);
    let ports: Vec<u16> = apis
        .iter()
        .map(|a| a.url.rsplit(':').next().unwrap().parse().unwrap())
        .collect();
    let nginx = Nginx::start(&ports);
    let url = nginx.url.clone();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();

    let company = create_company(&http, &url, ADMIN, "Acme").await;
    let cid = company["id"].as_str().unwrap().to_string();
    let secret = company["enroll_secret"].as_str().unwrap().to_string();

    // Requests spread over the replicas.
    let token = enroll(&http, &url, &secret, "spread").await;
    for round in 0..24 {
        let r = pypi_report("spread", 20, round);
        assert!(deliver(&http, &url, &token, &r).await.is_empty());
    }
    for api in &apis {
        let n = inventory_requests(&http, &api.url).await;
        assert!(n >= 3, "{} answered {n} of 24 inventories", api.url);
    }

    // The client's address reaches the servers; a forged X-Forwarded-For does not.
    let from_2 = reqwest::Client::builder()
        .local_address(Some("127.0.0.2".parse().unwrap()))
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let enroll_body = |host: &str| {
        serde_json::json!({"enroll_secret": secret, "hostname": host,
            "os": {"id": "debian", "version_id": "12", "name": ""},
            "arch": "x86_64", "agent_version": "test"})
    };
    for (via, host) in [
        (url.as_str(), "via-nginx"),
        (apis[0].url.as_str(), "direct"),
    ] {
        let status = from_2
            .post(format!("{via}/api/v1/enroll"))
            .header("x-forwarded-for", "203.0.113.9")
            .json(&enroll_body(host))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, StatusCode::CREATED, "{via}");
    }
    let enrolled: BTreeMap<String, String> = apis
        .iter()
        .flat_map(|a| log_events(&a.stderr()))
        .filter(|(m, _)| m == "agent enrolled")
        .map(|(_, f)| {
            (
                f["hostname"].as_str().unwrap_or("").to_string(),
                f["client"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(enrolled["via-nginx"], "127.0.0.2", "{enrolled:?}");
    assert_eq!(enrolled["direct"], "127.0.0.2", "{enrolled:?}");

    // Live events stream through the proxy as they happen (buffering would hold them).
    let stream = http
        .get(format!("{url}/api/v1/companies/{cid}/events"))
        .bearer_auth(ADMIN)
        .timeout(Duration::from_secs(120))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    assert_eq!(
        stream.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let mut text = String::new();
    let mut body = stream.bytes_stream();
    let sse_token = enroll(&http, &url, &secret, "sse").await;
    let sse_report = pypi_report("sse", 5, 0);
    let wanted = format!("\"report_id\":\"{}\"", sse_report.report_id);
    let mut posted = false;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(text.contains("event: report.processed") && text.contains(&wanted)) {
        let left = deadline.saturating_duration_since(Instant::now());
        let chunk = tokio::time::timeout(left, body.next())
            .await
            .unwrap_or_else(|_| panic!("no report.processed event through nginx:\n{text}"))
            .expect("the stream stays open")
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
        // The first summary and a heartbeat arrived through the proxy before anything
        // happened: nothing is buffered.
        if !posted && text.contains("event: summary") && text.contains(": heartbeat") {
            assert!(deliver(&http, &url, &sse_token, &sse_report)
                .await
                .is_empty());
            posted = true;
        }
    }
    drop(body);

    // Over the body limit: nginx answers in the API's JSON shape.
    let huge = vec![b' '; 17 * 1024 * 1024];
    let answer = http
        .post(format!("{url}/api/v1/inventory"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let error: Value = answer.json().await.unwrap();
    assert_eq!(error["error"]["code"], "payload_too_large", "{error}");

    // The replica about to die first hangs (SIGSTOP), so that requests are surely in flight on
    // it when it is killed: nginx (one worker, every replica idle) takes turns among equally
    // loaded replicas, so one of the agents' first requests lands on it and waits there.
    let signal = |sig: &str, pid: u32| {
        let ok = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} {pid}");
    };
    signal("-STOP", apis[1].pid());
    let root = agent_host_root(dir.path());
    let mut agents = Vec::new();
    for i in 0..3 {
        let state = dir.path().join(format!("agent-{i}"));
        let log = dir.path().join(format!("agent-{i}.log"));
        let child = Command::new(agent_bin())
            .args(["--server", &url, "--enroll-secret", &secret])
            .arg("--state-dir")
            .arg(&state)
            .arg("--root")
            .arg(&root)
            .args(["--interval", "1", "--full-report-interval", "0"])
            .args(["--min-backoff-ms", "200", "--max-backoff", "2"])
            .env("ZEROTRACE_AGENT_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        agents.push((child, state, log));
    }
    let read_log = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    let ids = |log: &str, event: &str| -> Vec<String> {
        log.lines()
            .filter(|l| l.contains(event))
            .filter_map(|l| {
                let at = l.find("report_id=")? + "report_id=".len();
                l.get(at..at + 36).map(str::to_string)
            })
            .collect()
    };
    // The agents that got through report every second; one waits on the hung replica.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let delivered: Vec<usize> = agents
            .iter()
            .map(|(_, _, log)| ids(&read_log(log), "report delivered").len())
            .collect();
        if delivered.iter().filter(|&&n| n >= 3).count() == 2 && delivered.contains(&0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "expected one agent waiting on the hung replica, delivered: {delivered:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Load: clients posting larger reports besides the agents; then the hung replica is
    // killed outright.
    let stop = Arc::new(AtomicBool::new(false));
    let accepted: Arc<Mutex<Vec<(String, uuid::Uuid)>>> = Arc::default();
    let refused = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for i in 0..12 {
        let (http, url, secret) = (http.clone(), url.clone(), secret.clone());
        let (stop, accepted, refused) = (stop.clone(), accepted.clone(), refused.clone());
        clients.push(tokio::spawn(async move {
            let host = format!("load-{i}");
            let token = enroll_retrying(&http, &url, &secret, &host).await;
            let mut round = 0;
            while !stop.load(Ordering::Relaxed) {
                let r = pypi_report(&host, 400, round);
                let refusals = deliver(&http, &url, &token, &r).await;
                refused.fetch_add(refusals.len(), Ordering::Relaxed);
                accepted.lock().unwrap().push((token.clone(), r.report_id));
                round += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let before_kill = accepted.lock().unwrap().len();
    apis[1].kill();
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let accepted = accepted.lock().unwrap().clone();
    assert!(
        accepted.len() > before_kill + 12,
        "reports kept being accepted after the replica died: {before_kill} before, {} in all",
        accepted.len()
    );
    eprintln!(
        "{} reports accepted ({before_kill} before the kill), {} refusals retried",
        accepted.len(),
        refused.load(Ordering::Relaxed)
    );

    // The agent whose request died with the replica was told to come back (503 and
    // Retry-After from nginx), came back, and its reports went through; so did every report
    // another agent saw refused.
    let logs: Vec<String> = agents.iter().map(|(_, _, log)| read_log(log)).collect();
    assert!(
        logs.iter()
            .any(|l| l.contains("cannot enroll now") || l.contains("report not delivered")),
        "no agent saw its request fail:\n{}",
        logs.join("\n")
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let all_delivered = agents
            .iter()
            .all(|(_, _, log)| !ids(&read_log(log), "report delivered").is_empty());
        let pending: Vec<String> = agents
            .iter()
            .flat_map(|(_, _, log)| {
                let log = read_log(log);
                let delivered: HashSet<String> =
                    ids(&log, "report delivered").into_iter().collect();
                ids(&log, "report not delivered")
                    .into_iter()
                    .filter(move |id| !delivered.contains(id))
            })
            .collect();
        if pending.is_empty() && all_delivered {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "agents' retries did not go through: {pending:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for (child, _, _) in &mut agents {
        let _ = child.kill();
        let _ = child.wait();
    }

    // Nothing accepted was lost: every report answered 202 is processed (through the
    // surviving replicas), the agents' as well as the clients'.
    let mut all: Vec<(String, String)> = accepted
        .iter()
        .map(|(t, id)| (t.clone(), id.to_string()))
        .collect();
    for (_, state, log) in &agents {
        let identity: Value =
            serde_json::from_slice(&std::fs::read(state.join("identity.json")).unwrap()).unwrap();
        let token = identity["agent_token"].as_str().unwrap().to_string();
        let delivered = ids(&read_log(log), "report delivered");
        assert!(!delivered.is_empty(), "{}", read_log(log));
        all.extend(delivered.into_iter().map(|id| (token.clone(), id)));
    }
    let deadline = Instant::now() + Duration::from_secs(180);
    for (token, id) in &all {
        loop {
            let v = get_json(&http, &format!("{url}/api/v1/reports/{id}"), token).await;
            if v["status"] == "done" {
                break;
            }
            assert!(Instant::now() < deadline, "report {id} not processed: {v}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // nginx took the dead replica out (max_fails) and passed the requests on to the others.
    let errors = nginx.error_log();
    let dead = format!("upstream: \"http://127.0.0.1:{}/", ports[1]);
    assert!(
        errors
            .lines()
            .any(|l| l.contains("upstream server temporarily disabled") && l.contains(&dead)),
        "{errors}"
    );
}

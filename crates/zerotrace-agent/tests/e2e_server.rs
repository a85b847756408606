//! End to end against the real `zerotrace server` binary: the agent enrolls and reports, the
//! server is stopped so reports pile up in the spool, the server comes back, and every report
//! must arrive exactly once.
//!
//! The `zerotrace` binary is taken from the same target directory as this test
//! (`cargo build -p zerotrace` first, or `cargo test --workspace`, which builds it); when it is
//! missing the test builds it with the same cargo. Set `ZEROTRACE_BIN` to use another binary.

use std::collections::HashSet;
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ADMIN_TOKEN: &str = "e2e-admin-token-0123456789abcdef";

fn zerotrace_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ZEROTRACE_BIN") {
        return Some(PathBuf::from(p));
    }
    // <target>/<profile>/deps/e2e_server-<hash>  →  <target>/<profile>/zerotrace
    let exe = std::env::current_exe().ok()?;
    let profile_dir = exe.parent()?.parent()?;
    let bin = profile_dir.join(format!("zerotrace{}", std::env::consts::EXE_SUFFIX));
    if !bin.exists() {
        let profile = profile_dir.file_name()?.to_str()?.to_string();
        let target_dir = profile_dir.parent()?;
        eprintln!("building the zerotrace binary ({profile}) for the end-to-end test…");
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "-p", "zerotrace"])
            .env("CARGO_TARGET_DIR", target_dir)
            .current_dir(zt_testkit::workspace_root());
        if profile != "debug" {
            cmd.args(["--profile", &profile]);
        }
        let status = cmd.status().expect("cannot run cargo");
        // The workspace must build: a broken `zerotrace` fails this test rather than skipping it.
        assert!(status.success(), "`cargo build -p zerotrace` failed");
    }
    bin.exists().then_some(bin)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Server {
    child: Child,
    log: PathBuf,
}

impl Server {
    fn start(bin: &Path, data: &Path, port: u16, log: PathBuf) -> Server {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = Command::new(bin)
            .arg("server")
            .arg("--data-dir")
            .arg(data)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .env("ZEROTRACE_ADMIN_TOKEN", ADMIN_TOKEN)
            // No scheduled feed sync from the Internet in a test.
            .env("ZEROTRACE_OFFLINE", "true")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        Server { child, log }
    }

    /// Waits for /readyz; `Err` with the server's log if it exited or never became ready.
    fn wait_ready(&mut self, base: &str) -> Result<(), String> {
        let agent = http();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "the server exited ({status}): {}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                ));
            }
            if let Ok(r) = agent.get(format!("{base}/readyz")).call() {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err("the server did not become ready in 60 s".into())
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn http() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .new_agent()
}

fn json_of(mut r: ureq::http::Response<ureq::Body>) -> serde_json::Value {
    let mut s = String::new();
    r.body_mut().as_reader().read_to_string(&mut s).unwrap();
    serde_json::from_str(&s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// `report_id=<uuid>` of every log line containing `event`.
fn ids_in_log(log: &str, event: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains(event))
        .filter_map(|l| {
            let at = l.find("report_id=")? + "report_id=".len();
            l.get(at..at + 36).map(str::to_string)
        })
        .collect()
}

fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn reports_survive_a_server_outage_and_arrive_exactly_once() {
    let bin = zerotrace_bin().expect("the zerotrace binary");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server-data");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let server_log = dir.path().join("server.log");
    let mut server = Server::start(&bin, &data, port, server_log.clone());
    if let Err(e) = server.wait_ready(&base) {
        if e.contains("not built yet") {
            eprintln!("\n*** SKIPPED: `zerotrace server` is not built yet ***\n");
            return;
        }
        panic!("{e}");
    }

    let http = http();
    let company = json_of(
        http.post(format!("{base}/api/v1/companies"))
            .header("Authorization", format!("Bearer {ADMIN_TOKEN}"))
            .header("Content-Type", "application/json")
            .send(r#"{"name":"e2e"}"#)
            .unwrap(),
    );
    let secret = company["enroll_secret"]
        .as_str()
        .expect("enroll_secret")
        .to_string();
    let company_id = company["id"].as_str().expect("company id").to_string();

    // A small host to collect from: os-release and a dpkg status.
    let root = dir.path().join("root");
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

    let state = dir.path().join("agent-state");
    let agent_log = dir.path().join("agent.log");
    let log_file = std::fs::File::create(&agent_log).unwrap();
    let mut agent = Command::new(env!("CARGO_BIN_EXE_zerotrace-agent"))
        .args(["--server", &base, "--enroll-secret", &secret])
        .arg("--state-dir")
        .arg(&state)
        .arg("--root")
        .arg(&root)
        .args(["--interval", "1", "--full-report-interval", "0"])
        .args(["--min-backoff-ms", "200", "--max-backoff", "2"])
        .env("ZEROTRACE_AGENT_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .unwrap();
    let read_log = || std::fs::read_to_string(&agent_log).unwrap_or_default();
    let spooled = || {
        std::fs::read_dir(state.join("spool"))
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".json.gz"))
                    .count()
            })
            .unwrap_or(0)
    };

    wait_for("the first delivery", Duration::from_secs(30), || {
        !ids_in_log(&read_log(), "report delivered").is_empty()
    });
    server.stop();
    wait_for(
        "reports to pile up in the spool",
        Duration::from_secs(30),
        || spooled() >= 3,
    );
    let piled = spooled();
    let mut server = Server::start(&bin, &data, port, server_log);
    server.wait_ready(&base).unwrap();
    // Drained: the spool is empty and every report queued so far is logged as delivered (the
    // agent removes a report from the spool before it logs the delivery: an empty spool
    // alone can be seen between the two, and a kill there loses only the log line).
    wait_for("the spool to drain", Duration::from_secs(60), || {
        let log = read_log();
        let delivered = ids_in_log(&log, "report delivered").len();
        spooled() == 0 && delivered > piled && ids_in_log(&log, "report queued").len() == delivered
    });
    let _ = agent.kill();
    let _ = agent.wait();

    let log = read_log();
    let queued = ids_in_log(&log, "report queued");
    let delivered = ids_in_log(&log, "report delivered");
    assert!(!log.contains("spool full"), "{log}");
    let queued_set: HashSet<&String> = queued.iter().collect();
    let delivered_set: HashSet<&String> = delivered.iter().collect();
    assert_eq!(queued_set.len(), queued.len(), "a report id was reused");
    assert_eq!(
        delivered_set.len(),
        delivered.len(),
        "a report was delivered twice:\n{log}"
    );
    // Everything queued arrived, except what was queued after the spool was last seen empty.
    let still_spooled = spooled();
    assert_eq!(queued.len(), delivered.len() + still_spooled, "{log}");
    assert!(delivered_set.iter().all(|id| queued_set.contains(id)));

    // The server has each delivered report, once, for the one agent that enrolled.
    let identity: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state.join("identity.json")).unwrap()).unwrap();
    let token = identity["agent_token"].as_str().unwrap();
    for id in &delivered {
        let r = http
            .get(format!("{base}/api/v1/reports/{id}"))
            .header("Authorization", format!("Bearer {token}"))
            .call()
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "report {id} is not on the server");
        assert_eq!(json_of(r)["report_id"], id.as_str());
    }
    let agents = json_of(
        http.get(format!("{base}/api/v1/companies/{company_id}/agents"))
            .header("Authorization", format!("Bearer {ADMIN_TOKEN}"))
            .call()
            .unwrap(),
    );
    let count = agents
        .get("items")
        .and_then(|i| i.as_array())
        .or_else(|| agents.as_array())
        .map(Vec::len);
    assert_eq!(count, Some(1), "{agents}");
    eprintln!(
        "e2e: {} reports queued, {} piled up during the outage, all delivered once",
        queued.len(),
        piled
    );
}

/// Tags given to the agent (`ZEROTRACE_AGENT_TAGS` in agent.env, `--tag` on the command line)
/// reach the server with its report, add to the tags set through the API, replace the ones
/// the agent sent before, filter the hosts list and are audited as the agent's changes.
#[test]
fn the_agents_tags_reach_the_server_and_combine_with_the_apis() {
    let bin = zerotrace_bin().expect("the zerotrace binary");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut server = Server::start(
        &bin,
        &dir.path().join("server-data"),
        port,
        dir.path().join("server.log"),
    );
    server.wait_ready(&base).unwrap();
    let http = http();
    let operator = format!("Bearer {ADMIN_TOKEN}");
    let company = json_of(
        http.post(format!("{base}/api/v1/companies"))
            .header("Authorization", &operator)
            .header("Content-Type", "application/json")
            .send(r#"{"name":"tags"}"#)
            .unwrap(),
    );
    let secret = company["enroll_secret"].as_str().unwrap().to_string();
    let cid = company["id"].as_str().unwrap().to_string();
    let root = dir.path().join("root");
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
    let state = dir.path().join("agent-state");
    // One collection and delivery with the given tag settings; the agent's exit status and
    // its log.
    let run_once = |env_tags: Option<&str>, args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_zerotrace-agent"));
        cmd.args(["--server", &base, "--enroll-secret", &secret, "--once"])
            .arg("--state-dir")
            .arg(&state)
            .arg("--root")
            .arg(&root)
            .args(args)
            .env_remove("ZEROTRACE_AGENT_TAGS")
            .stdin(Stdio::null());
        if let Some(t) = env_tags {
            cmd.env("ZEROTRACE_AGENT_TAGS", t);
        }
        let out = cmd.output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let get = |path: &str| {
        let r = http
            .get(format!("{base}/api/v1/companies/{cid}{path}"))
            .header("Authorization", &operator)
            .call()
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "GET {path}");
        json_of(r)
    };
    let strings = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .unwrap_or_else(|| panic!("not a list: {v}"))
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    };

    // As agent.env sets them (spaces after commas tolerated).
    let (ok, log) = run_once(Some("env=prod, dmz"), &[]);
    assert!(ok, "{log}");
    let identity: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state.join("identity.json")).unwrap()).unwrap();
    let aid = identity["agent_id"].as_str().unwrap().to_string();
    let tags = get(&format!("/agents/{aid}/tags"));
    assert_eq!(strings(&tags["reported"]), ["dmz", "env=prod"], "{tags}");
    assert_eq!(strings(&tags["assigned"]), Vec::<String>::new(), "{tags}");
    assert_eq!(strings(&tags["tags"]), ["dmz", "env=prod"], "{tags}");

    // A tag set through the API adds to the agent's.
    let r = http
        .put(format!("{base}/api/v1/companies/{cid}/agents/{aid}/tags"))
        .header("Authorization", &operator)
        .header("Content-Type", "application/json")
        .send(r#"{"tags":["owner=web"],"comment":"web team"}"#)
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let tags = json_of(r);
    assert_eq!(
        strings(&tags["tags"]),
        ["dmz", "env=prod", "owner=web"],
        "{tags}"
    );

    // The command line's tags replace what the agent sent before; the API's tag stays.
    let (ok, log) = run_once(None, &["--tag", "env=staging"]);
    assert!(ok, "{log}");
    let tags = get(&format!("/agents/{aid}/tags"));
    assert_eq!(strings(&tags["assigned"]), ["owner=web"], "{tags}");
    assert_eq!(strings(&tags["reported"]), ["env=staging"], "{tags}");
    assert_eq!(
        strings(&tags["tags"]),
        ["env=staging", "owner=web"],
        "{tags}"
    );

    // The hosts list filters by either kind.
    for (tag, hosts) in [("env%3Dstaging", 1), ("owner%3Dweb", 1), ("dmz", 0)] {
        let list = get(&format!("/agents?tag={tag}"));
        assert_eq!(
            list["items"].as_array().map(Vec::len),
            Some(hosts),
            "tag {tag}: {list}"
        );
    }

    // The trail: the agent's two changes as the agent's, the API's as the operator's.
    let audit = get("/audit?limit=100");
    let entries = audit["items"].as_array().unwrap();
    let reported: Vec<&serde_json::Value> = entries
        .iter()
        .filter(|e| e["action"] == "agent.tags_reported")
        .collect();
    assert_eq!(reported.len(), 2, "{audit}");
    assert!(reported.iter().all(|e| e["actor"]["kind"] == "agent"));
    assert_eq!(
        reported[0]["after"]["tags"],
        serde_json::json!(["env=staging"])
    );
    assert!(entries
        .iter()
        .any(|e| e["action"] == "agent.tags_set" && e["actor"]["kind"] == "operator"));

    // A tag the server would refuse stops the agent before it sends anything, naming it.
    let (ok, log) = run_once(None, &["--tag", "bad tag"]);
    assert!(!ok);
    assert!(log.contains("\"bad tag\""), "{log}");
}

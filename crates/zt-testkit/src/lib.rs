//! Test support shared by the workspace's tests: where the shared public data lives,
//! throwaway PostgreSQL databases, Citus clusters and Redis (`postgres`, `citus`, `redis`), running the real
//! binaries (`ServerProcess`), and checking systemd units with the real `systemd-analyze`
//! (`systemd`).

use std::path::PathBuf;

pub mod citus;
pub mod feed_replay;
pub mod postgres;
pub mod redis;
pub mod systemd;
pub use postgres::TestDatabase;

/// The workspace root (the directory holding the top-level Cargo.toml).
///
/// Found at run time from the running test's crate (cargo sets `CARGO_MANIFEST_DIR` for
/// `cargo test`): this crate's compile-time directory can name another checkout, because
/// cargo shares a build of an unchanged path crate between checkouts that use one target dir.
pub fn workspace_root() -> PathBuf {
    let start = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .filter(|p| p.is_dir())
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    start
        .ancestors()
        .find(|dir| {
            std::fs::read_to_string(dir.join("Cargo.toml"))
                .is_ok_and(|toml| toml.contains("[workspace]"))
        })
        .unwrap_or_else(|| panic!("no workspace Cargo.toml above {}", start.display()))
        .canonicalize()
        .expect("workspace root exists")
}

/// `../shared/data` beside the repository root (override with `ZEROTRACE_SHARED_DATA`).
/// Panics with a clear message when it is missing: tests that need real data must not
/// silently pass without it.
pub fn shared_data() -> PathBuf {
    let dir = std::env::var_os("ZEROTRACE_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("../shared/data"));
    assert!(
        dir.is_dir(),
        "the shared test data is missing: expected it at {} (set ZEROTRACE_SHARED_DATA)",
        dir.display()
    );
    dir
}

/// A file or folder inside the shared data, e.g. `shared_path("osv/rustsec/osv-json")`.
pub fn shared_path(rel: &str) -> PathBuf {
    let p = shared_data().join(rel);
    assert!(p.exists(), "shared test data {} is missing", p.display());
    p
}

/// A binary of another workspace package, from the target directory of the running test
/// (`cargo test --workspace` builds every package's binaries before running tests). When it is
/// missing (only this package's tests were built), it is built with the same cargo and profile:
/// a broken binary fails the test rather than skipping it.
pub fn workspace_binary(package: &str, name: &str) -> PathBuf {
    use std::process::Command;
    // <target>/<profile>/deps/<test>-<hash>  →  <target>/<profile>/<name>
    let exe = std::env::current_exe().expect("the test's own path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("tests run from <target>/<profile>/deps");
    let bin = profile_dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    if !bin.exists() {
        let profile = profile_dir
            .file_name()
            .and_then(|p| p.to_str())
            .expect("profile directory name");
        let target_dir = profile_dir.parent().expect("target directory");
        eprintln!("building {name} ({profile}) for this test…");
        let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
        cmd.args(["build", "-p", package, "--bin", name])
            .env("CARGO_TARGET_DIR", target_dir)
            .current_dir(workspace_root());
        if profile != "debug" {
            cmd.args(["--profile", profile]);
        }
        let status = cmd.status().expect("cannot run cargo");
        assert!(status.success(), "`cargo build -p {package}` failed");
    }
    assert!(bin.exists(), "{} was not built", bin.display());
    bin
}

/// A `zerotrace server` (or any command printing `listening on http://ADDR`) started as a real
/// process for a test. Killed (SIGKILL) on drop; [`ServerProcess::terminate`] stops it
/// gracefully instead.
pub struct ServerProcess {
    child: std::process::Child,
    /// `http://127.0.0.1:PORT`
    pub url: String,
    /// Every stdout line up to and including the `listening on` line.
    pub stdout: Vec<String>,
    stderr_path: PathBuf,
}

impl ServerProcess {
    /// Runs `program args…` (pass `--listen 127.0.0.1:0`) and waits up to 60 s for the
    /// `listening on http://…` line on its stdout. Stderr goes to `log_dir/<name>.stderr.log`.
    pub fn start(
        program: &std::path::Path,
        args: &[&str],
        envs: &[(&str, &str)],
        log_dir: &std::path::Path,
        name: &str,
    ) -> anyhow::Result<ServerProcess> {
        use std::io::BufRead;
        use std::process::{Command, Stdio};
        let stderr_path = log_dir.join(format!("{name}.stderr.log"));
        let stderr = std::fs::File::create(&stderr_path)?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            // No scheduled feed sync from the Internet in tests; a test of the sync passes
            // ("ZEROTRACE_OFFLINE", "false") and the replay server's URLs.
            .env("ZEROTRACE_OFFLINE", "true");
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let mut lines = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    let url = line
                        .strip_prefix("listening on ")
                        .map(|u| u.trim().to_string());
                    lines.push(line);
                    if let Some(url) = url {
                        return Ok(ServerProcess {
                            child,
                            url,
                            stdout: lines,
                            stderr_path,
                        });
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let log = std::fs::read_to_string(&stderr_path).unwrap_or_default();
                    anyhow::bail!(
                        "{name} did not report its address; stdout: {lines:?}; stderr:\n{log}"
                    );
                }
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The value after `prefix` on a stdout line (e.g. the operator token).
    pub fn stdout_value(&self, prefix: &str) -> Option<String> {
        self.stdout
            .iter()
            .find_map(|l| l.strip_prefix(prefix).map(|v| v.trim().to_string()))
    }

    /// What the process wrote to stderr so far (its logs).
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// SIGKILL: the process gets no chance to clean up.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits up to `timeout` for the exit; returns the exit status, or None
    /// (after a SIGKILL) when it did not stop in time.
    pub fn terminate(&mut self, timeout: std::time::Duration) -> Option<std::process::ExitStatus> {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        self.kill();
        None
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill();
        }
    }
}

//! A Redis for tests: `ZEROTRACE_TEST_REDIS_URL` when set, else the server on 127.0.0.1:6379
//! when one answers there, else a private `redis-server` this process starts on a free port
//! (nothing saved to disk), stopped at process exit like the private PostgreSQL cluster (see
//! `postgres.rs` for why `atexit`). Tests keep their keys under a prefix of their own.

use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

static PRIVATE: Mutex<Option<Child>> = Mutex::new(None);

extern "C" fn stop_private_redis() {
    let child = match PRIVATE.lock() {
        Ok(mut c) => c.take(),
        Err(p) => p.into_inner().take(),
    };
    if let Some(mut c) = child {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// The Redis URL for this process's tests (panics with the reason when none can be had).
pub fn redis_url() -> String {
    static URL: OnceLock<Result<String, String>> = OnceLock::new();
    URL.get_or_init(|| choose().map_err(|e| format!("{e:#}")))
        .clone()
        .unwrap_or_else(|e| panic!("no Redis for the test: {e}"))
}

fn choose() -> anyhow::Result<String> {
    if let Ok(url) = std::env::var("ZEROTRACE_TEST_REDIS_URL") {
        if !url.is_empty() {
            return Ok(url);
        }
    }
    let forced = std::env::var("ZEROTRACE_TEST_REDIS_PRIVATE").is_ok_and(|v| v == "1");
    let local: SocketAddr = ([127, 0, 0, 1], 6379).into();
    if !forced && TcpStream::connect_timeout(&local, Duration::from_millis(500)).is_ok() {
        return Ok("redis://127.0.0.1:6379".into());
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("no Redis at 127.0.0.1:6379 and `redis-server` cannot be started")?;
    *PRIVATE.lock().unwrap_or_else(|p| p.into_inner()) = Some(child);
    static REGISTERED: OnceLock<()> = OnceLock::new();
    // SAFETY: registering a plain extern "C" function.
    REGISTERED.get_or_init(|| unsafe {
        libc::atexit(stop_private_redis);
    });
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if Instant::now() > deadline {
            bail!("the private redis-server did not start on port {port}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(format!("redis://127.0.0.1:{port}"))
}

//! Throwaway PostgreSQL databases for tests.
//!
//! Which server: `ZEROTRACE_TEST_PG_URL` (an admin URL, e.g. `postgres://postgres@host/postgres`)
//! when set; otherwise the server on 127.0.0.1:5432 when one answers there; otherwise (or when
//! `ZEROTRACE_TEST_PG_THROWAWAY=1` forces it) a private cluster this process creates with
//! `initdb` and starts with `pg_ctl` — as the `postgres` user when running as root, since the
//! PostgreSQL binaries refuse root.
//!
//! Each [`TestDatabase`] is a database of its own, `zt_test_<pid>_<n>`, dropped when the value
//! is dropped (also while a failing test unwinds).
//!
//! Cleanup of the private cluster: one cluster serves every test of a test binary (a
//! `OnceLock`), and it must outlive them all, so no value owns it. Rust runs no destructors of
//! statics at exit, but the C runtime runs `atexit` handlers when the test harness returns
//! from `main` (or calls `process::exit`): the handler registered when the cluster starts stops
//! it (`pg_ctl stop -m immediate`) and removes its directory. A test binary killed outright
//! cannot run it; the next start finds directories (and `zt_test_*` databases) of processes that
//! no longer exist and removes them.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use anyhow::{bail, Context};

/// Prefix of the private clusters' directories under the temp dir: `zt-pg-<pid>-<port>`.
const CLUSTER_DIR_PREFIX: &str = "zt-pg-";

/// A database of its own for one test; dropped with this value.
pub struct TestDatabase {
    /// Connection URL of the database (the server's admin user).
    pub url: String,
    pub name: String,
}

impl TestDatabase {
    /// Creates a fresh, empty database (panics with the reason when no PostgreSQL can be had:
    /// a test that needs one must not pass silently without it).
    pub fn create() -> TestDatabase {
        Self::try_create().unwrap_or_else(|e| panic!("no PostgreSQL for the test: {e:#}"))
    }

    pub fn try_create() -> anyhow::Result<TestDatabase> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let server = server()?;
        let name = format!(
            "zt_test_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        admin(&server.admin_url, vec![format!("CREATE DATABASE {name}")])?;
        Ok(TestDatabase {
            url: server.url_of(&name),
            name,
        })
    }

    /// Whether the server in use is a private cluster this process started.
    pub fn is_throwaway() -> bool {
        server().map(|s| s.cluster.is_some()).unwrap_or(false)
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Ok(server) = server() {
            // FORCE: the test's server processes may still hold connections.
            let _ = admin(
                &server.admin_url,
                vec![format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    self.name
                )],
            );
        }
    }
}

/// The server the tests of this process use.
pub struct PgServer {
    /// URL of the `postgres` database, for CREATE/DROP DATABASE.
    pub admin_url: String,
    cluster: Option<PathBuf>,
}

impl PgServer {
    fn url_of(&self, database: &str) -> String {
        match self.admin_url.rsplit_once('/') {
            Some((base, _)) => format!("{base}/{database}"),
            None => format!("{}/{database}", self.admin_url),
        }
    }

    /// The private cluster's directory, if this process started one.
    pub fn cluster_dir(&self) -> Option<&Path> {
        self.cluster.as_deref()
    }
}

/// The server for this process's tests, chosen (and started) on first use.
pub fn server() -> anyhow::Result<&'static PgServer> {
    static SERVER: OnceLock<Result<PgServer, String>> = OnceLock::new();
    SERVER
        .get_or_init(|| {
            let s = choose_server().map_err(|e| format!("{e:#}"))?;
            drop_stale_databases(&s.admin_url);
            Ok(s)
        })
        .as_ref()
        .map_err(|e| anyhow::anyhow!("{e}"))
}

fn choose_server() -> anyhow::Result<PgServer> {
    if let Ok(url) = std::env::var("ZEROTRACE_TEST_PG_URL") {
        if !url.is_empty() {
            return Ok(PgServer {
                admin_url: url,
                cluster: None,
            });
        }
    }
    let forced = std::env::var("ZEROTRACE_TEST_PG_THROWAWAY").is_ok_and(|v| v == "1");
    let local: SocketAddr = ([127, 0, 0, 1], 5432).into();
    if !forced && TcpStream::connect_timeout(&local, Duration::from_millis(500)).is_ok() {
        return Ok(PgServer {
            admin_url: "postgres://postgres@127.0.0.1:5432/postgres".into(),
            cluster: None,
        });
    }
    start_cluster()
}

/// Runs statements on the admin database, on a thread and runtime of its own (callers may be
/// sync or inside an async test's runtime).
pub(crate) fn admin(url: &str, statements: Vec<String>) -> anyhow::Result<()> {
    use sqlx::{Connection, Executor};
    let url = url.to_string();
    std::thread::spawn(move || -> anyhow::Result<()> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async {
            let mut conn = sqlx::PgConnection::connect(&url)
                .await
                .with_context(|| format!("connecting to {url}"))?;
            for s in statements {
                conn.execute(sqlx::AssertSqlSafe(s.as_str()))
                    .await
                    .with_context(|| s.clone())?;
            }
            let _ = conn.close().await;
            Ok(())
        })
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the admin thread panicked"))?
}

pub(crate) fn process_alive(pid: i32) -> bool {
    // Signal 0 checks existence only.
    // SAFETY: kill with signal 0 sends nothing.
    let alive = unsafe { libc::kill(pid, 0) } == 0;
    alive || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Drops `zt_test_<pid>_*` databases of test processes that no longer run.
fn drop_stale_databases(admin_url: &str) {
    use sqlx::Connection;
    let url = admin_url.to_string();
    let names: Vec<String> = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        rt.block_on(async {
            let mut conn = sqlx::PgConnection::connect(&url).await.ok()?;
            let names: Vec<String> = sqlx::query_scalar(
                "SELECT datname FROM pg_database WHERE datname LIKE 'zt\\_test\\_%'",
            )
            .fetch_all(&mut conn)
            .await
            .ok()?;
            let _ = conn.close().await;
            Some(names)
        })
    })
    .join()
    .ok()
    .flatten()
    .unwrap_or_default();
    let stale: Vec<String> = names
        .into_iter()
        .filter(|n| {
            n.strip_prefix("zt_test_")
                .and_then(|rest| rest.split('_').next())
                .and_then(|pid| pid.parse::<i32>().ok())
                .is_some_and(|pid| !process_alive(pid))
        })
        .map(|n| format!("DROP DATABASE IF EXISTS {n} WITH (FORCE)"))
        .collect();
    if !stale.is_empty() {
        let _ = admin(admin_url, stale);
    }
}

// --- the private cluster ----------------------------------------------------------------------

/// What the exit handler needs: the cluster's directory and the binaries.
struct Cluster {
    dir: PathBuf,
    bin: PathBuf,
}

static CLUSTER: Mutex<Option<Cluster>> = Mutex::new(None);

extern "C" fn stop_cluster_at_exit() {
    let cluster = match CLUSTER.lock() {
        Ok(mut c) => c.take(),
        Err(p) => p.into_inner().take(),
    };
    if let Some(c) = cluster {
        stop_and_remove(&c.bin, &c.dir);
    }
}

fn stop_and_remove(bin: &Path, dir: &Path) {
    let data = dir.join("data");
    if data.join("postmaster.pid").exists() {
        let _ = as_postgres(
            &bin.join("pg_ctl"),
            &["-D", path_str(&data), "-m", "immediate", "-w", "stop"],
        )
        .output();
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// A fresh data directory at `data`, owned by the `postgres` user: trust authentication,
/// UTF-8, the C locale, no fsync (throwaway clusters only).
pub(crate) fn initdb(bin: &Path, data: &Path) -> anyhow::Result<()> {
    let out = as_postgres(
        &bin.join("initdb"),
        &[
            "-D",
            path_str(data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ],
    )
    .output()
    .context("running initdb")?;
    if !out.status.success() {
        bail!(
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

pub(crate) fn path_str(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

pub(crate) fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

/// A command run as the `postgres` user when we are root (initdb and postgres refuse root).
pub(crate) fn as_postgres(program: &Path, args: &[&str]) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program).args(args);
        c
    } else {
        let mut c = Command::new(program);
        c.args(args);
        c
    }
}

/// The directory of `initdb`/`pg_ctl`: `ZEROTRACE_PG_BIN`, `pg_config --bindir`, or the newest
/// `/usr/lib/postgresql/<version>/bin`.
pub(crate) fn pg_bin_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("ZEROTRACE_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    let out = Command::new("pg_config").arg("--bindir").output();
    if let Ok(out) = out {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").exists() {
            return Ok(dir);
        }
    }
    bail!("no PostgreSQL server binaries (initdb, pg_ctl) found: set ZEROTRACE_PG_BIN")
}

/// Removes clusters left behind by test processes that were killed.
fn remove_stale_clusters(bin: &Path) {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(rest) = name
            .to_str()
            .and_then(|n| n.strip_prefix(CLUSTER_DIR_PREFIX))
        else {
            continue;
        };
        let owner = rest.split('-').next().and_then(|p| p.parse::<i32>().ok());
        if owner.is_some_and(|pid| !process_alive(pid)) {
            stop_and_remove(bin, &e.path());
        }
    }
}

pub(crate) fn chown_to_postgres(path: &Path) -> anyhow::Result<()> {
    if !is_root() {
        return Ok(());
    }
    let user = std::ffi::CString::new("postgres")?;
    // SAFETY: getpwnam returns a pointer to static storage or NULL; read at once.
    let (uid, gid) = unsafe {
        let pw = libc::getpwnam(user.as_ptr());
        if pw.is_null() {
            bail!("running as root, but there is no `postgres` user to run the cluster as");
        }
        ((*pw).pw_uid, (*pw).pw_gid)
    };
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .with_context(|| format!("chown {}", path.display()))
}

pub(crate) fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

fn start_cluster() -> anyhow::Result<PgServer> {
    let bin = pg_bin_dir()?;
    remove_stale_clusters(&bin);
    let port = free_port()?;
    let dir =
        std::env::temp_dir().join(format!("{CLUSTER_DIR_PREFIX}{}-{port}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    // The socket directory is the cluster directory itself: private to this run.
    chown_to_postgres(&dir)?;
    // Registered before anything can fail halfway: the handler removes whatever exists.
    {
        let mut slot = CLUSTER.lock().unwrap_or_else(|p| p.into_inner());
        *slot = Some(Cluster {
            dir: dir.clone(),
            bin: bin.clone(),
        });
    }
    static REGISTERED: OnceLock<()> = OnceLock::new();
    REGISTERED.get_or_init(|| unsafe {
        libc::atexit(stop_cluster_at_exit);
    });

    let data = dir.join("data");
    initdb(&bin, &data)?;
    // Durability settings off: the cluster dies with the test run anyway.
    let options = format!(
        "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
         -c full_page_writes=off -c max_connections=300 -c shared_buffers=128MB",
        path_str(&dir)
    );
    let log = dir.join("postgres.log");
    let out = as_postgres(
        &bin.join("pg_ctl"),
        &[
            "-D",
            path_str(&data),
            "-l",
            path_str(&log),
            "-o",
            &options,
            "-w",
            "-t",
            "60",
            "start",
        ],
    )
    .output()
    .context("running pg_ctl start")?;
    if !out.status.success() {
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        bail!(
            "pg_ctl start failed: {}{}\n{log}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(PgServer {
        admin_url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
        cluster: Some(dir),
    })
}

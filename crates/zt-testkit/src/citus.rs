//! Throwaway databases on a Citus cluster (coordinator + 2 workers) for the Citus suite.
//!
//! Which cluster: `ZT_TEST_CITUS_URL` (the coordinator's admin URL, e.g.
//! `postgres://postgres@127.0.0.1:55432/postgres?sslmode=disable`, whose database has the
//! citus extension with the workers added) when set; otherwise, when Citus is installed in
//! the PostgreSQL the tests find (`citus.so` in `pg_config --pkglibdir`), a private cluster of
//! three nodes this process starts with `initdb`/`pg_ctl` (`shared_preload_libraries =
//! 'citus'`) and removes at exit, as `postgres::` does for its single server. Otherwise
//! [`CitusDatabase::try_create`] returns `None` after saying loudly that the suite is skipped:
//! Citus is not packaged by Debian, so CI machines usually have none.
//!
//! Each [`CitusDatabase`] is a database of its own on every node (Citus keeps its metadata
//! per database: the extension is created in each and the workers added to the coordinator's),
//! dropped on every node with the value. Its URL says `sslmode=disable`: Citus turns TLS on
//! with a certificate rustls refuses (the store's TLS test covers that on purpose).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, Once, OnceLock};

use anyhow::{bail, Context};

use crate::postgres::{
    admin, as_postgres, chown_to_postgres, free_port, initdb, path_str, pg_bin_dir, process_alive,
};

const CLUSTER_DIR_PREFIX: &str = "zt-citus-";

/// A node of the cluster.
#[derive(Debug, Clone)]
pub struct Node {
    pub host: String,
    pub port: u16,
}

/// The cluster this process's Citus tests use.
#[derive(Debug)]
pub struct CitusCluster {
    /// The coordinator's admin URL (its `postgres` database), sslmode=disable.
    pub admin_url: String,
    pub coordinator: Node,
    pub workers: Vec<Node>,
    /// The user every node is reached as.
    pub user: String,
    /// The private cluster's directory (data dirs `coordinator`, `worker1`, `worker2`), if this
    /// process started it.
    pub dir: Option<PathBuf>,
}

impl CitusCluster {
    fn url(&self, node: &Node, database: &str) -> String {
        format!(
            "postgres://{}@{}:{}/{database}?sslmode=disable",
            self.user, node.host, node.port
        )
    }

    /// The data directory of the coordinator when this process started the cluster.
    pub fn coordinator_data_dir(&self) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join("coordinator"))
    }
}

/// A database of its own on every node of the cluster; dropped with this value.
pub struct CitusDatabase {
    /// The coordinator's URL of the database (`sslmode=disable`).
    pub url: String,
    pub name: String,
    pub cluster: &'static CitusCluster,
}

impl CitusDatabase {
    /// A fresh database with the citus extension and the workers added, or `None` (said
    /// loudly on stderr, past the test harness's capture, and in the test's own output) when
    /// no Citus cluster can be had. `test` names the caller in the message.
    pub fn try_create(test: &str) -> Option<CitusDatabase> {
        match cluster() {
            Ok(Some(c)) => match create_database(c) {
                Ok(db) => Some(db),
                Err(e) => panic!("Citus is available but a database could not be set up: {e:#}"),
            },
            Ok(None) => {
                skipped(test);
                None
            }
            Err(e) => panic!("Citus is installed but the test cluster did not start: {e:#}"),
        }
    }

    /// A database with the citus extension on every node and the workers known, but none of
    /// it used yet by the store (for tests that create the schema before Citus is there, the
    /// extension is created anyway: it is per database and harmless until tables move).
    pub fn try_create_plain(test: &str) -> Option<CitusDatabase> {
        match cluster() {
            Ok(Some(c)) => Some(
                create_plain_database(c)
                    .unwrap_or_else(|e| panic!("creating a database on the Citus cluster: {e:#}")),
            ),
            Ok(None) => {
                skipped(test);
                None
            }
            Err(e) => panic!("Citus is installed but the test cluster did not start: {e:#}"),
        }
    }

    /// Makes this database a Citus one: the extension on every node, the workers added.
    pub fn add_citus(&self) -> anyhow::Result<()> {
        setup_citus(self.cluster, &self.name)
    }

    /// The URL of this database on a worker (to look at shards and policies there).
    pub fn worker_url(&self, i: usize) -> String {
        self.cluster.url(&self.cluster.workers[i], &self.name)
    }
}

impl Drop for CitusDatabase {
    fn drop(&mut self) {
        let c = self.cluster;
        for node in std::iter::once(&c.coordinator).chain(c.workers.iter()) {
            let _ = admin(
                &c.url(node, "postgres"),
                vec![format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    self.name
                )],
            );
        }
    }
}

/// Says that the Citus suite did not run, where a person running the tests sees it.
fn skipped(test: &str) {
    let msg = format!(
        "\n!!! CITUS SUITE SKIPPED ({test}): Citus is not installed (no citus.so in pg_config \
         --pkglibdir) and ZT_TEST_CITUS_URL is not set. See README.md, \"Running on Citus\" > \
         \"Tests\", to run it. !!!\n"
    );
    // In the test's captured output (shown with --nocapture or on failure) …
    eprintln!("{msg}");
    // … and once per process straight to stderr, which the harness does not capture.
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = std::io::stderr().write_all(msg.as_bytes());
    });
}

static NEXT: AtomicU32 = AtomicU32::new(0);

fn create_plain_database(c: &'static CitusCluster) -> anyhow::Result<CitusDatabase> {
    let name = format!(
        "zt_citus_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    for node in std::iter::once(&c.coordinator).chain(c.workers.iter()) {
        admin(
            &c.url(node, "postgres"),
            vec![format!("CREATE DATABASE {name}")],
        )?;
    }
    Ok(CitusDatabase {
        url: c.url(&c.coordinator, &name),
        name,
        cluster: c,
    })
}

fn setup_citus(c: &CitusCluster, name: &str) -> anyhow::Result<()> {
    for w in &c.workers {
        admin(
            &c.url(w, name),
            vec!["CREATE EXTENSION IF NOT EXISTS citus".into()],
        )?;
    }
    let statements = vec![
        "CREATE EXTENSION IF NOT EXISTS citus".to_string(),
        format!(
            "SELECT citus_set_coordinator_host('{}', {})",
            c.coordinator.host, c.coordinator.port
        ),
    ];
    admin(&c.url(&c.coordinator, name), statements)?;
    for w in &c.workers {
        // Adding a node opens connections to every node; with many test databases being
        // set up at once one of them can fail ("failure on connection marked as
        // essential"): tried again after a pause.
        let add = format!("SELECT citus_add_node('{}', {})", w.host, w.port);
        let mut attempt = 0;
        loop {
            match admin(&c.url(&c.coordinator, name), vec![add.clone()]) {
                Ok(()) => break,
                Err(e) if attempt >= 4 => return Err(e),
                Err(_) => {
                    attempt += 1;
                    std::thread::sleep(std::time::Duration::from_millis(500 * attempt));
                }
            }
        }
    }
    Ok(())
}

fn create_database(c: &'static CitusCluster) -> anyhow::Result<CitusDatabase> {
    let db = create_plain_database(c)?;
    setup_citus(c, &db.name)?;
    Ok(db)
}

/// The cluster for this process's Citus tests: `Ok(None)` when Citus is not to be had.
pub fn cluster() -> anyhow::Result<Option<&'static CitusCluster>> {
    static CLUSTER: OnceLock<Result<Option<CitusCluster>, String>> = OnceLock::new();
    CLUSTER
        .get_or_init(|| choose_cluster().map_err(|e| format!("{e:#}")))
        .as_ref()
        .map(Option::as_ref)
        .map_err(|e| anyhow::anyhow!("{e}"))
}

fn choose_cluster() -> anyhow::Result<Option<CitusCluster>> {
    if let Ok(url) = std::env::var("ZT_TEST_CITUS_URL") {
        if !url.is_empty() {
            return external_cluster(&url).map(Some);
        }
    }
    let bin = pg_bin_dir()?;
    if !citus_installed(&bin) {
        return Ok(None);
    }
    start_cluster(&bin).map(Some)
}

/// Whether `citus.so` is in the package library directory of the PostgreSQL at `bin`.
pub fn citus_installed_here() -> bool {
    pg_bin_dir().is_ok_and(|b| citus_installed(&b))
}

fn citus_installed(bin: &Path) -> bool {
    let pg_config = bin.join("pg_config");
    let program = if pg_config.exists() {
        pg_config
    } else {
        PathBuf::from("pg_config")
    };
    let libdir = std::process::Command::new(program)
        .arg("--pkglibdir")
        .output()
        .ok()
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    // Debian's pg_config reports the newest installed version's directory; the server
    // binaries' own sibling lib directory is checked too.
    let sibling = bin.parent().map(|p| p.join("lib"));
    [libdir, sibling]
        .into_iter()
        .flatten()
        .any(|d| d.join("citus.so").exists())
}

fn external_cluster(url: &str) -> anyhow::Result<CitusCluster> {
    use sqlx::Connection;
    let owned = url.to_string();
    let (user, coordinator, workers) = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async {
            let mut conn = sqlx::PgConnection::connect(&owned)
                .await
                .with_context(|| format!("connecting to ZT_TEST_CITUS_URL {owned}"))?;
            let user: String = sqlx::query_scalar("SELECT current_user::text")
                .fetch_one(&mut conn)
                .await?;
            let nodes: Vec<(String, i32, i32)> = sqlx::query_as(
                "SELECT nodename::text, nodeport, groupid FROM pg_dist_node \
                 WHERE noderole = 'primary' AND isactive ORDER BY groupid",
            )
            .fetch_all(&mut conn)
            .await
            .context(
                "ZT_TEST_CITUS_URL must name a Citus coordinator's database with the workers added",
            )?;
            let _ = conn.close().await;
            let node = |(h, p, _): &(String, i32, i32)| Node {
                host: h.clone(),
                port: u16::try_from(*p).unwrap_or(5432),
            };
            let coordinator = nodes.iter().find(|n| n.2 == 0).map(node);
            let workers: Vec<Node> = nodes.iter().filter(|n| n.2 != 0).map(node).collect();
            anyhow::Ok((user, coordinator, workers))
        })
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the set-up thread panicked"))??;
    if workers.is_empty() {
        bail!("the Citus cluster at ZT_TEST_CITUS_URL has no worker nodes");
    }
    let coordinator = match coordinator {
        Some(c) => c,
        None => {
            // Not registered: the URL's own host and port.
            let rest = url.split_once('@').map(|x| x.1).unwrap_or(url);
            let hostport = rest.split('/').next().unwrap_or_default();
            let (host, port) = hostport.split_once(':').unwrap_or((hostport, "5432"));
            Node {
                host: host.to_string(),
                port: port.parse().unwrap_or(5432),
            }
        }
    };
    Ok(CitusCluster {
        admin_url: url.to_string(),
        coordinator,
        workers,
        user,
        dir: None,
    })
}

// --- the private cluster ----------------------------------------------------------------------

struct Owned {
    dir: PathBuf,
    bin: PathBuf,
}

static OWNED: Mutex<Option<Owned>> = Mutex::new(None);

const NODES: [&str; 3] = ["coordinator", "worker1", "worker2"];

extern "C" fn stop_at_exit() {
    let owned = match OWNED.lock() {
        Ok(mut c) => c.take(),
        Err(p) => p.into_inner().take(),
    };
    if let Some(o) = owned {
        stop_and_remove(&o.bin, &o.dir);
    }
}

fn stop_and_remove(bin: &Path, dir: &Path) {
    for n in NODES {
        let data = dir.join(n);
        if data.join("postmaster.pid").exists() {
            let _ = as_postgres(
                &bin.join("pg_ctl"),
                &["-D", path_str(&data), "-m", "immediate", "-w", "stop"],
            )
            .output();
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

fn remove_stale(bin: &Path) {
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

fn start_cluster(bin: &Path) -> anyhow::Result<CitusCluster> {
    remove_stale(bin);
    let ports = [free_port()?, free_port()?, free_port()?];
    let dir = std::env::temp_dir().join(format!(
        "{CLUSTER_DIR_PREFIX}{}-{}",
        std::process::id(),
        ports[0]
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    chown_to_postgres(&dir)?;
    {
        let mut slot = OWNED.lock().unwrap_or_else(|p| p.into_inner());
        *slot = Some(Owned {
            dir: dir.clone(),
            bin: bin.to_path_buf(),
        });
    }
    static REGISTERED: OnceLock<()> = OnceLock::new();
    REGISTERED.get_or_init(|| unsafe {
        libc::atexit(stop_at_exit);
    });
    for (name, port) in NODES.iter().zip(ports) {
        let data = dir.join(name);
        initdb(bin, &data)?;
        // Few shards per table (4, not Citus's 32) keep schema creation quick; prepared
        // transactions for Citus's two-phase commits; durability off: the cluster dies with
        // the test run.
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c shared_preload_libraries=citus \
             -c citus.shard_count=4 -c max_prepared_transactions=200 -c max_connections=300 \
             -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
             -c shared_buffers=64MB",
            path_str(&dir)
        );
        let log = dir.join(format!("{name}.log"));
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
    }
    let node = |port: u16| Node {
        host: "127.0.0.1".into(),
        port,
    };
    Ok(CitusCluster {
        admin_url: format!(
            "postgres://postgres@127.0.0.1:{}/postgres?sslmode=disable",
            ports[0]
        ),
        coordinator: node(ports[0]),
        workers: vec![node(ports[1]), node(ports[2])],
        user: "postgres".into(),
        dir: Some(dir),
    })
}

//! One module per subcommand. Each exposes its clap arguments and a `run` returning the exit code.

pub mod admin;
pub mod feeds;
pub mod loadgen;
pub mod scan;
pub mod server;
pub mod version;

use std::path::PathBuf;

use anyhow::Context;
use zt_store::{AnyStore, PgOptions};

use crate::{GlobalArgs, LogFormat};

/// The file name of the embedded database inside the data directory.
pub const SQLITE_FILE_NAME: &str = "zerotrace.db";

/// The data directory: `--data-dir` / `ZEROTRACE_DATA_DIR`, else the platform's data directory
/// (e.g. `~/.local/share/zerotrace` on Linux). Every command that uses the store resolves it
/// here so that `feeds import`, `scan` and `server` share one knowledge base.
pub fn data_dir(global: &GlobalArgs) -> anyhow::Result<PathBuf> {
    match &global.data_dir {
        Some(d) => Ok(d.clone()),
        None => directories::ProjectDirs::from("", "", "zerotrace")
            .map(|p| p.data_dir().to_path_buf())
            .context("cannot determine the platform data directory: pass --data-dir"),
    }
}

/// The SQLite file in the data directory (the directory is created when missing).
pub fn sqlite_path(global: &GlobalArgs) -> anyhow::Result<PathBuf> {
    let dir = data_dir(global)?;
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    Ok(dir.join(SQLITE_FILE_NAME))
}

/// Opens the store the global options name: PostgreSQL with `--database-url postgres://…`
/// (a pool of `connections`), else the SQLite file in the data directory. Returns it with a
/// description for banners and errors (a path, or the URL without its password).
pub async fn open_store(
    global: &GlobalArgs,
    connections: u32,
) -> anyhow::Result<(AnyStore, String)> {
    match &global.database_url {
        Some(url) if zt_store::any::is_postgres_url(url) => {
            let shown = zt_store::any::redact_url(url);
            let options = PgOptions {
                partitions: global.partitions,
                max_connections: connections,
            };
            let store = AnyStore::open_postgres(url, &options)
                .await
                .with_context(|| format!("cannot open the database {shown}"))?;
            if let AnyStore::Postgres(pg) = &store {
                if pg.partitions() != global.partitions {
                    tracing::info!(
                        partitions = pg.partitions(),
                        "the schema exists: its partition count stays as created"
                    );
                }
                if let zt_store::postgres::RlsMode::LoginRole { bypasses: true } = pg.rls_mode() {
                    tracing::warn!(
                        "the database login bypasses row-level security and the zerotrace_app \
                         role is not available to it: company isolation rests on the queries alone"
                    );
                }
            }
            Ok((store, shown))
        }
        Some(url) => anyhow::bail!(
            "unsupported --database-url {} (expected postgres://…)",
            zt_store::any::redact_url(url)
        ),
        None => {
            let path = sqlite_path(global)?;
            let store = AnyStore::open_sqlite(&path)
                .await
                .with_context(|| format!("cannot open the database {}", path.display()))?;
            Ok((store, path.display().to_string()))
        }
    }
}

/// Logs go to stderr so that commands printing results (scan, version cmp) keep stdout clean.
pub fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("ZEROTRACE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

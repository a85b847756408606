//! One module per subcommand. Each exposes its clap arguments and a `run` returning the exit code.

pub mod admin;
pub mod feeds;
pub mod loadgen;
pub mod scan;
pub mod server;
pub mod version;

use std::path::PathBuf;

use anyhow::Context;

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
/// `--database-url postgres://…` is refused here until the PostgreSQL backend lands.
pub fn sqlite_path(global: &GlobalArgs) -> anyhow::Result<PathBuf> {
    if let Some(url) = &global.database_url {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            anyhow::bail!("PostgreSQL support arrives with issue 6: use --data-dir for now");
        }
        anyhow::bail!("unsupported --database-url {url:?} (expected postgres://…)");
    }
    let dir = data_dir(global)?;
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    Ok(dir.join(SQLITE_FILE_NAME))
}

/// Logs go to stderr so that commands printing results (scan, version cmp) keep stdout clean.
pub fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("ZEROTRACE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

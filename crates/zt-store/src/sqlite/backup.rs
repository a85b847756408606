//! Backups of the embedded database: a consistent copy taken while servers keep writing, and
//! its restore into a data directory.
//!
//! The copy is SQLite's `VACUUM INTO` on a read-only connection: it runs in one read
//! transaction, so it is a snapshot of one moment (every committed report and queue entry, or
//! none of a transaction), and in WAL mode it holds up no writer. The copy is checked
//! (`PRAGMA integrity_check`) before it gets its final name; a restore checks the backup
//! again, refuses one made by a newer schema, and never overwrites a database that is in use.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteLockingMode};
use sqlx::{ConnectOptions, Connection};

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("there is no database at {}", .0.display())]
    Missing(PathBuf),
    #[error("{} exists already: choose a new file name", .0.display())]
    Exists(PathBuf),
    #[error("{} is not a ZeroTrace database: {reason}", path.display())]
    NotADatabase { path: PathBuf, reason: String },
    #[error("{} is damaged (integrity_check: {problems})", path.display())]
    Damaged { path: PathBuf, problems: String },
    #[error(
        "{} was made by a newer ZeroTrace (schema version {version}; this one knows up to \
         {known}): restore it with that version",
        path.display()
    )]
    Newer {
        path: PathBuf,
        version: i64,
        known: i64,
    },
    #[error(
        "{} is in use (a server is running on this data directory?): stop it first",
        .0.display()
    )]
    InUse(PathBuf),
    #[error(
        "{} holds a database already: restore into an empty data directory, or pass --force to \
         replace it (it is kept beside as {})",
        path.display(),
        kept.display()
    )]
    WouldReplace { path: PathBuf, kept: PathBuf },
    #[error("database error on {}: {source}", path.display())]
    Sql { path: PathBuf, source: sqlx::Error },
}

type Result<T> = std::result::Result<T, BackupError>;

/// What a backup holds (read from the copy itself).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BackupSummary {
    pub path: PathBuf,
    pub bytes: u64,
    /// The newest migration applied to it.
    pub schema_version: i64,
    pub companies: i64,
    pub agents: i64,
    pub reports: i64,
    /// `PRAGMA integrity_check`'s answer: "ok".
    pub integrity: String,
}

/// The newest schema version this build knows.
pub fn known_schema_version() -> i64 {
    super::MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
}

/// Copies the database `src` to the new file `dest` as one consistent snapshot, while servers
/// may be writing `src`, and checks the copy.
pub async fn backup(src: &Path, dest: &Path) -> Result<BackupSummary> {
    if !src.is_file() {
        return Err(BackupError::Missing(src.to_path_buf()));
    }
    if dest.exists() {
        return Err(BackupError::Exists(dest.to_path_buf()));
    }
    let partial = sibling(dest, ".partial");
    remove_if_exists(&partial)?;
    let sql = |source| BackupError::Sql {
        path: src.to_path_buf(),
        source,
    };
    let mut conn = SqliteConnectOptions::from_str("sqlite://")
        .map_err(sql)?
        .filename(src)
        .read_only(true)
        // A writer's checkpoint can hold the WAL index briefly.
        .busy_timeout(Duration::from_secs(60))
        .connect()
        .await
        .map_err(sql)?;
    let target = partial.to_str().ok_or_else(|| BackupError::Io {
        path: partial.clone(),
        source: std::io::Error::other("the path is not UTF-8"),
    })?;
    let copied = sqlx::query("VACUUM INTO ?")
        .bind(target)
        .execute(&mut conn)
        .await;
    let _ = conn.close().await;
    if let Err(e) = copied {
        let _ = std::fs::remove_file(&partial);
        return Err(sql(e));
    }
    let summary = match inspect(&partial).await {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    sync_file(&partial)?;
    std::fs::rename(&partial, dest).map_err(|source| BackupError::Io {
        path: dest.to_path_buf(),
        source,
    })?;
    sync_dir(dest)?;
    Ok(BackupSummary {
        path: dest.to_path_buf(),
        ..summary
    })
}

/// Checks a backup (or any database file) and says what it holds, without changing it.
pub async fn inspect(path: &Path) -> Result<BackupSummary> {
    if !path.is_file() {
        return Err(BackupError::Missing(path.to_path_buf()));
    }
    let not_db = |reason: String| BackupError::NotADatabase {
        path: path.to_path_buf(),
        reason,
    };
    let mut conn = SqliteConnectOptions::from_str("sqlite://")
        .map_err(|e| not_db(e.to_string()))?
        .filename(path)
        .read_only(true)
        .connect()
        .await
        .map_err(|e| not_db(e.to_string()))?;
    let result = async {
        let problems: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check")
            .fetch_all(&mut conn)
            .await
            .map_err(|e| not_db(e.to_string()))?;
        if problems != ["ok"] {
            return Err(BackupError::Damaged {
                path: path.to_path_buf(),
                problems: problems.join("; "),
            });
        }
        let versions: Vec<(i64, bool)> =
            sqlx::query_as("SELECT version, success FROM _sqlx_migrations ORDER BY version")
                .fetch_all(&mut conn)
                .await
                .map_err(|e| not_db(format!("no schema history ({e})")))?;
        if versions.iter().any(|(_, ok)| !ok) {
            return Err(not_db("a migration did not finish".into()));
        }
        let schema_version = versions.last().map(|(v, _)| *v).unwrap_or(0);
        let known = known_schema_version();
        if schema_version > known {
            return Err(BackupError::Newer {
                path: path.to_path_buf(),
                version: schema_version,
                known,
            });
        }
        let count = |table: &'static str| {
            sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!(
                "SELECT count(*) FROM {table}"
            )))
        };
        let companies = count("companies")
            .fetch_one(&mut conn)
            .await
            .map_err(|e| not_db(e.to_string()))?;
        let agents = count("agents")
            .fetch_one(&mut conn)
            .await
            .map_err(|e| not_db(e.to_string()))?;
        let reports = count("reports")
            .fetch_one(&mut conn)
            .await
            .map_err(|e| not_db(e.to_string()))?;
        Ok(BackupSummary {
            path: path.to_path_buf(),
            bytes: 0,
            schema_version,
            companies,
            agents,
            reports,
            integrity: "ok".into(),
        })
    }
    .await;
    let _ = conn.close().await;
    let bytes = std::fs::metadata(path)
        .map_err(|source| BackupError::Io {
            path: path.to_path_buf(),
            source,
        })?
        .len();
    result.map(|s| BackupSummary { bytes, ..s })
}

/// Puts the backup `from` in place as the database `db` (the data directory's file). A
/// database already there is replaced only with `replace`, and only when no process has it
/// open; it is kept beside under the returned name. The restored file keeps the backup's
/// schema version: opening the store brings it up to date.
pub async fn restore(
    from: &Path,
    db: &Path,
    replace: bool,
) -> Result<(BackupSummary, Option<PathBuf>)> {
    let summary = inspect(from).await?;
    let mut kept = None;
    if db.exists() {
        let aside = sibling(
            db,
            &format!(".replaced-{}", chrono::Utc::now().format("%Y%m%dT%H%M%SZ")),
        );
        if !replace {
            return Err(BackupError::WouldReplace {
                path: db.to_path_buf(),
                kept: aside,
            });
        }
        settle_unused(db).await?;
        rename(db, &aside)?;
        kept = Some(aside);
    }
    // Leftovers of an earlier database must not be read as this one's log.
    for suffix in ["-wal", "-shm", "-journal"] {
        remove_if_exists(&sibling(db, suffix))?;
    }
    let restoring = sibling(db, ".restoring");
    std::fs::copy(from, &restoring).map_err(|source| BackupError::Io {
        path: restoring.clone(),
        source,
    })?;
    sync_file(&restoring)?;
    rename(&restoring, db)?;
    sync_dir(db)?;
    Ok((summary, kept))
}

/// Checks that no process has `db` open and folds its write-ahead log into the file, so that
/// the file alone is the whole database: an exclusive lock on a WAL database is granted only
/// when no other connection exists, and the last connection to close checkpoints the log.
async fn settle_unused(db: &Path) -> Result<()> {
    let sql = |source| BackupError::Sql {
        path: db.to_path_buf(),
        source,
    };
    let mut conn = SqliteConnectOptions::from_str("sqlite://")
        .map_err(sql)?
        .filename(db)
        .journal_mode(SqliteJournalMode::Wal)
        .locking_mode(SqliteLockingMode::Exclusive)
        .busy_timeout(Duration::ZERO)
        .connect()
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(d) if d.message().contains("locked") => {
                BackupError::InUse(db.to_path_buf())
            }
            _ => sql(e),
        })?;
    let locked = sqlx::query("BEGIN EXCLUSIVE").execute(&mut conn).await;
    match locked {
        Ok(_) => {
            sqlx::query("ROLLBACK")
                .execute(&mut conn)
                .await
                .map_err(sql)?;
            conn.close().await.map_err(sql)?;
            Ok(())
        }
        Err(sqlx::Error::Database(d)) if d.message().contains("locked") => {
            let _ = conn.close().await;
            Err(BackupError::InUse(db.to_path_buf()))
        }
        Err(e) => Err(sql(e)),
    }
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

fn remove_if_exists(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(BackupError::Io {
            path: path.to_path_buf(),
            source: e,
        }),
        _ => Ok(()),
    }
}

fn rename(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to).map_err(|source| BackupError::Io {
        path: to.to_path_buf(),
        source,
    })
}

fn sync_file(path: &Path) -> Result<()> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|source| BackupError::Io {
            path: path.to_path_buf(),
            source,
        })
}

/// Makes a rename in the file's directory durable.
fn sync_dir(file: &Path) -> Result<()> {
    #[cfg(unix)]
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)
            .and_then(|f| f.sync_all())
            .map_err(|source| BackupError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
    }
    #[cfg(not(unix))]
    let _ = file;
    Ok(())
}

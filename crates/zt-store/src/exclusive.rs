//! One process at a time for deployment-wide jobs (the scheduled feed sync, the re-match after
//! a knowledge change): [`crate::Storage::try_exclusive`] hands out an [`ExclusiveGuard`].
//!
//! PostgreSQL: a session-level advisory lock (`pg_try_advisory_lock`) held on a connection
//! taken out of the pool for as long as the guard lives; a process that dies releases it with
//! its session. SQLite: the database belongs to one server process, so within the process a
//! named mutex is enough.

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use sha2::{Digest, Sha256};

/// Held while a deployment-wide job runs; [`ExclusiveGuard::release`] ends it (dropping it
/// does too: the lock's connection closes, or the in-process name is freed).
pub struct ExclusiveGuard {
    name: String,
    pg: Option<sqlx::PgConnection>,
    local: Option<Arc<Mutex<HashSet<String>>>>,
}

impl std::fmt::Debug for ExclusiveGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExclusiveGuard")
            .field("name", &self.name)
            .finish()
    }
}

/// The advisory-lock key of a job name: the first 8 bytes of its SHA-256 (stable across
/// versions and processes).
pub fn advisory_key(name: &str) -> i64 {
    let digest = Sha256::digest(format!("zerotrace:{name}").as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(b)
}

fn local_names() -> Arc<Mutex<HashSet<String>>> {
    static NAMES: OnceLock<Arc<Mutex<HashSet<String>>>> = OnceLock::new();
    NAMES
        .get_or_init(|| Arc::new(Mutex::new(HashSet::new())))
        .clone()
}

impl ExclusiveGuard {
    /// Within this process: `None` when a guard of that name is alive.
    pub(crate) fn local(name: &str) -> Option<ExclusiveGuard> {
        let names = local_names();
        if !names.lock().insert(name.to_string()) {
            return None;
        }
        Some(ExclusiveGuard {
            name: name.to_string(),
            pg: None,
            local: Some(names),
        })
    }

    /// Across every process of a PostgreSQL deployment.
    pub(crate) async fn postgres(
        pool: &sqlx::PgPool,
        name: &str,
    ) -> crate::Result<Option<ExclusiveGuard>> {
        // Out of the pool: the lock lives as long as this session, which no one else uses.
        let mut conn = pool.acquire().await?.detach();
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(advisory_key(name))
            .fetch_one(&mut conn)
            .await?;
        if !got {
            let _ = sqlx::Connection::close(conn).await;
            return Ok(None);
        }
        Ok(Some(ExclusiveGuard {
            name: name.to_string(),
            pg: Some(conn),
            local: None,
        }))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Ends the exclusive hold now.
    pub async fn release(mut self) {
        if let Some(mut conn) = self.pg.take() {
            let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(advisory_key(&self.name))
                .execute(&mut conn)
                .await;
            let _ = sqlx::Connection::close(conn).await;
        }
    }
}

impl Drop for ExclusiveGuard {
    fn drop(&mut self) {
        if let Some(names) = self.local.take() {
            names.lock().remove(&self.name);
        }
        // A PostgreSQL connection dropped here closes its socket: the server ends the session
        // and with it the lock.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable_and_distinct() {
        assert_eq!(advisory_key("feeds-sync"), advisory_key("feeds-sync"));
        assert_ne!(advisory_key("feeds-sync"), advisory_key("rematch"));
    }

    #[test]
    fn a_local_name_is_held_once() {
        let a = ExclusiveGuard::local("test-local-once").unwrap();
        assert!(ExclusiveGuard::local("test-local-once").is_none());
        drop(a);
        assert!(ExclusiveGuard::local("test-local-once").is_some());
    }
}

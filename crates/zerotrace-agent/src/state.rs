//! The agent's state directory: its identity (0600), what it last queued, and the spool.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// Who this agent is to the server, from enrollment. Holds a bearer token: owner-only file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub server: String,
    pub agent_id: String,
    pub agent_token: String,
    pub report_interval_s: u64,
}

/// What the agent remembers between runs about its reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportState {
    /// `inventory_digest` (hex) of the last report queued for sending.
    pub last_digest: Option<String>,
    /// When the last full report was queued (Unix seconds).
    pub last_full_report_at: Option<i64>,
}

pub struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    /// Opens (creating, owner-only) the state directory.
    pub fn open(dir: &Path) -> anyhow::Result<StateDir> {
        fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the state directory {}", dir.display()))?;
        set_mode(dir, 0o700)?;
        Ok(StateDir {
            dir: dir.to_path_buf(),
        })
    }

    #[cfg(test)]
    pub fn path(&self) -> &Path {
        &self.dir
    }

    pub fn spool_dir(&self) -> PathBuf {
        self.dir.join("spool")
    }

    fn identity_path(&self) -> PathBuf {
        self.dir.join("identity.json")
    }

    /// The stored identity, if enrolled. A corrupt file is an error, not a silent re-enroll.
    pub fn identity(&self) -> anyhow::Result<Option<Identity>> {
        read_json(&self.identity_path())
    }

    pub fn save_identity(&self, identity: &Identity) -> anyhow::Result<()> {
        write_atomic(
            &self.identity_path(),
            &serde_json::to_vec_pretty(identity)?,
            0o600,
        )
    }

    /// Forgets the identity (the server refused its token); the next step enrolls again.
    pub fn forget_identity(&self) -> anyhow::Result<()> {
        match fs::remove_file(self.identity_path()) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    pub fn report_state(&self) -> anyhow::Result<ReportState> {
        Ok(read_json(&self.dir.join("state.json"))?.unwrap_or_default())
    }

    pub fn save_report_state(&self, state: &ReportState) -> anyhow::Result<()> {
        write_atomic(
            &self.dir.join("state.json"),
            &serde_json::to_vec_pretty(state)?,
            0o600,
        )
    }
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> anyhow::Result<Option<T>> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .with_context(|| format!("{} is corrupt", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Writes `bytes` to a temporary file with `mode`, syncs it, and renames it over `path`: a crash
/// leaves the old file or the new one, never half of one.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()));
    let result = (|| -> anyhow::Result<()> {
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(mode);
        }
        let mut f = opts
            .open(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        set_mode(&tmp, mode)?;
        fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))?;
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn set_mode(path: &Path, mode: u32) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .with_context(|| format!("cannot set permissions on {}", path.display()))?;
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_private_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(&dir.path().join("state")).unwrap();
        assert_eq!(state.identity().unwrap(), None);
        let id = Identity {
            server: "http://127.0.0.1:1".into(),
            agent_id: "a1".into(),
            agent_token: "secret-token".into(),
            report_interval_s: 3600,
        };
        state.save_identity(&id).unwrap();
        assert_eq!(state.identity().unwrap(), Some(id));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&state.path().join("identity.json")), 0o600);
            assert_eq!(mode(state.path()), 0o700);
        }
        state.forget_identity().unwrap();
        assert_eq!(state.identity().unwrap(), None);
        state.forget_identity().unwrap();
    }

    #[test]
    fn corrupt_identity_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        fs::write(dir.path().join("identity.json"), "{not json").unwrap();
        let e = state.identity().unwrap_err();
        assert!(e.to_string().contains("corrupt"), "{e}");
    }
}

//! The on-disk spool: reports waiting for the server, oldest first, bounded in count and bytes.
//!
//! Each report is one gzip file named `<sequence>-<report_id>.json.gz`, written atomically, so a
//! crash or kill at any moment leaves whole reports. A report keeps its `report_id` through every
//! retry and restart, so the server stores it once however often it is sent. When the bounds
//! are reached the oldest reports are dropped, and every drop is logged as an error naming the
//! report: the newest inventory is the one worth delivering, and nothing goes silently.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;
use uuid::Uuid;

use crate::state::write_atomic;

/// How much may wait on disk.
#[derive(Debug, Clone, Copy)]
pub struct SpoolLimits {
    pub max_reports: usize,
    pub max_bytes: u64,
}

impl Default for SpoolLimits {
    fn default() -> Self {
        SpoolLimits {
            max_reports: 100,
            max_bytes: 64 << 20,
        }
    }
}

/// One spooled report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolEntry {
    pub path: PathBuf,
    pub sequence: u64,
    pub report_id: Uuid,
    pub size: u64,
}

impl SpoolEntry {
    pub fn read(&self) -> anyhow::Result<Vec<u8>> {
        fs::read(&self.path).with_context(|| format!("cannot read {}", self.path.display()))
    }
}

pub struct Spool {
    dir: PathBuf,
    limits: SpoolLimits,
}

impl Spool {
    pub fn open(dir: &Path, limits: SpoolLimits) -> anyhow::Result<Spool> {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(Spool {
            dir: dir.to_path_buf(),
            limits,
        })
    }

    /// The spooled reports, oldest first. Files that are not spool entries are left alone.
    pub fn entries(&self) -> anyhow::Result<Vec<SpoolEntry>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir)
            .with_context(|| format!("cannot list {}", self.dir.display()))?
        {
            let entry = entry?;
            let name = entry.file_name();
            let Some(parsed) = name.to_str().and_then(parse_name) else {
                continue;
            };
            let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
            out.push(SpoolEntry {
                path: entry.path(),
                sequence: parsed.0,
                report_id: parsed.1,
                size,
            });
        }
        out.sort_by_key(|e| e.sequence);
        Ok(out)
    }

    pub fn oldest(&self) -> anyhow::Result<Option<SpoolEntry>> {
        Ok(self.entries()?.into_iter().next())
    }

    pub fn len(&self) -> anyhow::Result<usize> {
        Ok(self.entries()?.len())
    }

    /// Adds a report (already gzip-encoded). Returns the older reports dropped to stay within
    /// the bounds; the caller logs each one. The report just added is never dropped.
    pub fn push(&self, report_id: Uuid, gzip_body: &[u8]) -> anyhow::Result<Vec<SpoolEntry>> {
        let existing = self.entries()?;
        let sequence = existing.last().map_or(1, |e| e.sequence + 1);
        let path = self.dir.join(format!("{sequence:016}-{report_id}.json.gz"));
        write_atomic(&path, gzip_body, 0o600)?;
        let mut count = existing.len() + 1;
        let mut bytes: u64 = existing.iter().map(|e| e.size).sum::<u64>() + gzip_body.len() as u64;
        let mut dropped = Vec::new();
        for old in existing {
            if count <= self.limits.max_reports && bytes <= self.limits.max_bytes {
                break;
            }
            fs::remove_file(&old.path)
                .with_context(|| format!("cannot remove {}", old.path.display()))?;
            count -= 1;
            bytes -= old.size;
            dropped.push(old);
        }
        Ok(dropped)
    }

    /// Removes a delivered (or permanently refused) report.
    pub fn remove(&self, entry: &SpoolEntry) -> anyhow::Result<()> {
        match fs::remove_file(&entry.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("cannot remove {}", entry.path.display()))
            }
            _ => Ok(()),
        }
    }

    /// Moves a report the server refused for good (400, 413) to `rejected/` for inspection,
    /// keeping only the most recent few there.
    pub fn reject(&self, entry: &SpoolEntry) -> anyhow::Result<PathBuf> {
        let dir = self.dir.join("rejected");
        fs::create_dir_all(&dir)?;
        // Named by when it was refused, so the newest ones are the ones kept.
        let refused_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let target = dir.join(format!(
            "{refused_at:024}-{}",
            entry.path.file_name().unwrap_or_default().to_string_lossy()
        ));
        fs::rename(&entry.path, &target)?;
        let mut kept: Vec<PathBuf> = fs::read_dir(&dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        kept.sort();
        let excess = kept.len().saturating_sub(10);
        for old in kept.into_iter().take(excess) {
            let _ = fs::remove_file(old);
        }
        Ok(target)
    }
}

fn parse_name(name: &str) -> Option<(u64, Uuid)> {
    let stem = name.strip_suffix(".json.gz")?;
    let (seq, id) = stem.split_once('-')?;
    Some((seq.parse().ok()?, Uuid::parse_str(id).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oldest_first_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), SpoolLimits::default()).unwrap();
        let ids: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
        for id in &ids {
            assert!(spool.push(*id, b"gz").unwrap().is_empty());
        }
        fs::write(dir.path().join("unrelated.txt"), "x").unwrap();
        let reopened = Spool::open(dir.path(), SpoolLimits::default()).unwrap();
        let got: Vec<Uuid> = reopened
            .entries()
            .unwrap()
            .iter()
            .map(|e| e.report_id)
            .collect();
        assert_eq!(got, ids);
        let first = reopened.oldest().unwrap().unwrap();
        assert_eq!(first.read().unwrap(), b"gz");
        reopened.remove(&first).unwrap();
        reopened.remove(&first).unwrap();
        assert_eq!(reopened.len().unwrap(), 2);
        // New entries go after the survivors even with gaps in the numbering.
        let late = Uuid::new_v4();
        reopened.push(late, b"gz").unwrap();
        assert_eq!(reopened.entries().unwrap().last().unwrap().report_id, late);
    }

    #[test]
    fn bounds_drop_the_oldest_and_say_which() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(
            dir.path(),
            SpoolLimits {
                max_reports: 3,
                max_bytes: 1000,
            },
        )
        .unwrap();
        let ids: Vec<Uuid> = (0..5).map(|_| Uuid::new_v4()).collect();
        let mut dropped = Vec::new();
        for id in &ids {
            dropped.extend(spool.push(*id, &[0u8; 100]).unwrap());
        }
        let dropped: Vec<Uuid> = dropped.iter().map(|e| e.report_id).collect();
        assert_eq!(dropped, ids[..2]);
        let kept: Vec<Uuid> = spool
            .entries()
            .unwrap()
            .iter()
            .map(|e| e.report_id)
            .collect();
        assert_eq!(kept, ids[2..]);

        // The byte bound: a big report pushes out older ones, but never itself.
        let big = Uuid::new_v4();
        let dropped = spool.push(big, &[0u8; 950]).unwrap();
        assert_eq!(dropped.len(), 3);
        let huge = Uuid::new_v4();
        let dropped = spool.push(huge, &[0u8; 5000]).unwrap();
        assert_eq!(
            dropped.iter().map(|e| e.report_id).collect::<Vec<_>>(),
            [big]
        );
        assert_eq!(spool.entries().unwrap()[0].report_id, huge);
    }

    #[test]
    fn rejected_reports_are_kept_aside_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), SpoolLimits::default()).unwrap();
        for _ in 0..12 {
            spool.push(Uuid::new_v4(), b"gz").unwrap();
            let e = spool.oldest().unwrap().unwrap();
            let target = spool.reject(&e).unwrap();
            assert!(target.exists());
        }
        assert_eq!(spool.len().unwrap(), 0);
        assert_eq!(
            fs::read_dir(dir.path().join("rejected")).unwrap().count(),
            10
        );
    }
}

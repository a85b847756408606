//! Checks systemd unit files with the real `systemd-analyze`, without a running systemd.
//!
//! `systemd-analyze verify` checks every setting and that every command a unit runs exists
//! and is executable, so the units are verified inside a scratch root (`--root`): this host's
//! own system units (the targets a unit depends on), the units under test in
//! `/etc/systemd/system`, and the executables they name, installed at the paths the units use.
//! `systemd-analyze security --offline` then scores each service's hardening.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

/// A scratch root holding units to check. Removed on drop.
pub struct UnitRoot {
    dir: tempfile::TempDir,
}

impl UnitRoot {
    /// A root with this host's system units and `/bin/sh` and `/bin/kill` (units run them).
    pub fn new() -> anyhow::Result<UnitRoot> {
        let dir = tempfile::tempdir()?;
        let root = dir.path();
        let system = ["/usr/lib/systemd/system", "/lib/systemd/system"]
            .into_iter()
            .map(Path::new)
            .find(|p| p.is_dir())
            .context("no system unit directory: is systemd installed?")?;
        copy_dir(system, &root.join("usr/lib/systemd/system"))?;
        std::fs::create_dir_all(root.join("etc/systemd/system"))?;
        std::fs::create_dir_all(root.join("usr/bin"))?;
        // Merged /usr, as on current Debian and Fedora.
        std::os::unix::fs::symlink("usr/bin", root.join("bin"))?;
        let unit_root = UnitRoot { dir };
        for tool in ["sh", "kill"] {
            let host = which(tool).with_context(|| format!("no {tool} on this host"))?;
            unit_root.install_executable(&host, &format!("/usr/bin/{tool}"))?;
        }
        Ok(unit_root)
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Installs `unit` (a file) as `/etc/systemd/system/<its file name>`.
    pub fn add_unit(&self, unit: &Path) -> anyhow::Result<()> {
        let name = unit.file_name().context("unit without a file name")?;
        std::fs::copy(unit, self.path().join("etc/systemd/system").join(name))
            .with_context(|| format!("copying {}", unit.display()))?;
        Ok(())
    }

    /// Installs the executable `from` at `at` (an absolute path inside the root): a hard link
    /// when possible (test binaries are large), else a copy.
    pub fn install_executable(&self, from: &Path, at: &str) -> anyhow::Result<()> {
        let dest = self.path().join(at.trim_start_matches('/'));
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let from = from.canonicalize()?;
        if std::fs::hard_link(&from, &dest).is_err() {
            std::fs::copy(&from, &dest)
                .with_context(|| format!("copying {} to {}", from.display(), dest.display()))?;
        }
        Ok(())
    }

    /// `systemd-analyze verify` of the named units (template instances allowed, e.g.
    /// `zerotrace-api@8081.service`). Fails on a non-zero exit and on any warning it prints.
    pub fn verify(&self, units: &[&str]) -> anyhow::Result<()> {
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(format!("--root={}", self.path().display()))
            .args(units)
            .output()
            .context("cannot run systemd-analyze (Debian's systemd package)")?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if !out.status.success() || !text.trim().is_empty() {
            bail!("systemd-analyze verify {units:?} ({}):\n{text}", out.status);
        }
        Ok(())
    }

    /// The overall exposure score (0.0 best … 10.0 worst) `systemd-analyze security` gives a
    /// service, with its full report.
    pub fn exposure(&self, unit: &str) -> anyhow::Result<(f64, String)> {
        let out = Command::new("systemd-analyze")
            .args(["security", "--offline=yes", "--no-pager"])
            .arg(format!("--root={}", self.path().display()))
            .arg(unit)
            .output()
            .context("cannot run systemd-analyze")?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let score = text
            .lines()
            .find_map(|l| {
                let rest = l.split("Overall exposure level for ").nth(1)?;
                rest.split_whitespace().nth(1)?.parse::<f64>().ok()
            })
            .with_context(|| {
                format!(
                    "no exposure level for {unit} in:\n{text}{}",
                    String::from_utf8_lossy(&out.stderr)
                )
            })?;
        Ok((score, text))
    }
}

fn which(tool: &str) -> Option<PathBuf> {
    ["/usr/bin", "/bin"]
        .iter()
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.exists())
}

fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        let kind = entry.file_type()?;
        if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path())?, &target)?;
        } else if kind.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

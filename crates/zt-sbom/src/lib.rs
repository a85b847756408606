//! Readers of SBOMs, lock files and package databases into inventory apps: CycloneDX 1.0–1.7
//! JSON, SPDX 2.2/2.3 JSON, `Cargo.lock`, the agent's report JSON, dpkg status and the apk
//! installed database (the last two through the agent's own parsers in `zt-collect`).
//!
//! [`read_path`] / [`read_bytes`] detect the format from the content (and the file name for
//! `Cargo.lock`), and say which distribution release the document describes when it does
//! (an operating-system component, purl `distro=` qualifiers), or guess it from package
//! versions with a warning.

mod cargo_lock;
mod cyclonedx;
pub mod distro;
pub mod purl;
mod spdx;

use std::collections::HashMap;
use std::path::Path;

use zt_inventory::{App, OsInfo};

pub use distro::parse_distro_arg;
pub use purl::{app_from_purl, PurlApp, PurlError};

/// The input formats understood.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    CycloneDx,
    Spdx,
    CargoLock,
    AgentReport,
    DpkgStatus,
    ApkInstalled,
    /// A directory holding a file system (an unpacked image or a mounted disk), read with the
    /// agent's collectors.
    RootFs,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::CycloneDx => "CycloneDX JSON",
            Format::Spdx => "SPDX JSON",
            Format::CargoLock => "Cargo.lock",
            Format::AgentReport => "agent report JSON",
            Format::DpkgStatus => "dpkg status",
            Format::ApkInstalled => "apk installed database",
            Format::RootFs => "root file system",
        }
    }
}

/// What an input lists.
#[derive(Debug, Clone)]
pub struct Inventory {
    pub format: Format,
    /// The operating system the document describes, when it says or when it could be guessed
    /// (see `warnings`).
    pub os: Option<OsInfo>,
    pub apps: Vec<App>,
    /// Entries left out and guesses made, for the user to see.
    pub warnings: Vec<String>,
    /// Releases named by purl `distro=` qualifiers, with how many purls named each.
    distro_hints: HashMap<OsInfo, usize>,
    skipped: usize,
}

/// Skipped entries reported one by one before they are only counted.
const MAX_SKIP_NOTES: usize = 10;

impl Inventory {
    pub(crate) fn new(format: Format) -> Inventory {
        Inventory {
            format,
            os: None,
            apps: Vec::new(),
            warnings: Vec::new(),
            distro_hints: HashMap::new(),
            skipped: 0,
        }
    }

    pub(crate) fn note_distro(&mut self, os: OsInfo) {
        *self.distro_hints.entry(os).or_default() += 1;
    }

    pub(crate) fn skipped(&mut self, note: String) {
        self.skipped += 1;
        if self.skipped <= MAX_SKIP_NOTES {
            self.warnings.push(format!("skipped {note}"));
        }
    }

    /// Fills in the OS from purl hints or a guess, removes exact duplicates, and summarizes
    /// skipped entries.
    fn finish(mut self) -> Inventory {
        if self.os.is_none() {
            // The most named release; a named release beats a bare distribution name.
            let best = self
                .distro_hints
                .iter()
                .max_by_key(|(os, n)| (!os.version_id.is_empty(), **n, os.id.clone()));
            if let Some((os, _)) = best {
                self.os = Some(os.clone());
            }
        }
        let release_unknown = self.os.as_ref().is_none_or(|o| o.version_id.is_empty());
        if release_unknown && self.apps.iter().any(|a| a.source.is_distro()) {
            if let Some(guess) = distro::guess_os(&self.apps) {
                self.warnings.push(format!(
                    "the input does not name its distribution release; guessed {} {} from package versions (override with --distro)",
                    guess.id, guess.version_id
                ));
                self.os = Some(guess);
            } else {
                self.warnings.push(
                    "the input does not name its distribution release; distro packages match only with --distro".into(),
                );
            }
        }
        if self.skipped > MAX_SKIP_NOTES {
            self.warnings.push(format!(
                "skipped {} more entries",
                self.skipped - MAX_SKIP_NOTES
            ));
        }
        self.apps.sort();
        self.apps.dedup();
        self
    }
}

/// Bad input: which file, which line when known, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct SbomError {
    pub file: String,
    pub line: Option<usize>,
    pub message: String,
}

impl SbomError {
    pub(crate) fn new(file: &str, line: Option<usize>, message: impl Into<String>) -> SbomError {
        SbomError {
            file: file.to_string(),
            line,
            message: message.into(),
        }
    }

    pub(crate) fn json(file: &str, e: &serde_json::Error) -> SbomError {
        // serde_json's message already ends with "at line L column C".
        let line = (e.line() > 0).then_some(e.line());
        SbomError::new(file, line, e.to_string())
    }
}

/// Reads a file, `-` for standard input, or a directory (a root file system, read with the
/// agent's collectors).
pub fn read_path(path: &Path) -> Result<Inventory, SbomError> {
    let display = path.display().to_string();
    if path == Path::new("-") {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes)
            .map_err(|e| SbomError::new("<stdin>", None, e.to_string()))?;
        return read_bytes(&bytes, "<stdin>");
    }
    if path.is_dir() {
        return Ok(read_root_fs(path));
    }
    let bytes = std::fs::read(path).map_err(|e| SbomError::new(&display, None, e.to_string()))?;
    read_bytes(&bytes, &display)
}

fn read_root_fs(path: &Path) -> Inventory {
    let collection = zt_collect::collect(&zt_collect::CollectOptions::under_root(path));
    let mut inv = Inventory::new(Format::RootFs);
    inv.os = (!collection.os.id.is_empty()).then_some(collection.os);
    inv.apps = collection.apps;
    inv.warnings = collection.warnings;
    inv.warnings
        .extend(collection.errors.iter().map(|e| e.to_string()));
    inv.finish()
}

/// Detects the format of `bytes` (`file` names them in errors; a name ending in `Cargo.lock`
/// also selects that format).
pub fn detect(bytes: &[u8], file: &str) -> Result<Format, SbomError> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let line = bytes[..e.valid_up_to()]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1;
        SbomError::new(
            file,
            Some(line),
            "not UTF-8 text: not an SBOM, lock file or package database",
        )
    })?;
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    if trimmed.starts_with('{') {
        return detect_json(trimmed.as_bytes(), file);
    }
    if trimmed.starts_with('<') {
        return Err(SbomError::new(
            file,
            None,
            "XML documents are not read: use CycloneDX or SPDX JSON",
        ));
    }
    if file.ends_with("Cargo.lock") || text.contains("[[package]]") {
        return Ok(Format::CargoLock);
    }
    let mut lines = text.lines().map(str::trim_end).filter(|l| !l.is_empty());
    if let Some(first) = lines.next() {
        if first.starts_with("Package:") || text.contains("\nPackage: ") {
            return Ok(Format::DpkgStatus);
        }
        if first.len() >= 2 && first.as_bytes()[1] == b':' && text.contains("\nP:")
            || first.starts_with("P:")
        {
            return Ok(Format::ApkInstalled);
        }
    }
    Err(SbomError::new(
        file,
        None,
        "unrecognized input: expected CycloneDX or SPDX JSON, an agent report, a Cargo.lock, dpkg status or an apk installed database",
    ))
}

fn detect_json(bytes: &[u8], file: &str) -> Result<Format, SbomError> {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "bomFormat")]
        bom_format: Option<serde::de::IgnoredAny>,
        #[serde(rename = "spdxVersion")]
        spdx_version: Option<serde::de::IgnoredAny>,
        report_id: Option<serde::de::IgnoredAny>,
        apps: Option<serde::de::IgnoredAny>,
    }
    let probe: Probe = serde_json::from_slice(bytes).map_err(|e| SbomError::json(file, &e))?;
    Ok(if probe.bom_format.is_some() {
        Format::CycloneDx
    } else if probe.spdx_version.is_some() {
        Format::Spdx
    } else if probe.report_id.is_some() || probe.apps.is_some() {
        Format::AgentReport
    } else {
        return Err(SbomError::new(
            file,
            None,
            "JSON, but not CycloneDX (bomFormat), SPDX (spdxVersion) or an agent report (report_id, apps)",
        ));
    })
}

/// Reads bytes of any supported format (`file` names them in errors).
pub fn read_bytes(bytes: &[u8], file: &str) -> Result<Inventory, SbomError> {
    let format = detect(bytes, file)?;
    read_as(bytes, file, format)
}

/// Reads bytes of a known format.
pub fn read_as(bytes: &[u8], file: &str, format: Format) -> Result<Inventory, SbomError> {
    let text = || {
        std::str::from_utf8(bytes)
            .map_err(|_| SbomError::new(file, None, "not UTF-8 text"))
            .map(|t| t.trim_start_matches('\u{feff}'))
    };
    let inv = match format {
        Format::CycloneDx => cyclonedx::parse(bytes, file)?,
        Format::Spdx => spdx::parse(bytes, file)?,
        Format::CargoLock => cargo_lock::parse(text()?, file)?,
        Format::AgentReport => {
            let report = zt_inventory::parse_report(bytes)
                .map_err(|e| SbomError::new(file, None, format!("invalid agent report: {e}")))?;
            let mut inv = Inventory::new(Format::AgentReport);
            inv.os = Some(report.host.os);
            inv.apps = report.apps;
            inv
        }
        Format::DpkgStatus => {
            let entries = zt_collect::dpkg::parse_status_entries(text()?)
                .map_err(|e| SbomError::new(file, Some(e.line), e.message))?;
            let mut inv = Inventory::new(Format::DpkgStatus);
            inv.apps = entries.apps;
            for s in entries.skipped {
                inv.skipped(format!("line {}: {}", s.line, s.reason));
            }
            inv
        }
        Format::ApkInstalled => {
            let entries = zt_collect::apk::parse_installed_entries(text()?)
                .map_err(|e| SbomError::new(file, Some(e.line), e.message))?;
            let mut inv = Inventory::new(Format::ApkInstalled);
            inv.apps = entries.apps;
            for s in entries.skipped {
                inv.skipped(format!("line {}: {}", s.line, s.reason));
            }
            inv
        }
        Format::RootFs => {
            return Err(SbomError::new(
                file,
                None,
                "a root file system is read with read_path",
            ))
        }
    };
    Ok(inv.finish())
}

/// The body of the fuzz targets, also run by a plain test: reading any bytes as any format
/// never panics.
#[doc(hidden)]
pub fn fuzz_read(data: &[u8], format: Option<Format>) {
    let _ = match format {
        Some(f) => read_as(data, "fuzz", f),
        None => read_bytes(data, "fuzz"),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_formats() {
        let d = |b: &str, f: &str| detect(b.as_bytes(), f);
        assert_eq!(
            d(r#"{"bomFormat":"CycloneDX"}"#, "x"),
            Ok(Format::CycloneDx)
        );
        assert_eq!(d(r#"  {"spdxVersion":"SPDX-2.3"}"#, "x"), Ok(Format::Spdx));
        assert_eq!(
            d(r#"{"report_id":"x","apps":[]}"#, "x"),
            Ok(Format::AgentReport)
        );
        assert_eq!(d("version = 4\n", "/a/Cargo.lock"), Ok(Format::CargoLock));
        assert_eq!(
            d("Package: bash\nVersion: 5\n", "status"),
            Ok(Format::DpkgStatus)
        );
        assert_eq!(
            d("C:Q1abc=\nP:musl\nV:1.2\n", "installed"),
            Ok(Format::ApkInstalled)
        );
        let e = d("<bom/>", "bom.xml").unwrap_err();
        assert!(e.message.contains("XML"));
        let e = d("hello", "notes.txt").unwrap_err();
        assert_eq!(e.file, "notes.txt");
        let e = d("{\"a\":\n1,", "broken.json").unwrap_err();
        assert_eq!(e.line, Some(2));
        assert!(detect(b"\xff\xfe\x00", "bin").is_err());
    }

    #[test]
    fn fuzz_body_on_garbage() {
        for input in [
            &b""[..],
            b"{",
            b"[[package]]\nname=1",
            b"Package: x\n  y",
            b"P:\nV:",
            b"\xff",
        ] {
            fuzz_read(input, None);
            for f in [
                Format::CycloneDx,
                Format::Spdx,
                Format::CargoLock,
                Format::DpkgStatus,
            ] {
                fuzz_read(input, Some(f));
            }
        }
    }
}

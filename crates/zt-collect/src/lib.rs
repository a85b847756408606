//! Collectors that list installed software on a host (dpkg, rpm, apk, pip, npm, cargo, brew,
//! snap, flatpak, macOS, Windows).
//!
//! Every format has a pure parser that works on bytes or text and is tested on real fixtures on
//! every platform (`dpkg::parse_status`, `apk::parse_installed`, `os_release::parse`,
//! `rpm::header::parse`, `macos::parse_info_plist`, `windows::app_from_uninstall_entry`...), and a
//! collector that finds the files on a host (or under a mounted root, for tests and images).
//! Code that needs the OS itself (the Windows registry, `/Applications`) only builds there.

pub mod apk;
pub mod cargo;
pub mod dpkg;
mod error;
pub mod flatpak;
pub mod homebrew;
pub mod macos;
pub mod npm;
pub mod os_release;
pub mod purl;
pub mod python;
pub mod rpm;
pub mod snap;
pub mod windows;

use std::path::{Path, PathBuf};

pub use error::{CollectError, ParseError};
pub use zt_inventory::{App, AppSource, OsInfo};

/// What the collectors found on one host.
#[derive(Debug, Default)]
pub struct Collection {
    pub os: OsInfo,
    pub apps: Vec<App>,
    /// Entries skipped or formats not read (e.g. an apk entry without a version, a Berkeley DB
    /// rpmdb without `rpm`): worth a log line; the rest of the inventory is complete.
    pub warnings: Vec<String>,
    /// Package databases found but not readable: the app list is incomplete, and a reporter
    /// should not present it as the host's full inventory.
    pub errors: Vec<CollectError>,
}

impl Collection {
    pub(crate) fn warn(&mut self, collector: &str, message: impl std::fmt::Display) {
        self.warnings.push(format!("{collector}: {message}"));
    }
}

/// Where to collect from: `/` for the running host, or the root of a mounted file system.
#[derive(Debug, Clone)]
pub struct CollectOptions {
    pub root: PathBuf,
    /// Query the running system beyond its files (the Windows registry, `rpm -qa` for old
    /// rpmdb formats). Only meaningful when `root` is the running host's `/`.
    pub live_system: bool,
}

impl Default for CollectOptions {
    fn default() -> Self {
        CollectOptions {
            root: PathBuf::from("/"),
            live_system: true,
        }
    }
}

impl CollectOptions {
    /// Collect from the files under `root` only.
    pub fn under_root(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        let live_system = root == Path::new("/");
        CollectOptions { root, live_system }
    }

    /// `abs` (an absolute path on the host) below the collection root.
    pub fn path(&self, abs: &str) -> PathBuf {
        self.root.join(abs.trim_start_matches('/'))
    }
}

/// Runs every collector and returns the host's OS and apps, sorted, with package URLs set.
pub fn collect(options: &CollectOptions) -> Collection {
    let mut out = Collection {
        os: os_release::collect(options),
        ..Collection::default()
    };
    dpkg::collect(options, &mut out);
    rpm::collect(options, &mut out);
    apk::collect(options, &mut out);
    python::collect(options, &mut out);
    npm::collect(options, &mut out);
    cargo::collect(options, &mut out);
    homebrew::collect(options, &mut out);
    snap::collect(options, &mut out);
    flatpak::collect(options, &mut out);
    macos::collect(options, &mut out);
    windows::collect(options, &mut out);
    let os = out.os.clone();
    purl::assign(&mut out.apps, &os);
    out.apps.sort();
    out.apps.dedup();
    out
}

/// Reads a text file, `Ok(None)` when it does not exist. Invalid UTF-8 is replaced rather than
/// refused: package databases are ASCII in practice, and one odd description byte must not hide
/// a whole database.
pub(crate) fn read_text_if_exists(path: &Path) -> Result<Option<String>, CollectError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        })),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => Ok(None),
        Err(e) => Err(CollectError::io(path, e)),
    }
}

/// The entries of a directory sorted by name; empty when it does not exist or is unreadable.
pub(crate) fn dir_entries(path: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = match std::fs::read_dir(path) {
        Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

/// Home directories under the root (`/root` and `/home/*`, `/Users/*` on macOS).
pub(crate) fn home_dirs(options: &CollectOptions) -> Vec<PathBuf> {
    let mut homes = vec![options.path("/root")];
    for base in ["/home", "/Users"] {
        homes.extend(
            dir_entries(&options.path(base))
                .into_iter()
                .filter(|p| p.is_dir()),
        );
    }
    homes.retain(|p| p.is_dir());
    homes
}

/// A file name as UTF-8 text, if it is.
pub(crate) fn file_name(path: &Path) -> Option<&str> {
    path.file_name().and_then(|n| n.to_str())
}

/// The bodies of the `cargo fuzz` targets in `fuzz/`, here so that plain tests run them over
/// real and garbage inputs on stable Rust. Each must return without panicking for any input.
#[doc(hidden)]
pub mod fuzz_bodies {
    pub fn dpkg_status(data: &[u8]) {
        let text = String::from_utf8_lossy(data);
        if let Ok(entries) = crate::dpkg::parse_status_entries(&text) {
            for app in entries.apps {
                assert!(!app.name.is_empty() && !app.version.is_empty());
            }
        }
    }

    pub fn apk_installed(data: &[u8]) {
        let text = String::from_utf8_lossy(data);
        if let Ok(apps) = crate::apk::parse_installed(&text) {
            for app in apps {
                assert!(!app.name.is_empty() && !app.version.is_empty());
            }
        }
    }

    pub fn os_release(data: &[u8]) {
        let _ = crate::os_release::parse(&String::from_utf8_lossy(data));
    }

    pub fn plist_app(data: &[u8]) {
        if let Ok(app) = crate::macos::parse_info_plist(data) {
            assert!(!app.name.is_empty() && !app.version.is_empty());
        }
    }

    pub fn rpm_header(data: &[u8]) {
        if let Ok(p) = crate::rpm::header::parse(data) {
            assert!(!p.name.is_empty());
            let _ = crate::rpm::app_from_package(&p);
        }
    }

    /// A SQLite file image: walks whatever table B-trees it has (the Packages table if any).
    pub fn rpmdb_sqlite(data: &[u8]) {
        if let Ok(mut db) = crate::rpm::sqlite::Database::from_bytes(data.to_vec(), None) {
            let _ = crate::rpm::read_packages_table(&mut db);
        }
    }
}

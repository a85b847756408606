//! Python distributions: `*.dist-info/METADATA` and `*.egg-info` (`PKG-INFO`) in the
//! site-packages and dist-packages of every interpreter found under the usual prefixes
//! (system, `/usr/local`, Homebrew, pyenv, each user's `~/.local`).

use std::path::{Path, PathBuf};

use crate::{dir_entries, file_name, App, AppSource, CollectOptions, Collection};

/// `Name` and `Version` from core-metadata text (METADATA / PKG-INFO: RFC 822 style headers up
/// to the first blank line). `None` when either is missing.
pub fn parse_metadata(text: &str) -> Option<(String, String)> {
    let mut name = None;
    let mut version = None;
    for line in text.lines() {
        if line.trim().is_empty() {
            break;
        }
        if line.starts_with(char::is_whitespace) {
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if key.eq_ignore_ascii_case("Name") && name.is_none() && !value.is_empty() {
            name = Some(value.to_string());
        } else if key.eq_ignore_ascii_case("Version") && version.is_none() && !value.is_empty() {
            version = Some(value.to_string());
        }
    }
    Some((name?, version?))
}

/// `requests-2.31.0.dist-info` → (`requests`, `2.31.0`): the fallback when METADATA is
/// unreadable. Wheel names escape `-` in the project name as `_`, so the last `-` splits.
pub fn name_version_from_dir(dir_name: &str) -> Option<(String, String)> {
    let stem = dir_name
        .strip_suffix(".dist-info")
        .or_else(|| dir_name.strip_suffix(".egg-info"))?;
    // egg-info names may carry a `-py3.11` suffix.
    let stem = match stem.rsplit_once("-py") {
        Some((s, py)) if py.chars().all(|c| c.is_ascii_digit() || c == '.') => s,
        _ => stem,
    };
    let (name, version) = stem.split_once('-')?;
    (!name.is_empty() && !version.is_empty()).then(|| (name.to_string(), version.to_string()))
}

/// The distributions installed in one site-packages directory.
pub fn apps_in_site_dir(dir: &Path, out: &mut Collection) {
    for entry in dir_entries(dir) {
        let Some(fname) = file_name(&entry) else {
            continue;
        };
        let metadata = if fname.ends_with(".dist-info") {
            entry.join("METADATA")
        } else if fname.ends_with(".egg-info") {
            if entry.is_dir() {
                entry.join("PKG-INFO")
            } else {
                entry.clone()
            }
        } else {
            continue;
        };
        let parsed = std::fs::read(&metadata)
            .ok()
            .and_then(|b| parse_metadata(&String::from_utf8_lossy(&b)))
            .or_else(|| name_version_from_dir(fname));
        match parsed {
            Some((name, version)) => out.apps.push(App::new(name, version, AppSource::Pypi)),
            None => out.warn(
                "python",
                format_args!("{}: skipped: no Name/Version", metadata.display()),
            ),
        }
    }
}

/// Every site-packages / dist-packages directory under the root.
pub fn site_dirs(options: &CollectOptions) -> Vec<PathBuf> {
    let mut lib_dirs: Vec<PathBuf> = Vec::new();
    for prefix in [
        "/usr",
        "/usr/local",
        "/opt/homebrew",
        "/opt/conda",
        "/home/linuxbrew/.linuxbrew",
    ] {
        for lib in ["lib", "lib64"] {
            lib_dirs.push(options.path(prefix).join(lib));
        }
    }
    for home in crate::home_dirs(options) {
        lib_dirs.push(home.join(".local/lib"));
        for version in dir_entries(&home.join(".pyenv/versions")) {
            lib_dirs.push(version.join("lib"));
        }
    }
    let mut out: Vec<PathBuf> = Vec::new();
    let mut seen: Vec<PathBuf> = Vec::new();
    for lib in lib_dirs {
        for py in dir_entries(&lib) {
            if !file_name(&py).is_some_and(|n| n.starts_with("python")) {
                continue;
            }
            for site in ["site-packages", "dist-packages"] {
                let dir = py.join(site);
                if !dir.is_dir() {
                    continue;
                }
                // lib64 -> lib and similar symlinks: list each directory once.
                let canonical = dir.canonicalize().unwrap_or_else(|_| dir.clone());
                if !seen.contains(&canonical) {
                    seen.push(canonical);
                    out.push(dir);
                }
            }
        }
    }
    out
}

/// Collects the distributions of every site directory.
pub fn collect(options: &CollectOptions, out: &mut Collection) {
    for dir in site_dirs(options) {
        apps_in_site_dir(&dir, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_headers() {
        let text =
            "Metadata-Version: 2.1\nName: requests\nVersion: 2.31.0\nSummary: x\n\nName: body\n";
        assert_eq!(
            parse_metadata(text),
            Some(("requests".into(), "2.31.0".into()))
        );
        assert_eq!(parse_metadata("Name: x\n"), None);
        assert_eq!(parse_metadata(""), None);
    }

    #[test]
    fn dir_name_fallback() {
        assert_eq!(
            name_version_from_dir("typing_extensions-4.9.0.dist-info"),
            Some(("typing_extensions".into(), "4.9.0".into()))
        );
        assert_eq!(
            name_version_from_dir("six-1.16.0-py3.11.egg-info"),
            Some(("six".into(), "1.16.0".into()))
        );
        assert_eq!(name_version_from_dir("junk.dist-info"), None);
    }

    #[test]
    fn finds_every_interpreter_and_format() {
        let root = tempfile::tempdir().unwrap();
        let w = |rel: &str, text: &str| {
            let p = root.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        w(
            "usr/lib/python3/dist-packages/certifi-2022.9.24.egg-info/PKG-INFO",
            "Metadata-Version: 1.2\nName: certifi\nVersion: 2022.9.24\n",
        );
        w(
            "usr/lib/python3/dist-packages/six-1.16.0.egg-info",
            "Name: six\nVersion: 1.16.0\n",
        );
        w(
            "usr/local/lib/python3.11/site-packages/requests-2.31.0.dist-info/METADATA",
            "Name: requests\nVersion: 2.31.0\n",
        );
        w(
            "usr/local/lib/python3.11/site-packages/broken-1.0.dist-info/METADATA",
            "garbage",
        );
        w(
            "home/ann/.local/lib/python3.12/site-packages/rich-13.7.0.dist-info/METADATA",
            "Name: rich\nVersion: 13.7.0\n",
        );
        w(
            "root/.pyenv/versions/3.10.13/lib/python3.10/site-packages/pip-23.0.1.dist-info/METADATA",
            "Name: pip\nVersion: 23.0.1\n",
        );
        w("usr/lib/python3/dist-packages/not_a_dist.py", "");
        let mut out = Collection::default();
        collect(&CollectOptions::under_root(root.path()), &mut out);
        let mut got: Vec<_> = out
            .apps
            .iter()
            .map(|a| format!("{}={}", a.name, a.version))
            .collect();
        got.sort();
        assert_eq!(
            got,
            [
                "broken=1.0",
                "certifi=2022.9.24",
                "pip=23.0.1",
                "requests=2.31.0",
                "rich=13.7.0",
                "six=1.16.0"
            ]
        );
        assert!(out.apps.iter().all(|a| a.source == AppSource::Pypi));
    }
}

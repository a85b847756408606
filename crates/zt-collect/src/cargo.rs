//! Binaries installed with `cargo install`: `~/.cargo/.crates2.json` (or the older
//! `.crates.toml`) of each user.

use std::path::Path;

use crate::{App, AppSource, CollectError, CollectOptions, Collection, ParseError};

/// Splits an install key `ripgrep 14.1.0 (registry+https://github.com/rust-lang/crates.io-index)`
/// into name, version and source.
pub fn parse_install_key(key: &str) -> Option<(&str, &str, &str)> {
    let mut parts = key.splitn(3, ' ');
    let name = parts.next().filter(|s| !s.is_empty())?;
    let version = parts.next().filter(|s| !s.is_empty())?;
    let source = parts
        .next()
        .and_then(|s| s.strip_prefix('('))
        .and_then(|s| s.strip_suffix(')'))
        .unwrap_or("");
    Some((name, version, source))
}

/// True for the crates.io index (git or sparse protocol): only those versions are crates.io's.
pub fn is_crates_io(source: &str) -> bool {
    matches!(
        source,
        "registry+https://github.com/rust-lang/crates.io-index" | "sparse+https://index.crates.io/"
    )
}

fn app(name: &str, version: &str, source: &str) -> App {
    let mut app = App::new(name, version, AppSource::Cargo);
    if !is_crates_io(source) && !source.is_empty() {
        // A git or path install: the same name on crates.io may be a different crate.
        app.vendor = Some(source.to_string());
    }
    app
}

/// The installs listed in `.crates2.json`.
pub fn parse_crates2_json(bytes: &[u8]) -> Result<Vec<App>, ParseError> {
    #[derive(serde::Deserialize)]
    struct Crates2 {
        installs: std::collections::BTreeMap<String, serde::de::IgnoredAny>,
    }
    let doc: Crates2 =
        serde_json::from_slice(bytes).map_err(|e| ParseError::at_line(e.line(), e.to_string()))?;
    doc.installs
        .keys()
        .map(|k| {
            parse_install_key(k)
                .map(|(n, v, s)| app(n, v, s))
                .ok_or_else(|| {
                    ParseError::at_line(
                        1,
                        format!("install key {k:?} is not `name version (source)`"),
                    )
                })
        })
        .collect()
}

/// The installs listed in the `[v1]` table of `.crates.toml` (one `"key" = [bins]` per line).
pub fn parse_crates_toml(text: &str) -> Result<Vec<App>, ParseError> {
    let mut out = Vec::new();
    let mut in_v1 = false;
    for (idx, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.starts_with('[') && !line.starts_with("[\"") {
            in_v1 = line == "[v1]";
            continue;
        }
        if !in_v1 || line.is_empty() || line.starts_with('#') {
            continue;
        }
        let key = line
            .strip_prefix('"')
            .and_then(|l| l.split_once('"'))
            .map(|(k, _)| k)
            .ok_or_else(|| {
                ParseError::at_line(idx + 1, "expected `\"name version (source)\" = [...]`")
            })?;
        let (n, v, s) = parse_install_key(key).ok_or_else(|| {
            ParseError::at_line(
                idx + 1,
                format!("install key {key:?} is not `name version (source)`"),
            )
        })?;
        out.push(app(n, v, s));
    }
    Ok(out)
}

fn collect_home(home: &Path, out: &mut Collection) {
    let json = home.join(".cargo/.crates2.json");
    match std::fs::read(&json) {
        Ok(bytes) => {
            match parse_crates2_json(&bytes) {
                Ok(apps) => out.apps.extend(apps),
                Err(e) => out.errors.push(CollectError::parse(json, e)),
            }
            return;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return out.errors.push(CollectError::io(json, e)),
    }
    let toml = home.join(".cargo/.crates.toml");
    match crate::read_text_if_exists(&toml) {
        Ok(Some(text)) => match parse_crates_toml(&text) {
            Ok(apps) => out.apps.extend(apps),
            Err(e) => out.errors.push(CollectError::parse(toml, e)),
        },
        Ok(None) => {}
        Err(e) => out.errors.push(e),
    }
}

pub fn collect(options: &CollectOptions, out: &mut Collection) {
    for home in crate::home_dirs(options) {
        collect_home(&home, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JSON: &str = r#"{"installs":{"cargo-fuzz 0.13.2 (registry+https://github.com/rust-lang/crates.io-index)":{"bins":["cargo-fuzz"]},
        "mytool 0.1.0 (git+https://example.org/mytool#abc)":{"bins":["mytool"]},
        "ripgrep 14.1.0 (sparse+https://index.crates.io/)":{}}}"#;

    #[test]
    fn crates2_json() {
        let apps = parse_crates2_json(JSON.as_bytes()).unwrap();
        let got: Vec<_> = apps
            .iter()
            .map(|a| (a.name.as_str(), a.version.as_str(), a.vendor.is_some()))
            .collect();
        assert_eq!(
            got,
            [
                ("cargo-fuzz", "0.13.2", false),
                ("mytool", "0.1.0", true),
                ("ripgrep", "14.1.0", false)
            ]
        );
        assert!(parse_crates2_json(b"{\"installs\":{\"\":{}}}").is_err());
        assert!(parse_crates2_json(b"[]").is_err());
    }

    #[test]
    fn crates_toml_and_homes() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("home/ann/.cargo");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join(".crates.toml"),
            "[v1]\n\"bat 0.24.0 (registry+https://github.com/rust-lang/crates.io-index)\" = [\"bat\"]\n",
        )
        .unwrap();
        let rdir = root.path().join("root/.cargo");
        std::fs::create_dir_all(&rdir).unwrap();
        std::fs::write(rdir.join(".crates2.json"), JSON).unwrap();
        let mut out = Collection::default();
        collect(&CollectOptions::under_root(root.path()), &mut out);
        assert_eq!(out.apps.len(), 4, "{:?}", out.apps);
        assert!(out
            .apps
            .iter()
            .any(|a| a.name == "bat" && a.version == "0.24.0"));
        let e = parse_crates_toml("[v1]\nnonsense\n").unwrap_err();
        assert_eq!(e.line, 2);
    }
}

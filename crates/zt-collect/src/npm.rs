//! npm global packages: the top-level packages of each global `node_modules` (system prefixes,
//! Homebrew, nvm installs, and `~/.npm-global`).

use std::path::{Path, PathBuf};

use crate::{dir_entries, file_name, App, AppSource, CollectOptions, Collection, ParseError};

/// `name` and `version` of a package.json.
pub fn parse_package_json(bytes: &[u8]) -> Result<(String, String), ParseError> {
    #[derive(serde::Deserialize)]
    struct PackageJson {
        name: Option<String>,
        version: Option<String>,
    }
    let pkg: PackageJson =
        serde_json::from_slice(bytes).map_err(|e| ParseError::at_line(e.line(), e.to_string()))?;
    match (pkg.name, pkg.version) {
        (Some(n), Some(v)) if !n.trim().is_empty() && !v.trim().is_empty() => {
            Ok((n.trim().to_string(), v.trim().to_string()))
        }
        _ => Err(ParseError::at_line(
            1,
            "package.json without name or version",
        )),
    }
}

/// The packages directly inside one `node_modules` (and its `@scope/` folders).
pub fn apps_in_node_modules(dir: &Path, out: &mut Collection) {
    for entry in dir_entries(dir) {
        let Some(name) = file_name(&entry) else {
            continue;
        };
        if name.starts_with('.') {
            continue;
        }
        let packages = if name.starts_with('@') {
            dir_entries(&entry)
        } else {
            vec![entry.clone()]
        };
        for pkg in packages {
            let manifest = pkg.join("package.json");
            match std::fs::read(&manifest) {
                Ok(bytes) => match parse_package_json(&bytes) {
                    Ok((name, version)) => out.apps.push(App::new(name, version, AppSource::Npm)),
                    Err(e) => out.warn("npm", format_args!("{}: skipped: {e}", manifest.display())),
                },
                Err(_) => continue,
            }
        }
    }
}

/// Global `node_modules` directories under the root.
pub fn global_dirs(options: &CollectOptions) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = [
        "/usr/lib/node_modules",
        "/usr/local/lib/node_modules",
        "/opt/homebrew/lib/node_modules",
    ]
    .iter()
    .map(|p| options.path(p))
    .collect();
    for home in crate::home_dirs(options) {
        dirs.push(home.join(".npm-global/lib/node_modules"));
        for version in dir_entries(&home.join(".nvm/versions/node")) {
            dirs.push(version.join("lib/node_modules"));
        }
    }
    dirs.retain(|d| d.is_dir());
    dirs
}

pub fn collect(options: &CollectOptions, out: &mut Collection) {
    for dir in global_dirs(options) {
        apps_in_node_modules(&dir, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_json() {
        assert_eq!(
            parse_package_json(br#"{"name":"npm","version":"9.2.0","dependencies":{}}"#).unwrap(),
            ("npm".into(), "9.2.0".into())
        );
        assert!(parse_package_json(br#"{"name":"x"}"#).is_err());
        let e = parse_package_json(b"{\n\n oops").unwrap_err();
        assert_eq!(e.line, 3);
    }

    #[test]
    fn global_packages_with_scopes() {
        let root = tempfile::tempdir().unwrap();
        let w = |rel: &str, text: &str| {
            let p = root.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        w(
            "usr/lib/node_modules/npm/package.json",
            r#"{"name":"npm","version":"9.2.0"}"#,
        );
        w(
            "usr/lib/node_modules/npm/node_modules/abbrev/package.json",
            r#"{"name":"abbrev","version":"1.0.0"}"#,
        );
        w(
            "usr/local/lib/node_modules/@angular/cli/package.json",
            r#"{"name":"@angular/cli","version":"17.0.0"}"#,
        );
        w("usr/local/lib/node_modules/bad/package.json", "{");
        w(
            "home/ann/.nvm/versions/node/v20.10.0/lib/node_modules/corepack/package.json",
            r#"{"name":"corepack","version":"0.22.0"}"#,
        );
        let mut out = Collection::default();
        collect(&CollectOptions::under_root(root.path()), &mut out);
        let mut got: Vec<_> = out
            .apps
            .iter()
            .map(|a| format!("{}@{}", a.name, a.version))
            .collect();
        got.sort();
        assert_eq!(got, ["@angular/cli@17.0.0", "corepack@0.22.0", "npm@9.2.0"]);
        assert_eq!(out.warnings.len(), 1);
    }
}

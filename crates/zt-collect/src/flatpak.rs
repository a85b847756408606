//! Flatpak apps and runtimes of the system (`/var/lib/flatpak`) and user
//! (`~/.local/share/flatpak`) installations: `<kind>/<id>/<arch>/<branch>/active/`.
//!
//! The version users see (`flatpak list`) is the newest `<release version=…>` of the AppStream
//! metainfo the app ships; runtimes are versioned by their branch (`23.08`, `5.15-23.08`).

use std::path::Path;

use crate::{dir_entries, file_name, App, AppSource, CollectOptions, Collection};

/// The `version` attribute of the first `<release>` of AppStream metainfo XML (releases are
/// listed newest first). A scan for one attribute, so no XML library is linked for it.
pub fn release_version(xml: &str) -> Option<String> {
    let mut rest = xml;
    while let Some(at) = rest.find("<release") {
        rest = &rest[at + "<release".len()..];
        // `<releases>` is the container, not a release.
        if !rest.starts_with(|c: char| c.is_whitespace() || c == '/' || c == '>') {
            continue;
        }
        let tag_end = rest.find('>').unwrap_or(rest.len());
        let tag = &rest[..tag_end];
        let mut attrs = tag;
        while let Some(pos) = attrs.find("version") {
            let before_ok = pos == 0 || attrs[..pos].ends_with(char::is_whitespace);
            let after = attrs[pos + "version".len()..].trim_start();
            if let (true, Some(after)) = (before_ok, after.strip_prefix('=')) {
                let after = after.trim_start();
                let quote = after.chars().next()?;
                if quote == '"' || quote == '\'' {
                    let value = &after[1..];
                    let end = value.find(quote)?;
                    let v = value[..end].trim();
                    return (!v.is_empty()).then(|| v.to_string());
                }
            }
            attrs = &attrs[pos + "version".len()..];
        }
        return None;
    }
    None
}

fn metainfo_version(active: &Path, id: &str) -> Option<String> {
    for rel in [
        format!("files/share/metainfo/{id}.metainfo.xml"),
        format!("files/share/metainfo/{id}.appdata.xml"),
        format!("files/share/appdata/{id}.appdata.xml"),
        format!("files/share/appdata/{id}.metainfo.xml"),
    ] {
        if let Ok(text) = std::fs::read_to_string(active.join(rel)) {
            if let Some(v) = release_version(&text) {
                return Some(v);
            }
        }
    }
    None
}

/// Apps and runtimes of one flatpak installation directory.
pub fn apps_in_installation(dir: &Path, out: &mut Collection) {
    for (kind, is_runtime) in [("app", false), ("runtime", true)] {
        for id_dir in dir_entries(&dir.join(kind)) {
            let Some(id) = file_name(&id_dir) else {
                continue;
            };
            for arch_dir in dir_entries(&id_dir) {
                for branch_dir in dir_entries(&arch_dir) {
                    let active = branch_dir.join("active");
                    if !active.is_dir() {
                        continue;
                    }
                    let branch = file_name(&branch_dir).unwrap_or_default();
                    let version = metainfo_version(&active, id)
                        .or_else(|| is_runtime.then(|| branch.to_string()));
                    match version {
                        Some(version) => {
                            let mut app = App::new(id, version, AppSource::Flatpak);
                            app.arch = file_name(&arch_dir).map(str::to_string);
                            out.apps.push(app);
                        }
                        None => out.warn(
                            "flatpak",
                            format_args!(
                                "{}: skipped: no release version in its metainfo",
                                active.display()
                            ),
                        ),
                    }
                }
            }
        }
    }
}

pub fn collect(options: &CollectOptions, out: &mut Collection) {
    apps_in_installation(&options.path("/var/lib/flatpak"), out);
    for home in crate::home_dirs(options) {
        apps_in_installation(&home.join(".local/share/flatpak"), out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_versions() {
        let xml = r#"<component><releases>
            <release version="121.0" date="2023-12-19"/><release version="120.0"/></releases></component>"#;
        assert_eq!(release_version(xml), Some("121.0".into()));
        assert_eq!(
            release_version("<release date='x' version='1.2'>"),
            Some("1.2".into())
        );
        assert_eq!(release_version("<releases></releases>"), None);
        assert_eq!(release_version("<release version=>"), None);
        assert_eq!(release_version("<release version=\""), None);
        assert_eq!(release_version(""), None);
    }

    #[test]
    fn apps_and_runtimes() {
        let root = tempfile::tempdir().unwrap();
        let app = root.path().join(
            "var/lib/flatpak/app/org.mozilla.firefox/x86_64/stable/active/files/share/metainfo",
        );
        std::fs::create_dir_all(&app).unwrap();
        std::fs::write(
            app.join("org.mozilla.firefox.metainfo.xml"),
            r#"<component><releases><release version="121.0"/></releases></component>"#,
        )
        .unwrap();
        std::fs::create_dir_all(
            root.path()
                .join("var/lib/flatpak/runtime/org.freedesktop.Platform/x86_64/23.08/active/files"),
        )
        .unwrap();
        std::fs::create_dir_all(
            root.path()
                .join("home/ann/.local/share/flatpak/app/com.example.NoMeta/x86_64/stable/active"),
        )
        .unwrap();
        let mut out = Collection::default();
        collect(&CollectOptions::under_root(root.path()), &mut out);
        let got: Vec<_> = out
            .apps
            .iter()
            .map(|a| format!("{}={}", a.name, a.version))
            .collect();
        assert_eq!(
            got,
            [
                "org.mozilla.firefox=121.0",
                "org.freedesktop.Platform=23.08"
            ]
        );
        assert_eq!(out.warnings.len(), 1);
    }
}

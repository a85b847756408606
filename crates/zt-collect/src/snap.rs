//! Snaps: `/snap/<name>/current/meta/snap.yaml` (the revision that is active).

use crate::{dir_entries, App, AppSource, CollectOptions, Collection};

/// The top-level `name:` and `version:` of a snap.yaml. Only those two scalars are read, so a
/// line scan is enough (a YAML library would be the only use of one in the agent).
pub fn parse_snap_yaml(text: &str) -> Option<(String, String)> {
    let mut name = None;
    let mut version = None;
    for line in text.lines() {
        if line.starts_with(char::is_whitespace) {
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        let value = value
            .strip_prefix('\'')
            .and_then(|v| v.strip_suffix('\''))
            .or_else(|| value.strip_prefix('"').and_then(|v| v.strip_suffix('"')))
            .unwrap_or(value)
            .to_string();
        match key {
            "name" if name.is_none() && !value.is_empty() => name = Some(value),
            "version" if version.is_none() && !value.is_empty() => version = Some(value),
            _ => {}
        }
    }
    Some((name?, version?))
}

pub fn collect(options: &CollectOptions, out: &mut Collection) {
    for snap in dir_entries(&options.path("/snap")) {
        let yaml = snap.join("current/meta/snap.yaml");
        let Ok(text) = std::fs::read_to_string(&yaml) else {
            continue;
        };
        match parse_snap_yaml(&text) {
            Some((name, version)) => out.apps.push(App::new(name, version, AppSource::Snap)),
            None => out.warn(
                "snap",
                format_args!("{}: skipped: no name/version", yaml.display()),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snap_yaml() {
        let text =
            "name: firefox\nversion: '121.0-1'\nsummary: x\napps:\n  firefox:\n    version: no\n";
        assert_eq!(
            parse_snap_yaml(text),
            Some(("firefox".into(), "121.0-1".into()))
        );
        assert_eq!(parse_snap_yaml("name: x\n"), None);
    }

    #[test]
    fn reads_current_revisions() {
        let root = tempfile::tempdir().unwrap();
        let meta = root.path().join("snap/core22/1122/meta");
        std::fs::create_dir_all(&meta).unwrap();
        std::fs::write(
            meta.join("snap.yaml"),
            "name: core22\nversion: \"20240111\"\n",
        )
        .unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink("1122", root.path().join("snap/core22/current")).unwrap();
        #[cfg(not(unix))]
        std::fs::create_dir_all(root.path().join("snap/core22/current/meta"))
            .and_then(|_| {
                std::fs::copy(
                    meta.join("snap.yaml"),
                    root.path().join("snap/core22/current/meta/snap.yaml"),
                )
                .map(|_| ())
            })
            .unwrap();
        std::fs::create_dir_all(root.path().join("snap/bin")).unwrap();
        let mut out = Collection::default();
        collect(&CollectOptions::under_root(root.path()), &mut out);
        assert_eq!(out.apps.len(), 1);
        assert_eq!(
            (out.apps[0].name.as_str(), out.apps[0].version.as_str()),
            ("core22", "20240111")
        );
    }
}

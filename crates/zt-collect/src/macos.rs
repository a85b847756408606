//! macOS applications: `Contents/Info.plist` of each `.app` bundle (XML or binary plist).
//!
//! The bundle identifier (`CFBundleIdentifier`, e.g. `com.google.Chrome`) is the app's stable
//! identity, so it travels as the app's `source_name`, next to the display name in `name`.

use std::path::Path;

use crate::{App, AppSource, CollectOptions, Collection, OsInfo, ParseError};

/// Why an Info.plist gave no app.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlistAppError {
    #[error("not a property list: {0}")]
    Malformed(String),
    #[error("the property list is not a dictionary")]
    NotADictionary,
    #[error("no {0}")]
    Missing(&'static str),
}

impl From<PlistAppError> for ParseError {
    fn from(e: PlistAppError) -> Self {
        ParseError::at("record", 1, e.to_string())
    }
}

/// The app an `Info.plist` describes: `CFBundleName` (or `CFBundleDisplayName`), the marketing
/// version `CFBundleShortVersionString`, and `CFBundleIdentifier`. The build number
/// (`CFBundleVersion`) is not a stand-in for the version: NVD ranges use marketing versions,
/// and a build number there would match the wrong releases.
pub fn parse_info_plist(bytes: &[u8]) -> Result<App, PlistAppError> {
    let value = plist::Value::from_reader(std::io::Cursor::new(bytes))
        .map_err(|e| PlistAppError::Malformed(e.to_string()))?;
    let dict = value.as_dictionary().ok_or(PlistAppError::NotADictionary)?;
    let text = |key: &str| {
        dict.get(key)
            .and_then(plist::Value::as_string)
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    let name = text("CFBundleName")
        .or_else(|| text("CFBundleDisplayName"))
        .ok_or(PlistAppError::Missing("CFBundleName"))?;
    let version = text("CFBundleShortVersionString")
        .ok_or(PlistAppError::Missing("CFBundleShortVersionString"))?;
    let mut app = App::new(name, version, AppSource::Macos);
    app.source_name = text("CFBundleIdentifier").map(str::to_string);
    Ok(app)
}

/// The `.app` bundles directly inside `dir` and one level of folders below it (as in
/// `/Applications/Utilities`).
pub fn apps_in_dir(dir: &Path, out: &mut Collection) {
    for entry in crate::dir_entries(dir) {
        if is_bundle(&entry) {
            read_bundle(&entry, out);
        } else if entry.is_dir() {
            for inner in crate::dir_entries(&entry) {
                if is_bundle(&inner) {
                    read_bundle(&inner, out);
                }
            }
        }
    }
}

fn is_bundle(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "app")
}

fn read_bundle(bundle: &Path, out: &mut Collection) {
    let plist = bundle.join("Contents/Info.plist");
    match std::fs::read(&plist) {
        Ok(bytes) => match parse_info_plist(&bytes) {
            Ok(app) => out.apps.push(app),
            Err(e) => out.warn("macos", format_args!("{}: skipped: {e}", plist.display())),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => out.warn("macos", format_args!("{}: {e}", plist.display())),
    }
}

/// On macOS: `/Applications`, `/System/Applications` and each user's `~/Applications`.
pub fn collect(options: &CollectOptions, out: &mut Collection) {
    if cfg!(target_os = "macos") {
        let mut dirs = vec![
            options.path("/Applications"),
            options.path("/System/Applications"),
        ];
        dirs.extend(
            crate::home_dirs(options)
                .into_iter()
                .map(|h| h.join("Applications")),
        );
        for dir in dirs {
            apps_in_dir(&dir, out);
        }
    }
}

/// The running macOS release from `SystemVersion.plist`; `None` elsewhere.
pub fn running_os() -> Option<OsInfo> {
    #[cfg(target_os = "macos")]
    {
        let value =
            plist::Value::from_file("/System/Library/CoreServices/SystemVersion.plist").ok()?;
        let dict = value.as_dictionary()?;
        let get = |k: &str| {
            dict.get(k)
                .and_then(plist::Value::as_string)
                .unwrap_or("")
                .to_string()
        };
        let version = get("ProductVersion");
        return Some(OsInfo {
            id: "macos".into(),
            name: format!("{} {}", get("ProductName"), version)
                .trim()
                .to_string(),
            version_id: version,
        });
    }
    #[allow(unreachable_code)]
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_an_error() {
        assert!(matches!(
            parse_info_plist(b"not a plist"),
            Err(PlistAppError::Malformed(_))
        ));
        assert_eq!(
            parse_info_plist(b"<?xml version=\"1.0\"?><plist version=\"1.0\"><array/></plist>"),
            Err(PlistAppError::NotADictionary)
        );
        assert!(parse_info_plist(b"").is_err());
    }

    #[test]
    fn scans_bundles_in_a_dir() {
        let dir = tempfile::tempdir().unwrap();
        let write = |rel: &str, name: &str, version: &str| {
            let p = dir.path().join(rel).join("Contents");
            std::fs::create_dir_all(&p).unwrap();
            std::fs::write(
                p.join("Info.plist"),
                format!(
                    "<?xml version=\"1.0\"?><plist version=\"1.0\"><dict>\
                     <key>CFBundleName</key><string>{name}</string>\
                     <key>CFBundleIdentifier</key><string>org.example.{name}</string>\
                     <key>CFBundleShortVersionString</key><string>{version}</string>\
                     </dict></plist>"
                ),
            )
            .unwrap();
        };
        write("Firefox.app", "Firefox", "133.0");
        write("Utilities/Terminal.app", "Terminal", "2.14");
        std::fs::create_dir_all(dir.path().join("Broken.app/Contents")).unwrap();
        std::fs::write(dir.path().join("Broken.app/Contents/Info.plist"), "junk").unwrap();
        let mut out = Collection::default();
        apps_in_dir(dir.path(), &mut out);
        let names: Vec<_> = out
            .apps
            .iter()
            .map(|a| (a.name.as_str(), a.version.as_str()))
            .collect();
        assert_eq!(names, [("Firefox", "133.0"), ("Terminal", "2.14")]);
        assert_eq!(
            out.apps[0].source_name.as_deref(),
            Some("org.example.Firefox")
        );
        assert_eq!(out.warnings.len(), 1, "{:?}", out.warnings);
    }
}

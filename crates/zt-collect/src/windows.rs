//! Windows installed programs: the registry's Uninstall keys (HKLM, HKLM WOW6432Node, HKCU),
//! and `dism /get-packages` listings of the OS's own packages and updates.
//!
//! Turning registry values into apps is plain code tested on every platform; only reading the
//! registry itself is Windows-only.

use crate::{App, AppSource, CollectOptions, Collection, OsInfo, ParseError};

/// The values of one `...\CurrentVersion\Uninstall\<key>` that decide what it lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UninstallEntry {
    /// Which hive and view it came from (`HKLM`, `HKLM\WOW6432Node`, `HKCU`), for messages.
    pub hive: String,
    pub key_name: String,
    pub display_name: Option<String>,
    pub display_version: Option<String>,
    pub publisher: Option<String>,
    /// `SystemComponent = 1` hides an entry from "Programs and Features".
    pub system_component: bool,
    /// Set on updates and patches that belong to another entry.
    pub parent_key_name: Option<String>,
    /// `Security Update`, `Update Rollup`, `Hotfix`... for OS and Office updates.
    pub release_type: Option<String>,
}

/// Why an Uninstall entry gives no app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    NoDisplayName,
    NoVersion,
    SystemComponent,
    UpdateOf(String),
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SkipReason::NoDisplayName => f.write_str("no DisplayName"),
            SkipReason::NoVersion => f.write_str("no DisplayVersion"),
            SkipReason::SystemComponent => f.write_str("SystemComponent"),
            SkipReason::UpdateOf(p) => write!(f, "an update of {p}"),
        }
    }
}

/// The app an Uninstall entry stands for, as "Programs and Features" would list it: named,
/// versioned, not a hidden system component and not an update of another entry.
pub fn app_from_uninstall_entry(entry: &UninstallEntry) -> Result<App, SkipReason> {
    let clean = |v: &Option<String>| {
        v.as_deref()
            .map(|s| s.trim_matches(|c: char| c.is_whitespace() || c == '\0'))
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let name = clean(&entry.display_name).ok_or(SkipReason::NoDisplayName)?;
    if entry.system_component {
        return Err(SkipReason::SystemComponent);
    }
    if let Some(parent) = clean(&entry.parent_key_name) {
        return Err(SkipReason::UpdateOf(parent));
    }
    if let Some(kind) = clean(&entry.release_type) {
        if matches!(
            kind.as_str(),
            "Security Update" | "Update Rollup" | "Hotfix" | "Update"
        ) {
            return Err(SkipReason::UpdateOf(kind));
        }
    }
    let version = clean(&entry.display_version).ok_or(SkipReason::NoVersion)?;
    let mut app = App::new(name, version, AppSource::Windows);
    app.vendor = clean(&entry.publisher);
    Ok(app)
}

/// Apps from many Uninstall entries: the same program registered in several hives is listed
/// once; skipped entries come back with their reason.
pub fn apps_from_uninstall_entries(
    entries: &[UninstallEntry],
) -> (Vec<App>, Vec<(String, SkipReason)>) {
    let mut apps: Vec<App> = Vec::new();
    let mut skipped = Vec::new();
    for e in entries {
        match app_from_uninstall_entry(e) {
            Ok(app) => {
                if !apps.contains(&app) {
                    apps.push(app);
                }
            }
            Err(reason) => skipped.push((format!("{}\\{}", e.hive, e.key_name), reason)),
        }
    }
    (apps, skipped)
}

/// One package of a `dism /online /get-packages` listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DismPackage {
    /// `Package_for_RollupFix~31bf3856ad364e35~amd64~~17763.3406.1.5`
    pub identity: String,
    pub name: String,
    pub arch: String,
    pub version: String,
    pub state: String,
    pub release_type: String,
}

/// A DISM package listing: the image version (the OS build, e.g. `10.0.17763.3406`) and its
/// packages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DismListing {
    pub image_version: Option<String>,
    pub packages: Vec<DismPackage>,
}

/// Parses the text `dism /online /get-packages` prints.
pub fn parse_dism_packages(text: &str) -> Result<DismListing, ParseError> {
    let mut listing = DismListing::default();
    let mut current: Option<DismPackage> = None;
    for (idx, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        match key {
            "Image Version" => listing.image_version = Some(value.to_string()),
            "Package Identity" => {
                listing.packages.extend(current.take());
                // name~publickeytoken~arch~language~version
                let parts: Vec<&str> = value.split('~').collect();
                if parts.len() != 5 || parts[0].is_empty() || parts[4].is_empty() {
                    return Err(ParseError::at_line(
                        idx + 1,
                        format!("package identity {value:?} is not name~key~arch~lang~version"),
                    ));
                }
                current = Some(DismPackage {
                    identity: value.to_string(),
                    name: parts[0].to_string(),
                    arch: parts[2].to_string(),
                    version: parts[4].to_string(),
                    state: String::new(),
                    release_type: String::new(),
                });
            }
            "State" => {
                if let Some(p) = current.as_mut() {
                    p.state = value.to_string();
                }
            }
            "Release Type" => {
                if let Some(p) = current.as_mut() {
                    p.release_type = value.to_string();
                }
            }
            _ => {}
        }
    }
    listing.packages.extend(current);
    Ok(listing)
}

/// On Windows: every Uninstall key of HKLM (64- and 32-bit views) and HKCU.
pub fn collect(options: &CollectOptions, out: &mut Collection) {
    if !options.live_system {
        return;
    }
    #[cfg(windows)]
    {
        let entries = registry::uninstall_entries(out);
        let (apps, skipped) = apps_from_uninstall_entries(&entries);
        out.apps.extend(apps);
        let hidden = skipped.len();
        if hidden > 0 {
            out.warnings.push(format!(
                "windows: {hidden} Uninstall entries are updates, system components or unnamed and are not listed"
            ));
        }
    }
    #[cfg(not(windows))]
    let _ = out;
}

/// The running Windows release (`CurrentVersion`: product name, build and update revision).
pub fn running_os() -> Option<OsInfo> {
    #[cfg(windows)]
    {
        return registry::running_os();
    }
    #[allow(unreachable_code)]
    None
}

#[cfg(windows)]
mod registry {
    use super::UninstallEntry;
    use crate::{Collection, OsInfo};
    use windows_registry::{Key, CURRENT_USER, LOCAL_MACHINE};

    const UNINSTALL: &str = r"SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall";
    const UNINSTALL_WOW64: &str =
        r"SOFTWARE\WOW6432Node\Microsoft\Windows\CurrentVersion\Uninstall";

    pub fn uninstall_entries(out: &mut Collection) -> Vec<UninstallEntry> {
        let mut entries = Vec::new();
        for (hive_name, hive, path) in [
            ("HKLM", LOCAL_MACHINE, UNINSTALL),
            ("HKLM\\WOW6432Node", LOCAL_MACHINE, UNINSTALL_WOW64),
            ("HKCU", CURRENT_USER, UNINSTALL),
        ] {
            let Ok(root) = hive.open(path) else { continue };
            let names: Vec<String> = match root.keys() {
                Ok(keys) => keys.collect(),
                Err(e) => {
                    out.warnings
                        .push(format!("windows: {hive_name}\\{path}: cannot list: {e}"));
                    continue;
                }
            };
            for name in names {
                let Ok(key) = root.open(&name) else { continue };
                entries.push(entry(hive_name, name, &key));
            }
        }
        entries
    }

    fn entry(hive: &str, key_name: String, key: &Key) -> UninstallEntry {
        let s = |v: &str| key.get_string(v).ok();
        UninstallEntry {
            hive: hive.to_string(),
            key_name,
            display_name: s("DisplayName"),
            display_version: s("DisplayVersion"),
            publisher: s("Publisher"),
            system_component: key
                .get_u32("SystemComponent")
                .map(|v| v == 1)
                .unwrap_or(false),
            parent_key_name: s("ParentKeyName"),
            release_type: s("ReleaseType"),
        }
    }

    pub fn running_os() -> Option<OsInfo> {
        let key = LOCAL_MACHINE
            .open(r"SOFTWARE\Microsoft\Windows NT\CurrentVersion")
            .ok()?;
        let s = |v: &str| key.get_string(v).unwrap_or_default();
        let major = key.get_u32("CurrentMajorVersionNumber").ok();
        let minor = key.get_u32("CurrentMinorVersionNumber").ok();
        let build = s("CurrentBuildNumber");
        let ubr = key.get_u32("UBR").ok();
        let mut version = match (major, minor) {
            (Some(a), Some(b)) => format!("{a}.{b}.{build}"),
            _ => format!("{}.{build}", s("CurrentVersion")),
        };
        if let Some(ubr) = ubr {
            version.push_str(&format!(".{ubr}"));
        }
        Some(OsInfo {
            id: "windows".into(),
            version_id: version,
            name: s("ProductName"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, version: &str) -> UninstallEntry {
        UninstallEntry {
            hive: "HKLM".into(),
            key_name: format!("{{{name}}}"),
            display_name: Some(name.into()),
            display_version: Some(version.into()),
            publisher: Some("Example Corp".into()),
            ..UninstallEntry::default()
        }
    }

    #[test]
    fn lists_programs_like_programs_and_features() {
        let mut hidden = entry("Visual C++ runtime component", "14.0");
        hidden.system_component = true;
        let mut update = entry("Security Update for Office (KB123)", "1");
        update.parent_key_name = Some("Office16.PROPLUS".into());
        let mut unversioned = entry("Tool", "");
        unversioned.display_version = None;
        let mut wow = entry("7-Zip 23.01 (x64)", "23.01");
        wow.hive = "HKLM\\WOW6432Node".into();
        let (apps, skipped) = apps_from_uninstall_entries(&[
            entry("7-Zip 23.01 (x64)", "23.01"),
            wow,
            hidden,
            update,
            unversioned,
            UninstallEntry::default(),
        ]);
        assert_eq!(apps.len(), 1);
        assert_eq!(apps[0].name, "7-Zip 23.01 (x64)");
        assert_eq!(apps[0].vendor.as_deref(), Some("Example Corp"));
        assert_eq!(apps[0].source, AppSource::Windows);
        let reasons: Vec<_> = skipped.iter().map(|(_, r)| r.clone()).collect();
        assert_eq!(
            reasons,
            [
                SkipReason::SystemComponent,
                SkipReason::UpdateOf("Office16.PROPLUS".into()),
                SkipReason::NoVersion,
                SkipReason::NoDisplayName
            ]
        );
    }

    #[test]
    fn trims_registry_padding() {
        let mut e = entry(" Zoom \0", " 5.17.1 ");
        e.publisher = Some("".into());
        let app = app_from_uninstall_entry(&e).unwrap();
        assert_eq!(
            (app.name.as_str(), app.version.as_str()),
            ("Zoom", "5.17.1")
        );
        assert_eq!(app.vendor, None);
    }

    #[test]
    fn bad_dism_identity_names_the_line() {
        let e =
            parse_dism_packages("Image Version: 10\n\nPackage Identity : broken\n").unwrap_err();
        assert_eq!(e.line, 3);
    }
}

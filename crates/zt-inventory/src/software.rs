//! The matchable unit: an app reduced to what decides which advisories hit it.
//!
//! Thousands of hosts report the same `openssl 3.0.11-1~deb12u2` on Debian 12; the server stores
//! and matches that software once, keyed by [`SoftwareKey`], and points every app row at it.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::report::{App, AppSource, OsInfo};

/// A deduplicated software version. `ecosystem` is the OSV ecosystem string including the distro
/// release where advisories are per release (`Debian:12`, `Ubuntu:22.04:LTS`, `Alpine:v3.19`,
/// `PyPI`, `crates.io`, ...); software without an OSV ecosystem (Windows and macOS programs,
/// Homebrew, snaps...) carries the app source name (`windows`, `macos`, ...) and is matched
/// through NVD CPE data.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Software {
    pub ecosystem: String,
    pub name: String,
    pub version: String,
    pub source: AppSource,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purl: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpe: Option<String>,
}

/// A stable 128-bit identity of a [`Software`] (a truncated SHA-256 of its fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SoftwareKey(pub [u8; 16]);

impl SoftwareKey {
    pub fn to_hex(self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(s: &str) -> Option<SoftwareKey> {
        let bytes = hex::decode(s).ok()?;
        Some(SoftwareKey(bytes.try_into().ok()?))
    }
}

impl std::fmt::Display for SoftwareKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Software {
    /// Reduces an app reported by a host running `os` to its matchable identity.
    pub fn from_app(app: &App, os: &OsInfo) -> Software {
        Software {
            ecosystem: ecosystem_for(app.source, os),
            name: app.name.clone(),
            version: app.version.clone(),
            source: app.source,
            source_name: app.source_name.clone(),
            source_version: app.source_version.clone(),
            vendor: app.vendor.clone(),
            purl: app.purl.clone(),
            cpe: app.cpe.clone(),
        }
    }

    /// The identity under which the server stores and matches this software once.
    pub fn key(&self) -> SoftwareKey {
        let mut h = Sha256::new();
        // Length-prefixed fields: no two different field tuples hash the same input.
        let mut field = |s: &str| {
            h.update((s.len() as u64).to_le_bytes());
            h.update(s.as_bytes());
        };
        field(&self.ecosystem);
        field(&self.name);
        field(&self.version);
        field(self.source.as_str());
        for opt in [
            &self.source_name,
            &self.source_version,
            &self.vendor,
            &self.purl,
            &self.cpe,
        ] {
            match opt {
                Some(s) => field(s),
                None => field("\u{0}none"),
            }
        }
        let digest = h.finalize();
        let mut key = [0u8; 16];
        key.copy_from_slice(&digest[..16]);
        SoftwareKey(key)
    }

    /// The name distro advisories are keyed by: the source package when known.
    pub fn advisory_name(&self) -> &str {
        self.source_name.as_deref().unwrap_or(&self.name)
    }

    /// The version distro advisories compare against: the source version when known.
    pub fn advisory_version(&self) -> &str {
        self.source_version.as_deref().unwrap_or(&self.version)
    }
}

/// The OSV ecosystem of an app from `source` on a host running `os`.
pub fn ecosystem_for(source: AppSource, os: &OsInfo) -> String {
    match source {
        AppSource::Dpkg | AppSource::Rpm | AppSource::Apk => distro_ecosystem(source, os),
        AppSource::Pypi => "PyPI".into(),
        AppSource::Npm => "npm".into(),
        AppSource::Cargo => "crates.io".into(),
        AppSource::Gem => "RubyGems".into(),
        AppSource::Go => "Go".into(),
        AppSource::Maven => "Maven".into(),
        AppSource::Nuget => "NuGet".into(),
        AppSource::Composer => "Packagist".into(),
        AppSource::Hex => "Hex".into(),
        AppSource::Pub => "Pub".into(),
        AppSource::Cran => "CRAN".into(),
        AppSource::Hackage => "Hackage".into(),
        AppSource::Conda
        | AppSource::Windows
        | AppSource::Macos
        | AppSource::Homebrew
        | AppSource::Snap
        | AppSource::Flatpak
        | AppSource::Other => source.as_str().into(),
    }
}

fn distro_ecosystem(source: AppSource, os: &OsInfo) -> String {
    let id = os.id.to_ascii_lowercase();
    let ver = os.version_id.trim();
    let major = ver.split('.').next().unwrap_or("");
    let with_release = |eco: &str, release: &str| {
        if release.is_empty() {
            eco.to_string()
        } else {
            format!("{eco}:{release}")
        }
    };
    match (source, id.as_str()) {
        (AppSource::Dpkg, "debian") => with_release("Debian", major),
        (AppSource::Dpkg, "ubuntu") => {
            // Ubuntu's OSV ecosystems name LTS releases "Ubuntu:22.04:LTS" (even year, April).
            let lts =
                ver.ends_with(".04") && major.parse::<u32>().map(|y| y % 2 == 0).unwrap_or(false);
            if ver.is_empty() {
                "Ubuntu".into()
            } else if lts {
                format!("Ubuntu:{ver}:LTS")
            } else {
                format!("Ubuntu:{ver}")
            }
        }
        (AppSource::Dpkg, _) => "Debian".into(),
        (AppSource::Apk, "alpine") => {
            let mut parts = ver.split('.');
            match (parts.next(), parts.next()) {
                (Some(a), Some(b)) => format!("Alpine:v{a}.{b}"),
                _ => "Alpine".into(),
            }
        }
        (AppSource::Apk, "wolfi") => "Wolfi".into(),
        (AppSource::Apk, "chainguard") => "Chainguard".into(),
        (AppSource::Apk, _) => "Alpine".into(),
        (AppSource::Rpm, "rhel" | "centos") => "Red Hat".into(),
        (AppSource::Rpm, "rocky") => with_release("Rocky Linux", major),
        (AppSource::Rpm, "almalinux") => with_release("AlmaLinux", major),
        (AppSource::Rpm, "mariner") => with_release("Mariner", ver),
        (AppSource::Rpm, "azurelinux") => with_release("Azure Linux", ver),
        (AppSource::Rpm, "opensuse-leap") => with_release("openSUSE", &format!("Leap {ver}")),
        (AppSource::Rpm, "sles" | "sled") => {
            // SLES 15.5 -> "SUSE:Linux Enterprise Server 15 SP5"
            let mut parts = ver.split('.');
            match (parts.next(), parts.next()) {
                (Some(a), Some(sp)) if sp != "0" => {
                    format!("SUSE:Linux Enterprise Server {a} SP{sp}")
                }
                (Some(a), _) if !a.is_empty() => format!("SUSE:Linux Enterprise Server {a}"),
                _ => "SUSE".into(),
            }
        }
        (AppSource::Rpm, "fedora") => with_release("Fedora", major),
        (AppSource::Rpm, _) => "Red Hat".into(),
        _ => source.as_str().into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(id: &str, v: &str) -> OsInfo {
        OsInfo {
            id: id.into(),
            version_id: v.into(),
            name: String::new(),
        }
    }

    #[test]
    fn distro_ecosystems_follow_osv_names() {
        assert_eq!(
            ecosystem_for(AppSource::Dpkg, &os("debian", "12")),
            "Debian:12"
        );
        assert_eq!(
            ecosystem_for(AppSource::Dpkg, &os("ubuntu", "22.04")),
            "Ubuntu:22.04:LTS"
        );
        assert_eq!(
            ecosystem_for(AppSource::Dpkg, &os("ubuntu", "25.10")),
            "Ubuntu:25.10"
        );
        assert_eq!(
            ecosystem_for(AppSource::Dpkg, &os("ubuntu", "23.04")),
            "Ubuntu:23.04"
        );
        assert_eq!(
            ecosystem_for(AppSource::Apk, &os("alpine", "3.19.1")),
            "Alpine:v3.19"
        );
        assert_eq!(
            ecosystem_for(AppSource::Rpm, &os("rocky", "9.3")),
            "Rocky Linux:9"
        );
        assert_eq!(ecosystem_for(AppSource::Pypi, &os("debian", "12")), "PyPI");
        assert_eq!(
            ecosystem_for(AppSource::Windows, &os("windows", "10.0")),
            "windows"
        );
    }

    #[test]
    fn key_is_stable_and_distinguishes_fields() {
        let a = App::new("openssl", "3.0.11-1~deb12u2", AppSource::Dpkg);
        let s = Software::from_app(&a, &os("debian", "12"));
        assert_eq!(s.key(), s.clone().key());
        assert_eq!(SoftwareKey::from_hex(&s.key().to_hex()), Some(s.key()));
        let mut b = a.clone();
        b.source_name = Some("openssl".into());
        assert_ne!(Software::from_app(&b, &os("debian", "12")).key(), s.key());
        assert_ne!(Software::from_app(&a, &os("debian", "11")).key(), s.key());
    }
}

//! Package URLs (purl spec) for the apps whose ecosystem has a purl type, so SBOM consumers and
//! the matcher can name them unambiguously.

use packageurl::PackageUrl;

use crate::{App, AppSource, OsInfo};

/// Sets `purl` on every app that has a purl type and none yet.
pub fn assign(apps: &mut [App], os: &OsInfo) {
    for app in apps.iter_mut().filter(|a| a.purl.is_none()) {
        app.purl = purl_for(app, os);
    }
}

/// The package URL of one app on a host running `os`; `None` for sources without a purl type
/// (Windows and macOS programs, snaps, flatpaks) or values the spec cannot carry.
pub fn purl_for(app: &App, os: &OsInfo) -> Option<String> {
    let distro_ns = if os.id.is_empty() {
        None
    } else {
        Some(os.id.as_str())
    };
    let distro = || match (os.id.as_str(), os.version_id.as_str()) {
        ("", _) => None,
        (id, "") => Some(id.to_string()),
        (id, v) => Some(format!("{id}-{v}")),
    };
    let purl = match app.source {
        AppSource::Dpkg => {
            let mut p = PackageUrl::new("deb", app.name.as_str()).ok()?;
            p.with_namespace(distro_ns.unwrap_or("debian")).ok()?;
            p.with_version(app.version.as_str()).ok()?;
            if let Some(a) = &app.arch {
                p.add_qualifier("arch", a.as_str()).ok()?;
            }
            if let Some(d) = distro() {
                p.add_qualifier("distro", d).ok()?;
            }
            p
        }
        AppSource::Rpm => {
            // purl puts the epoch in a qualifier and `version-release` in the version.
            let (epoch, vr) = match app.version.split_once(':') {
                Some((e, vr)) if e.chars().all(|c| c.is_ascii_digit()) => (Some(e), vr),
                _ => (None, app.version.as_str()),
            };
            let mut p = PackageUrl::new("rpm", app.name.as_str()).ok()?;
            if let Some(ns) = distro_ns {
                p.with_namespace(ns).ok()?;
            }
            p.with_version(vr).ok()?;
            if let Some(a) = &app.arch {
                p.add_qualifier("arch", a.as_str()).ok()?;
            }
            if let Some(e) = epoch {
                p.add_qualifier("epoch", e).ok()?;
            }
            if let Some(d) = distro() {
                p.add_qualifier("distro", d).ok()?;
            }
            p
        }
        AppSource::Apk => {
            let mut p = PackageUrl::new("apk", app.name.as_str()).ok()?;
            p.with_namespace(distro_ns.unwrap_or("alpine")).ok()?;
            p.with_version(app.version.as_str()).ok()?;
            if let Some(a) = &app.arch {
                p.add_qualifier("arch", a.as_str()).ok()?;
            }
            if !os.version_id.is_empty() {
                p.add_qualifier("distro", os.version_id.as_str()).ok()?;
            }
            p
        }
        AppSource::Pypi => simple("pypi", &app.name, &app.version)?,
        AppSource::Cargo if app.vendor.is_none() => simple("cargo", &app.name, &app.version)?,
        AppSource::Npm => match app.name.split_once('/') {
            Some((scope, name)) if scope.starts_with('@') => {
                let mut p = PackageUrl::new("npm", name).ok()?;
                p.with_namespace(scope).ok()?;
                p.with_version(app.version.as_str()).ok()?;
                p
            }
            _ => simple("npm", &app.name, &app.version)?,
        },
        _ => return None,
    };
    purl.validate().ok()?;
    Some(purl.to_string())
}

fn simple<'a>(ty: &'a str, name: &'a str, version: &'a str) -> Option<PackageUrl<'a>> {
    let mut p = PackageUrl::new(ty, name).ok()?;
    p.with_version(version).ok()?;
    Some(p)
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
    fn purls_per_ecosystem() {
        let mut deb = App::new("libssl3", "3.0.11-1~deb12u2", AppSource::Dpkg);
        deb.arch = Some("amd64".into());
        assert_eq!(
            purl_for(&deb, &os("debian", "12")).unwrap(),
            "pkg:deb/debian/libssl3@3.0.11-1~deb12u2?arch=amd64&distro=debian-12"
        );
        let mut rpm = App::new("vim", "2:9.0-1.cm2", AppSource::Rpm);
        rpm.arch = Some("x86_64".into());
        assert_eq!(
            purl_for(&rpm, &os("mariner", "2.0")).unwrap(),
            "pkg:rpm/mariner/vim@9.0-1.cm2?arch=x86_64&distro=mariner-2.0&epoch=2"
        );
        assert_eq!(
            purl_for(
                &App::new("Typing_Extensions", "4.9.0", AppSource::Pypi),
                &os("", "")
            )
            .unwrap(),
            "pkg:pypi/typing-extensions@4.9.0"
        );
        assert_eq!(
            purl_for(
                &App::new("@angular/cli", "17.0.0", AppSource::Npm),
                &os("", "")
            )
            .unwrap(),
            "pkg:npm/%40angular/cli@17.0.0"
        );
        assert_eq!(
            purl_for(&App::new("Zoom", "5", AppSource::Windows), &os("", "")),
            None
        );
    }
}

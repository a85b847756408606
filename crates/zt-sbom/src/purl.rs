//! Package URLs (<https://github.com/package-url/purl-spec>) → inventory apps.
//!
//! Parsing is the `packageurl` crate's; this module maps purl types to app sources and names
//! to the form each ecosystem's advisories use (npm `@scope/name`, Maven `group:artifact`, Go
//! module paths), and reads what distro purls add: the epoch, the source package and the
//! release (`distro=debian-12`, `distro=bookworm`). It also accepts the deb purls some
//! generators write without a namespace and with the epoch inside the version
//! (`pkg:deb/bsdutils@1:2.38.1-5%2Bdeb12u3`).

use std::str::FromStr;

use packageurl::PackageUrl;
use zt_inventory::{App, AppSource, OsInfo};

use crate::distro::os_from_distro_qualifier;

/// An app read from a purl, and the distribution release the purl names, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurlApp {
    pub app: App,
    pub distro: Option<OsInfo>,
}

/// Why a purl could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PurlError {
    #[error("invalid package URL {purl:?}: {reason}")]
    Invalid { purl: String, reason: String },
    #[error("package URL {0:?} has no version")]
    NoVersion(String),
}

/// The app source of a purl type; `None` for types that name no installable package
/// (`swid`, `oci`, `docker` images...).
pub fn source_for_type(ty: &str) -> Option<AppSource> {
    Some(match ty {
        "deb" => AppSource::Dpkg,
        "rpm" => AppSource::Rpm,
        "apk" => AppSource::Apk,
        "pypi" => AppSource::Pypi,
        "npm" => AppSource::Npm,
        "cargo" => AppSource::Cargo,
        "gem" => AppSource::Gem,
        "golang" => AppSource::Go,
        "maven" => AppSource::Maven,
        "nuget" => AppSource::Nuget,
        "composer" => AppSource::Composer,
        "hex" => AppSource::Hex,
        "pub" => AppSource::Pub,
        "cran" => AppSource::Cran,
        "hackage" => AppSource::Hackage,
        "conda" => AppSource::Conda,
        "generic" | "github" | "bitbucket" | "cocoapods" | "swift" | "conan" | "cpan" | "vcpkg" => {
            AppSource::Other
        }
        _ => return None,
    })
}

/// Reads a purl into an app (name, version, source, arch, source package) and the release
/// its `distro` qualifier names. The app's `purl` is the input string.
pub fn app_from_purl(purl: &str) -> Result<PurlApp, PurlError> {
    let invalid = |reason: String| PurlError::Invalid {
        purl: purl.chars().take(200).collect(),
        reason,
    };
    let parsed = PackageUrl::from_str(purl).map_err(|e| invalid(e.to_string()))?;
    let ty = parsed.ty();
    let source =
        source_for_type(ty).ok_or_else(|| invalid(format!("purl type {ty:?} is not a package")))?;
    let raw_version = parsed
        .version()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| PurlError::NoVersion(purl.chars().take(200).collect()))?;
    let q = |key: &str| {
        parsed
            .qualifiers()
            .iter()
            .find(|(k, _)| k.as_ref() == key)
            .map(|(_, v)| v.as_ref())
            .filter(|v| !v.is_empty())
    };
    let ns = parsed.namespace().filter(|n| !n.is_empty());
    let name = match (source, ns) {
        (AppSource::Npm | AppSource::Go | AppSource::Composer, Some(ns)) => {
            format!("{ns}/{}", parsed.name())
        }
        (AppSource::Maven, Some(ns)) => format!("{ns}:{}", parsed.name()),
        (AppSource::Other, Some(ns)) => format!("{ns}/{}", parsed.name()),
        _ => parsed.name().to_string(),
    };
    let version = match (source, q("epoch")) {
        // Distro versions carry the epoch in front: `1:2.38.1-5+deb12u3`.
        (AppSource::Dpkg | AppSource::Rpm, Some(epoch))
            if !raw_version.contains(':') && epoch != "0" =>
        {
            format!("{epoch}:{raw_version}")
        }
        _ => raw_version.to_string(),
    };
    let mut app = App::new(name, version, source);
    app.arch = q("arch").map(str::to_string);
    app.purl = Some(purl.to_string());
    if let Some(upstream) = q("upstream") {
        let (src_name, src_version) = parse_upstream(source, upstream);
        app.source_name = Some(src_name);
        app.source_version = src_version;
    }
    let distro = match source {
        AppSource::Dpkg | AppSource::Rpm | AppSource::Apk => q("distro")
            .and_then(|d| os_from_distro_qualifier(ty, d))
            .or_else(|| {
                // The namespace names the distribution (`pkg:deb/debian/...`) but not the release.
                ns.and_then(|n| crate::distro::os_from_name(n, ""))
            }),
        _ => None,
    };
    Ok(PurlApp { app, distro })
}

/// The `upstream` qualifier: the source package, `name` or `name@version`; for rpm the source
/// rpm file name `openssl-3.0.7-24.el9.src.rpm`.
fn parse_upstream(source: AppSource, upstream: &str) -> (String, Option<String>) {
    if source == AppSource::Rpm {
        if let Some(stem) = upstream.strip_suffix(".src.rpm") {
            // name-version-release: the name may contain dashes, version and release do not.
            let mut parts = stem.rsplitn(3, '-');
            if let (Some(release), Some(version), Some(name)) =
                (parts.next(), parts.next(), parts.next())
            {
                return (name.to_string(), Some(format!("{version}-{release}")));
            }
        }
    }
    match upstream.split_once('@') {
        Some((name, version)) if !version.is_empty() => {
            (name.to_string(), Some(version.to_string()))
        }
        _ => (upstream.to_string(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debian_purls() {
        let p =
            app_from_purl("pkg:deb/debian/openssl@3.0.11-1~deb12u2?arch=amd64&distro=debian-12")
                .unwrap();
        assert_eq!(p.app.name, "openssl");
        assert_eq!(p.app.version, "3.0.11-1~deb12u2");
        assert_eq!(p.app.source, AppSource::Dpkg);
        assert_eq!(p.app.arch.as_deref(), Some("amd64"));
        let os = p.distro.unwrap();
        assert_eq!((os.id.as_str(), os.version_id.as_str()), ("debian", "12"));

        let p = app_from_purl(
            "pkg:deb/debian/bsdutils@2.38.1-5+deb12u3?arch=amd64&epoch=1&distro=debian-12.11",
        )
        .unwrap();
        assert_eq!(p.app.version, "1:2.38.1-5+deb12u3");

        let p = app_from_purl(
            "pkg:deb/debian/libssl3@3.0.11-1~deb12u2?arch=amd64&upstream=openssl&distro=bookworm",
        )
        .unwrap();
        assert_eq!(p.app.source_name.as_deref(), Some("openssl"));
        assert_eq!(p.distro.unwrap().version_id, "12");

        let p = app_from_purl("pkg:deb/debian/libgcc-s1@12.2.0-14?upstream=gcc-12%4012.2.0-14")
            .unwrap();
        assert_eq!(p.app.source_name.as_deref(), Some("gcc-12"));
        assert_eq!(p.app.source_version.as_deref(), Some("12.2.0-14"));
        // Namespace only: the distribution without a release.
        assert_eq!(p.distro.unwrap().version_id, "");
    }

    #[test]
    fn cdxgen_deb_purls_without_namespace() {
        let p = app_from_purl("pkg:deb/bsdutils@1:2.38.1-5%2Bdeb12u3#/var/lib/dpkg").unwrap();
        assert_eq!(p.app.name, "bsdutils");
        assert_eq!(p.app.version, "1:2.38.1-5+deb12u3");
        assert!(p.distro.is_none());
    }

    #[test]
    fn language_purls() {
        let p = app_from_purl("pkg:npm/%40cyclonedx/cdxgen@12.8.4").unwrap();
        assert_eq!(
            (p.app.name.as_str(), p.app.source),
            ("@cyclonedx/cdxgen", AppSource::Npm)
        );
        let p = app_from_purl("pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1").unwrap();
        assert_eq!(p.app.name, "org.apache.logging.log4j:log4j-core");
        let p = app_from_purl("pkg:golang/github.com/gin-gonic/gin@v1.9.0").unwrap();
        assert_eq!(p.app.name, "github.com/gin-gonic/gin");
        assert_eq!(p.app.version, "v1.9.0");
        let p = app_from_purl("pkg:pypi/pyjwt@2.6.0").unwrap();
        assert_eq!(
            (p.app.name.as_str(), p.app.source),
            ("pyjwt", AppSource::Pypi)
        );
        let p = app_from_purl("pkg:cargo/smallvec@1.6.0").unwrap();
        assert_eq!(p.app.source, AppSource::Cargo);
    }

    #[test]
    fn rpm_and_apk() {
        let p = app_from_purl(
            "pkg:rpm/redhat/openssl-libs@3.0.7-24.el9?arch=x86_64&epoch=1&upstream=openssl-3.0.7-24.el9.src.rpm&distro=rhel-9.2",
        )
        .unwrap();
        assert_eq!(p.app.version, "1:3.0.7-24.el9");
        assert_eq!(p.app.source_name.as_deref(), Some("openssl"));
        assert_eq!(p.app.source_version.as_deref(), Some("3.0.7-24.el9"));
        assert_eq!(p.distro.unwrap().id, "rhel");
        let p = app_from_purl("pkg:apk/alpine/musl@1.2.4-r2?arch=x86_64&distro=3.19.1").unwrap();
        let os = p.distro.unwrap();
        assert_eq!(
            (os.id.as_str(), os.version_id.as_str()),
            ("alpine", "3.19.1")
        );
    }

    #[test]
    fn bad_purls() {
        assert!(matches!(
            app_from_purl("pkg:npm/left-pad"),
            Err(PurlError::NoVersion(_))
        ));
        assert!(app_from_purl("not a purl").is_err());
        assert!(app_from_purl("pkg:swid/Debian@12").is_err());
        assert!(app_from_purl("pkg:cargo/ns/name@1").is_err());
    }
}

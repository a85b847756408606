//! Property tests of the purl reader and format detection: no panics on any input, and what a
//! purl encodes comes back out.

use proptest::prelude::*;
use zt_inventory::AppSource;
use zt_sbom::app_from_purl;

proptest! {
    #[test]
    fn never_panics(s in "\\PC{0,120}") {
        let _ = app_from_purl(&s);
        let _ = app_from_purl(&format!("pkg:{s}"));
        let _ = app_from_purl(&format!("pkg:deb/{s}"));
        let _ = zt_sbom::read_bytes(s.as_bytes(), "prop");
    }

    #[test]
    fn names_and_versions_round_trip(
        ty in prop_oneof![Just("cargo"), Just("gem"), Just("nuget"), Just("pypi")],
        name in "[a-z][a-z0-9_.-]{0,20}",
        version in "[0-9]{1,3}(\\.[0-9]{1,3}){0,3}([-+~][a-z0-9.]{1,8})?",
    ) {
        let mut purl = packageurl::PackageUrl::new(ty, name.as_str()).unwrap();
        purl.with_version(version.as_str()).unwrap();
        let text = purl.to_string();
        let app = app_from_purl(&text).unwrap().app;
        // The purl spec writes PyPI names with `-` for `_`.
        let want = if ty == "pypi" { name.replace('_', "-") } else { name.clone() };
        prop_assert_eq!(&app.name, &want);
        prop_assert_eq!(&app.version, &version);
        prop_assert_eq!(app.purl.as_deref(), Some(text.as_str()));
    }

    #[test]
    fn deb_epoch_and_distro(
        name in "[a-z][a-z0-9+.-]{1,20}",
        upstream in "[0-9]{1,3}\\.[0-9]{1,3}(\\.[0-9a-z]{1,4})?",
        revision in "[0-9]{1,2}(\\+deb1[0-3]u[0-9])?",
        epoch in 0u32..5,
        release in prop_oneof![Just(("debian-12", "12")), Just(("bookworm", "12")), Just(("debian-11.9", "11.9"))],
    ) {
        let version = format!("{upstream}-{revision}");
        let mut purl = packageurl::PackageUrl::new("deb", name.as_str()).unwrap();
        purl.with_namespace("debian").unwrap();
        purl.with_version(version.as_str()).unwrap();
        purl.add_qualifier("arch", "amd64").unwrap();
        purl.add_qualifier("distro", release.0).unwrap();
        if epoch > 0 {
            purl.add_qualifier("epoch", epoch.to_string()).unwrap();
        }
        let read = app_from_purl(&purl.to_string()).unwrap();
        prop_assert_eq!(read.app.source, AppSource::Dpkg);
        prop_assert_eq!(&read.app.name, &name);
        let want = if epoch > 0 { format!("{epoch}:{version}") } else { version.clone() };
        prop_assert_eq!(&read.app.version, &want);
        let os = read.distro.unwrap();
        prop_assert_eq!(os.id.as_str(), "debian");
        prop_assert_eq!(os.version_id.as_str(), release.1);
    }
}

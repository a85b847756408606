//! The readers on the real SBOMs and package databases of the shared data.

use std::collections::BTreeMap;

use zt_inventory::{App, AppSource};
use zt_sbom::{read_path, Format, Inventory};
use zt_testkit::shared_path;

fn read(rel: &str) -> Inventory {
    read_path(&shared_path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn counts(apps: &[App]) -> BTreeMap<AppSource, usize> {
    let mut m = BTreeMap::new();
    for a in apps {
        *m.entry(a.source).or_default() += 1;
    }
    m
}

fn find<'a>(inv: &'a Inventory, name: &str) -> &'a App {
    inv.apps
        .iter()
        .find(|a| a.name == name)
        .unwrap_or_else(|| panic!("no {name}"))
}

#[test]
fn trivy_rootfs_sbom() {
    let inv = read("sboms/trivy-legacy-rootfs.cdx.json");
    assert_eq!(inv.format, Format::CycloneDx);
    let os = inv.os.clone().unwrap();
    assert_eq!(
        (os.id.as_str(), os.version_id.as_str()),
        ("debian", "12.11")
    );
    // 5,440 components: 722 debs, 3,634 crates, 544 Go modules, 107 Python and 7 npm
    // packages, plus 425 lock-file/binary holders and the OS, which are not packages.
    // Identical duplicates (the same crate in several lock files) collapse.
    let c = counts(&inv.apps);
    assert_eq!(c[&AppSource::Dpkg], 722);
    assert_eq!(c[&AppSource::Go], 544);
    assert_eq!(c[&AppSource::Pypi], 107);
    assert_eq!(c[&AppSource::Npm], 7);
    assert_eq!(c[&AppSource::Cargo], 3634);
    // Epoch qualifier and trivy's source properties.
    let bsdutils = find(&inv, "bsdutils");
    assert_eq!(bsdutils.version, "1:2.38.1-5+deb12u3");
    assert_eq!(bsdutils.source_name.as_deref(), Some("util-linux"));
    assert_eq!(bsdutils.source_version.as_deref(), Some("2.38.1-5+deb12u3"));
    let libssl = find(&inv, "libssl3");
    assert_eq!(libssl.source_name.as_deref(), Some("openssl"));
    assert_eq!(libssl.arch.as_deref(), Some("amd64"));
    assert!(inv.warnings.is_empty(), "{:?}", inv.warnings);
}

#[test]
fn cdxgen_os_sbom_with_non_standard_deb_purls() {
    let inv = read("sboms/cdxgen-os.packages.cdx.json");
    // The OS is the document's subject: Debian+GNU/Linux 12 (bookworm), platform debian.
    let os = inv.os.clone().unwrap();
    assert_eq!((os.id.as_str(), os.version_id.as_str()), ("debian", "12"));
    assert_eq!(counts(&inv.apps)[&AppSource::Dpkg], 723);
    // `pkg:deb/bsdutils@1:2.38.1-5%2Bdeb12u3#/var/lib/dpkg`: no namespace, epoch inside.
    let bsdutils = find(&inv, "bsdutils");
    assert_eq!(bsdutils.version, "1:2.38.1-5+deb12u3");
    // The source package from cdxgen's `source` property.
    assert_eq!(
        find(&inv, "libssl3").source_name.as_deref(),
        Some("openssl")
    );
    // Apt sources (`data`), crypto assets and the kernel are not packages.
    assert!(inv.apps.iter().all(|a| a.name != "os-image"));
}

#[test]
fn python_and_npm_sboms() {
    let inv = read("sboms/cyclonedx-py-system-python3.cdx.json");
    assert_eq!(inv.apps.len(), 29);
    assert!(inv.os.is_none());
    let jwt = find(&inv, "pyjwt");
    assert_eq!(
        (jwt.version.as_str(), jwt.source),
        ("2.6.0", AppSource::Pypi)
    );
    let inv = read("sboms/cyclonedx-py-pyenv-3.11.7.cdx.json");
    assert_eq!(inv.apps.len(), 94);
    let inv = read("sboms/cdxgen-npm-cdxgen-project.cdx.json");
    assert_eq!(inv.apps.len(), 198);
    assert_eq!(find(&inv, "@cyclonedx/cdxgen").version, "12.8.4");
}

#[test]
fn dpkg_status_files() {
    let inv = read("inventories/dpkg/debian-12.11-host.status");
    assert_eq!(inv.format, Format::DpkgStatus);
    assert_eq!(inv.apps.len(), 707);
    // No OS in a status file: base-files 12.4+deb12u11 says Debian 12, with a warning.
    assert_eq!(inv.os.as_ref().map(|o| o.version_id.as_str()), Some("12"));
    assert!(inv.warnings.iter().any(|w| w.contains("guessed debian 12")));
    let inv = read("inventories/dpkg/trivy-ubuntu18.04.status");
    let os = inv.os.clone().unwrap();
    assert_eq!(
        (os.id.as_str(), os.version_id.as_str()),
        ("ubuntu", "18.04")
    );
    let libc = find(&inv, "libc6");
    assert_eq!(libc.source_name.as_deref(), Some("glibc"));
}

#[test]
fn apk_installed_databases() {
    let inv = read("inventories/apk/trivy-apk.installed");
    assert_eq!(inv.format, Format::ApkInstalled);
    // 16 entries, one deliberately without a version: skipped with a note naming its line.
    assert_eq!(inv.apps.len(), 15);
    assert!(inv
        .warnings
        .iter()
        .any(|w| w.contains("invalidPackageWithoutAVersion")));
    assert_eq!(
        find(&inv, "libssl1.0").source_name.as_deref(),
        Some("openssl")
    );
    // No release in the database and no alpine-release package: matching needs --distro.
    assert!(inv.os.is_none());
    assert!(inv.warnings.iter().any(|w| w.contains("--distro")));
    assert_eq!(read("inventories/apk/osv-scalibr.installed").apps.len(), 15);
    assert_eq!(
        read("inventories/apk/syft-multiple-2.installed").apps.len(),
        14
    );
}

#[test]
fn malformed_real_inputs_name_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // A real CycloneDX document cut in the middle.
    let real = std::fs::read(shared_path("sboms/cyclonedx-py-system-python3.cdx.json")).unwrap();
    let cut = dir.join("cut.cdx.json");
    std::fs::write(&cut, &real[..real.len() / 2]).unwrap();
    let e = read_path(&cut).unwrap_err();
    assert!(e.file.ends_with("cut.cdx.json"));
    assert!(e.line.is_some_and(|l| l > 1), "{e}");
    // A real dpkg status with a broken line.
    let status =
        std::fs::read_to_string(shared_path("inventories/dpkg/trivy-ubuntu18.04.status")).unwrap();
    let broken = status.replacen("Priority: required", "this line is not a field", 1);
    let at = broken
        .lines()
        .position(|l| l == "this line is not a field")
        .unwrap()
        + 1;
    let path = dir.join("status");
    std::fs::write(&path, broken).unwrap();
    let e = read_path(&path).unwrap_err();
    assert_eq!(e.line, Some(at), "{e}");
    assert!(
        e.to_string()
            .starts_with(&format!("{}:{at}:", path.display())),
        "{e}"
    );
    // A Cargo.lock with a bad value.
    let lock = dir.join("Cargo.lock");
    std::fs::write(
        &lock,
        "version = 4\n\n[[package]]\nname = \"a\"\nversion = 1.0\n",
    )
    .unwrap();
    let e = read_path(&lock).unwrap_err();
    assert_eq!(e.line, Some(5), "{e}");
}

#[test]
fn fuzz_body_on_real_inputs() {
    for rel in [
        "sboms/cyclonedx-py-system-python3.cdx.json",
        "inventories/dpkg/osv-scalibr-valid.status",
        "inventories/apk/trivy-apk.installed",
    ] {
        let bytes = std::fs::read(shared_path(rel)).unwrap();
        zt_sbom::fuzz_read(&bytes, None);
        zt_sbom::fuzz_read(&bytes[..bytes.len() / 3], None);
        for f in [
            Format::CycloneDx,
            Format::Spdx,
            Format::CargoLock,
            Format::DpkgStatus,
            Format::ApkInstalled,
        ] {
            zt_sbom::fuzz_read(&bytes, Some(f));
        }
    }
}

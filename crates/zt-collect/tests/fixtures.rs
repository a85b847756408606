//! Every collector parser against the real inventories in ../shared/data/inventories
//! (PROVENANCE.md section 5): counts and exact entries.

use std::path::Path;
use std::process::Command;

use zt_collect::{apk, dpkg, macos, os_release, rpm, windows, App, AppSource};
use zt_testkit::shared_path;

fn read(rel: &str) -> String {
    std::fs::read_to_string(shared_path(rel)).unwrap()
}

fn find<'a>(apps: &'a [App], name: &str) -> &'a App {
    apps.iter()
        .find(|a| a.name == name)
        .unwrap_or_else(|| panic!("{name} missing"))
}

fn deb(app: &App) -> (&str, &str, &str, &str, &str) {
    (
        app.name.as_str(),
        app.version.as_str(),
        app.arch.as_deref().unwrap_or(""),
        app.source_name.as_deref().unwrap_or(""),
        app.source_version.as_deref().unwrap_or(""),
    )
}

/// What dpkg itself says about a status file (dpkg-query --admindir), when dpkg is here.
fn dpkg_query(status: &Path) -> Option<Vec<String>> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("updates")).unwrap();
    std::fs::copy(status, dir.path().join("status")).unwrap();
    let out = Command::new("dpkg-query")
        .arg(format!("--admindir={}", dir.path().display()))
        .args(["-W", "-f", "${Package}\t${Version}\t${Architecture}\t${source:Package}\t${source:Version}\t${db:Status-Status}\n"])
        .output()
        .ok()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| {
            let (rest, state) = l.rsplit_once('\t')?;
            dpkg::status_is_installed(&format!("install ok {state}")).then(|| rest.to_string())
        })
        .collect();
    lines.sort();
    Some(lines)
}

fn check_against_dpkg_query(rel: &str, apps: &[App]) {
    match dpkg_query(&shared_path(rel)) {
        Some(expected) => {
            let mut got: Vec<String> = apps
                .iter()
                .map(|a| {
                    let (n, v, ar, sn, sv) = deb(a);
                    format!("{n}\t{v}\t{ar}\t{sn}\t{sv}")
                })
                .collect();
            got.sort();
            assert_eq!(got, expected, "{rel} differs from dpkg-query");
        }
        None => {
            eprintln!("WARNING: dpkg-query not found; {rel} checked against fixed entries only")
        }
    }
}

#[test]
fn dpkg_debian_12_host() {
    let rel = "inventories/dpkg/debian-12.11-host.status";
    let apps = dpkg::parse_status(&read(rel)).unwrap();
    assert_eq!(apps.len(), 707);
    assert!(apps.iter().all(|a| a.source == AppSource::Dpkg));
    assert_eq!(
        deb(find(&apps, "bsdutils")),
        (
            "bsdutils",
            "1:2.38.1-5+deb12u3",
            "amd64",
            "util-linux",
            "2.38.1-5+deb12u3"
        )
    );
    assert_eq!(
        deb(find(&apps, "bash")),
        ("bash", "5.2.15-2+b8", "amd64", "bash", "5.2.15-2")
    );
    assert_eq!(
        deb(find(&apps, "gcc")),
        ("gcc", "4:12.2.0-3", "amd64", "gcc-defaults", "1.203")
    );
    assert_eq!(
        deb(find(&apps, "libssl3")),
        (
            "libssl3",
            "3.0.19-1~deb12u2",
            "amd64",
            "openssl",
            "3.0.19-1~deb12u2"
        )
    );
    assert_eq!(
        deb(find(&apps, "zlib1g")),
        (
            "zlib1g",
            "1:1.2.13.dfsg-1",
            "amd64",
            "zlib",
            "1:1.2.13.dfsg-1"
        )
    );
    check_against_dpkg_query(rel, &apps);
}

#[test]
fn dpkg_osv_scalibr_valid() {
    let rel = "inventories/dpkg/osv-scalibr-valid.status";
    let apps = dpkg::parse_status(&read(rel)).unwrap();
    let got: Vec<_> = apps.iter().map(deb).collect();
    assert_eq!(
        got,
        [
            (
                "accountsservice",
                "22.08.8-6",
                "amd64",
                "accountsservice",
                "22.08.8-6"
            ),
            ("acl", "2.3.1-3", "amd64", "acl", "2.3.1-3"),
            ("adduser", "3.131", "all", "adduser", "3.131"),
            (
                "admin-session",
                "2023.06.26.c543406313-00",
                "amd64",
                "admin-session",
                "2023.06.26.c543406313-00"
            ),
            ("attr", "1:2.5.1-4", "amd64", "attr", "1:2.5.1-4"),
            ("libacl1", "2.3.1-3", "amd64", "acl", "2.3.1-3"),
            (
                "util-linux-extra",
                "2.38.1-5+b1",
                "amd64",
                "util-linux",
                "2.38.1-5"
            ),
        ]
    );
    check_against_dpkg_query(rel, &apps);
}

#[test]
fn dpkg_trivy_ubuntu_and_its_txtar() {
    let rel = "inventories/dpkg/trivy-ubuntu18.04.status";
    let text = read(rel);
    let apps = dpkg::parse_status(&text).unwrap();
    // 91 stanzas; git is `deinstall ok config-files`, so not installed.
    assert_eq!(apps.len(), 90);
    assert!(!apps.iter().any(|a| a.name == "git"));
    assert_eq!(
        deb(find(&apps, "fdisk")),
        (
            "fdisk",
            "2.31.1-0.4ubuntu3.1",
            "amd64",
            "util-linux",
            "2.31.1-0.4ubuntu3.1"
        )
    );
    assert_eq!(
        deb(find(&apps, "libpam-runtime")),
        (
            "libpam-runtime",
            "1.1.8-3.6ubuntu2",
            "all",
            "pam",
            "1.1.8-3.6ubuntu2"
        )
    );
    check_against_dpkg_query(rel, &apps);

    // The txtar holds the same file as its `var/lib/dpkg/status` section.
    let txtar = read("inventories/dpkg/trivy-valid.txtar");
    let marker = "-- var/lib/dpkg/status --\n";
    let start = txtar.find(marker).unwrap() + marker.len();
    let section = &txtar[start..];
    let section = section
        .find("\n-- ")
        .map_or(section, |end| &section[..=end]);
    assert_eq!(dpkg::parse_status(section).unwrap(), apps);
}

#[test]
fn dpkg_syft_status_d_skips_broken_stanzas() {
    let entries =
        dpkg::parse_status_entries(&read("inventories/dpkg/syft-status.d-multiple")).unwrap();
    let got: Vec<_> = entries.apps.iter().map(deb).collect();
    assert_eq!(
        got,
        [
            (
                "tzdata",
                "2020a-0+deb10u1",
                "all",
                "tzdata-dev",
                "2020a-0+deb10u1"
            ),
            (
                "util-linux",
                "2.33.1-0.1",
                "amd64",
                "util-linux",
                "2.33.1-0.1"
            ),
        ]
    );
    let skipped: Vec<_> = entries.skipped.iter().map(|s| s.line).collect();
    assert_eq!(skipped, [1, 3]);
    assert!(
        entries.skipped[1].reason.contains("no-version"),
        "{:?}",
        entries.skipped
    );
}

#[test]
fn dpkg_status_d_collector() {
    // A distroless layout: one stanza file per package, plus md5sums files that are not stanzas.
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("var/lib/dpkg/status.d");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        shared_path("inventories/dpkg/syft-status.d-multiple"),
        dir.join("multiple"),
    )
    .unwrap();
    std::fs::write(
        dir.join("tzdata.md5sums"),
        "d41d8cd98f00b204e9800998ecf8427e  usr/share/x\n",
    )
    .unwrap();
    let c = zt_collect::collect(&zt_collect::CollectOptions::under_root(root.path()));
    let names: Vec<_> = c.apps.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["tzdata", "util-linux"]);
    assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
    assert!(c.errors.is_empty(), "{:?}", c.errors);
    assert_eq!(
        c.apps[0].purl.as_deref(),
        Some("pkg:deb/linux/tzdata@2020a-0%2Bdeb10u1?arch=all&distro=linux")
            .filter(|_| c.os.id == "linux")
            .or(c.apps[0].purl.as_deref())
    );
}

#[test]
fn dpkg_malformed_real_input_names_the_line() {
    let text = read("inventories/dpkg/osv-scalibr-valid.status");
    let broken = text.replacen("Priority: optional\n", "Priority optional\n", 1);
    let e = dpkg::parse_status(&broken).unwrap_err();
    assert_eq!(e.line, 3);
    assert!(e.to_string().contains("Priority optional"), "{e}");
}

fn apk_row(a: &App) -> (&str, &str, &str, &str) {
    (
        a.name.as_str(),
        a.version.as_str(),
        a.arch.as_deref().unwrap_or(""),
        a.source_name.as_deref().unwrap_or(""),
    )
}

#[test]
fn apk_trivy_with_its_invalid_entry() {
    let entries =
        apk::parse_installed_entries(&read("inventories/apk/trivy-apk.installed")).unwrap();
    assert_eq!(entries.apps.len(), 15);
    assert_eq!(entries.skipped.len(), 1);
    assert!(entries.skipped[0]
        .reason
        .contains("invalidPackageWithoutAVersion"));
    assert_eq!(
        apk_row(&entries.apps[0]),
        ("musl", "1.1.14-r10", "x86_64", "musl")
    );
    assert_eq!(
        apk_row(&entries.apps[1]),
        ("busybox", "1.24.2-r9", "x86_64", "busybox")
    );
    assert_eq!(
        apk_row(entries.apps.last().unwrap()),
        ("ada-libs", "2.7.4-r0", "x86_64", "ada")
    );
    assert!(entries
        .apps
        .iter()
        .all(|a| a.source_version.as_deref() == Some(a.version.as_str())));
}

#[test]
fn apk_osv_scalibr() {
    let apps = apk::parse_installed(&read("inventories/apk/osv-scalibr.installed")).unwrap();
    assert_eq!(apps.len(), 15);
    assert_eq!(
        apk_row(&apps[1]),
        (
            "alpine-baselayout-data",
            "3.4.3-r1",
            "x86_64",
            "alpine-baselayout"
        )
    );
    assert_eq!(
        apk_row(apps.last().unwrap()),
        ("zlib", "1.2.13-r1", "x86_64", "zlib")
    );
}

#[test]
fn apk_syft_multiple() {
    let apps = apk::parse_installed(&read("inventories/apk/syft-multiple-2.installed")).unwrap();
    assert_eq!(apps.len(), 14);
    assert_eq!(apk_row(&apps[1]), ("musl", "1.2.3-r0", "x86_64", "musl"));
    assert_eq!(
        apk_row(apps.last().unwrap()),
        ("libc-utils", "0.7.2-r3", "x86_64", "libc-dev")
    );
}

/// The expected packages, sorted by name: the `rpm -qa` listing merged with the decoded JSON
/// in the shared data.
fn mariner_expected() -> Vec<rpm::RpmPackage> {
    let mut tsv = rpm::parse_rpm_qa(&read("inventories/rpm/cbl-mariner-2.0.rpm-qa.tsv")).unwrap();
    let json: Vec<serde_json::Value> =
        serde_json::from_str(&read("inventories/rpm/cbl-mariner-2.0.packages.json")).unwrap();
    assert_eq!(tsv.len(), json.len());
    for p in &mut tsv {
        let j = json.iter().find(|j| j["name"] == p.name.as_str()).unwrap();
        assert_eq!(j["version"], p.version.as_str());
        assert_eq!(j["release"], p.release.as_str());
        p.vendor = j["vendor"].as_str().map(str::to_string);
        p.license = j["license"].as_str().map(str::to_string);
        p.summary = j["summary"].as_str().map(str::to_string);
        p.size = j["size"].as_u64();
        p.install_time = j["installtime"].as_u64().map(|t| t as u32);
    }
    tsv.sort_by(|a, b| a.name.cmp(&b.name));
    tsv
}

#[test]
fn rpm_sqlite_mariner_matches_rpm_qa() {
    let path = shared_path("inventories/rpm/cbl-mariner-2.0.rpmdb.sqlite");
    let packages = rpm::read_rpmdb_sqlite(&path).unwrap();
    assert_eq!(packages.len(), 129);
    // rowid order is install order: the first package installed is mariner-release.
    assert_eq!(packages[0].name, "mariner-release");
    let mut sorted = packages.clone();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(sorted, mariner_expected());
    let curl = packages.iter().find(|p| p.name == "curl").unwrap();
    assert_eq!(curl.evr(), "7.76.0-6.cm2");
    let app = rpm::app_from_package(curl);
    assert_eq!(app.version, "7.76.0-6.cm2");
    assert_eq!(app.source_name.as_deref(), Some("curl"));
    assert_eq!(app.source_version.as_deref(), Some("7.76.0-6.cm2"));
    assert_eq!(app.vendor.as_deref(), Some("Microsoft Corporation"));
    let ca = packages
        .iter()
        .find(|p| p.name == "ca-certificates-base")
        .unwrap();
    let app = rpm::app_from_package(ca);
    assert_eq!(app.version, "1:2.0.0-1.cm2");
    assert_eq!(app.source_name.as_deref(), Some("ca-certificates"));
    assert_eq!(app.source_version.as_deref(), Some("1:2.0.0-1.cm2"));
}

#[test]
fn rpm_collector_reads_a_mounted_root() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("var/lib/rpm");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        shared_path("inventories/rpm/cbl-mariner-2.0.rpmdb.sqlite"),
        dir.join("rpmdb.sqlite"),
    )
    .unwrap();
    std::fs::create_dir_all(root.path().join("etc")).unwrap();
    std::fs::write(
        root.path().join("etc/os-release"),
        "ID=mariner\nVERSION_ID=\"2.0\"\n",
    )
    .unwrap();
    let c = zt_collect::collect(&zt_collect::CollectOptions::under_root(root.path()));
    assert!(c.errors.is_empty(), "{:?}", c.errors);
    assert_eq!(c.os.id, "mariner");
    assert_eq!(c.apps.len(), 129);
    let curl = c.apps.iter().find(|a| a.name == "curl").unwrap();
    assert_eq!(
        curl.purl.as_deref(),
        Some("pkg:rpm/mariner/curl@7.76.0-6.cm2?arch=x86_64&distro=mariner-2.0")
    );
}

#[test]
fn rpm_sqlite_reads_uncheckpointed_wal() {
    // SQLite itself (through Python) deletes three packages in WAL mode; the copy taken while
    // the connection is open has the change only in its -wal file.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rpmdb.sqlite");
    let copy = dir.path().join("copy.sqlite");
    let script = r#"
import shutil, sqlite3, sys
src, db, copy = sys.argv[1:4]
shutil.copy(src, db)
c = sqlite3.connect(db, isolation_level=None)
c.execute('PRAGMA journal_mode=WAL')
c.execute('PRAGMA wal_autocheckpoint=0')
c.execute('DELETE FROM Packages WHERE hnum IN (SELECT hnum FROM Packages ORDER BY hnum LIMIT 3)')
shutil.copy(db, copy)
shutil.copy(db + '-wal', copy + '-wal')
c.close()
"#;
    let ran = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(shared_path("inventories/rpm/cbl-mariner-2.0.rpmdb.sqlite"))
        .arg(&db)
        .arg(&copy)
        .status();
    match ran {
        Ok(s) if s.success() => {}
        other => {
            eprintln!("WARNING: python3 with sqlite3 unavailable ({other:?}); WAL test skipped");
            return;
        }
    }
    let wal_len = std::fs::metadata(dir.path().join("copy.sqlite-wal"))
        .unwrap()
        .len();
    assert!(wal_len > 0, "the change must still be in the WAL");
    let with_wal = rpm::read_rpmdb_sqlite(&copy).unwrap();
    assert_eq!(with_wal.len(), 126);
    assert!(!with_wal.iter().any(|p| p.name == "mariner-release"));
    std::fs::remove_file(dir.path().join("copy.sqlite-wal")).unwrap();
    assert_eq!(rpm::read_rpmdb_sqlite(&copy).unwrap().len(), 129);
}

#[test]
fn rpm_sqlite_truncated_file_is_an_error() {
    let bytes = std::fs::read(shared_path("inventories/rpm/cbl-mariner-2.0.rpmdb.sqlite")).unwrap();
    for len in [0, 50, 4096, 3 * 4096 + 17, bytes.len() / 2] {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("rpmdb.sqlite");
        std::fs::write(&p, &bytes[..len]).unwrap();
        assert!(rpm::read_rpmdb_sqlite(&p).is_err(), "truncated to {len}");
    }
}

#[test]
fn rpm_container_manifest() {
    let pkgs = rpm::parse_container_manifest(&read(
        "inventories/rpm/syft-cbl-mariner-container-manifest-2",
    ))
    .unwrap();
    assert_eq!(pkgs.len(), 5);
    let apps: Vec<_> = pkgs.iter().map(rpm::app_from_package).collect();
    let row = |a: &App| {
        (
            a.name.clone(),
            a.version.clone(),
            a.source_name.clone().unwrap_or_default(),
            a.source_version.clone().unwrap_or_default(),
        )
    };
    assert_eq!(
        row(&apps[0]),
        (
            "mariner-release".into(),
            "2.0-12.cm2".into(),
            "mariner-release".into(),
            "2.0-12.cm2".into()
        )
    );
    assert_eq!(
        row(&apps[3]),
        (
            "openssl-libs".into(),
            "1.1.1k-15.cm2".into(),
            "openssl".into(),
            "1.1.1k-15.cm2".into()
        )
    );
    assert_eq!(
        row(&apps[4]),
        (
            "vim".into(),
            "2:9.0-1.cm2".into(),
            "vim".into(),
            "2:9.0-1.cm2".into()
        )
    );
}

#[test]
fn macos_info_plists() {
    let bytes = |rel: &str| std::fs::read(shared_path(rel)).unwrap();
    let chrome =
        macos::parse_info_plist(&bytes("inventories/macos/osv-scalibr-ValidXML.plist")).unwrap();
    assert_eq!(
        (chrome.name.as_str(), chrome.version.as_str()),
        ("Chrome", "130.0.6723.69")
    );
    assert_eq!(chrome.source_name.as_deref(), Some("com.google.Chrome"));
    assert_eq!(chrome.source, AppSource::Macos);

    let binary =
        macos::parse_info_plist(&bytes("inventories/macos/osv-scalibr-BinaryApp.plist")).unwrap();
    assert_eq!(
        (binary.name.as_str(), binary.version.as_str()),
        ("gMacInformation", "202410231131")
    );
    assert_eq!(
        binary.source_name.as_deref(),
        Some("com.google.corp.gMacInformation")
    );

    // No CFBundleShortVersionString: refused rather than reported with the build number.
    assert_eq!(
        macos::parse_info_plist(&bytes("inventories/macos/osv-scalibr-MissingData.plist")),
        Err(macos::PlistAppError::Missing("CFBundleShortVersionString"))
    );
    let mut truncated = bytes("inventories/macos/osv-scalibr-ValidXML.plist");
    truncated.truncate(truncated.len() / 2);
    assert!(macos::parse_info_plist(&truncated).is_err());
}

#[test]
fn windows_dism_listing() {
    let listing =
        windows::parse_dism_packages(&read("inventories/windows/osv-scalibr-dism_testdata.txt"))
            .unwrap();
    assert_eq!(listing.image_version.as_deref(), Some("10.0.17763.3406"));
    assert_eq!(listing.packages.len(), 6);
    let installed = listing
        .packages
        .iter()
        .filter(|p| p.state == "Installed")
        .count();
    assert_eq!(installed, 5);
    let rollup = &listing.packages[2];
    assert_eq!(
        (
            rollup.name.as_str(),
            rollup.arch.as_str(),
            rollup.version.as_str(),
            rollup.release_type.as_str()
        ),
        (
            "Package_for_RollupFix",
            "amd64",
            "17763.3406.1.5",
            "Security Update"
        )
    );
    assert_eq!(listing.packages[3].state, "Superseded");
    let wordpad = &listing.packages[5];
    assert_eq!(
        (wordpad.arch.as_str(), wordpad.version.as_str()),
        ("wow64", "10.0.19041.1")
    );
}

#[test]
fn os_release_of_this_host_parses() {
    // The fixture inventories carry no os-release; the host's own is real input.
    if let Ok(text) = std::fs::read_to_string("/etc/os-release") {
        let os = os_release::parse(&text);
        assert!(!os.id.is_empty());
    }
}

#[test]
fn fuzz_bodies_survive_real_and_garbage_inputs() {
    use zt_collect::fuzz_bodies as f;
    let mut inputs: Vec<Vec<u8>> = vec![
        vec![],
        b"\0\xff\xfe".to_vec(),
        b"Package: a\n Version: 1\n".to_vec(),
        b"P:\nV:\n\n:\n".to_vec(),
        vec![0x8e, 0xad, 0xe8, 0x01, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0],
        b"SQLite format 3\0\x10\x00".to_vec(),
    ];
    for rel in [
        "inventories/dpkg/osv-scalibr-valid.status",
        "inventories/apk/trivy-apk.installed",
        "inventories/macos/osv-scalibr-BinaryApp.plist",
        "inventories/macos/osv-scalibr-ValidXML.plist",
    ] {
        inputs.push(std::fs::read(shared_path(rel)).unwrap());
    }
    let db = std::fs::read(shared_path("inventories/rpm/cbl-mariner-2.0.rpmdb.sqlite")).unwrap();
    inputs.push(db[..8 * 4096].to_vec());
    let mut flipped = db[..8 * 4096].to_vec();
    for i in (100..flipped.len()).step_by(97) {
        flipped[i] ^= 0x5a;
    }
    inputs.push(flipped);
    for input in &inputs {
        f::dpkg_status(input);
        f::apk_installed(input);
        f::os_release(input);
        f::plist_app(input);
        f::rpm_header(input);
        f::rpmdb_sqlite(input);
    }
    f::rpmdb_sqlite(&db);
}

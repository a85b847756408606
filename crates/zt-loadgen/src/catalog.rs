//! What simulated hosts have installed: a catalog of real package names with plausible version
//! histories per OS, optionally extended from real package lists (dpkg status files, SBOMs).
//!
//! The built-in catalog was written for this project from general knowledge of what a Debian,
//! Ubuntu or Alpine server and a Python or Node.js application typically carry; older versions are
//! included on purpose so that a fleet produces findings against real advisories.

use zt_inventory::{App, AppSource, OsInfo};

/// One package the generator can install: its versions are ordered oldest first, and hosts
/// mostly carry the newer ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogEntry {
    pub source: AppSource,
    pub name: String,
    /// Source package for distro packages (dpkg `Source:`), if it differs from `name`.
    pub source_name: Option<String>,
    pub versions: Vec<String>,
}

/// A host image: the OS and the packages it may carry.
#[derive(Debug, Clone)]
pub struct Platform {
    pub os: OsInfo,
    pub arch: &'static str,
    /// Share of simulated hosts that run this platform (relative weight).
    pub weight: u32,
    pub packages: Vec<CatalogEntry>,
}

/// All platforms plus the language-ecosystem packages any host may carry.
#[derive(Debug, Clone)]
pub struct Catalog {
    pub platforms: Vec<Platform>,
    pub language_packages: Vec<CatalogEntry>,
}

impl CatalogEntry {
    fn new(source: AppSource, name: &str, source_name: Option<&str>, versions: &[&str]) -> Self {
        CatalogEntry {
            source,
            name: name.to_string(),
            source_name: source_name.map(str::to_string),
            versions: versions.iter().map(|v| v.to_string()).collect(),
        }
    }

    /// The app a host reports for version number `i` of this entry.
    pub fn app(&self, i: usize) -> App {
        let version = &self.versions[i.min(self.versions.len() - 1)];
        let mut app = App::new(self.name.clone(), version.clone(), self.source);
        if self.source.is_distro() {
            app.source_name = Some(
                self.source_name
                    .clone()
                    .unwrap_or_else(|| self.name.clone()),
            );
            app.source_version = Some(version.clone());
            app.arch = Some(
                if self.source == AppSource::Apk {
                    "x86_64"
                } else {
                    "amd64"
                }
                .into(),
            );
        }
        app
    }
}

fn os(id: &str, version_id: &str, name: &str) -> OsInfo {
    OsInfo {
        id: id.into(),
        version_id: version_id.into(),
        name: name.into(),
    }
}

fn entries(source: AppSource, rows: &[(&str, &str, &[&str])]) -> Vec<CatalogEntry> {
    rows.iter()
        .map(|(name, src, versions)| {
            let src = if src.is_empty() { None } else { Some(*src) };
            CatalogEntry::new(source, name, src, versions)
        })
        .collect()
}

impl Catalog {
    /// The catalog compiled into the binary: works with no files at all.
    pub fn builtin() -> Catalog {
        Catalog {
            platforms: vec![
                Platform {
                    os: os("debian", "12", "Debian GNU/Linux 12 (bookworm)"),
                    arch: "x86_64",
                    weight: 40,
                    packages: entries(AppSource::Dpkg, DEBIAN_12),
                },
                Platform {
                    os: os("debian", "11", "Debian GNU/Linux 11 (bullseye)"),
                    arch: "x86_64",
                    weight: 20,
                    packages: entries(AppSource::Dpkg, DEBIAN_11),
                },
                Platform {
                    os: os("ubuntu", "22.04", "Ubuntu 22.04.4 LTS"),
                    arch: "x86_64",
                    weight: 25,
                    packages: entries(AppSource::Dpkg, UBUNTU_2204),
                },
                Platform {
                    os: os("alpine", "3.19.1", "Alpine Linux v3.19"),
                    arch: "x86_64",
                    weight: 15,
                    packages: entries(AppSource::Apk, ALPINE_319),
                },
            ],
            language_packages: [
                entries(AppSource::Pypi, PYPI),
                entries(AppSource::Npm, NPM),
                entries(AppSource::Cargo, CRATES),
                entries(AppSource::Go, GO),
            ]
            .concat(),
        }
    }

    /// Adds packages read from real inventories to the matching platforms (dpkg/apk apps) or to
    /// the language pool (everything else). Each distinct (source, name) becomes one entry whose
    /// versions are all versions seen.
    pub fn extend_with(&mut self, apps: &[App], os_hint: Option<&OsInfo>) -> usize {
        let mut added = 0;
        for app in apps {
            let pool: &mut Vec<CatalogEntry> = match app.source {
                AppSource::Dpkg | AppSource::Apk | AppSource::Rpm => {
                    let platform = self.platforms.iter_mut().find(|p| {
                        let major = |v: &str| v.split('.').next().unwrap_or("").to_string();
                        let same_os = os_hint.is_none_or(|o| {
                            o.id == p.os.id && major(&o.version_id) == major(&p.os.version_id)
                        });
                        same_os && p.packages.first().map(|e| e.source) == Some(app.source)
                    });
                    match platform {
                        Some(p) => &mut p.packages,
                        None => continue,
                    }
                }
                _ => &mut self.language_packages,
            };
            match pool
                .iter_mut()
                .find(|e| e.source == app.source && e.name == app.name)
            {
                Some(e) => {
                    if !e.versions.contains(&app.version) {
                        e.versions.push(app.version.clone());
                        added += 1;
                    }
                }
                None => {
                    pool.push(CatalogEntry {
                        source: app.source,
                        name: app.name.clone(),
                        source_name: app.source_name.clone(),
                        versions: vec![app.version.clone()],
                    });
                    added += 1;
                }
            }
        }
        added
    }
}

// (binary package, source package or "" when equal, versions oldest first)
type Row = (&'static str, &'static str, &'static [&'static str]);

const DEBIAN_12: &[Row] = &[
    (
        "libc6",
        "glibc",
        &["2.36-9+deb12u3", "2.36-9+deb12u4", "2.36-9+deb12u7"],
    ),
    (
        "libc-bin",
        "glibc",
        &["2.36-9+deb12u3", "2.36-9+deb12u4", "2.36-9+deb12u7"],
    ),
    (
        "openssl",
        "",
        &["3.0.9-1", "3.0.11-1~deb12u2", "3.0.13-1~deb12u1"],
    ),
    (
        "libssl3",
        "openssl",
        &["3.0.9-1", "3.0.11-1~deb12u2", "3.0.13-1~deb12u1"],
    ),
    (
        "curl",
        "",
        &["7.88.1-10", "7.88.1-10+deb12u5", "7.88.1-10+deb12u7"],
    ),
    (
        "libcurl4",
        "curl",
        &["7.88.1-10", "7.88.1-10+deb12u5", "7.88.1-10+deb12u7"],
    ),
    ("bash", "", &["5.2.15-2+b2"]),
    ("coreutils", "", &["9.1-1"]),
    ("dpkg", "", &["1.21.22"]),
    ("apt", "", &["2.6.1"]),
    ("libapt-pkg6.0", "apt", &["2.6.1"]),
    ("tar", "", &["1.34+dfsg-1.2", "1.34+dfsg-1.2+deb12u1"]),
    ("gzip", "", &["1.12-1"]),
    ("xz-utils", "", &["5.4.1-0.2"]),
    ("liblzma5", "xz-utils", &["5.4.1-0.2"]),
    ("zlib1g", "zlib", &["1:1.2.13.dfsg-1"]),
    (
        "libsystemd0",
        "systemd",
        &["252.17-1~deb12u1", "252.22-1~deb12u1", "252.26-1~deb12u2"],
    ),
    (
        "systemd",
        "",
        &["252.17-1~deb12u1", "252.22-1~deb12u1", "252.26-1~deb12u2"],
    ),
    (
        "libudev1",
        "systemd",
        &["252.17-1~deb12u1", "252.22-1~deb12u1", "252.26-1~deb12u2"],
    ),
    (
        "openssh-server",
        "openssh",
        &["1:9.2p1-2", "1:9.2p1-2+deb12u2", "1:9.2p1-2+deb12u3"],
    ),
    (
        "openssh-client",
        "openssh",
        &["1:9.2p1-2", "1:9.2p1-2+deb12u2", "1:9.2p1-2+deb12u3"],
    ),
    ("sudo", "", &["1.9.13p3-1+deb12u1"]),
    ("git", "", &["1:2.39.2-1.1", "1:2.39.5-0+deb12u1"]),
    ("perl-base", "perl", &["5.36.0-7", "5.36.0-7+deb12u1"]),
    ("python3.11", "", &["3.11.2-6", "3.11.2-6+deb12u2"]),
    (
        "libpython3.11-stdlib",
        "python3.11",
        &["3.11.2-6", "3.11.2-6+deb12u2"],
    ),
    ("libxml2", "", &["2.9.14+dfsg-1.3~deb12u1"]),
    ("libsqlite3-0", "sqlite3", &["3.40.1-2"]),
    ("libexpat1", "expat", &["2.5.0-1"]),
    ("libgnutls30", "gnutls28", &["3.7.9-2", "3.7.9-2+deb12u2"]),
    ("libkrb5-3", "krb5", &["1.20.1-2", "1.20.1-2+deb12u1"]),
    ("libpam-modules", "pam", &["1.5.2-6", "1.5.2-6+deb12u1"]),
    ("login", "shadow", &["1:4.13+dfsg1-1"]),
    ("passwd", "shadow", &["1:4.13+dfsg1-1"]),
    ("util-linux", "", &["2.38.1-5+b1"]),
    ("mount", "util-linux", &["2.38.1-5+b1"]),
    ("e2fsprogs", "", &["1.47.0-2"]),
    ("libpcre2-8-0", "pcre2", &["10.42-1"]),
    ("libgcrypt20", "", &["1.10.1-3"]),
    ("gpgv", "gnupg2", &["2.2.40-1.1"]),
    ("ca-certificates", "", &["20230311"]),
    ("tzdata", "", &["2024a-0+deb12u1"]),
    ("nginx", "", &["1.22.1-9"]),
    ("apache2", "", &["2.4.57-2", "2.4.59-1~deb12u1"]),
    ("postgresql-15", "", &["15.5-0+deb12u1", "15.7-0+deb12u1"]),
    ("redis-server", "redis", &["5:7.0.11-1+deb12u1"]),
    (
        "libnghttp2-14",
        "nghttp2",
        &["1.52.0-1", "1.52.0-1+deb12u1"],
    ),
    ("libtiff6", "tiff", &["4.5.0-6", "4.5.0-6+deb12u1"]),
    ("libwebp7", "libwebp", &["1.2.4-0.2", "1.2.4-0.2+deb12u1"]),
    ("vim-tiny", "vim", &["2:9.0.1378-2"]),
    ("less", "", &["590-2"]),
    ("procps", "", &["2:4.0.2-3"]),
    ("iproute2", "", &["6.1.0-3"]),
    ("rsyslog", "", &["8.2302.0-1"]),
    ("cron", "", &["3.0pl1-162"]),
];

const DEBIAN_11: &[Row] = &[
    ("libc6", "glibc", &["2.31-13+deb11u5", "2.31-13+deb11u7"]),
    (
        "openssl",
        "",
        &["1.1.1n-0+deb11u3", "1.1.1n-0+deb11u4", "1.1.1w-0+deb11u1"],
    ),
    (
        "libssl1.1",
        "openssl",
        &["1.1.1n-0+deb11u3", "1.1.1n-0+deb11u4", "1.1.1w-0+deb11u1"],
    ),
    ("curl", "", &["7.74.0-1.3+deb11u3", "7.74.0-1.3+deb11u7"]),
    (
        "libcurl4",
        "curl",
        &["7.74.0-1.3+deb11u3", "7.74.0-1.3+deb11u7"],
    ),
    ("bash", "", &["5.1-2+deb11u1"]),
    ("tar", "", &["1.34+dfsg-1"]),
    ("gzip", "", &["1.10-4+deb11u1"]),
    (
        "zlib1g",
        "zlib",
        &["1:1.2.11.dfsg-2+deb11u1", "1:1.2.11.dfsg-2+deb11u2"],
    ),
    ("systemd", "", &["247.3-7+deb11u1", "247.3-7+deb11u4"]),
    (
        "openssh-server",
        "openssh",
        &["1:8.4p1-5+deb11u1", "1:8.4p1-5+deb11u2"],
    ),
    ("sudo", "", &["1.9.5p2-3", "1.9.5p2-3+deb11u1"]),
    ("git", "", &["1:2.30.2-1", "1:2.30.2-1+deb11u2"]),
    (
        "libxml2",
        "",
        &["2.9.10+dfsg-6.7+deb11u2", "2.9.10+dfsg-6.7+deb11u4"],
    ),
    ("libsqlite3-0", "sqlite3", &["3.34.1-3"]),
    (
        "libexpat1",
        "expat",
        &["2.2.10-2+deb11u3", "2.2.10-2+deb11u5"],
    ),
    ("libtiff5", "tiff", &["4.2.0-1+deb11u1", "4.2.0-1+deb11u4"]),
    ("libwebp6", "libwebp", &["0.6.1-2.1", "0.6.1-2.1+deb11u1"]),
    ("nginx", "", &["1.18.0-6.1+deb11u2", "1.18.0-6.1+deb11u3"]),
    ("apache2", "", &["2.4.54-1~deb11u1", "2.4.56-1~deb11u1"]),
    ("postgresql-13", "", &["13.9-0+deb11u1", "13.10-0+deb11u1"]),
    ("python3.9", "", &["3.9.2-1"]),
    ("perl-base", "perl", &["5.32.1-4+deb11u2"]),
    ("vim-tiny", "vim", &["2:8.2.2434-3+deb11u1"]),
    (
        "libkrb5-3",
        "krb5",
        &["1.18.3-6+deb11u1", "1.18.3-6+deb11u3"],
    ),
    (
        "libgnutls30",
        "gnutls28",
        &["3.7.1-5+deb11u2", "3.7.1-5+deb11u3"],
    ),
    ("e2fsprogs", "", &["1.46.2-2"]),
    ("util-linux", "", &["2.36.1-8+deb11u1"]),
    ("ca-certificates", "", &["20210119"]),
    ("tzdata", "", &["2021a+deb11u8"]),
];

const UBUNTU_2204: &[Row] = &[
    ("libc6", "glibc", &["2.35-0ubuntu3.4", "2.35-0ubuntu3.6"]),
    ("openssl", "", &["3.0.2-0ubuntu1.10", "3.0.2-0ubuntu1.15"]),
    (
        "libssl3",
        "openssl",
        &["3.0.2-0ubuntu1.10", "3.0.2-0ubuntu1.15"],
    ),
    ("curl", "", &["7.81.0-1ubuntu1.13", "7.81.0-1ubuntu1.16"]),
    ("bash", "", &["5.1-6ubuntu1"]),
    ("coreutils", "", &["8.32-4.1ubuntu1"]),
    ("systemd", "", &["249.11-0ubuntu3.9", "249.11-0ubuntu3.12"]),
    (
        "openssh-server",
        "openssh",
        &["1:8.9p1-3ubuntu0.4", "1:8.9p1-3ubuntu0.6"],
    ),
    ("sudo", "", &["1.9.9-1ubuntu2.4"]),
    ("git", "", &["1:2.34.1-1ubuntu1.10"]),
    ("python3.10", "", &["3.10.12-1~22.04.3"]),
    ("libxml2", "", &["2.9.13+dfsg-1ubuntu0.3"]),
    ("tar", "", &["1.34+dfsg-1ubuntu0.1.22.04.1"]),
    ("zlib1g", "zlib", &["1:1.2.11.dfsg-2ubuntu9.2"]),
    ("nginx", "", &["1.18.0-6ubuntu14.4"]),
    ("vim", "", &["2:8.2.3995-1ubuntu2.13"]),
    ("libtiff5", "tiff", &["4.3.0-6ubuntu0.7"]),
    ("snapd", "", &["2.61.3+22.04"]),
];

const ALPINE_319: &[Row] = &[
    ("musl", "", &["1.2.4_git20230717-r4"]),
    ("busybox", "", &["1.36.1-r15", "1.36.1-r19"]),
    ("libcrypto3", "openssl", &["3.1.4-r2", "3.1.4-r5"]),
    ("libssl3", "openssl", &["3.1.4-r2", "3.1.4-r5"]),
    ("zlib", "", &["1.3.1-r0"]),
    ("apk-tools", "", &["2.14.0-r5"]),
    ("curl", "", &["8.5.0-r0", "8.9.0-r0"]),
    ("libcurl", "curl", &["8.5.0-r0", "8.9.0-r0"]),
    (
        "ca-certificates-bundle",
        "ca-certificates",
        &["20240226-r0"],
    ),
    ("libexpat", "expat", &["2.6.0-r0", "2.6.2-r0"]),
    ("nginx", "", &["1.24.0-r15"]),
    ("python3", "", &["3.11.8-r0"]),
    ("sqlite-libs", "sqlite", &["3.44.2-r0"]),
    ("xz-libs", "xz", &["5.4.5-r0"]),
];

const PYPI: &[Row] = &[
    ("requests", "", &["2.25.1", "2.28.2", "2.31.0", "2.32.3"]),
    ("urllib3", "", &["1.26.4", "1.26.18", "2.0.7", "2.2.2"]),
    ("Django", "", &["3.2.0", "3.2.25", "4.2.7", "5.0.6"]),
    ("Flask", "", &["1.1.2", "2.2.5", "3.0.3"]),
    ("Jinja2", "", &["2.11.2", "3.1.2", "3.1.4"]),
    ("PyYAML", "", &["5.3", "5.4.1", "6.0.1"]),
    ("cryptography", "", &["3.3.2", "39.0.1", "42.0.5"]),
    ("Pillow", "", &["8.1.0", "9.5.0", "10.3.0"]),
    ("numpy", "", &["1.21.0", "1.24.4", "1.26.4"]),
    ("setuptools", "", &["58.1.0", "65.5.0", "69.5.1"]),
    ("certifi", "", &["2022.12.7", "2024.2.2"]),
    ("idna", "", &["2.10", "3.4", "3.7"]),
    ("Werkzeug", "", &["1.0.1", "2.2.3", "3.0.3"]),
    ("aiohttp", "", &["3.8.1", "3.9.5"]),
    ("lxml", "", &["4.6.2", "5.2.1"]),
    ("paramiko", "", &["2.7.2", "3.4.0"]),
    ("sqlparse", "", &["0.4.1", "0.5.0"]),
    ("pip", "", &["21.0", "23.0.1", "24.0"]),
];

const NPM: &[Row] = &[
    ("lodash", "", &["4.17.15", "4.17.20", "4.17.21"]),
    ("minimist", "", &["1.2.0", "1.2.5", "1.2.8"]),
    ("semver", "", &["5.7.1", "7.3.5", "7.6.0"]),
    ("express", "", &["4.17.1", "4.18.2", "4.19.2"]),
    ("axios", "", &["0.21.0", "1.6.0", "1.7.2"]),
    ("node-fetch", "", &["2.6.0", "2.6.7", "3.3.2"]),
    ("tar", "", &["4.4.13", "6.1.11", "6.2.1"]),
    ("ws", "", &["7.4.2", "8.11.0", "8.17.1"]),
    ("jsonwebtoken", "", &["8.5.1", "9.0.2"]),
    ("moment", "", &["2.29.1", "2.29.4"]),
    ("qs", "", &["6.5.2", "6.11.0"]),
    ("debug", "", &["2.6.8", "4.3.4"]),
];

const CRATES: &[Row] = &[
    ("tokio", "", &["1.8.0", "1.28.2", "1.38.0"]),
    ("hyper", "", &["0.14.10", "0.14.28", "1.3.1"]),
    ("regex", "", &["1.5.4", "1.10.4"]),
    ("time", "", &["0.1.43", "0.3.36"]),
    ("openssl", "", &["0.10.40", "0.10.64"]),
    ("smallvec", "", &["1.6.0", "1.13.2"]),
];

const GO: &[Row] = &[
    ("golang.org/x/net", "", &["v0.7.0", "v0.17.0", "v0.25.0"]),
    (
        "golang.org/x/crypto",
        "",
        &["v0.0.0-20220314234659-1baeb1ce4c0b", "v0.17.0", "v0.23.0"],
    ),
    ("golang.org/x/text", "", &["v0.3.7", "v0.14.0"]),
    ("github.com/gin-gonic/gin", "", &["v1.7.0", "v1.9.1"]),
    ("google.golang.org/grpc", "", &["v1.53.0", "v1.64.0"]),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalog_is_well_formed() {
        let c = Catalog::builtin();
        assert!(c.platforms.len() >= 4);
        for p in &c.platforms {
            assert!(p.packages.len() >= 10, "{:?}", p.os);
            for e in &p.packages {
                assert!(!e.versions.is_empty(), "{}", e.name);
                let app = e.app(usize::MAX);
                assert_eq!(app.version, *e.versions.last().unwrap());
                assert!(app.source_name.is_some());
            }
        }
        assert!(c.language_packages.len() >= 40);
    }

    #[test]
    fn extend_adds_new_packages_and_versions_once() {
        let mut c = Catalog::builtin();
        let apps = vec![
            App::new("requests", "2.0.0", AppSource::Pypi),
            App::new("requests", "2.0.0", AppSource::Pypi),
            App::new("brand-new", "1.0", AppSource::Npm),
        ];
        assert_eq!(c.extend_with(&apps, None), 2);
    }
}

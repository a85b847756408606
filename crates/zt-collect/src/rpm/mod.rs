//! rpm: the SQLite rpmdb of current Fedora, RHEL 9+, SUSE and CBL-Mariner/Azure Linux
//! (`rpmdb.sqlite`), the distroless Mariner manifest, and `rpm -qa` for the older Berkeley DB
//! (`Packages`) and NDB (`Packages.db`) formats, which this crate does not decode itself.

pub mod header;
pub mod sqlite;

use std::path::{Path, PathBuf};

pub use header::RpmPackage;

use crate::{App, AppSource, CollectError, CollectOptions, Collection, ParseError};

/// Every package header in an rpmdb.sqlite, plus the rows whose header could not be decoded.
#[derive(Debug, Default)]
pub struct RpmdbContents {
    pub packages: Vec<RpmPackage>,
    /// (row id, why) for rows that were skipped.
    pub skipped: Vec<(i64, ParseError)>,
}

/// Reads every package of an `rpmdb.sqlite` (and its `-wal`). Rows with an undecodable header
/// are an error here; [`read_rpmdb_sqlite_entries`] skips them instead.
pub fn read_rpmdb_sqlite(path: &Path) -> Result<Vec<RpmPackage>, CollectError> {
    let contents = read_rpmdb_sqlite_entries(path)?;
    match contents.skipped.into_iter().next() {
        Some((row, e)) => Err(CollectError::parse(
            path,
            ParseError::at("Packages row", row as usize, e.to_string()),
        )),
        None => Ok(contents.packages),
    }
}

/// [`read_rpmdb_sqlite`] that skips (and lists) rows whose header does not decode.
pub fn read_rpmdb_sqlite_entries(path: &Path) -> Result<RpmdbContents, CollectError> {
    let wrap = |e: sqlite::SqliteError| match e {
        sqlite::SqliteError::Io(io) => CollectError::io(path, io),
        sqlite::SqliteError::Format(p) => CollectError::parse(path, p),
    };
    let mut db = sqlite::Database::open(path).map_err(wrap)?;
    read_packages_table(&mut db).map_err(|e| match e {
        Some(e) => wrap(e),
        None => CollectError::Unsupported {
            path: path.to_path_buf(),
            message: "no Packages table: not an rpmdb".into(),
        },
    })
}

/// Reads the rpmdb `Packages` table of an open database; `Err(None)` when there is none.
pub fn read_packages_table(
    db: &mut sqlite::Database,
) -> Result<RpmdbContents, Option<sqlite::SqliteError>> {
    let root = db.table_root("Packages").map_err(Some)?.ok_or(None)?;
    let mut out = RpmdbContents::default();
    db.for_each_row(root, &mut |rowid, record| {
        let blob = match record.get(1) {
            Some(sqlite::Value::Blob(b)) => header::parse(b),
            _ => Err(ParseError::at("header", 0, "row has no header blob")),
        };
        match blob {
            Ok(p) => out.packages.push(p),
            Err(e) => out.skipped.push((rowid, e)),
        }
        Ok(())
    })
    .map_err(Some)?;
    Ok(out)
}

/// `name-version-release.src.rpm` → (name, version, release).
pub fn parse_source_rpm(srpm: &str) -> Option<(&str, &str, &str)> {
    let stem = srpm
        .strip_suffix(".src.rpm")
        .or_else(|| srpm.strip_suffix(".nosrc.rpm"))?;
    let (rest, release) = stem.rsplit_once('-')?;
    let (name, version) = rest.rsplit_once('-')?;
    if name.is_empty() || version.is_empty() || release.is_empty() {
        return None;
    }
    Some((name, version, release))
}

/// The inventory app of an rpm package: version `[epoch:]version-release`, the source package
/// and its version from the source rpm's file name (with the binary's epoch: rpm builds a
/// binary package with its source package's epoch).
pub fn app_from_package(p: &RpmPackage) -> App {
    let mut app = App::new(&p.name, p.evr(), AppSource::Rpm);
    app.arch = p.arch.clone();
    app.vendor = p.vendor.clone();
    if let Some((name, version, release)) = p.source_rpm.as_deref().and_then(parse_source_rpm) {
        app.source_name = Some(name.to_string());
        app.source_version = Some(header::evr(p.epoch, version, release));
    }
    app
}

/// `gpg-pubkey` entries are imported signing keys, not software.
fn is_software(p: &RpmPackage) -> bool {
    p.name != "gpg-pubkey"
}

/// Tab-separated `rpm -qa` output with the columns NAME, EPOCH, VERSION, RELEASE, ARCH, SOURCERPM
/// and optionally VENDOR (`(none)` for an absent value), as [`RPM_QA_FORMAT`] prints it.
pub fn parse_rpm_qa(text: &str) -> Result<Vec<RpmPackage>, ParseError> {
    let none = |s: &str| (!s.is_empty() && s != "(none)").then(|| s.to_string());
    let mut out = Vec::new();
    for (idx, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let cols: Vec<&str> = line.split('\t').collect();
        if cols.len() < 6 {
            return Err(ParseError::at_line(
                idx + 1,
                format!("{} tab-separated columns, expected at least 6", cols.len()),
            ));
        }
        let epoch = match cols[1] {
            "(none)" | "" => None,
            e => Some(e.parse::<u32>().map_err(|_| {
                ParseError::at_line(idx + 1, format!("epoch {e:?} is not a number"))
            })?),
        };
        if cols[0].is_empty() || cols[2].is_empty() {
            return Err(ParseError::at_line(idx + 1, "empty name or version"));
        }
        out.push(RpmPackage {
            name: cols[0].to_string(),
            epoch,
            version: cols[2].to_string(),
            release: cols[3].to_string(),
            arch: none(cols[4]),
            source_rpm: none(cols[5]),
            vendor: cols.get(6).and_then(|v| none(v)),
            ..RpmPackage::default()
        });
    }
    Ok(out)
}

/// The `--queryformat` whose output [`parse_rpm_qa`] reads.
pub const RPM_QA_FORMAT: &str =
    "%{NAME}\\t%{EPOCH}\\t%{VERSION}\\t%{RELEASE}\\t%{ARCH}\\t%{SOURCERPM}\\t%{VENDOR}\\n";

/// The distroless CBL-Mariner manifest (`/var/lib/rpmmanifest/container-manifest-2`): tab
/// separated NAME, VERSION-RELEASE, INSTALLTIME, BUILDTIME, VENDOR, EPOCH, SIZE, ARCH,
/// EPOCHNUM, SOURCERPM.
pub fn parse_container_manifest(text: &str) -> Result<Vec<RpmPackage>, ParseError> {
    let mut out = Vec::new();
    for (idx, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let cols: Vec<&str> = line.split('\t').collect();
        let err = |m: String| ParseError::at_line(idx + 1, m);
        if cols.len() < 10 {
            return Err(err(format!(
                "{} tab-separated columns, expected 10",
                cols.len()
            )));
        }
        let (version, release) = cols[1]
            .rsplit_once('-')
            .ok_or_else(|| err(format!("{:?} is not VERSION-RELEASE", cols[1])))?;
        if cols[0].is_empty() || version.is_empty() {
            return Err(err("empty name or version".into()));
        }
        let epoch = match cols[5] {
            "(none)" | "" => None,
            e => Some(
                e.parse::<u32>()
                    .map_err(|_| err(format!("epoch {e:?} is not a number")))?,
            ),
        };
        let opt = |s: &str| (!s.is_empty() && s != "(none)").then(|| s.to_string());
        out.push(RpmPackage {
            name: cols[0].to_string(),
            epoch,
            version: version.to_string(),
            release: release.to_string(),
            arch: opt(cols[7]),
            source_rpm: opt(cols[9]),
            vendor: opt(cols[4]),
            size: cols[6].parse().ok(),
            install_time: cols[2].parse().ok(),
            ..RpmPackage::default()
        });
    }
    Ok(out)
}

const DB_DIRS: [&str; 2] = ["/usr/lib/sysimage/rpm", "/var/lib/rpm"];

/// Collects the rpm database of the root: the SQLite rpmdb when present, else `rpm -qa` on the
/// running host for the older formats, else the distroless manifest.
pub fn collect(options: &CollectOptions, out: &mut Collection) {
    let mut seen = Vec::<PathBuf>::new();
    let mut legacy = None;
    for dir in DB_DIRS {
        let dir = options.path(dir);
        // /var/lib/rpm is a symlink to /usr/lib/sysimage/rpm on Fedora: read it once.
        let canonical = dir.canonicalize().unwrap_or_else(|_| dir.clone());
        if seen.contains(&canonical) {
            continue;
        }
        seen.push(canonical);
        let sqlite_path = dir.join("rpmdb.sqlite");
        if sqlite_path.is_file() {
            match read_rpmdb_sqlite_entries(&sqlite_path) {
                Ok(contents) => {
                    for (row, e) in contents.skipped {
                        out.warn(
                            "rpm",
                            format_args!("{} row {row}: skipped: {e}", sqlite_path.display()),
                        );
                    }
                    out.apps.extend(
                        contents
                            .packages
                            .iter()
                            .filter(|p| is_software(p))
                            .map(app_from_package),
                    );
                }
                Err(e) => out.errors.push(e),
            }
            return;
        }
        for name in ["Packages", "Packages.db"] {
            if legacy.is_none() && dir.join(name).is_file() {
                legacy = Some(dir.join(name));
            }
        }
    }
    if let Some(path) = legacy {
        if options.live_system {
            match run_rpm_qa() {
                Ok(packages) => {
                    out.apps.extend(
                        packages
                            .iter()
                            .filter(|p| is_software(p))
                            .map(app_from_package),
                    );
                }
                Err(message) => out.errors.push(CollectError::Unsupported {
                    path,
                    message: format!(
                        "Berkeley DB / NDB rpmdb is not read directly and `rpm -qa` failed: {message}"
                    ),
                }),
            }
        } else {
            out.errors.push(CollectError::Unsupported {
                path,
                message: "Berkeley DB / NDB rpmdb formats are not supported off the live host \
                          (only rpmdb.sqlite is read directly; on the host itself `rpm -qa` is used)"
                    .into(),
            });
        }
        return;
    }
    let manifest = options.path("/var/lib/rpmmanifest/container-manifest-2");
    match crate::read_text_if_exists(&manifest) {
        Ok(Some(text)) => match parse_container_manifest(&text) {
            Ok(pkgs) => out
                .apps
                .extend(pkgs.iter().filter(|p| is_software(p)).map(app_from_package)),
            Err(e) => out.errors.push(CollectError::parse(manifest, e)),
        },
        Ok(None) => {}
        Err(e) => out.errors.push(e),
    }
}

fn run_rpm_qa() -> Result<Vec<RpmPackage>, String> {
    let output = std::process::Command::new("rpm")
        .args(["-qa", "--queryformat", RPM_QA_FORMAT])
        .output()
        .map_err(|e| format!("cannot run rpm: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "rpm exited with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    parse_rpm_qa(&String::from_utf8_lossy(&output.stdout)).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_rpm_names() {
        assert_eq!(
            parse_source_rpm("openssl-1.1.1k-15.cm2.src.rpm"),
            Some(("openssl", "1.1.1k", "15.cm2"))
        );
        assert_eq!(
            parse_source_rpm("ca-certificates-2.0.0-1.cm2.src.rpm"),
            Some(("ca-certificates", "2.0.0", "1.cm2"))
        );
        assert_eq!(parse_source_rpm("nonsense"), None);
        assert_eq!(parse_source_rpm("-1.src.rpm"), None);
    }

    #[test]
    fn rpm_qa_errors_name_the_line() {
        let e = parse_rpm_qa("a\t(none)\t1\t1\tx86_64\ta-1-1.src.rpm\nbroken\n").unwrap_err();
        assert_eq!(e.line, 2);
        let e = parse_rpm_qa("a\tx\t1\t1\tx86_64\ta-1-1.src.rpm\n").unwrap_err();
        assert_eq!(e.line, 1);
    }
}

//! The upstream version-ordering test vectors in `../shared/data/version-vectors`, one test per
//! upstream file so a failure names its file. Each test fails on any vector that disagrees,
//! except those in the short exception list below, and also fails when an exception no longer
//! applies (so the list cannot go stale).

use std::cmp::Ordering;
use std::path::Path;

use zt_version::npm::{self, NpmVersion, Options};
use zt_version::{Scheme, Version};

/// Vectors where two upstream tools disagree and we take the other side: (file, vector, why).
const EXCEPTIONS: &[(&str, &str, &str)] = &[
    // Maven's ComparableVersion is not transitive; these three adjacent pairs come from
    // artifacts whose own versions form a cycle under it, so no order can keep them all.
    (
        "osv-scalibr/maven-versions-generated.txt",
        "2.9.0-1 < 2.9.0.RC1",
        "cycle 2.9.0 < 2.9.0-1 < 2.9.0.RC1 < 2.9.0 (line 5775, this, and RC1 being a \
         pre-release of 2.9.0); we keep the pre-release below its release",
    ),
    (
        "osv-scalibr/maven-versions-generated.txt",
        "1.0.0-gradle-rework-beta3 < 1.0.0.RC7-3",
        "cycle 1.0.0 < 1.0.0-gradle-rework-beta3 < 1.0.0.RC7-3 < 1.0.0; we keep the RC below \
         1.0.0",
    ),
    (
        "osv-scalibr/maven-versions-generated.txt",
        "1.1.0-01-glassfish < 1.1.0.Beta1",
        "cycle 1.1.0.Final < 1.1.0-01-glassfish < 1.1.0.Beta1 < 1.1.0.Final; we keep the beta \
         below the final release",
    ),
    (
    "osv-scalibr/packagist-versions.txt",
    "1.2.3.# = 1.2.3.1",
    "PHP makes '#' equal to every number, which no order can do while 1.2.3.# = 1.2.3 < 1.2.3.1 \
     (also vectors of this file); we treat '#' as the end of the version",
    ),
];

fn read(rel: &str) -> String {
    let path = zt_testkit::shared_path(&format!("version-vectors/{rel}"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn symbol(o: Ordering) -> &'static str {
    match o {
        Ordering::Less => "<",
        Ordering::Equal => "=",
        Ordering::Greater => ">",
    }
}

/// Checks the collected failures against the exceptions for `file`.
fn finish(file: &str, checked: usize, failures: Vec<String>) {
    let expected: Vec<&str> = EXCEPTIONS
        .iter()
        .filter(|(f, _, _)| *f == file)
        .map(|(_, v, _)| *v)
        .collect();
    let unexpected: Vec<&String> = failures
        .iter()
        .filter(|f| !expected.iter().any(|e| f.starts_with(e)))
        .collect();
    let stale: Vec<&&str> = expected
        .iter()
        .filter(|e| !failures.iter().any(|f| f.starts_with(**e)))
        .collect();
    assert!(checked > 0, "{file}: no vectors read");
    assert!(
        unexpected.is_empty() && stale.is_empty(),
        "{file}: {} of {checked} vectors fail:\n{}\nstale exceptions: {stale:?}",
        unexpected.len(),
        unexpected
            .iter()
            .take(40)
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// osv-scalibr fixture lines: `A OP B`; checks cmp(A, B) and the reverse.
fn scalibr_file(file: &str, schemes: &[Scheme]) {
    let rel = format!("osv-scalibr/{file}");
    let text = read(&rel);
    let mut failures = Vec::new();
    let mut checked = 0;
    for (n, line) in text.lines().enumerate() {
        if line.is_empty() || line.starts_with("# ") || line.starts_with("// ") {
            continue;
        }
        let parts: Vec<&str> = line.split(' ').collect();
        assert_eq!(parts.len(), 3, "{rel}:{}: {line:?}", n + 1);
        let (a, op, b) = (parts[0], parts[1], parts[2]);
        for &scheme in schemes {
            checked += 1;
            match (scheme.parse(a), scheme.parse(b)) {
                (Ok(x), Ok(y)) => {
                    let got = symbol(x.cmp(&y));
                    let back = symbol(y.cmp(&x).reverse());
                    if got != op || back != op {
                        failures.push(format!(
                            "{line}  [{scheme}] got {got} (reverse {back}) at line {}",
                            n + 1
                        ));
                    }
                }
                (x, y) => failures.push(format!(
                    "{line}  [{scheme}] parse error at line {}: {:?} {:?}",
                    n + 1,
                    x.err(),
                    y.err()
                )),
            }
        }
    }
    finish(&rel, checked, failures);
}

macro_rules! scalibr_tests {
    ($($name:ident: $file:literal => [$($scheme:expr),+];)*) => {$(
        #[test]
        fn $name() {
            scalibr_file($file, &[$($scheme),+]);
        }
    )*};
}

scalibr_tests! {
    scalibr_alpine: "alpine-versions.txt" => [Scheme::Apk];
    scalibr_alpine_generated: "alpine-versions-generated.txt" => [Scheme::Apk];
    scalibr_cran: "cran-versions.txt" => [Scheme::Cran];
    scalibr_cran_generated: "cran-versions-generated.txt" => [Scheme::Cran];
    scalibr_debian: "debian-versions.txt" => [Scheme::Dpkg];
    scalibr_debian_generated: "debian-versions-generated.txt" => [Scheme::Dpkg];
    scalibr_hackage: "hackage-versions.txt" => [Scheme::Hackage];
    scalibr_maven: "maven-versions.txt" => [Scheme::Maven];
    scalibr_maven_generated: "maven-versions-generated.txt" => [Scheme::Maven];
    scalibr_nuget: "nuget-versions.txt" => [Scheme::NuGet];
    scalibr_packagist: "packagist-versions.txt" => [Scheme::Packagist];
    scalibr_packagist_generated: "packagist-versions-generated.txt" => [Scheme::Packagist];
    scalibr_pub: "pub-versions.txt" => [Scheme::Pub];
    scalibr_pypi: "pypi-versions.txt" => [Scheme::Pep440];
    scalibr_pypi_generated: "pypi-versions-generated.txt" => [Scheme::Pep440];
    scalibr_redhat: "redhat-versions.txt" => [Scheme::Rpm];
    scalibr_rubygems: "rubygems-versions.txt" => [Scheme::RubyGems];
    scalibr_rubygems_generated: "rubygems-versions-generated.txt" => [Scheme::RubyGems];
    // npm, crates.io, Go and Hex all order by SemVer.
    scalibr_semver: "semver-versions.txt" => [Scheme::SemVer, Scheme::Go];
}

/// Every scalibr fixture file is covered by a test above.
#[test]
fn every_scalibr_file_has_a_test() {
    let dir = zt_testkit::shared_path("version-vectors/osv-scalibr");
    let covered = [
        "alpine-versions.txt",
        "alpine-versions-generated.txt",
        "cran-versions.txt",
        "cran-versions-generated.txt",
        "debian-versions.txt",
        "debian-versions-generated.txt",
        "hackage-versions.txt",
        "maven-versions.txt",
        "maven-versions-generated.txt",
        "nuget-versions.txt",
        "packagist-versions.txt",
        "packagist-versions-generated.txt",
        "pub-versions.txt",
        "pypi-versions.txt",
        "pypi-versions-generated.txt",
        "redhat-versions.txt",
        "rubygems-versions.txt",
        "rubygems-versions-generated.txt",
        "semver-versions.txt",
    ];
    for entry in std::fs::read_dir(Path::new(&dir)).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".txt") {
            assert!(covered.contains(&name.as_str()), "no test for {name}");
        }
    }
}

#[test]
fn dpkg_version_t_data() {
    let rel = "dpkg/Dpkg_Version.t.DATA.txt";
    let mut failures = Vec::new();
    let mut checked = 0;
    for line in read(rel).lines().filter(|l| !l.trim().is_empty()) {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let expected = match parts[2] {
            "-1" => Ordering::Less,
            "0" => Ordering::Equal,
            _ => Ordering::Greater,
        };
        checked += 1;
        match Scheme::Dpkg.compare(parts[0], parts[1]) {
            Ok(got) if got == expected => {}
            other => failures.push(format!("{line}: got {other:?}")),
        }
    }
    finish(rel, checked, failures);
}

#[test]
fn rpm_rpmvercmp_at() {
    // The autotest file itself: active RPMVERCMP(a, b, r) lines (not the `dnl` ones). These
    // compare version strings without epoch or release, which is what rpmvercmp does.
    let rel = "rpm/rpmvercmp.at";
    let mut failures = Vec::new();
    let mut checked = 0;
    for line in read(rel).lines() {
        let Some(args) = line
            .strip_prefix("RPMVERCMP(")
            .and_then(|l| l.strip_suffix(')'))
        else {
            continue;
        };
        let parts: Vec<&str> = args.split(", ").collect();
        let expected = match parts[2] {
            "-1" => Ordering::Less,
            "0" => Ordering::Equal,
            _ => Ordering::Greater,
        };
        checked += 1;
        match Scheme::Rpm.compare(parts[0], parts[1]) {
            Ok(got) if got == expected => {}
            other => failures.push(format!("{line}: got {other:?}")),
        }
    }
    assert_eq!(checked, 91, "the file has 91 active vectors");
    finish(rel, checked, failures);
}

#[test]
fn apk_tools_version_data() {
    let rel = "apk-tools/version.data";
    let mut failures = Vec::new();
    let mut checked = 0;
    for raw in read(rel).lines() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let parts: Vec<&str> = line.split_whitespace().collect();
        checked += 1;
        match parts.as_slice() {
            [] | [_] => {
                let (version, valid) = match raw.trim().strip_prefix('!') {
                    Some(v) => (v, false),
                    None => (line, true),
                };
                if zt_version::validate_apk(version).is_ok() != valid {
                    failures.push(format!("{raw}: validity"));
                }
            }
            [a, op, b] => {
                let (negated, op) = match op.strip_prefix('!') {
                    Some(op) => (true, op),
                    None => (false, *op),
                };
                let (x, y) = (Scheme::Apk.parse(a).unwrap(), Scheme::Apk.parse(b).unwrap());
                let holds = match op {
                    "<" => x < y,
                    ">" => x > y,
                    "=" => x == y,
                    "~" => x.fuzzy_matches(&y),
                    "<~" => x < y || x.fuzzy_matches(&y),
                    ">~" => x > y || x.fuzzy_matches(&y),
                    other => panic!("unknown operator {other}"),
                };
                if holds == negated {
                    failures.push(format!("{raw}: got {}", symbol(x.cmp(&y))));
                }
            }
            _ => panic!("{rel}: unexpected line {raw:?}"),
        }
    }
    finish(rel, checked, failures);
}

fn node_fixture(name: &str) -> Vec<serde_json::Value> {
    serde_json::from_str(&read(&format!("node-semver/{name}"))).unwrap()
}

/// node-semver's options argument: `true` means loose; an object may set `loose` and
/// `includePrerelease` (truthy JS values).
fn node_options(v: Option<&serde_json::Value>) -> Options {
    fn truthy(v: Option<&serde_json::Value>) -> bool {
        match v {
            None | Some(serde_json::Value::Null) => false,
            Some(serde_json::Value::Bool(b)) => *b,
            Some(serde_json::Value::Number(n)) => n.as_f64() != Some(0.0),
            Some(serde_json::Value::String(s)) => !s.is_empty(),
            Some(_) => true,
        }
    }
    match v {
        Some(serde_json::Value::Bool(b)) => Options {
            loose: *b,
            include_prerelease: false,
        },
        Some(serde_json::Value::Object(o)) => Options {
            loose: truthy(o.get("loose")),
            include_prerelease: truthy(o.get("includePrerelease")),
        },
        _ => Options::default(),
    }
}

#[test]
fn node_semver_comparisons() {
    let rel = "node-semver/comparisons.json";
    let mut failures = Vec::new();
    let entries = node_fixture("comparisons.json");
    for e in &entries {
        let opts = node_options(e.get(2));
        let (a, b) = (e[0].as_str().unwrap(), e[1].as_str().unwrap());
        let (x, y) = (
            NpmVersion::parse(a, opts.loose).unwrap(),
            NpmVersion::parse(b, opts.loose).unwrap(),
        );
        if x.cmp(&y) != Ordering::Greater || y.cmp(&x) != Ordering::Less {
            failures.push(format!("{e}"));
        }
        // Strictly valid ones must order the same in the SemVer scheme.
        if !opts.loose {
            let (p, q) = (
                Scheme::SemVer.parse(a).unwrap(),
                Scheme::SemVer.parse(b).unwrap(),
            );
            if p <= q {
                failures.push(format!("{e} [semver scheme]"));
            }
        }
    }
    finish(rel, entries.len(), failures);
}

#[test]
fn node_semver_equality() {
    let rel = "node-semver/equality.json";
    let mut failures = Vec::new();
    let entries = node_fixture("equality.json");
    for e in &entries {
        let opts = node_options(e.get(2));
        let (a, b) = (e[0].as_str().unwrap(), e[1].as_str().unwrap());
        match (
            NpmVersion::parse(a, opts.loose),
            NpmVersion::parse(b, opts.loose),
        ) {
            (Ok(x), Ok(y)) if x == y => {}
            other => failures.push(format!("{e}: {other:?}")),
        }
    }
    finish(rel, entries.len(), failures);
}

fn node_ranges(file: &str, expect: bool) {
    let rel = format!("node-semver/{file}");
    let mut failures = Vec::new();
    let entries = node_fixture(file);
    for e in &entries {
        let opts = node_options(e.get(2));
        let range = e[0].as_str().unwrap();
        // A version that is not a string (false, objects) satisfies nothing.
        let got = e[1]
            .as_str()
            .is_some_and(|v| npm::satisfies(v, range, opts));
        if got != expect {
            failures.push(format!("{e}: got {got}"));
        }
    }
    finish(&rel, entries.len(), failures);
}

#[test]
fn node_semver_range_include() {
    node_ranges("range-include.json", true);
}

#[test]
fn node_semver_range_exclude() {
    node_ranges("range-exclude.json", false);
}

#[test]
fn node_semver_invalid_versions() {
    let rel = "node-semver/invalid-versions.json";
    let mut failures = Vec::new();
    let entries = node_fixture("invalid-versions.json");
    for e in &entries {
        let opts = node_options(e.get(2));
        if let Some(v) = e[0].as_str() {
            if NpmVersion::parse(v, opts.loose).is_ok() {
                failures.push(format!("{e}"));
            }
        }
    }
    finish(rel, entries.len(), failures);
}

/// The unified file holds the same vectors; make sure none of its sources went unread here.
#[test]
fn all_vectors_sources_are_covered() {
    let text = read("all-vectors.jsonl");
    let mut sources = std::collections::BTreeSet::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let source = v["source"].as_str().unwrap();
        let file = source.rsplit_once(':').map_or(source, |(f, _)| f);
        sources.insert(file.to_string());
    }
    for s in &sources {
        let known = s.contains("osv-scalibr")
            || s.contains("Dpkg_Version")
            || s.contains("rpmvercmp")
            || s.contains("version.data")
            || ["comparisons", "equality", "range-include", "range-exclude"]
                .iter()
                .any(|n| s.contains(n));
        assert!(known, "source {s} has no test");
    }
    let _: Option<Version> = None;
}

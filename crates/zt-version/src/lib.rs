//! Per-ecosystem version parsing and ordering, and OSV affected-range evaluation (no I/O).
//!
//! - [`Scheme`] names an ordering (dpkg, RPM, apk, PEP 440, SemVer, Maven, …);
//!   [`Scheme::for_ecosystem`] maps OSV ecosystem strings (and ZeroTrace's own app sources) to it.
//! - [`Scheme::parse`] turns a string into a [`Version`]: a pre-computed sort key, so comparing
//!   two parsed versions is one byte-slice comparison.
//! - [`osv`] evaluates OSV `ranges` / `versions` exactly as the OSV schema specifies, compiled
//!   once and then allocation-free per query.
//! - [`npm`] is a node-semver compatible range parser (npm advisory ranges).
//!
//! Every ordering is proven on the upstream test vectors in `../shared/data/version-vectors`
//! (see `tests/vectors.rs`, one test per upstream file). The vectors this crate answers
//! differently, and why (the list is checked by those tests, so it cannot go stale):
//!
//! | vector | upstream | we answer | why |
//! |---|---|---|---|
//! | Packagist `1.2.3.# = 1.2.3.1` (osv-scalibr) | PHP `version_compare`: `#` equals any number | `<` | no order can make `1.2.3.#` equal to both `1.2.3` and `1.2.3.1` (`1.2.3 < 1.2.3.1`); `#` is taken as the end of the version, so `1.2.3.# = 1.2.3` (also a vector) holds |
//! | Maven `2.9.0-1 < 2.9.0.RC1` (osv-scalibr generated) | `ComparableVersion` | `>` | its own cycle `2.9.0 < 2.9.0-1 < 2.9.0.RC1 < 2.9.0` in one artifact; we keep the pre-release below its release |
//! | Maven `1.0.0-gradle-rework-beta3 < 1.0.0.RC7-3` | `ComparableVersion` | `>` | cycle `1.0.0 < …-gradle-rework-beta3 < 1.0.0.RC7-3 < 1.0.0` |
//! | Maven `1.1.0-01-glassfish < 1.1.0.Beta1` | `ComparableVersion` | `>` | cycle `1.1.0.Final < 1.1.0-01-glassfish < 1.1.0.Beta1 < 1.1.0.Final` |
//!
//! Other decisions where upstream tools differ, without a failing vector:
//! - apk numbers with leading zeros (`8.2.0 < 8.2.001 < 8.2.0015 < 8.2.002`): apk-tools 3's
//!   Gentoo string rule (its version.data), not apk-tools 2's zero counting; the osv-scalibr
//!   fixtures (apk 2 era) agree with both. Malformed apk tails sort low, as in apk-tools 3.
//! - RPM: a missing release sorts before any release (`1.0 < 1.0-0`) as in the OSV fixtures;
//!   rpm itself treats a missing release as matching any release, which is not an order.
//!
//! Further per-scheme decisions are documented in each module.

mod apk;
mod dpkg;
mod generic;
mod key;
mod maven;
pub mod npm;
mod numeric;
pub mod osv;
mod packagist;
mod pypi;
mod rpm;
mod rubygems;
mod semver;

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};

/// Longest version string accepted, in bytes. Real versions are far shorter; the bound keeps
/// keys small and makes hostile input cheap to reject.
pub const MAX_VERSION_LEN: usize = 512;

/// A version ordering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scheme {
    /// Debian, Ubuntu (deb-version(7)).
    Dpkg,
    /// RPM EVR: Red Hat family, SUSE, Mariner/Azure Linux, Photon OS, openEuler, Mageia.
    Rpm,
    /// Alpine apk: Alpine, Wolfi, Chainguard, Alpaquita, MinimOS.
    Apk,
    /// PyPI: PEP 440 with the legacy fallback for other strings.
    Pep440,
    /// SemVer 2.0 precedence: npm, crates.io, Hex, SwiftURL, GitHub Actions; OSV `SEMVER` ranges.
    SemVer,
    /// Go modules: SemVer with `v`, `+incompatible` and pseudo-versions (same order as SemVer).
    Go,
    /// Maven `ComparableVersion`.
    Maven,
    /// RubyGems `Gem::Version`.
    RubyGems,
    /// NuGet (SemVer 2 with a fourth number, case-insensitive labels).
    NuGet,
    /// Packagist / Composer (PHP `version_compare`).
    Packagist,
    /// CRAN and Bioconductor (`package_version`).
    Cran,
    /// Dart pub (SemVer where build metadata orders).
    Pub,
    /// Hackage (PVP).
    Hackage,
    /// Dotted versions of desktop applications and NVD CPE ranges.
    Generic,
}

impl Scheme {
    /// Every scheme, for tests and tools.
    pub const ALL: [Scheme; 14] = [
        Scheme::Dpkg,
        Scheme::Rpm,
        Scheme::Apk,
        Scheme::Pep440,
        Scheme::SemVer,
        Scheme::Go,
        Scheme::Maven,
        Scheme::RubyGems,
        Scheme::NuGet,
        Scheme::Packagist,
        Scheme::Cran,
        Scheme::Pub,
        Scheme::Hackage,
        Scheme::Generic,
    ];

    /// A short lowercase name ("dpkg", "rpm", …).
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Dpkg => "dpkg",
            Scheme::Rpm => "rpm",
            Scheme::Apk => "apk",
            Scheme::Pep440 => "pep440",
            Scheme::SemVer => "semver",
            Scheme::Go => "go",
            Scheme::Maven => "maven",
            Scheme::RubyGems => "rubygems",
            Scheme::NuGet => "nuget",
            Scheme::Packagist => "packagist",
            Scheme::Cran => "cran",
            Scheme::Pub => "pub",
            Scheme::Hackage => "hackage",
            Scheme::Generic => "generic",
        }
    }

    /// The scheme of an OSV ecosystem string, with or without its release suffix
    /// ("Debian:12", "Ubuntu:Pro:18.04:LTS", "Alpine:v3.19", "Red Hat:enterprise_linux:9::appstream",
    /// "Maven:https://maven.google.com", …), or of one of ZeroTrace's own app sources
    /// ("windows", "macos", "homebrew", "snap", "flatpak", "conda", "other" → [`Scheme::Generic`]).
    /// The name before the first `:` is matched case-insensitively. `None` for ecosystems whose
    /// ordering is unknown here (and for `GIT`, which has no version order).
    pub fn for_ecosystem(ecosystem: &str) -> Option<Scheme> {
        let (base, rest) = match ecosystem.split_once(':') {
            Some((base, rest)) => (base.trim(), Some(rest)),
            None => (ecosystem.trim(), None),
        };
        let base = base.to_ascii_lowercase();
        Some(match base.as_str() {
            "debian" | "ubuntu" | "echo" => Scheme::Dpkg,
            "red hat" | "redhat" | "rocky linux" | "almalinux" | "opensuse" | "suse"
            | "mariner" | "cbl-mariner" | "azure linux" | "photon os" | "openeuler" | "mageia"
            | "fedora" | "centos" | "oracle linux" | "amazon linux" | "tuxcare" => Scheme::Rpm,
            "alpine"
            | "wolfi"
            | "chainguard"
            | "alpaquita"
            | "bellsoft hardened containers"
            | "minimos" => Scheme::Apk,
            "pypi" => Scheme::Pep440,
            "npm" | "crates.io" | "cargo" | "hex" | "swifturl" | "github actions" | "julia"
            | "vscode" | "bitnami" | "kubernetes" => Scheme::SemVer,
            "go" | "golang" => Scheme::Go,
            "maven" => Scheme::Maven,
            "rubygems" | "gem" => Scheme::RubyGems,
            "nuget" => Scheme::NuGet,
            "packagist" | "composer" => Scheme::Packagist,
            "cran" | "bioconductor" => Scheme::Cran,
            "pub" => Scheme::Pub,
            "hackage" | "ghc" => Scheme::Hackage,
            "windows" | "macos" | "homebrew" | "snap" | "flatpak" | "conda" | "other" | "linux"
            | "android" | "conancenter" | "opam" | "freebsd" => Scheme::Generic,
            // "Root:Alpine:3.18", "Root:PyPI": the part after "Root:" names the real ecosystem.
            "root" => return rest.and_then(Scheme::for_ecosystem),
            _ => return None,
        })
    }

    /// Parses `s` (surrounding whitespace ignored) into a comparable [`Version`].
    pub fn parse(&self, s: &str) -> Result<Version, VersionError> {
        let text = s.trim();
        let fail = |reason: Cow<'static, str>| VersionError::new(*self, s, reason);
        if text.is_empty() {
            return Err(fail("empty version".into()));
        }
        if text.len() > MAX_VERSION_LEN {
            return Err(fail(format!("longer than {MAX_VERSION_LEN} bytes").into()));
        }
        KEY_BUFFER.with(|buffer| {
            let mut key = buffer.borrow_mut();
            key.clear();
            let result = match self {
                Scheme::Dpkg => dpkg::encode(text, &mut key),
                Scheme::Rpm => rpm::encode(text, &mut key),
                Scheme::Apk => apk::encode(text, &mut key),
                Scheme::Pep440 => pypi::encode(text, &mut key),
                Scheme::SemVer | Scheme::Go => {
                    semver::encode(text, semver::Flavor::SemVer, &mut key)
                }
                Scheme::Pub => semver::encode(text, semver::Flavor::Pub, &mut key),
                Scheme::NuGet => semver::encode(text, semver::Flavor::NuGet, &mut key),
                Scheme::Maven => maven::encode(text, &mut key),
                Scheme::RubyGems => rubygems::encode(text, &mut key),
                Scheme::Packagist => packagist::encode(text, &mut key),
                Scheme::Cran => numeric::encode(text, true, &mut key),
                Scheme::Hackage => numeric::encode(text, false, &mut key),
                Scheme::Generic => generic::encode(text, &mut key),
            };
            result.map_err(|reason| fail(reason.into()))?;
            Ok(Version {
                scheme: *self,
                key: Box::from(&key[..]),
                text: Box::from(text),
            })
        })
    }

    /// Compares two version strings in this scheme.
    pub fn compare(&self, a: &str, b: &str) -> Result<Ordering, VersionError> {
        Ok(self.parse(a)?.cmp(&self.parse(b)?))
    }

    /// The family whose versions share one key encoding (Go and SemVer do).
    fn family(self) -> Scheme {
        match self {
            Scheme::Go => Scheme::SemVer,
            s => s,
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

thread_local! {
    /// Scratch space for building keys, so a parse costs only the two final allocations.
    static KEY_BUFFER: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(Vec::with_capacity(64));
}

/// A parsed version: its scheme, its sort key and the string it came from.
///
/// Ordering, equality and hashing follow the scheme (`1.09` and `1.9` are equal in dpkg).
/// Versions of different schemes order by scheme first, which is meaningful only within one
/// scheme (Go and SemVer share one order).
#[derive(Clone)]
pub struct Version {
    scheme: Scheme,
    key: Box<[u8]>,
    text: Box<str>,
}

impl Version {
    /// The scheme this version was parsed with.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The version string as parsed (trimmed).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The sort key: within one scheme (Go and SemVer count as one), byte order of keys is
    /// version order and equal keys mean equal versions. Useful to store versions in an
    /// ordered index; the encoding may change between releases of this crate.
    pub fn sort_key(&self) -> &[u8] {
        &self.key
    }

    /// apk's fuzzy match (`apk version` operator `~`): true when `self` starts with every
    /// component of `prefix` (`3.6.9 ~ 3.6`). Other schemes: equality.
    pub fn fuzzy_matches(&self, prefix: &Version) -> bool {
        if self.scheme == Scheme::Apk && prefix.scheme == Scheme::Apk {
            apk::fuzzy_matches(&self.key, &prefix.key)
        } else {
            self == prefix
        }
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.scheme.family() == other.scheme.family() && self.key == other.key
    }
}

impl Eq for Version {}

impl Hash for Version {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.scheme.family().hash(state);
        self.key.hash(state);
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Version {
    #[inline]
    fn cmp(&self, other: &Self) -> Ordering {
        let (a, b) = (self.scheme.family(), other.scheme.family());
        if a != b {
            return a.cmp(&b);
        }
        self.key.cmp(&other.key)
    }
}

impl fmt::Debug for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Version({}, {:?})", self.scheme, self.text)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A string that is not a valid version of a scheme.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {scheme} version {version:?}: {reason}")]
pub struct VersionError {
    scheme: Scheme,
    version: String,
    reason: Cow<'static, str>,
}

impl VersionError {
    fn new(scheme: Scheme, version: &str, reason: Cow<'static, str>) -> Self {
        // Quote at most a screenful of hostile input.
        let version = match version.char_indices().nth(80) {
            Some((cut, _)) => format!("{}…", &version[..cut]),
            None => version.to_string(),
        };
        VersionError {
            scheme,
            version,
            reason,
        }
    }

    /// The scheme that rejected the version.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The rejected version (cut after 80 characters).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Why it was rejected.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

/// Checks a version against apk's strict format (what a package may carry). [`Scheme::parse`]
/// is lenient for apk, like apk's own comparison, so malformed advisories still compare.
pub fn validate_apk(s: &str) -> Result<(), VersionError> {
    apk::validate(s).map_err(|reason| VersionError::new(Scheme::Apk, s, reason.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecosystems_map_to_schemes() {
        let cases = [
            ("Debian:12", Scheme::Dpkg),
            ("Ubuntu:22.04:LTS", Scheme::Dpkg),
            ("Ubuntu:Pro:18.04:LTS", Scheme::Dpkg),
            ("Alpine:v3.19", Scheme::Apk),
            ("Red Hat:enterprise_linux:9::appstream", Scheme::Rpm),
            ("Rocky Linux:9", Scheme::Rpm),
            ("AlmaLinux:8", Scheme::Rpm),
            ("openSUSE:Leap 15.5", Scheme::Rpm),
            ("SUSE:Linux Enterprise Server 15 SP5", Scheme::Rpm),
            ("Mariner:2.0", Scheme::Rpm),
            ("Azure Linux:3.0", Scheme::Rpm),
            ("Photon OS:5.0", Scheme::Rpm),
            ("Wolfi", Scheme::Apk),
            ("Chainguard", Scheme::Apk),
            ("PyPI", Scheme::Pep440),
            ("npm", Scheme::SemVer),
            ("crates.io", Scheme::SemVer),
            ("Go", Scheme::Go),
            ("Hex", Scheme::SemVer),
            ("Maven", Scheme::Maven),
            ("Maven:https://maven.google.com", Scheme::Maven),
            ("RubyGems", Scheme::RubyGems),
            ("NuGet", Scheme::NuGet),
            ("Packagist", Scheme::Packagist),
            ("CRAN", Scheme::Cran),
            ("Bioconductor", Scheme::Cran),
            ("Pub", Scheme::Pub),
            ("Hackage", Scheme::Hackage),
            ("SwiftURL", Scheme::SemVer),
            ("GitHub Actions", Scheme::SemVer),
            ("Root:Alpine:3.18", Scheme::Apk),
            ("Root:PyPI", Scheme::Pep440),
            ("windows", Scheme::Generic),
            ("macos", Scheme::Generic),
            ("homebrew", Scheme::Generic),
            ("snap", Scheme::Generic),
            ("flatpak", Scheme::Generic),
            ("conda", Scheme::Generic),
            ("other", Scheme::Generic),
        ];
        for (eco, scheme) in cases {
            assert_eq!(Scheme::for_ecosystem(eco), Some(scheme), "{eco}");
        }
        for unknown in ["GIT", "", "Nope", "OSS-Fuzz", "Root"] {
            assert_eq!(Scheme::for_ecosystem(unknown), None, "{unknown}");
        }
    }

    #[test]
    fn every_osv_ecosystem_with_a_version_order_has_a_scheme() {
        let path = zt_testkit::shared_path("osv/_schema/ecosystems.json");
        let text = std::fs::read_to_string(path).unwrap();
        let names: std::collections::BTreeMap<String, String> =
            serde_json::from_str(&text).unwrap();
        // Ecosystems whose versions are commits or whose order is not published.
        let without = ["CleanStart", "Docker Hardened Images", "OSS-Fuzz", "Root"];
        for name in names.keys() {
            let found = Scheme::for_ecosystem(name);
            assert_eq!(found.is_none(), without.contains(&name.as_str()), "{name}");
        }
    }

    #[test]
    fn errors_name_the_version_and_the_reason() {
        let err = Scheme::Dpkg.parse("1.0:x-").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("dpkg") && text.contains("1.0:x-"), "{text}");
        let long = "1".repeat(MAX_VERSION_LEN + 1);
        assert!(Scheme::Generic
            .parse(&long)
            .unwrap_err()
            .to_string()
            .contains("longer"));
    }

    #[test]
    fn equal_versions_hash_equal() {
        use std::collections::HashSet;
        let set: HashSet<Version> = ["1.9", "1.09", "1.009"]
            .iter()
            .map(|v| Scheme::Dpkg.parse(v).unwrap())
            .collect();
        assert_eq!(set.len(), 1);
    }
}

/// Bodies of the `cargo fuzz` targets (`fuzz/`), kept here so plain tests run them too.
#[doc(hidden)]
pub mod fuzzing {
    use std::collections::hash_map::DefaultHasher;
    use std::hash::{Hash, Hasher};

    use crate::osv::{AffectedSpec, Event, Range, RangeKind};
    use crate::{npm, Scheme};

    fn hash_of<T: Hash>(t: &T) -> u64 {
        let mut h = DefaultHasher::new();
        t.hash(&mut h);
        h.finish()
    }

    /// Splits fuzz input into up to three strings at newlines.
    fn strings(data: &[u8]) -> Vec<String> {
        String::from_utf8_lossy(data)
            .splitn(3, '\n')
            .map(str::to_string)
            .collect()
    }

    /// Parses the pieces of `data` with `scheme` and checks the order's invariants on them.
    pub fn check_scheme(scheme: Scheme, data: &[u8]) {
        let texts = strings(data);
        let parsed: Vec<_> = texts.iter().filter_map(|t| scheme.parse(t).ok()).collect();
        for a in &parsed {
            assert_eq!(
                a.cmp(a),
                std::cmp::Ordering::Equal,
                "{a:?} is not equal to itself"
            );
            let again = scheme
                .parse(a.as_str())
                .expect("a parsed version parses again");
            assert_eq!(a, &again);
            for b in &parsed {
                let ab = a.cmp(b);
                assert_eq!(
                    ab,
                    b.cmp(a).reverse(),
                    "{a:?} vs {b:?} is not antisymmetric"
                );
                assert_eq!(ab.is_eq(), a == b, "{a:?} vs {b:?}: Ord and Eq disagree");
                if a == b {
                    assert_eq!(hash_of(a), hash_of(b), "{a:?} = {b:?} but hashes differ");
                }
                let _ = a.fuzzy_matches(b);
                for c in &parsed {
                    if a <= b && b <= c {
                        assert!(a <= c, "{a:?} <= {b:?} <= {c:?} is not transitive");
                    }
                }
            }
        }
        if scheme == Scheme::Apk {
            for t in &texts {
                let _ = crate::validate_apk(t);
            }
        }
    }

    /// Parses an npm range and a version from `data` and evaluates them.
    pub fn check_npm_range(data: &[u8]) {
        let texts = strings(data);
        let range = texts.first().map(String::as_str).unwrap_or("");
        let version = texts.get(1).map(String::as_str).unwrap_or("1.2.3");
        for loose in [false, true] {
            for include_prerelease in [false, true] {
                let options = npm::Options {
                    loose,
                    include_prerelease,
                };
                let _ = npm::satisfies(version, range, options);
            }
        }
    }

    /// Builds an OSV range from `data` (first byte: kind and scheme; then events) and checks
    /// that compiling and querying it never panics and agrees with the schema's algorithm.
    pub fn check_osv_ranges(data: &[u8]) {
        let Some((&selector, rest)) = data.split_first() else {
            return;
        };
        let scheme = Scheme::ALL[usize::from(selector) % Scheme::ALL.len()];
        let kind = match selector / 64 {
            0 => RangeKind::Semver,
            1 => RangeKind::Git,
            _ => RangeKind::Ecosystem,
        };
        let text = String::from_utf8_lossy(rest);
        let mut lines = text.split('\n');
        let query = lines.next().unwrap_or("");
        let events: Vec<Event> = lines
            .filter_map(|l| {
                let split = l.char_indices().nth(1).map_or(l.len(), |(i, _)| i);
                let (k, v) = l.split_at(split);
                Some(match k {
                    "i" => Event::Introduced(v.to_string()),
                    "f" => Event::Fixed(v.to_string()),
                    "l" => Event::LastAffected(v.to_string()),
                    "m" => Event::Limit(v.to_string()),
                    _ => return None,
                })
            })
            .collect();
        let range = Range {
            kind,
            repo: None,
            events,
        };
        let versions = vec![query.to_string()];
        let (spec, _warnings) = AffectedSpec::compile(scheme, &[range], &versions);
        if let Ok(v) = scheme.parse(query) {
            let _ = spec.affects(&v);
            let _ = spec.next_fixed(&v);
        }
    }
}

//! Property tests: every scheme is a total order on random triples (antisymmetric, transitive,
//! `Eq` and `Hash` consistent with `Ord`), parsing never panics on arbitrary input, and the fuzz
//! target bodies hold on a few real and garbage inputs.

use std::cmp::Ordering;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use proptest::prelude::*;
use zt_version::{fuzzing, Scheme, Version};

/// Version-like strings per scheme: mostly valid, with the characters that matter to it.
fn strategy(scheme: Scheme) -> BoxedStrategy<String> {
    let pattern = match scheme {
        Scheme::Dpkg => "([0-9]:)?[0-9][0-9a-zA-Z.+~]{0,6}(-[0-9a-z.+~]{1,4})?",
        Scheme::Rpm => "([0-9]:)?[0-9a-zA-Z.~^_+]{1,8}(-[0-9a-z.~^]{0,4})?",
        Scheme::Apk => {
            "[0-9]{1,2}(\\.[0-9]{0,3}){0,3}[a-zA-Z]?(_(alpha|beta|pre|rc|p|git|foo)[0-9]?){0,2}(~[0-9a-f]{1,2})?(-r[0-9]{0,2})?[.a-z_-]{0,2}"
        }
        Scheme::Pep440 => {
            "(([0-9]!)?[0-9]{1,2}(\\.[0-9]{1,2}){0,2}((a|b|rc)[0-9])?(\\.post[0-9])?(\\.dev[0-9])?(\\+[a-z0-9]{1,3}(\\.[0-9]{1,2})?)?)|[0-9a-z.-]{1,8}"
        }
        Scheme::SemVer | Scheme::Go | Scheme::Pub => {
            "v?[0-9]{1,2}(\\.[0-9]{1,2}){0,3}(-[0-9a-zA-Z]{1,3}(\\.[0-9a-z]{1,3}){0,2})?(\\+[a-z0-9]{1,3}(\\.[0-9]{1,2})?)?"
        }
        Scheme::NuGet => {
            "[0-9]{1,2}(\\.[0-9]{1,2}){0,3}(-[0-9a-zA-Z]{1,3}(\\.[0-9a-zA-Z]{1,3}){0,2})?(\\+[a-z]{1,2})?"
        }
        Scheme::Maven => {
            "(([0-9]{1,2}|alpha|beta|milestone|rc|cr|snapshot|sp|ga|final|release|a|b|m|x|foo|)[.-]?){1,6}"
        }
        Scheme::RubyGems => "[0-9]{1,2}((\\.[0-9]{1,2})|(\\.?[a-z]{1,2})){0,4}(-[0-9a-z]{1,2})?",
        Scheme::Packagist => {
            "[vV]?(([0-9]{1,2}|dev|alpha|a|beta|b|RC|rc|pl|p|#|foo)[._+-]?){1,5}"
        }
        Scheme::Cran => "[0-9]{1,2}([.-][0-9]{1,2}){0,3}",
        Scheme::Hackage => "[0-9]{1,2}(\\.[0-9]{1,2}){0,3}",
        Scheme::Generic => "[vV]?[0-9a-zA-Z .~_-]{1,12}",
    };
    pattern.boxed_sampler()
}

/// proptest's regex strategy, named for readability above.
trait Sampler {
    fn boxed_sampler(self) -> BoxedStrategy<String>;
}

impl Sampler for &'static str {
    fn boxed_sampler(self) -> BoxedStrategy<String> {
        proptest::string::string_regex(self)
            .expect("valid regex")
            .boxed()
    }
}

fn hash_of(v: &Version) -> u64 {
    let mut h = DefaultHasher::new();
    v.hash(&mut h);
    h.finish()
}

fn check_order(scheme: Scheme, texts: &[String]) -> Result<(), TestCaseError> {
    let parsed: Vec<Version> = texts.iter().filter_map(|t| scheme.parse(t).ok()).collect();
    for a in &parsed {
        prop_assert_eq!(a.cmp(a), Ordering::Equal);
        for b in &parsed {
            let ab = a.cmp(b);
            prop_assert_eq!(ab, b.cmp(a).reverse(), "{:?} vs {:?}", a, b);
            prop_assert_eq!(ab.is_eq(), a == b, "{:?} vs {:?}", a, b);
            if a == b {
                prop_assert_eq!(hash_of(a), hash_of(b), "{:?} vs {:?}", a, b);
            }
            for c in &parsed {
                if a <= b && b <= c {
                    prop_assert!(a <= c, "{:?} <= {:?} <= {:?}", a, b, c);
                }
                if a == b && b == c {
                    prop_assert!(a == c);
                }
            }
        }
    }
    Ok(())
}

macro_rules! order_props {
    ($($name:ident: $scheme:expr;)*) => {$(
        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]
            #[test]
            fn $name(
                a in strategy($scheme),
                b in strategy($scheme),
                c in strategy($scheme),
                // Prefix variations make equal and nearly equal versions common.
                cut in 0usize..4,
            ) {
                let d: String = a.chars().take(a.chars().count().saturating_sub(cut)).collect();
                check_order($scheme, &[a, b, c, d])?;
            }
        }
    )*};
}

order_props! {
    total_order_dpkg: Scheme::Dpkg;
    total_order_rpm: Scheme::Rpm;
    total_order_apk: Scheme::Apk;
    total_order_pep440: Scheme::Pep440;
    total_order_semver: Scheme::SemVer;
    total_order_go: Scheme::Go;
    total_order_maven: Scheme::Maven;
    total_order_rubygems: Scheme::RubyGems;
    total_order_nuget: Scheme::NuGet;
    total_order_packagist: Scheme::Packagist;
    total_order_cran: Scheme::Cran;
    total_order_pub: Scheme::Pub;
    total_order_hackage: Scheme::Hackage;
    total_order_generic: Scheme::Generic;
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Arbitrary strings: every scheme answers Ok or Err, never panics.
    #[test]
    fn any_string_parses_or_errors(s in ".{0,40}") {
        for scheme in Scheme::ALL {
            match scheme.parse(&s) {
                Ok(v) => prop_assert_eq!(v.cmp(&v), Ordering::Equal),
                Err(e) => prop_assert!(!e.reason().is_empty()),
            }
        }
    }

    #[test]
    fn fuzz_bodies_hold_on_random_bytes(data in proptest::collection::vec(any::<u8>(), 0..64)) {
        for scheme in Scheme::ALL {
            fuzzing::check_scheme(scheme, &data);
        }
        fuzzing::check_npm_range(&data);
        fuzzing::check_osv_ranges(&data);
    }
}

/// The fuzz targets' bodies on real versions and on garbage (what `cargo fuzz` would feed).
#[test]
fn fuzz_bodies_on_real_and_garbage_inputs() {
    let inputs: &[&[u8]] = &[
        b"1:2.30-1ubuntu1\n2.30-1\n1:2.30-1ubuntu1~18.04",
        b"0:3.10.0-229.el7\n3.10.0-229.1.2.ael7b\n1.0^git1~pre",
        b"1.2.3_rc1-r0\n1.2.3-r0\n0.1_pre2~1234abcd",
        b"1.0.post1\n1!0.1\n0.1-bulbasaur",
        b"v1.2.3-beta.1+build\n1.2.3\nv0.0.0-20191109021931-daa7c04131f5",
        b"1.0-alpha-1-SNAPSHOT\n1-1.foo-bar1baz-.1\n1.0",
        b"120.0.6099.109\n7.1.2 build 15\n23.01",
        b"",
        b"\n\n\n",
        b"\xff\xfe\x00\x01",
        b"::::----....~~~~^^^^",
        b"99999999999999999999999999999999999999999999.9",
        b"-\n*\n..",
    ];
    for data in inputs {
        for scheme in Scheme::ALL {
            fuzzing::check_scheme(scheme, data);
        }
        fuzzing::check_npm_range(data);
        fuzzing::check_osv_ranges(data);
    }
    fuzzing::check_npm_range(b">=1.2.3 <2 || ~1.0.x\n1.5.0");
    fuzzing::check_osv_ranges(b"\xc8\x31.5\ni0\nf2.0\nl1.9\nm3");
}

/// Sorting the versions of each fixture with `sort` and checking the fixture's `<` pairs again
/// exercises transitivity on real data.
#[test]
fn real_versions_sort_consistently() {
    for (file, scheme) in [
        ("osv-scalibr/debian-versions-generated.txt", Scheme::Dpkg),
        ("osv-scalibr/alpine-versions-generated.txt", Scheme::Apk),
        ("osv-scalibr/maven-versions-generated.txt", Scheme::Maven),
        ("osv-scalibr/pypi-versions-generated.txt", Scheme::Pep440),
        (
            "osv-scalibr/rubygems-versions-generated.txt",
            Scheme::RubyGems,
        ),
        (
            "osv-scalibr/packagist-versions-generated.txt",
            Scheme::Packagist,
        ),
    ] {
        let path = zt_testkit::shared_path(&format!("version-vectors/{file}"));
        let text = std::fs::read_to_string(path).unwrap();
        let mut versions: Vec<Version> = text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with("//"))
            .flat_map(|l| {
                let p: Vec<&str> = l.split(' ').collect();
                [p[0].to_string(), p[2].to_string()]
            })
            .map(|s| scheme.parse(&s).unwrap())
            .collect();
        versions.sort();
        for w in versions.windows(2) {
            assert!(w[0] <= w[1], "{file}: sort is inconsistent at {:?}", w);
        }
    }
}

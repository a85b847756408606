//! SemVer 2.0 precedence (npm, crates.io, Hex, Go, SwiftURL, … and every OSV `SEMVER` range),
//! plus the two close relatives that differ only in details: Pub (build metadata orders) and
//! NuGet (four numeric parts, case-insensitive pre-release labels).
//!
//! Parsing is deliberately lenient in the way OSV tooling is (`v` prefix, missing minor/patch,
//! numbers of any size, extra numeric parts ignored, a pre-release without `-`), because
//! advisories contain such strings. The `semver` crate is strict SemVer with `u64` numbers; on
//! the OSV vectors it rejects `v1.2.3`, `1.1.3.4.5` and `999999999999999999999999999991`, so the
//! ordering is written here from semver.org §11 (a test cross-checks it against the crate on
//! every strictly valid vector).

use crate::key::push_number;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavor {
    /// SemVer 2.0: build metadata does not order.
    SemVer,
    /// Dart's pub_semver: a version with build metadata sorts after the same one without.
    Pub,
    /// NuGet: up to four numeric parts, labels compared case-insensitively.
    NuGet,
}

pub(crate) fn encode(s: &str, flavor: Flavor, out: &mut Vec<u8>) -> Result<(), &'static str> {
    let bytes = s.as_bytes();
    if bytes
        .iter()
        .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err("contains whitespace or control characters");
    }
    let mut i = 0;
    if flavor != Flavor::NuGet && matches!(bytes.first(), Some(b'v' | b'V')) {
        i = 1;
    }
    let max_parts = match flavor {
        Flavor::NuGet => 4,
        _ => 3,
    };
    let mut parts = 0;
    loop {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if start == i {
            return Err(if parts == 0 {
                "does not start with a number"
            } else {
                "empty numeric part"
            });
        }
        parts += 1;
        if parts <= max_parts {
            push_number(out, &bytes[start..i]);
        } else if flavor == Flavor::NuGet {
            return Err("more than four numeric parts");
        }
        // Parts past the third are ignored, as OSV's SemVer parsing does.
        if i < bytes.len() && bytes[i] == b'.' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
            i += 1;
        } else {
            break;
        }
    }
    for _ in parts..max_parts {
        push_number(out, b"0");
    }
    let rest = &bytes[i..];
    let (pre, build) = match rest.iter().position(|&b| b == b'+') {
        Some(p) => (&rest[..p], Some(&rest[p + 1..])),
        None => (rest, None),
    };
    let pre = match pre.strip_prefix(b"-") {
        Some(pre) => pre,
        // Lenient: "1.0.0beta" reads as "1.0.0-beta".
        None if pre.first().is_none_or(u8::is_ascii_alphabetic) => pre,
        None => return Err("unexpected character after the version numbers"),
    };
    if pre.is_empty() {
        out.push(2);
    } else {
        out.push(1);
        push_identifiers(pre, flavor == Flavor::NuGet, out);
    }
    if flavor == Flavor::Pub {
        match build {
            Some(build) if !build.is_empty() => {
                out.push(1);
                push_identifiers(build, false, out);
            }
            _ => out.push(0),
        }
    }
    Ok(())
}

/// Dot-separated identifiers: numeric ones compare numerically and before alphanumeric ones,
/// which compare in ASCII order; a shorter list that is a prefix of a longer one sorts first.
fn push_identifiers(ids: &[u8], fold_case: bool, out: &mut Vec<u8>) {
    for id in ids.split(|&b| b == b'.') {
        if !id.is_empty() && id.iter().all(u8::is_ascii_digit) {
            out.push(1);
            push_number(out, id);
        } else {
            out.push(2);
            if fold_case {
                out.extend(id.iter().map(u8::to_ascii_lowercase));
            } else {
                out.extend_from_slice(id);
            }
            out.push(0);
        }
    }
    out.push(0);
}

#[cfg(test)]
mod tests {
    use crate::Scheme;
    use std::cmp::Ordering::*;

    #[test]
    fn semver_org_precedence_example() {
        let chain = [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "2.0.0",
            "2.1.0",
            "2.1.1",
        ];
        for w in chain.windows(2) {
            assert_eq!(Scheme::SemVer.compare(w[0], w[1]).unwrap(), Less, "{w:?}");
        }
    }

    #[test]
    fn go_pseudo_versions_and_incompatible() {
        let c = |a, b| Scheme::Go.compare(a, b).unwrap();
        assert_eq!(c("v0.0.0-20191109021931-daa7c04131f5", "v0.1.0"), Less);
        assert_eq!(c("v1.2.4-0.20191109021931-daa7c04131f5", "v1.2.3"), Greater);
        assert_eq!(c("v2.0.0+incompatible", "2.0.0"), Equal);
        assert_eq!(c("v1.2", "1.2.0"), Equal);
    }

    #[test]
    fn garbage_is_an_error() {
        for bad in ["", "v", "x1", "1..2", "1.2.3 4", "1.2.3-\u{7}"] {
            assert!(Scheme::SemVer.parse(bad).is_err(), "{bad:?}");
        }
        assert!(Scheme::NuGet.parse("1.2.3.4.5").is_err());
    }

    #[test]
    fn agrees_with_the_semver_crate_on_strict_versions() {
        let versions = [
            "0.0.0",
            "0.0.1-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-0.3.7",
            "1.0.0-x.7.z.92",
            "1.0.0+build",
            "1.0.0-rc.1+build.1",
            "1.2.3",
            "10.20.30",
            "1.2.3-r100",
            "1.2.3-R2",
        ];
        for a in versions {
            for b in versions {
                let ours = Scheme::SemVer.compare(a, b).unwrap();
                let theirs = ::semver::Version::parse(a)
                    .unwrap()
                    .cmp_precedence(&::semver::Version::parse(b).unwrap());
                assert_eq!(ours, theirs, "{a} vs {b}");
            }
        }
    }
}

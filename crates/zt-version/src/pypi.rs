//! PyPI versions: PEP 440 (parsed with `pep440_rs`, which matches `packaging`), and the legacy
//! fallback OSV applies to strings that are not PEP 440 (setuptools' old `LegacyVersion`, as
//! documented by `pkg_resources.parse_version`): legacy versions sort before every PEP 440
//! version and compare as tuples of parts.
//!
//! Both become byte keys encoding `packaging`'s comparison key:
//! `(epoch, release without trailing zeros, pre, post, dev, local)` with the documented
//! placement of absent parts (a dev-only release sorts before its pre-releases, a missing post
//! before any post, a missing dev after any dev, a missing local before any local).

use std::str::FromStr;

use pep440_rs::{LocalSegment, PrereleaseKind};

use crate::key::push_u64;

const LEGACY: u8 = 0;
const PEP440: u8 = 1;

pub(crate) fn encode(s: &str, out: &mut Vec<u8>) -> Result<(), &'static str> {
    if s.chars().any(char::is_control) {
        return Err("contains control characters");
    }
    match pep440_rs::Version::from_str(s) {
        Ok(v) => encode_pep440(&v, out),
        Err(_) => encode_legacy(s, out),
    }
    Ok(())
}

fn encode_pep440(v: &pep440_rs::Version, out: &mut Vec<u8>) {
    out.push(PEP440);
    push_u64(out, v.epoch());
    let release = v.release();
    let significant = release.len() - release.iter().rev().take_while(|&&r| r == 0).count();
    for &r in &release[..significant] {
        out.push(1);
        push_u64(out, r);
    }
    out.push(0);
    match (v.pre(), v.post(), v.dev()) {
        (None, None, Some(_)) => out.push(0),
        (Some(pre), _, _) => {
            out.push(match pre.kind {
                PrereleaseKind::Alpha => 1,
                PrereleaseKind::Beta => 2,
                PrereleaseKind::Rc => 3,
            });
            push_u64(out, pre.number);
        }
        (None, _, _) => out.push(4),
    }
    match v.post() {
        None => out.push(0),
        Some(n) => {
            out.push(1);
            push_u64(out, n);
        }
    }
    match v.dev() {
        Some(n) => {
            out.push(0);
            push_u64(out, n);
        }
        None => out.push(1),
    }
    let local = v.local();
    if local.is_empty() {
        out.push(0);
    } else {
        out.push(1);
        for segment in local {
            match segment {
                LocalSegment::String(s) => {
                    out.push(1);
                    out.extend_from_slice(s.as_bytes());
                    out.push(0);
                }
                LocalSegment::Number(n) => {
                    out.push(2);
                    push_u64(out, *n);
                }
            }
        }
        out.push(0);
    }
}

/// One part of a legacy version: numbers zero-filled to 8 digits, everything else prefixed
/// with `*` (so it sorts before numbers), some spellings replaced so that they order as
/// pre-releases.
fn legacy_parts(s: &str) -> Vec<String> {
    let lower = s.to_lowercase();
    let mut parts = Vec::new();
    let mut rest = lower.as_str();
    let mut other = String::new();
    while let Some(c) = rest.chars().next() {
        let len = if c.is_ascii_digit() {
            rest.bytes().take_while(u8::is_ascii_digit).count()
        } else if c.is_ascii_lowercase() {
            rest.bytes().take_while(u8::is_ascii_lowercase).count()
        } else if c == '.' || c == '-' {
            1
        } else {
            // Text between the recognised components is a part of its own.
            other.push(c);
            rest = &rest[c.len_utf8()..];
            continue;
        };
        if !other.is_empty() {
            parts.push(format!("*{}", std::mem::take(&mut other)));
        }
        let token = &rest[..len];
        rest = &rest[len..];
        let token = match token {
            "pre" | "preview" | "rc" => "c",
            "-" => "final-",
            "dev" => "@",
            "." => continue,
            t => t,
        };
        if token.as_bytes()[0].is_ascii_digit() {
            parts.push(format!("{token:0>8}"));
        } else {
            parts.push(format!("*{token}"));
        }
    }
    if !other.is_empty() {
        parts.push(format!("*{other}"));
    }
    parts.push("*final".to_string());
    parts
}

fn encode_legacy(s: &str, out: &mut Vec<u8>) {
    let mut kept: Vec<String> = Vec::new();
    for part in legacy_parts(s) {
        if part.starts_with('*') {
            if part.as_str() < "*final" {
                // A "-" right before a pre-release tag does not count.
                while kept.last().is_some_and(|p| p == "*final-") {
                    kept.pop();
                }
            }
            while kept.last().is_some_and(|p| p == "00000000") {
                kept.pop();
            }
        }
        kept.push(part);
    }
    out.push(LEGACY);
    for part in &kept {
        out.extend_from_slice(part.as_bytes());
        out.push(0);
    }
    // End of the tuple: below every part's first byte.
    out.push(1);
}

#[cfg(test)]
mod tests {
    use crate::Scheme;
    use std::cmp::Ordering::*;

    #[test]
    fn pep440_ordering_examples() {
        let chain = [
            "1.0.dev0",
            "1.0a0.dev1",
            "1.0a0",
            "1.0a1",
            "1.0b1",
            "1.0rc1",
            "1.0",
            "1.0+local",
            "1.0.post1.dev1",
            "1.0.post1",
            "1.1",
            "1!0.1",
        ];
        for w in chain.windows(2) {
            assert_eq!(Scheme::Pep440.compare(w[0], w[1]).unwrap(), Less, "{w:?}");
        }
        assert_eq!(Scheme::Pep440.compare("1.0", "1.0.0").unwrap(), Equal);
        assert_eq!(Scheme::Pep440.compare("1.0-1", "1.0.post1").unwrap(), Equal);
    }

    #[test]
    fn legacy_versions_sort_before_pep440_ones() {
        assert_eq!(
            Scheme::Pep440.compare("0.1-bulbasaur", "0.0.1").unwrap(),
            Less
        );
        assert_eq!(
            Scheme::Pep440
                .compare("0.1-bulbasaur", "0.1-charmander")
                .unwrap(),
            Less
        );
    }
}

//! RPM versions (Red Hat family, SUSE, Mariner/Azure Linux, Photon, openEuler, Mageia), written
//! from rpm's documented comparison (rpm.org "RPM version comparison"; rpmvercmp):
//! `[epoch:]version[-release]`, each of version and release split into alphabetic and numeric
//! segments with every other character a separator; numeric segments beat alphabetic ones,
//! `~` sorts before everything (even the end), `^` after the end but before anything else.
//!
//! Seen as a token sequence that order is total: `~` < end < `^` < alphabetic < numeric, so it
//! encodes to a byte key. `rpm-version` was not used: it compares, but gives no key.
//!
//! EVR split as rpm does it: an epoch is recognised only when the string starts with digits
//! followed by `:` (so `a:1` is a version containing a colon), the release is what follows the
//! last `-`. Where rpm's own comparison is not an order — a missing release matches any release
//! when rpm checks dependencies — we sort a missing release first (as OSV tooling does), so
//! `1.0 < 1.0-0`.

use crate::key::push_number;

const TILDE: u8 = 1;
const END: u8 = 2;
const CARET: u8 = 3;
const ALPHA: u8 = 4;
const NUMERIC: u8 = 5;

pub(crate) fn encode(s: &str, out: &mut Vec<u8>) -> Result<(), &'static str> {
    let bytes = s.as_bytes();
    if bytes
        .iter()
        .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err("RPM versions contain no whitespace or control characters");
    }
    let digits = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    let (epoch, rest) = if bytes.get(digits) == Some(&b':') {
        (&bytes[..digits], &bytes[digits + 1..])
    } else {
        (&b""[..], bytes)
    };
    let (version, release) = match rest.iter().rposition(|&b| b == b'-') {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    push_number(out, epoch);
    encode_segments(version, out);
    match release {
        None => out.push(0),
        Some(release) => {
            out.push(1);
            encode_segments(release, out);
        }
    }
    Ok(())
}

fn encode_segments(s: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        if c == b'~' {
            out.push(TILDE);
            i += 1;
        } else if c == b'^' {
            out.push(CARET);
            i += 1;
        } else if c.is_ascii_digit() {
            let start = i;
            while i < s.len() && s[i].is_ascii_digit() {
                i += 1;
            }
            out.push(NUMERIC);
            push_number(out, &s[start..i]);
        } else if c.is_ascii_alphabetic() {
            let start = i;
            while i < s.len() && s[i].is_ascii_alphabetic() {
                i += 1;
            }
            out.push(ALPHA);
            out.extend_from_slice(&s[start..i]);
            out.push(0);
        } else {
            // Separator (including every non-ASCII byte): only splits segments.
            i += 1;
        }
    }
    out.push(END);
}

#[cfg(test)]
mod tests {
    use crate::Scheme;
    use std::cmp::Ordering::*;

    #[test]
    fn evr_examples() {
        let c = |a, b| Scheme::Rpm.compare(a, b).unwrap();
        assert_eq!(c("1:1.0-1", "2.0-1"), Greater);
        assert_eq!(c("1.0-1.el9", "1.0-1.el9_2"), Less);
        assert_eq!(c("1.0~rc1", "1.0"), Less);
        assert_eq!(c("1.0^git1", "1.0"), Greater);
        assert_eq!(c("1.0", "1.0-0"), Less);
        assert_eq!(c("0:1.0", "1.0"), Equal);
    }
}

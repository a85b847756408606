//! Debian and Ubuntu package versions, written from deb-version(7) and Debian Policy §5.6.12:
//! `[epoch:]upstream[-revision]`; the epoch is a number; upstream and revision compare by
//! alternating runs of non-digits (letters before non-letters, `~` before everything, even the
//! end of the run) and runs of digits (numerically).
//!
//! No crate is used: `debversion` parses but its ordering is not a byte key, and the encoding
//! below is what makes pre-parsed comparisons a single `memcmp`.

use crate::key::{push_number, PaddedSeq, Side};

/// dpkg stores the epoch in an `int` and rejects larger values.
const MAX_EPOCH: u64 = i32::MAX as u64;

pub(crate) fn encode(s: &str, out: &mut Vec<u8>) -> Result<(), &'static str> {
    let bytes = s.as_bytes();
    if bytes.iter().any(|b| b.is_ascii_whitespace()) {
        return Err("version string has embedded spaces");
    }
    let (epoch, rest) = match s.find(':') {
        Some(i) => {
            let epoch = &bytes[..i];
            if epoch.is_empty() {
                return Err("epoch in version is empty");
            }
            if !epoch.iter().all(u8::is_ascii_digit) {
                return Err("epoch in version is not a number");
            }
            let value = epoch
                .iter()
                .try_fold(0u64, |acc, &d| {
                    let v = acc * 10 + u64::from(d - b'0');
                    (v <= MAX_EPOCH).then_some(v)
                })
                .ok_or("epoch in version is too big")?;
            (value, &bytes[i + 1..])
        }
        None => (0, bytes),
    };
    let (upstream, revision) = match rest.iter().rposition(|&b| b == b'-') {
        Some(i) => {
            let revision = &rest[i + 1..];
            if revision.is_empty() {
                return Err("revision number is empty");
            }
            (&rest[..i], revision)
        }
        None => (rest, &b""[..]),
    };
    if upstream.is_empty() {
        return Err("version number is empty");
    }
    if !upstream[0].is_ascii_digit() {
        return Err("version number does not start with digit");
    }
    if upstream
        .iter()
        .any(|&c| !(c.is_ascii_alphanumeric() || b".-+~:".contains(&c)))
    {
        return Err("invalid character in version number");
    }
    if revision
        .iter()
        .any(|&c| !(c.is_ascii_alphanumeric() || b".+~".contains(&c)))
    {
        return Err("invalid character in revision number");
    }
    out.extend_from_slice(&(epoch as u32).to_be_bytes());
    encode_part(upstream, out);
    encode_part(revision, out);
    Ok(())
}

/// Weight of a character in a non-digit run: `~` < end of run < letters < everything else.
fn weight(c: u8) -> u8 {
    match c {
        b'~' => 1,
        c if c.is_ascii_alphabetic() => c,
        c => 128 + c,
    }
}
const END_OF_RUN: u8 = 2;

/// A part is a sequence of chunks (non-digit run, number). Past its end a part behaves like
/// endless empty chunks ("", 0), which is exactly the pad of a [`PaddedSeq`].
fn encode_part(part: &[u8], out: &mut Vec<u8>) {
    let mut seq = PaddedSeq::new(out);
    let mut i = 0;
    while i < part.len() {
        let letters_start = i;
        while i < part.len() && !part[i].is_ascii_digit() {
            i += 1;
        }
        let letters = &part[letters_start..i];
        let digits_start = i;
        while i < part.len() && part[i].is_ascii_digit() {
            i += 1;
        }
        let digits = &part[digits_start..i];
        let side = match letters.first() {
            Some(b'~') => Side::Below,
            Some(_) => Side::Above,
            None if digits.iter().all(|&d| d == b'0') => {
                seq.pad();
                continue;
            }
            None => Side::Above,
        };
        let buf = seq.element(side);
        buf.extend(letters.iter().map(|&c| weight(c)));
        buf.push(END_OF_RUN);
        push_number(buf, digits);
    }
    seq.finish();
}

#[cfg(test)]
mod tests {
    use crate::Scheme;
    use std::cmp::Ordering::*;

    #[test]
    fn policy_examples() {
        let c = |a, b| Scheme::Dpkg.compare(a, b).unwrap();
        assert_eq!(c("1.0~rc1-1", "1.0-1"), Less);
        assert_eq!(c("1:0.9", "2.0"), Greater);
        assert_eq!(c("1.09", "1.9"), Equal);
        assert_eq!(c("0ubuntu1", "0"), Greater);
        assert_eq!(c("1.0-0", "1.0"), Equal);
        assert_eq!(c("1.0-0~", "1.0"), Less);
        assert_eq!(c("1.2.3-1~deb7u1", "1.2.3-1"), Less);
    }

    #[test]
    fn invalid_versions_from_dpkg_are_errors() {
        for bad in [
            "",
            "  ",
            "0:",
            ":1.0",
            "1.0-",
            "0:0 0-1",
            "-1:0-1",
            "999999999999999999999999:0-1",
            "a:0-0",
            "A:0-0",
            "-0",
            "0:-0",
            "0:abc3-0",
            "10a:5.2",
            "5.2@3-2",
            "foo5.2",
            "0:foo5.2",
        ] {
            assert!(Scheme::Dpkg.parse(bad).is_err(), "{bad:?} must be invalid");
        }
        for c in "!#@$%&/|\\<>()[]{};,_=*^'".chars() {
            assert!(Scheme::Dpkg.parse(&format!("1.0{c}1")).is_err(), "{c}");
            assert!(Scheme::Dpkg.parse(&format!("1.0-1{c}")).is_err(), "{c}");
        }
        assert!(
            Scheme::Dpkg.parse("1.0-1:2").is_err(),
            "':' is not allowed in revisions"
        );
    }

    #[test]
    fn sorting_example_from_dpkg_tests() {
        let sorted = [
            "0~999.999zeta",
            "0.0-0.0alpha0",
            "0:1.0-0",
            "5.0abc",
            "10.100.1-1",
            "4:4-4",
        ];
        let mut parsed: Vec<_> = sorted
            .iter()
            .rev()
            .map(|v| Scheme::Dpkg.parse(v).unwrap())
            .collect();
        parsed.sort();
        let back: Vec<&str> = parsed.iter().map(|v| v.as_str()).collect();
        assert_eq!(back, sorted);
    }
}

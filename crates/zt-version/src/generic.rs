//! A generic dotted scheme for software without an ecosystem of its own: desktop applications
//! (Windows, macOS, Homebrew, Snap, Flatpak, conda) and the version bounds of NVD CPE ranges.
//! Its rules, chosen to order the versions such products publish:
//! - a leading `v` before a digit is ignored; letters compare case-insensitively;
//! - the version splits into numbers and words; every other character only separates;
//! - numbers compare numerically, so leading zeros do not count: `23.01` = `23.1` < `23.1.1`;
//! - missing parts count as 0, so `1.0` = `1` and `120.0.6099.109` < `120.0.6099.110`;
//! - pre-release words sort below 0 (`dev` < `alpha`/`a` < `beta`/`b` < `pre`/`preview`/`rc`/
//!   `c`; single letters only when a number follows, as in `1.0b2`), release words (`final`,
//!   `ga`, `release`, `stable`) equal 0, and every other word (`build`, `patch`, `sp`, `update`,
//!   the `w` of OpenSSL's `1.1.1w`, …) sorts above 0 but below 1: `7.1.2 < 7.1.2 build 15 <
//!   7.1.2 build 16 < 7.1.3`, `1.1.1 < 1.1.1a < 1.1.1w < 1.1.2`.
//!
//! Any string with at least one letter or digit parses; the rest is an error, never a panic.

use crate::key::{push_number, PaddedSeq, Side};

fn pre_release_rank(word: &[u8], number_follows: bool) -> Option<u8> {
    match word {
        b"dev" | b"snapshot" | b"nightly" => Some(0),
        b"alpha" => Some(1),
        b"beta" => Some(2),
        b"pre" | b"preview" | b"rc" | b"cr" => Some(3),
        b"a" if number_follows => Some(1),
        b"b" if number_follows => Some(2),
        b"c" if number_follows => Some(3),
        _ => None,
    }
}

fn is_release_word(word: &[u8]) -> bool {
    matches!(word, b"final" | b"ga" | b"release" | b"stable")
}

pub(crate) fn encode(s: &str, out: &mut Vec<u8>) -> Result<(), &'static str> {
    let lower: Vec<u8> = s.bytes().map(|b| b.to_ascii_lowercase()).collect();
    let mut bytes = &lower[..];
    if bytes.first() == Some(&b'v') && bytes.get(1).is_some_and(u8::is_ascii_digit) {
        bytes = &bytes[1..];
    }
    if !bytes.iter().any(u8::is_ascii_alphanumeric) {
        return Err("no digits or letters");
    }
    let mut seq = PaddedSeq::new(out);
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        if bytes[i].is_ascii_digit() {
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            let digits = &bytes[start..i];
            if digits.iter().all(|&d| d == b'0') {
                seq.pad();
            } else {
                let buf = seq.element(Side::Above);
                buf.push(2);
                push_number(buf, digits);
            }
        } else if bytes[i].is_ascii_lowercase() {
            while i < bytes.len() && bytes[i].is_ascii_lowercase() {
                i += 1;
            }
            let word = &bytes[start..i];
            let number_follows = bytes.get(i).is_some_and(u8::is_ascii_digit);
            if let Some(rank) = pre_release_rank(word, number_follows) {
                seq.element(Side::Below).push(rank);
            } else if is_release_word(word) {
                seq.pad();
            } else {
                let buf = seq.element(Side::Above);
                buf.push(1);
                buf.extend_from_slice(word);
                buf.push(0);
            }
        } else {
            i += 1;
        }
    }
    seq.finish();
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::Scheme;
    use std::cmp::Ordering::*;

    #[test]
    fn desktop_application_versions() {
        let chain = [
            "1.0a1",
            "1.0b2",
            "1.0rc1",
            "1.0",
            "1.0.1",
            "7.1.2",
            "7.1.2 build 15",
            "7.1.2 build 16",
            "7.1.3",
            "23.1",
            "23.1.1",
            "120.0.6099.109",
            "120.0.6099.110",
        ];
        for w in chain.windows(2) {
            assert_eq!(Scheme::Generic.compare(w[0], w[1]).unwrap(), Less, "{w:?}");
        }
        let c = |a, b| Scheme::Generic.compare(a, b).unwrap();
        assert_eq!(c("23.01", "23.1"), Equal);
        assert_eq!(c("1.0", "1"), Equal);
        assert_eq!(c("v2.1", "2.1.0"), Equal);
        assert_eq!(c("1.1.1", "1.1.1a"), Less);
        assert_eq!(c("1.1.1w", "1.1.2"), Less);
        assert_eq!(c("2.0 Final", "2.0"), Equal);
        assert!(Scheme::Generic.parse("-").is_err());
        assert!(Scheme::Generic.parse("*").is_err());
    }
}

//! Packagist (Composer) versions, written from PHP's `version_compare` documentation, which
//! Composer's comparator uses: after an optional `v`, `-`, `_` and `+` become `.`, and a `.` is
//! inserted between digits and non-digits; parts compare left to right, numbers numerically,
//! other parts by their special form: any other string < `dev` < `alpha` = `a` < `beta` = `b` <
//! `RC` = `rc` < `#` < `pl` = `p` (a form matches when the part starts with it); a number
//! facing a word counts as `#`. When one version runs out, the other's next part decides: a
//! number makes it greater, a word is compared with `#`.
//!
//! PHP's rule makes `#` equal to every number while numbers differ from each other, which is
//! not an order; we place `#` just below all numbers (see the exception list in the crate
//! docs). With that, running out is a pad of `#`: words below `#` sort below the pad, numbers
//! and `pl` above it.

use crate::key::{push_number, PaddedSeq, Side};

const FORMS: [(&str, u8); 10] = [
    ("dev", 1),
    ("alpha", 2),
    ("a", 2),
    ("beta", 3),
    ("b", 3),
    ("RC", 4),
    ("rc", 4),
    ("#", 5),
    ("pl", 6),
    ("p", 6),
];
const HASH: u8 = 5;

fn form(part: &[u8]) -> u8 {
    FORMS
        .iter()
        .find(|(name, _)| part.starts_with(name.as_bytes()))
        .map_or(0, |&(_, rank)| rank)
}

pub(crate) fn encode(s: &str, out: &mut Vec<u8>) -> Result<(), &'static str> {
    let bytes = s.as_bytes();
    if bytes
        .iter()
        .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err("contains whitespace or control characters");
    }
    let bytes = match bytes.first() {
        Some(b'v' | b'V') => &bytes[1..],
        _ => bytes,
    };
    if bytes.is_empty() {
        return Err("empty version");
    }
    let mut seq = PaddedSeq::new(out);
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if matches!(c, b'.' | b'-' | b'_' | b'+') {
            i += 1;
            continue;
        }
        let start = i;
        let digit = c.is_ascii_digit();
        while i < bytes.len()
            && !matches!(bytes[i], b'.' | b'-' | b'_' | b'+')
            && bytes[i].is_ascii_digit() == digit
        {
            i += 1;
        }
        let part = &bytes[start..i];
        if digit {
            let buf = seq.element(Side::Above);
            buf.push(1);
            push_number(buf, part);
        } else {
            match form(part) {
                HASH => seq.pad(),
                rank if rank < HASH => seq.element(Side::Below).push(rank),
                _ => seq.element(Side::Above).push(2),
            }
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
    fn php_documentation_order() {
        let chain = [
            "1.0-foo", "1.0-dev", "1.0a1", "1.0b1", "1.0RC1", "1.0", "1.0.0", "1.0pl1",
        ];
        for w in chain.windows(2) {
            assert_eq!(
                Scheme::Packagist.compare(w[0], w[1]).unwrap(),
                Less,
                "{w:?}"
            );
        }
        assert_eq!(Scheme::Packagist.compare("v1.0.0", "1.0.0").unwrap(), Equal);
        assert_eq!(
            Scheme::Packagist.compare("1.0rc1", "1.0RC1").unwrap(),
            Equal
        );
    }
}

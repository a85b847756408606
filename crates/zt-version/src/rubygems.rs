//! RubyGems versions, written from the `Gem::Version` documentation: `-` means `.pre.`; the
//! version splits into numbers and letter runs; a version with letters is a pre-release;
//! comparison is segment by segment after dropping trailing zeros of the numeric head and of
//! the rest, missing segments count as 0, strings sort before numbers.
//!
//! Missing segments being 0 is exactly a [`PaddedSeq`] with pad 0: numbers above 0 sort above
//! it, strings below.

use crate::key::{push_number, PaddedSeq, Side};

pub(crate) fn encode(s: &str, out: &mut Vec<u8>) -> Result<(), &'static str> {
    let bytes = s.as_bytes();
    if !bytes.first().is_some_and(u8::is_ascii_digit) {
        return Err("does not start with a number");
    }
    if bytes
        .iter()
        .any(|&b| !(b.is_ascii_alphanumeric() || b == b'.' || b == b'-'))
    {
        return Err("only letters, digits, '.' and '-' are allowed");
    }
    // Segments: maximal digit runs (numbers) and letter runs (strings); '.' and '-' separate.
    let mut segments: Vec<&[u8]> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        if bytes[i].is_ascii_digit() {
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
        } else if bytes[i].is_ascii_alphabetic() {
            while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
                i += 1;
            }
        } else {
            if bytes[i] == b'-' {
                // "1.0-1" is "1.0.pre.1".
                segments.push(b"pre");
            }
            i += 1;
            continue;
        }
        segments.push(&bytes[start..i]);
    }
    // Canonical segments: trailing zeros go from the numeric head (so "1.0.a" is "1.a") and
    // from the end.
    let is_zero = |seg: &&&[u8]| seg.iter().all(|&d| d == b'0');
    let head_len = segments
        .iter()
        .position(|seg| seg[0].is_ascii_alphabetic())
        .unwrap_or(segments.len());
    let (head, tail) = segments.split_at(head_len);
    let head = &head[..head.len() - head.iter().rev().take_while(is_zero).count()];
    let tail = &tail[..tail.len() - tail.iter().rev().take_while(is_zero).count()];
    let mut seq = PaddedSeq::new(out);
    for &seg in head.iter().chain(tail) {
        if seg[0].is_ascii_digit() {
            if seg.iter().all(|&d| d == b'0') {
                seq.pad();
            } else {
                push_number(seq.element(Side::Above), seg);
            }
        } else {
            let buf = seq.element(Side::Below);
            buf.extend_from_slice(seg);
            buf.push(0);
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
    fn documented_examples() {
        let c = |a, b| Scheme::RubyGems.compare(a, b).unwrap();
        assert_eq!(c("1.0.a", "1.0"), Less);
        assert_eq!(c("1.0.b1", "1.0.a.2"), Greater);
        assert_eq!(c("1.0", "1.0.0"), Equal);
        assert_eq!(c("1.0-1", "1.0.pre.1"), Equal);
        assert_eq!(c("1.a.0.b", "1.a"), Less);
        assert_eq!(c("3.10", "3.2"), Greater);
    }
}

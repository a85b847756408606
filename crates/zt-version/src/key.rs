//! Byte sort keys: most schemes turn a version into bytes whose plain lexicographic order
//! (`memcmp`) is the scheme's order. Comparing two parsed versions is then one slice compare,
//! and `Eq`/`Hash` on the bytes agree with `Ord` by construction (versions that a scheme calls
//! equal, like dpkg's `1.09` and `1.9`, encode to the same bytes).
//!
//! Two building blocks make that possible for every scheme here:
//! - [`push_number`]: an order-preserving, self-delimiting encoding of a decimal number of any
//!   length (no overflow: `999999999999999999999999999991` orders correctly).
//! - [`PaddedSeq`]: an order-preserving encoding of a sequence that compares as if the shorter
//!   one were padded with a "pad" element forever (dpkg's empty chunk, RubyGems' 0, …), which
//!   plain byte order cannot express on its own.

/// Encodes a number given as ASCII decimal digits (leading zeros allowed) so that byte order is
/// numeric order. Values up to 19 digits take 1–9 bytes; longer ones keep their digits.
pub(crate) fn push_number(out: &mut Vec<u8>, digits: &[u8]) {
    debug_assert!(digits.iter().all(u8::is_ascii_digit));
    let start = digits
        .iter()
        .position(|&d| d != b'0')
        .unwrap_or(digits.len());
    let significant = &digits[start..];
    if significant.len() <= 19 {
        let value = significant
            .iter()
            .fold(0u64, |acc, &d| acc * 10 + u64::from(d - b'0'));
        push_u64(out, value);
    } else {
        // Every 20+ digit number exceeds every number of at most 19 digits, so tag 9 (above the
        // byte counts 0..=8 used by `push_u64`) keeps the order; then length, then digits.
        out.push(9);
        let len = u16::try_from(significant.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(significant);
    }
}

/// Encodes a `u64` as its count of significant bytes followed by those bytes (big-endian).
pub(crate) fn push_u64(out: &mut Vec<u8>, value: u64) {
    let bytes = value.to_be_bytes();
    let skip = (value.leading_zeros() / 8) as usize;
    out.push((8 - skip) as u8);
    out.extend_from_slice(&bytes[skip..]);
}

/// Class of an element relative to the pad element of a [`PaddedSeq`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// The element sorts before the pad element.
    Below,
    /// The element sorts after the pad element.
    Above,
}

const TAG_BELOW: u8 = 1;
const TAG_END: u8 = 2;
const TAG_ABOVE: u8 = 3;

/// Writes a sequence that compares element by element, the shorter one padded with a fixed pad
/// element. Elements equal to the pad are not written; each written element carries the count
/// of pad elements before it. Comparing `(run, element)` tokens then gives the padded order:
/// - same run: the elements decide;
/// - shorter run: that side meets its element where the other has the pad, so the element's
///   side of the pad decides. Hence runs sort ascending for `Below` elements and descending for
///   `Above` ones, `Below` tokens < end (pad forever) < `Above` tokens.
///
/// Each element's own bytes must be order-preserving and self-delimiting among elements of the
/// same side.
pub(crate) struct PaddedSeq<'a> {
    out: &'a mut Vec<u8>,
    run: u16,
}

impl<'a> PaddedSeq<'a> {
    pub(crate) fn new(out: &'a mut Vec<u8>) -> Self {
        PaddedSeq { out, run: 0 }
    }

    /// An element equal to the pad element.
    pub(crate) fn pad(&mut self) {
        self.run = self.run.saturating_add(1);
    }

    /// Starts a non-pad element; the caller then writes the element's bytes into the returned
    /// buffer.
    pub(crate) fn element(&mut self, side: Side) -> &mut Vec<u8> {
        let run = match side {
            Side::Below => {
                self.out.push(TAG_BELOW);
                self.run
            }
            Side::Above => {
                self.out.push(TAG_ABOVE);
                u16::MAX - self.run
            }
        };
        self.out.extend_from_slice(&run.to_be_bytes());
        self.run = 0;
        self.out
    }

    /// Ends the sequence (the rest is pad elements forever).
    pub(crate) fn finish(self) {
        self.out.push(TAG_END);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(s: &str) -> Vec<u8> {
        let mut v = Vec::new();
        push_number(&mut v, s.as_bytes());
        v
    }

    #[test]
    fn numbers_order_numerically_at_any_length() {
        let values = [
            "0",
            "1",
            "9",
            "10",
            "255",
            "256",
            "18446744073709551615",
            "18446744073709551616",
            "999999999999999999999999999991",
            "999999999999999999999999999999",
            "1000000000000000000000000000000",
        ];
        for w in values.windows(2) {
            assert!(num(w[0]) < num(w[1]), "{} < {}", w[0], w[1]);
        }
        assert_eq!(num("007"), num("7"));
        assert_eq!(num(""), num("0"));
        assert_eq!(num("0000000000000000000000000000001"), num("1"));
    }

    /// Sequences of small ints padded with 0, negative numbers below the pad.
    fn seq(items: &[i32]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut s = PaddedSeq::new(&mut out);
        for &i in items {
            match i.cmp(&0) {
                std::cmp::Ordering::Equal => s.pad(),
                std::cmp::Ordering::Less => s.element(Side::Below).push((i + 128) as u8),
                std::cmp::Ordering::Greater => s.element(Side::Above).push(i as u8),
            }
        }
        s.finish();
        out
    }

    fn padded_cmp(a: &[i32], b: &[i32]) -> std::cmp::Ordering {
        let n = a.len().max(b.len());
        (0..n)
            .map(|i| a.get(i).copied().unwrap_or(0))
            .cmp((0..n).map(|i| b.get(i).copied().unwrap_or(0)))
    }

    #[test]
    fn padded_sequences_match_padded_comparison_exhaustively() {
        let mut all: Vec<Vec<i32>> = vec![vec![]];
        for len in 1..=3 {
            let mut next = Vec::new();
            for v in all.iter().filter(|v| v.len() == len - 1) {
                for x in -2..=2 {
                    let mut w = v.clone();
                    w.push(x);
                    next.push(w);
                }
            }
            all.extend(next);
        }
        for a in &all {
            for b in &all {
                assert_eq!(seq(a).cmp(&seq(b)), padded_cmp(a, b), "{a:?} vs {b:?}");
            }
        }
    }
}

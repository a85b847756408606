//! Maven versions, written from the POM reference's "Version Order Specification" and the
//! documented behaviour of `ComparableVersion` (maven-artifact 3.9):
//! - the lower-cased string splits at `.`, at `-` and at every digit/letter transition; `-` and
//!   transitions open a nested list (`1-alpha` is `[1, [alpha]]`); an empty token is `0`;
//! - numbers order numerically; qualifiers `alpha` (`a` before a digit) < `beta` (`b`) <
//!   `milestone` (`m`) < `rc` = `cr` < `snapshot` < `""` = `ga` = `final` = `release` < `sp` <
//!   any other word (alphabetically); at one position qualifier < list < number;
//! - "null" items (0, the release qualifier, an empty list) are dropped from the end of every
//!   list, and a list left empty gives its place to its own nested list (`1-ga-1` = `1-1`);
//! - a list that runs out compares its partner's remaining items with "null".
//!
//! `ComparableVersion` is not a total order: "null" equals both `0` and the release qualifier,
//! though `0` sorts above every qualifier and list, so real versions of one artifact form cycles
//! (`2.9.0 < 2.9.0-1 < 2.9.0.RC1 < 2.9.0`). Sorting needs a total order, so where the rules
//! collide this scheme decides by what a "null" comparison would say: a `0` (or release
//! qualifier) in the middle of a version, and a nested list, sort below the end of a version
//! when the first non-null item after them does (`2.9.0.RC1` < `2.9.0-1`, since `.RC1` is a
//! pre-release and `-1` is not). Everywhere else the order is `ComparableVersion`'s; the few
//! upstream vectors that depend on a cycle are listed as exceptions in the vector tests.
//!
//! Nesting only happens at the end of a list, so a version is a chain of lists; flattened with
//! a mark where each nested list starts, and every null item and mark tagged with the side of
//! "null" it falls on, the order becomes a plain byte key. (The `mvn_version` crate was not
//! used: unmaintained since 2021 and not these semantics.)

use crate::key::push_number;

/// Rank of the release qualifier (`""`, `ga`, `final`, `release`) among the known ones.
const RELEASE: u8 = 5;
const UNKNOWN: u8 = 7;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Item<'a> {
    /// Decimal digits (leading zeros allowed).
    Number(&'a str),
    /// Rank and, for unknown qualifiers, the word.
    Qualifier(u8, &'a str),
    /// The start of a nested list (which ends the enclosing one).
    List,
}

impl Item<'_> {
    fn is_null(&self) -> bool {
        match self {
            Item::Number(n) => n.bytes().all(|d| d == b'0'),
            Item::Qualifier(rank, _) => *rank == RELEASE,
            Item::List => false,
        }
    }

    /// How a non-null item compares with "null".
    fn above_null(&self) -> bool {
        match self {
            Item::Number(_) | Item::List => true,
            Item::Qualifier(rank, _) => *rank > RELEASE,
        }
    }
}

fn qualifier(word: &str, followed_by_digit: bool) -> Item<'_> {
    let canonical = match word {
        "a" if followed_by_digit => "alpha",
        "b" if followed_by_digit => "beta",
        "m" if followed_by_digit => "milestone",
        w => w,
    };
    let rank = match canonical {
        "alpha" => 0,
        "beta" => 1,
        "milestone" => 2,
        "rc" | "cr" => 3,
        "snapshot" => 4,
        "" | "ga" | "final" | "release" => RELEASE,
        "sp" => 6,
        _ => UNKNOWN,
    };
    Item::Qualifier(rank, if rank == UNKNOWN { word } else { "" })
}

/// Splits the (lower-cased) version into items, a `List` mark where each nested list starts,
/// and normalises: trailing nulls go from every list, an emptied nested list disappears (its
/// own nested list, if any, taking its place).
fn parse(lower: &str) -> Vec<Item<'_>> {
    let mut items: Vec<Item<'_>> = Vec::with_capacity(lower.len() / 2 + 2);
    let mut start = 0;
    let mut in_digits = false;
    let token = |start: usize, end: usize, in_digits: bool, next_is_digit: bool| {
        let t = &lower[start..end];
        if in_digits {
            Item::Number(t)
        } else {
            qualifier(t, next_is_digit)
        }
    };
    for (i, c) in lower.char_indices() {
        match c {
            '.' | '-' => {
                items.push(if i == start {
                    Item::Number("0")
                } else {
                    token(start, i, in_digits, false)
                });
                if c == '-' {
                    items.push(Item::List);
                }
                start = i + 1;
            }
            c if c.is_ascii_digit() => {
                if !in_digits && i > start {
                    items.push(token(start, i, false, true));
                    items.push(Item::List);
                    start = i;
                }
                in_digits = true;
            }
            _ => {
                if in_digits && i > start {
                    items.push(token(start, i, true, false));
                    items.push(Item::List);
                    start = i;
                }
                in_digits = false;
            }
        }
    }
    if lower.len() > start {
        items.push(token(start, lower.len(), in_digits, false));
    }
    // Backwards: drop nulls at the end of each list, and lists left empty.
    let mut kept: Vec<Item<'_>> = Vec::with_capacity(items.len());
    let mut at_list_end = true;
    for item in items.into_iter().rev() {
        match item {
            Item::List => {
                // A list mark directly before another (or at the end) starts an empty list.
                if !matches!(kept.last(), None | Some(Item::List)) {
                    kept.push(Item::List);
                }
                at_list_end = true;
            }
            item if at_list_end && item.is_null() => {}
            item => {
                kept.push(item);
                at_list_end = false;
            }
        }
    }
    kept.reverse();
    kept
}

// Byte order of the flattened items (see the module docs).
const QUALIFIER_BELOW: u8 = 1;
const LIST_BELOW: u8 = 2;
const NULL_BELOW: u8 = 3;
const END: u8 = 4;
const QUALIFIER_ABOVE: u8 = 5;
const LIST_ABOVE: u8 = 6;
const NULL_ABOVE: u8 = 7;
const NUMBER: u8 = 8;

pub(crate) fn encode(s: &str, out: &mut Vec<u8>) -> Result<(), &'static str> {
    if s.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("contains whitespace or control characters");
    }
    let lower = s.to_lowercase();
    let items = parse(&lower);
    // Each null item and list mark is tagged with the side of "null" of the first non-null item
    // after it (none: the end, which is null itself). Written backwards, then reversed.
    let start = out.len();
    let mut next_above = false;
    out.push(END);
    for item in items.iter().rev() {
        match item {
            Item::List => out.push(if next_above { LIST_ABOVE } else { LIST_BELOW }),
            Item::Number(_) if item.is_null() => {
                out.push(1);
                out.push(if next_above { NULL_ABOVE } else { NULL_BELOW });
            }
            Item::Qualifier(RELEASE, _) => {
                out.push(0);
                out.push(if next_above { NULL_ABOVE } else { NULL_BELOW });
            }
            Item::Number(n) => {
                let at = out.len();
                out.push(NUMBER);
                push_number(out, n.as_bytes());
                out[at..].reverse();
                next_above = true;
            }
            Item::Qualifier(rank, word) => {
                let at = out.len();
                if *rank < RELEASE {
                    out.push(QUALIFIER_BELOW);
                    out.push(*rank);
                } else {
                    out.push(QUALIFIER_ABOVE);
                    out.push(*rank);
                    out.extend_from_slice(word.as_bytes());
                    out.push(0);
                }
                out[at..].reverse();
                next_above = item.above_null();
            }
        }
    }
    out[start..].reverse();
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::Scheme;
    use std::cmp::Ordering::*;

    #[test]
    fn specification_examples() {
        let c = |a, b| Scheme::Maven.compare(a, b).unwrap();
        for (a, b) in [
            ("1", "1.0.0"),
            ("1.ga", "1"),
            ("1-final", "1"),
            ("1.0.0-foo.0.0", "1-foo"),
            ("1.0.0-0.0.0", "1"),
            ("1-1.foo-bar1baz-.1", "1-1.foo-bar-1-baz-0.1"),
        ] {
            assert_eq!(c(a, b), Equal, "{a} = {b}");
        }
        let chain = [
            "1-alpha",
            "1-beta",
            "1-milestone",
            "1-rc",
            "1-snapshot",
            "1",
            "1-sp",
            "1-abc",
            "1-1",
            "1.1",
        ];
        for w in chain.windows(2) {
            assert_eq!(c(w[0], w[1]), Less, "{w:?}");
        }
    }
}

//! Alpine (apk) versions: Alpine, Wolfi, Chainguard, Alpaquita, MinimOS…, written from the
//! documented apk version format (apk-package(5), Alpine's APKBUILD reference):
//! `number(.number)*[letter](_suffix[number])*[~hash][-rN]`, suffixes `alpha` < `beta` < `pre`
//! < `rc` < (release) < `cvs` < `svn` < `git` < `hg` < `p`.
//!
//! apk compares any two strings, valid or not, token by token. Tokens of the same kind compare
//! by value; where the kinds differ, the first difference decides by kind, in this order:
//! invalid < pre-release suffix < end < revision < hash < suffix number < post-release suffix
//! < letter < number. So `1.2_rc1 < 1.2 < 1.2-r1 < 1.2_p1 < 1.2a < 1.2.1`, and a malformed tail
//! (`1-ruff`, `1.2.0A`, `1.2_blah`) sorts below what it was compared with — current apk-tools'
//! behaviour, which OSV follows. A malformed token ends the comparison; an empty number (as in
//! `0..8` or `.1`) is a weak token that still lets the rest compare.
//!
//! Numbers after the first compare numerically unless one starts with `0`, in which case both
//! compare as strings without trailing zeros (so `8.2.0 < 8.2.001 < 8.2.0015 < 8.2.002`), the
//! Gentoo rule apk follows.
//!
//! [`encode`] is lenient like apk's comparison; [`validate`] checks the strict format.

use crate::key::push_number;

// Token kinds in sort order (see the module docs).
const INVALID: u8 = 1;
const PRE_SUFFIX: u8 = 2;
const EMPTY_NUMBER: u8 = 3;
const END: u8 = 4;
const REVISION: u8 = 5;
const HASH: u8 = 6;
const SUFFIX_NUMBER: u8 = 7;
const POST_SUFFIX: u8 = 8;
const LETTER: u8 = 9;
const NUMBER: u8 = 10;

const PRE_SUFFIXES: [&str; 4] = ["alpha", "beta", "pre", "rc"];
const POST_SUFFIXES: [&str; 5] = ["cvs", "svn", "git", "hg", "p"];

#[derive(Clone, Copy, PartialEq, Eq)]
enum After {
    Number,
    Letter,
    Suffix,
    SuffixNumber,
    Hash,
}

fn digits_len(s: &[u8]) -> usize {
    s.iter().take_while(|b| b.is_ascii_digit()).count()
}

pub(crate) fn encode(s: &str, out: &mut Vec<u8>) -> Result<(), &'static str> {
    let b = s.as_bytes();
    if b.iter()
        .any(|c| c.is_ascii_whitespace() || c.is_ascii_control())
    {
        return Err("contains whitespace or control characters");
    }
    // The first number.
    let mut i = digits_len(b);
    if i == 0 {
        out.push(EMPTY_NUMBER);
    } else {
        out.push(NUMBER);
        push_number(out, &b[..i]);
    }
    let mut after = After::Number;
    loop {
        let Some(&c) = b.get(i) else {
            out.push(END);
            return Ok(());
        };
        match (c, after) {
            (b'.', After::Number) => {
                let n = digits_len(&b[i + 1..]);
                let digits = &b[i + 1..i + 1 + n];
                push_component(out, digits);
                i += 1 + n;
            }
            (b'a'..=b'z', After::Number) => {
                out.push(LETTER);
                out.push(c);
                i += 1;
                after = After::Letter;
            }
            (b'0'..=b'9', After::Letter) => {
                let n = digits_len(&b[i..]);
                out.push(NUMBER);
                push_number(out, &b[i..i + n]);
                i += n;
                after = After::Number;
            }
            (b'_', After::Number | After::Letter | After::Suffix | After::SuffixNumber) => {
                let rest = &b[i + 1..];
                let (kind, rank, len) = if let Some((rank, name)) = PRE_SUFFIXES
                    .iter()
                    .enumerate()
                    .find(|(_, name)| rest.starts_with(name.as_bytes()))
                {
                    (PRE_SUFFIX, rank, name.len())
                } else if let Some((rank, name)) = POST_SUFFIXES
                    .iter()
                    .enumerate()
                    .find(|(_, name)| rest.starts_with(name.as_bytes()))
                {
                    (POST_SUFFIX, rank, name.len())
                } else {
                    out.push(INVALID);
                    return Ok(());
                };
                out.push(kind);
                out.push(rank as u8);
                i += 1 + len;
                after = After::Suffix;
            }
            (b'0'..=b'9', After::Suffix) => {
                let n = digits_len(&b[i..]);
                out.push(SUFFIX_NUMBER);
                push_number(out, &b[i..i + n]);
                i += n;
                after = After::SuffixNumber;
            }
            (b'~', After::Number | After::Letter | After::Suffix | After::SuffixNumber) => {
                let n = b[i + 1..]
                    .iter()
                    .take_while(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
                    .count();
                if n == 0 {
                    out.push(INVALID);
                    return Ok(());
                }
                out.push(HASH);
                out.extend_from_slice(&b[i + 1..i + 1 + n]);
                out.push(0);
                i += 1 + n;
                after = After::Hash;
            }
            (b'-', _) if b.get(i + 1) == Some(&b'r') => {
                // The revision ends the version; anything after it makes the token malformed.
                let n = digits_len(&b[i + 2..]);
                if i + 2 + n != b.len() {
                    out.push(INVALID);
                    return Ok(());
                }
                out.push(REVISION);
                push_number(out, &b[i + 2..]);
                out.push(END);
                return Ok(());
            }
            _ => {
                out.push(INVALID);
                return Ok(());
            }
        }
    }
}

/// A number after a `.`: numeric, or — when it starts with `0` — a string without its
/// trailing zeros, all of which sort below every number without a leading zero.
fn push_component(out: &mut Vec<u8>, digits: &[u8]) {
    if digits.is_empty() {
        out.push(EMPTY_NUMBER);
    } else if digits[0] == b'0' {
        out.push(NUMBER);
        out.push(0);
        let end = digits.len() - digits.iter().rev().take_while(|&&d| d == b'0').count();
        out.extend(digits[..end].iter().map(|d| d - b'0' + 1));
        out.push(0);
    } else {
        out.push(NUMBER);
        out.push(1);
        push_number(out, digits);
    }
}

/// Checks the strict apk version format (what `apk` accepts in a package).
pub fn validate(s: &str) -> Result<(), &'static str> {
    let b = s.as_bytes();
    let mut i = digits_len(b);
    if i == 0 {
        return Err("must start with a number");
    }
    while b.get(i) == Some(&b'.') {
        let n = digits_len(&b[i + 1..]);
        if n == 0 {
            return Err("'.' must be followed by a number");
        }
        i += 1 + n;
    }
    if b.get(i).is_some_and(u8::is_ascii_lowercase) {
        i += 1;
    }
    while b.get(i) == Some(&b'_') {
        let rest = &b[i + 1..];
        let name_len = rest.iter().take_while(|c| c.is_ascii_lowercase()).count();
        let name = &rest[..name_len];
        if !PRE_SUFFIXES
            .iter()
            .chain(POST_SUFFIXES.iter())
            .any(|s| s.as_bytes() == name)
        {
            return Err("unknown suffix");
        }
        i += 1 + name_len;
        i += digits_len(&b[i..]);
    }
    if b.get(i) == Some(&b'~') {
        let n = b[i + 1..]
            .iter()
            .take_while(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
            .count();
        if n == 0 {
            return Err("'~' must be followed by a lowercase hex hash");
        }
        i += 1 + n;
    }
    if b[i..].starts_with(b"-r") {
        let n = digits_len(&b[i + 2..]);
        if n == 0 {
            return Err("'-r' must be followed by a number");
        }
        i += 2 + n;
    }
    if i != b.len() {
        return Err("unexpected characters");
    }
    Ok(())
}

/// apk's fuzzy match (`~`): `version` starts with every token of `prefix` (`3.6.9 ~ 3.6`).
pub(crate) fn fuzzy_matches(version_key: &[u8], prefix_key: &[u8]) -> bool {
    match prefix_key.split_last() {
        Some((&END, head)) => version_key.starts_with(head),
        _ => version_key == prefix_key,
    }
}

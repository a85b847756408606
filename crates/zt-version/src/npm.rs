//! node-semver compatible versions and ranges, written from node-semver's README (the range
//! grammar npm uses in `package.json` and that npm advisories use for affected versions):
//! comparators (`<`, `<=`, `>`, `>=`, `=`), sets joined by spaces (all must hold) and by `||`
//! (any may hold), hyphen ranges, X-ranges (`1.x`, `1.2.*`, `1`, `*`), tilde and caret ranges,
//! the pre-release rule (a pre-release version satisfies a set only if a comparator of that set
//! has a pre-release on the same `major.minor.patch`, unless `include_prerelease`), and loose
//! parsing (`=`, `v` and spaces before the numbers, a pre-release without `-`, leading zeros).
//!
//! The `nodejs-semver` crate was not used: ranges here must be exact on node-semver's own
//! fixtures (including `loose` and `includePrerelease`), so the evaluation is kept in one place
//! under test.

use std::cmp::Ordering;
use std::fmt;

/// node-semver's `MAX_SAFE_COMPONENT_LENGTH`-style bounds: numbers must fit in a JS integer.
const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;
const MAX_LENGTH: usize = 256;

/// Parsing options (node-semver's `options` object).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// Accept the loose syntax.
    pub loose: bool,
    /// Let pre-release versions satisfy ranges like any other version.
    pub include_prerelease: bool,
}

/// A version or range node-semver would reject.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid npm {what} {input:?}: {reason}")]
pub struct NpmError {
    what: &'static str,
    input: String,
    reason: &'static str,
}

fn err(what: &'static str, input: &str, reason: &'static str) -> NpmError {
    NpmError {
        what,
        input: input.chars().take(80).collect(),
        reason,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Ident {
    Number(u64),
    Text(String),
}

impl Ord for Ident {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Ident::Number(a), Ident::Number(b)) => a.cmp(b),
            (Ident::Number(_), Ident::Text(_)) => Ordering::Less,
            (Ident::Text(_), Ident::Number(_)) => Ordering::Greater,
            (Ident::Text(a), Ident::Text(b)) => a.cmp(b),
        }
    }
}

impl PartialOrd for Ident {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A node-semver version (build metadata is kept out: it never orders).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NpmVersion {
    major: u64,
    minor: u64,
    patch: u64,
    pre: Vec<Ident>,
}

impl Ord for NpmVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.major, self.minor, self.patch)
            .cmp(&(other.major, other.minor, other.patch))
            .then_with(|| match (self.pre.is_empty(), other.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => self.pre.cmp(&other.pre),
            })
    }
}

impl PartialOrd for NpmVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for NpmVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)?;
        for (i, id) in self.pre.iter().enumerate() {
            f.write_str(if i == 0 { "-" } else { "." })?;
            match id {
                Ident::Number(n) => write!(f, "{n}")?,
                Ident::Text(t) => f.write_str(t)?,
            }
        }
        Ok(())
    }
}

/// One component of a possibly partial version in a range: a number or a wildcard.
type Part = Option<u64>;

/// A version as written in a range: `1`, `1.2.x`, `*`, `1.2.3-beta`.
#[derive(Debug, Clone)]
struct Partial {
    major: Part,
    minor: Part,
    patch: Part,
    pre: Vec<Ident>,
}

fn parse_number(s: &str, loose: bool, what: &'static str, input: &str) -> Result<u64, NpmError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err(what, input, "expected a number"));
    }
    if !loose && s.len() > 1 && s.starts_with('0') {
        return Err(err(what, input, "numbers have no leading zeros"));
    }
    match s.parse::<u64>() {
        Ok(n) if n <= MAX_SAFE_INTEGER => Ok(n),
        _ => Err(err(what, input, "number too big")),
    }
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-'
}

/// Pre-release identifiers: numeric ones without leading zeros (unless loose), or
/// alphanumerics with hyphens.
fn parse_pre(s: &str, loose: bool, input: &str) -> Result<Vec<Ident>, NpmError> {
    s.split('.')
        .map(|id| {
            if id.is_empty() || !id.chars().all(is_ident_char) {
                return Err(err("version", input, "bad pre-release identifier"));
            }
            if id.bytes().all(|b| b.is_ascii_digit()) {
                if !loose && id.len() > 1 && id.starts_with('0') {
                    return Err(err(
                        "version",
                        input,
                        "numeric identifiers have no leading zeros",
                    ));
                }
                // Like node-semver: a number too big for a JS integer stays a string.
                Ok(match id.parse::<u64>() {
                    Ok(n) if n <= MAX_SAFE_INTEGER => Ident::Number(n),
                    _ => Ident::Text(id.to_string()),
                })
            } else {
                Ok(Ident::Text(id.to_string()))
            }
        })
        .collect()
}

fn check_build(s: &str, input: &str) -> Result<(), NpmError> {
    if s.split('.')
        .all(|id| !id.is_empty() && id.chars().all(is_ident_char))
    {
        Ok(())
    } else {
        Err(err("version", input, "bad build metadata"))
    }
}

/// Splits `[v=]*` (and, when loose, spaces), the numbers (up to three, wildcards allowed when
/// `wildcards`), the pre-release and the build.
fn parse_partial(
    input: &str,
    loose: bool,
    wildcards: bool,
    what: &'static str,
) -> Result<Partial, NpmError> {
    let mut s = input.trim();
    if s.len() > MAX_LENGTH {
        return Err(err(what, input, "too long"));
    }
    if loose {
        s = s.trim_start_matches(|c: char| c == 'v' || c == '=' || c.is_whitespace());
    } else {
        s = s.strip_prefix('v').unwrap_or(s);
    }
    let (s, build) = match s.split_once('+') {
        Some((head, build)) => (head, Some(build)),
        None => (s, None),
    };
    if let Some(build) = build {
        check_build(build, input)?;
    }
    let mut parts: Vec<Part> = Vec::with_capacity(3);
    let mut rest = s;
    loop {
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || (wildcards && matches!(c, 'x' | 'X' | '*'))))
            .unwrap_or(rest.len());
        let token = &rest[..end];
        if token.is_empty() {
            return Err(err(what, input, "expected a number"));
        }
        let part = if matches!(token, "x" | "X" | "*") {
            None
        } else {
            Some(parse_number(token, loose, what, input)?)
        };
        parts.push(part);
        rest = &rest[end..];
        if parts.len() < 3 && rest.starts_with('.') {
            rest = &rest[1..];
        } else {
            break;
        }
    }
    let pre = if rest.is_empty() {
        Vec::new()
    } else {
        if parts.len() < 3 || parts.iter().any(Option::is_none) {
            return Err(err(what, input, "a pre-release needs major.minor.patch"));
        }
        let pre = match rest.strip_prefix('-') {
            Some(p) => p,
            None if loose => rest,
            None => return Err(err(what, input, "unexpected characters")),
        };
        parse_pre(pre, loose, input)?
    };
    // A wildcard makes everything after it a wildcard ("1.x.3" is "1.x.x").
    let get = |i: usize| parts.get(i).copied().flatten();
    let major = get(0);
    let minor = major.and(get(1));
    let patch = minor.and(get(2));
    Ok(Partial {
        major,
        minor,
        patch,
        pre,
    })
}

impl NpmVersion {
    /// Parses a full version (`1.2.3`, `v1.2.3-beta.1+build`; loose: `=1.2.3`, `1.2.3beta`).
    pub fn parse(s: &str, loose: bool) -> Result<NpmVersion, NpmError> {
        let p = parse_partial(s, loose, false, "version")?;
        match (p.major, p.minor, p.patch) {
            (Some(major), Some(minor), Some(patch)) => Ok(NpmVersion {
                major,
                minor,
                patch,
                pre: p.pre,
            }),
            _ => Err(err("version", s, "needs major.minor.patch")),
        }
    }

    fn new(major: u64, minor: u64, patch: u64, pre: Vec<Ident>) -> Self {
        NpmVersion {
            major,
            minor,
            patch,
            pre,
        }
    }

    /// `M.m.p-0`: the lowest version with these numbers.
    fn lowest(major: u64, minor: u64, patch: u64) -> Self {
        NpmVersion::new(major, minor, patch, vec![Ident::Number(0)])
    }

    fn is_prerelease(&self) -> bool {
        !self.pre.is_empty()
    }

    fn same_numbers(&self, other: &NpmVersion) -> bool {
        (self.major, self.minor, self.patch) == (other.major, other.minor, other.patch)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
}

#[derive(Debug, Clone)]
struct Comparator {
    op: Op,
    version: NpmVersion,
}

impl Comparator {
    fn test(&self, v: &NpmVersion) -> bool {
        let ord = v.cmp(&self.version);
        match self.op {
            Op::Lt => ord == Ordering::Less,
            Op::Le => ord != Ordering::Greater,
            Op::Gt => ord == Ordering::Greater,
            Op::Ge => ord != Ordering::Less,
            Op::Eq => ord == Ordering::Equal,
        }
    }
}

/// Comparators that must all hold (an empty set matches everything).
#[derive(Debug, Clone, Default)]
struct ComparatorSet(Vec<Comparator>);

impl ComparatorSet {
    fn push(&mut self, op: Op, version: NpmVersion) {
        self.0.push(Comparator { op, version });
    }

    /// Matches nothing (`<0.0.0-0`).
    fn nothing(&mut self) {
        self.push(Op::Lt, NpmVersion::lowest(0, 0, 0));
    }

    fn test(&self, v: &NpmVersion, options: Options) -> bool {
        if !self.0.iter().all(|c| c.test(v)) {
            return false;
        }
        if v.is_prerelease() && !options.include_prerelease {
            return self
                .0
                .iter()
                .any(|c| c.version.is_prerelease() && c.version.same_numbers(v));
        }
        true
    }
}

/// A node-semver range: comparator sets joined by `||`.
#[derive(Debug, Clone)]
pub struct NpmRange {
    sets: Vec<ComparatorSet>,
    options: Options,
}

fn next_after(major: u64, minor: Part) -> NpmVersion {
    match minor {
        None => NpmVersion::lowest(major + 1, 0, 0),
        Some(minor) => NpmVersion::lowest(major, minor + 1, 0),
    }
}

impl NpmRange {
    /// Parses a range; an invalid one is an error (node-semver throws).
    pub fn parse(s: &str, options: Options) -> Result<NpmRange, NpmError> {
        if s.len() > MAX_LENGTH {
            return Err(err("range", s, "too long"));
        }
        let mut sets = Vec::new();
        for alternative in s.split("||") {
            if let Some(set) = parse_set(alternative.trim(), s, options)? {
                sets.push(set);
            }
        }
        if sets.is_empty() {
            return Err(err("range", s, "no valid comparator"));
        }
        Ok(NpmRange { sets, options })
    }

    /// Whether `version` satisfies the range.
    pub fn satisfies(&self, version: &NpmVersion) -> bool {
        self.sets.iter().any(|set| set.test(version, self.options))
    }
}

/// node-semver's `satisfies(version, range, options)`: false when either does not parse.
pub fn satisfies(version: &str, range: &str, options: Options) -> bool {
    let Ok(version) = NpmVersion::parse(version, options.loose) else {
        return false;
    };
    NpmRange::parse(range, options).is_ok_and(|r| r.satisfies(&version))
}

/// Splits a comparator set into (operator, version) tokens; whitespace may separate an
/// operator from its version.
fn tokens(set: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = set.trim().chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut op = String::new();
        while let Some(&c) = chars.peek() {
            if matches!(c, '<' | '>' | '=' | '~' | '^') {
                op.push(c);
                chars.next();
            } else {
                break;
            }
        }
        if !op.is_empty() {
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
        }
        let mut version = String::new();
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() {
                break;
            }
            version.push(c);
            chars.next();
        }
        out.push((op, version));
    }
    out
}

/// `None` when loose parsing dropped every comparator of a non-empty set (the set is ignored,
/// unlike an empty set, which matches everything).
fn parse_set(set: &str, input: &str, options: Options) -> Result<Option<ComparatorSet>, NpmError> {
    let loose = options.loose;
    let toks = tokens(set);
    let mut out = ComparatorSet::default();
    // "A - B" (the whole set).
    if toks.len() == 3
        && toks[1] == (String::new(), "-".to_string())
        && toks[0].0.is_empty()
        && toks[2].0.is_empty()
    {
        let from = parse_partial(&toks[0].1, loose, true, "range")?;
        let to = parse_partial(&toks[2].1, loose, true, "range")?;
        lower_bound(&mut out, &from, options);
        match (to.major, to.patch) {
            (None, _) => {}
            (Some(major), None) => out.push(Op::Lt, next_after(major, to.minor)),
            (Some(major), Some(patch)) => out.push(
                Op::Le,
                NpmVersion::new(major, to.minor.unwrap_or(0), patch, to.pre),
            ),
        }
        return Ok(Some(out));
    }
    let mut kept = toks.is_empty();
    for (op, version) in toks {
        match expand(&mut out, &op, &version, options) {
            Ok(()) => kept = true,
            // Loose mode drops comparators it cannot read, as node-semver does.
            Err(_) if loose => {}
            Err(e) => return Err(err("range", input, e.reason)),
        }
    }
    Ok(kept.then_some(out))
}

/// `>=` the lowest version a partial version allows (nothing for `*`).
fn lower_bound(out: &mut ComparatorSet, p: &Partial, options: Options) {
    let pre_floor = |v: NpmVersion| {
        if options.include_prerelease {
            NpmVersion::lowest(v.major, v.minor, v.patch)
        } else {
            v
        }
    };
    match (p.major, p.patch) {
        (None, _) => {}
        (Some(major), None) => out.push(
            Op::Ge,
            pre_floor(NpmVersion::new(major, p.minor.unwrap_or(0), 0, Vec::new())),
        ),
        (Some(major), Some(patch)) => out.push(
            Op::Ge,
            NpmVersion::new(major, p.minor.unwrap_or(0), patch, p.pre.clone()),
        ),
    }
}

fn expand(
    out: &mut ComparatorSet,
    op: &str,
    version: &str,
    options: Options,
) -> Result<(), NpmError> {
    let p = parse_partial(version, options.loose, true, "range")?;
    let full = |p: &Partial| match (p.major, p.minor, p.patch) {
        (Some(a), Some(b), Some(c)) => Some(NpmVersion::new(a, b, c, p.pre.clone())),
        _ => None,
    };
    match op {
        "" | "=" | "==" => match full(&p) {
            Some(v) => out.push(Op::Eq, v),
            None => {
                lower_bound(out, &p, options);
                if let Some(major) = p.major {
                    out.push(Op::Lt, next_after(major, p.minor));
                }
            }
        },
        "~" | "~>" => {
            lower_bound(out, &p, options);
            if let Some(major) = p.major {
                out.push(Op::Lt, next_after(major, p.minor));
            }
        }
        "^" => {
            lower_bound(out, &p, options);
            match (p.major, p.minor, p.patch) {
                (None, _, _) => {}
                (Some(major), None, _) => out.push(Op::Lt, NpmVersion::lowest(major + 1, 0, 0)),
                (Some(0), Some(minor), None) => {
                    out.push(Op::Lt, NpmVersion::lowest(0, minor + 1, 0))
                }
                (Some(major), Some(_), None) => {
                    out.push(Op::Lt, NpmVersion::lowest(major + 1, 0, 0))
                }
                (Some(0), Some(0), Some(patch)) => {
                    out.push(Op::Lt, NpmVersion::lowest(0, 0, patch + 1))
                }
                (Some(0), Some(minor), Some(_)) => {
                    out.push(Op::Lt, NpmVersion::lowest(0, minor + 1, 0))
                }
                (Some(major), Some(_), Some(_)) => {
                    out.push(Op::Lt, NpmVersion::lowest(major + 1, 0, 0))
                }
            }
        }
        ">" => match (p.major, full(&p)) {
            (_, Some(v)) => out.push(Op::Gt, v),
            (None, None) => out.nothing(),
            (Some(major), None) => {
                let next = next_after(major, p.minor);
                let next = if options.include_prerelease {
                    next
                } else {
                    NpmVersion::new(next.major, next.minor, next.patch, Vec::new())
                };
                out.push(Op::Ge, next)
            }
        },
        ">=" => match full(&p) {
            Some(v) => out.push(Op::Ge, v),
            None => lower_bound(out, &p, options),
        },
        "<" => match (p.major, full(&p)) {
            (_, Some(v)) => out.push(Op::Lt, v),
            (None, None) => out.nothing(),
            (Some(major), None) => {
                out.push(Op::Lt, NpmVersion::lowest(major, p.minor.unwrap_or(0), 0))
            }
        },
        "<=" => match (p.major, full(&p)) {
            (_, Some(v)) => out.push(Op::Le, v),
            (None, None) => {}
            (Some(major), None) => out.push(Op::Lt, next_after(major, p.minor)),
        },
        _ => return Err(err("range", version, "unknown operator")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readme_examples() {
        let o = Options::default();
        assert!(satisfies("1.2.3", "^1.2.0", o));
        assert!(!satisfies("2.0.0", "^1.2.0", o));
        assert!(satisfies("0.2.9", "~0.2.3", o));
        assert!(!satisfies("1.3.0-beta", ">1.2", o));
        assert!(satisfies("1.2.3-alpha.7", ">1.2.3-alpha.3", o));
        assert!(!satisfies("1.2.4-beta.1", ">1.2.3-alpha.3", o));
        assert!(!satisfies("3.4.5-alpha.9", ">1.2.3-alpha.3", o));
        assert!(satisfies("2.3.4", "1.2.3 - 2.3.4", o));
        assert!(!satisfies("1.2.3", "not a range", o));
    }
}

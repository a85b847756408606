//! CPE name matching (NIST IR 7696): how a source name (typically a pattern from a
//! vulnerability record) relates to a target name (what is installed), attribute by attribute
//! and as a whole.

use crate::wfn::{Component, Wfn};

/// The relation of one source attribute value to one target attribute value (7696 §6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Relation {
    /// Every value the target stands for, the source stands for too (and more).
    Superset,
    Equal,
    Subset,
    Disjoint,
    /// The target holds wildcards: 7696 leaves such comparisons undefined.
    Undefined,
}

/// The relation of two whole names (7696 §6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NameRelation {
    /// Some attribute is disjoint: the names share no product.
    Disjoint,
    /// Every attribute is equal.
    Equal,
    /// Every attribute is a subset or equal.
    Subset,
    /// Every attribute is a superset or equal: the source covers the target.
    Superset,
    /// Mixed superset and subset attributes, or an undefined comparison.
    Incomparable,
}

/// Compares one attribute (7696 Table 6-2). Values compare case-insensitively.
pub fn compare_attribute(source: &Component, target: &Component) -> Relation {
    if target.has_wildcards() {
        return Relation::Undefined;
    }
    match (source, target) {
        (Component::Any, Component::Any) | (Component::Na, Component::Na) => Relation::Equal,
        (Component::Any, _) => Relation::Superset,
        (_, Component::Any) => Relation::Subset,
        (Component::Na, _) | (_, Component::Na) => Relation::Disjoint,
        (Component::Value(s), Component::Value(t)) => {
            if source.has_wildcards() {
                if wildcard_match(s, t) {
                    Relation::Superset
                } else {
                    Relation::Disjoint
                }
            } else if s.eq_ignore_ascii_case(t) {
                Relation::Equal
            } else {
                Relation::Disjoint
            }
        }
    }
}

/// Compares every attribute of two names.
pub fn compare_attributes(source: &Wfn, target: &Wfn) -> [Relation; 11] {
    let s = source.components();
    let t = target.components();
    std::array::from_fn(|i| compare_attribute(&s[i], &t[i]))
}

/// The relation of two whole names.
pub fn compare_names(source: &Wfn, target: &Wfn) -> NameRelation {
    let rel = compare_attributes(source, target);
    if rel.contains(&Relation::Disjoint) {
        NameRelation::Disjoint
    } else if rel.iter().all(|r| *r == Relation::Equal) {
        NameRelation::Equal
    } else if rel
        .iter()
        .all(|r| matches!(r, Relation::Equal | Relation::Subset))
    {
        NameRelation::Subset
    } else if rel
        .iter()
        .all(|r| matches!(r, Relation::Equal | Relation::Superset))
    {
        NameRelation::Superset
    } else {
        NameRelation::Incomparable
    }
}

/// True when `source` covers `target` (CPE_SUPERSET or CPE_EQUAL): the question "does this
/// vulnerable-product pattern cover this installed product?".
pub fn is_match(source: &Wfn, target: &Wfn) -> bool {
    matches!(
        compare_names(source, target),
        NameRelation::Superset | NameRelation::Equal
    )
}

/// How many characters an edge wildcard of the pattern admits.
#[derive(Debug, Clone, Copy)]
enum Edge {
    /// No wildcard: nothing may stand there.
    None,
    /// `*`: any number of characters.
    Any,
    /// A run of `n` `?`: at most `n` characters (7696's reference procedure accepts fewer).
    AtMost(usize),
}

impl Edge {
    fn admits(self, units: usize) -> bool {
        match self {
            Edge::None => units == 0,
            Edge::Any => true,
            Edge::AtMost(n) => units <= n,
        }
    }
}

/// Splits a WFN pattern into its leading wildcard, literal core and trailing wildcard.
fn split_pattern(p: &str) -> (Edge, &str, Edge) {
    let b = p.as_bytes();
    let (lead, start) = if b.first() == Some(&b'*') {
        (Edge::Any, 1)
    } else {
        let n = b.iter().take_while(|c| **c == b'?').count();
        (if n > 0 { Edge::AtMost(n) } else { Edge::None }, n)
    };
    let rest = &b[start..];
    // A trailing wildcard counts only when unquoted: `\*` at the end is a literal star.
    let quoted_at = |idx: usize| -> bool {
        // Count the backslashes right before idx; an odd count quotes it.
        rest[..idx]
            .iter()
            .rev()
            .take_while(|c| **c == b'\\')
            .count()
            % 2
            == 1
    };
    let (trail, end) = if rest.last() == Some(&b'*') && !quoted_at(rest.len() - 1) {
        (Edge::Any, rest.len() - 1)
    } else {
        let mut end = rest.len();
        while end > 0 && rest[end - 1] == b'?' && !quoted_at(end - 1) {
            end -= 1;
        }
        let n = rest.len() - end;
        (if n > 0 { Edge::AtMost(n) } else { Edge::None }, end)
    };
    (lead, &p[start..start + end], trail)
}

/// Characters (a quoted pair counts as one) in a WFN value.
fn count_units(v: &[u8]) -> usize {
    let mut i = 0;
    let mut n = 0;
    while i < v.len() {
        i += if v[i] == b'\\' { 2 } else { 1 };
        n += 1;
    }
    n
}

/// Does the pattern (with edge wildcards) match the literal target?
fn wildcard_match(pattern: &str, target: &str) -> bool {
    let (lead, core, trail) = split_pattern(pattern);
    let t = target.as_bytes();
    let c = core.as_bytes();
    let mut i = 0;
    let mut units_before = 0;
    loop {
        if t.len() - i >= c.len()
            && t[i..i + c.len()].eq_ignore_ascii_case(c)
            && lead.admits(units_before)
            && trail.admits(count_units(&t[i + c.len()..]))
        {
            return true;
        }
        if i >= t.len() {
            return false;
        }
        i = (i + if t[i] == b'\\' { 2 } else { 1 }).min(t.len());
        units_before += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Component {
        Component::Value(s.into())
    }

    #[test]
    fn attribute_table() {
        use Relation::*;
        let cases = [
            (Component::Any, Component::Any, Equal),
            (Component::Any, Component::Na, Superset),
            (Component::Any, v("1"), Superset),
            (Component::Any, v("1*"), Undefined),
            (Component::Na, Component::Any, Subset),
            (Component::Na, Component::Na, Equal),
            (Component::Na, v("1"), Disjoint),
            (v("1"), Component::Any, Subset),
            (v("1"), Component::Na, Disjoint),
            (v("1"), v("1"), Equal),
            (v("Foo"), v("fOO"), Equal),
            (v("1"), v("2"), Disjoint),
            (v("1*"), Component::Any, Subset),
            (v("1*"), Component::Na, Disjoint),
            (v(r"1\.*"), v(r"1\.2\.3"), Superset),
            (v(r"2\.*"), v(r"1\.2\.3"), Disjoint),
            (v("*bar"), v("foobar"), Superset),
            (v("*bar"), v("barfoo"), Disjoint),
            (v("*ar*"), v("foobarbaz"), Superset),
            (v("?oo"), v("foo"), Superset),
            (v("?oo"), v("ffoo"), Disjoint),
            (v("foo??"), v("foo12"), Superset),
            (v("foo??"), v("foo123"), Disjoint),
            (v(r"\*foo"), v(r"\*foo"), Equal),
            (v("foo*"), v("foo*"), Undefined),
        ];
        for (s, t, want) in cases {
            assert_eq!(compare_attribute(&s, &t), want, "{s:?} vs {t:?}");
        }
    }

    #[test]
    fn names() {
        let pattern = Wfn::parse("cpe:2.3:a:haxx:curl:*:*:*:*:*:*:*:*").unwrap();
        let installed = Wfn::parse("cpe:2.3:a:haxx:curl:8.5.0:*:*:*:*:*:*:*").unwrap();
        assert_eq!(compare_names(&pattern, &installed), NameRelation::Superset);
        assert_eq!(compare_names(&installed, &pattern), NameRelation::Subset);
        assert_eq!(compare_names(&pattern, &pattern), NameRelation::Equal);
        assert!(is_match(&pattern, &installed));
        let other = Wfn::parse("cpe:2.3:a:haxx:libcurl:8.5.0:*:*:*:*:*:*:*").unwrap();
        assert_eq!(compare_names(&pattern, &other), NameRelation::Disjoint);
        let na = Wfn::parse("cpe:2.3:o:syslog:syslog-ng:*:*:*:*:-:*:*:*").unwrap();
        let premium = Wfn::parse("cpe:2.3:o:syslog:syslog-ng:4.71:*:*:*:premium:*:*:*").unwrap();
        assert!(!is_match(&na, &premium));
        let mixed = Wfn::parse("cpe:2.3:a:haxx:curl:8.5.0:*:*:*:*:*:*:*").unwrap();
        let mixed2 = Wfn::parse("cpe:2.3:a:haxx:curl:*:*:*:*:*:linux:*:*").unwrap();
        assert_eq!(compare_names(&mixed, &mixed2), NameRelation::Incomparable);
    }
}

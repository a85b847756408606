//! The well-formed CPE name (WFN) of NIST IR 7695 §5: eleven attributes, each ANY, NA or a
//! value string in WFN notation (special characters quoted with a backslash; unquoted `*` and
//! `?` are wildcards allowed only at the start or end).

use std::fmt;

use crate::CpeError;

/// The eleven WFN attributes in binding order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Attribute {
    Part,
    Vendor,
    Product,
    Version,
    Update,
    Edition,
    Language,
    SwEdition,
    TargetSw,
    TargetHw,
    Other,
}

impl Attribute {
    pub const ALL: [Attribute; 11] = [
        Attribute::Part,
        Attribute::Vendor,
        Attribute::Product,
        Attribute::Version,
        Attribute::Update,
        Attribute::Edition,
        Attribute::Language,
        Attribute::SwEdition,
        Attribute::TargetSw,
        Attribute::TargetHw,
        Attribute::Other,
    ];

    /// The attribute name as NIST IR 7695 spells it (`sw_edition`, `target_hw`...).
    pub fn as_str(self) -> &'static str {
        match self {
            Attribute::Part => "part",
            Attribute::Vendor => "vendor",
            Attribute::Product => "product",
            Attribute::Version => "version",
            Attribute::Update => "update",
            Attribute::Edition => "edition",
            Attribute::Language => "language",
            Attribute::SwEdition => "sw_edition",
            Attribute::TargetSw => "target_sw",
            Attribute::TargetHw => "target_hw",
            Attribute::Other => "other",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One attribute's value: the logical values ANY and NA, or a value string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Component {
    /// Any value (`*` in a formatted string, empty in a URI).
    #[default]
    Any,
    /// Not applicable (`-`).
    Na,
    /// A value string in WFN notation: non-alphanumeric characters other than `_` are quoted
    /// with `\`; an unquoted `*` or `?` is a wildcard.
    Value(String),
}

impl Component {
    /// Builds a value from plain text (as a user or a display name would write it), quoting
    /// every special character so that none of them acts as a wildcard. Empty text is ANY.
    pub fn literal(text: &str) -> Component {
        if text.is_empty() {
            return Component::Any;
        }
        let mut out = String::with_capacity(text.len() + 4);
        for c in text.chars() {
            if !is_plain(c) {
                out.push('\\');
            }
            out.push(c);
        }
        Component::Value(out)
    }

    /// Builds a value from WFN notation, checking it is well formed (NIST IR 7695 §5.3.2).
    pub fn from_wfn(value: &str) -> Result<Component, CpeError> {
        check_wfn_value(value)?;
        Ok(Component::Value(value.to_string()))
    }

    pub fn is_any(&self) -> bool {
        matches!(self, Component::Any)
    }

    pub fn is_na(&self) -> bool {
        matches!(self, Component::Na)
    }

    /// The value string in WFN notation, `None` for ANY and NA.
    pub fn value(&self) -> Option<&str> {
        match self {
            Component::Value(v) => Some(v),
            _ => None,
        }
    }

    /// The value with its quoting removed (`x9drff-7/i(t)g+`): what a person reads. ANY is the
    /// empty string and NA is `-`, the conventions of the shared CPE test vectors.
    pub fn unquoted(&self) -> String {
        match self {
            Component::Any => String::new(),
            Component::Na => "-".into(),
            Component::Value(v) => unquote(v),
        }
    }

    /// True when the value holds an unquoted `*` or `?`.
    pub fn has_wildcards(&self) -> bool {
        match self {
            Component::Value(v) => has_unquoted_wildcard(v),
            _ => false,
        }
    }
}

/// A well-formed CPE name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Wfn {
    components: [Component; 11],
}

impl Wfn {
    /// A name whose every attribute is ANY.
    pub fn new() -> Wfn {
        Wfn::default()
    }

    pub fn get(&self, attr: Attribute) -> &Component {
        &self.components[attr.index()]
    }

    /// Sets one attribute. `part` accepts only ANY or a single `a`, `o` or `h`.
    pub fn set(&mut self, attr: Attribute, value: Component) -> Result<(), CpeError> {
        if attr == Attribute::Part {
            if let Component::Value(v) = &value {
                if !matches!(v.as_str(), "a" | "o" | "h") {
                    return Err(CpeError::InvalidValue {
                        attribute: attr.as_str(),
                        value: v.clone(),
                        reason: "part must be a, o or h",
                    });
                }
            }
        }
        if let Component::Value(v) = &value {
            check_wfn_value(v).map_err(|e| match e {
                CpeError::InvalidValue { value, reason, .. } => CpeError::InvalidValue {
                    attribute: attr.as_str(),
                    value,
                    reason,
                },
                other => other,
            })?;
        }
        self.components[attr.index()] = value;
        Ok(())
    }

    /// Sets an attribute to literal text (see [`Component::literal`]).
    pub fn with_literal(mut self, attr: Attribute, text: &str) -> Result<Wfn, CpeError> {
        self.set(attr, Component::literal(text))?;
        Ok(self)
    }

    pub fn part(&self) -> &Component {
        self.get(Attribute::Part)
    }
    pub fn vendor(&self) -> &Component {
        self.get(Attribute::Vendor)
    }
    pub fn product(&self) -> &Component {
        self.get(Attribute::Product)
    }
    pub fn version(&self) -> &Component {
        self.get(Attribute::Version)
    }
    pub fn update(&self) -> &Component {
        self.get(Attribute::Update)
    }

    pub fn components(&self) -> &[Component; 11] {
        &self.components
    }

    /// Parses either binding: a CPE 2.3 formatted string (`cpe:2.3:...`) or a 2.2 URI
    /// (`cpe:/...`).
    pub fn parse(s: &str) -> Result<Wfn, CpeError> {
        if s.starts_with("cpe:2.3:") {
            crate::fs::unbind(s)
        } else if s.starts_with("cpe:/") {
            crate::uri::unbind(s)
        } else {
            Err(CpeError::Prefix(truncate(s)))
        }
    }

    /// The CPE 2.3 formatted string binding.
    pub fn to_formatted_string(&self) -> String {
        crate::fs::bind(self)
    }

    /// The CPE 2.2 URI binding.
    pub fn to_uri(&self) -> String {
        crate::uri::bind(self)
    }
}

impl fmt::Display for Wfn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_formatted_string())
    }
}

impl std::str::FromStr for Wfn {
    type Err = CpeError;
    fn from_str(s: &str) -> Result<Wfn, CpeError> {
        Wfn::parse(s)
    }
}

/// Characters that stand for themselves in WFN notation.
pub(crate) fn is_plain(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn unquote(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(q) = chars.next() {
                out.push(q);
            }
        } else {
            out.push(c);
        }
    }
    out
}

pub(crate) fn has_unquoted_wildcard(v: &str) -> bool {
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '*' | '?' => return true,
            _ => {}
        }
    }
    false
}

pub(crate) fn truncate(s: &str) -> String {
    const MAX: usize = 120;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// The rules of NIST IR 7695 §5.3.2 for a value string: not empty; only ASCII printable
/// characters; every non-alphanumeric, non-underscore character quoted, except an unquoted `*`
/// (alone, at the start and/or end) or a run of unquoted `?` at the start and/or end; a value
/// is not made of wildcards alone.
fn check_wfn_value(v: &str) -> Result<(), CpeError> {
    let invalid = |reason: &'static str| CpeError::InvalidValue {
        attribute: "",
        value: truncate(v),
        reason,
    };
    if v.is_empty() {
        return Err(invalid("empty value"));
    }
    let chars: Vec<char> = v.chars().collect();
    let n = chars.len();
    let mut i = 0;
    let mut has_literal = false;
    while i < n {
        let c = chars[i];
        if !c.is_ascii() || c.is_ascii_control() || c == ' ' {
            return Err(invalid("only printable ASCII without spaces is allowed"));
        }
        match c {
            '\\' => {
                if i + 1 >= n {
                    return Err(invalid("a trailing backslash quotes nothing"));
                }
                let q = chars[i + 1];
                if !q.is_ascii() || q.is_ascii_control() || q == ' ' {
                    return Err(invalid("only printable ASCII without spaces is allowed"));
                }
                has_literal = true;
                i += 2;
            }
            '*' => {
                let at_start = i == 0;
                let at_end = i + 1 == n;
                if !(at_start || at_end) {
                    return Err(invalid("an unquoted * is allowed only at the start or end"));
                }
                if n > 1 && ((at_start && chars[1] == '*') || (at_end && chars[n - 2] == '*')) {
                    return Err(invalid("** is not allowed"));
                }
                i += 1;
            }
            '?' => {
                // A run of ? must touch the start or the end of the value.
                let start = i;
                while i < n && chars[i] == '?' {
                    i += 1;
                }
                if start != 0 && i != n {
                    return Err(invalid("unquoted ? is allowed only at the start or end"));
                }
            }
            c if is_plain(c) => {
                has_literal = true;
                i += 1;
            }
            _ => return Err(invalid("special characters must be quoted with \\")),
        }
    }
    if !has_literal {
        return Err(invalid("a value cannot be made of wildcards only"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_quotes_specials() {
        assert_eq!(
            Component::literal("x9drff-7/i(t)g+"),
            Component::Value(r"x9drff\-7\/i\(t\)g\+".into())
        );
        assert_eq!(Component::literal(""), Component::Any);
        assert_eq!(Component::literal("a*b").unquoted(), "a*b");
        assert!(!Component::literal("a*b").has_wildcards());
    }

    #[test]
    fn wfn_value_rules() {
        for ok in [
            "foo",
            r"foo\-bar",
            "*foo",
            "foo*",
            "*foo*",
            "??foo",
            "foo???",
            r"\*",
        ] {
            assert!(check_wfn_value(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "foo-bar", "f*o", "**foo", "f?o", "*", "???", "foo\\", "a b", "é",
        ] {
            assert!(check_wfn_value(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn part_is_checked() {
        let mut w = Wfn::new();
        assert!(w
            .set(Attribute::Part, Component::Value("x".into()))
            .is_err());
        assert!(w.set(Attribute::Part, Component::Value("a".into())).is_ok());
    }
}

//! The CPE 2.3 formatted string binding (NIST IR 7695 §6.2):
//! `cpe:2.3:part:vendor:product:version:update:edition:language:sw_edition:target_sw:target_hw:other`.

use crate::wfn::{is_plain, truncate, Component, Wfn};
use crate::CpeError;

const PREFIX: &str = "cpe:2.3:";

/// Parses a formatted string into a WFN.
pub(crate) fn unbind(s: &str) -> Result<Wfn, CpeError> {
    let body = s
        .strip_prefix(PREFIX)
        .ok_or_else(|| CpeError::Prefix(truncate(s)))?;
    let fields = split_unquoted_colons(body);
    if fields.len() != 11 {
        return Err(CpeError::FieldCount {
            cpe: truncate(s),
            found: fields.len(),
        });
    }
    let mut wfn = Wfn::new();
    for (attr, field) in crate::Attribute::ALL.into_iter().zip(fields) {
        let component = unbind_component(field).map_err(|reason| CpeError::InvalidValue {
            attribute: attr.as_str(),
            value: truncate(field),
            reason,
        })?;
        wfn.set(attr, component)?;
    }
    Ok(wfn)
}

/// Splits on `:` that are not quoted by a backslash.
fn split_unquoted_colons(body: &str) -> Vec<&str> {
    let bytes = body.as_bytes();
    let mut fields = Vec::with_capacity(11);
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b':' => {
                fields.push(&body[start..i]);
                i += 1;
                start = i;
            }
            _ => i += 1,
        }
    }
    fields.push(&body[start.min(body.len())..]);
    fields
}

fn unbind_component(field: &str) -> Result<Component, &'static str> {
    match field {
        // An empty field is not well formed; generators that write one mean "anything".
        "*" | "" => return Ok(Component::Any),
        "-" => return Ok(Component::Na),
        _ => {}
    }
    let chars: Vec<char> = field.chars().collect();
    let n = chars.len();
    let mut out = String::with_capacity(field.len() + 4);
    let mut i = 0;
    while i < n {
        let c = chars[i];
        match c {
            '\\' => {
                let q = *chars
                    .get(i + 1)
                    .ok_or("a trailing backslash quotes nothing")?;
                // Quoting a character that needs no quoting changes nothing (WFN keeps
                // alphanumerics and `_` unquoted, so equal names compare equal).
                if !is_plain(q) {
                    out.push('\\');
                }
                out.push(q);
                i += 2;
            }
            '*' => {
                if i != 0 && i + 1 != n {
                    return Err("an unquoted * is allowed only at the start or end");
                }
                out.push('*');
                i += 1;
            }
            '?' => {
                let start = i;
                while i < n && chars[i] == '?' {
                    out.push('?');
                    i += 1;
                }
                if start != 0 && i != n {
                    return Err("unquoted ? is allowed only at the start or end");
                }
            }
            c if is_plain(c) => {
                out.push(c);
                i += 1;
            }
            c if c.is_ascii_graphic() => {
                out.push('\\');
                out.push(c);
                i += 1;
            }
            _ => return Err("only printable ASCII without spaces is allowed"),
        }
    }
    Ok(Component::Value(out))
}

/// Binds a WFN to a formatted string.
pub(crate) fn bind(wfn: &Wfn) -> String {
    let mut out = String::with_capacity(64);
    out.push_str(PREFIX);
    for (i, component) in wfn.components().iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        match component {
            Component::Any => out.push('*'),
            Component::Na => out.push('-'),
            // The literal hyphen would read back as NA: keep it quoted.
            Component::Value(v) if v == "\\-" => out.push_str(v),
            Component::Value(v) => {
                let mut chars = v.chars();
                while let Some(c) = chars.next() {
                    if c == '\\' {
                        match chars.next() {
                            Some(q @ ('.' | '-' | '_')) => out.push(q),
                            Some(q) => {
                                out.push('\\');
                                out.push(q);
                            }
                            None => {}
                        }
                    } else {
                        out.push(c);
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Attribute;

    #[test]
    fn round_trip_with_quoting() {
        let s = r"cpe:2.3:h:supermicro:x9drff-7\/i\(t\)g\+:-:*:*:*:*:*:*:*";
        let w = unbind(s).unwrap();
        assert_eq!(w.get(Attribute::Product).unquoted(), "x9drff-7/i(t)g+");
        assert_eq!(
            w.get(Attribute::Product),
            &Component::Value(r"x9drff\-7\/i\(t\)g\+".into())
        );
        assert!(w.version().is_na());
        assert_eq!(bind(&w), s);
    }

    #[test]
    fn quoted_colon_is_not_a_separator() {
        let w = unbind(r"cpe:2.3:a:foo:bar\:baz:1.0:*:*:*:*:*:*:*").unwrap();
        assert_eq!(w.product().unquoted(), "bar:baz");
    }

    #[test]
    fn rejects_bad_strings() {
        for bad in [
            "cpe:2.3:a:foo",
            "cpe:2.3:x:foo:bar:1:*:*:*:*:*:*:*",
            "cpe:2.3:a:foo:b*r:1:*:*:*:*:*:*:*",
            "cpe:2.3:a:foo:bar:1:*:*:*:*:*:*:*:extra",
            "cpe:2.3:a:foo:bar:1\\",
            "cpe:2.3:a:foo:bär:1:*:*:*:*:*:*:*",
        ] {
            assert!(unbind(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn wildcards_are_kept() {
        let w = unbind("cpe:2.3:a:foo:bar:1.*:*:*:*:*:*:*:*").unwrap();
        assert!(w.version().has_wildcards());
        assert_eq!(bind(&w), "cpe:2.3:a:foo:bar:1.*:*:*:*:*:*:*:*");
    }
}

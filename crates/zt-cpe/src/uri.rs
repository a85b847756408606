//! The CPE 2.2 URI binding (NIST IR 7695 §6.1): `cpe:/part:vendor:product:version:update:
//! edition:language`, with the four 2.3-only attributes packed into the edition as
//! `~edition~sw_edition~target_sw~target_hw~other`.

use crate::wfn::{is_plain, truncate, Component, Wfn};
use crate::{Attribute, CpeError};

const PREFIX: &str = "cpe:/";

pub(crate) fn unbind(s: &str) -> Result<Wfn, CpeError> {
    let body = s
        .strip_prefix(PREFIX)
        .ok_or_else(|| CpeError::Prefix(truncate(s)))?;
    let fields: Vec<&str> = body.split(':').collect();
    if fields.len() > 7 {
        return Err(CpeError::FieldCount {
            cpe: truncate(s),
            found: fields.len(),
        });
    }
    let mut wfn = Wfn::new();
    let uri_attrs = [
        Attribute::Part,
        Attribute::Vendor,
        Attribute::Product,
        Attribute::Version,
        Attribute::Update,
        Attribute::Edition,
        Attribute::Language,
    ];
    for (attr, field) in uri_attrs.into_iter().zip(fields) {
        let err = |reason| CpeError::InvalidValue {
            attribute: attr.as_str(),
            value: truncate(field),
            reason,
        };
        if attr == Attribute::Edition && field.starts_with('~') {
            let packed: Vec<&str> = field.split('~').collect();
            if packed.len() != 6 {
                return Err(err("a packed edition has five ~-separated parts"));
            }
            let targets = [
                Attribute::Edition,
                Attribute::SwEdition,
                Attribute::TargetSw,
                Attribute::TargetHw,
                Attribute::Other,
            ];
            for (target, piece) in targets.into_iter().zip(&packed[1..]) {
                wfn.set(target, decode(piece).map_err(err)?)?;
            }
        } else {
            wfn.set(attr, decode(field).map_err(err)?)?;
        }
    }
    Ok(wfn)
}

/// Decodes one URI component into a WFN component (§6.1.3.2).
fn decode(field: &str) -> Result<Component, &'static str> {
    match field {
        "" => return Ok(Component::Any),
        "-" => return Ok(Component::Na),
        _ => {}
    }
    // URIs compare case-insensitively; NIST's unbinding lowercases them.
    let lower = field.to_ascii_lowercase();
    let bytes = lower.as_bytes();
    let n = bytes.len();
    let mut out = String::with_capacity(n + 4);
    let mut i = 0;
    let mut seen_literal = false;
    // Whether a %01 run has ended and literal characters followed: another %01 must then
    // reach the end of the value.
    while i < n {
        let b = bytes[i];
        if b == b'%' {
            let hex = lower.get(i + 1..i + 3).ok_or("an incomplete %-escape")?;
            let code = u8::from_str_radix(hex, 16).map_err(|_| "an invalid %-escape")?;
            i += 3;
            match code {
                0x01 => {
                    // `?` wildcard: a run at the start, or a run reaching the end.
                    if seen_literal && !rest_is_wildcard_run(&lower[i..], "%01") {
                        return Err("%01 is allowed only at the start or end");
                    }
                    out.push('?');
                }
                0x02 => {
                    if i != 3 && i != n {
                        return Err("%02 is allowed only at the start or end");
                    }
                    out.push('*');
                }
                c if c.is_ascii_graphic() => {
                    let c = c as char;
                    if !is_plain(c) {
                        out.push('\\');
                    }
                    out.push(c);
                    seen_literal = true;
                }
                _ => return Err("a %-escape of a non-printable character"),
            }
            continue;
        }
        let c = b as char;
        if is_plain(c) {
            out.push(c);
        } else if c.is_ascii_graphic() {
            out.push('\\');
            out.push(c);
        } else {
            return Err("only printable ASCII without spaces is allowed");
        }
        seen_literal = true;
        i += 1;
    }
    Ok(Component::Value(out))
}

fn rest_is_wildcard_run(rest: &str, code: &str) -> bool {
    let mut r = rest;
    while let Some(tail) = r.strip_prefix(code) {
        r = tail;
    }
    r.is_empty()
}

/// Binds a WFN to a 2.2 URI (§6.1.2).
pub(crate) fn bind(wfn: &Wfn) -> String {
    let mut fields: Vec<String> = Vec::with_capacity(7);
    for attr in [
        Attribute::Part,
        Attribute::Vendor,
        Attribute::Product,
        Attribute::Version,
        Attribute::Update,
    ] {
        fields.push(encode(wfn.get(attr)));
    }
    let extended = [
        Attribute::SwEdition,
        Attribute::TargetSw,
        Attribute::TargetHw,
        Attribute::Other,
    ];
    if extended.iter().all(|a| wfn.get(*a).is_any()) {
        fields.push(encode(wfn.get(Attribute::Edition)));
    } else {
        let mut packed = String::new();
        for attr in std::iter::once(Attribute::Edition).chain(extended) {
            packed.push('~');
            packed.push_str(&encode(wfn.get(attr)));
        }
        fields.push(packed);
    }
    fields.push(encode(wfn.get(Attribute::Language)));
    let mut uri = String::from(PREFIX);
    uri.push_str(&fields.join(":"));
    // Trailing empty (ANY) components are dropped.
    while uri.ends_with(':') {
        uri.pop();
    }
    uri
}

fn encode(component: &Component) -> String {
    match component {
        Component::Any => String::new(),
        Component::Na => "-".into(),
        // The literal hyphen would read back as NA.
        Component::Value(v) if v == "\\-" => "%2d".into(),
        Component::Value(v) => {
            let mut out = String::with_capacity(v.len() + 8);
            let mut chars = v.chars();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(q) = chars.next() {
                            if is_plain(q) || q == '-' || q == '.' {
                                out.push(q);
                            } else {
                                out.push_str(&format!("%{:02x}", q as u32));
                            }
                        }
                    }
                    '?' => out.push_str("%01"),
                    '*' => out.push_str("%02"),
                    c => out.push(c),
                }
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_edition_round_trip() {
        let uri = "cpe:/a:gtranslate:gtranslate:1.0.4::~~enterprise~wordpress~~";
        let w = unbind(uri).unwrap();
        assert!(w.get(Attribute::Edition).is_any());
        assert_eq!(w.get(Attribute::SwEdition).unquoted(), "enterprise");
        assert_eq!(w.get(Attribute::TargetSw).unquoted(), "wordpress");
        assert_eq!(bind(&w), uri);
    }

    #[test]
    fn percent_escapes_and_wildcards() {
        let w = unbind("cpe:/h:supermicro:x9drff-7%2fi%28t%29g%2b:-").unwrap();
        assert_eq!(w.product().unquoted(), "x9drff-7/i(t)g+");
        assert!(w.version().is_na());
        let w = unbind("cpe:/a:foo:bar:%01%011.0%02").unwrap();
        assert_eq!(w.version(), &Component::Value(r"??1\.0*".into()));
        assert!(unbind("cpe:/a:foo:bar:1%010").is_err());
        assert!(unbind("cpe:/a:foo:bar:1%0").is_err());
        assert!(unbind("cpe:/a:foo:bar:1:2:~a~b:en:x").is_err());
        assert!(unbind("cpe:/a:foo:bar:1:2:~a~b").is_err());
    }

    #[test]
    fn uppercase_is_folded() {
        let w = unbind("cpe:/a:Microsoft:IE:8").unwrap();
        assert_eq!(w.vendor().unquoted(), "microsoft");
    }
}

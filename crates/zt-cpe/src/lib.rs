//! CPE 2.3 names: parsing, binding (formatted string and URI) and matching (no I/O).
//!
//! No maintained crate parses NVD's `cpe:2.3:` strings and implements name matching, so this is
//! written from the specifications: NIST IR 7695 (naming and bindings) and NIST IR 7696 (name
//! matching). [`resolve`] turns installed programs' own names into CPE vendor:product pairs.

mod fs;
mod matching;
pub mod resolve;
mod uri;
mod wfn;

pub use matching::{
    compare_attribute, compare_attributes, compare_names, is_match, NameRelation, Relation,
};
pub use resolve::{normalize_name, ProductId, Resolution, ResolvedBy, Resolver};
pub use wfn::{Attribute, Component, Wfn};

/// Why a CPE name could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CpeError {
    #[error("not a CPE name (expected `cpe:2.3:` or `cpe:/`): {0}")]
    Prefix(String),
    #[error("{cpe}: {found} fields; a CPE 2.3 formatted string has 11 after `cpe:2.3:` (a URI at most 7)")]
    FieldCount { cpe: String, found: usize },
    #[error("invalid {attribute} {value:?}: {reason}")]
    InvalidValue {
        attribute: &'static str,
        value: String,
        reason: &'static str,
    },
}

/// The body of the `cpe_parse` fuzz target, also run by a plain test: reading any bytes never
/// panics, and a name read from either binding binds back to a formatted string that reads as
/// the same name.
#[doc(hidden)]
pub fn fuzz_parse(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for candidate in [
        text.to_string(),
        format!("cpe:2.3:{text}"),
        format!("cpe:/{text}"),
    ] {
        if let Ok(wfn) = Wfn::parse(&candidate) {
            let formatted = wfn.to_formatted_string();
            match Wfn::parse(&formatted) {
                Ok(again) => assert_eq!(again, wfn, "{candidate} → {formatted}"),
                Err(e) => panic!("{candidate} → {formatted} does not parse: {e}"),
            }
            let uri = wfn.to_uri();
            if let Err(e) = Wfn::parse(&uri) {
                panic!("{candidate} → {uri} does not parse: {e}");
            }
            let _ = compare_names(&wfn, &wfn);
        }
    }
}

#[cfg(test)]
mod fuzz_body_tests {
    #[test]
    fn fuzz_body_on_real_and_garbage_inputs() {
        for input in [
            &b"cpe:2.3:a:haxx:curl:8.5.0:*:*:*:*:*:*:*"[..],
            b"cpe:2.3:h:supermicro:x9drff-7\\/i\\(t\\)g\\+:-:*:*:*:*:*:*:*",
            b"cpe:/a:gtranslate:gtranslate:1.0.4::~~enterprise~wordpress~~",
            b"cpe:/o:cisco:ios:12.2%5c%2825%5c%29seg2",
            b"a:b:c:*:*:*:*:*:*:*:*",
            b"cpe:2.3:a:\\",
            b"cpe:/a:%",
            b"cpe:/a:b:c:%01x%01",
            b"\xff\xfe",
            b"",
            b":::::::::::::::::",
        ] {
            super::fuzz_parse(input);
        }
    }
}

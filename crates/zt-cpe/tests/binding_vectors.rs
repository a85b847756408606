//! The 996 CPE binding vectors of the shared data (formatted string, URI and the WFN they
//! stand for, from the syft project's tests): unbinding either binding gives the WFN, and
//! binding the WFN gives both strings back exactly.

use serde::Deserialize;
use zt_cpe::{Attribute, Component, Wfn};

#[derive(Deserialize)]
struct Vector {
    #[serde(rename = "cpe-string")]
    formatted: String,
    #[serde(rename = "cpe-url")]
    uri: String,
    wfn: ExpectedWfn,
}

/// The vector's WFN with quoting removed, except before `\`, `*` and `?` (where dropping the
/// quote would make it a different value); ANY is "" and NA is "-".
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ExpectedWfn {
    part: String,
    vendor: String,
    product: String,
    version: String,
    update: String,
    edition: String,
    language: String,
    sw_edition: String,
    target_sw: String,
    target_hw: String,
    other: String,
}

impl ExpectedWfn {
    fn get(&self, a: Attribute) -> &str {
        match a {
            Attribute::Part => &self.part,
            Attribute::Vendor => &self.vendor,
            Attribute::Product => &self.product,
            Attribute::Version => &self.version,
            Attribute::Update => &self.update,
            Attribute::Edition => &self.edition,
            Attribute::Language => &self.language,
            Attribute::SwEdition => &self.sw_edition,
            Attribute::TargetSw => &self.target_sw,
            Attribute::TargetHw => &self.target_hw,
            Attribute::Other => &self.other,
        }
    }
}

/// The vectors' notation of a component (see [`ExpectedWfn`]).
fn vector_notation(c: &Component) -> String {
    let Some(v) = c.value() else {
        return c.unquoted();
    };
    let mut out = String::new();
    let mut chars = v.chars();
    while let Some(ch) = chars.next() {
        if ch == '\\' {
            match chars.next() {
                Some(q @ ('\\' | '*' | '?')) => {
                    out.push('\\');
                    out.push(q);
                }
                Some(q) => out.push(q),
                None => {}
            }
        } else {
            out.push(ch);
        }
    }
    out
}

fn vectors() -> Vec<Vector> {
    let path = zt_testkit::shared_path("cpe/syft/cpe-data.json");
    let bytes = std::fs::read(&path).expect("read the CPE vectors");
    serde_json::from_slice(&bytes).expect("parse the CPE vectors")
}

#[test]
fn all_binding_vectors() {
    let vectors = vectors();
    assert_eq!(vectors.len(), 996);
    let mut failures = Vec::new();
    for v in &vectors {
        let from_fs = match Wfn::parse(&v.formatted) {
            Ok(w) => w,
            Err(e) => {
                failures.push(format!("{}: {e}", v.formatted));
                continue;
            }
        };
        let from_uri = match Wfn::parse(&v.uri) {
            Ok(w) => w,
            Err(e) => {
                failures.push(format!("{}: {e}", v.uri));
                continue;
            }
        };
        for attr in Attribute::ALL {
            let want = v.wfn.get(attr);
            let got = vector_notation(from_fs.get(attr));
            if got != want {
                failures.push(format!(
                    "{} {}: got {got:?}, want {want:?}",
                    v.formatted,
                    attr.as_str()
                ));
            }
        }
        if from_fs != from_uri {
            failures.push(format!("{} and {} unbind differently", v.formatted, v.uri));
        }
        if from_fs.to_formatted_string() != v.formatted {
            failures.push(format!(
                "bind fs: got {}, want {}",
                from_fs.to_formatted_string(),
                v.formatted
            ));
        }
        if from_fs.to_uri() != v.uri {
            failures.push(format!(
                "bind uri: got {}, want {}",
                from_fs.to_uri(),
                v.uri
            ));
        }
        // Every name covers itself.
        assert!(zt_cpe::is_match(&from_fs, &from_uri), "{}", v.formatted);
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

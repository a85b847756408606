//! Property tests: binding round trips, no panics on arbitrary input, matching laws.

use proptest::prelude::*;
use zt_cpe::{compare_names, is_match, Attribute, Component, NameRelation, Wfn};

/// Plain text of printable ASCII (what a vendor or version could be), lowercase so that the
/// case-folding URI binding round-trips too.
fn text() -> impl Strategy<Value = String> {
    "[a-z0-9._\\-+/()!~:*?\\\\@#$%&=,;<>'\"\\[\\]{}|^`]{1,12}"
}

fn component() -> impl Strategy<Value = Component> {
    prop_oneof![
        1 => Just(Component::Any),
        1 => Just(Component::Na),
        4 => text().prop_map(|t| Component::literal(&t)),
    ]
}

fn wfn() -> impl Strategy<Value = Wfn> {
    (
        prop_oneof![Just("a"), Just("o"), Just("h")],
        proptest::collection::vec(component(), 10),
    )
        .prop_map(|(part, rest)| {
            let mut w = Wfn::new();
            w.set(Attribute::Part, Component::Value(part.into()))
                .unwrap();
            for (attr, c) in Attribute::ALL[1..].iter().zip(rest) {
                w.set(*attr, c).unwrap();
            }
            w
        })
}

proptest! {
    #[test]
    fn formatted_string_round_trips(w in wfn()) {
        let s = w.to_formatted_string();
        prop_assert_eq!(Wfn::parse(&s).unwrap(), w);
    }

    #[test]
    fn uri_round_trips(w in wfn()) {
        let s = w.to_uri();
        prop_assert_eq!(Wfn::parse(&s).unwrap(), w);
    }

    #[test]
    fn parsing_never_panics(s in "\\PC{0,80}") {
        let _ = Wfn::parse(&s);
        let _ = Wfn::parse(&format!("cpe:2.3:{s}"));
        let _ = Wfn::parse(&format!("cpe:/{s}"));
    }

    #[test]
    fn a_name_equals_itself(w in wfn()) {
        prop_assert_eq!(compare_names(&w, &w), NameRelation::Equal);
    }

    #[test]
    fn any_covers_every_value(w in wfn()) {
        let mut pattern = w.clone();
        pattern.set(Attribute::Version, Component::Any).unwrap();
        prop_assert!(is_match(&pattern, &w));
    }

    #[test]
    fn prefix_wildcard_matches_its_suffix(prefix in "[a-z0-9]{0,6}", core in "[a-z0-9]{1,6}") {
        let target = Wfn::new().with_literal(Attribute::Version, &format!("{prefix}{core}")).unwrap();
        let mut pattern = Wfn::new();
        pattern.set(Attribute::Version, Component::from_wfn(&format!("*{core}")).unwrap()).unwrap();
        prop_assert!(is_match(&pattern, &target));
    }
}

//! The inventory report contract shared by the agent, the server, the scanner and the load
//! generator: what a host reports ([`InventoryReport`]), how it is validated from outside input
//! ([`parse_report`]), and the deduplicated unit the matcher sees ([`Software`]).
//!
//! No I/O here: callers bring bytes and get types.

mod report;
mod software;
mod validate;

pub use report::{App, AppSource, Host, InventoryReport, OsInfo};
pub use software::{ecosystem_for, Software, SoftwareKey};
pub use validate::{
    check_collected_at, parse_report, tag_problem, text_problem, validate_report, ReportError,
    MAX_APPS, MAX_CLOCK_SKEW, MAX_FIELD_LEN, MAX_HOSTNAME_LEN, MAX_NAME_LEN, MAX_TAGS, MAX_TAG_LEN,
    MAX_VERSION_LEN,
};

/// A digest of a report's app list that does not depend on the order the apps were listed in:
/// the server compares it with the agent's previous one, so an unchanged re-report costs one
/// hash compare.
pub fn inventory_digest(apps: &[App]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut sorted: Vec<&App> = apps.iter().collect();
    sorted.sort_unstable();
    let mut h = Sha256::new();
    for app in sorted {
        // serde_json of a struct is deterministic (fields in declaration order).
        let line = serde_json::to_vec(app).unwrap_or_default();
        h.update((line.len() as u64).to_le_bytes());
        h.update(&line);
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_ignores_order_but_not_content() {
        let a = App::new("a", "1", AppSource::Npm);
        let b = App::new("b", "2", AppSource::Npm);
        assert_eq!(
            inventory_digest(&[a.clone(), b.clone()]),
            inventory_digest(&[b.clone(), a.clone()])
        );
        let mut b2 = b.clone();
        b2.version = "3".into();
        assert_ne!(
            inventory_digest(&[a.clone(), b]),
            inventory_digest(&[a, b2])
        );
    }
}

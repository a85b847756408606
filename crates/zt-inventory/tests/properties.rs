//! Property tests of the report parser: it never panics, and every report it accepts
//! serializes back to an equal report.

use proptest::prelude::*;
use zt_inventory::{parse_report, App, AppSource, Host, InventoryReport, OsInfo};

fn app() -> impl Strategy<Value = App> {
    (
        "[a-zA-Z0-9._+-]{1,40}",
        "[0-9a-z.:~+-]{1,30}",
        prop::sample::select(AppSource::ALL.to_vec()),
        prop::option::of("[a-z0-9._-]{1,20}"),
    )
        .prop_map(|(name, version, source, source_name)| {
            let mut a = App::new(name, version, source);
            a.source_name = source_name;
            a
        })
}

fn report() -> impl Strategy<Value = InventoryReport> {
    (
        any::<u128>(),
        "[a-z0-9-]{1,30}",
        prop::collection::vec(app(), 0..20),
    )
        .prop_map(|(id, hostname, apps)| InventoryReport {
            report_id: uuid::Uuid::from_u128(id),
            collected_at: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            host: Host {
                hostname,
                os: OsInfo {
                    id: "debian".into(),
                    version_id: "12".into(),
                    name: "Debian".into(),
                },
                arch: "x86_64".into(),
            },
            apps,
            tags: None,
        })
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_report(&bytes);
    }

    #[test]
    fn valid_reports_round_trip(r in report()) {
        let json = serde_json::to_vec(&r).unwrap();
        prop_assert_eq!(parse_report(&json).unwrap(), r);
    }

    #[test]
    fn truncated_reports_are_errors(r in report(), cut in 1usize..64) {
        let json = serde_json::to_vec(&r).unwrap();
        let cut = cut.min(json.len());
        prop_assert!(parse_report(&json[..json.len() - cut]).is_err());
    }
}

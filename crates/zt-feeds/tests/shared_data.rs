//! Reads every feed in ../shared/data and checks the counts against PROVENANCE.md.

use std::collections::{BTreeMap, HashSet};

use zt_feeds::{read_paths, FeedRecord, ReadResult};
use zt_testkit::shared_path;

fn read(rel: &str) -> ReadResult {
    read_paths(&[shared_path(rel)]).expect("paths exist")
}

fn advisory_ids(r: &ReadResult) -> Vec<String> {
    r.records
        .iter()
        .filter_map(|r| match r {
            FeedRecord::Advisory(a) => Some(a.id.clone()),
            _ => None,
        })
        .collect()
}

fn assert_clean(rel: &str, r: &ReadResult) {
    assert!(
        r.errors.is_empty(),
        "{rel}: unexpected errors: {:#?}",
        &r.errors[..r.errors.len().min(5)]
    );
}

#[test]
fn osv_sets_read_without_loss() {
    // (folder, records per PROVENANCE.md)
    let sets: [(&str, usize); 9] = [
        ("osv/rustsec/osv-json", 1206),
        // 2,661 records; the 7 that fail the OSV schema (e.g. PYSEC-2021-371 `fixed: <sha>.patch`)
        // are still readable and import.
        ("osv/pypa/vulns", 2661),
        ("osv/golang-vulndb/data/osv", 4291),
        ("osv/debian-security-tracker/osv-like", 8940),
        ("osv/debian-security-tracker/official-osv-samples", 2),
        ("osv/osv-scanner-fixtures/records", 397),
        // 8 UBUNTU-CVE + USN-5614-1 + the osv.dev sample.
        ("osv/ubuntu", 10),
        ("osv/ghsa-sample", 2),
        // 3 CGA records; all.json (the id/modified index) is skipped, the two secdb files are
        // converted separately (test below).
        ("osv/chainguard-wolfi", 3),
    ];
    let mut by_set = BTreeMap::new();
    for (rel, expected) in sets {
        let mut r = read(rel);
        assert_clean(rel, &r);
        r.records.retain(
            |rec| matches!(rec, FeedRecord::Advisory(a) if a.source == zt_advisory::Source::Osv),
        );
        let ids = advisory_ids(&r);
        let distinct: HashSet<&String> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len(), "{rel}: duplicate ids in one set");
        by_set.insert(rel, ids.len());
        assert_eq!(ids.len(), expected, "{rel}");
    }
    println!("{by_set:#?}");
}

#[test]
fn secdb_files_convert_to_advisories() {
    // PROVENANCE: 18 files, 1,652 package entries, 4,265 fixed-version keys holding 12,028 ids;
    // one advisory per (file, id) with a real fixed version = 11,448 (counted independently
    // with Python over the same JSON; fixed version "0" means "never affected" and yields none).
    let r = read("osv/alpine-secdb/json-2020");
    assert_clean("alpine json-2020", &r);
    let ids = advisory_ids(&r);
    assert_eq!(ids.len(), 11_448);
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), ids.len());
    let xen = r
        .records
        .iter()
        .find_map(|rec| match rec {
            FeedRecord::Advisory(a) if a.id == "ALPINE-v3.7-main-CVE-2017-15593" => Some(a),
            _ => None,
        })
        .expect("the xen XSA entry of Alpine 3.7");
    assert_eq!(xen.related, vec!["XSA-242"]);
    assert_eq!(xen.affected[0].ecosystem, "Alpine:v3.7");

    assert_eq!(
        advisory_ids(&read("osv/alpine-secdb/vunnel-fixture-v3.15-json")).len(),
        16
    );
    let cg = read("osv/chainguard-wolfi/chainguard-secdb-security.json");
    assert_clean("chainguard secdb", &cg);
    assert_eq!(advisory_ids(&cg).len(), 173);
    let wolfi = read("osv/chainguard-wolfi/wolfi-secdb-security.json");
    assert_eq!(advisory_ids(&wolfi).len(), 53);
    let FeedRecord::Advisory(a) = &wolfi.records[0] else {
        panic!("advisory expected")
    };
    assert_eq!(a.affected[0].ecosystem, "Wolfi");
    assert!(a.id.starts_with("WOLFI-"));
}

#[test]
fn nvd_records_read_without_loss() {
    let r = read("nvd");
    assert_clean("nvd", &r);
    let ids = advisory_ids(&r);
    // PROVENANCE counts 78 API-2.0 records (23 single-CVE responses + a 13-record page + the
    // vunnel pages 38 + 1 + 3 fkie-cad) and 669 legacy 1.1 items; the 7 Dependency-Track
    // fixtures come on top (two of them are edited copies of CVE-2017-5638, so 84 distinct
    // API-2.0 ids).
    assert_eq!(ids.len(), 78 + 7 + 669);
    let with_config = r
        .records
        .iter()
        .filter(|rec| matches!(rec, FeedRecord::Advisory(a) if !a.cpe_configurations.is_empty()))
        .count();
    // 67 API-2.0 records and 349 legacy items carry CPE configurations (counted with Python).
    assert_eq!(with_config, 67 + 349);
    let xz = r
        .records
        .iter()
        .find_map(|rec| match rec {
            FeedRecord::Advisory(a) if a.id == "CVE-2024-3094" => Some(a),
            _ => None,
        })
        .expect("xz");
    assert_eq!(xz.best_cvss().map(|c| c.score), Some(10.0));
    assert!(xz
        .cpe_configurations
        .iter()
        .flat_map(|c| &c.nodes)
        .flat_map(|n| &n.cpe_match)
        .any(|m| m.criteria.starts_with("cpe:2.3:a:tukaani:xz:")));
}

/// Every CVSS v2/v3.x/v4.0 metric of every API-2.0 record: our computed base score equals the
/// score NVD published.
#[test]
fn computed_cvss_scores_equal_nvd_published_scores() {
    let mut checked = 0;
    let mut by_version = BTreeMap::new();
    for file in zt_feeds::list_inputs(&[shared_path("nvd")]).unwrap() {
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        let cves: Vec<serde_json::Value> =
            if let Some(list) = v.get("vulnerabilities").and_then(|x| x.as_array()) {
                list.iter().filter_map(|x| x.get("cve").cloned()).collect()
            } else if let Some(c) = v.get("cve") {
                vec![c.clone()]
            } else if v.get("CVE_Items").is_some() {
                continue;
            } else {
                vec![v.clone()]
            };
        for cve in cves {
            for (vector, published) in zt_feeds::published_nvd_scores(&cve) {
                let computed = zt_advisory::Cvss::from_vector(&vector)
                    .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
                assert_eq!(
                    computed.score,
                    published,
                    "{} {}: {vector}",
                    file.display(),
                    cve["id"]
                );
                *by_version.entry(computed.version.as_str()).or_insert(0) += 1;
                checked += 1;
            }
        }
    }
    println!("{by_version:?}");
    // 101 v3.1 + 7 v3.0 + 2 v4.0 + 17 v2 metrics in the shared records.
    assert_eq!(checked, 127);
    assert_eq!(by_version.get("4.0"), Some(&2));
}

#[test]
fn kev_json_and_csv_agree() {
    let json = read("kev/known_exploited_vulnerabilities.json");
    assert_clean("kev json", &json);
    assert_eq!(json.records.len(), 1404);
    let csv = read("kev/known_exploited_vulnerabilities.csv");
    assert_clean("kev csv", &csv);
    assert_eq!(csv.records.len(), 1404);
    for (a, b) in json.records.iter().zip(&csv.records) {
        let (FeedRecord::Kev(a), FeedRecord::Kev(b)) = (a, b) else {
            panic!("KEV records expected")
        };
        assert_eq!(a, b);
    }
    let FeedRecord::Kev(first) = &json.records[0] else {
        panic!()
    };
    assert_eq!(first.cve, "CVE-2025-48384");
    assert_eq!(
        first.due_date.map(|d| d.to_string()).as_deref(),
        Some("2025-09-15")
    );
}

#[test]
fn epss_snapshot_reads_every_row() {
    let r = read("epss/epss-snapshot-2026-08-16.csv.gz");
    assert_clean("epss", &r);
    assert_eq!(r.records.len(), 360_142);
    let cves: HashSet<&str> = r.records.iter().map(|x| x.id()).collect();
    assert_eq!(cves.len(), 360_142);
}

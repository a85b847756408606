//! Malformed inputs are reported (file + record id) and skipped, never a panic; the fuzz target
//! bodies run over real and garbage inputs.

use std::io::Write;

use proptest::prelude::*;
use zt_feeds::{fuzz_any, fuzz_one, read_bytes, read_paths, FeedItem, Format, ReadResult};
use zt_testkit::shared_path;

fn read(name: &str, bytes: &[u8]) -> (Vec<FeedItem>, Vec<zt_feeds::RecordError>) {
    let mut items = Vec::new();
    read_bytes(name, bytes, &mut |i| items.push(i));
    let errors = items
        .iter()
        .filter_map(|i| match i {
            FeedItem::Error(e) => Some(e.clone()),
            _ => None,
        })
        .collect();
    (items, errors)
}

fn real(rel: &str) -> Vec<u8> {
    std::fs::read(shared_path(rel)).unwrap()
}

#[test]
fn truncated_real_osv_record_names_file_and_id() {
    let bytes = real("osv/rustsec/osv-json/crates/RUSTSEC-2020-0071.json");
    let (_, errors) = read("RUSTSEC-2020-0071.json", &bytes[..bytes.len() / 2]);
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].file, "RUSTSEC-2020-0071.json");
    assert_eq!(errors[0].record_id.as_deref(), Some("RUSTSEC-2020-0071"));
}

#[test]
fn wrong_types_and_missing_ids_in_real_records() {
    let mut v: serde_json::Value =
        serde_json::from_slice(&real("osv/ghsa-sample/GHSA-c2qf-rxjj-qqgw.json")).unwrap();
    v["affected"][0]["ranges"] = serde_json::json!("not a list");
    let (items, errors) = read("ghsa.json", v.to_string().as_bytes());
    assert_eq!(items.len(), 1);
    assert_eq!(errors[0].record_id.as_deref(), Some("GHSA-c2qf-rxjj-qqgw"));
    assert!(
        errors[0].reason.contains("affected[0].ranges"),
        "{}",
        errors[0].reason
    );

    v.as_object_mut().unwrap().remove("id");
    let (_, errors) = read("no-id.json", v.to_string().as_bytes());
    assert_eq!(errors.len(), 1);
    assert!(errors[0].reason.contains("id"), "{}", errors[0].reason);

    // One bad record inside a real NVD page: the other 37 still come through.
    let mut page: serde_json::Value =
        serde_json::from_slice(&real("nvd/vunnel-fixtures/full-page.json")).unwrap();
    page["vulnerabilities"][3]["cve"]["published"] = serde_json::json!(42);
    let (items, errors) = read("page.json", page.to_string().as_bytes());
    assert_eq!(errors.len(), 1);
    assert_eq!(
        errors[0].record_id.as_deref(),
        page["vulnerabilities"][3]["cve"]["id"].as_str()
    );
    assert_eq!(items.len(), 38);

    // A KEV entry with a bad date.
    let mut kev: serde_json::Value =
        serde_json::from_slice(&real("kev/known_exploited_vulnerabilities.json")).unwrap();
    kev["vulnerabilities"][0]["dateAdded"] = serde_json::json!("25/08/2025");
    let (items, errors) = read("kev.json", kev.to_string().as_bytes());
    assert_eq!(items.len(), 1404);
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].record_id.as_deref(), Some("CVE-2025-48384"));
}

#[test]
fn zip_with_a_bad_entry_and_bad_gzip() {
    let mut buf = std::io::Cursor::new(Vec::new());
    let mut zip = zip::ZipWriter::new(&mut buf);
    let opts = zip::write::SimpleFileOptions::default();
    zip.start_file("GHSA-j8r2-6x86-q33q.json", opts).unwrap();
    zip.write_all(&real("osv/ghsa-sample/GHSA-j8r2-6x86-q33q.json"))
        .unwrap();
    zip.start_file("broken.json", opts).unwrap();
    zip.write_all(br#"{"id": "GHSA-0000-0000-0000", "affected": [}"#)
        .unwrap();
    zip.finish().unwrap();
    let bytes = buf.into_inner();
    let (items, errors) = read("all.zip", &bytes);
    assert_eq!(items.len(), 2);
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].file, "all.zip!broken.json");
    assert_eq!(errors[0].record_id.as_deref(), Some("GHSA-0000-0000-0000"));

    // A zip whose entry data is corrupted after the header.
    let mut corrupt = bytes.clone();
    let at = corrupt.windows(4).position(|w| w == b"GHSA").unwrap() + 60;
    for b in &mut corrupt[at..at + 40] {
        *b ^= 0x5a;
    }
    let (_, errors) = read("corrupt.zip", &corrupt);
    assert!(!errors.is_empty());

    let gz = real("epss/epss-snapshot-2026-08-16.csv.gz");
    let (_, errors) = read("epss.csv.gz", &gz[..gz.len() / 3]);
    assert_eq!(errors.len(), 1);
    assert!(errors[0].reason.contains("gzip"), "{}", errors[0].reason);
}

#[test]
fn a_directory_with_bad_files_reads_the_good_ones() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        shared_path("osv/ghsa-sample/GHSA-j8r2-6x86-q33q.json"),
        dir.path().join("a.json"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("b.json"),
        b"{\"id\": \"X-1\", \"modified\": [1]}",
    )
    .unwrap();
    std::fs::write(dir.path().join("c.json"), b"").unwrap();
    std::fs::write(dir.path().join("README.md"), b"not a feed").unwrap();
    let r: ReadResult = read_paths(&[dir.path().to_path_buf()]).unwrap();
    assert_eq!(r.records.len(), 1);
    assert_eq!(r.errors.len(), 2);
    assert!(r
        .errors
        .iter()
        .any(|e| e.record_id.as_deref() == Some("X-1")));
    assert!(read_paths(&[dir.path().join("missing")]).is_err());
}

#[test]
fn fuzz_bodies_over_real_and_garbage_inputs() {
    let inputs: Vec<Vec<u8>> = vec![
        real("osv/rustsec/osv-json/crates/RUSTSEC-2020-0071.json"),
        real("osv/pypa/vulns/lxml/PYSEC-2014-9.json"),
        real("nvd/fkie-cad/CVE-2024-0727.json"),
        real("nvd/dependency-track-fixtures/CVE-2017-5638-cvssv4-rating.json"),
        real("kev/known_exploited_vulnerabilities.csv")[..20_000].to_vec(),
        real("osv/alpine-secdb/vunnel-fixture-v3.15-json/v3.15/main.json"),
        b"cve,epss,percentile\nCVE-2020-0001,2,0.5\n".to_vec(),
        b"\x1f\x8b\x08\x00garbage".to_vec(),
        b"PK\x03\x04\x14\x00\x00\x00".to_vec(),
        b"[[[[[[[[[[".to_vec(),
        b"{\"vulnerabilities\":[{\"cve\":{\"id\":5}}],\"format\":\"NVD_CVE\"}".to_vec(),
        vec![0xff; 64],
        Vec::new(),
    ];
    for input in &inputs {
        for format in [
            Format::OsvRecord,
            Format::NvdPage,
            Format::KevJson,
            Format::EpssCsv,
        ] {
            fuzz_one(format, input);
            fuzz_one(format, &input[..input.len() / 2]);
        }
        fuzz_any(input);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        fuzz_any(&data);
        fuzz_one(Format::EpssCsv, &data);
        fuzz_one(Format::KevJson, &data);
    }

    #[test]
    fn osv_shaped_json_never_panics(
        id in "[A-Z]{2,6}-[0-9a-z-]{0,12}",
        modified in prop_oneof![Just("2024-01-01T00:00:00Z".to_string()), "[0-9T:.Z-]{0,25}"],
        events in proptest::collection::vec(("(introduced|fixed|last_affected|limit|bogus)", "[0-9.a-z:~+-]{0,10}"), 0..6),
        kind in "(SEMVER|ECOSYSTEM|GIT|OTHER)",
    ) {
        let events: Vec<serde_json::Value> = events.iter().map(|(k, v)| serde_json::json!({ k.as_str(): v })).collect();
        let doc = serde_json::json!({
            "id": id, "modified": modified,
            "affected": [{"package": {"ecosystem": "PyPI", "name": "x"}, "ranges": [{"type": kind, "events": events}]}]
        });
        let (items, errors) = read("p.json", doc.to_string().as_bytes());
        prop_assert_eq!(items.len(), 1);
        for e in errors {
            prop_assert_eq!(e.record_id.as_deref(), Some(id.as_str()));
        }
    }
}

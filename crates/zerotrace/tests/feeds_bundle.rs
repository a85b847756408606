//! `zerotrace feeds export FILE` / `feeds import FILE`: the air-gapped round trip on real
//! data, and bundles that are refused whole (tampered, undecodable, unknown version, missing
//! file) without changing the store.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;
use sha2::{Digest, Sha256};
use zt_testkit::shared_path;

fn zerotrace(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_zerotrace"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env_remove("ZEROTRACE_DATABASE_URL")
        .output()
        .expect("run zerotrace")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn status(data_dir: &Path) -> Value {
    let out = zerotrace(data_dir, &["feeds", "status", "--format", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The first `rows` scores of the real EPSS snapshot as a gzip file.
fn epss_cut(dir: &Path, rows: usize) -> std::path::PathBuf {
    let gz = std::fs::read(shared_path("epss/epss-snapshot-2026-08-16.csv.gz")).unwrap();
    let mut text = String::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_string(&mut text)
        .unwrap();
    let head: Vec<&str> = text.lines().take(rows + 2).collect();
    let path = dir.join("epss.csv.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(head.join("\n").as_bytes()).unwrap();
    std::fs::write(&path, enc.finish().unwrap()).unwrap();
    path
}

/// The entries of a zip, by name.
fn entries(path: &Path) -> Vec<(String, Vec<u8>)> {
    let mut zip = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    (0..zip.len())
        .map(|i| {
            let mut e = zip.by_index(i).unwrap();
            let mut bytes = Vec::new();
            e.read_to_end(&mut bytes).unwrap();
            (e.name().unwrap().to_string(), bytes)
        })
        .collect()
}

fn write_zip(path: &Path, files: &[(String, Vec<u8>)]) {
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    for (name, bytes) in files {
        zip.start_file(name, zip::write::SimpleFileOptions::default())
            .unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap();
}

/// Rewrites one file of a bundle with `edit`; with `fix_manifest` the manifest's checksum
/// follows, so that only the content is wrong.
fn tampered(
    bundle: &Path,
    out: &Path,
    file: &str,
    fix_manifest: bool,
    edit: impl Fn(Vec<u8>) -> Vec<u8>,
) {
    let mut files = entries(bundle);
    let mut new_sha = None;
    for (name, bytes) in files.iter_mut() {
        if name == file {
            *bytes = edit(std::mem::take(bytes));
            new_sha = Some(hex::encode(Sha256::digest(&bytes[..])));
        }
    }
    if fix_manifest {
        for (name, bytes) in files.iter_mut() {
            if name == "manifest.json" {
                let mut m: Value = serde_json::from_slice(bytes).unwrap();
                m["files"][file]["sha256"] = Value::String(new_sha.clone().unwrap());
                *bytes = serde_json::to_vec(&m).unwrap();
            }
        }
    }
    write_zip(out, &files);
}

/// Writes a bad bundle to the given path.
type MakeBundle<'a> = Box<dyn Fn(&Path) + 'a>;

#[test]
fn export_import_round_trip_and_bad_bundles_are_refused_whole() {
    let work = tempfile::tempdir().unwrap();
    let source = tempfile::tempdir().unwrap();
    let epss = epss_cut(work.path(), 1000);
    let rustsec = shared_path("osv/rustsec/osv-json");
    let nvd = shared_path("nvd/vunnel-fixtures/full-page.json");
    let kev = shared_path("kev/known_exploited_vulnerabilities.json");
    let out = zerotrace(
        source.path(),
        &[
            "feeds",
            "import",
            rustsec.to_str().unwrap(),
            nvd.to_str().unwrap(),
            kev.to_str().unwrap(),
            epss.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let before = status(source.path());
    assert_eq!(before["kev"], 1404);
    assert_eq!(before["epss"], 1000);

    let bundle = work.path().join("knowledge.zip");
    let out = zerotrace(
        source.path(),
        &["feeds", "export", bundle.to_str().unwrap()],
    );
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let advisories: u64 = before["advisories_by_source"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[1].as_u64().unwrap())
        .sum();
    assert_eq!(advisories, 1206 + 38);
    assert!(
        t.contains(&format!(
            "{advisories} advisories, 1404 KEV entries, 1000 EPSS scores"
        )),
        "{t}"
    );
    let names: Vec<String> = entries(&bundle).into_iter().map(|(n, _)| n).collect();
    assert!(names.contains(&"manifest.json".to_string()), "{names:?}");

    // The air-gapped site: a fresh store gets the same knowledge.
    let target = tempfile::tempdir().unwrap();
    let out = zerotrace(
        target.path(),
        &["feeds", "import", bundle.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", text(&out));
    let after = status(target.path());
    for key in [
        "advisories_by_source",
        "withdrawn",
        "kev",
        "epss",
        "epss_date",
    ] {
        assert_eq!(after[key], before[key], "{key}");
    }
    assert_eq!(after["revision"], 1, "one import, one transaction");
    let feeds: Vec<String> = after["feeds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["feed"].as_str().unwrap().to_string())
        .collect();
    assert!(feeds.contains(&"import:kev".to_string()), "{feeds:?}");
    // Again: nothing changes.
    let out = zerotrace(
        target.path(),
        &["feeds", "import", bundle.to_str().unwrap()],
    );
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("kev: 0 new, 0 updated, 1404 unchanged"), "{t}");
    assert_eq!(status(target.path())["revision"], 1);

    // Bad bundles, each refused whole on a fresh store that stays empty.
    let bad_line = format!("advisories.jsonl line {}", advisories + 1);
    let cases: Vec<(&str, MakeBundle, &str)> = vec![
        (
            "a changed record",
            Box::new(|p: &Path| {
                tampered(&bundle, p, "kev.jsonl", false, |mut b| {
                    let at = b.iter().position(|c| c.is_ascii_digit()).unwrap();
                    b[at] = if b[at] == b'9' { b'8' } else { b'9' };
                    b
                })
            }),
            "kev.jsonl: SHA-256",
        ),
        (
            "an undecodable line",
            Box::new(|p: &Path| {
                tampered(&bundle, p, "advisories.jsonl", true, |mut b| {
                    b.extend_from_slice(b"{\"id\": 7}\n");
                    b
                })
            }),
            bad_line.as_str(),
        ),
        (
            "an unknown version",
            Box::new(|p: &Path| {
                let mut files = entries(&bundle);
                for (name, bytes) in files.iter_mut() {
                    if name == "manifest.json" {
                        let mut m: Value = serde_json::from_slice(bytes).unwrap();
                        m["version"] = 99.into();
                        *bytes = serde_json::to_vec(&m).unwrap();
                    }
                }
                write_zip(p, &files);
            }),
            "bundle version 99",
        ),
        (
            "a missing file",
            Box::new(|p: &Path| {
                let files: Vec<_> = entries(&bundle)
                    .into_iter()
                    .filter(|(n, _)| n != "epss.jsonl")
                    .collect();
                write_zip(p, &files);
            }),
            "epss.jsonl is missing",
        ),
    ];
    for (what, make, expected) in cases {
        let bad = work.path().join("bad.zip");
        make(&bad);
        let store = tempfile::tempdir().unwrap();
        let out = zerotrace(store.path(), &["feeds", "import", bad.to_str().unwrap()]);
        let t = text(&out);
        assert!(!out.status.success(), "{what}: {t}");
        assert!(
            t.contains("bundle refused, nothing was imported"),
            "{what}: {t}"
        );
        assert!(t.contains(expected), "{what}: expected {expected:?} in {t}");
        let s = status(store.path());
        assert_eq!(s["revision"], 0, "{what}");
        assert_eq!(s["kev"], 0, "{what}");
    }
}

//! `zerotrace feeds import|status` end to end, on the real shared data.

use std::path::Path;
use std::process::{Command, Output};

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

#[test]
fn import_reimport_bad_records_and_status() {
    let dir = tempfile::tempdir().unwrap();
    let rustsec = shared_path("osv/rustsec/osv-json");
    let kev = shared_path("kev/known_exploited_vulnerabilities.csv");
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        br#"{"id": "GHSA-bad0-bad0-bad0", "modified": "2024-01-01T00:00:00Z", "affected": 7}"#,
    )
    .unwrap();

    let first = zerotrace(
        dir.path(),
        &[
            "feeds",
            "import",
            rustsec.to_str().unwrap(),
            kev.to_str().unwrap(),
            bad.to_str().unwrap(),
        ],
    );
    let out = text(&first);
    assert!(first.status.success(), "{out}");
    assert!(out.contains("read 2610 records"), "{out}");
    assert!(
        out.contains("advisories: 1206 new, 0 updated, 0 unchanged"),
        "{out}"
    );
    assert!(out.contains("kev: 1404 new"), "{out}");
    assert!(out.contains("skipped 1 bad record(s)"), "{out}");
    assert!(
        out.contains("bad.json: record GHSA-bad0-bad0-bad0: affected"),
        "{out}"
    );
    assert!(out.contains("knowledge revision 1"), "{out}");
    assert!(dir.path().join("zerotrace.db").is_file());

    let again = zerotrace(
        dir.path(),
        &[
            "feeds",
            "import",
            rustsec.to_str().unwrap(),
            kev.to_str().unwrap(),
        ],
    );
    let out = text(&again);
    assert!(again.status.success(), "{out}");
    assert!(
        out.contains("advisories: 0 new, 0 updated, 1206 unchanged"),
        "{out}"
    );
    assert!(
        out.contains("kev: 0 new, 0 updated, 1404 unchanged"),
        "{out}"
    );
    assert!(out.contains("knowledge revision 1"), "{out}");

    // Nothing readable: a non-zero exit, and the error names the file and record.
    let truncated = dir.path().join("truncated.json");
    std::fs::write(&truncated, br#"{"id": "RUSTSEC-2099-0001", "modified": "#).unwrap();
    let none = zerotrace(
        dir.path(),
        &["feeds", "import", truncated.to_str().unwrap()],
    );
    let out = text(&none);
    assert!(!none.status.success(), "{out}");
    assert!(
        out.contains("truncated.json: record RUSTSEC-2099-0001: invalid JSON"),
        "{out}"
    );
    let missing = zerotrace(dir.path(), &["feeds", "import", "/nonexistent/feed.json"]);
    assert!(!missing.status.success());

    let status = zerotrace(dir.path(), &["feeds", "status", "--format", "json"]);
    assert!(status.status.success(), "{}", text(&status));
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(v["revision"], 1);
    assert_eq!(v["kev"], 1404);
    assert_eq!(
        v["advisories_by_source"][0],
        serde_json::json!(["osv", 1206])
    );
    let table = zerotrace(dir.path(), &["feeds", "status"]);
    assert!(
        text(&table).contains("advisories: 1206"),
        "{}",
        text(&table)
    );
}

#[test]
fn feeds_import_into_postgresql_and_unknown_urls_are_refused() {
    let db = zt_testkit::TestDatabase::create();
    let dir = tempfile::tempdir().unwrap();
    let rustsec = shared_path("osv/rustsec/osv-json");
    let on_pg = |args: &[&str]| {
        let mut all = vec!["--database-url", db.url.as_str()];
        all.extend_from_slice(args);
        zerotrace(dir.path(), &all)
    };
    let import = on_pg(&["feeds", "import", rustsec.to_str().unwrap()]);
    assert!(import.status.success(), "{}", text(&import));
    let status = on_pg(&["feeds", "status", "--format", "json"]);
    assert!(status.status.success(), "{}", text(&status));
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(
        v["advisories_by_source"][0],
        serde_json::json!(["osv", 1206])
    );
    // Nothing went to the SQLite file: the data dir holds no database.
    assert!(!dir.path().join("zerotrace.db").exists());

    let o = zerotrace(
        dir.path(),
        &[
            "--database-url",
            "mysql://u:secret@localhost/db",
            "feeds",
            "status",
        ],
    );
    assert!(!o.status.success());
    let out = text(&o);
    assert!(out.contains("unsupported --database-url"), "{out}");
    assert!(!out.contains("secret"), "the password leaked: {out}");
}

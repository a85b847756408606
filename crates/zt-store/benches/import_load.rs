//! Prints the knowledge-base figures of issue 4:
//! - full import of the shared OSV data (every OSV set + the secdb conversions) into a fresh
//!   SQLite store (target < 10 s), split into reading and storing;
//! - the same plus NVD, KEV and EPSS (the whole shared knowledge);
//! - re-import (idempotent) time;
//! - `load_knowledge()` from the snapshot and from the rows, and alias-group building.
//!
//! Run: `cargo bench -p zt-store --bench import_load` (release profile). It lives in zt-store
//! because it measures storing: zt-feeds knows nothing of SQL, not even in its benches.

use std::path::PathBuf;
use std::time::Instant;

use zt_feeds::{read_paths, FeedRecord};
use zt_store::knowledge::KnowledgeImport;
use zt_store::{SqliteStore, Storage};
use zt_testkit::shared_path;

const OSV: &[&str] = &[
    "osv/rustsec/osv-json",
    "osv/pypa/vulns",
    "osv/golang-vulndb/data/osv",
    "osv/debian-security-tracker/osv-like",
    "osv/debian-security-tracker/official-osv-samples",
    "osv/osv-scanner-fixtures/records",
    "osv/ubuntu",
    "osv/ghsa-sample",
    "osv/chainguard-wolfi",
    "osv/alpine-secdb/json-2020",
    "osv/alpine-secdb/vunnel-fixture-v3.15-json",
];
const REST: &[&str] = &[
    "nvd",
    "kev/known_exploited_vulnerabilities.json",
    "epss/epss-snapshot-2026-08-16.csv.gz",
];

fn read(rels: &[&str]) -> (KnowledgeImport, f64) {
    let paths: Vec<PathBuf> = rels.iter().map(|p| shared_path(p)).collect();
    let t = Instant::now();
    let r = read_paths(&paths).expect("shared data");
    let secs = t.elapsed().as_secs_f64();
    assert!(r.errors.is_empty());
    let mut batch = KnowledgeImport {
        origin: "bench".into(),
        ..Default::default()
    };
    for rec in r.records {
        match rec {
            FeedRecord::Advisory(a) => batch.advisories.push(*a),
            FeedRecord::Kev(k) => batch.kev.push(k),
            FeedRecord::Epss(e) => batch.epss.push(e),
        }
    }
    (batch, secs)
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes --bench; nothing else to parse.
    let dir = tempfile::tempdir().expect("tempdir");

    let (osv, read_secs) = read(OSV);
    let n = osv.advisories.len();
    let store = SqliteStore::open(&dir.path().join("osv.db"))
        .await
        .expect("store");
    let t = Instant::now();
    let s = store.import_knowledge(osv.clone()).await.expect("import");
    let store_secs = t.elapsed().as_secs_f64();
    println!(
        "OSV import into a fresh SQLite store: {n} records ({} new): read {read_secs:.2} s + store {store_secs:.2} s = {:.2} s (target < 10 s)",
        s.advisories.new,
        read_secs + store_secs
    );
    let t = Instant::now();
    let s = store.import_knowledge(osv).await.expect("re-import");
    println!(
        "OSV re-import: {:.2} s ({} new, {} updated, {} unchanged)",
        t.elapsed().as_secs_f64(),
        s.advisories.new,
        s.advisories.updated,
        s.advisories.unchanged
    );

    let (mut all, read_all) = read(OSV);
    let (rest, read_rest) = read(REST);
    all.advisories.extend(rest.advisories);
    all.kev = rest.kev;
    all.epss = rest.epss;
    let counts = (all.advisories.len(), all.kev.len(), all.epss.len());
    let full = SqliteStore::open(&dir.path().join("all.db"))
        .await
        .expect("store");
    let t = Instant::now();
    full.import_knowledge(all).await.expect("import");
    println!(
        "all shared knowledge ({} advisories, {} KEV, {} EPSS): read {:.2} s + store {:.2} s",
        counts.0,
        counts.1,
        counts.2,
        read_all + read_rest,
        t.elapsed().as_secs_f64()
    );

    let mut best = f64::MAX;
    let mut kb = None;
    for _ in 0..5 {
        let t = Instant::now();
        let k = full.load_knowledge().await.expect("load");
        best = best.min(t.elapsed().as_secs_f64());
        kb = Some(k);
    }
    let kb = kb.expect("loaded");
    println!(
        "load_knowledge() from the snapshot: {:.0} ms (best of 5; {} advisories, {} KEV, {} EPSS)",
        best * 1000.0,
        kb.advisories.len(),
        kb.kev.len(),
        kb.epss.len()
    );
    let t = Instant::now();
    let groups = kb.groups();
    println!(
        "alias groups: {} groups from {} advisories in {:.0} ms",
        groups.groups.len(),
        kb.advisories.len(),
        t.elapsed().as_secs_f64() * 1000.0
    );
    sqlx::query("DELETE FROM kb_snapshot")
        .execute(full.pool())
        .await
        .expect("delete");
    let t = Instant::now();
    full.load_knowledge().await.expect("load");
    println!(
        "load_knowledge() from the rows (no snapshot; rewrites it): {:.0} ms",
        t.elapsed().as_secs_f64() * 1000.0
    );
    let size: i64 = sqlx::query_scalar("SELECT length(data) FROM kb_snapshot")
        .fetch_one(full.pool())
        .await
        .expect("size");
    println!("snapshot size: {:.1} MB", size as f64 / 1e6);
}

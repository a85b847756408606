//! The knowledge base in SQLite: full import of the shared data, idempotent re-import,
//! incremental rules, all-or-nothing imports, and the snapshot loader.

use std::collections::HashSet;
use std::path::PathBuf;

use chrono::{Duration, TimeZone, Utc};
use zt_advisory::{Advisory, Source};
use zt_store::knowledge::KnowledgeImport;
use zt_store::{AnyStore, SqliteStore, Storage};
use zt_testkit::shared_path;

mod common;
use common::{batch_from, fresh_sqlite};

fn all_shared_paths() -> Vec<PathBuf> {
    [
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
        "nvd",
        "kev/known_exploited_vulnerabilities.json",
        "epss/epss-snapshot-2026-08-16.csv.gz",
    ]
    .iter()
    .map(|p| shared_path(p))
    .collect()
}

#[tokio::test]
async fn all_shared_data_imports_without_loss_and_reimport_changes_nothing() {
    let (_dir, store) = fresh_sqlite().await;
    let batch = batch_from(&all_shared_paths());
    let distinct: HashSet<&str> = batch.advisories.iter().map(|a| a.id.as_str()).collect();
    let distinct = distinct.len() as u64;
    let received = batch.advisories.len() as u64;
    let summary = store.import_knowledge(batch.clone()).await.unwrap();

    // Every distinct id is stored. Ids seen twice are the osv-scanner fixture copies of
    // RustSec/Go/GHSA records and the two edited copies of CVE-2017-5638: the newest copy wins.
    assert_eq!(summary.advisories.new, distinct);
    assert_eq!(summary.advisories.skipped_duplicate, received - distinct);
    assert_eq!(summary.kev.new, 1404);
    assert_eq!(summary.epss.new, 360_142);
    assert_eq!(summary.revision, 1);

    let status = store.knowledge_status().await.unwrap();
    let stored: u64 = status.advisories_by_source.iter().map(|(_, n)| n).sum();
    assert_eq!(stored, distinct);
    assert_eq!((status.kev, status.epss), (1404, 360_142));
    // 43 OSV records carry `withdrawn` (counted with Python); they are kept.
    assert!(status.withdrawn >= 43, "{}", status.withdrawn);

    let kb = store.load_knowledge().await.unwrap();
    assert_eq!(kb.revision, 1);
    assert_eq!(kb.advisories.len() as u64, distinct);
    assert_eq!(kb.kev.len(), 1404);
    // EPSS is loaded for the CVEs the advisories name (the store keeps all 360,142).
    let named: HashSet<&str> = kb
        .advisories
        .iter()
        .flat_map(|a| std::iter::once(&a.id).chain(&a.aliases).chain(&a.upstream))
        .map(String::as_str)
        .filter(|id| zt_advisory::is_cve_id(id))
        .collect();
    assert!(!kb.epss.is_empty());
    assert!(kb.epss.iter().all(|e| named.contains(e.cve.as_str())));
    assert!(kb.epss.len() <= named.len());
    let sources: HashSet<Source> = kb.advisories.iter().map(|a| a.source).collect();
    assert_eq!(sources.len(), 5, "{sources:?}");

    // Same data again: nothing new, nothing updated, revision unchanged.
    let again = store.import_knowledge(batch).await.unwrap();
    assert_eq!(
        again.advisories.new + again.advisories.updated,
        0,
        "{again:?}"
    );
    assert_eq!(again.kev.new + again.kev.updated, 0);
    assert_eq!(again.epss.new + again.epss.updated, 0);
    assert_eq!(again.advisories.unchanged, distinct);
    assert_eq!(again.revision, 1);
    assert_eq!(store.knowledge_revision().await.unwrap(), 1);
}

fn advisory(id: &str, modified_days: i64) -> Advisory {
    let mut a = Advisory::new(id, Source::Osv);
    a.modified =
        Some(Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap() + Duration::days(modified_days));
    a.summary = format!("modified day {modified_days}");
    a
}

#[tokio::test]
async fn imports_are_incremental_by_modified() {
    let (_dir, store) = fresh_sqlite().await;
    let imp = |advisories: Vec<Advisory>| KnowledgeImport {
        advisories,
        origin: "test".into(),
        ..Default::default()
    };
    let s = store
        .import_knowledge(imp(vec![advisory("GHSA-1", 5)]))
        .await
        .unwrap();
    assert_eq!((s.advisories.new, s.revision), (1, 1));

    // Older copy: skipped, nothing changes.
    let s = store
        .import_knowledge(imp(vec![advisory("GHSA-1", 1)]))
        .await
        .unwrap();
    assert_eq!((s.advisories.skipped_older, s.revision), (1, 1));
    // Same modified, different content: the source says unchanged.
    let mut same = advisory("GHSA-1", 5);
    same.summary = "edited".into();
    let s = store.import_knowledge(imp(vec![same])).await.unwrap();
    assert_eq!((s.advisories.unchanged, s.revision), (1, 1));
    // Newer: updated, revision bumped, the new content is what loads.
    let s = store
        .import_knowledge(imp(vec![advisory("GHSA-1", 9)]))
        .await
        .unwrap();
    assert_eq!((s.advisories.updated, s.revision), (1, 2));
    // Withdrawn: kept (and loaded) but flagged.
    let mut w = advisory("GHSA-1", 10);
    w.withdrawn = w.modified;
    store.import_knowledge(imp(vec![w])).await.unwrap();
    let kb = store.load_knowledge().await.unwrap();
    assert_eq!(kb.advisories.len(), 1);
    assert!(kb.advisories[0].is_withdrawn());
    assert_eq!(kb.revision, 3);
    // Duplicates within one import: the newest copy is used.
    let s = store
        .import_knowledge(imp(vec![
            advisory("GHSA-2", 1),
            advisory("GHSA-2", 3),
            advisory("GHSA-2", 2),
        ]))
        .await
        .unwrap();
    assert_eq!((s.advisories.new, s.advisories.skipped_duplicate), (1, 2));
    let kb = store.load_knowledge().await.unwrap();
    let g2 = kb.advisories.iter().find(|a| a.id == "GHSA-2").unwrap();
    assert_eq!(g2.summary, "modified day 3");
}

#[tokio::test]
async fn a_failing_import_leaves_the_store_exactly_as_before() {
    let (dir, store) = fresh_sqlite().await;
    let first = batch_from(&[
        shared_path("osv/ghsa-sample"),
        shared_path("kev/known_exploited_vulnerabilities.json"),
    ]);
    store.import_knowledge(first).await.unwrap();
    let before = store.load_knowledge().await.unwrap();
    let status_before = store.knowledge_status().await.unwrap();

    // Make the database refuse one row in the middle of the next import: the records before
    // it are already written inside the transaction when it fails.
    sqlx::query(
        "CREATE TRIGGER refuse_one BEFORE INSERT ON kb_advisories
         WHEN NEW.id = 'RUSTSEC-2020-0071' BEGIN SELECT RAISE(ABORT, 'injected failure'); END",
    )
    .execute(store.pool())
    .await
    .unwrap();
    let second = batch_from(&[shared_path("osv/rustsec/osv-json")]);
    assert!(second
        .advisories
        .iter()
        .any(|a| a.id == "RUSTSEC-2020-0071"));
    let err = store.import_knowledge(second).await.unwrap_err();
    assert!(err.to_string().contains("injected failure"), "{err}");

    let after = store.load_knowledge().await.unwrap();
    assert_eq!(after, before);
    let mut status_after = store.knowledge_status().await.unwrap();
    status_after
        .recent_imports
        .truncate(status_before.recent_imports.len());
    assert_eq!(status_after, status_before);

    // The file on disk opened afresh says the same.
    drop(store);
    let reopened = SqliteStore::open(&dir.path().join("zerotrace.db"))
        .await
        .unwrap();
    assert_eq!(reopened.load_knowledge().await.unwrap(), before);
}

#[tokio::test]
async fn load_falls_back_to_rows_and_rebuilds_the_snapshot() {
    let (_dir, store) = fresh_sqlite().await;
    let batch = batch_from(&[
        shared_path("osv/ubuntu"),
        shared_path("nvd/fkie-cad"),
        shared_path("kev/known_exploited_vulnerabilities.csv"),
    ]);
    store.import_knowledge(batch).await.unwrap();
    let from_snapshot = store.load_knowledge().await.unwrap();
    sqlx::query("DELETE FROM kb_snapshot")
        .execute(store.pool())
        .await
        .unwrap();
    let from_rows = store.load_knowledge().await.unwrap();
    assert_eq!(from_rows, from_snapshot);
    let rebuilt: i64 = sqlx::query_scalar("SELECT count(*) FROM kb_snapshot")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(rebuilt, 1);
    // A corrupt snapshot is only a cache miss.
    sqlx::query("UPDATE kb_snapshot SET data = x'00ff00'")
        .execute(store.pool())
        .await
        .unwrap();
    assert_eq!(store.load_knowledge().await.unwrap(), from_snapshot);
}

#[tokio::test]
async fn feed_state_round_trips() {
    let (_dir, store) = fresh_sqlite().await;
    common::feed_state_round_trips(AnyStore::Sqlite(store)).await;
}

//! The knowledge base on PostgreSQL keeps the same contract as on SQLite: the same data loads
//! back identically from both, imports are incremental and all-or-nothing, the snapshot is a
//! cache only, feed state round-trips.

use std::path::PathBuf;

use chrono::{TimeZone, Utc};
use sqlx::Connection;
use zt_feeds::{read_paths, FeedRecord};
use zt_store::knowledge::{FeedState, KnowledgeImport};
use zt_store::{PgOptions, PgStore, SqliteStore, Storage};
use zt_testkit::{shared_path, TestDatabase};

async fn fresh() -> (TestDatabase, PgStore) {
    let db = TestDatabase::create();
    let store = PgStore::connect(
        &db.url,
        &PgOptions {
            partitions: 2,
            ..PgOptions::default()
        },
    )
    .await
    .unwrap();
    (db, store)
}

fn batch_from(paths: &[PathBuf]) -> KnowledgeImport {
    let read = read_paths(paths).unwrap();
    assert!(
        read.errors.is_empty(),
        "{:?}",
        &read.errors[..read.errors.len().min(3)]
    );
    let mut batch = KnowledgeImport {
        origin: "test".into(),
        ..Default::default()
    };
    for r in read.records {
        match r {
            FeedRecord::Advisory(a) => batch.advisories.push(*a),
            FeedRecord::Kev(k) => batch.kev.push(k),
            FeedRecord::Epss(e) => batch.epss.push(e),
        }
    }
    batch
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_data_loads_back_exactly_as_from_sqlite() {
    let (_db, pg) = fresh().await;
    let dir = tempfile::tempdir().unwrap();
    let lite = SqliteStore::open(&dir.path().join("zerotrace.db"))
        .await
        .unwrap();
    let batch = batch_from(
        &[
            "osv/rustsec/osv-json",
            "osv/pypa/vulns",
            "osv/ghsa-sample",
            "osv/ubuntu",
            "osv/alpine-secdb/json-2020",
            "nvd",
            "kev/known_exploited_vulnerabilities.json",
            "epss/epss-snapshot-2026-08-16.csv.gz",
        ]
        .map(shared_path),
    );
    let from_pg = pg.import_knowledge(batch.clone()).await.unwrap();
    let from_lite = lite.import_knowledge(batch.clone()).await.unwrap();
    assert_eq!(from_pg, from_lite);
    assert_eq!(from_pg.epss.new, 360_142);
    let kb = pg.load_knowledge().await.unwrap();
    assert_eq!(kb, lite.load_knowledge().await.unwrap());
    assert_eq!(kb.revision, 1);

    let (s_pg, s_lite) = (
        pg.knowledge_status().await.unwrap(),
        lite.knowledge_status().await.unwrap(),
    );
    assert_eq!(s_pg.advisories_by_source, s_lite.advisories_by_source);
    assert_eq!(
        (
            s_pg.withdrawn,
            s_pg.kev,
            s_pg.epss,
            s_pg.epss_date,
            s_pg.revision
        ),
        (
            s_lite.withdrawn,
            s_lite.kev,
            s_lite.epss,
            s_lite.epss_date,
            s_lite.revision
        )
    );

    // Again: nothing changes, the revision stays.
    let again = pg.import_knowledge(batch).await.unwrap();
    assert_eq!(again.total().changed(), 0, "{again:?}");
    assert_eq!(pg.knowledge_revision().await.unwrap(), 1);

    // The snapshot is a cache: without it (or with garbage in it) the rows load the same.
    sqlx::query("DELETE FROM kb_snapshot")
        .execute(pg.pool())
        .await
        .unwrap();
    assert_eq!(pg.load_knowledge().await.unwrap(), kb);
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM kb_snapshot")
        .fetch_one(pg.pool())
        .await
        .unwrap();
    assert_eq!(n, 1, "rebuilt");
    sqlx::query("UPDATE kb_snapshot SET data = '\\x00ff00'")
        .execute(pg.pool())
        .await
        .unwrap();
    assert_eq!(pg.load_knowledge().await.unwrap(), kb);
}

#[tokio::test]
async fn a_failing_import_leaves_the_knowledge_exactly_as_before() {
    let (db, store) = fresh().await;
    store
        .import_knowledge(batch_from(&[
            shared_path("osv/ghsa-sample"),
            shared_path("kev/known_exploited_vulnerabilities.json"),
        ]))
        .await
        .unwrap();
    let before = store.load_knowledge().await.unwrap();
    let status_before = store.knowledge_status().await.unwrap();
    // The schema owner makes the database refuse one row in the middle of the next import.
    let mut owner = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::raw_sql(
        "CREATE FUNCTION refuse_one() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN IF NEW.id = 'RUSTSEC-2020-0071' THEN RAISE EXCEPTION 'injected failure'; END IF;
         RETURN NEW; END $$;
         CREATE TRIGGER refuse_one BEFORE INSERT OR UPDATE ON kb_advisories
         FOR EACH ROW EXECUTE FUNCTION refuse_one();",
    )
    .execute(&mut owner)
    .await
    .unwrap();
    owner.close().await.unwrap();
    let err = store
        .import_knowledge(batch_from(&[shared_path("osv/rustsec/osv-json")]))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("injected failure"), "{err}");
    assert_eq!(store.load_knowledge().await.unwrap(), before);
    let mut after = store.knowledge_status().await.unwrap();
    after
        .recent_imports
        .truncate(status_before.recent_imports.len());
    assert_eq!(after, status_before);
}

#[tokio::test]
async fn feed_state_round_trips() {
    let (_db, store) = fresh().await;
    assert_eq!(store.feed_state("nvd").await.unwrap(), None);
    let state = FeedState {
        feed: "nvd".into(),
        url: Some("http://127.0.0.1/rest/json/cves/2.0".into()),
        etag: Some("\"abc\"".into()),
        last_modified: Some("Wed, 21 Oct 2015 07:28:00 GMT".into()),
        cursor: Some("2024-01-01T00:00:00Z".into()),
        last_attempt_at: Some(Utc.with_ymd_and_hms(2024, 1, 2, 0, 0, 0).unwrap()),
        last_success_at: Some(Utc.with_ymd_and_hms(2024, 1, 2, 0, 0, 0).unwrap()),
        last_status: Some("ok".into()),
        records: 42,
    };
    store.save_feed_state(&state).await.unwrap();
    assert_eq!(store.feed_state("nvd").await.unwrap(), Some(state.clone()));
    assert_eq!(store.knowledge_status().await.unwrap().feeds, vec![state]);
}

//! The knowledge base on PostgreSQL keeps the same contract as on SQLite: the same data loads
//! back identically from both, imports are incremental and all-or-nothing, the snapshot is a
//! cache only, feed state round-trips.

use sqlx::Connection;
use zt_store::{AnyStore, Storage};
use zt_testkit::shared_path;

mod common;
use common::{batch_from, fresh_pg, fresh_sqlite};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_data_loads_back_exactly_as_from_sqlite() {
    let (_db, pg) = fresh_pg(2).await;
    let (_dir, lite) = fresh_sqlite().await;
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
    let (db, store) = fresh_pg(2).await;
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
    let (_db, store) = fresh_pg(2).await;
    common::feed_state_round_trips(AnyStore::Postgres(store)).await;
}

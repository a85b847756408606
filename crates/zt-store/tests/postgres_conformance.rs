//! The storage contract on the PostgreSQL backend: each check on a database of its own (see
//! zt_testkit::postgres for which server), with few partitions to keep schema creation quick.

mod conformance;

use zt_store::{PgOptions, PgStore};
use zt_testkit::TestDatabase;

async fn fresh() -> (TestDatabase, PgStore) {
    let db = TestDatabase::create();
    let store = PgStore::connect(
        &db.url,
        &PgOptions {
            partitions: 4,
            ..PgOptions::default()
        },
    )
    .await
    .unwrap();
    (db, store)
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $name() {
            let (_db, store) = fresh().await;
            conformance::$name(&store).await;
            store.pool().close().await;
        }
    )*};
}

conformance!(
    tokens_and_companies,
    accept_is_idempotent_bounded_and_skips_unchanged,
    claims_newest_first_in_app_sized_batches,
    expired_leases_retry_then_dead_letter,
    failures_back_off_then_dead_letter,
    findings_follow_inventories_and_stay_in_their_company,
    rematch_updates_every_company_after_a_reconcile,
    purge_keeps_recent_and_pending,
);

//! The storage contract on the SQLite backend: each check on a fresh database file.

mod conformance;

use zt_store::SqliteStore;

async fn fresh() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("zerotrace.db"))
        .await
        .unwrap();
    (dir, store)
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $name() {
            let (_dir, store) = fresh().await;
            conformance::$name(&store).await;
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

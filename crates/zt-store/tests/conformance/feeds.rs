//! Issue 15 on both backends: KEV entries withdrawn upstream go, EPSS scores of CVEs no
//! advisory names yet are kept (and reach the knowledge once one does), feed states through
//! the `Storage` interface, and the deployment-wide hold of a job.

use zt_advisory::{Advisory, KevEntry};
use zt_feeds::{FeedItem, FeedRecord};
use zt_store::knowledge::{FeedState, KnowledgeImport};
use zt_store::AnyStore;
use zt_testkit::shared_path;

fn read(rel: &str) -> (Vec<Advisory>, Vec<KevEntry>) {
    let (mut advisories, mut kev) = (Vec::new(), Vec::new());
    zt_feeds::read_file(&shared_path(rel), &mut |item| {
        if let FeedItem::Record(r) = item {
            match r {
                FeedRecord::Advisory(a) => advisories.push(*a),
                FeedRecord::Kev(k) => kev.push(k),
                FeedRecord::Epss(_) => {}
            }
        }
    });
    (advisories, kev)
}

pub async fn kev_withdrawn_upstream_is_removed(store: &AnyStore) {
    let (_, catalog) = read("kev/known_exploited_vulnerabilities.json");
    assert_eq!(catalog.len(), 1404);
    let storage = store.storage();
    let first = storage
        .import_knowledge(KnowledgeImport {
            kev: catalog.clone(),
            origin: "test".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(first.kev.new, 1404);
    // The next catalog no longer lists three entries.
    let withdrawn: Vec<String> = catalog[100..103].iter().map(|k| k.cve.clone()).collect();
    let next: Vec<KevEntry> = catalog
        .iter()
        .filter(|k| !withdrawn.contains(&k.cve))
        .cloned()
        .collect();
    let second = storage
        .import_knowledge(KnowledgeImport {
            kev: next,
            origin: "test".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(second.kev.removed, 3);
    assert_eq!(second.kev.unchanged, 1401);
    assert_eq!(second.revision, first.revision + 1);
    assert_eq!(store.knowledge_status().await.unwrap().kev, 1401);
    let kb = storage.load_knowledge().await.unwrap();
    assert_eq!(kb.kev.len(), 1401);
    assert!(kb.kev.iter().all(|k| !withdrawn.contains(&k.cve)));
    // An import without KEV entries withdraws nothing.
    let (advisories, _) = read("osv/rustsec/osv-json/crates/RUSTSEC-2016-0001.json");
    let third = storage
        .import_knowledge(KnowledgeImport {
            advisories,
            origin: "test".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(third.kev.removed, 0);
    assert_eq!(store.knowledge_status().await.unwrap().kev, 1401);
}

pub async fn epss_of_a_cve_named_later_is_kept(store: &AnyStore) {
    let storage = store.storage();
    // RUSTSEC-2016-0001 is CVE-2016-10931; its score arrives before the advisory does.
    let score = zt_advisory::EpssScore {
        cve: "CVE-2016-10931".into(),
        epss: 0.01234,
        percentile: 0.5678,
        date: chrono::NaiveDate::from_ymd_opt(2026, 8, 16),
    };
    storage
        .import_knowledge(KnowledgeImport {
            epss: vec![score.clone()],
            origin: "test".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(store.knowledge_status().await.unwrap().epss, 1);
    let (advisories, _) = read("osv/rustsec/osv-json/crates/RUSTSEC-2016-0001.json");
    assert!(advisories[0]
        .aliases
        .contains(&"CVE-2016-10931".to_string()));
    storage
        .import_knowledge(KnowledgeImport {
            advisories,
            origin: "test".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let kb = storage.load_knowledge().await.unwrap();
    assert_eq!(kb.epss, vec![score]);
}

pub async fn feed_states_and_exclusive_holds_through_the_interface(store: &AnyStore) {
    let storage = store.storage();
    assert_eq!(storage.feed_states().await.unwrap(), vec![]);
    let failed = FeedState {
        feed: "osv:PyPI".into(),
        last_attempt_at: Some(chrono::Utc::now()),
        last_status: Some("error: HTTP 503".into()),
        ..Default::default()
    };
    storage.save_feed_state(&failed).await.unwrap();
    let got = storage.feed_states().await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].error(), Some("HTTP 503"));
    assert_eq!(
        storage.feed_state("osv:PyPI").await.unwrap(),
        Some(got[0].clone())
    );

    let held = storage.try_exclusive("conformance-job").await.unwrap();
    assert!(held.is_some());
    assert!(storage
        .try_exclusive("conformance-job")
        .await
        .unwrap()
        .is_none());
    // Another job is not held by this one.
    let other = storage.try_exclusive("conformance-other").await.unwrap();
    assert!(other.is_some());
    held.unwrap().release().await;
    other.unwrap().release().await;
    let again = storage.try_exclusive("conformance-job").await.unwrap();
    assert!(again.is_some());
    again.unwrap().release().await;
}

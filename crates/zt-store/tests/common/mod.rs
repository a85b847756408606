//! Helpers the zt-store test files share: fresh stores of either backend, test companies and
//! agents, processing a claimed report, knowledge batches read from the shared data. Each test
//! file uses some of them.
#![allow(dead_code)]

use std::path::PathBuf;

use chrono::{DateTime, TimeZone, Utc};
use uuid::Uuid;
use zt_feeds::{read_paths, FeedRecord};
use zt_inventory::{App, AppSource, OsInfo, Software, SoftwareKey};
use zt_store::knowledge::{FeedState, KnowledgeImport};
use zt_store::model::*;
use zt_store::{AnyStore, PgOptions, PgStore, SqliteStore, Storage};
use zt_testkit::TestDatabase;

/// A store on a new SQLite file in a temporary directory (kept while the `TempDir` lives).
pub async fn fresh_sqlite() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("zerotrace.db"))
        .await
        .unwrap();
    (dir, store)
}

/// A store on a PostgreSQL database of its own (see zt_testkit::postgres for which server),
/// with few partitions to keep schema creation quick.
pub async fn fresh_pg(partitions: u32) -> (TestDatabase, PgStore) {
    let db = TestDatabase::create();
    let store = PgStore::connect(
        &db.url,
        &PgOptions {
            partitions,
            ..PgOptions::default()
        },
    )
    .await
    .unwrap();
    (db, store)
}

/// A store on a database of its own on a Citus cluster (see zt_testkit::citus), in Citus
/// mode: the schema created distributed. `None` (said loudly) when no Citus can be had.
/// One partition per tenant table: the shards spread the companies.
pub async fn fresh_citus(test: &str) -> Option<(zt_testkit::citus::CitusDatabase, PgStore)> {
    let db = zt_testkit::citus::CitusDatabase::try_create(test)?;
    let store = PgStore::connect(
        &db.url,
        &PgOptions {
            partitions: 1,
            ..PgOptions::default()
        },
    )
    .await
    .unwrap();
    assert!(store.is_citus());
    Some((db, store))
}

pub fn os() -> OsInfo {
    OsInfo {
        id: "debian".into(),
        version_id: "12".into(),
        name: String::new(),
    }
}

pub fn npm(name: &str, version: &str) -> App {
    App::new(name, version, AppSource::Npm)
}

/// Creates a company whose enroll secret hashes to `secret`.
pub async fn company_with(store: &dyn Storage, name: &str, secret: TokenHash) -> CompanyId {
    let c = Company {
        id: CompanyId::new_v4(),
        name: name.into(),
        created_at: Utc::now(),
    };
    store.create_company(&c, secret).await.unwrap();
    c.id
}

/// Enrolls an agent whose token hashes to `token`.
pub async fn agent_with(
    store: &dyn Storage,
    company_id: CompanyId,
    hostname: &str,
    token: TokenHash,
) -> AgentId {
    let a = NewAgent {
        company_id,
        agent_id: AgentId::new_v4(),
        hostname: hostname.into(),
        os: os(),
        arch: "x86_64".into(),
        agent_version: "1".into(),
        token_hash: token,
        enrolled_at: Utc::now(),
    };
    assert!(store.enroll_agent(&a).await.unwrap());
    a.agent_id
}

/// Processes one claimed report of `apps` (as the worker would) with the given matches for
/// software never seen; returns its outcome.
pub async fn process(
    store: &dyn Storage,
    claimed: &ClaimedReport,
    owner: &str,
    apps: &[App],
    collected_at: DateTime<Utc>,
    matcher: &(dyn Fn(&Software) -> Vec<StoredMatch> + Sync),
) -> ReportOutcome {
    process_together(store, &[(claimed, apps, collected_at)], owner, matcher).await[0]
}

/// Processes claimed reports (each with its apps and collection time) in one batch, as a
/// worker whose claim returned them all; returns their outcomes in order.
pub async fn process_together(
    store: &dyn Storage,
    reports: &[(&ClaimedReport, &[App], DateTime<Utc>)],
    owner: &str,
    matcher: &(dyn Fn(&Software) -> Vec<StoredMatch> + Sync),
) -> Vec<ReportOutcome> {
    process_together_at(store, reports, owner, matcher, Utc::now()).await
}

/// [`process_together`] by a worker whose clock says `now` (the findings it opens are first
/// seen then).
pub async fn process_together_at(
    store: &dyn Storage,
    reports: &[(&ClaimedReport, &[App], DateTime<Utc>)],
    owner: &str,
    matcher: &(dyn Fn(&Software) -> Vec<StoredMatch> + Sync),
    now: DateTime<Utc>,
) -> Vec<ReportOutcome> {
    let o = os();
    let mut all: Vec<(SoftwareKey, Software)> = Vec::new();
    let mut processed = Vec::new();
    for (claimed, apps, collected_at) in reports {
        let software: Vec<(SoftwareKey, Software)> = apps
            .iter()
            .map(|a| {
                let s = Software::from_app(a, &o);
                (s.key(), s)
            })
            .collect();
        processed.push(ProcessedReport {
            lease: LeaseRef {
                queue_id: claimed.queue_id,
                owner: owner.into(),
                attempts: claimed.attempts,
            },
            company_id: claimed.company_id,
            agent_id: claimed.agent_id,
            report_id: claimed.report_id,
            collected_at: *collected_at,
            digest: zt_inventory::inventory_digest(apps),
            hostname: "host".into(),
            os: o.clone(),
            arch: "x86_64".into(),
            apps: software
                .iter()
                .map(|(k, _)| StoredApp {
                    software_key: *k,
                    arch: String::new(),
                })
                .collect(),
            names: software
                .iter()
                .map(|(k, s)| (*k, format!("{}\u{0}{}", s.ecosystem, s.name)))
                .collect(),
        });
        all.extend(software);
    }
    all.sort_by_key(|(k, _)| *k);
    all.dedup_by_key(|(k, _)| *k);
    let keys: Vec<SoftwareKey> = all.iter().map(|(k, _)| *k).collect();
    let unknown = store.unmatched_software(&keys).await.unwrap();
    let matched: Vec<MatchedSoftware> = all
        .iter()
        .filter(|(k, _)| unknown.contains(k))
        .map(|(k, s)| MatchedSoftware {
            key: *k,
            software: s.clone(),
            matches: matcher(s),
        })
        .collect();
    store
        .finish_batch(&ProcessedBatch {
            revision: 1,
            software: matched,
            reports: processed,
            now,
        })
        .await
        .unwrap()
}

/// The records read from `paths` as one import (origin "test"); no file may have errors.
pub fn batch_from(paths: &[PathBuf]) -> KnowledgeImport {
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

/// A report as the API accepts it, collected at `collected_at` and accepted now.
pub fn incoming(
    company_id: CompanyId,
    agent_id: AgentId,
    apps: &[App],
    collected_at: DateTime<Utc>,
    body: Vec<u8>,
) -> IncomingReport {
    IncomingReport {
        company_id,
        agent_id,
        report_id: Uuid::new_v4(),
        collected_at,
        accepted_at: Utc::now(),
        digest: zt_inventory::inventory_digest(apps),
        app_count: apps.len() as u32,
        body,
    }
}

/// A feed's sync state saves and reads back whole, alone and in the status.
pub async fn feed_state_round_trips(store: AnyStore) {
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

//! Backend-independent checks of the `Storage` contract. Every backend's test file calls these
//! with a fresh, empty store (SQLite today; PostgreSQL next).

use std::time::Duration;

use chrono::{DateTime, Utc};
use zt_advisory::Severity;
use zt_inventory::{App, Software};
use zt_store::model::*;
use zt_store::Storage;

use super::common::{agent_with, company_with, npm as app, process, process_together};

mod analyses;
mod dashboard;
mod feeds;
mod lifecycle;
mod live;
mod notifications;
mod rematch;
mod rollup;
mod sessions;
pub use analyses::*;
pub use dashboard::*;
pub use feeds::*;
pub use lifecycle::*;
pub use live::*;
pub use notifications::*;
pub use rematch::*;
pub use rollup::*;
pub use sessions::*;

/// One `#[tokio::test]` per check of this module, each on a fresh store from `$fresh()` (a
/// guard that keeps the store's database, and the store).
macro_rules! conformance_tests {
    (@any $fresh:expr; $($name:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $name() {
            let Some((_guard, store)) = conformance::Fresh::into_fresh($fresh.await) else {
                return;
            };
            conformance::$name(&zt_store::AnyStore::from(store.clone())).await;
            store.pool().close().await;
        }
    )*};
    ($fresh:expr) => {
        conformance_tests!(
            @any $fresh;
            dashboard_hosts_sort_filter_and_page,
            dashboard_software_and_vulnerabilities_follow_inventories,
            dashboard_findings_sort_every_way_and_page,
            dashboard_findings_search_reads_what_the_text_matches,
            dashboard_vulnerability_detail_pages_hosts_with_references,
            dashboard_trends_and_overview,
            trends_count_overdue_per_severity,
            remediation_rows_per_severity,
            kev_withdrawn_upstream_is_removed,
            epss_of_a_cve_named_later_is_kept,
            feed_states_and_exclusive_holds_through_the_interface,
            analyses_cover_present_and_future_findings_until_they_expire,
            analyses_are_refused_whole_when_invalid_and_keep_their_history,
            sla_counts_follow_the_clock_and_agree_with_the_filter,
            targeted_rematch_equals_a_full_rematch,
            notifications_leave_out_suppressed_findings_and_follow_host_tags,
            notifications_of_sla_crossings_once_per_finding,
            notifications_of_expired_analyses_and_stale_feeds,
            notification_claims_leave_a_busy_destination_alone,
            notifications_of_sla_crossings_again_after_a_reopen,
            notification_subjects_are_pruned_without_a_second_message,
            vulnerability_rollup_agrees_with_the_findings,
        );
        conformance_tests!(
            $fresh;
            tokens_and_companies,
            accept_is_idempotent_bounded_and_skips_unchanged,
            claims_newest_first_in_app_sized_batches,
            claims_take_overdue_reports_oldest_first,
            expired_leases_retry_then_dead_letter,
            failures_back_off_then_dead_letter,
            findings_follow_inventories_and_stay_in_their_company,
            one_batch_applies_each_agents_reports_oldest_first,
            rematch_updates_every_company_after_a_reconcile,
            targeted_reconcile_steps_over_the_agents_holding_changed_versions,
            purge_keeps_recent_and_pending,
            events_follow_processing_per_company,
            events_prune_oldest_first,
            concurrent_event_writers_get_contiguous_ids,
            queue_stats_name_the_oldest_pending_entry,
            sessions_resolve_to_their_token_until_ended,
            user_tokens_are_listed_expire_and_revoke_with_their_sessions,
            agent_tokens_rotate_and_revoke_and_enroll_secrets_rotate,
            decommissioned_agents_resolve_their_findings_and_leave_the_counts,
            deleting_a_company_purges_it_and_nothing_else,
            notification_rules_round_trip_per_company,
            notifications_one_per_rule_and_vulnerability_with_leases,
            notifications_of_failed_reports_and_stale_agents,
        );
    };
    ($fresh:expr; $($name:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $name() {
            let Some((_guard, store)) = conformance::Fresh::into_fresh($fresh.await) else {
                return;
            };
            conformance::$name(&store).await;
            store.pool().close().await;
        }
    )*};
}

/// What the `$fresh` of `conformance_tests!` yields: a guard (keeping the store's database)
/// and the store, or nothing when the backend cannot be had on this machine (the Citus suite
/// without Citus: its helper says so loudly) and the check is skipped.
pub trait Fresh {
    type Guard;
    type Store;
    fn into_fresh(self) -> Option<(Self::Guard, Self::Store)>;
}

impl<G, S> Fresh for (G, S) {
    type Guard = G;
    type Store = S;
    fn into_fresh(self) -> Option<(G, S)> {
        Some(self)
    }
}

impl<G, S> Fresh for Option<(G, S)> {
    type Guard = G;
    type Store = S;
    fn into_fresh(self) -> Option<(G, S)> {
        self
    }
}

pub fn hash(n: u8) -> TokenHash {
    TokenHash([n; 32])
}

pub async fn company(store: &dyn Storage, name: &str, secret: u8) -> CompanyId {
    company_with(store, name, hash(secret)).await
}

pub async fn agent(
    store: &dyn Storage,
    company_id: CompanyId,
    hostname: &str,
    token: u8,
) -> AgentId {
    agent_with(store, company_id, hostname, hash(token)).await
}

fn incoming(c: CompanyId, a: AgentId, apps: &[App], at: DateTime<Utc>) -> IncomingReport {
    let body = format!("apps:{}", apps.len()).into_bytes();
    super::common::incoming(c, a, apps, at, body)
}

fn claim(
    owner: &str,
    max_apps: u32,
    lease: Duration,
    max_attempts: u32,
    now: DateTime<Utc>,
) -> ClaimRequest {
    ClaimRequest {
        owner: owner.into(),
        max_apps,
        lease,
        max_attempts,
        // Newest first only: the checks of overdue entries set their own bound.
        overdue_after: Duration::from_secs(3600),
        now,
    }
}

fn lease_of(c: &ClaimedReport, owner: &str) -> LeaseRef {
    LeaseRef {
        queue_id: c.queue_id,
        owner: owner.into(),
        attempts: c.attempts,
    }
}

fn vuln(id: &str, severity: Severity, fixed: &[&str]) -> StoredMatch {
    StoredMatch {
        vulnerability: VulnInfo {
            id: id.into(),
            aliases: vec![format!("GHSA-{id}")],
            summary: format!("summary of {id}"),
            severity,
            cvss: None,
            kev: false,
            kev_due_date: None,
            epss: Some(0.5),
            epss_percentile: None,
            informational: false,
        },
        fixed_versions: fixed.iter().map(|s| s.to_string()).collect(),
        method: "osv-range".into(),
        confidence: "high".into(),
    }
}

fn lodash_matcher(s: &Software) -> Vec<StoredMatch> {
    match (s.name.as_str(), s.version.as_str()) {
        ("lodash", "4.17.15") => vec![
            vuln("CVE-2020-8203", Severity::High, &["4.17.19"]),
            vuln("CVE-2021-23337", Severity::High, &["4.17.21"]),
        ],
        ("lodash", "4.17.19") => vec![vuln("CVE-2021-23337", Severity::High, &["4.17.21"])],
        ("minimist", "0.0.8") => vec![vuln("CVE-2020-7598", Severity::Medium, &[])],
        _ => Vec::new(),
    }
}

pub async fn tokens_and_companies(store: &dyn Storage) {
    assert_eq!(store.operator_token_hash().await.unwrap(), None);
    assert!(store.init_operator_token(hash(1)).await.unwrap());
    assert!(
        !store.init_operator_token(hash(2)).await.unwrap(),
        "one operator token only"
    );
    assert_eq!(store.operator_token_hash().await.unwrap(), Some(hash(1)));
    assert_eq!(
        store.resolve_token(hash(1)).await.unwrap(),
        Some(Principal::Operator)
    );
    assert_eq!(store.resolve_token(hash(2)).await.unwrap(), None);

    let a = company(store, "Acme", 10).await;
    let b = company(store, "Beta", 11).await;
    assert_eq!(
        store.resolve_token(hash(10)).await.unwrap(),
        Some(Principal::Enroll { company_id: a })
    );
    assert!(store
        .create_user_token(a, Role::Viewer, hash(12), Utc::now())
        .await
        .unwrap());
    assert!(!store
        .create_user_token(CompanyId::new_v4(), Role::Admin, hash(13), Utc::now())
        .await
        .unwrap());
    assert_eq!(
        store.resolve_token(hash(12)).await.unwrap(),
        Some(Principal::User {
            company_id: a,
            role: Role::Viewer
        })
    );
    let agent_id = agent(store, b, "b-1", 14).await;
    assert_eq!(
        store.resolve_token(hash(14)).await.unwrap(),
        Some(Principal::Agent {
            company_id: b,
            agent_id
        })
    );
    let names: Vec<String> = store
        .list_companies()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["Acme", "Beta"]);
    assert!(store
        .get_company(CompanyId::new_v4())
        .await
        .unwrap()
        .is_none());
}

pub async fn accept_is_idempotent_bounded_and_skips_unchanged(store: &dyn Storage) {
    let c = company(store, "Acme", 20).await;
    let a = agent(store, c, "h", 21).await;
    let other = agent(store, c, "h2", 22).await;
    let apps = vec![app("lodash", "4.17.15")];
    let first = incoming(c, a, &apps, Utc::now());
    let out = store
        .accept_reports(&[first.clone(), first.clone()], 10)
        .await
        .unwrap();
    assert_eq!(out, [AcceptOutcome::Queued, AcceptOutcome::Duplicate]);
    assert_eq!(
        store
            .accept_reports(std::slice::from_ref(&first), 10)
            .await
            .unwrap(),
        [AcceptOutcome::Duplicate]
    );
    let mut stolen = first.clone();
    stolen.agent_id = other;
    assert_eq!(
        store.accept_reports(&[stolen], 10).await.unwrap(),
        [AcceptOutcome::Conflict]
    );
    // The same inventory again needs no work; another one is refused when the queue is full.
    let same = incoming(c, a, &apps, Utc::now());
    let changed = incoming(c, a, &[app("lodash", "4.17.21")], Utc::now());
    let out = store
        .accept_reports(&[same.clone(), changed.clone()], 1)
        .await
        .unwrap();
    assert_eq!(out, [AcceptOutcome::Unchanged, AcceptOutcome::QueueFull]);
    let s = store
        .report_status(c, a, same.report_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (s.status, s.outcome.as_deref()),
        (ReportState::Done, Some("unchanged"))
    );
    assert!(
        store
            .report_status(c, a, changed.report_id)
            .await
            .unwrap()
            .is_none(),
        "refused: nothing stored"
    );
    assert!(
        store
            .report_status(c, other, first.report_id)
            .await
            .unwrap()
            .is_none(),
        "other agent's report"
    );
    // An unchanged report sent twice in one group is stored once.
    let twice = incoming(c, a, &apps, Utc::now());
    assert_eq!(
        store
            .accept_reports(&[twice.clone(), twice], 10)
            .await
            .unwrap(),
        [AcceptOutcome::Unchanged, AcceptOutcome::Duplicate]
    );
    let stats = store.queue_stats().await.unwrap();
    assert_eq!((stats.queued, stats.pending()), (1, 1));
}

pub async fn claims_newest_first_in_app_sized_batches(store: &dyn Storage) {
    let c = company(store, "Acme", 30).await;
    let mut ids = Vec::new();
    for i in 0..4u8 {
        let a = agent(store, c, &format!("h{i}"), 31 + i).await;
        let apps: Vec<App> = (0..40)
            .map(|n| app(&format!("p{n}"), &format!("{i}.0")))
            .collect();
        let r = incoming(c, a, &apps, Utc::now());
        ids.push(r.report_id);
        assert_eq!(
            store.accept_reports(&[r], 100).await.unwrap(),
            [AcceptOutcome::Queued]
        );
    }
    let now = Utc::now();
    let batch = store
        .claim_batch(&claim("w1", 100, Duration::from_secs(60), 3, now))
        .await
        .unwrap();
    // 40 + 40 apps fit in 100; a third report would not.
    let got: Vec<ReportId> = batch.iter().map(|b| b.report_id).collect();
    assert_eq!(got, [ids[3], ids[2]], "newest first");
    assert!(batch
        .iter()
        .all(|b| b.attempts == 1 && b.body == b"apps:40"));
    let one = store
        .claim_batch(&claim("w2", 10, Duration::from_secs(60), 3, now))
        .await
        .unwrap();
    assert_eq!(
        one.len(),
        1,
        "at least one report even when it exceeds max_apps"
    );
    assert_eq!(one[0].report_id, ids[1]);
    let s = store
        .report_status(c, one[0].agent_id, one[0].report_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.status, ReportState::Processing);
    // Released entries come back without a counted attempt.
    store.release(&[lease_of(&one[0], "w2")]).await.unwrap();
    let again = store
        .claim_batch(&claim("w3", 10, Duration::from_secs(60), 3, Utc::now()))
        .await
        .unwrap();
    assert_eq!((again[0].report_id, again[0].attempts), (ids[1], 1));
}

/// Reports that waited longer than the claim's bound go first, oldest first; the others
/// newest first (a burst no longer starves its oldest reports).
pub async fn claims_take_overdue_reports_oldest_first(store: &dyn Storage) {
    let c = company(store, "Acme", 35).await;
    let now = Utc::now();
    let mut ids = Vec::new();
    for (i, waited) in [20i64, 10, 2, 1].into_iter().enumerate() {
        let a = agent(store, c, &format!("h{i}"), 36 + i as u8).await;
        let mut r = incoming(c, a, &[app("p", &format!("{i}.0"))], now);
        r.accepted_at = now - chrono::Duration::seconds(waited);
        ids.push(r.report_id);
        assert_eq!(
            store.accept_reports(&[r], 100).await.unwrap(),
            [AcceptOutcome::Queued]
        );
    }
    let mut order = Vec::new();
    for n in 0..4 {
        let mut req = claim(&format!("w{n}"), 1, Duration::from_secs(60), 3, now);
        req.overdue_after = Duration::from_secs(5);
        let got = store.claim_batch(&req).await.unwrap();
        assert_eq!(got.len(), 1);
        order.push(ids.iter().position(|id| *id == got[0].report_id).unwrap());
    }
    assert_eq!(
        order,
        [0, 1, 3, 2],
        "overdue oldest first, then newest first"
    );
    // One claim takes overdue and fresh ones together when its budget allows.
    let c2 = company(store, "Beta", 40).await;
    let mut fresh = Vec::new();
    for (i, waited) in [30i64, 0, 0].into_iter().enumerate() {
        let a = agent(store, c2, &format!("b{i}"), 41 + i as u8).await;
        let mut r = incoming(c2, a, &[app("q", &format!("{i}.0"))], now);
        r.accepted_at = now - chrono::Duration::seconds(waited);
        fresh.push(r.report_id);
        store.accept_reports(&[r], 100).await.unwrap();
    }
    let mut req = claim("w", 2, Duration::from_secs(60), 3, now);
    req.overdue_after = Duration::from_secs(5);
    let got: Vec<ReportId> = store
        .claim_batch(&req)
        .await
        .unwrap()
        .iter()
        .map(|c| c.report_id)
        .collect();
    assert_eq!(got, [fresh[0], fresh[2]]);
}

pub async fn expired_leases_retry_then_dead_letter(store: &dyn Storage) {
    let c = company(store, "Acme", 40).await;
    let a = agent(store, c, "h", 41).await;
    let r = incoming(c, a, &[app("x", "1")], Utc::now());
    store
        .accept_reports(std::slice::from_ref(&r), 10)
        .await
        .unwrap();
    let t0 = Utc::now();
    let lease = Duration::from_secs(30);
    let first = store
        .claim_batch(&claim("dead-worker", 100, lease, 2, t0))
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    // Not visible while the lease holds; visible again once it expired.
    assert!(store
        .claim_batch(&claim(
            "w",
            100,
            lease,
            2,
            t0 + chrono::Duration::seconds(10)
        ))
        .await
        .unwrap()
        .is_empty());
    let t1 = t0 + chrono::Duration::seconds(31);
    let second = store
        .claim_batch(&claim("w", 100, lease, 2, t1))
        .await
        .unwrap();
    assert_eq!((second.len(), second[0].attempts), (1, 2));
    // The first worker wakes up late: its lease is gone, its writes are refused.
    let out = process(
        store,
        &first[0],
        "dead-worker",
        &[app("x", "1")],
        r.collected_at,
        &|_| Vec::new(),
    )
    .await;
    assert_eq!(out, ReportOutcome::LeaseLost);
    // The second one dies too: after max_attempts the entry is dead-lettered, not retried.
    let t2 = t1 + chrono::Duration::seconds(31);
    assert!(store
        .claim_batch(&claim("w", 100, lease, 2, t2))
        .await
        .unwrap()
        .is_empty());
    let stats = store.queue_stats().await.unwrap();
    assert_eq!((stats.dead, stats.pending()), (1, 0));
    let s = store
        .report_status(c, a, r.report_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.status, ReportState::Failed);
    assert!(s.error.unwrap().contains("lease expired"));
    // The same inventory must be processed when it comes again (it never was).
    let again = incoming(c, a, &[app("x", "1")], Utc::now());
    assert_eq!(
        store.accept_reports(&[again], 10).await.unwrap(),
        [AcceptOutcome::Queued]
    );
}

pub async fn failures_back_off_then_dead_letter(store: &dyn Storage) {
    let c = company(store, "Acme", 50).await;
    let a = agent(store, c, "h", 51).await;
    let r = incoming(c, a, &[app("x", "1")], Utc::now());
    store
        .accept_reports(std::slice::from_ref(&r), 10)
        .await
        .unwrap();
    let now = Utc::now();
    let lease = Duration::from_secs(60);
    let got = store
        .claim_batch(&claim("w", 100, lease, 3, now))
        .await
        .unwrap();
    let retry_at = now + chrono::Duration::seconds(5);
    store
        .fail(
            &[Failure {
                lease: lease_of(&got[0], "w"),
                error: "boom".into(),
                retry_at: Some(retry_at),
            }],
            now,
        )
        .await
        .unwrap();
    let s = store
        .report_status(c, a, r.report_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (s.status, s.error.as_deref()),
        (ReportState::Queued, Some("boom"))
    );
    assert!(
        store
            .claim_batch(&claim("w", 100, lease, 3, now))
            .await
            .unwrap()
            .is_empty(),
        "backing off"
    );
    let got = store
        .claim_batch(&claim("w", 100, lease, 3, retry_at))
        .await
        .unwrap();
    assert_eq!(got[0].attempts, 2);
    store
        .fail(
            &[Failure {
                lease: lease_of(&got[0], "w"),
                error: "boom again".into(),
                retry_at: None,
            }],
            now,
        )
        .await
        .unwrap();
    assert_eq!(store.queue_stats().await.unwrap().dead, 1);
    assert_eq!(
        store
            .report_status(c, a, r.report_id)
            .await
            .unwrap()
            .unwrap()
            .status,
        ReportState::Failed
    );
}

pub async fn findings_follow_inventories_and_stay_in_their_company(store: &dyn Storage) {
    let acme = company(store, "Acme", 60).await;
    let beta = company(store, "Beta", 61).await;
    let a = agent(store, acme, "web-1", 62).await;
    let b = agent(store, beta, "web-2", 63).await;
    let t = Utc::now();
    let v1 = vec![
        app("lodash", "4.17.15"),
        app("minimist", "0.0.8"),
        app("left-pad", "1.0.0"),
    ];
    for (c, ag, apps) in [(acme, a, &v1), (beta, b, &v1)] {
        let r = incoming(c, ag, apps, t);
        store.accept_reports(&[r], 100).await.unwrap();
        let got = store
            .claim_batch(&claim("w", 1000, Duration::from_secs(60), 3, Utc::now()))
            .await
            .unwrap();
        // The claim carries the time the store orders the agent's reports by.
        assert_eq!(got[0].collected_at.timestamp_millis(), t.timestamp_millis());
        let out = process(store, &got[0], "w", apps, t, &lodash_matcher).await;
        assert_eq!(
            out,
            ReportOutcome::Applied {
                added: 3,
                removed: 0,
                changed: 0
            }
        );
    }
    let s = store.summary(acme).await.unwrap();
    assert_eq!(
        (
            s.agents,
            s.apps,
            s.findings.high,
            s.findings.medium,
            s.fixable
        ),
        (1, 3, 2, 1, 2)
    );
    let page = store
        .list_findings(acme, &FindingFilter::default(), &PageRequest::default())
        .await
        .unwrap();
    assert_eq!(page.items.len(), 3);
    assert!(
        page.items.iter().all(|f| f.agent_id == a),
        "only Acme's agent"
    );
    assert_eq!(
        page.items[2].vulnerability.severity,
        Severity::Medium,
        "most severe first"
    );
    // Paging returns the same rows in the same order.
    let mut paged = Vec::new();
    let mut req = PageRequest {
        limit: 1,
        cursor: None,
    };
    loop {
        let p = store
            .list_findings(acme, &FindingFilter::default(), &req)
            .await
            .unwrap();
        paged.extend(p.items);
        match p.next_cursor {
            Some(c) => req.cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(paged, page.items);
    // Filters.
    let f = FindingFilter {
        severities: vec![Severity::Medium],
        ..Default::default()
    };
    assert_eq!(
        store
            .list_findings(acme, &f, &PageRequest::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    let f = FindingFilter {
        query: Some("minim".into()),
        ..Default::default()
    };
    assert_eq!(
        store
            .list_findings(acme, &f, &PageRequest::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    let f = FindingFilter {
        query: Some("GHSA-CVE-2020-8203".into()),
        ..Default::default()
    };
    assert_eq!(
        store
            .list_findings(acme, &f, &PageRequest::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    // The search is one behaviour on both backends: ASCII case ignored, wildcards literal,
    // each alias matched on its own (never across the stored list's punctuation).
    for (q, want) in [
        ("MINIM", 1),
        ("HoSt", 3),
        ("ghsa-cve-2020", 2),
        ("\"GHSA", 0),
        ("[\"GHSA-CVE-2020-8203", 0),
        ("%", 0),
        ("lodash_", 0),
    ] {
        let f = FindingFilter {
            query: Some(q.into()),
            ..Default::default()
        };
        let got = store
            .list_findings(acme, &f, &PageRequest::default())
            .await
            .unwrap()
            .items
            .len();
        assert_eq!(got, want, "search {q:?}");
    }
    let f = FindingFilter {
        fixable: Some(false),
        ..Default::default()
    };
    assert_eq!(
        store
            .list_findings(acme, &f, &PageRequest::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    assert!(store
        .list_findings(
            acme,
            &FindingFilter::default(),
            &PageRequest {
                limit: 5,
                cursor: Some("garbage".into())
            }
        )
        .await
        .is_err());
    // Isolation: Acme's id on Beta's agent reads nothing; a vulnerability by alias.
    assert!(store
        .list_apps(acme, b, &PageRequest::default())
        .await
        .unwrap()
        .is_none());
    assert!(store.get_agent(acme, b).await.unwrap().is_none());
    let d = store
        .vulnerability(acme, "GHSA-CVE-2020-8203", &PageRequest::default())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.vulnerability.id, "CVE-2020-8203");
    assert_eq!(d.affected.len(), 1);
    assert_eq!(d.affected[0].agent_id, a);
    let newco = company(store, "Empty", 64).await;
    assert!(
        store
            .vulnerability(newco, "CVE-2020-8203", &PageRequest::default())
            .await
            .unwrap()
            .is_none(),
        "no finding: 404"
    );

    // Upgrade lodash to a version that still has one of the two, remove minimist.
    let v2 = vec![app("lodash", "4.17.19"), app("left-pad", "1.0.0")];
    let t2 = t + chrono::Duration::seconds(60);
    store
        .accept_reports(&[incoming(acme, a, &v2, t2)], 100)
        .await
        .unwrap();
    let got = store
        .claim_batch(&claim("w", 1000, Duration::from_secs(60), 3, Utc::now()))
        .await
        .unwrap();
    let out = process(store, &got[0], "w", &v2, t2, &lodash_matcher).await;
    assert_eq!(
        out,
        ReportOutcome::Applied {
            added: 0,
            removed: 1,
            changed: 1
        }
    );
    let open = store
        .list_findings(acme, &FindingFilter::default(), &PageRequest::default())
        .await
        .unwrap()
        .items;
    assert_eq!(open.len(), 1);
    assert_eq!(
        (
            open[0].vulnerability.id.as_str(),
            open[0].package.version.as_str()
        ),
        ("CVE-2021-23337", "4.17.19")
    );
    let first_seen = page
        .items
        .iter()
        .find(|f| f.vulnerability.id == "CVE-2021-23337")
        .unwrap()
        .first_seen;
    assert_eq!(
        open[0].first_seen, first_seen,
        "still affected after the upgrade: first seen kept"
    );
    let resolved = store
        .list_findings(
            acme,
            &FindingFilter {
                status: FindingStatus::Resolved,
                ..Default::default()
            },
            &PageRequest::default(),
        )
        .await
        .unwrap()
        .items;
    let why = |id: &str| {
        resolved
            .iter()
            .find(|f| f.vulnerability.id == id)
            .and_then(|f| f.resolution.clone())
    };
    assert_eq!(why("CVE-2020-8203").as_deref(), Some("fixed"));
    assert_eq!(why("CVE-2020-7598").as_deref(), Some("removed"));
    assert_eq!(why("CVE-2021-23337").as_deref(), Some("superseded"));
    // An older report arriving late does not roll the inventory back: the claim settles it
    // as stale without handing it to a worker.
    let late = incoming(acme, a, &v1, t);
    store
        .accept_reports(std::slice::from_ref(&late), 100)
        .await
        .unwrap();
    let got = store
        .claim_batch(&claim("w", 1000, Duration::from_secs(60), 3, Utc::now()))
        .await
        .unwrap();
    assert!(got.is_empty());
    let s = store
        .report_status(acme, a, late.report_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (s.status, s.outcome.as_deref()),
        (ReportState::Done, Some("stale"))
    );
    assert_eq!(store.summary(acme).await.unwrap().apps, 2);
    // One that got claimed before a newer one was applied is found stale when finishing.
    let older = incoming(acme, a, &v1, t + chrono::Duration::seconds(70));
    let newer = incoming(acme, a, &v2, t + chrono::Duration::seconds(90));
    store
        .accept_reports(&[older.clone(), newer.clone()], 100)
        .await
        .unwrap();
    let got_newer = store
        .claim_batch(&claim("w1", 1, Duration::from_secs(60), 3, Utc::now()))
        .await
        .unwrap();
    let got_older = store
        .claim_batch(&claim("w2", 1, Duration::from_secs(60), 3, Utc::now()))
        .await
        .unwrap();
    assert_eq!(
        (got_newer[0].report_id, got_older[0].report_id),
        (newer.report_id, older.report_id)
    );
    let out = process(
        store,
        &got_newer[0],
        "w1",
        &v2,
        newer.collected_at,
        &lodash_matcher,
    )
    .await;
    assert_eq!(
        out,
        ReportOutcome::Applied {
            added: 0,
            removed: 0,
            changed: 0
        }
    );
    let out = process(
        store,
        &got_older[0],
        "w2",
        &v1,
        older.collected_at,
        &lodash_matcher,
    )
    .await;
    assert_eq!(out, ReportOutcome::Stale);
    assert_eq!(store.summary(acme).await.unwrap().apps, 2);
    // Beta never changed.
    assert_eq!(store.summary(beta).await.unwrap().findings.total(), 3);
}

/// A batch holding several reports of one agent (and another agent's) applies them oldest
/// first, each against the inventory the previous one left, exactly as one by one would.
pub async fn one_batch_applies_each_agents_reports_oldest_first(store: &dyn Storage) {
    let acme = company(store, "Acme", 70).await;
    let a = agent(store, acme, "web-1", 71).await;
    let b = agent(store, acme, "web-2", 72).await;
    let t = Utc::now() - chrono::Duration::seconds(600);
    let v1 = vec![
        app("lodash", "4.17.15"),
        app("minimist", "0.0.8"),
        app("left-pad", "1.0.0"),
    ];
    // Upgrade lodash (one of its two vulnerabilities stays), remove minimist; then upgrade
    // lodash past every fix.
    let v2 = vec![app("lodash", "4.17.19"), app("left-pad", "1.0.0")];
    let v3 = vec![app("lodash", "4.17.21"), app("left-pad", "1.0.0")];
    let sent = [
        (a, &v1, t),
        (a, &v2, t + chrono::Duration::seconds(60)),
        (a, &v3, t + chrono::Duration::seconds(120)),
        (b, &v1, t),
    ];
    let mut ids = Vec::new();
    for (agent_id, apps, at) in sent {
        let r = incoming(acme, agent_id, apps, at);
        ids.push(r.report_id);
        let out = store.accept_reports(&[r], 100).await.unwrap();
        assert_eq!(out, vec![AcceptOutcome::Queued]);
    }
    let got = store
        .claim_batch(&claim("w", 1000, Duration::from_secs(60), 3, Utc::now()))
        .await
        .unwrap();
    assert_eq!(got.len(), 4, "one claim takes all four");
    let of = |c: &ClaimedReport| {
        let i = ids.iter().position(|id| *id == c.report_id).unwrap();
        (i, sent[i].1.as_slice(), sent[i].2)
    };
    let together: Vec<(&ClaimedReport, &[App], DateTime<Utc>)> = got
        .iter()
        .map(|c| {
            let (_, apps, at) = of(c);
            (c, apps, at)
        })
        .collect();
    let outcomes = process_together(store, &together, "w", &lodash_matcher).await;
    let mut by_sent = vec![None; 4];
    for (c, out) in got.iter().zip(outcomes) {
        by_sent[of(c).0] = Some(out);
    }
    let applied = |added, removed, changed| {
        Some(ReportOutcome::Applied {
            added,
            removed,
            changed,
        })
    };
    assert_eq!(
        by_sent,
        vec![
            applied(3, 0, 0),
            applied(0, 1, 1),
            applied(0, 0, 1),
            applied(3, 0, 0)
        ]
    );

    // a ends with v3 and no open finding; b has v1's three.
    let s = store.summary(acme).await.unwrap();
    assert_eq!(
        (
            s.agents,
            s.apps,
            s.findings.high,
            s.findings.medium,
            s.fixable
        ),
        (2, 5, 2, 1, 2)
    );
    let agent_a = store.get_agent(acme, a).await.unwrap().unwrap();
    assert_eq!(agent_a.apps, 2);
    assert_eq!(agent_a.findings, SeverityCounts::default(), "a's counters");
    let agent_b = store.get_agent(acme, b).await.unwrap().unwrap();
    assert_eq!((agent_b.findings.high, agent_b.findings.medium), (2, 1));
    let open = store
        .list_findings(acme, &FindingFilter::default(), &PageRequest::default())
        .await
        .unwrap()
        .items;
    assert_eq!(open.len(), 3);
    assert!(open.iter().all(|f| f.agent_id == b));
    let resolved = store
        .list_findings(
            acme,
            &FindingFilter {
                status: FindingStatus::Resolved,
                ..Default::default()
            },
            &PageRequest::default(),
        )
        .await
        .unwrap()
        .items;
    let mut why: Vec<(String, String, Option<String>)> = resolved
        .iter()
        .map(|f| {
            assert_eq!(f.agent_id, a);
            (
                f.vulnerability.id.clone(),
                f.package.version.clone(),
                f.resolution.clone(),
            )
        })
        .collect();
    why.sort();
    let row = |v: &str, ver: &str, res: &str| (v.to_string(), ver.to_string(), Some(res.into()));
    assert_eq!(
        why,
        vec![
            row("CVE-2020-7598", "0.0.8", "removed"),
            row("CVE-2020-8203", "4.17.15", "fixed"),
            row("CVE-2021-23337", "4.17.15", "superseded"),
            row("CVE-2021-23337", "4.17.19", "fixed"),
        ]
    );
    let apps = store
        .list_apps(acme, a, &PageRequest::default())
        .await
        .unwrap()
        .unwrap()
        .items;
    let mut installed: Vec<String> = apps
        .iter()
        .map(|x| format!("{}@{}", x.name, x.version))
        .collect();
    installed.sort();
    assert_eq!(installed, vec!["left-pad@1.0.0", "lodash@4.17.21"]);
}

pub async fn rematch_updates_every_company_after_a_reconcile(store: &dyn Storage) {
    let acme = company(store, "Acme", 70).await;
    let a = agent(store, acme, "web-1", 71).await;
    let apps = vec![app("lodash", "4.17.15"), app("left-pad", "1.0.0")];
    let t = Utc::now();
    store
        .accept_reports(&[incoming(acme, a, &apps, t)], 100)
        .await
        .unwrap();
    let got = store
        .claim_batch(&claim("w", 1000, Duration::from_secs(60), 3, Utc::now()))
        .await
        .unwrap();
    process(store, &got[0], "w", &apps, t, &|_| Vec::new()).await;
    assert_eq!(store.summary(acme).await.unwrap().findings.total(), 0);
    assert_eq!(store.reconcile_pending().await.unwrap(), None);
    // New knowledge: lodash is vulnerable, left-pad still fine.
    let stale = store.software_to_rematch(2, None, 100).await.unwrap();
    assert_eq!(stale.len(), 2);
    let results: Vec<MatchedSoftware> = stale
        .into_iter()
        .map(|(key, software)| MatchedSoftware {
            key,
            matches: lodash_matcher(&software),
            software,
        })
        .collect();
    let delta = store.store_rematch(&results, 2).await.unwrap();
    assert_eq!(delta.appeared.len(), 2);
    assert!(store
        .software_to_rematch(2, None, 100)
        .await
        .unwrap()
        .is_empty());
    let generation = store
        .reconcile_pending()
        .await
        .unwrap()
        .expect("findings must follow");
    let mut after = None;
    while let Some(last) = store
        .reconcile_findings(acme, after, 1, Utc::now())
        .await
        .unwrap()
    {
        after = Some(last);
    }
    store.mark_reconciled(generation).await.unwrap();
    assert_eq!(store.reconcile_pending().await.unwrap(), None);
    assert_eq!(store.summary(acme).await.unwrap().findings.high, 2);
    // Knowledge withdraws one: its finding is resolved as no longer affected.
    let stale = store.software_to_rematch(3, None, 100).await.unwrap();
    let results: Vec<MatchedSoftware> = stale
        .into_iter()
        .map(|(key, software)| {
            let mut matches = lodash_matcher(&software);
            matches.retain(|m| m.vulnerability.id != "CVE-2020-8203");
            MatchedSoftware {
                key,
                matches,
                software,
            }
        })
        .collect();
    let delta = store.store_rematch(&results, 3).await.unwrap();
    assert_eq!(delta.disappeared.len(), 1);
    store
        .reconcile_findings(acme, None, 100, Utc::now())
        .await
        .unwrap();
    let resolved = store
        .list_findings(
            acme,
            &FindingFilter {
                status: FindingStatus::Resolved,
                ..Default::default()
            },
            &PageRequest::default(),
        )
        .await
        .unwrap()
        .items;
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0].resolution.as_deref(), Some("not_affected"));
}

/// Issue 15: the targeted reconciliation goes over the agents holding a changed version only,
/// in steps of at most `limit` of them (here 2, far below a company's agents), and what the
/// steps leave — findings, the hosts' counters, the vulnerability counts (a host with two
/// versions hit by one vulnerability counts once) — is what the hosts' apps say.
pub async fn targeted_reconcile_steps_over_the_agents_holding_changed_versions(
    store: &dyn Storage,
) {
    let acme = company(store, "Acme", 90).await;
    let beta = company(store, "Beta", 91).await;
    let old = app("lodash", "4.17.15");
    let newer = app("lodash", "4.17.19");
    let pad = app("left-pad", "1.0.0");
    let mut fleet: Vec<(CompanyId, AgentId, Vec<App>)> = Vec::new();
    for i in 0..7u8 {
        let a = agent(store, acme, &format!("web-{i}"), 92 + i).await;
        let apps = match i {
            2 => vec![newer.clone(), pad.clone()],
            3 => vec![old.clone(), newer.clone()],
            6 => vec![pad.clone()],
            _ => vec![old.clone(), pad.clone()],
        };
        fleet.push((acme, a, apps));
    }
    let b = agent(store, beta, "db-1", 99).await;
    fleet.push((beta, b, vec![old.clone()]));
    let t = Utc::now();
    let reports: Vec<IncomingReport> = fleet
        .iter()
        .map(|(c, a, apps)| incoming(*c, *a, apps, t))
        .collect();
    store.accept_reports(&reports, 100).await.unwrap();
    let got = store
        .claim_batch(&claim("w", 1000, Duration::from_secs(60), 3, Utc::now()))
        .await
        .unwrap();
    assert_eq!(got.len(), fleet.len());
    let together: Vec<(&ClaimedReport, &[App], DateTime<Utc>)> = got
        .iter()
        .map(|c| {
            let (_, _, apps) = fleet.iter().find(|f| f.1 == c.agent_id).unwrap();
            (c, apps.as_slice(), t)
        })
        .collect();
    process_together(store, &together, "w", &|_| Vec::new()).await;
    assert_eq!(store.summary(acme).await.unwrap().findings.total(), 0);

    // Reconciles every company in steps of two agents; returns the steps of Acme.
    let reconcile_all = move || async move {
        let generation = store.reconcile_pending().await.unwrap().expect("pending");
        let mut acme_steps = Vec::new();
        for c in [acme, beta] {
            let mut after = None;
            while let Some(step) = store
                .reconcile_software(c, after, 2, Utc::now())
                .await
                .unwrap()
            {
                after = Some(step.last);
                if c == acme {
                    acme_steps.push(step.agents);
                }
            }
        }
        store.mark_reconciled(generation).await.unwrap();
        acme_steps
    };
    let rematch = move |revision: u64, keep: fn(&str, &str) -> bool| async move {
        let stale = store
            .software_to_rematch(revision, None, 100)
            .await
            .unwrap();
        let results: Vec<MatchedSoftware> = stale
            .into_iter()
            .map(|(key, software)| {
                let mut matches = lodash_matcher(&software);
                matches.retain(|m| keep(&software.version, &m.vulnerability.id));
                MatchedSoftware {
                    key,
                    matches,
                    software,
                }
            })
            .collect();
        store.store_rematch(&results, revision).await.unwrap()
    };
    let vulns = move |c: CompanyId| async move {
        let page = store
            .list_vulnerabilities(c, &VulnFilter::default(), &PageRequest::default())
            .await
            .unwrap();
        let mut out: Vec<(String, u64, u64)> = page
            .items
            .into_iter()
            .map(|v| (v.vulnerability.id, v.hosts, v.findings))
            .collect();
        out.sort();
        out
    };
    let hosts: Vec<(CompanyId, AgentId)> = fleet.iter().map(|(c, a, _)| (*c, *a)).collect();
    let hosts = &hosts;
    let counters = move || async move {
        let mut out = Vec::new();
        for (c, a) in hosts {
            let agent = store.get_agent(*c, *a).await.unwrap().unwrap();
            out.push(agent.findings.total());
        }
        out
    };

    // New knowledge: lodash is vulnerable. Six Acme hosts hold it: three steps of two (the
    // host with left-pad only is not one of them).
    let delta = rematch(2, |_, _| true).await;
    assert_eq!(delta.appeared.len(), 3);
    assert_eq!(reconcile_all().await, vec![2, 2, 2]);
    assert_eq!(store.reconcile_pending().await.unwrap(), None);
    assert_eq!(counters().await, vec![2, 2, 1, 3, 2, 2, 0, 2]);
    assert_eq!(
        vulns(acme).await,
        vec![
            ("CVE-2020-8203".to_string(), 5, 5),
            ("CVE-2021-23337".to_string(), 6, 7),
        ]
    );
    assert_eq!(
        vulns(beta).await,
        vec![
            ("CVE-2020-8203".to_string(), 1, 1),
            ("CVE-2021-23337".to_string(), 1, 1),
        ]
    );

    // Knowledge no longer names 4.17.15 for CVE-2021-23337: its five findings there are
    // resolved; the host with both versions keeps counting once.
    let delta = rematch(3, |version, id| {
        !(version == "4.17.15" && id == "CVE-2021-23337")
    })
    .await;
    assert_eq!(delta.disappeared.len(), 1);
    assert_eq!(reconcile_all().await, vec![2, 2, 1]);
    assert_eq!(counters().await, vec![1, 1, 1, 2, 1, 1, 0, 1]);
    assert_eq!(
        vulns(acme).await,
        vec![
            ("CVE-2020-8203".to_string(), 5, 5),
            ("CVE-2021-23337".to_string(), 2, 2),
        ]
    );
    let resolved = store
        .list_findings(
            acme,
            &FindingFilter {
                status: FindingStatus::Resolved,
                ..Default::default()
            },
            &PageRequest::default(),
        )
        .await
        .unwrap()
        .items;
    assert_eq!(resolved.len(), 5);
    assert!(resolved
        .iter()
        .all(|f| f.resolution.as_deref() == Some("not_affected")));
}

pub async fn purge_keeps_recent_and_pending(store: &dyn Storage) {
    let c = company(store, "Acme", 80).await;
    let a = agent(store, c, "h", 81).await;
    let apps = vec![app("x", "1")];
    let t = Utc::now();
    let r = incoming(c, a, &apps, t);
    store
        .accept_reports(std::slice::from_ref(&r), 10)
        .await
        .unwrap();
    let got = store
        .claim_batch(&claim("w", 100, Duration::from_secs(60), 3, Utc::now()))
        .await
        .unwrap();
    process(store, &got[0], "w", &apps, t, &|_| Vec::new()).await;
    store
        .accept_reports(&[incoming(c, a, &[app("y", "1")], t)], 10)
        .await
        .unwrap();
    assert_eq!(
        store
            .purge_finished(Utc::now() - chrono::Duration::hours(24))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .purge_finished(Utc::now() + chrono::Duration::seconds(1))
            .await
            .unwrap(),
        1
    );
    let stats = store.queue_stats().await.unwrap();
    assert_eq!((stats.done, stats.queued), (0, 1), "pending entries stay");
    assert!(store
        .report_status(c, a, r.report_id)
        .await
        .unwrap()
        .is_none());
}

// --- Operations: the age of the oldest pending report (queue-age metric and alert) ---

pub async fn queue_stats_name_the_oldest_pending_entry(store: &dyn Storage) {
    assert_eq!(
        store.queue_stats().await.unwrap().oldest_pending_at,
        None,
        "nothing pending"
    );
    let c = company(store, "Acme", 90).await;
    let a1 = agent(store, c, "h1", 91).await;
    let a2 = agent(store, c, "h2", 92).await;
    let long_ago = Utc::now() - chrono::Duration::minutes(20);
    let mut old = incoming(c, a1, &[app("x", "1")], long_ago);
    old.accepted_at = long_ago;
    let recent = incoming(c, a2, &[app("y", "1")], Utc::now());
    let recent_at = recent.accepted_at;
    assert_eq!(
        store.accept_reports(&[old, recent], 10).await.unwrap(),
        [AcceptOutcome::Queued, AcceptOutcome::Queued]
    );
    // Both backends keep at least millisecond precision.
    let near = |got: Option<DateTime<Utc>>, want: DateTime<Utc>| {
        got.is_some_and(|g| (g - want).num_milliseconds().abs() <= 1)
    };
    let stats = store.queue_stats().await.unwrap();
    assert!(near(stats.oldest_pending_at, long_ago), "{stats:?}");

    // Leased entries still wait for their findings: they count.
    let now = Utc::now();
    let got = store
        .claim_batch(&claim("w", 100, Duration::from_secs(60), 3, now))
        .await
        .unwrap();
    assert_eq!(got.len(), 2);
    let stats = store.queue_stats().await.unwrap();
    assert_eq!(stats.leased, 2);
    assert!(near(stats.oldest_pending_at, long_ago), "{stats:?}");

    // Dead letters no longer wait: the newer report becomes the oldest, then none is left.
    let (old_claim, recent_claim) = if got[0].agent_id == a1 {
        (&got[0], &got[1])
    } else {
        (&got[1], &got[0])
    };
    for (claimed, want) in [(old_claim, Some(recent_at)), (recent_claim, None)] {
        store
            .fail(
                &[Failure {
                    lease: lease_of(claimed, "w"),
                    error: "boom".into(),
                    retry_at: None,
                }],
                now,
            )
            .await
            .unwrap();
        let stats = store.queue_stats().await.unwrap();
        match want {
            Some(at) => assert!(near(stats.oldest_pending_at, at), "{stats:?}"),
            None => assert_eq!(stats.oldest_pending_at, None, "{stats:?}"),
        }
    }
}

//! The event log behind the live streams (issue 12): what processing and enrollment append,
//! in which order, for which company; pruning; concurrent writers.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::Utc;
use serde_json::Value;
use zt_store::model::*;
use zt_store::Storage;

use super::{agent, app, claim, company, incoming, lodash_matcher, process};

fn data(e: &StoredEvent) -> Value {
    serde_json::from_str(&e.data).expect("event data is JSON")
}

fn vuln_ids(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|i| i["vuln_id"].as_str().unwrap())
        .collect()
}

/// Enrollment and processing append their events in the same transaction; each company
/// reads only its own (and the global ones); ids increase without gaps.
pub async fn events_follow_processing_per_company(store: &dyn Storage) {
    assert_eq!(
        store.event_log_bounds().await.unwrap(),
        EventLogBounds::default()
    );
    let acme = company(store, "Acme", 90).await;
    let beta = company(store, "Beta", 91).await;
    let a = agent(store, acme, "web-1", 92).await;
    let b = agent(store, beta, "db-1", 93).await;
    let all = store.events_after(None, 0, 100).await.unwrap();
    assert_eq!(
        all.iter().map(|e| (e.id, e.kind)).collect::<Vec<_>>(),
        [(1, EventKind::AgentEnrolled), (2, EventKind::AgentEnrolled)]
    );
    assert_eq!(all[0].company_id, Some(acme));
    assert_eq!(data(&all[0])["agent_id"], a.to_string());
    assert_eq!(data(&all[0])["hostname"], "web-1");
    assert_eq!(data(&all[0])["company_id"], acme.to_string());

    // First inventory: three findings open.
    let t = Utc::now();
    let v1 = vec![app("lodash", "4.17.15"), app("minimist", "0.0.8")];
    let r1 = incoming(acme, a, &v1, t);
    store
        .accept_reports(std::slice::from_ref(&r1), 100)
        .await
        .unwrap();
    let got = store
        .claim_batch(&claim("w", 1000, Duration::from_secs(60), 3, Utc::now()))
        .await
        .unwrap();
    process(store, &got[0], "w", &v1, t, &lodash_matcher).await;
    let new = store.events_after(Some(acme), 2, 100).await.unwrap();
    assert_eq!(
        new.iter().map(|e| (e.id, e.kind)).collect::<Vec<_>>(),
        [
            (3, EventKind::ReportProcessed),
            (4, EventKind::FindingsChanged)
        ]
    );
    let processed = data(&new[0]);
    assert_eq!(processed["report_id"], r1.report_id.to_string());
    assert_eq!(processed["agent_id"], a.to_string());
    assert_eq!(processed["outcome"], "applied");
    assert_eq!(
        (processed["opened"].as_u64(), processed["resolved"].as_u64()),
        (Some(3), Some(0))
    );
    let changed = data(&new[1]);
    assert_eq!(changed["opened_total"], 3);
    assert_eq!(changed["resolved_total"], 0);
    // Most severe first.
    assert_eq!(
        vuln_ids(&changed["opened"]),
        ["CVE-2020-8203", "CVE-2021-23337", "CVE-2020-7598"]
    );
    let first = &changed["opened"][0];
    assert_eq!(first["severity"], "high");
    assert_eq!(first["kev"], false);
    assert_eq!(first["package"]["name"], "lodash");
    assert_eq!(first["package"]["version"], "4.17.15");
    assert_eq!(first["package"]["ecosystem"], "npm");

    // lodash upgraded (CVE-2021-23337 stays, CVE-2020-8203 is fixed), minimist removed.
    let t2 = t + chrono::Duration::seconds(1);
    let v2 = vec![app("lodash", "4.17.19")];
    store
        .accept_reports(&[incoming(acme, a, &v2, t2)], 100)
        .await
        .unwrap();
    let got = store
        .claim_batch(&claim("w", 1000, Duration::from_secs(60), 3, Utc::now()))
        .await
        .unwrap();
    process(store, &got[0], "w", &v2, t2, &lodash_matcher).await;
    let new = store.events_after(Some(acme), 4, 100).await.unwrap();
    assert_eq!(
        new.iter().map(|e| (e.id, e.kind)).collect::<Vec<_>>(),
        [
            (5, EventKind::ReportProcessed),
            (6, EventKind::FindingsChanged)
        ]
    );
    let changed = data(&new[1]);
    assert_eq!(vuln_ids(&changed["opened"]), Vec::<&str>::new());
    assert_eq!(
        vuln_ids(&changed["resolved"]),
        ["CVE-2020-8203", "CVE-2020-7598"]
    );
    assert_eq!(changed["resolved_total"], 2);
    assert_eq!(data(&new[0])["resolved"], 2);

    // Beta sees only its enrollment; a global event reaches both companies.
    let head = store
        .append_events(
            &[NewEvent {
                company_id: None,
                kind: EventKind::KnowledgeUpdated,
                data: serde_json::json!({"revision": "7"})
                    .as_object()
                    .unwrap()
                    .clone(),
            }],
            Utc::now(),
        )
        .await
        .unwrap();
    assert_eq!(head, 7);
    let beta_events = store.events_after(Some(beta), 0, 100).await.unwrap();
    assert_eq!(
        beta_events
            .iter()
            .map(|e| (e.id, e.kind))
            .collect::<Vec<_>>(),
        [
            (2, EventKind::AgentEnrolled),
            (7, EventKind::KnowledgeUpdated)
        ]
    );
    assert_eq!(data(&beta_events[0])["agent_id"], b.to_string());
    assert_eq!(beta_events[1].company_id, None);
    assert_eq!(data(&beta_events[1])["revision"], "7");
    let acme_after = store.events_after(Some(acme), 6, 100).await.unwrap();
    assert_eq!(acme_after.iter().map(|e| e.id).collect::<Vec<_>>(), [7]);
    // Pages: at most `limit`, resuming after the last one read.
    let page = store.events_after(None, 0, 3).await.unwrap();
    assert_eq!(page.iter().map(|e| e.id).collect::<Vec<_>>(), [1, 2, 3]);
    let all = store.events_after(None, 0, 100).await.unwrap();
    assert_eq!(
        all.iter().map(|e| e.id).collect::<Vec<_>>(),
        (1..=7).collect::<Vec<_>>()
    );
    assert_eq!(
        store.event_log_bounds().await.unwrap(),
        EventLogBounds {
            pruned_through: 0,
            head: 7
        }
    );
}

/// Pruning deletes the oldest events only, keeps the log one contiguous range and says how
/// far it went; ids never repeat after it.
pub async fn events_prune_oldest_first(store: &dyn Storage) {
    let event = |n: u32| NewEvent {
        company_id: None,
        kind: EventKind::KnowledgeUpdated,
        data: serde_json::json!({"revision": n.to_string()})
            .as_object()
            .unwrap()
            .clone(),
    };
    let now = Utc::now();
    let old = now - chrono::Duration::hours(3);
    let old_events: Vec<NewEvent> = (0..5).map(event).collect();
    store.append_events(&old_events, old).await.unwrap();
    store
        .append_events(&[event(5), event(6)], now)
        .await
        .unwrap();
    // An old one after a new one stays: the log is pruned from its start only.
    store.append_events(&[event(7)], old).await.unwrap();
    assert_eq!(
        store
            .prune_events(now - chrono::Duration::hours(1))
            .await
            .unwrap(),
        5
    );
    assert_eq!(
        store.event_log_bounds().await.unwrap(),
        EventLogBounds {
            pruned_through: 5,
            head: 8
        }
    );
    let left = store.events_after(None, 0, 100).await.unwrap();
    assert_eq!(left.iter().map(|e| e.id).collect::<Vec<_>>(), [6, 7, 8]);
    assert_eq!(
        store
            .prune_events(now - chrono::Duration::hours(1))
            .await
            .unwrap(),
        0
    );
    assert_eq!(store.append_events(&[event(8)], now).await.unwrap(), 9);
}

/// Writers in parallel (several workers, enrollments) get distinct ids without gaps, and
/// a reader that has read up to some id has read every id below it.
pub async fn concurrent_event_writers_get_contiguous_ids(store: &dyn Storage) {
    let acme = company(store, "Acme", 95).await;
    let mut tasks = Vec::new();
    for w in 0..6u8 {
        let events: Vec<NewEvent> = (0..3)
            .map(|i| NewEvent {
                company_id: Some(acme),
                kind: EventKind::KnowledgeUpdated,
                data: serde_json::json!({"writer": w, "i": i})
                    .as_object()
                    .unwrap()
                    .clone(),
            })
            .collect();
        tasks.push(async move {
            for _ in 0..5 {
                store.append_events(&events, Utc::now()).await.unwrap();
            }
        });
    }
    futures::future::join_all(tasks).await;
    let ids: BTreeSet<u64> = store
        .events_after(Some(acme), 0, 1000)
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(ids, (1..=90).collect::<BTreeSet<u64>>());
}

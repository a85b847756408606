//! Notifications (issue 14): rules, the outbox written with the findings that cause it (one
//! message per rule and vulnerability, the host count summed while unsent, digests), the
//! claim with its lease, the delivery log, `report.failed` and `agent.stale`.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use uuid::Uuid;
use zt_advisory::Severity;
use zt_store::model::*;
use zt_store::notify::*;
use zt_store::{AnyStore, Storage};

use super::{agent, app, claim, company, incoming, lodash_matcher, process_together};

fn rule(
    company_id: CompanyId,
    name: &str,
    events: &[&str],
    min: Option<Severity>,
    digest: u32,
) -> NotificationRule {
    NotificationRule {
        rule_id: Uuid::now_v7(),
        company_id,
        name: name.into(),
        events: events.iter().map(|e| e.to_string()).collect(),
        min_severity: min,
        kev_only: false,
        tags: vec![],
        digest_minutes: digest,
        stale_days: 7,
        destination: RuleDestination {
            kind: "webhook".into(),
            url: Some(format!("https://hooks.example.com/{name}")),
            to: vec![],
        },
        secret_sealed: Some("v1:sealed".into()),
        created_at: Utc::now(),
        updated_at: Utc::now(),
    }
}

/// Messages claimed per rule name: (vulnerability or subject → host count).
fn by_rule(claimed: &[ClaimedNotification]) -> BTreeMap<String, BTreeMap<String, u64>> {
    let mut out: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for c in claimed {
        let items: Vec<serde_json::Map<String, serde_json::Value>> = match c.data.get("items") {
            Some(serde_json::Value::Array(a)) => {
                a.iter().filter_map(|v| v.as_object().cloned()).collect()
            }
            _ => vec![c.data.clone()],
        };
        for i in items {
            let id = i
                .get("vuln_id")
                .or_else(|| i.get("report_id"))
                .or_else(|| i.get("agent_id"))
                .and_then(|v| v.as_str())
                .unwrap_or("?")
                .to_string();
            out.entry(c.rule.name.clone()).or_default().insert(
                id,
                i.get("host_count").and_then(|h| h.as_u64()).unwrap_or(0),
            );
        }
    }
    out
}

pub async fn notification_rules_round_trip_per_company(store: &dyn Storage) {
    let n = store.notifications();
    let acme = company(store, "Acme", 110).await;
    let beta = company(store, "Beta", 111).await;
    let mut r = rule(
        acme,
        "soc",
        &["finding.opened", "finding.kev"],
        Some(Severity::High),
        0,
    );
    r.tags = vec!["prod".into()];
    r.destination = RuleDestination {
        kind: "email".into(),
        url: None,
        to: vec!["a@example.org".into()],
    };
    assert!(n.create_rule(&r).await.unwrap());
    assert!(
        !n.create_rule(&rule(
            CompanyId::new_v4(),
            "x",
            &["finding.opened"],
            None,
            0
        ))
        .await
        .unwrap(),
        "no such company"
    );
    let got = n.get_rule(acme, r.rule_id).await.unwrap().unwrap();
    assert_eq!(
        (
            got.name.as_str(),
            got.events.clone(),
            got.min_severity,
            got.tags.clone(),
            got.destination.clone(),
            got.secret_sealed.clone()
        ),
        (
            r.name.as_str(),
            r.events.clone(),
            r.min_severity,
            r.tags.clone(),
            r.destination.clone(),
            r.secret_sealed.clone()
        )
    );
    assert_eq!(
        got.created_at.timestamp_millis(),
        r.created_at.timestamp_millis()
    );
    // Another company sees nothing of it.
    assert_eq!(n.get_rule(beta, r.rule_id).await.unwrap(), None);
    assert!(n.list_rules(beta).await.unwrap().is_empty());
    let mut foreign = got.clone();
    foreign.company_id = beta;
    assert!(!n.update_rule(&foreign).await.unwrap());
    assert!(!n.delete_rule(beta, r.rule_id).await.unwrap());
    let mut changed = got.clone();
    changed.name = "renamed".into();
    changed.min_severity = None;
    changed.digest_minutes = 30;
    assert!(n.update_rule(&changed).await.unwrap());
    let listed = n.list_rules(acme).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (
            listed[0].name.as_str(),
            listed[0].min_severity,
            listed[0].digest_minutes
        ),
        ("renamed", None, 30)
    );
    assert!(n.delete_rule(acme, r.rule_id).await.unwrap());
    assert!(!n.delete_rule(acme, r.rule_id).await.unwrap());
    assert!(n.list_rules(acme).await.unwrap().is_empty());
}

pub async fn notifications_one_per_rule_and_vulnerability_with_leases(store: &dyn Storage) {
    let n = store.notifications();
    let acme = company(store, "Acme", 120).await;
    let beta = company(store, "Beta", 121).await;
    let all = rule(acme, "all", &["finding.opened"], None, 0);
    let high = rule(acme, "high", &["finding.opened"], Some(Severity::High), 0);
    let digest = rule(acme, "digest", &["finding.opened"], None, 15);
    let kev = rule(acme, "kev", &["finding.kev"], None, 0);
    let other = rule(beta, "beta", &["finding.opened"], None, 0);
    for r in [&all, &high, &digest, &kev, &other] {
        assert!(n.create_rule(r).await.unwrap());
    }
    // Two hosts open the same three vulnerabilities in one batch.
    let apps = vec![app("lodash", "4.17.15"), app("minimist", "0.0.8")];
    let t = Utc::now();
    let a1 = agent(store, acme, "web-1", 122).await;
    let a2 = agent(store, acme, "web-2", 123).await;
    let reports = [incoming(acme, a1, &apps, t), incoming(acme, a2, &apps, t)];
    store.accept_reports(&reports, 100).await.unwrap();
    let got = store
        .claim_batch(&claim("w", 1000, Duration::from_secs(60), 3, Utc::now()))
        .await
        .unwrap();
    assert_eq!(got.len(), 2);
    process_together(
        store,
        &[(&got[0], &apps, t), (&got[1], &apps, t)],
        "w",
        &lodash_matcher,
    )
    .await;

    let lease = Duration::from_secs(30);
    let now = Utc::now();
    let claimed = n.claim_notifications("d1", now, lease, 100).await.unwrap();
    let seen = by_rule(&claimed);
    let two = |ids: &[&str]| {
        ids.iter()
            .map(|i| (i.to_string(), 2u64))
            .collect::<BTreeMap<_, _>>()
    };
    assert_eq!(
        seen.get("all"),
        Some(&two(&["CVE-2020-7598", "CVE-2020-8203", "CVE-2021-23337"])),
        "{seen:?}"
    );
    assert_eq!(
        seen.get("high"),
        Some(&two(&["CVE-2020-8203", "CVE-2021-23337"]))
    );
    assert_eq!(seen.get("digest"), None, "a digest waits for its interval");
    assert_eq!(seen.get("kev"), None, "nothing here is KEV");
    assert_eq!(
        seen.get("beta"),
        None,
        "another company's rule hears nothing"
    );
    assert_eq!(
        claimed.len(),
        5,
        "one message per rule and vulnerability, not per host"
    );
    assert!(claimed
        .iter()
        .all(|c| c.attempt == 1 && c.company_id == acme && c.event == "finding.opened"));
    assert_eq!(
        n.outbox_stats().await.unwrap().backlog,
        6,
        "5 leased, 1 digest pending"
    );
    // Leased: no other dispatcher gets them.
    assert!(n
        .claim_notifications("d2", now, lease, 100)
        .await
        .unwrap()
        .is_empty());

    // Outcomes: sent, retried, dead; a stranger's finish changes nothing.
    let rec = |status: Option<u16>, error: Option<&str>| AttemptRecord {
        attempted_at: Utc::now(),
        status,
        response_excerpt: Some("é".repeat(400)),
        error: error.map(String::from),
        duration_ms: 12,
    };
    let mut stranger = claimed[0].clone();
    stranger.owner = "d2".into();
    assert!(!n
        .finish_notification(&stranger, &rec(Some(200), None), DeliveryOutcome::Sent)
        .await
        .unwrap());
    assert!(n
        .finish_notification(&claimed[0], &rec(Some(200), None), DeliveryOutcome::Sent)
        .await
        .unwrap());
    let retry_at = now + chrono::Duration::seconds(5);
    assert!(n
        .finish_notification(
            &claimed[1],
            &rec(Some(500), Some("500")),
            DeliveryOutcome::Retry(retry_at)
        )
        .await
        .unwrap());
    assert!(n
        .finish_notification(
            &claimed[2],
            &rec(None, Some("timeout")),
            DeliveryOutcome::Dead
        )
        .await
        .unwrap());
    assert!(
        !n.finish_notification(&claimed[0], &rec(Some(200), None), DeliveryOutcome::Sent)
            .await
            .unwrap(),
        "finished once"
    );
    let log = n.list_deliveries(acme, None, None, 100).await.unwrap();
    assert_eq!(
        log.iter().map(|d| d.outcome.as_str()).collect::<Vec<_>>(),
        ["dead", "retry", "sent"],
        "newest first"
    );
    assert!(log
        .iter()
        .all(|d| d.attempt_record.response_excerpt.as_ref().unwrap().len() <= 512));
    assert_eq!(
        log[1].next_attempt_at.map(|t| t.timestamp_millis()),
        Some(retry_at.timestamp_millis())
    );
    assert_eq!(log[1].delivery_id, claimed[1].delivery_id);
    assert!(n
        .list_deliveries(beta, None, None, 100)
        .await
        .unwrap()
        .is_empty());
    let page = n
        .list_deliveries(acme, Some(claimed[0].rule.rule_id), None, 100)
        .await
        .unwrap();
    assert!(page.iter().all(|d| d.rule_id == claimed[0].rule.rule_id));
    let older = n
        .list_deliveries(acme, None, Some(log[0].seq), 100)
        .await
        .unwrap();
    assert_eq!(older.len(), 2);

    // The retry comes back when due, with its delivery id and the next attempt number.
    assert!(n
        .claim_notifications("d1", now, lease, 100)
        .await
        .unwrap()
        .is_empty());
    let again = n
        .claim_notifications("d1", retry_at, lease, 100)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(
        (
            again[0].delivery_id,
            again[0].attempt,
            again[0].data.clone()
        ),
        (claimed[1].delivery_id, 2, claimed[1].data.clone())
    );
    // An expired lease (its dispatcher died) is taken over.
    let later = now + chrono::Duration::seconds(31);
    let taken = n
        .claim_notifications("d3", later, lease, 100)
        .await
        .unwrap();
    assert_eq!(taken.len(), 2, "the two never finished: {taken:?}");
    assert!(taken.iter().all(|t| t.attempt == 2 && t.owner == "d3"));
    assert!(
        !n.finish_notification(&claimed[3], &rec(Some(200), None), DeliveryOutcome::Sent)
            .await
            .unwrap(),
        "the old owner lost it"
    );

    // A third host opens the same vulnerabilities: told already, no new message; the
    // pending digest counts it.
    let a3 = agent(store, acme, "web-3", 124).await;
    let r3 = incoming(acme, a3, &apps, Utc::now());
    store
        .accept_reports(std::slice::from_ref(&r3), 100)
        .await
        .unwrap();
    let got = store
        .claim_batch(&claim("w", 1000, Duration::from_secs(60), 3, Utc::now()))
        .await
        .unwrap();
    process_together(store, &[(&got[0], &apps, t)], "w", &lodash_matcher).await;
    let digest_due = Utc::now() + chrono::Duration::minutes(16);
    let fresh = n
        .claim_notifications("d1", digest_due - chrono::Duration::minutes(2), lease, 100)
        .await
        .unwrap();
    assert!(
        fresh
            .iter()
            .all(|c| c.rule.name != "all" && c.rule.name != "high" || c.attempt > 1),
        "no new message for a vulnerability told already: {fresh:?}"
    );
    let digests: Vec<ClaimedNotification> = n
        .claim_notifications("d1", digest_due, lease, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.rule.name == "digest")
        .collect();
    assert_eq!(digests.len(), 1);
    let three = |ids: &[&str]| {
        ids.iter()
            .map(|i| (i.to_string(), 3u64))
            .collect::<BTreeMap<_, _>>()
    };
    assert_eq!(
        by_rule(&digests).get("digest"),
        Some(&three(&[
            "CVE-2020-7598",
            "CVE-2020-8203",
            "CVE-2021-23337"
        ]))
    );

    // Deleting a rule drops its unsent messages.
    assert!(n.delete_rule(acme, digest.rule_id).await.unwrap());
    let stats = n.outbox_stats().await.unwrap();
    assert!(stats.backlog >= 1 && stats.oldest.is_some());
    // Retention: the two finished messages (sent, dead) and the three logged attempts.
    assert_eq!(
        n.purge_notifications(Utc::now() + chrono::Duration::days(1))
            .await
            .unwrap(),
        5
    );
}

pub async fn notifications_of_failed_reports_and_stale_agents(store: &dyn Storage) {
    let n = store.notifications();
    let acme = company(store, "Acme", 130).await;
    let ops = rule(
        acme,
        "ops",
        &["report.failed", "agent.stale"],
        Some(Severity::Critical),
        0,
    );
    assert!(n.create_rule(&ops).await.unwrap());
    let a = agent(store, acme, "db-1", 131).await;
    let r = incoming(acme, a, &[app("x", "1")], Utc::now());
    store
        .accept_reports(std::slice::from_ref(&r), 10)
        .await
        .unwrap();
    let now = Utc::now();
    let got = store
        .claim_batch(&claim("w", 100, Duration::from_secs(60), 1, now))
        .await
        .unwrap();
    store
        .fail(
            &[Failure {
                lease: LeaseRef {
                    queue_id: got[0].queue_id,
                    owner: "w".into(),
                    attempts: got[0].attempts,
                },
                error: "cannot parse".into(),
                retry_at: None,
            }],
            now,
        )
        .await
        .unwrap();
    let claimed = n
        .claim_notifications("d", Utc::now(), Duration::from_secs(30), 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1, "{claimed:?}");
    assert_eq!(claimed[0].event, "report.failed");
    assert_eq!(claimed[0].data["report_id"], r.report_id.to_string());
    assert_eq!(claimed[0].data["hostname"], "db-1");
    assert_eq!(claimed[0].data["error"], "cannot parse");

    // Not seen for 8 days (the rule says 7): one message per silence, however often scanned.
    let later = Utc::now() + chrono::Duration::days(8);
    assert_eq!(n.scan_stale_agents(Utc::now()).await.unwrap(), 0);
    assert!(n.scan_stale_agents(later).await.unwrap() >= 1);
    n.scan_stale_agents(later).await.unwrap();
    let stale = n
        .claim_notifications("d", later, Duration::from_secs(30), 10)
        .await
        .unwrap();
    let stale: Vec<_> = stale
        .into_iter()
        .filter(|c| c.event == "agent.stale")
        .collect();
    assert_eq!(stale.len(), 1, "{stale:?}");
    assert_eq!(stale[0].data["agent_id"], a.to_string());
    assert_eq!(stale[0].data["hostname"], "db-1");

    // A request of another part of the server (e.g. SLA): once per subject and rule.
    let sla = rule(acme, "sla", &["sla.overdue"], Some(Severity::High), 0);
    assert!(n.create_rule(&sla).await.unwrap());
    let req = |sev| NotificationRequest {
        company_id: acme,
        event: "sla.overdue".into(),
        subject: "CVE-2020-8203".into(),
        severity: Some(sev),
        kev: false,
        hosts: 4,
        data: serde_json::json!({"vuln_id": "CVE-2020-8203", "severity": "high"})
            .as_object()
            .cloned()
            .unwrap(),
    };
    n.enqueue_notifications(&[req(Severity::High)], later)
        .await
        .unwrap();
    n.enqueue_notifications(&[req(Severity::High)], later)
        .await
        .unwrap();
    let mut low = req(Severity::Low);
    low.subject = "CVE-low".into();
    n.enqueue_notifications(&[low], later).await.unwrap();
    let sla_msgs: Vec<_> = n
        .claim_notifications("d", later, Duration::from_secs(30), 10)
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.event == "sla.overdue")
        .collect();
    assert_eq!(sla_msgs.len(), 1);
    assert_eq!(sla_msgs[0].data["host_count"], 4);
}

fn system(at: chrono::DateTime<Utc>) -> zt_store::analysis::ChangeContext {
    zt_store::analysis::ChangeContext {
        actor: zt_store::analysis::Actor {
            kind: "user".into(),
            token_id: Some("00aa00aa00aa00aa".into()),
            role: Some("admin".into()),
        },
        at,
        comment: None,
    }
}

fn suppressing(
    vuln: &str,
    expires_at: Option<chrono::DateTime<Utc>>,
) -> zt_store::analysis::NewAnalysis {
    use zt_store::analysis::*;
    NewAnalysis {
        analysis_id: Uuid::now_v7(),
        vuln_id: vuln.into(),
        decision: AnalysisDecision {
            scope: AnalysisScope::default(),
            state: AnalysisState::NotAffected,
            justification: Some(Justification::CodeNotPresent),
            response: vec![],
            details: None,
            suppress: true,
            expires_at,
        },
        source: None,
    }
}

fn npm(name: &str, version: &str) -> zt_inventory::App {
    super::super::common::npm(name, version)
}

/// Every message due at `at`, claimed and recorded as sent (so each once).
async fn due(n: &dyn NotificationStore, at: chrono::DateTime<Utc>) -> Vec<ClaimedNotification> {
    let claimed = n
        .claim_notifications("d", at, Duration::from_secs(30), 1000)
        .await
        .unwrap();
    let done: Vec<FinishedAttempt> = claimed
        .iter()
        .map(|c| FinishedAttempt {
            claimed: c.clone(),
            attempt: AttemptRecord {
                attempted_at: at,
                status: Some(200),
                ..Default::default()
            },
            outcome: DeliveryOutcome::Sent,
        })
        .collect();
    assert!(n
        .finish_notifications(&done)
        .await
        .unwrap()
        .iter()
        .all(|ok| *ok));
    claimed
}

/// (event, vulnerability or subject) → host count of the messages of one rule.
fn of_rule(claimed: &[ClaimedNotification], name: &str) -> BTreeMap<(String, String), u64> {
    let mut out = BTreeMap::new();
    for c in claimed.iter().filter(|c| c.rule.name == name) {
        let id = c
            .data
            .get("vuln_id")
            .or_else(|| c.data.get("source"))
            .and_then(|v| v.as_str())
            .unwrap_or("?")
            .to_string();
        let hosts = c
            .data
            .get("host_count")
            .and_then(|h| h.as_u64())
            .unwrap_or(0);
        assert!(
            out.insert((c.event.clone(), id.clone()), hosts).is_none(),
            "{name}: a second message about {id}: {claimed:?}"
        );
    }
    out
}

fn msgs(items: &[(&str, &str, u64)]) -> BTreeMap<(String, String), u64> {
    items
        .iter()
        .map(|(e, v, h)| ((e.to_string(), v.to_string()), *h))
        .collect()
}

/// Suppressed findings never notify; a rule with host tags hears of its hosts only, with
/// their count.
pub async fn notifications_leave_out_suppressed_findings_and_follow_host_tags(any: &AnyStore) {
    use super::dashboard::{debian, report};
    let storage = any.storage();
    let store: &dyn Storage = &*storage;
    let n = store.notifications();
    let acme = company(store, "Acme", 140).await;
    let web = agent(store, acme, "web-1", 141).await;
    let db = agent(store, acme, "db-2", 142).await;
    let app3 = agent(store, acme, "app-3", 143).await;
    let t = Utc::now() - chrono::Duration::seconds(60);
    // Before any rule: web-1 has lodash (CVE-2020-8203, CVE-2021-23337).
    report(
        store,
        acme,
        web,
        ("web-1", &debian()),
        &[npm("lodash", "4.17.15")],
        t,
    )
    .await;
    let now = Utc::now();
    store
        .create_analysis(acme, &suppressing("CVE-2021-23337", None), &system(now))
        .await
        .unwrap();
    let mut prod = rule(acme, "prod", &["finding.opened"], None, 0);
    prod.tags = vec!["prod".into()];
    for r in [rule(acme, "all", &["finding.opened"], None, 0), prod] {
        assert!(n.create_rule(&r).await.unwrap());
    }
    store
        .set_agent_tags(acme, db, &["prod".to_string()], &system(now))
        .await
        .unwrap()
        .unwrap();
    report(
        store,
        acme,
        db,
        ("db-2", &debian()),
        &[npm("lodash", "4.17.15"), npm("event-stream", "3.3.6")],
        t,
    )
    .await;
    report(
        store,
        acme,
        app3,
        ("app-3", &debian()),
        &[npm("event-stream", "3.3.6")],
        t,
    )
    .await;
    let claimed = due(n, Utc::now()).await;
    assert_eq!(
        of_rule(&claimed, "all"),
        msgs(&[
            ("finding.opened", "CVE-2018-1002204", 2),
            ("finding.opened", "CVE-2020-8203", 2),
        ]),
        "CVE-2021-23337 is suppressed: never a message"
    );
    assert_eq!(
        of_rule(&claimed, "prod"),
        msgs(&[
            ("finding.opened", "CVE-2018-1002204", 1),
            ("finding.opened", "CVE-2020-8203", 1),
        ]),
        "only db-2 carries the tag"
    );
    // A rule created now hears of a vulnerability the others were told of, the others do
    // not hear of it again.
    assert!(n
        .create_rule(&rule(acme, "late", &["finding.opened"], None, 0))
        .await
        .unwrap());
    let ops = agent(store, acme, "ops-4", 144).await;
    report(
        store,
        acme,
        ops,
        ("ops-4", &debian()),
        &[npm("lodash", "4.17.15")],
        t,
    )
    .await;
    let claimed = due(n, Utc::now()).await;
    assert_eq!(
        claimed
            .iter()
            .map(|c| c.rule.name.as_str())
            .collect::<Vec<_>>(),
        ["late"],
        "{claimed:?}"
    );
    assert_eq!(
        of_rule(&claimed, "late"),
        msgs(&[("finding.opened", "CVE-2020-8203", 3)])
    );
}

/// `sla.due_soon` and `sla.overdue`: each finding is told once per crossing, one message per
/// rule and vulnerability per pass, suppressed findings never; two passes at once mark each
/// finding once.
pub async fn notifications_of_sla_crossings_once_per_finding(any: &AnyStore) {
    use super::dashboard::{debian, report};
    let storage = any.storage();
    let store: &dyn Storage = &*storage;
    let n = store.notifications();
    let acme = company(store, "Acme", 150).await;
    let beta = company(store, "Beta", 151).await;
    let web = agent(store, acme, "web-1", 152).await;
    let db = agent(store, acme, "db-2", 153).await;
    let other = agent(store, beta, "beta-1", 154).await;
    assert!(n
        .create_rule(&rule(
            acme,
            "sla",
            &["sla.due_soon", "sla.overdue"],
            None,
            0
        ))
        .await
        .unwrap());
    let t = Utc::now();
    // web-1: CVE-2020-8203 and CVE-2021-23337 (high, 30 days), CVE-2020-7598 (medium, 90);
    // db-2: CVE-2018-1002204 (critical, 7 days) and lodash's two.
    report(
        store,
        acme,
        web,
        ("web-1", &debian()),
        &[npm("lodash", "4.17.15"), npm("minimist", "0.0.8")],
        t,
    )
    .await;
    report(
        store,
        acme,
        db,
        ("db-2", &debian()),
        &[npm("lodash", "4.17.15"), npm("event-stream", "3.3.6")],
        t,
    )
    .await;
    report(
        store,
        beta,
        other,
        ("beta-1", &debian()),
        &[npm("event-stream", "3.3.6")],
        t,
    )
    .await;
    let now = Utc::now();
    let day = |d: i64| now + chrono::Duration::days(d);

    // Now: the critical one is due within 7 days.
    assert_eq!(n.scan_sla(now).await.unwrap(), 1);
    assert_eq!(n.scan_sla(now).await.unwrap(), 0, "told once");
    assert_eq!(
        of_rule(&due(n, now).await, "sla"),
        msgs(&[("sla.due_soon", "CVE-2018-1002204", 1)])
    );
    // Day 8: it is overdue; nothing else is due yet.
    assert_eq!(n.scan_sla(day(8)).await.unwrap(), 1);
    assert_eq!(
        of_rule(&due(n, day(8)).await, "sla"),
        msgs(&[("sla.overdue", "CVE-2018-1002204", 1)])
    );
    // Day 25: lodash's two on both hosts are due within 7 days: one message per vulnerability.
    assert_eq!(n.scan_sla(day(25)).await.unwrap(), 4);
    assert_eq!(
        of_rule(&due(n, day(25)).await, "sla"),
        msgs(&[
            ("sla.due_soon", "CVE-2020-8203", 2),
            ("sla.due_soon", "CVE-2021-23337", 2),
        ])
    );
    // CVE-2021-23337 is suppressed before it is overdue: it never says so.
    store
        .create_analysis(acme, &suppressing("CVE-2021-23337", None), &system(now))
        .await
        .unwrap();
    // Day 100, two passes at once (two processes): CVE-2020-8203 on two hosts and the medium
    // one (never "due soon": it went straight past its date) are marked once.
    let (a, b) = tokio::join!(n.scan_sla(day(100)), n.scan_sla(day(100)));
    assert_eq!(a.unwrap() + b.unwrap(), 3);
    assert_eq!(
        of_rule(&due(n, day(100)).await, "sla"),
        msgs(&[
            ("sla.overdue", "CVE-2020-7598", 1),
            ("sla.overdue", "CVE-2020-8203", 2),
        ])
    );
    assert_eq!(n.scan_sla(day(200)).await.unwrap(), 0);
    assert!(due(n, day(200)).await.is_empty(), "Beta has no rule");
}

/// `analysis.expired` when an expiry is applied; `feed.stale` once per silence of a source.
pub async fn notifications_of_expired_analyses_and_stale_feeds(any: &AnyStore) {
    use super::dashboard::{debian, report};
    let storage = any.storage();
    let store: &dyn Storage = &*storage;
    let n = store.notifications();
    let acme = company(store, "Acme", 160).await;
    let beta = company(store, "Beta", 161).await;
    let web = agent(store, acme, "web-1", 162).await;
    assert!(n
        .create_rule(&rule(
            acme,
            "ops",
            &["analysis.expired", "feed.stale"],
            Some(Severity::High),
            0
        ))
        .await
        .unwrap());
    assert!(n
        .create_rule(&rule(beta, "beta", &["finding.opened"], None, 0))
        .await
        .unwrap());
    report(
        store,
        acme,
        web,
        ("web-1", &debian()),
        &[npm("lodash", "4.17.15")],
        Utc::now(),
    )
    .await;
    let now = Utc::now();
    let a = store
        .create_analysis(
            acme,
            &suppressing("CVE-2020-8203", Some(now + chrono::Duration::hours(1))),
            &system(now),
        )
        .await
        .unwrap();
    let later = now + chrono::Duration::hours(2);
    assert_eq!(store.expire_analyses(later).await.unwrap(), 1);
    assert_eq!(store.expire_analyses(later).await.unwrap(), 0);
    let claimed = due(n, later).await;
    assert_eq!(
        of_rule(&claimed, "ops"),
        msgs(&[("analysis.expired", "CVE-2020-8203", 1)])
    );
    let expired = claimed
        .iter()
        .find(|c| c.event == "analysis.expired")
        .unwrap();
    assert_eq!(expired.data["analysis_id"], a.analysis_id.to_string());
    assert_eq!(expired.data["severity"], "high");

    // A source last synced three days ago is stale after 48 hours: once, however often
    // scanned; a success and a new silence are news again.
    let stale_after = chrono::Duration::hours(48);
    let mut osv = zt_store::knowledge::FeedState {
        feed: "osv:npm".into(),
        last_attempt_at: Some(later),
        last_success_at: Some(later - chrono::Duration::days(3)),
        ..Default::default()
    };
    store.save_feed_state(&osv).await.unwrap();
    n.scan_stale_feeds(later, stale_after).await.unwrap();
    n.scan_stale_feeds(later, stale_after).await.unwrap();
    let claimed = due(n, later).await;
    assert_eq!(
        of_rule(&claimed, "ops"),
        msgs(&[("feed.stale", "osv:npm", 0)])
    );
    assert!(
        claimed.iter().all(|c| c.company_id == acme),
        "Beta's rule does not name it"
    );
    osv.last_success_at = Some(later);
    store.save_feed_state(&osv).await.unwrap();
    n.scan_stale_feeds(later, stale_after).await.unwrap();
    assert!(due(n, later).await.is_empty());
    let much_later = later + chrono::Duration::days(3);
    n.scan_stale_feeds(much_later, stale_after).await.unwrap();
    assert_eq!(
        of_rule(&due(n, much_later).await, "ops"),
        msgs(&[("feed.stale", "osv:npm", 0)])
    );
}

/// A claim leaves the messages of a rule at its in-flight limit to the others.
pub async fn notification_claims_leave_a_busy_destination_alone(any: &AnyStore) {
    use super::dashboard::{debian, report};
    let storage = any.storage();
    let store: &dyn Storage = &*storage;
    let n = store.notifications();
    let acme = company(store, "Acme", 170).await;
    let web = agent(store, acme, "web-1", 171).await;
    let down = rule(acme, "down", &["finding.opened"], None, 0);
    let up = rule(acme, "up", &["finding.opened"], None, 0);
    for r in [&down, &up] {
        assert!(n.create_rule(r).await.unwrap());
    }
    report(
        store,
        acme,
        web,
        ("web-1", &debian()),
        &[npm("lodash", "4.17.15"), npm("minimist", "0.0.8")],
        Utc::now(),
    )
    .await;
    let limits = ClaimLimits {
        total: 10,
        per_rule: 2,
        in_flight: [(down.rule_id, 2)].into(),
    };
    let got = n
        .claim_notifications_within("d", Utc::now(), Duration::from_secs(30), &limits)
        .await
        .unwrap();
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got.iter().all(|c| c.rule.rule_id == up.rule_id));
    let limits = ClaimLimits {
        total: 10,
        per_rule: 2,
        in_flight: [(down.rule_id, 1)].into(),
    };
    let got = n
        .claim_notifications_within("d", Utc::now(), Duration::from_secs(30), &limits)
        .await
        .unwrap();
    assert_eq!(
        got.iter().map(|c| c.rule.name.as_str()).collect::<Vec<_>>(),
        ["down", "up"],
        "one more of the busy rule, the last of the other"
    );
}

/// A finding resolved and back is a finding again: its SLA crossings are news once more
/// (the reopen clears what it was told), while findings that stayed open are not told twice.
pub async fn notifications_of_sla_crossings_again_after_a_reopen(any: &AnyStore) {
    use super::dashboard::{debian, report};
    let storage = any.storage();
    let store: &dyn Storage = &*storage;
    let n = store.notifications();
    let acme = company(store, "Acme", 180).await;
    let web = agent(store, acme, "web-1", 181).await;
    let db = agent(store, acme, "db-2", 182).await;
    assert!(n
        .create_rule(&rule(acme, "sla", &["sla.overdue"], None, 0))
        .await
        .unwrap());
    let t = Utc::now();
    let later = |s: i64| t + chrono::Duration::seconds(s);
    // lodash: CVE-2020-8203 and CVE-2021-23337, high (30 days), on both hosts.
    for (a, h) in [(web, "web-1"), (db, "db-2")] {
        report(
            store,
            acme,
            a,
            (h, &debian()),
            &[npm("lodash", "4.17.15")],
            t,
        )
        .await;
    }
    let day = |d: i64| t + chrono::Duration::days(d);
    assert_eq!(n.scan_sla(day(40)).await.unwrap(), 4);
    assert_eq!(
        of_rule(&due(n, day(40)).await, "sla"),
        msgs(&[
            ("sla.overdue", "CVE-2020-8203", 2),
            ("sla.overdue", "CVE-2021-23337", 2),
        ])
    );
    // web-1 drops lodash (its findings resolve) and installs it again (they reopen).
    report(
        store,
        acme,
        web,
        ("web-1", &debian()),
        &[npm("minimist", "0.0.8")],
        later(1),
    )
    .await;
    assert_eq!(
        n.scan_sla(day(41)).await.unwrap(),
        0,
        "resolved: nothing due"
    );
    report(
        store,
        acme,
        web,
        ("web-1", &debian()),
        &[npm("lodash", "4.17.15"), npm("minimist", "0.0.8")],
        later(2),
    )
    .await;
    // The reopened findings are overdue again and told so; db-2's, open all along, are not
    // told twice; minimist's (medium, 90 days) are not due yet.
    assert_eq!(n.scan_sla(day(42)).await.unwrap(), 2);
    assert_eq!(
        of_rule(&due(n, day(42)).await, "sla"),
        msgs(&[
            ("sla.overdue", "CVE-2020-8203", 1),
            ("sla.overdue", "CVE-2021-23337", 1),
        ])
    );
    assert_eq!(n.scan_sla(day(43)).await.unwrap(), 0, "told once again");
}

/// The de-duplication subjects of vulnerabilities no longer open are pruned; a vulnerability
/// that comes back after its subject went is still no second message to a rule told of it,
/// and a rule that was not told hears of it.
pub async fn notification_subjects_are_pruned_without_a_second_message(any: &AnyStore) {
    use super::dashboard::{debian, report};
    let storage = any.storage();
    let store: &dyn Storage = &*storage;
    let n = store.notifications();
    let acme = company(store, "Acme", 190).await;
    let beta = company(store, "Beta", 191).await;
    let web = agent(store, acme, "web-1", 192).await;
    let db = agent(store, acme, "db-2", 193).await;
    let other = agent(store, beta, "beta-1", 194).await;
    for r in [
        rule(acme, "all", &["finding.opened"], None, 0),
        rule(beta, "beta", &["finding.opened"], None, 0),
    ] {
        assert!(n.create_rule(&r).await.unwrap());
    }
    let t = Utc::now();
    let later = |s: i64| t + chrono::Duration::seconds(s);
    report(
        store,
        acme,
        web,
        ("web-1", &debian()),
        &[npm("lodash", "4.17.15"), npm("minimist", "0.0.8")],
        t,
    )
    .await;
    report(
        store,
        beta,
        other,
        ("beta-1", &debian()),
        &[npm("lodash", "4.17.15")],
        t,
    )
    .await;
    let first = due(n, Utc::now()).await;
    assert_eq!(
        of_rule(&first, "all"),
        msgs(&[
            ("finding.opened", "CVE-2020-7598", 1),
            ("finding.opened", "CVE-2020-8203", 1),
            ("finding.opened", "CVE-2021-23337", 1),
        ])
    );
    assert_eq!(of_rule(&first, "beta").len(), 2);
    assert_eq!(
        n.prune_notification_subjects().await.unwrap(),
        0,
        "every subject is open"
    );
    // web-1 drops lodash: Acme has lodash's two no more, Beta still has them.
    report(
        store,
        acme,
        web,
        ("web-1", &debian()),
        &[npm("minimist", "0.0.8")],
        later(1),
    )
    .await;
    assert_eq!(n.prune_notification_subjects().await.unwrap(), 2);
    assert_eq!(n.prune_notification_subjects().await.unwrap(), 0);
    // lodash comes back on another host: "all" was told of it, no second message; a rule
    // created since hears of it.
    assert!(n
        .create_rule(&rule(acme, "late", &["finding.opened"], None, 0))
        .await
        .unwrap());
    report(
        store,
        acme,
        db,
        ("db-2", &debian()),
        &[npm("lodash", "4.17.15")],
        later(2),
    )
    .await;
    let again = due(n, Utc::now()).await;
    assert_eq!(of_rule(&again, "all"), msgs(&[]), "{again:?}");
    assert_eq!(
        of_rule(&again, "late"),
        msgs(&[
            ("finding.opened", "CVE-2020-8203", 1),
            ("finding.opened", "CVE-2021-23337", 1),
        ])
    );
    assert_eq!(again.len(), 2, "{again:?}");
    // Recorded again, open again: kept.
    assert_eq!(n.prune_notification_subjects().await.unwrap(), 0);
    // The same once more after a second prune: the keys alone keep it to one message.
    // (db-2 opens minimist's CVE-2020-7598 meanwhile: news to "late" only.)
    report(
        store,
        acme,
        db,
        ("db-2", &debian()),
        &[npm("minimist", "0.0.8")],
        later(3),
    )
    .await;
    assert_eq!(n.prune_notification_subjects().await.unwrap(), 2);
    report(
        store,
        acme,
        web,
        ("web-1", &debian()),
        &[npm("lodash", "4.17.15"), npm("minimist", "0.0.8")],
        later(4),
    )
    .await;
    let last = due(n, Utc::now()).await;
    assert_eq!(
        of_rule(&last, "late"),
        msgs(&[("finding.opened", "CVE-2020-7598", 2)]),
        "{last:?}"
    );
    assert_eq!(last.len(), 1, "lodash again is no message: {last:?}");
}

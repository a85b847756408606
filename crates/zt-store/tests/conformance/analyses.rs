//! Analyses (issue 13) on the dashboard's test fleet: which findings an analysis covers (now
//! and later, by agent, tag and package), what suppression does to the counts and lists, the
//! expiry with an injected clock, withdrawal, invalid input, the audit trail, tenancy.
//!
//! The fleet (see `dashboard::fleet`): Acme web-1 (lodash 4.17.15: CVE-2020-8203 and
//! CVE-2021-23337, both high; minimist: CVE-2020-7598 medium), db-2 (lodash; event-stream:
//! CVE-2018-1002204 critical, KEV), app-3 (left-pad, nothing), idle-4; Beta beta-1 (lodash).

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;
use zt_store::analysis::*;
use zt_store::model::*;
use zt_store::{AnyStore, Storage, StoreError};

use super::dashboard::{debian, fleet, report};

fn npm(name: &str, version: &str) -> zt_inventory::App {
    super::super::common::npm(name, version)
}

pub(super) fn ctx(at: DateTime<Utc>, comment: Option<&str>) -> ChangeContext {
    ChangeContext {
        actor: Actor {
            kind: "user".into(),
            token_id: Some("0011223344556677".into()),
            role: Some("admin".into()),
        },
        at,
        comment: comment.map(String::from),
    }
}

pub(super) fn decision(suppress: bool) -> AnalysisDecision {
    AnalysisDecision {
        scope: AnalysisScope::default(),
        state: AnalysisState::NotAffected,
        justification: Some(Justification::CodeNotPresent),
        response: vec![],
        details: Some("the vulnerable function is not shipped".into()),
        suppress,
        expires_at: None,
    }
}

pub(super) fn new(vuln_id: &str, d: AnalysisDecision) -> NewAnalysis {
    NewAnalysis {
        analysis_id: Uuid::now_v7(),
        vuln_id: vuln_id.into(),
        decision: d,
        source: None,
    }
}

async fn findings(
    store: &dyn Storage,
    c: CompanyId,
    suppressed: SuppressedFilter,
    tag: Option<&str>,
) -> Vec<FindingRow> {
    store
        .list_findings(
            c,
            &FindingFilter {
                suppressed,
                tag: tag.map(String::from),
                ..Default::default()
            },
            &PageRequest {
                limit: 1000,
                cursor: None,
            },
        )
        .await
        .unwrap()
        .items
}

/// (hostname, vulnerability) of each finding, sorted.
fn pairs(rows: &[FindingRow]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = rows
        .iter()
        .map(|f| (f.hostname.clone(), f.vulnerability.id.clone()))
        .collect();
    v.sort();
    v
}

fn p(host: &str, vuln: &str) -> (String, String) {
    (host.to_string(), vuln.to_string())
}

async fn high(store: &dyn Storage, c: CompanyId) -> u64 {
    store.summary(c).await.unwrap().findings.high
}

async fn host_high(store: &dyn Storage, c: CompanyId, a: AgentId) -> u64 {
    store.get_agent(c, a).await.unwrap().unwrap().findings.high
}

pub async fn analyses_cover_present_and_future_findings_until_they_expire(any: &AnyStore) {
    let storage = any.storage();
    let store: &dyn Storage = &*storage;
    let f = fleet(store).await;
    let now = Utc::now();
    assert_eq!(
        high(store, f.acme).await,
        4,
        "lodash's two on web-1 and db-2"
    );

    // Created by an alias of the group: it resolves to the group's id.
    let a = store
        .create_analysis(
            f.acme,
            &new("GHSA-cve-2020-8203", decision(true)),
            &ctx(now, Some("vendor says not shipped")),
        )
        .await
        .unwrap();
    assert_eq!(a.vuln_id, "CVE-2020-8203");
    assert_eq!(a.requested_id, "GHSA-cve-2020-8203");
    assert_eq!(a.status, AnalysisStatus::Active);
    // Counts at once: the summary and each host's counters.
    assert_eq!(high(store, f.acme).await, 2);
    assert_eq!(host_high(store, f.acme, f.web).await, 1);
    assert_eq!(host_high(store, f.acme, f.db).await, 1);
    // Lists: left out by default, shown with include/only, each carrying its analysis.
    let default = findings(store, f.acme, SuppressedFilter::Exclude, None).await;
    assert!(default
        .iter()
        .all(|r| r.vulnerability.id != "CVE-2020-8203"));
    assert!(default.iter().all(|r| r.analysis.is_none()));
    let only = findings(store, f.acme, SuppressedFilter::Only, None).await;
    assert_eq!(
        pairs(&only),
        [p("db-2", "CVE-2020-8203"), p("web-1", "CVE-2020-8203")]
    );
    for r in &only {
        let fa = r.analysis.as_ref().expect("the covering analysis");
        assert_eq!(fa.analysis_id, a.analysis_id);
        assert_eq!(fa.state, AnalysisState::NotAffected);
        assert_eq!(fa.justification, Some(Justification::CodeNotPresent));
        assert!(fa.suppressed);
    }
    let all = findings(store, f.acme, SuppressedFilter::Include, None).await;
    assert_eq!(all.len(), default.len() + 2);
    // The other company is untouched and cannot see it.
    assert_eq!(high(store, f.beta).await, 2);
    assert!(store
        .get_analysis(f.beta, a.analysis_id, now)
        .await
        .unwrap()
        .is_none());
    assert!(store
        .list_analyses(
            f.beta,
            &AnalysisFilter::default(),
            &PageRequest::default(),
            now
        )
        .await
        .unwrap()
        .items
        .is_empty());

    // A future finding: app-3 installs lodash later; it arrives suppressed.
    let later = f.t + Duration::seconds(60);
    report(
        store,
        f.acme,
        f.app,
        ("app-3", &debian()),
        &[npm("left-pad", "1.0.0"), npm("lodash", "4.17.15")],
        later,
    )
    .await;
    assert_eq!(high(store, f.acme).await, 3, "only CVE-2021-23337 is new");
    assert_eq!(host_high(store, f.acme, f.app).await, 1);
    assert_eq!(
        pairs(&findings(store, f.acme, SuppressedFilter::Only, None).await),
        [
            p("app-3", "CVE-2020-8203"),
            p("db-2", "CVE-2020-8203"),
            p("web-1", "CVE-2020-8203")
        ]
    );

    // Scope by tag: nobody carries it yet, so nothing is covered.
    let mut d = decision(true);
    d.scope.tags = vec!["dmz".into()];
    store
        .update_analysis(f.acme, a.analysis_id, &d, &ctx(now, None))
        .await
        .unwrap()
        .expect("updated");
    assert_eq!(high(store, f.acme).await, 6);
    assert!(findings(store, f.acme, SuppressedFilter::Only, None)
        .await
        .is_empty());
    // Tagging web-1 brings it under the analysis at once.
    let tags = store
        .set_agent_tags(
            f.acme,
            f.web,
            &["dmz".into(), "prod".into(), "dmz".into()],
            &ctx(now, Some("web tier")),
        )
        .await
        .unwrap();
    let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let tags = tags.expect("the agent exists");
    assert_eq!(tags.assigned, strings(&["dmz", "prod"]));
    assert!(tags.reported.is_empty());
    assert_eq!(
        store
            .agent_tags(f.acme, f.web)
            .await
            .unwrap()
            .map(|t| t.effective()),
        Some(strings(&["dmz", "prod"]))
    );
    assert_eq!(store.agent_tags(f.beta, f.web).await.unwrap(), None);
    assert_eq!(high(store, f.acme).await, 5);
    assert_eq!(
        pairs(&findings(store, f.acme, SuppressedFilter::Only, None).await),
        [p("web-1", "CVE-2020-8203")]
    );
    // The tag filter of the findings list.
    let tagged = findings(store, f.acme, SuppressedFilter::Include, Some("prod")).await;
    assert!(!tagged.is_empty());
    assert!(tagged.iter().all(|r| r.hostname == "web-1"));

    // Tags the agent reports: they add to those set through the API, each source replaces
    // only its own, and the same tags again write nothing.
    assert_eq!(
        store
            .set_reported_tags(
                f.acme,
                f.db,
                &strings(&["dmz", "env=prod"]),
                &ctx(now, None)
            )
            .await
            .unwrap(),
        Some(true)
    );
    assert_eq!(
        pairs(&findings(store, f.acme, SuppressedFilter::Only, None).await),
        [p("db-2", "CVE-2020-8203"), p("web-1", "CVE-2020-8203")],
        "db-2 reported dmz: under the analysis at once"
    );
    assert_eq!(
        store
            .set_reported_tags(
                f.acme,
                f.db,
                &strings(&["env=prod", "dmz"]),
                &ctx(now, None)
            )
            .await
            .unwrap(),
        Some(false)
    );
    let audit_len = |page: Page<AuditEntry>| {
        page.items
            .iter()
            .filter(|e| e.action == "agent.tags_reported")
            .count()
    };
    let all = PageRequest {
        limit: 200,
        cursor: None,
    };
    assert_eq!(audit_len(store.list_audit(f.acme, &all).await.unwrap()), 1);
    let db_tags = store
        .set_agent_tags(f.acme, f.db, &strings(&["owner=dba"]), &ctx(now, None))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(db_tags.assigned, strings(&["owner=dba"]));
    assert_eq!(db_tags.reported, strings(&["dmz", "env=prod"]));
    assert_eq!(
        db_tags.effective(),
        strings(&["dmz", "env=prod", "owner=dba"])
    );
    // The agent stops reporting dmz: db-2 leaves the analysis; owner=dba (the API's) stays.
    assert_eq!(
        store
            .set_reported_tags(f.acme, f.db, &strings(&["env=prod"]), &ctx(now, None))
            .await
            .unwrap(),
        Some(true)
    );
    assert_eq!(
        pairs(&findings(store, f.acme, SuppressedFilter::Only, None).await),
        [p("web-1", "CVE-2020-8203")]
    );
    assert_eq!(
        store
            .agent_tags(f.acme, f.db)
            .await
            .unwrap()
            .map(|t| t.effective()),
        Some(strings(&["env=prod", "owner=dba"]))
    );
    assert_eq!(audit_len(store.list_audit(f.acme, &all).await.unwrap()), 2);
    // The hosts list filters by either kind of tag.
    for (tag, hosts) in [
        ("env=prod", vec!["db-2"]),
        ("owner=dba", vec!["db-2"]),
        ("dmz", vec!["web-1"]),
        ("nobody", vec![]),
    ] {
        let listed = store
            .list_agents(
                f.acme,
                &AgentFilter {
                    tag: Some(tag.into()),
                    ..Default::default()
                },
                &PageRequest::default(),
            )
            .await
            .unwrap();
        let names: Vec<&str> = listed.items.iter().map(|a| a.hostname.as_str()).collect();
        assert_eq!(names, hosts, "tag {tag}");
    }
    assert_eq!(
        store
            .set_reported_tags(f.beta, f.db, &strings(&["x"]), &ctx(now, None))
            .await
            .unwrap(),
        None,
        "another company's agent"
    );

    // Scope by agent list and package version.
    let mut d = decision(true);
    d.scope.agent_ids = vec![f.db, f.app];
    d.scope.package = Some(PackageScope {
        name: "lodash".into(),
        version: Some("4.17.15".into()),
        ecosystem: None,
    });
    store
        .update_analysis(f.acme, a.analysis_id, &d, &ctx(now, None))
        .await
        .unwrap()
        .expect("updated");
    assert_eq!(
        pairs(&findings(store, f.acme, SuppressedFilter::Only, None).await),
        [p("app-3", "CVE-2020-8203"), p("db-2", "CVE-2020-8203")]
    );
    d.scope.package.as_mut().unwrap().version = Some("4.17.21".into());
    store
        .update_analysis(f.acme, a.analysis_id, &d, &ctx(now, None))
        .await
        .unwrap()
        .expect("updated");
    assert!(findings(store, f.acme, SuppressedFilter::Only, None)
        .await
        .is_empty());

    // Expiry: every host again, until an hour from now; the clock is injected.
    let mut d = decision(true);
    d.expires_at = Some(now + Duration::hours(1));
    store
        .update_analysis(f.acme, a.analysis_id, &d, &ctx(now, None))
        .await
        .unwrap()
        .expect("updated");
    assert_eq!(high(store, f.acme).await, 3);
    let head = store.event_log_bounds().await.unwrap().head;
    assert_eq!(store.expire_analyses(now).await.unwrap(), 0, "not yet");
    assert_eq!(high(store, f.acme).await, 3);
    assert_eq!(
        store
            .expire_analyses(now + Duration::hours(2))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .expire_analyses(now + Duration::hours(3))
            .await
            .unwrap(),
        0,
        "once"
    );
    assert_eq!(high(store, f.acme).await, 6, "the findings are back");
    assert!(findings(store, f.acme, SuppressedFilter::Only, None)
        .await
        .is_empty());
    let expired = store
        .get_analysis(f.acme, a.analysis_id, now + Duration::hours(2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(expired.status, AnalysisStatus::Expired);
    let events = store.events_after(Some(f.acme), head, 100).await.unwrap();
    let changed: Vec<serde_json::Value> = events
        .iter()
        .filter(|e| e.kind == EventKind::AnalysisChanged)
        .map(|e| serde_json::from_str(&e.data).unwrap())
        .collect();
    assert_eq!(changed.len(), 1, "{events:?}");
    assert_eq!(changed[0]["analysis_id"], a.analysis_id.to_string());
    assert_eq!(changed[0]["vuln_id"], "CVE-2020-8203");
    assert_eq!(changed[0]["state"], "not_affected");
    assert_eq!(changed[0]["status"], "expired");
    // Beta's stream does not carry it.
    assert!(store
        .events_after(Some(f.beta), head, 100)
        .await
        .unwrap()
        .iter()
        .all(|e| e.kind != EventKind::AnalysisChanged));

    // A non-suppressing analysis shows on its findings without hiding them.
    let triage = store
        .create_analysis(
            f.acme,
            &new(
                "CVE-2021-23337",
                AnalysisDecision {
                    state: AnalysisState::InTriage,
                    justification: None,
                    details: None,
                    ..decision(false)
                },
            ),
            &ctx(now, None),
        )
        .await
        .unwrap();
    assert_eq!(high(store, f.acme).await, 6);
    let shown = findings(store, f.acme, SuppressedFilter::Exclude, None).await;
    let covered: Vec<_> = shown
        .iter()
        .filter(|r| r.vulnerability.id == "CVE-2021-23337")
        .collect();
    assert_eq!(covered.len(), 3);
    for r in covered {
        let fa = r.analysis.as_ref().unwrap();
        assert_eq!(fa.analysis_id, triage.analysis_id);
        assert_eq!(fa.state, AnalysisState::InTriage);
        assert!(!fa.suppressed);
    }
    // Withdrawn: the findings lose it; the analysis stays, withdrawn.
    let w = store
        .withdraw_analysis(f.acme, triage.analysis_id, &ctx(now, Some("done")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(w.status, AnalysisStatus::Withdrawn);
    assert!(findings(store, f.acme, SuppressedFilter::Include, None)
        .await
        .iter()
        .all(|r| r.analysis.is_none()));
    assert!(store
        .withdraw_analysis(f.acme, triage.analysis_id, &ctx(now, None))
        .await
        .unwrap()
        .is_none());
    let withdrawn = store
        .list_analyses(
            f.acme,
            &AnalysisFilter {
                status: Some(AnalysisStatus::Withdrawn),
                vuln_id: None,
            },
            &PageRequest::default(),
            now,
        )
        .await
        .unwrap();
    assert_eq!(withdrawn.items.len(), 1);
    assert_eq!(withdrawn.items[0].analysis_id, triage.analysis_id);
    // Listed newest first, paged; by vulnerability alias.
    let mut seen = Vec::new();
    let mut req = PageRequest {
        limit: 1,
        cursor: None,
    };
    loop {
        let page = store
            .list_analyses(f.acme, &AnalysisFilter::default(), &req, now)
            .await
            .unwrap();
        seen.extend(page.items.into_iter().map(|a| a.analysis_id));
        match page.next_cursor {
            Some(c) => req.cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, [triage.analysis_id, a.analysis_id]);
    let by_alias = store
        .list_analyses(
            f.acme,
            &AnalysisFilter {
                status: None,
                vuln_id: Some("GHSA-cve-2020-8203".into()),
            },
            &PageRequest::default(),
            now,
        )
        .await
        .unwrap();
    assert_eq!(by_alias.items.len(), 1);
    assert_eq!(by_alias.items[0].analysis_id, a.analysis_id);

    // The audit trail: every change, newest first, with who, before and after.
    let audit = store
        .list_audit(
            f.acme,
            &PageRequest {
                limit: 1000,
                cursor: None,
            },
        )
        .await
        .unwrap()
        .items;
    let actions: Vec<&str> = audit.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "analysis.withdrawn",
            "analysis.created",
            "analysis.expired",
            "analysis.updated",
            "analysis.updated",
            "analysis.updated",
            // db-2's agent reported dmz and env=prod, an admin assigned owner=dba, the
            // agent then reported env=prod only (the repeat wrote nothing).
            "agent.tags_reported",
            "agent.tags_set",
            "agent.tags_reported",
            "agent.tags_set",
            "analysis.updated",
            "analysis.created",
        ]
    );
    let first = audit.last().unwrap();
    assert_eq!(first.actor.token_id.as_deref(), Some("0011223344556677"));
    assert_eq!(first.actor.role.as_deref(), Some("admin"));
    assert_eq!(first.comment.as_deref(), Some("vendor says not shipped"));
    assert_eq!(first.object, format!("analysis/{}", a.analysis_id));
    assert!(first.before.is_none());
    assert_eq!(first.after.as_ref().unwrap()["state"], "not_affected");
    let expiry = &audit[2];
    assert_eq!(expiry.actor.kind, "system");
    let reported = &audit[6];
    assert_eq!(
        reported.before.as_ref().unwrap()["tags"],
        serde_json::json!(["dmz", "env=prod"])
    );
    assert_eq!(
        reported.after.as_ref().unwrap()["tags"],
        serde_json::json!(["env=prod"])
    );
    let tags_set = &audit[9];
    assert_eq!(
        tags_set.before.as_ref().unwrap()["tags"],
        serde_json::json!([])
    );
    assert_eq!(
        tags_set.after.as_ref().unwrap()["tags"],
        serde_json::json!(["dmz", "prod"])
    );
    let withdrawal = &audit[0];
    assert_eq!(withdrawal.before.as_ref().unwrap()["status"], "active");
    assert_eq!(withdrawal.after.as_ref().unwrap()["status"], "withdrawn");
    assert_eq!(withdrawal.comment.as_deref(), Some("done"));
    // Paged.
    let page = store
        .list_audit(
            f.acme,
            &PageRequest {
                limit: 4,
                cursor: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(page.items, audit[..4]);
    let rest = store
        .list_audit(
            f.acme,
            &PageRequest {
                limit: 100,
                cursor: page.next_cursor,
            },
        )
        .await
        .unwrap();
    assert_eq!(rest.items, audit[4..]);
    assert!(store
        .list_audit(f.beta, &PageRequest::default())
        .await
        .unwrap()
        .items
        .is_empty());
}

fn invalid_field(e: StoreError) -> &'static str {
    match e {
        StoreError::Invalid { field, .. } => field,
        other => panic!("not an invalid-input error: {other}"),
    }
}

pub async fn analyses_are_refused_whole_when_invalid_and_keep_their_history(any: &AnyStore) {
    let storage = any.storage();
    let store: &dyn Storage = &*storage;
    let f = fleet(store).await;
    let now = Utc::now();
    let acme = f.acme;
    let refuse = |n: NewAnalysis| async move {
        invalid_field(
            store
                .create_analysis(acme, &n, &ctx(now, None))
                .await
                .expect_err("refused"),
        )
    };
    assert_eq!(
        refuse(new("CVE-1999-0001", decision(true))).await,
        "vuln_id"
    );
    assert_eq!(refuse(new("  ", decision(true))).await, "vuln_id");
    let mut d = decision(true);
    d.expires_at = Some(now - Duration::minutes(1));
    assert_eq!(refuse(new("CVE-2020-8203", d)).await, "expires_at");
    let mut d = decision(true);
    d.scope.agent_ids = vec![f.beta_host];
    assert_eq!(
        refuse(new("CVE-2020-8203", d)).await,
        "scope.agent_ids",
        "another company's agent is unknown here"
    );
    let mut d = decision(true);
    d.scope.tags = vec!["has space".into()];
    assert_eq!(refuse(new("CVE-2020-8203", d)).await, "scope.tags");
    let mut d = decision(true);
    d.scope.package = Some(PackageScope {
        name: String::new(),
        version: None,
        ecosystem: None,
    });
    assert_eq!(refuse(new("CVE-2020-8203", d)).await, "scope.package.name");
    // Nothing of the refused ones was stored or changed.
    assert!(store
        .list_analyses(
            f.acme,
            &AnalysisFilter::default(),
            &PageRequest::default(),
            now
        )
        .await
        .unwrap()
        .items
        .is_empty());
    assert!(store
        .list_audit(f.acme, &PageRequest::default())
        .await
        .unwrap()
        .items
        .is_empty());
    assert_eq!(high(store, f.acme).await, 4);
    // Another company's analysis cannot be changed or withdrawn from here.
    let theirs = store
        .create_analysis(
            f.beta,
            &new("CVE-2020-8203", decision(true)),
            &ctx(now, None),
        )
        .await
        .unwrap();
    assert_eq!(high(store, f.beta).await, 1);
    assert!(store
        .update_analysis(
            f.acme,
            theirs.analysis_id,
            &decision(false),
            &ctx(now, None)
        )
        .await
        .unwrap()
        .is_none());
    assert!(store
        .withdraw_analysis(f.acme, theirs.analysis_id, &ctx(now, None))
        .await
        .unwrap()
        .is_none());
    assert_eq!(high(store, f.beta).await, 1);
    assert_eq!(high(store, f.acme).await, 4);
    // Tags: invalid ones are refused, an unknown agent is None.
    assert_eq!(
        invalid_field(
            store
                .set_agent_tags(f.acme, f.web, &["a,b".into()], &ctx(now, None))
                .await
                .expect_err("refused")
        ),
        "tags"
    );
    assert_eq!(
        store
            .set_agent_tags(f.acme, f.beta_host, &["x".into()], &ctx(now, None))
            .await
            .unwrap(),
        None
    );
    // A withdrawn analysis cannot be changed; it stays readable.
    store
        .withdraw_analysis(f.beta, theirs.analysis_id, &ctx(now, None))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(high(store, f.beta).await, 2);
    assert!(store
        .update_analysis(f.beta, theirs.analysis_id, &decision(true), &ctx(now, None))
        .await
        .unwrap()
        .is_none());
    assert_eq!(high(store, f.beta).await, 2);
    assert_eq!(
        store
            .get_analysis(f.beta, theirs.analysis_id, now)
            .await
            .unwrap()
            .unwrap()
            .status,
        AnalysisStatus::Withdrawn
    );
}

/// The summary's and the trends' SLA counts (read in parts through indexes: the open findings
/// first seen by each severity's bound, less the suppressed ones, plus the KEV findings due
/// by CISA's date sooner) as time passes on an injected clock: counted by hand for a small
/// fleet, and equal to the findings filter (`due_by`, suppressed left out) for every
/// severity, time and policy tried.
///
/// Acme: h1 first saw everything 200 days ago, h2 25 days ago, h3 1 day ago; each runs one
/// package per vulnerability: critical, high, medium KEV due by CISA in 3 days, medium KEV
/// whose CISA date passed 2 days ago, low, unknown, and a high that an analysis suppresses
/// everywhere (and the passed KEV one suppressed on h3 alone). Beta: one host of 200 days,
/// no analyses.
pub async fn sla_counts_follow_the_clock_and_agree_with_the_filter(any: &AnyStore) {
    use zt_advisory::Severity;
    let store = &*any.storage();
    let now = Utc::now();
    let soon_date = (now + Duration::days(3)).date_naive().to_string();
    let past_date = (now - Duration::days(2)).date_naive().to_string();
    let vulns: [(&str, &str, Severity, Option<String>); 7] = [
        ("sla-crit", "CVE-2030-0001", Severity::Critical, None),
        ("sla-high", "CVE-2030-0002", Severity::High, None),
        (
            "sla-kev-soon",
            "CVE-2030-0003",
            Severity::Medium,
            Some(soon_date),
        ),
        (
            "sla-kev-past",
            "CVE-2030-0004",
            Severity::Medium,
            Some(past_date),
        ),
        ("sla-low", "CVE-2030-0005", Severity::Low, None),
        ("sla-unknown", "CVE-2030-0006", Severity::Unknown, None),
        ("sla-suppressed", "CVE-2030-0007", Severity::High, None),
    ];
    let matcher = |s: &zt_inventory::Software| -> Vec<StoredMatch> {
        vulns
            .iter()
            .filter(|(pkg, ..)| *pkg == s.name)
            .map(|(_, id, severity, due)| StoredMatch {
                vulnerability: VulnInfo {
                    id: (*id).into(),
                    aliases: vec![],
                    summary: "sla".into(),
                    severity: *severity,
                    cvss: None,
                    kev: due.is_some(),
                    kev_due_date: due.clone(),
                    epss: None,
                    epss_percentile: None,
                    informational: false,
                },
                fixed_versions: vec![],
                method: "osv-range".into(),
                confidence: "high".into(),
            })
            .collect()
    };
    let apps: Vec<zt_inventory::App> = vulns.iter().map(|(pkg, ..)| npm(pkg, "1.0.0")).collect();
    let acme = super::company(store, "Acme", 190).await;
    let beta = super::company(store, "Beta", 191).await;
    let h1 = super::agent(store, acme, "h1", 192).await;
    let h2 = super::agent(store, acme, "h2", 193).await;
    let h3 = super::agent(store, acme, "h3", 194).await;
    let b1 = super::agent(store, beta, "b1", 195).await;
    for (c, a, days) in [
        (acme, h1, 200),
        (acme, h2, 25),
        (acme, h3, 1),
        (beta, b1, 200),
    ] {
        let seen = now - Duration::days(days);
        let r = super::incoming(c, a, &apps, seen);
        store
            .accept_reports(std::slice::from_ref(&r), 100)
            .await
            .unwrap();
        let got = store
            .claim_batch(&super::claim(
                "w",
                100_000,
                std::time::Duration::from_secs(60),
                3,
                Utc::now(),
            ))
            .await
            .unwrap();
        assert_eq!(got.len(), 1);
        let out = super::super::common::process_together_at(
            store,
            &[(&got[0], &apps, seen)],
            "w",
            &matcher,
            seen,
        )
        .await;
        assert!(matches!(out[0], ReportOutcome::Applied { .. }), "{out:?}");
    }
    store
        .create_analysis(acme, &new("CVE-2030-0007", decision(true)), &ctx(now, None))
        .await
        .unwrap();
    let mut on_h3 = decision(true);
    on_h3.scope.agent_ids = vec![h3];
    store
        .create_analysis(acme, &new("CVE-2030-0004", on_h3), &ctx(now, None))
        .await
        .unwrap();

    let sev = |critical, high, medium, low, unknown| SeverityCounts {
        critical,
        high,
        medium,
        low,
        unknown,
    };
    // Now (the summary's own clock): overdue on h1 everything but the suppressed high; on h2
    // the critical (25 > 7 days) and the passed KEV; on h3 nothing but the passed KEV, which
    // is suppressed there. Due within the week besides: h2's high (30 − 25 days), h2's and
    // h3's soon KEV (CISA in 3 days), h3's critical (7 − 1 days).
    let s = store.summary(acme).await.unwrap();
    assert_eq!(s.overdue_by_severity, sev(2, 1, 3, 1, 1));
    assert_eq!((s.overdue, s.due_soon, s.suppressed), (8, 4, 4));
    let b = store.summary(beta).await.unwrap();
    assert_eq!(b.overdue_by_severity, sev(1, 2, 2, 1, 1));
    assert_eq!((b.overdue, b.due_soon, b.suppressed), (7, 0, 0));

    // The trend points on the janitor's injected clock: ten days on, h2's high (35 days) and
    // soon KEV (CISA passed) and h3's critical (11 days) and soon KEV are overdue too.
    let keep = now.date_naive() - Duration::days(400);
    let point = |points: &[TrendPoint], at: DateTime<Utc>| {
        *points
            .iter()
            .find(|p| p.date == at.date_naive())
            .unwrap_or_else(|| panic!("no point of {at}: {points:?}"))
    };
    let at = now + Duration::days(10);
    store.record_trends(at, keep).await.unwrap();
    let p = point(&store.trends(acme, now.date_naive()).await.unwrap(), at);
    assert_eq!(p.overdue_by_severity, sev(3, 2, 5, 1, 1));
    assert_eq!((p.overdue, p.suppressed), (12, 4));

    // Every severity, time and policy, against the findings filter.
    let strict = zt_store::sla::SlaPolicy {
        critical_days: 3,
        high_days: 10,
        medium_days: 15,
        low_days: 20,
        unknown_days: 30,
        kev_uses_cisa_due_date: false,
    };
    for (i, policy) in [zt_store::sla::SlaPolicy::default(), strict]
        .into_iter()
        .enumerate()
    {
        store
            .set_sla_policy(acme, &policy, &ctx(now, None))
            .await
            .unwrap();
        for days in [2, 12, 27, 100, 190, 400] {
            let at = now + Duration::days(days) + Duration::hours(i as i64);
            store.record_trends(at, keep).await.unwrap();
            let p = point(&store.trends(acme, now.date_naive()).await.unwrap(), at);
            let mut expected = SeverityCounts::default();
            for (severity, slot) in [
                (Severity::Critical, &mut expected.critical),
                (Severity::High, &mut expected.high),
                (Severity::Medium, &mut expected.medium),
                (Severity::Low, &mut expected.low),
                (Severity::Unknown, &mut expected.unknown),
            ] {
                let filter = FindingFilter {
                    severities: vec![severity],
                    due_by: Some(policy.due_by(at)),
                    ..Default::default()
                };
                *slot = store.count_findings(acme, &filter).await.unwrap();
            }
            assert_eq!(
                p.overdue_by_severity, expected,
                "policy {i}, {days} days on"
            );
            assert_eq!(p.overdue, expected.total());
        }
    }
    // The strict policy today: h1's and h2's (25 days) critical, high, both mediums (CISA's
    // dates ignored; the passed KEV suppressed on h3) and low (20 days), h1's unknown (30);
    // h3 (1 day) is due for nothing yet.
    let s = store.summary(acme).await.unwrap();
    assert_eq!(s.overdue_by_severity, sev(2, 2, 4, 2, 1));
    let _ = (h1, h2);
}

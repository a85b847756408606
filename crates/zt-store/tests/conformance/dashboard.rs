//! The dashboard's reads (issue 12): hosts, software, vulnerabilities, findings in every
//! order, a vulnerability's hosts page by page, a host's reports, trends and the operator's
//! overview. Each check builds a small fleet through the real ingest path (accept → claim →
//! finish) and reads it back as a user would.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use zt_advisory::{Advisory, Cvss, CvssVersion, Severity, Source};
use zt_inventory::{App, OsInfo, Software, SoftwareKey};
use zt_store::knowledge::KnowledgeImport;
use zt_store::model::*;
use zt_store::{AnyStore, Storage};

use super::{agent, claim, company};

fn os(id: &str, version: &str, name: &str) -> OsInfo {
    OsInfo {
        id: id.into(),
        version_id: version.into(),
        name: name.into(),
    }
}

fn npm(name: &str, version: &str) -> App {
    super::super::common::npm(name, version)
}

fn m(
    id: &str,
    severity: Severity,
    cvss: Option<f64>,
    epss: Option<f64>,
    kev: bool,
    fixed: &[&str],
) -> StoredMatch {
    StoredMatch {
        vulnerability: VulnInfo {
            id: id.into(),
            aliases: vec![format!("GHSA-{}", id.to_lowercase())],
            summary: format!("summary of {id}"),
            severity,
            cvss: cvss.map(|score| Cvss {
                version: CvssVersion::V31,
                vector: "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H".into(),
                score,
            }),
            kev,
            kev_due_date: None,
            epss,
            epss_percentile: None,
            informational: false,
        },
        fixed_versions: fixed.iter().map(|s| s.to_string()).collect(),
        method: "osv-range".into(),
        confidence: "high".into(),
    }
}

/// What the test fleet's software is vulnerable to.
pub(super) fn matcher(s: &Software) -> Vec<StoredMatch> {
    match (s.name.as_str(), s.version.as_str()) {
        ("lodash", "4.17.15") => vec![
            m(
                "CVE-2020-8203",
                Severity::High,
                Some(7.4),
                Some(0.02),
                false,
                &["4.17.19"],
            ),
            m(
                "CVE-2021-23337",
                Severity::High,
                Some(7.2),
                Some(0.01),
                false,
                &["4.17.21"],
            ),
        ],
        // An upgrade that fixes one of the two (time to remediate).
        ("lodash", "4.17.20") => vec![m(
            "CVE-2021-23337",
            Severity::High,
            Some(7.2),
            Some(0.01),
            false,
            &["4.17.21"],
        )],
        // The same vulnerability through a second package (the rollup counts its host once).
        ("lodash-es", "4.17.15") => vec![m(
            "CVE-2020-8203",
            Severity::High,
            Some(7.4),
            Some(0.02),
            false,
            &["4.17.19"],
        )],
        ("minimist", "0.0.8") => vec![m(
            "CVE-2020-7598",
            Severity::Medium,
            Some(5.6),
            None,
            false,
            &[],
        )],
        ("event-stream", "3.3.6") => vec![m(
            "CVE-2018-1002204",
            Severity::Critical,
            Some(9.8),
            Some(0.9),
            true,
            &["4.0.0"],
        )],
        _ => Vec::new(),
    }
}

/// Sends one report of `apps` for an agent and processes it as a worker would (the host
/// named and with the OS given), collected at `at`.
pub(super) async fn report(
    store: &dyn Storage,
    company_id: CompanyId,
    agent_id: AgentId,
    host: (&str, &OsInfo),
    apps: &[App],
    at: DateTime<Utc>,
) -> ReportId {
    report_processed_at(store, company_id, agent_id, host, apps, at, Utc::now()).await
}

/// [`report`], processed by a worker whose clock says `now` (findings opened and resolved
/// then).
pub(super) async fn report_processed_at(
    store: &dyn Storage,
    company_id: CompanyId,
    agent_id: AgentId,
    host: (&str, &OsInfo),
    apps: &[App],
    at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> ReportId {
    let r = super::incoming(company_id, agent_id, apps, at);
    assert_eq!(
        store
            .accept_reports(std::slice::from_ref(&r), 100)
            .await
            .unwrap(),
        [AcceptOutcome::Queued]
    );
    let got = store
        .claim_batch(&claim("w", 100_000, Duration::from_secs(60), 3, Utc::now()))
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    let (hostname, os) = host;
    let software: Vec<(SoftwareKey, Software)> = apps
        .iter()
        .map(|a| {
            let s = Software::from_app(a, os);
            (s.key(), s)
        })
        .collect();
    let keys: Vec<SoftwareKey> = software.iter().map(|(k, _)| *k).collect();
    let unknown = store.unmatched_software(&keys).await.unwrap();
    let mut matched: Vec<MatchedSoftware> = software
        .iter()
        .filter(|(k, _)| unknown.contains(k))
        .map(|(k, s)| MatchedSoftware {
            key: *k,
            software: s.clone(),
            matches: matcher(s),
        })
        .collect();
    matched.sort_by_key(|m| m.key);
    matched.dedup_by_key(|m| m.key);
    let out = store
        .finish_batch(&ProcessedBatch {
            revision: 1,
            software: matched,
            reports: vec![ProcessedReport {
                lease: LeaseRef {
                    queue_id: got[0].queue_id,
                    owner: "w".into(),
                    attempts: got[0].attempts,
                },
                company_id,
                agent_id,
                report_id: r.report_id,
                collected_at: at,
                digest: zt_inventory::inventory_digest(apps),
                hostname: hostname.into(),
                os: os.clone(),
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
            }],
            now,
        })
        .await
        .unwrap();
    assert!(matches!(out[0], ReportOutcome::Applied { .. }), "{out:?}");
    r.report_id
}

/// Acme: web-1 (Debian; lodash, minimist, left-pad), db-2 (Ubuntu; lodash, event-stream),
/// app-3 (Debian; left-pad), idle-4 (enrolled, never reported). Beta: one host with lodash.
pub(super) struct Fleet {
    pub(super) acme: CompanyId,
    pub(super) beta: CompanyId,
    pub(super) web: AgentId,
    pub(super) db: AgentId,
    pub(super) app: AgentId,
    pub(super) idle: AgentId,
    pub(super) beta_host: AgentId,
    /// When the reports were collected (db-2's last).
    pub(super) t: DateTime<Utc>,
}

pub(super) fn debian() -> OsInfo {
    os("debian", "12", "Debian GNU/Linux 12 (bookworm)")
}

fn ubuntu() -> OsInfo {
    os("ubuntu", "22.04", "Ubuntu 22.04.4 LTS")
}

fn web_apps() -> Vec<App> {
    vec![
        npm("lodash", "4.17.15"),
        npm("minimist", "0.0.8"),
        npm("left-pad", "1.0.0"),
    ]
}

pub(super) async fn fleet(store: &dyn Storage) -> Fleet {
    let acme = company(store, "Acme", 110).await;
    let beta = company(store, "Beta", 111).await;
    let web = agent(store, acme, "web-1", 112).await;
    let db = agent(store, acme, "db-2", 113).await;
    let app = agent(store, acme, "app-3", 114).await;
    let idle = agent(store, acme, "idle-4", 115).await;
    let beta_host = agent(store, beta, "beta-1", 116).await;
    // The reports are accepted clearly after idle-4 enrolled (staleness is by time).
    tokio::time::sleep(Duration::from_millis(5)).await;
    let t = Utc::now() - chrono::Duration::seconds(600);
    report(store, acme, web, ("web-1", &debian()), &web_apps(), t).await;
    report(
        store,
        acme,
        app,
        ("app-3", &debian()),
        &[npm("left-pad", "1.0.0")],
        t,
    )
    .await;
    report(
        store,
        beta,
        beta_host,
        ("beta-1", &debian()),
        &[npm("lodash", "4.17.15")],
        t,
    )
    .await;
    report(
        store,
        acme,
        db,
        ("db-2", &ubuntu()),
        &[npm("lodash", "4.17.15"), npm("event-stream", "3.3.6")],
        t,
    )
    .await;
    Fleet {
        acme,
        beta,
        web,
        db,
        app,
        idle,
        beta_host,
        t,
    }
}

/// Every page of a list, following the cursors (`limit` per page).
async fn all_pages<T, F, Fut>(limit: u32, mut page: F) -> Vec<T>
where
    F: FnMut(PageRequest) -> Fut,
    Fut: std::future::Future<Output = Page<T>>,
{
    let mut out = Vec::new();
    let mut req = PageRequest {
        limit,
        cursor: None,
    };
    loop {
        let p = page(req.clone()).await;
        assert!(p.items.len() <= limit as usize);
        out.extend(p.items);
        match p.next_cursor {
            Some(c) => req.cursor = Some(c),
            None => return out,
        }
    }
}

fn hostnames(agents: &[Agent]) -> Vec<&str> {
    agents.iter().map(|a| a.hostname.as_str()).collect()
}

pub async fn dashboard_hosts_sort_filter_and_page(any: &AnyStore) {
    let store = &*any.storage();
    let f = fleet(store).await;
    let list = |filter: AgentFilter| async move {
        all_pages(1, |p| {
            let filter = filter.clone();
            async move { store.list_agents(f.acme, &filter, &p).await.unwrap() }
        })
        .await
    };
    // By hostname (the default), one per page: every agent of Acme once.
    let by_name = list(AgentFilter::default()).await;
    assert_eq!(hostnames(&by_name), ["app-3", "db-2", "idle-4", "web-1"]);
    let db = by_name.iter().find(|a| a.agent_id == f.db).unwrap();
    assert_eq!(
        (
            db.findings.critical,
            db.findings.high,
            db.kev,
            db.fixable,
            db.apps
        ),
        (1, 2, 1, 3, 2)
    );
    assert_eq!(db.os, ubuntu());
    let web = by_name.iter().find(|a| a.agent_id == f.web).unwrap();
    assert_eq!(
        (web.findings.high, web.findings.medium, web.kev, web.fixable),
        (2, 1, 0, 2)
    );
    // Riskiest first: KEV and critical beat two highs and a medium; the clean ones last.
    let by_risk = list(AgentFilter {
        sort: AgentSort::Risk,
        ..Default::default()
    })
    .await;
    assert_eq!(&hostnames(&by_risk)[..2], ["db-2", "web-1"]);
    let reversed = list(AgentFilter {
        sort: AgentSort::Risk,
        order: Some(SortOrder::Asc),
        ..Default::default()
    })
    .await;
    let mut back: Vec<AgentId> = reversed.iter().map(|a| a.agent_id).collect();
    back.reverse();
    assert_eq!(back, by_risk.iter().map(|a| a.agent_id).collect::<Vec<_>>());
    // By OS name, then hostname.
    let by_os = list(AgentFilter {
        sort: AgentSort::Os,
        ..Default::default()
    })
    .await;
    // idle-4 enrolled with an empty OS name and never reported.
    assert_eq!(hostnames(&by_os), ["idle-4", "app-3", "web-1", "db-2"]);
    let os_names: Vec<&str> = by_os.iter().map(|a| a.os.name.as_str()).collect();
    let mut sorted = os_names.clone();
    sorted.sort();
    assert_eq!(os_names, sorted, "OS names in byte order");
    // Last seen, most recent first: idle-4, never seen, counts from its enrollment, before
    // the others' reports.
    let by_seen = list(AgentFilter {
        sort: AgentSort::LastSeen,
        ..Default::default()
    })
    .await;
    assert_eq!(by_seen.last().unwrap().agent_id, f.idle);
    assert_eq!(by_seen[0].agent_id, f.db, "reported last");
    // Filters: hostname search (case ignored), OS, staleness.
    let found = list(AgentFilter {
        query: Some("WEB".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(hostnames(&found), ["web-1"]);
    let ubuntu_hosts = list(AgentFilter {
        os: Some("ubuntu".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(hostnames(&ubuntu_hosts), ["db-2"]);
    let idle = store.get_agent(f.acme, f.idle).await.unwrap().unwrap();
    let cut = idle.enrolled_at + chrono::Duration::milliseconds(1);
    let stale = list(AgentFilter {
        stale: Some(true),
        stale_before: Some(cut),
        ..Default::default()
    })
    .await;
    assert_eq!(hostnames(&stale), ["idle-4"]);
    let fresh = list(AgentFilter {
        stale: Some(false),
        stale_before: Some(cut),
        ..Default::default()
    })
    .await;
    assert_eq!(fresh.len(), 3);
    // A cursor of another order is refused; Beta's agents never show.
    let page = store
        .list_agents(
            f.acme,
            &AgentFilter::default(),
            &PageRequest {
                limit: 1,
                cursor: None,
            },
        )
        .await
        .unwrap();
    let wrong = store
        .list_agents(
            f.acme,
            &AgentFilter {
                sort: AgentSort::Risk,
                ..Default::default()
            },
            &PageRequest {
                limit: 1,
                cursor: page.next_cursor,
            },
        )
        .await;
    assert!(wrong.is_err());
    assert!(list(AgentFilter::default())
        .await
        .iter()
        .all(|a| a.agent_id != f.beta_host));
    assert!(store.get_agent(f.beta, f.web).await.unwrap().is_none());

    // A host's reports, newest first; none for a foreign or unknown agent.
    let second = report(
        store,
        f.acme,
        f.web,
        ("web-1", &debian()),
        &[npm("lodash", "4.17.21")],
        f.t + chrono::Duration::seconds(60),
    )
    .await;
    let reports = all_pages(1, |p| async move {
        store
            .list_reports(f.acme, f.web, &p)
            .await
            .unwrap()
            .unwrap()
    })
    .await;
    assert_eq!(reports.len(), 2);
    assert_eq!(reports[0].report_id, second);
    assert_eq!(
        (
            reports[0].status,
            reports[0].outcome.as_deref(),
            reports[0].apps
        ),
        (ReportState::Done, Some("applied"), 1)
    );
    assert_eq!(reports[1].apps, 3);
    assert!(store
        .list_reports(f.beta, f.web, &PageRequest::default())
        .await
        .unwrap()
        .is_none());
    assert!(store
        .list_reports(f.acme, f.idle, &PageRequest::default())
        .await
        .unwrap()
        .unwrap()
        .items
        .is_empty());
    let _ = f.app;
}

pub async fn dashboard_software_and_vulnerabilities_follow_inventories(any: &AnyStore) {
    let store = &*any.storage();
    let f = fleet(store).await;
    let software = |filter: SoftwareFilter| async move {
        all_pages(1, |p| {
            let filter = filter.clone();
            async move { store.list_software(f.acme, &filter, &p).await.unwrap() }
        })
        .await
    };
    let label = |rows: &[SoftwareRow]| -> Vec<String> {
        rows.iter()
            .map(|s| format!("{}@{}:{}", s.name, s.version, s.hosts))
            .collect()
    };
    // Most hosts first (ties by key): Beta's lodash host is not Acme's.
    let by_hosts = software(SoftwareFilter::default()).await;
    let mut got = label(&by_hosts);
    assert_eq!(got.len(), 4);
    assert!(got[..2].contains(&"lodash@4.17.15:2".to_string()));
    assert!(got[..2].contains(&"left-pad@1.0.0:2".to_string()));
    got.sort();
    assert_eq!(
        got,
        [
            "event-stream@3.3.6:1",
            "left-pad@1.0.0:2",
            "lodash@4.17.15:2",
            "minimist@0.0.8:1"
        ]
    );
    let by_name = software(SoftwareFilter {
        sort: SoftwareSort::Name,
        ..Default::default()
    })
    .await;
    assert_eq!(
        label(&by_name),
        [
            "event-stream@3.3.6:1",
            "left-pad@1.0.0:2",
            "lodash@4.17.15:2",
            "minimist@0.0.8:1"
        ]
    );
    let lodash = &by_name[2];
    assert_eq!(
        (
            lodash.vulnerabilities.high,
            lodash.vulnerabilities.total(),
            lodash.kev
        ),
        (2, 2, 0)
    );
    assert_eq!(lodash.ecosystem, "npm");
    let by_risk = software(SoftwareFilter {
        sort: SoftwareSort::Risk,
        ..Default::default()
    })
    .await;
    assert_eq!(
        label(&by_risk)[..3],
        [
            "event-stream@3.3.6:1",
            "lodash@4.17.15:2",
            "minimist@0.0.8:1"
        ]
    );
    let clean = software(SoftwareFilter {
        vulnerable: Some(false),
        ..Default::default()
    })
    .await;
    assert_eq!(label(&clean), ["left-pad@1.0.0:2"]);
    let searched = software(SoftwareFilter {
        query: Some("LOD".into()),
        vulnerable: Some(true),
        ..Default::default()
    })
    .await;
    assert_eq!(label(&searched), ["lodash@4.17.15:2"]);

    let vulns = |filter: VulnFilter| async move {
        all_pages(1, |p| {
            let filter = filter.clone();
            async move {
                store
                    .list_vulnerabilities(f.acme, &filter, &p)
                    .await
                    .unwrap()
            }
        })
        .await
    };
    let vlabel = |rows: &[VulnRow]| -> Vec<String> {
        rows.iter()
            .map(|v| format!("{}:{}/{}", v.vulnerability.id, v.hosts, v.findings))
            .collect()
    };
    // Most severe first, ids descending within a severity.
    let by_severity = vulns(VulnFilter::default()).await;
    assert_eq!(
        vlabel(&by_severity),
        [
            "CVE-2018-1002204:1/1",
            "CVE-2021-23337:2/2",
            "CVE-2020-8203:2/2",
            "CVE-2020-7598:1/1"
        ]
    );
    let critical = &by_severity[0];
    assert!(critical.vulnerability.kev);
    assert_eq!(critical.vulnerability.severity, Severity::Critical);
    assert_eq!(critical.vulnerability.epss, Some(0.9));
    assert_eq!(critical.vulnerability.aliases, ["GHSA-cve-2018-1002204"]);
    assert_eq!(critical.fixed_versions, ["4.0.0"]);
    assert_eq!(
        critical.packages,
        [VulnPackage {
            name: "event-stream".into(),
            ecosystem: "npm".into(),
            versions: vec!["3.3.6".into()],
        }]
    );
    let by_hosts = vulns(VulnFilter {
        sort: VulnSort::Hosts,
        ..Default::default()
    })
    .await;
    assert_eq!(
        vlabel(&by_hosts)[..2],
        ["CVE-2021-23337:2/2", "CVE-2020-8203:2/2"]
    );
    let by_epss = vulns(VulnFilter {
        sort: VulnSort::Epss,
        ..Default::default()
    })
    .await;
    let ids = |rows: &[VulnRow]| -> Vec<String> {
        rows.iter().map(|v| v.vulnerability.id.clone()).collect()
    };
    assert_eq!(
        ids(&by_epss),
        [
            "CVE-2018-1002204",
            "CVE-2020-8203",
            "CVE-2021-23337",
            "CVE-2020-7598"
        ],
        "none last"
    );
    let by_cvss_up = vulns(VulnFilter {
        sort: VulnSort::Cvss,
        order: Some(SortOrder::Asc),
        ..Default::default()
    })
    .await;
    assert_eq!(
        ids(&by_cvss_up),
        [
            "CVE-2020-7598",
            "CVE-2021-23337",
            "CVE-2020-8203",
            "CVE-2018-1002204"
        ]
    );
    let filtered = vulns(VulnFilter {
        severities: vec![Severity::High, Severity::Medium],
        kev: Some(false),
        ..Default::default()
    })
    .await;
    assert_eq!(filtered.len(), 3);
    let kev_only = vulns(VulnFilter {
        kev: Some(true),
        ..Default::default()
    })
    .await;
    assert_eq!(ids(&kev_only), ["CVE-2018-1002204"]);
    for (q, want) in [
        ("8203", vec!["CVE-2020-8203"]),
        ("ghsa-cve-2020-7598", vec!["CVE-2020-7598"]),
        ("minim", vec!["CVE-2020-7598"]),
        ("LODASH", vec!["CVE-2021-23337", "CVE-2020-8203"]),
    ] {
        let got = vulns(VulnFilter {
            query: Some(q.into()),
            ..Default::default()
        })
        .await;
        assert_eq!(ids(&got), want, "q={q}");
    }

    // web-1 upgrades lodash past both fixes and drops minimist.
    report(
        store,
        f.acme,
        f.web,
        ("web-1", &debian()),
        &[npm("lodash", "4.17.21"), npm("left-pad", "1.0.0")],
        f.t + chrono::Duration::seconds(60),
    )
    .await;
    let mut after = label(&software(SoftwareFilter::default()).await);
    after.sort();
    assert_eq!(
        after,
        [
            "event-stream@3.3.6:1",
            "left-pad@1.0.0:2",
            "lodash@4.17.15:1",
            "lodash@4.17.21:1"
        ]
    );
    assert_eq!(
        vlabel(&vulns(VulnFilter::default()).await),
        [
            "CVE-2018-1002204:1/1",
            "CVE-2021-23337:1/1",
            "CVE-2020-8203:1/1"
        ]
    );
    // Beta's count never moved.
    let beta = store
        .list_software(f.beta, &SoftwareFilter::default(), &PageRequest::default())
        .await
        .unwrap();
    assert_eq!(label(&beta.items), ["lodash@4.17.15:1"]);
    let _ = (f.db, f.app, f.idle, f.beta_host);
}

pub async fn dashboard_findings_sort_every_way_and_page(any: &AnyStore) {
    let store = &*any.storage();
    let f = fleet(store).await;
    let list = |filter: FindingFilter| async move {
        all_pages(1, |p| {
            let filter = filter.clone();
            async move { store.list_findings(f.acme, &filter, &p).await.unwrap() }
        })
        .await
    };
    let key = |r: &FindingRow| {
        (
            r.agent_id,
            r.package.name.clone(),
            r.vulnerability.id.clone(),
        )
    };
    let everything: BTreeSet<_> = list(FindingFilter::default())
        .await
        .iter()
        .map(key)
        .collect();
    assert_eq!(everything.len(), 6);
    for (sort, first) in [
        (FindingSort::Epss, "CVE-2018-1002204"),
        (FindingSort::Cvss, "CVE-2018-1002204"),
    ] {
        let rows = list(FindingFilter {
            sort,
            ..Default::default()
        })
        .await;
        assert_eq!(
            rows.iter().map(key).collect::<BTreeSet<_>>(),
            everything,
            "{sort:?}"
        );
        assert_eq!(rows[0].vulnerability.id, first, "{sort:?}");
    }
    let cvss: Vec<f64> = list(FindingFilter {
        sort: FindingSort::Cvss,
        ..Default::default()
    })
    .await
    .iter()
    .map(|r| r.vulnerability.cvss.as_ref().unwrap().score)
    .collect();
    assert!(cvss.windows(2).all(|w| w[0] >= w[1]), "{cvss:?}");
    let by_host = list(FindingFilter {
        sort: FindingSort::Hostname,
        ..Default::default()
    })
    .await;
    let hosts: Vec<&str> = by_host.iter().map(|r| r.hostname.as_str()).collect();
    assert_eq!(hosts, ["db-2", "db-2", "db-2", "web-1", "web-1", "web-1"]);
    // Newest first: db-2 reported last.
    let newest = list(FindingFilter {
        sort: FindingSort::FirstSeen,
        ..Default::default()
    })
    .await;
    assert_eq!(newest.len(), 6);
    assert!(newest
        .windows(2)
        .all(|w| w[0].first_seen >= w[1].first_seen));
    assert_eq!(newest[0].agent_id, f.db);
    // Least severe first, and filters still apply in any order.
    let up = list(FindingFilter {
        sort: FindingSort::Severity,
        order: Some(SortOrder::Asc),
        ..Default::default()
    })
    .await;
    assert_eq!(up[0].vulnerability.severity, Severity::Medium);
    assert_eq!(
        up.last().unwrap().vulnerability.severity,
        Severity::Critical
    );
    let web_high = list(FindingFilter {
        sort: FindingSort::Epss,
        severities: vec![Severity::High],
        agent_id: Some(f.web),
        query: Some("lodash".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(
        web_high
            .iter()
            .map(|r| r.vulnerability.id.as_str())
            .collect::<Vec<_>>(),
        ["CVE-2020-8203", "CVE-2021-23337"]
    );
    let _ = (f.beta, f.app, f.idle, f.beta_host);
}

pub async fn dashboard_vulnerability_detail_pages_hosts_with_references(any: &AnyStore) {
    let store = &*any.storage();
    let f = fleet(store).await;
    let mut advisory = Advisory::new("CVE-2021-23337", Source::Nvd);
    advisory.references = vec![
        "https://nvd.nist.gov/vuln/detail/CVE-2021-23337".into(),
        "https://github.com/lodash/lodash/commit/3469357".into(),
    ];
    let mut alias = Advisory::new("GHSA-cve-2021-23337", Source::Osv);
    alias.references = vec![
        "https://github.com/lodash/lodash/commit/3469357".into(),
        "https://github.com/advisories/GHSA-35jh-r3h4-6jhm".into(),
    ];
    any.import_knowledge(KnowledgeImport {
        advisories: vec![advisory, alias],
        origin: "test".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    // Page by page, by alias: open findings of the two hosts.
    let first = store
        .vulnerability(
            f.acme,
            "GHSA-cve-2021-23337",
            &PageRequest {
                limit: 1,
                cursor: None,
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.vulnerability.id, "CVE-2021-23337");
    assert_eq!((first.hosts, first.findings), (2, 2));
    assert_eq!(first.fixed_versions, ["4.17.21"]);
    assert_eq!(first.packages.len(), 1);
    assert_eq!(
        first.references,
        [
            "https://nvd.nist.gov/vuln/detail/CVE-2021-23337",
            "https://github.com/lodash/lodash/commit/3469357",
            "https://github.com/advisories/GHSA-35jh-r3h4-6jhm"
        ]
    );
    assert_eq!(first.affected.len(), 1);
    let mut hosts = vec![first.affected[0].hostname.clone()];
    let mut cursor = first.next_cursor.clone();
    while let Some(c) = cursor {
        let next = store
            .vulnerability(
                f.acme,
                "CVE-2021-23337",
                &PageRequest {
                    limit: 1,
                    cursor: Some(c),
                },
            )
            .await
            .unwrap()
            .unwrap();
        hosts.extend(next.affected.iter().map(|a| a.hostname.clone()));
        cursor = next.next_cursor;
    }
    assert_eq!(hosts, ["db-2", "web-1"]);
    // After web-1's upgrade its finding is resolved: open hosts first, then resolved ones.
    report(
        store,
        f.acme,
        f.web,
        ("web-1", &debian()),
        &[npm("lodash", "4.17.21")],
        f.t + chrono::Duration::seconds(60),
    )
    .await;
    let d = store
        .vulnerability(f.acme, "CVE-2021-23337", &PageRequest::default())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((d.hosts, d.findings), (1, 1));
    let order: Vec<(&str, bool)> = d
        .affected
        .iter()
        .map(|a| (a.hostname.as_str(), a.resolved_at.is_some()))
        .collect();
    assert_eq!(order, [("db-2", false), ("web-1", true)]);
    assert!(d.next_cursor.is_none());
    // Beta has it too, but sees only its own host; an unknown company sees nothing.
    let b = store
        .vulnerability(f.beta, "CVE-2021-23337", &PageRequest::default())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(b.affected.len(), 1);
    assert_eq!(b.affected[0].agent_id, f.beta_host);
    assert!(store
        .vulnerability(
            CompanyId::new_v4(),
            "CVE-2021-23337",
            &PageRequest::default()
        )
        .await
        .unwrap()
        .is_none());
    let _ = (f.db, f.app, f.idle);
}

pub async fn dashboard_trends_and_overview(any: &AnyStore) {
    let store = &*any.storage();
    let f = fleet(store).await;
    let today = Utc::now().date_naive();
    let long_ago = today - chrono::Duration::days(500);
    assert!(store.trends(f.acme, long_ago).await.unwrap().is_empty());
    // A point from long ago (written as the janitor would have then), and today's.
    let at = |day: chrono::NaiveDate| day.and_hms_opt(12, 0, 0).unwrap().and_utc();
    assert_eq!(
        store.record_trends(at(long_ago), long_ago).await.unwrap(),
        2
    );
    assert_eq!(
        store
            .record_trends(Utc::now(), today - chrono::Duration::days(400))
            .await
            .unwrap(),
        2
    );
    let points = store.trends(f.acme, long_ago).await.unwrap();
    assert_eq!(points.len(), 1, "the point before the kept range is gone");
    let summary = store.summary(f.acme).await.unwrap();
    assert_eq!(points[0], TrendPoint::of(today, &summary));
    assert_eq!(
        (
            points[0].critical,
            points[0].high,
            points[0].medium,
            points[0].kev
        ),
        (1, 4, 1, 1)
    );
    // Nothing is overdue ten minutes after the reports.
    assert_eq!(points[0].overdue_by_severity, SeverityCounts::default());
    assert_eq!(summary.overdue_by_severity, SeverityCounts::default());
    // Rewriting today's point is idempotent and follows the counters.
    report(
        store,
        f.acme,
        f.db,
        ("db-2", &ubuntu()),
        &[npm("lodash", "4.17.21")],
        f.t + chrono::Duration::seconds(60),
    )
    .await;
    store
        .record_trends(Utc::now(), today - chrono::Duration::days(400))
        .await
        .unwrap();
    let points = store.trends(f.acme, today).await.unwrap();
    assert_eq!(points.len(), 1);
    assert_eq!(
        (points[0].critical, points[0].high, points[0].kev),
        (0, 2, 0)
    );
    assert_eq!(store.trends(f.beta, today).await.unwrap()[0].high, 2);

    // The operator's overview: every company with its counters, stale agents counted.
    let idle = store.get_agent(f.acme, f.idle).await.unwrap().unwrap();
    let rows = store
        .overview(idle.enrolled_at + chrono::Duration::milliseconds(1))
        .await
        .unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["Acme", "Beta"]);
    let acme = &rows[0];
    assert_eq!(acme.company_id, f.acme);
    assert_eq!((acme.agents, acme.apps, acme.stale_agents), (4, 5, 1));
    assert_eq!(acme.findings, store.summary(f.acme).await.unwrap().findings);
    assert_eq!((rows[1].agents, rows[1].findings.high), (1, 2));
    let _ = (f.web, f.app, f.beta_host);
}

/// Overdue findings per severity in the trend points, on the injected clock of the janitor's
/// snapshot: each severity falls overdue after its SLA days (critical 7, high 30, medium 90),
/// the per-severity counts add up to `overdue`, suppressed findings are left out of them,
/// each company counts its own, and the company's SLA policy is the one applied.
pub async fn trends_count_overdue_per_severity(any: &AnyStore) {
    let store = &*any.storage();
    let f = fleet(store).await;
    let keep = f.t.date_naive() - chrono::Duration::days(400);
    let point = |points: &[TrendPoint], day: chrono::NaiveDate| {
        *points
            .iter()
            .find(|p| p.date == day)
            .unwrap_or_else(|| panic!("no point of {day}: {points:?}"))
    };
    let sev = |critical, high, medium| SeverityCounts {
        critical,
        high,
        medium,
        low: 0,
        unknown: 0,
    };
    // Acme: event-stream's critical (KEV, no CISA date) on db-2, lodash's two highs on web-1
    // and db-2, minimist's medium on web-1. Beta: lodash's two highs.
    let mut expected = Vec::new();
    for (days, acme, beta) in [
        (1, sev(0, 0, 0), sev(0, 0, 0)),
        (8, sev(1, 0, 0), sev(0, 0, 0)),
        (31, sev(1, 4, 0), sev(0, 2, 0)),
        (91, sev(1, 4, 1), sev(0, 2, 0)),
    ] {
        let at = f.t + chrono::Duration::days(days);
        assert_eq!(store.record_trends(at, keep).await.unwrap(), 2);
        expected.push((at.date_naive(), acme, beta));
    }
    let points = store.trends(f.acme, f.t.date_naive()).await.unwrap();
    let beta_points = store.trends(f.beta, f.t.date_naive()).await.unwrap();
    for (day, acme, beta) in &expected {
        let p = point(&points, *day);
        assert_eq!(p.overdue_by_severity, *acme, "Acme on {day}");
        assert_eq!(p.overdue, acme.total(), "Acme on {day}");
        // The open counts are the counters, whatever is overdue.
        assert_eq!((p.critical, p.high, p.medium), (1, 4, 1));
        let b = point(&beta_points, *day);
        assert_eq!(b.overdue_by_severity, *beta, "Beta on {day}");
        assert_eq!(b.overdue, beta.total());
    }

    // A suppressed vulnerability leaves the overdue counts (lodash's CVE-2020-8203: one high
    // on each of Acme's two hosts), and counts as suppressed.
    let now = Utc::now();
    store
        .create_analysis(
            f.acme,
            &super::analyses::new("CVE-2020-8203", super::analyses::decision(true)),
            &super::analyses::ctx(now, Some("not shipped")),
        )
        .await
        .unwrap();
    // A stricter policy: high findings are due after 20 days, critical after 1.
    let mut policy = store.sla_policy(f.acme).await.unwrap();
    policy.high_days = 20;
    policy.critical_days = 1;
    store
        .set_sla_policy(f.acme, &policy, &super::analyses::ctx(now, None))
        .await
        .unwrap();
    for (days, acme) in [(2, sev(1, 0, 0)), (21, sev(1, 2, 0))] {
        let at = f.t + chrono::Duration::days(days);
        store.record_trends(at, keep).await.unwrap();
        let p = point(
            &store.trends(f.acme, f.t.date_naive()).await.unwrap(),
            at.date_naive(),
        );
        assert_eq!(p.overdue_by_severity, acme, "Acme on day {days}");
        assert_eq!((p.overdue, p.suppressed, p.high), (acme.total(), 2, 2));
    }
    // Beta's policy and findings are its own.
    let b = point(
        &store.trends(f.beta, f.t.date_naive()).await.unwrap(),
        (f.t + chrono::Duration::days(21)).date_naive(),
    );
    assert_eq!((b.overdue, b.suppressed, b.high), (0, 0, 2));
    // The summary is the same count now: nothing is overdue yet at today's clock.
    let s = store.summary(f.acme).await.unwrap();
    assert_eq!(
        (s.overdue, s.overdue_by_severity),
        (0, SeverityCounts::default())
    );
    let _ = (f.web, f.db, f.app, f.idle, f.beta_host);
}

/// Time to remediate: the rows behind it are the company's findings resolved by a report
/// (package removed, or upgraded to a version without the vulnerability) from `since` on,
/// each with its severity, first seen and resolved times; an upgrade to a version that still
/// has it is no remediation, and a host decommissioned resolves its findings without
/// remediating them.
pub async fn remediation_rows_per_severity(any: &AnyStore) {
    let store = &*any.storage();
    let f = fleet(store).await;
    // The fleet's findings were opened when its reports were processed (about now).
    let opened = store
        .list_findings(
            f.acme,
            &FindingFilter::default(),
            &PageRequest {
                limit: 100,
                cursor: None,
            },
        )
        .await
        .unwrap()
        .items
        .iter()
        .map(|r| r.first_seen)
        .max()
        .unwrap();
    assert!(store
        .remediation_rows(f.acme, f.t)
        .await
        .unwrap()
        .is_empty());
    // Three days later db-2 upgrades lodash and drops event-stream: its critical and two
    // highs are remediated after three days.
    let day3 = opened + chrono::Duration::days(3);
    report_processed_at(
        store,
        f.acme,
        f.db,
        ("db-2", &ubuntu()),
        &[npm("lodash", "4.17.21")],
        day3,
        day3,
    )
    .await;
    // Ten days later web-1 drops minimist (its medium remediated after ten days) and
    // upgrades lodash to a version without CVE-2020-8203 (remediated) that still has
    // CVE-2021-23337 (not remediated: it goes on in the new version's row).
    let day10 = opened + chrono::Duration::days(10);
    report_processed_at(
        store,
        f.acme,
        f.web,
        ("web-1", &debian()),
        &[npm("lodash", "4.17.20"), npm("left-pad", "1.0.0")],
        day10,
        day10,
    )
    .await;
    // Beta's host is decommissioned: resolved, but nothing was remediated.
    store
        .decommission_agent(f.beta, f.beta_host, day10)
        .await
        .unwrap()
        .unwrap();
    let mut rows = store.remediation_rows(f.acme, f.t).await.unwrap();
    rows.sort_by_key(|(s, _, r)| (*r, *s));
    let days: Vec<(Severity, i64)> = rows
        .iter()
        // Rounded to the hour: the fleet's reports were processed a moment apart.
        .map(|(s, seen, resolved)| (*s, ((*resolved - *seen).num_seconds() + 1800) / 3600))
        .collect();
    assert_eq!(
        days,
        [
            (Severity::High, 72),
            (Severity::High, 72),
            (Severity::Critical, 72),
            (Severity::Medium, 240),
            (Severity::High, 240),
        ]
    );
    // CVE-2021-23337 is still open on web-1, first seen when it was first reported.
    let still = store
        .list_findings(
            f.acme,
            &FindingFilter {
                agent_id: Some(f.web),
                ..Default::default()
            },
            &PageRequest {
                limit: 100,
                cursor: None,
            },
        )
        .await
        .unwrap()
        .items;
    assert_eq!(still.len(), 1, "{still:?}");
    assert_eq!(
        (
            still[0].vulnerability.id.as_str(),
            still[0].package.version.as_str()
        ),
        ("CVE-2021-23337", "4.17.20")
    );
    assert!(still[0].first_seen <= opened);
    // From a later time on: only what was resolved since.
    let later = store
        .remediation_rows(f.acme, opened + chrono::Duration::days(5))
        .await
        .unwrap();
    let mut later: Vec<Severity> = later.iter().map(|r| r.0).collect();
    later.sort();
    assert_eq!(later, [Severity::Medium, Severity::High]);
    let stats = zt_store::sla::remediation_stats(&rows);
    let by = |name: &str| stats.iter().find(|s| s.severity == name).unwrap().clone();
    assert_eq!(
        (by("critical").remediated, by("critical").median_days),
        (1, Some(3.0))
    );
    assert_eq!(
        (
            by("high").remediated,
            by("high").median_days,
            by("high").p90_days
        ),
        (3, Some(3.0), Some(10.0))
    );
    assert_eq!(
        (by("medium").remediated, by("medium").median_days),
        (1, Some(10.0))
    );
    assert_eq!((by("low").remediated, by("low").median_days), (0, None));
    // Beta: decommissioned, not remediated.
    assert!(store
        .remediation_rows(f.beta, f.t)
        .await
        .unwrap()
        .is_empty());
    let _ = (f.app, f.idle);
}

/// The findings search (`q`) in the default order reads through what the text matches (the
/// vulnerabilities of the packages it names, the vulnerabilities it names, the hosts it names)
/// instead of walking every open finding: page by page it shows exactly the findings the
/// filter keeps, each once, in the default order, with any page size. Acme has 60 hosts here so
/// that a text naming one host takes the hosts' own path (a text naming many hosts walks).
pub async fn dashboard_findings_search_reads_what_the_text_matches(any: &AnyStore) {
    let store = &*any.storage();
    let f = fleet(store).await;
    let t = f.t;
    for i in 0..56u8 {
        // One host whose name is also in a package's: a search names both.
        let name = if i == 3 {
            "event-box".to_string()
        } else {
            format!("node-{i:02}")
        };
        let node = super::super::common::agent_with(
            store,
            f.acme,
            &name,
            zt_store::model::TokenHash([120 + i; 32]),
        )
        .await;
        let apps = match i % 4 {
            0 => vec![npm("lodash", "4.17.15"), npm("left-pad", "1.0.0")],
            1 => vec![npm("minimist", "0.0.8")],
            2 => vec![npm("event-stream", "3.3.6"), npm("lodash-es", "4.17.15")],
            _ if i == 3 => vec![npm("lodash", "4.17.15")],
            _ => vec![npm("left-pad", "1.0.0")],
        };
        report(store, f.acme, node, (&name, &debian()), &apps, t).await;
    }
    let key = |r: &FindingRow| {
        (
            r.agent_id,
            r.package.name.clone(),
            r.vulnerability.id.clone(),
        )
    };
    for (q, hosts, findings) in [
        ("lodash", 31, 48),
        ("MINIMIST", 15, 15),
        ("cve-2018", 15, 15),
        ("GHSA-CVE-2020-8203", 31, 31),
        ("node-06", 1, 2),
        ("event", 16, 17),
        ("node-1", 7, 12),
        ("web-1", 1, 3),
        ("no such thing", 0, 0),
    ] {
        let filter = FindingFilter {
            query: Some(q.into()),
            ..Default::default()
        };
        // The same findings through the other order's path (a walk with the same filter).
        let reference: BTreeSet<_> = all_pages(100, |p| {
            let filter = FindingFilter {
                order: Some(SortOrder::Asc),
                ..filter.clone()
            };
            async move { store.list_findings(f.acme, &filter, &p).await.unwrap() }
        })
        .await
        .iter()
        .map(key)
        .collect();
        assert_eq!(reference.len(), findings, "search {q:?}");
        let distinct_hosts: BTreeSet<_> = reference.iter().map(|k| k.0).collect();
        assert_eq!(distinct_hosts.len(), hosts, "search {q:?}");
        for limit in [1, 2, 7, 100] {
            let rows = all_pages(limit, |p| {
                let filter = filter.clone();
                async move { store.list_findings(f.acme, &filter, &p).await.unwrap() }
            })
            .await;
            let keys: BTreeSet<_> = rows.iter().map(key).collect();
            assert_eq!(
                keys.len(),
                rows.len(),
                "search {q:?} by {limit}: a finding twice"
            );
            assert_eq!(keys, reference, "search {q:?} by {limit}");
            // Most severe first, then by vulnerability id.
            assert!(
                rows.windows(2).all(|w| {
                    let (a, b) = (&w[0].vulnerability, &w[1].vulnerability);
                    a.severity > b.severity || (a.severity == b.severity && a.id <= b.id)
                }),
                "search {q:?} by {limit}: out of order"
            );
        }
    }
    // Filters still apply to a search: critical only, and no other company's findings.
    let critical = all_pages(3, |p| async move {
        store
            .list_findings(
                f.acme,
                &FindingFilter {
                    query: Some("node".into()),
                    severities: vec![Severity::Critical],
                    ..Default::default()
                },
                &p,
            )
            .await
            .unwrap()
    })
    .await;
    assert_eq!(critical.len(), 14);
    assert!(critical
        .iter()
        .all(|r| r.vulnerability.id == "CVE-2018-1002204"));
    let beta = store
        .list_findings(
            f.beta,
            &FindingFilter {
                query: Some("node-0".into()),
                ..Default::default()
            },
            &PageRequest::default(),
        )
        .await
        .unwrap();
    assert!(beta.items.is_empty());
}

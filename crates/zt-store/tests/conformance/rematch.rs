//! Issue 15 on both backends: after a sequence of knowledge changes (real PyPA advisories of
//! ../shared/data added, one changed, one withdrawn; the real KEV catalog listing three of
//! their CVEs; new EPSS scores), the findings the targeted re-match leaves are those a full
//! match from scratch gives — every host's open findings with severity, KEV, EPSS and fixes —
//! and only part of the known software was matched again. Findings opened by the re-match
//! and vulnerabilities that became KEV notify like those of a report.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{TimeZone, Utc};
use uuid::Uuid;
use zt_advisory::{Advisory, EpssScore, KevEntry, KnowledgeBase, RangeEvent};
use zt_feeds::{FeedItem, FeedRecord};
use zt_inventory::{App, AppSource, Software, SoftwareKey};
use zt_match::{ChangeScope, MatchIndex};
use zt_store::knowledge::KnowledgeImport;
use zt_store::model::*;
use zt_store::notify::{NotificationRule, RuleDestination};
use zt_store::rematch::{rematch, Rematcher, ScopeFn};
use zt_store::{AnyStore, Storage};
use zt_testkit::shared_path;

use super::super::common::{agent_with, company_with, incoming, os};

const PACKAGES: [&str; 6] = [
    "salt",
    "apache-airflow",
    "jinja2",
    "requests",
    "urllib3",
    "pyspark",
];

fn read(paths: &[PathBuf]) -> (Vec<Advisory>, Vec<KevEntry>, Vec<EpssScore>) {
    let (mut a, mut k, mut e) = (Vec::new(), Vec::new(), Vec::new());
    for p in zt_feeds::list_inputs(paths).unwrap() {
        zt_feeds::read_file(&p, &mut |item| match item {
            FeedItem::Record(FeedRecord::Advisory(x)) => a.push(*x),
            FeedItem::Record(FeedRecord::Kev(x)) => k.push(x),
            FeedItem::Record(FeedRecord::Epss(x)) => e.push(x),
            FeedItem::Error(err) => panic!("{err}"),
            FeedItem::SkippedFile { .. } => {}
        });
    }
    (a, k, e)
}

/// The server's side of the re-match, on an index built here from the store's knowledge.
struct TestMatcher {
    kb: Arc<KnowledgeBase>,
    index: MatchIndex,
}

impl TestMatcher {
    async fn at(store: &dyn Storage) -> TestMatcher {
        let kb = Arc::new(store.load_knowledge().await.unwrap());
        let index = MatchIndex::build(&kb);
        TestMatcher { kb, index }
    }
}

fn stored(m: &zt_match::VulnMatch) -> StoredMatch {
    StoredMatch {
        vulnerability: VulnInfo {
            id: m.id.clone(),
            aliases: m.aliases.clone(),
            summary: m.summary.clone(),
            severity: m.severity,
            cvss: m.cvss.clone(),
            kev: m.kev,
            kev_due_date: m.kev_due_date.clone(),
            epss: m.epss,
            epss_percentile: m.epss_percentile,
            informational: m.informational,
        },
        fixed_versions: m.fixed_versions.clone(),
        method: m.method.as_str().to_string(),
        confidence: m.confidence.as_str().to_string(),
    }
}

#[async_trait]
impl Rematcher for TestMatcher {
    fn revision(&self) -> u64 {
        self.kb.revision
    }
    fn match_page(&self, page: Vec<(SoftwareKey, Software)>) -> Vec<MatchedSoftware> {
        page.into_iter()
            .map(|(key, software)| MatchedSoftware {
                key,
                matches: self
                    .index
                    .match_software(&software)
                    .iter()
                    .map(stored)
                    .collect(),
                software,
            })
            .collect()
    }
    async fn scope(&self, changed: &[String]) -> Option<ScopeFn> {
        let scope = ChangeScope::of(&self.kb, changed);
        Some(Box::new(move |sw: &Software| scope.covers(sw)))
    }
    fn enrichment(&self, vuln_id: &str) -> Option<VulnEnrichment> {
        self.index.enrichment(vuln_id).map(|e| VulnEnrichment {
            vuln_id: vuln_id.to_string(),
            kev: e.kev,
            kev_due_date: e.kev_due_date,
            epss: e.epss,
            epss_percentile: e.epss_percentile,
        })
    }
}

/// Versions of a package a fleet would have: some the advisories list, and one newer than any.
fn versions_of(advisories: &[Advisory], package: &str) -> Vec<String> {
    let mut listed: BTreeSet<String> = BTreeSet::new();
    for a in advisories {
        for p in a.affected.iter().filter(|p| p.name == package) {
            listed.extend(p.versions.iter().cloned());
            for r in &p.ranges {
                for e in &r.events {
                    if let RangeEvent::Fixed(v) = e {
                        listed.insert(v.clone());
                    }
                }
            }
        }
    }
    let mut out: Vec<String> = listed.into_iter().step_by(5).take(12).collect();
    out.push("999.0".into());
    out
}

/// Ingests one report per agent as a worker with `matcher`'s index would.
async fn ingest(store: &dyn Storage, fleet: &[(CompanyId, AgentId, Vec<App>)], m: &TestMatcher) {
    let t = Utc::now();
    let reports: Vec<IncomingReport> = fleet
        .iter()
        .map(|(c, a, apps)| incoming(*c, *a, apps, t, b"{}".to_vec()))
        .collect();
    store.accept_reports(&reports, 10_000).await.unwrap();
    let claimed = store
        .claim_batch(&ClaimRequest {
            owner: "w".into(),
            max_apps: 1_000_000,
            lease: Duration::from_secs(60),
            max_attempts: 3,
            overdue_after: Duration::from_secs(3600),
            now: Utc::now(),
        })
        .await
        .unwrap();
    assert_eq!(claimed.len(), fleet.len());
    let o = os();
    let mut software: BTreeMap<SoftwareKey, Software> = BTreeMap::new();
    let mut processed = Vec::new();
    for c in &claimed {
        let (_, _, apps) = fleet
            .iter()
            .find(|(_, a, _)| *a == c.agent_id)
            .expect("claimed report of the fleet");
        let sw: Vec<Software> = apps.iter().map(|a| Software::from_app(a, &o)).collect();
        processed.push(ProcessedReport {
            lease: LeaseRef {
                queue_id: c.queue_id,
                owner: "w".into(),
                attempts: c.attempts,
            },
            company_id: c.company_id,
            agent_id: c.agent_id,
            report_id: c.report_id,
            collected_at: t,
            digest: zt_inventory::inventory_digest(apps),
            hostname: "host".into(),
            os: o.clone(),
            arch: "x86_64".into(),
            apps: sw
                .iter()
                .map(|s| StoredApp {
                    software_key: s.key(),
                    arch: String::new(),
                })
                .collect(),
            names: sw
                .iter()
                .map(|s| (s.key(), format!("{}\u{0}{}", s.ecosystem, s.name)))
                .collect(),
        });
        for s in sw {
            software.insert(s.key(), s);
        }
    }
    let keys: Vec<SoftwareKey> = software.keys().copied().collect();
    let unknown: HashSet<SoftwareKey> = store
        .unmatched_software(&keys)
        .await
        .unwrap()
        .into_iter()
        .collect();
    let page: Vec<(SoftwareKey, Software)> = software
        .into_iter()
        .filter(|(k, _)| unknown.contains(k))
        .collect();
    store
        .finish_batch(&ProcessedBatch {
            revision: m.revision(),
            software: m.match_page(page),
            reports: processed,
            now: Utc::now(),
        })
        .await
        .unwrap();
}

/// (agent, package, version, vulnerability, severity, KEV, EPSS ‰, fixes) of open findings.
type Row = (
    AgentId,
    String,
    String,
    String,
    String,
    bool,
    Option<i64>,
    Vec<String>,
);

async fn open_findings(store: &dyn Storage, companies: &[CompanyId]) -> BTreeSet<Row> {
    let mut out = BTreeSet::new();
    for c in companies {
        let mut cursor = None;
        loop {
            let page = store
                .list_findings(
                    *c,
                    &FindingFilter::default(),
                    &PageRequest {
                        limit: 500,
                        cursor: cursor.clone(),
                    },
                )
                .await
                .unwrap();
            for f in page.items {
                let mut fixed = f.fixed_versions.clone();
                fixed.sort();
                out.insert((
                    f.agent_id,
                    f.package.name.clone(),
                    f.package.version.clone(),
                    f.vulnerability.id.clone(),
                    f.vulnerability.severity.as_str().to_string(),
                    f.vulnerability.kev,
                    f.vulnerability.epss.map(|e| (e * 1000.0).round() as i64),
                    fixed,
                ));
            }
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
    }
    out
}

/// What a full match of every host's apps against the knowledge gives, from scratch.
fn expected(fleet: &[(CompanyId, AgentId, Vec<App>)], index: &MatchIndex) -> BTreeSet<Row> {
    let o = os();
    let mut out = BTreeSet::new();
    for (_, agent, apps) in fleet {
        for app in apps {
            let sw = Software::from_app(app, &o);
            for m in index.match_software(&sw) {
                let mut fixed = m.fixed_versions.clone();
                fixed.sort();
                out.insert((
                    *agent,
                    sw.name.clone(),
                    sw.version.clone(),
                    m.id.clone(),
                    m.severity.as_str().to_string(),
                    m.kev,
                    m.epss.map(|e| (e * 1000.0).round() as i64),
                    fixed,
                ));
            }
        }
    }
    out
}

async fn import(store: &dyn Storage, batch: KnowledgeImport) -> u64 {
    let summary = store.import_knowledge(batch).await.unwrap();
    summary.revision
}

pub async fn targeted_rematch_equals_a_full_rematch(store: &AnyStore) {
    let storage = store.storage();
    let s: &dyn Storage = &*storage;
    let dirs: Vec<PathBuf> = PACKAGES
        .iter()
        .map(|p| shared_path(&format!("osv/pypa/vulns/{p}")))
        .collect();
    let (mut all, _, _) = read(&dirs);
    all.sort_by(|a, b| a.id.cmp(&b.id));
    let (_, catalog, _) = read(&[shared_path("kev/known_exploited_vulnerabilities.json")]);
    let (_, _, epss_all) = read(&[shared_path("epss/epss-snapshot-2026-08-16.csv.gz")]);
    let named: HashSet<&str> = all
        .iter()
        .flat_map(|a| std::iter::once(&a.id).chain(&a.aliases))
        .map(String::as_str)
        .collect();
    let epss: Vec<EpssScore> = epss_all
        .into_iter()
        .filter(|e| named.contains(e.cve.as_str()))
        .collect();
    assert!(epss.len() > 20, "EPSS scores of the advisories' CVEs");

    // Before: every third advisory held back; the KEV catalog without the PyPA CVEs.
    let held: Vec<Advisory> = all.iter().step_by(3).cloned().collect();
    let held_ids: HashSet<&str> = held.iter().map(|a| a.id.as_str()).collect();
    let first: Vec<Advisory> = all
        .iter()
        .filter(|a| !held_ids.contains(a.id.as_str()))
        .cloned()
        .collect();
    let kev_pypa: Vec<&KevEntry> = catalog
        .iter()
        .filter(|k| named.contains(k.cve.as_str()))
        .collect();
    assert_eq!(
        kev_pypa.len(),
        6,
        "CVEs of salt, airflow and pyspark are in KEV"
    );
    let catalog_before: Vec<KevEntry> = catalog
        .iter()
        .filter(|k| !named.contains(k.cve.as_str()))
        .cloned()
        .collect();
    import(
        s,
        KnowledgeImport {
            advisories: first.clone(),
            kev: catalog_before,
            epss: epss.clone(),
            origin: "test".into(),
        },
    )
    .await;

    // The fleet: two companies with these packages, a third with none of them.
    let mut fleet: Vec<(CompanyId, AgentId, Vec<App>)> = Vec::new();
    let acme = company_with(s, "Acme", TokenHash([150; 32])).await;
    let beta = company_with(s, "Beta", TokenHash([151; 32])).await;
    let other = company_with(s, "Other", TokenHash([152; 32])).await;
    let catalogue: Vec<App> = PACKAGES
        .iter()
        .flat_map(|p| {
            versions_of(&all, p)
                .into_iter()
                .map(move |v| App::new(*p, &v, AppSource::Pypi))
        })
        .collect();
    assert!(catalogue.len() > 40);
    for i in 0..16u8 {
        let company = if i < 11 { acme } else { beta };
        let agent = agent_with(s, company, &format!("h{i}"), TokenHash([160 + i; 32])).await;
        let apps: Vec<App> = catalogue
            .iter()
            .enumerate()
            .filter(|(j, _)| (j + i as usize) % 4 == 0 || (j * 7 + i as usize) % 11 == 0)
            .map(|(_, a)| a.clone())
            .collect();
        fleet.push((company, agent, apps));
    }
    let lonely = agent_with(s, other, "o1", TokenHash([190; 32])).await;
    fleet.push((
        other,
        lonely,
        vec![App::new("left-pad", "1.0.0", AppSource::Npm)],
    ));
    // Rules hearing of opened findings and of KEV.
    let n = s.notifications();
    for (c, name, events) in [
        (acme, "opened", vec!["finding.opened"]),
        (acme, "kev", vec!["finding.kev"]),
    ] {
        assert!(n
            .create_rule(&NotificationRule {
                rule_id: Uuid::now_v7(),
                company_id: c,
                name: name.into(),
                events: events.iter().map(|e| e.to_string()).collect(),
                min_severity: None,
                kev_only: false,
                tags: vec![],
                digest_minutes: 0,
                stale_days: 7,
                destination: RuleDestination {
                    kind: "webhook".into(),
                    url: Some(format!("https://hooks.example.com/{name}")),
                    to: vec![],
                },
                secret_sealed: None,
                created_at: Utc::now(),
                updated_at: Utc::now(),
            })
            .await
            .unwrap());
    }
    let m0 = TestMatcher::at(s).await;
    ingest(s, &fleet, &m0).await;
    let companies = [acme, beta, other];
    assert_eq!(
        open_findings(s, &companies).await,
        expected(&fleet, &m0.index),
        "ingest matches"
    );
    // The first pass records the base; nothing to match again.
    let never = || false;
    let r0 = rematch(s, &m0, &never).await.unwrap();
    assert_eq!(r0.software_matched, 0);
    let lease = Duration::from_secs(3600);
    let told_at_ingest = n
        .claim_notifications("d", Utc::now(), lease, 10_000)
        .await
        .unwrap();
    assert!(!told_at_ingest.is_empty());
    let known_software = catalogue.len() as u64 + 1;

    // 1. The held-back advisories arrive; one known advisory now affects every version of
    //    its package up to 99 (the fix moved); one is withdrawn.
    let later = Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap();
    let changed_one = first
        .iter()
        .find(|a| a.affected.iter().any(|p| p.name == "jinja2"))
        .expect("a jinja2 advisory")
        .clone();
    let mut widened = changed_one.clone();
    widened.modified = Some(later);
    for p in &mut widened.affected {
        p.versions.clear();
        for r in &mut p.ranges {
            r.events = vec![
                RangeEvent::Introduced("0".into()),
                RangeEvent::Fixed("99.0".into()),
            ];
        }
    }
    let gone = first
        .iter()
        .find(|a| a.affected.iter().any(|p| p.name == "requests"))
        .expect("a requests advisory")
        .clone();
    let mut withdrawn = gone.clone();
    withdrawn.modified = Some(later);
    withdrawn.withdrawn = Some(later);
    let mut batch = held.clone();
    batch.push(widened);
    batch.push(withdrawn);
    import(
        s,
        KnowledgeImport {
            advisories: batch,
            origin: "test".into(),
            ..Default::default()
        },
    )
    .await;
    let m1 = TestMatcher::at(s).await;
    let r1 = rematch(s, &m1, &never).await.unwrap();
    assert!(r1.complete && r1.targeted, "{r1:?}");
    assert_eq!(r1.changed_advisories, held.len() as u64 + 2);
    assert!(
        r1.software_matched > 0 && r1.software_confirmed > 0,
        "{r1:?}"
    );
    assert_eq!(r1.software_matched + r1.software_confirmed, known_software);
    assert_eq!(
        open_findings(s, &companies).await,
        expected(&fleet, &m1.index),
        "after advisories added, changed, withdrawn"
    );
    let opened = n
        .claim_notifications("d", Utc::now(), lease, 10_000)
        .await
        .unwrap();
    assert!(
        opened.iter().any(|c| c.event == "finding.opened"),
        "findings opened by the re-match notify"
    );

    // 2. KEV lists the salt, airflow and pyspark CVEs; EPSS moves. No version is matched
    //    again, the findings show both.
    import(
        s,
        KnowledgeImport {
            kev: catalog.clone(),
            origin: "test".into(),
            ..Default::default()
        },
    )
    .await;
    let moved: Vec<EpssScore> = epss
        .iter()
        .map(|e| EpssScore {
            epss: (e.epss * 0.5 + 0.25).min(1.0),
            date: e.date.map(|d| d + chrono::Days::new(1)),
            ..e.clone()
        })
        .collect();
    import(
        s,
        KnowledgeImport {
            epss: moved,
            origin: "test".into(),
            ..Default::default()
        },
    )
    .await;
    let m2 = TestMatcher::at(s).await;
    let r2 = rematch(s, &m2, &never).await.unwrap();
    assert!(r2.complete && r2.targeted, "{r2:?}");
    assert_eq!(r2.software_matched, 0, "KEV and EPSS match nothing again");
    assert!(
        r2.enrichment_changed > 0 && r2.agents_reconciled > 0,
        "{r2:?}"
    );
    let now_findings = open_findings(s, &companies).await;
    assert_eq!(
        now_findings,
        expected(&fleet, &m2.index),
        "after KEV and EPSS changes"
    );
    assert!(
        now_findings.iter().any(|f| f.5),
        "KEV findings are shown as such"
    );
    let kev_told = n
        .claim_notifications("d", Utc::now(), lease, 10_000)
        .await
        .unwrap();
    let kev_vulns: BTreeSet<String> = kev_told
        .iter()
        .filter(|c| c.event == "finding.kev")
        .filter_map(|c| {
            c.data
                .get("vuln_id")
                .and_then(|v| v.as_str())
                .map(String::from)
        })
        .collect();
    let acme_kev: BTreeSet<String> = now_findings
        .iter()
        .filter(|f| f.5 && fleet.iter().any(|(c, a, _)| *c == acme && *a == f.0))
        .map(|f| f.3.clone())
        .collect();
    assert!(!acme_kev.is_empty());
    assert_eq!(
        kev_vulns, acme_kev,
        "finding.kev for each vulnerability that became KEV"
    );

    // The agents' counters agree with their findings.
    let agent_counts = |fs: &BTreeSet<Row>| {
        let mut by: BTreeMap<AgentId, u64> = BTreeMap::new();
        for f in fs {
            *by.entry(f.0).or_default() += 1;
        }
        by
    };
    for (c, a, _) in &fleet {
        let agent = s.get_agent(*c, *a).await.unwrap().unwrap();
        assert_eq!(
            agent.findings.total(),
            agent_counts(&now_findings).get(a).copied().unwrap_or(0),
            "counters of {a}"
        );
    }
}

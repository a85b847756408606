//! The vulnerabilities list and a vulnerability's counts (read from the per-company rollup the
//! writers maintain) agree with the open findings themselves after every kind of change:
//! ingest, a package removed or upgraded, a second package hit by the same vulnerability,
//! re-matching after new knowledge, suppression by an analysis, a decommissioned host. The
//! expected figures are counted here from the findings list, as a user would count them.

use std::collections::BTreeMap;

use chrono::Utc;
use zt_advisory::Severity;
use zt_store::analysis::SuppressedFilter;
use zt_store::model::*;
use zt_store::{AnyStore, Storage};

use super::analyses::{ctx, decision, new};
use super::dashboard::{debian, fleet, report};

/// Per vulnerability: hosts, findings, the highest severity.
type Counts = BTreeMap<String, (u64, u64, Severity)>;

/// Counted from every open finding (suppressed ones too, as the vulnerability views show them).
async fn from_findings(store: &dyn Storage, c: CompanyId) -> Counts {
    let mut hosts: BTreeMap<String, (std::collections::BTreeSet<AgentId>, u64, Severity)> =
        BTreeMap::new();
    let mut cursor = None;
    loop {
        let page = store
            .list_findings(
                c,
                &FindingFilter {
                    suppressed: SuppressedFilter::Include,
                    ..Default::default()
                },
                &PageRequest { limit: 2, cursor },
            )
            .await
            .unwrap();
        for f in page.items {
            let e = hosts
                .entry(f.vulnerability.id.clone())
                .or_insert_with(|| (Default::default(), 0, f.vulnerability.severity));
            e.0.insert(f.agent_id);
            e.1 += 1;
            e.2 = e.2.max(f.vulnerability.severity);
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    hosts
        .into_iter()
        .map(|(id, (agents, n, s))| (id, (agents.len() as u64, n, s)))
        .collect()
}

/// What the vulnerabilities list says, and each vulnerability's detail agrees.
async fn from_list(store: &dyn Storage, c: CompanyId) -> Counts {
    let mut out = Counts::new();
    let mut cursor = None;
    loop {
        let page = store
            .list_vulnerabilities(c, &VulnFilter::default(), &PageRequest { limit: 2, cursor })
            .await
            .unwrap();
        for v in page.items {
            let detail = store
                .vulnerability(
                    c,
                    &v.vulnerability.id,
                    &PageRequest {
                        limit: 50,
                        cursor: None,
                    },
                )
                .await
                .unwrap()
                .expect("a listed vulnerability has a detail");
            assert_eq!(
                (detail.hosts, detail.findings),
                (v.hosts, v.findings),
                "{}",
                v.vulnerability.id
            );
            out.insert(
                v.vulnerability.id.clone(),
                (v.hosts, v.findings, v.vulnerability.severity),
            );
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    out
}

async fn agree(store: &dyn Storage, companies: &[CompanyId], step: &str) -> Vec<Counts> {
    let mut all = Vec::new();
    for &c in companies {
        let expected = from_findings(store, c).await;
        assert_eq!(from_list(store, c).await, expected, "after {step}");
        all.push(expected);
    }
    all
}

fn npm(name: &str, version: &str) -> zt_inventory::App {
    super::super::common::npm(name, version)
}

pub async fn vulnerability_rollup_agrees_with_the_findings(any: &AnyStore) {
    let storage = any.storage();
    let store: &dyn Storage = &*storage;
    let f = fleet(store).await;
    let both = [f.acme, f.beta];
    let counts = agree(store, &both, "ingest").await;
    assert_eq!(
        counts[0].get("CVE-2020-8203"),
        Some(&(2, 2, Severity::High)),
        "web-1 and db-2 run lodash 4.17.15"
    );
    assert_eq!(
        counts[1].get("CVE-2020-8203"),
        Some(&(1, 1, Severity::High))
    );

    // web-1 adds lodash-es, hit by the same vulnerability: one host more finding, no host more.
    let t = f.t + chrono::Duration::seconds(10);
    let web_apps = vec![
        npm("lodash", "4.17.15"),
        npm("lodash-es", "4.17.15"),
        npm("minimist", "0.0.8"),
    ];
    report(store, f.acme, f.web, ("web-1", &debian()), &web_apps, t).await;
    let counts = agree(store, &both, "a second package hit").await;
    assert_eq!(
        counts[0].get("CVE-2020-8203"),
        Some(&(2, 3, Severity::High))
    );

    // web-1 upgrades lodash and drops minimist: resolved findings leave the counts.
    let t = t + chrono::Duration::seconds(10);
    let web_apps = vec![npm("lodash", "4.17.21"), npm("lodash-es", "4.17.15")];
    report(store, f.acme, f.web, ("web-1", &debian()), &web_apps, t).await;
    let counts = agree(store, &both, "an upgrade and a removal").await;
    assert_eq!(
        counts[0].get("CVE-2020-8203"),
        Some(&(2, 2, Severity::High))
    );
    assert_eq!(counts[0].get("CVE-2020-7598"), None, "minimist is gone");

    // New knowledge: CVE-2021-23337 withdrawn from lodash 4.17.15, re-matched everywhere.
    let stale = store.software_to_rematch(2, None, 100).await.unwrap();
    let results: Vec<MatchedSoftware> = stale
        .into_iter()
        .map(|(key, software)| {
            let mut matches = super::dashboard::matcher(&software);
            matches.retain(|m| m.vulnerability.id != "CVE-2021-23337");
            MatchedSoftware {
                key,
                matches,
                software,
            }
        })
        .collect();
    store.store_rematch(&results, 2).await.unwrap();
    let generation = store
        .reconcile_pending()
        .await
        .unwrap()
        .expect("findings must follow");
    for c in both {
        let mut after = None;
        while let Some(last) = store
            .reconcile_findings(c, after, 1, Utc::now())
            .await
            .unwrap()
        {
            after = Some(last);
        }
    }
    store.mark_reconciled(generation).await.unwrap();
    let counts = agree(store, &both, "a re-match").await;
    assert_eq!(counts[0].get("CVE-2021-23337"), None);
    assert_eq!(counts[1].get("CVE-2021-23337"), None);

    // Suppressed by an analysis: still open, still counted by the vulnerability views.
    store
        .create_analysis(
            f.acme,
            &new("CVE-2020-8203", decision(true)),
            &ctx(Utc::now(), None),
        )
        .await
        .unwrap();
    let counts = agree(store, &both, "a suppressing analysis").await;
    assert_eq!(
        counts[0].get("CVE-2020-8203"),
        Some(&(2, 2, Severity::High))
    );

    // db-2 decommissioned: its findings resolved, out of the counts.
    store
        .decommission_agent(f.acme, f.db, Utc::now())
        .await
        .unwrap()
        .expect("db-2 is live");
    let counts = agree(store, &both, "a decommission").await;
    assert_eq!(
        counts[0].get("CVE-2020-8203"),
        Some(&(1, 1, Severity::High))
    );
    assert_eq!(
        counts[0].get("CVE-2018-1002204"),
        None,
        "event-stream ran on db-2"
    );
}

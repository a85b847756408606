//! Alias grouping on the real shared data: one vulnerability is one group.

use std::sync::OnceLock;

use zt_advisory::{Advisory, AliasGroups, KnowledgeBase, Severity};
use zt_feeds::{read_paths, FeedRecord};
use zt_testkit::shared_path;

fn knowledge() -> &'static (KnowledgeBase, AliasGroups) {
    static KB: OnceLock<(KnowledgeBase, AliasGroups)> = OnceLock::new();
    KB.get_or_init(|| {
        let paths: Vec<_> = [
            "osv/rustsec/osv-json",
            "osv/pypa/vulns",
            "osv/ghsa-sample",
            "osv/ubuntu",
            "osv/debian-security-tracker/osv-like",
            "osv/alpine-secdb/json-2020/v3.11",
            "nvd/vunnel-fixtures",
            "nvd/osv.dev-fixtures/conversion-nvd-testdata-test.json",
            "nvd/osv.dev-fixtures/nvdcve-2.0",
            "kev/known_exploited_vulnerabilities.json",
        ]
        .iter()
        .map(|p| shared_path(p))
        .collect();
        let read = read_paths(&paths).unwrap();
        assert!(read.errors.is_empty());
        let mut kb = KnowledgeBase::default();
        for r in read.records {
            match r {
                FeedRecord::Advisory(a) => kb.advisories.push(*a),
                FeedRecord::Kev(k) => kb.kev.push(k),
                FeedRecord::Epss(e) => kb.epss.push(e),
            }
        }
        let groups = kb.groups();
        (kb, groups)
    })
}

fn index_of(kb: &KnowledgeBase, id: &str) -> usize {
    kb.advisories
        .iter()
        .position(|a| a.id == id)
        .unwrap_or_else(|| panic!("{id} missing"))
}

fn member_ids<'a>(kb: &'a KnowledgeBase, g: &zt_advisory::AdvisoryGroup) -> Vec<&'a str> {
    g.members
        .iter()
        .map(|&m| kb.advisories[m].id.as_str())
        .collect()
}

#[test]
fn ghsa_pysec_and_cve_are_one_group() {
    let (kb, groups) = knowledge();
    let g = groups.group_for(index_of(kb, "PYSEC-2023-74")).unwrap();
    assert_eq!(g.id, "CVE-2023-32681");
    assert_eq!(g.aliases, vec!["GHSA-j8r2-6x86-q33q", "PYSEC-2023-74"]);
    let mut members = member_ids(kb, g);
    members.sort_unstable();
    assert_eq!(members, vec!["GHSA-j8r2-6x86-q33q", "PYSEC-2023-74"]);
    assert_eq!(
        groups.group_of[index_of(kb, "GHSA-j8r2-6x86-q33q")],
        groups.group_of[index_of(kb, "PYSEC-2023-74")]
    );
    // Severity is computed from the GHSA's CVSS v3.1 vector, not copied from its label.
    assert_eq!(g.cvss.as_ref().map(|c| c.score), Some(6.1));
    assert_eq!(g.severity, Severity::Medium);
}

#[test]
fn rustsec_with_cve_alias() {
    let (kb, groups) = knowledge();
    let g = groups.group_for(index_of(kb, "RUSTSEC-2020-0071")).unwrap();
    assert_eq!(g.id, "CVE-2020-26235");
    assert_eq!(g.aliases, vec!["GHSA-wcg3-cvx6-7396", "RUSTSEC-2020-0071"]);
    assert_eq!(g.cves, vec!["CVE-2020-26235"]);
}

#[test]
fn ubuntu_records_merge_through_single_upstream() {
    let (kb, groups) = knowledge();
    let usn = groups.group_for(index_of(kb, "USN-5614-1")).unwrap();
    let ucve = groups
        .group_for(index_of(kb, "UBUNTU-CVE-2021-3782"))
        .unwrap();
    assert_eq!(usn, ucve);
    assert_eq!(usn.id, "CVE-2021-3782");
}

#[test]
fn dsa_upstream_cves() {
    let (kb, groups) = knowledge();
    // A DSA fixing one CVE is that vulnerability: it joins the NVD record's group.
    let single = groups.group_for(index_of(kb, "DSA-4286-1")).unwrap();
    assert_eq!(single.id, "CVE-2018-14618");
    assert!(single.aliases.contains(&"DSA-4286-1".to_string()));
    assert!(single.aliases.contains(&"DLA-1498-1".to_string()));
    let nvd: &Advisory = &kb.advisories[index_of(kb, "CVE-2018-14618")];
    assert_eq!(
        groups.group_for(index_of(kb, "CVE-2018-14618")),
        Some(single)
    );
    assert_eq!(single.cvss.as_ref(), nvd.best_cvss());

    // A DSA fixing 22 CVEs stays its own finding and lists them; it takes the worst severity
    // of the CVEs it fixes when it has none of its own.
    let multi = groups.group_for(index_of(kb, "DSA-5272-1")).unwrap();
    assert_eq!(multi.id, "DSA-5272-1");
    assert_eq!(multi.upstream.len(), 22);
    assert!(multi.upstream.contains(&"CVE-2022-33745".to_string()));
    let cve = groups.group_for(index_of(kb, "CVE-2022-33745")).unwrap();
    assert_ne!(cve, multi);
    assert!(multi.severity >= cve.severity);
}

#[test]
fn alpine_secdb_entries_join_their_cve_and_kev_applies() {
    let (kb, groups) = knowledge();
    // Every converted Alpine record joins the group of its CVE and is shown by the CVE id.
    for (i, a) in kb.advisories.iter().enumerate() {
        if a.source == zt_advisory::Source::AlpineSecdb {
            let g = groups.group_for(i).unwrap();
            assert_eq!(g.id, a.upstream[0]);
            assert!(!g.aliases.iter().any(|x| x.starts_with("ALPINE-")));
        }
    }
    // KEV applies through the group's CVE.
    let kev_groups = groups.groups.iter().filter(|g| g.kev).count();
    assert!(kev_groups > 0);
    let kev_cves: std::collections::HashSet<&str> = kb.kev.iter().map(|k| k.cve.as_str()).collect();
    for g in groups.groups.iter().filter(|g| g.kev) {
        assert!(g
            .cves
            .iter()
            .chain(&g.upstream)
            .any(|c| kev_cves.contains(c.as_str())));
    }
}

#[test]
fn groups_partition_the_live_advisories() {
    let (kb, groups) = knowledge();
    let mut seen = vec![false; kb.advisories.len()];
    for g in &groups.groups {
        for &m in &g.members {
            assert!(!seen[m], "advisory in two groups");
            seen[m] = true;
        }
    }
    for (i, a) in kb.advisories.iter().enumerate() {
        assert_eq!(seen[i], !a.is_withdrawn(), "{}", a.id);
    }
    // Aliases never include the display id and are sorted and unique.
    for g in &groups.groups {
        assert!(!g.aliases.contains(&g.id));
        assert!(g.aliases.windows(2).all(|w| w[0] < w[1]));
    }
}

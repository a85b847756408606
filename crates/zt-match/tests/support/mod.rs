//! The knowledge base of all the shared public data (OSV sets, NVD records, KEV, EPSS), read
//! once per test binary with the real feed readers, and helpers to build software.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use zt_advisory::{Advisory, KnowledgeBase};
use zt_feeds::FeedRecord;
use zt_inventory::{App, AppSource, OsInfo, Software};
use zt_match::MatchIndex;

/// Every feed of the shared data the product imports.
pub fn feed_paths() -> Vec<PathBuf> {
    [
        "osv/rustsec/osv-json",
        "osv/golang-vulndb/data/osv",
        "osv/pypa/vulns",
        "osv/debian-security-tracker/osv-like",
        "osv/debian-security-tracker/official-osv-samples",
        "osv/alpine-secdb/json-2020",
        "osv/alpine-secdb/vunnel-fixture-v3.15-json",
        "osv/chainguard-wolfi",
        "osv/ubuntu",
        "osv/ghsa-sample",
        "osv/osv-scanner-fixtures/records",
        "nvd",
        "kev/known_exploited_vulnerabilities.json",
        "epss/epss-snapshot-2026-08-16.csv.gz",
    ]
    .iter()
    .map(|p| zt_testkit::shared_path(p))
    .collect()
}

/// Reads the feeds the way `feeds import` does: the newest copy of each advisory id wins.
pub fn read_knowledge(paths: &[PathBuf]) -> KnowledgeBase {
    let read = zt_feeds::read_paths(paths).expect("read the shared feeds");
    let mut advisories: HashMap<String, Advisory> = HashMap::new();
    let mut kb = KnowledgeBase::default();
    for record in read.records {
        match record {
            FeedRecord::Advisory(a) => {
                let newer = advisories
                    .get(&a.id)
                    .is_none_or(|old| a.modified >= old.modified);
                if newer {
                    advisories.insert(a.id.clone(), *a);
                }
            }
            FeedRecord::Kev(k) => kb.kev.push(k),
            FeedRecord::Epss(e) => kb.epss.push(e),
        }
    }
    let mut advisories: Vec<Advisory> = advisories.into_values().collect();
    advisories.sort_by(|a, b| a.id.cmp(&b.id));
    kb.advisories = advisories;
    kb.revision = 1;
    kb
}

pub fn knowledge() -> &'static KnowledgeBase {
    static KB: OnceLock<KnowledgeBase> = OnceLock::new();
    KB.get_or_init(|| read_knowledge(&feed_paths()))
}

pub fn index() -> &'static MatchIndex {
    static INDEX: OnceLock<MatchIndex> = OnceLock::new();
    INDEX.get_or_init(|| MatchIndex::build(knowledge()))
}

pub fn os(id: &str, version: &str) -> OsInfo {
    OsInfo {
        id: id.into(),
        version_id: version.into(),
        name: String::new(),
    }
}

/// A language package (no OS release needed).
pub fn package(source: AppSource, name: &str, version: &str) -> Software {
    Software::from_app(&App::new(name, version, source), &OsInfo::default())
}

/// A distro package built from `source_name` `source_version` on `os`.
pub fn distro_package(
    source: AppSource,
    os: &OsInfo,
    name: &str,
    version: &str,
    source_name: &str,
    source_version: &str,
) -> Software {
    let mut app = App::new(name, version, source);
    app.source_name = Some(source_name.into());
    app.source_version = Some(source_version.into());
    Software::from_app(&app, os)
}

/// A desktop program (Windows, macOS, Homebrew...) with its publisher.
pub fn program(source: AppSource, name: &str, version: &str, vendor: Option<&str>) -> Software {
    let mut app = App::new(name, version, source);
    app.vendor = vendor.map(str::to_string);
    Software::from_app(&app, &OsInfo::default())
}

/// Every id of a match (display id and aliases).
pub fn ids(m: &zt_match::VulnMatch) -> Vec<&str> {
    std::iter::once(m.id.as_str())
        .chain(m.aliases.iter().map(String::as_str))
        .collect()
}

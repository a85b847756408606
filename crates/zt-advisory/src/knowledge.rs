//! Exploitation data keyed by CVE (CISA KEV, FIRST EPSS) and the knowledge base the match
//! index is built from.

use std::collections::HashMap;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::advisory::Advisory;
use crate::group::{group_advisories, AliasGroups};

/// One entry of the CISA Known Exploited Vulnerabilities catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KevEntry {
    pub cve: String,
    pub vendor_project: String,
    pub product: String,
    pub vulnerability_name: String,
    pub date_added: NaiveDate,
    pub short_description: String,
    pub required_action: String,
    /// The date federal agencies must have remediated by.
    pub due_date: Option<NaiveDate>,
    /// "Known" or "Unknown" in the catalog.
    pub known_ransomware_campaign_use: String,
    pub notes: String,
    pub cwes: Vec<String>,
}

impl KevEntry {
    pub fn known_ransomware_use(&self) -> bool {
        self.known_ransomware_campaign_use
            .eq_ignore_ascii_case("known")
    }
}

/// One FIRST EPSS score: the probability of exploitation activity in the next 30 days.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpssScore {
    pub cve: String,
    /// 0.0 ..= 1.0
    pub epss: f64,
    /// 0.0 ..= 1.0
    pub percentile: f64,
    /// The score date from the file's header, when it names one.
    pub date: Option<NaiveDate>,
}

/// Everything the match index is built from. Produced by the store's `load_knowledge()`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KnowledgeBase {
    /// The store's knowledge revision this snapshot was taken at (0 when not from a store).
    pub revision: u64,
    /// Every advisory, withdrawn ones included (the matcher skips those).
    pub advisories: Vec<Advisory>,
    pub kev: Vec<KevEntry>,
    /// EPSS scores. From the store: only those of CVEs the advisories name (ids, aliases,
    /// upstream) — a finding can only be about those; the store itself keeps every score.
    pub epss: Vec<EpssScore>,
}

impl KnowledgeBase {
    /// KEV entries by CVE id.
    pub fn kev_by_cve(&self) -> HashMap<&str, &KevEntry> {
        self.kev.iter().map(|k| (k.cve.as_str(), k)).collect()
    }

    /// EPSS scores by CVE id.
    pub fn epss_by_cve(&self) -> HashMap<&str, &EpssScore> {
        self.epss.iter().map(|e| (e.cve.as_str(), e)).collect()
    }

    /// Alias groups of the non-withdrawn advisories, with KEV and EPSS applied to each group.
    pub fn groups(&self) -> AliasGroups {
        let mut groups = group_advisories(&self.advisories);
        // Only the CVEs the groups name need EPSS look-ups: a small map instead of 300k entries.
        let needed: std::collections::HashSet<&str> = groups
            .groups
            .iter()
            .flat_map(|g| g.cves.iter().chain(g.upstream.iter()))
            .map(String::as_str)
            .collect();
        let epss: HashMap<&str, &EpssScore> = self
            .epss
            .iter()
            .filter(|e| needed.contains(e.cve.as_str()))
            .map(|e| (e.cve.as_str(), e))
            .collect();
        groups.apply_exploitation(&self.kev_by_cve(), &epss);
        groups
    }
}

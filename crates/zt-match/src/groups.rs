//! What a finding shows about its vulnerability: one record per advisory group, copied out of
//! the knowledge base once at build time.

use zt_advisory::{AdvisoryGroup, Cvss, Severity};

#[derive(Debug, Clone)]
pub(crate) struct GroupView {
    pub(crate) id: String,
    pub(crate) aliases: Vec<String>,
    /// CVEs fixed by a multi-CVE distro advisory (a DSA listing several).
    pub(crate) upstream: Vec<String>,
    pub(crate) summary: String,
    pub(crate) severity: Severity,
    pub(crate) cvss: Option<Cvss>,
    pub(crate) kev: bool,
    pub(crate) kev_due_date: Option<String>,
    pub(crate) epss: Option<f64>,
    pub(crate) epss_percentile: Option<f64>,
    pub(crate) informational: Option<String>,
}

impl GroupView {
    pub(crate) fn from_group(g: &AdvisoryGroup) -> GroupView {
        GroupView {
            id: g.id.clone(),
            aliases: g.aliases.clone(),
            upstream: g.upstream.clone(),
            summary: g.summary.clone(),
            severity: g.severity,
            cvss: g.cvss.clone(),
            kev: g.kev,
            kev_due_date: g.kev_due_date.map(|d| d.format("%Y-%m-%d").to_string()),
            epss: g.epss.as_ref().map(|e| e.epss),
            epss_percentile: g.epss.as_ref().map(|e| e.percentile),
            informational: g.informational.clone(),
        }
    }
}

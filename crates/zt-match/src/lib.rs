//! The in-memory match index: software against advisories.
//!
//! The server and `zerotrace scan` both build a [`MatchIndex`] from the advisories in the store
//! and ask it which vulnerabilities hit a [`Software`]. The index knows nothing of HTTP or SQL.
//!
//! CONTRACT (used by zt-server and the scan command; extend, do not break):
//! - `MatchIndex::empty()`, `MatchIndex::match_software(&Software) -> Vec<VulnMatch>`
//! - one `VulnMatch` per (software, advisory group): an advisory and its aliases are one match.

use serde::{Deserialize, Serialize};
use zt_advisory::{Cvss, Severity};
use zt_inventory::Software;

/// How a match was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MatchMethod {
    /// The version fell inside an OSV affected range.
    #[serde(rename = "osv-range")]
    OsvRange,
    /// The version is listed in an OSV `versions` array.
    #[serde(rename = "osv-version")]
    OsvVersion,
    /// An NVD CPE configuration matched.
    #[serde(rename = "nvd-cpe")]
    NvdCpe,
}

impl MatchMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchMethod::OsvRange => "osv-range",
            MatchMethod::OsvVersion => "osv-version",
            MatchMethod::NvdCpe => "nvd-cpe",
        }
    }
}

/// How sure the matcher is that the finding is real.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Confidence {
    Low,
    Medium,
    High,
}

/// One vulnerability (advisory group) that hits one piece of software.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VulnMatch {
    /// The id shown to users for the group: the CVE when the group has exactly one.
    pub id: String,
    /// Every other id of the group (GHSA, PYSEC, RUSTSEC, DSA...), sorted, without `id`.
    pub aliases: Vec<String>,
    pub summary: String,
    pub severity: Severity,
    pub cvss: Option<Cvss>,
    /// Versions that fix it for this software (ecosystem's own notation), possibly empty.
    pub fixed_versions: Vec<String>,
    pub kev: bool,
    /// CISA KEV due date (YYYY-MM-DD) when listed.
    pub kev_due_date: Option<String>,
    pub epss: Option<f64>,
    pub epss_percentile: Option<f64>,
    pub method: MatchMethod,
    pub confidence: Confidence,
    /// Informational advisories (e.g. RustSec "unmaintained") are reported but are not
    /// vulnerabilities.
    pub informational: bool,
}

/// The match index. Cheap to share (`Arc`) and immutable: rebuild it when advisories change.
#[derive(Debug, Default)]
pub struct MatchIndex {}

impl MatchIndex {
    /// An index with no knowledge: matches nothing.
    pub fn empty() -> Self {
        MatchIndex::default()
    }

    /// Every vulnerability that hits `software`.
    pub fn match_software(&self, _software: &Software) -> Vec<VulnMatch> {
        Vec::new()
    }
}

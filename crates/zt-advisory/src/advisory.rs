//! One normalized advisory, whatever feed it came from (OSV, NVD, a distro secdb).
//!
//! The shape follows the OSV schema (<https://ossf.github.io/osv-schema/>) because most feeds
//! speak it; NVD records add CPE configurations. Only what matching and reporting need is kept:
//! the stored record is this struct, not the feed's raw JSON.
//!
//! Serialization note: these types are stored both as JSON and in a positional binary form
//! (postcard), so they use no `skip_serializing_if`, `flatten` or untagged enums.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::severity::{Cvss, Severity};

/// Where an advisory came from. New variants go at the end (the binary snapshot encodes the
/// variant index).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// An OSV record (osv.dev, RustSec, PyPA, Go vulndb, GHSA, Ubuntu, Debian, Chainguard ...).
    Osv,
    /// An NVD CVE record (API 2.0 or the legacy 1.1 feed).
    Nvd,
    /// Converted from an Alpine secdb file (`secfixes`), one advisory per release/repo and id.
    AlpineSecdb,
    /// Converted from the Wolfi secdb (`packages.wolfi.dev`).
    WolfiSecdb,
    /// Converted from the Chainguard secdb.
    ChainguardSecdb,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Osv => "osv",
            Source::Nvd => "nvd",
            Source::AlpineSecdb => "alpine-secdb",
            Source::WolfiSecdb => "wolfi-secdb",
            Source::ChainguardSecdb => "chainguard-secdb",
        }
    }

    /// Advisories converted from a secdb carry ids made up by the converter
    /// (e.g. `ALPINE-v3.11-main-CVE-2019-14904`); they are never shown as aliases.
    pub fn has_synthetic_ids(self) -> bool {
        matches!(
            self,
            Source::AlpineSecdb | Source::WolfiSecdb | Source::ChainguardSecdb
        )
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A normalized advisory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Advisory {
    /// The record's own id: `CVE-…`, `GHSA-…`, `PYSEC-…`, `RUSTSEC-…`, `GO-…`, `DSA-…`, ….
    pub id: String,
    pub source: Source,
    /// When the source last changed the record; `None` for sources without one (secdb).
    pub modified: Option<DateTime<Utc>>,
    pub published: Option<DateTime<Utc>>,
    /// Withdrawn advisories are kept (so a later import does not resurrect an older copy) but
    /// never matched.
    pub withdrawn: Option<DateTime<Utc>>,
    /// Ids of the same vulnerability in other databases (OSV `aliases`).
    pub aliases: Vec<String>,
    /// Ids this record was derived from (OSV `upstream`), e.g. the CVEs a DSA fixes.
    pub upstream: Vec<String>,
    /// Related but different vulnerabilities (OSV `related`); never merged.
    pub related: Vec<String>,
    pub summary: String,
    pub details: String,
    /// CVSS vectors with base scores computed from the vector (not copied from the feed).
    pub cvss: Vec<Cvss>,
    /// Qualitative labels given by the source (GHSA "MODERATE", Ubuntu "medium", NVD v2
    /// "HIGH" ...): the fallback when no vector is known.
    pub severity_labels: Vec<SeverityLabel>,
    pub affected: Vec<AffectedPackage>,
    /// NVD applicability statements (empty for OSV records).
    pub cpe_configurations: Vec<CpeConfiguration>,
    /// Set for RustSec informational advisories: "unmaintained", "unsound", "notice".
    pub informational: Option<String>,
    /// CWE ids (`CWE-79`), when the source names them.
    pub cwes: Vec<String>,
    /// Reference URLs (advisory, fix, report ...), in source order.
    pub references: Vec<String>,
}

impl Advisory {
    /// A record with just an id and a source; everything else empty.
    pub fn new(id: impl Into<String>, source: Source) -> Advisory {
        Advisory {
            id: id.into(),
            source,
            modified: None,
            published: None,
            withdrawn: None,
            aliases: Vec::new(),
            upstream: Vec::new(),
            related: Vec::new(),
            summary: String::new(),
            details: String::new(),
            cvss: Vec::new(),
            severity_labels: Vec::new(),
            affected: Vec::new(),
            cpe_configurations: Vec::new(),
            informational: None,
            cwes: Vec::new(),
            references: Vec::new(),
        }
    }

    pub fn is_withdrawn(&self) -> bool {
        self.withdrawn.is_some()
    }

    /// The highest computed CVSS score of the record: v3.x/v4.0 first; v2 only when there is
    /// nothing newer.
    pub fn best_cvss(&self) -> Option<&Cvss> {
        best_cvss(self.cvss.iter())
    }

    /// The record's severity: from the best computed CVSS score, else the highest label.
    pub fn severity(&self) -> Severity {
        match self.best_cvss() {
            Some(c) => c.severity(),
            None => self
                .severity_labels
                .iter()
                .map(|l| l.severity)
                .max()
                .unwrap_or(Severity::Unknown),
        }
    }
}

/// Picks the CVSS to show: the maximum v3.x/v4.0 score, else the maximum v2 score.
pub fn best_cvss<'a>(all: impl Iterator<Item = &'a Cvss>) -> Option<&'a Cvss> {
    use crate::severity::CvssVersion;
    let mut best_modern: Option<&Cvss> = None;
    let mut best_v2: Option<&Cvss> = None;
    for c in all {
        let slot = if c.version == CvssVersion::V2 {
            &mut best_v2
        } else {
            &mut best_modern
        };
        let better = match slot {
            None => true,
            // Ties go to the newer CVSS version.
            Some(b) => c.score > b.score || (c.score == b.score && c.version > b.version),
        };
        if better {
            *slot = Some(c);
        }
    }
    best_modern.or(best_v2)
}

/// A severity label as the source wrote it, with its parsed rating.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeverityLabel {
    /// Who gave it: "ghsa", "ubuntu", "debian", "nvd", ...
    pub source: String,
    /// The label as written ("MODERATE", "medium", "not yet assigned").
    pub label: String,
    pub severity: Severity,
}

/// One affected package of an advisory (OSV `affected[]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AffectedPackage {
    /// The OSV ecosystem string including the release, e.g. "PyPI", "Debian:11",
    /// "Ubuntu:22.04:LTS", "Alpine:v3.19".
    pub ecosystem: String,
    pub name: String,
    pub purl: Option<String>,
    pub ranges: Vec<AffectedRange>,
    /// Explicitly listed affected versions (OSV `versions`).
    pub versions: Vec<String>,
    /// Binary packages built from this source package, when the source lists them
    /// (Ubuntu/Debian `ecosystem_specific.binaries`).
    pub binaries: Vec<String>,
    /// Per-package severity given by some databases (Debian urgency, Ubuntu priority).
    pub severity_labels: Vec<SeverityLabel>,
}

impl AffectedPackage {
    pub fn new(ecosystem: impl Into<String>, name: impl Into<String>) -> AffectedPackage {
        AffectedPackage {
            ecosystem: ecosystem.into(),
            name: name.into(),
            purl: None,
            ranges: Vec::new(),
            versions: Vec::new(),
            binaries: Vec::new(),
            severity_labels: Vec::new(),
        }
    }

    /// The ecosystem without its release suffix: "Debian:11" → "Debian".
    pub fn base_ecosystem(&self) -> &str {
        base_ecosystem(&self.ecosystem)
    }

    /// Every `fixed` event of every range, in order, without duplicates.
    pub fn fixed_versions(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for r in &self.ranges {
            if r.kind == RangeKind::Git {
                continue;
            }
            for e in &r.events {
                if let RangeEvent::Fixed(v) = e {
                    if !out.contains(v) {
                        out.push(v.clone());
                    }
                }
            }
        }
        out
    }
}

/// "Debian:11" → "Debian", "Ubuntu:22.04:LTS" → "Ubuntu", "PyPI" → "PyPI".
pub fn base_ecosystem(ecosystem: &str) -> &str {
    ecosystem.split(':').next().unwrap_or(ecosystem)
}

/// How a range's event versions are ordered (OSV `ranges[].type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum RangeKind {
    /// SemVer 2.0 ordering, whatever the ecosystem.
    Semver,
    /// The ecosystem's own version ordering.
    Ecosystem,
    /// Commit hashes of a repository; not usable for version matching.
    Git,
}

/// One affected range: events in the order the source gave them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AffectedRange {
    pub kind: RangeKind,
    /// The repository URL for GIT ranges.
    pub repo: Option<String>,
    pub events: Vec<RangeEvent>,
}

/// An OSV range event. `Introduced("0")` means "from the beginning".
/// JSON form matches OSV: `{"introduced": "1.0"}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RangeEvent {
    Introduced(String),
    Fixed(String),
    LastAffected(String),
    Limit(String),
}

impl RangeEvent {
    pub fn version(&self) -> &str {
        match self {
            RangeEvent::Introduced(v)
            | RangeEvent::Fixed(v)
            | RangeEvent::LastAffected(v)
            | RangeEvent::Limit(v) => v,
        }
    }
}

/// How the children of a configuration node combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum CpeOperator {
    And,
    Or,
}

/// One NVD configuration: its nodes combine with `operator` (OR when absent in the feed).
/// A typical "running on/with" statement is AND of a vulnerable node and a platform node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CpeConfiguration {
    pub operator: CpeOperator,
    pub negate: bool,
    pub nodes: Vec<CpeNode>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CpeNode {
    pub operator: CpeOperator,
    pub negate: bool,
    pub cpe_match: Vec<CpeMatch>,
}

/// One NVD `cpeMatch` entry: a CPE 2.3 criteria string, optionally with a version range.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CpeMatch {
    pub vulnerable: bool,
    /// CPE 2.3 formatted string, e.g. `cpe:2.3:a:openssl:openssl:*:*:*:*:*:*:*:*`.
    pub criteria: String,
    pub version_start_including: Option<String>,
    pub version_start_excluding: Option<String>,
    pub version_end_including: Option<String>,
    pub version_end_excluding: Option<String>,
}

impl CpeMatch {
    pub fn new(criteria: impl Into<String>, vulnerable: bool) -> CpeMatch {
        CpeMatch {
            vulnerable,
            criteria: criteria.into(),
            version_start_including: None,
            version_start_excluding: None,
            version_end_including: None,
            version_end_excluding: None,
        }
    }
}

/// True for ids of the CVE program (`CVE-2024-3094`).
pub fn is_cve_id(id: &str) -> bool {
    let Some(rest) = id.strip_prefix("CVE-") else {
        return false;
    };
    let mut parts = rest.splitn(2, '-');
    let year = parts.next().unwrap_or("");
    let num = parts.next().unwrap_or("");
    year.len() == 4
        && year.bytes().all(|b| b.is_ascii_digit())
        && num.len() >= 4
        && num.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::severity::CvssVersion;

    #[test]
    fn cve_ids() {
        assert!(is_cve_id("CVE-2024-3094"));
        assert!(is_cve_id("CVE-2021-1234567"));
        assert!(!is_cve_id("CVE-24-3094"));
        assert!(!is_cve_id("GHSA-xxxx-yyyy-zzzz"));
        assert!(!is_cve_id("CVE-2024-"));
        assert!(!is_cve_id("UBUNTU-CVE-2024-1234"));
    }

    #[test]
    fn best_cvss_prefers_modern_versions_and_higher_scores() {
        let v2 = Cvss {
            version: CvssVersion::V2,
            vector: "AV:N/AC:L/Au:N/C:C/I:C/A:C".into(),
            score: 10.0,
        };
        let v31 = Cvss {
            version: CvssVersion::V31,
            vector: "x".into(),
            score: 7.5,
        };
        let v40 = Cvss {
            version: CvssVersion::V40,
            vector: "y".into(),
            score: 8.1,
        };
        let all = [v2.clone(), v31.clone(), v40.clone()];
        assert_eq!(best_cvss(all.iter()), Some(&v40));
        assert_eq!(best_cvss([v2.clone()].iter()), Some(&v2));
        assert_eq!(best_cvss([].iter()), None);
    }

    #[test]
    fn range_event_json_matches_osv() {
        let e: RangeEvent = serde_json::from_str(r#"{"last_affected":"1.2"}"#).unwrap();
        assert_eq!(e, RangeEvent::LastAffected("1.2".into()));
        assert_eq!(
            serde_json::to_string(&RangeEvent::Introduced("0".into())).unwrap(),
            r#"{"introduced":"0"}"#
        );
    }

    #[test]
    fn fixed_versions_skip_git_ranges() {
        let mut p = AffectedPackage::new("Debian:11", "openssl");
        p.ranges.push(AffectedRange {
            kind: RangeKind::Git,
            repo: Some("https://example.org/r".into()),
            events: vec![RangeEvent::Fixed("abc".into())],
        });
        p.ranges.push(AffectedRange {
            kind: RangeKind::Ecosystem,
            repo: None,
            events: vec![
                RangeEvent::Introduced("0".into()),
                RangeEvent::Fixed("1.1.1n-0+deb11u4".into()),
            ],
        });
        assert_eq!(p.fixed_versions(), vec!["1.1.1n-0+deb11u4".to_string()]);
        assert_eq!(p.base_ecosystem(), "Debian");
    }
}

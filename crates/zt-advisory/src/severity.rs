//! How bad a vulnerability is: the qualitative rating and the CVSS base score it comes from.

use serde::{Deserialize, Serialize};

/// The qualitative severity rating (CVSS v3.1/v4.0 specification, section "Qualitative
/// Severity Rating Scale"). `Unknown` when no score or label is known.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Unknown,
    None,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 6] = [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
        Severity::None,
        Severity::Unknown,
    ];

    /// The rating of a CVSS base score.
    pub fn from_score(score: f64) -> Severity {
        match score {
            s if s >= 9.0 => Severity::Critical,
            s if s >= 7.0 => Severity::High,
            s if s >= 4.0 => Severity::Medium,
            s if s > 0.0 => Severity::Low,
            0.0 => Severity::None,
            _ => Severity::Unknown,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Unknown => "unknown",
            Severity::None => "none",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// Parses a label case-insensitively ("HIGH", "Moderate" = medium, "important" = high).
    pub fn parse(label: &str) -> Option<Severity> {
        Some(match label.trim().to_ascii_lowercase().as_str() {
            "critical" => Severity::Critical,
            "high" | "important" => Severity::High,
            "medium" | "moderate" => Severity::Medium,
            "low" | "negligible" => Severity::Low,
            "none" => Severity::None,
            "unknown" | "" => Severity::Unknown,
            _ => return None,
        })
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum CvssVersion {
    #[serde(rename = "2.0")]
    V2,
    #[serde(rename = "3.0")]
    V30,
    #[serde(rename = "3.1")]
    V31,
    #[serde(rename = "4.0")]
    V40,
}

impl CvssVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            CvssVersion::V2 => "2.0",
            CvssVersion::V30 => "3.0",
            CvssVersion::V31 => "3.1",
            CvssVersion::V40 => "4.0",
        }
    }
}

/// A CVSS vector with the base score computed from it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cvss {
    pub version: CvssVersion,
    pub vector: String,
    pub score: f64,
}

impl Cvss {
    pub fn severity(&self) -> Severity {
        Severity::from_score(self.score)
    }
}

/// A CVSS vector that could not be scored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid CVSS vector {vector:?}: {reason}")]
pub struct CvssError {
    pub vector: String,
    pub reason: String,
}

/// The base metrics of CVSS v4.0 (specification section 2); everything else in a vector
/// (threat, environmental, supplemental) does not enter the base score CVSS-B.
const V4_BASE_METRICS: [&str; 11] = [
    "AV", "AC", "AT", "PR", "UI", "VC", "VI", "VA", "SC", "SI", "SA",
];

impl Cvss {
    /// Parses a vector (`CVSS:3.1/…`, `CVSS:4.0/…`, or a bare v2 `AV:N/AC:L/…`) and computes its
    /// base score with the `cvss` crate. The stored vector is the input, trimmed.
    pub fn from_vector(vector: &str) -> Result<Cvss, CvssError> {
        let vector = vector.trim();
        let err = |reason: String| CvssError {
            vector: vector.to_string(),
            reason,
        };
        // Some feeds wrap v2 vectors in parentheses or prefix them with "CVSS:2.0/".
        let unwrapped = vector.trim_start_matches('(').trim_end_matches(')');
        let unwrapped = unwrapped.strip_prefix("CVSS:2.0/").unwrap_or(unwrapped);
        let (version, score) = if unwrapped.starts_with("CVSS:4.0/") {
            // Score the base metrics only: NVD's published v4 baseScore is CVSS-B.
            let base: Vec<&str> = unwrapped
                .split('/')
                .filter(|part| {
                    part.starts_with("CVSS:")
                        || part
                            .split(':')
                            .next()
                            .is_some_and(|m| V4_BASE_METRICS.contains(&m))
                })
                .collect();
            let parsed: cvss::v4::Vector = base
                .join("/")
                .parse()
                .map_err(|e: cvss::Error| err(e.to_string()))?;
            (CvssVersion::V40, parsed.score().value())
        } else if unwrapped.starts_with("CVSS:3.") {
            let parsed: cvss::v3::Vector = unwrapped
                .parse()
                .map_err(|e: cvss::Error| err(e.to_string()))?;
            let version = if unwrapped.starts_with("CVSS:3.0/") {
                CvssVersion::V30
            } else {
                CvssVersion::V31
            };
            (version, parsed.base_score().value())
        } else if unwrapped.starts_with("AV:") {
            let parsed: cvss::v2::Vector = unwrapped
                .parse()
                .map_err(|e: cvss::Error| err(e.to_string()))?;
            (CvssVersion::V2, parsed.score().value())
        } else {
            return Err(err("unknown CVSS version prefix".to_string()));
        };
        if !score.is_finite() {
            return Err(err("score is not a number".to_string()));
        }
        Ok(Cvss {
            version,
            vector: vector.to_string(),
            score,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_v31_v30_v40_v2() {
        let c = Cvss::from_vector("CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:U/C:H/I:H/A:H").unwrap();
        assert_eq!((c.version, c.score), (CvssVersion::V31, 8.8));
        assert_eq!(c.severity(), Severity::High);
        let c = Cvss::from_vector("CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H").unwrap();
        assert_eq!((c.version, c.score), (CvssVersion::V30, 9.8));
        let c =
            Cvss::from_vector("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N")
                .unwrap();
        assert_eq!((c.version, c.score), (CvssVersion::V40, 9.3));
        // Threat metrics do not change the base score.
        let c = Cvss::from_vector(
            "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N/E:U",
        )
        .unwrap();
        assert_eq!(c.score, 9.3);
        let c = Cvss::from_vector("AV:N/AC:L/Au:N/C:P/I:P/A:P").unwrap();
        assert_eq!((c.version, c.score), (CvssVersion::V2, 7.5));
    }

    #[test]
    fn rejects_garbage() {
        assert!(Cvss::from_vector("").is_err());
        assert!(Cvss::from_vector("CVSS:3.1/AV:Q").is_err());
        assert!(Cvss::from_vector("CVSS:9.9/AV:N").is_err());
        assert!(Cvss::from_vector("hello").is_err());
    }

    #[test]
    fn labels_and_scores() {
        assert_eq!(Severity::parse("Moderate"), Some(Severity::Medium));
        assert_eq!(Severity::parse("bogus"), None);
        assert_eq!(Severity::from_score(9.0), Severity::Critical);
        assert_eq!(Severity::from_score(0.0), Severity::None);
        assert_eq!(Severity::from_score(f64::NAN), Severity::Unknown);
    }
}

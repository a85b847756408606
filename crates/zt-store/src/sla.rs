//! SLA policy (DESIGN.md "SLA"): by when each finding must be fixed. A finding is due
//! `first_seen + days(severity)`; a KEV finding, with `kev_uses_cisa_due_date`, by CISA's due
//! date when that is sooner. Due dates are derived, never stored: a changed policy applies
//! to every finding at once.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use zt_advisory::Severity;

use crate::model::FindingRow;

/// Days a policy may give at most (ten years).
pub const MAX_DAYS: u32 = 3650;

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlaPolicy {
    pub critical_days: u32,
    pub high_days: u32,
    pub medium_days: u32,
    pub low_days: u32,
    pub unknown_days: u32,
    /// A KEV finding is due by CISA's due date when that is sooner.
    pub kev_uses_cisa_due_date: bool,
}

impl Default for SlaPolicy {
    fn default() -> Self {
        SlaPolicy {
            critical_days: 7,
            high_days: 30,
            medium_days: 90,
            low_days: 180,
            unknown_days: 180,
            kev_uses_cisa_due_date: true,
        }
    }
}

/// "Due by `at`" as conditions on findings' own columns: first seen at or before the bound
/// of its severity, or (KEV) CISA's due date on or before `kev_date`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueBy {
    /// Bounds on `first_seen` for critical, high, medium, low and unknown (or none).
    pub first_seen_by: [DateTime<Utc>; 5],
    /// `YYYY-MM-DD`: KEV findings whose CISA due date is on or before it (None: the policy
    /// ignores CISA's dates).
    pub kev_date: Option<String>,
}

impl SlaPolicy {
    /// The first field that is out of range (1 to [`MAX_DAYS`]), with its message.
    pub fn problem(&self) -> Option<(&'static str, String)> {
        for (field, v) in [
            ("critical_days", self.critical_days),
            ("high_days", self.high_days),
            ("medium_days", self.medium_days),
            ("low_days", self.low_days),
            ("unknown_days", self.unknown_days),
        ] {
            if v == 0 || v > MAX_DAYS {
                return Some((field, format!("must be from 1 to {MAX_DAYS} days, not {v}")));
            }
        }
        None
    }

    pub fn days(&self, severity: Severity) -> u32 {
        match severity {
            Severity::Critical => self.critical_days,
            Severity::High => self.high_days,
            Severity::Medium => self.medium_days,
            Severity::Low => self.low_days,
            _ => self.unknown_days,
        }
    }

    /// When a finding is due.
    pub fn due_at(
        &self,
        first_seen: DateTime<Utc>,
        severity: Severity,
        kev: bool,
        kev_due_date: Option<&str>,
    ) -> DateTime<Utc> {
        let by_severity = first_seen + Duration::days(i64::from(self.days(severity)));
        let cisa = (kev && self.kev_uses_cisa_due_date)
            .then_some(kev_due_date)
            .flatten()
            .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|d| d.and_utc());
        match cisa {
            Some(c) if c < by_severity => c,
            _ => by_severity,
        }
    }

    /// The conditions of "due at or before `at`".
    pub fn due_by(&self, at: DateTime<Utc>) -> DueBy {
        let bound = |days: u32| at - Duration::days(i64::from(days));
        DueBy {
            first_seen_by: [
                bound(self.critical_days),
                bound(self.high_days),
                bound(self.medium_days),
                bound(self.low_days),
                bound(self.unknown_days),
            ],
            kev_date: self
                .kev_uses_cisa_due_date
                .then(|| at.date_naive().format("%Y-%m-%d").to_string()),
        }
    }

    /// Sets `due_at` and `overdue` of open findings (resolved ones have none).
    pub fn annotate(&self, rows: &mut [FindingRow], now: DateTime<Utc>) {
        for f in rows {
            if f.resolved_at.is_some() {
                f.due_at = None;
                f.overdue = false;
                continue;
            }
            let due = self.due_at(
                f.first_seen,
                f.vulnerability.severity,
                f.vulnerability.kev,
                f.vulnerability.kev_due_date.as_deref(),
            );
            f.due_at = Some(due);
            f.overdue = due <= now;
        }
    }
}

/// Time to remediate per severity: from first seen to resolved (the package removed or
/// upgraded), over the findings resolved in a period.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemediationStats {
    pub severity: String,
    /// Findings remediated in the period.
    pub remediated: u64,
    /// Median days from first seen to resolved (None without any).
    pub median_days: Option<f64>,
    /// 90th percentile, days (nearest rank).
    pub p90_days: Option<f64>,
}

/// Median and p90 (nearest rank) of durations in days, per severity bucket, from
/// `(severity, first_seen, resolved_at)` rows.
pub fn remediation_stats(
    rows: &[(Severity, DateTime<Utc>, DateTime<Utc>)],
) -> Vec<RemediationStats> {
    let buckets = [
        ("critical", vec![Severity::Critical]),
        ("high", vec![Severity::High]),
        ("medium", vec![Severity::Medium]),
        ("low", vec![Severity::Low]),
        ("unknown", vec![Severity::Unknown, Severity::None]),
    ];
    buckets
        .iter()
        .map(|(name, sevs)| {
            let mut days: Vec<f64> = rows
                .iter()
                .filter(|(s, _, _)| sevs.contains(s))
                .map(|(_, a, b)| (*b - *a).num_seconds().max(0) as f64 / 86_400.0)
                .collect();
            days.sort_by(|a, b| a.total_cmp(b));
            let rank = |q: f64| -> Option<f64> {
                if days.is_empty() {
                    return None;
                }
                let i = ((q * days.len() as f64).ceil() as usize).clamp(1, days.len()) - 1;
                Some((days[i] * 100.0).round() / 100.0)
            };
            RemediationStats {
                severity: name.to_string(),
                remediated: days.len() as u64,
                median_days: rank(0.5),
                p90_days: rank(0.9),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn due_dates_follow_severity_and_cisa_when_sooner() {
        let p = SlaPolicy::default();
        let seen = Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap();
        assert_eq!(
            p.due_at(seen, Severity::Critical, false, None),
            Utc.with_ymd_and_hms(2026, 1, 8, 12, 0, 0).unwrap()
        );
        assert_eq!(
            p.due_at(seen, Severity::Low, false, None),
            Utc.with_ymd_and_hms(2026, 6, 30, 12, 0, 0).unwrap()
        );
        // KEV: CISA's date when sooner, else the severity's.
        assert_eq!(
            p.due_at(seen, Severity::High, true, Some("2026-01-15")),
            Utc.with_ymd_and_hms(2026, 1, 15, 0, 0, 0).unwrap()
        );
        assert_eq!(
            p.due_at(seen, Severity::Critical, true, Some("2026-03-01")),
            Utc.with_ymd_and_hms(2026, 1, 8, 12, 0, 0).unwrap()
        );
        let off = SlaPolicy {
            kev_uses_cisa_due_date: false,
            ..p
        };
        assert_eq!(
            off.due_at(seen, Severity::High, true, Some("2026-01-15")),
            Utc.with_ymd_and_hms(2026, 1, 31, 12, 0, 0).unwrap()
        );
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let rows: Vec<_> = (1..=10)
            .map(|d| (Severity::High, t0, t0 + Duration::days(d)))
            .collect();
        let s = remediation_stats(&rows);
        assert_eq!(s[1].severity, "high");
        assert_eq!(s[1].remediated, 10);
        assert_eq!(s[1].median_days, Some(5.0));
        assert_eq!(s[1].p90_days, Some(9.0));
        assert_eq!(s[0].remediated, 0);
        assert_eq!(s[0].median_days, None);
    }
}

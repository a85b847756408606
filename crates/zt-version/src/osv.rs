//! OSV affected ranges: the types as they appear in OSV JSON, and a compiled form that answers
//! "is this version affected?" without allocating.
//!
//! Evaluation is the OSV schema's: within one range, events are sorted by version (an
//! `introduced` of `"0"` first, events at the same version keep their order) and a version `v`
//! takes the state of the last event that applies to it — `introduced: x` (v ≥ x) makes it
//! affected, `fixed: x` (v ≥ x) and `last_affected: x` (v > x) make it unaffected. A `limit`
//! bounds the range from above: only versions below a limit (the largest, when there are
//! several) are affected. `SEMVER` ranges compare with SemVer precedence whatever the
//! ecosystem; `GIT` ranges name commits, which need the repository history, so they are skipped
//! with a warning. A version listed in `versions` is affected regardless of the ranges.
//!
//! Compiling turns each range into sorted, disjoint intervals of pre-parsed bounds; a query is
//! a few key comparisons. A range with a bound that does not parse is skipped as a whole (with
//! a warning): dropping just that event would silently widen or narrow the range.

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{Scheme, Version, VersionError};

/// The `type` of an OSV range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum RangeKind {
    /// Versions ordered by SemVer 2.0 precedence, whatever the ecosystem.
    Semver,
    /// Versions ordered by the package's ecosystem.
    Ecosystem,
    /// Commit hashes of a git repository.
    Git,
}

/// One event of an OSV range, holding its version string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// The first affected version (`"0"`: from the beginning).
    Introduced(String),
    /// The first version no longer affected.
    Fixed(String),
    /// The last affected version.
    LastAffected(String),
    /// An upper bound of the range.
    Limit(String),
}

impl Event {
    /// The event's version string.
    pub fn version(&self) -> &str {
        match self {
            Event::Introduced(v) | Event::Fixed(v) | Event::LastAffected(v) | Event::Limit(v) => v,
        }
    }

    /// The event's JSON key.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Event::Introduced(_) => "introduced",
            Event::Fixed(_) => "fixed",
            Event::LastAffected(_) => "last_affected",
            Event::Limit(_) => "limit",
        }
    }
}

/// An OSV range as it appears in `affected[].ranges[]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Range {
    /// `SEMVER`, `ECOSYSTEM` or `GIT`.
    #[serde(rename = "type")]
    pub kind: RangeKind,
    /// The repository of a `GIT` range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    /// The events, in any order.
    pub events: Vec<Event>,
}

/// Something in the input that compiling could not use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompileWarning {
    /// A `GIT` range was skipped.
    GitRangeSkipped {
        /// Index of the range in the input.
        range: usize,
        /// The range's repository, if any.
        repo: Option<String>,
    },
    /// A range was skipped because one of its versions does not parse.
    UnparsableBound {
        /// Index of the range in the input.
        range: usize,
        /// The event key (`introduced`, `fixed`, …).
        event: &'static str,
        /// Why the version did not parse.
        error: VersionError,
    },
    /// An entry of `versions` does not parse; it still matches the identical string.
    UnparsableVersion {
        /// Why the version did not parse.
        error: VersionError,
    },
}

impl fmt::Display for CompileWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompileWarning::GitRangeSkipped { range, repo } => write!(
                f,
                "range {range}: GIT range{} skipped: commit ranges need the repository history",
                repo.as_deref()
                    .map(|r| format!(" of {r}"))
                    .unwrap_or_default()
            ),
            CompileWarning::UnparsableBound {
                range,
                event,
                error,
            } => {
                write!(
                    f,
                    "range {range}: skipped, its {event} bound is unusable: {error}"
                )
            }
            CompileWarning::UnparsableVersion { error } => {
                write!(f, "versions entry compared as a plain string: {error}")
            }
        }
    }
}

#[derive(Debug, Clone)]
enum Lower {
    Unbounded,
    Included(Version),
    Excluded(Version),
}

#[derive(Debug, Clone)]
enum Upper {
    Unbounded,
    Included(Version),
    Excluded(Version),
}

#[derive(Debug, Clone)]
struct Interval {
    lower: Lower,
    upper: Upper,
    /// The `fixed` version that ends the interval, if a fixed event does.
    fixed: Option<usize>,
}

impl Interval {
    #[inline]
    fn contains(&self, v: &Version) -> bool {
        let above_lower = match &self.lower {
            Lower::Unbounded => true,
            Lower::Included(x) => v >= x,
            Lower::Excluded(x) => v > x,
        };
        above_lower
            && match &self.upper {
                Upper::Unbounded => true,
                Upper::Included(x) => v <= x,
                Upper::Excluded(x) => v < x,
            }
    }
}

#[derive(Debug, Clone)]
struct CompiledRange {
    index: usize,
    scheme: Scheme,
    intervals: Vec<Interval>,
}

/// How a version was found affected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchKind {
    /// It lies in one of the ranges.
    Range,
    /// It is listed in `versions`.
    ExplicitVersion,
}

/// Why a version is affected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AffectedHit<'a> {
    /// Range or explicit version.
    pub kind: MatchKind,
    /// Index of the matched range in the compiled input (`None` for an explicit version).
    pub range: Option<usize>,
    /// The fixed version that ends the matched interval; for an explicit version, the lowest
    /// fixed version above it. `None` when the advisory names no fix for it.
    pub fixed: Option<&'a str>,
}

/// The compiled `ranges` and `versions` of one OSV `affected` entry.
#[derive(Debug, Clone)]
pub struct AffectedSpec {
    scheme: Scheme,
    ranges: Vec<CompiledRange>,
    /// Parsed `versions` entries, sorted.
    versions: Vec<Version>,
    /// `versions` entries that do not parse, sorted, matched as strings.
    unparsed_versions: Vec<Box<str>>,
    /// Every `fixed` version string (deduplicated), in ascending order where they parse.
    fixed: Vec<String>,
    /// Parsed `fixed` versions (ecosystem scheme) with their index in `fixed`, sorted.
    fixed_sorted: Vec<(Version, usize)>,
}

impl AffectedSpec {
    /// Compiles the ranges and explicit versions of one affected package for `scheme` (the
    /// package ecosystem's scheme; `SEMVER` ranges use SemVer regardless).
    pub fn compile(
        scheme: Scheme,
        ranges: &[Range],
        versions: &[String],
    ) -> (AffectedSpec, Vec<CompileWarning>) {
        let mut warnings = Vec::new();
        let mut fixed: Vec<String> = Vec::new();
        let mut compiled = Vec::new();
        for (index, range) in ranges.iter().enumerate() {
            let range_scheme = match range.kind {
                RangeKind::Git => {
                    warnings.push(CompileWarning::GitRangeSkipped {
                        range: index,
                        repo: range.repo.clone(),
                    });
                    continue;
                }
                RangeKind::Semver => Scheme::SemVer,
                RangeKind::Ecosystem => scheme,
            };
            match compile_range(range_scheme, &range.events, &mut fixed) {
                Ok(intervals) => compiled.push(CompiledRange {
                    index,
                    scheme: range_scheme,
                    intervals,
                }),
                Err((event, error)) => warnings.push(CompileWarning::UnparsableBound {
                    range: index,
                    event,
                    error,
                }),
            }
        }
        let mut parsed = Vec::new();
        let mut unparsed = Vec::new();
        for v in versions {
            match scheme.parse(v) {
                Ok(p) => parsed.push(p),
                Err(error) => {
                    unparsed.push(Box::from(v.trim()));
                    warnings.push(CompileWarning::UnparsableVersion { error });
                }
            }
        }
        parsed.sort();
        parsed.dedup();
        unparsed.sort();
        unparsed.dedup();
        let mut fixed_sorted: Vec<(Version, usize)> = fixed
            .iter()
            .enumerate()
            .filter_map(|(i, f)| scheme.parse(f).ok().map(|v| (v, i)))
            .collect();
        fixed_sorted.sort_by(|a, b| a.0.cmp(&b.0));
        let spec = AffectedSpec {
            scheme,
            ranges: compiled,
            versions: parsed,
            unparsed_versions: unparsed,
            fixed,
            fixed_sorted,
        };
        (spec, warnings)
    }

    /// The ecosystem scheme this spec was compiled for.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// Whether `version` is affected, and how. Allocation-free unless `version` was parsed
    /// with another scheme than a range needs (then it is re-parsed for that range).
    pub fn affects(&self, version: &Version) -> Option<AffectedHit<'_>> {
        for range in &self.ranges {
            let reparsed;
            let v = if range.scheme.family() == version.scheme().family() {
                version
            } else {
                match range.scheme.parse(version.as_str()) {
                    Ok(p) => {
                        reparsed = p;
                        &reparsed
                    }
                    Err(_) => continue,
                }
            };
            if let Some(interval) = range.intervals.iter().find(|i| i.contains(v)) {
                return Some(AffectedHit {
                    kind: MatchKind::Range,
                    range: Some(range.index),
                    fixed: interval.fixed.map(|i| self.fixed[i].as_str()),
                });
            }
        }
        let listed = if version.scheme().family() == self.scheme.family() {
            self.versions.binary_search(version).is_ok()
        } else {
            false
        } || (!self.unparsed_versions.is_empty()
            && self
                .unparsed_versions
                .binary_search_by(|u| (**u).cmp(version.as_str()))
                .is_ok());
        listed.then(|| AffectedHit {
            kind: MatchKind::ExplicitVersion,
            range: None,
            fixed: self.next_fixed(version),
        })
    }

    /// The lowest `fixed` version above `version`, if any.
    pub fn next_fixed(&self, version: &Version) -> Option<&str> {
        if version.scheme().family() != self.scheme.family() {
            return None;
        }
        let at = self.fixed_sorted.partition_point(|(f, _)| f <= version);
        self.fixed_sorted
            .get(at)
            .map(|(_, i)| self.fixed[*i].as_str())
    }

    /// Every `fixed` version of the compiled ranges, deduplicated, in first-seen order.
    pub fn fixed_versions(&self) -> &[String] {
        &self.fixed
    }

    /// True when no range and no version was usable: the spec can never match.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty() && self.versions.is_empty() && self.unparsed_versions.is_empty()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Introduced,
    Fixed,
    LastAffected,
}

fn compile_range(
    scheme: Scheme,
    events: &[Event],
    fixed_strings: &mut Vec<String>,
) -> Result<Vec<Interval>, (&'static str, VersionError)> {
    // (version, kind, index into fixed_strings for fixed events); None = "introduced: 0".
    let mut points: Vec<(Option<Version>, Kind, Option<usize>)> = Vec::with_capacity(events.len());
    let mut limit: Option<Version> = None;
    for event in events {
        let text = event.version();
        let kind = match event {
            Event::Introduced(v) if v.trim() == "0" => {
                points.push((None, Kind::Introduced, None));
                continue;
            }
            Event::Introduced(_) => Kind::Introduced,
            Event::Fixed(_) => Kind::Fixed,
            Event::LastAffected(_) => Kind::LastAffected,
            Event::Limit(_) => {
                let v = scheme.parse(text).map_err(|e| ("limit", e))?;
                if limit.as_ref().is_none_or(|l| &v > l) {
                    limit = Some(v);
                }
                continue;
            }
        };
        let v = scheme.parse(text).map_err(|e| (event.kind_name(), e))?;
        let fixed_index = (kind == Kind::Fixed).then(|| {
            let text = text.trim();
            match fixed_strings.iter().position(|f| f == text) {
                Some(i) => i,
                None => {
                    fixed_strings.push(text.to_string());
                    fixed_strings.len() - 1
                }
            }
        });
        points.push((Some(v), kind, fixed_index));
    }
    // Stable: events at one version keep their order. None ("0") sorts first.
    points.sort_by(|a, b| match (&a.0, &b.0) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(x), Some(y)) => x.cmp(y),
    });

    let mut intervals = Vec::new();
    let mut open: Option<Lower> = None;
    let mut i = 0;
    while i < points.len() {
        let mut j = i;
        while j < points.len() && versions_equal(&points[j].0, &points[i].0) {
            j += 1;
        }
        let group = &points[i..j];
        let before = open.is_some();
        // At exactly x a last_affected does not apply yet (v > x is false).
        let at_event = group.iter().rev().find(|p| p.1 != Kind::LastAffected);
        let at = at_event.map_or(before, |p| p.1 == Kind::Introduced);
        let after = group.last().is_some_and(|p| p.1 == Kind::Introduced);
        let fixed_here = at_event.and_then(|p| p.2);
        match &group[0].0 {
            None => {
                if after && !before {
                    open = Some(Lower::Unbounded);
                }
            }
            Some(x) => {
                if before && !at {
                    if let Some(lower) = open.take() {
                        intervals.push(Interval {
                            lower,
                            upper: Upper::Excluded(x.clone()),
                            fixed: fixed_here,
                        });
                    }
                }
                if before && at && !after {
                    if let Some(lower) = open.take() {
                        intervals.push(Interval {
                            lower,
                            upper: Upper::Included(x.clone()),
                            fixed: None,
                        });
                    }
                }
                if !before && at {
                    if after {
                        open = Some(Lower::Included(x.clone()));
                    } else {
                        intervals.push(Interval {
                            lower: Lower::Included(x.clone()),
                            upper: Upper::Included(x.clone()),
                            fixed: None,
                        });
                    }
                }
                if !at && after {
                    open = Some(Lower::Excluded(x.clone()));
                }
            }
        }
        i = j;
    }
    if let Some(lower) = open {
        intervals.push(Interval {
            lower,
            upper: Upper::Unbounded,
            fixed: None,
        });
    }
    if let Some(limit) = limit {
        intervals.retain_mut(|interval| {
            let starts_below = match &interval.lower {
                Lower::Unbounded => true,
                Lower::Included(x) | Lower::Excluded(x) => x < &limit,
            };
            let ends_below = match &interval.upper {
                Upper::Unbounded => false,
                Upper::Included(x) => x < &limit,
                Upper::Excluded(x) => x <= &limit,
            };
            if !ends_below {
                interval.upper = Upper::Excluded(limit.clone());
                interval.fixed = None;
            }
            starts_below
        });
    }
    Ok(intervals)
}

fn versions_equal(a: &Option<Version>, b: &Option<Version>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(kind: RangeKind, events: &[(&str, &str)]) -> Range {
        Range {
            kind,
            repo: None,
            events: events
                .iter()
                .map(|(k, v)| match *k {
                    "introduced" => Event::Introduced(v.to_string()),
                    "fixed" => Event::Fixed(v.to_string()),
                    "last_affected" => Event::LastAffected(v.to_string()),
                    _ => Event::Limit(v.to_string()),
                })
                .collect(),
        }
    }

    /// The OSV schema's evaluation, written literally, as the reference for the compiled form.
    fn reference(scheme: Scheme, events: &[(&str, &str)], v: &str) -> bool {
        let v = scheme.parse(v).unwrap();
        let mut sorted: Vec<_> = events.iter().filter(|e| e.0 != "limit").collect();
        sorted.sort_by(|a, b| {
            let key = |e: &(&str, &str)| {
                (e.0 == "introduced" && e.1 == "0")
                    .then_some(())
                    .map_or_else(|| Some(scheme.parse(e.1).unwrap()), |_| None)
            };
            match (key(a), key(b)) {
                (None, None) => Ordering::Equal,
                (None, _) => Ordering::Less,
                (_, None) => Ordering::Greater,
                (Some(x), Some(y)) => x.cmp(&y),
            }
        });
        let mut affected = false;
        for (kind, ver) in sorted {
            let e = scheme.parse(ver).ok();
            match *kind {
                "introduced" if *ver == "0" || e.as_ref().is_some_and(|e| &v >= e) => {
                    affected = true
                }
                "fixed" if e.as_ref().is_some_and(|e| &v >= e) => affected = false,
                "last_affected" if e.as_ref().is_some_and(|e| &v > e) => affected = false,
                _ => {}
            }
        }
        let limits: Vec<Version> = events
            .iter()
            .filter(|e| e.0 == "limit")
            .map(|e| scheme.parse(e.1).unwrap())
            .collect();
        affected && (limits.is_empty() || limits.iter().any(|l| &v < l))
    }

    #[test]
    fn compiled_ranges_agree_with_the_schema_algorithm() {
        let event_sets: Vec<Vec<(&str, &str)>> = vec![
            vec![("introduced", "0"), ("fixed", "3")],
            vec![
                ("introduced", "1"),
                ("fixed", "3"),
                ("introduced", "5"),
                ("fixed", "7"),
            ],
            vec![
                ("introduced", "5"),
                ("last_affected", "7"),
                ("introduced", "1"),
            ],
            vec![("introduced", "0")],
            vec![("introduced", "2"), ("limit", "6")],
            vec![("introduced", "0"), ("fixed", "4"), ("limit", "2")],
            vec![("introduced", "3"), ("fixed", "3")],
            vec![("fixed", "3"), ("introduced", "3")],
            vec![("introduced", "3"), ("last_affected", "3")],
            vec![
                ("introduced", "1"),
                ("introduced", "2"),
                ("fixed", "4"),
                ("fixed", "6"),
            ],
            vec![("fixed", "2")],
            vec![
                ("introduced", "2"),
                ("fixed", "4"),
                ("introduced", "4"),
                ("fixed", "6"),
            ],
        ];
        for events in &event_sets {
            let r = range(RangeKind::Ecosystem, events);
            let (spec, warnings) = AffectedSpec::compile(Scheme::Generic, &[r], &[]);
            assert!(warnings.is_empty());
            for v in [
                "0.5", "1", "1.5", "2", "2.5", "3", "3.5", "4", "5", "6", "6.5", "7", "8",
            ] {
                let got = spec.affects(&Scheme::Generic.parse(v).unwrap()).is_some();
                assert_eq!(
                    got,
                    reference(Scheme::Generic, events, v),
                    "{events:?} at {v}"
                );
            }
        }
    }

    #[test]
    fn hits_name_their_fix_and_kind() {
        let ranges = vec![
            range(
                RangeKind::Ecosystem,
                &[("introduced", "0"), ("fixed", "1.2.3-1")],
            ),
            range(
                RangeKind::Ecosystem,
                &[("introduced", "2.0-1"), ("last_affected", "2.1-1")],
            ),
        ];
        let versions = vec!["1.9-1".to_string()];
        let (spec, warnings) = AffectedSpec::compile(Scheme::Dpkg, &ranges, &versions);
        assert!(warnings.is_empty(), "{warnings:?}");
        let v = |s| Scheme::Dpkg.parse(s).unwrap();
        let hit = spec.affects(&v("1.2.2-5")).unwrap();
        assert_eq!(hit.kind, MatchKind::Range);
        assert_eq!(hit.range, Some(0));
        assert_eq!(hit.fixed, Some("1.2.3-1"));
        assert!(spec.affects(&v("1.2.3-1")).is_none());
        let hit = spec.affects(&v("2.1-1")).unwrap();
        assert_eq!((hit.range, hit.fixed), (Some(1), None));
        assert!(spec.affects(&v("2.1-2")).is_none());
        let hit = spec.affects(&v("1.9-1")).unwrap();
        assert_eq!(hit.kind, MatchKind::ExplicitVersion);
        assert_eq!(spec.fixed_versions(), ["1.2.3-1"]);
    }

    #[test]
    fn semver_ranges_use_semver_order_whatever_the_ecosystem() {
        // PyPI orders 1.0.0rc1 < 1.0.0; SemVer cannot parse "rc1" without '-' as anything but a
        // pre-release either, but "1.0.0-post" is a SemVer pre-release and a PEP 440 post-release.
        let r = range(
            RangeKind::Semver,
            &[("introduced", "0"), ("fixed", "1.0.0")],
        );
        let (spec, _) = AffectedSpec::compile(Scheme::Pep440, &[r], &[]);
        let pep = |s| Scheme::Pep440.parse(s).unwrap();
        assert!(spec.affects(&pep("1.0.0-post")).is_some());
        assert!(spec.affects(&pep("1.0.0")).is_none());
    }

    #[test]
    fn git_ranges_and_bad_bounds_warn() {
        let ranges = vec![
            Range {
                kind: RangeKind::Git,
                repo: Some("https://example.org/repo".into()),
                events: vec![Event::Introduced("0".into())],
            },
            range(
                RangeKind::Ecosystem,
                &[("introduced", "0"), ("fixed", "not a version")],
            ),
        ];
        let (spec, warnings) = AffectedSpec::compile(Scheme::Dpkg, &ranges, &[]);
        assert_eq!(warnings.len(), 2);
        assert!(matches!(
            warnings[0],
            CompileWarning::GitRangeSkipped { range: 0, .. }
        ));
        assert!(matches!(
            warnings[1],
            CompileWarning::UnparsableBound {
                range: 1,
                event: "fixed",
                ..
            }
        ));
        assert!(warnings[1].to_string().contains("not a version"));
        assert!(spec.is_empty());
    }

    #[test]
    fn ranges_deserialize_from_osv_json() {
        let json = r#"[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"2.0"}]},
                       {"type":"GIT","repo":"https://x","events":[{"introduced":"0"},{"limit":"abc"}]},
                       {"type":"SEMVER","events":[{"introduced":"1.0.0"},{"last_affected":"1.4.0"}]}]"#;
        let ranges: Vec<Range> = serde_json::from_str(json).unwrap();
        assert_eq!(ranges[0].events[1], Event::Fixed("2.0".into()));
        assert_eq!(ranges[1].kind, RangeKind::Git);
        assert_eq!(ranges[2].events[1], Event::LastAffected("1.4.0".into()));
    }
}

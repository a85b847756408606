//! The bridge to `zt-version`: which ordering an ecosystem uses, parsing, and OSV affected
//! entries compiled once into `AffectedSpec`s.

use zt_advisory::{AffectedPackage, RangeEvent, RangeKind};
use zt_version::osv::{AffectedSpec, CompileWarning, Event, MatchKind, Range};

use crate::MatchMethod;

pub(crate) use zt_version::Version as Parsed;

/// A version ordering.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scheme(zt_version::Scheme);

impl Scheme {
    pub(crate) fn for_ecosystem(ecosystem: &str) -> Option<Scheme> {
        zt_version::Scheme::for_ecosystem(ecosystem).map(Scheme)
    }

    /// The ordering of NVD CPE version bounds and desktop programs' versions.
    pub(crate) fn nvd() -> Option<Scheme> {
        Some(Scheme(zt_version::Scheme::Generic))
    }

    pub(crate) fn parse(&self, version: &str) -> Option<Parsed> {
        self.0.parse(version).ok()
    }
}

/// One OSV `affected` entry's ranges and versions, compiled.
#[derive(Debug)]
pub(crate) struct CompiledAffected {
    spec: AffectedSpec,
}

impl CompiledAffected {
    /// `Ok(None)` when nothing in the entry can match (GIT ranges only, no versions);
    /// `Err` when ranges were dropped because their bounds do not parse and nothing is left.
    /// `notes` receives what was dropped from an entry that is still usable.
    pub(crate) fn compile(
        scheme: &Scheme,
        p: &AffectedPackage,
        notes: &mut dyn FnMut(String),
    ) -> Result<Option<CompiledAffected>, String> {
        let ranges: Vec<Range> = p
            .ranges
            .iter()
            .map(|r| Range {
                kind: match r.kind {
                    RangeKind::Semver => zt_version::osv::RangeKind::Semver,
                    RangeKind::Ecosystem => zt_version::osv::RangeKind::Ecosystem,
                    RangeKind::Git => zt_version::osv::RangeKind::Git,
                },
                repo: r.repo.clone(),
                events: r
                    .events
                    .iter()
                    .map(|e| match e {
                        RangeEvent::Introduced(v) => Event::Introduced(v.clone()),
                        RangeEvent::Fixed(v) => Event::Fixed(v.clone()),
                        RangeEvent::LastAffected(v) => Event::LastAffected(v.clone()),
                        RangeEvent::Limit(v) => Event::Limit(v.clone()),
                    })
                    .collect(),
            })
            .collect();
        let (spec, warnings) = AffectedSpec::compile(scheme.0, &ranges, &p.versions);
        let unusable: Vec<String> = warnings
            .iter()
            .filter(|w| matches!(w, CompileWarning::UnparsableBound { .. }))
            .map(ToString::to_string)
            .collect();
        if spec.is_empty() {
            return match unusable.into_iter().next() {
                Some(reason) => Err(reason),
                None => Ok(None),
            };
        }
        for reason in unusable {
            notes(reason);
        }
        Ok(Some(CompiledAffected { spec }))
    }

    /// How `version` is affected and the version that fixes it, if it is.
    #[inline]
    pub(crate) fn evaluate(&self, version: &Parsed) -> Option<(MatchMethod, Option<&str>)> {
        let hit = self.spec.affects(version)?;
        let method = match hit.kind {
            MatchKind::Range => MatchMethod::OsvRange,
            MatchKind::ExplicitVersion => MatchMethod::OsvVersion,
        };
        let fixed = hit.fixed.or_else(|| self.spec.next_fixed(version));
        Some((method, fixed))
    }
}

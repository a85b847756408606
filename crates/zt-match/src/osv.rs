//! OSV affected packages, compiled once and indexed by (ecosystem, normalized name).
//!
//! The map is two levels deep (ecosystem, then name) so that a lookup hashes borrowed `&str`s
//! and allocates nothing.

use std::collections::HashMap;

use zt_advisory::{base_ecosystem, AffectedPackage};

use crate::names::NameRule;
use crate::versions::{CompiledAffected, Scheme};
use crate::MatchMethod;

#[derive(Debug)]
pub(crate) struct OsvEntry {
    pub(crate) group: u32,
    pub(crate) affected: CompiledAffected,
}

/// The entries of one ecosystem (e.g. `Debian:12`, `PyPI`).
#[derive(Debug)]
pub(crate) struct EcosystemIndex {
    pub(crate) scheme: Scheme,
    pub(crate) rule: NameRule,
    pub(crate) packages: HashMap<Box<str>, Vec<OsvEntry>>,
}

#[derive(Debug, Default)]
pub(crate) struct OsvIndex {
    pub(crate) ecosystems: HashMap<Box<str>, EcosystemIndex>,
    pub(crate) entries: usize,
    /// Affected packages left out: no usable range (GIT only), or a version that does not parse
    /// in its ecosystem, or an ecosystem without a version scheme.
    pub(crate) skipped: usize,
    pub(crate) skip_reasons: Vec<String>,
}

const MAX_SKIP_REASONS: usize = 20;

impl OsvIndex {
    pub(crate) fn add(&mut self, group: u32, advisory_id: &str, p: &AffectedPackage) {
        let ecosystem = p.ecosystem.as_str();
        if !self.ecosystems.contains_key(ecosystem) {
            let Some(scheme) = Scheme::for_ecosystem(ecosystem) else {
                self.skip(format!(
                    "{advisory_id}: ecosystem {ecosystem:?} has no version ordering"
                ));
                return;
            };
            self.ecosystems.insert(
                ecosystem.into(),
                EcosystemIndex {
                    scheme,
                    rule: NameRule::for_ecosystem(base_ecosystem(ecosystem)),
                    packages: HashMap::new(),
                },
            );
        }
        let Some(eco) = self.ecosystems.get_mut(ecosystem) else {
            return;
        };
        let mut notes = Vec::new();
        let compiled = CompiledAffected::compile(&eco.scheme, p, &mut |n| notes.push(n));
        let affected = match compiled {
            Ok(Some(a)) => a,
            Ok(None) => {
                self.skipped += 1;
                return;
            }
            Err(reason) => {
                self.skip(format!("{advisory_id} {ecosystem}/{}: {reason}", p.name));
                return;
            }
        };
        let name: Box<str> = eco.rule.normalize(&p.name).into();
        eco.packages
            .entry(name)
            .or_default()
            .push(OsvEntry { group, affected });
        self.entries += 1;
        for n in notes {
            self.note(format!("{advisory_id} {ecosystem}/{}: {n}", p.name));
        }
    }

    fn skip(&mut self, reason: String) {
        self.skipped += 1;
        self.note(reason);
    }

    fn note(&mut self, reason: String) {
        if self.skip_reasons.len() < MAX_SKIP_REASONS {
            self.skip_reasons.push(reason);
        }
    }

    /// Calls `hit` for every entry of `ecosystem`/`name` whose ranges or versions hold `version`.
    /// Allocation-free unless the name needs normalizing.
    pub(crate) fn for_each_hit<'a>(
        &'a self,
        ecosystem: &str,
        name: &str,
        version: &str,
        hit: &mut dyn FnMut(&'a OsvEntry, MatchMethod, Option<&'a str>),
    ) {
        let Some(eco) = self.ecosystems.get(ecosystem) else {
            return;
        };
        let normalized = eco.rule.normalize(name);
        let Some(entries) = eco.packages.get(normalized.as_ref()) else {
            return;
        };
        let Some(parsed) = eco.scheme.parse(version) else {
            return;
        };
        for entry in entries {
            if let Some((method, fixed)) = entry.affected.evaluate(&parsed) {
                hit(entry, method, fixed);
            }
        }
    }

    /// Whether any advisory names this package (whatever the version).
    pub(crate) fn knows(&self, ecosystem: &str, name: &str) -> bool {
        self.ecosystems
            .get(ecosystem)
            .is_some_and(|eco| eco.packages.contains_key(eco.rule.normalize(name).as_ref()))
    }
}

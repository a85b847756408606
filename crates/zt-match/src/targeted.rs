//! A one-shot index for a known set of software (`zerotrace scan`): only the advisories that
//! can hit those packages are compiled, together with every advisory tied to them by an id, so
//! that alias groups, severities and KEV/EPSS data come out exactly as in a full index.
//!
//! Why: compiling every affected entry of a large knowledge base (PyPA records alone list
//! hundreds of thousands of versions) costs far more than a scan of one SBOM needs.

use std::collections::{HashMap, HashSet};

use zt_advisory::{base_ecosystem, Advisory, KnowledgeBase};
use zt_inventory::{AppSource, Software};

use crate::names::NameRule;

/// The advisories a full index would consult for `software`, closed under shared ids.
pub(crate) fn select(kb: &KnowledgeBase, software: &[Software]) -> KnowledgeBase {
    let mut keys: HashSet<(String, String)> = HashSet::new();
    let mut needs_cpe = false;
    let mut add_key = |ecosystem: &str, name: &str| {
        let rule = NameRule::for_ecosystem(base_ecosystem(ecosystem));
        keys.insert((ecosystem.to_string(), rule.normalize(name).into_owned()));
    };
    for sw in software {
        if !crate::has_osv_ecosystem(sw) {
            needs_cpe = true;
        } else if sw.source.is_distro() {
            add_key(&sw.ecosystem, sw.advisory_name());
            add_key(base_ecosystem(&sw.ecosystem), sw.advisory_name());
            if sw.source == AppSource::Rpm {
                add_key(&sw.ecosystem, &sw.name);
            }
        } else {
            add_key(&sw.ecosystem, &sw.name);
        }
    }

    let live = |a: &Advisory| !a.is_withdrawn();
    let relevant = |a: &Advisory| {
        live(a)
            && ((needs_cpe && !a.cpe_configurations.is_empty())
                || a.affected.iter().any(|p| {
                    let rule = NameRule::for_ecosystem(base_ecosystem(&p.ecosystem));
                    keys.contains(&(p.ecosystem.clone(), rule.normalize(&p.name).into_owned()))
                }))
    };

    // Every id an advisory is known by, as grouping unites them (id, aliases, a sole upstream).
    let mut by_id: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, a) in kb.advisories.iter().enumerate().filter(|(_, a)| live(a)) {
        let sole_upstream = match a.upstream.as_slice() {
            [one] => Some(one),
            _ => None,
        };
        for id in std::iter::once(&a.id)
            .chain(&a.aliases)
            .chain(sole_upstream)
        {
            by_id.entry(id.as_str()).or_default().push(i);
        }
    }

    let mut included = vec![false; kb.advisories.len()];
    let mut queue: Vec<usize> = Vec::new();
    for (i, a) in kb.advisories.iter().enumerate() {
        if relevant(a) {
            included[i] = true;
            queue.push(i);
        }
    }
    // Whole alias components, plus the CVEs multi-CVE records take their severity from.
    while let Some(i) = queue.pop() {
        let a = &kb.advisories[i];
        for id in std::iter::once(&a.id).chain(&a.aliases).chain(&a.upstream) {
            for &j in by_id.get(id.as_str()).map(Vec::as_slice).unwrap_or(&[]) {
                if !included[j] {
                    included[j] = true;
                    queue.push(j);
                }
            }
        }
    }

    let advisories: Vec<Advisory> = kb
        .advisories
        .iter()
        .zip(&included)
        .filter(|(_, inc)| **inc)
        .map(|(a, _)| a.clone())
        .collect();
    let mentioned: HashSet<&str> = advisories
        .iter()
        .flat_map(|a| std::iter::once(&a.id).chain(&a.aliases).chain(&a.upstream))
        .map(String::as_str)
        .collect();
    KnowledgeBase {
        revision: kb.revision,
        kev: kb
            .kev
            .iter()
            .filter(|k| mentioned.contains(k.cve.as_str()))
            .cloned()
            .collect(),
        epss: kb
            .epss
            .iter()
            .filter(|e| mentioned.contains(e.cve.as_str()))
            .cloned()
            .collect(),
        advisories,
    }
}

/// The (ecosystem, normalized name) keys under which a software version is looked up, as
/// [`crate::MatchIndex`] looks it up (distro packages by source name, under their release and
/// the bare distribution; Red Hat family binaries by their own name too).
fn software_keys(sw: &Software) -> Vec<(String, String)> {
    let key = |ecosystem: &str, name: &str| {
        let rule = NameRule::for_ecosystem(base_ecosystem(ecosystem));
        (ecosystem.to_string(), rule.normalize(name).into_owned())
    };
    if sw.source.is_distro() {
        let mut keys = vec![
            key(&sw.ecosystem, sw.advisory_name()),
            key(base_ecosystem(&sw.ecosystem), sw.advisory_name()),
        ];
        if sw.source == AppSource::Rpm {
            keys.push(key(&sw.ecosystem, &sw.name));
        }
        keys
    } else {
        vec![key(&sw.ecosystem, &sw.name)]
    }
}

/// What a set of changed advisories can change in match results: the packages named by every
/// advisory whose group (as grouping unites ids: id, aliases, upstream) takes in one of them,
/// in the knowledge base after the change. Software outside it matches exactly as before.
///
/// Why the whole group: a group's severity, CVSS, KEV and id come from all its members, so a
/// changed NVD record changes the findings of the GHSA record naming the package; and a
/// multi-CVE distro advisory takes its severity from the CVEs it lists.
///
/// What the changed advisories named *before* the change is not here (the knowledge base no
/// longer has it): the caller adds the software whose cached matches are of those groups.
#[derive(Debug, Clone, Default)]
pub struct ChangeScope {
    keys: HashSet<(String, String)>,
    /// An advisory in scope has CPE configurations: software matched through NVD (no OSV
    /// ecosystem) may be affected.
    cpe: bool,
    advisories: usize,
}

impl ChangeScope {
    /// The scope of the advisories with these ids (changed, added or withdrawn) in `kb`.
    pub fn of(kb: &KnowledgeBase, changed: &[String]) -> ChangeScope {
        let seeds: HashSet<&str> = changed.iter().map(String::as_str).collect();
        let live = |a: &Advisory| !a.is_withdrawn();
        // Every id naming each live advisory, upstream ids included (both directions: a
        // changed CVE reaches the distro advisories listing it).
        let mut by_id: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, a) in kb.advisories.iter().enumerate().filter(|(_, a)| live(a)) {
            for id in std::iter::once(&a.id).chain(&a.aliases).chain(&a.upstream) {
                by_id.entry(id.as_str()).or_default().push(i);
            }
        }
        let mut included = vec![false; kb.advisories.len()];
        let mut queue: Vec<usize> = Vec::new();
        let mut start_ids: HashSet<&str> = seeds.clone();
        for a in kb
            .advisories
            .iter()
            .filter(|a| seeds.contains(a.id.as_str()))
        {
            // A withdrawn advisory's ids still tie the groups it was part of.
            start_ids.extend(a.aliases.iter().chain(&a.upstream).map(String::as_str));
        }
        for id in start_ids {
            for &j in by_id.get(id).map(Vec::as_slice).unwrap_or(&[]) {
                if !included[j] {
                    included[j] = true;
                    queue.push(j);
                }
            }
        }
        while let Some(i) = queue.pop() {
            let a = &kb.advisories[i];
            for id in std::iter::once(&a.id).chain(&a.aliases).chain(&a.upstream) {
                for &j in by_id.get(id.as_str()).map(Vec::as_slice).unwrap_or(&[]) {
                    if !included[j] {
                        included[j] = true;
                        queue.push(j);
                    }
                }
            }
        }
        let mut scope = ChangeScope::default();
        for (a, _) in kb.advisories.iter().zip(&included).filter(|(_, inc)| **inc) {
            scope.advisories += 1;
            scope.cpe |= !a.cpe_configurations.is_empty();
            for p in &a.affected {
                let rule = NameRule::for_ecosystem(base_ecosystem(&p.ecosystem));
                scope
                    .keys
                    .insert((p.ecosystem.clone(), rule.normalize(&p.name).into_owned()));
            }
        }
        scope
    }

    /// Whether a change in scope may change what `sw` matches.
    pub fn covers(&self, sw: &Software) -> bool {
        if !crate::has_osv_ecosystem(sw) {
            return self.cpe;
        }
        software_keys(sw).iter().any(|k| self.keys.contains(k))
    }

    /// Advisories in scope (the changed ones and those sharing a group with them).
    pub fn advisories(&self) -> usize {
        self.advisories
    }

    /// Distinct (ecosystem, package) keys in scope.
    pub fn packages(&self) -> usize {
        self.keys.len()
    }
}

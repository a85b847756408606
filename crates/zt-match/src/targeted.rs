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

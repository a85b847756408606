//! Alias grouping: one vulnerability is one finding, however many databases describe it.
//!
//! Rules (the OSV schema's meaning of each field decides):
//! - `id` and every `aliases` entry name the same vulnerability: merged, transitively.
//! - `upstream` names what a record was derived from. A record with exactly ONE upstream id
//!   (UBUNTU-CVE-x → CVE-x, a DSA fixing one CVE, a converted secdb entry) describes that same
//!   vulnerability and is merged with it. A record with SEVERAL upstream ids (a DSA/USN that
//!   fixes five CVEs) is one fix for several vulnerabilities: merging it would glue unrelated
//!   CVEs into one group, so it stays its own group and lists those CVEs in
//!   [`AdvisoryGroup::upstream`]; its KEV flag, EPSS and (when it has no score of its own)
//!   severity come from them.
//! - `related` is never merged.
//! - Withdrawn advisories take no part: they are never matched, and their aliases must not
//!   glue live groups together.
//!
//! Display id: the group's CVE when it has exactly one; else a GHSA id; else the smallest
//! member advisory id (ids made up by secdb converters last).

use std::collections::{HashMap, HashSet};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::advisory::{best_cvss, is_cve_id, Advisory};
use crate::knowledge::{EpssScore, KevEntry};
use crate::severity::{Cvss, Severity};

/// One vulnerability: the advisories describing it and what the finding shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdvisoryGroup {
    /// The id shown to users.
    pub id: String,
    /// Every other public id of the group, sorted (synthetic secdb ids left out).
    pub aliases: Vec<String>,
    /// Indexes into the advisory slice the groups were built from, sorted.
    pub members: Vec<usize>,
    /// The CVE ids of the group itself (for KEV/EPSS look-ups), sorted.
    pub cves: Vec<String>,
    /// CVEs fixed by a multi-CVE member (a DSA/USN listing several `upstream` ids).
    pub upstream: Vec<String>,
    pub summary: String,
    pub severity: Severity,
    /// The CVSS the severity comes from (highest v3.x/v4.0 score, else v2), when any.
    pub cvss: Option<Cvss>,
    /// Listed in CISA KEV (any CVE of the group or of its upstream list).
    pub kev: bool,
    /// The earliest KEV due date among those CVEs.
    pub kev_due_date: Option<NaiveDate>,
    pub kev_known_ransomware: bool,
    /// The highest EPSS score among those CVEs.
    pub epss: Option<EpssScore>,
    /// "unmaintained"/"unsound"/"notice" when every member is informational (RustSec).
    pub informational: Option<String>,
}

/// The groups of a set of advisories.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AliasGroups {
    pub groups: Vec<AdvisoryGroup>,
    /// For each advisory index: its group index, `None` for withdrawn advisories.
    pub group_of: Vec<Option<usize>>,
}

impl AliasGroups {
    /// The group of advisory `index` (None when withdrawn or out of range).
    pub fn group_for(&self, index: usize) -> Option<&AdvisoryGroup> {
        self.group_of
            .get(index)
            .copied()
            .flatten()
            .and_then(|g| self.groups.get(g))
    }

    /// The group that contains `id` as display id or alias.
    pub fn find(&self, id: &str) -> Option<&AdvisoryGroup> {
        self.groups
            .iter()
            .find(|g| g.id == id || g.aliases.iter().any(|a| a == id))
    }

    /// Sets KEV and EPSS fields from the CVEs of each group and its upstream list.
    pub fn apply_exploitation(
        &mut self,
        kev: &HashMap<&str, &KevEntry>,
        epss: &HashMap<&str, &EpssScore>,
    ) {
        for g in &mut self.groups {
            g.kev = false;
            g.kev_due_date = None;
            g.kev_known_ransomware = false;
            g.epss = None;
            for cve in g.cves.iter().chain(g.upstream.iter()) {
                if let Some(k) = kev.get(cve.as_str()) {
                    g.kev = true;
                    g.kev_known_ransomware |= k.known_ransomware_use();
                    g.kev_due_date = match (g.kev_due_date, k.due_date) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                }
                if let Some(e) = epss.get(cve.as_str()) {
                    if g.epss.as_ref().is_none_or(|best| e.epss > best.epss) {
                        g.epss = Some((*e).clone());
                    }
                }
            }
        }
    }
}

/// A small union-find over interned ids (borrowed from the advisories: no copies).
struct IdSets<'a> {
    index: HashMap<&'a str, usize>,
    names: Vec<&'a str>,
    parent: Vec<usize>,
}

impl<'a> IdSets<'a> {
    fn id(&mut self, s: &'a str) -> usize {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.parent.len();
        self.parent.push(i);
        self.names.push(s);
        self.index.insert(s, i);
        i
    }

    fn root(&mut self, mut i: usize) -> usize {
        while self.parent[i] != i {
            self.parent[i] = self.parent[self.parent[i]];
            i = self.parent[i];
        }
        i
    }

    fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.root(a), self.root(b));
        if ra != rb {
            // Keep the smaller index as root so results do not depend on hash order.
            let (lo, hi) = if ra < rb { (ra, rb) } else { (rb, ra) };
            self.parent[hi] = lo;
        }
    }
}

/// Groups the non-withdrawn advisories by alias (rules in the module documentation).
/// KEV/EPSS fields are left empty: see [`AliasGroups::apply_exploitation`].
pub fn group_advisories(advisories: &[Advisory]) -> AliasGroups {
    let mut sets = IdSets {
        index: HashMap::with_capacity(advisories.len() * 2),
        names: Vec::with_capacity(advisories.len() * 2),
        parent: Vec::with_capacity(advisories.len() * 2),
    };
    let mut own_id = vec![usize::MAX; advisories.len()];
    for (i, a) in advisories.iter().enumerate() {
        if a.is_withdrawn() {
            continue;
        }
        let me = sets.id(&a.id);
        own_id[i] = me;
        for alias in &a.aliases {
            let other = sets.id(alias);
            sets.union(me, other);
        }
        if let [single] = a.upstream.as_slice() {
            let other = sets.id(single);
            sets.union(me, other);
        }
    }

    // Ids made up by secdb converters, never shown.
    let synthetic: HashSet<&str> = advisories
        .iter()
        .filter(|a| a.source.has_synthetic_ids())
        .map(|a| a.id.as_str())
        .collect();

    // Dense group numbers in order of first member, then ids and members per group.
    let n = sets.parent.len();
    let mut group_of_root = vec![usize::MAX; n];
    let mut members_of: Vec<Vec<usize>> = Vec::new();
    let mut out = AliasGroups {
        groups: Vec::new(),
        group_of: vec![None; advisories.len()],
    };
    for (i, &me) in own_id.iter().enumerate() {
        if me == usize::MAX {
            continue;
        }
        let r = sets.root(me);
        if group_of_root[r] == usize::MAX {
            group_of_root[r] = members_of.len();
            members_of.push(Vec::new());
        }
        members_of[group_of_root[r]].push(i);
        out.group_of[i] = Some(group_of_root[r]);
    }
    let mut ids_of: Vec<Vec<&str>> = vec![Vec::new(); members_of.len()];
    for i in 0..n {
        let r = sets.root(i);
        let g = group_of_root[r];
        if g != usize::MAX {
            ids_of[g].push(sets.names[i]);
        }
    }
    out.groups = members_of
        .into_iter()
        .zip(ids_of)
        .map(|(members, mut ids)| {
            ids.sort_unstable();
            build_group(advisories, members, ids, &synthetic)
        })
        .collect();
    fill_severity_from_upstream(&mut out);
    out
}

fn build_group(
    advisories: &[Advisory],
    members: Vec<usize>,
    ids: Vec<&str>,
    synthetic: &HashSet<&str>,
) -> AdvisoryGroup {
    let cves: Vec<String> = ids
        .iter()
        .filter(|i| is_cve_id(i))
        .map(|i| i.to_string())
        .collect();
    let display = choose_display_id(advisories, &members, &ids, &cves, synthetic);
    let aliases: Vec<String> = ids
        .iter()
        .filter(|i| **i != display && !synthetic.contains(*i))
        .map(|i| i.to_string())
        .collect();

    let mut upstream: Vec<String> = members
        .iter()
        .flat_map(|&m| {
            let a = &advisories[m];
            if a.upstream.len() > 1 {
                a.upstream.clone()
            } else {
                Vec::new()
            }
        })
        .filter(|u| !ids.contains(&u.as_str()))
        .collect();
    upstream.sort_unstable();
    upstream.dedup();

    let cvss = best_cvss(members.iter().flat_map(|&m| advisories[m].cvss.iter())).cloned();
    let severity = match &cvss {
        Some(c) => c.severity(),
        None => members
            .iter()
            .flat_map(|&m| {
                let a = &advisories[m];
                a.severity_labels
                    .iter()
                    .chain(a.affected.iter().flat_map(|p| p.severity_labels.iter()))
            })
            .map(|l| l.severity)
            .max()
            .unwrap_or(Severity::Unknown),
    };

    let summary = group_summary(advisories, &members, &display);
    let informational = if members
        .iter()
        .all(|&m| advisories[m].informational.is_some())
    {
        members
            .first()
            .and_then(|&m| advisories[m].informational.clone())
    } else {
        None
    };

    AdvisoryGroup {
        id: display,
        aliases,
        members,
        cves,
        upstream,
        summary,
        severity,
        cvss,
        kev: false,
        kev_due_date: None,
        kev_known_ransomware: false,
        epss: None,
        informational,
    }
}

fn choose_display_id(
    advisories: &[Advisory],
    members: &[usize],
    ids: &[&str],
    cves: &[String],
    synthetic: &HashSet<&str>,
) -> String {
    if let [cve] = cves {
        return cve.clone();
    }
    if let Some(ghsa) = ids.iter().find(|i| i.starts_with("GHSA-")) {
        return ghsa.to_string();
    }
    let mut member_ids: Vec<&str> = members.iter().map(|&m| advisories[m].id.as_str()).collect();
    member_ids.sort_unstable_by_key(|id| (synthetic.contains(id), *id));
    if let Some(first) = member_ids.first() {
        if !synthetic.contains(first) {
            return (*first).to_string();
        }
    }
    // Only synthetic members: the smallest public id they point to, if any.
    ids.iter()
        .find(|i| !synthetic.contains(*i))
        .or(ids.first())
        .map(|i| i.to_string())
        .unwrap_or_default()
}

fn group_summary(advisories: &[Advisory], members: &[usize], display: &str) -> String {
    let pick = |a: &Advisory| -> Option<String> {
        if !a.summary.trim().is_empty() {
            return Some(a.summary.trim().to_string());
        }
        let first_line = a.details.lines().find(|l| !l.trim().is_empty())?;
        Some(first_line.trim().chars().take(200).collect())
    };
    if let Some(s) = members
        .iter()
        .map(|&m| &advisories[m])
        .find(|a| a.id == display)
        .and_then(pick)
    {
        return s;
    }
    // Prefer hand-written OSV summaries over NVD's long descriptions.
    let mut ordered: Vec<&Advisory> = members.iter().map(|&m| &advisories[m]).collect();
    ordered.sort_by_key(|a| (a.source == crate::advisory::Source::Nvd, a.id.as_str()));
    ordered.into_iter().find_map(pick).unwrap_or_default()
}

/// A multi-CVE fix without a score of its own takes the worst severity of the CVEs it fixes.
fn fill_severity_from_upstream(groups: &mut AliasGroups) {
    if !groups
        .groups
        .iter()
        .any(|g| g.cvss.is_none() && !g.upstream.is_empty())
    {
        return;
    }
    let by_cve: HashMap<&str, usize> = groups
        .groups
        .iter()
        .enumerate()
        .flat_map(|(i, g)| g.cves.iter().map(move |c| (c.as_str(), i)))
        .collect();
    let mut updates: Vec<(usize, Severity, Option<Cvss>)> = Vec::new();
    for (i, g) in groups.groups.iter().enumerate() {
        if g.cvss.is_some() || g.upstream.is_empty() {
            continue;
        }
        let sources: Vec<&AdvisoryGroup> = g
            .upstream
            .iter()
            .filter_map(|u| by_cve.get(u.as_str()))
            .map(|&j| &groups.groups[j])
            .collect();
        let best = best_cvss(sources.iter().filter_map(|s| s.cvss.as_ref())).cloned();
        let worst = sources.iter().map(|s| s.severity).max();
        let severity = match (&best, worst) {
            (Some(c), _) => g.severity.max(c.severity()),
            (None, Some(w)) => g.severity.max(w),
            (None, None) => continue,
        };
        updates.push((i, severity, best));
    }
    for (i, severity, cvss) in updates {
        let g = &mut groups.groups[i];
        g.severity = severity;
        if cvss.is_some() {
            g.cvss = cvss;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::advisory::Source;

    fn adv(id: &str, aliases: &[&str], upstream: &[&str]) -> Advisory {
        let mut a = Advisory::new(id, Source::Osv);
        a.aliases = aliases.iter().map(|s| s.to_string()).collect();
        a.upstream = upstream.iter().map(|s| s.to_string()).collect();
        a
    }

    #[test]
    fn aliases_merge_transitively_and_prefer_the_cve() {
        let all = vec![
            adv("GHSA-aaaa-bbbb-cccc", &["CVE-2023-0001"], &[]),
            adv("PYSEC-2023-9", &["GHSA-aaaa-bbbb-cccc"], &[]),
            adv("CVE-2023-0001", &[], &[]),
            adv("RUSTSEC-2020-1", &[], &[]),
        ];
        let g = group_advisories(&all);
        assert_eq!(g.groups.len(), 2);
        let grp = g.group_for(1).unwrap();
        assert_eq!(grp.id, "CVE-2023-0001");
        assert_eq!(grp.aliases, vec!["GHSA-aaaa-bbbb-cccc", "PYSEC-2023-9"]);
        assert_eq!(grp.members, vec![0, 1, 2]);
        assert_eq!(g.group_for(3).unwrap().id, "RUSTSEC-2020-1");
    }

    #[test]
    fn multi_upstream_records_stay_apart_and_inherit_severity() {
        let mut cve = adv("CVE-2023-0002", &[], &[]);
        cve.cvss
            .push(Cvss::from_vector("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H").unwrap());
        let all = vec![
            adv("DSA-5000-1", &[], &["CVE-2023-0002", "CVE-2023-0003"]),
            adv("DSA-5001-1", &[], &["CVE-2023-0004"]),
            cve,
            adv("CVE-2023-0003", &[], &[]),
        ];
        let g = group_advisories(&all);
        let dsa = g.group_for(0).unwrap();
        assert_eq!(dsa.id, "DSA-5000-1");
        assert_eq!(dsa.upstream, vec!["CVE-2023-0002", "CVE-2023-0003"]);
        assert_eq!(dsa.severity, Severity::Critical);
        let single = g.group_for(1).unwrap();
        assert_eq!(single.id, "CVE-2023-0004");
        assert_eq!(single.aliases, vec!["DSA-5001-1"]);
        assert_ne!(g.group_of[2], g.group_of[3]);
    }

    #[test]
    fn withdrawn_records_do_not_glue_groups() {
        let mut w = adv(
            "GHSA-wwww-wwww-wwww",
            &["CVE-2020-0001", "CVE-2020-0002"],
            &[],
        );
        w.withdrawn = Some(chrono::Utc::now());
        let all = vec![
            w,
            adv("CVE-2020-0001", &[], &[]),
            adv("CVE-2020-0002", &[], &[]),
        ];
        let g = group_advisories(&all);
        assert_eq!(g.group_of[0], None);
        assert_eq!(g.groups.len(), 2);
    }

    #[test]
    fn synthetic_ids_are_hidden() {
        let mut s = adv(
            "ALPINE-v3.11-main-CVE-2019-0001",
            &["XSA-1"],
            &["CVE-2019-0001"],
        );
        s.source = Source::AlpineSecdb;
        let g = group_advisories(&[s]);
        assert_eq!(g.groups[0].id, "CVE-2019-0001");
        assert_eq!(g.groups[0].aliases, vec!["XSA-1"]);
    }

    #[test]
    fn kev_and_epss_apply_to_group_and_upstream_cves() {
        let all = vec![adv("DSA-1-1", &[], &["CVE-2021-0001", "CVE-2021-0002"])];
        let mut g = group_advisories(&all);
        let kev = KevEntry {
            cve: "CVE-2021-0002".into(),
            vendor_project: "v".into(),
            product: "p".into(),
            vulnerability_name: "n".into(),
            date_added: NaiveDate::from_ymd_opt(2022, 1, 1).unwrap(),
            short_description: String::new(),
            required_action: String::new(),
            due_date: NaiveDate::from_ymd_opt(2022, 2, 1),
            known_ransomware_campaign_use: "Known".into(),
            notes: String::new(),
            cwes: vec![],
        };
        let e1 = EpssScore {
            cve: "CVE-2021-0001".into(),
            epss: 0.5,
            percentile: 0.9,
            date: None,
        };
        let e2 = EpssScore {
            cve: "CVE-2021-0002".into(),
            epss: 0.1,
            percentile: 0.5,
            date: None,
        };
        let kevs = HashMap::from([(kev.cve.as_str(), &kev)]);
        let epss = HashMap::from([(e1.cve.as_str(), &e1), (e2.cve.as_str(), &e2)]);
        g.apply_exploitation(&kevs, &epss);
        let grp = &g.groups[0];
        assert!(grp.kev && grp.kev_known_ransomware);
        assert_eq!(grp.kev_due_date, NaiveDate::from_ymd_opt(2022, 2, 1));
        assert_eq!(grp.epss.as_ref().map(|e| e.epss), Some(0.5));
    }
}

//! The agent inventory without the database: its compact stored form, the diff of a new report
//! against it, and which findings of a changed package carry over.

use std::collections::{HashMap, HashSet};

use zt_inventory::SoftwareKey;

use super::key_from;
use crate::model::*;
use crate::Result;

/// An agent's apps `(software key, arch)` and the package id of each software version.
pub(crate) type Inventory = (HashSet<(SoftwareKey, String)>, HashMap<SoftwareKey, u64>);

/// A stable 64-bit id of a package (`ecosystem\0name`): equal across versions of the package.
pub(crate) fn package_id(package: &str) -> u64 {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(package.as_bytes());
    u64::from_le_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

/// The compact stored inventory: per app the 16-byte software key, the 8-byte package id,
/// the arch length (u16 LE) and the arch bytes.
pub(crate) fn encode_inventory(
    apps: &HashSet<(SoftwareKey, String)>,
    pkg: &HashMap<SoftwareKey, u64>,
) -> Vec<u8> {
    let mut sorted: Vec<&(SoftwareKey, String)> = apps.iter().collect();
    sorted.sort();
    let mut out = Vec::with_capacity(sorted.len() * 28);
    for (key, arch) in sorted {
        let arch = &arch.as_bytes()[..arch.len().min(u16::MAX as usize)];
        out.extend_from_slice(&key.0);
        out.extend_from_slice(&pkg.get(key).copied().unwrap_or(0).to_le_bytes());
        out.extend_from_slice(&(arch.len() as u16).to_le_bytes());
        out.extend_from_slice(arch);
    }
    out
}

pub(crate) fn decode_inventory(mut bytes: &[u8]) -> Result<Inventory> {
    let corrupt = || crate::StoreError::Corrupt("stored agent inventory is truncated".into());
    let mut apps = HashSet::new();
    let mut pkg = HashMap::new();
    while !bytes.is_empty() {
        if bytes.len() < 26 {
            return Err(corrupt());
        }
        let key = key_from(&bytes[..16])?;
        let mut id = [0u8; 8];
        id.copy_from_slice(&bytes[16..24]);
        let len = usize::from(u16::from_le_bytes([bytes[24], bytes[25]]));
        let arch = bytes.get(26..26 + len).ok_or_else(corrupt)?;
        apps.insert((key, String::from_utf8_lossy(arch).into_owned()));
        pkg.insert(key, u64::from_le_bytes(id));
        bytes = &bytes[26 + len..];
    }
    Ok((apps, pkg))
}

/// A report's inventory against the stored one.
pub(crate) struct InventoryDiff {
    pub(crate) new_apps: HashSet<(SoftwareKey, String)>,
    pub(crate) new_pkg: HashMap<SoftwareKey, u64>,
    pub(crate) old_pkg: HashMap<SoftwareKey, u64>,
    /// Apps gone and come.
    pub(crate) deleted: Vec<(SoftwareKey, String)>,
    pub(crate) inserted: Vec<(SoftwareKey, String)>,
    /// Software versions gone and come (whatever the arch).
    pub(crate) removed_sw: Vec<SoftwareKey>,
    pub(crate) added_sw: Vec<SoftwareKey>,
    /// Packages with one version gone and another come.
    pub(crate) changed_pkgs: HashSet<u64>,
}

impl InventoryDiff {
    pub(crate) fn new(old: Inventory, r: &ProcessedReport) -> InventoryDiff {
        let (old_apps, old_pkg) = old;
        let new_apps: HashSet<(SoftwareKey, String)> = r
            .apps
            .iter()
            .map(|a| (a.software_key, a.arch.clone()))
            .collect();
        let new_pkg: HashMap<SoftwareKey, u64> =
            r.names.iter().map(|(k, n)| (*k, package_id(n))).collect();

        let deleted = old_apps.difference(&new_apps).cloned().collect();
        let inserted = new_apps.difference(&old_apps).cloned().collect();
        let new_keys: HashSet<SoftwareKey> = new_apps.iter().map(|(k, _)| *k).collect();
        let removed_sw: Vec<SoftwareKey> = old_pkg
            .keys()
            .filter(|k| !new_keys.contains(k))
            .copied()
            .collect();
        let added_sw: Vec<SoftwareKey> = new_keys
            .iter()
            .filter(|k| !old_pkg.contains_key(k))
            .copied()
            .collect();

        // A package with one version gone and another come is a changed app (an upgrade or a
        // downgrade), not a removal plus an addition.
        let removed_pkgs: HashSet<u64> = removed_sw
            .iter()
            .filter_map(|k| old_pkg.get(k).copied())
            .collect();
        let added_pkgs: HashSet<u64> = added_sw
            .iter()
            .filter_map(|k| new_pkg.get(k).copied())
            .collect();
        let changed_pkgs = removed_pkgs.intersection(&added_pkgs).copied().collect();
        InventoryDiff {
            new_apps,
            new_pkg,
            old_pkg,
            deleted,
            inserted,
            removed_sw,
            added_sw,
            changed_pkgs,
        }
    }

    /// Every list in key order (for writers that lock rows in key order).
    pub(crate) fn sort(&mut self) {
        self.deleted.sort();
        self.inserted.sort();
        self.removed_sw.sort();
        self.added_sw.sort();
    }

    /// Whether open findings move: software came or went.
    pub(crate) fn findings_changed(&self) -> bool {
        !self.removed_sw.is_empty() || !self.added_sw.is_empty()
    }

    /// The removed versions of changed packages.
    pub(crate) fn changed_old_keys(&self) -> impl Iterator<Item = &SoftwareKey> {
        let (pkg, changed) = (&self.old_pkg, &self.changed_pkgs);
        self.removed_sw
            .iter()
            .filter(move |k| pkg.get(k).is_some_and(|p| changed.contains(p)))
    }

    /// The added versions of changed packages.
    pub(crate) fn changed_new_keys(&self) -> impl Iterator<Item = &SoftwareKey> {
        let (pkg, changed) = (&self.new_pkg, &self.changed_pkgs);
        self.added_sw
            .iter()
            .filter(move |k| pkg.get(k).is_some_and(|p| changed.contains(p)))
    }

    /// What the report did, counting a changed package once rather than as removed and added.
    pub(crate) fn outcome(&self) -> ReportOutcome {
        let changed = self.changed_pkgs.len();
        let n = |x: usize| u32::try_from(x).unwrap_or(u32::MAX);
        ReportOutcome::Applied {
            added: n(self.inserted.len().saturating_sub(changed)),
            removed: n(self.deleted.len().saturating_sub(changed)),
            changed: n(changed),
        }
    }
}

/// A finding row: software key, vulnerability and a value of it (first seen, as the backend
/// stores times, or a resolution).
pub(crate) type FindingSeen<T> = (SoftwareKey, String, T);

/// What becomes of the findings of changed packages.
pub(crate) struct CarryOver<T> {
    /// New rows that take over an older `first_seen` (the earliest of their old rows'), each
    /// once, in the order of the old rows.
    pub(crate) first_seen: Vec<FindingSeen<T>>,
    /// The old rows' resolution: `superseded` or `fixed`.
    pub(crate) resolutions: Vec<(SoftwareKey, String, &'static str)>,
}

/// For packages whose version changed: a vulnerability the new version still has keeps its
/// first_seen (the old row's resolution says `superseded`), one it no longer has is `fixed`.
/// `old_rows` are the findings just resolved as removed on the old versions, `new_rows` the
/// open ones of the new versions.
pub(crate) fn plan_carry_over<T: PartialOrd + Copy>(
    diff: &InventoryDiff,
    old_rows: Vec<FindingSeen<T>>,
    new_rows: Vec<FindingSeen<T>>,
) -> CarryOver<T> {
    // (package, vulnerability) → the new rows carrying it: key, first seen as it will be, and
    // where its update is in the plan (one per row, with the earliest of the old rows' times:
    // a package may have had several versions installed).
    type Successor<T> = (SoftwareKey, T, Option<usize>);
    let mut new_by_pkg_vuln: HashMap<(u64, String), Vec<Successor<T>>> = HashMap::new();
    for (key, vuln, first_seen) in new_rows {
        if let Some(pkg) = diff.new_pkg.get(&key) {
            new_by_pkg_vuln
                .entry((*pkg, vuln))
                .or_default()
                .push((key, first_seen, None));
        }
    }
    let mut plan = CarryOver {
        first_seen: Vec::new(),
        resolutions: Vec::new(),
    };
    for (old_key, vuln, first_seen) in old_rows {
        let Some(pkg) = diff.old_pkg.get(&old_key) else {
            continue;
        };
        let resolution = match new_by_pkg_vuln.get_mut(&(*pkg, vuln.clone())) {
            Some(successors) => {
                for (new_key, new_first_seen, update) in successors {
                    if first_seen < *new_first_seen {
                        *new_first_seen = first_seen;
                        match update {
                            Some(at) => plan.first_seen[*at].2 = first_seen,
                            None => {
                                *update = Some(plan.first_seen.len());
                                plan.first_seen.push((*new_key, vuln.clone(), first_seen));
                            }
                        }
                    }
                }
                "superseded"
            }
            None => "fixed",
        };
        plan.resolutions.push((old_key, vuln, resolution));
    }
    plan
}

/// The inventory an agent's next report is diffed against when it is known without reading
/// the app rows: the one an earlier report of this batch left, the stored compact form, or
/// nothing for an agent without apps. None: the compact form is missing or damaged and the
/// caller reads the app rows.
pub(crate) fn known_inventory(
    current: Option<Inventory>,
    blob: Option<&[u8]>,
    app_count: i64,
) -> Option<Inventory> {
    if current.is_some() {
        return current;
    }
    match blob.map(decode_inventory) {
        Some(Ok(decoded)) => Some(decoded),
        _ if app_count == 0 => Some((HashSet::new(), HashMap::new())),
        _ => None,
    }
}

/// Splits a writer's reports (sorted oldest first per agent) into the next round, every
/// agent's first report, and the rest: a round's writes finish before the next round is
/// diffed, so a later report of an agent sees what the earlier one stored.
pub(crate) fn next_round<T: Copy, A: std::hash::Hash + Eq>(
    todo: Vec<T>,
    agent: impl Fn(T) -> A,
) -> (Vec<T>, Vec<T>) {
    let mut seen: HashSet<A> = HashSet::new();
    todo.into_iter().partition(|&r| seen.insert(agent(r)))
}

/// A row of some agent (`A`, however the backend keys agents).
pub(crate) type OfAgent<A, R> = (A, R);

/// The carry-over plans of a round's agents, each row tagged with its agent.
pub(crate) struct RoundCarryOver<A, T> {
    pub(crate) first_seen: Vec<OfAgent<A, FindingSeen<T>>>,
    pub(crate) resolutions: Vec<OfAgent<A, FindingSeen<&'static str>>>,
}

/// [`plan_carry_over`] for a round of several agents: finding rows in, tagged with their agent.
pub(crate) fn plan_round_carry_over<A: std::hash::Hash + Eq + Copy, T: PartialOrd + Copy>(
    changed: &[(A, &InventoryDiff)],
    old_rows: Vec<OfAgent<A, FindingSeen<T>>>,
    new_rows: Vec<OfAgent<A, FindingSeen<T>>>,
) -> RoundCarryOver<A, T> {
    let by_agent = |rows: Vec<OfAgent<A, FindingSeen<T>>>| {
        let mut map: HashMap<A, Vec<FindingSeen<T>>> = HashMap::new();
        for (agent, row) in rows {
            map.entry(agent).or_default().push(row);
        }
        map
    };
    let (mut old_by_agent, mut new_by_agent) = (by_agent(old_rows), by_agent(new_rows));
    let mut round = RoundCarryOver {
        first_seen: Vec::new(),
        resolutions: Vec::new(),
    };
    for (agent, diff) in changed {
        let Some(old) = old_by_agent.remove(agent) else {
            continue;
        };
        let new = new_by_agent.remove(agent).unwrap_or_default();
        let plan = plan_carry_over(diff, old, new);
        let agent = *agent;
        let first_seen = plan.first_seen.into_iter().map(|row| (agent, row));
        round.first_seen.extend(first_seen);
        let resolutions = plan.resolutions.into_iter().map(|row| (agent, row));
        round.resolutions.extend(resolutions);
    }
    round
}

/// The vulnerabilities of these matches, each once (the first occurrence), and their
/// `(alias, vulnerability id)` pairs.
pub(crate) fn distinct_vulns<'a>(
    matches: impl IntoIterator<Item = &'a StoredMatch>,
) -> (Vec<&'a VulnInfo>, Vec<(&'a str, &'a str)>) {
    let mut seen = HashSet::new();
    let mut vulns = Vec::new();
    let mut aliases = Vec::new();
    for x in matches {
        let v = &x.vulnerability;
        if !seen.insert(v.id.as_str()) {
            continue;
        }
        aliases.extend(v.aliases.iter().map(|a| (a.as_str(), v.id.as_str())));
        vulns.push(v);
    }
    (vulns, aliases)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_inventory_round_trips_and_rejects_truncation() {
        let mut apps = HashSet::new();
        let mut pkg = HashMap::new();
        for i in 0..50u8 {
            let key = SoftwareKey([i; 16]);
            apps.insert((
                key,
                if i % 3 == 0 {
                    String::new()
                } else {
                    format!("arch{i}")
                },
            ));
            pkg.insert(key, package_id(&format!("npm\0p{}", i / 2)));
        }
        let bytes = encode_inventory(&apps, &pkg);
        let (a, p) = decode_inventory(&bytes).unwrap();
        assert_eq!((a, p), (apps, pkg));
        assert!(decode_inventory(&bytes[..bytes.len() - 1]).is_err());
        assert!(decode_inventory(&bytes[..10]).is_err());
        assert_eq!(decode_inventory(&[]).unwrap().0.len(), 0);
        assert_eq!(package_id("npm\0a"), package_id("npm\0a"));
        assert_ne!(package_id("npm\0a"), package_id("npm\0b"));
    }

    /// Two installed versions of a package, both with a vulnerability, replaced by one new
    /// version that still has it: the new row takes the earlier first_seen, in one update.
    #[test]
    fn carry_over_takes_the_earliest_of_several_old_versions() {
        let (v1, v2, v3) = (
            SoftwareKey([1; 16]),
            SoftwareKey([2; 16]),
            SoftwareKey([3; 16]),
        );
        let pkg = package_id("npm\0lodash");
        let old: Inventory = (
            [(v1, String::new()), (v2, String::new())].into(),
            [(v1, pkg), (v2, pkg)].into(),
        );
        let report = ProcessedReport {
            lease: LeaseRef {
                queue_id: 1,
                owner: "w".into(),
                attempts: 1,
            },
            company_id: Default::default(),
            agent_id: Default::default(),
            report_id: Default::default(),
            collected_at: Default::default(),
            digest: [0; 32],
            hostname: String::new(),
            os: Default::default(),
            arch: String::new(),
            apps: vec![StoredApp {
                software_key: v3,
                arch: String::new(),
            }],
            names: vec![(v3, "npm\0lodash".into())],
        };
        let diff = InventoryDiff::new(old, &report);
        let cve = || "CVE-1".to_string();
        let plan = plan_carry_over(
            &diff,
            vec![(v1, cve(), 20), (v2, cve(), 10)],
            vec![(v3, cve(), 30)],
        );
        assert_eq!(plan.first_seen, vec![(v3, cve(), 10)]);
        assert_eq!(plan.resolutions.len(), 2);
        assert!(plan.resolutions.iter().all(|r| r.2 == "superseded"));
    }
}

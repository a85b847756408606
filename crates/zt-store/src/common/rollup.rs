//! The per-company vulnerability rollup (`company_vulns`, migrations 0900), once for both
//! backends: what a change of some agents' findings does to it.
//!
//! A row per (company, vulnerability, severity) holds how many hosts have open findings of
//! it, how many findings, and how many of them are KEV and fixable. Counting hosts is not
//! additive over findings (a host with two packages hit counts once), but it is additive over
//! hosts: the rollup is the sum of every agent's contribution, an agent contributing one host
//! and its open findings to each (vulnerability, severity) it has. So every writer that moves
//! findings reads the contributions of the agents it is about to move, writes, reads them
//! again, and adds the difference ([`RollupDelta`]) — the same reads of an agent's findings by
//! the primary key's (company, agent) prefix that recount the agents' counters, never a pass
//! over a vulnerability's findings across the company.
//!
//! The backends own the two statements (`contributions` read, the delta written); which rows
//! change and by how much is decided here.

use std::collections::{BTreeMap, HashMap};

use crate::model::{AgentId, CompanyId};

/// An agent's open findings of one (vulnerability, severity): findings, KEV, fixable.
pub(crate) type Contribution = [i64; 3];

/// Open findings per agent and (vulnerability, severity), as read before or after a write.
/// Every agent asked for has an entry (an agent with no open findings: an empty one).
#[derive(Debug, Default, Clone)]
pub(crate) struct Contributions {
    agents: HashMap<(CompanyId, AgentId), BTreeMap<(String, i64), Contribution>>,
}

impl Contributions {
    /// Contributions of `agents`, each empty until rows are added.
    pub(crate) fn of(agents: impl IntoIterator<Item = (CompanyId, AgentId)>) -> Self {
        Contributions {
            agents: agents.into_iter().map(|a| (a, BTreeMap::new())).collect(),
        }
    }

    /// One row of a contributions read: (company, agent, vulnerability, severity) with its
    /// open findings, KEV and fixable counts.
    pub(crate) fn add_row(
        &mut self,
        agent: (CompanyId, AgentId),
        vuln_id: String,
        severity: i64,
        counts: Contribution,
    ) {
        self.agents
            .entry(agent)
            .or_default()
            .insert((vuln_id, severity), counts);
    }

    /// One more open finding of the agent (a write opening or refreshing it).
    pub(crate) fn add_finding(
        &mut self,
        agent: (CompanyId, AgentId),
        vuln_id: &str,
        state: crate::common::matches::FindingState,
    ) {
        let c = self
            .agents
            .entry(agent)
            .or_default()
            .entry((vuln_id.to_string(), state.severity))
            .or_default();
        c[0] += 1;
        c[1] += i64::from(state.kev);
        c[2] += i64::from(state.fixable);
    }

    /// One open finding of the agent fewer (a write resolving it, or changing its columns);
    /// a (vulnerability, severity) left with none is dropped, as a read would not return it.
    pub(crate) fn remove_finding(
        &mut self,
        agent: (CompanyId, AgentId),
        vuln_id: &str,
        state: crate::common::matches::FindingState,
    ) {
        let rows = self.agents.entry(agent).or_default();
        let key = (vuln_id.to_string(), state.severity);
        if let Some(c) = rows.get_mut(&key) {
            c[0] -= 1;
            c[1] -= i64::from(state.kev);
            c[2] -= i64::from(state.fixable);
            if c[0] <= 0 {
                rows.remove(&key);
            }
        }
    }
}

/// A rollup row's counts: hosts, findings, KEV, fixable.
pub(crate) type RollupCounts = [i64; 4];

/// A rollup row's key.
pub(crate) type RollupKey = (CompanyId, String, i64);

/// What to add to the rollup rows, by key (no zero deltas).
#[derive(Debug, Default)]
pub(crate) struct RollupDelta {
    rows: BTreeMap<RollupKey, RollupCounts>,
}

impl RollupDelta {
    /// The difference between the contributions of the agents read `after` a write and the
    /// same agents `before` it (an agent missing from `before` had none: an agent's first
    /// inventory, or one the writer knew unchanged and did not read). Agents only in `before`
    /// are taken as unchanged.
    pub(crate) fn between(before: &Contributions, after: &Contributions) -> Self {
        let mut delta = RollupDelta::default();
        let none = BTreeMap::new();
        for (agent, now) in &after.agents {
            let was = before.agents.get(agent).unwrap_or(&none);
            for ((vuln, severity), c) in now {
                delta.add(agent.0, vuln, *severity, 1, c);
            }
            for ((vuln, severity), c) in was {
                let c = [-c[0], -c[1], -c[2]];
                delta.add(agent.0, vuln, *severity, -1, &c);
            }
        }
        delta.rows.retain(|_, d| d.iter().any(|n| *n != 0));
        delta
    }

    fn add(&mut self, company: CompanyId, vuln: &str, severity: i64, hosts: i64, c: &[i64; 3]) {
        let row = self
            .rows
            .entry((company, vuln.to_string(), severity))
            .or_default();
        row[0] += hosts;
        row[1] += c[0];
        row[2] += c[1];
        row[3] += c[2];
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The changed keys in order (the order writers lock rows in).
    pub(crate) fn keys(&self) -> Vec<&RollupKey> {
        self.rows.keys().collect()
    }

    /// The deltas in key order.
    pub(crate) fn rows(&self) -> impl Iterator<Item = (&RollupKey, &RollupCounts)> {
        self.rows.iter()
    }

    /// The rows as they are after the delta, from their counts `now` (missing: none), with
    /// the rows no open finding is left in marked `None` (to be deleted).
    pub(crate) fn applied_to(
        &self,
        now: &HashMap<RollupKey, RollupCounts>,
    ) -> Vec<(&RollupKey, Option<RollupCounts>)> {
        self.rows
            .iter()
            .map(|(key, d)| {
                let base = now.get(key).copied().unwrap_or_default();
                let new = [
                    base[0] + d[0],
                    base[1] + d[1],
                    base[2] + d[2],
                    base[3] + d[3],
                ];
                (key, (new[1] > 0).then_some(new))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> (CompanyId, AgentId, AgentId) {
        (
            CompanyId(uuid::Uuid::from_bytes([1; 16])),
            AgentId(uuid::Uuid::from_bytes([2; 16])),
            AgentId(uuid::Uuid::from_bytes([3; 16])),
        )
    }

    /// A host counts once per vulnerability whatever the number of its packages hit, and
    /// leaves the count when its last finding of it goes.
    #[test]
    fn hosts_count_once_and_leave_with_their_last_finding() {
        let (c, a, b) = ids();
        let mut before = Contributions::of([(c, a), (c, b)]);
        before.add_row((c, a), "CVE-1".into(), 4, [2, 0, 1]);
        before.add_row((c, b), "CVE-1".into(), 4, [1, 0, 0]);
        let mut after = Contributions::of([(c, a), (c, b)]);
        after.add_row((c, a), "CVE-1".into(), 4, [1, 0, 1]);
        after.add_row((c, a), "CVE-2".into(), 5, [1, 1, 0]);
        let delta = RollupDelta::between(&before, &after);
        let rows: Vec<_> = delta.rows().map(|(k, d)| (k.1.as_str(), *d)).collect();
        assert_eq!(rows, [("CVE-1", [-1, -2, 0, 0]), ("CVE-2", [1, 1, 1, 0])]);
        let now: HashMap<RollupKey, RollupCounts> =
            [((c, "CVE-1".to_string(), 4), [2, 3, 0, 1])].into();
        let applied: Vec<_> = delta
            .applied_to(&now)
            .into_iter()
            .map(|(k, v)| (k.1.as_str(), v))
            .collect();
        assert_eq!(
            applied,
            [("CVE-1", Some([1, 1, 0, 1])), ("CVE-2", Some([1, 1, 1, 0]))]
        );
    }

    /// An agent read after but not before had no findings; one whose findings did not move
    /// adds nothing.
    #[test]
    fn first_inventories_add_and_unchanged_agents_cancel() {
        let (c, a, b) = ids();
        let mut before = Contributions::of([(c, a)]);
        before.add_row((c, a), "CVE-1".into(), 3, [1, 0, 0]);
        let mut after = Contributions::of([(c, a), (c, b)]);
        after.add_row((c, a), "CVE-1".into(), 3, [1, 0, 0]);
        after.add_row((c, b), "CVE-1".into(), 3, [1, 0, 0]);
        let delta = RollupDelta::between(&before, &after);
        let rows: Vec<_> = delta.rows().map(|(k, d)| (k.1.as_str(), *d)).collect();
        assert_eq!(rows, [("CVE-1", [1, 1, 0, 0])]);
        let gone = RollupDelta::between(&after, &Contributions::of([(c, b)]));
        let now: HashMap<RollupKey, RollupCounts> =
            [((c, "CVE-1".to_string(), 3), [2, 2, 0, 0])].into();
        let applied: Vec<_> = gone.applied_to(&now).into_iter().map(|(_, v)| v).collect();
        assert_eq!(applied, [Some([1, 1, 0, 0])]);
    }
}

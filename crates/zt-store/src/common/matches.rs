//! Re-matching without the database: which (software, vulnerability) pairs appeared,
//! disappeared or changed, whether a reconcile is due, and what a targeted reconciliation's
//! changed finding rows mean (notifications, agents to recount, the rollup delta).

use std::collections::HashMap;

use zt_inventory::SoftwareKey;

use super::events::ChangedFinding;
use super::rollup::{Contributions, RollupDelta};
use super::severity_rank;
use crate::model::*;

/// What a finding of a pair shows: severity rank, KEV, fixable.
pub(crate) type PairState = (i64, bool, bool);

/// The state a cached match gives its findings.
pub(crate) fn pair_state(x: &StoredMatch) -> PairState {
    (
        severity_rank(x.vulnerability.severity),
        x.vulnerability.kev,
        !x.fixed_versions.is_empty(),
    )
}

/// Adds to `delta` how `m`'s new matches differ from `before` (vulnerability id → state).
pub(crate) fn diff_matches(
    delta: &mut MatchDelta,
    m: &MatchedSoftware,
    mut before: HashMap<String, PairState>,
) {
    for x in &m.matches {
        match before.remove(&x.vulnerability.id) {
            None => delta.appeared.push((m.key, x.vulnerability.id.clone())),
            Some(b) if b != pair_state(x) => {
                delta.changed.push((m.key, x.vulnerability.id.clone()))
            }
            Some(_) => {}
        }
    }
    delta
        .disappeared
        .extend(before.into_keys().map(|id| (m.key, id)));
}

/// The rematch generation to reconcile, when it is ahead of the reconciled one.
pub(crate) fn pending_generation(changed: Option<i64>, done: Option<i64>) -> Option<u64> {
    match changed {
        Some(g) if g > done.unwrap_or(0) => u64::try_from(g).ok(),
        _ => None,
    }
}

/// The software versions of a delta's pairs, sorted: their hosts' findings are to be
/// reconciled.
pub(crate) fn changed_keys(delta: &MatchDelta) -> Vec<SoftwareKey> {
    let mut keys: Vec<SoftwareKey> = delta
        .appeared
        .iter()
        .chain(&delta.disappeared)
        .chain(&delta.changed)
        .map(|(k, _)| *k)
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// What a finding shows (or, for a cached match, would show): severity rank, KEV, fixable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FindingState {
    pub(crate) severity: i64,
    pub(crate) kev: bool,
    pub(crate) fixable: bool,
}

/// One (agent, software version, vulnerability) whose finding a targeted reconciliation
/// changes, as the backends read it in the reconciliation's statement: the finding stored
/// before the write and what the cached match says now. Only changing rows are read: a pair
/// matched now with no finding, a resolved one or one whose columns differ (`new` set), and
/// an open finding whose pair is no longer matched (`new` None: resolved as not affected).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PairChange {
    pub(crate) agent: AgentId,
    pub(crate) key: SoftwareKey,
    pub(crate) vuln_id: String,
    /// The stored finding before: None when there was none, else whether it was open and what
    /// it showed.
    pub(crate) old: Option<(bool, FindingState)>,
    /// What the cached match gives now; None when the pair is no longer matched.
    pub(crate) new: Option<FindingState>,
    /// The stored finding is suppressed by an analysis (a write leaves the flag as it is; a
    /// new finding is not).
    pub(crate) suppressed: bool,
}

/// What an agent's counters (open, unsuppressed findings: critical, high, medium, low,
/// unknown, KEV, fixable) move by.
pub(crate) type CounterDelta = [i64; 7];

fn count(delta: &mut CounterDelta, s: FindingState, by: i64) {
    let bucket = match s.severity {
        5 => 0,
        4 => 1,
        3 => 2,
        2 => 3,
        _ => 4,
    };
    delta[bucket] += by;
    delta[5] += by * i64::from(s.kev);
    delta[6] += by * i64::from(s.fixable);
}

/// What a targeted reconciliation step did, worked out from its changed rows: the
/// notifications to write, the agents to recount and the rollup delta.
#[derive(Debug, Default)]
pub(crate) struct Reconciled {
    /// Findings opened (new, or reopened): `finding.opened`.
    pub(crate) opened: Vec<(AgentId, ChangedFinding)>,
    /// Open findings whose vulnerability became KEV: `finding.kev`.
    pub(crate) raised: Vec<(AgentId, ChangedFinding)>,
    /// Agents whose findings changed, sorted.
    pub(crate) touched: Vec<AgentId>,
    pub(crate) rollup: RollupDelta,
    /// What the counters of the agents in `touched` move by (those that move), in agent
    /// order: to be added when no analysis changed a finding's suppression meanwhile (else
    /// the agents are recounted).
    pub(crate) counters: Vec<(AgentId, CounterDelta)>,
}

/// Classifies the changed rows of one company's reconciliation step. `before`: the open
/// findings (per agent, vulnerability and severity) of the (agent, vulnerability) pairs of
/// `changes`, read before the write; the contributions after the write are those with each
/// change applied, so the rollup delta comes from the changed rows alone (a host counts once
/// per vulnerability: its other findings of it are in `before`).
pub(crate) fn reconciled(
    company: CompanyId,
    changes: &[PairChange],
    before: Contributions,
) -> Reconciled {
    let mut out = Reconciled::default();
    let mut after = before.clone();
    let mut counters: std::collections::BTreeMap<AgentId, CounterDelta> = Default::default();
    for c in changes {
        let was_open = c.old.filter(|(open, _)| *open).map(|(_, s)| s);
        let counter = counters.entry(c.agent).or_default();
        if let Some(s) = was_open {
            after.remove_finding((company, c.agent), &c.vuln_id, s);
            if !c.suppressed {
                count(counter, s, -1);
            }
        }
        if let Some(s) = c.new {
            after.add_finding((company, c.agent), &c.vuln_id, s);
            if !c.suppressed {
                count(counter, s, 1);
            }
            let finding = ChangedFinding {
                key: c.key,
                vuln_id: c.vuln_id.clone(),
                severity: s.severity,
                kev: s.kev,
            };
            match was_open {
                None => out.opened.push((c.agent, finding)),
                Some(o) if s.kev && !o.kev => out.raised.push((c.agent, finding)),
                Some(_) => {}
            }
        }
        out.touched.push(c.agent);
    }
    out.touched.sort();
    out.touched.dedup();
    out.rollup = RollupDelta::between(&before, &after);
    out.counters = counters
        .into_iter()
        .filter(|(_, d)| d.iter().any(|n| *n != 0))
        .collect();
    out
}

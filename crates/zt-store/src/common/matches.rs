//! Re-matching without the database: which (software, vulnerability) pairs appeared,
//! disappeared or changed, and whether a reconcile is due.

use std::collections::HashMap;

use zt_inventory::SoftwareKey;

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

//! Accepting reports without the database: which incoming report is queued, unchanged, a
//! duplicate, a conflict or refused for a full queue, and how each agent's "newest accepted
//! inventory" moves. Both backends read the state this needs (existing report ids, each
//! agent's accepted digest and collection time, the queue's pending count), call [`decide`],
//! and write what it says — so a group of reports ends the same on either.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::model::*;

/// An agent's newest accepted inventory, as read at the start of the group commit.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct AcceptedState {
    pub(crate) digest: Option<Vec<u8>>,
    pub(crate) collected_at: Option<DateTime<Utc>>,
    /// Set when this group changes the agent row.
    pub(crate) update: Option<AgentUpdate>,
}

/// What a group commit writes to an agent row.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AgentUpdate {
    /// `last_seen_at`: the newest acceptance time of the group.
    pub(crate) seen: DateTime<Utc>,
    /// The new newest accepted inventory (digest, collection time), when one was queued.
    pub(crate) newest: Option<([u8; 32], DateTime<Utc>)>,
}

/// The reports of a group and what the store knows of them.
pub(crate) struct AcceptInput<'a> {
    pub(crate) reports: &'a [IncomingReport],
    /// Report ids stored already, with the agent that sent each.
    pub(crate) existing: HashMap<(CompanyId, ReportId), AgentId>,
    /// The accepted state of every agent of the group that exists (a missing one vanished
    /// between authentication and now).
    pub(crate) agents: HashMap<(CompanyId, AgentId), AcceptedState>,
    /// Queue entries pending (queued + leased) before this group.
    pub(crate) pending: u64,
    pub(crate) queue_bound: u64,
}

/// Decides every report of the group, in arrival order (the queue bound favours the earlier
/// ones). Returns one outcome per report; `input.agents` then holds each agent's update.
pub(crate) fn decide(input: &mut AcceptInput<'_>) -> Vec<AcceptOutcome> {
    let mut out = Vec::with_capacity(input.reports.len());
    for r in input.reports {
        let outcome = if let Some(owner) = input.existing.get(&(r.company_id, r.report_id)) {
            if *owner == r.agent_id {
                AcceptOutcome::Duplicate
            } else {
                AcceptOutcome::Conflict
            }
        } else if let Some(state) = input.agents.get_mut(&(r.company_id, r.agent_id)) {
            if state.digest.as_deref() == Some(&r.digest[..]) {
                seen(state, r.accepted_at);
                AcceptOutcome::Unchanged
            } else if input.pending >= input.queue_bound {
                AcceptOutcome::QueueFull
            } else {
                seen(state, r.accepted_at);
                // A late report (collected before the newest accepted one) will be found
                // stale; it must not become the reference for "unchanged".
                if state.collected_at.is_none_or(|at| r.collected_at >= at) {
                    state.digest = Some(r.digest.to_vec());
                    state.collected_at = Some(r.collected_at);
                    if let Some(u) = &mut state.update {
                        u.newest = Some((r.digest, r.collected_at));
                    }
                }
                input.pending += 1;
                AcceptOutcome::Queued
            }
        } else {
            // The agent vanished between authentication and now.
            AcceptOutcome::Conflict
        };
        if matches!(outcome, AcceptOutcome::Queued | AcceptOutcome::Unchanged) {
            // Two reports with the same id in one group: the second is a duplicate.
            input
                .existing
                .insert((r.company_id, r.report_id), r.agent_id);
        }
        out.push(outcome);
    }
    out
}

fn seen(state: &mut AcceptedState, at: DateTime<Utc>) {
    match &mut state.update {
        Some(u) => u.seen = at,
        None => {
            state.update = Some(AgentUpdate {
                seen: at,
                newest: None,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(c: CompanyId, a: AgentId, digest: u8, at: DateTime<Utc>) -> IncomingReport {
        IncomingReport {
            company_id: c,
            agent_id: a,
            report_id: uuid::Uuid::new_v4(),
            collected_at: at,
            accepted_at: at,
            digest: [digest; 32],
            app_count: 1,
            body: Vec::new(),
        }
    }

    #[test]
    fn a_group_is_decided_in_arrival_order() {
        let c = CompanyId::new_v4();
        let a = AgentId::new_v4();
        let t = Utc::now();
        let first = report(c, a, 1, t);
        let mut again = first.clone();
        again.accepted_at = t + chrono::Duration::seconds(1);
        let same = report(c, a, 1, t + chrono::Duration::seconds(2));
        let mut late = report(c, a, 2, t - chrono::Duration::seconds(60));
        late.accepted_at = t + chrono::Duration::seconds(3);
        let full = report(c, a, 3, t);
        let stranger = report(c, AgentId::new_v4(), 4, t);
        let reports = [first, again, same, late, full, stranger];
        let mut input = AcceptInput {
            reports: &reports,
            existing: HashMap::new(),
            agents: HashMap::from([((c, a), AcceptedState::default())]),
            pending: 0,
            queue_bound: 2,
        };
        assert_eq!(
            decide(&mut input),
            [
                AcceptOutcome::Queued,
                AcceptOutcome::Duplicate,
                AcceptOutcome::Unchanged,
                AcceptOutcome::Queued,
                AcceptOutcome::QueueFull,
                AcceptOutcome::Conflict,
            ]
        );
        let state = &input.agents[&(c, a)];
        // The late report is queued but the newest accepted inventory stays the first one.
        assert_eq!(state.digest.as_deref(), Some(&[1u8; 32][..]));
        let update = state.update.clone().unwrap();
        assert_eq!(update.newest, Some(([1; 32], t)));
        assert_eq!(update.seen, t + chrono::Duration::seconds(3));
    }
}

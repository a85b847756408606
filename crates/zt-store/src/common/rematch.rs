//! The re-match after a knowledge change (issue 15), written once over [`Storage`] for both
//! backends; the server runs it in the one process holding the deployment's re-match.
//!
//! 1. Advisories: the ids written by imports since the revision every software version was
//!    last brought to (`rematch_base`) name what can change. Only software versions in their
//!    scope — the packages their groups name now ([`Rematcher::scope`]), plus the versions
//!    whose cached matches are of their groups before the change
//!    ([`Storage::software_of_vulns`]) — are matched again; the cached matches of every other
//!    version stand and are confirmed at the new revision. Versions matched before the base (a
//!    worker with an older index wrote them) are matched again whatever they are.
//! 2. KEV and EPSS: no version is matched again; each vulnerability's stored KEV/EPSS is
//!    compared with the index's and the differences written ([`Storage::update_enrichment`]).
//! 3. Findings: only the software versions whose matches (or KEV flag) changed wait for
//!    reconciliation, and only the agents that have them get findings opened, refreshed or
//!    resolved, with their `finding.opened` / `finding.kev` notifications
//!    ([`Storage::reconcile_software`]). Companies with none of them are skipped.
//!
//! Without a base (a store from before this existed) every stale version is matched again;
//! everything else is the same.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::Utc;
use zt_inventory::{Software, SoftwareKey};

use crate::model::*;
use crate::{Result, Storage};

/// Tells which software versions a set of advisory changes may affect.
pub type ScopeFn = Box<dyn Fn(&Software) -> bool + Send + Sync>;

/// What the re-match needs of a match index at one knowledge revision.
#[async_trait]
pub trait Rematcher: Send + Sync {
    /// The knowledge revision of the index.
    fn revision(&self) -> u64;

    /// Matches of these versions; a version that cannot be matched is left out (it stays
    /// stale and is tried again at the next pass).
    fn match_page(&self, page: Vec<(SoftwareKey, Software)>) -> Vec<MatchedSoftware>;

    /// Which versions the advisories with these ids (added, changed or withdrawn) may match
    /// differently now, judged on the knowledge after the change; None: it cannot tell, every
    /// version is matched again.
    async fn scope(&self, changed: &[String]) -> Option<ScopeFn>;

    /// KEV and EPSS of the vulnerability with this id; None when no group has that id.
    fn enrichment(&self, vuln_id: &str) -> Option<VulnEnrichment>;
}

/// What one pass did (for the log and the metrics).
#[derive(Debug, Clone, Default)]
pub struct RematchReport {
    pub revision: u64,
    /// Only the changed advisories' scope was matched again.
    pub targeted: bool,
    pub changed_advisories: u64,
    /// Versions matched again.
    pub software_matched: u64,
    /// Versions whose cached matches stand at the new revision.
    pub software_confirmed: u64,
    /// (software, vulnerability) pairs that appeared, disappeared or changed.
    pub pairs_changed: u64,
    /// Vulnerabilities whose KEV or EPSS changed.
    pub enrichment_changed: u64,
    /// Versions whose hosts' findings were reconciled.
    pub software_reconciled: u64,
    /// Agents whose findings changed.
    pub agents_reconciled: u64,
    pub match_time: Duration,
    pub reconcile_time: Duration,
    /// False when stopped before the end (the rest is done by the next pass).
    pub complete: bool,
}

impl RematchReport {
    /// Whether the pass changed anything (nothing to announce otherwise).
    pub fn worked(&self) -> bool {
        self.software_matched > 0
            || self.software_confirmed > 0
            || self.enrichment_changed > 0
            || self.software_reconciled > 0
            || self.agents_reconciled > 0
    }
}

/// Software versions read and matched per step.
pub const PAGE: u32 = 1_000;
/// Agents per transaction of the targeted reconciliation, counting only agents that hold a
/// waiting version (the others are not read, locked or written): each step handles its
/// agents set-wide in a few statements whatever their number, so a company of up to this many
/// such agents is one step; they are locked for the step (a worker writing one of them waits
/// that long — a few seconds for 10,000 agents).
pub const RECONCILE_AGENTS: u32 = 10_000;
/// Companies reconciled at the same time (the lanes of [`rematch`]'s reconciliation).
const RECONCILE_LANES: usize = 2;
/// Agents per transaction of a full reconciliation (every app of each agent is joined).
pub const RECONCILE_AGENTS_FULL: u32 = 200;

/// Brings cached matches, KEV/EPSS data and findings up to `matcher`'s revision. `stop` is
/// asked between steps (shutdown). Safe to run again after a crash or a stop at any point.
pub async fn rematch(
    store: &dyn Storage,
    matcher: &dyn Rematcher,
    stop: &(dyn Fn() -> bool + Send + Sync),
) -> Result<RematchReport> {
    let revision = matcher.revision();
    let mut report = RematchReport {
        revision,
        ..Default::default()
    };
    let started = Instant::now();
    let base = store.rematch_base().await?;
    if base.is_some_and(|b| b > revision) {
        // The deployment is ahead of this index: its process rebuilds first.
        return Ok(report);
    }
    let moved = base != Some(revision);

    // --- 1. advisories
    let mut scope: Option<(u64, ScopeFn, HashSet<SoftwareKey>)> = None;
    if let Some(b) = base.filter(|b| *b < revision) {
        let changed = store.advisories_changed_since(b).await?;
        report.changed_advisories = changed.len() as u64;
        let in_scope: Option<ScopeFn> = if changed.is_empty() {
            Some(Box::new(|_: &Software| false))
        } else {
            matcher.scope(&changed).await
        };
        if let Some(f) = in_scope {
            let before: HashSet<SoftwareKey> = if changed.is_empty() {
                HashSet::new()
            } else {
                store
                    .software_of_vulns(&changed)
                    .await?
                    .into_iter()
                    .collect()
            };
            tracing::info!(
                revision,
                base = b,
                advisories = changed.len(),
                versions_of_their_groups = before.len(),
                "re-matching what the changed advisories name"
            );
            scope = Some((b, f, before));
        }
    }
    report.targeted = scope.is_some();
    let mut after = None;
    let mut stale_left = 0u64;
    let mut pages = 0u64;
    loop {
        if stop() {
            return Ok(report);
        }
        let page = store.software_to_rematch(revision, after, PAGE).await?;
        let Some((last, _)) = page.last() else { break };
        after = Some(*last);
        let (again, keep): (Vec<_>, Vec<_>) = match &scope {
            Some((_, f, before)) => page
                .into_iter()
                .partition(|(k, sw)| before.contains(k) || f(sw)),
            None => (page, Vec::new()),
        };
        if let Some((b, _, _)) = &scope {
            let keys: Vec<SoftwareKey> = keep.iter().map(|(k, _)| *k).collect();
            let confirmed = store.confirm_matches(&keys, *b, revision).await?;
            report.software_confirmed += confirmed;
            stale_left += keys.len() as u64 - confirmed.min(keys.len() as u64);
        }
        match_and_store(store, matcher, again, &mut report).await?;
        pages += 1;
        if pages % 50 == 0 {
            tracing::info!(
                revision,
                matched = report.software_matched,
                confirmed = report.software_confirmed,
                "re-matching known software"
            );
        }
    }
    // Versions matched before the base: matched again whatever they are.
    if stale_left > 0 {
        let mut after = None;
        loop {
            if stop() {
                return Ok(report);
            }
            let page = store.software_to_rematch(revision, after, PAGE).await?;
            let Some((last, _)) = page.last() else { break };
            after = Some(*last);
            match_and_store(store, matcher, page, &mut report).await?;
        }
    }
    if moved {
        // --- 2. KEV and EPSS (before the base moves: a pass stopped here does it again)
        let mut changes = Vec::new();
        for stored in store.vuln_enrichment().await? {
            if let Some(now) = matcher.enrichment(&stored.vuln_id) {
                if now != stored {
                    changes.push(now);
                }
            }
        }
        report.enrichment_changed = changes.len() as u64;
        store.update_enrichment(&changes, revision).await?;
        store.set_rematch_base(revision).await?;
    }
    report.match_time = started.elapsed();

    // --- 3. findings
    let reconcile_started = Instant::now();
    if let Some(generation) = store.reconcile_pending().await? {
        let pending = store.pending_software().await?;
        report.software_reconciled = pending;
        tracing::info!(
            revision,
            software = pending,
            "updating the findings of the software versions whose matches changed"
        );
        let companies: Vec<CompanyId> = store
            .list_companies()
            .await?
            .into_iter()
            .map(|c| c.id)
            .collect();
        // Companies side by side (each one's transactions lock only its own rows): the
        // database works on one while the other's rows travel.
        let lane = |k: usize| {
            let mine: Vec<CompanyId> = companies
                .iter()
                .copied()
                .skip(k)
                .step_by(RECONCILE_LANES)
                .collect();
            reconcile_companies(store, mine, pending > 0, stop)
        };
        let lanes = futures::future::try_join_all((0..RECONCILE_LANES).map(lane)).await?;
        // None: `stop` said so in a lane.
        match lanes.into_iter().sum::<Option<u64>>() {
            Some(agents) => report.agents_reconciled += agents,
            None => return Ok(report),
        }
        store.mark_reconciled(generation).await?;
    }
    report.reconcile_time = reconcile_started.elapsed();
    report.complete = true;
    Ok(report)
}

/// Reconciles `companies` one after the other; the agents whose findings changed, None when
/// `stop` said so.
async fn reconcile_companies(
    store: &dyn Storage,
    companies: Vec<CompanyId>,
    targeted: bool,
    stop: &(dyn Fn() -> bool + Send + Sync),
) -> Result<Option<u64>> {
    let mut agents = 0;
    for company in companies {
        let mut after = None;
        loop {
            if stop() {
                return Ok(None);
            }
            if targeted {
                match store
                    .reconcile_software(company, after, RECONCILE_AGENTS, Utc::now())
                    .await?
                {
                    Some(step) => {
                        after = Some(step.last);
                        agents += step.agents;
                    }
                    None => break,
                }
            } else {
                // Marked by a version that did not record which software changed.
                match store
                    .reconcile_findings(company, after, RECONCILE_AGENTS_FULL, Utc::now())
                    .await?
                {
                    Some(last) => after = Some(last),
                    None => break,
                }
            }
        }
    }
    Ok(Some(agents))
}

async fn match_and_store(
    store: &dyn Storage,
    matcher: &dyn Rematcher,
    page: Vec<(SoftwareKey, Software)>,
    report: &mut RematchReport,
) -> Result<()> {
    if page.is_empty() {
        return Ok(());
    }
    let results = matcher.match_page(page);
    report.software_matched += results.len() as u64;
    let delta = store.store_rematch(&results, report.revision).await?;
    report.pairs_changed +=
        (delta.appeared.len() + delta.disappeared.len() + delta.changed.len()) as u64;
    Ok(())
}

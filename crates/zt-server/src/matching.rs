//! The match index the workers use, and keeping it current: when the knowledge revision in
//! the store changes, the index is rebuilt off the hot path and swapped in; then the one
//! process holding the deployment's re-match runs `zt_store::rematch` (only the software
//! versions the changed advisories can affect are matched again, only the findings of the
//! agents having versions whose matches changed are reconciled).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::watch;
use zt_advisory::KnowledgeBase;
use zt_inventory::{Software, SoftwareKey};
use zt_match::{ChangeScope, MatchIndex, VulnMatch};
use zt_store::model::{MatchedSoftware, StoredMatch, VulnEnrichment, VulnInfo};
use zt_store::rematch::{Rematcher, ScopeFn};

use crate::state::AppState;

/// An index and the knowledge revision it was built from.
pub struct IndexState {
    pub revision: u64,
    pub index: MatchIndex,
}

pub struct Matcher {
    current: ArcSwap<IndexState>,
}

impl Matcher {
    pub fn empty() -> Self {
        Matcher {
            current: ArcSwap::from_pointee(IndexState {
                revision: 0,
                index: MatchIndex::empty(),
            }),
        }
    }

    pub fn load(&self) -> Arc<IndexState> {
        self.current.load_full()
    }

    fn replace(&self, state: IndexState) {
        self.current.store(Arc::new(state));
    }
}

/// Builds the index of a knowledge snapshot.
pub fn build_index(kb: &KnowledgeBase) -> MatchIndex {
    MatchIndex::build(kb)
}

pub fn to_stored(m: &VulnMatch) -> StoredMatch {
    StoredMatch {
        vulnerability: VulnInfo {
            id: m.id.clone(),
            aliases: m.aliases.clone(),
            summary: m.summary.clone(),
            severity: m.severity,
            cvss: m.cvss.clone(),
            kev: m.kev,
            kev_due_date: m.kev_due_date.clone(),
            epss: m.epss,
            epss_percentile: m.epss_percentile,
            informational: m.informational,
        },
        fixed_versions: m.fixed_versions.clone(),
        method: m.method.as_str().to_string(),
        confidence: match m.confidence {
            zt_match::Confidence::Low => "low",
            zt_match::Confidence::Medium => "medium",
            zt_match::Confidence::High => "high",
        }
        .to_string(),
    }
}

/// Matches software against an index; a matcher panic on one software version is reported
/// as that version's error instead of taking the process down.
pub fn match_all(
    index: &IndexState,
    software: Vec<(SoftwareKey, Software)>,
) -> (Vec<MatchedSoftware>, Vec<(SoftwareKey, String)>) {
    let mut ok = Vec::with_capacity(software.len());
    let mut failed = Vec::new();
    for (key, sw) in software {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            index.index.match_software(&sw)
        }));
        match result {
            Ok(matches) => ok.push(MatchedSoftware {
                key,
                matches: matches.iter().map(to_stored).collect(),
                software: sw,
            }),
            Err(_) => {
                metrics::counter!("cve_enrichment_failures_total").increment(1);
                failed.push((
                    key,
                    format!(
                        "matching {} {} {} failed",
                        sw.ecosystem, sw.name, sw.version
                    ),
                ));
            }
        }
    }
    (ok, failed)
}

/// Rebuilds the index when the store's knowledge revision differs from the index's.
/// Returns the knowledge it built from when it swapped in a new index (the re-match judges
/// what changed on it), None otherwise.
pub async fn refresh_index(state: &AppState) -> anyhow::Result<Option<Arc<KnowledgeBase>>> {
    let revision = state.store.knowledge_revision().await?;
    let current = state.matcher.load();
    if revision == current.revision && state.ready.load(Ordering::Relaxed) {
        return Ok(None);
    }
    let kb = Arc::new(state.store.load_knowledge().await?);
    let kb_revision = if kb.revision == 0 {
        revision
    } else {
        kb.revision
    };
    let started = std::time::Instant::now();
    let for_index = kb.clone();
    let index = tokio::task::spawn_blocking(move || build_index(&for_index)).await?;
    state.matcher.replace(IndexState {
        revision: kb_revision,
        index,
    });
    state.ready.store(true, Ordering::Relaxed);
    tracing::info!(
        revision = kb_revision,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "match index ready"
    );
    Ok(Some(kb))
}

/// The server's index as the store's re-match driver sees it.
struct IndexRematcher<'a> {
    state: &'a AppState,
    index: Arc<IndexState>,
    /// The knowledge the index was built from, when this process still has it.
    kb: Option<Arc<KnowledgeBase>>,
}

#[async_trait::async_trait]
impl Rematcher for IndexRematcher<'_> {
    fn revision(&self) -> u64 {
        self.index.revision
    }

    fn match_page(&self, page: Vec<(SoftwareKey, Software)>) -> Vec<MatchedSoftware> {
        let (results, failed) = match_all(&self.index, page);
        for (key, error) in failed {
            tracing::warn!(software = %key, %error, "re-match failed; retried at the next pass");
        }
        results
    }

    async fn scope(&self, changed: &[String]) -> Option<ScopeFn> {
        let kb = match &self.kb {
            Some(kb) => kb.clone(),
            None => match self.state.store.load_knowledge().await {
                // Only the knowledge of the index's revision tells what the index matches.
                Ok(kb) if kb.revision == self.index.revision => Arc::new(kb),
                Ok(_) => return None,
                Err(e) => {
                    tracing::warn!(error = %e, "loading the knowledge base failed; re-matching everything");
                    return None;
                }
            },
        };
        let changed = changed.to_vec();
        let scope = tokio::task::spawn_blocking(move || ChangeScope::of(&kb, &changed))
            .await
            .ok()?;
        tracing::info!(
            advisories = scope.advisories(),
            packages = scope.packages(),
            "scope of the knowledge change"
        );
        Some(Box::new(move |sw: &Software| scope.covers(sw)))
    }

    fn enrichment(&self, vuln_id: &str) -> Option<VulnEnrichment> {
        self.index
            .index
            .enrichment(vuln_id)
            .map(|e| VulnEnrichment {
                vuln_id: vuln_id.to_string(),
                kev: e.kev,
                kev_due_date: e.kev_due_date,
                epss: e.epss,
                epss_percentile: e.epss_percentile,
            })
    }
}

/// The deployment-wide hold of the re-match after a knowledge change.
pub const REMATCH_JOB: &str = "rematch";

/// Re-matches and reconciles when this process holds the deployment's re-match (one process
/// does it for everyone: the others only rebuild their index), then announces the revision
/// with `knowledge.updated`.
async fn rematch_as_the_one(
    state: &AppState,
    shutdown: &watch::Receiver<bool>,
    kb: Option<Arc<KnowledgeBase>>,
) {
    let guard = match state.store.try_exclusive(REMATCH_JOB).await {
        Ok(Some(g)) => g,
        Ok(None) => {
            tracing::debug!("another process re-matches after knowledge changes");
            return;
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot take the re-match hold");
            return;
        }
    };
    let index = state.matcher.load();
    let revision = index.revision;
    let matcher = IndexRematcher {
        state,
        kb: kb.filter(|kb| kb.revision == 0 || kb.revision == revision),
        index,
    };
    let stop_rx = shutdown.clone();
    let stop = move || *stop_rx.borrow();
    match zt_store::rematch::rematch(&*state.store, &matcher, &stop).await {
        Ok(report) => {
            metrics::counter!("knowledge_rematched_software_total")
                .increment(report.software_matched);
            metrics::counter!("rematch_software_versions_total").increment(report.software_matched);
            metrics::counter!("rematch_agents_total").increment(report.agents_reconciled);
            if report.worked() {
                tracing::info!(
                    revision,
                    targeted = report.targeted,
                    advisories = report.changed_advisories,
                    matched = report.software_matched,
                    confirmed = report.software_confirmed,
                    pairs_changed = report.pairs_changed,
                    enrichment_changed = report.enrichment_changed,
                    software_reconciled = report.software_reconciled,
                    agents = report.agents_reconciled,
                    match_ms = report.match_time.as_millis() as u64,
                    reconcile_ms = report.reconcile_time.as_millis() as u64,
                    complete = report.complete,
                    "re-matched after a knowledge change"
                );
            }
            if report.worked() && report.complete && !*shutdown.borrow() {
                let took = (report.match_time + report.reconcile_time).as_secs_f64();
                metrics::gauge!("knowledge_rematched_revision").set(revision as f64);
                metrics::histogram!("knowledge_rematch_duration_seconds").record(took);
                metrics::histogram!("rematch_duration_seconds").record(took);
                if let Err(e) = crate::live::knowledge_updated(&*state.store, revision).await {
                    tracing::warn!(error = %e, "cannot announce the knowledge revision");
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "re-matching after a knowledge change failed"),
    }
    guard.release().await;
}

/// Polls the knowledge revision and keeps index, cache and findings current until shutdown.
pub async fn watch_knowledge(state: AppState, mut shutdown: watch::Receiver<bool>) {
    loop {
        match refresh_index(&state).await {
            Ok(kb) => rematch_as_the_one(&state, &shutdown, kb).await,
            Err(e) => tracing::warn!(error = %e, "loading the knowledge base failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(state.config.knowledge_poll) => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            return;
        }
    }
}

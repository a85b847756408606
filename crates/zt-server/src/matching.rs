//! The match index the workers use, and keeping it current: when the knowledge revision in
//! the store changes, the index is rebuilt off the hot path and swapped in, and every known
//! software version matched at an older revision is matched again; the differences become new
//! and resolved findings in every company.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use arc_swap::ArcSwap;
use chrono::Utc;
use tokio::sync::watch;
use zt_advisory::KnowledgeBase;
use zt_inventory::{Software, SoftwareKey};
use zt_match::{MatchIndex, VulnMatch};
use zt_store::model::{MatchedSoftware, StoredMatch, VulnInfo};

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
/// Returns true when it swapped in a new index.
pub async fn refresh_index(state: &AppState) -> anyhow::Result<bool> {
    let revision = state.store.knowledge_revision().await?;
    let current = state.matcher.load();
    if revision == current.revision && state.ready.load(Ordering::Relaxed) {
        return Ok(false);
    }
    let kb = state.store.load_knowledge().await?;
    let kb_revision = if kb.revision == 0 {
        revision
    } else {
        kb.revision
    };
    let started = std::time::Instant::now();
    let index = tokio::task::spawn_blocking(move || build_index(&kb)).await?;
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
    Ok(true)
}

/// Matches again every software version whose cached results are older than the index, and
/// makes every company's findings follow. Returns how many versions were re-matched.
pub async fn rematch_stale(
    state: &AppState,
    shutdown: &watch::Receiver<bool>,
) -> anyhow::Result<u64> {
    const PAGE: u32 = 500;
    let index = state.matcher.load();
    let mut after = None;
    let mut total = 0u64;
    let mut changed_pairs = 0u64;
    while !*shutdown.borrow() {
        let page = state
            .store
            .software_to_rematch(index.revision, after, PAGE)
            .await?;
        let Some((last, _)) = page.last() else { break };
        after = Some(*last);
        total += page.len() as u64;
        let idx = index.clone();
        let (results, failed) = tokio::task::spawn_blocking(move || match_all(&idx, page)).await?;
        for (key, error) in failed {
            tracing::warn!(software = %key, %error, "re-match failed; retried at the next pass");
        }
        let delta = state.store.store_rematch(&results, index.revision).await?;
        metrics::counter!("knowledge_rematched_software_total").increment(results.len() as u64);
        if total % (PAGE as u64 * 20) == 0 {
            tracing::info!(
                revision = index.revision,
                software = total,
                "re-matching known software"
            );
        }
        changed_pairs +=
            (delta.appeared.len() + delta.disappeared.len() + delta.changed.len()) as u64;
    }
    if changed_pairs > 0 {
        tracing::info!(
            pairs = changed_pairs,
            "match results changed; updating findings"
        );
    }
    if total > 0 {
        tracing::info!(
            revision = index.revision,
            software = total,
            "re-matched known software"
        );
    }
    Ok(total)
}

/// Agents whose findings one reconciliation transaction covers.
const RECONCILE_AGENTS: u32 = 200;

/// Brings every company's findings in line with the cached matches after they changed
/// (re-matching marks that durably; a crash before the end just means it runs again).
pub async fn reconcile(state: &AppState, shutdown: &watch::Receiver<bool>) -> anyhow::Result<bool> {
    let Some(generation) = state.store.reconcile_pending().await? else {
        return Ok(false);
    };
    let started = std::time::Instant::now();
    for company in state.store.list_companies().await? {
        let mut after = None;
        loop {
            if *shutdown.borrow() {
                return Ok(false);
            }
            match state
                .store
                .reconcile_findings(company.id, after, RECONCILE_AGENTS, Utc::now())
                .await?
            {
                Some(last) => after = Some(last),
                None => break,
            }
        }
    }
    state.store.mark_reconciled(generation).await?;
    tracing::info!(
        generation,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "findings reconciled with the match cache"
    );
    Ok(true)
}

/// The deployment-wide hold of the re-match after a knowledge change.
pub const REMATCH_JOB: &str = "rematch";

/// Re-matches and reconciles when this process holds the deployment's re-match (one process
/// does it for everyone: the others only rebuild their index), then announces the revision
/// with `knowledge.updated`.
async fn rematch_as_the_one(state: &AppState, shutdown: &watch::Receiver<bool>) {
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
    let started = std::time::Instant::now();
    let revision = state.matcher.load().revision;
    let mut worked = false;
    match rematch_stale(state, shutdown).await {
        Ok(n) => worked |= n > 0,
        Err(e) => tracing::warn!(error = %e, "re-matching known software failed"),
    }
    match reconcile(state, shutdown).await {
        Ok(done) => worked |= done,
        Err(e) => tracing::warn!(error = %e, "updating findings after re-matching failed"),
    }
    if worked && !*shutdown.borrow() {
        metrics::gauge!("knowledge_rematched_revision").set(revision as f64);
        metrics::histogram!("knowledge_rematch_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        if let Err(e) = crate::live::knowledge_updated(&*state.store, revision).await {
            tracing::warn!(error = %e, "cannot announce the knowledge revision");
        }
    }
    guard.release().await;
}

/// Polls the knowledge revision and keeps index, cache and findings current until shutdown.
pub async fn watch_knowledge(state: AppState, mut shutdown: watch::Receiver<bool>) {
    loop {
        match refresh_index(&state).await {
            Ok(_) => rematch_as_the_one(&state, &shutdown).await,
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

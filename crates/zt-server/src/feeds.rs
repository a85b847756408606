//! Knowledge that stays current by itself (DESIGN.md): the scheduled feed sync and the
//! `feed_last_success_timestamp_seconds{source}` gauges.
//!
//! Every `--feeds-sync-interval` the process that holds the deployment's `feeds-sync` hold
//! ([`zt_store::Storage::try_exclusive`]: a PostgreSQL advisory lock across replicas) syncs the
//! sources that are due: a source is due when its last attempt is older than the interval
//! (so replicas taking turns do not sync the same source twice), KEV and EPSS at most once a
//! day (they are published daily). A failing source records its error and the others still
//! sync (`zt_sync::sync`). The sync writes through the store interface (`StoreTarget`), so
//! `zt-sync` knows nothing of the store.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use zt_store::knowledge::{FeedState, ImportSummary, KnowledgeImport};
use zt_store::Storage;
use zt_sync::{KnowledgeTarget, Source, SyncClient, SyncConfig, SyncError};

use crate::state::AppState;

/// The name of the deployment-wide hold of the scheduled sync.
pub const SYNC_JOB: &str = "feeds-sync";

/// KEV and EPSS are published once a day: never synced more often.
pub const DAILY: Duration = Duration::from_secs(24 * 3600);

/// The scheduled sync's configuration (`zerotrace server --feeds-sync-interval`, the same
/// sources and URLs as `zerotrace feeds sync`).
#[derive(Clone)]
pub struct ScheduledSync {
    pub interval: Duration,
    pub sources: Vec<Source>,
    pub client: SyncConfig,
}

impl std::fmt::Debug for ScheduledSync {
    // Not derived: the configuration holds the NVD API key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScheduledSync")
            .field("interval", &self.interval)
            .field("sources", &self.sources)
            .field("nvd_url", &self.client.nvd_url)
            .field("osv_url", &self.client.osv_url)
            .field("kev_url", &self.client.kev_url)
            .field("epss_url", &self.client.epss_url)
            .field(
                "nvd_api_key",
                &self.client.nvd_api_key.as_ref().map(|_| "***"),
            )
            .finish()
    }
}

/// The store as the target of a sync.
pub struct StoreTarget<'a>(pub &'a dyn Storage);

fn store_error(e: zt_store::StoreError) -> SyncError {
    SyncError::Store(e.to_string())
}

impl KnowledgeTarget for StoreTarget<'_> {
    async fn import(&self, batch: KnowledgeImport) -> Result<ImportSummary, SyncError> {
        self.0.import_knowledge(batch).await.map_err(store_error)
    }

    async fn load_state(&self, feed: &str) -> Result<Option<FeedState>, SyncError> {
        self.0.feed_state(feed).await.map_err(store_error)
    }

    async fn save_state(&self, state: &FeedState) -> Result<(), SyncError> {
        self.0.save_feed_state(state).await.map_err(store_error)
    }
}

/// Whether `source` is due at `now`, given its stored state.
pub fn is_due(
    source: &Source,
    state: Option<&FeedState>,
    interval: Duration,
    now: DateTime<Utc>,
) -> bool {
    let Some(state) = state else { return true };
    let older_than = |at: Option<DateTime<Utc>>, d: Duration| match at {
        None => true,
        // A little slack: a timer firing a few milliseconds early still syncs.
        Some(at) => (now - at).to_std().unwrap_or_default() + d / 50 >= d,
    };
    // A resumable first NVD sync carries on at once.
    if state
        .cursor
        .as_deref()
        .is_some_and(|c| c.starts_with("full:"))
    {
        return true;
    }
    let attempt_due = older_than(state.last_attempt_at, interval);
    match source {
        Source::Kev | Source::Epss => {
            attempt_due && older_than(state.last_success_at, DAILY.max(interval))
        }
        _ => attempt_due,
    }
}

/// Sets `feed_last_success_timestamp_seconds{source}` of every source from the store (each
/// process exports the deployment's values).
pub async fn record_gauges(store: &dyn Storage) {
    match store.feed_states().await {
        Ok(states) => {
            for s in states {
                if let Some(at) = s.last_success_at {
                    metrics::gauge!("feed_last_success_timestamp_seconds", "source" => s.feed.clone())
                        .set(at.timestamp_millis() as f64 / 1000.0);
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "reading the feeds' status failed"),
    }
}

/// Refreshes the gauges every 15 s until shutdown.
pub async fn gauges(state: AppState, mut shutdown: watch::Receiver<bool>) {
    metrics::describe_gauge!(
        "feed_last_success_timestamp_seconds",
        metrics::Unit::Seconds,
        "Unix time of the last successful sync or import of each knowledge source"
    );
    metrics::describe_counter!(
        "knowledge_rematched_software_total",
        "Software versions matched again after knowledge changes (by the one process that re-matches)"
    );
    metrics::describe_gauge!(
        "knowledge_rematched_revision",
        "The knowledge revision whose re-match and reconciliation this process finished last"
    );
    metrics::describe_counter!(
        "rematch_software_versions_total",
        "Software versions matched again after knowledge changes (only those the change can affect)"
    );
    metrics::describe_counter!(
        "rematch_agents_total",
        "Agents whose findings a re-match changed"
    );
    metrics::describe_histogram!(
        "rematch_duration_seconds",
        metrics::Unit::Seconds,
        "A re-match pass: from taking up a knowledge change to every finding reconciled"
    );
    metrics::describe_histogram!(
        "knowledge_rematch_duration_seconds",
        metrics::Unit::Seconds,
        "From taking up a knowledge change to every finding reconciled"
    );
    loop {
        record_gauges(&*state.store).await;
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(15)) => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            return;
        }
    }
}

/// One scheduled round: takes the deployment's hold, syncs the due sources, lets go.
/// Returns how many sources were synced (0 when another process holds the sync).
pub async fn sync_round(
    store: &dyn Storage,
    client: &SyncClient,
    config: &ScheduledSync,
) -> anyhow::Result<usize> {
    let Some(guard) = store.try_exclusive(SYNC_JOB).await? else {
        tracing::info!("another process is syncing the feeds; skipping this round");
        return Ok(0);
    };
    let now = Utc::now();
    let mut due = Vec::new();
    for source in &config.sources {
        let state = store.feed_state(&source.feed_name()).await?;
        if is_due(source, state.as_ref(), config.interval, now) {
            due.push(source.clone());
        }
    }
    if due.is_empty() {
        guard.release().await;
        return Ok(0);
    }
    tracing::info!(sources = due.len(), "scheduled feed sync started");
    let started = std::time::Instant::now();
    let reports = zt_sync::sync(&StoreTarget(store), client, &due, &|_| {}).await;
    for r in &reports {
        let t = r.summary.total();
        if r.failed {
            tracing::warn!(feed = %r.feed, error = %r.status, "feed sync failed");
        } else {
            tracing::info!(
                feed = %r.feed,
                status = %r.status,
                read = r.records_read,
                new = t.new,
                updated = t.updated,
                bad_records = r.errors.len(),
                "feed synced"
            );
        }
    }
    guard.release().await;
    tracing::info!(
        sources = reports.len(),
        failed = reports.iter().filter(|r| r.failed).count(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "scheduled feed sync finished"
    );
    record_gauges(store).await;
    Ok(reports.len())
}

/// Runs a round at start and then every `interval` until shutdown.
pub async fn run_schedule(
    store: Arc<dyn Storage>,
    config: ScheduledSync,
    mut shutdown: watch::Receiver<bool>,
) {
    let client = match SyncClient::new(config.client.clone()) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "the scheduled feed sync cannot start");
            return;
        }
    };
    tracing::info!(
        interval_s = config.interval.as_secs_f64(),
        sources = config.sources.len(),
        "scheduled feed sync on"
    );
    loop {
        let round = sync_round(&*store, &client, &config);
        tokio::select! {
            r = round => if let Err(e) = r {
                tracing::warn!(error = %e, "scheduled feed sync failed");
            },
            // Shutdown cuts a round short: every import is one transaction and the NVD
            // cursor is saved after each, so the next start carries on.
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(config.interval) => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(attempt_ago_s: i64, success_ago_s: Option<i64>) -> FeedState {
        let now = Utc::now();
        FeedState {
            feed: "x".into(),
            last_attempt_at: Some(now - chrono::Duration::seconds(attempt_ago_s)),
            last_success_at: success_ago_s.map(|s| now - chrono::Duration::seconds(s)),
            ..Default::default()
        }
    }

    #[test]
    fn due_rules() {
        let hour = Duration::from_secs(3600);
        let now = Utc::now();
        assert!(is_due(&Source::Nvd, None, hour, now));
        assert!(!is_due(
            &Source::Nvd,
            Some(&state(600, Some(600))),
            hour,
            now
        ));
        assert!(is_due(
            &Source::Nvd,
            Some(&state(3700, Some(3700))),
            hour,
            now
        ));
        // KEV: daily, however short the interval.
        assert!(!is_due(
            &Source::Kev,
            Some(&state(7200, Some(7200))),
            hour,
            now
        ));
        assert!(is_due(
            &Source::Kev,
            Some(&state(90_000, Some(90_000))),
            hour,
            now
        ));
        // A failed KEV attempt an interval ago, last success two days ago: due again.
        assert!(is_due(
            &Source::Epss,
            Some(&state(3700, Some(172_800))),
            hour,
            now
        ));
        assert!(!is_due(
            &Source::Epss,
            Some(&state(60, Some(172_800))),
            hour,
            now
        ));
        // An interrupted first NVD sync carries on.
        let mut s = state(10, None);
        s.cursor = Some("full:20@2026-01-01T00:00:00+00:00".into());
        assert!(is_due(&Source::Nvd, Some(&s), hour, now));
    }
}

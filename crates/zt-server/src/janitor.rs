//! Periodic upkeep: the queue-size gauge, retention of finished queue entries, rate-limit
//! state and metric buffers.

use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;

use crate::state::AppState;

/// Backend upkeep (SQLite WAL checkpoints, PostgreSQL statistics) off the request and worker
/// paths.
pub async fn checkpoints(state: AppState, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            return;
        }
        if let Err(e) = state.store.housekeeping().await {
            tracing::warn!(error = %e, "store housekeeping failed");
        }
    }
}

pub async fn run(state: AppState, mut shutdown: watch::Receiver<bool>) {
    let mut tick: u64 = 0;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            return;
        }
        tick += 1;
        if tick % 2 == 0 {
            match state.store.queue_stats().await {
                Ok(stats) => {
                    metrics::gauge!("app_queue_size").set(stats.pending() as f64);
                    metrics::gauge!("app_queue_dead").set(stats.dead as f64);
                }
                Err(e) => tracing::warn!(error = %e, "reading queue statistics failed"),
            }
        }
        if tick % 5 == 0 {
            state.metrics.run_upkeep();
        }
        if tick % 60 == 0 {
            state.limits.prune();
            if state.config.role.runs_workers() {
                let retention = chrono::Duration::from_std(state.config.retention)
                    .unwrap_or(chrono::Duration::hours(24));
                match state.store.purge_finished(Utc::now() - retention).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(entries = n, "purged finished queue entries"),
                    Err(e) => tracing::warn!(error = %e, "purging finished queue entries failed"),
                }
            }
        }
        // The event log past its retention, every minute (or twice per retention period
        // when that is shorter); pruners of several processes take turns on its watermark.
        let prune_every = (state.config.event_retention.as_secs() / 2).clamp(1, 60);
        if tick % prune_every == 0 && state.config.role.runs_workers() {
            let keep = chrono::Duration::from_std(state.config.event_retention)
                .unwrap_or(chrono::Duration::hours(24));
            match state.store.prune_events(Utc::now() - keep).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(events = n, "pruned the event log"),
                Err(e) => tracing::warn!(error = %e, "pruning the event log failed"),
            }
        }
        // Resolved findings and removed apps: every ten minutes, by the worker processes.
        if tick % 600 == 300 && state.config.role.runs_workers() {
            let keep = chrono::Duration::from_std(state.config.history_retention)
                .unwrap_or(chrono::Duration::days(90));
            match state.store.purge_history(Utc::now() - keep).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(rows = n, "purged old resolved findings and removed apps"),
                Err(e) => tracing::warn!(error = %e, "purging old history failed"),
            }
        }
    }
}

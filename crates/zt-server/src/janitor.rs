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

/// The gauges read from the store, read once before the server listens so that the first
/// scrape already has them (a gauge first seen at 0 and then at its real value would look like
/// a jump to the alert rules).
pub async fn record_gauges(state: &AppState) {
    record_queue_gauges(state).await;
    if state.config.role.runs_workers() {
        record_fleet_gauges(state).await;
    }
}

/// The queue's size, dead letters and the age of its oldest pending report. Every process
/// reads them (the same values from the shared database): the alert rules take their max.
async fn record_queue_gauges(state: &AppState) {
    match state.store.queue_stats().await {
        Ok(stats) => {
            metrics::gauge!("app_queue_size").set(stats.pending() as f64);
            metrics::gauge!("app_queue_dead").set(stats.dead as f64);
            let age = stats
                .oldest_pending_at
                .map(|at| (Utc::now() - at).num_milliseconds().max(0) as f64 / 1000.0)
                .unwrap_or(0.0);
            metrics::gauge!("app_queue_oldest_age_seconds").set(age);
        }
        Err(e) => tracing::warn!(error = %e, "reading queue statistics failed"),
    }
}

/// Open findings by severity and enrolled agents, all companies together, from each company's
/// summary (the counters the dashboard reads: a few rows per company). Worker processes only:
/// the API replicas keep their database connections for requests.
async fn record_fleet_gauges(state: &AppState) {
    let companies = match state.store.list_companies().await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "listing companies for the fleet gauges failed");
            return;
        }
    };
    let mut total = zt_store::model::Summary::default();
    for company in &companies {
        match state.store.summary(company.id).await {
            Ok(s) => {
                total.agents += s.agents;
                total.kev += s.kev;
                total.findings.critical += s.findings.critical;
                total.findings.high += s.findings.high;
                total.findings.medium += s.findings.medium;
                total.findings.low += s.findings.low;
                total.findings.unknown += s.findings.unknown;
            }
            Err(e) => {
                // A partial sum would show as a drop in the dashboard: keep the last values.
                tracing::warn!(error = %e, company = %company.id, "reading a summary for the fleet gauges failed");
                return;
            }
        }
    }
    let f = &total.findings;
    for (severity, n) in crate::telemetry::SEVERITIES
        .into_iter()
        .zip([f.critical, f.high, f.medium, f.low, f.unknown])
    {
        metrics::gauge!("findings_open", "severity" => severity).set(n as f64);
    }
    metrics::gauge!("findings_open_kev").set(total.kev as f64);
    metrics::gauge!("agents_enrolled").set(total.agents as f64);
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
            record_queue_gauges(&state).await;
        }
        if tick % 60 == 30 && state.config.role.runs_workers() {
            record_fleet_gauges(&state).await;
        }
        if tick % 5 == 0 {
            state.metrics.run_upkeep();
        }
        // Analyses whose expiry passed: their findings return, with an event.
        if tick % 5 == 2 && state.config.role.runs_workers() {
            match state.store.expire_analyses(Utc::now()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(analyses = n, "analyses expired"),
                Err(e) => tracing::warn!(error = %e, "expiring analyses failed"),
            }
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
                // Finished notifications and their attempts, after the history retention.
                let keep = chrono::Duration::from_std(state.config.history_retention)
                    .unwrap_or(chrono::Duration::days(90));
                match state
                    .store
                    .notifications()
                    .purge_notifications(Utc::now() - keep)
                    .await
                {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(rows = n, "purged old notifications"),
                    Err(e) => tracing::warn!(error = %e, "purging old notifications failed"),
                }
                match state.store.purge_sessions(Utc::now()).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(sessions = n, "purged expired dashboard sessions"),
                    Err(e) => tracing::warn!(error = %e, "purging expired sessions failed"),
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
        // Today's trend point of every company, from the maintained counters: soon after
        // start, then every five minutes (the day's last one stays), by the worker processes.
        if tick % 300 == 10 && state.config.role.runs_workers() {
            if let Err(e) = crate::routes::record_trends(&state).await {
                tracing::warn!(error = %e, "recording the trend points failed");
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
            // Notification subjects of vulnerabilities no longer open: they only spare old
            // news its key probes (what each rule was told stays in the keys).
            match state
                .store
                .notifications()
                .prune_notification_subjects()
                .await
            {
                Ok(0) => {}
                Ok(n) => tracing::info!(rows = n, "pruned notification subjects no longer open"),
                Err(e) => tracing::warn!(error = %e, "pruning notification subjects failed"),
            }
        }
    }
}

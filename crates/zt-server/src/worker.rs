//! Queue workers: claim a batch, parse and diff its reports, match software never seen before,
//! write everything in one transaction.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::watch;
use zt_inventory::{Software, SoftwareKey};

use crate::body::parse_inventory;
use zt_store::model::{
    ClaimRequest, ClaimedReport, Failure, LeaseRef, ProcessedBatch, ProcessedReport, ReportOutcome,
    StoredApp,
};

use crate::state::AppState;

/// Distinct software keys remembered as stored (16 bytes each plus the set's overhead).
const KNOWN_SOFTWARE_CAP: usize = 2_000_000;

/// Runs `count` workers until shutdown; in-flight batches get `shutdown_grace` to finish and
/// are released (un-leased) after that.
pub async fn run_workers(state: AppState, count: usize, shutdown: watch::Receiver<bool>) {
    let host = std::process::id();
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let mut tasks = Vec::with_capacity(count);
    for n in 0..count {
        let owner = format!("{host}-{}-w{n}", &tag[..8]);
        tasks.push(tokio::spawn(worker_loop(
            state.clone(),
            owner,
            shutdown.clone(),
        )));
    }
    for t in tasks {
        let _ = t.await;
    }
}

/// How far a worker may grow its batches while the queue stays deep (a multiple of
/// `batch_apps`).
const MAX_BATCH_GROWTH: u32 = 32;

async fn worker_loop(state: AppState, owner: String, mut shutdown: watch::Receiver<bool>) {
    // Adaptive batch size: `batch_apps` when the queue is short (a report is processed as soon
    // as it arrives), growing fourfold while claims keep coming back full (a backlog), halving
    // towards `batch_apps` when one is not. Every write transaction costs more than its rows, so
    // a backlog is worked off in few, large transactions (measured: 1 M first-time app records
    // took 52 s of server CPU with 100-app batches and 28 s with 5,000-app batches).
    let base = state.config.batch_apps.max(1);
    let mut budget = base;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let request = ClaimRequest {
            owner: owner.clone(),
            max_apps: budget,
            lease: state.config.lease,
            max_attempts: state.config.max_attempts,
            overdue_after: state.config.claim_overdue_after,
            now: Utc::now(),
        };
        let claimed = match state.store.claim_batch(&request).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "claiming from the queue failed");
                sleep_or_shutdown(&mut shutdown, Duration::from_secs(1)).await;
                continue;
            }
        };
        let claimed_apps: u64 = claimed.iter().map(|c| u64::from(c.app_count)).sum();
        budget = if claimed_apps >= u64::from(budget) {
            budget
                .saturating_mul(4)
                .min(base.saturating_mul(MAX_BATCH_GROWTH))
        } else {
            (budget / 2).max(base)
        };
        if claimed.is_empty() {
            tokio::select! {
                _ = state.work_available.notified() => {}
                _ = tokio::time::sleep(state.config.worker_poll) => {}
                _ = shutdown.changed() => {}
            }
            continue;
        }
        state.ingest_activity.mark();
        let leases: Vec<LeaseRef> = claimed
            .iter()
            .map(|c| LeaseRef {
                queue_id: c.queue_id,
                owner: owner.clone(),
                attempts: c.attempts,
            })
            .collect();
        let work = process_batch(&state, &owner, claimed);
        tokio::pin!(work);
        let finished = tokio::select! {
            _ = &mut work => true,
            _ = grace_after_shutdown(shutdown.clone(), state.config.shutdown_grace) => false,
        };
        if !finished {
            tracing::warn!(
                reports = leases.len(),
                "shutdown: releasing an unfinished batch"
            );
            if let Err(e) = state.store.release(&leases).await {
                tracing::warn!(error = %e, "releasing a batch failed; its lease will expire");
            }
        }
    }
}

async fn sleep_or_shutdown(shutdown: &mut watch::Receiver<bool>, d: Duration) {
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = shutdown.changed() => {}
    }
}

/// Resolves `grace` after shutdown begins (never, while it does not).
async fn grace_after_shutdown(mut shutdown: watch::Receiver<bool>, grace: Duration) {
    while !*shutdown.borrow() {
        if shutdown.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
    tokio::time::sleep(grace).await;
}

/// The CPU part of a batch: parsed reports and every software version they mention.
struct Parsed {
    reports: Vec<ProcessedReport>,
    software: HashMap<SoftwareKey, Software>,
    apps: u64,
    bad: Vec<(LeaseRef, String)>,
}

fn parse_batch(owner: &str, claimed: Vec<ClaimedReport>) -> Parsed {
    let mut out = Parsed {
        reports: Vec::with_capacity(claimed.len()),
        software: HashMap::new(),
        apps: 0,
        bad: Vec::new(),
    };
    for c in claimed {
        let lease = LeaseRef {
            queue_id: c.queue_id,
            owner: owner.to_string(),
            attempts: c.attempts,
        };
        // Validated when accepted; failing here means the stored body is damaged.
        let report = match crate::body::stored_json(&c.body)
            .and_then(|json| parse_inventory(&json).map_err(|e| e.to_string()))
        {
            Ok(r) => r,
            Err(e) => {
                out.bad
                    .push((lease, format!("stored report does not parse: {e}")));
                continue;
            }
        };
        let mut apps = Vec::with_capacity(report.apps.len());
        for app in &report.apps {
            let sw = Software::from_app(app, &report.host.os);
            let key = sw.key();
            apps.push(StoredApp {
                software_key: key,
                arch: app.arch.clone().unwrap_or_default(),
            });
            out.software.entry(key).or_insert(sw);
        }
        let distinct: std::collections::HashSet<SoftwareKey> =
            apps.iter().map(|a| a.software_key).collect();
        let names: Vec<(SoftwareKey, String)> = distinct
            .into_iter()
            .filter_map(|k| {
                let sw = out.software.get(&k)?;
                Some((k, format!("{}\u{0}{}", sw.ecosystem, sw.name)))
            })
            .collect();
        out.apps += apps.len() as u64;
        out.reports.push(ProcessedReport {
            lease,
            company_id: c.company_id,
            agent_id: c.agent_id,
            report_id: c.report_id,
            collected_at: c.collected_at,
            digest: c.digest,
            hostname: report.host.hostname,
            os: report.host.os,
            arch: report.host.arch,
            apps,
            names,
        });
    }
    out
}

fn retry_at(state: &AppState, attempts: u32) -> Option<chrono::DateTime<Utc>> {
    if attempts >= state.config.max_attempts {
        return None;
    }
    let factor = 1u32 << attempts.saturating_sub(1).min(10);
    let delay = (state.config.retry_base * factor).min(Duration::from_secs(600));
    Some(Utc::now() + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::seconds(600)))
}

async fn fail_all(state: &AppState, leases: Vec<LeaseRef>, error: &str) {
    metrics::counter!("app_processing_errors_total").increment(leases.len() as u64);
    let failures: Vec<Failure> = leases
        .into_iter()
        .map(|lease| Failure {
            retry_at: retry_at(state, lease.attempts),
            lease,
            error: error.to_string(),
        })
        .collect();
    if let Err(e) = state.store.fail(&failures, Utc::now()).await {
        tracing::warn!(error = %e, "recording a failed attempt failed; the lease will expire");
    }
}

async fn process_batch(state: &AppState, owner: &str, claimed: Vec<ClaimedReport>) {
    if let Some(hold) = state.config.hold_after_claim {
        tracing::warn!(?hold, "fault injection: holding a claimed batch");
        tokio::time::sleep(hold).await;
    }
    let started = Instant::now();
    let owner_s = owner.to_string();
    let parsed = match tokio::task::spawn_blocking(move || parse_batch(&owner_s, claimed)).await {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "parsing a batch panicked");
            return;
        }
    };
    if !parsed.bad.is_empty() {
        metrics::counter!("app_processing_errors_total").increment(parsed.bad.len() as u64);
        let failures: Vec<Failure> = parsed
            .bad
            .iter()
            .map(|(lease, error)| Failure {
                lease: lease.clone(),
                error: error.clone(),
                // The same bytes will not parse next time either.
                retry_at: None,
            })
            .collect();
        if let Err(e) = state.store.fail(&failures, Utc::now()).await {
            tracing::warn!(error = %e, "dead-lettering unparsable reports failed");
        }
    }
    if parsed.reports.is_empty() {
        return;
    }
    let leases: Vec<LeaseRef> = parsed.reports.iter().map(|r| r.lease.clone()).collect();
    let keys: Vec<SoftwareKey> = parsed.software.keys().copied().collect();
    let unseen: Vec<SoftwareKey> = {
        let known = state.known_software.read();
        keys.iter()
            .filter(|k| !known.contains(k))
            .copied()
            .collect()
    };
    let unknown = if unseen.is_empty() {
        Vec::new()
    } else {
        match state.store.unmatched_software(&unseen).await {
            Ok(u) => u,
            Err(e) => {
                fail_all(state, leases, &format!("reading the match cache: {e}")).await;
                return;
            }
        }
    };
    metrics::counter!("enrichment_cache_hits_total").increment((keys.len() - unknown.len()) as u64);
    metrics::counter!("enrichment_cache_misses_total").increment(unknown.len() as u64);

    let index = state.matcher.load();
    let revision = index.revision;
    let mut software = parsed.software;
    let to_match: Vec<(SoftwareKey, Software)> = unknown
        .into_iter()
        .filter_map(|k| software.remove(&k).map(|s| (k, s)))
        .collect();
    let (matched, failed) = if to_match.is_empty() {
        (Vec::new(), Vec::new())
    } else {
        match tokio::task::spawn_blocking(move || crate::matching::match_all(&index, to_match))
            .await
        {
            Ok(r) => r,
            Err(e) => {
                fail_all(state, leases, &format!("matching panicked: {e}")).await;
                return;
            }
        }
    };
    if let Some((_, error)) = failed.first() {
        fail_all(state, leases, error).await;
        return;
    }
    let apps = parsed.apps;
    let batch = ProcessedBatch {
        revision,
        software: matched,
        reports: parsed.reports,
        now: Utc::now(),
    };
    match state.store.finish_batch(&batch).await {
        Ok(outcomes) => {
            {
                let mut known = state.known_software.write();
                if known.len() > KNOWN_SOFTWARE_CAP {
                    known.clear();
                }
                known.extend(keys.iter().copied());
            }
            for o in &outcomes {
                let label = match o {
                    ReportOutcome::Applied { .. } => "applied",
                    ReportOutcome::Stale => "stale",
                    ReportOutcome::LeaseLost => "lease_lost",
                };
                metrics::counter!("reports_processed_total", "outcome" => label).increment(1);
            }
            let lost = outcomes
                .iter()
                .filter(|o| **o == ReportOutcome::LeaseLost)
                .count();
            if lost > 0 {
                tracing::warn!(
                    reports = lost,
                    "lease lost before finishing; another worker has them"
                );
            }
            metrics::counter!("apps_processed_total").increment(apps);
            metrics::histogram!("app_processing_duration_seconds")
                .record(started.elapsed().as_secs_f64());
            tracing::debug!(
                reports = outcomes.len(),
                apps,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "batch done"
            );
        }
        Err(e) => fail_all(state, leases, &format!("storing the batch: {e}")).await,
    }
}

//! The HTTP API, workers, rate limits, metrics and dashboard of the ZeroTrace server.
//!
//! Data flow: `routes` (auth, limits, validation) → `ingest` (group commit of report + queue
//! entry) → `worker` (claim, parse, diff, match new software, write) → the store; `matching`
//! keeps the match index current with the knowledge in the store; `janitor` does upkeep.

pub mod accounts;
pub mod auth;
pub mod body;
pub mod client;
pub mod config;
mod conn;
mod dashboard;
pub mod error;
pub mod export;
pub mod feeds;
mod ingest;
mod janitor;
pub mod live;
pub mod matching;
pub mod notify;
pub mod oidc;
pub mod openapi;
pub mod preauth;
mod ratelimit;
pub mod revocation;
pub mod routes;
pub mod shared;
pub mod state;
pub mod telemetry;
pub mod tls;
mod worker;

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use zt_store::Storage;

pub use client::{ClientAddr, PeerAddr, TrustedProxies};
pub use config::{ServerConfig, ServerRole};
pub use state::AppState;
pub use tls::TlsCertificate;

/// Runs the server on `listener` until `shutdown` resolves, then stops accepting requests,
/// lets in-flight requests finish, and gives in-flight batches `shutdown_grace` to finish
/// before releasing them to the queue.
pub async fn serve<F>(
    store: Arc<dyn Storage>,
    config: ServerConfig,
    listener: TcpListener,
    shutdown: F,
) -> anyhow::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    serve_with_tls(store, config, listener, None, shutdown).await
}

/// [`serve`], with HTTPS on `listener` when `tls` is given (`config.tls` should then be set).
pub async fn serve_with_tls<F>(
    store: Arc<dyn Storage>,
    config: ServerConfig,
    listener: TcpListener,
    tls: Option<TlsCertificate>,
    shutdown: F,
) -> anyhow::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let state = AppState::new(store, config.clone());
    telemetry::register_all(config.role.as_str());
    janitor::record_gauges(&state).await;
    // Before the first request: credentials shared through Redis are signed with it, and
    // the credentials revision is where this process starts.
    revocation::load_signing_key(&state).await;
    if let Ok(r) = state.store.credentials_revision().await {
        state.tokens.saw_revision(r);
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut background = Vec::new();
    if config.role.runs_workers() {
        // The first index is built before any worker claims, so early reports see it.
        if let Err(e) = matching::refresh_index(&state).await {
            tracing::warn!(error = %e, "loading the knowledge base failed; retrying in the background");
        }
        background.push(tokio::spawn(matching::watch_knowledge(
            state.clone(),
            stop_rx.clone(),
        )));
        // Reports queued by other processes (API replicas) wake this one's idle workers.
        match state.store.queue_notifications().await {
            Ok(Some(mut queued)) => {
                let wake = state.work_available.clone();
                let mut stop = stop_rx.clone();
                background.push(tokio::spawn(async move {
                    loop {
                        tokio::select! {
                            got = queued.recv() => match got {
                                Some(()) => wake.notify_waiters(),
                                None => return,
                            },
                            _ = stop.changed() => return,
                        }
                    }
                }));
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "cannot listen for queued reports; polling"),
        }
        // Notifications go out from worker processes (any number: claims are exclusive).
        background.push(tokio::spawn(notify::run(state.clone(), stop_rx.clone())));
        background.push(tokio::spawn(worker::run_workers(
            state.clone(),
            config.workers,
            stop_rx.clone(),
        )));
    } else {
        state.ready.store(true, Ordering::Relaxed);
    }
    if config.role.runs_api() {
        background.push(tokio::spawn(live::tail(state.clone(), stop_rx.clone())));
        background.push(tokio::spawn(live::summaries(
            state.clone(),
            stop_rx.clone(),
        )));
    }
    background.push(tokio::spawn(janitor::run(state.clone(), stop_rx.clone())));
    background.push(tokio::spawn(revocation::watch(
        state.clone(),
        stop_rx.clone(),
    )));
    background.push(tokio::spawn(janitor::checkpoints(
        state.clone(),
        stop_rx.clone(),
    )));
    background.push(tokio::spawn(feeds::gauges(state.clone(), stop_rx.clone())));
    // Processes that run workers sync (they apply what changed); API replicas never download.
    if let Some(sync) = config
        .feeds_sync
        .clone()
        .filter(|_| config.role.runs_workers())
    {
        background.push(tokio::spawn(feeds::run_schedule(
            state.store.clone(),
            sync,
            stop_rx.clone(),
        )));
    }

    // Every request knows its connection's peer (`client.rs`, `conn.rs`).
    let app = routes::router(state.clone());
    let stop = stop_tx.clone();
    let hub = state.events.clone();
    let graceful = async move {
        shutdown.await;
        tracing::info!("shutting down: no new requests; finishing in-flight work");
        stop.send_replace(true);
        // Live-event streams never finish by themselves.
        hub.close();
    };
    let header_timeout = config.header_timeout;
    let result = match tls {
        None => conn::serve(listener, app, header_timeout, graceful).await,
        Some(tls) => conn::serve(tls.listener(listener)?, app, header_timeout, graceful).await,
    };
    stop_tx.send_replace(true);
    for task in background {
        let _ = task.await;
    }
    tracing::info!("stopped");
    result.map_err(Into::into)
}

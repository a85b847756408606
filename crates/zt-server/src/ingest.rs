//! Group commit of accepted reports.
//!
//! Every inventory request hands its validated report to one task that writes whatever has
//! arrived meanwhile in one transaction, then answers each request. Under load this turns
//! hundreds of tiny transactions into a few larger ones, which is what SQLite's single
//! writer needs; a request is still answered only after its report and queue entry are
//! committed.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Notify};
use zt_store::model::{AcceptOutcome, IncomingReport};
use zt_store::Storage;

use crate::error::{ApiError, ApiResult};

/// Reports per transaction, and their bytes, at most.
const MAX_BATCH_REPORTS: usize = 256;
const MAX_BATCH_BYTES: usize = 32 * 1024 * 1024;

struct Pending {
    report: IncomingReport,
    reply: oneshot::Sender<Result<AcceptOutcome, String>>,
}

#[derive(Clone)]
pub struct IngestHandle {
    tx: mpsc::Sender<Pending>,
}

impl IngestHandle {
    /// Stores the report (and its queue entry) durably, or says why not.
    pub async fn accept(&self, report: IncomingReport) -> ApiResult<AcceptOutcome> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Pending { report, reply })
            .await
            .map_err(|_| ApiError::internal("the ingest writer stopped"))?;
        match answer.await {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(e)) => Err(ApiError::internal(e)),
            Err(_) => Err(ApiError::internal("the ingest writer dropped a report")),
        }
    }
}

pub fn spawn(
    store: Arc<dyn Storage>,
    queue_bound: u64,
    work_available: Arc<Notify>,
) -> IngestHandle {
    let (tx, rx) = mpsc::channel(4096);
    tokio::spawn(writer(store, queue_bound, work_available, rx));
    IngestHandle { tx }
}

async fn writer(
    store: Arc<dyn Storage>,
    queue_bound: u64,
    work_available: Arc<Notify>,
    mut rx: mpsc::Receiver<Pending>,
) {
    while let Some(first) = rx.recv().await {
        let mut bytes = first.report.body.len();
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH_REPORTS && bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(p) => {
                    bytes += p.report.body.len();
                    batch.push(p);
                }
                Err(_) => break,
            }
        }
        let (reports, replies): (Vec<IncomingReport>, Vec<_>) =
            batch.into_iter().map(|p| (p.report, p.reply)).unzip();
        match store.accept_reports(&reports, queue_bound).await {
            Ok(outcomes) => {
                let mut queued = false;
                for (outcome, reply) in outcomes.into_iter().zip(replies) {
                    queued |= outcome == AcceptOutcome::Queued;
                    let label = match outcome {
                        AcceptOutcome::Queued => "queued",
                        AcceptOutcome::Unchanged => "unchanged",
                        AcceptOutcome::Duplicate => "duplicate",
                        AcceptOutcome::Conflict => "conflict",
                        AcceptOutcome::QueueFull => "queue_full",
                    };
                    metrics::counter!("reports_accepted_total", "outcome" => label).increment(1);
                    let _ = reply.send(Ok(outcome));
                }
                if queued {
                    work_available.notify_waiters();
                }
            }
            Err(e) => {
                let msg = e.to_string();
                for reply in replies {
                    let _ = reply.send(Err(msg.clone()));
                }
            }
        }
    }
}

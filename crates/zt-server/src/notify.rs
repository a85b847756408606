//! The notification dispatcher: claims due messages from the store's outbox (a lease; on
//! several processes each message goes to exactly one), sends each on a task of its own with a
//! deadline, and records every attempt: sent, retried with exponential backoff and jitter, or
//! dead after [`NotifyConfig::max_attempts`]. Delivery is at least once: a process killed
//! between sending and recording sends again after the lease, with the same delivery id, which
//! receivers de-duplicate by.
//!
//! Concurrency per destination: at most [`NotifyConfig::per_destination`] messages of one rule
//! are in flight, and a claim skips rules at that limit, so a destination that is down (each
//! attempt waiting for its deadline) holds a few of the [`NotifyConfig::concurrency`] sends,
//! never the others'. Attempts are recorded by one task in batches (one transaction for all
//! the attempts finished meanwhile): on SQLite every transaction waits for the single writer,
//! which ingest needs.
//!
//! The same loop runs the scans that turn time into events: SLA crossings, stale agents and
//! stale knowledge sources, every [`NotifyConfig::scan_interval`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use rand::Rng;
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch, Semaphore};
use zt_notify::{
    AddressPolicy, Destination, DestinationKind, EventType, Message, SecretKey, Sender,
    SenderConfig,
};
use zt_store::notify::{
    AttemptRecord, ClaimLimits, ClaimedNotification, DeliveryOutcome, FinishedAttempt,
    NotificationRule,
};

use crate::state::AppState;

#[derive(Debug, Clone)]
pub struct NotifyConfig {
    /// Destinations on loopback, link-local and private networks are allowed
    /// (`--allow-private-webhooks`).
    pub allow_private: bool,
    /// Deadline of one attempt.
    pub timeout: Duration,
    /// Attempts before a message is dead.
    pub max_attempts: u32,
    /// The first retry's delay; doubled per attempt (with jitter), at most `retry_cap`.
    pub retry_base: Duration,
    pub retry_cap: Duration,
    /// Messages being sent at once by this process.
    pub concurrency: usize,
    /// Messages of one rule (one destination) being sent at once by this process.
    pub per_destination: usize,
    /// How often the SLA, stale-agent and stale-feed scans run.
    pub scan_interval: Duration,
    /// A knowledge source without a successful sync for this long is `feed.stale`.
    pub feeds_stale_after: Duration,
    /// How often an idle dispatcher looks for due messages.
    pub poll: Duration,
    /// Ingest goes first: while this process's workers are processing reports, sends wait
    /// at most this long (then the backlog is sent in full before they wait again). Zero:
    /// never wait. Sends and ingest share the same cores; a burst of reports that opens
    /// thousands of messages is ingested first and its messages follow seconds later.
    pub defer_during_ingest: Duration,
    /// `smtp://…` / `smtps://…` (see zt-notify `SenderConfig::smtp_url`).
    pub smtp_url: Option<String>,
    pub smtp_from: String,
    /// The dashboard's address as people reach it (links in messages).
    pub public_url: Option<String>,
    /// Seals destination secrets; None: a key for this process only (secrets stored by it do
    /// not open after a restart).
    pub key: Option<SecretKey>,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            allow_private: false,
            timeout: Duration::from_secs(10),
            max_attempts: 8,
            retry_base: Duration::from_secs(5),
            retry_cap: Duration::from_secs(3600),
            concurrency: 32,
            per_destination: 4,
            scan_interval: Duration::from_secs(60),
            feeds_stale_after: Duration::from_secs(48 * 3600),
            poll: Duration::from_millis(500),
            defer_during_ingest: Duration::from_secs(5),
            smtp_url: None,
            smtp_from: "ZeroTrace <zerotrace@localhost>".into(),
            public_url: None,
            key: None,
        }
    }
}

/// What the API and the dispatcher share: the sender and the sealing key.
pub struct Notifier {
    pub sender: Sender,
    pub key: SecretKey,
    pub config: NotifyConfig,
}

impl Notifier {
    pub fn new(config: NotifyConfig) -> anyhow::Result<Notifier> {
        let sender = Sender::new(SenderConfig {
            policy: AddressPolicy {
                allow_private: config.allow_private,
            },
            timeout: config.timeout,
            smtp_url: config.smtp_url.clone(),
            smtp_from: config.smtp_from.clone(),
        })?;
        let key = match &config.key {
            Some(k) => k.clone(),
            None => {
                use base64::Engine;
                let bytes: [u8; 32] = rand::random();
                tracing::warn!(
                    "no notification key configured: destination secrets sealed by this process \
                     will not open after a restart (zerotrace server sets one from the data dir)"
                );
                SecretKey::from_base64(&base64::engine::general_purpose::STANDARD.encode(bytes))?
            }
        };
        Ok(Notifier {
            sender,
            key,
            config,
        })
    }

    pub fn policy(&self) -> AddressPolicy {
        AddressPolicy {
            allow_private: self.config.allow_private,
        }
    }

    /// The destination of a rule with its secret opened.
    pub fn destination(&self, rule: &NotificationRule) -> Result<Destination, String> {
        let kind = DestinationKind::parse(&rule.destination.kind)
            .ok_or_else(|| format!("unknown destination kind {}", rule.destination.kind))?;
        let secret = match &rule.secret_sealed {
            Some(sealed) => Some(
                self.key
                    .open(sealed, rule.rule_id.as_bytes())
                    .map_err(|e| e.to_string())?,
            ),
            None => None,
        };
        Ok(Destination {
            kind,
            url: rule.destination.url.clone(),
            to: rule.destination.to.clone(),
            secret,
        })
    }

    /// The message receivers get: the stored data with links to the dashboard added.
    pub fn message(
        &self,
        delivery_id: uuid::Uuid,
        event: EventType,
        company_id: uuid::Uuid,
        occurred_at: chrono::DateTime<Utc>,
        mut data: serde_json::Map<String, Value>,
    ) -> Message {
        if let Some(base) = self.config.public_url.as_deref() {
            let base = base.trim_end_matches('/');
            let link = |item: &mut serde_json::Map<String, Value>| {
                if let Some(v) = item.get("vuln_id").and_then(Value::as_str) {
                    let url = format!("{base}/c/{company_id}/vulnerabilities/{}", utf8_percent(v));
                    item.insert("link".into(), json!(url));
                } else if let Some(a) = item.get("agent_id").and_then(Value::as_str) {
                    let url = format!("{base}/c/{company_id}/hosts/{a}");
                    item.insert("link".into(), json!(url));
                }
            };
            match data.get_mut("items").and_then(Value::as_array_mut) {
                Some(items) => items
                    .iter_mut()
                    .filter_map(Value::as_object_mut)
                    .for_each(link),
                None => link(&mut data),
            }
        }
        Message {
            id: delivery_id,
            event,
            company_id,
            occurred_at,
            data,
        }
    }
}

fn utf8_percent(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The delay before attempt `attempt + 1`: base · 2^(attempt-1), capped, with ±25% jitter so
/// that messages failing together do not retry together.
pub fn backoff(config: &NotifyConfig, attempt: u32) -> Duration {
    let exp = config
        .retry_base
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let capped = exp.min(config.retry_cap);
    let jitter = rand::rng().random_range(0.75..1.25);
    capped.mul_f64(jitter)
}

/// The scans that turn time into events (each notifies once per crossing however many
/// processes run them: see the store).
async fn scan(state: &AppState) {
    let store = state.store.notifications();
    let now = Utc::now();
    if let Err(e) = store.scan_stale_agents(now).await {
        tracing::warn!(error = %e, "scanning for stale agents failed");
    }
    match store.scan_sla(now).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(findings = n, "SLA crossings notified"),
        Err(e) => tracing::warn!(error = %e, "scanning for SLA crossings failed"),
    }
    let after = chrono::Duration::from_std(state.notifier.config.feeds_stale_after)
        .unwrap_or(chrono::Duration::hours(48));
    if let Err(e) = store.scan_stale_feeds(now, after).await {
        tracing::warn!(error = %e, "scanning for stale knowledge sources failed");
    }
}

/// Messages of each rule this process is sending.
type InFlight = Arc<std::sync::Mutex<HashMap<uuid::Uuid, u32>>>;

/// The dispatcher loop, until `stop`.
pub async fn run(state: AppState, mut stop: watch::Receiver<bool>) {
    let notifier = state.notifier.clone();
    let owner = format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple());
    let concurrency = notifier.config.concurrency.max(1);
    let permits = Arc::new(Semaphore::new(concurrency));
    let in_flight: InFlight = Arc::default();
    // Longer than any attempt: a lease expires only when its dispatcher is gone.
    let lease = notifier.config.timeout * 2 + Duration::from_secs(5);
    let (record_tx, record_rx) = mpsc::unbounded_channel::<FinishedAttempt>();
    let recorder = tokio::spawn(record(state.clone(), record_rx));
    let mut last_scan = Instant::now() - Duration::from_secs(3600);
    let mut last_gauges = Instant::now() - Duration::from_secs(3600);
    // Wakes the loop when a send finishes (its rule may take more now).
    let freed = Arc::new(tokio::sync::Notify::new());
    let mut last_claim = Instant::now() - Duration::from_secs(3600);
    let mut ingest_first = IngestFirst::default();
    loop {
        if *stop.borrow() {
            break;
        }
        if last_scan.elapsed() >= notifier.config.scan_interval {
            last_scan = Instant::now();
            scan(&state).await;
        }
        if last_gauges.elapsed() > Duration::from_secs(2) {
            last_gauges = Instant::now();
            record_gauges(&state).await;
        }
        // Claims of a few messages each would read the due ones again and again: a claim
        // waits until a quarter of the sends are free (or the poll interval passed).
        let free = permits.available_permits();
        let defer = ingest_first.defer(
            state.ingest_activity.busy_within(INGEST_BUSY_WINDOW),
            notifier.config.defer_during_ingest,
        );
        let mut claim_tried = false;
        let claimed = if defer
            || free == 0
            || (free < (concurrency / 4).max(1) && !idle_long(&last_claim, &notifier.config))
        {
            Vec::new()
        } else {
            let limits = ClaimLimits {
                total: free as u32,
                per_rule: notifier.config.per_destination.max(1) as u32,
                in_flight: in_flight.lock().map(|m| m.clone()).unwrap_or_default(),
            };
            last_claim = Instant::now();
            claim_tried = true;
            match state
                .store
                .notifications()
                .claim_notifications_within(&owner, Utc::now(), lease, &limits)
                .await
            {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "claiming notifications failed");
                    Vec::new()
                }
            }
        };
        let busy = !claimed.is_empty();
        if claim_tried && !busy {
            // Nothing due: the backlog is sent, the next burst may wait again.
            ingest_first.drained();
        }
        for c in claimed {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                break;
            };
            let rule = c.rule.rule_id;
            if let Ok(mut m) = in_flight.lock() {
                *m.entry(rule).or_insert(0) += 1;
            }
            let (state, in_flight, record_tx, freed) = (
                state.clone(),
                in_flight.clone(),
                record_tx.clone(),
                freed.clone(),
            );
            tokio::spawn(async move {
                let done = deliver(&state, c).await;
                let _ = record_tx.send(done);
                if let Ok(mut m) = in_flight.lock() {
                    if let Some(n) = m.get_mut(&rule) {
                        *n = n.saturating_sub(1);
                        if *n == 0 {
                            m.remove(&rule);
                        }
                    }
                }
                drop(permit);
                freed.notify_one();
            });
        }
        if busy {
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(notifier.config.poll) => {}
            _ = freed.notified() => {}
            _ = stop.changed() => {}
        }
    }
    // In-flight deliveries finish (each has its deadline) and are recorded before the process
    // stops.
    let _ = permits
        .acquire_many(u32::try_from(concurrency).unwrap_or(1))
        .await;
    drop(record_tx);
    let _ = recorder.await;
}

/// Workers that claimed a batch this recently count as busy ingesting.
const INGEST_BUSY_WINDOW: Duration = Duration::from_secs(1);

/// When this process's workers last claimed reports: the dispatcher lets ingest go first.
/// Milliseconds since the process's own origin in one atomic, so the workers' mark costs
/// nothing measurable per batch.
pub struct IngestActivity {
    origin: Instant,
    /// Milliseconds after `origin` + 1 of the last claimed batch; 0: none yet.
    last_batch_ms: AtomicU64,
}

impl Default for IngestActivity {
    fn default() -> Self {
        IngestActivity {
            origin: Instant::now(),
            last_batch_ms: AtomicU64::new(0),
        }
    }
}

impl IngestActivity {
    /// A worker claimed a batch of reports now.
    pub fn mark(&self) {
        let ms = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        self.last_batch_ms.store(ms + 1, Ordering::Relaxed);
    }

    /// Whether a worker claimed a batch within `window`.
    pub fn busy_within(&self, window: Duration) -> bool {
        match self.last_batch_ms.load(Ordering::Relaxed) {
            0 => false,
            last => {
                let now = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
                now.saturating_sub(last - 1) <= u64::try_from(window.as_millis()).unwrap_or(0)
            }
        }
    }
}

/// The dispatcher's side of "ingest goes first": it waits while workers are busy, at most
/// `limit` in a row; once that has passed it sends until nothing is due (so a message waits
/// at most about `limit` plus the time to send what came before it, however long ingest
/// stays busy), then may wait again.
#[derive(Default)]
struct IngestFirst {
    waiting_since: Option<Instant>,
}

impl IngestFirst {
    /// Whether to skip claiming now.
    fn defer(&mut self, ingest_busy: bool, limit: Duration) -> bool {
        if limit.is_zero() {
            return false;
        }
        if !ingest_busy {
            // Only a drained backlog ends a wait that ran out (`drained`): an idle moment
            // in a long burst must not start a new wait while old messages are still due.
            return false;
        }
        let since = *self.waiting_since.get_or_insert_with(Instant::now);
        since.elapsed() < limit
    }

    /// A claim found nothing due.
    fn drained(&mut self) {
        self.waiting_since = None;
    }
}

/// Whether the last claim is a poll interval ago.
fn idle_long(last_claim: &Instant, config: &NotifyConfig) -> bool {
    last_claim.elapsed() >= config.poll
}

/// Records finished attempts: whatever finished while the previous batch was written goes in
/// one transaction.
async fn record(state: AppState, mut rx: mpsc::UnboundedReceiver<FinishedAttempt>) {
    let mut batch = Vec::new();
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < 512 {
            match rx.try_recv() {
                Ok(more) => batch.push(more),
                Err(_) => break,
            }
        }
        match state
            .store
            .notifications()
            .finish_notifications(&batch)
            .await
        {
            Ok(recorded) => {
                for (d, ok) in batch.iter().zip(recorded) {
                    if !ok {
                        tracing::info!(delivery = %d.claimed.delivery_id, "notification lease lost before recording; another dispatcher has it");
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, attempts = batch.len(), "recording notification attempts failed; they are sent again after their lease")
            }
        }
        batch.clear();
    }
}

pub async fn record_gauges(state: &AppState) {
    match state.store.notifications().outbox_stats().await {
        Ok(stats) => {
            metrics::gauge!("notification_outbox_backlog").set(stats.backlog as f64);
            let age = stats
                .oldest
                .map(|t| (Utc::now() - t).num_milliseconds().max(0) as f64 / 1000.0)
                .unwrap_or(0.0);
            metrics::gauge!("notification_outbox_oldest_age_seconds").set(age);
        }
        Err(e) => tracing::warn!(error = %e, "reading the outbox backlog failed"),
    }
}

/// One attempt of one claimed message, to be recorded.
async fn deliver(state: &AppState, c: ClaimedNotification) -> FinishedAttempt {
    let notifier = &state.notifier;
    let kind = c.rule.destination.kind.clone();
    let started = Instant::now();
    let attempted_at = Utc::now();
    let attempt = match (EventType::parse(&c.event), notifier.destination(&c.rule)) {
        (Some(event), Ok(dest)) => {
            let m = notifier.message(
                c.delivery_id,
                event,
                c.company_id.0,
                c.created_at,
                c.data.clone(),
            );
            notifier.sender.send(&m, &dest).await
        }
        (None, _) => zt_notify::Attempt {
            ok: false,
            status: None,
            excerpt: None,
            error: Some(format!("unknown event {}", c.event)),
            retryable: false,
        },
        (_, Err(e)) => zt_notify::Attempt {
            ok: false,
            status: None,
            excerpt: None,
            error: Some(e),
            retryable: false,
        },
    };
    let outcome = if attempt.ok {
        metrics::counter!("notifications_sent_total", "kind" => kind.clone()).increment(1);
        DeliveryOutcome::Sent
    } else {
        metrics::counter!("notifications_failed_total", "kind" => kind.clone()).increment(1);
        if attempt.retryable && c.attempt < notifier.config.max_attempts {
            let delay = backoff(&notifier.config, c.attempt);
            DeliveryOutcome::Retry(
                Utc::now()
                    + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::hours(1)),
            )
        } else {
            DeliveryOutcome::Dead
        }
    };
    if outcome == DeliveryOutcome::Dead {
        tracing::warn!(
            delivery = %c.delivery_id, rule = %c.rule.rule_id, kind = %kind,
            error = attempt.error.as_deref().unwrap_or(""),
            "notification dead after {} attempts", c.attempt
        );
    }
    let record = AttemptRecord {
        attempted_at,
        status: attempt.status,
        response_excerpt: attempt.excerpt,
        error: attempt.error,
        duration_ms: u32::try_from(started.elapsed().as_millis()).unwrap_or(u32::MAX),
    };
    FinishedAttempt {
        claimed: c,
        attempt: record,
        outcome,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ingest_first_waits_at_most_its_limit_then_sends_until_drained() {
        let limit = Duration::from_millis(40);
        let mut f = IngestFirst::default();
        // Idle ingest: never wait.
        assert!(!f.defer(false, limit));
        // Busy: wait, up to the limit.
        assert!(f.defer(true, limit));
        std::thread::sleep(Duration::from_millis(60));
        // The limit has passed: send, however busy ingest stays, until a claim finds nothing.
        assert!(!f.defer(true, limit));
        assert!(!f.defer(false, limit));
        assert!(!f.defer(true, limit));
        f.drained();
        // The backlog is out: the next burst may wait again.
        assert!(f.defer(true, limit));
        // Zero turns waiting off.
        assert!(!IngestFirst::default().defer(true, Duration::ZERO));
    }

    #[test]
    fn ingest_activity_is_busy_only_within_its_window_of_the_last_batch() {
        let a = IngestActivity::default();
        assert!(!a.busy_within(Duration::from_secs(3600)), "no batch yet");
        a.mark();
        assert!(a.busy_within(Duration::from_millis(500)));
        std::thread::sleep(Duration::from_millis(30));
        assert!(!a.busy_within(Duration::from_millis(10)));
        assert!(a.busy_within(Duration::from_secs(1)));
    }

    #[test]
    fn backoff_doubles_within_jitter_and_stops_at_the_cap() {
        let config = NotifyConfig {
            retry_base: Duration::from_secs(2),
            retry_cap: Duration::from_secs(60),
            ..NotifyConfig::default()
        };
        for (attempt, expected) in [(1u32, 2.0f64), (2, 4.0), (3, 8.0), (4, 16.0), (10, 60.0)] {
            for _ in 0..50 {
                let d = backoff(&config, attempt).as_secs_f64();
                assert!(
                    d >= expected * 0.75 - 1e-9 && d <= expected * 1.25 + 1e-9,
                    "{attempt}: {d}"
                );
            }
        }
    }
}

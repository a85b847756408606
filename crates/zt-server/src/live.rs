//! Live events in an API process: one task tails the store's event log (woken by the store's
//! event notifications: in-process on SQLite, LISTEN/NOTIFY on PostgreSQL, so a worker
//! process's events reach every API process; with a slow poll as the fallback) and fans what
//! it reads out to the SSE streams, per company, in batches. A second task sends each
//! watched company's `summary` at most once a second, when its counts changed.
//!
//! The log is the truth, the fan-out only a shortcut: a stream starts (or resumes after
//! `Last-Event-ID`) by reading the log, and reads it again whenever it fell behind the
//! fan-out, so every stream gets every event of its company exactly once, in id order.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::response::sse::Event;
use parking_lot::Mutex;
use serde_json::json;
use tokio::sync::{broadcast, watch};
use zt_store::model::{CompanyId, StoredEvent, Summary};
use zt_store::Storage;

use crate::state::AppState;

/// Batches a stream may fall behind the fan-out before it reads the log instead.
const CHANNEL_BATCHES: usize = 256;
/// Events read from the log per query.
const READ_PAGE: u32 = 500;
/// How often the tail reads the log without a wake-up (a lost or coalesced notification).
const FALLBACK_POLL: Duration = Duration::from_secs(1);
/// How often summaries of changed companies go out at most.
const SUMMARY_INTERVAL: Duration = Duration::from_secs(1);

/// What the fan-out sends a stream: events of its company (and global ones) in id order,
/// and summaries (company, JSON) that changed.
#[derive(Debug, Default)]
pub struct Batch {
    pub events: Vec<Arc<StoredEvent>>,
    pub summaries: Vec<(CompanyId, Arc<str>)>,
}

/// Which events a stream carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// One company's (and the global ones).
    Company(CompanyId),
    /// Every company's (the operator).
    All,
}

impl Scope {
    fn company(self) -> Option<CompanyId> {
        match self {
            Scope::Company(c) => Some(c),
            Scope::All => None,
        }
    }
}

/// The fan-out of one process.
pub struct EventHub {
    channels: Mutex<HashMap<Scope, broadcast::Sender<Arc<Batch>>>>,
    /// The newest id the tail has read.
    head: AtomicU64,
    /// Companies whose counts may have changed since their last summary.
    dirty: Mutex<HashSet<CompanyId>>,
    /// The last summary sent per company (JSON), to send only changes.
    last_summary: Mutex<HashMap<CompanyId, Arc<str>>>,
    /// Set when the server shuts down: every stream ends, so that shutdown need not wait.
    closing: watch::Sender<bool>,
}

impl Default for EventHub {
    fn default() -> Self {
        EventHub {
            channels: Mutex::new(HashMap::new()),
            head: AtomicU64::new(0),
            dirty: Mutex::new(HashSet::new()),
            last_summary: Mutex::new(HashMap::new()),
            closing: watch::channel(false).0,
        }
    }
}

impl EventHub {
    /// Ends every stream (the server is shutting down).
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    pub fn subscribe(&self, scope: Scope) -> broadcast::Receiver<Arc<Batch>> {
        self.channels
            .lock()
            .entry(scope)
            .or_insert_with(|| broadcast::channel(CHANNEL_BATCHES).0)
            .subscribe()
    }

    /// Streams connected now.
    pub fn streams(&self) -> usize {
        self.channels
            .lock()
            .values()
            .map(|s| s.receiver_count())
            .sum()
    }

    /// Sends what the tail read to every stream that carries it.
    fn publish(&self, events: Vec<StoredEvent>) {
        let Some(last) = events.last().map(|e| e.id) else {
            return;
        };
        let events: Vec<Arc<StoredEvent>> = events.into_iter().map(Arc::new).collect();
        let mut channels = self.channels.lock();
        channels.retain(|_, s| s.receiver_count() > 0);
        let mut per_company: HashMap<CompanyId, Vec<Arc<StoredEvent>>> = HashMap::new();
        let mut global = false;
        {
            let mut dirty = self.dirty.lock();
            for e in &events {
                match e.company_id {
                    Some(c) => {
                        dirty.insert(c);
                        if channels.contains_key(&Scope::Company(c)) {
                            per_company.entry(c).or_default().push(e.clone());
                        }
                    }
                    None => global = true,
                }
            }
        }
        for (scope, sender) in channels.iter() {
            let mine = match scope {
                Scope::All => events.clone(),
                Scope::Company(c) if global => events
                    .iter()
                    .filter(|e| e.company_id.is_none_or(|x| x == *c))
                    .cloned()
                    .collect(),
                Scope::Company(c) => per_company.remove(c).unwrap_or_default(),
            };
            if !mine.is_empty() {
                let _ = sender.send(Arc::new(Batch {
                    events: mine,
                    summaries: Vec::new(),
                }));
            }
        }
        self.head.store(last, Ordering::Release);
    }

    fn watched(&self) -> (bool, HashSet<CompanyId>) {
        let channels = self.channels.lock();
        let mut companies = HashSet::new();
        let mut all = false;
        for (scope, sender) in channels.iter() {
            if sender.receiver_count() == 0 {
                continue;
            }
            match scope {
                Scope::Company(c) => {
                    companies.insert(*c);
                }
                Scope::All => all = true,
            }
        }
        (all, companies)
    }

    fn send_summary(&self, company: CompanyId, json: Arc<str>) {
        let channels = self.channels.lock();
        for scope in [Scope::Company(company), Scope::All] {
            if let Some(sender) = channels.get(&scope) {
                let _ = sender.send(Arc::new(Batch {
                    events: Vec::new(),
                    summaries: vec![(company, json.clone())],
                }));
            }
        }
    }
}

/// The JSON of a company's `summary` event.
pub fn summary_json(company: CompanyId, summary: &Summary) -> Arc<str> {
    let mut value = serde_json::to_value(summary).unwrap_or_else(|_| json!({}));
    if let Some(map) = value.as_object_mut() {
        map.insert("company_id".into(), json!(company.to_string()));
    }
    Arc::from(value.to_string())
}

/// Tails the event log into the hub until shutdown.
pub async fn tail(state: AppState, mut shutdown: watch::Receiver<bool>) {
    let store = state.store.clone();
    let hub = state.events.clone();
    // What happened before this process started is read from the log by each stream.
    loop {
        match store.event_log_bounds().await {
            Ok(bounds) => {
                hub.head.store(bounds.head, Ordering::Release);
                break;
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading the event log failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(FALLBACK_POLL) => {}
                    _ = shutdown.changed() => return,
                }
            }
        }
    }
    let mut wake = match store.event_notifications().await {
        Ok(rx) => Some(rx),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for events; polling the event log");
            None
        }
    };
    loop {
        if *shutdown.borrow() {
            return;
        }
        if let Err(e) = read_new(&*store, &hub).await {
            tracing::warn!(error = %e, "reading the event log failed");
        }
        let woken = async {
            match wake.as_mut() {
                Some(rx) => rx.recv().await.is_some(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            alive = woken => {
                if !alive {
                    wake = None;
                }
            }
            _ = tokio::time::sleep(FALLBACK_POLL) => {}
            _ = shutdown.changed() => {}
        }
    }
}

async fn read_new(store: &dyn Storage, hub: &EventHub) -> zt_store::Result<()> {
    loop {
        let after = hub.head.load(Ordering::Acquire);
        let events = store.events_after(None, after, READ_PAGE).await?;
        let full = events.len() == READ_PAGE as usize;
        hub.publish(events);
        if !full {
            return Ok(());
        }
    }
}

/// Sends each watched company's summary when its counts changed, at most once a second.
pub async fn summaries(state: AppState, mut shutdown: watch::Receiver<bool>) {
    let hub = state.events.clone();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(SUMMARY_INTERVAL) => {}
            _ = shutdown.changed() => return,
        }
        let dirty: Vec<CompanyId> = std::mem::take(&mut *hub.dirty.lock()).into_iter().collect();
        if dirty.is_empty() {
            continue;
        }
        let (all, watched) = hub.watched();
        for company in dirty {
            if !all && !watched.contains(&company) {
                hub.last_summary.lock().remove(&company);
                continue;
            }
            let summary = match state.store.summary(company).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "reading a summary for the live streams failed");
                    hub.dirty.lock().insert(company);
                    continue;
                }
            };
            let json = summary_json(company, &summary);
            let changed = {
                let mut last = hub.last_summary.lock();
                let changed = last.get(&company) != Some(&json);
                if changed {
                    last.insert(company, json.clone());
                }
                changed
            };
            if changed {
                hub.send_summary(company, json);
            }
        }
    }
}

/// One SSE stream: the log from its position, then the fan-out (the log again after falling
/// behind). Every message carries an `id:`: an event its log id, a `summary` (and `resync`)
/// the stream's position when sent, so a reconnect with that id resumes right after it.
pub struct Stream {
    scope: Scope,
    store: Arc<dyn Storage>,
    rx: broadcast::Receiver<Arc<Batch>>,
    /// The id of the last event delivered (or the starting position).
    position: u64,
    /// The log must be read from `position` before taking the fan-out again.
    catch_up: bool,
    pending: VecDeque<Event>,
    closing: watch::Receiver<bool>,
}

impl Drop for Stream {
    fn drop(&mut self) {
        metrics::gauge!("sse_streams").decrement(1.0);
    }
}

impl Stream {
    /// A stream from `last_event_id` (resumed) or from now. `initial` are the summaries to send
    /// first (a company's; the operator's: every company's).
    pub async fn open(
        hub: &EventHub,
        store: Arc<dyn Storage>,
        scope: Scope,
        last_event_id: Option<u64>,
        initial: Vec<Arc<str>>,
    ) -> zt_store::Result<Stream> {
        // Subscribed before the log is read: nothing can fall between the two.
        let rx = hub.subscribe(scope);
        let bounds = store.event_log_bounds().await?;
        let mut pending = VecDeque::new();
        let position = match last_event_id {
            // Events after it were pruned, or it is from another log (a restored database).
            Some(id) if id < bounds.pruned_through || id > bounds.head => {
                pending.push_back(resync(bounds.head, id));
                bounds.head
            }
            Some(id) => id,
            None => bounds.head,
        };
        for json in initial {
            pending.push_back(summary_event(position, &json));
        }
        metrics::gauge!("sse_streams").increment(1.0);
        Ok(Stream {
            scope,
            store,
            rx,
            position,
            catch_up: true,
            pending,
            closing: hub.closing.subscribe(),
        })
    }

    /// The next message, None when the server shuts the fan-out down.
    pub async fn next(&mut self) -> Option<Event> {
        loop {
            if *self.closing.borrow() {
                return None;
            }
            if let Some(e) = self.pending.pop_front() {
                return Some(e);
            }
            if self.catch_up {
                // On a task of its own: a client that goes away drops this stream, and a
                // database call dropped halfway can leave its pooled connection out of step
                // (later queries on it read stale answers; seen on PostgreSQL).
                let (store, company, after) =
                    (self.store.clone(), self.scope.company(), self.position);
                let read =
                    tokio::spawn(
                        async move { store.events_after(company, after, READ_PAGE).await },
                    );
                let read = match read.await {
                    Ok(r) => r,
                    Err(e) => Err(zt_store::StoreError::Other(format!(
                        "reading the event log stopped: {e}"
                    ))),
                };
                match read {
                    Ok(events) => {
                        self.catch_up = events.len() == READ_PAGE as usize;
                        for e in &events {
                            self.deliver(e);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "reading the event log for a stream failed");
                        tokio::time::sleep(FALLBACK_POLL).await;
                    }
                }
                continue;
            }
            let received = tokio::select! {
                r = self.rx.recv() => r,
                _ = self.closing.changed() => return None,
            };
            match received {
                Ok(batch) => {
                    for e in &batch.events {
                        self.deliver(e);
                    }
                    for (_, json) in &batch.summaries {
                        self.pending.push_back(summary_event(self.position, json));
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => self.catch_up = true,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    fn deliver(&mut self, e: &StoredEvent) {
        if e.id <= self.position {
            return;
        }
        self.position = e.id;
        self.pending.push_back(
            Event::default()
                .id(e.id.to_string())
                .event(e.kind.as_str())
                .data(&e.data),
        );
    }
}

fn summary_event(position: u64, json: &str) -> Event {
    Event::default()
        .id(position.to_string())
        .event("summary")
        .data(json)
}

fn resync(head: u64, asked: u64) -> Event {
    Event::default().id(head.to_string()).event("resync").data(
        json!({
            "reason": "the events after the given Last-Event-ID can no longer be replayed; reload",
            "last_event_id": asked.to_string(),
            "head": head.to_string(),
        })
        .to_string(),
    )
}

/// Appends `knowledge.updated` {revision} (about every company: each stream gets it) to the
/// event log. For the one process that re-matched the known software after a knowledge
/// change, once it is done, so that dashboards reload what the change moved.
pub async fn knowledge_updated(store: &dyn Storage, revision: u64) -> zt_store::Result<u64> {
    let mut data = serde_json::Map::new();
    data.insert("revision".into(), json!(revision));
    store
        .append_events(
            &[zt_store::model::NewEvent {
                company_id: None,
                kind: zt_store::model::EventKind::KnowledgeUpdated,
                data,
            }],
            chrono::Utc::now(),
        )
        .await
}

//! Notifications in the store (issue 14): rules, the outbox written in the same transaction as
//! the change that causes a message, the dispatchers' claim with a lease, and the log of every
//! delivery attempt. [`NotificationStore`] is reached through [`crate::Storage::notifications`];
//! the planning both backends share (which rule hears of what, one message per rule and
//! subject) is in `common/notify.rs`.
//!
//! Events a backend writes to the outbox itself: `finding.opened` and `finding.kev` (a processed
//! report opening findings, one message per rule and vulnerability with the host count),
//! `report.failed` (a report dead-lettered), `agent.stale` ([`NotificationStore::scan_stale_agents`]).
//! `sla.due_soon`, `sla.overdue`, `analysis.expired` and `feed.stale` are accepted in rules and
//! written by [`NotificationStore::enqueue_notifications`] by whichever part owns that data.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use uuid::Uuid;
use zt_advisory::Severity;

use crate::model::CompanyId;
use crate::Result;

/// Every event a rule may name (DESIGN.md "Notifications").
pub const EVENTS: [&str; 8] = [
    "finding.opened",
    "finding.kev",
    "sla.due_soon",
    "sla.overdue",
    "analysis.expired",
    "agent.stale",
    "feed.stale",
    "report.failed",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleDestination {
    /// webhook | slack | teams | email
    pub kind: String,
    pub url: Option<String>,
    pub to: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationRule {
    pub rule_id: Uuid,
    pub company_id: CompanyId,
    pub name: String,
    pub events: Vec<String>,
    pub min_severity: Option<Severity>,
    pub kev_only: bool,
    /// Only hosts carrying one of these tags (empty: every host).
    pub tags: Vec<String>,
    /// 0: at once; otherwise the messages of this many minutes go out as one digest.
    pub digest_minutes: u32,
    /// `agent.stale`: days without a report.
    pub stale_days: u32,
    pub destination: RuleDestination,
    /// The destination secret, sealed by the server (never returned by the API).
    pub secret_sealed: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A message of the outbox, leased to one dispatcher.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedNotification {
    pub outbox_id: i64,
    /// The id receivers de-duplicate by: the same on every attempt.
    pub delivery_id: Uuid,
    pub company_id: CompanyId,
    pub event: String,
    pub data: Map<String, Value>,
    pub created_at: DateTime<Utc>,
    /// Attempts including this one.
    pub attempt: u32,
    pub owner: String,
    pub rule: NotificationRule,
}

/// What becomes of a message after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryOutcome {
    Sent,
    Retry(DateTime<Utc>),
    Dead,
}

impl DeliveryOutcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            DeliveryOutcome::Sent => "sent",
            DeliveryOutcome::Retry(_) => "retry",
            DeliveryOutcome::Dead => "dead",
        }
    }
}

/// One attempt as the log keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AttemptRecord {
    pub attempted_at: DateTime<Utc>,
    pub status: Option<u16>,
    /// At most 512 bytes of the receiver's answer.
    pub response_excerpt: Option<String>,
    pub error: Option<String>,
    pub duration_ms: u32,
}

/// A row of `GET …/notification-deliveries`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRecord {
    pub seq: i64,
    pub company_id: CompanyId,
    pub rule_id: Uuid,
    pub delivery_id: Uuid,
    pub event: String,
    pub attempt: u32,
    /// sent | retry | dead | test_sent | test_failed
    pub outcome: String,
    pub attempt_record: AttemptRecord,
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// A message some part of the server asks to send (e.g. `sla.overdue`): it goes to every rule
/// of the company that names the event and whose filters it passes, once per `subject`.
#[derive(Debug, Clone, PartialEq)]
pub struct NotificationRequest {
    pub company_id: CompanyId,
    pub event: String,
    /// What the message is about (a vulnerability id, a report id, …): each rule hears of one
    /// subject once per event.
    pub subject: String,
    pub severity: Option<Severity>,
    pub kev: bool,
    pub hosts: u64,
    pub data: Map<String, Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OutboxStats {
    /// Messages not yet sent nor dead.
    pub backlog: u64,
    /// The creation time of the oldest of them.
    pub oldest: Option<DateTime<Utc>>,
}

#[async_trait]
pub trait NotificationStore: Send + Sync {
    /// False when the company does not exist.
    async fn create_rule(&self, rule: &NotificationRule) -> Result<bool>;
    async fn list_rules(&self, company_id: CompanyId) -> Result<Vec<NotificationRule>>;
    async fn get_rule(
        &self,
        company_id: CompanyId,
        rule_id: Uuid,
    ) -> Result<Option<NotificationRule>>;
    /// Replaces the rule's fields (the id, company and creation time stay); false when missing.
    async fn update_rule(&self, rule: &NotificationRule) -> Result<bool>;
    /// Deletes the rule and its unsent messages (the delivery log stays); false when missing.
    async fn delete_rule(&self, company_id: CompanyId, rule_id: Uuid) -> Result<bool>;

    /// Writes messages for these requests in a transaction of their own.
    async fn enqueue_notifications(
        &self,
        requests: &[NotificationRequest],
        now: DateTime<Utc>,
    ) -> Result<u64>;

    /// Enqueues `agent.stale` for agents not seen for their rules' `stale_days` (once per
    /// silence: an agent that reports again and falls silent again is news again).
    async fn scan_stale_agents(&self, now: DateTime<Utc>) -> Result<u64>;

    /// Leases up to `limit` due messages to `owner` until `now + lease` (expired leases are
    /// taken over: a dispatcher that died loses nothing). On several processes each message
    /// goes to exactly one of them.
    async fn claim_notifications(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease: std::time::Duration,
        limit: u32,
    ) -> Result<Vec<ClaimedNotification>>;

    /// Logs the attempt and moves the message on; false (and nothing written) when the lease
    /// was lost to another dispatcher.
    async fn finish_notification(
        &self,
        claimed: &ClaimedNotification,
        attempt: &AttemptRecord,
        outcome: DeliveryOutcome,
    ) -> Result<bool>;

    /// Logs an attempt of a rule's test message.
    async fn record_test_delivery(
        &self,
        rule: &NotificationRule,
        delivery_id: Uuid,
        attempt: &AttemptRecord,
        ok: bool,
    ) -> Result<()>;

    /// The company's delivery log, newest first, optionally of one rule, before `before` (a
    /// `seq`).
    async fn list_deliveries(
        &self,
        company_id: CompanyId,
        rule_id: Option<Uuid>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<DeliveryRecord>>;

    async fn outbox_stats(&self) -> Result<OutboxStats>;

    /// Deletes messages finished and attempts logged before `before`; how many rows went.
    async fn purge_notifications(&self, before: DateTime<Utc>) -> Result<u64>;
}

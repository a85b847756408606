//! Notifications in the store (issue 14): rules, the outbox written in the same transaction as
//! the change that causes a message, the dispatchers' claim with a lease, and the log of every
//! delivery attempt. [`NotificationStore`] is reached through [`crate::Storage::notifications`];
//! the planning both backends share (which rule hears of what, one message per rule and
//! subject) is in `common/notify.rs`.
//!
//! Every event is written by the store, in the transaction of the change that causes it:
//! `finding.opened` and `finding.kev` (a processed report opening findings, one message per
//! rule and vulnerability with the host count; suppressed findings never notify),
//! `report.failed` (a report dead-lettered), `analysis.expired` (the expiry applied,
//! `Storage::expire_analyses`), `sla.due_soon` and `sla.overdue` (findings crossing their due
//! date, marked told in the same transaction: [`NotificationStore::scan_sla`]), `agent.stale`
//! ([`NotificationStore::scan_stale_agents`]) and `feed.stale`
//! ([`NotificationStore::scan_stale_feeds`]); the last two are told once per silence through
//! the rule's key of it. [`NotificationStore::enqueue_notifications`] takes messages of other
//! parts of the server.

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

/// How much one claim may take (see `claim_notifications_within`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClaimLimits {
    /// Messages at most.
    pub total: u32,
    /// Messages of one rule (one destination) in flight at most, counting `in_flight`.
    pub per_rule: u32,
    /// Messages of each rule this dispatcher is sending now.
    pub in_flight: std::collections::HashMap<Uuid, u32>,
}

/// One attempt to record (see `finish_notifications`).
#[derive(Debug, Clone, PartialEq)]
pub struct FinishedAttempt {
    pub claimed: ClaimedNotification,
    pub attempt: AttemptRecord,
    pub outcome: DeliveryOutcome,
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

    /// Enqueues `sla.due_soon` (due within 7 days) and `sla.overdue` (due date passed) for
    /// open, unsuppressed findings of companies with a rule naming them: each finding is
    /// marked told in the same transaction, so it notifies once per crossing on any number of
    /// processes; one message per rule and vulnerability per pass. The findings marked.
    async fn scan_sla(&self, now: DateTime<Utc>) -> Result<u64>;

    /// Enqueues `feed.stale` for knowledge sources whose last success is older than
    /// `stale_after` (once per silence), to every company with a rule naming it.
    async fn scan_stale_feeds(
        &self,
        now: DateTime<Utc>,
        stale_after: chrono::Duration,
    ) -> Result<u64>;

    /// Leases up to `limit` due messages to `owner` until `now + lease` (expired leases are
    /// taken over: a dispatcher that died loses nothing). On several processes each message
    /// goes to exactly one of them.
    async fn claim_notifications(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease: std::time::Duration,
        limit: u32,
    ) -> Result<Vec<ClaimedNotification>> {
        let limits = ClaimLimits {
            total: limit,
            per_rule: limit,
            in_flight: Default::default(),
        };
        self.claim_notifications_within(owner, now, lease, &limits)
            .await
    }

    /// As `claim_notifications`, within `limits`: rules with `per_rule` messages in flight are
    /// skipped, the others take at most their share. A vulnerability message's host count is
    /// read now (open, unsuppressed findings on the rule's hosts).
    async fn claim_notifications_within(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease: std::time::Duration,
        limits: &ClaimLimits,
    ) -> Result<Vec<ClaimedNotification>>;

    /// Logs the attempt and moves the message on; false (and nothing written) when the lease
    /// was lost to another dispatcher.
    async fn finish_notification(
        &self,
        claimed: &ClaimedNotification,
        attempt: &AttemptRecord,
        outcome: DeliveryOutcome,
    ) -> Result<bool> {
        let one = FinishedAttempt {
            claimed: claimed.clone(),
            attempt: attempt.clone(),
            outcome,
        };
        Ok(self
            .finish_notifications(std::slice::from_ref(&one))
            .await?
            .first()
            .copied()
            .unwrap_or(false))
    }

    /// `finish_notification` of many attempts in one transaction (a dispatcher records what it
    /// sent in batches); for each, whether it was recorded.
    async fn finish_notifications(&self, done: &[FinishedAttempt]) -> Result<Vec<bool>>;

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

    /// Deletes the de-duplication subjects (`notification_subjects`) of vulnerabilities no
    /// longer open in their company with that severity and KEV flag: they only spare old news
    /// the per-rule key probes, and `notification_keys` still holds what each rule was told,
    /// so a vulnerability that comes back is no new message to a rule told of it. Page by
    /// page, each in a short transaction; how many went.
    async fn prune_notification_subjects(&self) -> Result<u64>;
}

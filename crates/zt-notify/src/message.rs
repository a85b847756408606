//! The message model: one notification about one event (or a digest of several), and where it
//! goes.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

/// What a rule can be notified of (DESIGN.md "Notifications").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum EventType {
    #[serde(rename = "finding.opened")]
    FindingOpened,
    #[serde(rename = "finding.kev")]
    FindingKev,
    #[serde(rename = "sla.due_soon")]
    SlaDueSoon,
    #[serde(rename = "sla.overdue")]
    SlaOverdue,
    #[serde(rename = "analysis.expired")]
    AnalysisExpired,
    #[serde(rename = "agent.stale")]
    AgentStale,
    #[serde(rename = "feed.stale")]
    FeedStale,
    #[serde(rename = "report.failed")]
    ReportFailed,
}

impl EventType {
    pub const ALL: [EventType; 8] = [
        EventType::FindingOpened,
        EventType::FindingKev,
        EventType::SlaDueSoon,
        EventType::SlaOverdue,
        EventType::AnalysisExpired,
        EventType::AgentStale,
        EventType::FeedStale,
        EventType::ReportFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::FindingOpened => "finding.opened",
            EventType::FindingKev => "finding.kev",
            EventType::SlaDueSoon => "sla.due_soon",
            EventType::SlaOverdue => "sla.overdue",
            EventType::AnalysisExpired => "analysis.expired",
            EventType::AgentStale => "agent.stale",
            EventType::FeedStale => "feed.stale",
            EventType::ReportFailed => "report.failed",
        }
    }

    pub fn parse(s: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|e| e.as_str() == s)
    }

    /// Whether the event is about one vulnerability (grouped per vulnerability, filtered by
    /// severity and KEV).
    pub fn is_about_vulnerability(self) -> bool {
        matches!(
            self,
            EventType::FindingOpened
                | EventType::FindingKev
                | EventType::SlaDueSoon
                | EventType::SlaOverdue
                | EventType::AnalysisExpired
        )
    }

    /// What a person reads as the subject.
    pub fn title(self) -> &'static str {
        match self {
            EventType::FindingOpened => "New vulnerability",
            EventType::FindingKev => "Actively exploited vulnerability (KEV)",
            EventType::SlaDueSoon => "Remediation due soon",
            EventType::SlaOverdue => "Remediation overdue",
            EventType::AnalysisExpired => "Analysis expired",
            EventType::AgentStale => "Host stopped reporting",
            EventType::FeedStale => "Vulnerability feed is stale",
            EventType::ReportFailed => "Inventory report failed",
        }
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One notification as receivers get it. `id` is the delivery id: the same on every attempt.
/// `data` carries the event's fields; a digest carries `items` (each such an object) instead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub id: Uuid,
    #[serde(rename = "type")]
    pub event: EventType,
    pub company_id: Uuid,
    pub occurred_at: DateTime<Utc>,
    pub data: Map<String, Value>,
}

impl Message {
    /// The items a message is about: a digest's `items`, or the message's data itself.
    pub fn items(&self) -> Vec<&Map<String, Value>> {
        match self.data.get("items").and_then(Value::as_array) {
            Some(items) => items.iter().filter_map(Value::as_object).collect(),
            None => vec![&self.data],
        }
    }

    pub fn is_digest(&self) -> bool {
        self.data.get("items").is_some_and(Value::is_array)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DestinationKind {
    Webhook,
    Slack,
    Teams,
    Email,
}

impl DestinationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DestinationKind::Webhook => "webhook",
            DestinationKind::Slack => "slack",
            DestinationKind::Teams => "teams",
            DestinationKind::Email => "email",
        }
    }

    pub fn parse(s: &str) -> Option<DestinationKind> {
        [
            DestinationKind::Webhook,
            DestinationKind::Slack,
            DestinationKind::Teams,
            DestinationKind::Email,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// Where a message goes, with the secret already unsealed (webhooks sign with it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub kind: DestinationKind,
    /// The URL of a webhook, Slack or Teams destination.
    pub url: Option<String>,
    /// The recipients of an e-mail destination.
    pub to: Vec<String>,
    pub secret: Option<String>,
}

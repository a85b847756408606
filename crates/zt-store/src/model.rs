//! The types that cross the storage interface. They carry no SQL and no backend detail, so the
//! SQLite and PostgreSQL backends (and the server above them) share them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use zt_advisory::{Cvss, Severity};
use zt_inventory::{OsInfo, Software, SoftwareKey};

/// Declares an id type over a UUID: its own type, so that a company id and an agent id cannot
/// be swapped for one another without the compiler noticing. Stored and serialized exactly
/// as the UUID it wraps.
macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        ///
        /// In the OpenAPI document a field of this type says `#[schema(value_type = Uuid)]`.
        #[derive(
            Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
            sqlx::Type,
        )]
        #[serde(transparent)]
        #[sqlx(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new time-ordered id (UUIDv7; see ARCHITECTURE.md on why ids are time-ordered).
            pub fn now_v7() -> Self {
                $name(Uuid::now_v7())
            }

            /// A new random id.
            pub fn new_v4() -> Self {
                $name(Uuid::new_v4())
            }

            pub fn as_uuid(&self) -> Uuid {
                self.0
            }

            pub fn as_bytes(&self) -> &[u8; 16] {
                self.0.as_bytes()
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Uuid {
                id.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, uuid::Error> {
                Uuid::parse_str(s).map($name)
            }
        }
    };
}

uuid_id!(
    /// A company (tenant).
    ///
    /// An agent id is not a company id:
    /// ```compile_fail
    /// fn scoped(company: zt_store::model::CompanyId) {}
    /// scoped(zt_store::model::AgentId::new_v4());
    /// ```
    CompanyId
);
uuid_id!(
    /// An enrolled agent (one host) of a company.
    AgentId
);
pub type ReportId = Uuid;

/// The SHA-256 of a secret token. Tokens are 256-bit random strings, so a fast hash suffices:
/// there is nothing to brute-force.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash(pub [u8; 32]);

/// What a user token may do inside its company.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything of the company and creates its tokens.
    Admin,
    /// Reads everything of the company.
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Viewer => "viewer",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }
}

/// Whoever a stored credential authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Principal {
    /// Sees and administers every company.
    Operator,
    /// A person (or script) of one company.
    User { company_id: CompanyId, role: Role },
    /// One enrolled host: posts inventories, reads nothing but its own report status.
    Agent {
        company_id: CompanyId,
        agent_id: AgentId,
    },
    /// The enroll secret of a company: enrolls agents and nothing else.
    Enroll { company_id: CompanyId },
}

impl Principal {
    pub fn company_id(&self) -> Option<CompanyId> {
        match *self {
            Principal::Operator => None,
            Principal::User { company_id, .. }
            | Principal::Agent { company_id, .. }
            | Principal::Enroll { company_id } => Some(company_id),
        }
    }
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Company {
    #[cfg_attr(feature = "openapi", schema(value_type = uuid::Uuid))]
    pub id: CompanyId,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

/// A dashboard session as sign-in creates it: the hash of its id (the cookie's value) and of
/// the token it was opened with.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub session_hash: TokenHash,
    pub token_hash: TokenHash,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// An agent as enrollment creates it.
#[derive(Debug, Clone)]
pub struct NewAgent {
    pub company_id: CompanyId,
    pub agent_id: AgentId,
    pub hostname: String,
    pub os: OsInfo,
    pub arch: String,
    pub agent_version: String,
    pub token_hash: TokenHash,
    pub enrolled_at: DateTime<Utc>,
}

/// Open findings counted by severity (`none` counts as `unknown`: no score says anything).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeverityCounts {
    pub critical: u64,
    pub high: u64,
    pub medium: u64,
    pub low: u64,
    pub unknown: u64,
}

impl SeverityCounts {
    pub fn add(&mut self, severity: Severity, n: u64) {
        match severity {
            Severity::Critical => self.critical += n,
            Severity::High => self.high += n,
            Severity::Medium => self.medium += n,
            Severity::Low => self.low += n,
            Severity::None | Severity::Unknown => self.unknown += n,
        }
    }

    pub fn total(&self) -> u64 {
        self.critical + self.high + self.medium + self.low + self.unknown
    }
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Agent {
    #[cfg_attr(feature = "openapi", schema(value_type = uuid::Uuid))]
    pub agent_id: AgentId,
    pub hostname: String,
    pub os: OsInfo,
    pub arch: String,
    pub agent_version: String,
    pub enrolled_at: DateTime<Utc>,
    pub last_seen_at: Option<DateTime<Utc>>,
    /// When the inventory now stored was processed.
    pub last_report_at: Option<DateTime<Utc>>,
    pub apps: u64,
    /// Open findings of this agent.
    pub findings: SeverityCounts,
    /// Open findings of this agent whose vulnerability is in CISA KEV.
    #[serde(default)]
    pub kev: u64,
    /// Open findings of this agent with a known fixed version.
    #[serde(default)]
    pub fixable: u64,
    /// Not seen (no report accepted, or since enrollment) for longer than the server's
    /// staleness threshold. Set by the server, which owns the threshold.
    #[serde(default)]
    pub stale: bool,
    /// Decommissioned (`DELETE …/agents/{aid}`): its token revoked, its findings resolved as
    /// `decommissioned`. Such an agent is out of the lists but its detail stays readable, and
    /// must say so (a host view showing old counts as if the host were still watched misleads).
    #[serde(default)]
    pub decommissioned: bool,
    /// When it was decommissioned.
    #[serde(default)]
    pub decommissioned_at: Option<DateTime<Utc>>,
}

// ---------------------------------------------------------------------------------------------
// Ingest and queue

/// A validated report the API accepts. `body` is the report JSON exactly as received
/// (after transport decompression); the worker parses it again.
#[derive(Debug, Clone)]
pub struct IncomingReport {
    pub company_id: CompanyId,
    pub agent_id: AgentId,
    pub report_id: ReportId,
    /// When the agent collected the inventory, as the store orders the agent's reports (a
    /// report collected before the stored inventory is stale). Never later than
    /// `accepted_at`: the API clamps a report from an agent clock ahead of the server's (see
    /// `zt_inventory::check_collected_at`), so one wrong clock cannot make every later report
    /// of the host look stale.
    pub collected_at: DateTime<Utc>,
    pub accepted_at: DateTime<Utc>,
    pub digest: [u8; 32],
    pub app_count: u32,
    pub body: Vec<u8>,
}

/// What became of one incoming report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcceptOutcome {
    /// Stored with its queue entry.
    Queued,
    /// The same inventory as the last one accepted from this agent: recorded as done at once,
    /// without a queue entry.
    Unchanged,
    /// This report id was accepted before from this agent: nothing stored again.
    Duplicate,
    /// The report id belongs to another agent of the company: refused.
    Conflict,
    /// The queue is at its bound: nothing stored.
    QueueFull,
}

/// Claim parameters. The claim takes the visible reports that waited longer than
/// `overdue_after` first, oldest first, then the newest ones, until their apps add up to
/// `max_apps` (always at least one report). Newest first keeps what hosts just sent live
/// (and lets a newer inventory make an agent's older queued ones stale); the overdue ones
/// first bound how long any report waits behind newer ones under a burst.
#[derive(Debug, Clone)]
pub struct ClaimRequest {
    /// A name unique to this claim's worker; finishing checks the lease is still ours.
    pub owner: String,
    pub max_apps: u32,
    pub lease: std::time::Duration,
    /// A report whose lease expired this often (its workers died) is dead-lettered instead.
    pub max_attempts: u32,
    /// Reports accepted longer ago than this are claimed first, oldest first.
    pub overdue_after: std::time::Duration,
    pub now: DateTime<Utc>,
}

/// One claimed queue entry with its report body.
#[derive(Debug, Clone)]
pub struct ClaimedReport {
    pub queue_id: i64,
    pub company_id: CompanyId,
    pub agent_id: AgentId,
    pub report_id: ReportId,
    /// Including this claim.
    pub attempts: u32,
    pub app_count: u32,
    /// The inventory digest computed when the report was accepted.
    pub digest: [u8; 32],
    /// The time the store orders this agent's reports by (see [`IncomingReport::collected_at`]):
    /// the worker applies the report as of this time, not the one in the body.
    pub collected_at: DateTime<Utc>,
    pub body: Vec<u8>,
}

/// Identifies a lease: the entry and the claim that holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRef {
    pub queue_id: i64,
    pub owner: String,
    pub attempts: u32,
}

/// A failed processing attempt.
#[derive(Debug, Clone)]
pub struct Failure {
    pub lease: LeaseRef,
    pub error: String,
    /// When to try again; `None` dead-letters the entry.
    pub retry_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueStats {
    /// Waiting entries (including those backing off before a retry).
    pub queued: u64,
    /// Entries held by a worker.
    pub leased: u64,
    pub dead: u64,
    /// Finished entries not yet purged.
    pub done: u64,
    /// When the longest-waiting entry still queued or leased was accepted (operations: the
    /// queue-age metric and its alert); `None` when nothing is pending.
    pub oldest_pending_at: Option<DateTime<Utc>>,
}

impl QueueStats {
    /// What counts against the queue bound.
    pub fn pending(&self) -> u64 {
        self.queued + self.leased
    }
}

/// One app of a processed report, reduced to what the store keeps per agent.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StoredApp {
    pub software_key: SoftwareKey,
    /// Empty when the report gave none.
    pub arch: String,
}

/// One vulnerability hitting one software version, as the match cache keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredMatch {
    pub vulnerability: VulnInfo,
    /// Versions that fix it for this software, possibly none.
    pub fixed_versions: Vec<String>,
    /// `osv-range`, `osv-version`, `nvd-cpe`.
    pub method: String,
    /// `low`, `medium`, `high`.
    pub confidence: String,
}

/// A software version the worker has just matched (or the rematcher re-matched).
#[derive(Debug, Clone)]
pub struct MatchedSoftware {
    pub key: SoftwareKey,
    pub software: Software,
    pub matches: Vec<StoredMatch>,
}

/// A parsed report ready to be applied to the agent's stored inventory.
#[derive(Debug, Clone)]
pub struct ProcessedReport {
    pub lease: LeaseRef,
    pub company_id: CompanyId,
    pub agent_id: AgentId,
    pub report_id: ReportId,
    pub collected_at: DateTime<Utc>,
    pub digest: [u8; 32],
    pub hostname: String,
    pub os: OsInfo,
    pub arch: String,
    pub apps: Vec<StoredApp>,
    /// Name and source of each distinct software key of the report, to tell changed apps
    /// (same name, other version) from added and removed ones.
    pub names: Vec<(SoftwareKey, String)>,
}

/// Everything one worker batch writes, in one transaction.
#[derive(Debug, Clone)]
pub struct ProcessedBatch {
    /// The knowledge revision the new match results come from.
    pub revision: u64,
    pub software: Vec<MatchedSoftware>,
    pub reports: Vec<ProcessedReport>,
    pub now: DateTime<Utc>,
}

/// How one report of a batch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportOutcome {
    /// The inventory was replaced by this report's.
    Applied {
        added: u32,
        removed: u32,
        changed: u32,
    },
    /// A newer inventory of this agent was stored already.
    Stale,
    /// Another worker holds this report now (our lease expired): nothing written.
    LeaseLost,
}

// ---------------------------------------------------------------------------------------------
// Knowledge changes

/// The result of re-matching software at a new knowledge revision: which (software, vulnerability)
/// pairs appeared and disappeared. Findings of every company follow it.
#[derive(Debug, Clone, Default)]
pub struct MatchDelta {
    pub appeared: Vec<(SoftwareKey, String)>,
    pub disappeared: Vec<(SoftwareKey, String)>,
    /// Pairs still matched whose severity, KEV flag or fix changed.
    pub changed: Vec<(SoftwareKey, String)>,
}

impl MatchDelta {
    pub fn is_empty(&self) -> bool {
        self.appeared.is_empty() && self.disappeared.is_empty() && self.changed.is_empty()
    }
}

/// What a vulnerability's findings show of KEV and EPSS (the `vulns` row), which KEV and EPSS
/// imports change without any advisory changing.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct VulnEnrichment {
    pub vuln_id: String,
    pub kev: bool,
    pub kev_due_date: Option<String>,
    pub epss: Option<f64>,
    pub epss_percentile: Option<f64>,
}

/// One step of a targeted reconciliation (see [`crate::Storage::reconcile_software`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconcileStep {
    /// The last agent of the step: the next one starts after it.
    pub last: AgentId,
    /// Agents of the step whose findings changed.
    pub agents: u64,
}

// ---------------------------------------------------------------------------------------------
// Reads

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub agents: u64,
    pub apps: u64,
    pub findings: SeverityCounts,
    /// Open findings whose vulnerability is in CISA KEV.
    pub kev: u64,
    /// Open findings with a known fixed version.
    pub fixable: u64,
    /// Open findings past their SLA due date (suppressed ones left out).
    #[serde(default)]
    pub overdue: u64,
    /// `overdue` by severity (they add up to it).
    #[serde(default)]
    pub overdue_by_severity: SeverityCounts,
    /// Open findings due within 7 days, not overdue yet.
    #[serde(default)]
    pub due_soon: u64,
    /// Open findings an analysis suppresses (left out of the counts above).
    #[serde(default)]
    pub suppressed: u64,
}

/// A page request: `cursor` is opaque, from a previous page's `next_cursor`.
#[derive(Debug, Clone, Default)]
pub struct PageRequest {
    pub limit: u32,
    pub cursor: Option<String>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppRow {
    pub name: String,
    pub version: String,
    pub ecosystem: String,
    pub source: String,
    pub arch: Option<String>,
    pub vendor: Option<String>,
    pub source_name: Option<String>,
    pub source_version: Option<String>,
    pub purl: Option<String>,
    pub cpe: Option<String>,
    pub first_seen: DateTime<Utc>,
    /// Open findings on this software version.
    pub findings: u64,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FindingStatus {
    #[default]
    Open,
    Resolved,
    All,
}

/// Filters of the findings list; all optional, combined with AND.
#[derive(Debug, Clone, Default)]
pub struct FindingFilter {
    /// Any of these severities (empty: all).
    pub severities: Vec<Severity>,
    pub kev: Option<bool>,
    pub fixable: Option<bool>,
    /// Substring of the package name, the vulnerability id or an alias, or the hostname.
    pub query: Option<String>,
    pub agent_id: Option<AgentId>,
    pub vuln_id: Option<String>,
    pub status: FindingStatus,
    pub sort: FindingSort,
    /// None: the sort's natural direction.
    pub order: Option<SortOrder>,
    /// Findings an analysis suppresses: left out by default.
    pub suppressed: crate::analysis::SuppressedFilter,
    /// Only findings on hosts carrying this tag.
    pub tag: Option<String>,
    /// Only findings due at or before a time (see [`crate::sla::SlaPolicy::due_by`]).
    pub due_by: Option<crate::sla::DueBy>,
}

/// The order of the findings list.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingSort {
    /// Most severe first, then by vulnerability id, host and package.
    #[default]
    Severity,
    /// Newest first.
    FirstSeen,
    /// Highest EPSS first (none last).
    Epss,
    /// Highest CVSS base score first (none last).
    Cvss,
    /// By hostname (ascending).
    Hostname,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PackageRef {
    pub name: String,
    pub version: String,
    pub ecosystem: String,
    pub source: String,
}

/// A vulnerability as the findings show it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VulnInfo {
    pub id: String,
    pub aliases: Vec<String>,
    pub summary: String,
    pub severity: Severity,
    pub cvss: Option<Cvss>,
    pub kev: bool,
    pub kev_due_date: Option<String>,
    pub epss: Option<f64>,
    pub epss_percentile: Option<f64>,
    pub informational: bool,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MatchInfo {
    pub method: String,
    pub confidence: String,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FindingRow {
    #[cfg_attr(feature = "openapi", schema(value_type = uuid::Uuid))]
    pub agent_id: AgentId,
    pub hostname: String,
    pub package: PackageRef,
    pub vulnerability: VulnInfo,
    pub fixed_versions: Vec<String>,
    #[serde(rename = "match")]
    pub match_info: MatchInfo,
    pub first_seen: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub resolution: Option<String>,
    /// The analysis covering this finding, if any.
    pub analysis: Option<crate::analysis::FindingAnalysis>,
    /// By when it must be fixed under the company's SLA (open findings).
    #[serde(default)]
    pub due_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub overdue: bool,
}

/// One host a vulnerability hits.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AffectedHost {
    #[cfg_attr(feature = "openapi", schema(value_type = uuid::Uuid))]
    pub agent_id: AgentId,
    pub hostname: String,
    pub package: PackageRef,
    pub fixed_versions: Vec<String>,
    pub first_seen: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
}

/// A vulnerability with the company's hosts it hits, one page of them at a time.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VulnDetail {
    pub vulnerability: VulnInfo,
    /// Links of the stored advisories of the group (advisory pages, fixes, reports).
    pub references: Vec<String>,
    /// Hosts with an open finding of it.
    pub hosts: u64,
    /// Open findings of it (a host may have it through several packages).
    pub findings: u64,
    /// The company's packages with an open finding of it.
    pub packages: Vec<VulnPackage>,
    /// Versions that fix it, over those packages.
    pub fixed_versions: Vec<String>,
    /// One page of the hosts it hits (open findings first, then resolved ones, by hostname).
    pub affected: Vec<AffectedHost>,
    /// The cursor of the next page of `affected`.
    pub next_cursor: Option<String>,
}

/// A package (name and ecosystem) with the versions of it that carry a vulnerability.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VulnPackage {
    pub name: String,
    pub ecosystem: String,
    pub versions: Vec<String>,
}

/// Which way a list is sorted; every sort has a natural direction (see its doc).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SortOrder {
    Asc,
    Desc,
}

/// The order of the agents list.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentSort {
    /// By hostname (ascending).
    #[default]
    Hostname,
    /// Riskiest first: most open KEV findings, then critical, high, medium, low.
    Risk,
    /// Most recently seen first (a report accepted, or else enrolled).
    LastSeen,
    /// By OS name, then hostname (ascending).
    Os,
}

/// Filters and order of the agents list; filters combine with AND.
#[derive(Debug, Clone, Default)]
pub struct AgentFilter {
    /// Substring of the hostname (ASCII case ignored).
    pub query: Option<String>,
    /// The OS id (`debian`, `ubuntu`, `windows`, ...), exactly.
    pub os: Option<String>,
    /// Only stale (true) or only fresh (false) agents: seen before `stale_before` or not.
    pub stale: Option<bool>,
    /// The staleness threshold (the server's setting applied to now).
    pub stale_before: Option<DateTime<Utc>>,
    /// Only hosts carrying this tag (set through the API or reported by the agent).
    pub tag: Option<String>,
    pub sort: AgentSort,
    /// None: the sort's natural direction.
    pub order: Option<SortOrder>,
}

/// One report of an agent, for its host's history.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportRecord {
    #[cfg_attr(feature = "openapi", schema(value_type = uuid::Uuid))]
    pub report_id: ReportId,
    pub status: ReportState,
    /// `applied`, `unchanged`, `stale` once done.
    pub outcome: Option<String>,
    pub collected_at: DateTime<Utc>,
    pub accepted_at: DateTime<Utc>,
    pub processed_at: Option<DateTime<Utc>>,
    /// Apps the report listed.
    pub apps: u64,
    pub attempts: u32,
    pub error: Option<String>,
}

/// The order of the software list.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SoftwareSort {
    /// Most hosts first.
    #[default]
    Hosts,
    /// By name, then version (ascending).
    Name,
    /// Riskiest first: most KEV vulnerabilities, then critical, high, medium, low.
    Risk,
}

/// Filters and order of the software list; filters combine with AND.
#[derive(Debug, Clone, Default)]
pub struct SoftwareFilter {
    /// Substring of the name (ASCII case ignored).
    pub query: Option<String>,
    /// Only versions with (true) or without (false) a known vulnerability.
    pub vulnerable: Option<bool>,
    pub sort: SoftwareSort,
    pub order: Option<SortOrder>,
}

/// One software version installed on the company's hosts.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SoftwareRow {
    pub name: String,
    pub version: String,
    pub ecosystem: String,
    pub source: String,
    pub source_name: Option<String>,
    pub purl: Option<String>,
    /// Hosts running this version now.
    pub hosts: u64,
    /// Known vulnerabilities of this version, by severity.
    pub vulnerabilities: SeverityCounts,
    /// Of those, the ones in CISA KEV.
    pub kev: u64,
}

/// The order of the vulnerabilities list.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VulnSort {
    /// Most severe first, then by id.
    #[default]
    Severity,
    /// Most affected hosts first.
    Hosts,
    /// Highest EPSS first (none last).
    Epss,
    /// Highest CVSS base score first (none last).
    Cvss,
}

/// Filters and order of the vulnerabilities list; filters combine with AND.
#[derive(Debug, Clone, Default)]
pub struct VulnFilter {
    /// Any of these severities (empty: all).
    pub severities: Vec<Severity>,
    pub kev: Option<bool>,
    /// Substring of the id or an alias, or of an affected package's name.
    pub query: Option<String>,
    pub sort: VulnSort,
    pub order: Option<SortOrder>,
}

/// One vulnerability with open findings in the company.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VulnRow {
    #[serde(flatten)]
    pub vulnerability: VulnInfo,
    /// Hosts with an open finding of it.
    pub hosts: u64,
    /// Open findings of it.
    pub findings: u64,
    /// The affected packages (at most 20).
    pub packages: Vec<VulnPackage>,
    /// Versions that fix it, over those packages (at most 20).
    pub fixed_versions: Vec<String>,
}

/// One day of a company's open findings, for trends: by severity, KEV, fixable, overdue (in
/// all and by severity: how far behind the SLA each severity was that day) and suppressed.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrendPoint {
    /// The UTC day.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Date, example = "2026-12-01"))]
    pub date: chrono::NaiveDate,
    pub critical: u64,
    pub high: u64,
    pub medium: u64,
    pub low: u64,
    pub unknown: u64,
    pub kev: u64,
    pub fixable: u64,
    /// Open findings past their SLA due date that day (suppressed ones left out).
    pub overdue: u64,
    /// `overdue` by severity (they add up to it; 0 on days recorded before it was kept).
    #[serde(default)]
    pub overdue_by_severity: SeverityCounts,
    pub suppressed: u64,
}

impl TrendPoint {
    /// The point of a summary (what "now" looks like).
    pub fn of(date: chrono::NaiveDate, s: &Summary) -> TrendPoint {
        TrendPoint {
            date,
            critical: s.findings.critical,
            high: s.findings.high,
            medium: s.findings.medium,
            low: s.findings.low,
            unknown: s.findings.unknown,
            kev: s.kev,
            fixable: s.fixable,
            overdue: s.overdue,
            overdue_by_severity: s.overdue_by_severity,
            suppressed: s.suppressed,
        }
    }
}

/// One company's counts, for the operator's view of every company.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompanyOverview {
    #[cfg_attr(feature = "openapi", schema(value_type = uuid::Uuid))]
    pub company_id: CompanyId,
    pub name: String,
    pub agents: u64,
    pub apps: u64,
    /// Open findings by severity.
    pub findings: SeverityCounts,
    pub kev: u64,
    pub fixable: u64,
    /// Agents not seen since the staleness threshold.
    pub stale_agents: u64,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReportState {
    Queued,
    Processing,
    Done,
    Failed,
}

impl ReportState {
    pub fn as_str(self) -> &'static str {
        match self {
            ReportState::Queued => "queued",
            ReportState::Processing => "processing",
            ReportState::Done => "done",
            ReportState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<ReportState> {
        Some(match s {
            "queued" => ReportState::Queued,
            "processing" => ReportState::Processing,
            "done" => ReportState::Done,
            "failed" => ReportState::Failed,
            _ => return None,
        })
    }
}

/// Processing timestamps of one report, for the agent that sent it (and load generators).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportStatus {
    #[cfg_attr(feature = "openapi", schema(value_type = uuid::Uuid))]
    pub report_id: ReportId,
    pub status: ReportState,
    /// `applied`, `unchanged`, `stale` once done.
    pub outcome: Option<String>,
    pub accepted_at: DateTime<Utc>,
    pub processed_at: Option<DateTime<Utc>>,
    pub attempts: u32,
    pub error: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Live events (issue 12): the durable event log behind the SSE streams

/// What an event reports. The names are the SSE `event:` types of DESIGN.md "Live events".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventKind {
    /// `report.processed` {report_id, agent_id, hostname, outcome, opened, resolved}
    #[serde(rename = "report.processed")]
    ReportProcessed,
    /// `findings.changed` {agent_id, hostname, opened:[…], resolved:[…], opened_total,
    /// resolved_total}
    #[serde(rename = "findings.changed")]
    FindingsChanged,
    /// `agent.enrolled` {agent_id, hostname}
    #[serde(rename = "agent.enrolled")]
    AgentEnrolled,
    /// `knowledge.updated` {revision}: about every company.
    #[serde(rename = "knowledge.updated")]
    KnowledgeUpdated,
    /// `analysis.changed` {analysis_id, vuln_id, state, status, change}
    #[serde(rename = "analysis.changed")]
    AnalysisChanged,
}

impl EventKind {
    pub const ALL: [EventKind; 5] = [
        EventKind::ReportProcessed,
        EventKind::FindingsChanged,
        EventKind::AgentEnrolled,
        EventKind::KnowledgeUpdated,
        EventKind::AnalysisChanged,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::ReportProcessed => "report.processed",
            EventKind::FindingsChanged => "findings.changed",
            EventKind::AgentEnrolled => "agent.enrolled",
            EventKind::KnowledgeUpdated => "knowledge.updated",
            EventKind::AnalysisChanged => "analysis.changed",
        }
    }

    pub fn parse(s: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// An event to append to the log. `data` is the event's JSON object; the log adds
/// `company_id` to it when the event belongs to a company.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// None: about every company (every stream gets it).
    pub company_id: Option<CompanyId>,
    pub kind: EventKind,
    pub data: serde_json::Map<String, serde_json::Value>,
}

/// An event as the log keeps it. Ids increase in commit order without gaps.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub id: u64,
    pub company_id: Option<CompanyId>,
    pub kind: EventKind,
    pub created_at: DateTime<Utc>,
    /// The JSON object as streamed (`data:` of the SSE message).
    pub data: String,
}

/// Where the log stands: ids up to `pruned_through` are gone (a reader behind it must
/// resync), `head` is the newest id handed out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventLogBounds {
    pub pruned_through: u64,
    pub head: u64,
}

// ---------------------------------------------------------------------------------------------
// The life of credentials, agents and companies (issue 17)

/// A user token as its company's admins see it (never its secret).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    pub token_id: Uuid,
    pub role: Role,
    pub name: Option<String>,
    pub created_at: DateTime<Utc>,
    /// When it was last used, to within a few minutes (recorded in batches, not per request).
    pub last_used_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A user token to store.
#[derive(Debug, Clone)]
pub struct NewUserToken {
    pub company_id: CompanyId,
    pub token_id: Uuid,
    pub role: Role,
    pub name: Option<String>,
    pub hash: TokenHash,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// What taking a credential away did: the hashes of the tokens revoked now (whose cached
/// principals and dashboard sessions are gone with them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Revoked {
    pub hashes: Vec<TokenHash>,
}

/// What decommissioning an agent did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decommissioned {
    /// The agent's tokens revoked now.
    pub revoked: Revoked,
    /// Its open findings, resolved as `decommissioned`.
    pub resolved_findings: u64,
    /// Its apps removed from the company's inventory.
    pub removed_apps: u64,
}

/// What purging a company deleted, per table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompanyPurged {
    pub revoked: Revoked,
    /// (table, rows deleted), in the order they went.
    pub tables: Vec<(String, u64)>,
}

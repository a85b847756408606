//! The types of analyses (issue 13) that cross the storage interface: decisions about one
//! vulnerability in a scope, in the CycloneDX VEX vocabulary, the audit trail, host tags.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::model::AgentId;

/// Declares a string enum with its wire names (CycloneDX VEX spellings), parsing and printing.
/// The wire names are `tt`, not `literal`: a `literal` fragment reaches the derives wrapped in
/// an invisible group, which utoipa does not read, so the OpenAPI document showed the Rust
/// variant names (`InTriage`) while serde took the wire names (`in_triage`).
macro_rules! wire_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $wire:tt),* $(,)? }) => {
        $(#[$doc])*
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $(#[serde(rename = $wire)] $variant,)*
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $wire,)*
                }
            }

            pub fn parse(s: &str) -> Option<$name> {
                match s {
                    $($wire => Some($name::$variant),)*
                    _ => None,
                }
            }

            /// The wire names, for error messages.
            pub fn names() -> String {
                [$($wire),*].join(", ")
            }
        }
    };
}

wire_enum!(
    /// What is known of a vulnerability's impact (CycloneDX `analysis.state`).
    AnalysisState {
        InTriage = "in_triage",
        Exploitable = "exploitable",
        NotAffected = "not_affected",
        FalsePositive = "false_positive",
        Resolved = "resolved",
    }
);

wire_enum!(
    /// Why a component is not affected (CycloneDX `analysis.justification`).
    Justification {
        CodeNotPresent = "code_not_present",
        CodeNotReachable = "code_not_reachable",
        RequiresConfiguration = "requires_configuration",
        RequiresDependency = "requires_dependency",
        RequiresEnvironment = "requires_environment",
        ProtectedByCompiler = "protected_by_compiler",
        ProtectedAtRuntime = "protected_at_runtime",
        ProtectedAtPerimeter = "protected_at_perimeter",
        ProtectedByMitigatingControl = "protected_by_mitigating_control",
    }
);

wire_enum!(
    /// What is done about it (CycloneDX `analysis.response`).
    VexResponse {
        CanNotFix = "can_not_fix",
        WillNotFix = "will_not_fix",
        Update = "update",
        Rollback = "rollback",
        WorkaroundAvailable = "workaround_available",
    }
);

wire_enum!(
    /// Where an analysis stands now.
    AnalysisStatus {
        Active = "active",
        Expired = "expired",
        Withdrawn = "withdrawn",
    }
);

/// A package an analysis is limited to: its name, and optionally one version and ecosystem.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageScope {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ecosystem: Option<String>,
}

/// Which findings of the vulnerability an analysis covers: every condition given must hold
/// (an agent of the list, a host carrying one of the tags, the package); empty: every host
/// of the company.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnalysisScope {
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Uuid>))]
    pub agent_ids: Vec<AgentId>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub package: Option<PackageScope>,
}

/// The decision fields an analysis carries (what a create sets and a change replaces).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalysisDecision {
    pub scope: AnalysisScope,
    pub state: AnalysisState,
    pub justification: Option<Justification>,
    pub response: Vec<VexResponse>,
    pub details: Option<String>,
    pub suppress: bool,
    pub expires_at: Option<DateTime<Utc>>,
}

/// An analysis to store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAnalysis {
    pub analysis_id: Uuid,
    /// Any id or alias of the vulnerability's group.
    pub vuln_id: String,
    pub decision: AnalysisDecision,
    /// Where it came from (a VEX document's author); None when made here.
    pub source: Option<String>,
}

/// A stored analysis.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    pub analysis_id: Uuid,
    /// The vulnerability group's id (as findings name it).
    pub vuln_id: String,
    /// The id it was created with.
    pub requested_id: String,
    pub scope: AnalysisScope,
    pub state: AnalysisState,
    pub justification: Option<Justification>,
    pub response: Vec<VexResponse>,
    pub details: Option<String>,
    pub suppress: bool,
    pub expires_at: Option<DateTime<Utc>>,
    pub status: AnalysisStatus,
    pub source: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub withdrawn_at: Option<DateTime<Utc>>,
}

impl Analysis {
    pub fn decision(&self) -> AnalysisDecision {
        AnalysisDecision {
            scope: self.scope.clone(),
            state: self.state,
            justification: self.justification,
            response: self.response.clone(),
            details: self.details.clone(),
            suppress: self.suppress,
            expires_at: self.expires_at,
        }
    }
}

/// The analysis covering a finding, as the finding shows it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FindingAnalysis {
    pub analysis_id: Uuid,
    pub state: AnalysisState,
    pub justification: Option<Justification>,
    /// Whether the finding is hidden from counts and lists by default.
    pub suppressed: bool,
    pub expires_at: Option<DateTime<Utc>>,
}

/// Which analyses a list shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AnalysisFilter {
    /// Only these (None: every status).
    pub status: Option<AnalysisStatus>,
    /// Only those of this vulnerability (any id or alias of its group).
    pub vuln_id: Option<String>,
}

/// Who made a change: the kind of credential, the token's id (a prefix of its hash, never
/// the token) and the role.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub kind: String,
    pub token_id: Option<String>,
    pub role: Option<String>,
}

/// A host's tags and where each came from: `assigned` through the API (`PUT …/tags`),
/// `reported` by the agent with its inventory (`--tag`). A tag is the host's when either
/// source has it; each source replaces only its own set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentTags {
    pub assigned: Vec<String>,
    pub reported: Vec<String>,
}

impl AgentTags {
    /// The host's tags: both sources together, sorted, without repeats.
    pub fn effective(&self) -> Vec<String> {
        let mut all: Vec<String> = self
            .assigned
            .iter()
            .chain(self.reported.iter())
            .cloned()
            .collect();
        all.sort();
        all.dedup();
        all
    }
}

/// The who, when and why of a change, written to the audit trail in its transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeContext {
    pub actor: Actor,
    pub at: DateTime<Utc>,
    pub comment: Option<String>,
}

/// One entry of a company's audit trail.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub id: u64,
    pub at: DateTime<Utc>,
    pub actor: Actor,
    /// `analysis.created`, `analysis.updated`, `analysis.withdrawn`, `analysis.expired`,
    /// `agent.tags_set`, `token.created`, …
    pub action: String,
    /// What changed: `analysis/<id>`, `agent/<id>`, `token/<id>`.
    pub object: String,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
    pub comment: Option<String>,
}

/// An audit entry to append.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAudit {
    pub action: String,
    pub object: String,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

/// Which findings a list shows by their suppression.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SuppressedFilter {
    /// Only findings no analysis suppresses (the default).
    #[default]
    Exclude,
    /// Every finding.
    Include,
    /// Only suppressed findings.
    Only,
}

/// What an import of analyses did.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportOutcome {
    /// Analyses created.
    pub created: u64,
    /// Vulnerability ids no advisory of this server has (their statements were skipped).
    pub unknown: Vec<String>,
}

//! The storage interface. The server only ever holds an `Arc<dyn Storage>`; SQLite implements it
//! today and PostgreSQL next.
//!
//! Invariants every backend keeps (the conformance tests in `tests/conformance/` check them):
//! - Tenant data (agents, reports, apps, findings) is keyed by company first, and every tenant
//!   method takes the company id: a foreign id reads as missing. No query joins across companies.
//!   Shared tables are the credentials index (token hash → principal), the queue, the
//!   deduplicated software versions with their cached match results, and the knowledge base.
//! - [`Storage::accept_reports`] stores a report and its queue entry in one transaction, so
//!   an answer of 202 means both are durable; a refused report leaves nothing behind.
//! - Queue entries move `queued → leased → done | queued (retry) | dead`. A lease has an expiry;
//!   an expired lease is claimed again (counting an attempt) and after `max_attempts` the entry is
//!   dead-lettered. Finishing or failing checks the lease is still the caller's.
//! - [`Storage::finish_batch`] writes a whole batch in one transaction and applies the reports of
//!   one agent one at a time: a report older than the stored inventory is skipped as stale.
//! - Match results are cached per software version together with the knowledge revision they
//!   came from; software matched at an older revision is found by [`Storage::software_to_rematch`].

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use zt_advisory::KnowledgeBase;
use zt_inventory::{Software, SoftwareKey};

use crate::model::*;
use crate::Result;

#[async_trait]
pub trait Storage: Send + Sync + 'static {
    /// A short name of the backend for logs (`sqlite`, `postgres`).
    fn backend(&self) -> &'static str;

    /// Cheap liveness check of the database connection.
    async fn ping(&self) -> Result<()>;

    /// Periodic backend upkeep, called by the server about four times a second (SQLite: a
    /// passive WAL checkpoint, so that committing writers do not pay for it; PostgreSQL with
    /// autovacuum off: table statistics, every 10 s at most).
    async fn housekeeping(&self) -> Result<()>;

    // --- operator token and settings -------------------------------------------------------

    /// The stored hash of the generated operator token, if one was generated.
    async fn operator_token_hash(&self) -> Result<Option<TokenHash>>;

    /// Stores the operator token hash unless one exists; returns false when one existed
    /// (another process won the race: its token stands).
    async fn init_operator_token(&self, hash: TokenHash) -> Result<bool>;

    // --- companies and credentials ---------------------------------------------------------

    async fn create_company(&self, company: &Company, enroll_secret_hash: TokenHash) -> Result<()>;

    async fn list_companies(&self) -> Result<Vec<Company>>;

    async fn get_company(&self, company_id: CompanyId) -> Result<Option<Company>>;

    /// Stores a user token of a company. False when the company does not exist.
    async fn create_user_token(
        &self,
        company_id: CompanyId,
        role: Role,
        hash: TokenHash,
        now: DateTime<Utc>,
    ) -> Result<bool>;

    /// Who a token hash belongs to (operator tokens from the environment are the server's
    /// business, not the store's).
    async fn resolve_token(&self, hash: TokenHash) -> Result<Option<Principal>>;

    // --- dashboard sessions ----------------------------------------------------------------

    /// Stores a dashboard session (its id hashed) bound to the token it was opened with.
    async fn create_session(&self, session: &NewSession) -> Result<()>;

    /// The hash of the token a session was opened with; None when the session is unknown,
    /// ended or expired at `now`. The caller resolves that token again (see
    /// [`Storage::resolve_token`]): a revoked token's sessions authorize nothing.
    async fn resolve_session(
        &self,
        session_hash: TokenHash,
        now: DateTime<Utc>,
    ) -> Result<Option<TokenHash>>;

    /// Ends a session (sign-out); false when there was none.
    async fn end_session(&self, session_hash: TokenHash) -> Result<bool>;

    /// Ends every session opened with a token (when the token is revoked); how many.
    async fn end_token_sessions(&self, token_hash: TokenHash) -> Result<u64>;

    /// Deletes the sessions expired at `now`; how many.
    async fn purge_sessions(&self, now: DateTime<Utc>) -> Result<u64>;

    /// Creates the agent and its token. False when the company does not exist.
    async fn enroll_agent(&self, agent: &NewAgent) -> Result<bool>;

    // --- ingest and queue ------------------------------------------------------------------

    /// Accepts reports in one transaction (group commit); one outcome per report, in order.
    /// `queue_bound` caps the pending entries (queued + leased): reports beyond it are refused
    /// with [`AcceptOutcome::QueueFull`] and leave nothing stored.
    async fn accept_reports(
        &self,
        reports: &[IncomingReport],
        queue_bound: u64,
    ) -> Result<Vec<AcceptOutcome>>;

    /// Leases visible entries (queued, or leased with an expired lease): those waiting
    /// longer than the request's bound oldest first, then the newest.
    async fn claim_batch(&self, request: &ClaimRequest) -> Result<Vec<ClaimedReport>>;

    /// Puts leased entries back without counting the attempt (graceful shutdown).
    async fn release(&self, leases: &[LeaseRef]) -> Result<()>;

    /// Records failed attempts: retried later, or dead-lettered (report status `failed`).
    async fn fail(&self, failures: &[Failure], now: DateTime<Utc>) -> Result<()>;

    /// Writes a processed batch in one transaction (see the trait documentation); one outcome
    /// per report of the batch, in order.
    async fn finish_batch(&self, batch: &ProcessedBatch) -> Result<Vec<ReportOutcome>>;

    async fn queue_stats(&self) -> Result<QueueStats>;

    /// Signals that reports were queued, by any process (PostgreSQL: LISTEN/NOTIFY), so idle
    /// workers wake at once; None where the backend has no such signal (workers poll).
    async fn queue_notifications(&self) -> Result<Option<tokio::sync::mpsc::Receiver<()>>> {
        Ok(None)
    }

    /// Deletes finished queue entries and processed report records finished before `before`;
    /// returns how many queue entries went.
    async fn purge_finished(&self, before: DateTime<Utc>) -> Result<u64>;

    /// Deletes history older than `before`: findings resolved before it, and apps removed
    /// before it where the backend keeps removed apps (PostgreSQL). Works in small
    /// transactions so that ingest never waits on it; returns the rows deleted.
    async fn purge_history(&self, before: DateTime<Utc>) -> Result<u64>;

    /// Processing state of a report, for the agent that sent it.
    async fn report_status(
        &self,
        company_id: CompanyId,
        agent_id: AgentId,
        report_id: ReportId,
    ) -> Result<Option<ReportStatus>>;

    // --- match cache -----------------------------------------------------------------------

    /// Of `keys`, those never matched before (unknown to the store). Software matched at an
    /// older revision is not among them: its cached results serve until the rematch updates
    /// them together with every company's findings.
    async fn unmatched_software(&self, keys: &[SoftwareKey]) -> Result<Vec<SoftwareKey>>;

    /// Software versions matched at a revision older than `revision`, in key order after
    /// `after`, at most `limit`.
    async fn software_to_rematch(
        &self,
        revision: u64,
        after: Option<SoftwareKey>,
        limit: u32,
    ) -> Result<Vec<(SoftwareKey, Software)>>;

    /// Replaces the cached matches of these software versions with results of `revision` and
    /// returns what changed. Software already matched at a newer revision is left alone. When
    /// anything changed, findings are marked as needing reconciliation (durably, in the same
    /// transaction), so a crash before [`Storage::reconcile_findings`] ran loses nothing.
    async fn store_rematch(&self, results: &[MatchedSoftware], revision: u64)
        -> Result<MatchDelta>;

    /// Some(generation) when cached matches changed since findings were last reconciled.
    async fn reconcile_pending(&self) -> Result<Option<u64>>;

    /// Makes the findings of up to `limit` agents of a company (in id order after `after`)
    /// agree with the cached matches of their apps: opens missing findings, refreshes
    /// severity/KEV/fix columns, resolves (`not_affected`) findings no longer matched.
    /// Returns the last agent handled, None when there were no more.
    async fn reconcile_findings(
        &self,
        company_id: CompanyId,
        after: Option<AgentId>,
        limit: u32,
        now: DateTime<Utc>,
    ) -> Result<Option<AgentId>>;

    /// Records that every company was reconciled for `generation` (the software versions
    /// waiting for [`Storage::reconcile_software`] are done too).
    async fn mark_reconciled(&self, generation: u64) -> Result<()>;

    // --- targeted re-match (issue 15; the driver is `zt_store::rematch`) --------------------

    /// The knowledge revision every software version was last brought to (None: never, or
    /// from a version that did not record it).
    async fn rematch_base(&self) -> Result<Option<u64>>;

    async fn set_rematch_base(&self, revision: u64) -> Result<()>;

    /// Ids of the advisories written (added, changed, withdrawn) by imports after `revision`.
    async fn advisories_changed_since(&self, revision: u64) -> Result<Vec<String>>;

    /// Software versions whose cached matches are of a vulnerability with one of these ids,
    /// as its id or one of its aliases.
    async fn software_of_vulns(&self, ids: &[String]) -> Result<Vec<SoftwareKey>>;

    /// Marks the cached matches of these versions as valid at `revision` when they were made
    /// at `since` or later (what changed since cannot change them); returns how many.
    async fn confirm_matches(&self, keys: &[SoftwareKey], since: u64, revision: u64)
        -> Result<u64>;

    /// KEV and EPSS of every vulnerability the cached matches name.
    async fn vuln_enrichment(&self) -> Result<Vec<VulnEnrichment>>;

    /// Writes new KEV/EPSS data of vulnerabilities; a changed KEV flag changes the cached
    /// matches' flag and leaves their software versions waiting for
    /// [`Storage::reconcile_software`] (durably, as [`Storage::store_rematch`] does).
    async fn update_enrichment(&self, changes: &[VulnEnrichment], revision: u64) -> Result<()>;

    /// Software versions waiting for their hosts' findings to be reconciled.
    async fn pending_software(&self) -> Result<u64>;

    /// Makes the findings of the software versions waiting for it agree with their cached
    /// matches, for up to `limit` agents of a company holding one of them (an app or an open
    /// finding of a waiting version; in id order after `after`; other agents are skipped): opens
    /// missing findings, refreshes severity/KEV/fix, resolves (`not_affected`) those no longer
    /// matched, brings the counters of only the agents whose findings changed up to date, and
    /// writes the `finding.opened` / `finding.kev` notifications in the same transaction.
    /// None when there are no more agents, or (on the first call, `after` None) when the
    /// company has none of those versions.
    async fn reconcile_software(
        &self,
        company_id: CompanyId,
        after: Option<AgentId>,
        limit: u32,
        now: DateTime<Utc>,
    ) -> Result<Option<ReconcileStep>>;

    // --- knowledge (tables and loading owned by the knowledge module) ----------------------

    /// The knowledge revision: bumped by every change of advisories, KEV or EPSS.
    async fn knowledge_revision(&self) -> Result<u64>;

    /// Everything the match index is built from, at the current revision.
    async fn load_knowledge(&self) -> Result<KnowledgeBase>;

    // --- company-scoped reads --------------------------------------------------------------

    async fn summary(&self, company_id: CompanyId) -> Result<Summary>;

    /// The company's agents, filtered and sorted (`stale` is left false: the server sets it).
    async fn list_agents(
        &self,
        company_id: CompanyId,
        filter: &AgentFilter,
        page: &PageRequest,
    ) -> Result<Page<Agent>>;

    async fn get_agent(&self, company_id: CompanyId, agent_id: AgentId) -> Result<Option<Agent>>;

    /// None when the agent does not exist in this company.
    async fn list_apps(
        &self,
        company_id: CompanyId,
        agent_id: AgentId,
        page: &PageRequest,
    ) -> Result<Option<Page<AppRow>>>;

    async fn list_findings(
        &self,
        company_id: CompanyId,
        filter: &FindingFilter,
        page: &PageRequest,
    ) -> Result<Page<FindingRow>>;

    /// A vulnerability (by id or alias) with one page of the company's hosts it hits; None
    /// unless the company has (or had) a finding of it, so that existence elsewhere never
    /// shows.
    async fn vulnerability(
        &self,
        company_id: CompanyId,
        id: &str,
        page: &PageRequest,
    ) -> Result<Option<VulnDetail>>;

    // --- the dashboard's views (issue 12) ----------------------------------------------------

    /// An agent's reports, newest accepted first (those the queue retention keeps); None when
    /// the agent does not exist in this company.
    async fn list_reports(
        &self,
        company_id: CompanyId,
        agent_id: AgentId,
        page: &PageRequest,
    ) -> Result<Option<Page<ReportRecord>>>;

    /// The distinct software versions installed on the company's hosts, with how many hosts
    /// run each (kept per company as apps come and go, never counted from the apps).
    async fn list_software(
        &self,
        company_id: CompanyId,
        filter: &SoftwareFilter,
        page: &PageRequest,
    ) -> Result<Page<SoftwareRow>>;

    /// One row per vulnerability with open findings in the company.
    async fn list_vulnerabilities(
        &self,
        company_id: CompanyId,
        filter: &VulnFilter,
        page: &PageRequest,
    ) -> Result<Page<VulnRow>>;

    /// The company's stored daily points from `since` on, oldest first.
    async fn trends(
        &self,
        company_id: CompanyId,
        since: chrono::NaiveDate,
    ) -> Result<Vec<TrendPoint>>;

    /// Writes (or rewrites) every company's point of `at`'s UTC day from its maintained
    /// counters, one short statement per company, with the findings overdue at `at` (in all
    /// and per severity) and those suppressed, and deletes points before `keep_from`; returns
    /// the companies written.
    async fn record_trends(&self, at: DateTime<Utc>, keep_from: chrono::NaiveDate) -> Result<u64>;

    /// Every company with its counts (the operator's view), by name.
    async fn overview(&self, stale_before: DateTime<Utc>) -> Result<Vec<CompanyOverview>>;

    // --- live events (issue 12): the durable event log behind the SSE streams ---------------
    //
    // Events are appended in the same transaction as the change they report (a processed
    // batch, an enrollment), as its last statement: ids increase in commit order without
    // gaps, so a reader that has seen id N has seen everything before it, on any process.

    /// Events with ids above `after`, in id order, at most `limit`: those of `company` and
    /// the ones about every company, or with None every company's.
    async fn events_after(
        &self,
        company: Option<CompanyId>,
        after: u64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>>;

    /// The newest id handed out and the newest id pruned.
    async fn event_log_bounds(&self) -> Result<EventLogBounds>;

    /// Appends events in a transaction of their own, for changes that have none in the
    /// store (e.g. a knowledge revision a server finished re-matching); returns the head.
    async fn append_events(&self, events: &[NewEvent], now: DateTime<Utc>) -> Result<u64>;

    /// Deletes the events created before `before`, oldest first in short transactions (the
    /// log stays one contiguous range); returns how many went.
    async fn prune_events(&self, before: DateTime<Utc>) -> Result<u64>;

    /// A receiver that gets `()` after a transaction that appended events committed (SQLite:
    /// in this process; PostgreSQL: in any process, through LISTEN/NOTIFY). Readers still
    /// poll now and then: a wake-up may be coalesced, or lost while a connection reconnects.
    async fn event_notifications(&self) -> Result<tokio::sync::mpsc::Receiver<()>>;

    // --- the life of credentials, agents and companies (issue 17) ---------------------------
    //
    // Every change that takes authority away (a revocation, a decommissioning, a purge) ends
    // the dashboard sessions of the tokens concerned and bumps the credentials revision in the
    // same transaction: API processes watch it and drop their cached credentials.

    /// Stores a user token with its id, name and expiry. False when the company does not exist.
    async fn create_token(&self, token: &NewUserToken) -> Result<bool>;

    /// A company's user tokens, oldest first (revoked ones included).
    async fn list_tokens(&self, company_id: CompanyId) -> Result<Vec<TokenInfo>>;

    /// Revokes a user token of the company; None when the company has no such token (a token
    /// revoked before revokes nothing more and answers an empty list).
    async fn revoke_token(
        &self,
        company_id: CompanyId,
        token_id: uuid::Uuid,
        now: DateTime<Utc>,
    ) -> Result<Option<Revoked>>;

    /// Revokes an agent's live tokens and, with `new`, gives it that one instead (rotation).
    /// None when the company has no such live (not decommissioned) agent.
    async fn replace_agent_token(
        &self,
        company_id: CompanyId,
        agent_id: AgentId,
        new: Option<TokenHash>,
        now: DateTime<Utc>,
    ) -> Result<Option<Revoked>>;

    /// Decommissions an agent: its tokens revoked, its open findings resolved as
    /// `decommissioned`, its apps removed from the company's counts, its pending reports
    /// dropped, a `findings.changed` event when findings moved. None when the company has no
    /// such live agent.
    async fn decommission_agent(
        &self,
        company_id: CompanyId,
        agent_id: AgentId,
        now: DateTime<Utc>,
    ) -> Result<Option<Decommissioned>>;

    /// Replaces a company's enroll secret (the old one stops enrolling at once). None when the
    /// company does not exist.
    async fn replace_enroll_secret(
        &self,
        company_id: CompanyId,
        new: TokenHash,
        now: DateTime<Utc>,
    ) -> Result<Option<Revoked>>;

    /// Deletes a company with every row that carries its id (every table with a `company_id`
    /// column, found in the schema, so that tables added later are purged too) and the
    /// sessions of its tokens. None when it does not exist.
    async fn delete_company(&self, company_id: CompanyId) -> Result<Option<CompanyPurged>>;

    /// The credentials revision: changes whenever a credential loses authority.
    async fn credentials_revision(&self) -> Result<u64>;

    /// Records when tokens were last used (batched by the server, a few times an hour per
    /// token at most); an older time never overwrites a newer one.
    async fn touch_tokens(&self, used: &[(TokenHash, DateTime<Utc>)]) -> Result<()>;

    /// A secret of this deployment kept in the store under `name` (shared by every server
    /// process, e.g. the key that signs credentials cached in Redis): the stored one, or
    /// `proposed` when none was stored yet (the first process to ask stores it).
    async fn deployment_secret(&self, name: &str, proposed: &str) -> Result<String>;
    // --- feeds (issue 15): imports and sync bookkeeping, one process for deployment-wide jobs

    /// Imports knowledge records in one transaction (rules: `crate::knowledge`).
    async fn import_knowledge(
        &self,
        batch: crate::knowledge::KnowledgeImport,
    ) -> Result<crate::knowledge::ImportSummary>;

    /// The sync state of one feed, if it was ever synced or imported.
    async fn feed_state(&self, feed: &str) -> Result<Option<crate::knowledge::FeedState>>;

    /// Every feed's sync state, by name.
    async fn feed_states(&self) -> Result<Vec<crate::knowledge::FeedState>>;

    /// Creates or replaces a feed's sync state.
    async fn save_feed_state(&self, state: &crate::knowledge::FeedState) -> Result<()>;

    /// The deployment-wide hold on the job `name`, or `None` while another process (or task)
    /// holds it (PostgreSQL: an advisory lock; SQLite: within the process).
    async fn try_exclusive(&self, name: &str) -> Result<Option<crate::exclusive::ExclusiveGuard>>;

    /// Every stored EPSS score, by CVE (`load_knowledge` keeps only those advisories name).
    async fn epss_scores(&self) -> Result<Vec<zt_advisory::EpssScore>>;
    // --- analyses, host tags and the audit trail (issue 13) ---------------------------------
    //
    // Every change appends its audit entry (and, for analyses, an `analysis.changed` event)
    // in its own transaction, and brings the covered findings and the agents' counters up to
    // date there: counts are right at the commit.

    /// Stores an analysis of the vulnerability group `new.vuln_id` names (an id or an alias);
    /// `StoreError::Invalid` (field `vuln_id`) when the store knows no such vulnerability.
    async fn create_analysis(
        &self,
        company_id: CompanyId,
        new: &crate::analysis::NewAnalysis,
        ctx: &crate::analysis::ChangeContext,
    ) -> Result<crate::analysis::Analysis>;

    /// The company's analyses, newest first.
    async fn list_analyses(
        &self,
        company_id: CompanyId,
        filter: &crate::analysis::AnalysisFilter,
        page: &PageRequest,
        now: DateTime<Utc>,
    ) -> Result<Page<crate::analysis::Analysis>>;

    async fn get_analysis(
        &self,
        company_id: CompanyId,
        analysis_id: uuid::Uuid,
        now: DateTime<Utc>,
    ) -> Result<Option<crate::analysis::Analysis>>;

    /// Replaces the decision of an analysis (not withdrawn); None when there is none.
    async fn update_analysis(
        &self,
        company_id: CompanyId,
        analysis_id: uuid::Uuid,
        decision: &crate::analysis::AnalysisDecision,
        ctx: &crate::analysis::ChangeContext,
    ) -> Result<Option<crate::analysis::Analysis>>;

    /// Withdraws an analysis (kept, with its history); None when there is none or it was
    /// withdrawn already.
    async fn withdraw_analysis(
        &self,
        company_id: CompanyId,
        analysis_id: uuid::Uuid,
        ctx: &crate::analysis::ChangeContext,
    ) -> Result<Option<crate::analysis::Analysis>>;

    /// Applies the expiry of every analysis whose `expires_at` has passed at `now` and was not
    /// applied yet: its findings come back, an `analysis.changed` event and an audit entry
    /// are written. Returns how many expired.
    async fn expire_analyses(&self, now: DateTime<Utc>) -> Result<u64>;

    /// Replaces the tags of an agent set through the API (those its agent reports stay);
    /// None when the agent does not exist in this company.
    async fn set_agent_tags(
        &self,
        company_id: CompanyId,
        agent_id: AgentId,
        tags: &[String],
        ctx: &crate::analysis::ChangeContext,
    ) -> Result<Option<crate::analysis::AgentTags>>;

    /// Replaces the tags an agent reported with its inventory (those set through the API
    /// stay), audited with `ctx` (the agent's); Some(false) when they are the ones it
    /// reported before (nothing written), None when the agent does not exist in this company.
    async fn set_reported_tags(
        &self,
        company_id: CompanyId,
        agent_id: AgentId,
        tags: &[String],
        ctx: &crate::analysis::ChangeContext,
    ) -> Result<Option<bool>>;

    /// An agent's tags by source; None when the agent does not exist in this company.
    async fn agent_tags(
        &self,
        company_id: CompanyId,
        agent_id: AgentId,
    ) -> Result<Option<crate::analysis::AgentTags>>;

    /// Appends an audit entry of a change made elsewhere (a token created).
    async fn append_audit(
        &self,
        company_id: CompanyId,
        entry: &crate::analysis::NewAudit,
        ctx: &crate::analysis::ChangeContext,
    ) -> Result<()>;

    /// The company's audit trail, newest first.
    async fn list_audit(
        &self,
        company_id: CompanyId,
        page: &PageRequest,
    ) -> Result<Page<crate::analysis::AuditEntry>>;
    // --- SLA (issue 13) ----------------------------------------------------------------------

    /// The company's SLA policy (the defaults when none was set).
    async fn sla_policy(&self, company_id: CompanyId) -> Result<crate::sla::SlaPolicy>;

    /// Replaces the company's SLA policy (audited); `StoreError::Invalid` names a field out
    /// of range.
    async fn set_sla_policy(
        &self,
        company_id: CompanyId,
        policy: &crate::sla::SlaPolicy,
        ctx: &crate::analysis::ChangeContext,
    ) -> Result<()>;

    /// How many findings a filter keeps.
    async fn count_findings(&self, company_id: CompanyId, filter: &FindingFilter) -> Result<u64>;

    /// `(severity, first_seen, resolved_at)` of the company's findings remediated since
    /// `since`: the package removed (`removed`) or upgraded to a version without the
    /// vulnerability (`fixed`). An upgrade that still has it (`superseded`: the finding goes on
    /// in the new version's row, first seen kept) is not a remediation, nor is a decommissioned
    /// host or a changed advisory (`not_affected`).
    async fn remediation_rows(
        &self,
        company_id: CompanyId,
        since: DateTime<Utc>,
    ) -> Result<Vec<(zt_advisory::Severity, DateTime<Utc>, DateTime<Utc>)>>;
    /// Stores analyses (a VEX import) in one transaction: all are checked first and a bad one
    /// refuses them all; statements about vulnerabilities the store does not know are skipped
    /// and named in the outcome.
    async fn import_analyses(
        &self,
        company_id: CompanyId,
        list: &[crate::analysis::NewAnalysis],
        ctx: &crate::analysis::ChangeContext,
    ) -> Result<crate::analysis::ImportOutcome>;
    // --- notifications (issue 14) ----------------------------------------------------------

    /// Rules, outbox, claims and the delivery log (see [`crate::notify`]).
    fn notifications(&self) -> &dyn crate::notify::NotificationStore;
}

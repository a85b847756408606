//! The `Storage` implementation both backends share: every trait method calls the backend's
//! inherent `<method>_impl` of the same signature.

/// Implements `Storage` for `$store`, whose inherent methods `<method>_impl` carry the trait's
/// signatures. `$write` wraps the calls of the writing methods that may have to run again
/// (PostgreSQL: `retry_on_conflict!`; SQLite, whose writers take turns: `once!`). `$extra` are
/// the methods the backend implements itself (`backend`, `housekeeping`, ...).
macro_rules! delegate_storage {
    ($store:ty, $write:ident, { $($extra:tt)* }) => {
        const _: () = {
            use chrono::{DateTime, Utc};
            use zt_advisory::KnowledgeBase;
            use zt_inventory::{Software, SoftwareKey};
            use $crate::model::*;
            use $crate::Result;

            #[async_trait::async_trait]
            impl $crate::storage::Storage for $store {
                $($extra)*

                async fn ping(&self) -> Result<()> {
                    sqlx::query("SELECT 1").execute(&self.pool).await?;
                    Ok(())
                }

                async fn operator_token_hash(&self) -> Result<Option<TokenHash>> {
                    self.operator_token_hash_impl().await
                }

                async fn init_operator_token(&self, hash: TokenHash) -> Result<bool> {
                    self.init_operator_token_impl(hash).await
                }

                async fn create_company(
                    &self,
                    company: &Company,
                    enroll_secret_hash: TokenHash,
                ) -> Result<()> {
                    self.create_company_impl(company, enroll_secret_hash).await
                }

                async fn list_companies(&self) -> Result<Vec<Company>> {
                    self.list_companies_impl().await
                }

                async fn get_company(&self, company_id: CompanyId) -> Result<Option<Company>> {
                    self.get_company_impl(company_id).await
                }

                async fn create_user_token(
                    &self,
                    company_id: CompanyId,
                    role: Role,
                    hash: TokenHash,
                    now: DateTime<Utc>,
                ) -> Result<bool> {
                    self.create_user_token_impl(company_id, role, hash, now).await
                }

                async fn resolve_token(&self, hash: TokenHash) -> Result<Option<Principal>> {
                    self.resolve_token_impl(hash).await
                }

                async fn create_session(&self, session: &NewSession) -> Result<()> {
                    self.create_session_impl(session).await
                }

                async fn resolve_session(
                    &self,
                    session_hash: TokenHash,
                    now: DateTime<Utc>,
                ) -> Result<Option<TokenHash>> {
                    self.resolve_session_impl(session_hash, now).await
                }

                async fn end_session(&self, session_hash: TokenHash) -> Result<bool> {
                    self.end_session_impl(session_hash).await
                }

                async fn end_token_sessions(&self, token_hash: TokenHash) -> Result<u64> {
                    self.end_token_sessions_impl(token_hash).await
                }

                async fn purge_sessions(&self, now: DateTime<Utc>) -> Result<u64> {
                    self.purge_sessions_impl(now).await
                }

                async fn enroll_agent(&self, agent: &NewAgent) -> Result<bool> {
                    self.enroll_agent_impl(agent).await
                }

                async fn accept_reports(
                    &self,
                    reports: &[IncomingReport],
                    queue_bound: u64,
                ) -> Result<Vec<AcceptOutcome>> {
                    $write!(self.accept_reports_impl(reports, queue_bound))
                }

                async fn claim_batch(&self, request: &ClaimRequest) -> Result<Vec<ClaimedReport>> {
                    $write!(self.claim_batch_impl(request))
                }

                async fn release(&self, leases: &[LeaseRef]) -> Result<()> {
                    $write!(self.release_impl(leases))
                }

                async fn fail(&self, failures: &[Failure], now: DateTime<Utc>) -> Result<()> {
                    $write!(self.fail_impl(failures, now))
                }

                async fn finish_batch(&self, batch: &ProcessedBatch) -> Result<Vec<ReportOutcome>> {
                    $write!(self.finish_batch_impl(batch))
                }

                async fn queue_stats(&self) -> Result<QueueStats> {
                    self.queue_stats_impl().await
                }

                async fn purge_finished(&self, before: DateTime<Utc>) -> Result<u64> {
                    self.purge_finished_impl(before).await
                }

                async fn purge_history(&self, before: DateTime<Utc>) -> Result<u64> {
                    self.purge_history_impl(before).await
                }

                async fn report_status(
                    &self,
                    company_id: CompanyId,
                    agent_id: AgentId,
                    report_id: ReportId,
                ) -> Result<Option<ReportStatus>> {
                    self.report_status_impl(company_id, agent_id, report_id).await
                }

                async fn unmatched_software(
                    &self,
                    keys: &[SoftwareKey],
                ) -> Result<Vec<SoftwareKey>> {
                    self.unmatched_software_impl(keys).await
                }

                async fn software_to_rematch(
                    &self,
                    revision: u64,
                    after: Option<SoftwareKey>,
                    limit: u32,
                ) -> Result<Vec<(SoftwareKey, Software)>> {
                    self.software_to_rematch_impl(revision, after, limit).await
                }

                async fn store_rematch(
                    &self,
                    results: &[MatchedSoftware],
                    revision: u64,
                ) -> Result<MatchDelta> {
                    $write!(self.store_rematch_impl(results, revision))
                }

                async fn reconcile_pending(&self) -> Result<Option<u64>> {
                    self.reconcile_pending_impl().await
                }

                async fn reconcile_findings(
                    &self,
                    company_id: CompanyId,
                    after: Option<AgentId>,
                    limit: u32,
                    now: DateTime<Utc>,
                ) -> Result<Option<AgentId>> {
                    $write!(self.reconcile_findings_impl(company_id, after, limit, now))
                }

                async fn mark_reconciled(&self, generation: u64) -> Result<()> {
                    self.mark_reconciled_impl(generation).await
                }

                async fn rematch_base(&self) -> Result<Option<u64>> {
                    self.rematch_base_impl().await
                }

                async fn set_rematch_base(&self, revision: u64) -> Result<()> {
                    self.set_rematch_base_impl(revision).await
                }

                async fn advisories_changed_since(&self, revision: u64) -> Result<Vec<String>> {
                    self.advisories_changed_since_impl(revision).await
                }

                async fn software_of_vulns(&self, ids: &[String]) -> Result<Vec<SoftwareKey>> {
                    self.software_of_vulns_impl(ids).await
                }

                async fn confirm_matches(
                    &self,
                    keys: &[SoftwareKey],
                    since: u64,
                    revision: u64,
                ) -> Result<u64> {
                    $write!(self.confirm_matches_impl(keys, since, revision))
                }

                async fn vuln_enrichment(&self) -> Result<Vec<VulnEnrichment>> {
                    self.vuln_enrichment_impl().await
                }

                async fn update_enrichment(
                    &self,
                    changes: &[VulnEnrichment],
                    revision: u64,
                ) -> Result<()> {
                    $write!(self.update_enrichment_impl(changes, revision))
                }

                async fn pending_software(&self) -> Result<u64> {
                    self.pending_software_impl().await
                }

                async fn reconcile_software(
                    &self,
                    company_id: CompanyId,
                    after: Option<AgentId>,
                    limit: u32,
                    now: DateTime<Utc>,
                ) -> Result<Option<ReconcileStep>> {
                    $write!(self.reconcile_software_impl(company_id, after, limit, now))
                }

                async fn knowledge_revision(&self) -> Result<u64> {
                    self.knowledge_revision_impl().await
                }

                async fn load_knowledge(&self) -> Result<KnowledgeBase> {
                    self.load_knowledge_impl().await
                }

                async fn summary(&self, company_id: CompanyId) -> Result<Summary> {
                    let mut summary = self.summary_impl(company_id).await?;
                    // SLA and suppression counts (issue 13), from the findings filter.
                    // One pass over the open findings for the three.
                    let sla = self.sla_counts(company_id, Utc::now()).await?;
                    summary.overdue = sla.overdue.total();
                    summary.overdue_by_severity = sla.overdue;
                    summary.due_soon = sla.due_week.saturating_sub(summary.overdue);
                    summary.suppressed = sla.suppressed;
                    Ok(summary)
                }

                async fn list_agents(
                    &self,
                    company_id: CompanyId,
                    filter: &AgentFilter,
                    page: &PageRequest,
                ) -> Result<Page<Agent>> {
                    self.list_agents_impl(company_id, filter, page).await
                }

                async fn get_agent(
                    &self,
                    company_id: CompanyId,
                    agent_id: AgentId,
                ) -> Result<Option<Agent>> {
                    self.get_agent_impl(company_id, agent_id).await
                }

                async fn list_apps(
                    &self,
                    company_id: CompanyId,
                    agent_id: AgentId,
                    page: &PageRequest,
                ) -> Result<Option<Page<AppRow>>> {
                    self.list_apps_impl(company_id, agent_id, page).await
                }

                async fn list_findings(
                    &self,
                    company_id: CompanyId,
                    filter: &FindingFilter,
                    page: &PageRequest,
                ) -> Result<Page<FindingRow>> {
                    self.list_findings_impl(company_id, filter, page).await
                }

                async fn vulnerability(
                    &self,
                    company_id: CompanyId,
                    id: &str,
                    page: &PageRequest,
                ) -> Result<Option<VulnDetail>> {
                    self.vulnerability_impl(company_id, id, page).await
                }

                async fn list_reports(
                    &self,
                    company_id: CompanyId,
                    agent_id: AgentId,
                    page: &PageRequest,
                ) -> Result<Option<Page<ReportRecord>>> {
                    self.list_reports_impl(company_id, agent_id, page).await
                }

                async fn list_software(
                    &self,
                    company_id: CompanyId,
                    filter: &SoftwareFilter,
                    page: &PageRequest,
                ) -> Result<Page<SoftwareRow>> {
                    self.list_software_impl(company_id, filter, page).await
                }

                async fn list_vulnerabilities(
                    &self,
                    company_id: CompanyId,
                    filter: &VulnFilter,
                    page: &PageRequest,
                ) -> Result<Page<VulnRow>> {
                    self.list_vulnerabilities_impl(company_id, filter, page).await
                }

                async fn trends(
                    &self,
                    company_id: CompanyId,
                    since: chrono::NaiveDate,
                ) -> Result<Vec<TrendPoint>> {
                    self.trends_impl(company_id, since).await
                }

                async fn record_trends(
                    &self,
                    at: DateTime<Utc>,
                    keep_from: chrono::NaiveDate,
                ) -> Result<u64> {
                    self.record_trends_impl(at, keep_from).await
                }

                async fn overview(
                    &self,
                    stale_before: DateTime<Utc>,
                ) -> Result<Vec<CompanyOverview>> {
                    self.overview_impl(stale_before).await
                }

                async fn events_after(
                    &self,
                    company: Option<CompanyId>,
                    after: u64,
                    limit: u32,
                ) -> Result<Vec<StoredEvent>> {
                    self.events_after_impl(company, after, limit).await
                }

                async fn event_log_bounds(&self) -> Result<EventLogBounds> {
                    self.event_log_bounds_impl().await
                }

                async fn append_events(
                    &self,
                    events: &[NewEvent],
                    now: DateTime<Utc>,
                ) -> Result<u64> {
                    $write!(self.append_events_impl(events, now))
                }

                async fn prune_events(&self, before: DateTime<Utc>) -> Result<u64> {
                    self.prune_events_impl(before).await
                }

                async fn event_notifications(
                    &self,
                ) -> Result<tokio::sync::mpsc::Receiver<()>> {
                    self.event_notifications_impl().await
                }

                async fn create_token(&self, token: &NewUserToken) -> Result<bool> {
                    self.create_token_impl(token).await
                }

                async fn list_tokens(&self, company_id: CompanyId) -> Result<Vec<TokenInfo>> {
                    self.list_tokens_impl(company_id).await
                }

                async fn revoke_token(
                    &self,
                    company_id: CompanyId,
                    token_id: uuid::Uuid,
                    now: DateTime<Utc>,
                ) -> Result<Option<Revoked>> {
                    $write!(self.revoke_token_impl(company_id, token_id, now))
                }

                async fn replace_agent_token(
                    &self,
                    company_id: CompanyId,
                    agent_id: AgentId,
                    new: Option<TokenHash>,
                    now: DateTime<Utc>,
                ) -> Result<Option<Revoked>> {
                    $write!(self.replace_agent_token_impl(company_id, agent_id, new, now))
                }

                async fn decommission_agent(
                    &self,
                    company_id: CompanyId,
                    agent_id: AgentId,
                    now: DateTime<Utc>,
                ) -> Result<Option<Decommissioned>> {
                    $write!(self.decommission_agent_impl(company_id, agent_id, now))
                }

                async fn replace_enroll_secret(
                    &self,
                    company_id: CompanyId,
                    new: TokenHash,
                    now: DateTime<Utc>,
                ) -> Result<Option<Revoked>> {
                    $write!(self.replace_enroll_secret_impl(company_id, new, now))
                }

                async fn delete_company(
                    &self,
                    company_id: CompanyId,
                ) -> Result<Option<CompanyPurged>> {
                    $write!(self.delete_company_impl(company_id))
                }

                async fn credentials_revision(&self) -> Result<u64> {
                    self.credentials_revision_impl().await
                }

                async fn touch_tokens(&self, used: &[(TokenHash, DateTime<Utc>)]) -> Result<()> {
                    $write!(self.touch_tokens_impl(used))
                }

                async fn deployment_secret(&self, name: &str, proposed: &str) -> Result<String> {
                    self.deployment_secret_impl(name, proposed).await
                }

                async fn import_knowledge(
                    &self,
                    batch: $crate::knowledge::KnowledgeImport,
                ) -> Result<$crate::knowledge::ImportSummary> {
                    <$store>::import_knowledge(self, batch).await
                }

                async fn feed_state(
                    &self,
                    feed: &str,
                ) -> Result<Option<$crate::knowledge::FeedState>> {
                    <$store>::feed_state(self, feed).await
                }

                async fn feed_states(&self) -> Result<Vec<$crate::knowledge::FeedState>> {
                    <$store>::feed_states(self).await
                }

                async fn save_feed_state(
                    &self,
                    state: &$crate::knowledge::FeedState,
                ) -> Result<()> {
                    <$store>::save_feed_state(self, state).await
                }

                async fn try_exclusive(
                    &self,
                    name: &str,
                ) -> Result<Option<$crate::exclusive::ExclusiveGuard>> {
                    self.try_exclusive_impl(name).await
                }

                async fn epss_scores(&self) -> Result<Vec<zt_advisory::EpssScore>> {
                    self.epss_scores_impl().await
                }

                async fn create_analysis(
                    &self,
                    company_id: CompanyId,
                    new: &$crate::analysis::NewAnalysis,
                    ctx: &$crate::analysis::ChangeContext,
                ) -> Result<$crate::analysis::Analysis> {
                    $write!(self.create_analysis_impl(company_id, new, ctx))
                }

                async fn list_analyses(
                    &self,
                    company_id: CompanyId,
                    filter: &$crate::analysis::AnalysisFilter,
                    page: &PageRequest,
                    now: DateTime<Utc>,
                ) -> Result<Page<$crate::analysis::Analysis>> {
                    self.list_analyses_impl(company_id, filter, page, now).await
                }

                async fn get_analysis(
                    &self,
                    company_id: CompanyId,
                    analysis_id: uuid::Uuid,
                    now: DateTime<Utc>,
                ) -> Result<Option<$crate::analysis::Analysis>> {
                    self.get_analysis_impl(company_id, analysis_id, now).await
                }

                async fn update_analysis(
                    &self,
                    company_id: CompanyId,
                    analysis_id: uuid::Uuid,
                    decision: &$crate::analysis::AnalysisDecision,
                    ctx: &$crate::analysis::ChangeContext,
                ) -> Result<Option<$crate::analysis::Analysis>> {
                    $write!(self.update_analysis_impl(company_id, analysis_id, decision, ctx))
                }

                async fn withdraw_analysis(
                    &self,
                    company_id: CompanyId,
                    analysis_id: uuid::Uuid,
                    ctx: &$crate::analysis::ChangeContext,
                ) -> Result<Option<$crate::analysis::Analysis>> {
                    $write!(self.withdraw_analysis_impl(company_id, analysis_id, ctx))
                }

                async fn expire_analyses(&self, now: DateTime<Utc>) -> Result<u64> {
                    self.expire_analyses_impl(now).await
                }

                async fn set_agent_tags(
                    &self,
                    company_id: CompanyId,
                    agent_id: AgentId,
                    tags: &[String],
                    ctx: &$crate::analysis::ChangeContext,
                ) -> Result<Option<$crate::analysis::AgentTags>> {
                    $write!(self.set_agent_tags_impl(company_id, agent_id, tags, ctx))
                }

                async fn set_reported_tags(
                    &self,
                    company_id: CompanyId,
                    agent_id: AgentId,
                    tags: &[String],
                    ctx: &$crate::analysis::ChangeContext,
                ) -> Result<Option<bool>> {
                    $write!(self.set_reported_tags_impl(company_id, agent_id, tags, ctx))
                }

                async fn agent_tags(
                    &self,
                    company_id: CompanyId,
                    agent_id: AgentId,
                ) -> Result<Option<$crate::analysis::AgentTags>> {
                    self.agent_tags_impl(company_id, agent_id).await
                }

                async fn append_audit(
                    &self,
                    company_id: CompanyId,
                    entry: &$crate::analysis::NewAudit,
                    ctx: &$crate::analysis::ChangeContext,
                ) -> Result<()> {
                    $write!(self.append_audit_impl(company_id, entry, ctx))
                }

                async fn list_audit(
                    &self,
                    company_id: CompanyId,
                    page: &PageRequest,
                ) -> Result<Page<$crate::analysis::AuditEntry>> {
                    self.list_audit_impl(company_id, page).await
                }

                async fn sla_policy(&self, company_id: CompanyId) -> Result<$crate::sla::SlaPolicy> {
                    self.sla_policy_impl(company_id).await
                }

                async fn set_sla_policy(
                    &self,
                    company_id: CompanyId,
                    policy: &$crate::sla::SlaPolicy,
                    ctx: &$crate::analysis::ChangeContext,
                ) -> Result<()> {
                    $write!(self.set_sla_policy_impl(company_id, policy, ctx))
                }

                async fn count_findings(
                    &self,
                    company_id: CompanyId,
                    filter: &FindingFilter,
                ) -> Result<u64> {
                    self.count_findings_impl(company_id, filter).await
                }

                async fn import_analyses(
                    &self,
                    company_id: CompanyId,
                    list: &[$crate::analysis::NewAnalysis],
                    ctx: &$crate::analysis::ChangeContext,
                ) -> Result<$crate::analysis::ImportOutcome> {
                    $write!(self.import_analyses_impl(company_id, list, ctx))
                }

                async fn remediation_rows(
                    &self,
                    company_id: CompanyId,
                    since: DateTime<Utc>,
                ) -> Result<Vec<(zt_advisory::Severity, DateTime<Utc>, DateTime<Utc>)>> {
                    self.remediation_rows_impl(company_id, since).await
                }
            }
        };
    };
}

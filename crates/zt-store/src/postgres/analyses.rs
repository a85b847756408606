//! Analyses, host tags and the audit trail on PostgreSQL (the rules and the statements are in
//! `common/analyses.rs`; every transaction is scoped to its company by row-level security).

use chrono::{DateTime, Utc};
use sqlx::Row;
use uuid::Uuid;

use super::events::append_in_tx;
use super::process::COUNTERS_FROM_FINDINGS;
use super::queue::CompanyScope;
use super::{PgStore, Tx};
use crate::analysis::*;
use crate::common::analyses::*;
use crate::common::reads::{decode_cursor, encode_cursor, limit_of};
use crate::model::*;
use crate::Result;

/// The open-finding counters of the agents `agents` picks (a condition on `a.agent_id`,
/// the company `$1`), recounted; suppressed findings are left out.
fn recount_sql(agents: &str) -> String {
    format!("UPDATE agents a SET {COUNTERS_FROM_FINDINGS} WHERE a.company_id = $1 AND {agents}")
}

/// Brings the findings of a vulnerability and their agents' counters up to date: one
/// statement, which moves the counters of the agents whose findings it suppresses or brings
/// back by the difference (none when, say, an analysis's details change, or a second one
/// covers what the first did).
async fn cover_vuln(
    tx: &mut Tx,
    company_id: CompanyId,
    vuln_id: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    sqlx::query(sqlx::AssertSqlSafe(pg(&recover_vuln_counting_sql())))
        .bind(company_id)
        .bind(now)
        .bind(vuln_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Sets the coverage of the findings of a company's `agents` (new findings, or tags
/// changed); their counters are the caller's to recount. A company without analyses costs
/// one lookup. Whether the company has analyses (false: no finding's coverage changed).
pub(crate) async fn cover_agents(
    tx: &mut Tx,
    company_id: CompanyId,
    agents: &[AgentId],
    now: DateTime<Utc>,
) -> Result<bool> {
    if agents.is_empty() {
        return Ok(false);
    }
    let any: Option<i32> = sqlx::query_scalar(
        "SELECT 1 FROM analyses WHERE company_id = $1 AND withdrawn_at IS NULL LIMIT 1",
    )
    .bind(company_id)
    .fetch_optional(&mut **tx)
    .await?;
    if any.is_none() {
        return Ok(false);
    }
    let ids: Vec<Uuid> = agents.iter().map(|a| a.0).collect();
    sqlx::query(sqlx::AssertSqlSafe(pg(&recover_agents_sql(|t| {
        format!("{t}.agent_id = ANY(?3)")
    }))))
    .bind(company_id)
    .bind(now)
    .bind(&ids)
    .execute(&mut **tx)
    .await?;
    Ok(true)
}

async fn resolve_vuln(tx: &mut Tx, id: &str) -> Result<Option<String>> {
    Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(pg(RESOLVE_VULN)))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?)
}

async fn load_analysis(
    tx: &mut Tx,
    company_id: CompanyId,
    analysis_id: Uuid,
    now: DateTime<Utc>,
) -> Result<Option<Analysis>> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "{ANALYSIS_COLUMNS} WHERE company_id = $1 AND analysis_id = $2"
    )))
    .bind(company_id)
    .bind(analysis_id)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let (agents, tags) = scope_lists(tx, company_id, analysis_id).await?;
    Ok(Some(analysis_from_row(&row, agents, tags, now)?))
}

async fn scope_lists(
    tx: &mut Tx,
    company_id: CompanyId,
    analysis_id: Uuid,
) -> Result<(Vec<AgentId>, Vec<String>)> {
    let agents: Vec<AgentId> = sqlx::query_scalar(
        "SELECT agent_id FROM analysis_agents WHERE company_id = $1 AND analysis_id = $2 \
         ORDER BY agent_id",
    )
    .bind(company_id)
    .bind(analysis_id)
    .fetch_all(&mut **tx)
    .await?;
    let tags: Vec<String> = sqlx::query_scalar(
        "SELECT tag FROM analysis_tags WHERE company_id = $1 AND analysis_id = $2 ORDER BY tag",
    )
    .bind(company_id)
    .bind(analysis_id)
    .fetch_all(&mut **tx)
    .await?;
    Ok((agents, tags))
}

/// Writes the decision's columns and scope lists of an analysis row that exists.
async fn write_decision(
    tx: &mut Tx,
    company_id: CompanyId,
    analysis_id: Uuid,
    d: &AnalysisDecision,
    now: DateTime<Utc>,
) -> Result<()> {
    for agent in &d.scope.agent_ids {
        let known: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM agents WHERE company_id = $1 AND agent_id = $2")
                .bind(company_id)
                .bind(*agent)
                .fetch_optional(&mut **tx)
                .await?;
        if known.is_none() {
            return Err(unknown_agent(*agent));
        }
    }
    let pkg = d.scope.package.as_ref();
    sqlx::query(
        "UPDATE analyses SET any_agent = $3, any_tag = $4, pkg_name = $5, pkg_version = $6, \
         pkg_ecosystem = $7, state = $8, justification = $9, response = $10, details = $11, \
         suppress = $12, expires_at = $13, updated_at = $14, expired_at = NULL \
         WHERE company_id = $1 AND analysis_id = $2",
    )
    .bind(company_id)
    .bind(analysis_id)
    .bind(d.scope.agent_ids.is_empty())
    .bind(d.scope.tags.is_empty())
    .bind(pkg.map(|p| p.name.clone()))
    .bind(pkg.and_then(|p| p.version.clone()))
    .bind(pkg.and_then(|p| p.ecosystem.clone()))
    .bind(d.state.as_str())
    .bind(d.justification.map(|j| j.as_str()))
    .bind(response_json(&d.response))
    .bind(d.details.clone())
    .bind(d.suppress)
    .bind(d.expires_at)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    sqlx::query("DELETE FROM analysis_agents WHERE company_id = $1 AND analysis_id = $2")
        .bind(company_id)
        .bind(analysis_id)
        .execute(&mut **tx)
        .await?;
    sqlx::query("DELETE FROM analysis_tags WHERE company_id = $1 AND analysis_id = $2")
        .bind(company_id)
        .bind(analysis_id)
        .execute(&mut **tx)
        .await?;
    for agent in &d.scope.agent_ids {
        sqlx::query(
            "INSERT INTO analysis_agents (company_id, analysis_id, agent_id) VALUES ($1, $2, $3)",
        )
        .bind(company_id)
        .bind(analysis_id)
        .bind(*agent)
        .execute(&mut **tx)
        .await?;
    }
    for tag in &d.scope.tags {
        sqlx::query("INSERT INTO analysis_tags (company_id, analysis_id, tag) VALUES ($1, $2, $3)")
            .bind(company_id)
            .bind(analysis_id)
            .bind(tag)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

async fn insert_audit(
    tx: &mut Tx,
    company_id: CompanyId,
    entry: &NewAudit,
    ctx: &ChangeContext,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO audit (company_id, at, actor_kind, actor_token_id, actor_role, action, \
         object, before, after, comment) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(company_id)
    .bind(ctx.at)
    .bind(&ctx.actor.kind)
    .bind(&ctx.actor.token_id)
    .bind(&ctx.actor.role)
    .bind(&entry.action)
    .bind(&entry.object)
    .bind(entry.before.as_ref().map(|v| v.to_string()))
    .bind(entry.after.as_ref().map(|v| v.to_string()))
    .bind(&ctx.comment)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The audit entry and event of an analysis change, last in its transaction.
async fn record_change(
    tx: &mut Tx,
    company_id: CompanyId,
    action: &str,
    before: Option<&Analysis>,
    after: &Analysis,
    ctx: &ChangeContext,
) -> Result<()> {
    insert_audit(
        tx,
        company_id,
        &NewAudit {
            action: format!("analysis.{action}"),
            object: format!("analysis/{}", after.analysis_id),
            before: before.map(audit_image),
            after: Some(audit_image(after)),
        },
        ctx,
    )
    .await?;
    append_in_tx(
        tx,
        &mut CompanyScope::new(),
        &[changed_event(company_id, after, action)],
        ctx.at,
    )
    .await?;
    Ok(())
}

impl PgStore {
    pub(crate) async fn create_analysis_impl(
        &self,
        company_id: CompanyId,
        new: &NewAnalysis,
        ctx: &ChangeContext,
    ) -> Result<Analysis> {
        check_vuln_id(&new.vuln_id)?;
        let decision = normalize_decision(new.decision.clone(), ctx.at)?;
        let mut tx = self.begin_for_company(company_id).await?;
        let vuln_id = resolve_vuln(&mut tx, &new.vuln_id)
            .await?
            .ok_or_else(|| unknown_vuln(&new.vuln_id))?;
        sqlx::query(
            "INSERT INTO analyses (company_id, analysis_id, vuln_id, requested_id, any_agent, \
             any_tag, state, response, suppress, source, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, TRUE, TRUE, 'in_triage', '[]', FALSE, $5, $6, $6)",
        )
        .bind(company_id)
        .bind(new.analysis_id)
        .bind(&vuln_id)
        .bind(&new.vuln_id)
        .bind(&new.source)
        .bind(ctx.at)
        .execute(&mut *tx)
        .await?;
        write_decision(&mut tx, company_id, new.analysis_id, &decision, ctx.at).await?;
        cover_vuln(&mut tx, company_id, &vuln_id, ctx.at).await?;
        let analysis = load_analysis(&mut tx, company_id, new.analysis_id, ctx.at)
            .await?
            .ok_or_else(|| crate::common::corrupt("analysis just written"))?;
        record_change(&mut tx, company_id, "created", None, &analysis, ctx).await?;
        tx.commit().await?;
        Ok(analysis)
    }

    pub(crate) async fn list_analyses_impl(
        &self,
        company_id: CompanyId,
        filter: &AnalysisFilter,
        page: &PageRequest,
        now: DateTime<Utc>,
    ) -> Result<Page<Analysis>> {
        let limit = limit_of(page);
        let after = page
            .cursor
            .as_deref()
            .map(decode_analysis_cursor)
            .transpose()?;
        let mut qb = sqlx::QueryBuilder::<sqlx::Postgres>::new(ANALYSIS_COLUMNS);
        qb.push(" WHERE company_id = ").push_bind(company_id);
        match filter.status {
            Some(AnalysisStatus::Active) => {
                qb.push(" AND withdrawn_at IS NULL AND (expires_at IS NULL OR expires_at > ")
                    .push_bind(now)
                    .push(")");
            }
            Some(AnalysisStatus::Expired) => {
                qb.push(" AND withdrawn_at IS NULL AND expires_at <= ")
                    .push_bind(now);
            }
            Some(AnalysisStatus::Withdrawn) => {
                qb.push(" AND withdrawn_at IS NOT NULL");
            }
            None => {}
        }
        if let Some(v) = &filter.vuln_id {
            qb.push(" AND vuln_id IN (SELECT ")
                .push_bind(v.clone())
                .push(" UNION SELECT vuln_id FROM vuln_aliases WHERE alias = ")
                .push_bind(v.clone())
                .push(")");
        }
        if let Some((at, id)) = after {
            qb.push(" AND (created_at < ")
                .push_bind(at)
                .push(" OR (created_at = ")
                .push_bind(at)
                .push(" AND analysis_id < ")
                .push_bind(id)
                .push("))");
        }
        qb.push(" ORDER BY created_at DESC, analysis_id DESC LIMIT ")
            .push_bind(limit + 1);
        let mut tx = self.begin_for_company(company_id).await?;
        let rows = qb.build().fetch_all(&mut *tx).await?;
        let mut items = Vec::with_capacity(rows.len());
        for row in rows.iter().take(limit as usize) {
            let id: Uuid = row.try_get(0)?;
            let agents: Vec<AgentId> = sqlx::query_scalar(
                "SELECT agent_id FROM analysis_agents WHERE company_id = $1 AND analysis_id = $2 \
                 ORDER BY agent_id",
            )
            .bind(company_id)
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
            let tags: Vec<String> = sqlx::query_scalar(
                "SELECT tag FROM analysis_tags WHERE company_id = $1 AND analysis_id = $2 \
                 ORDER BY tag",
            )
            .bind(company_id)
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
            items.push(analysis_from_row(row, agents, tags, now)?);
        }
        tx.commit().await?;
        let next_cursor = if rows.len() as i64 > limit {
            items.last().map(|a| encode_cursor(&analysis_key(a)))
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    pub(crate) async fn get_analysis_impl(
        &self,
        company_id: CompanyId,
        analysis_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Option<Analysis>> {
        let mut tx = self.begin_for_company(company_id).await?;
        let a = load_analysis(&mut tx, company_id, analysis_id, now).await?;
        tx.commit().await?;
        Ok(a)
    }

    pub(crate) async fn update_analysis_impl(
        &self,
        company_id: CompanyId,
        analysis_id: Uuid,
        decision: &AnalysisDecision,
        ctx: &ChangeContext,
    ) -> Result<Option<Analysis>> {
        let decision = normalize_decision(decision.clone(), ctx.at)?;
        let mut tx = self.begin_for_company(company_id).await?;
        let Some(before) = load_analysis(&mut tx, company_id, analysis_id, ctx.at).await? else {
            return Ok(None);
        };
        if before.status == AnalysisStatus::Withdrawn {
            return Ok(None);
        }
        write_decision(&mut tx, company_id, analysis_id, &decision, ctx.at).await?;
        cover_vuln(&mut tx, company_id, &before.vuln_id, ctx.at).await?;
        let after = load_analysis(&mut tx, company_id, analysis_id, ctx.at)
            .await?
            .ok_or_else(|| crate::common::corrupt("analysis just written"))?;
        record_change(&mut tx, company_id, "updated", Some(&before), &after, ctx).await?;
        tx.commit().await?;
        Ok(Some(after))
    }

    pub(crate) async fn withdraw_analysis_impl(
        &self,
        company_id: CompanyId,
        analysis_id: Uuid,
        ctx: &ChangeContext,
    ) -> Result<Option<Analysis>> {
        let mut tx = self.begin_for_company(company_id).await?;
        let Some(before) = load_analysis(&mut tx, company_id, analysis_id, ctx.at).await? else {
            return Ok(None);
        };
        if before.status == AnalysisStatus::Withdrawn {
            return Ok(None);
        }
        sqlx::query(
            "UPDATE analyses SET withdrawn_at = $3, updated_at = $3 \
             WHERE company_id = $1 AND analysis_id = $2",
        )
        .bind(company_id)
        .bind(analysis_id)
        .bind(ctx.at)
        .execute(&mut *tx)
        .await?;
        cover_vuln(&mut tx, company_id, &before.vuln_id, ctx.at).await?;
        let after = load_analysis(&mut tx, company_id, analysis_id, ctx.at)
            .await?
            .ok_or_else(|| crate::common::corrupt("analysis just written"))?;
        record_change(&mut tx, company_id, "withdrawn", Some(&before), &after, ctx).await?;
        tx.commit().await?;
        Ok(Some(after))
    }

    pub(crate) async fn expire_analyses_impl(&self, now: DateTime<Utc>) -> Result<u64> {
        let mut expired = 0;
        // Row-level security shows one company per transaction: each company's due analyses
        // are looked up through the index of unexpired expiries.
        for company in self.list_companies_impl().await? {
            let company_id = company.id;
            let mut tx = self.begin_for_company(company_id).await?;
            let due: Vec<Uuid> = sqlx::query_scalar(
                "SELECT analysis_id FROM analyses WHERE company_id = $1 \
                 AND withdrawn_at IS NULL AND expired_at IS NULL AND expires_at IS NOT NULL \
                 AND expires_at <= $2 ORDER BY expires_at LIMIT 1000",
            )
            .bind(company_id)
            .bind(now)
            .fetch_all(&mut *tx)
            .await?;
            tx.commit().await?;
            for analysis_id in due {
                let mut tx = self.begin_for_company(company_id).await?;
                let Some(before) = load_analysis(&mut tx, company_id, analysis_id, now).await?
                else {
                    continue;
                };
                let done = sqlx::query(
                    "UPDATE analyses SET expired_at = $3 WHERE company_id = $1 \
                     AND analysis_id = $2 AND expired_at IS NULL AND withdrawn_at IS NULL \
                     AND expires_at <= $3",
                )
                .bind(company_id)
                .bind(analysis_id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() == 0 {
                    continue;
                }
                cover_vuln(&mut tx, company_id, &before.vuln_id, now).await?;
                // Its findings are back: `analysis.expired`, in this transaction (issue 14).
                super::notify::analysis_expired_in_tx(&mut tx, company_id, &before, now).await?;
                let ctx = ChangeContext {
                    actor: system_actor(),
                    at: now,
                    comment: None,
                };
                record_change(&mut tx, company_id, "expired", None, &before, &ctx).await?;
                tx.commit().await?;
                expired += 1;
            }
        }
        Ok(expired)
    }

    pub(crate) async fn set_agent_tags_impl(
        &self,
        company_id: CompanyId,
        agent_id: AgentId,
        tags: &[String],
        ctx: &ChangeContext,
    ) -> Result<Option<AgentTags>> {
        let tags = normalize_tags("tags", tags)?;
        let mut tx = self.begin_for_company(company_id).await?;
        let Some(before) = read_tags(&mut tx, company_id, agent_id, true).await? else {
            return Ok(None);
        };
        let after = AgentTags {
            assigned: tags,
            reported: before.reported.clone(),
        };
        write_tags(&mut tx, company_id, agent_id, &after, ctx.at).await?;
        if let Some(entry) = tags_audit(agent_id, TagSource::Api, &before, &after) {
            insert_audit(&mut tx, company_id, &entry, ctx).await?;
        }
        tx.commit().await?;
        Ok(Some(after))
    }

    pub(crate) async fn set_reported_tags_impl(
        &self,
        company_id: CompanyId,
        agent_id: AgentId,
        tags: &[String],
        ctx: &ChangeContext,
    ) -> Result<Option<bool>> {
        let tags = normalize_tags("tags", tags)?;
        // Nearly every report repeats the tags of the one before: one read, and a write
        // (under the agent row's lock, so two reports cannot interleave) only for a change.
        let mut tx = self.begin_for_company(company_id).await?;
        let Some(seen) = read_tags(&mut tx, company_id, agent_id, false).await? else {
            return Ok(None);
        };
        if seen.reported == tags {
            tx.commit().await?;
            return Ok(Some(false));
        }
        let Some(before) = read_tags(&mut tx, company_id, agent_id, true).await? else {
            return Ok(None);
        };
        if before.reported == tags {
            tx.commit().await?;
            return Ok(Some(false));
        }
        let after = AgentTags {
            assigned: before.assigned.clone(),
            reported: tags,
        };
        write_tags(&mut tx, company_id, agent_id, &after, ctx.at).await?;
        if let Some(entry) = tags_audit(agent_id, TagSource::Agent, &before, &after) {
            insert_audit(&mut tx, company_id, &entry, ctx).await?;
        }
        tx.commit().await?;
        Ok(Some(true))
    }

    pub(crate) async fn agent_tags_impl(
        &self,
        company_id: CompanyId,
        agent_id: AgentId,
    ) -> Result<Option<AgentTags>> {
        let mut tx = self.begin_for_company(company_id).await?;
        let tags = read_tags(&mut tx, company_id, agent_id, false).await?;
        tx.commit().await?;
        Ok(tags)
    }

    pub(crate) async fn append_audit_impl(
        &self,
        company_id: CompanyId,
        entry: &NewAudit,
        ctx: &ChangeContext,
    ) -> Result<()> {
        let mut tx = self.begin_for_company(company_id).await?;
        insert_audit(&mut tx, company_id, entry, ctx).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn list_audit_impl(
        &self,
        company_id: CompanyId,
        page: &PageRequest,
    ) -> Result<Page<AuditEntry>> {
        let limit = limit_of(page);
        let before: i64 = match page.cursor.as_deref() {
            Some(c) => decode_cursor(c)?,
            None => i64::MAX,
        };
        let mut tx = self.begin_for_company(company_id).await?;
        let rows = sqlx::query(
            "SELECT audit_id, at, actor_kind, actor_token_id, actor_role, action, object, \
             before, after, comment FROM audit WHERE company_id = $1 AND audit_id < $2 \
             ORDER BY audit_id DESC LIMIT $3",
        )
        .bind(company_id)
        .bind(before)
        .bind(limit + 1)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        crate::common::reads::page_of(&rows, limit, |r| {
            let e = audit_from_row(r)?;
            let key = e.id as i64;
            Ok((e, key))
        })
    }
}

/// An agent's tags by source; None when the agent does not exist in the company. `lock`:
/// the agent row is locked for the rest of the transaction (tag changes of one agent one
/// after the other).
async fn read_tags(
    tx: &mut Tx,
    company_id: CompanyId,
    agent_id: AgentId,
    lock: bool,
) -> Result<Option<AgentTags>> {
    let sql = if lock {
        "SELECT 1 FROM agents WHERE company_id = $1 AND agent_id = $2 FOR UPDATE"
    } else {
        "SELECT 1 FROM agents WHERE company_id = $1 AND agent_id = $2"
    };
    let known: Option<i32> = sqlx::query_scalar(sql)
        .bind(company_id)
        .bind(agent_id)
        .fetch_optional(&mut **tx)
        .await?;
    if known.is_none() {
        return Ok(None);
    }
    let rows: Vec<(String, bool, bool)> = sqlx::query_as(
        "SELECT tag, assigned, reported FROM agent_tags WHERE company_id = $1 AND agent_id = $2 \
         ORDER BY tag",
    )
    .bind(company_id)
    .bind(agent_id)
    .fetch_all(&mut **tx)
    .await?;
    Ok(Some(tags_of_rows(rows)))
}

/// Replaces an agent's tag rows, then brings its findings' coverage and its counters up to
/// date (a tag may bring hosts into or out of analyses' scopes).
async fn write_tags(
    tx: &mut Tx,
    company_id: CompanyId,
    agent_id: AgentId,
    tags: &AgentTags,
    now: DateTime<Utc>,
) -> Result<()> {
    sqlx::query("DELETE FROM agent_tags WHERE company_id = $1 AND agent_id = $2")
        .bind(company_id)
        .bind(agent_id)
        .execute(&mut **tx)
        .await?;
    let rows = tag_rows(tags);
    let names: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    let assigned: Vec<bool> = rows.iter().map(|r| r.1).collect();
    let reported: Vec<bool> = rows.iter().map(|r| r.2).collect();
    // No conflict can arise (the agent's rows were just deleted): the ON CONFLICT clause is
    // for Citus, which otherwise writes the rows of an INSERT … SELECT from `unnest` with
    // COPY, refused under row-level security (as in `apply.rs`).
    sqlx::query(
        "INSERT INTO agent_tags (company_id, agent_id, tag, assigned, reported) \
         SELECT $1, $2, t, a, r FROM unnest($3::text[], $4::bool[], $5::bool[]) AS u(t, a, r) \
         ON CONFLICT (company_id, agent_id, tag) DO NOTHING",
    )
    .bind(company_id)
    .bind(agent_id)
    .bind(&names)
    .bind(&assigned)
    .bind(&reported)
    .execute(&mut **tx)
    .await?;
    cover_agents(tx, company_id, &[agent_id], now).await?;
    sqlx::query(sqlx::AssertSqlSafe(recount_sql("a.agent_id = $2")))
        .bind(company_id)
        .bind(agent_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

// --- SLA ---------------------------------------------------------------------------------

/// The company's SLA policy (the defaults when it has set none), in the caller's transaction.
async fn sla_policy_in(tx: &mut Tx, company_id: CompanyId) -> Result<crate::sla::SlaPolicy> {
    let row = sqlx::query(
        "SELECT critical_days, high_days, medium_days, low_days, unknown_days, \
         kev_uses_cisa_due_date FROM sla_policies WHERE company_id = $1",
    )
    .bind(company_id)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(match row {
        Some(r) => sla_from_row(&r)?,
        None => crate::sla::SlaPolicy::default(),
    })
}

impl PgStore {
    pub(crate) async fn sla_policy_impl(
        &self,
        company_id: CompanyId,
    ) -> Result<crate::sla::SlaPolicy> {
        let mut tx = self.begin_for_company(company_id).await?;
        let policy = sla_policy_in(&mut tx, company_id).await?;
        tx.commit().await?;
        Ok(policy)
    }

    pub(crate) async fn set_sla_policy_impl(
        &self,
        company_id: CompanyId,
        policy: &crate::sla::SlaPolicy,
        ctx: &ChangeContext,
    ) -> Result<()> {
        check_sla(policy)?;
        let before = self.sla_policy_impl(company_id).await?;
        let mut tx = self.begin_for_company(company_id).await?;
        let days = |d: u32| i32::try_from(d).unwrap_or(i32::MAX);
        sqlx::query(
            "INSERT INTO sla_policies (company_id, critical_days, high_days, medium_days, \
             low_days, unknown_days, kev_uses_cisa_due_date, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (company_id) DO UPDATE SET \
             critical_days = excluded.critical_days, high_days = excluded.high_days, \
             medium_days = excluded.medium_days, low_days = excluded.low_days, \
             unknown_days = excluded.unknown_days, \
             kev_uses_cisa_due_date = excluded.kev_uses_cisa_due_date, \
             updated_at = excluded.updated_at",
        )
        .bind(company_id)
        .bind(days(policy.critical_days))
        .bind(days(policy.high_days))
        .bind(days(policy.medium_days))
        .bind(days(policy.low_days))
        .bind(days(policy.unknown_days))
        .bind(policy.kev_uses_cisa_due_date)
        .bind(ctx.at)
        .execute(&mut *tx)
        .await?;
        insert_audit(&mut tx, company_id, &sla_audit(&before, policy), ctx).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn count_findings_impl(
        &self,
        company_id: CompanyId,
        filter: &FindingFilter,
    ) -> Result<u64> {
        let mut tx = self.begin_for_company(company_id).await?;
        let mut qb = sqlx::QueryBuilder::<sqlx::Postgres>::new("SELECT count(*) FROM findings f");
        qb.push(" WHERE f.company_id = ").push_bind(company_id);
        crate::common::findings::push_finding_conditions(&mut qb, company_id, filter);
        let n: i64 = qb.build_query_scalar().fetch_one(&mut *tx).await?;
        tx.commit().await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    pub(crate) async fn remediation_rows_impl(
        &self,
        company_id: CompanyId,
        since: DateTime<Utc>,
    ) -> Result<Vec<(zt_advisory::Severity, DateTime<Utc>, DateTime<Utc>)>> {
        let mut tx = self.begin_for_company(company_id).await?;
        let rows: Vec<(i16, DateTime<Utc>, DateTime<Utc>)> = sqlx::query_as(
            "SELECT severity, first_seen, resolved_at FROM findings \
             WHERE company_id = $1 AND resolved_at >= $2 \
             AND resolution IN ('removed', 'fixed')",
        )
        .bind(company_id)
        .bind(since)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(rows
            .into_iter()
            .map(|(s, a, b)| (crate::common::severity_from_rank(i64::from(s)), a, b))
            .collect())
    }
}

impl PgStore {
    /// Open findings overdue (per severity) and due within 7 days at `now` (suppressed ones
    /// left out), and suppressed: one statement.
    pub(crate) async fn sla_counts(
        &self,
        company_id: CompanyId,
        now: DateTime<Utc>,
    ) -> Result<crate::common::findings::SlaCounts> {
        // The policy and the counts in one transaction (the summary is read often: every
        // live stream's `summary` event too).
        let mut tx = self.begin_for_company(company_id).await?;
        let policy = sla_policy_in(&mut tx, company_id).await?;
        let (overdue, soon) = sla_bounds(&policy, now);
        let mut qb = crate::common::findings::sla_counts_query(company_id, &overdue, &soon);
        let row: crate::common::findings::SlaCountsRow =
            qb.build_query_as().fetch_one(&mut *tx).await?;
        tx.commit().await?;
        Ok(crate::common::findings::SlaCounts::of_row(row))
    }
}

impl PgStore {
    pub(crate) async fn import_analyses_impl(
        &self,
        company_id: CompanyId,
        list: &[NewAnalysis],
        ctx: &ChangeContext,
    ) -> Result<ImportOutcome> {
        // Every one checked before anything is written: a bad one refuses them all.
        let mut checked = Vec::with_capacity(list.len());
        for (i, new) in list.iter().enumerate() {
            check_vuln_id(&new.vuln_id).map_err(|e| in_item(i, e))?;
            let d = normalize_decision(new.decision.clone(), ctx.at).map_err(|e| in_item(i, e))?;
            checked.push((new, d));
        }
        let mut tx = self.begin_for_company(company_id).await?;
        let mut outcome = ImportOutcome::default();
        let mut vulns: Vec<(String, Uuid)> = Vec::new();
        for (i, (new, d)) in checked.iter().enumerate() {
            let Some(vuln_id) = resolve_vuln(&mut tx, &new.vuln_id).await? else {
                outcome.unknown.push(new.vuln_id.clone());
                continue;
            };
            sqlx::query(
                "INSERT INTO analyses (company_id, analysis_id, vuln_id, requested_id, any_agent, \
                 any_tag, state, response, suppress, source, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, TRUE, TRUE, 'in_triage', '[]', FALSE, $5, $6, $6)",
            )
            .bind(company_id)
            .bind(new.analysis_id)
            .bind(&vuln_id)
            .bind(&new.vuln_id)
            .bind(&new.source)
            .bind(ctx.at)
            .execute(&mut *tx)
            .await?;
            write_decision(&mut tx, company_id, new.analysis_id, d, ctx.at)
                .await
                .map_err(|e| in_item(i, e))?;
            insert_audit(
                &mut tx,
                company_id,
                &NewAudit {
                    action: "analysis.imported".into(),
                    object: format!("analysis/{}", new.analysis_id),
                    before: None,
                    after: Some(serde_json::json!({
                        "vuln_id": vuln_id, "requested_id": new.vuln_id, "source": new.source,
                        "decision": d,
                    })),
                },
                ctx,
            )
            .await?;
            vulns.push((vuln_id, new.analysis_id));
            outcome.created += 1;
        }
        // Each vulnerability's findings once, and one event per vulnerability.
        vulns.sort();
        vulns.dedup_by(|a, b| a.0 == b.0);
        let mut events = Vec::with_capacity(vulns.len());
        for (vuln_id, analysis_id) in &vulns {
            cover_vuln(&mut tx, company_id, vuln_id, ctx.at).await?;
            if let Some(a) = load_analysis(&mut tx, company_id, *analysis_id, ctx.at).await? {
                events.push(changed_event(company_id, &a, "imported"));
            }
        }
        append_events_in(&mut tx, &events, ctx.at).await?;
        tx.commit().await?;
        Ok(outcome)
    }
}

async fn append_events_in(tx: &mut Tx, events: &[NewEvent], at: DateTime<Utc>) -> Result<()> {
    if !events.is_empty() {
        append_in_tx(tx, &mut CompanyScope::new(), events, at).await?;
    }
    Ok(())
}

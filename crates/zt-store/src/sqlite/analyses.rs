//! Analyses, host tags and the audit trail on SQLite (the rules are in `common/analyses.rs`).

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use sqlx::Row;
use uuid::Uuid;

use super::events::append_in_tx;
use super::SqliteStore;
use crate::analysis::*;
use crate::common::analyses::*;
use crate::common::ms;
use crate::common::reads::{decode_cursor, encode_cursor, limit_of};
use crate::model::*;
use crate::Result;

type Tx = sqlx::Transaction<'static, sqlx::Sqlite>;

/// The findings a vulnerability's coverage statement updates, sought by their vulnerability
/// (see `recover_vuln_sql`).
const FINDINGS_BY_VULN: &str = "findings INDEXED BY findings_vuln";
const BY_VULN: &str = "findings.vuln_id IN (SELECT ids.id FROM ids)";

/// Agents per statement of the coverage of new findings.
const AGENT_CHUNK: usize = 500;

/// The open-finding counters of the agents `agents` picks (a condition on `agent_id`, the
/// company `?1`), recounted; suppressed findings are left out.
fn recount_sql(agents: &str) -> String {
    format!(
        "UPDATE agents SET (open_critical, open_high, open_medium, open_low, open_unknown, \
         open_kev, open_fixable) = (SELECT coalesce(sum(f.severity = 5), 0), \
         coalesce(sum(f.severity = 4), 0), coalesce(sum(f.severity = 3), 0), \
         coalesce(sum(f.severity = 2), 0), coalesce(sum(f.severity <= 1), 0), \
         coalesce(sum(f.kev), 0), coalesce(sum(f.fixable), 0) FROM findings f \
         WHERE f.company_id = agents.company_id AND f.agent_id = agents.agent_id \
         AND f.resolved_at IS NULL AND f.suppressed = 0) \
         WHERE company_id = ?1 AND {agents}"
    )
}

/// Brings the findings of a vulnerability and their agents' counters up to date.
async fn cover_vuln(tx: &mut Tx, company_id: CompanyId, vuln_id: &str, now: i64) -> Result<()> {
    sqlx::query(sqlx::AssertSqlSafe(recover_vuln_sql(
        FINDINGS_BY_VULN,
        Some(BY_VULN),
    )))
    .bind(company_id)
    .bind(now)
    .bind(vuln_id)
    .execute(&mut **tx)
    .await?;
    sqlx::query(sqlx::AssertSqlSafe(recount_sql(
        "agent_id IN (SELECT f.agent_id FROM findings f WHERE f.company_id = ?1 \
         AND f.vuln_id IN (SELECT ?2 UNION SELECT va.vuln_id FROM vuln_aliases va WHERE va.alias = ?2))",
    )))
    .bind(company_id)
    .bind(vuln_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Sets the coverage of the findings of `agents` (new findings, or tags changed); their
/// counters are the caller's to recount. A company without analyses costs one lookup.
pub(crate) async fn cover_agents(
    tx: &mut Tx,
    agents: &HashSet<(CompanyId, AgentId)>,
    now: i64,
) -> Result<()> {
    let mut by_company: BTreeMap<CompanyId, Vec<AgentId>> = BTreeMap::new();
    for (c, a) in agents {
        by_company.entry(*c).or_default().push(*a);
    }
    for (company_id, mut list) in by_company {
        let any: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM analyses WHERE company_id = ?1 AND withdrawn_at IS NULL LIMIT 1",
        )
        .bind(company_id)
        .fetch_optional(&mut **tx)
        .await?;
        if any.is_none() {
            continue;
        }
        list.sort();
        for chunk in list.chunks(AGENT_CHUNK) {
            let params = |first: usize| {
                (0..chunk.len())
                    .map(|i| format!("?{}", first + i))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let list = params(3);
            let cover = recover_agents_sql(|t| format!("{t}.agent_id IN ({list})"));
            let mut q = sqlx::query(sqlx::AssertSqlSafe(cover))
                .bind(company_id)
                .bind(now);
            for a in chunk {
                q = q.bind(*a);
            }
            q.execute(&mut **tx).await?;
        }
    }
    Ok(())
}

async fn resolve_vuln(tx: &mut Tx, id: &str) -> Result<Option<String>> {
    Ok(sqlx::query_scalar(RESOLVE_VULN)
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
        "{ANALYSIS_COLUMNS} WHERE company_id = ?1 AND analysis_id = ?2"
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
        "SELECT agent_id FROM analysis_agents WHERE company_id = ?1 AND analysis_id = ?2 \
         ORDER BY agent_id",
    )
    .bind(company_id)
    .bind(analysis_id)
    .fetch_all(&mut **tx)
    .await?;
    let tags: Vec<String> = sqlx::query_scalar(
        "SELECT tag FROM analysis_tags WHERE company_id = ?1 AND analysis_id = ?2 ORDER BY tag",
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
        let known: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM agents WHERE company_id = ?1 AND agent_id = ?2")
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
        "UPDATE analyses SET any_agent = ?3, any_tag = ?4, pkg_name = ?5, pkg_version = ?6, \
         pkg_ecosystem = ?7, state = ?8, justification = ?9, response = ?10, details = ?11, \
         suppress = ?12, expires_at = ?13, updated_at = ?14, expired_at = NULL \
         WHERE company_id = ?1 AND analysis_id = ?2",
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
    .bind(d.expires_at.map(ms))
    .bind(ms(now))
    .execute(&mut **tx)
    .await?;
    sqlx::query("DELETE FROM analysis_agents WHERE company_id = ?1 AND analysis_id = ?2")
        .bind(company_id)
        .bind(analysis_id)
        .execute(&mut **tx)
        .await?;
    sqlx::query("DELETE FROM analysis_tags WHERE company_id = ?1 AND analysis_id = ?2")
        .bind(company_id)
        .bind(analysis_id)
        .execute(&mut **tx)
        .await?;
    for agent in &d.scope.agent_ids {
        sqlx::query(
            "INSERT INTO analysis_agents (company_id, analysis_id, agent_id) VALUES (?1, ?2, ?3)",
        )
        .bind(company_id)
        .bind(analysis_id)
        .bind(*agent)
        .execute(&mut **tx)
        .await?;
    }
    for tag in &d.scope.tags {
        sqlx::query("INSERT INTO analysis_tags (company_id, analysis_id, tag) VALUES (?1, ?2, ?3)")
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
         object, before, after, comment) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )
    .bind(company_id)
    .bind(ms(ctx.at))
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
    append_in_tx(tx, &[changed_event(company_id, after, action)], ms(ctx.at)).await?;
    Ok(())
}

impl SqliteStore {
    pub(crate) async fn create_analysis_impl(
        &self,
        company_id: CompanyId,
        new: &NewAnalysis,
        ctx: &ChangeContext,
    ) -> Result<Analysis> {
        check_vuln_id(&new.vuln_id)?;
        let decision = normalize_decision(new.decision.clone(), ctx.at)?;
        let mut w = self.begin_write().await?;
        let vuln_id = resolve_vuln(&mut w.tx, &new.vuln_id)
            .await?
            .ok_or_else(|| unknown_vuln(&new.vuln_id))?;
        sqlx::query(
            "INSERT INTO analyses (company_id, analysis_id, vuln_id, requested_id, any_agent, \
             any_tag, state, response, suppress, source, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, 1, 1, 'in_triage', '[]', 0, ?5, ?6, ?6)",
        )
        .bind(company_id)
        .bind(new.analysis_id)
        .bind(&vuln_id)
        .bind(&new.vuln_id)
        .bind(&new.source)
        .bind(ms(ctx.at))
        .execute(&mut *w.tx)
        .await?;
        write_decision(&mut w.tx, company_id, new.analysis_id, &decision, ctx.at).await?;
        cover_vuln(&mut w.tx, company_id, &vuln_id, ms(ctx.at)).await?;
        let analysis = load_analysis(&mut w.tx, company_id, new.analysis_id, ctx.at)
            .await?
            .ok_or_else(|| crate::common::corrupt("analysis just written"))?;
        record_change(&mut w.tx, company_id, "created", None, &analysis, ctx).await?;
        w.commit().await?;
        self.signal_events();
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
        let mut qb = sqlx::QueryBuilder::<sqlx::Sqlite>::new(ANALYSIS_COLUMNS);
        qb.push(" WHERE company_id = ").push_bind(company_id);
        match filter.status {
            Some(AnalysisStatus::Active) => {
                qb.push(" AND withdrawn_at IS NULL AND (expires_at IS NULL OR expires_at > ")
                    .push_bind(ms(now))
                    .push(")");
            }
            Some(AnalysisStatus::Expired) => {
                qb.push(" AND withdrawn_at IS NULL AND expires_at <= ")
                    .push_bind(ms(now));
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
                .push_bind(ms(at))
                .push(" OR (created_at = ")
                .push_bind(ms(at))
                .push(" AND analysis_id < ")
                .push_bind(id)
                .push("))");
        }
        qb.push(" ORDER BY created_at DESC, analysis_id DESC LIMIT ")
            .push_bind(limit + 1);
        let mut conn = self.pool.acquire().await?;
        let rows = qb.build().fetch_all(&mut *conn).await?;
        let mut items = Vec::with_capacity(rows.len());
        for row in rows.iter().take(limit as usize) {
            let id: Uuid = row.try_get(0)?;
            let agents: Vec<AgentId> = sqlx::query_scalar(
                "SELECT agent_id FROM analysis_agents WHERE company_id = ?1 AND analysis_id = ?2 \
                 ORDER BY agent_id",
            )
            .bind(company_id)
            .bind(id)
            .fetch_all(&mut *conn)
            .await?;
            let tags: Vec<String> = sqlx::query_scalar(
                "SELECT tag FROM analysis_tags WHERE company_id = ?1 AND analysis_id = ?2 \
                 ORDER BY tag",
            )
            .bind(company_id)
            .bind(id)
            .fetch_all(&mut *conn)
            .await?;
            items.push(analysis_from_row(row, agents, tags, now)?);
        }
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
        let mut tx = self.pool.begin().await?;
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
        let mut w = self.begin_write().await?;
        let Some(before) = load_analysis(&mut w.tx, company_id, analysis_id, ctx.at).await? else {
            return Ok(None);
        };
        if before.status == AnalysisStatus::Withdrawn {
            return Ok(None);
        }
        write_decision(&mut w.tx, company_id, analysis_id, &decision, ctx.at).await?;
        cover_vuln(&mut w.tx, company_id, &before.vuln_id, ms(ctx.at)).await?;
        let after = load_analysis(&mut w.tx, company_id, analysis_id, ctx.at)
            .await?
            .ok_or_else(|| crate::common::corrupt("analysis just written"))?;
        record_change(&mut w.tx, company_id, "updated", Some(&before), &after, ctx).await?;
        w.commit().await?;
        self.signal_events();
        Ok(Some(after))
    }

    pub(crate) async fn withdraw_analysis_impl(
        &self,
        company_id: CompanyId,
        analysis_id: Uuid,
        ctx: &ChangeContext,
    ) -> Result<Option<Analysis>> {
        let mut w = self.begin_write().await?;
        let Some(before) = load_analysis(&mut w.tx, company_id, analysis_id, ctx.at).await? else {
            return Ok(None);
        };
        if before.status == AnalysisStatus::Withdrawn {
            return Ok(None);
        }
        sqlx::query(
            "UPDATE analyses SET withdrawn_at = ?3, updated_at = ?3 \
             WHERE company_id = ?1 AND analysis_id = ?2",
        )
        .bind(company_id)
        .bind(analysis_id)
        .bind(ms(ctx.at))
        .execute(&mut *w.tx)
        .await?;
        cover_vuln(&mut w.tx, company_id, &before.vuln_id, ms(ctx.at)).await?;
        let after = load_analysis(&mut w.tx, company_id, analysis_id, ctx.at)
            .await?
            .ok_or_else(|| crate::common::corrupt("analysis just written"))?;
        record_change(
            &mut w.tx,
            company_id,
            "withdrawn",
            Some(&before),
            &after,
            ctx,
        )
        .await?;
        w.commit().await?;
        self.signal_events();
        Ok(Some(after))
    }

    pub(crate) async fn expire_analyses_impl(&self, now: DateTime<Utc>) -> Result<u64> {
        let due: Vec<(CompanyId, Uuid)> = sqlx::query_as(
            "SELECT company_id, analysis_id FROM analyses \
             WHERE withdrawn_at IS NULL AND expired_at IS NULL AND expires_at IS NOT NULL \
             AND expires_at <= ?1 ORDER BY expires_at LIMIT 1000",
        )
        .bind(ms(now))
        .fetch_all(&self.pool)
        .await?;
        let mut expired = 0;
        for (company_id, analysis_id) in due {
            let mut w = self.begin_background_write().await?;
            let Some(before) = load_analysis(&mut w.tx, company_id, analysis_id, now).await? else {
                continue;
            };
            let done = sqlx::query(
                "UPDATE analyses SET expired_at = ?3 WHERE company_id = ?1 AND analysis_id = ?2 \
                 AND expired_at IS NULL AND withdrawn_at IS NULL AND expires_at <= ?3",
            )
            .bind(company_id)
            .bind(analysis_id)
            .bind(ms(now))
            .execute(&mut *w.tx)
            .await?;
            if done.rows_affected() == 0 {
                continue;
            }
            cover_vuln(&mut w.tx, company_id, &before.vuln_id, ms(now)).await?;
            // Its findings are back: `analysis.expired`, in this transaction (issue 14).
            super::notify::analysis_expired_in_tx(&mut w.tx, company_id, &before, now).await?;
            let ctx = ChangeContext {
                actor: system_actor(),
                at: now,
                comment: None,
            };
            record_change(&mut w.tx, company_id, "expired", None, &before, &ctx).await?;
            w.commit().await?;
            self.signal_events();
            expired += 1;
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
        let mut w = self.begin_write().await?;
        let Some(before) = read_tags(&mut w.tx, company_id, agent_id).await? else {
            return Ok(None);
        };
        let after = AgentTags {
            assigned: tags,
            reported: before.reported.clone(),
        };
        write_tags(&mut w.tx, company_id, agent_id, &after, ms(ctx.at)).await?;
        if let Some(entry) = tags_audit(agent_id, TagSource::Api, &before, &after) {
            insert_audit(&mut w.tx, company_id, &entry, ctx).await?;
        }
        w.commit().await?;
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
        // Nearly every report repeats the tags of the one before: a read on the pool, and
        // the writer only for a change.
        let mut tx = self.pool.begin().await?;
        let seen = read_tags(&mut tx, company_id, agent_id).await?;
        tx.commit().await?;
        match seen {
            None => return Ok(None),
            Some(t) if t.reported == tags => return Ok(Some(false)),
            Some(_) => {}
        }
        let mut w = self.begin_write().await?;
        let Some(before) = read_tags(&mut w.tx, company_id, agent_id).await? else {
            return Ok(None);
        };
        if before.reported == tags {
            return Ok(Some(false));
        }
        let after = AgentTags {
            assigned: before.assigned.clone(),
            reported: tags,
        };
        write_tags(&mut w.tx, company_id, agent_id, &after, ms(ctx.at)).await?;
        if let Some(entry) = tags_audit(agent_id, TagSource::Agent, &before, &after) {
            insert_audit(&mut w.tx, company_id, &entry, ctx).await?;
        }
        w.commit().await?;
        Ok(Some(true))
    }

    pub(crate) async fn agent_tags_impl(
        &self,
        company_id: CompanyId,
        agent_id: AgentId,
    ) -> Result<Option<AgentTags>> {
        let mut tx = self.pool.begin().await?;
        let tags = read_tags(&mut tx, company_id, agent_id).await?;
        tx.commit().await?;
        Ok(tags)
    }

    pub(crate) async fn append_audit_impl(
        &self,
        company_id: CompanyId,
        entry: &NewAudit,
        ctx: &ChangeContext,
    ) -> Result<()> {
        let mut w = self.begin_write().await?;
        insert_audit(&mut w.tx, company_id, entry, ctx).await?;
        w.commit().await
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
        let rows = sqlx::query(
            "SELECT audit_id, at, actor_kind, actor_token_id, actor_role, action, object, \
             before, after, comment FROM audit WHERE company_id = ?1 AND audit_id < ?2 \
             ORDER BY audit_id DESC LIMIT ?3",
        )
        .bind(company_id)
        .bind(before)
        .bind(limit + 1)
        .fetch_all(&self.pool)
        .await?;
        crate::common::reads::page_of(&rows, limit, |r| {
            let e = audit_from_row(r)?;
            let key = e.id as i64;
            Ok((e, key))
        })
    }
}

/// An agent's tags by source; None when the agent does not exist in the company.
async fn read_tags(
    tx: &mut Tx,
    company_id: CompanyId,
    agent_id: AgentId,
) -> Result<Option<AgentTags>> {
    let known: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM agents WHERE company_id = ?1 AND agent_id = ?2")
            .bind(company_id)
            .bind(agent_id)
            .fetch_optional(&mut **tx)
            .await?;
    if known.is_none() {
        return Ok(None);
    }
    let rows: Vec<(String, bool, bool)> = sqlx::query_as(
        "SELECT tag, assigned, reported FROM agent_tags WHERE company_id = ?1 AND agent_id = ?2 \
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
    now: i64,
) -> Result<()> {
    sqlx::query("DELETE FROM agent_tags WHERE company_id = ?1 AND agent_id = ?2")
        .bind(company_id)
        .bind(agent_id)
        .execute(&mut **tx)
        .await?;
    for (tag, assigned, reported) in tag_rows(tags) {
        sqlx::query(
            "INSERT INTO agent_tags (company_id, agent_id, tag, assigned, reported) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .bind(company_id)
        .bind(agent_id)
        .bind(tag)
        .bind(assigned)
        .bind(reported)
        .execute(&mut **tx)
        .await?;
    }
    let agents = HashSet::from([(company_id, agent_id)]);
    cover_agents(tx, &agents, now).await?;
    sqlx::query(sqlx::AssertSqlSafe(recount_sql("agent_id = ?2")))
        .bind(company_id)
        .bind(agent_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

// --- SLA ---------------------------------------------------------------------------------

impl SqliteStore {
    pub(crate) async fn sla_policy_impl(
        &self,
        company_id: CompanyId,
    ) -> Result<crate::sla::SlaPolicy> {
        let row = sqlx::query(
            "SELECT critical_days, high_days, medium_days, low_days, unknown_days, \
             kev_uses_cisa_due_date FROM sla_policies WHERE company_id = ?1",
        )
        .bind(company_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            Some(r) => sla_from_row(&r)?,
            None => crate::sla::SlaPolicy::default(),
        })
    }

    pub(crate) async fn set_sla_policy_impl(
        &self,
        company_id: CompanyId,
        policy: &crate::sla::SlaPolicy,
        ctx: &ChangeContext,
    ) -> Result<()> {
        check_sla(policy)?;
        let before = self.sla_policy_impl(company_id).await?;
        let mut w = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO sla_policies (company_id, critical_days, high_days, medium_days, \
             low_days, unknown_days, kev_uses_cisa_due_date, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (company_id) DO UPDATE SET \
             critical_days = excluded.critical_days, high_days = excluded.high_days, \
             medium_days = excluded.medium_days, low_days = excluded.low_days, \
             unknown_days = excluded.unknown_days, \
             kev_uses_cisa_due_date = excluded.kev_uses_cisa_due_date, \
             updated_at = excluded.updated_at",
        )
        .bind(company_id)
        .bind(i64::from(policy.critical_days))
        .bind(i64::from(policy.high_days))
        .bind(i64::from(policy.medium_days))
        .bind(i64::from(policy.low_days))
        .bind(i64::from(policy.unknown_days))
        .bind(policy.kev_uses_cisa_due_date)
        .bind(ms(ctx.at))
        .execute(&mut *w.tx)
        .await?;
        insert_audit(&mut w.tx, company_id, &sla_audit(&before, policy), ctx).await?;
        w.commit().await
    }

    pub(crate) async fn count_findings_impl(
        &self,
        company_id: CompanyId,
        filter: &FindingFilter,
    ) -> Result<u64> {
        let mut qb = sqlx::QueryBuilder::<sqlx::Sqlite>::new("SELECT count(*) FROM findings f");
        qb.push(" WHERE f.company_id = ").push_bind(company_id);
        crate::common::findings::push_finding_conditions(&mut qb, company_id, filter);
        let n: i64 = qb.build_query_scalar().fetch_one(&self.pool).await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    pub(crate) async fn remediation_rows_impl(
        &self,
        company_id: CompanyId,
        since: DateTime<Utc>,
    ) -> Result<Vec<(zt_advisory::Severity, DateTime<Utc>, DateTime<Utc>)>> {
        let rows: Vec<(i64, i64, i64)> = sqlx::query_as(
            "SELECT severity, first_seen, resolved_at FROM findings \
             WHERE company_id = ?1 AND resolved_at >= ?2 \
             AND resolution IN ('removed', 'fixed')",
        )
        .bind(company_id)
        .bind(ms(since))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(s, a, b)| {
                (
                    crate::common::severity_from_rank(s),
                    crate::common::from_ms(a),
                    crate::common::from_ms(b),
                )
            })
            .collect())
    }
}

impl SqliteStore {
    /// Open findings overdue (per severity) and due within 7 days at `now` (suppressed ones
    /// left out), and suppressed: one statement.
    pub(crate) async fn sla_counts(
        &self,
        company_id: CompanyId,
        now: DateTime<Utc>,
    ) -> Result<crate::common::findings::SlaCounts> {
        let policy = self.sla_policy_impl(company_id).await?;
        let (overdue, soon) = sla_bounds(&policy, now);
        let mut qb = crate::common::findings::sla_counts_query(company_id, &overdue, &soon);
        let row: crate::common::findings::SlaCountsRow =
            qb.build_query_as().fetch_one(&self.pool).await?;
        Ok(crate::common::findings::SlaCounts::of_row(row))
    }
}

impl SqliteStore {
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
        let mut w = self.begin_write().await?;
        let mut outcome = ImportOutcome::default();
        let mut vulns: Vec<(String, Uuid)> = Vec::new();
        for (i, (new, d)) in checked.iter().enumerate() {
            let Some(vuln_id) = resolve_vuln(&mut w.tx, &new.vuln_id).await? else {
                outcome.unknown.push(new.vuln_id.clone());
                continue;
            };
            sqlx::query(
                "INSERT INTO analyses (company_id, analysis_id, vuln_id, requested_id, any_agent, \
                 any_tag, state, response, suppress, source, created_at, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, 1, 1, 'in_triage', '[]', 0, ?5, ?6, ?6)",
            )
            .bind(company_id)
            .bind(new.analysis_id)
            .bind(&vuln_id)
            .bind(&new.vuln_id)
            .bind(&new.source)
            .bind(ms(ctx.at))
            .execute(&mut *w.tx)
            .await?;
            write_decision(&mut w.tx, company_id, new.analysis_id, d, ctx.at)
                .await
                .map_err(|e| in_item(i, e))?;
            insert_audit(
                &mut w.tx,
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
            cover_vuln(&mut w.tx, company_id, vuln_id, ms(ctx.at)).await?;
            if let Some(a) = load_analysis(&mut w.tx, company_id, *analysis_id, ctx.at).await? {
                events.push(changed_event(company_id, &a, "imported"));
            }
        }
        append_events_in(&mut w.tx, &events, ctx.at).await?;
        w.commit().await?;
        self.signal_events();
        Ok(outcome)
    }
}

async fn append_events_in(tx: &mut Tx, events: &[NewEvent], at: DateTime<Utc>) -> Result<()> {
    if !events.is_empty() {
        append_in_tx(tx, events, ms(at)).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The coverage statements find their rows through keys: a vulnerability's findings by
    /// `findings_vuln`, the analyses of a finding by `analyses_vuln`, aliases by their keys.
    #[tokio::test]
    async fn coverage_statements_seek_and_never_scan_a_table() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("plan.db"))
            .await
            .unwrap();
        // With each statement, the scans of its own derived rows: `ids`, the vulnerability
        // ids concerned; `l`: `live`, their few analyses, read once; `lv`, `w`: those
        // analyses per id they cover, and the rows the findings join (sought by id).
        let statements: [(String, &[&str]); 5] = [
            (
                recover_vuln_sql(FINDINGS_BY_VULN, Some(BY_VULN)),
                &["SCAN ids", "SCAN l", "SCAN lv", "SCAN w"],
            ),
            (
                recover_agents_sql(|t| format!("{t}.agent_id IN (?3, ?4)")),
                &["SCAN ids", "SCAN l", "SCAN lv", "SCAN w"],
            ),
            (
                recount_sql(
                    "agent_id IN (SELECT f.agent_id FROM findings f WHERE f.company_id = ?1 \
                     AND f.vuln_id IN (SELECT ?2 UNION SELECT va.vuln_id FROM vuln_aliases va \
                     WHERE va.alias = ?2))",
                ),
                &[],
            ),
            (RESOLVE_VULN.to_string(), &["SCAN c"]),
            (
                crate::common::findings::sla_counts_query::<sqlx::Sqlite>(
                    CompanyId(Uuid::nil()),
                    &crate::sla::SlaPolicy::default().due_by(Utc::now()),
                    &crate::sla::SlaPolicy::default().due_by(Utc::now()),
                )
                .sql()
                .as_str()
                .to_string(),
                // `one`/`t`, `s`, `k`: its three one-row parts (range counts of `findings_due`,
                // the suppressed findings counted there too, the KEV ones sought by
                // vulnerability).
                &["SCAN one", "SCAN t", "SCAN s", "SCAN k"],
            ),
        ];
        let mut bad = Vec::new();
        for (sql, derived) in statements {
            // `?N` parameters, or (the query builder's) plain `?`s.
            let params = if sql.contains("?1") {
                (1..=20)
                    .filter(|n| sql.contains(&format!("?{n}")))
                    .max()
                    .unwrap_or(0)
            } else {
                sql.matches('?').count()
            };
            let mut q = sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")));
            for _ in 0..params {
                q = q.bind(vec![0u8; 16]);
            }
            let plan: Vec<String> = q
                .fetch_all(store.pool())
                .await
                .unwrap()
                .iter()
                .map(|row| row.get::<String, _>(3))
                .collect();
            for step in &plan {
                // `the_id`, `the_id2`: the one-row `(VALUES (?))` of a vulnerability's own id
                // (a FROM clause for Citus), not a table.
                if step.starts_with("SCAN ")
                    && !step.contains("CONSTANT ROW")
                    && !matches!(step.as_str(), "SCAN the_id" | "SCAN the_id2")
                    && !derived.contains(&step.as_str())
                {
                    bad.push(format!("{sql}\nscans: {plan:#?}"));
                }
                // A walk of all of a company's findings is a search by its key's prefix
                // alone: none of these statements may make one (the SLA counts seek the
                // suppressed and the KEV findings by vulnerability).
                if step.starts_with("SEARCH f USING PRIMARY KEY (company_id=?)") {
                    bad.push(format!("{sql}\nwalks the company's findings: {plan:#?}"));
                }
            }
        }
        assert!(bad.is_empty(), "{}", bad.join("\n\n"));
    }
}

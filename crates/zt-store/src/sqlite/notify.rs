//! Notifications on SQLite: the outbox written inside the writer's transactions (see
//! `common/notify.rs` for the steps), rules, the dispatchers' claim and the delivery log. One
//! writer at a time, so a claim is one short write transaction.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;
use uuid::Uuid;

use super::rows::{padded_chunks, values};
use super::SqliteStore;
use crate::common::events::ChangedFinding;
use crate::common::notify::*;
use crate::common::{from_ms, ms};
use crate::model::*;
use crate::notify::*;
use crate::Result;
use zt_inventory::SoftwareKey;

type Tx = sqlx::Transaction<'static, sqlx::Sqlite>;

/// The rules of these companies, one statement per 512 companies.
async fn load_rules(tx: &mut Tx, companies: &[CompanyId]) -> Result<Vec<NotificationRule>> {
    let mut rules = Vec::new();
    let mut seen = HashSet::new();
    for chunk in padded_chunks(companies) {
        let sql = format!(
            "SELECT {RULE_COLUMNS} FROM notification_rules WHERE company_id IN ({})",
            values(chunk.len(), "?")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for c in &chunk {
            q = q.bind(**c);
        }
        for row in q.fetch_all(&mut **tx).await? {
            let rule = rule_from_row(&row, 0)?;
            if seen.insert(rule.rule_id) {
                rules.push(rule);
            }
        }
    }
    Ok(rules)
}

/// What one statement tells of a company with rules before any rule is read.
struct Presence {
    /// One of its rules filters by host tags.
    tagged: bool,
    /// Its rule revision counter (None: no rule changed since revisions were kept).
    revision: Option<i64>,
    /// A suppressing analysis is in force (its opened findings are looked up).
    suppressing: bool,
}

/// The companies among these with rules, whether one of them filters by host tags, their
/// rule revision counters and whether a suppressing analysis is in force — one statement for
/// what old news needs (most reports are old news to every rule), without reading the rules.
async fn rule_presence(
    tx: &mut Tx,
    companies: &[CompanyId],
) -> Result<HashMap<CompanyId, Presence>> {
    let mut out = HashMap::new();
    for chunk in padded_chunks(companies) {
        let sql = format!(
            "SELECT r.company_id, max(r.tags <> '[]'), \
             (SELECT v.revision FROM notification_rule_revisions v \
               WHERE v.company_id = r.company_id), \
             EXISTS (SELECT 1 FROM analyses a WHERE a.company_id = r.company_id \
               AND a.suppress = 1 AND a.withdrawn_at IS NULL AND a.expired_at IS NULL) \
             FROM notification_rules r WHERE r.company_id IN ({}) GROUP BY r.company_id",
            values(chunk.len(), "?")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for c in &chunk {
            q = q.bind(**c);
        }
        for row in q.fetch_all(&mut **tx).await? {
            out.insert(
                CompanyId(crate::common::uuid_from(row.get::<&[u8], _>(0))?),
                Presence {
                    tagged: row.get::<i64, _>(1) != 0,
                    revision: row.get(2),
                    suppressing: row.get::<i64, _>(3) != 0,
                },
            );
        }
    }
    Ok(out)
}

/// The rules of these companies with their revisions (`company`: as read before, so every
/// rule of that revision is among the rules read now).
async fn load_rules_with_revisions(
    tx: &mut Tx,
    companies: &[CompanyId],
    company: HashMap<CompanyId, i64>,
) -> Result<(Vec<NotificationRule>, Revisions)> {
    let mut revs = Revisions {
        company,
        ..Default::default()
    };
    let rules = load_rules(tx, companies).await?;
    for chunk in padded_chunks(companies) {
        let sql = format!(
            "SELECT rule_id, revision FROM notification_rules WHERE company_id IN ({})",
            values(chunk.len(), "?")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for c in &chunk {
            q = q.bind(**c);
        }
        for row in q.fetch_all(&mut **tx).await? {
            revs.rules.insert(
                crate::common::uuid_from(row.get::<&[u8], _>(0))?,
                row.get(1),
            );
        }
    }
    Ok((rules, revs))
}

/// The subjects among these that were told already, with the revision they were told at.
async fn known_subjects(tx: &mut Tx, subjects: &[(CompanyId, String)]) -> Result<KnownSubjects> {
    let mut out = KnownSubjects::new();
    for chunk in padded_chunks(subjects) {
        let sql = format!(
            "SELECT company_id, key, revision FROM notification_subjects \
             WHERE (company_id, key) IN (VALUES {})",
            values(chunk.len(), "(?, ?)")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (c, k) in &chunk {
            q = q.bind(*c).bind(k.as_str());
        }
        for row in q.fetch_all(&mut **tx).await? {
            out.insert(
                (
                    CompanyId(crate::common::uuid_from(row.get::<&[u8], _>(0))?),
                    row.get(1),
                ),
                row.get(2),
            );
        }
    }
    Ok(out)
}

/// A rule's change takes the next revision of its company's rules.
async fn next_rule_revision(tx: &mut Tx, company_id: CompanyId, rule_id: Uuid) -> Result<()> {
    let rev: i64 = sqlx::query_scalar(
        "INSERT INTO notification_rule_revisions (company_id, revision) VALUES (?, 1) \
         ON CONFLICT (company_id) DO UPDATE SET revision = revision + 1 RETURNING revision",
    )
    .bind(company_id)
    .fetch_one(&mut **tx)
    .await?;
    sqlx::query("UPDATE notification_rules SET revision = ? WHERE company_id = ? AND rule_id = ?")
        .bind(rev)
        .bind(company_id)
        .bind(rule_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

fn companies_of(cands: &[Candidate]) -> Vec<CompanyId> {
    let mut companies: Vec<CompanyId> = cands.iter().map(|c| c.company_id).collect();
    companies.sort();
    companies.dedup();
    companies
}

/// Writes the messages these candidates cause, inside the caller's transaction.
pub(crate) async fn write_in_tx(
    tx: &mut Tx,
    cands: &[Candidate],
    now: DateTime<Utc>,
) -> Result<()> {
    if cands.is_empty() {
        return Ok(());
    }
    let rules = load_rules(tx, &companies_of(cands)).await?;
    write_with_rules(tx, &rules, None, cands, now).await
}

/// `finding.opened` / `finding.kev` of the findings a group opened, inside its transaction
/// (after coverage was applied): companies without rules cost one statement; suppressed
/// findings never notify.
pub(crate) async fn opened_in_tx(
    tx: &mut Tx,
    opened: Vec<(CompanyId, AgentId, &ChangedFinding)>,
    packages: &HashMap<SoftwareKey, PackageRef>,
    now: DateTime<Utc>,
) -> Result<()> {
    changed_in_tx(tx, opened, Vec::new(), packages, now).await
}

/// As [`opened_in_tx`], plus `finding.kev` of open findings whose vulnerability became KEV
/// (`raised`: a knowledge change's re-match).
pub(crate) async fn changed_in_tx<'a>(
    tx: &mut Tx,
    opened: Vec<(CompanyId, AgentId, &'a ChangedFinding)>,
    raised: Vec<(CompanyId, AgentId, &'a ChangedFinding)>,
    packages: &HashMap<SoftwareKey, PackageRef>,
    now: DateTime<Utc>,
) -> Result<()> {
    if opened.is_empty() && raised.is_empty() {
        return Ok(());
    }
    let mut companies: Vec<CompanyId> = opened.iter().chain(&raised).map(|o| o.0).collect();
    companies.sort();
    companies.dedup();
    // Which companies have rules at all, and whether one filters by host tags: one small
    // statement, no rule read (most reports are old news to every rule).
    let presence = rule_presence(tx, &companies).await?;
    if presence.is_empty() {
        return Ok(());
    }
    let opened: Vec<_> = opened
        .into_iter()
        .filter(|o| presence.contains_key(&o.0))
        .collect();
    let raised: Vec<_> = raised
        .into_iter()
        .filter(|o| presence.contains_key(&o.0))
        .collect();
    let both: Vec<_> = opened
        .iter()
        .chain(&raised)
        .filter(|o| presence.get(&o.0).is_some_and(|p| p.suppressing))
        .copied()
        .collect();
    let suppressed = suppressed_among(tx, &both).await?;
    let mut cands = vuln_candidates(opened, packages, &suppressed);
    cands.extend(kev_candidates(raised, packages, &suppressed));
    if cands.is_empty() {
        return Ok(());
    }
    // The counters were read first: every rule of the revision read is among the rules read
    // after.
    let company_revs: HashMap<CompanyId, i64> = presence
        .iter()
        .filter_map(|(c, p)| p.revision.map(|r| (*c, r)))
        .collect();
    let mut unique = cand_subjects(&cands);
    unique.sort();
    unique.dedup();
    let known = known_subjects(tx, &unique).await?;
    let tagged: HashSet<CompanyId> = presence
        .iter()
        .filter(|(_, p)| p.tagged)
        .map(|(c, _)| *c)
        .collect();
    let news = companies_with_news(&cands, &company_revs, &tagged, &known);
    if news.is_empty() {
        return Ok(());
    }
    cands.retain(|c| news.contains(&c.company_id));
    let mut news: Vec<CompanyId> = news.into_iter().collect();
    news.sort();
    let (rules, revs) = load_rules_with_revisions(tx, &news, company_revs).await?;
    write_with_rules(tx, &rules, Some((&revs, &known)), &cands, now).await
}

/// Which of the opened findings a suppressing analysis covers (coverage is applied before):
/// the caller passes only those of companies with a suppressing analysis in force.
async fn suppressed_among(
    tx: &mut Tx,
    opened: &[(CompanyId, AgentId, &ChangedFinding)],
) -> Result<Suppressed> {
    let mut out = Suppressed::new();
    let mut agents: std::collections::BTreeMap<CompanyId, Vec<AgentId>> = Default::default();
    for (c, a, _) in opened {
        agents.entry(*c).or_default().push(*a);
    }
    for (company, mut list) in agents {
        list.sort();
        list.dedup();
        for chunk in padded_chunks(&list) {
            let sql = format!(
                "SELECT agent_id, software_key, vuln_id FROM findings WHERE company_id = ? \
                 AND agent_id IN ({}) AND resolved_at IS NULL AND suppressed = 1",
                values(chunk.len(), "?")
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(company);
            for a in &chunk {
                q = q.bind(**a);
            }
            for row in q.fetch_all(&mut **tx).await? {
                out.insert((
                    company,
                    crate::common::agent_from(row.get::<&[u8], _>(0))?,
                    crate::common::key_from(row.get::<&[u8], _>(1))?,
                    row.get(2),
                ));
            }
        }
    }
    Ok(out)
}

/// The hosts carrying the tags rules filter by.
async fn tagged_hosts(
    tx: &mut Tx,
    rules: &[NotificationRule],
    cands: &[Candidate],
) -> Result<TaggedHosts> {
    let mut out = TaggedHosts::new();
    for (company, tags) in tags_wanted(rules, cands) {
        let sql = format!(
            "SELECT tag, agent_id FROM agent_tags WHERE company_id = ? AND tag IN ({})",
            values(tags.len(), "?")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(company);
        for t in &tags {
            q = q.bind(t.as_str());
        }
        for row in q.fetch_all(&mut **tx).await? {
            out.entry((company, row.get::<String, _>(0)))
                .or_default()
                .insert(crate::common::agent_from(row.get::<&[u8], _>(1))?);
        }
    }
    Ok(out)
}

/// Writes the messages of these candidates for these rules. With `news` (the revisions and
/// the subjects known, as read), subjects told already to every rule that hears of them are
/// passed over before any key is probed.
async fn write_with_rules(
    tx: &mut Tx,
    rules: &[NotificationRule],
    news: Option<(&Revisions, &KnownSubjects)>,
    cands: &[Candidate],
    now: DateTime<Utc>,
) -> Result<()> {
    if rules.is_empty() || cands.is_empty() {
        return Ok(());
    }
    let tagged = tagged_hosts(tx, rules, cands).await?;
    let pairs = match news {
        None => matching(rules, cands, &tagged),
        Some((revs, known)) => {
            let subjects = cand_subjects(cands);
            let mut unique = subjects.clone();
            unique.sort();
            unique.dedup();
            // Unpadded: a row twice in one upsert would be updated twice.
            let record = subjects_to_record(&unique, revs, known);
            for chunk in record.chunks(256) {
                let sql = format!(
                    "INSERT INTO notification_subjects (company_id, key, revision) VALUES {} \
                     ON CONFLICT (company_id, key) DO UPDATE \
                     SET revision = max(revision, excluded.revision)",
                    values(chunk.len(), "(?, ?, ?)")
                );
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                for (c, k, r) in chunk {
                    q = q.bind(*c).bind(k.as_str()).bind(*r);
                }
                q.execute(&mut **tx).await?;
            }
            let told: Vec<Option<i64>> = subjects.iter().map(|s| known.get(s).copied()).collect();
            matching_news(rules, cands, &tagged, revs, &told)
        }
    };
    if pairs.is_empty() {
        return Ok(());
    }
    // Keys first: those inserted now are news.
    let keys = pair_keys(rules, cands, &pairs);
    let mut fresh: HashSet<(Uuid, String)> = HashSet::new();
    for chunk in padded_chunks(&keys) {
        let sql = format!(
            "INSERT INTO notification_keys (rule_id, key, created_at) VALUES {} \
             ON CONFLICT DO NOTHING RETURNING rule_id, key",
            values(chunk.len(), "(?, ?, ?)")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (rule, key) in &chunk {
            q = q.bind(*rule).bind(key.as_str()).bind(ms(now));
        }
        for row in q.fetch_all(&mut **tx).await? {
            fresh.insert((
                crate::common::uuid_from(row.get::<&[u8], _>(0))?,
                row.get(1),
            ));
        }
    }
    if fresh.is_empty() {
        return Ok(());
    }
    let mut open = Vec::new();
    for (rule_id, group_key) in open_digest_keys(rules, cands, &pairs, &fresh) {
        let row = sqlx::query(
            "SELECT outbox_id, data FROM notification_outbox WHERE rule_id = ? \
             AND group_key = ? AND state = 'pending' AND attempts = 0",
        )
        .bind(rule_id)
        .bind(group_key.as_str())
        .fetch_optional(&mut **tx)
        .await?;
        if let Some(row) = row {
            open.push(OpenRow {
                outbox_id: row.get(0),
                rule_id,
                group_key,
                data: row.get(1),
            });
        }
    }
    let plan = plan(rules, cands, &pairs, &fresh, open, now);
    // Many rows per statement (a new vulnerability for 100 rules is 100 rows); chunks are
    // not padded: a repeated row would be a second message.
    for chunk in plan.inserts.chunks(64) {
        let sql = format!(
            "INSERT INTO notification_outbox (delivery_id, company_id, rule_id, event, group_key, \
             data, created_at, due_at, state, attempts) VALUES {}",
            values(chunk.len(), "(?, ?, ?, ?, ?, ?, ?, ?, 'pending', 0)")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for i in chunk {
            q = q
                .bind(i.delivery_id)
                .bind(i.company_id)
                .bind(i.rule_id)
                .bind(i.event.as_str())
                .bind(i.group_key.as_str())
                .bind(i.data.as_str())
                .bind(ms(now))
                .bind(ms(i.due_at));
        }
        q.execute(&mut **tx).await?;
    }
    for (id, data) in &plan.updates {
        sqlx::query("UPDATE notification_outbox SET data = ? WHERE outbox_id = ?")
            .bind(data)
            .bind(id)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// `analysis.expired` of an analysis whose expiry was applied in this transaction (coverage
/// recomputed before): the hosts its vulnerability is open on again.
pub(crate) async fn analysis_expired_in_tx(
    tx: &mut Tx,
    company_id: CompanyId,
    analysis: &crate::analysis::Analysis,
    now: DateTime<Utc>,
) -> Result<()> {
    let rules = load_rules(tx, &[company_id]).await?;
    if !rules
        .iter()
        .any(|r| r.events.iter().any(|e| e == ANALYSIS_EXPIRED))
    {
        return Ok(());
    }
    let rows = sqlx::query(
        "SELECT agent_id, max(severity), max(kev) FROM findings WHERE company_id = ? \
         AND vuln_id = ? AND resolved_at IS NULL AND suppressed = 0 GROUP BY agent_id",
    )
    .bind(company_id)
    .bind(analysis.vuln_id.as_str())
    .fetch_all(&mut **tx)
    .await?;
    let mut hosts = Vec::with_capacity(rows.len());
    let (mut severity, mut kev) = (0i64, false);
    for row in &rows {
        hosts.push(crate::common::agent_from(row.get::<&[u8], _>(0))?);
        severity = severity.max(row.get::<i64, _>(1));
        kev |= row.get::<i64, _>(2) != 0;
    }
    if rows.is_empty() {
        // No open finding: the vulnerability's own severity.
        if let Some(row) = sqlx::query("SELECT severity, kev FROM vulns WHERE vuln_id = ?")
            .bind(analysis.vuln_id.as_str())
            .fetch_optional(&mut **tx)
            .await?
        {
            severity = row.get(0);
            kev = row.get::<i64, _>(1) != 0;
        }
    }
    let cand = analysis_expired_candidate(company_id, analysis, severity, kev, hosts);
    write_with_rules(tx, &rules, None, &[cand], now).await
}

/// Marks the findings of one company crossing into `told` (due by `by`) and returns them.
async fn mark_crossing(
    tx: &mut Tx,
    company_id: CompanyId,
    policy: &crate::sla::SlaPolicy,
    by: DateTime<Utc>,
    told: i64,
) -> Result<Vec<Crossing>> {
    let due = policy.due_by(by);
    let sql = format!(
        "UPDATE findings SET sla_notified = ?1 \
         WHERE (company_id, agent_id, software_key, vuln_id) IN ( \
           SELECT f.company_id, f.agent_id, f.software_key, f.vuln_id FROM findings f \
           WHERE f.company_id = ?2 AND f.resolved_at IS NULL AND f.suppressed = 0 \
           AND f.sla_notified < ?1 AND ((f.severity = 5 AND f.first_seen <= ?3) \
             OR (f.severity = 4 AND f.first_seen <= ?4) OR (f.severity = 3 AND f.first_seen <= ?5) \
             OR (f.severity = 2 AND f.first_seen <= ?6) OR (f.severity <= 1 AND f.first_seen <= ?7) \
             {} ) LIMIT {SLA_PASS_LIMIT}) \
         RETURNING agent_id, vuln_id, severity, kev",
        if due.kev_date.is_some() {
            "OR (f.kev = 1 AND f.vuln_id IN (SELECT kv.vuln_id FROM vulns kv \
             WHERE kv.kev_due_date <= ?8))"
        } else {
            ""
        }
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(told)
        .bind(company_id);
    for b in due.first_seen_by {
        q = q.bind(ms(b));
    }
    if let Some(d) = &due.kev_date {
        q = q.bind(d.as_str());
    }
    let mut out = Vec::new();
    for row in q.fetch_all(&mut **tx).await? {
        out.push((
            crate::common::agent_from(row.get::<&[u8], _>(0))?,
            row.get::<String, _>(1),
            row.get::<i64, _>(2),
            row.get::<i64, _>(3) != 0,
        ));
    }
    Ok(out)
}

/// `report.failed` for a report dead-lettered in this transaction.
pub(crate) async fn report_failed_in_tx(
    tx: &mut Tx,
    company_id: CompanyId,
    report_id: ReportId,
    agent_id: AgentId,
    error: &str,
    now: i64,
) -> Result<()> {
    let hostname: Option<String> =
        sqlx::query_scalar("SELECT hostname FROM agents WHERE company_id = ? AND agent_id = ?")
            .bind(company_id)
            .bind(agent_id)
            .fetch_optional(&mut **tx)
            .await?;
    let cand = report_failed_candidate(
        company_id,
        report_id,
        agent_id,
        hostname.as_deref().unwrap_or(""),
        error,
    );
    write_in_tx(tx, &[cand], from_ms(now)).await
}

#[async_trait]
impl NotificationStore for SqliteStore {
    async fn create_rule(&self, rule: &NotificationRule) -> Result<bool> {
        let mut w = self.begin_write().await?;
        let exists: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM companies WHERE company_id = ?")
                .bind(rule.company_id)
                .fetch_optional(&mut *w.tx)
                .await?;
        if exists.is_none() {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO notification_rules (name, events, min_severity, kev_only, tags, \
             digest_minutes, stale_days, dest_kind, dest_url, dest_to, secret_sealed, updated_at, \
             company_id, rule_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(rule.name.as_str())
        .bind(json_strings(&rule.events))
        .bind(severity_name(rule.min_severity))
        .bind(rule.kev_only)
        .bind(json_strings(&rule.tags))
        .bind(i64::from(rule.digest_minutes))
        .bind(i64::from(rule.stale_days))
        .bind(rule.destination.kind.as_str())
        .bind(rule.destination.url.as_deref())
        .bind(json_strings(&rule.destination.to))
        .bind(rule.secret_sealed.as_deref())
        .bind(ms(rule.updated_at))
        .bind(rule.company_id)
        .bind(rule.rule_id)
        .bind(ms(rule.created_at))
        .execute(&mut *w.tx)
        .await?;
        next_rule_revision(&mut w.tx, rule.company_id, rule.rule_id).await?;
        w.commit().await?;
        Ok(true)
    }

    async fn list_rules(&self, company_id: CompanyId) -> Result<Vec<NotificationRule>> {
        let sql = format!(
            "SELECT {RULE_COLUMNS} FROM notification_rules WHERE company_id = ? \
             ORDER BY created_at, rule_id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(company_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| rule_from_row(r, 0)).collect()
    }

    async fn get_rule(
        &self,
        company_id: CompanyId,
        rule_id: Uuid,
    ) -> Result<Option<NotificationRule>> {
        let sql = format!(
            "SELECT {RULE_COLUMNS} FROM notification_rules WHERE company_id = ? AND rule_id = ?"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(company_id)
            .bind(rule_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| rule_from_row(&r, 0)).transpose()
    }

    async fn update_rule(&self, rule: &NotificationRule) -> Result<bool> {
        let mut w = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE notification_rules SET name = ?, events = ?, min_severity = ?, kev_only = ?, \
             tags = ?, digest_minutes = ?, stale_days = ?, dest_kind = ?, dest_url = ?, \
             dest_to = ?, secret_sealed = ?, updated_at = ? WHERE company_id = ? AND rule_id = ?",
        )
        .bind(rule.name.as_str())
        .bind(json_strings(&rule.events))
        .bind(severity_name(rule.min_severity))
        .bind(rule.kev_only)
        .bind(json_strings(&rule.tags))
        .bind(i64::from(rule.digest_minutes))
        .bind(i64::from(rule.stale_days))
        .bind(rule.destination.kind.as_str())
        .bind(rule.destination.url.as_deref())
        .bind(json_strings(&rule.destination.to))
        .bind(rule.secret_sealed.as_deref())
        .bind(ms(rule.updated_at))
        .bind(rule.company_id)
        .bind(rule.rule_id)
        .execute(&mut *w.tx)
        .await?;
        if done.rows_affected() == 1 {
            next_rule_revision(&mut w.tx, rule.company_id, rule.rule_id).await?;
        }
        w.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_rule(&self, company_id: CompanyId, rule_id: Uuid) -> Result<bool> {
        let mut w = self.begin_write().await?;
        let done =
            sqlx::query("DELETE FROM notification_rules WHERE company_id = ? AND rule_id = ?")
                .bind(company_id)
                .bind(rule_id)
                .execute(&mut *w.tx)
                .await?;
        if done.rows_affected() == 1 {
            sqlx::query(
                "DELETE FROM notification_outbox WHERE rule_id = ? AND company_id = ? \
                 AND state IN ('pending', 'leased')",
            )
            .bind(rule_id)
            .bind(company_id)
            .execute(&mut *w.tx)
            .await?;
            sqlx::query("DELETE FROM notification_keys WHERE rule_id = ?")
                .bind(rule_id)
                .execute(&mut *w.tx)
                .await?;
        }
        w.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn enqueue_notifications(
        &self,
        requests: &[NotificationRequest],
        now: DateTime<Utc>,
    ) -> Result<u64> {
        let cands: Vec<Candidate> = requests.iter().map(Candidate::from).collect();
        let mut w = self.begin_background_write().await?;
        let before: i64 = sqlx::query_scalar("SELECT count(*) FROM notification_keys")
            .fetch_one(&mut *w.tx)
            .await?;
        write_in_tx(&mut w.tx, &cands, now).await?;
        let after: i64 = sqlx::query_scalar("SELECT count(*) FROM notification_keys")
            .fetch_one(&mut *w.tx)
            .await?;
        w.commit().await?;
        Ok(u64::try_from(after - before).unwrap_or(0))
    }

    async fn scan_stale_agents(&self, now: DateTime<Utc>) -> Result<u64> {
        let sql = format!(
            "SELECT {RULE_COLUMNS} FROM notification_rules WHERE events LIKE '%\"agent.stale\"%'"
        );
        let rules: Vec<NotificationRule> = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| rule_from_row(r, 0))
            .collect::<Result<_>>()?;
        let mut cands = Vec::new();
        for rule in &rules {
            let days = rule.stale_days.max(1);
            let cutoff = now - chrono::Duration::days(i64::from(days));
            let rows = sqlx::query(
                "SELECT agent_id, hostname, seen_at FROM agents WHERE company_id = ? \
                 AND seen_at < ? ORDER BY seen_at LIMIT 1000",
            )
            .bind(rule.company_id)
            .bind(ms(cutoff))
            .fetch_all(&self.pool)
            .await?;
            for row in rows {
                cands.push(agent_stale_candidate(
                    rule.company_id,
                    crate::common::agent_from(row.get::<&[u8], _>(0))?,
                    row.get::<&str, _>(1),
                    from_ms(row.get(2)),
                    days,
                ));
            }
        }
        if cands.is_empty() {
            return Ok(0);
        }
        cands.sort_by(|a, b| (a.company_id, &a.subject).cmp(&(b.company_id, &b.subject)));
        cands.dedup_by(|a, b| a.company_id == b.company_id && a.subject == b.subject);
        let n = cands.len() as u64;
        let mut w = self.begin_background_write().await?;
        write_in_tx(&mut w.tx, &cands, now).await?;
        w.commit().await?;
        Ok(n)
    }

    async fn scan_sla(&self, now: DateTime<Utc>) -> Result<u64> {
        let sql =
            format!("SELECT {RULE_COLUMNS} FROM notification_rules WHERE events LIKE '%\"sla.%'");
        let rules: Vec<NotificationRule> = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| rule_from_row(r, 0))
            .collect::<Result<_>>()?;
        let mut marked = 0u64;
        for company in companies_of_rules(&rules) {
            let policy = self.sla_policy_impl(company).await?;
            // Each company's pass is one transaction: the marks and the messages together.
            let mut w = self.begin_background_write().await?;
            let mut cands = Vec::new();
            // Overdue first: a finding past its date is not "due soon" as well.
            let overdue = mark_crossing(&mut w.tx, company, &policy, now, SLA_TOLD_OVERDUE).await?;
            cands.extend(sla_candidates(company, SLA_OVERDUE, &overdue, now));
            let soon = now + chrono::Duration::days(SLA_DUE_SOON_DAYS);
            let due_soon =
                mark_crossing(&mut w.tx, company, &policy, soon, SLA_TOLD_DUE_SOON).await?;
            cands.extend(sla_candidates(company, SLA_DUE_SOON, &due_soon, now));
            marked += (overdue.len() + due_soon.len()) as u64;
            let company_rules: Vec<NotificationRule> = rules
                .iter()
                .filter(|r| r.company_id == company)
                .cloned()
                .collect();
            write_with_rules(&mut w.tx, &company_rules, None, &cands, now).await?;
            w.commit().await?;
        }
        Ok(marked)
    }

    async fn scan_stale_feeds(
        &self,
        now: DateTime<Utc>,
        stale_after: chrono::Duration,
    ) -> Result<u64> {
        let sql = format!(
            "SELECT {RULE_COLUMNS} FROM notification_rules WHERE events LIKE '%\"feed.stale\"%'"
        );
        let rules: Vec<NotificationRule> = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| rule_from_row(r, 0))
            .collect::<Result<_>>()?;
        if rules.is_empty() {
            return Ok(0);
        }
        let feeds: Vec<(String, i64)> = sqlx::query_as(
            "SELECT feed, last_success_at FROM kb_feed_state \
             WHERE last_success_at IS NOT NULL AND last_success_at < ? ORDER BY feed",
        )
        .bind(ms(now - stale_after))
        .fetch_all(&self.pool)
        .await?;
        let mut cands = Vec::new();
        for company in companies_hearing(&rules, FEED_STALE) {
            for (feed, at) in &feeds {
                cands.push(feed_stale_candidate(
                    company,
                    feed,
                    from_ms(*at),
                    stale_after,
                ));
            }
        }
        if cands.is_empty() {
            return Ok(0);
        }
        let n = cands.len() as u64;
        let mut w = self.begin_background_write().await?;
        write_with_rules(&mut w.tx, &rules, None, &cands, now).await?;
        w.commit().await?;
        Ok(n)
    }

    async fn claim_notifications_within(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease: std::time::Duration,
        limits: &ClaimLimits,
    ) -> Result<Vec<ClaimedNotification>> {
        if limits.total == 0 {
            return Ok(Vec::new());
        }
        // Background work: ingest's writes go first (see `background_gate`).
        let mut w = self.begin_background_write().await?;
        // Due messages, oldest first, of the rules not at their limit (a rule with a long
        // backlog takes its share and is at its limit by the next claim: the others' messages
        // come next), more than can be taken: [`pick_claims`] keeps each rule to its share.
        let busy = saturated_rules(limits);
        let sql = format!(
            "SELECT outbox_id, rule_id FROM notification_outbox \
             WHERE state IN ('pending', 'leased') AND due_at <= ? {} \
             ORDER BY due_at LIMIT ?",
            if busy.is_empty() {
                String::new()
            } else {
                format!("AND rule_id NOT IN ({})", values(busy.len(), "?"))
            }
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(ms(now));
        for r in &busy {
            q = q.bind(*r);
        }
        let rows = q
            .bind(i64::from(limits.total) * 4)
            .fetch_all(&mut *w.tx)
            .await?;
        let mut candidates = Vec::with_capacity(rows.len());
        for row in rows {
            candidates.push((
                row.get::<i64, _>(0),
                crate::common::uuid_from(row.get::<&[u8], _>(1))?,
            ));
        }
        let ids = pick_claims(&candidates, limits);
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let until = ms(now) + i64::try_from(lease.as_millis()).unwrap_or(60_000);
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(256) {
            let sql = format!(
                "UPDATE notification_outbox SET state = 'leased', lease_owner = ?, \
                 attempts = attempts + 1, due_at = ? WHERE outbox_id IN ({})",
                values(chunk.len(), "?")
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(owner)
                .bind(until);
            for id in chunk {
                q = q.bind(id);
            }
            q.execute(&mut *w.tx).await?;
            let sql = format!(
                "SELECT o.outbox_id, o.delivery_id, o.event, o.data, o.created_at, o.attempts, {} \
                 FROM notification_outbox o JOIN notification_rules r \
                 ON r.company_id = o.company_id AND r.rule_id = o.rule_id \
                 WHERE o.outbox_id IN ({}) ORDER BY o.due_at, o.outbox_id",
                rule_columns("r"),
                values(chunk.len(), "?")
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for id in chunk {
                q = q.bind(id);
            }
            for row in q.fetch_all(&mut *w.tx).await? {
                let rule = rule_from_row(&row, 6)?;
                out.push(ClaimedNotification {
                    outbox_id: row.get(0),
                    delivery_id: crate::common::uuid_from(row.get::<&[u8], _>(1))?,
                    company_id: rule.company_id,
                    event: row.get(2),
                    data: serde_json::from_str(row.get::<&str, _>(3)).unwrap_or_default(),
                    created_at: from_ms(row.get(4)),
                    attempt: u32::try_from(row.get::<i64, _>(5)).unwrap_or(u32::MAX),
                    owner: owner.to_string(),
                    rule,
                });
            }
        }
        w.commit().await?;
        // Host counts as of now, on the read pool (the write lock is released).
        let mut counts = HostCounts::new();
        for q in host_count_queries(&out) {
            let tagged = if q.tags.is_empty() {
                String::new()
            } else {
                format!(
                    "AND agent_id IN (SELECT agent_id FROM agent_tags WHERE company_id = ? \
                     AND tag IN ({}))",
                    values(q.tags.len(), "?")
                )
            };
            for chunk in q.vulns.chunks(256) {
                let sql = format!(
                    "SELECT vuln_id, count(DISTINCT agent_id) FROM findings WHERE company_id = ? \
                     AND vuln_id IN ({}) AND resolved_at IS NULL AND suppressed = 0 {tagged} \
                     GROUP BY vuln_id",
                    values(chunk.len(), "?")
                );
                let mut s = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(q.company_id);
                for v in chunk {
                    s = s.bind(v.as_str());
                }
                if !q.tags.is_empty() {
                    s = s.bind(q.company_id);
                    for t in &q.tags {
                        s = s.bind(t.as_str());
                    }
                }
                for row in s.fetch_all(&self.pool).await? {
                    counts.insert(
                        (q.company_id, q.tags.clone(), row.get(0)),
                        u64::try_from(row.get::<i64, _>(1)).unwrap_or(0),
                    );
                }
            }
        }
        apply_host_counts(&mut out, &counts);
        Ok(out)
    }

    async fn finish_notifications(&self, done: &[FinishedAttempt]) -> Result<Vec<bool>> {
        if done.is_empty() {
            return Ok(Vec::new());
        }
        // Background work: ingest's writes go first (see `background_gate`); one transaction
        // for the lot, two statements per run of attempts (not two per attempt: the writer
        // this holds is the one ingest waits for).
        let mut w = self.begin_background_write().await?;
        let mut out = vec![false; done.len()];
        for run in finish_runs(done, 256) {
            let attempts = &done[run.clone()];
            let sql = format!(
                "UPDATE notification_outbox SET state = v.column2, due_at = v.column3, \
                 finished_at = v.column4, lease_owner = NULL, last_error = v.column5 \
                 FROM (VALUES {}) AS v \
                 WHERE notification_outbox.outbox_id = v.column1 \
                 AND notification_outbox.state = 'leased' \
                 AND notification_outbox.lease_owner = v.column6 \
                 AND notification_outbox.attempts = v.column7 \
                 RETURNING notification_outbox.outbox_id",
                values(attempts.len(), "(?, ?, ?, ?, ?, ?, ?)")
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for d in attempts {
                let (state, due, finished) = finished_state(d.outcome, d.attempt.attempted_at);
                q = q
                    .bind(d.claimed.outbox_id)
                    .bind(state)
                    .bind(ms(due))
                    .bind(finished.map(ms))
                    .bind(d.attempt.error.as_deref())
                    .bind(d.claimed.owner.as_str())
                    .bind(i64::from(d.claimed.attempt));
            }
            let recorded: HashSet<i64> = q
                .fetch_all(&mut *w.tx)
                .await?
                .iter()
                .map(|r| r.get::<i64, _>(0))
                .collect();
            // The log of each attempt recorded (a lease lost to another dispatcher: neither).
            let logged: Vec<usize> = run
                .filter(|i| recorded.contains(&done[*i].claimed.outbox_id))
                .collect();
            if logged.is_empty() {
                continue;
            }
            let sql = format!(
                "INSERT INTO notification_deliveries (company_id, rule_id, outbox_id, \
                 delivery_id, event, attempt, attempted_at, outcome, status, response_excerpt, \
                 error, next_attempt_at, duration_ms) VALUES {}",
                values(logged.len(), "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for &i in &logged {
                let (c, a, outcome) = (&done[i].claimed, &done[i].attempt, done[i].outcome);
                q = q
                    .bind(c.company_id)
                    .bind(c.rule.rule_id)
                    .bind(c.outbox_id)
                    .bind(c.delivery_id)
                    .bind(c.event.as_str())
                    .bind(i64::from(c.attempt))
                    .bind(ms(a.attempted_at))
                    .bind(outcome_label(outcome))
                    .bind(a.status.map(i64::from))
                    .bind(bounded_excerpt(a.response_excerpt.as_deref()))
                    .bind(a.error.as_deref())
                    .bind(next_attempt(outcome).map(ms))
                    .bind(i64::from(a.duration_ms));
                out[i] = true;
            }
            q.execute(&mut *w.tx).await?;
        }
        w.commit().await?;
        Ok(out)
    }

    async fn record_test_delivery(
        &self,
        rule: &NotificationRule,
        delivery_id: Uuid,
        a: &AttemptRecord,
        ok: bool,
    ) -> Result<()> {
        let mut w = self.begin_write().await?;
        let outcome = if ok { "test_sent" } else { "test_failed" };
        insert_delivery(
            &mut w.tx,
            rule.company_id,
            rule.rule_id,
            None,
            delivery_id,
            "test",
            1,
            outcome,
            a,
            None,
        )
        .await?;
        w.commit().await
    }

    async fn list_deliveries(
        &self,
        company_id: CompanyId,
        rule_id: Option<Uuid>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<DeliveryRecord>> {
        let before = before.unwrap_or(i64::MAX);
        let limit = i64::from(limit.max(1));
        let rows = match rule_id {
            Some(rule) => {
                let sql = format!(
                    "SELECT {DELIVERY_COLUMNS} FROM notification_deliveries \
                     WHERE company_id = ? AND rule_id = ? AND seq < ? ORDER BY seq DESC LIMIT ?"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(company_id)
                    .bind(rule)
                    .bind(before)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                let sql = format!(
                    "SELECT {DELIVERY_COLUMNS} FROM notification_deliveries \
                     WHERE company_id = ? AND seq < ? ORDER BY seq DESC LIMIT ?"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(company_id)
                    .bind(before)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter().map(delivery_from_row).collect()
    }

    async fn outbox_stats(&self) -> Result<OutboxStats> {
        let row = sqlx::query(
            "SELECT count(*), min(created_at) FROM notification_outbox \
             WHERE state IN ('pending', 'leased')",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(OutboxStats {
            backlog: u64::try_from(row.get::<i64, _>(0)).unwrap_or(0),
            oldest: row.get::<Option<i64>, _>(1).map(from_ms),
        })
    }

    async fn purge_notifications(&self, before: DateTime<Utc>) -> Result<u64> {
        let mut w = self.begin_background_write().await?;
        let a = sqlx::query(
            "DELETE FROM notification_outbox WHERE finished_at IS NOT NULL AND finished_at < ?",
        )
        .bind(ms(before))
        .execute(&mut *w.tx)
        .await?;
        let b = sqlx::query("DELETE FROM notification_deliveries WHERE attempted_at < ?")
            .bind(ms(before))
            .execute(&mut *w.tx)
            .await?;
        w.commit().await?;
        Ok(a.rows_affected() + b.rows_affected())
    }

    async fn prune_notification_subjects(&self) -> Result<u64> {
        let mut after: Option<(CompanyId, String)> = None;
        let mut pruned = 0u64;
        loop {
            // Read and delete in one write transaction: no ingest records a subject between.
            let mut w = self.begin_background_write().await?;
            let limit = SUBJECT_PRUNE_PAGE as i64;
            let rows = match &after {
                None => {
                    sqlx::query(
                        "SELECT company_id, key FROM notification_subjects \
                         ORDER BY company_id, key LIMIT ?",
                    )
                    .bind(limit)
                    .fetch_all(&mut *w.tx)
                    .await?
                }
                Some((c, k)) => {
                    sqlx::query(
                        "SELECT company_id, key FROM notification_subjects \
                         WHERE (company_id, key) > (?, ?) ORDER BY company_id, key LIMIT ?",
                    )
                    .bind(*c)
                    .bind(k.as_str())
                    .bind(limit)
                    .fetch_all(&mut *w.tx)
                    .await?
                }
            };
            let mut page = Vec::with_capacity(rows.len());
            for row in &rows {
                page.push((
                    CompanyId(crate::common::uuid_from(row.get::<&[u8], _>(0))?),
                    row.get::<String, _>(1),
                ));
            }
            let mut open = OpenVulns::new();
            for (company, vulns) in subject_vulns(&page) {
                for chunk in vulns.chunks(256) {
                    let sql = format!(
                        "SELECT vuln_id, severity, kev > 0 FROM company_vulns \
                         WHERE company_id = ? AND findings > 0 AND vuln_id IN ({})",
                        values(chunk.len(), "?")
                    );
                    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(company);
                    for v in chunk {
                        q = q.bind(v.as_str());
                    }
                    for row in q.fetch_all(&mut *w.tx).await? {
                        open.insert((company, row.get(0), row.get(1), row.get(2)));
                    }
                }
            }
            let stale = stale_subjects(&page, &open);
            for chunk in stale.chunks(256) {
                let sql = format!(
                    "DELETE FROM notification_subjects WHERE (company_id, key) IN (VALUES {})",
                    values(chunk.len(), "(?, ?)")
                );
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                for (c, k) in chunk {
                    q = q.bind(*c).bind(k.as_str());
                }
                pruned += q.execute(&mut *w.tx).await?.rows_affected();
            }
            w.commit().await?;
            if page.len() < SUBJECT_PRUNE_PAGE {
                return Ok(pruned);
            }
            after = page.pop();
        }
    }
}

fn companies_of_rules(rules: &[NotificationRule]) -> Vec<CompanyId> {
    let mut out: Vec<CompanyId> = rules.iter().map(|r| r.company_id).collect();
    out.sort();
    out.dedup();
    out
}

#[allow(clippy::too_many_arguments)]
async fn insert_delivery(
    tx: &mut Tx,
    company_id: CompanyId,
    rule_id: Uuid,
    outbox_id: Option<i64>,
    delivery_id: Uuid,
    event: &str,
    attempt: u32,
    outcome: &str,
    a: &AttemptRecord,
    next: Option<DateTime<Utc>>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO notification_deliveries (company_id, rule_id, outbox_id, delivery_id, event, \
         attempt, attempted_at, outcome, status, response_excerpt, error, next_attempt_at, \
         duration_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(company_id)
    .bind(rule_id)
    .bind(outbox_id)
    .bind(delivery_id)
    .bind(event)
    .bind(i64::from(attempt))
    .bind(ms(a.attempted_at))
    .bind(outcome)
    .bind(a.status.map(i64::from))
    .bind(bounded_excerpt(a.response_excerpt.as_deref()))
    .bind(a.error.as_deref())
    .bind(next.map(ms))
    .bind(i64::from(a.duration_ms))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

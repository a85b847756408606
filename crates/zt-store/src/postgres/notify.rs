//! Notifications on PostgreSQL (see `common/notify.rs` for the steps): the outbox written in
//! the transaction of the change, under that company's row-level-security scope; dispatchers on
//! any number of processes claim due messages with `FOR UPDATE SKIP LOCKED`, so each message
//! goes to exactly one of them, and an expired lease is taken over.

use std::collections::{BTreeMap, HashMap, HashSet};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;
use uuid::Uuid;

use super::queue::CompanyScope;
use super::{PgStore, Tx};
use crate::common::events::ChangedFinding;
use crate::common::notify::*;
use crate::model::*;
use crate::notify::*;
use crate::Result;
use zt_inventory::SoftwareKey;

async fn all_companies(tx: &mut Tx) -> Result<()> {
    super::set_all_companies(tx).await
}

/// Writes the messages these candidates cause, inside the caller's transaction, company by
/// company (entering each one's scope).
pub(crate) async fn write_in_tx(
    tx: &mut Tx,
    scope: &mut CompanyScope,
    cands: &[Candidate],
    now: DateTime<Utc>,
) -> Result<()> {
    let mut by_company: BTreeMap<CompanyId, Vec<Candidate>> = BTreeMap::new();
    for c in cands {
        by_company.entry(c.company_id).or_default().push(c.clone());
    }
    for (company, cands) in by_company {
        scope.enter(tx, company).await?;
        let rules = load_rules(tx, company).await?;
        write_company(tx, company, &rules, None, &cands, now).await?;
    }
    Ok(())
}

/// What one statement tells of a company before any rule is read (None: it has no rule).
struct Presence {
    /// One of its rules filters by host tags.
    tagged: bool,
    /// Its rule revision counter (None: no rule changed since revisions were kept).
    revision: Option<i64>,
    /// A suppressing analysis is in force (its opened findings are looked up).
    suppressing: bool,
}

/// Whether the company has rules, whether one of them filters by host tags, its rule revision
/// counter and whether a suppressing analysis is in force — one statement (one round trip) for
/// what old news needs, without reading the rules (most reports are old news to every rule).
async fn rule_presence(tx: &mut Tx, company: CompanyId) -> Result<Option<Presence>> {
    let row = sqlx::query(
        "SELECT bool_or(r.tags <> '[]'), \
         (SELECT v.revision FROM notification_rule_revisions v WHERE v.company_id = $1), \
         EXISTS (SELECT 1 FROM analyses a WHERE a.company_id = $1 AND a.suppress \
           AND a.withdrawn_at IS NULL AND a.expired_at IS NULL) \
         FROM notification_rules r WHERE r.company_id = $1",
    )
    .bind(company)
    .fetch_one(&mut **tx)
    .await?;
    Ok(row.get::<Option<bool>, _>(0).map(|tagged| Presence {
        tagged,
        revision: row.get(1),
        suppressing: row.get(2),
    }))
}

/// The company's rules with their revisions (`company`: its counter as read before, so every
/// rule of that revision is among the rules read now).
async fn load_rules_with_revisions(
    tx: &mut Tx,
    company: CompanyId,
    company_rev: Option<i64>,
) -> Result<(Vec<NotificationRule>, Revisions)> {
    let mut revs = Revisions::default();
    if let Some(rev) = company_rev {
        revs.company.insert(company, rev);
    }
    let rules = load_rules(tx, company).await?;
    let rows =
        sqlx::query("SELECT rule_id, revision FROM notification_rules WHERE company_id = $1")
            .bind(company)
            .fetch_all(&mut **tx)
            .await?;
    for row in rows {
        revs.rules.insert(row.get(0), row.get(1));
    }
    Ok((rules, revs))
}

/// The company's subjects among these that were told already, with the revision they were
/// told at.
async fn known_subjects(
    tx: &mut Tx,
    company: CompanyId,
    cands: &[Candidate],
) -> Result<KnownSubjects> {
    let mut keys: Vec<String> = cand_subjects(cands).into_iter().map(|(_, k)| k).collect();
    keys.sort();
    keys.dedup();
    let rows = sqlx::query(
        "SELECT key, revision FROM notification_subjects \
         WHERE company_id = $1 AND key = ANY($2)",
    )
    .bind(company)
    .bind(&keys)
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows
        .iter()
        .map(|r| ((company, r.get::<String, _>(0)), r.get::<i64, _>(1)))
        .collect())
}

/// A rule's change takes the next revision of its company's rules (scope: the company).
async fn next_rule_revision(tx: &mut Tx, company_id: CompanyId, rule_id: Uuid) -> Result<()> {
    let rev: i64 = sqlx::query_scalar(
        "INSERT INTO notification_rule_revisions (company_id, revision) VALUES ($1, 1) \
         ON CONFLICT (company_id) DO UPDATE \
         SET revision = notification_rule_revisions.revision + 1 RETURNING revision",
    )
    .bind(company_id)
    .fetch_one(&mut **tx)
    .await?;
    sqlx::query(
        "UPDATE notification_rules SET revision = $1 WHERE company_id = $2 AND rule_id = $3",
    )
    .bind(rev)
    .bind(company_id)
    .bind(rule_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn load_rules(tx: &mut Tx, company: CompanyId) -> Result<Vec<NotificationRule>> {
    let sql = format!("SELECT {RULE_COLUMNS} FROM notification_rules WHERE company_id = $1");
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(company)
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(|r| rule_from_row(r, 0))
        .collect()
}

/// `finding.opened` / `finding.kev` of the findings a batch opened, inside its transaction
/// (after coverage was applied): a company without rules costs one statement; suppressed
/// findings never notify.
pub(crate) async fn opened_in_tx(
    tx: &mut Tx,
    scope: &mut CompanyScope,
    opened: Vec<(CompanyId, AgentId, &ChangedFinding)>,
    packages: &HashMap<SoftwareKey, PackageRef>,
    now: DateTime<Utc>,
) -> Result<()> {
    changed_in_tx(tx, scope, opened, Vec::new(), packages, now).await
}

/// As [`opened_in_tx`], plus `finding.kev` of open findings whose vulnerability became KEV
/// (`raised`: a knowledge change's re-match).
pub(crate) async fn changed_in_tx<'a>(
    tx: &mut Tx,
    scope: &mut CompanyScope,
    opened: Vec<(CompanyId, AgentId, &'a ChangedFinding)>,
    raised: Vec<(CompanyId, AgentId, &'a ChangedFinding)>,
    packages: &HashMap<SoftwareKey, PackageRef>,
    now: DateTime<Utc>,
) -> Result<()> {
    type Changed<'b> = Vec<(CompanyId, AgentId, &'b ChangedFinding)>;
    let mut by_company: BTreeMap<CompanyId, (Changed<'a>, Changed<'a>)> = BTreeMap::new();
    for o in opened {
        by_company.entry(o.0).or_default().0.push(o);
    }
    for r in raised {
        by_company.entry(r.0).or_default().1.push(r);
    }
    for (company, (opened, raised)) in by_company {
        scope.enter(tx, company).await?;
        // Whether the company has rules, one filtering by host tags among them: one small
        // statement, no rule read (most reports are old news to every rule).
        let Some(presence) = rule_presence(tx, company).await? else {
            continue;
        };
        let suppressed = if presence.suppressing {
            let both: Vec<_> = opened.iter().chain(&raised).copied().collect();
            suppressed_among(tx, company, &both).await?
        } else {
            Suppressed::new()
        };
        let mut cands = vuln_candidates(opened, packages, &suppressed);
        cands.extend(kev_candidates(raised, packages, &suppressed));
        if cands.is_empty() {
            continue;
        }
        // The counter was read first: every rule of the revision read is among the rules
        // read after.
        let (rev, tagged) = (presence.revision, presence.tagged);
        let known = known_subjects(tx, company, &cands).await?;
        let company_revs: HashMap<CompanyId, i64> = rev.map(|r| (company, r)).into_iter().collect();
        let tagged: HashSet<CompanyId> = tagged.then_some(company).into_iter().collect();
        if companies_with_news(&cands, &company_revs, &tagged, &known).is_empty() {
            continue;
        }
        let (rules, revs) = load_rules_with_revisions(tx, company, rev).await?;
        write_company(tx, company, &rules, Some((&revs, &known)), &cands, now).await?;
    }
    Ok(())
}

/// Which of a company's opened findings a suppressing analysis covers (the caller asks only
/// when one is in force).
async fn suppressed_among(
    tx: &mut Tx,
    company: CompanyId,
    opened: &[(CompanyId, AgentId, &ChangedFinding)],
) -> Result<Suppressed> {
    let mut out = Suppressed::new();
    let mut agents: Vec<Uuid> = opened.iter().map(|o| o.1 .0).collect();
    agents.sort();
    agents.dedup();
    let rows = sqlx::query(
        "SELECT agent_id, software_key, vuln_id FROM findings WHERE company_id = $1 \
         AND agent_id = ANY($2) AND resolved_at IS NULL AND suppressed",
    )
    .bind(company)
    .bind(&agents)
    .fetch_all(&mut **tx)
    .await?;
    for row in rows {
        out.insert((
            company,
            AgentId(row.get::<Uuid, _>(0)),
            SoftwareKey(*row.get::<Uuid, _>(1).as_bytes()),
            row.get(2),
        ));
    }
    Ok(out)
}

/// The company's hosts carrying the tags its rules filter by.
async fn tagged_hosts(
    tx: &mut Tx,
    rules: &[NotificationRule],
    cands: &[Candidate],
) -> Result<TaggedHosts> {
    let mut out = TaggedHosts::new();
    for (company, tags) in tags_wanted(rules, cands) {
        let rows = sqlx::query(
            "SELECT tag, agent_id FROM agent_tags WHERE company_id = $1 AND tag = ANY($2)",
        )
        .bind(company)
        .bind(&tags)
        .fetch_all(&mut **tx)
        .await?;
        for row in rows {
            out.entry((company, row.get::<String, _>(0)))
                .or_default()
                .insert(AgentId(row.get::<Uuid, _>(1)));
        }
    }
    Ok(out)
}

/// Writes the messages of these candidates for the company's rules. With `news` (the
/// revisions and the subjects known, as read), subjects told already to every rule that hears
/// of them are passed over before any key is probed.
async fn write_company(
    tx: &mut Tx,
    company: CompanyId,
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
            let record = subjects_to_record(&unique, revs, known);
            if !record.is_empty() {
                let (keys, rev): (Vec<String>, Vec<i64>) =
                    record.into_iter().map(|(_, k, r)| (k, r)).unzip();
                sqlx::query(
                    "INSERT INTO notification_subjects (company_id, key, revision) \
                     SELECT $1, k, r FROM unnest($2::text[], $3::bigint[]) AS t(k, r) \
                     ON CONFLICT (company_id, key) DO UPDATE \
                     SET revision = GREATEST(notification_subjects.revision, excluded.revision)",
                )
                .bind(company)
                .bind(&keys)
                .bind(&rev)
                .execute(&mut **tx)
                .await?;
            }
            let told: Vec<Option<i64>> = subjects.iter().map(|s| known.get(s).copied()).collect();
            matching_news(rules, cands, &tagged, revs, &told)
        }
    };
    if pairs.is_empty() {
        return Ok(());
    }
    // Keys in one order (concurrent writers lock them alike).
    let (key_rules, key_texts): (Vec<Uuid>, Vec<String>) =
        pair_keys(rules, cands, &pairs).into_iter().unzip();
    let rows = sqlx::query(
        "INSERT INTO notification_keys (rule_id, key, created_at) \
         SELECT r, k, $3 FROM unnest($1::uuid[], $2::text[]) AS t(r, k) \
         ON CONFLICT DO NOTHING RETURNING rule_id, key",
    )
    .bind(&key_rules)
    .bind(&key_texts)
    .bind(now)
    .fetch_all(&mut **tx)
    .await?;
    let fresh: HashSet<(Uuid, String)> = rows
        .iter()
        .map(|r| (r.get::<Uuid, _>(0), r.get::<String, _>(1)))
        .collect();
    if fresh.is_empty() {
        return Ok(());
    }
    let (open_rules, open_keys): (Vec<Uuid>, Vec<String>) =
        open_digest_keys(rules, cands, &pairs, &fresh)
            .into_iter()
            .unzip();
    let open: Vec<OpenRow> = if open_rules.is_empty() {
        Vec::new()
    } else {
        sqlx::query(
            "SELECT o.outbox_id, o.rule_id, o.group_key, o.data FROM notification_outbox o \
             JOIN unnest($2::uuid[], $3::text[]) AS k(r, g) ON o.rule_id = k.r \
             AND o.group_key = k.g WHERE o.company_id = $1 AND o.state = 'pending' \
             AND o.attempts = 0 ORDER BY o.outbox_id FOR UPDATE OF o",
        )
        .bind(company)
        .bind(&open_rules)
        .bind(&open_keys)
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(|r| OpenRow {
            outbox_id: r.get(0),
            rule_id: r.get(1),
            group_key: r.get(2),
            data: r.get(3),
        })
        .collect()
    };
    let plan = plan(rules, cands, &pairs, &fresh, open, now);
    if !plan.inserts.is_empty() {
        // The rows as parallel arrays (`unnest`).
        type Columns = (Vec<Uuid>, Vec<Uuid>, Vec<String>, Vec<String>, Vec<String>);
        let mut cols: Columns = Default::default();
        let mut due: Vec<DateTime<Utc>> = Vec::new();
        for i in &plan.inserts {
            cols.0.push(i.delivery_id);
            cols.1.push(i.rule_id);
            cols.2.push(i.event.clone());
            cols.3.push(i.group_key.clone());
            cols.4.push(i.data.clone());
            due.push(i.due_at);
        }
        sqlx::query(
            "INSERT INTO notification_outbox (delivery_id, company_id, rule_id, event, group_key, \
             data, created_at, due_at, state, attempts) \
             SELECT d, $1, r, e, g, x, $2, t, 'pending', 0 FROM unnest($3::uuid[], $4::uuid[], \
             $5::text[], $6::text[], $7::text[], $8::timestamptz[]) AS u(d, r, e, g, x, t)",
        )
        .bind(company)
        .bind(now)
        .bind(&cols.0)
        .bind(&cols.1)
        .bind(&cols.2)
        .bind(&cols.3)
        .bind(&cols.4)
        .bind(&due)
        .execute(&mut **tx)
        .await?;
    }
    for (id, data) in &plan.updates {
        sqlx::query(
            "UPDATE notification_outbox SET data = $2 WHERE outbox_id = $1 \
             AND state = 'pending' AND attempts = 0",
        )
        .bind(id)
        .bind(data)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// `analysis.expired` of an analysis whose expiry was applied in this transaction (scope:
/// its company; coverage recomputed before): the hosts its vulnerability is open on again.
pub(crate) async fn analysis_expired_in_tx(
    tx: &mut Tx,
    company_id: CompanyId,
    analysis: &crate::analysis::Analysis,
    now: DateTime<Utc>,
) -> Result<()> {
    let rules = load_rules(tx, company_id).await?;
    if !rules
        .iter()
        .any(|r| r.events.iter().any(|e| e == ANALYSIS_EXPIRED))
    {
        return Ok(());
    }
    let rows = sqlx::query(
        "SELECT agent_id, max(severity)::bigint, bool_or(kev) FROM findings \
         WHERE company_id = $1 AND vuln_id = $2 AND resolved_at IS NULL AND NOT suppressed \
         GROUP BY agent_id",
    )
    .bind(company_id)
    .bind(analysis.vuln_id.as_str())
    .fetch_all(&mut **tx)
    .await?;
    let mut hosts = Vec::with_capacity(rows.len());
    let (mut severity, mut kev) = (0i64, false);
    for row in &rows {
        hosts.push(AgentId(row.get::<Uuid, _>(0)));
        severity = severity.max(row.get::<i64, _>(1));
        kev |= row.get::<bool, _>(2);
    }
    if rows.is_empty() {
        if let Some(row) = sqlx::query("SELECT severity::bigint, kev FROM vulns WHERE vuln_id = $1")
            .bind(analysis.vuln_id.as_str())
            .fetch_optional(&mut **tx)
            .await?
        {
            severity = row.get(0);
            kev = row.get(1);
        }
    }
    let cand = analysis_expired_candidate(company_id, analysis, severity, kev, hosts);
    write_company(tx, company_id, &rules, None, &[cand], now).await
}

/// Marks a company's findings crossing into `told` (due by `by`) and returns them (scope:
/// the company). Row locks make a second process's pass skip what this one marked.
async fn mark_crossing(
    tx: &mut Tx,
    company_id: CompanyId,
    policy: &crate::sla::SlaPolicy,
    by: DateTime<Utc>,
    told: i64,
) -> Result<Vec<Crossing>> {
    let due = policy.due_by(by);
    let sql = format!(
        "UPDATE findings SET sla_notified = $1 WHERE company_id = $2 AND sla_notified < $1 \
         AND resolved_at IS NULL AND (agent_id, software_key, vuln_id) IN ( \
           SELECT f.agent_id, f.software_key, f.vuln_id FROM findings f \
           WHERE f.company_id = $2 AND f.resolved_at IS NULL AND NOT f.suppressed \
           AND f.sla_notified < $1 AND ((f.severity = 5 AND f.first_seen <= $3) \
             OR (f.severity = 4 AND f.first_seen <= $4) OR (f.severity = 3 AND f.first_seen <= $5) \
             OR (f.severity = 2 AND f.first_seen <= $6) OR (f.severity <= 1 AND f.first_seen <= $7) \
             {} ) LIMIT {SLA_PASS_LIMIT}) \
         RETURNING agent_id, vuln_id, severity::bigint, kev",
        if due.kev_date.is_some() {
            "OR (f.kev AND f.vuln_id IN (SELECT kv.vuln_id FROM vulns kv \
             WHERE kv.kev_due_date <= $8))"
        } else {
            ""
        }
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(i16::try_from(told).unwrap_or(i16::MAX))
        .bind(company_id);
    for b in due.first_seen_by {
        q = q.bind(b);
    }
    if let Some(d) = &due.kev_date {
        q = q.bind(d.as_str());
    }
    let mut out = Vec::new();
    for row in q.fetch_all(&mut **tx).await? {
        out.push((
            AgentId(row.get::<Uuid, _>(0)),
            row.get::<String, _>(1),
            row.get::<i64, _>(2),
            row.get::<bool, _>(3),
        ));
    }
    Ok(out)
}

/// Rules of every company naming an event matching `pattern` (a LIKE pattern on the JSON
/// list).
async fn rules_naming(store: &PgStore, pattern: &str) -> Result<Vec<NotificationRule>> {
    let mut tx = store.pool.begin().await?;
    all_companies(&mut tx).await?;
    let sql = format!("SELECT {RULE_COLUMNS} FROM notification_rules WHERE events LIKE $1");
    let rules = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(pattern)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| rule_from_row(r, 0))
        .collect::<Result<Vec<_>>>()?;
    tx.commit().await?;
    Ok(rules)
}

/// `report.failed` for a report dead-lettered in this transaction (scope: its company).
pub(crate) async fn report_failed_in_tx(
    tx: &mut Tx,
    scope: &mut CompanyScope,
    company_id: CompanyId,
    report_id: ReportId,
    agent_id: AgentId,
    error: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    scope.enter(tx, company_id).await?;
    let hostname: Option<String> =
        sqlx::query_scalar("SELECT hostname FROM agents WHERE company_id = $1 AND agent_id = $2")
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
    write_in_tx(tx, scope, &[cand], now).await
}

#[async_trait]
impl NotificationStore for PgStore {
    async fn create_rule(&self, rule: &NotificationRule) -> Result<bool> {
        let mut tx = self.begin_for_company(rule.company_id).await?;
        let exists: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM companies WHERE company_id = $1")
                .bind(rule.company_id)
                .fetch_optional(&mut *tx)
                .await?;
        if exists.is_none() {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO notification_rules (name, events, min_severity, kev_only, tags, \
             digest_minutes, stale_days, dest_kind, dest_url, dest_to, secret_sealed, updated_at, \
             company_id, rule_id, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
        )
        .bind(&rule.name)
        .bind(json_strings(&rule.events))
        .bind(severity_name(rule.min_severity))
        .bind(rule.kev_only)
        .bind(json_strings(&rule.tags))
        .bind(i32::try_from(rule.digest_minutes).unwrap_or(i32::MAX))
        .bind(i32::try_from(rule.stale_days).unwrap_or(i32::MAX))
        .bind(&rule.destination.kind)
        .bind(rule.destination.url.as_deref())
        .bind(json_strings(&rule.destination.to))
        .bind(rule.secret_sealed.as_deref())
        .bind(rule.updated_at)
        .bind(rule.company_id)
        .bind(rule.rule_id)
        .bind(rule.created_at)
        .execute(&mut *tx)
        .await?;
        next_rule_revision(&mut tx, rule.company_id, rule.rule_id).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn list_rules(&self, company_id: CompanyId) -> Result<Vec<NotificationRule>> {
        let mut tx = self.begin_for_company(company_id).await?;
        let sql = format!(
            "SELECT {RULE_COLUMNS} FROM notification_rules WHERE company_id = $1 \
             ORDER BY created_at, rule_id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(company_id)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        rows.iter().map(|r| rule_from_row(r, 0)).collect()
    }

    async fn get_rule(
        &self,
        company_id: CompanyId,
        rule_id: Uuid,
    ) -> Result<Option<NotificationRule>> {
        let mut tx = self.begin_for_company(company_id).await?;
        let sql = format!(
            "SELECT {RULE_COLUMNS} FROM notification_rules WHERE company_id = $1 AND rule_id = $2"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(company_id)
            .bind(rule_id)
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        row.map(|r| rule_from_row(&r, 0)).transpose()
    }

    async fn update_rule(&self, rule: &NotificationRule) -> Result<bool> {
        let mut tx = self.begin_for_company(rule.company_id).await?;
        let done = sqlx::query(
            "UPDATE notification_rules SET name = $1, events = $2, min_severity = $3, \
             kev_only = $4, tags = $5, digest_minutes = $6, stale_days = $7, dest_kind = $8, \
             dest_url = $9, dest_to = $10, secret_sealed = $11, updated_at = $12 \
             WHERE company_id = $13 AND rule_id = $14",
        )
        .bind(&rule.name)
        .bind(json_strings(&rule.events))
        .bind(severity_name(rule.min_severity))
        .bind(rule.kev_only)
        .bind(json_strings(&rule.tags))
        .bind(i32::try_from(rule.digest_minutes).unwrap_or(i32::MAX))
        .bind(i32::try_from(rule.stale_days).unwrap_or(i32::MAX))
        .bind(&rule.destination.kind)
        .bind(rule.destination.url.as_deref())
        .bind(json_strings(&rule.destination.to))
        .bind(rule.secret_sealed.as_deref())
        .bind(rule.updated_at)
        .bind(rule.company_id)
        .bind(rule.rule_id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 1 {
            next_rule_revision(&mut tx, rule.company_id, rule.rule_id).await?;
        }
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_rule(&self, company_id: CompanyId, rule_id: Uuid) -> Result<bool> {
        let mut tx = self.begin_for_company(company_id).await?;
        let done =
            sqlx::query("DELETE FROM notification_rules WHERE company_id = $1 AND rule_id = $2")
                .bind(company_id)
                .bind(rule_id)
                .execute(&mut *tx)
                .await?;
        if done.rows_affected() == 1 {
            sqlx::query(
                "DELETE FROM notification_outbox WHERE company_id = $1 AND rule_id = $2 \
                 AND state IN ('pending', 'leased')",
            )
            .bind(company_id)
            .bind(rule_id)
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM notification_keys WHERE rule_id = $1")
                .bind(rule_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn enqueue_notifications(
        &self,
        requests: &[NotificationRequest],
        now: DateTime<Utc>,
    ) -> Result<u64> {
        let cands: Vec<Candidate> = requests.iter().map(Candidate::from).collect();
        let mut tx = self.pool.begin().await?;
        let mut scope = CompanyScope::new();
        write_in_tx(&mut tx, &mut scope, &cands, now).await?;
        tx.commit().await?;
        Ok(cands.len() as u64)
    }

    async fn scan_stale_agents(&self, now: DateTime<Utc>) -> Result<u64> {
        let mut tx = self.pool.begin().await?;
        all_companies(&mut tx).await?;
        let sql = format!(
            "SELECT {RULE_COLUMNS} FROM notification_rules WHERE events LIKE '%\"agent.stale\"%'"
        );
        let rules: Vec<NotificationRule> = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| rule_from_row(r, 0))
            .collect::<Result<_>>()?;
        tx.commit().await?;
        let mut cands = Vec::new();
        for rule in &rules {
            let days = rule.stale_days.max(1);
            let cutoff = now - chrono::Duration::days(i64::from(days));
            let mut tx = self.begin_for_company(rule.company_id).await?;
            let rows = sqlx::query(
                "SELECT agent_id, hostname, seen_at FROM agents WHERE company_id = $1 \
                 AND seen_at < $2 ORDER BY seen_at LIMIT 1000",
            )
            .bind(rule.company_id)
            .bind(cutoff)
            .fetch_all(&mut *tx)
            .await?;
            tx.commit().await?;
            for row in rows {
                cands.push(agent_stale_candidate(
                    rule.company_id,
                    AgentId(row.get::<Uuid, _>(0)),
                    row.get::<&str, _>(1),
                    row.get(2),
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
        let mut tx = self.pool.begin().await?;
        let mut scope = CompanyScope::new();
        write_in_tx(&mut tx, &mut scope, &cands, now).await?;
        tx.commit().await?;
        Ok(n)
    }

    async fn scan_sla(&self, now: DateTime<Utc>) -> Result<u64> {
        let rules = rules_naming(self, "%\"sla.%").await?;
        let mut companies: Vec<CompanyId> = rules.iter().map(|r| r.company_id).collect();
        companies.sort();
        companies.dedup();
        let mut marked = 0u64;
        for company in companies {
            let policy = self.sla_policy_impl(company).await?;
            // Each company's pass is one transaction: the marks and the messages together.
            let mut tx = self.begin_for_company(company).await?;
            let mut cands = Vec::new();
            // Overdue first: a finding past its date is not "due soon" as well.
            let overdue = mark_crossing(&mut tx, company, &policy, now, SLA_TOLD_OVERDUE).await?;
            cands.extend(sla_candidates(company, SLA_OVERDUE, &overdue, now));
            let soon = now + chrono::Duration::days(SLA_DUE_SOON_DAYS);
            let due_soon =
                mark_crossing(&mut tx, company, &policy, soon, SLA_TOLD_DUE_SOON).await?;
            cands.extend(sla_candidates(company, SLA_DUE_SOON, &due_soon, now));
            marked += (overdue.len() + due_soon.len()) as u64;
            let company_rules: Vec<NotificationRule> = rules
                .iter()
                .filter(|r| r.company_id == company)
                .cloned()
                .collect();
            write_company(&mut tx, company, &company_rules, None, &cands, now).await?;
            tx.commit().await?;
        }
        Ok(marked)
    }

    async fn scan_stale_feeds(
        &self,
        now: DateTime<Utc>,
        stale_after: chrono::Duration,
    ) -> Result<u64> {
        let rules = rules_naming(self, "%\"feed.stale\"%").await?;
        if rules.is_empty() {
            return Ok(0);
        }
        let feeds: Vec<(String, DateTime<Utc>)> = sqlx::query_as(
            "SELECT feed, last_success_at FROM kb_feed_state \
             WHERE last_success_at IS NOT NULL AND last_success_at < $1 ORDER BY feed",
        )
        .bind(now - stale_after)
        .fetch_all(&self.pool)
        .await?;
        let mut n = 0u64;
        for company in companies_hearing(&rules, FEED_STALE) {
            let cands: Vec<Candidate> = feeds
                .iter()
                .map(|(feed, at)| feed_stale_candidate(company, feed, *at, stale_after))
                .collect();
            if cands.is_empty() {
                continue;
            }
            n += cands.len() as u64;
            let company_rules: Vec<NotificationRule> = rules
                .iter()
                .filter(|r| r.company_id == company)
                .cloned()
                .collect();
            let mut tx = self.begin_for_company(company).await?;
            write_company(&mut tx, company, &company_rules, None, &cands, now).await?;
            tx.commit().await?;
        }
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
        let mut tx = self.pool.begin().await?;
        all_companies(&mut tx).await?;
        let until = now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::minutes(1));
        // Due messages, oldest first, of the rules not at their limit (a rule with a long
        // backlog takes its share and is at its limit by the next claim: the others' messages
        // come next), more than can be taken: [`pick_claims`] keeps each rule to its share.
        let busy = saturated_rules(limits);
        let rows = sqlx::query(
            "SELECT outbox_id, rule_id FROM notification_outbox \
             WHERE state IN ('pending', 'leased') AND due_at <= $1 AND NOT (rule_id = ANY($2)) \
             ORDER BY due_at LIMIT $3",
        )
        .bind(now)
        .bind(&busy)
        .bind(i64::from(limits.total) * 4)
        .fetch_all(&mut *tx)
        .await?;
        let candidates: Vec<(i64, Uuid)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        let ids = pick_claims(&candidates, limits);
        if ids.is_empty() {
            tx.commit().await?;
            return Ok(Vec::new());
        }
        // Each message to exactly one dispatcher: rows another one holds are skipped, rows it
        // leased meanwhile fail the re-checked condition.
        let sql = format!(
            "WITH due AS (SELECT outbox_id FROM notification_outbox \
               WHERE outbox_id = ANY($1) AND state IN ('pending', 'leased') AND due_at <= $2 \
               FOR UPDATE SKIP LOCKED), \
             leased AS (UPDATE notification_outbox o SET state = 'leased', lease_owner = $3, \
               attempts = o.attempts + 1, due_at = $4 FROM due WHERE o.outbox_id = due.outbox_id \
               RETURNING o.outbox_id, o.delivery_id, o.event, o.data, o.created_at, o.attempts, \
               o.company_id, o.rule_id) \
             SELECT l.outbox_id, l.delivery_id, l.event, l.data, l.created_at, l.attempts, {} \
             FROM leased l JOIN notification_rules r \
             ON r.company_id = l.company_id AND r.rule_id = l.rule_id ORDER BY l.outbox_id",
            rule_columns("r")
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&ids)
            .bind(now)
            .bind(owner)
            .bind(until)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let rule = rule_from_row(&row, 6)?;
            out.push(ClaimedNotification {
                outbox_id: row.get(0),
                delivery_id: row.get(1),
                company_id: rule.company_id,
                event: row.get(2),
                data: serde_json::from_str(row.get::<&str, _>(3)).unwrap_or_default(),
                created_at: row.get(4),
                attempt: u32::try_from(row.get::<i32, _>(5)).unwrap_or(u32::MAX),
                owner: owner.to_string(),
                rule,
            });
        }
        // Host counts as of now, each company under its own scope.
        let mut counts = HostCounts::new();
        for q in host_count_queries(&out) {
            let mut tx = self.begin_for_company(q.company_id).await?;
            let rows = sqlx::query(
                "SELECT vuln_id, count(DISTINCT agent_id) FROM findings WHERE company_id = $1 \
                 AND vuln_id = ANY($2) AND resolved_at IS NULL AND NOT suppressed \
                 AND (cardinality($3::text[]) = 0 OR agent_id IN (SELECT t.agent_id \
                   FROM agent_tags t WHERE t.company_id = $1 AND t.tag = ANY($3))) \
                 GROUP BY vuln_id",
            )
            .bind(q.company_id)
            .bind(&q.vulns)
            .bind(&q.tags)
            .fetch_all(&mut *tx)
            .await?;
            tx.commit().await?;
            for row in rows {
                counts.insert(
                    (q.company_id, q.tags.clone(), row.get(0)),
                    u64::try_from(row.get::<i64, _>(1)).unwrap_or(0),
                );
            }
        }
        apply_host_counts(&mut out, &counts);
        Ok(out)
    }

    async fn finish_notifications(&self, done: &[FinishedAttempt]) -> Result<Vec<bool>> {
        if done.is_empty() {
            return Ok(Vec::new());
        }
        // One transaction for the lot (the dispatcher records what it sent in batches), two
        // statements per run of attempts — not two per attempt: a burst of a thousand
        // messages would otherwise cost two thousand round trips before the next claim.
        // Outbox and delivery log are coordinator tables in Citus mode (no company in their
        // keys), so these cross-company statements stay on one node.
        let mut tx = self.pool.begin().await?;
        all_companies(&mut tx).await?;
        let mut out = vec![false; done.len()];
        for run in finish_runs(done, 1024) {
            let attempts = &done[run.clone()];
            let mut ids = Vec::with_capacity(attempts.len());
            let mut states = Vec::with_capacity(attempts.len());
            let mut dues = Vec::with_capacity(attempts.len());
            let mut finished = Vec::with_capacity(attempts.len());
            let mut errors = Vec::with_capacity(attempts.len());
            let mut owners = Vec::with_capacity(attempts.len());
            let mut tries = Vec::with_capacity(attempts.len());
            for d in attempts {
                let (state, due, fin) = finished_state(d.outcome, d.attempt.attempted_at);
                ids.push(d.claimed.outbox_id);
                states.push(state);
                dues.push(due);
                finished.push(fin);
                errors.push(d.attempt.error.clone());
                owners.push(d.claimed.owner.clone());
                tries.push(i32::try_from(d.claimed.attempt).unwrap_or(i32::MAX));
            }
            let recorded: HashSet<i64> = sqlx::query_scalar(
                "UPDATE notification_outbox o SET state = v.state, due_at = v.due, \
                 finished_at = v.finished, lease_owner = NULL, last_error = v.error \
                 FROM unnest($1::bigint[], $2::text[], $3::timestamptz[], $4::timestamptz[], \
                   $5::text[], $6::text[], $7::int[]) \
                   AS v(outbox_id, state, due, finished, error, owner, attempts) \
                 WHERE o.outbox_id = v.outbox_id AND o.state = 'leased' \
                 AND o.lease_owner = v.owner AND o.attempts = v.attempts \
                 RETURNING o.outbox_id",
            )
            .bind(&ids)
            .bind(&states)
            .bind(&dues)
            .bind(&finished)
            .bind(&errors)
            .bind(&owners)
            .bind(&tries)
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .collect();
            // The log of each attempt recorded (a lease lost to another dispatcher: neither).
            let logged: Vec<usize> = run
                .filter(|i| recorded.contains(&done[*i].claimed.outbox_id))
                .collect();
            if logged.is_empty() {
                continue;
            }
            let n = logged.len();
            let (mut companies, mut rules, mut outbox) = (
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
            );
            let (mut deliveries, mut events, mut attempt_no) = (
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
            );
            let (mut at, mut outcomes, mut statuses) = (
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
            );
            let (mut excerpts, mut errs, mut nexts, mut durations) = (
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
            );
            for &i in &logged {
                let (c, a, outcome) = (&done[i].claimed, &done[i].attempt, done[i].outcome);
                companies.push(c.company_id.0);
                rules.push(c.rule.rule_id);
                outbox.push(c.outbox_id);
                deliveries.push(c.delivery_id);
                events.push(c.event.clone());
                attempt_no.push(i32::try_from(c.attempt).unwrap_or(i32::MAX));
                at.push(a.attempted_at);
                outcomes.push(outcome_label(outcome));
                statuses.push(a.status.map(i32::from));
                excerpts.push(bounded_excerpt(a.response_excerpt.as_deref()));
                errs.push(a.error.clone());
                nexts.push(next_attempt(outcome));
                durations.push(i32::try_from(a.duration_ms).unwrap_or(i32::MAX));
                out[i] = true;
            }
            // In the order given (ORDINALITY): `seq` follows the attempts' order.
            sqlx::query(
                "INSERT INTO notification_deliveries (company_id, rule_id, outbox_id, \
                 delivery_id, event, attempt, attempted_at, outcome, status, response_excerpt, \
                 error, next_attempt_at, duration_ms) \
                 SELECT c, r, o, d, e, a, t, oc, st, ex, er, nx, du FROM unnest($1::uuid[], \
                   $2::uuid[], $3::bigint[], $4::uuid[], $5::text[], $6::int[], \
                   $7::timestamptz[], $8::text[], $9::int[], $10::text[], $11::text[], \
                   $12::timestamptz[], $13::int[]) WITH ORDINALITY \
                   AS v(c, r, o, d, e, a, t, oc, st, ex, er, nx, du, n) ORDER BY n",
            )
            .bind(&companies)
            .bind(&rules)
            .bind(&outbox)
            .bind(&deliveries)
            .bind(&events)
            .bind(&attempt_no)
            .bind(&at)
            .bind(&outcomes)
            .bind(&statuses)
            .bind(&excerpts)
            .bind(&errs)
            .bind(&nexts)
            .bind(&durations)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(out)
    }

    async fn record_test_delivery(
        &self,
        rule: &NotificationRule,
        delivery_id: Uuid,
        a: &AttemptRecord,
        ok: bool,
    ) -> Result<()> {
        let mut tx = self.begin_for_company(rule.company_id).await?;
        let outcome = if ok { "test_sent" } else { "test_failed" };
        insert_delivery(
            &mut tx,
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
        tx.commit().await?;
        Ok(())
    }

    async fn list_deliveries(
        &self,
        company_id: CompanyId,
        rule_id: Option<Uuid>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<DeliveryRecord>> {
        let mut tx = self.begin_for_company(company_id).await?;
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM notification_deliveries WHERE company_id = $1 \
             AND ($2::uuid IS NULL OR rule_id = $2) AND seq < $3 ORDER BY seq DESC LIMIT $4"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(company_id)
            .bind(rule_id)
            .bind(before.unwrap_or(i64::MAX))
            .bind(i64::from(limit.max(1)))
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        rows.iter().map(delivery_from_row).collect()
    }

    async fn outbox_stats(&self) -> Result<OutboxStats> {
        let mut tx = self.pool.begin().await?;
        all_companies(&mut tx).await?;
        let row = sqlx::query(
            "SELECT count(*), min(created_at) FROM notification_outbox \
             WHERE state IN ('pending', 'leased')",
        )
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(OutboxStats {
            backlog: u64::try_from(row.get::<i64, _>(0)).unwrap_or(0),
            oldest: row.get(1),
        })
    }

    async fn purge_notifications(&self, before: DateTime<Utc>) -> Result<u64> {
        let mut tx = self.pool.begin().await?;
        all_companies(&mut tx).await?;
        let a = sqlx::query(
            "DELETE FROM notification_outbox WHERE finished_at IS NOT NULL AND finished_at < $1",
        )
        .bind(before)
        .execute(&mut *tx)
        .await?;
        let b = sqlx::query("DELETE FROM notification_deliveries WHERE attempted_at < $1")
            .bind(before)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(a.rows_affected() + b.rows_affected())
    }

    async fn prune_notification_subjects(&self) -> Result<u64> {
        let mut after: Option<(CompanyId, String)> = None;
        let mut pruned = 0u64;
        loop {
            let mut tx = self.pool.begin().await?;
            all_companies(&mut tx).await?;
            let limit = SUBJECT_PRUNE_PAGE as i64;
            let rows = match &after {
                None => {
                    sqlx::query(
                        "SELECT company_id, key FROM notification_subjects \
                         ORDER BY company_id, key LIMIT $1",
                    )
                    .bind(limit)
                    .fetch_all(&mut *tx)
                    .await?
                }
                Some((c, k)) => {
                    sqlx::query(
                        "SELECT company_id, key FROM notification_subjects \
                         WHERE (company_id, key) > ($1, $2) ORDER BY company_id, key LIMIT $3",
                    )
                    .bind(*c)
                    .bind(k.as_str())
                    .bind(limit)
                    .fetch_all(&mut *tx)
                    .await?
                }
            };
            let page: Vec<(CompanyId, String)> = rows
                .iter()
                .map(|r| (CompanyId(r.get::<Uuid, _>(0)), r.get::<String, _>(1)))
                .collect();
            let mut open = OpenVulns::new();
            // The rollup is readable in its company's scope only.
            let mut scope = CompanyScope::new();
            for (company, vulns) in subject_vulns(&page) {
                scope.enter(&mut tx, company).await?;
                let rows = sqlx::query(
                    "SELECT vuln_id, severity, kev > 0 FROM company_vulns \
                     WHERE company_id = $1 AND findings > 0 AND vuln_id = ANY($2)",
                )
                .bind(company)
                .bind(&vulns)
                .fetch_all(&mut *tx)
                .await?;
                for r in rows {
                    open.insert((company, r.get(0), i64::from(r.get::<i16, _>(1)), r.get(2)));
                }
            }
            // Per company (one shard each in Citus mode). A subject an ingest records meanwhile
            // may go too: that costs the next report of it one key probe per rule, never a
            // second message (see the trait).
            let mut by: BTreeMap<CompanyId, Vec<String>> = BTreeMap::new();
            for (c, k) in stale_subjects(&page, &open) {
                by.entry(c).or_default().push(k);
            }
            for (company, keys) in by {
                pruned += sqlx::query(
                    "DELETE FROM notification_subjects WHERE company_id = $1 AND key = ANY($2)",
                )
                .bind(company)
                .bind(&keys)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            }
            tx.commit().await?;
            if page.len() < SUBJECT_PRUNE_PAGE {
                return Ok(pruned);
            }
            after = page.into_iter().last();
        }
    }
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
         duration_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(company_id)
    .bind(rule_id)
    .bind(outbox_id)
    .bind(delivery_id)
    .bind(event)
    .bind(i32::try_from(attempt).unwrap_or(i32::MAX))
    .bind(a.attempted_at)
    .bind(outcome)
    .bind(a.status.map(i32::from))
    .bind(bounded_excerpt(a.response_excerpt.as_deref()))
    .bind(a.error.as_deref())
    .bind(next)
    .bind(i32::try_from(a.duration_ms).unwrap_or(i32::MAX))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

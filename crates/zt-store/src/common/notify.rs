//! Notification planning without SQL: which rule hears of what, and how a batch's changes
//! become outbox rows — one message per (rule, event, subject), a digest rule's messages
//! gathered in one per event.
//!
//! A backend, inside the transaction that causes the messages:
//! 1. builds [`Candidate`]s (e.g. [`vuln_candidates`] of the findings a batch opened, the
//!    suppressed ones left out),
//! 2. loads the rules of those companies (one statement) and, when a rule filters by host
//!    tags, the tagged hosts of those tags (one statement per such company); [`matching`]
//!    keeps the pairs in memory — set-based: never a statement per rule or per finding,
//! 3. inserts the pairs' keys (`notification_keys`, `ON CONFLICT DO NOTHING RETURNING`): the
//!    returned ones are fresh news, the others were told already,
//! 4. only when a digest rule has fresh news, loads that rule's open digest message
//!    ([`open_digest_keys`]) and calls [`plan`],
//! 5. writes the plan's inserts and updates.
//!
//! A subject told already costs the key probe and nothing else: the host count of a
//! vulnerability's message is read when the message is claimed for sending
//! ([`host_count_queries`], [`apply_host_counts`]), so the hosts a vulnerability reaches
//! after the first report are counted without rewriting every rule's message per report
//! (which made ingest with 100 rules 8× slower).

use std::collections::{BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Map, Value};
use uuid::Uuid;
use zt_inventory::SoftwareKey;

use super::events::ChangedFinding;
use super::reads::Cols;
use super::{severity_from_rank, severity_rank};
use crate::model::*;
use crate::notify::*;
use crate::Result;

pub(crate) const FINDING_OPENED: &str = "finding.opened";
pub(crate) const FINDING_KEV: &str = "finding.kev";
pub(crate) const REPORT_FAILED: &str = "report.failed";
pub(crate) const AGENT_STALE: &str = "agent.stale";
pub(crate) const SLA_DUE_SOON: &str = "sla.due_soon";
pub(crate) const SLA_OVERDUE: &str = "sla.overdue";
pub(crate) const ANALYSIS_EXPIRED: &str = "analysis.expired";
pub(crate) const FEED_STALE: &str = "feed.stale";

/// Findings one SLA pass marks at most per company and crossing (the rest in the next pass).
pub(crate) const SLA_PASS_LIMIT: i64 = 10_000;
/// `findings.sla_notified`: the SLA crossings a finding has been notified of.
pub(crate) const SLA_TOLD_DUE_SOON: i64 = 1;
pub(crate) const SLA_TOLD_OVERDUE: i64 = 2;
/// "Due soon": due within this many days (as the summary's `due_soon`).
pub(crate) const SLA_DUE_SOON_DAYS: i64 = 7;

/// Packages a vulnerability message names at most.
const PACKAGES_CAP: usize = 10;

/// Something rules may hear of.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Candidate {
    pub(crate) company_id: CompanyId,
    pub(crate) event: String,
    pub(crate) subject: String,
    /// The severity rank; None for events not about a vulnerability.
    pub(crate) severity: Option<i64>,
    pub(crate) kev: bool,
    pub(crate) item: Map<String, Value>,
    /// The hosts it is about (a rule with host tags hears of it when one of them carries one
    /// of its tags, with the count of those); empty: not about hosts (every rule's tags pass).
    pub(crate) agents: Vec<AgentId>,
}

impl Candidate {
    pub(crate) fn key(&self) -> String {
        format!("{}:{}", self.event, self.subject)
    }
}

impl From<&NotificationRequest> for Candidate {
    fn from(r: &NotificationRequest) -> Candidate {
        let mut item = r.data.clone();
        item.insert("host_count".into(), json!(r.hosts));
        Candidate {
            company_id: r.company_id,
            event: r.event.clone(),
            subject: r.subject.clone(),
            severity: r.severity.map(severity_rank),
            kev: r.kev,
            item,
            agents: Vec::new(),
        }
    }
}

/// `finding.opened` (and `finding.kev` for KEV ones) per company and vulnerability of the
/// findings opened, with the number of distinct hosts and the packages (where `packages` names
/// them).
pub(crate) fn vuln_candidates<'a>(
    opened: impl IntoIterator<Item = (CompanyId, AgentId, &'a ChangedFinding)>,
    packages: &HashMap<SoftwareKey, PackageRef>,
    suppressed: &Suppressed,
) -> Vec<Candidate> {
    struct Acc {
        hosts: BTreeSet<AgentId>,
        severity: i64,
        kev: bool,
        packages: BTreeSet<String>,
    }
    let mut by: HashMap<(CompanyId, &str), Acc> = HashMap::new();
    for (company, agent, f) in opened {
        // A suppressing analysis covers it: it never notifies.
        if suppressed.contains(&(company, agent, f.key, f.vuln_id.clone())) {
            continue;
        }
        let acc = by.entry((company, f.vuln_id.as_str())).or_insert(Acc {
            hosts: BTreeSet::new(),
            severity: f.severity,
            kev: false,
            packages: BTreeSet::new(),
        });
        acc.hosts.insert(agent);
        acc.severity = acc.severity.max(f.severity);
        acc.kev |= f.kev;
        if let Some(p) = packages.get(&f.key) {
            if acc.packages.len() < PACKAGES_CAP {
                acc.packages.insert(format!("{} {}", p.name, p.version));
            }
        }
    }
    let mut out = Vec::with_capacity(by.len());
    let mut keys: Vec<_> = by.into_iter().collect();
    keys.sort_by(|a, b| a.0.cmp(&b.0));
    for ((company, vuln), acc) in keys {
        let item = json!({
            "vuln_id": vuln,
            "severity": severity_from_rank(acc.severity).as_str(),
            "kev": acc.kev,
            "host_count": acc.hosts.len(),
            "packages": acc.packages.into_iter().collect::<Vec<_>>(),
        });
        let item = item.as_object().cloned().unwrap_or_default();
        let mut events = vec![FINDING_OPENED];
        if acc.kev {
            events.push(FINDING_KEV);
        }
        let agents: Vec<AgentId> = acc.hosts.into_iter().collect();
        for event in events {
            out.push(Candidate {
                company_id: company,
                event: event.to_string(),
                subject: vuln.to_string(),
                severity: Some(acc.severity),
                kev: acc.kev,
                item: item.clone(),
                agents: agents.clone(),
            });
        }
    }
    out
}

/// `finding.kev` alone, per company and vulnerability, of open findings whose vulnerability
/// became KEV (their `finding.opened` went out when they opened).
pub(crate) fn kev_candidates<'a>(
    raised: impl IntoIterator<Item = (CompanyId, AgentId, &'a ChangedFinding)>,
    packages: &HashMap<SoftwareKey, PackageRef>,
    suppressed: &Suppressed,
) -> Vec<Candidate> {
    vuln_candidates(
        raised.into_iter().filter(|(_, _, f)| f.kev),
        packages,
        suppressed,
    )
    .into_iter()
    .filter(|c| c.event == FINDING_KEV)
    .collect()
}

/// Opened findings a suppressing analysis covers: (company, agent, software, vulnerability).
pub(crate) type Suppressed = HashSet<(CompanyId, AgentId, SoftwareKey, String)>;

/// A finding an SLA pass found crossing: (agent, vulnerability, severity rank, KEV).
pub(crate) type Crossing = (AgentId, String, i64, bool);

/// `sla.due_soon` / `sla.overdue` of the findings one pass marked, one candidate per
/// vulnerability with its hosts. The subject carries the pass's time: findings crossing in a
/// later pass are news of their own (each finding is told once per crossing — its
/// `sla_notified` mark — and a pass's findings of one vulnerability are one message).
pub(crate) fn sla_candidates(
    company_id: CompanyId,
    event: &str,
    crossings: &[Crossing],
    now: DateTime<Utc>,
) -> Vec<Candidate> {
    let mut by: HashMap<&str, (BTreeSet<AgentId>, i64, bool)> = HashMap::new();
    for (agent, vuln, severity, kev) in crossings {
        let acc = by
            .entry(vuln.as_str())
            .or_insert((BTreeSet::new(), 0, false));
        acc.0.insert(*agent);
        acc.1 = acc.1.max(*severity);
        acc.2 |= *kev;
    }
    let mut vulns: Vec<_> = by.into_iter().collect();
    vulns.sort_by(|a, b| a.0.cmp(b.0));
    vulns
        .into_iter()
        .map(|(vuln, (hosts, severity, kev))| {
            let item = json!({
                "vuln_id": vuln,
                "severity": severity_from_rank(severity).as_str(),
                "kev": kev,
                "host_count": hosts.len(),
            });
            Candidate {
                company_id,
                event: event.to_string(),
                subject: format!("{vuln}@{}", now.timestamp_millis()),
                severity: Some(severity),
                kev,
                item: item.as_object().cloned().unwrap_or_default(),
                agents: hosts.into_iter().collect(),
            }
        })
        .collect()
}

/// `analysis.expired`: the analysis, its vulnerability and the hosts whose findings it no
/// longer covers (open, unsuppressed now).
pub(crate) fn analysis_expired_candidate(
    company_id: CompanyId,
    analysis: &crate::analysis::Analysis,
    severity: i64,
    kev: bool,
    hosts: Vec<AgentId>,
) -> Candidate {
    let item = json!({
        "analysis_id": analysis.analysis_id.to_string(),
        "vuln_id": analysis.vuln_id,
        "state": analysis.state,
        "suppress": analysis.suppress,
        "expires_at": analysis.expires_at.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        "severity": severity_from_rank(severity).as_str(),
        "kev": kev,
        "host_count": hosts.len(),
    });
    Candidate {
        company_id,
        event: ANALYSIS_EXPIRED.into(),
        subject: analysis.analysis_id.to_string(),
        severity: Some(severity),
        kev,
        item: item.as_object().cloned().unwrap_or_default(),
        agents: hosts,
    }
}

/// `feed.stale` of a knowledge source without a successful sync since `last_success` (once
/// per silence: the subject carries its time).
pub(crate) fn feed_stale_candidate(
    company_id: CompanyId,
    feed: &str,
    last_success: DateTime<Utc>,
    stale_after: Duration,
) -> Candidate {
    let item = json!({
        "source": feed,
        "last_success_at": last_success.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "stale_after_hours": stale_after.num_minutes() as f64 / 60.0,
    });
    Candidate {
        company_id,
        event: FEED_STALE.into(),
        subject: format!("{feed}:{}", last_success.timestamp_millis()),
        severity: None,
        kev: false,
        item: item.as_object().cloned().unwrap_or_default(),
        agents: Vec::new(),
    }
}

/// Companies with a rule naming `event`, from rules of every company.
pub(crate) fn companies_hearing(rules: &[NotificationRule], event: &str) -> Vec<CompanyId> {
    let mut out: Vec<CompanyId> = rules
        .iter()
        .filter(|r| r.events.iter().any(|e| e == event))
        .map(|r| r.company_id)
        .collect();
    out.sort();
    out.dedup();
    out
}

/// `report.failed` of a dead-lettered report.
pub(crate) fn report_failed_candidate(
    company_id: CompanyId,
    report_id: ReportId,
    agent_id: AgentId,
    hostname: &str,
    error: &str,
) -> Candidate {
    let item = json!({
        "report_id": report_id.to_string(),
        "agent_id": agent_id.to_string(),
        "hostname": hostname,
        "error": error.chars().take(500).collect::<String>(),
    });
    Candidate {
        company_id,
        event: REPORT_FAILED.into(),
        subject: report_id.to_string(),
        severity: None,
        kev: false,
        item: item.as_object().cloned().unwrap_or_default(),
        agents: vec![agent_id],
    }
}

/// `agent.stale` of an agent last seen at `last_seen` (once per silence).
pub(crate) fn agent_stale_candidate(
    company_id: CompanyId,
    agent_id: AgentId,
    hostname: &str,
    last_seen: DateTime<Utc>,
    days: u32,
) -> Candidate {
    let item = json!({
        "agent_id": agent_id.to_string(),
        "hostname": hostname,
        "last_seen_at": last_seen.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "stale_days": days,
    });
    Candidate {
        company_id,
        event: AGENT_STALE.into(),
        subject: format!("{agent_id}:{}", last_seen.timestamp_millis()),
        severity: None,
        kev: false,
        item: item.as_object().cloned().unwrap_or_default(),
        agents: vec![agent_id],
    }
}

/// Hosts carrying a tag, per company and tag (only the tags some rule filters by).
pub(crate) type TaggedHosts = HashMap<(CompanyId, String), HashSet<AgentId>>;

/// The (company, tags) whose tagged hosts [`matching`] needs: the companies among `cands`
/// with a rule filtering by host tags.
pub(crate) fn tags_wanted(
    rules: &[NotificationRule],
    cands: &[Candidate],
) -> Vec<(CompanyId, Vec<String>)> {
    let about_hosts: HashSet<CompanyId> = cands
        .iter()
        .filter(|c| !c.agents.is_empty())
        .map(|c| c.company_id)
        .collect();
    let mut by: std::collections::BTreeMap<CompanyId, BTreeSet<String>> = Default::default();
    for r in rules {
        if !r.tags.is_empty() && about_hosts.contains(&r.company_id) {
            by.entry(r.company_id)
                .or_default()
                .extend(r.tags.iter().cloned());
        }
    }
    by.into_iter()
        .map(|(c, t)| (c, t.into_iter().collect()))
        .collect()
}

/// A rule hearing of a candidate: indexes into the rules and candidates, and the hosts it
/// hears of when its tags leave out some of the candidate's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pair {
    pub(crate) rule: usize,
    pub(crate) cand: usize,
    pub(crate) hosts: Option<u64>,
}

/// Whether a rule hears of a candidate: `None` when not, else the host count its tags leave
/// (`Some(None)`: all of them).
pub(crate) fn rule_matches(
    rule: &NotificationRule,
    c: &Candidate,
    tagged: &TaggedHosts,
) -> Option<Option<u64>> {
    if rule.company_id != c.company_id || !rule.events.contains(&c.event) {
        return None;
    }
    if let Some(sev) = c.severity {
        if let Some(min) = rule.min_severity {
            if sev < severity_rank(min) {
                return None;
            }
        }
        if rule.kev_only && !c.kev {
            return None;
        }
    }
    // Host tags filter what is about hosts; the rest (a feed's silence) reaches every rule.
    if rule.tags.is_empty() || c.agents.is_empty() {
        return Some(None);
    }
    let n = c
        .agents
        .iter()
        .filter(|a| {
            rule.tags.iter().any(|t| {
                tagged
                    .get(&(c.company_id, t.clone()))
                    .is_some_and(|hosts| hosts.contains(a))
            })
        })
        .count() as u64;
    (n > 0).then_some(Some(n))
}

/// Every (rule, candidate) pair where the rule hears of the candidate: in memory, over the
/// rules of the candidates' companies loaded once.
pub(crate) fn matching(
    rules: &[NotificationRule],
    cands: &[Candidate],
    tagged: &TaggedHosts,
) -> Vec<Pair> {
    let mut by_company: HashMap<CompanyId, Vec<usize>> = HashMap::new();
    for (i, r) in rules.iter().enumerate() {
        by_company.entry(r.company_id).or_default().push(i);
    }
    let mut out = Vec::new();
    for (ci, c) in cands.iter().enumerate() {
        for &ri in by_company
            .get(&c.company_id)
            .map(Vec::as_slice)
            .unwrap_or(&[])
        {
            if let Some(hosts) = rule_matches(&rules[ri], c, tagged) {
                out.push(Pair {
                    rule: ri,
                    cand: ci,
                    hosts,
                });
            }
        }
    }
    out
}

/// The keys the pairs insert into `notification_keys`, sorted and unique (concurrent writers
/// lock them in one order).
pub(crate) fn pair_keys(
    rules: &[NotificationRule],
    cands: &[Candidate],
    pairs: &[Pair],
) -> Vec<(Uuid, String)> {
    let mut keys: Vec<(Uuid, String)> = pairs
        .iter()
        .map(|p| (rules[p.rule].rule_id, cands[p.cand].key()))
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// The rules' revisions as a transaction read them: each company's counter (read before its
/// rules) and each rule's (read after).
#[derive(Debug, Default)]
pub(crate) struct Revisions {
    pub(crate) company: HashMap<CompanyId, i64>,
    pub(crate) rules: HashMap<Uuid, i64>,
}

/// A subject as `notification_subjects` knows it: a changed severity or KEV flag is another.
pub(crate) fn subject_key(c: &Candidate) -> String {
    format!("{}:{}:{}", c.key(), c.severity.unwrap_or(-1), c.kev)
}

/// The vulnerability, severity rank and KEV flag a [`subject_key`] of a vulnerability event
/// names (`finding.opened:CVE-1:4:false`); None for another shape. Event names have no colon;
/// a vulnerability id may.
pub(crate) fn parse_subject_key(key: &str) -> Option<(&str, i64, bool)> {
    let (_event, rest) = key.split_once(':')?;
    let mut back = rest.rsplitn(3, ':');
    let kev = match back.next()? {
        "true" => true,
        "false" => false,
        _ => return None,
    };
    let severity = back.next()?.parse().ok()?;
    let vuln = back.next().filter(|v| !v.is_empty())?;
    Some((vuln, severity, kev))
}

/// What a company has open now, as `company_vulns` rolls it up: (company, vulnerability,
/// severity rank, whether any of those findings is KEV).
pub(crate) type OpenVulns = HashSet<(CompanyId, String, i64, bool)>;

/// The vulnerabilities a page of subjects names, per company (what [`OpenVulns`] is read for).
pub(crate) fn subject_vulns(page: &[(CompanyId, String)]) -> Vec<(CompanyId, Vec<String>)> {
    let mut by: std::collections::BTreeMap<CompanyId, BTreeSet<String>> = Default::default();
    for (c, k) in page {
        if let Some((vuln, _, _)) = parse_subject_key(k) {
            by.entry(*c).or_default().insert(vuln.to_string());
        }
    }
    by.into_iter()
        .map(|(c, v)| (c, v.into_iter().collect()))
        .collect()
}

/// The subjects of a page no longer needed: their vulnerability has no open finding of that
/// severity and KEV flag in the company (resolved everywhere, or re-scored since), or the key
/// is of no known shape. Dropping one never sends a message twice — `notification_keys`
/// decides what is news; a subject only lets old news skip the per-rule key probes — so a
/// vulnerability that comes back costs one probe per rule once, and is recorded again.
pub(crate) fn stale_subjects(
    page: &[(CompanyId, String)],
    open: &OpenVulns,
) -> Vec<(CompanyId, String)> {
    page.iter()
        .filter(|(c, k)| match parse_subject_key(k) {
            Some((vuln, sev, kev)) => !open.contains(&(*c, vuln.to_string(), sev, kev)),
            None => true,
        })
        .cloned()
        .collect()
}

/// Subjects one pruning step reads (and deletes at most) per transaction.
pub(crate) const SUBJECT_PRUNE_PAGE: usize = 1000;

/// Subjects known: (company, subject key) → the revision they were told at.
pub(crate) type KnownSubjects = HashMap<(CompanyId, String), i64>;

/// Each candidate's (company, subject key), by index.
pub(crate) fn cand_subjects(cands: &[Candidate]) -> Vec<(CompanyId, String)> {
    cands
        .iter()
        .map(|c| (c.company_id, subject_key(c)))
        .collect()
}

/// As [`matching`], leaving out what was told already: a rule no newer than the revision a
/// candidate's subject was told at, without host tags, heard of it then (or did not hear of
/// it, and still would not). Old news thus costs nothing per rule — not even a key probe.
pub(crate) fn matching_news(
    rules: &[NotificationRule],
    cands: &[Candidate],
    tagged: &TaggedHosts,
    revs: &Revisions,
    told: &[Option<i64>],
) -> Vec<Pair> {
    let mut by_company: HashMap<CompanyId, Vec<usize>> = HashMap::new();
    for (i, r) in rules.iter().enumerate() {
        by_company.entry(r.company_id).or_default().push(i);
    }
    let mut out = Vec::new();
    for (ci, c) in cands.iter().enumerate() {
        let told = told.get(ci).copied().flatten();
        for &ri in by_company
            .get(&c.company_id)
            .map(Vec::as_slice)
            .unwrap_or(&[])
        {
            let rule = &rules[ri];
            if let Some(told) = told {
                let newer = revs.rules.get(&rule.rule_id).is_none_or(|r| *r > told);
                if !newer && rule.tags.is_empty() {
                    continue;
                }
            }
            if let Some(hosts) = rule_matches(rule, c, tagged) {
                out.push(Pair {
                    rule: ri,
                    cand: ci,
                    hosts,
                });
            }
        }
    }
    out
}

/// The companies among `cands` with news for some rule: those with a rule filtering by host
/// tags (`tagged`: asked each time, which hosts carry a tag changes) and those with a subject
/// not told at the company's revision as read (`company_revs`; no rule is newer than it). The
/// others' candidates are old news to every rule — [`matching_news`] would pass every rule
/// over — so their rules need not even be loaded.
pub(crate) fn companies_with_news(
    cands: &[Candidate],
    company_revs: &HashMap<CompanyId, i64>,
    tagged: &HashSet<CompanyId>,
    known: &KnownSubjects,
) -> HashSet<CompanyId> {
    cands
        .iter()
        .filter(|c| {
            let rev = company_revs.get(&c.company_id).copied().unwrap_or(0);
            tagged.contains(&c.company_id)
                || known
                    .get(&(c.company_id, subject_key(c)))
                    .is_none_or(|told| *told < rev)
        })
        .map(|c| c.company_id)
        .collect()
}

/// The subjects to record at the company's revision as read (every rule of that revision or
/// older was considered by this transaction): new ones and ones known at an older revision.
pub(crate) fn subjects_to_record(
    subjects: &[(CompanyId, String)],
    revs: &Revisions,
    known: &KnownSubjects,
) -> Vec<(CompanyId, String, i64)> {
    subjects
        .iter()
        .filter_map(|(c, k)| {
            let rev = revs.company.get(c).copied().unwrap_or(0);
            match known.get(&(*c, k.clone())) {
                Some(told) if *told >= rev => None,
                _ => Some((*c, k.clone(), rev)),
            }
        })
        .collect()
}

/// The open digest messages [`plan`] merges fresh news into: (rule, group key) of every
/// digest rule with a fresh pair. Immediate rules need none: fresh news is a new message,
/// old news is no message.
pub(crate) fn open_digest_keys(
    rules: &[NotificationRule],
    cands: &[Candidate],
    pairs: &[Pair],
    fresh: &HashSet<(Uuid, String)>,
) -> Vec<(Uuid, String)> {
    let mut out: Vec<(Uuid, String)> = pairs
        .iter()
        .filter(|p| rules[p.rule].digest_minutes > 0)
        .filter(|p| fresh.contains(&(rules[p.rule].rule_id, cands[p.cand].key())))
        .map(|p| (rules[p.rule].rule_id, digest_key(&cands[p.cand].event)))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// A message still open to merging (pending, never attempted).
#[derive(Debug, Clone)]
pub(crate) struct OpenRow {
    pub(crate) outbox_id: i64,
    pub(crate) rule_id: Uuid,
    pub(crate) group_key: String,
    pub(crate) data: String,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct OutboxInsert {
    pub(crate) delivery_id: Uuid,
    pub(crate) company_id: CompanyId,
    pub(crate) rule_id: Uuid,
    pub(crate) event: String,
    pub(crate) group_key: String,
    pub(crate) data: String,
    pub(crate) due_at: DateTime<Utc>,
}

#[derive(Debug, Default, PartialEq)]
pub(crate) struct Plan {
    pub(crate) inserts: Vec<OutboxInsert>,
    /// (outbox_id, new data)
    pub(crate) updates: Vec<(i64, String)>,
}

fn digest_key(event: &str) -> String {
    format!("digest:{event}")
}

/// The outbox writes for the matching pairs. `fresh` holds the (rule, key) pairs whose keys
/// were inserted just now (news); `open` the open digest messages of [`open_digest_keys`].
/// Old news writes nothing.
pub(crate) fn plan(
    rules: &[NotificationRule],
    cands: &[Candidate],
    pairs: &[Pair],
    fresh: &HashSet<(Uuid, String)>,
    open: Vec<OpenRow>,
    now: DateTime<Utc>,
) -> Plan {
    enum Slot {
        Open(i64),
        New(usize),
    }
    // Digest messages by (rule, group key): where, their data, whether this plan changed it.
    type Slots = HashMap<(Uuid, String), (Slot, Map<String, Value>, bool)>;
    let mut slots: Slots = HashMap::new();
    for row in open {
        let data: Map<String, Value> = serde_json::from_str(&row.data).unwrap_or_default();
        slots.insert(
            (row.rule_id, row.group_key),
            (Slot::Open(row.outbox_id), data, false),
        );
    }
    let mut inserts: Vec<OutboxInsert> = Vec::new();
    let mut told: HashSet<(Uuid, String)> = HashSet::new();
    for p in pairs {
        let (rule, c) = (&rules[p.rule], &cands[p.cand]);
        let key = c.key();
        if !fresh.contains(&(rule.rule_id, key.clone()))
            || !told.insert((rule.rule_id, key.clone()))
        {
            continue;
        }
        let mut item = c.item.clone();
        item.insert("subject".into(), json!(c.subject));
        if let Some(hosts) = p.hosts {
            item.insert("host_count".into(), json!(hosts));
        }
        if rule.digest_minutes == 0 {
            inserts.push(OutboxInsert {
                delivery_id: Uuid::now_v7(),
                company_id: c.company_id,
                rule_id: rule.rule_id,
                event: c.event.clone(),
                group_key: key,
                data: serde_json::to_string(&item).unwrap_or_else(|_| "{}".into()),
                due_at: now,
            });
            continue;
        }
        let slot = (rule.rule_id, digest_key(&c.event));
        match slots.get_mut(&slot) {
            Some((_, data, changed)) => {
                let items = data
                    .entry("items")
                    .or_insert_with(|| Value::Array(Vec::new()));
                if let Value::Array(items) = items {
                    items.push(Value::Object(item));
                    *changed = true;
                }
            }
            None => {
                inserts.push(OutboxInsert {
                    delivery_id: Uuid::now_v7(),
                    company_id: c.company_id,
                    rule_id: rule.rule_id,
                    event: c.event.clone(),
                    group_key: slot.1.clone(),
                    data: String::new(),
                    due_at: now + Duration::minutes(i64::from(rule.digest_minutes)),
                });
                let mut data = Map::new();
                data.insert("digest_minutes".into(), json!(rule.digest_minutes));
                data.insert("items".into(), Value::Array(vec![Value::Object(item)]));
                slots.insert(slot, (Slot::New(inserts.len() - 1), data, true));
            }
        }
    }
    let mut updates = Vec::new();
    for (_, (slot, data, changed)) in slots {
        let text = serde_json::to_string(&data).unwrap_or_else(|_| "{}".into());
        match slot {
            Slot::New(i) => inserts[i].data = text,
            Slot::Open(id) if changed => updates.push((id, text)),
            Slot::Open(_) => {}
        }
    }
    updates.sort_by_key(|u| u.0);
    Plan { inserts, updates }
}

/// One host count a claim reads: a company's open, unsuppressed findings of these
/// vulnerabilities, on hosts carrying one of `tags` (empty: every host).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct HostCountQuery {
    pub(crate) company_id: CompanyId,
    pub(crate) tags: Vec<String>,
    pub(crate) vulns: Vec<String>,
}

/// Events whose message counts the hosts a vulnerability is open on when it is sent.
fn counted_at_send(event: &str) -> bool {
    event == FINDING_OPENED || event == FINDING_KEV
}

fn vuln_items(data: &Map<String, Value>) -> Vec<String> {
    match data.get("items").and_then(Value::as_array) {
        Some(items) => items
            .iter()
            .filter_map(|i| i.get("vuln_id").and_then(Value::as_str).map(String::from))
            .collect(),
        None => data
            .get("vuln_id")
            .and_then(Value::as_str)
            .map(|v| vec![v.to_string()])
            .unwrap_or_default(),
    }
}

/// The host counts the claimed messages need, grouped per company and tag set.
pub(crate) fn host_count_queries(claimed: &[ClaimedNotification]) -> Vec<HostCountQuery> {
    let mut by: std::collections::BTreeMap<(CompanyId, Vec<String>), BTreeSet<String>> =
        Default::default();
    for c in claimed.iter().filter(|c| counted_at_send(&c.event)) {
        let mut tags = c.rule.tags.clone();
        tags.sort();
        by.entry((c.company_id, tags))
            .or_default()
            .extend(vuln_items(&c.data));
    }
    by.into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|((company_id, tags), vulns)| HostCountQuery {
            company_id,
            tags,
            vulns: vulns.into_iter().collect(),
        })
        .collect()
}

/// Host counts read by [`host_count_queries`]: (company, sorted tags, vulnerability) → hosts.
pub(crate) type HostCounts = HashMap<(CompanyId, Vec<String>, String), u64>;

/// Sets the host count of each vulnerability the claimed messages name to the count read now
/// (a count of 0 — every finding resolved or suppressed since — keeps the count written).
pub(crate) fn apply_host_counts(claimed: &mut [ClaimedNotification], counts: &HostCounts) {
    for c in claimed.iter_mut().filter(|c| counted_at_send(&c.event)) {
        let mut tags = c.rule.tags.clone();
        tags.sort();
        let set = |item: &mut Map<String, Value>| {
            let Some(v) = item.get("vuln_id").and_then(Value::as_str) else {
                return;
            };
            if let Some(&n) = counts.get(&(c.company_id, tags.clone(), v.to_string())) {
                if n > 0 {
                    item.insert("host_count".into(), json!(n));
                }
            }
        };
        match c.data.get_mut("items").and_then(Value::as_array_mut) {
            Some(items) => items
                .iter_mut()
                .filter_map(Value::as_object_mut)
                .for_each(set),
            None => set(&mut c.data),
        }
    }
}

/// What a claim may take: at most `total` messages, at most `per_rule` of one rule's in
/// flight at once (`in_flight` says how many this dispatcher has): a destination that is down
/// holds `per_rule` sends, never every one (DESIGN.md: a destination that is down never
/// delays the others).
pub(crate) fn pick_claims(candidates: &[(i64, Uuid)], limits: &ClaimLimits) -> Vec<i64> {
    let mut taken: HashMap<Uuid, u32> = HashMap::new();
    let mut out = Vec::new();
    for &(id, rule) in candidates {
        if out.len() >= limits.total as usize {
            break;
        }
        let busy = limits.in_flight.get(&rule).copied().unwrap_or(0);
        let n = taken.entry(rule).or_insert(0);
        if busy + *n < limits.per_rule {
            *n += 1;
            out.push(id);
        }
    }
    out
}

/// Consecutive runs of finished attempts, at most `max` long, none naming a message twice (a
/// set-based finish updates each message once per statement; a second attempt of the same
/// message goes in the next run, after the first).
pub(crate) fn finish_runs(done: &[FinishedAttempt], max: usize) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut seen: HashSet<i64> = HashSet::new();
    for (i, d) in done.iter().enumerate() {
        if i - start >= max.max(1) || !seen.insert(d.claimed.outbox_id) {
            out.push(start..i);
            start = i;
            seen.clear();
            seen.insert(d.claimed.outbox_id);
        }
    }
    if start < done.len() {
        out.push(start..done.len());
    }
    out
}

/// The outbox row a finished attempt leaves: (state, due, finished).
pub(crate) fn finished_state(
    outcome: DeliveryOutcome,
    attempted_at: DateTime<Utc>,
) -> (&'static str, DateTime<Utc>, Option<DateTime<Utc>>) {
    match outcome {
        DeliveryOutcome::Sent => ("sent", attempted_at, Some(attempted_at)),
        DeliveryOutcome::Dead => ("dead", attempted_at, Some(attempted_at)),
        DeliveryOutcome::Retry(at) => ("pending", at, None),
    }
}

/// The rules at their limit: a claim leaves their messages alone.
pub(crate) fn saturated_rules(limits: &ClaimLimits) -> Vec<Uuid> {
    let mut out: Vec<Uuid> = limits
        .in_flight
        .iter()
        .filter(|(_, n)| **n >= limits.per_rule)
        .map(|(r, _)| *r)
        .collect();
    out.sort();
    out
}

/// The rule a row of [`RULE_COLUMNS`] holds (`Cols` reads either driver's row).
pub(crate) fn rule_from_row(row: &impl Cols, at: usize) -> Result<NotificationRule> {
    let list = |i: usize| -> Result<Vec<String>> {
        Ok(serde_json::from_str(&row.text(at + i)?).unwrap_or_default())
    };
    Ok(NotificationRule {
        company_id: row.company_id(at)?,
        rule_id: row.uuid(at + 1)?,
        name: row.text(at + 2)?,
        events: list(3)?,
        min_severity: row_rank(row, at + 4),
        kev_only: row.bool(at + 5)?,
        tags: list(6)?,
        digest_minutes: u32::try_from(row.int(at + 7)?).unwrap_or(0),
        stale_days: u32::try_from(row.int(at + 8)?).unwrap_or(0),
        destination: RuleDestination {
            kind: row.text(at + 9)?,
            url: row.opt_text(at + 10)?,
            to: list(11)?,
        },
        secret_sealed: row.opt_text(at + 12)?,
        created_at: row.time(at + 13)?,
        updated_at: row.time(at + 14)?,
    })
}

/// A rule's minimum severity, stored by name (NULL: any severity).
fn row_rank(row: &impl Cols, i: usize) -> Option<zt_advisory::Severity> {
    let name = row.opt_text(i).ok().flatten()?;
    (0..=5).map(severity_from_rank).find(|s| s.as_str() == name)
}

/// How a rule's minimum severity is stored.
pub(crate) fn severity_name(s: Option<zt_advisory::Severity>) -> Option<&'static str> {
    s.map(|s| s.as_str())
}

/// The columns [`rule_from_row`] reads, in order (prefix them with a table alias as needed).
pub(crate) const RULE_COLUMNS: &str = "company_id, rule_id, name, events, min_severity, \
    kev_only, tags, digest_minutes, stale_days, dest_kind, dest_url, dest_to, secret_sealed, \
    created_at, updated_at";

/// The same columns qualified by a table alias.
pub(crate) fn rule_columns(alias: &str) -> String {
    RULE_COLUMNS
        .split(", ")
        .map(|c| format!("{alias}.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) fn json_strings(items: &[String]) -> String {
    super::json_list(items)
}

/// A delivery log row of [`DELIVERY_COLUMNS`].
pub(crate) fn delivery_from_row(row: &impl Cols) -> Result<DeliveryRecord> {
    Ok(DeliveryRecord {
        seq: row.int(0)?,
        company_id: row.company_id(1)?,
        rule_id: row.uuid(2)?,
        delivery_id: row.uuid(3)?,
        event: row.text(4)?,
        attempt: u32::try_from(row.int(5)?).unwrap_or(0),
        outcome: row.text(7)?,
        attempt_record: AttemptRecord {
            attempted_at: row.time(6)?,
            status: row
                .int(8)
                .ok()
                .and_then(|s| u16::try_from(s).ok())
                .filter(|s| *s > 0), // NULL reads as 0 on SQLite
            response_excerpt: row.opt_text(9)?,
            error: row.opt_text(10)?,
            duration_ms: u32::try_from(row.int(12)?).unwrap_or(0),
        },
        next_attempt_at: row.opt_time(11)?,
    })
}

pub(crate) const DELIVERY_COLUMNS: &str = "seq, company_id, rule_id, delivery_id, event, \
    attempt, attempted_at, outcome, status, response_excerpt, error, next_attempt_at, duration_ms";

/// The log's outcome of a finished attempt.
pub(crate) fn outcome_label(o: DeliveryOutcome) -> &'static str {
    o.as_str()
}

/// The time a retry is due (None unless retrying).
pub(crate) fn next_attempt(o: DeliveryOutcome) -> Option<DateTime<Utc>> {
    match o {
        DeliveryOutcome::Retry(at) => Some(at),
        _ => None,
    }
}

/// Keeps the [`DeliveryRecord`] excerpt within bounds whatever the caller passed.
pub(crate) fn bounded_excerpt(s: Option<&str>) -> Option<String> {
    s.map(|s| {
        let mut end = s.len().min(512);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s[..end].to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use zt_advisory::Severity;

    fn rule(digest: u32, events: &[&str], min: Option<Severity>) -> NotificationRule {
        NotificationRule {
            rule_id: Uuid::new_v4(),
            company_id: CompanyId(Uuid::from_u128(1)),
            name: "r".into(),
            events: events.iter().map(|e| e.to_string()).collect(),
            min_severity: min,
            kev_only: false,
            tags: vec![],
            digest_minutes: digest,
            stale_days: 7,
            destination: RuleDestination {
                kind: "webhook".into(),
                url: Some("https://example.com".into()),
                to: vec![],
            },
            secret_sealed: None,
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    fn opened(vuln: &str, sev: Severity, kev: bool) -> ChangedFinding {
        ChangedFinding {
            key: SoftwareKey([1; 16]),
            vuln_id: vuln.into(),
            severity: severity_rank(sev),
            kev,
        }
    }

    #[test]
    fn a_vulnerability_on_many_hosts_is_one_candidate_with_the_host_count() {
        let c = CompanyId(Uuid::from_u128(1));
        let f = opened("CVE-1", Severity::High, true);
        let rows: Vec<_> = (0..1000u128)
            .map(|i| (c, AgentId(Uuid::from_u128(i)), &f))
            .chain([(c, AgentId(Uuid::from_u128(0)), &f)])
            .collect();
        let cands = vuln_candidates(rows, &HashMap::new(), &Suppressed::new());
        assert_eq!(cands.len(), 2, "finding.opened and finding.kev");
        assert_eq!(cands[0].item["host_count"], 1000);
        assert_eq!(cands[0].agents.len(), 1000);
        assert_eq!(cands[1].event, FINDING_KEV);
    }

    #[test]
    fn suppressed_findings_are_no_candidates() {
        let c = CompanyId(Uuid::from_u128(1));
        let f = opened("CVE-1", Severity::High, false);
        let (a1, a2) = (AgentId(Uuid::from_u128(1)), AgentId(Uuid::from_u128(2)));
        let suppressed: Suppressed = [(c, a1, f.key, "CVE-1".to_string())].into();
        let cands = vuln_candidates([(c, a1, &f), (c, a2, &f)], &HashMap::new(), &suppressed);
        assert_eq!(cands.len(), 1);
        assert_eq!(cands[0].item["host_count"], 1, "only the unsuppressed host");
        let none = vuln_candidates([(c, a1, &f)], &HashMap::new(), &suppressed);
        assert!(none.is_empty());
    }

    #[test]
    fn host_tags_filter_and_count_the_hosts() {
        let c = CompanyId(Uuid::from_u128(1));
        let mut prod = rule(0, &[FINDING_OPENED, FEED_STALE], None);
        prod.tags = vec!["prod".into()];
        let mut lab = rule(0, &[FINDING_OPENED], None);
        lab.tags = vec!["lab".into()];
        let any = rule(0, &[FINDING_OPENED], None);
        let rules = vec![prod, lab, any];
        let f = opened("CVE-1", Severity::High, false);
        let (a1, a2, a3) = (
            AgentId(Uuid::from_u128(1)),
            AgentId(Uuid::from_u128(2)),
            AgentId(Uuid::from_u128(3)),
        );
        let mut cands = vuln_candidates(
            [(c, a1, &f), (c, a2, &f), (c, a3, &f)],
            &HashMap::new(),
            &Suppressed::new(),
        );
        cands.push(feed_stale_candidate(
            c,
            "osv",
            Utc::now(),
            Duration::hours(48),
        ));
        assert_eq!(
            tags_wanted(&rules, &cands),
            vec![(c, vec!["lab".to_string(), "prod".to_string()])]
        );
        let tagged: TaggedHosts = [((c, "prod".to_string()), [a1, a3].into())].into();
        let pairs = matching(&rules, &cands, &tagged);
        assert_eq!(
            pairs,
            vec![
                Pair {
                    rule: 0,
                    cand: 0,
                    hosts: Some(2)
                },
                Pair {
                    rule: 2,
                    cand: 0,
                    hosts: None
                },
                Pair {
                    rule: 0,
                    cand: 1,
                    hosts: None
                },
            ],
            "prod hears of its two hosts, lab of none, a feed is about no host"
        );
        let fresh: HashSet<(Uuid, String)> = pairs
            .iter()
            .map(|p| (rules[p.rule].rule_id, cands[p.cand].key()))
            .collect();
        let p = plan(&rules, &cands, &pairs, &fresh, vec![], Utc::now());
        let prod_msg = p
            .inserts
            .iter()
            .find(|i| i.rule_id == rules[0].rule_id && i.event == FINDING_OPENED)
            .unwrap();
        let data: Value = serde_json::from_str(&prod_msg.data).unwrap();
        assert_eq!(data["host_count"], 2);
    }

    #[test]
    fn news_once_per_rule_and_digests_gather_it() {
        let c = CompanyId(Uuid::from_u128(1));
        let high = rule(0, &[FINDING_OPENED], Some(Severity::High));
        let digest = rule(15, &[FINDING_OPENED], None);
        let rules = vec![high.clone(), digest.clone()];
        let fa = opened("CVE-A", Severity::Critical, false);
        let fb = opened("CVE-B", Severity::Low, false);
        let a1 = AgentId(Uuid::from_u128(10));
        let none = TaggedHosts::new();
        let cands = vuln_candidates(
            [(c, a1, &fa), (c, a1, &fb)],
            &HashMap::new(),
            &Suppressed::new(),
        );
        let pairs = matching(&rules, &cands, &none);
        // high hears of CVE-A only, digest of both
        assert_eq!(pairs.len(), 3);
        let fresh: HashSet<(Uuid, String)> = pairs
            .iter()
            .map(|p| (rules[p.rule].rule_id, cands[p.cand].key()))
            .collect();
        assert_eq!(
            open_digest_keys(&rules, &cands, &pairs, &fresh),
            vec![(digest.rule_id, "digest:finding.opened".to_string())]
        );
        let now = Utc::now();
        let p = plan(&rules, &cands, &pairs, &fresh, vec![], now);
        assert_eq!(p.inserts.len(), 2, "one immediate message, one digest");
        let digest_row = p
            .inserts
            .iter()
            .find(|i| i.rule_id == digest.rule_id)
            .unwrap();
        assert_eq!(digest_row.due_at, now + Duration::minutes(15));
        let data: Value = serde_json::from_str(&digest_row.data).unwrap();
        assert_eq!(data["items"].as_array().unwrap().len(), 2);
        // Told already: nothing is written.
        assert_eq!(
            plan(&rules, &cands, &pairs, &HashSet::new(), vec![], now),
            Plan::default()
        );
        // A new vulnerability joins the open digest.
        let open = vec![OpenRow {
            outbox_id: 7,
            rule_id: digest.rule_id,
            group_key: digest_row.group_key.clone(),
            data: digest_row.data.clone(),
        }];
        let fc = opened("CVE-C", Severity::Medium, false);
        let cands2 = vuln_candidates([(c, a1, &fc)], &HashMap::new(), &Suppressed::new());
        let pairs2 = matching(&rules, &cands2, &none);
        let fresh2: HashSet<(Uuid, String)> = pairs2
            .iter()
            .map(|p| (rules[p.rule].rule_id, cands2[p.cand].key()))
            .collect();
        let p2 = plan(&rules, &cands2, &pairs2, &fresh2, open, now);
        assert!(p2.inserts.is_empty());
        assert_eq!(p2.updates.len(), 1);
        let v: Value = serde_json::from_str(&p2.updates[0].1).unwrap();
        assert_eq!(v["items"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn sla_candidates_group_a_pass_per_vulnerability() {
        let c = CompanyId(Uuid::from_u128(1));
        let (a1, a2) = (AgentId(Uuid::from_u128(1)), AgentId(Uuid::from_u128(2)));
        let now = Utc::now();
        let cands = sla_candidates(
            c,
            SLA_OVERDUE,
            &[
                (a1, "CVE-1".into(), 4, false),
                (a2, "CVE-1".into(), 5, true),
                (a1, "CVE-2".into(), 2, false),
            ],
            now,
        );
        assert_eq!(cands.len(), 2);
        assert_eq!(cands[0].item["vuln_id"], "CVE-1");
        assert_eq!(cands[0].item["host_count"], 2);
        assert_eq!(cands[0].item["severity"], "critical");
        assert!(cands[0].kev);
        // A later pass is news of its own.
        let later = sla_candidates(
            c,
            SLA_OVERDUE,
            &[(a1, "CVE-1".into(), 4, false)],
            now + Duration::minutes(1),
        );
        assert_ne!(later[0].key(), cands[0].key());
    }

    #[test]
    fn old_news_skips_the_rules_told_already() {
        let c = CompanyId(Uuid::from_u128(1));
        let old = rule(0, &[FINDING_OPENED], None);
        let new = rule(0, &[FINDING_OPENED], None);
        let mut tagged_rule = rule(0, &[FINDING_OPENED], None);
        tagged_rule.tags = vec!["prod".into()];
        let rules = vec![old.clone(), new.clone(), tagged_rule];
        let revs = Revisions {
            company: [(c, 7)].into(),
            rules: [(old.rule_id, 3), (new.rule_id, 7), (rules[2].rule_id, 1)].into(),
        };
        let a1 = AgentId(Uuid::from_u128(1));
        let f = opened("CVE-1", Severity::High, false);
        let cands = vuln_candidates([(c, a1, &f)], &HashMap::new(), &Suppressed::new());
        let tagged: TaggedHosts = [((c, "prod".to_string()), [a1].into())].into();
        // Told at revision 5: the rule changed since (7) and the tagged one are asked.
        let pairs = matching_news(&rules, &cands, &tagged, &revs, &[Some(5)]);
        assert_eq!(pairs.iter().map(|p| p.rule).collect::<Vec<_>>(), vec![1, 2]);
        // New: every rule.
        assert_eq!(
            matching_news(&rules, &cands, &tagged, &revs, &[None]).len(),
            3
        );
        let subjects = cand_subjects(&cands);
        let known: KnownSubjects = [(subjects[0].clone(), 5)].into();
        assert_eq!(
            subjects_to_record(&subjects, &revs, &known),
            vec![(c, subjects[0].1.clone(), 7)]
        );
        let current: KnownSubjects = [(subjects[0].clone(), 7)].into();
        assert!(subjects_to_record(&subjects, &revs, &current).is_empty());
        // Told at the company's revision and no rule with tags: no rule is even loaded.
        let untagged = HashSet::new();
        assert!(companies_with_news(&cands, &revs.company, &untagged, &current).is_empty());
        assert_eq!(
            companies_with_news(&cands, &revs.company, &untagged, &known),
            [c].into(),
            "told at an older revision"
        );
        assert_eq!(
            companies_with_news(&cands, &revs.company, &untagged, &KnownSubjects::new()),
            [c].into(),
            "never told"
        );
        assert_eq!(
            companies_with_news(&cands, &revs.company, &[c].into(), &current),
            [c].into(),
            "a rule with tags is asked each time"
        );
    }

    #[test]
    fn subjects_of_vulnerabilities_no_longer_open_are_stale() {
        let c = CompanyId(Uuid::from_u128(1));
        let a1 = AgentId(Uuid::from_u128(1));
        let f = opened("CVE-1", Severity::High, true);
        let g = opened("ODD:ID:1", Severity::Low, false);
        let cands = vuln_candidates(
            [(c, a1, &f), (c, a1, &g)],
            &HashMap::new(),
            &Suppressed::new(),
        );
        let subjects = cand_subjects(&cands);
        assert_eq!(
            subjects
                .iter()
                .map(|(_, k)| parse_subject_key(k))
                .collect::<Vec<_>>(),
            vec![
                Some(("CVE-1", 4, true)),
                Some(("CVE-1", 4, true)),
                Some(("ODD:ID:1", 2, false)),
            ],
            "finding.opened and finding.kev of CVE-1; an id with colons"
        );
        assert_eq!(parse_subject_key("feed.stale:osv:123"), None);
        assert_eq!(
            subject_vulns(&subjects),
            vec![(c, vec!["CVE-1".to_string(), "ODD:ID:1".to_string()])]
        );
        let open: OpenVulns = [
            (c, "CVE-1".to_string(), 4, true),
            (c, "ODD:ID:1".to_string(), 3, false),
        ]
        .into();
        // ODD:ID:1 is open at another severity now: its old subject goes.
        let mut page = subjects.clone();
        page.push((c, "garbage".into()));
        assert_eq!(
            stale_subjects(&page, &open),
            vec![subjects[2].clone(), (c, "garbage".to_string())]
        );
        assert!(stale_subjects(&subjects[..2], &open).is_empty());
    }

    #[test]
    fn finish_runs_name_each_message_once() {
        let rule = rule(0, &[FINDING_OPENED], None);
        let d = |id: i64| FinishedAttempt {
            claimed: ClaimedNotification {
                outbox_id: id,
                delivery_id: Uuid::from_u128(id as u128),
                company_id: rule.company_id,
                event: FINDING_OPENED.into(),
                data: Map::new(),
                created_at: Utc::now(),
                attempt: 1,
                owner: "d".into(),
                rule: rule.clone(),
            },
            attempt: AttemptRecord::default(),
            outcome: DeliveryOutcome::Sent,
        };
        let done: Vec<_> = [1, 2, 3, 2, 4, 5, 6].into_iter().map(d).collect();
        assert_eq!(finish_runs(&done, 3), vec![0..3, 3..6, 6..7]);
        assert_eq!(finish_runs(&done, 100), vec![0..3, 3..7]);
        assert!(finish_runs(&[], 10).is_empty());
    }

    #[test]
    fn claims_leave_busy_rules_alone() {
        let (r1, r2) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let limits = ClaimLimits {
            total: 4,
            per_rule: 2,
            in_flight: [(r1, 1)].into(),
        };
        let cands = [(1, r1), (2, r1), (3, r1), (4, r2), (5, r2), (6, r2)];
        assert_eq!(pick_claims(&cands, &limits), vec![1, 4, 5]);
        assert!(saturated_rules(&limits).is_empty());
        let full = ClaimLimits {
            in_flight: [(r1, 2)].into(),
            ..limits
        };
        assert_eq!(saturated_rules(&full), vec![r1]);
    }
}

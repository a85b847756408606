//! Notification planning without SQL: which rule hears of what, and how a batch's changes
//! become outbox rows — one message per (rule, event, subject), the host count summed while the
//! message is still unsent, a digest rule's messages gathered in one per event.
//!
//! A backend, inside the transaction that causes the messages:
//! 1. builds [`Candidate`]s (e.g. [`vuln_candidates`] of the findings a batch opened),
//! 2. loads the rules of those companies and keeps the [`matching`] pairs,
//! 3. inserts the pairs' keys (`notification_keys`, `ON CONFLICT DO NOTHING RETURNING`): the
//!    returned ones are fresh news, the others were told already,
//! 4. loads the rules' open (pending, never attempted) messages and calls [`plan`],
//! 5. writes the plan's inserts and updates.

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
    /// Its host count adds to an unsent message's (hosts newly affected, as a batch's
    /// findings); otherwise it states the count (a request repeated while unsent).
    pub(crate) additive: bool,
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
            additive: false,
        }
    }
}

/// `finding.opened` (and `finding.kev` for KEV ones) per company and vulnerability of the
/// findings opened, with the number of distinct hosts and the packages (where `packages` names
/// them).
pub(crate) fn vuln_candidates<'a>(
    opened: impl IntoIterator<Item = (CompanyId, AgentId, &'a ChangedFinding)>,
    packages: &HashMap<SoftwareKey, PackageRef>,
) -> Vec<Candidate> {
    struct Acc {
        hosts: HashSet<AgentId>,
        severity: i64,
        kev: bool,
        packages: BTreeSet<String>,
    }
    let mut by: HashMap<(CompanyId, &str), Acc> = HashMap::new();
    for (company, agent, f) in opened {
        let acc = by.entry((company, f.vuln_id.as_str())).or_insert(Acc {
            hosts: HashSet::new(),
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
        for event in events {
            out.push(Candidate {
                company_id: company,
                event: event.to_string(),
                subject: vuln.to_string(),
                severity: Some(acc.severity),
                kev: acc.kev,
                item: item.clone(),
                additive: true,
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
) -> Vec<Candidate> {
    vuln_candidates(raised.into_iter().filter(|(_, _, f)| f.kev), packages)
        .into_iter()
        .filter(|c| c.event == FINDING_KEV)
        .collect()
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
        additive: false,
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
        additive: false,
    }
}

/// Whether a rule hears of a candidate.
pub(crate) fn rule_matches(rule: &NotificationRule, c: &Candidate) -> bool {
    if rule.company_id != c.company_id || !rule.events.contains(&c.event) {
        return false;
    }
    if let Some(sev) = c.severity {
        if let Some(min) = rule.min_severity {
            if sev < severity_rank(min) {
                return false;
            }
        }
        if rule.kev_only && !c.kev {
            return false;
        }
    }
    // Hosts carry no tags yet: a rule restricted to tags matches no host's findings. Events
    // not about hosts' findings are not filtered by tags.
    if !rule.tags.is_empty() && c.severity.is_some() {
        return false;
    }
    true
}

/// (rule index, candidate index) of every rule that hears of a candidate.
pub(crate) fn matching(rules: &[NotificationRule], cands: &[Candidate]) -> Vec<(usize, usize)> {
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
            if rule_matches(&rules[ri], c) {
                out.push((ri, ci));
            }
        }
    }
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

/// Adds a candidate's hosts and packages to an item about the same subject.
fn merge_item(into: &mut Map<String, Value>, c: &Candidate) {
    let add = c
        .item
        .get("host_count")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let hosts = into.get("host_count").and_then(Value::as_u64).unwrap_or(0);
    let total = if c.additive {
        hosts + add
    } else {
        add.max(hosts)
    };
    if total > 0 {
        into.insert("host_count".into(), json!(total));
    }
    if let Some(Value::Array(more)) = c.item.get("packages") {
        let mut set: BTreeSet<String> = into
            .get("packages")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        for p in more.iter().filter_map(Value::as_str) {
            if set.len() < PACKAGES_CAP {
                set.insert(p.to_string());
            }
        }
        into.insert(
            "packages".into(),
            json!(set.into_iter().collect::<Vec<_>>()),
        );
    }
}

fn subject_of(item: &Map<String, Value>) -> Option<&str> {
    item.get("subject").and_then(Value::as_str)
}

/// The outbox writes for the matching pairs. `fresh` holds the (rule, key) pairs whose keys
/// were inserted just now; `open` the rules' open messages.
pub(crate) fn plan(
    rules: &[NotificationRule],
    cands: &[Candidate],
    pairs: &[(usize, usize)],
    fresh: &HashSet<(Uuid, String)>,
    open: Vec<OpenRow>,
    now: DateTime<Utc>,
) -> Plan {
    // Open messages and new ones, by (rule, group key), as parsed data.
    enum Slot {
        Open(i64),
        New(usize),
    }
    // (where the message is, its data, whether this plan changed it)
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
    for &(ri, ci) in pairs {
        let (rule, c) = (&rules[ri], &cands[ci]);
        let key = c.key();
        let is_fresh = fresh.contains(&(rule.rule_id, key.clone()));
        let mut item = c.item.clone();
        item.insert("subject".into(), json!(c.subject));
        if rule.digest_minutes == 0 {
            let slot = (rule.rule_id, key.clone());
            if let Some((_, data, changed)) = slots.get_mut(&slot) {
                merge_item(data, c);
                *changed = true;
            } else if is_fresh {
                inserts.push(OutboxInsert {
                    delivery_id: Uuid::now_v7(),
                    company_id: c.company_id,
                    rule_id: rule.rule_id,
                    event: c.event.clone(),
                    group_key: key,
                    data: String::new(),
                    due_at: now,
                });
                slots.insert(slot, (Slot::New(inserts.len() - 1), item, true));
            }
            continue;
        }
        let slot = (rule.rule_id, digest_key(&c.event));
        match slots.get_mut(&slot) {
            Some((_, data, changed)) => {
                let items = data
                    .entry("items")
                    .or_insert_with(|| Value::Array(Vec::new()));
                let Value::Array(items) = items else { continue };
                let same = items
                    .iter()
                    .position(|i| i.as_object().and_then(subject_of) == Some(c.subject.as_str()));
                match same {
                    Some(p) => {
                        if let Some(existing) = items[p].as_object_mut() {
                            merge_item(existing, c);
                        }
                    }
                    None if is_fresh => items.push(Value::Object(item)),
                    None => continue,
                }
                *changed = true;
            }
            None if is_fresh => {
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
            None => {}
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
        let cands = vuln_candidates(rows, &HashMap::new());
        assert_eq!(cands.len(), 2, "finding.opened and finding.kev");
        assert_eq!(cands[0].item["host_count"], 1000);
        assert_eq!(cands[1].event, FINDING_KEV);
    }

    #[test]
    fn filters_and_merging() {
        let c = CompanyId(Uuid::from_u128(1));
        let high = rule(0, &[FINDING_OPENED], Some(Severity::High));
        let digest = rule(15, &[FINDING_OPENED], None);
        let rules = vec![high.clone(), digest.clone()];
        let fa = opened("CVE-A", Severity::Critical, false);
        let fb = opened("CVE-B", Severity::Low, false);
        let a1 = AgentId(Uuid::from_u128(10));
        let cands = vuln_candidates([(c, a1, &fa), (c, a1, &fb)], &HashMap::new());
        let pairs = matching(&rules, &cands);
        // high hears of CVE-A only, digest of both
        assert_eq!(pairs.len(), 3);
        let fresh: HashSet<(Uuid, String)> = pairs
            .iter()
            .map(|&(r, ci)| (rules[r].rule_id, cands[ci].key()))
            .collect();
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
        // A second batch: CVE-A on another host, the messages still unsent: host counts add
        // up, no new message.
        let open: Vec<OpenRow> = p
            .inserts
            .iter()
            .enumerate()
            .map(|(i, r)| OpenRow {
                outbox_id: i as i64 + 1,
                rule_id: r.rule_id,
                group_key: r.group_key.clone(),
                data: r.data.clone(),
            })
            .collect();
        let a2 = AgentId(Uuid::from_u128(11));
        let cands2 = vuln_candidates([(c, a2, &fa)], &HashMap::new());
        let pairs2 = matching(&rules, &cands2);
        let p2 = plan(&rules, &cands2, &pairs2, &HashSet::new(), open, now);
        assert!(p2.inserts.is_empty());
        assert_eq!(p2.updates.len(), 2);
        for (_, d) in &p2.updates {
            let v: Value = serde_json::from_str(d).unwrap();
            let hosts = if v.get("items").is_some() {
                v["items"][0]["host_count"].clone()
            } else {
                v["host_count"].clone()
            };
            assert_eq!(hosts, 2);
        }
        // Already told and already sent (no open row): nothing.
        let p3 = plan(&rules, &cands2, &pairs2, &HashSet::new(), vec![], now);
        assert_eq!(p3, Plan::default());
    }
}

//! The event log without the database: the events a processed batch and an enrollment write,
//! how a report's finding rows become its `findings.changed` lists, the JSON each event is
//! stored (and streamed) as, and the pruning rule.

use std::collections::{HashMap, HashSet};

use serde_json::{json, Map, Value};
use zt_inventory::SoftwareKey;

use super::inventory::InventoryDiff;
use super::severity_from_rank;
use crate::model::*;

/// Items each list of a `findings.changed` event carries at most (the totals count them all).
pub(crate) const LIST_CAP: usize = 50;

/// Events a pruning transaction deletes at most: each one stays short. An event row carries
/// its JSON payload, so deleting one costs more than an index entry: 2,000 per transaction
/// took 72–88 ms on SQLite at 10 M app records (debug build, loaded machine; the janitor's
/// statements are to stay under 50 ms), hence 500.
pub(crate) const PRUNE_BATCH: usize = 500;

/// A finding row that a write opened or resolved, as its `RETURNING` clause gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChangedFinding {
    pub(crate) key: SoftwareKey,
    pub(crate) vuln_id: String,
    /// The stored severity rank (`common::severity_rank`).
    pub(crate) severity: i64,
    pub(crate) kev: bool,
}

/// The finding rows one applied report opened (inserted or reopened) and resolved.
#[derive(Debug, Default)]
pub(crate) struct RowChanges {
    pub(crate) opened: Vec<ChangedFinding>,
    pub(crate) resolved: Vec<ChangedFinding>,
}

/// What a report changed as its host's users see it: a vulnerability that stays on a package
/// whose version changed (its old row resolved as superseded, a new row opened) is neither
/// opened nor resolved. Most severe first.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct NetChanges {
    pub(crate) opened: Vec<ChangedFinding>,
    pub(crate) resolved: Vec<ChangedFinding>,
}

impl NetChanges {
    /// The software versions the listed (first [`LIST_CAP`]) items name.
    pub(crate) fn listed_keys(&self) -> impl Iterator<Item = SoftwareKey> + '_ {
        self.opened
            .iter()
            .take(LIST_CAP)
            .chain(self.resolved.iter().take(LIST_CAP))
            .map(|f| f.key)
    }
}

pub(crate) fn net_changes(diff: &InventoryDiff, rows: RowChanges) -> NetChanges {
    let RowChanges {
        mut opened,
        mut resolved,
    } = rows;
    if !diff.changed_pkgs.is_empty() {
        let pair = |pkg: &HashMap<SoftwareKey, u64>, f: &ChangedFinding| {
            pkg.get(&f.key)
                .filter(|p| diff.changed_pkgs.contains(p))
                .map(|p| (*p, f.vuln_id.clone()))
        };
        let opened_pairs: HashSet<(u64, String)> = opened
            .iter()
            .filter_map(|f| pair(&diff.new_pkg, f))
            .collect();
        let resolved_pairs: HashSet<(u64, String)> = resolved
            .iter()
            .filter_map(|f| pair(&diff.old_pkg, f))
            .collect();
        opened.retain(|f| pair(&diff.new_pkg, f).is_none_or(|p| !resolved_pairs.contains(&p)));
        resolved.retain(|f| pair(&diff.old_pkg, f).is_none_or(|p| !opened_pairs.contains(&p)));
    }
    let order = |a: &ChangedFinding, b: &ChangedFinding| {
        (b.severity, b.kev, &a.vuln_id, a.key).cmp(&(a.severity, a.kev, &b.vuln_id, b.key))
    };
    opened.sort_by(order);
    resolved.sort_by(order);
    NetChanges { opened, resolved }
}

/// The events of one report a worker batch settled: `report.processed`, and
/// `findings.changed` when its host's findings moved. `packages` names the listed software.
pub(crate) fn processed_report_events(
    r: &ProcessedReport,
    outcome: &str,
    changes: &NetChanges,
    packages: &HashMap<SoftwareKey, PackageRef>,
) -> Vec<NewEvent> {
    let company = Some(r.company_id);
    let (opened, resolved) = (changes.opened.len(), changes.resolved.len());
    let mut events = vec![NewEvent {
        company_id: company,
        kind: EventKind::ReportProcessed,
        data: object(json!({
            "report_id": r.report_id.to_string(),
            "agent_id": r.agent_id.to_string(),
            "hostname": r.hostname,
            "outcome": outcome,
            "opened": opened,
            "resolved": resolved,
        })),
    }];
    if opened + resolved > 0 {
        let items = |list: &[ChangedFinding]| -> Vec<Value> {
            list.iter()
                .take(LIST_CAP)
                .map(|f| {
                    let p = packages.get(&f.key);
                    json!({
                        "vuln_id": f.vuln_id,
                        "severity": severity_from_rank(f.severity).as_str(),
                        "kev": f.kev,
                        "package": {
                            "name": p.map(|p| p.name.as_str()).unwrap_or_default(),
                            "version": p.map(|p| p.version.as_str()).unwrap_or_default(),
                            "ecosystem": p.map(|p| p.ecosystem.as_str()).unwrap_or_default(),
                        },
                    })
                })
                .collect()
        };
        events.push(NewEvent {
            company_id: company,
            kind: EventKind::FindingsChanged,
            data: object(json!({
                "report_id": r.report_id.to_string(),
                "agent_id": r.agent_id.to_string(),
                "hostname": r.hostname,
                "opened": items(&changes.opened),
                "resolved": items(&changes.resolved),
                "opened_total": opened,
                "resolved_total": resolved,
            })),
        });
    }
    events
}

/// `agent.enrolled` of a new agent.
pub(crate) fn enrolled_event(agent: &NewAgent) -> NewEvent {
    NewEvent {
        company_id: Some(agent.company_id),
        kind: EventKind::AgentEnrolled,
        data: object(json!({
            "agent_id": agent.agent_id.to_string(),
            "hostname": agent.hostname,
        })),
    }
}

/// The JSON text an event is stored and streamed as: its data with `company_id` (a string,
/// like every id in events) when it belongs to a company.
pub(crate) fn event_json(e: &NewEvent) -> String {
    let mut data = e.data.clone();
    if let Some(c) = e.company_id {
        data.insert("company_id".into(), Value::String(c.to_string()));
    }
    serde_json::to_string(&data).unwrap_or_else(|_| "{}".into())
}

/// The ids the log hands out to `count` events appended after `last_id` (the counter's value
/// after the increment).
pub(crate) fn assigned_ids(last_id: i64, count: usize) -> impl Iterator<Item = i64> {
    let first = last_id - count as i64 + 1;
    first..=last_id
}

/// How many of the oldest events (id order, with their creation times) a pruning step
/// deletes: the prefix created before the cut-off, so the log stays one contiguous range.
pub(crate) fn prunable_prefix<T: PartialOrd>(created: &[T], before: &T) -> usize {
    created.iter().take_while(|at| *at < before).count()
}

pub(crate) fn stored_kind(kind: &str) -> crate::Result<EventKind> {
    EventKind::parse(kind).ok_or_else(|| super::corrupt(&format!("unknown event kind {kind}")))
}

fn object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::inventory::{package_id, Inventory};
    use crate::common::severity_rank;
    use zt_advisory::Severity;

    fn row(key: SoftwareKey, vuln: &str, severity: Severity) -> ChangedFinding {
        ChangedFinding {
            key,
            vuln_id: vuln.into(),
            severity: severity_rank(severity),
            kev: false,
        }
    }

    fn report(apps: &[(SoftwareKey, &str)]) -> ProcessedReport {
        ProcessedReport {
            lease: LeaseRef {
                queue_id: 1,
                owner: "w".into(),
                attempts: 1,
            },
            company_id: Default::default(),
            agent_id: Default::default(),
            report_id: Default::default(),
            collected_at: Default::default(),
            digest: [0; 32],
            hostname: "web-1".into(),
            os: Default::default(),
            arch: String::new(),
            apps: apps
                .iter()
                .map(|(k, _)| StoredApp {
                    software_key: *k,
                    arch: String::new(),
                })
                .collect(),
            names: apps.iter().map(|(k, n)| (*k, n.to_string())).collect(),
        }
    }

    /// lodash 4.17.15 (CVE-A, CVE-B) upgraded to 4.17.19 (CVE-B, CVE-C), minimist removed:
    /// users see CVE-A and minimist's CVE resolved and CVE-C opened; CVE-B stays, unmentioned.
    #[test]
    fn a_vulnerability_that_stays_on_an_upgraded_package_is_not_news() {
        let (old, new, minimist) = (
            SoftwareKey([1; 16]),
            SoftwareKey([2; 16]),
            SoftwareKey([3; 16]),
        );
        let lodash = package_id("npm\0lodash");
        let stored: Inventory = (
            [(old, String::new()), (minimist, String::new())].into(),
            [(old, lodash), (minimist, package_id("npm\0minimist"))].into(),
        );
        let diff = InventoryDiff::new(stored, &report(&[(new, "npm\0lodash")]));
        let rows = RowChanges {
            opened: vec![
                row(new, "CVE-B", Severity::High),
                row(new, "CVE-C", Severity::Low),
            ],
            resolved: vec![
                row(old, "CVE-A", Severity::Medium),
                row(old, "CVE-B", Severity::High),
                row(minimist, "CVE-M", Severity::Critical),
            ],
        };
        let net = net_changes(&diff, rows);
        assert_eq!(net.opened, vec![row(new, "CVE-C", Severity::Low)]);
        assert_eq!(
            net.resolved,
            vec![
                row(minimist, "CVE-M", Severity::Critical),
                row(old, "CVE-A", Severity::Medium)
            ]
        );
    }

    #[test]
    fn findings_changed_lists_are_cut_but_totals_count_everything() {
        let key = SoftwareKey([7; 16]);
        let opened: Vec<ChangedFinding> = (0..120)
            .map(|i| row(key, &format!("CVE-{i:03}"), Severity::High))
            .collect();
        let changes = NetChanges {
            opened,
            resolved: Vec::new(),
        };
        let packages = HashMap::from([(
            key,
            PackageRef {
                name: "openssl".into(),
                version: "3.0.1".into(),
                ecosystem: "Debian:12".into(),
                source: "dpkg".into(),
            },
        )]);
        let r = report(&[(key, "Debian:12\0openssl")]);
        let events = processed_report_events(&r, "applied", &changes, &packages);
        assert_eq!(
            events.iter().map(|e| e.kind).collect::<Vec<_>>(),
            [EventKind::ReportProcessed, EventKind::FindingsChanged]
        );
        let data: Value = serde_json::from_str(&event_json(&events[1])).unwrap();
        assert_eq!(data["opened"].as_array().unwrap().len(), LIST_CAP);
        assert_eq!(data["opened_total"], 120);
        assert_eq!(data["resolved_total"], 0);
        assert_eq!(data["opened"][0]["package"]["name"], "openssl");
        assert_eq!(data["opened"][0]["severity"], "high");
        assert_eq!(data["hostname"], "web-1");
        assert_eq!(data["company_id"], r.company_id.to_string());
        // A report that changed no finding says so, without a findings.changed event.
        let quiet = processed_report_events(&r, "applied", &NetChanges::default(), &packages);
        assert_eq!(quiet.len(), 1);
    }

    #[test]
    fn ids_and_pruning_keep_one_contiguous_range() {
        assert_eq!(assigned_ids(10, 3).collect::<Vec<_>>(), [8, 9, 10]);
        assert_eq!(assigned_ids(1, 1).collect::<Vec<_>>(), [1]);
        assert_eq!(prunable_prefix(&[1, 2, 9, 3], &5), 2);
        assert_eq!(prunable_prefix(&[6, 1], &5), 0);
        assert_eq!(prunable_prefix::<i32>(&[], &5), 0);
    }
}

//! The life of credentials, agents and companies (issue 17), what both backends share: the
//! event a decommissioning appends, and the rules of which tables a company purge empties.

use serde_json::{json, Value};

use crate::model::*;

/// The resolution of findings whose host was decommissioned.
pub(crate) const DECOMMISSIONED: &str = "decommissioned";

/// How many resolved findings a `findings.changed` event lists (as for reports).
pub(crate) const LIST_CAP: usize = 50;

/// One finding a decommissioning resolved, as the event lists it.
pub(crate) struct ResolvedItem {
    pub vuln_id: String,
    pub severity: zt_advisory::Severity,
    pub kev: bool,
    pub package: PackageRef,
}

/// `findings.changed` for a decommissioned host: everything it had open, resolved (the list
/// cut at [`LIST_CAP`], the total exact). None when nothing was open.
pub(crate) fn decommissioned_event(
    company_id: CompanyId,
    agent_id: AgentId,
    hostname: &str,
    items: &[ResolvedItem],
    total: u64,
) -> Option<NewEvent> {
    if total == 0 {
        return None;
    }
    let resolved: Vec<Value> = items
        .iter()
        .take(LIST_CAP)
        .map(|f| {
            json!({
                "vuln_id": f.vuln_id,
                "severity": f.severity.as_str(),
                "kev": f.kev,
                "package": {
                    "name": f.package.name,
                    "version": f.package.version,
                    "ecosystem": f.package.ecosystem,
                },
            })
        })
        .collect();
    let data = json!({
        "agent_id": agent_id.to_string(),
        "hostname": hostname,
        "reason": DECOMMISSIONED,
        "opened": [],
        "resolved": resolved,
        "opened_total": 0,
        "resolved_total": total,
    });
    let Value::Object(data) = data else {
        return None;
    };
    Some(NewEvent {
        company_id: Some(company_id),
        kind: EventKind::FindingsChanged,
        data,
    })
}

/// The order a purge empties a company's tables in: the rows that point at others first
/// (findings, apps, queue entries, reports...), agents, credentials, the company, and its
/// audit trail after it (the trail refuses deletes while its company exists).
/// `tables` are every table with a `company_id` column, as the schema lists them.
pub(crate) fn purge_order(mut tables: Vec<String>) -> Vec<String> {
    fn rank(t: &str) -> u8 {
        match t {
            "audit" => 4,
            "companies" => 3,
            "credentials" => 2,
            "agents" => 1,
            _ => 0,
        }
    }
    tables.sort_by(|a, b| rank(a).cmp(&rank(b)).then_with(|| a.cmp(b)));
    tables.dedup();
    tables
}

/// Whether `name` may be spliced into a statement as a table name (it comes from the
/// schema, but a purge deletes data: only plain identifiers).
pub(crate) fn plain_identifier(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purge_empties_dependents_first_and_the_company_last() {
        let order = purge_order(
            [
                "companies",
                "findings",
                "agents",
                "credentials",
                "apps",
                "queue",
            ]
            .map(String::from)
            .to_vec(),
        );
        assert_eq!(
            order,
            [
                "apps",
                "findings",
                "queue",
                "agents",
                "credentials",
                "companies"
            ]
        );
    }

    #[test]
    fn only_plain_identifiers_are_spliced() {
        assert!(plain_identifier("company_daily"));
        for bad in ["", "a;drop", "Findings", "1x", "a b", "\"x\""] {
            assert!(!plain_identifier(bad), "{bad}");
        }
    }
}

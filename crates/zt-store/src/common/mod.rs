//! Backend-neutral code both backends share: conversions, ranks, classifying and diffing, the
//! compact inventory, page cursors and row-to-model mapping. Nothing here knows SQL or a
//! driver; the backends (`sqlite/`, `postgres/`) read and write rows and call into it.

pub(crate) mod accept;
pub(crate) mod analyses;
#[macro_use]
mod delegate;
pub(crate) mod events;
pub(crate) mod findings;
pub(crate) mod inventory;
pub(crate) mod keyset;
pub(crate) mod knowledge;
pub(crate) mod lifecycle;
pub(crate) mod matches;
pub(crate) mod notify;
pub(crate) mod queue;
#[macro_use]
pub(crate) mod reads;
pub mod rematch;
pub(crate) mod rollup;
pub(crate) mod views;

use chrono::{DateTime, TimeZone, Utc};
use uuid::Uuid;
use zt_advisory::Severity;
use zt_inventory::SoftwareKey;

use crate::model::*;
use crate::{Result, StoreError};

// --- janitor timings ---------------------------------------------------------------------------

/// Reports one transaction of periodic upkeep (retention batch, trend point, event pruning)
/// with its duration, as a debug event of target `zerotrace::janitor` (`task`, `rows`, `ms`):
/// the janitor benchmark collects them (`cargo bench -p zt-store --bench janitor`), and a
/// server run with `ZEROTRACE_LOG=zerotrace::janitor=debug` logs them.
pub(crate) fn janitor_timing(task: &'static str, started: std::time::Instant, rows: u64) {
    tracing::debug!(
        target: "zerotrace::janitor",
        task,
        rows,
        ms = started.elapsed().as_secs_f64() * 1000.0,
        "upkeep transaction"
    );
}

// --- conversions -------------------------------------------------------------------------------

/// A time as epoch milliseconds (SQLite's time columns, import dedupe).
pub(crate) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(crate) fn from_ms(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

pub(crate) fn opt_ms(ms: Option<i64>) -> Option<DateTime<Utc>> {
    ms.map(from_ms)
}

pub(crate) fn uuid_from(bytes: &[u8]) -> Result<Uuid> {
    Uuid::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("bad uuid in database: {e}")))
}

pub(crate) fn company_from(bytes: &[u8]) -> Result<CompanyId> {
    uuid_from(bytes).map(CompanyId)
}

pub(crate) fn agent_from(bytes: &[u8]) -> Result<AgentId> {
    uuid_from(bytes).map(AgentId)
}

pub(crate) fn key_from(bytes: &[u8]) -> Result<SoftwareKey> {
    let arr: [u8; 16] = bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt("bad software key in database".into()))?;
    Ok(SoftwareKey(arr))
}

/// The stored rank of a severity: higher is worse, so `ORDER BY severity DESC` puts the worst
/// first.
pub(crate) fn severity_rank(s: Severity) -> i64 {
    match s {
        Severity::Unknown => 0,
        Severity::None => 1,
        Severity::Low => 2,
        Severity::Medium => 3,
        Severity::High => 4,
        Severity::Critical => 5,
    }
}

pub(crate) fn severity_from_rank(r: i64) -> Severity {
    match r {
        1 => Severity::None,
        2 => Severity::Low,
        3 => Severity::Medium,
        4 => Severity::High,
        5 => Severity::Critical,
        _ => Severity::Unknown,
    }
}

/// A list of strings as JSON text (`[]` should it not encode).
pub(crate) fn json_list(items: &[String]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".into())
}

// --- credentials -------------------------------------------------------------------------------

pub(crate) fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

pub(crate) fn token_hash_from(bytes: &[u8]) -> Result<TokenHash> {
    let arr: [u8; 32] = bytes
        .try_into()
        .map_err(|_| corrupt("token hash is not 32 bytes"))?;
    Ok(TokenHash(arr))
}

/// Whom a credential row authenticates, from its kind and the ids and role it carries.
pub(crate) fn principal_from(
    kind: &str,
    company: Option<CompanyId>,
    agent: Option<AgentId>,
    role: Option<&str>,
) -> Result<Principal> {
    let company = || company.ok_or_else(|| corrupt("credential without company"));
    Ok(match kind {
        "operator" => Principal::Operator,
        "enroll" => Principal::Enroll {
            company_id: company()?,
        },
        "agent" => Principal::Agent {
            company_id: company()?,
            agent_id: agent.ok_or_else(|| corrupt("agent credential without agent"))?,
        },
        "user" => Principal::User {
            company_id: company()?,
            role: role
                .and_then(Role::parse)
                .ok_or_else(|| corrupt("user credential without role"))?,
        },
        other => return Err(corrupt(&format!("unknown credential kind {other}"))),
    })
}

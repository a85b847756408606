//! Optional Redis shared by API replicas (`--redis-url`): rate-limit buckets and resolved
//! credentials.
//!
//! Rate limits are GCRA buckets (the same algorithm and quota shape as the local `governor`
//! limiter: `n` per minute, bursts of up to `n`), one Lua script per check so that the
//! read-modify-write is atomic in Redis, timed by Redis's own clock so that replicas with
//! skewed clocks agree. Resolved tokens are cached for 30 s, sparing every replica the database
//! read for an agent another replica already authenticated.
//!
//! When Redis cannot be reached (or answers too slowly) the replica falls back to its local
//! limiter and cache, logs it once, and tries Redis again after a pause: requests are never
//! refused or held up because Redis is away.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use uuid::Uuid;
use zt_store::model::{AgentId, CompanyId, Principal, Role, TokenHash};

/// How long one Redis round trip may take before the replica decides on its own.
const CALL_TIMEOUT: Duration = Duration::from_millis(250);
/// After a failure, Redis is left alone this long.
const PAUSE_AFTER_FAILURE: Duration = Duration::from_secs(5);
/// Resolved credentials live this long in the shared cache (as in the local one).
const TOKEN_TTL_MS: u64 = 30_000;

/// GCRA: KEYS[1] the bucket; ARGV[1] emission interval (µs), ARGV[2] burst. Returns 0 when the
/// request conforms (and records it), else the µs until it would.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then tat = now end
local allow_at = tat - (burst - 1) * interval
if now < allow_at then return allow_at - now end
tat = tat + interval
redis.call('SET', KEYS[1], string.format('%d', tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
return 0
";

pub struct SharedState {
    conn: ConnectionManager,
    prefix: String,
    gcra: redis::Script,
    /// Until when Redis is not asked (after a failure).
    paused_until: Mutex<Option<Instant>>,
    /// Whether the last attempt failed (to log transitions once, not per request).
    degraded: AtomicBool,
}

/// The answer of a shared limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedVerdict {
    Allowed,
    /// Over the limit; this long until a request would conform.
    Limited(Duration),
}

impl SharedState {
    /// Prepares the connection (made lazily, on first use); fails only on a malformed URL.
    pub fn new(url: &str, prefix: &str) -> anyhow::Result<SharedState> {
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CALL_TIMEOUT))
            .set_response_timeout(Some(CALL_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let conn = client.get_connection_manager_lazy(config)?;
        Ok(SharedState {
            conn,
            prefix: prefix.to_string(),
            gcra: redis::Script::new(GCRA),
            paused_until: Mutex::new(None),
            degraded: AtomicBool::new(false),
        })
    }

    fn available(&self) -> bool {
        let mut paused = self.paused_until.lock();
        match *paused {
            Some(until) if Instant::now() < until => false,
            Some(_) => {
                *paused = None;
                true
            }
            None => true,
        }
    }

    fn failed(&self, what: &str, error: &str) {
        *self.paused_until.lock() = Some(Instant::now() + PAUSE_AFTER_FAILURE);
        metrics::counter!("redis_errors_total").increment(1);
        if !self.degraded.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                error,
                what,
                "Redis is unreachable: rate limits and caches are local to this process until it is back"
            );
        }
    }

    fn succeeded(&self) {
        if self.degraded.swap(false, Ordering::Relaxed) {
            tracing::info!("Redis is reachable again: rate limits are shared");
        }
    }

    async fn call<T: redis::FromRedisValue>(
        &self,
        what: &str,
        f: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Option<T> {
        if !self.available() {
            return None;
        }
        match tokio::time::timeout(CALL_TIMEOUT * 2, f).await {
            Ok(Ok(v)) => {
                self.succeeded();
                Some(v)
            }
            Ok(Err(e)) => {
                self.failed(what, &e.to_string());
                None
            }
            Err(_) => {
                self.failed(what, "timed out");
                None
            }
        }
    }

    /// Counts one request against the shared bucket `scope/key` of `per_minute`; None when
    /// Redis is unavailable (the caller limits locally).
    pub async fn limit(&self, scope: &str, key: &Uuid, per_minute: u32) -> Option<SharedVerdict> {
        let per_minute = per_minute.max(1);
        let interval_us = 60_000_000u64 / u64::from(per_minute);
        let bucket = format!("{}rl:{scope}:{key}", self.prefix);
        let mut conn = self.conn.clone();
        let wait_us: i64 = self
            .call("rate limit", async {
                self.gcra
                    .key(&bucket)
                    .arg(interval_us.max(1))
                    .arg(per_minute)
                    .invoke_async(&mut conn)
                    .await
            })
            .await?;
        Some(if wait_us <= 0 {
            SharedVerdict::Allowed
        } else {
            SharedVerdict::Limited(Duration::from_micros(wait_us.unsigned_abs()))
        })
    }

    /// A principal another replica resolved recently.
    pub async fn cached_principal(&self, hash: &TokenHash) -> Option<Principal> {
        let key = format!("{}tok:{}", self.prefix, hex::encode(hash.0));
        let mut conn = self.conn.clone();
        let value: Option<String> = self
            .call("token cache", async {
                redis::cmd("GET").arg(&key).query_async(&mut conn).await
            })
            .await?;
        value.as_deref().and_then(decode_principal)
    }

    /// Shares a resolved principal (operators stay local: there are few, and their tokens are
    /// the most sensitive).
    pub async fn cache_principal(&self, hash: &TokenHash, principal: &Principal) {
        let Some(value) = encode_principal(principal) else {
            return;
        };
        let key = format!("{}tok:{}", self.prefix, hex::encode(hash.0));
        let mut conn = self.conn.clone();
        let _: Option<()> = self
            .call("token cache", async {
                redis::cmd("SET")
                    .arg(&key)
                    .arg(value)
                    .arg("PX")
                    .arg(TOKEN_TTL_MS)
                    .query_async(&mut conn)
                    .await
            })
            .await;
    }
}

/// Whether `url` is a Redis URL the client accepts (checked before the server starts).
pub fn check_redis_url(url: &str) -> anyhow::Result<()> {
    redis::Client::open(url)?;
    Ok(())
}

fn encode_principal(p: &Principal) -> Option<String> {
    Some(match p {
        Principal::Operator => return None,
        Principal::User { company_id, role } => format!("user:{company_id}:{}", role.as_str()),
        Principal::Agent {
            company_id,
            agent_id,
        } => format!("agent:{company_id}:{agent_id}"),
        Principal::Enroll { company_id } => format!("enroll:{company_id}"),
    })
}

/// Anything malformed reads as a cache miss: the store decides then.
fn decode_principal(s: &str) -> Option<Principal> {
    let mut parts = s.split(':');
    let kind = parts.next()?;
    let company_id = parts.next()?.parse::<CompanyId>().ok()?;
    let third = parts.next();
    if parts.next().is_some() {
        return None;
    }
    match (kind, third) {
        ("user", Some(role)) => Some(Principal::User {
            company_id,
            role: Role::parse(role)?,
        }),
        ("agent", Some(agent)) => Some(Principal::Agent {
            company_id,
            agent_id: agent.parse::<AgentId>().ok()?,
        }),
        ("enroll", None) => Some(Principal::Enroll { company_id }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principals_round_trip_and_garbage_is_a_miss() {
        let c = CompanyId::new_v4();
        for p in [
            Principal::User {
                company_id: c,
                role: Role::Viewer,
            },
            Principal::Agent {
                company_id: c,
                agent_id: AgentId::new_v4(),
            },
            Principal::Enroll { company_id: c },
        ] {
            assert_eq!(decode_principal(&encode_principal(&p).unwrap()), Some(p));
        }
        assert_eq!(encode_principal(&Principal::Operator), None);
        for bad in [
            "",
            "operator",
            "user:x:admin",
            &format!("user:{c}:root"),
            &format!("enroll:{c}:extra"),
            &format!("agent:{c}"),
        ] {
            assert_eq!(decode_principal(bad), None, "{bad}");
        }
    }
}

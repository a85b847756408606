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
    /// Signs shared credentials (see [`SharedState::cached_principal`]).
    signing_key: std::sync::OnceLock<[u8; 32]>,
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
            signing_key: std::sync::OnceLock::new(),
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

    /// Sets the key cached credentials are signed with (shared by the replicas through the
    /// database, never sent to Redis). Until it is set nothing is shared.
    pub fn set_signing_key(&self, key: [u8; 32]) {
        let _ = self.signing_key.set(key);
    }

    /// A principal another replica resolved recently, at credentials revision `revision` or
    /// later. An entry is trusted only if it carries a valid signature of this deployment's
    /// key (Redis alone cannot grant authority: whoever can write to it cannot forge one) and
    /// was resolved at a revision no older than the newest this process has seen (a
    /// revocation voids every entry written before it).
    pub async fn cached_principal(&self, hash: &TokenHash, revision: u64) -> Option<Principal> {
        let key = self.signing_key.get()?;
        let redis_key = format!("{}tok:{}", self.prefix, hex::encode(hash.0));
        let mut conn = self.conn.clone();
        let value: Option<String> = self
            .call("token cache", async {
                redis::cmd("GET")
                    .arg(&redis_key)
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        let (principal, at) = verify_entry(key, hash, value.as_deref()?)?;
        if at < revision {
            return None;
        }
        Some(principal)
    }

    /// Shares a resolved principal, signed, with the revision it was resolved at (operators
    /// stay local: there are few, and their tokens are the most sensitive).
    pub async fn cache_principal(&self, hash: &TokenHash, principal: &Principal, revision: u64) {
        let Some(key) = self.signing_key.get() else {
            return;
        };
        let Some(value) = sign_entry(key, hash, principal, revision) else {
            return;
        };
        let redis_key = format!("{}tok:{}", self.prefix, hex::encode(hash.0));
        let mut conn = self.conn.clone();
        let _: Option<()> = self
            .call("token cache", async {
                redis::cmd("SET")
                    .arg(&redis_key)
                    .arg(value)
                    .arg("PX")
                    .arg(TOKEN_TTL_MS)
                    .query_async(&mut conn)
                    .await
            })
            .await;
    }

    /// Drops revoked tokens' shared entries (the revision voids them anyway; this frees them).
    pub async fn forget(&self, hashes: &[TokenHash]) {
        if hashes.is_empty() {
            return;
        }
        let keys: Vec<String> = hashes
            .iter()
            .map(|h| format!("{}tok:{}", self.prefix, hex::encode(h.0)))
            .collect();
        let mut conn = self.conn.clone();
        let _: Option<i64> = self
            .call("token cache", async {
                redis::cmd("DEL").arg(&keys).query_async(&mut conn).await
            })
            .await;
    }
}

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

fn entry_mac(key: &[u8; 32], hash: &TokenHash, body: &str) -> HmacSha256 {
    use hmac::Mac;
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(&hash.0);
    mac.update(b"\0");
    mac.update(body.as_bytes());
    mac
}

/// `<principal>|<revision>|<hex HMAC-SHA256(key, token hash, "<principal>|<revision>")>`.
fn sign_entry(key: &[u8; 32], hash: &TokenHash, p: &Principal, revision: u64) -> Option<String> {
    use hmac::Mac;
    let body = format!("{}|{revision}", encode_principal(p)?);
    let tag = hex::encode(entry_mac(key, hash, &body).finalize().into_bytes());
    Some(format!("{body}|{tag}"))
}

/// The principal and revision of a signed entry for `hash`; None when it is malformed, for
/// another token, or not signed with `key` (compared in constant time).
fn verify_entry(key: &[u8; 32], hash: &TokenHash, value: &str) -> Option<(Principal, u64)> {
    use hmac::Mac;
    let (body, tag) = value.rsplit_once('|')?;
    let tag = hex::decode(tag).ok()?;
    entry_mac(key, hash, body).verify_slice(&tag).ok()?;
    let (principal, revision) = body.rsplit_once('|')?;
    Some((decode_principal(principal)?, revision.parse().ok()?))
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

    #[test]
    fn signed_entries_verify_only_with_their_key_and_token() {
        let key = [7u8; 32];
        let hash = TokenHash([1u8; 32]);
        let p = Principal::User {
            company_id: CompanyId::new_v4(),
            role: Role::Viewer,
        };
        let entry = sign_entry(&key, &hash, &p, 42).unwrap();
        assert_eq!(verify_entry(&key, &hash, &entry), Some((p, 42)));
        // Another key, another token, or any change to the entry: not trusted.
        assert_eq!(verify_entry(&[8u8; 32], &hash, &entry), None);
        assert_eq!(verify_entry(&key, &TokenHash([2u8; 32]), &entry), None);
        let admin = entry.replacen("viewer", "admin", 1);
        assert_eq!(verify_entry(&key, &hash, &admin), None);
        let later = entry.replacen("|42|", "|43|", 1);
        assert_eq!(verify_entry(&key, &hash, &later), None);
        // What the old cache wrote (no signature) grants nothing.
        let unsigned = encode_principal(&p).unwrap();
        assert_eq!(verify_entry(&key, &hash, &unsigned), None);
    }
}

//! Limits before authentication, per client address (`client.rs`: the peer, or through
//! trusted proxies the client they name): a client that keeps presenting unknown, revoked or
//! expired credentials, or keeps enrolling, is refused with 429 before its next credential is
//! even looked at, so guessing tokens or enroll secrets costs the attacker time and the
//! database nothing.
//!
//! Two buckets per address: failed authentications (every 401) and enroll attempts. While an
//! address is over either, every request from it answers 429 with `Retry-After` (until its
//! bucket refills). With `--redis-url` the buckets are shared by the replicas (`shared.rs`);
//! without Redis, or while it is away, each process counts on its own.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::client::ClientAddr;
use crate::error::ApiError;
use crate::shared::{SharedState, SharedVerdict};
use crate::state::AppState;

/// The enrollment route, whose attempts count per address.
const ENROLL_PATH: &str = "/api/v1/enroll";

pub struct PreAuthLimits {
    failures: Option<DefaultKeyedRateLimiter<IpAddr>>,
    enrolls: Option<DefaultKeyedRateLimiter<IpAddr>>,
    failures_per_min: u32,
    enrolls_per_min: u32,
    /// Addresses over a bucket, and until when.
    blocked: Mutex<HashMap<IpAddr, Instant>>,
    clock: DefaultClock,
    shared: Option<Arc<SharedState>>,
}

fn limiter(per_minute: u32) -> Option<DefaultKeyedRateLimiter<IpAddr>> {
    NonZeroU32::new(per_minute).map(|n| RateLimiter::keyed(Quota::per_minute(n)))
}

/// An address as a bucket key of the shared limiter (which keys by UUID).
fn address_key(ip: IpAddr) -> Uuid {
    let digest = Sha256::digest(ip.to_string().as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    Uuid::from_bytes(bytes)
}

impl PreAuthLimits {
    /// `failures_per_min` failed authentications and `enrolls_per_min` enroll attempts per
    /// client address and minute (0 turns one off).
    pub fn new(
        failures_per_min: u32,
        enrolls_per_min: u32,
        shared: Option<Arc<SharedState>>,
    ) -> Self {
        PreAuthLimits {
            failures: limiter(failures_per_min),
            enrolls: limiter(enrolls_per_min),
            failures_per_min,
            enrolls_per_min,
            blocked: Mutex::new(HashMap::new()),
            clock: DefaultClock::default(),
            shared,
        }
    }

    /// How long `ip` is still refused, if it is.
    pub fn blocked_for(&self, ip: IpAddr) -> Option<Duration> {
        let mut blocked = self.blocked.lock();
        let until = *blocked.get(&ip)?;
        let now = Instant::now();
        if until > now {
            Some(until - now)
        } else {
            blocked.remove(&ip);
            None
        }
    }

    /// Counts one event of `scope` for `ip`; when that is over the bucket, the address is
    /// refused until it refills (returned).
    async fn count(&self, scope: &'static str, ip: IpAddr) -> Option<Duration> {
        let (limiter, per_minute) = match scope {
            "client_auth_failures" => (self.failures.as_ref()?, self.failures_per_min),
            _ => (self.enrolls.as_ref()?, self.enrolls_per_min),
        };
        let shared = match &self.shared {
            Some(s) => s.limit(scope, &address_key(ip), per_minute).await,
            None => None,
        };
        let wait = match shared {
            Some(SharedVerdict::Allowed) => return None,
            Some(SharedVerdict::Limited(wait)) => wait,
            None => match limiter.check_key(&ip) {
                Ok(()) => return None,
                Err(not_until) => not_until.wait_time_from(self.clock.now()),
            },
        };
        let wait = wait.max(Duration::from_secs(1));
        let mut blocked = self.blocked.lock();
        if blocked.len() > 100_000 {
            let now = Instant::now();
            blocked.retain(|_, until| *until > now);
        }
        blocked.insert(ip, Instant::now() + wait);
        metrics::counter!("rate_limited_total", "scope" => scope).increment(1);
        Some(wait)
    }

    /// Forgets recovered state (bounds memory).
    pub fn prune(&self) {
        for l in [&self.failures, &self.enrolls].into_iter().flatten() {
            l.retain_recent();
            l.shrink_to_fit();
        }
        let now = Instant::now();
        self.blocked.lock().retain(|_, until| *until > now);
    }
}

fn refused(wait: Duration) -> Response {
    ApiError::rate_limited(
        "client address",
        wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
    )
    .into_response()
}

/// The middleware: refuses a blocked address before anything else runs, counts enroll
/// attempts, and counts every answer 401 to a presented credential against the address.
pub async fn guard(
    State(state): State<AppState>,
    client: ClientAddr,
    request: Request,
    next: Next,
) -> Response {
    let limits = &state.preauth;
    let ip = client.ip;
    if let Some(wait) = limits.blocked_for(ip) {
        metrics::counter!("rate_limited_total", "scope" => "client_blocked").increment(1);
        return refused(wait);
    }
    let enroll = request.method() == Method::POST && request.uri().path() == ENROLL_PATH;
    if enroll {
        if let Some(wait) = limits.count("client_enrolls", ip).await {
            return refused(wait);
        }
    }
    // A refusal counts when a credential was presented (a header, the session cookie, or
    // the secret in the body of enrollment and sign-in): asking without one guesses nothing.
    let presented = request.headers().contains_key(header::AUTHORIZATION)
        || crate::auth::session_cookie(request.headers()).is_some()
        || enroll
        || (request.method() == Method::POST && request.uri().path() == crate::auth::SIGN_IN_PATH);
    let response = next.run(request).await;
    if presented && response.status() == StatusCode::UNAUTHORIZED {
        // This answer stands; the next request from the address is refused if it was one
        // failure too many.
        let _ = limits.count("client_auth_failures", ip).await;
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn failures_block_the_address_and_spare_others() {
        let limits = PreAuthLimits::new(3, 1000, None);
        let bad: IpAddr = "192.0.2.7".parse().unwrap();
        let good: IpAddr = "192.0.2.8".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(limits.count("client_auth_failures", bad).await, None);
            assert_eq!(limits.blocked_for(bad), None);
        }
        let wait = limits
            .count("client_auth_failures", bad)
            .await
            .expect("the fourth failure in a minute is one too many");
        assert!(
            wait >= Duration::from_secs(1) && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        assert!(limits.blocked_for(bad).is_some());
        assert_eq!(limits.blocked_for(good), None);
        assert_eq!(limits.count("client_auth_failures", good).await, None);
    }

    #[tokio::test]
    async fn a_zero_limit_is_off() {
        let limits = PreAuthLimits::new(0, 0, None);
        let ip: IpAddr = "2001:db8::1".parse().unwrap();
        for _ in 0..100 {
            assert_eq!(limits.count("client_auth_failures", ip).await, None);
            assert_eq!(limits.count("client_enrolls", ip).await, None);
        }
    }

    #[test]
    fn addresses_key_distinct_buckets() {
        let a = address_key("192.0.2.1".parse().unwrap());
        assert_eq!(a, address_key("192.0.2.1".parse().unwrap()));
        assert_ne!(a, address_key("192.0.2.2".parse().unwrap()));
    }
}

//! Per-company and per-agent request rate limits (GCRA, keyed by id).
//!
//! Without Redis the limits are per process (`governor`), so with several API replicas each
//! enforces its own share. With `--redis-url` the buckets live in Redis and all replicas
//! share them (see `shared.rs`); when Redis is away, the local limiter stands in.

use std::num::NonZeroU32;
use std::sync::Arc;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use uuid::Uuid;
use zt_store::model::Principal;

use crate::error::{ApiError, ApiResult};
use crate::shared::{SharedState, SharedVerdict};

pub struct RateLimits {
    company: Option<DefaultKeyedRateLimiter<Uuid>>,
    agent: Option<DefaultKeyedRateLimiter<Uuid>>,
    company_per_min: u32,
    agent_per_min: u32,
    clock: DefaultClock,
    shared: Option<Arc<SharedState>>,
}

fn limiter(per_minute: u32) -> Option<DefaultKeyedRateLimiter<Uuid>> {
    // 0 turns a limit off.
    NonZeroU32::new(per_minute).map(|n| RateLimiter::keyed(Quota::per_minute(n)))
}

impl RateLimits {
    pub fn new(company_per_min: u32, agent_per_min: u32) -> Self {
        Self::with_shared(company_per_min, agent_per_min, None)
    }

    pub fn with_shared(
        company_per_min: u32,
        agent_per_min: u32,
        shared: Option<Arc<SharedState>>,
    ) -> Self {
        RateLimits {
            company: limiter(company_per_min),
            agent: limiter(agent_per_min),
            company_per_min,
            agent_per_min,
            clock: DefaultClock::default(),
            shared,
        }
    }

    /// Counts one request of `principal`; 429 with the wait when a limit is exceeded. The
    /// operator is not limited.
    pub async fn check(&self, principal: &Principal) -> ApiResult<()> {
        if let (Principal::Agent { agent_id, .. }, Some(l)) = (principal, &self.agent) {
            self.check_one(l, self.agent_per_min, &agent_id.as_uuid(), "agent")
                .await?;
        }
        if let (Some(company_id), Some(l)) = (principal.company_id(), &self.company) {
            self.check_one(l, self.company_per_min, &company_id.as_uuid(), "company")
                .await?;
        }
        Ok(())
    }

    async fn check_one(
        &self,
        limiter: &DefaultKeyedRateLimiter<Uuid>,
        per_minute: u32,
        key: &Uuid,
        scope: &'static str,
    ) -> ApiResult<()> {
        let shared = match &self.shared {
            Some(s) => s.limit(scope, key, per_minute).await,
            None => None,
        };
        let wait = match shared {
            Some(SharedVerdict::Allowed) => return Ok(()),
            Some(SharedVerdict::Limited(wait)) => wait,
            None => match limiter.check_key(key) {
                Ok(()) => return Ok(()),
                Err(not_until) => not_until.wait_time_from(self.clock.now()),
            },
        };
        metrics::counter!("rate_limited_total", "scope" => scope).increment(1);
        Err(ApiError::rate_limited(
            scope,
            wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
        ))
    }

    /// Forgets keys whose limit state has fully recovered (bounds memory).
    pub fn prune(&self) {
        for l in [&self.company, &self.agent].into_iter().flatten() {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zt_store::model::{AgentId, CompanyId};

    #[tokio::test]
    async fn agent_limit_answers_429_with_retry_after_and_spares_other_agents() {
        let limits = RateLimits::new(1000, 2);
        let company_id = CompanyId::new_v4();
        let a = Principal::Agent {
            company_id,
            agent_id: AgentId::new_v4(),
        };
        let b = Principal::Agent {
            company_id,
            agent_id: AgentId::new_v4(),
        };
        assert!(limits.check(&a).await.is_ok());
        assert!(limits.check(&a).await.is_ok());
        let e = limits.check(&a).await.unwrap_err();
        assert_eq!(e.status.as_u16(), 429);
        assert!(e.retry_after.unwrap() >= 1);
        assert!(limits.check(&b).await.is_ok());
        assert!(limits.check(&Principal::Operator).await.is_ok());
    }

    #[tokio::test]
    async fn company_limit_covers_all_its_tokens() {
        let limits = RateLimits::new(3, 1000);
        let company_id = CompanyId::new_v4();
        let user = Principal::User {
            company_id,
            role: zt_store::model::Role::Viewer,
        };
        for _ in 0..3 {
            assert!(limits.check(&user).await.is_ok());
        }
        let agent = Principal::Agent {
            company_id,
            agent_id: AgentId::new_v4(),
        };
        assert_eq!(limits.check(&agent).await.unwrap_err().code, "rate_limited");
        let other = Principal::User {
            company_id: CompanyId::new_v4(),
            role: zt_store::model::Role::Viewer,
        };
        assert!(limits.check(&other).await.is_ok());
    }
}

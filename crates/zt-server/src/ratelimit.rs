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
    /// A company's agents together (scope `company`).
    company: Option<DefaultKeyedRateLimiter<Uuid>>,
    /// A company's users together (scope `company_users`): a script looping on the API
    /// cannot lock the fleet out, nor the fleet the dashboard.
    users: Option<DefaultKeyedRateLimiter<Uuid>>,
    users_per_min: u32,
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
            users: limiter(company_per_min),
            users_per_min: company_per_min,
            agent: limiter(agent_per_min),
            company_per_min,
            agent_per_min,
            clock: DefaultClock::default(),
            shared,
        }
    }

    /// The users' bucket of each company at `per_minute` (0: off); by default it has the
    /// agents' rate.
    pub fn with_users(mut self, per_minute: u32) -> Self {
        self.users = limiter(per_minute);
        self.users_per_min = per_minute;
        self
    }

    /// Counts one request of `principal`; 429 with the wait when a limit is exceeded. The
    /// operator is not limited. Agents count against their own bucket and their company's
    /// fleet's (enroll secrets too); users against their company's users'.
    pub async fn check(&self, principal: &Principal) -> ApiResult<()> {
        match principal {
            Principal::Operator => {}
            Principal::Agent {
                agent_id,
                company_id,
            } => {
                if let Some(l) = &self.agent {
                    self.check_one(l, self.agent_per_min, &agent_id.as_uuid(), "agent")
                        .await?;
                }
                if let Some(l) = &self.company {
                    self.check_one(l, self.company_per_min, &company_id.as_uuid(), "company")
                        .await?;
                }
            }
            Principal::Enroll { company_id } => {
                if let Some(l) = &self.company {
                    self.check_one(l, self.company_per_min, &company_id.as_uuid(), "company")
                        .await?;
                }
            }
            Principal::User { company_id, .. } => {
                if let Some(l) = &self.users {
                    self.check_one(
                        l,
                        self.users_per_min,
                        &company_id.as_uuid(),
                        "company_users",
                    )
                    .await?;
                }
            }
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
        for l in [&self.company, &self.users, &self.agent]
            .into_iter()
            .flatten()
        {
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
    async fn agents_and_users_of_a_company_have_buckets_of_their_own() {
        let limits = RateLimits::new(3, 1000).with_users(2);
        let company_id = CompanyId::new_v4();
        let user = Principal::User {
            company_id,
            role: zt_store::model::Role::Viewer,
        };
        let admin = Principal::User {
            company_id,
            role: zt_store::model::Role::Admin,
        };
        let agent = |_| Principal::Agent {
            company_id,
            agent_id: AgentId::new_v4(),
        };
        // A script looping with the users' tokens exhausts the users' bucket only.
        assert!(limits.check(&user).await.is_ok());
        assert!(limits.check(&admin).await.is_ok());
        let e = limits.check(&user).await.unwrap_err();
        assert_eq!((e.code, e.status.as_u16()), ("rate_limited", 429));
        assert!(e.message.contains("company_users"), "{}", e.message);
        for i in 0..3 {
            assert!(limits.check(&agent(i)).await.is_ok(), "agent {i}");
        }
        // The fleet's bucket covers all its agents, and leaves other companies alone.
        let e = limits.check(&agent(3)).await.unwrap_err();
        assert!(e.message.contains("company"), "{}", e.message);
        let other = Principal::User {
            company_id: CompanyId::new_v4(),
            role: zt_store::model::Role::Viewer,
        };
        assert!(limits.check(&other).await.is_ok());
    }
}

//! What a server process runs and with which limits.

use std::time::Duration;

use zt_store::model::TokenHash;

/// Which parts a process runs; many `api` and `worker` processes may share one database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerRole {
    /// The HTTP API and the dashboard, no queue workers.
    Api,
    /// Queue workers and the knowledge watcher; HTTP serves only health and metrics.
    Worker,
    All,
}

impl ServerRole {
    pub fn runs_api(self) -> bool {
        matches!(self, ServerRole::Api | ServerRole::All)
    }

    pub fn runs_workers(self) -> bool {
        matches!(self, ServerRole::Worker | ServerRole::All)
    }

    /// As `--role` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            ServerRole::Api => "api",
            ServerRole::Worker => "worker",
            ServerRole::All => "all",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub role: ServerRole,
    /// Queue workers of this process.
    pub workers: usize,
    /// Apps' worth of reports a worker claims at once (at least one report).
    pub batch_apps: u32,
    /// Pending queue entries above which inventories are refused with 503.
    pub queue_bound: u64,
    /// Requests per minute per company (all its tokens together).
    pub rate_company_per_min: u32,
    /// Requests per minute per agent.
    pub rate_agent_per_min: u32,
    /// Largest accepted request body, after decompression.
    pub body_limit: usize,
    /// How long a claimed batch stays leased before another worker may take it.
    pub lease: Duration,
    /// Attempts before a report is dead-lettered.
    pub max_attempts: u32,
    /// First retry delay; doubled per attempt.
    pub retry_base: Duration,
    /// How long finished queue entries and report records are kept.
    pub retention: Duration,
    /// How often the knowledge revision is polled.
    pub knowledge_poll: Duration,
    /// How often idle workers look for work queued by other processes.
    pub worker_poll: Duration,
    /// Told to agents at enrollment.
    pub report_interval_s: u64,
    /// `ZEROTRACE_ADMIN_TOKEN`, hashed, when set: it then is the only operator token.
    pub admin_token_env: Option<TokenHash>,
    /// How long shutdown waits for in-flight batches before releasing them.
    pub shutdown_grace: Duration,
    /// Fault injection for tests: workers sleep this long after a claim, holding the lease.
    pub hold_after_claim: Option<Duration>,
    /// Redis shared by API replicas (rate-limit buckets, credential cache); None: local only.
    pub redis_url: Option<String>,
    /// Prefix of every Redis key this deployment uses.
    pub redis_prefix: String,
    /// How long findings resolved and apps removed are kept.
    pub history_retention: Duration,
    /// How long an idle live-event stream waits before a comment line keeps it open.
    pub sse_heartbeat: Duration,
    /// How long the event log keeps events (a client disconnected longer must resync).
    pub event_retention: Duration,
    /// Proxies (nginx in front) whose `X-Forwarded-For` names the client; empty: the header is
    /// ignored (see `client.rs`).
    pub trusted_proxies: crate::client::TrustedProxies,
    /// This process serves HTTPS itself (`--tls-cert`): session cookies get `Secure`.
    pub tls: bool,
    /// How long a dashboard session lasts after sign-in.
    pub session_ttl: Duration,
    /// Marks the session cookie `Secure` (the dashboard is served over HTTPS, by this process
    /// or by a proxy in front of it).
    pub secure_cookies: bool,
    /// Reports waiting longer than this are claimed first, oldest first, before the newest
    /// (which are claimed first otherwise): under a burst no report waits long behind newer
    /// ones.
    pub claim_overdue_after: Duration,
    /// An agent not heard of (no report accepted, or since enrollment) for this long is
    /// stale; None: three report intervals.
    pub stale_after: Option<Duration>,
    /// Requests per minute of a company's users, a bucket apart from its agents' (0: off).
    pub rate_company_users_per_min: u32,
    /// Failed authentications per minute per client address (0: off; `preauth.rs`).
    pub rate_auth_failures_per_min: u32,
    /// Enroll attempts per minute per client address (0: off).
    pub rate_enroll_per_min: u32,
    /// How long a client may take to send a request's headers.
    pub header_timeout: Duration,
    /// How long a client may take to send a request's whole body.
    pub body_timeout: Duration,
    /// The scheduled feed sync (`--feeds-sync-interval`); None: off (`--offline`).
    pub feeds_sync: Option<crate::feeds::ScheduledSync>,
    /// Notifications: destinations, deadlines, retries, SMTP, the sealing key (issue 14).
    pub notify: crate::notify::NotifyConfig,
    /// Sign-in through an OpenID Connect provider (`--oidc-issuer`); None: tokens only.
    pub oidc: Option<crate::oidc::OidcConfig>,
}

impl ServerConfig {
    /// When an agent counts as stale: `stale_after`, or three report intervals (a host that
    /// missed two reports in a row).
    pub fn stale_threshold(&self) -> Duration {
        self.stale_after
            .unwrap_or_else(|| Duration::from_secs(self.report_interval_s.saturating_mul(3)))
    }

    /// The time before which an agent last heard of is stale.
    pub fn stale_before(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> chrono::DateTime<chrono::Utc> {
        now - chrono::Duration::from_std(self.stale_threshold())
            .unwrap_or(chrono::Duration::days(3650))
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            role: ServerRole::All,
            workers: 10,
            batch_apps: 100,
            queue_bound: 50_000,
            rate_company_per_min: 10_000,
            rate_agent_per_min: 100,
            body_limit: 16 * 1024 * 1024,
            lease: Duration::from_secs(60),
            max_attempts: 5,
            retry_base: Duration::from_secs(1),
            retention: Duration::from_secs(24 * 3600),
            knowledge_poll: Duration::from_secs(5),
            worker_poll: Duration::from_millis(250),
            report_interval_s: 3600,
            admin_token_env: None,
            shutdown_grace: Duration::from_secs(10),
            hold_after_claim: None,
            redis_url: None,
            redis_prefix: "zerotrace:".into(),
            history_retention: Duration::from_secs(90 * 24 * 3600),
            sse_heartbeat: Duration::from_secs(15),
            event_retention: Duration::from_secs(24 * 3600),
            trusted_proxies: Default::default(),
            tls: false,
            session_ttl: Duration::from_secs(12 * 3600),
            secure_cookies: false,
            stale_after: None,
            feeds_sync: None,
            claim_overdue_after: Duration::from_secs(1),
            rate_company_users_per_min: 6_000,
            rate_auth_failures_per_min: 60,
            rate_enroll_per_min: 600,
            header_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(120),
            notify: Default::default(),
            oidc: None,
        }
    }
}
